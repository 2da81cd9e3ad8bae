//! The rules: what must hold for a target beyond its types. They judge the rendered
//! documents — exactly the bytes apply sends — not the model that produced them, so a
//! template that replaces one of strata's documents is held to the same rules.
//!
//! - [`secrets`]: secrets only by reference; credentials never (layers and artifacts).
//! - [`names`]: every cloud and Kubernetes name by its provider's rules.
//! - [`documents`]: bucket settings (production policy), IAM policies and trust
//!   policies (aws), service-account bindings (gcp).
//! - [`values`]: each release's values against its chart (`values.schema.json`, and
//!   the keys of `values.yaml`).
//!
//! Each rule has a name; an entry under `exceptions:` with that name (and optionally a
//! key path) and a reason relaxes it. Every problem is collected, so one run reports
//! them all, each at the line to fix. Pure: charts arrive as data.

pub mod documents;
pub mod json_pos;
pub mod names;
pub mod secrets;
pub mod values;

#[cfg(test)]
mod tests;

use crate::config::Loc;
use crate::desired::Desired;
use crate::error::{Error, Located};
use crate::model::{AwsIdentity, Cloud, Target};
use crate::render::{Origin, Rendered};

pub use values::{Chart, Inputs, Subchart};

/// Every rule an exception may name, with what it asks.
pub const RULES: &[(&str, &str)] = &[
    (
        "prod.versioning",
        "production buckets keep versions (versioning: true)",
    ),
    (
        "prod.encryption",
        "production buckets are encrypted (encryption: true)",
    ),
    (
        "prod.public-access-block",
        "production buckets block public access (publicAccessBlock: true)",
    ),
    (
        "prod.tls-only",
        "production buckets refuse plain HTTP (tlsOnly: true)",
    ),
    (
        "prod.require-sse",
        "production uploads request encryption (requireSse: true)",
    ),
    (
        "iam.wildcard-action",
        "an Allow statement names its actions (no `*`)",
    ),
    (
        "iam.wildcard-resource",
        "an Allow statement names its resources (no `*`)",
    ),
    (
        "iam.escalation",
        "a workload gets no IAM or STS power (iam:*, sts:AssumeRole…)",
    ),
    (
        "gcp.primitive-role",
        "no basic role (roles/owner, roles/editor, roles/viewer)",
    ),
    ("gcp.project-admin", "no admin role on the whole project"),
    (
        secrets::SECRET_LITERAL,
        "a secret-like key holds no literal string",
    ),
];

/// One rule broken, at a place.
pub(crate) struct Finding {
    pub rule: Option<&'static str>,
    pub path: String,
    pub loc: Loc,
    pub message: String,
    pub hint: String,
}

/// Collects findings, dropping those an exception relaxes.
pub(crate) struct Findings<'a> {
    pub target: &'a Target,
    pub errors: Vec<Error>,
}

impl<'a> Findings<'a> {
    pub fn new(target: &'a Target) -> Self {
        Findings {
            target,
            errors: Vec::new(),
        }
    }

    pub fn push(&mut self, f: Finding) {
        if let Some(rule) = f.rule
            && self.target.exception(rule, &f.path).is_some()
        {
            return;
        }
        let mut hint = f.hint;
        if let Some(rule) = f.rule {
            let add = format!(
                "or, if this is deliberate, add `exceptions: [{{rule: {rule}, path: {}, reason: \"…\"}}]`",
                f.path
            );
            hint = if hint.is_empty() {
                add
            } else {
                format!("{hint}; {add}")
            };
        }
        let message = match f.rule {
            Some(rule) => format!("{} [{rule}]", f.message),
            None => f.message,
        };
        // A template line is shared by every target that renders it: say which one
        // broke the rule there (the same finding in several is merged, naming each).
        let from_template = f
            .loc
            .file
            .strip_prefix(crate::render::TEMPLATE_DIR)
            .is_some_and(|rest| rest.starts_with('/'));
        let mut e = Located::new(f.loc, f.path, message);
        if from_template {
            e = e.in_target(self.target.name.as_str());
        }
        if !hint.is_empty() {
            e = e.hint(hint);
        }
        self.errors.push(e.into());
    }

    /// A finding at a key of the layers.
    pub fn at(&mut self, rule: Option<&'static str>, path: &str, message: String, hint: &str) {
        let loc = self.target.loc_of(path);
        self.push(Finding {
            rule,
            path: path.to_owned(),
            loc,
            message,
            hint: hint.to_owned(),
        });
    }
}

/// Where to point for a problem inside a rendered document: the template that wrote
/// it, or what in the layers declared it.
pub(crate) fn origin_loc(rendered: &Rendered, path: &str) -> Loc {
    match rendered.origins.get(path) {
        Some(Origin::Strata(loc)) => loc.clone(),
        Some(Origin::Template(template)) => Loc::file(std::sync::Arc::from(template.as_str())),
        None => Loc::file(std::sync::Arc::from(path)),
    }
}

/// Every rule for one rendered target.
pub fn target(
    target: &Target,
    desired: &Desired,
    rendered: &Rendered,
    inputs: &Inputs,
) -> Vec<Error> {
    let mut f = Findings::new(target);
    exceptions(&mut f);
    cloud_sections(&mut f);
    lifecycle(&mut f);
    names::target(&mut f, desired);
    documents::check(&mut f, desired, rendered);
    values::check(&mut f, desired, rendered, inputs);
    f.errors
}

/// An exception whose `path` names a key of no target that reads it hides a typo.
/// (Per target it would be wrong: an exception in base.yaml may name a key only prod has.)
fn exceptions_that_name_nothing(targets: &[Target]) -> Vec<Error> {
    use std::collections::BTreeMap;
    let mut seen: BTreeMap<Loc, (String, bool)> = BTreeMap::new();
    for t in targets {
        for (i, exception) in t.config.exceptions.iter().enumerate() {
            let Some(path) = &exception.path else {
                continue;
            };
            let loc = t.loc_of(&format!("exceptions.{i}.path"));
            let segments: Vec<&str> = path.split('.').collect();
            let tree = &t.merged.tree;
            // A production setting left at its default is in no layer: its bucket is.
            let defaulted = exception.rule.starts_with("prod.")
                && segments.len() > 1
                && tree
                    .lookup(segments[..segments.len() - 1].iter().copied())
                    .is_some();
            let exists = tree.lookup(segments.iter().copied()).is_some() || defaulted;
            let entry = seen.entry(loc).or_insert((path.clone(), false));
            entry.1 |= exists;
        }
    }
    seen.into_iter()
        .filter(|(_, (_, exists))| !exists)
        .map(|(loc, (path, _))| {
            Located::new(
                loc,
                "exceptions",
                format!("`{path}` names no key of any target: this exception relaxes nothing"),
            )
            .hint("check the spelling against the layers (`strata explain TARGET PATH`)")
            .into()
        })
        .collect()
}

/// Two targets that would make one cloud resource: a bucket name (bucket names are
/// global on both clouds), an IAM role in one account, a Google service account. Each
/// error names both places. (Within one target, [`names`] finds the same.)
pub fn across(targets: &[Target]) -> Vec<Error> {
    use std::collections::BTreeMap;
    let mut seen: BTreeMap<(String, String), (String, Loc)> = BTreeMap::new();
    let mut errors = exceptions_that_name_nothing(targets);
    for t in targets {
        let mut claims: Vec<(String, String, String)> = Vec::new();
        for (key, b) in &t.names.buckets {
            claims.push((
                format!("{} bucket", t.cloud),
                b.name.clone(),
                format!("buckets.{key}"),
            ));
        }
        for (key, w) in &t.names.workloads {
            if let (Some(role), Some(aws)) = (&w.role, &t.config.aws) {
                claims.push((
                    format!("IAM role in account {}", aws.account_id),
                    role.clone(),
                    format!("workloads.{key}"),
                ));
            }
            if let Some(email) = &w.gsa_email {
                claims.push((
                    "Google service account".to_owned(),
                    email.clone(),
                    format!("workloads.{key}"),
                ));
            }
        }
        for (kind, name, path) in claims {
            // Where the name was set, when a layer sets it; else the resource's key.
            let set = ["name", "iamRole", "gcpServiceAccount"]
                .iter()
                .find_map(|k| t.merged.tree.lookup(format!("{path}.{k}").split('.')));
            let loc = set.map_or_else(|| t.key_loc_of(&path), |n| n.loc.clone());
            match seen.get(&(kind.clone(), name.clone())) {
                Some((other, other_loc)) if other != &t.name => errors.push(
                    Located::new(
                        loc,
                        path,
                        format!("{kind} `{name}` of target {} is also the one of target {other} ({other_loc})", t.name),
                    )
                    .hint("two targets would overwrite each other's resource: give one of them another name")
                    .into(),
                ),
                Some(_) => {}
                None => {
                    seen.insert((kind, name), (t.name.clone(), loc));
                }
            }
        }
    }
    errors
}

fn exceptions(f: &mut Findings) {
    for (i, exception) in f.target.config.exceptions.iter().enumerate() {
        if !RULES.iter().any(|(rule, _)| *rule == exception.rule) {
            let hint = crate::suggest::closest(&exception.rule, RULES.iter().map(|(r, _)| *r))
                .map(|close| format!("did you mean `{close}`?"))
                .unwrap_or_else(|| {
                    format!(
                        "known rules: {}",
                        RULES.iter().map(|(r, _)| *r).collect::<Vec<_>>().join(", ")
                    )
                });
            f.at(
                None,
                &format!("exceptions.{i}.rule"),
                format!("unknown rule `{}`", exception.rule),
                &hint,
            );
        }
        if exception.reason.trim().len() < 10 {
            f.at(
                None,
                &format!("exceptions.{i}.reason"),
                "an exception needs a reason a reviewer can judge".into(),
                "explain why the rule does not apply, in a sentence",
            );
        }
    }
}

/// A lifecycle rule does something, and an object is archived before it expires.
fn lifecycle(f: &mut Findings) {
    for (key, bucket) in &f.target.config.buckets {
        for (i, rule) in bucket.lifecycle.iter().enumerate() {
            let path = format!("buckets.{key}.lifecycle.{i}");
            if rule.archive_after_days.is_none()
                && rule.expire_after_days.is_none()
                && rule.noncurrent_expire_after_days.is_none()
            {
                f.at(
                    None,
                    &path,
                    "a lifecycle rule needs an action".into(),
                    "set archiveAfterDays, expireAfterDays or noncurrentExpireAfterDays",
                );
            }
            if let (Some(archive), Some(expire)) = (rule.archive_after_days, rule.expire_after_days)
                && expire <= archive
            {
                f.at(
                    None,
                    &format!("{path}.expireAfterDays"),
                    format!("objects expire after {expire} days, before they would be archived after {archive}"),
                    "expire after the archive day, or drop one of the two",
                );
            }
        }
    }
}

fn cloud_sections(f: &mut Findings) {
    let t = f.target;
    let has_workloads = !t.config.workloads.is_empty();
    match t.cloud {
        Cloud::Aws => {
            let aws = t.aws();
            if aws.account_id.len() != 12 || !aws.account_id.chars().all(|c| c.is_ascii_digit()) {
                f.at(
                    None,
                    "aws.accountId",
                    "an AWS account id is 12 digits".into(),
                    "quote it, so that YAML keeps leading zeros: accountId: \"012345678901\"",
                );
            }
            if !names::aws_region(&aws.region) {
                f.at(
                    None,
                    "aws.region",
                    format!("`{}` does not look like an AWS region", aws.region),
                    "e.g. us-east-1, eu-west-1",
                );
            }
            match aws.identity {
                AwsIdentity::Irsa => match &aws.oidc_issuer {
                    Some(issuer) if !issuer.starts_with("https://") || issuer.len() < 12 => f.at(
                        None,
                        "aws.oidcIssuer",
                        format!("`{issuer}` is not an OIDC issuer URL"),
                        "copy it from `aws eks describe-cluster --query cluster.identity.oidc.issuer`",
                    ),
                    None if has_workloads => f.at(
                        None,
                        "aws.identity",
                        "IRSA needs the cluster's OIDC issuer: `aws.oidcIssuer` is not set".into(),
                        "set aws.oidcIssuer (aws eks describe-cluster --query cluster.identity.oidc.issuer), or use identity: podIdentity",
                    ),
                    _ => {}
                },
                AwsIdentity::PodIdentity => {
                    if has_workloads && aws.cluster.is_none() {
                        f.at(
                            None,
                            "aws",
                            "EKS Pod Identity associates roles through the cluster: `aws.cluster` is not set".into(),
                            "set aws.cluster to the EKS cluster name",
                        );
                    }
                }
            }
        }
        Cloud::Gcp => {
            let gcp = t.gcp();
            if let Err(why) = names::gcp_project_id(&gcp.project_id) {
                f.at(
                    None,
                    "gcp.projectId",
                    format!("`{}` is not a valid GCP project id: {why}", gcp.project_id),
                    "",
                );
            }
        }
    }
}
