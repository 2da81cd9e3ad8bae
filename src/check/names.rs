//! Cloud and Kubernetes naming rules, each as its provider documents it.

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

pub fn dns_name(host: &str) -> std::result::Result<(), String> {
    if host.len() > 253 {
        return Err(format!(
            "a host name is at most 253 characters, is {}",
            host.len()
        ));
    }
    if !host.contains('.') {
        return Err("expected a fully qualified host name".into());
    }
    host.split('.').try_for_each(|label| dns_label(label, 63))
}

pub fn aws_region(region: &str) -> bool {
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

pub fn gcp_project_id(id: &str) -> std::result::Result<(), String> {
    if !(6..=30).contains(&id.len()) {
        return Err("must be 6 to 30 characters".into());
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter".into());
    }
    dns_label(id, 30)
}

pub fn env_var_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Google service-account id: 6 to 30 characters, a lowercase letter first, then
/// lowercase letters, digits and `-`, not ending with `-`.
pub fn gsa_id(id: &str) -> std::result::Result<(), String> {
    if !(6..=30).contains(&id.len()) {
        return Err(format!("must be 6 to 30 characters, is {}", id.len()));
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter".into());
    }
    lowercase_name(id, 6, 30, &['-'])
}

/// The names of one target, each by its provider's rules, and no two resources of a
/// kind under one name.
/// A key of `buckets`, `workloads` or `releases` names files of the output
/// (`buckets/<key>.json`, `iam/<key>.policy.json`, `releases/<key>.values.yaml`) and is
/// a segment of key paths (`buckets.<key>.name`): letters, digits, `_` and `-`, a letter
/// or digit first, at most 63. Anything else (a `/`, a `..`, a `.`) could name a file
/// outside its folder or a path no reference can spell.
pub fn section_key(key: &str) -> std::result::Result<(), String> {
    let mut chars = key.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !first_ok || !rest_ok {
        return Err(
            "only letters, digits, '_' and '-' are allowed, a letter or digit first".into(),
        );
    }
    if key.len() > 63 {
        return Err(format!("at most 63 characters, is {}", key.len()));
    }
    Ok(())
}

pub(crate) fn target(f: &mut super::Findings, desired: &crate::desired::Desired) {
    use crate::model::Cloud;
    let t = f.target;
    for (section, kind, keys) in [
        (
            "buckets",
            "bucket",
            t.config.buckets.keys().collect::<Vec<_>>(),
        ),
        ("workloads", "workload", t.config.workloads.keys().collect()),
        ("releases", "release", t.config.releases.keys().collect()),
    ] {
        for key in keys {
            if let Err(why) = section_key(key) {
                let loc = t
                    .merged
                    .tree
                    .lookup([section, key.as_str()])
                    .map_or_else(|| t.loc_of(section), |n| n.key_loc.clone());
                f.push(super::Finding {
                    rule: None,
                    path: format!("{section}.{key}"),
                    loc,
                    message: format!("{kind} key `{key}` is not a name: {why}"),
                    hint: format!(
                        "the key names its files ({section}/<key>…) and its key paths; rename it"
                    ),
                });
            }
        }
    }
    let mut seen: std::collections::BTreeMap<(String, String), String> = Default::default();
    let mut unique = |f: &mut super::Findings, kind: &str, name: &str, path: String| {
        let key = (kind.to_owned(), name.to_owned());
        if let Some(first) = seen.get(&key) {
            let first_loc = t.key_loc_of(first);
            f.at(
                None,
                &path,
                format!("{kind} `{name}` is also the name of {first} ({first_loc})"),
                "two resources cannot share one cloud name: set a different name for one of them",
            );
        } else {
            seen.insert(key, path);
        }
    };
    for (key, b) in &t.names.buckets {
        let path = format!("buckets.{key}.name");
        let rule = match t.cloud {
            Cloud::Aws => s3_bucket_name(&b.name),
            Cloud::Gcp => gcs_bucket_name(&b.name),
        };
        if let Err(why) = rule {
            let set = t.config.buckets[key].name.is_some();
            let (what, hint) = if set {
                ("bucket name", "fix the name".to_owned())
            } else {
                (
                    "derived bucket name",
                    format!(
                        "set `buckets.{key}.name`, or shorten project.name, the environment or the key"
                    ),
                )
            };
            let at = if set {
                path.clone()
            } else {
                format!("buckets.{key}")
            };
            f.at(
                None,
                &at,
                format!("{what} `{}` is invalid for {}: {why}", b.name, t.cloud),
                &hint,
            );
        }
        unique(f, "bucket", &b.name, format!("buckets.{key}"));
    }
    if let Err(why) = dns_label(&t.names.namespace, 63) {
        f.at(
            None,
            "kube.namespace",
            format!("namespace `{}` is invalid: {why}", t.names.namespace),
            "",
        );
    }
    for w in &desired.workloads {
        let names = &t.names.workloads[&w.key];
        let base = format!("workloads.{}", w.key);
        if let Err(why) = dns_label(&names.service_account, 253) {
            f.at(
                None,
                &format!("{base}.serviceAccount"),
                format!(
                    "service account name `{}` is invalid: {why}",
                    names.service_account
                ),
                "",
            );
        }
        if let Err(why) = dns_label(&names.namespace, 63) {
            f.at(
                None,
                &format!("{base}.namespace"),
                format!("namespace `{}` is invalid: {why}", names.namespace),
                "",
            );
        }
        unique(
            f,
            "service account",
            &format!("{}/{}", names.namespace, names.service_account),
            base.clone(),
        );
        if let Some(role) = &names.role {
            if let Err(why) = iam_name(role, 64) {
                f.at(
                    None,
                    &base,
                    format!("IAM role name `{role}` is invalid: {why}"),
                    &format!("set `{base}.iamRole` to a shorter name"),
                );
            }
            unique(f, "IAM role", role, base.clone());
        }
        if let Some(id) = &names.gsa_id {
            if let Err(why) = gsa_id(id) {
                f.at(
                    None,
                    &base,
                    format!("Google service account id `{id}` is invalid: {why}"),
                    &format!("set `{base}.gcpServiceAccount` to an id of 6-30 lowercase letters, digits and '-'"),
                );
            }
            unique(f, "Google service account", id, base.clone());
        }
        for name in w.env.keys().chain(w.secrets.keys()) {
            let section = if w.env.contains_key(name) {
                "env"
            } else {
                "secrets"
            };
            if !env_var_name(name) {
                // Found by its segments: a name may be empty or hold a `.`, which a
                // dotted path would read as another key.
                let segments = base.split('.').chain([section, name.as_str()]);
                let loc = f
                    .target
                    .merged
                    .tree
                    .lookup(segments)
                    .map(|node| node.loc.clone());
                f.push(super::Finding {
                    rule: None,
                    path: format!("{base}.{section}.{name}"),
                    loc: loc.unwrap_or_else(|| f.target.loc_of(&format!("{base}.{section}"))),
                    message: format!("`{name}` is not a valid environment variable name"),
                    hint: "use letters, digits and '_', not starting with a digit".to_owned(),
                });
            }
        }
        for name in w.secrets.keys().filter(|n| w.env.contains_key(*n)) {
            f.at(
                None,
                &format!("{base}.secrets.{name}"),
                format!("`{name}` is both a plain and a secret variable; one would hide the other"),
                "remove one of them",
            );
        }
    }
    for r in &desired.releases {
        if let Err(why) = dns_label(&r.namespace, 63) {
            f.at(
                None,
                &format!("releases.{}.namespace", r.key),
                format!("namespace `{}` is invalid: {why}", r.namespace),
                "",
            );
        }
        if let Err(why) = dns_label(&r.key, 53) {
            f.at(
                None,
                &format!("releases.{}", r.key),
                format!("release name `{}` is invalid: {why}", r.key),
                "Helm release names are lowercase DNS labels of at most 53 characters",
            );
        }
        if r.key == "platform" {
            f.at(
                None,
                "releases.platform",
                "`platform` is the release strata installs first; choose another name".into(),
                "",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for bad in ["a..b", "a.-b", "a-.b"] {
            assert_eq!(
                s3_bucket_name(bad),
                Err("must not contain '..', '.-' or '-.'".into()),
                "{bad}"
            );
        }
        assert_eq!(
            s3_bucket_name("192.168.1.1"),
            Err("must not look like an IP address".into())
        );
        // Four labels that are not all numbers, or numbers that are not four labels (or
        // not bytes), are names.
        assert_eq!(s3_bucket_name("logs.eu.data.v1"), Ok(()));
        assert_eq!(s3_bucket_name("10.20.30"), Ok(()));
        assert_eq!(s3_bucket_name("10.20.30.256"), Ok(()));
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
        // The length limit is inclusive, and empty is too short.
        assert_eq!(iam_name(&"a".repeat(64), 64), Ok(()));
        assert_eq!(
            iam_name(&"a".repeat(65), 64),
            Err("must be 1 to 64 characters, is 65".into())
        );
        assert_eq!(
            iam_name("", 64),
            Err("must be 1 to 64 characters, is 0".into())
        );
        assert_eq!(iam_name("a+=,.@_-Z9", 64), Ok(()));
        assert_eq!(
            iam_name("a/b", 64),
            Err("the character '/' is not allowed (letters, digits and +=,.@_- are)".into())
        );
    }

    #[test]
    fn regions_hosts_projects_and_env_names() {
        for good in ["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1"] {
            assert!(aws_region(good), "{good}");
        }
        for bad in [
            "mars-1",
            "us-east",
            "us--1",
            "US-east-1",
            "us-east-one",
            "us-east-1-",
        ] {
            assert!(!aws_region(bad), "{bad}");
        }
        assert_eq!(dns_name("app.example.com"), Ok(()));
        assert!(dns_name("localhost").is_err());
        assert!(dns_name(&format!("{}.com", "a".repeat(250))).is_err());
        for good in ["raw", "raw_data", "raw-2", "9lives", &"k".repeat(63)] {
            assert_eq!(section_key(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "a.b",
            "-a",
            "_a",
            "a b",
            "ü",
            &"k".repeat(64),
        ] {
            assert!(section_key(bad).is_err(), "{bad}");
        }
        // At most 253 characters in all, each label at most 63.
        let label = "a".repeat(63);
        let host = |last: usize| format!("{label}.{label}.{label}.{}", "b".repeat(last));
        assert_eq!(host(61).len(), 253);
        assert_eq!(dns_name(&host(61)), Ok(()));
        assert_eq!(
            dns_name(&host(62)),
            Err("a host name is at most 253 characters, is 254".into())
        );
        assert_eq!(
            dns_name("localhost"),
            Err("expected a fully qualified host name".into())
        );
        assert!(dns_name("bad_label.example.com").is_err());
        // A label may be 63 characters, not 64; a dot is allowed only above 63.
        assert_eq!(dns_label(&"a".repeat(63), 63), Ok(()));
        assert!(dns_label(&"a".repeat(64), 63).is_err());
        assert!(dns_label("a.b", 64).is_ok());
        assert_eq!(gcp_project_id("telemetry-dev-7305"), Ok(()));
        assert_eq!(gcp_project_id("abcdef"), Ok(()));
        assert_eq!(gcp_project_id(&"a".repeat(30)), Ok(()));
        assert_eq!(
            gcp_project_id("abcde"),
            Err("must be 6 to 30 characters".into())
        );
        assert_eq!(
            gcp_project_id(&"a".repeat(31)),
            Err("must be 6 to 30 characters".into())
        );
        assert_eq!(
            gcp_project_id("7telemetry"),
            Err("must start with a lowercase letter".into())
        );
        assert!(gcp_project_id("telemetry_dev").is_err());
        assert!(env_var_name("LOG_LEVEL"));
        assert!(env_var_name("_x9"));
        assert!(!env_var_name(""));
        assert!(!env_var_name("9LIVES"));
        assert!(!env_var_name("LOG-LEVEL"));
    }

    #[test]
    fn google_service_account_ids() {
        assert_eq!(gsa_id("lakehouse-api"), Ok(()));
        assert_eq!(
            gsa_id("short"),
            Err("must be 6 to 30 characters, is 5".into())
        );
        assert_eq!(
            gsa_id("9lakehouse"),
            Err("must start with a lowercase letter".into())
        );
        assert_eq!(
            gsa_id("lakehouse-"),
            Err("must begin and end with a letter or digit".into())
        );
        assert!(gsa_id(&"a".repeat(31)).is_err());
        assert_eq!(gsa_id(&"a".repeat(30)), Ok(()));
        assert_eq!(gsa_id("abcdef"), Ok(()));
        assert!(gsa_id("lakehouse_api").is_err());
    }
}
