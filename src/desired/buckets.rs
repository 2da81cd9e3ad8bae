//! `buckets/<key>.json`: every setting apply converges a bucket to, `name` first, so a
//! lifecycle or tag change shows up in review.
//!
//! Lifecycle: each layer rule becomes one entry per action, with an id strata owns
//! (`strata-<n>-archive`, `strata-<n>-expire`, `strata-<n>-noncurrent`): apply replaces
//! its own rules and keeps every other rule it finds on the bucket.

use std::collections::BTreeMap;

use serde_json::{Value as J, json};

use crate::model::{Bucket, Cloud, Target};

/// The ownership tags on every resource strata manages: `managed-by=strata` and
/// `strata-target`, `strata-env`; after `project.owner`, `project.tags` and `extra`.
pub fn tags(target: &Target, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    if let Some(owner) = &target.config.project.owner {
        tags.insert("owner".to_owned(), owner.clone());
    }
    tags.extend(target.config.project.tags.clone());
    tags.extend(extra.clone());
    tags.insert("managed-by".into(), "strata".into());
    tags.insert("strata-target".into(), target.name.clone());
    tags.insert("strata-env".into(), target.env.clone());
    tags
}

/// The labels for GCP: [`tags`] rewritten to GCS's label rules (lowercase letters,
/// digits, `_` and `-`, 63 characters at most; keys start with a letter): every other
/// character becomes `_`, and a key not starting with a letter gets an `x` in front.
/// `Cost Center: R&D` becomes `cost_center: r_d`.
pub fn labels(target: &Target, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    tags(target, extra)
        .into_iter()
        .map(|(k, v)| (label_key(&k), label_value(&v)))
        .collect()
}

pub fn label_value(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect()
}

fn label_key(text: &str) -> String {
    let value = label_value(text);
    if value.starts_with(|c: char| c.is_ascii_lowercase()) {
        value
    } else {
        format!("x{value}").chars().take(63).collect()
    }
}

/// The id prefix of the lifecycle rules strata owns.
pub const RULE_PREFIX: &str = "strata-";

/// The bucket document.
pub fn document(target: &Target, key: &str, bucket: &Bucket) -> J {
    let name = &target.names.buckets[key].name;
    let archive_class = match target.cloud {
        Cloud::Aws => "GLACIER",
        Cloud::Gcp => "ARCHIVE",
    };
    let mut lifecycle = Vec::new();
    for (n, rule) in bucket.lifecycle.iter().enumerate() {
        let with_prefix = |mut v: J| {
            if let Some(prefix) = &rule.prefix {
                v["prefix"] = json!(prefix);
            }
            v
        };
        if let Some(days) = rule.archive_after_days {
            lifecycle.push(with_prefix(json!({
                "id": format!("{RULE_PREFIX}{n}-archive"),
                "afterDays": days,
                "storageClass": archive_class,
            })));
        }
        if let Some(days) = rule.expire_after_days {
            lifecycle.push(with_prefix(json!({
                "id": format!("{RULE_PREFIX}{n}-expire"),
                "expireAfterDays": days,
            })));
        }
        if let Some(days) = rule.noncurrent_expire_after_days {
            lifecycle.push(with_prefix(json!({
                "id": format!("{RULE_PREFIX}{n}-noncurrent"),
                "noncurrentExpireAfterDays": days,
            })));
        }
    }
    let mut doc = json!({"name": name, "key": key, "cloud": target.cloud});
    match target.cloud {
        Cloud::Aws => doc["region"] = json!(target.aws().region),
        Cloud::Gcp => doc["location"] = json!(target.gcp().location),
    }
    doc["versioning"] = json!(bucket.versioning);
    doc["encryption"] = json!(match (bucket.encryption, target.cloud) {
        (false, _) => "none",
        (true, Cloud::Aws) => "AES256",
        (true, Cloud::Gcp) => "google-managed",
    });
    doc["publicAccessBlock"] = json!(bucket.public_access_block);
    match target.cloud {
        Cloud::Aws => {
            doc["tlsOnly"] = json!(bucket.tls_only);
            doc["requireSse"] = json!(bucket.require_sse);
        }
        Cloud::Gcp => doc["uniformBucketLevelAccess"] = json!(true),
    }
    doc["lifecycle"] = J::Array(lifecycle);
    doc["tags"] = json!(match target.cloud {
        Cloud::Aws => tags(target, &bucket.tags),
        Cloud::Gcp => labels(target, &bucket.tags),
    });
    doc["retain"] = json!(bucket.retain);
    doc["adopt"] = json!(bucket.adopt);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_keep_what_gcs_allows_and_replace_the_rest() {
        assert_eq!(label_value("dev-gcp"), "dev-gcp");
        assert_eq!(label_value("Data_Set-2"), "data_set-2");
        assert_eq!(label_value("R&D a.b/ü"), "r_d_a_b__");
        assert_eq!(label_value(&"x".repeat(70)).len(), 63);
        assert_eq!(label_key("Cost Center"), "cost_center");
        assert_eq!(label_key("1st"), "x1st");
        assert_eq!(label_key(&"9".repeat(70)).len(), 63);
    }
}
