//! GCP: the bucket and its IAM bindings through the Cloud Storage JSON API.
//! (Being written; see issue 4.)

use serde_json::Value;

use super::plan::{Evidence, Plan};
use crate::error::{Error, Result};
use crate::model::Target;

/// Reads the live state of the target's bucket and bindings; writes nothing.
pub async fn plan(target: &Target, _bindings: &Value) -> Result<Plan> {
    Err(Error::Cloud(format!("plan {}: gcp targets are not supported by this build yet", target.name)))
}

/// Carries out `plan`, recording each resource's outcome in `evidence` as it goes.
pub async fn execute(target: &Target, _bindings: &Value, _plan: &Plan, _evidence: &mut Evidence) -> Result<()> {
    Err(Error::Cloud(format!("apply {}: gcp targets are not supported by this build yet", target.name)))
}
