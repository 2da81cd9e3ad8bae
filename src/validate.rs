//! Semantic rules: what must hold for a target beyond its types.
//!
//! - **Secrets** are only ever references: a secret-like key (`password`, `token`,
//!   `clientSecret`, `API_KEY`, …) holding a literal string is an error, reported
//!   without the value ([`check_secret_literals`], run before typing so that no type
//!   error can echo the value either); rendered artifacts are scanned for anything that
//!   looks like a credential ([`scan_artifact`]).
//! - **Names** obey their provider's rules (S3, GCS, IAM, Kubernetes, GCP).
//! - **Production policy**: for environments named `prod…`, versioning, encryption,
//!   the public access block, TLS-only access, SSE on upload and ingress TLS are on, and
//!   object delete is not granted. Each rule has a name; an entry under `exceptions:`
//!   with that name and a reason relaxes it, and the exception is recorded in the output.
//! - **IAM documents** contain no wildcard, only known actions and well-formed ARNs.
//!
//! Every problem is collected, so one run reports them all, each at its line.

use crate::config::{Node, Value, merge::join_path};
use crate::error::{Error, Located, Result};
use crate::model::{AuthProvider, Cloud, Target};

/// Policy rules for production environments, by the name an exception uses.
pub const PROD_RULES: &[(&str, &str)] = &[
    ("prod.versioning", "bucket.versioning must be true"),
    ("prod.encryption", "bucket.encryption must be true"),
    (
        "prod.public-access-block",
        "bucket.publicAccessBlock must be true",
    ),
    ("prod.tls-only", "bucket.tlsOnly must be true"),
    ("prod.require-sse", "bucket.requireSse must be true"),
    ("prod.no-delete", "bucket.allowDelete must be false"),
    ("prod.ingress-tls", "ingress.tls must be true"),
];

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
pub fn check_secret_literals(layer: &Node) -> Result<()> {
    let mut errors = Vec::new();
    walk_secrets(layer, "", &mut errors);
    Error::from_list(errors)
}

fn walk_secrets(node: &Node, path: &str, errors: &mut Vec<Error>) {
    match &node.value {
        Value::Map(entries) => {
            for (key, child) in entries {
                let child_path = join_path(path, key);
                if key != "secrets"
                    && is_secret_key(key)
                    && matches!(child.value, Value::Str(_) | Value::Int(_) | Value::Float(_))
                {
                    errors.push(
                        Located::new(child.loc.clone(), child_path.clone(), "a secret-like key holds a literal value (not shown)")
                            .hint(
                                "secrets are only referenced: write `{secretRef: {name: SECRET, key: KEY}}` \
                                 (for app variables, under app.secrets) and keep the value in the cluster",
                            )
                            .into(),
                    );
                } else {
                    walk_secrets(child, &child_path, errors);
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_secrets(item, &join_path(path, &i.to_string()), errors);
            }
        }
        _ => {}
    }
}

/// All semantic rules for one target.
pub fn check_target(target: &Target) -> Result<()> {
    let mut errors: Vec<Error> = Vec::new();
    let mut fail = |path: &str, message: String, hint: &str| {
        let mut e = Located::new(target.loc_of(path), path, message);
        if !hint.is_empty() {
            e = e.hint(hint);
        }
        errors.push(e.into());
    };
    let c = &target.config;

    // Exceptions must name a real rule and say why.
    for (i, exception) in c.exceptions.iter().enumerate() {
        let path = format!("exceptions.{i}.rule");
        if !PROD_RULES.iter().any(|(rule, _)| *rule == exception.rule) {
            let hint = crate::suggest::closest(&exception.rule, PROD_RULES.iter().map(|(r, _)| *r))
                .map(|close| format!("did you mean `{close}`?"))
                .unwrap_or_else(|| {
                    format!(
                        "known rules: {}",
                        PROD_RULES
                            .iter()
                            .map(|(r, _)| *r)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
            fail(
                &path,
                format!("unknown policy rule `{}`", exception.rule),
                &hint,
            );
        }
        if exception.reason.trim().len() < 10 {
            fail(
                &format!("exceptions.{i}.reason"),
                "an exception needs a reason a reviewer can judge".into(),
                "explain why the rule does not apply, in a sentence",
            );
        }
    }

    if is_production(&target.env) {
        let b = &c.bucket;
        let checks = [
            ("prod.versioning", "bucket.versioning", b.versioning),
            ("prod.encryption", "bucket.encryption", b.encryption),
            (
                "prod.public-access-block",
                "bucket.publicAccessBlock",
                b.public_access_block,
            ),
            ("prod.tls-only", "bucket.tlsOnly", b.tls_only),
            ("prod.require-sse", "bucket.requireSse", b.require_sse),
            ("prod.no-delete", "bucket.allowDelete", !b.allow_delete),
            ("prod.ingress-tls", "ingress.tls", c.ingress.tls),
        ];
        for (rule, path, ok) in checks {
            if !ok && target.exception(rule).is_none() {
                let what = PROD_RULES
                    .iter()
                    .find(|(r, _)| *r == rule)
                    .map_or("", |(_, w)| w);
                fail(
                    path,
                    format!("production policy `{rule}`: {what} in {}", target.env),
                    &format!(
                        "fix the value, or add an exception: `exceptions: [{{rule: {rule}, reason: \"…\"}}]`"
                    ),
                );
            }
        }
    }

    // Names, each by its provider's rules.
    let n = &target.names;
    let bucket_rule = match target.cloud {
        Cloud::Aws => s3_bucket_name(&n.bucket),
        Cloud::Gcp => gcs_bucket_name(&n.bucket),
    };
    if let Err(why) = bucket_rule {
        let overridden = target.config.names.bucket.is_some();
        let (what, hint) = if overridden {
            (
                "bucket name",
                "fix names.bucket, or remove it to use the convention",
            )
        } else {
            (
                "derived bucket name",
                "set names.bucket, or shorten the inputs it is made from",
            )
        };
        fail(
            &derived_input(target, "bucket"),
            format!(
                "{what} `{}` is invalid for {}: {why}",
                n.bucket, target.cloud
            ),
            hint,
        );
    }
    if let Some(policy) = &n.policy
        && let Err(why) = iam_name(policy, 128)
    {
        fail(
            &derived_input(target, "policy"),
            format!("IAM policy name `{policy}` is invalid: {why}"),
            "set names.policy",
        );
    }
    if let Some(role) = &n.role
        && let Err(why) = iam_name(role, 64)
    {
        fail(
            &derived_input(target, "role"),
            format!("IAM role name `{role}` is invalid: {why}"),
            "set names.role",
        );
    }
    if let Err(why) = dns_label(&n.namespace, 63) {
        fail(
            "project.namespace",
            format!("namespace `{}` is invalid: {why}", n.namespace),
            "",
        );
    }
    if let Err(why) = dns_label(&n.service_account, 253) {
        fail(
            &derived_input(target, "serviceAccount"),
            format!(
                "service account name `{}` is invalid: {why}",
                n.service_account
            ),
            "",
        );
    }
    if let Some(gsa) = &n.gcp_service_account {
        let id = gsa.split('@').next().unwrap_or_default();
        if id.len() < 6 || id.len() > 30 || dns_label(id, 30).is_err() {
            fail(
                &derived_input(target, "gcpServiceAccount"),
                format!(
                    "Google service account id `{id}` must be 6-30 lowercase letters, digits or '-'"
                ),
                "set names.gcpServiceAccount",
            );
        }
    }
    match target.cloud {
        Cloud::Aws => {
            let aws = target.aws();
            if aws.account_id.len() != 12 || !aws.account_id.chars().all(|c| c.is_ascii_digit()) {
                fail(
                    "aws.accountId",
                    "an AWS account id is 12 digits (quote it so YAML keeps leading zeros)".into(),
                    "",
                );
            }
            if !aws_region(&aws.region) {
                fail(
                    "aws.region",
                    format!("`{}` does not look like an AWS region", aws.region),
                    "e.g. us-east-1, eu-west-1",
                );
            }
            if target.auth_provider() == AuthProvider::Cognito && c.auth.cognito.is_none() {
                fail(
                    "auth",
                    "the cognito provider needs `auth.cognito` (userPoolId, domain)".into(),
                    "",
                );
            }
        }
        Cloud::Gcp => {
            let gcp = target.gcp();
            if let Err(why) = gcp_project_id(&gcp.project_id) {
                fail(
                    "gcp.projectId",
                    format!("`{}` is not a valid GCP project id: {why}", gcp.project_id),
                    "",
                );
            }
            if target.auth_provider() == AuthProvider::Cognito {
                fail(
                    "auth.provider",
                    "cognito is an AWS service; use google or auto on gcp".into(),
                    "",
                );
            }
        }
    }
    for (component, spec) in [("backend", &c.app.backend), ("frontend", &c.app.frontend)] {
        if spec.tag.is_empty() || spec.tag == "latest" {
            fail(
                &format!("app.{component}.tag"),
                "image tags must be pinned (not empty, not `latest`)".into(),
                "use the release tag, e.g. \"2.4.1\"",
            );
        }
    }
    if let Err(why) = dns_name(&c.ingress.host) {
        fail(
            "ingress.host",
            format!("`{}` is not a valid host name: {why}", c.ingress.host),
            "",
        );
    }
    for key in c.app.env.keys() {
        if crate::render::DERIVED_ENV.contains(&key.as_str()) || c.app.secrets.contains_key(key) {
            fail(
                &format!("app.env.{key}"),
                format!(
                    "`{key}` is set by strata (or is already a secret variable); a second definition would hide one of them"
                ),
                "remove it here; `strata explain TARGET names.bucket` and friends show where derived values come from",
            );
        }
    }
    for key in c.app.env.keys().chain(c.app.secrets.keys()) {
        if !env_var_name(key) {
            let section = if c.app.env.contains_key(key) {
                "env"
            } else {
                "secrets"
            };
            fail(
                &format!("app.{section}.{key}"),
                format!("`{key}` is not a valid environment variable name"),
                "use letters, digits and '_', not starting with a digit",
            );
        }
    }

    // The generated access document must be sound whatever the config says.
    let doc = crate::iam::document(target);
    for problem in crate::iam::check(target, &doc) {
        fail("bucket", format!("generated IAM document: {problem}"), "");
    }
    Error::from_list(errors)
}

/// Where to point for a derived name: the override if set, else its first input.
fn derived_input(target: &Target, name: &str) -> String {
    target
        .derivations
        .iter()
        .find(|d| d.name == name)
        .and_then(|d| d.inputs.first().cloned())
        .unwrap_or_else(|| format!("names.{name}"))
}

pub fn is_production(env: &str) -> bool {
    env.starts_with("prod")
}

/// The rules S3, GCS and Kubernetes names share: a length range, lowercase letters and
/// digits plus the `extra` punctuation, and a letter or digit at both ends.
fn lowercase_name(
    name: &str,
    min: usize,
    max: usize,
    extra: &[char],
) -> std::result::Result<(), String> {
    if !(min..=max).contains(&name.len()) {
        return Err(format!(
            "must be {min} to {max} characters, is {}",
            name.len()
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(&c))
    {
        let mut allowed = vec!["lowercase letters".to_owned(), "digits".to_owned()];
        allowed.extend(extra.iter().map(|c| format!("'{c}'")));
        let last = allowed.pop().unwrap_or_default();
        return Err(format!(
            "only {} and {last} are allowed",
            allowed.join(", ")
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Err("must begin and end with a letter or digit".into());
    }
    Ok(())
}

fn looks_like_ipv4(name: &str) -> bool {
    name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok())
}

/// S3 general purpose bucket naming rules.
pub fn s3_bucket_name(name: &str) -> std::result::Result<(), String> {
    lowercase_name(name, 3, 63, &['-', '.'])?;
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err("must not contain '..', '.-' or '-.'".into());
    }
    if looks_like_ipv4(name) {
        return Err("must not look like an IP address".into());
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Err(format!("must not start with `{prefix}`"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return Err(format!("must not end with `{suffix}`"));
        }
    }
    Ok(())
}

/// Cloud Storage bucket naming rules (names without dots).
pub fn gcs_bucket_name(name: &str) -> std::result::Result<(), String> {
    lowercase_name(name, 3, 63, &['-', '_', '.'])?;
    if name.starts_with("goog") || name.contains("google") || name.contains("g00gle") {
        return Err("must not begin with `goog` or contain `google`".into());
    }
    if looks_like_ipv4(name) {
        return Err("must not look like an IP address".into());
    }
    Ok(())
}

/// IAM policy and role names: `[A-Za-z0-9+=,.@_-]`, up to `max` characters.
pub fn iam_name(name: &str, max: usize) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > max {
        return Err(format!("must be 1 to {max} characters, is {}", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "+=,.@_-".contains(*c)))
    {
        return Err(format!(
            "the character {c:?} is not allowed (letters, digits and +=,.@_- are)"
        ));
    }
    Ok(())
}

/// A Kubernetes DNS-1123 label (or subdomain-like name when `max` > 63).
pub fn dns_label(name: &str, max: usize) -> std::result::Result<(), String> {
    let extra: &[char] = if max > 63 { &['-', '.'] } else { &['-'] };
    lowercase_name(name, 1, max, extra)
}

fn dns_name(host: &str) -> std::result::Result<(), String> {
    if host.len() > 253 || !host.contains('.') {
        return Err("expected a fully qualified host name".into());
    }
    host.split('.').try_for_each(|label| dns_label(label, 63))
}

fn aws_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

fn gcp_project_id(id: &str) -> std::result::Result<(), String> {
    if !(6..=30).contains(&id.len()) {
        return Err("must be 6 to 30 characters".into());
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter".into());
    }
    dns_label(id, 30)
}

fn env_var_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
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
    fn provider_name_rules() {
        assert_eq!(s3_bucket_name("lakehouse-prod-db-333333333333"), Ok(()));
        assert_eq!(
            s3_bucket_name("ab"),
            Err("must be 3 to 63 characters, is 2".into())
        );
        assert_eq!(
            s3_bucket_name("Bad_Bucket"),
            Err("only lowercase letters, digits, '-' and '.' are allowed".into())
        );
        assert_eq!(
            s3_bucket_name("-abc"),
            Err("must begin and end with a letter or digit".into())
        );
        assert_eq!(
            s3_bucket_name("a..b"),
            Err("must not contain '..', '.-' or '-.'".into())
        );
        assert_eq!(
            s3_bucket_name("192.168.1.1"),
            Err("must not look like an IP address".into())
        );
        assert_eq!(
            s3_bucket_name("xn--abc"),
            Err("must not start with `xn--`".into())
        );
        assert_eq!(
            s3_bucket_name("data-s3alias"),
            Err("must not end with `-s3alias`".into())
        );
        assert_eq!(gcs_bucket_name("proj-4821_data"), Ok(()));
        assert_eq!(
            gcs_bucket_name("Bad"),
            Err("only lowercase letters, digits, '-', '_' and '.' are allowed".into())
        );
        assert_eq!(
            gcs_bucket_name("my-google-data"),
            Err("must not begin with `goog` or contain `google`".into())
        );
        assert_eq!(dns_label("lakehouse-sa", 63), Ok(()));
        assert_eq!(
            dns_label("a.b", 63),
            Err("only lowercase letters, digits and '-' are allowed".into())
        );
        assert_eq!(dns_label("a.b", 253), Ok(()));
        assert_eq!(
            dns_label("", 63),
            Err("must be 1 to 63 characters, is 0".into())
        );
        assert_eq!(
            iam_name("Lakehouse_lakehouse-sa_lakehouse-prod", 64),
            Ok(())
        );
        assert!(iam_name("has space", 64).is_err());
    }
}
