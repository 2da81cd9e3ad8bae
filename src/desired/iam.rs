//! Each workload's identity documents, built as data from its access levels.
//!
//! | access | S3 (bucket / objects) | GCS role |
//! |---|---|---|
//! | read | GetBucketLocation, ListBucket / GetObject | roles/storage.objectViewer |
//! | readwrite | + ListBucketMultipartUploads / + PutObject, DeleteObject, AbortMultipartUpload, ListMultipartUploadParts | roles/storage.objectUser |
//! | admin | + ListBucketVersions / + GetObjectVersion, DeleteObjectVersion, GetObjectTagging, PutObjectTagging | roles/storage.objectAdmin |
//!
//! A bucket with `requireSse` adds a Deny of unencrypted uploads to every writer's policy.
//! Extra `statements` (aws) and `roles` (gcp) are appended; `check` judges the rendered
//! result, whatever produced it.

use serde::{Deserialize, Serialize};
use serde_json::{Value as J, json};

use crate::config::{Loc, Node, Value};
use crate::error::{Error, Located};
use crate::model::{Access, AwsIdentity, Target, Workload, partition};

/// An extra IAM statement as the layers may write it (identity policies have no
/// `Principal`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    #[serde(rename = "Sid", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(rename = "Effect")]
    pub effect: Effect,
    #[serde(rename = "Action")]
    pub action: OneOrMany,
    #[serde(rename = "Resource")]
    pub resource: OneOrMany,
    #[serde(rename = "Condition", default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<J>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The workload's extra statements, typed, each with where it was written.
pub fn statements(target: &Target, key: &str) -> Result<Vec<(J, Loc)>, Vec<Error>> {
    let path = format!("workloads.{key}.statements");
    let Some(node) = target.resolved_at(&path) else {
        return Ok(Vec::new());
    };
    let items: &[Node] = match &node.value {
        Value::Null => return Ok(Vec::new()),
        Value::Seq(items) => items,
        other => {
            return Err(vec![
                Located::new(
                    node.loc.clone(),
                    path,
                    format!("expected a list of IAM statements, found {}", other.kind()),
                )
                .into(),
            ]);
        }
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match serde_path_to_error::deserialize::<_, Statement>(item) {
            Ok(statement) => out.push((
                serde_json::to_value(&statement).unwrap_or(J::Null),
                item.loc.clone(),
            )),
            Err(e) => {
                let inner = e.inner().to_string();
                let field = e.path().to_string();
                let at = if field == "." || field.is_empty() {
                    format!("{path}.{i}")
                } else {
                    format!("{path}.{i}.{field}")
                };
                let hint = if inner.contains("unknown field") {
                    "a statement has Sid, Effect, Action, Resource and Condition (identity policies take no Principal)"
                } else {
                    "e.g. {Effect: Allow, Action: [sqs:SendMessage], Resource: [arn:aws:sqs:eu-west-1:111111111111:jobs]}"
                };
                errors.push(
                    Located::new(
                        item.loc.clone(),
                        at,
                        format!("invalid IAM statement: {inner}"),
                    )
                    .hint(hint)
                    .into(),
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `Data`, `RawEvents`: a bucket key as a statement id part (Sids are alphanumeric).
fn camel(key: &str) -> String {
    key.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The workload's managed policy, and where each statement came from (`None`: strata).
pub fn aws_policy(
    target: &Target,
    _key: &str,
    workload: &Workload,
    extra: Vec<(J, Loc)>,
) -> (J, Vec<Option<Loc>>) {
    let mut statements = Vec::new();
    let mut locs = Vec::new();
    for (bucket, access) in &workload.access {
        let Some(names) = target.names.buckets.get(bucket) else {
            continue;
        };
        let arn = names.arn.clone().unwrap_or_default();
        let objects = format!("{arn}/*");
        let id = camel(bucket);
        let mut list = vec!["s3:GetBucketLocation", "s3:ListBucket"];
        let mut object = vec!["s3:GetObject"];
        if *access >= Access::Readwrite {
            list.push("s3:ListBucketMultipartUploads");
            object.extend([
                "s3:AbortMultipartUpload",
                "s3:DeleteObject",
                "s3:ListMultipartUploadParts",
                "s3:PutObject",
            ]);
        }
        if *access >= Access::Admin {
            list.push("s3:ListBucketVersions");
            object.extend([
                "s3:DeleteObjectVersion",
                "s3:GetObjectTagging",
                "s3:GetObjectVersion",
                "s3:PutObjectTagging",
            ]);
        }
        list.sort_unstable();
        object.sort_unstable();
        statements.push(json!({
            "Sid": format!("List{id}"),
            "Effect": "Allow",
            "Action": list,
            "Resource": [arn],
        }));
        statements.push(json!({
            "Sid": format!("Objects{id}"),
            "Effect": "Allow",
            "Action": object,
            "Resource": [objects],
        }));
        locs.extend([None, None]);
        let require_sse = target
            .config
            .buckets
            .get(bucket)
            .is_some_and(|b| b.require_sse);
        if require_sse && *access >= Access::Readwrite {
            statements.push(json!({
                "Sid": format!("DenyUnencryptedUploads{id}"),
                "Effect": "Deny",
                "Action": ["s3:PutObject"],
                "Resource": [objects],
                "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}},
            }));
            locs.push(None);
        }
    }
    for (statement, loc) in extra {
        statements.push(statement);
        locs.push(Some(loc));
    }
    (
        json!({"Version": "2012-10-17", "Statement": statements}),
        locs,
    )
}

/// The host and path of an OIDC issuer URL (`oidc.eks.eu-west-1.amazonaws.com/id/X`).
pub fn issuer_host_path(issuer: &str) -> &str {
    issuer.trim_start_matches("https://").trim_end_matches('/')
}

/// The role's trust policy: IRSA (the cluster's OIDC provider, this service account)
/// or EKS Pod Identity (the `pods.eks.amazonaws.com` service).
pub fn aws_trust(target: &Target, key: &str) -> J {
    let aws = target.aws();
    let names = &target.names.workloads[key];
    match aws.identity {
        AwsIdentity::Irsa => {
            let issuer = issuer_host_path(aws.oidc_issuer.as_deref().unwrap_or_default());
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Sid": "ServiceAccount",
                    "Effect": "Allow",
                    "Principal": {"Federated": format!(
                        "arn:{}:iam::{}:oidc-provider/{issuer}",
                        partition(&aws.region),
                        aws.account_id
                    )},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {
                        format!("{issuer}:aud"): "sts.amazonaws.com",
                        format!("{issuer}:sub"): format!(
                            "system:serviceaccount:{}:{}",
                            names.namespace, names.service_account
                        ),
                    }},
                }],
            })
        }
        AwsIdentity::PodIdentity => json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "EksPodIdentity",
                "Effect": "Allow",
                "Principal": {"Service": "pods.eks.amazonaws.com"},
                "Action": ["sts:AssumeRole", "sts:TagSession"],
            }],
        }),
    }
}

/// The GCS role an access level grants.
pub fn gcs_role(access: Access) -> &'static str {
    match access {
        Access::Read => "roles/storage.objectViewer",
        Access::Readwrite => "roles/storage.objectUser",
        Access::Admin => "roles/storage.objectAdmin",
    }
}

pub const WORKLOAD_IDENTITY_USER: &str = "roles/iam.workloadIdentityUser";

/// The workload's Google service account, its Workload Identity binding, and its
/// bucket and project bindings.
pub fn gcp_document(target: &Target, key: &str, workload: &Workload) -> J {
    let gcp = target.gcp();
    let names = &target.names.workloads[key];
    let email = names.gsa_email.clone().unwrap_or_default();
    let member = format!("serviceAccount:{email}");
    let mut bucket_bindings = Vec::new();
    for (bucket, access) in &workload.access {
        if let Some(b) = target.names.buckets.get(bucket) {
            bucket_bindings
                .push(json!({"bucket": b.name, "role": gcs_role(*access), "members": [member]}));
        }
    }
    let mut project_bindings = Vec::new();
    for role in &workload.roles {
        match &role.bucket {
            Some(bucket) => {
                if let Some(b) = target.names.buckets.get(bucket) {
                    bucket_bindings
                        .push(json!({"bucket": b.name, "role": role.role, "members": [member]}));
                }
            }
            None => project_bindings.push(json!({"role": role.role, "members": [member]})),
        }
    }
    json!({
        "serviceAccount": {
            "accountId": names.gsa_id,
            "email": email,
            "project": gcp.project_id,
            "displayName": format!("{} {key} ({})", target.config.project.name, target.name),
        },
        "workloadIdentity": {
            "role": WORKLOAD_IDENTITY_USER,
            "members": [format!(
                "serviceAccount:{}.svc.id.goog[{}/{}]",
                gcp.project_id, names.namespace, names.service_account
            )],
        },
        "bucketBindings": bucket_bindings,
        "projectBindings": project_bindings,
    })
}
