//! plan and apply: read the live cloud state, compute a [`plan::Plan`] (data), then
//! execute it and record [`plan::Evidence`].
//!
//! The documents applied are the ones just rendered in memory (what reviewers saw in
//! `out/<target>/iam/`), never re-derived. `apply --approve` converges the cloud, writes
//! the target's render into the output folder, then runs helm on it.

pub mod destroy;
pub mod docs;
pub mod lock;
pub mod plan;
pub mod planfile;
pub mod progress;
pub(crate) mod resource;
pub mod retries;

use std::path::Path;

use self::plan::{Evidence, Plan};
use crate::Loaded;
use crate::error::{Error, Result};
use crate::model::{Cloud, Target};
use crate::output::{self, Tree};
use crate::resources::{aws, gcp as gcs, helm};

/// What plan and apply start from: the one target, its render, its documents.
pub struct Prepared {
    pub target: Target,
    /// The target's lock file (`environments/discovered/<target>.yaml`), parsed.
    lock: Option<std::sync::Arc<crate::config::Node>>,
    pub tree: Tree,
    documents: docs::Documents,
    project_root: Option<std::path::PathBuf>,
}

impl Prepared {
    /// The one target `name` out of a render of it (`targets` and `tree` as the face's
    /// render returned them).
    pub fn new(
        loaded: &Loaded,
        mut targets: Vec<Target>,
        tree: Tree,
        name: &str,
    ) -> Result<Prepared> {
        let target = targets
            .pop()
            .ok_or_else(|| Error::Usage(format!("unknown target `{name}`")))?;
        let documents = docs::Documents::read(&target, &tree)?;
        let lock = target
            .layers
            .lock_file()
            .and_then(|f| loaded.layers.files.get(f).cloned());
        Ok(Prepared {
            lock,
            target,
            tree,
            documents,
            project_root: loaded.project.root().map(Path::to_path_buf),
        })
    }
}

/// Whether strata may change an existing resource: one tagged (or labelled) by strata
/// for this target, or one the layers adopt explicitly (`adopt: true`; plan shows the
/// ownership tags it will add). A resource of another target is never changed.
pub fn check_ownership(
    target: &str,
    resource: &str,
    tags: &std::collections::BTreeMap<String, String>,
    adopt: bool,
) -> Result<()> {
    let managed = tags.get("managed-by").is_some_and(|v| v == "strata");
    match tags.get("strata-target") {
        Some(owner) if managed && owner == target => Ok(()),
        Some(owner) if managed => Err(Error::Cloud(format!(
            "{resource} belongs to strata target {owner}, not {target}; strata never changes another target's resources; nothing was written\n  hint: give this target's resource another name"
        ))),
        _ if adopt => Ok(()),
        _ => Err(Error::Cloud(format!(
            "{resource} exists but strata did not make it (no managed-by=strata / strata-target tags); nothing was written\n  hint: to take it over, set `adopt: true` on the bucket (plan shows what changes), or choose another name"
        ))),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))
}

async fn read_plan(target: &Target, documents: &docs::Documents) -> Result<Plan> {
    match target.cloud {
        Cloud::Aws => aws::plan(target, documents).await,
        Cloud::Gcp => gcs::plan(target, documents).await,
    }
}

async fn execute(
    target: &Target,
    documents: &docs::Documents,
    plan: &Plan,
    evidence: &mut Evidence,
) -> Result<()> {
    match target.cloud {
        Cloud::Aws => aws::execute(target, documents, plan, evidence).await,
        Cloud::Gcp => gcs::execute(target, documents, plan, evidence).await,
    }
}

/// `strata plan`: the live state read against the render, and whether the target's
/// lock file still holds. Writes nothing.
pub fn plan(p: &Prepared) -> Result<Plan> {
    runtime()?.block_on(async {
        let mut plan = read_plan(&p.target, &p.documents).await?;
        if let Some(lock) = &p.lock {
            plan.stale_lock = crate::preflight::stale_lock(&p.target, lock).await;
        }
        Ok::<_, Error>(plan)
    })
}

/// What `apply` did; the face prints it.
pub enum Applied {
    /// Without `--approve`: the plan, shown and not applied.
    NeedsApproval(Plan),
    /// The run's evidence; `error` is what stopped it (its status is then `failed`).
    Ran {
        evidence: Evidence,
        error: Option<Error>,
    },
}

/// How `apply` runs.
pub struct ApplyOptions<'a> {
    pub approve: bool,
    pub skip_helm: bool,
    /// The output folder the target's render is written to before helm runs.
    pub dir: &'a Path,
    /// The reviewed plan file being applied, if any: apply exactly it or nothing.
    pub reviewed: Option<&'a planfile::PlanFile>,
}

/// `strata apply`: read the plan, and with approval take the lock, read it again, execute
/// it, write the render and run helm. An `Err` means nothing was written.
pub fn apply(p: &Prepared, opts: &ApplyOptions) -> Result<Applied> {
    // Apply's progress lines are its writes; the reads of its plan stay quiet.
    progress::report_reads(false);
    let approve = opts.approve || opts.reviewed.is_some();
    if approve && !opts.skip_helm {
        // Everything helm needs is checked before the first cloud write.
        helm::check_binary()?;
        if let Some(root) = p.project_root.as_deref() {
            helm::installs(&p.target, opts.dir, root)?;
        }
    }
    let rt = runtime()?;
    let (account, region) = match p.target.cloud {
        Cloud::Aws => (
            p.target.aws().account_id.clone(),
            p.target.aws().region.clone(),
        ),
        Cloud::Gcp => (
            p.target.gcp().project_id.clone(),
            p.target.gcp().location.clone(),
        ),
    };
    let mut evidence = Evidence {
        target: p.target.name.clone(),
        cloud: p.target.cloud,
        account,
        region,
        status: "applied".into(),
        resources: Vec::new(),
        helm: Vec::new(),
        error: None,
    };
    let plan = match rt.block_on(read_plan(&p.target, &p.documents)) {
        Ok(plan) => plan,
        // Nothing was written; with --approve the evidence still says so.
        Err(e) if approve => return Ok(failed(evidence, e)),
        Err(e) => return Err(e),
    };
    evidence.account = plan.account.clone();
    evidence.region = plan.region.clone();
    let refuse_moved = |plan: &Plan| -> Result<()> {
        let Some(reviewed) = opts.reviewed else {
            return Ok(());
        };
        let moved = reviewed.moved(&p.tree, plan);
        if !moved.is_empty() {
            return Err(Error::Usage(format!(
                "refusing to apply the plan for {}: {} since it was made; nothing was written\n{}\n  hint: review a new plan (`strata plan {} --out FILE`)",
                reviewed.target,
                if moved.len() == 1 {
                    "one thing moved"
                } else {
                    "things moved"
                },
                moved
                    .iter()
                    .map(|m| format!("  - {m}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                reviewed.target
            )));
        }
        Ok(())
    };
    refuse_moved(&plan)?;
    if !approve {
        return Ok(Applied::NeedsApproval(plan));
    }
    // One apply or destroy of a target at a time (see lock.rs).
    let (held, plan) = if plan.has_changes() {
        let held = match rt.block_on(lock::acquire(&p.target, &p.documents, "apply")) {
            Ok(held) => held,
            Err(e) => return Ok(failed(evidence, e)),
        };
        // Under the lock, read again: a run that held it (STRATA_LOCK_WAIT) may have
        // changed what is there, and a reviewed plan must still match.
        let again = if held.is_some() {
            rt.block_on(read_plan(&p.target, &p.documents))
                .and_then(|plan| refuse_moved(&plan).map(|()| plan))
        } else {
            Ok(plan)
        };
        match again {
            Ok(plan) => (held, plan),
            Err(e) => {
                let _ = rt.block_on(lock::release(held));
                return Ok(failed(evidence, e));
            }
        }
    } else {
        (None, plan)
    };
    let result = rt
        .block_on(execute(&p.target, &p.documents, &plan, &mut evidence))
        .and_then(|()| write_render(p, opts.dir))
        .and_then(|()| {
            if opts.skip_helm {
                Ok(())
            } else {
                run_helm(p, opts.dir, &mut evidence)
            }
        });
    let released = rt.block_on(lock::release(held));
    Ok(match result.and(released) {
        Ok(()) => Applied::Ran {
            evidence,
            error: None,
        },
        Err(e) => failed(evidence, e),
    })
}

/// The evidence of a failed run: what was done before the error, and the error.
fn failed(mut evidence: Evidence, e: Error) -> Applied {
    evidence.status = "failed".into();
    evidence.error = Some(e.to_string());
    Applied::Ran {
        evidence,
        error: Some(e),
    }
}

/// Writes this target's files into the output folder, keeping the other targets'.
fn write_render(p: &Prepared, dir: &Path) -> Result<()> {
    output::check_out_dir(dir, p.project_root.as_deref())?;
    output::write_targets(dir, p.tree.clone(), std::slice::from_ref(&p.target.name))?;
    Ok(())
}

fn run_helm(p: &Prepared, dir: &Path, evidence: &mut Evidence) -> Result<()> {
    let root = p.project_root.as_deref().ok_or_else(|| {
        Error::Usage("helm needs the project's charts on disk: run `strata init DIR` and apply from there, or pass --skip-helm".into())
    })?;
    let installs = helm::installs(&p.target, dir, root)?;
    helm::run(&installs, &mut evidence.helm)
}
