//! The reconcile engine: one trait that every resource kind implements (read the live
//! state and diff it against the desired one; write what differs), and the two loops
//! that every cloud shares — plan (read only) and execute (write, in order, recording
//! evidence).
//!
//! The kinds live beside their cloud's client (`aws/`, `gcs/`); each cloud lists its
//! resources in apply order and checks, before the first read, that the credentials
//! are the target's (account or project). The engine then:
//!
//! - plans: each resource's [`Resource::read`] gives its [`Action`], nothing is written;
//! - executes a plan: the plan must name exactly the resources of the render (checked
//!   before the first write); a resource the plan found unchanged gets no request; the
//!   others are written in order by [`Resource::write`], which reads the live state again
//!   right before (a plan may be stale) and writes only what still differs; the first
//!   failure stops the run, and the evidence says what was done up to there.

use super::plan::{Action, Evidence, Op, Outcome, Plan, ResourceEvidence};
use crate::error::{Error, Result};

/// One resource kind: an S3 bucket, a managed policy, a role, a service account…
pub(crate) trait Resource {
    /// The cloud's clients and the target, shared by every resource of a run.
    type Ctx;
    /// `s3_bucket`, `iam_role`, `gcp_service_account`… (the plan's and evidence's `kind`).
    fn kind(&self) -> &'static str;
    /// The resource's name as plan and evidence show it.
    fn name(&self) -> String;
    /// Reads the live state and compares it with the desired one. Writes nothing.
    async fn read(&self, ctx: &Self::Ctx) -> Result<Action>;
    /// Converges the resource: reads it again, writes what differs, and pushes the name
    /// of each field written onto `written` as it goes (so a failure still tells what was
    /// done). Returns whether the resource existed before this run.
    async fn write(
        &self,
        ctx: &Self::Ctx,
        action: &Action,
        written: &mut Vec<String>,
    ) -> Result<bool>;
}

/// Plan: every resource's action, in order, each reported as progress as it is read.
pub(crate) async fn plan<R: Resource>(ctx: &R::Ctx, resources: &[R]) -> Result<Vec<Action>> {
    let mut actions = Vec::with_capacity(resources.len());
    for resource in resources {
        let action = resource.read(ctx).await?;
        let what = match action.op {
            Op::Create => "read, would create",
            Op::Update => "read, would update",
            Op::Unchanged => "read, unchanged",
        };
        super::progress::read(&action.kind, &action.name, what);
        actions.push(action);
    }
    Ok(actions)
}

/// Execute: converge the resources the plan changes, in order, recording each outcome.
pub(crate) async fn execute<R: Resource>(
    ctx: &R::Ctx,
    resources: &[R],
    plan: &Plan,
    evidence: &mut Evidence,
) -> Result<()> {
    let actions = matched(resources, plan)?;
    for (resource, action) in resources.iter().zip(actions) {
        if action.op == Op::Unchanged {
            evidence.add(ResourceEvidence {
                kind: action.kind.clone(),
                name: action.name.clone(),
                existed: true,
                outcome: Outcome::Unchanged,
                fields: Vec::new(),
                retries: 0,
            });
            continue;
        }
        let mut written = Vec::new();
        super::retries::take();
        let result = resource.write(ctx, action, &mut written).await;
        let existed = match &result {
            Ok(existed) => *existed,
            Err(_) => action.op != Op::Create,
        };
        let outcome = match &result {
            Err(_) => Outcome::Failed,
            Ok(_) if written.is_empty() => Outcome::Unchanged,
            Ok(_) if !existed => Outcome::Created,
            Ok(_) => Outcome::Updated,
        };
        evidence.add(ResourceEvidence {
            kind: action.kind.clone(),
            name: action.name.clone(),
            existed,
            outcome,
            fields: written,
            retries: super::retries::take(),
        });
        result?;
    }
    Ok(())
}

/// The plan's action for each resource, in the resources' order; refuses a plan that
/// does not name exactly the render's resources (a plan of another render), before
/// anything is written.
fn matched<'p, R: Resource>(resources: &[R], plan: &'p Plan) -> Result<Vec<&'p Action>> {
    let mut actions = Vec::with_capacity(resources.len());
    for resource in resources {
        let (kind, name) = (resource.kind(), resource.name());
        let action = plan
            .actions
            .iter()
            .find(|a| a.kind == kind && a.name == name)
            .ok_or_else(|| {
                Error::Cloud(format!(
                    "apply {}: the render has {kind} {name}, which the plan does not; nothing was written\n  hint: plan again",
                    plan.target
                ))
            })?;
        actions.push(action);
    }
    if let Some(extra) = plan
        .actions
        .iter()
        .find(|a| !actions.iter().any(|b| std::ptr::eq(*b, *a)))
    {
        return Err(Error::Cloud(format!(
            "apply {}: the plan names {} {}, which the render does not have; nothing was written\n  hint: plan again",
            plan.target, extra.kind, extra.name
        )));
    }
    Ok(actions)
}
