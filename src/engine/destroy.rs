//! destroy and `plan --destroy`: remove what apply made for one target, in the reverse
//! of apply's order, and nothing else.
//!
//! Like apply it is two steps on data: [`DestroyPlan`] lists, per resource, whether it
//! will be deleted, is kept (and why: retained, not this target's, still used) or is
//! absent already; executing it records [`DestroyEvidence`] per resource (`deleted`,
//! `absent`, `kept`), so a run stopped half-way says what it did, and a re-run finishes
//! the job (what is gone reads as absent).
//!
//! Order: helm releases (reverse install order, `platform` last), then the cloud's
//! identities (AWS: Pod Identity associations, the policies — detached, their
//! non-default versions, then deleted —, the roles, the OIDC provider when strata made
//! it and no other role trusts it; GCP: strata's members in the buckets' IAM policies,
//! the Workload Identity members, the service accounts), then the buckets whose layers
//! say `retain: false`. Every bucket that is to be deleted is checked for objects while
//! planning: without `--force-empty` a non-empty one stops destroy before the first
//! deletion.

use serde::{Deserialize, Serialize};

use super::plan::HelmRun;
use super::{Prepared, docs, lock, runtime};
use crate::error::{Error, Result};
use crate::model::{Cloud, Target};
use crate::resources::helm;

pub const HELM_RELEASE: &str = "helm_release";

/// What destroy would do, per resource, in the order it does it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestroyPlan {
    pub target: String,
    pub cloud: Cloud,
    pub account: String,
    pub region: String,
    pub items: Vec<Item>,
}

impl DestroyPlan {
    pub fn has_deletions(&self) -> bool {
        self.items.iter().any(|i| i.op == DestroyOp::Delete)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// `helm_release`, `s3_bucket`, `iam_role`, `gcp_service_account`…
    pub kind: String,
    pub name: String,
    pub op: DestroyOp,
    /// Why a resource is kept, or a note on a deletion (`if installed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// For a bucket: the objects it holds (every version, delete marker, generation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<u64>,
}

impl Item {
    pub fn delete(kind: &str, name: &str) -> Item {
        Item {
            kind: kind.into(),
            name: name.into(),
            op: DestroyOp::Delete,
            why: None,
            objects: None,
        }
    }

    pub fn keep(kind: &str, name: &str, why: impl Into<String>) -> Item {
        Item {
            op: DestroyOp::Keep,
            why: Some(why.into()),
            ..Item::delete(kind, name)
        }
    }

    pub fn absent(kind: &str, name: &str) -> Item {
        Item {
            op: DestroyOp::Absent,
            ..Item::delete(kind, name)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestroyOp {
    Delete,
    Keep,
    /// Nothing to do: it does not exist (any more).
    Absent,
}

/// What one destroy run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestroyEvidence {
    pub target: String,
    pub cloud: Cloud,
    pub account: String,
    pub region: String,
    /// `destroyed`, `needs_approval`, or `failed`.
    pub status: String,
    pub resources: Vec<Done>,
    pub helm: Vec<HelmRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Done {
    pub kind: String,
    pub name: String,
    pub outcome: DestroyOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestroyOutcome {
    Deleted,
    Absent,
    Kept,
    /// The deletion was attempted and failed; `DestroyEvidence::error` says why.
    Failed,
}

impl DestroyEvidence {
    /// Records what a deletion step returned: `Ok(true)` deleted, `Ok(false)` absent.
    pub fn record(&mut self, item: &Item, result: &Result<bool>) {
        let outcome = match result {
            Ok(true) => DestroyOutcome::Deleted,
            Ok(false) => DestroyOutcome::Absent,
            Err(_) => DestroyOutcome::Failed,
        };
        super::progress::step(
            &item.kind,
            &item.name,
            match outcome {
                DestroyOutcome::Deleted => "deleted",
                DestroyOutcome::Absent => "absent",
                DestroyOutcome::Kept => "kept",
                DestroyOutcome::Failed => "failed",
            },
        );
        self.resources.push(Done {
            kind: item.kind.clone(),
            name: item.name.clone(),
            outcome,
            why: None,
        });
    }
}

/// Whether `--approve[=NAME]` approves destroying `target`: a protected target needs
/// its name repeated; a name given must be this target's.
pub fn check_approval(target: &Target, approve: &str) -> Result<()> {
    if !approve.is_empty() && approve != target.name {
        return Err(Error::Usage(format!(
            "--approve={approve} names another target than {}; nothing was deleted\n  hint: strata destroy {} --approve={}",
            target.name, target.name, target.name
        )));
    }
    if approve.is_empty() && target.config.protected {
        return Err(Error::Usage(format!(
            "target {} is protected (`protected: true`): destroy needs its name repeated; nothing was deleted\n  hint: strata destroy {} --approve={}",
            target.name, target.name, target.name
        )));
    }
    Ok(())
}

/// The helm releases destroy uninstalls: apply's installs reversed (`platform` last).
fn helm_items(target: &Target) -> Vec<Item> {
    let Ok(installs) = helm::installs(
        target,
        std::path::Path::new("out"),
        std::path::Path::new("."),
    ) else {
        return Vec::new();
    };
    installs
        .iter()
        .rev()
        .map(|i| Item {
            why: Some(format!(
                "helm uninstall in namespace {} (absent when not installed)",
                i.namespace
            )),
            ..Item::delete(HELM_RELEASE, &i.release)
        })
        .collect()
}

async fn read_plan(target: &Target, documents: &docs::Documents) -> Result<DestroyPlan> {
    match target.cloud {
        Cloud::Aws => crate::resources::aws::destroy::plan(target, documents).await,
        Cloud::Gcp => crate::resources::gcp::destroy::plan(target, documents).await,
    }
}

async fn execute(
    target: &Target,
    documents: &docs::Documents,
    plan: &DestroyPlan,
    evidence: &mut DestroyEvidence,
    held: &mut Option<lock::Held>,
) -> Result<()> {
    match target.cloud {
        Cloud::Aws => {
            crate::resources::aws::destroy::execute(target, documents, plan, evidence, held).await
        }
        Cloud::Gcp => {
            crate::resources::gcp::destroy::execute(target, documents, plan, evidence, held).await
        }
    }
}

/// The plan with the helm releases in front.
fn full_plan(target: &Target, mut cloud: DestroyPlan) -> DestroyPlan {
    let mut items = helm_items(target);
    items.append(&mut cloud.items);
    cloud.items = items;
    cloud
}

/// `strata plan TARGET --destroy`: what destroy would delete, keep, or find absent.
pub fn plan(p: &Prepared) -> Result<DestroyPlan> {
    let plan = runtime()?.block_on(read_plan(&p.target, &p.documents))?;
    Ok(full_plan(&p.target, plan))
}

/// What `destroy` did; the face prints it.
pub enum Destroyed {
    /// Without `--approve`: the plan, shown and not done.
    NeedsApproval(DestroyPlan),
    /// The run's evidence; `error` is what stopped it (its status is then `failed`).
    Ran {
        evidence: DestroyEvidence,
        error: Option<Error>,
    },
}

/// `strata destroy TARGET [--approve[=TARGET]] [--force-empty] [--skip-helm]`. An `Err`
/// means nothing was deleted.
pub fn destroy(
    p: &Prepared,
    approve: Option<&str>,
    force_empty: bool,
    skip_helm: bool,
) -> Result<Destroyed> {
    if let Some(approve) = approve {
        check_approval(&p.target, approve)?;
    }
    let rt = runtime()?;
    let cloud_plan = rt.block_on(read_plan(&p.target, &p.documents))?;
    let plan = if skip_helm {
        cloud_plan
    } else {
        full_plan(&p.target, cloud_plan)
    };
    if approve.is_none() {
        return Ok(Destroyed::NeedsApproval(plan));
    }
    // Everything that could stop destroy is checked before the first deletion: the
    // buckets' objects, and what helm needs (a kube context, the binary).
    refuse_non_empty(&plan, force_empty)?;
    if !skip_helm && !p.target.config.releases.is_empty() {
        helm::uninstalls(&p.target)?;
    }
    let releases: Vec<&Item> = plan
        .items
        .iter()
        .filter(|i| i.kind == HELM_RELEASE)
        .collect();
    if !releases.is_empty() {
        helm::check_binary()?;
    }
    let mut evidence = DestroyEvidence {
        target: p.target.name.clone(),
        cloud: p.target.cloud,
        account: plan.account.clone(),
        region: plan.region.clone(),
        status: "destroyed".into(),
        resources: Vec::new(),
        helm: Vec::new(),
        error: None,
    };
    let mut held = if plan.has_deletions() {
        rt.block_on(lock::acquire(&p.target, &p.documents, "destroy"))?
    } else {
        None
    };
    let result = run_helm(&p.target, &releases, &mut evidence).and_then(|()| {
        rt.block_on(execute(
            &p.target,
            &p.documents,
            &plan,
            &mut evidence,
            &mut held,
        ))
    });
    // A lock still held (the run stopped before the buckets) is released.
    let released = rt.block_on(lock::release(held.take()));
    let result = result.and(released);
    for item in plan.items.iter().filter(|i| i.op == DestroyOp::Keep) {
        evidence.resources.push(Done {
            kind: item.kind.clone(),
            name: item.name.clone(),
            outcome: DestroyOutcome::Kept,
            why: item.why.clone(),
        });
    }
    Ok(match result {
        Ok(()) => Destroyed::Ran {
            evidence,
            error: None,
        },
        Err(e) => {
            evidence.status = "failed".into();
            evidence.error = Some(e.to_string());
            Destroyed::Ran {
                evidence,
                error: Some(e),
            }
        }
    })
}

/// A bucket to be deleted that holds objects needs `--force-empty`; all of them are
/// named, before anything is deleted.
fn refuse_non_empty(plan: &DestroyPlan, force_empty: bool) -> Result<()> {
    if force_empty {
        return Ok(());
    }
    let full: Vec<String> = plan
        .items
        .iter()
        .filter(|i| i.op == DestroyOp::Delete)
        .filter_map(|i| match i.objects {
            Some(n) if n > 0 => Some(format!(
                "{} {} holds {n} object{}",
                i.kind,
                i.name,
                if n == 1 { "" } else { "s" }
            )),
            _ => None,
        })
        .collect();
    if full.is_empty() {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "refusing to destroy {}: {}; nothing was deleted\n  hint: pass --force-empty to delete every object (all versions) with the bucket, or set `retain: true` to keep it",
        plan.target,
        full.join(", ")
    )))
}

fn run_helm(target: &Target, releases: &[&Item], evidence: &mut DestroyEvidence) -> Result<()> {
    if releases.is_empty() {
        return Ok(());
    }
    let uninstalls = helm::uninstalls(target)?;
    for item in releases {
        let Some(u) = uninstalls.iter().find(|u| u.release == item.name) else {
            continue;
        };
        let result = helm::uninstall(u, &mut evidence.helm);
        evidence.record(item, &result);
        result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> Target {
        let loaded = crate::Loaded::load(crate::project::Project::Embedded).unwrap();
        loaded.targets(&[name.to_owned()]).unwrap().remove(0)
    }

    #[test]
    fn a_protected_target_needs_its_name_repeated() {
        let prod = example("prod-aws");
        assert!(prod.config.protected);
        let err = check_approval(&prod, "").unwrap_err().to_string();
        assert!(err.contains("--approve=prod-aws"), "{err}");
        assert!(check_approval(&prod, "prod-aws").is_ok());
        let err = check_approval(&prod, "dev-aws").unwrap_err().to_string();
        assert!(err.contains("names another target"), "{err}");
        let dev = example("dev-aws");
        assert!(check_approval(&dev, "").is_ok());
    }

    #[test]
    fn releases_are_uninstalled_in_reverse_with_platform_last() {
        let items = helm_items(&example("dev-aws"));
        let names: Vec<&str> = items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names.last(), Some(&"lakehouse-platform"), "{names:?}");
        assert_eq!(names.first(), Some(&"app"), "{names:?}");
    }

    #[test]
    fn a_non_empty_bucket_is_refused_by_name_and_count_without_force_empty() {
        let plan = DestroyPlan {
            target: "t".into(),
            cloud: Cloud::Aws,
            account: "1".into(),
            region: "r".into(),
            items: vec![
                Item {
                    objects: Some(3),
                    ..Item::delete("s3_bucket", "full")
                },
                Item {
                    objects: Some(0),
                    ..Item::delete("s3_bucket", "empty")
                },
            ],
        };
        let err = refuse_non_empty(&plan, false).unwrap_err().to_string();
        assert!(err.contains("s3_bucket full holds 3 objects"), "{err}");
        assert!(!err.contains("s3_bucket empty"), "{err}");
        assert!(refuse_non_empty(&plan, true).is_ok());
    }
}
