//! The face of the commands that read or change the cloud: `plan`, `apply`, `destroy`.
//! The engine ([`crate::engine`]) returns plans and evidence as data; this prints them and
//! turns them into exit codes.

use std::path::Path;

use serde_json::{Value, json};

use crate::cli::{Cli, Format};
use crate::engine::destroy::{self, DestroyOp, DestroyOutcome, DestroyPlan, Destroyed};
use crate::engine::plan::{Evidence, Op, Outcome, Plan};
use crate::engine::planfile::PlanFile;
use crate::engine::{self, Applied, ApplyOptions, Prepared};
use crate::error::Result;
use crate::exit;
use crate::model::Cloud;
use crate::report::Reporter;

/// Renders the one target `name` and reads what the engine needs of it.
fn prepare(cli: &Cli, name: &str) -> Result<Prepared> {
    let (loaded, targets, tree) = super::render_tree(cli, &[name.to_owned()])?;
    Prepared::new(&loaded, targets, tree, name)
}

/// `strata plan TARGET [--out FILE]`: exit 0 when nothing would change, 1 otherwise.
pub fn plan(cli: &Cli, out: &Reporter, target: &str, file: Option<&Path>) -> Result<u8> {
    let p = prepare(cli, target)?;
    let plan = engine::plan(&p)?;
    if let Some(file) = file {
        PlanFile::new(&plan, &p.tree).write(file)?;
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

/// `strata apply TARGET|PLANFILE [--approve] [--skip-helm]`.
pub fn apply(
    cli: &Cli,
    out: &Reporter,
    target: &str,
    approve: bool,
    skip_helm: bool,
    dir: &Path,
) -> Result<u8> {
    // A plan file is the approval: apply exactly it, or nothing.
    let reviewed = if Path::new(target).is_file() {
        Some(PlanFile::read(Path::new(target))?)
    } else {
        None
    };
    let name = reviewed
        .as_ref()
        .map_or(target, |file| file.target.as_str());
    let p = prepare(cli, name)?;
    let opts = ApplyOptions {
        approve,
        skip_helm,
        dir,
        reviewed: reviewed.as_ref(),
    };
    match engine::apply(&p, &opts)? {
        Applied::NeedsApproval(plan) => {
            match out.format {
                Format::Json => out.json(&json!({"status": "needs_approval", "plan": plan})),
                _ => {
                    print_plan(out, &plan);
                    out.line("not applied: re-run with --approve to apply (needs_approval)");
                }
            }
            Ok(exit::OK)
        }
        Applied::Ran { evidence, error } => {
            print_evidence(out, &evidence);
            Ok(finish(out, error.as_ref()))
        }
    }
}

/// `strata plan TARGET --destroy`: exit 0 when nothing would be deleted, 1 otherwise.
pub fn plan_destroy(cli: &Cli, out: &Reporter, name: &str) -> Result<u8> {
    let p = prepare(cli, name)?;
    let plan = destroy::plan(&p)?;
    print_destroy_plan(out, &plan);
    Ok(if plan.has_deletions() {
        exit::DIFFERENCES
    } else {
        exit::OK
    })
}

/// `strata destroy TARGET [--approve[=TARGET]] [--force-empty] [--skip-helm]`.
pub fn destroy(
    cli: &Cli,
    out: &Reporter,
    name: &str,
    approve: Option<&str>,
    force_empty: bool,
    skip_helm: bool,
) -> Result<u8> {
    let p = prepare(cli, name)?;
    match destroy::destroy(&p, approve, force_empty, skip_helm)? {
        Destroyed::NeedsApproval(plan) => {
            match out.format {
                Format::Json => out.json(&json!({"status": "needs_approval", "plan": plan})),
                _ => {
                    print_destroy_plan(out, &plan);
                    out.line(format!(
                        "not destroyed: re-run with --approve{} to destroy (needs_approval)",
                        if p.target.config.protected {
                            format!("={}", p.target.name)
                        } else {
                            String::new()
                        }
                    ));
                }
            }
            // As apply without --approve: shown, not done, exit 0 (`plan --destroy` is
            // the command whose exit code says whether there is something to delete).
            Ok(exit::OK)
        }
        Destroyed::Ran { evidence, error } => {
            print_destroy_evidence(out, &evidence);
            Ok(finish(out, error.as_ref()))
        }
    }
}

/// The exit code of a run whose evidence was printed: the error that stopped it, if
/// any, goes to stderr (the evidence, with the error, is the result on stdout).
fn finish(out: &Reporter, error: Option<&crate::error::Error>) -> u8 {
    match error {
        None => exit::OK,
        Some(e) => {
            eprintln!("{} {e}", out.paint("1;31", "error:"));
            exit::ERROR
        }
    }
}

/// `plan prod-aws (aws account 123456789012, eu-west-1)`; on GCP, `project …`.
pub(crate) fn heading(verb: &str, target: &str, cloud: Cloud, id: &str, region: &str) -> String {
    let scope = match cloud {
        Cloud::Aws => "account",
        Cloud::Gcp => "project",
    };
    format!("{verb} {target} ({cloud} {scope} {id}, {region})")
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
        let retries = match r.retries {
            0 => String::new(),
            1 => " (1 retry)".to_owned(),
            n => format!(" ({n} retries)"),
        };
        out.line(format!(
            "  {} {}: {word}{fields} [{existed}]{retries}",
            r.kind, r.name
        ));
    }
    print_helm(out, &evidence.helm);
}

fn print_helm(out: &Reporter, runs: &[crate::engine::plan::HelmRun]) {
    for run in runs {
        let code = run
            .exit_code
            .map_or("not run".to_owned(), |c| format!("exit {c}"));
        out.line(format!("  helm: {} → {code}", run.argv.join(" ")));
    }
}

fn destroy_op_word(op: DestroyOp) -> (&'static str, &'static str, &'static str) {
    match op {
        DestroyOp::Delete => ("-", "delete", "31"),
        DestroyOp::Keep => ("=", "keep", "2"),
        DestroyOp::Absent => (" ", "absent", "2"),
    }
}

fn print_destroy_plan(out: &Reporter, plan: &DestroyPlan) {
    if out.format == Format::Json {
        out.json(plan);
        return;
    }
    out.line(heading(
        "plan destroy",
        &plan.target,
        plan.cloud,
        &plan.account,
        &plan.region,
    ));
    for item in &plan.items {
        let (sign, word, style) = destroy_op_word(item.op);
        let mut line = format!("  {sign} {word} {} {}", item.kind, item.name);
        if let Some(n) = item.objects {
            line.push_str(&format!(" ({n} object{})", if n == 1 { "" } else { "s" }));
        }
        if let Some(why) = &item.why {
            line.push_str(&format!(": {why}"));
        }
        out.line(out.paint(style, &line));
    }
    let count = |op| plan.items.iter().filter(|i| i.op == op).count();
    out.line(format!(
        "{} to delete, {} kept, {} absent",
        count(DestroyOp::Delete),
        count(DestroyOp::Keep),
        count(DestroyOp::Absent)
    ));
}

fn print_destroy_evidence(out: &Reporter, evidence: &destroy::DestroyEvidence) {
    if out.format == Format::Json {
        out.json(evidence);
        return;
    }
    out.line(format!(
        "{}: {}",
        heading(
            "destroy",
            &evidence.target,
            evidence.cloud,
            &evidence.account,
            &evidence.region,
        ),
        evidence.status
    ));
    for r in &evidence.resources {
        let word = match r.outcome {
            DestroyOutcome::Deleted => "deleted",
            DestroyOutcome::Absent => "absent",
            DestroyOutcome::Kept => "kept",
            DestroyOutcome::Failed => "FAILED",
        };
        let why = r.why.as_ref().map_or(String::new(), |w| format!(" ({w})"));
        out.line(format!("  {} {}: {word}{why}", r.kind, r.name));
    }
    print_helm(out, &evidence.helm);
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
