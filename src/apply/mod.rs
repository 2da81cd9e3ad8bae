//! plan and apply: read the live cloud state, compute a [`plan::Plan`] (data), then
//! execute it and record [`plan::Evidence`].
//!
//! The documents applied are the ones just rendered in memory (what reviewers saw in
//! `out/<target>/iam/`), never re-derived. `apply --approve` converges the cloud, writes
//! the target's render into the output folder, then runs helm on it.

pub mod aws;
pub mod aws_identity;
pub mod destroy;
pub mod docs;
pub mod gcs;
pub mod helm;
pub mod lock;
pub mod plan;
pub mod planfile;
pub mod progress;

use std::path::Path;

use serde_json::{Value, json};

use self::plan::{Evidence, Op, Outcome, Plan};
use crate::cli::{Cli, Format};
use crate::error::{Error, Result};
use crate::model::{Cloud, Target};
use crate::output::{self, Tree};
use crate::report::Reporter;
use crate::{commands, exit};

/// What plan and apply start from: the one target, its render, its documents.
struct Prepared {
    target: Target,
    /// The target's lock file (`environments/discovered/<target>.yaml`), parsed.
    lock: Option<std::sync::Arc<crate::config::Node>>,
    tree: Tree,
    documents: docs::Documents,
    project_root: Option<std::path::PathBuf>,
}

fn prepare(cli: &Cli, name: &str) -> Result<Prepared> {
    let (loaded, mut targets, tree) = commands::render_tree(cli, &[name.to_owned()])?;
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

pub fn plan_command(cli: &Cli, out: &Reporter, target: &str, file: Option<&Path>) -> Result<u8> {
    let p = prepare(cli, target)?;
    let plan = runtime()?.block_on(async {
        let mut plan = read_plan(&p.target, &p.documents).await?;
        if let Some(lock) = &p.lock {
            plan.stale_lock = crate::preflight::stale_lock(&p.target, lock).await;
        }
        Ok::<_, Error>(plan)
    })?;
    if let Some(file) = file {
        planfile::PlanFile::new(&plan, &p.tree).write(file)?;
    }
    print_plan(out, &plan);
    if let Some(file) = file
        && out.format != Format::Json
    {
        out.line(format!(
            "plan written to {}; `strata apply {}` applies exactly it",
            file.display(),
            file.display()
        ));
    }
    Ok(if plan.has_changes() || !plan.stale_lock.is_empty() {
        exit::DIFFERENCES
    } else {
        exit::OK
    })
}

pub fn apply_command(
    cli: &Cli,
    out: &Reporter,
    target: &str,
    approve: bool,
    skip_helm: bool,
    dir: &Path,
) -> Result<u8> {
    // A plan file is the approval: apply exactly it, or nothing.
    let (target, approve, reviewed) = if Path::new(target).is_file() {
        let file = planfile::PlanFile::read(Path::new(target))?;
        (file.target.clone(), true, Some(file))
    } else {
        (target.to_owned(), approve, None)
    };
    let target = target.as_str();
    let p = prepare(cli, target)?;
    if approve && !skip_helm {
        // Everything helm needs is checked before the first cloud write.
        helm::check_binary()?;
        if let Some(root) = p.project_root.as_deref() {
            helm::installs(&p.target, dir, root)?;
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
        Err(e) if approve => return Ok(failed(out, &mut evidence, &e)),
        Err(e) => return Err(e),
    };
    evidence.account = plan.account.clone();
    evidence.region = plan.region.clone();
    let refuse_moved = |plan: &Plan| -> Result<()> {
        let Some(reviewed) = &reviewed else {
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
        evidence.status = "needs_approval".into();
        match out.format {
            Format::Json => out.json(&json!({"status": evidence.status, "plan": plan})),
            _ => {
                print_plan(out, &plan);
                out.line(format!(
                    "not applied: re-run with --approve to apply ({})",
                    evidence.status
                ));
            }
        }
        return Ok(exit::OK);
    }
    // One apply or destroy of a target at a time (see lock.rs).
    let (held, plan) = if plan.has_changes() {
        let held = match rt.block_on(lock::acquire(&p.target, &p.documents, "apply")) {
            Ok(held) => held,
            Err(e) => return Ok(failed(out, &mut evidence, &e)),
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
                return Ok(failed(out, &mut evidence, &e));
            }
        }
    } else {
        (None, plan)
    };
    let result = rt
        .block_on(execute(&p.target, &p.documents, &plan, &mut evidence))
        .and_then(|()| write_render(&p, dir))
        .and_then(|()| {
            if skip_helm {
                Ok(())
            } else {
                run_helm(&p, dir, &mut evidence)
            }
        });
    let released = rt.block_on(lock::release(held));
    let result = result.and(released);
    match result {
        Ok(()) => {
            print_evidence(out, &evidence);
            Ok(exit::OK)
        }
        Err(e) => Ok(failed(out, &mut evidence, &e)),
    }
}

/// Prints the evidence of a failed run (what was done before the error) and the error.
fn failed(out: &Reporter, evidence: &mut Evidence, e: &Error) -> u8 {
    evidence.status = "failed".into();
    evidence.error = Some(e.to_string());
    print_evidence(out, evidence);
    // The evidence (with the error) is the result on stdout; the message goes to stderr.
    eprintln!("{} {e}", out.paint("1;31", "error:"));
    exit::ERROR
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

fn op_sign(op: Op) -> (&'static str, &'static str, &'static str) {
    match op {
        Op::Create => ("+", "create", "32"),
        Op::Update => ("~", "update", "33"),
        Op::Unchanged => ("=", "unchanged", "2"),
    }
}

fn short(value: &Value) -> String {
    match value {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_plan(out: &Reporter, plan: &Plan) {
    if out.format == Format::Json {
        out.json(plan);
        return;
    }
    out.line(heading(
        "plan",
        &plan.target,
        plan.cloud,
        &plan.account,
        &plan.region,
    ));
    for action in &plan.actions {
        let (sign, word, style) = op_sign(action.op);
        out.line(out.paint(
            style,
            &format!("  {sign} {word} {} {}", action.kind, action.name),
        ));
        for change in &action.changes {
            let line = if action.op == Op::Create {
                format!("      {}: {}", change.field, short(&change.to))
            } else {
                format!(
                    "      {}: {} → {}",
                    change.field,
                    short(&change.from),
                    short(&change.to)
                )
            };
            out.line(line);
        }
    }
    if !plan.stale_lock.is_empty() {
        let file = crate::config::lock::path(&plan.target);
        out.line(out.paint(
            "33",
            &format!(
                "  ! stale lock {file}: the live world moved; `strata preflight {} --write` renews it",
                plan.target
            ),
        ));
        for why in &plan.stale_lock {
            out.line(format!("      {why}"));
        }
    }
    let count = |op| plan.actions.iter().filter(|a| a.op == op).count();
    let stale = if plan.stale_lock.is_empty() {
        String::new()
    } else {
        ", 1 stale lock file".to_owned()
    };
    out.line(format!(
        "{} to create, {} to update, {} unchanged{stale}",
        count(Op::Create),
        count(Op::Update),
        count(Op::Unchanged)
    ));
}

/// `plan prod-aws (aws account 123456789012, eu-west-1)`; on GCP, `project …`.
pub(crate) fn heading(verb: &str, target: &str, cloud: Cloud, id: &str, region: &str) -> String {
    let scope = match cloud {
        Cloud::Aws => "account",
        Cloud::Gcp => "project",
    };
    format!("{verb} {target} ({cloud} {scope} {id}, {region})")
}

fn print_evidence(out: &Reporter, evidence: &Evidence) {
    if out.format == Format::Json {
        out.json(evidence);
        return;
    }
    out.line(format!(
        "{}: {}",
        heading(
            "apply",
            &evidence.target,
            evidence.cloud,
            &evidence.account,
            &evidence.region,
        ),
        evidence.status
    ));
    for r in &evidence.resources {
        let word = match r.outcome {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Failed => "FAILED",
        };
        let fields = if r.fields.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.fields.join(", "))
        };
        let existed = if r.existed { "existed" } else { "new" };
        out.line(format!(
            "  {} {}: {word}{fields} [{existed}]",
            r.kind, r.name
        ));
    }
    for run in &evidence.helm {
        let code = run
            .exit_code
            .map_or("not run".to_owned(), |c| format!("exit {c}"));
        out.line(format!("  helm: {} → {code}", run.argv.join(" ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's sessions show these lines; deploy logs are grepped for them.
    #[test]
    fn plan_and_apply_headings_name_the_account_or_project() {
        assert_eq!(
            heading("plan", "dev-aws", Cloud::Aws, "123456789012", "eu-west-1"),
            "plan dev-aws (aws account 123456789012, eu-west-1)"
        );
        assert_eq!(
            heading(
                "apply",
                "dev-gcp",
                Cloud::Gcp,
                "lakehouse-dev-4821",
                "europe-west1"
            ),
            "apply dev-gcp (gcp project lakehouse-dev-4821, europe-west1)"
        );
    }
}
