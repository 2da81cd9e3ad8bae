//! The access documents strata generates: the AWS IAM policy for the bucket and the
//! GCS bucket IAM bindings. Built as data from the typed target (never from text), so
//! that they can be checked rule by rule before a template prints them.

use serde_json::{Value, json};

use crate::model::{Cloud, Target, partition};

/// S3 actions a generated policy may contain. Anything else is a bug in strata.
pub const KNOWN_S3_ACTIONS: &[&str] = &[
    "s3:AbortMultipartUpload",
    "s3:DeleteObject",
    "s3:GetBucketLocation",
    "s3:GetObject",
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:ListMultipartUploadParts",
    "s3:PutObject",
];

/// GCS roles a generated binding may grant.
pub const KNOWN_STORAGE_ROLES: &[&str] = &[
    "roles/storage.objectCreator",
    "roles/storage.objectUser",
    "roles/storage.objectViewer",
];

/// The least-privilege IAM policy that lets the application use its bucket.
pub fn aws_policy(target: &Target) -> Value {
    let bucket_arn = format!(
        "arn:{}:s3:::{}",
        partition(&target.aws().region),
        target.names.bucket
    );
    let objects_arn = format!("{bucket_arn}/*");
    let bucket = &target.config.bucket;
    let mut object_actions = vec!["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"];
    if bucket.allow_delete {
        object_actions.insert(1, "s3:DeleteObject");
    }
    let mut statements = vec![
        json!({
            "Sid": "ListBucket",
            "Effect": "Allow",
            "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
            "Resource": [bucket_arn],
        }),
        json!({
            "Sid": "ReadWriteObjects",
            "Effect": "Allow",
            "Action": object_actions,
            "Resource": [objects_arn],
        }),
    ];
    if bucket.require_sse {
        statements.push(json!({
            "Sid": "DenyUnencryptedUploads",
            "Effect": "Deny",
            "Action": ["s3:PutObject"],
            "Resource": [objects_arn],
            "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}},
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The bucket IAM bindings that let the application's Google service account use the
/// bucket: object user where delete is allowed, creator + viewer where it is not.
pub fn gcp_bindings(target: &Target) -> Value {
    let member = format!(
        "serviceAccount:{}",
        target
            .names
            .gcp_service_account
            .as_deref()
            .unwrap_or_default()
    );
    let roles: &[&str] = if target.config.bucket.allow_delete {
        &["roles/storage.objectUser"]
    } else {
        &["roles/storage.objectCreator", "roles/storage.objectViewer"]
    };
    let bindings: Vec<Value> = roles
        .iter()
        .map(|role| json!({"role": role, "members": [member]}))
        .collect();
    json!({"bucket": target.names.bucket, "bindings": bindings})
}

/// The bucket as apply will converge it, for review: every setting apply writes.
pub fn bucket_spec(target: &Target) -> Value {
    let b = &target.config.bucket;
    let archive_class = match target.cloud {
        Cloud::Aws => "GLACIER",
        Cloud::Gcp => "ARCHIVE",
    };
    let lifecycle: Vec<Value> = b
        .lifecycle
        .glacier_after_days
        .map(|days| json!({"id": "strata-archive", "afterDays": days, "storageClass": archive_class}))
        .into_iter()
        .collect();
    let (place_key, place) = match target.cloud {
        Cloud::Aws => ("region", target.aws().region.clone()),
        Cloud::Gcp => ("location", target.gcp().location.clone()),
    };
    let mut spec = json!({
        "name": target.names.bucket,
        "cloud": target.cloud,
        place_key: place,
        "versioning": b.versioning,
        "encryption": if b.encryption { match target.cloud { Cloud::Aws => "AES256", Cloud::Gcp => "google-managed" } } else { "none" },
        "publicAccessBlock": b.public_access_block,
        "lifecycle": lifecycle,
        // Exactly what apply writes: the appliers' own functions, not a copy.
        "tags": match target.cloud {
            Cloud::Aws => crate::apply::aws::desired_tags(target, &b.tags),
            Cloud::Gcp => crate::apply::gcs::desired::labels(target),
        },
    });
    if target.cloud == Cloud::Aws {
        spec["tlsOnly"] = json!(b.tls_only);
    } else {
        spec["uniformBucketLevelAccess"] = json!(true);
    }
    spec
}

/// The document for the target's cloud.
pub fn document(target: &Target) -> Value {
    match target.cloud {
        Cloud::Aws => aws_policy(target),
        Cloud::Gcp => gcp_bindings(target),
    }
}

/// Problems with a generated document; empty when it is sound.
pub fn check(target: &Target, doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    match target.cloud {
        Cloud::Aws => {
            for statement in doc["Statement"].as_array().into_iter().flatten() {
                let sid = statement["Sid"].as_str().unwrap_or("?");
                for action in strings(&statement["Action"]) {
                    if action.contains('*') {
                        problems.push(format!("statement {sid}: wildcard action `{action}`"));
                    } else if !KNOWN_S3_ACTIONS.contains(&action) {
                        problems.push(format!("statement {sid}: unknown S3 action `{action}`"));
                    }
                }
                for resource in strings(&statement["Resource"]) {
                    if !well_formed_s3_arn(resource) {
                        problems.push(format!(
                            "statement {sid}: malformed or wildcard resource `{resource}`"
                        ));
                    }
                }
            }
        }
        Cloud::Gcp => {
            for binding in doc["bindings"].as_array().into_iter().flatten() {
                let role = binding["role"].as_str().unwrap_or("");
                if !KNOWN_STORAGE_ROLES.contains(&role) {
                    problems.push(format!(
                        "binding grants `{role}`, which is not a storage object role"
                    ));
                }
                for member in strings(&binding["members"]) {
                    if !member.starts_with("serviceAccount:") || !member.contains('@') {
                        problems.push(format!(
                            "binding member `{member}` is not a service account"
                        ));
                    }
                }
            }
        }
    }
    problems
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// `arn:<partition>:s3:::<bucket>` or `…/*` for its objects; no other wildcard.
fn well_formed_s3_arn(arn: &str) -> bool {
    let Some(rest) = ["arn:aws:s3:::", "arn:aws-cn:s3:::", "arn:aws-us-gov:s3:::"]
        .iter()
        .find_map(|p| arn.strip_prefix(p))
    else {
        return false;
    };
    let bucket = rest.strip_suffix("/*").unwrap_or(rest);
    !bucket.is_empty() && !bucket.contains('*') && !bucket.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::Project;

    fn target(name: &str) -> Target {
        let loaded = crate::Loaded::load(Project::Embedded).unwrap();
        loaded.targets(&[name.to_owned()]).unwrap().remove(0)
    }

    #[test]
    fn generated_documents_pass_the_checks() {
        for name in ["dev-aws", "prod-aws", "dev-gcp", "prod-gcp"] {
            let t = target(name);
            assert_eq!(check(&t, &document(&t)), Vec::<String>::new(), "{name}");
        }
    }

    #[test]
    fn wildcards_unknown_actions_bad_arns_and_foreign_roles_are_caught() {
        let aws = target("dev-aws");
        let doc = json!({"Statement": [
            {"Sid": "A", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"},
            {"Sid": "B", "Action": ["s3:GetObject", "s3:PutBucketAcl"], "Resource": ["*", "arn:aws:s3:::b/x/*"]},
        ]});
        assert_eq!(
            check(&aws, &doc),
            [
                "statement A: wildcard action `s3:*`",
                "statement B: unknown S3 action `s3:PutBucketAcl`",
                "statement B: malformed or wildcard resource `*`",
                "statement B: malformed or wildcard resource `arn:aws:s3:::b/x/*`",
            ]
        );
        let gcp = target("dev-gcp");
        let doc = json!({"bindings": [{"role": "roles/owner", "members": ["user:a@example.com"]}]});
        assert_eq!(
            check(&gcp, &doc),
            [
                "binding grants `roles/owner`, which is not a storage object role",
                "binding member `user:a@example.com` is not a service account",
            ]
        );
    }

    #[test]
    fn delete_and_sse_follow_the_bucket_settings() {
        let dev = aws_policy(&target("dev-aws")).to_string();
        assert!(dev.contains("s3:DeleteObject") && !dev.contains("DenyUnencryptedUploads"));
        let prod = aws_policy(&target("prod-aws")).to_string();
        assert!(!prod.contains("s3:DeleteObject") && prod.contains("DenyUnencryptedUploads"));
        let prod_gcp = gcp_bindings(&target("prod-gcp")).to_string();
        assert!(!prod_gcp.contains("objectUser") && prod_gcp.contains("objectCreator"));
    }
}
