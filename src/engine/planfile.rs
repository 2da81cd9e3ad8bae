//! Plan files: what a reviewer approved, bound to what runs.
//!
//! `strata plan TARGET --out FILE` writes, as JSON: the format, strata's version, the
//! target, the SHA-256 of every artifact of the target's render, a fingerprint of the
//! live state the plan read (the SHA-256 of the planned actions, which carry every live
//! value that differs and every operation), and the actions themselves. `strata apply
//! FILE` renders and reads again, and refuses — exit 2, naming what moved, writing
//! nothing — when the version, any artifact, or the live state differs; otherwise it
//! applies exactly those actions. The file is deterministic for the same inputs and
//! live state (no timestamps), and holds no secret: artifacts never hold one, and the
//! actions are made of them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::plan::{Action, Plan};
use crate::error::{Error, Result};
use crate::output::Tree;

/// The format version of plan files this strata reads and writes.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanFile {
    pub format: u32,
    pub strata_version: String,
    pub target: String,
    pub account: String,
    pub region: String,
    /// Artifact path (below the output folder) → SHA-256, hex.
    pub artifacts: BTreeMap<String, String>,
    /// SHA-256 of the planned actions.
    pub live: String,
    pub actions: Vec<Action>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digests of one target's artifacts.
pub fn digests(tree: &Tree, target: &str) -> BTreeMap<String, String> {
    let prefix = format!("{target}/");
    tree.iter()
        .filter(|(path, _)| path.starts_with(&prefix))
        .map(|(path, bytes)| (path.clone(), hex(&Sha256::digest(bytes))))
        .collect()
}

/// The fingerprint of what a plan read.
pub fn fingerprint(actions: &[Action]) -> String {
    let text = serde_json::to_string(actions).unwrap_or_default();
    hex(&Sha256::digest(text.as_bytes()))
}

impl PlanFile {
    pub fn new(plan: &Plan, tree: &Tree) -> PlanFile {
        PlanFile {
            format: FORMAT,
            strata_version: env!("CARGO_PKG_VERSION").to_owned(),
            target: plan.target.clone(),
            account: plan.account.clone(),
            region: plan.region.clone(),
            artifacts: digests(tree, &plan.target),
            live: fingerprint(&plan.actions),
            actions: plan.actions.clone(),
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        let tmp = path.with_extension("plan.tmp");
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    pub fn read(path: &Path) -> Result<PlanFile> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let file: PlanFile = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Usage(format!(
                "{} is not a strata plan file: {e}\n  hint: make one with `strata plan TARGET --out FILE`",
                path.display()
            ))
        })?;
        if file.format != FORMAT {
            return Err(Error::Usage(format!(
                "{} is a plan file of format {}, this strata reads format {FORMAT}; nothing was applied\n  hint: plan again with this strata",
                path.display(),
                file.format
            )));
        }
        Ok(file)
    }

    /// Every way the present differs from the plan, in words; empty when apply may go.
    pub fn moved(&self, tree: &Tree, now: &Plan) -> Vec<String> {
        let mut moved = Vec::new();
        let version = env!("CARGO_PKG_VERSION");
        if self.strata_version != version {
            moved.push(format!(
                "strata is version {version}, the plan was made by {}",
                self.strata_version
            ));
        }
        if (&now.account, &now.region) != (&self.account, &self.region) {
            moved.push(format!(
                "the plan was read from {} {}, the credentials now reach {} {}",
                self.account, self.region, now.account, now.region
            ));
        }
        let digests = digests(tree, &self.target);
        for (path, digest) in &self.artifacts {
            match digests.get(path) {
                None => moved.push(format!("{path}: no longer rendered")),
                Some(d) if d != digest => moved.push(format!("{path}: the render changed")),
                Some(_) => {}
            }
        }
        for path in digests.keys().filter(|p| !self.artifacts.contains_key(*p)) {
            moved.push(format!("{path}: rendered now, not in the plan"));
        }
        if fingerprint(&now.actions) != self.live {
            let key = |a: &Action| (a.kind.clone(), a.name.clone());
            let planned: BTreeMap<_, _> = self.actions.iter().map(|a| (key(a), a)).collect();
            let current: BTreeMap<_, _> = now.actions.iter().map(|a| (key(a), a)).collect();
            for (k, a) in &current {
                match planned.get(k) {
                    None => moved.push(format!("{} {}: not in the plan", k.0, k.1)),
                    Some(p) if p != a => moved.push(format!(
                        "{} {}: the live state changed since the plan",
                        k.0, k.1
                    )),
                    Some(_) => {}
                }
            }
            for k in planned.keys().filter(|k| !current.contains_key(*k)) {
                moved.push(format!("{} {}: in the plan, not planned now", k.0, k.1));
            }
            if moved.is_empty() {
                moved.push("the live state changed since the plan".to_owned());
            }
        }
        moved
    }
}
