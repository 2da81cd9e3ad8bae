//! A plan is data: the list of actions apply would take, printable, serializable and
//! testable without a cloud. Evidence is what an apply actually did.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Cloud;

/// What apply would do to the cloud for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub target: String,
    pub cloud: Cloud,
    /// AWS account id or GCP project id the plan was read from.
    pub account: String,
    /// AWS region or GCS location.
    pub region: String,
    pub actions: Vec<Action>,
    /// What no longer holds of the target's lock file (`environments/discovered/…`),
    /// each as `key.path: why`; `strata preflight TARGET --write` renews it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale_lock: Vec<String>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.actions.iter().any(|a| a.op != Op::Unchanged)
    }
}

/// One resource and what would happen to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// `s3_bucket`, `iam_policy`, `gcs_bucket`, `gcs_bucket_iam`.
    pub kind: String,
    pub name: String,
    pub op: Op,
    /// For updates, each field that differs; for creates, the settings to write.
    pub changes: Vec<FieldChange>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Create,
    Update,
    Unchanged,
}

/// A field whose live value differs from the desired one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// `versioning`, `tags.strata:env`, `lifecycle`, `policy.document`, `bindings.roles/storage.objectUser`…
    pub field: String,
    /// The live value (`null` when absent).
    pub from: Value,
    pub to: Value,
}

impl FieldChange {
    /// Appends the change of `field` to `changes` when `from` and `to` differ.
    pub fn record(changes: &mut Vec<FieldChange>, field: &str, from: Value, to: Value) {
        if from != to {
            changes.push(FieldChange {
                field: field.to_owned(),
                from,
                to,
            });
        }
    }
}

/// What one apply run did: per resource, and the helm commands it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evidence {
    pub target: String,
    pub cloud: Cloud,
    pub account: String,
    pub region: String,
    /// `applied`, `needs_approval`, or `failed`.
    pub status: String,
    pub resources: Vec<ResourceEvidence>,
    pub helm: Vec<HelmRun>,
    /// The error that stopped the run, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Evidence {
    /// Records what happened to one resource, and reports it as progress.
    pub fn add(&mut self, resource: ResourceEvidence) {
        let what = match resource.outcome {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "failed",
        };
        super::progress::step(&resource.kind, &resource.name, what);
        self.resources.push(resource);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceEvidence {
    pub kind: String,
    pub name: String,
    /// Whether the resource existed before this run.
    pub existed: bool,
    pub outcome: Outcome,
    /// The fields written (for `created` and `updated`).
    pub fields: Vec<String>,
    /// How many calls strata retried while writing it (transient errors, a resource
    /// not visible yet after its create, a concurrent change); absent when none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retries: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    /// The write was attempted and failed; `Evidence::error` says why.
    Failed,
}

/// One helm invocation: the exact argv and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmRun {
    pub argv: Vec<String>,
    /// `None` when the process could not be started or was killed by a signal.
    pub exit_code: Option<i32>,
}
