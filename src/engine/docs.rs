//! The rendered documents apply sends, read back from the render (never recomputed from
//! the model): `buckets/<b>.json`, `iam/<w>.policy.json`, `iam/<w>.trust.json`,
//! `iam/<w>.gcp.json`. They passed every rule of `check` before they got here: render
//! refuses a target whose documents break one, and apply renders first.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::Target;
use crate::output::Tree;

/// `buckets/<key>.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketDoc {
    pub name: String,
    pub key: String,
    /// aws.
    #[serde(default)]
    pub region: String,
    /// gcp.
    #[serde(default)]
    pub location: String,
    pub versioning: bool,
    /// `AES256`, `google-managed` or `none`.
    pub encryption: String,
    pub public_access_block: bool,
    #[serde(default)]
    pub tls_only: bool,
    #[serde(default)]
    pub require_sse: bool,
    #[serde(default)]
    pub lifecycle: Vec<LifecycleEntry>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub retain: bool,
    #[serde(default)]
    pub adopt: bool,
}

fn yes() -> bool {
    true
}

/// One lifecycle action strata owns (its id starts with `strata-`).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleEntry {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Archive after this many days, into `storage_class`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_after_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noncurrent_expire_after_days: Option<u32>,
}

/// A workload's documents.
#[derive(Debug, Clone)]
pub struct WorkloadDocs {
    pub key: String,
    /// aws: the managed policy and the role's trust policy.
    pub policy: Option<Value>,
    pub trust: Option<Value>,
    /// gcp: service account and bindings.
    pub gcp: Option<Value>,
}

/// Everything apply sends for one target.
#[derive(Debug, Clone)]
pub struct Documents {
    pub buckets: Vec<BucketDoc>,
    pub workloads: Vec<WorkloadDocs>,
}

impl Documents {
    /// Reads the target's documents from its render.
    pub fn read(target: &Target, tree: &Tree) -> Result<Documents> {
        let prefix = format!("{}/", target.name);
        let json = |rel: &str| -> Result<Option<Value>> {
            let path = format!("{prefix}{rel}");
            match tree.get(&path) {
                None => Ok(None),
                Some(bytes) => serde_json::from_slice(bytes).map(Some).map_err(|e| {
                    Error::Usage(format!("{path}: the rendered document is not JSON: {e}"))
                }),
            }
        };
        let mut buckets = Vec::new();
        for key in target.config.buckets.keys() {
            let rel = format!("buckets/{key}.json");
            let value = json(&rel)?.ok_or_else(|| {
                Error::Usage(format!("{prefix}{rel}: the render has no such document"))
            })?;
            let doc: BucketDoc = serde_json::from_value(value).map_err(|e| {
                Error::Usage(format!(
                    "{prefix}{rel}: not a bucket document strata can apply: {e}"
                ))
            })?;
            buckets.push(doc);
        }
        let mut workloads = Vec::new();
        for key in target.config.workloads.keys() {
            workloads.push(WorkloadDocs {
                key: key.clone(),
                policy: json(&format!("iam/{key}.policy.json"))?,
                trust: json(&format!("iam/{key}.trust.json"))?,
                gcp: json(&format!("iam/{key}.gcp.json"))?,
            });
        }
        Ok(Documents { buckets, workloads })
    }
}
