//! Secrets are only ever references.
//!
//! - A secret-like key (`password`, `token`, `clientSecret`, `API_KEY`, …) holding a
//!   literal string is an error, reported without the value ([`check_secret_literals`],
//!   run on each layer file before anything is typed, so no later error can echo it). A
//!   number or boolean under such a key is a setting (`TOKEN_EXPIRE_HOURS: 8`), not a
//!   secret, and an empty string holds none (`password: ""`, a chart's "generate one");
//!   an `exceptions` entry `{rule: secret-literal, path: …, reason: …}` lets a string
//!   through.
//! - A value that looks like a real credential (an AWS key id, a private key block, a
//!   GitHub or Slack token, a JWT) is refused whatever its key.
//! - Rendered artifacts are scanned for the same ([`scan_artifact`]).

use crate::config::{Node, Value, merge::join_path};
use crate::error::{Error, Located, Result};

/// The rule name an exception uses to let a literal through.
pub const SECRET_LITERAL: &str = "secret-literal";

/// Is this key (the last segment of a path) the name of a secret?
pub fn is_secret_key(key: &str) -> bool {
    // Every secret-like spelling contains one of these; most keys contain none, and
    // this check allocates nothing (it runs on every key and every rendered line).
    const STEMS: &[&[u8]] = &[
        b"secret",
        b"passw",
        b"pwd",
        b"token",
        b"credential",
        b"passphrase",
        b"key",
    ];
    // One pass: a stem is compared only where its first letter stands.
    let bytes = key.as_bytes();
    let has_stem = (0..bytes.len()).any(|at| {
        let first = bytes[at].to_ascii_lowercase();
        matches!(first, b's' | b'p' | b't' | b'c' | b'k')
            && STEMS.iter().any(|stem| {
                stem[0] == first
                    && bytes[at..]
                        .get(..stem.len())
                        .is_some_and(|w| w.eq_ignore_ascii_case(stem))
            })
    });
    if !has_stem {
        return false;
    }
    let tokens = tokens(key);
    let joined: String = tokens.concat();
    if [
        "apikey",
        "privatekey",
        "accesskey",
        "secretkey",
        "signingkey",
    ]
    .iter()
    .any(|w| joined.contains(w))
    {
        return true;
    }
    tokens.iter().any(|t| {
        matches!(
            t.as_str(),
            "secret"
                | "password"
                | "passwd"
                | "pwd"
                | "token"
                | "credential"
                | "credentials"
                | "passphrase"
        )
    })
}

/// Is any segment of a dotted path secret-like? (`app.secrets.X` is a map of references,
/// so the container key `secrets` itself does not count.)
pub fn is_secret_path(path: &str) -> bool {
    path.split('.')
        .any(|segment| segment != "secrets" && is_secret_key(segment))
}

/// Splits `clientSecret`, `CLIENT_SECRET`, `client-secret` into lowercase words.
fn tokens(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_ascii_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// A secret-like key holding a literal string, anywhere in a layer.
pub fn check_secret_literals(layer: &Node, allowed: &[String]) -> Result<()> {
    let mut errors = Vec::new();
    walk_secrets(layer, "", allowed, &mut errors);
    Error::from_list(errors)
}

fn walk_secrets(node: &Node, path: &str, allowed: &[String], errors: &mut Vec<Error>) {
    match &node.value {
        Value::Map(entries) => {
            for (key, child) in entries.iter() {
                let child_path = join_path(path, key);
                // An empty string holds no secret: charts say "generate one" with it.
                let literal = matches!(&child.value, Value::Str(text) if !text.is_empty());
                if key != "secrets"
                    && literal
                    && is_secret_key(key)
                    && !allowed.contains(&child_path)
                {
                    errors.push(
                        Located::new(
                            child.loc.clone(),
                            child_path.clone(),
                            "a secret-like key holds a literal string (value not shown)",
                        )
                        .hint(format!(
                            "secrets are only referenced: move it under the workload's `secrets:` as \
                             `{{secretRef: {{name: SECRET, key: KEY}}}}` and keep the value in the cluster; \
                             if it is not a secret, add `exceptions: [{{rule: {SECRET_LITERAL}, path: {child_path}, reason: \"…\"}}]`"
                        ))
                        .into(),
                    );
                } else {
                    walk_secrets(child, &child_path, allowed, errors);
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_secrets(item, &join_path(path, &i.to_string()), allowed, errors);
            }
        }
        Value::Str(text) | Value::Sub(text) => {
            if let Some(what) = credential(text) {
                errors.push(
                    Located::new(
                        node.loc.clone(),
                        path,
                        format!("this value looks like {what} (value not shown)"),
                    )
                    .hint("a credential never belongs in a layer file: revoke it, and reference a Kubernetes Secret instead")
                    .into(),
                );
            }
        }
        _ => {}
    }
}

/// What a value looks like when it is a real credential, whatever its key.
pub fn credential(text: &str) -> Option<&'static str> {
    if text.contains("-----BEGIN") && text.contains("PRIVATE KEY") {
        return Some("a private key");
    }
    if let Some(what) = text.lines().find_map(|line| known_token(line, false)) {
        return Some(what);
    }
    // A JWT: three base64url parts, the first an encoded JSON header (`eyJ`).
    let parts: Vec<&str> = text.trim().split('.').collect();
    if parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts.iter().all(|p| {
            p.len() >= 8
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '=')
        })
    {
        return Some("a JSON Web Token");
    }
    None
}

/// Looks for credentials in a rendered artifact; returns (line, what) for each finding,
/// never the value itself.
pub fn scan_artifact(text: &str) -> Vec<(usize, &'static str)> {
    let mut findings = Vec::new();
    // This runs on every line of every artifact: look for the rare marker once.
    let pem = text.contains("PRIVATE KEY");
    for (i, line) in text.lines().enumerate() {
        if let Some(what) = known_token(line, pem) {
            findings.push((i + 1, what));
            continue;
        }
        // `key: value`, `"key": "value"` or `KEY=value` with a secret-like key and a
        // random-looking value. Most values are short: the length test spares the key
        // test on most lines.
        let Some((key, value)) = split_assignment(line) else {
            continue;
        };
        if value.len() >= MIN_SECRET_LEN && is_secret_key(key) && looks_random(value) {
            findings.push((i + 1, "a high-entropy value under a secret-like key"));
        }
    }
    findings
}

/// The key and value of an assignment line, unquoted; `None` for other lines and for
/// values shorter than [`MIN_SECRET_LEN`].
fn split_assignment(line: &str) -> Option<(&str, &str)> {
    let mut line = line.trim();
    while let Some(rest) = line.strip_prefix("- ") {
        line = rest;
    }
    if line.starts_with('#') {
        return None;
    }
    let (key, value) = split_colon_space(line).or_else(|| line.split_once('='))?;
    let value = value.trim();
    // Trimming only shortens: a value already too short to flag needs no more work.
    if value.len() < MIN_SECRET_LEN {
        return None;
    }
    let key = key.trim().trim_matches('"').trim_matches('\'');
    let value = value
        .trim_end_matches(',')
        .trim_matches('"')
        .trim_matches('\'');
    Some((key, value))
}

/// `line.split_once(": ")`, by the byte search `find(char)` does rather than a
/// substring searcher built per line.
fn split_colon_space(line: &str) -> Option<(&str, &str)> {
    let mut from = 0;
    while let Some(found) = line[from..].find(':') {
        let at = from + found;
        if line.as_bytes().get(at + 1) == Some(&b' ') {
            return Some((&line[..at], &line[at + 2..]));
        }
        from = at + 1;
    }
    None
}

/// `pem`: the artifact mentions `PRIVATE KEY` somewhere.
fn known_token(line: &str, pem: bool) -> Option<&'static str> {
    const PREFIXES: &[(&str, usize, &str)] = &[
        ("AKIA", 16, "an AWS access key id"),
        ("ASIA", 16, "an AWS temporary access key id"),
        ("ghp_", 36, "a GitHub token"),
        ("gho_", 36, "a GitHub token"),
        ("ghs_", 36, "a GitHub token"),
        ("github_pat_", 40, "a GitHub token"),
        ("glpat-", 20, "a GitLab token"),
        ("xoxb-", 20, "a Slack token"),
        ("xoxp-", 20, "a Slack token"),
        ("AIza", 35, "a Google API key"),
        ("sk_live_", 20, "a Stripe secret key"),
        ("ya29.", 30, "a Google OAuth access token"),
    ];
    if pem && line.contains("-----BEGIN") && line.contains("PRIVATE KEY") {
        return Some("a private key");
    }
    // One pass over the line; a prefix is tried only where its first byte stands.
    let bytes = line.as_bytes();
    for at in 0..bytes.len() {
        let first = bytes[at];
        if !matches!(first, b'A' | b'g' | b'x' | b's' | b'y') {
            continue;
        }
        if at > 0 && bytes[at - 1].is_ascii_alphanumeric() {
            continue;
        }
        for (prefix, min_len, what) in PREFIXES {
            if prefix.as_bytes()[0] != first || !bytes[at..].starts_with(prefix.as_bytes()) {
                continue;
            }
            let run = bytes[at + prefix.len()..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'-')
                .count();
            if run >= *min_len {
                return Some(what);
            }
        }
    }
    None
}

/// Generated secrets are at least this long; shorter values are never flagged.
const MIN_SECRET_LEN: usize = 16;

/// Long, mixed-class, high-entropy strings: what generated secrets look like.
fn looks_random(value: &str) -> bool {
    if value.len() < MIN_SECRET_LEN || value.contains(' ') || value.starts_with("http") {
        return false;
    }
    let classes = [
        value.chars().any(|c| c.is_ascii_lowercase()),
        value.chars().any(|c| c.is_ascii_uppercase()),
        value.chars().any(|c| c.is_ascii_digit()),
    ];
    if classes.iter().filter(|c| **c).count() < 2 {
        return false;
    }
    shannon_entropy(value) >= 3.5
}

fn shannon_entropy(s: &str) -> f64 {
    let mut counts = std::collections::BTreeMap::new();
    for c in s.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let len = s.chars().count() as f64;
    counts
        .values()
        .map(|&n| {
            let p = n as f64 / len;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_like_keys_are_recognised_in_every_spelling() {
        for key in [
            "password",
            "DATABASE_PASSWORD",
            "clientSecret",
            "client-secret",
            "API_KEY",
            "apiKey",
            "githubToken",
            "aws_secret_access_key",
            "privateKey",
            "credentials",
            "passphrase",
        ] {
            assert!(is_secret_key(key), "{key} is secret-like");
        }
        for key in [
            "LOG_LEVEL",
            "clientId",
            "MAX_UPLOAD_MB",
            "bucket",
            "keyName",
            "tokenizer",
            "secrets",
        ] {
            assert!(!is_secret_key(key), "{key} is not secret-like");
        }
    }

    #[test]
    fn the_secrets_container_key_is_not_itself_a_secret() {
        assert!(is_secret_path("app.env.DATABASE_PASSWORD"));
        assert!(!is_secret_path("app.env.LOG_LEVEL"));
        assert!(!is_secret_path("app.secrets"));
    }

    #[test]
    fn the_artifact_scan_finds_credentials_and_leaves_config_alone() {
        let found = |text: &str| scan_artifact(text);
        assert_eq!(
            found("a: 1\nkey: AKIAABCDEFGHIJKLMNOP\n"),
            [(2, "an AWS access key id")]
        );
        assert_eq!(
            found(&format!("x=ghp_{}\n", "a1".repeat(18))),
            [(1, "a GitHub token")]
        );
        assert_eq!(
            found("-----BEGIN RSA PRIVATE KEY-----\n"),
            [(1, "a private key")]
        );
        assert_eq!(
            found("DB_PASSWORD=q8Zr2LmX7vTk9PwN4sYb\n"),
            [(1, "a high-entropy value under a secret-like key")]
        );
        // Inside a longer word, too short, or not under a secret-like key: no finding.
        assert_eq!(
            found("a: 1\nb: x:y: z\nclient_secret: 'q8Zr2LmX7vTk9PwN4sYb'\n"),
            [(3, "a high-entropy value under a secret-like key")]
        );
        // Sixteen characters is long enough; fifteen is not.
        assert_eq!(
            found("API_TOKEN=q8Zr2LmX7vTk9PwN\n"),
            [(1, "a high-entropy value under a secret-like key")]
        );
        assert!(found("API_TOKEN=q8Zr2LmX7vTk9Pw\n").is_empty());
        assert!(found("name: XAKIAABCDEFGHIJKLMNOP\n").is_empty());
        assert!(found("key: AKIA123\n").is_empty());
        assert!(found("BUCKET_NAME=q8Zr2LmX7vTk9PwN4sYb\n").is_empty());
        assert!(found("secretRef: {name: lakehouse-db, key: password}\n").is_empty());
        assert!(
            found("AUTH_ISSUER_URL=https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Pool\n")
                .is_empty()
        );
    }

    #[test]
    fn a_credential_is_a_private_key_a_known_token_or_a_jwt_and_nothing_near_them() {
        assert_eq!(
            credential("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----"),
            Some("a private key")
        );
        // A certificate is public; "PRIVATE KEY" alone is prose.
        assert_eq!(credential("-----BEGIN CERTIFICATE-----\nMIIB\n"), None);
        assert_eq!(credential("rotate the PRIVATE KEY yearly"), None);
        // A token on any line of a multi-line value.
        assert_eq!(
            credential("first line\nAKIAABCDEFGHIJKLMNOP"),
            Some("an AWS access key id")
        );
        // A JWT: three base64url parts of eight or more, the first a JSON header; every
        // character class of base64url (`-`, `_`, padding `=`) is taken.
        let jwt = "eyJhbGci-iJI_zI1NiJ9.eyJzdWIiOiIxMjM0In0=.c2ln-bmF0_dXJl";
        assert_eq!(credential(jwt), Some("a JSON Web Token"));
        assert_eq!(credential(&format!("  {jwt}\n")), Some("a JSON Web Token"));
        assert_eq!(
            credential("eyJhbGci.eyJzdWIi.c2lnbmF0"),
            Some("a JSON Web Token"),
            "eight characters a part is enough"
        );
        for not_a_jwt in [
            // Two or four parts.
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl.c2lnbmF0dXJl",
            // Not a JSON header first.
            "abJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
            // A part shorter than eight.
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWI.c2lnbmF0dXJl",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF",
            // A character outside base64url, in the first, second or last part.
            "eyJhbGci+iJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIi/iIxMjM0In0.c2lnbmF0dXJl",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0 XJl",
            // A dotted name is not a token.
            "eyJustAName.example.com",
        ] {
            assert_eq!(credential(not_a_jwt), None, "{not_a_jwt}");
        }
    }
}
