//! Rules over the rendered cloud documents: `buckets/*.json`, `iam/*.policy.json`,
//! `iam/*.trust.json` (aws) and `iam/*.gcp.json` (gcp). Apply sends these very
//! documents, and refuses any that break a rule.
//!
//! Each finding names the JSON Pointer of what it is about (`/Statement/1/Action/0`).
//! On a document strata wrote, it points at the layer key behind that value; on one a
//! template wrote, at the template line that wrote the value ([`json_pos`] finds the
//! output line, [`Rendered::source_of`] the template line behind it), or at the very
//! place for a document copied from `templates/` as it is. A member that is missing
//! points at the object that lacks it.

use std::sync::Arc;

use serde_json::Value as J;

use super::{Finding, Findings, json_pos, origin_loc};
use crate::config::Loc;
use crate::desired::Desired;
use crate::desired::iam::{WORKLOAD_IDENTITY_USER, issuer_host_path};
use crate::model::{AwsIdentity, Cloud, partition};
use crate::render::{Origin, Rendered};

pub(crate) fn check(f: &mut Findings, desired: &Desired, rendered: &Rendered) {
    let t = f.target;
    for b in &desired.buckets {
        let rel = format!("buckets/{}.json", b.key);
        if let Some(doc) = parsed(f, rendered, &rel) {
            bucket(f, rendered, &rel, &b.key, &doc);
        }
    }
    for w in &desired.workloads {
        match t.cloud {
            Cloud::Aws => {
                let rel = format!("iam/{}.policy.json", w.key);
                if let Some(doc) = parsed(f, rendered, &rel) {
                    policy(f, rendered, &rel, &w.key, &w.statement_locs, &doc);
                }
                let rel = format!("iam/{}.trust.json", w.key);
                if let Some(doc) = parsed(f, rendered, &rel) {
                    trust(f, rendered, &rel, &w.key, &doc);
                }
            }
            Cloud::Gcp => {
                let rel = format!("iam/{}.gcp.json", w.key);
                if let Some(doc) = parsed(f, rendered, &rel) {
                    gcp(f, rendered, &rel, &w.key, &doc);
                }
            }
        }
    }
}

/// The document at `rel` as data: the data strata wrote it from, or what a template
/// rendered, parsed (a finding when it is not JSON).
fn parsed(f: &mut Findings, rendered: &Rendered, rel: &str) -> Option<Arc<J>> {
    let path = format!("{}/{rel}", f.target.name);
    let bytes = rendered.artifacts.get(&path)?;
    if let Some(data) = rendered.data.get(&path) {
        return Some(data.clone());
    }
    match serde_json::from_slice(bytes) {
        Ok(doc) => Some(Arc::new(doc)),
        Err(e) => {
            let loc = rendered
                .source_of(&path, e.line(), e.column())
                .unwrap_or_else(|| origin_loc(rendered, &path));
            f.push(Finding {
                rule: None,
                path: rel.to_owned(),
                loc,
                message: format!("rendered {path} is not valid JSON: {e}"),
                hint: "build JSON with `| to_json` rather than by hand".into(),
            });
            None
        }
    }
}

/// A key as a segment of a JSON Pointer.
fn esc(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Where the value at JSON Pointer `pointer` (or the nearest one above it the
/// document has) of `rel` was written, when a file of `templates/` wrote the
/// document: the template line. Only called for a finding.
fn template_loc(f: &Findings, rendered: &Rendered, rel: &str, pointer: &str) -> Option<Loc> {
    let full = format!("{}/{rel}", f.target.name);
    let text = std::str::from_utf8(rendered.artifacts.get(&full)?).ok()?;
    let (found, _) = json_pos::nearest(text, pointer)?;
    rendered.source_of(&full, found.value.line as usize, found.value.col as usize)
}

/// Where a finding about the value at `pointer` of a rendered document points: the
/// layer key behind it when strata wrote the document, else the template line that
/// wrote the value (the template when that cannot be told).
fn place(
    f: &Findings,
    rendered: &Rendered,
    rel: &str,
    key_path: &str,
    pointer: &str,
) -> (String, Loc) {
    let full = format!("{}/{rel}", f.target.name);
    match rendered.origins.get(&full) {
        Some(Origin::Strata(_)) => (key_path.to_owned(), f.target.loc_of(key_path)),
        _ => (
            key_path.to_owned(),
            template_loc(f, rendered, rel, pointer).unwrap_or_else(|| origin_loc(rendered, &full)),
        ),
    }
}

fn bucket(f: &mut Findings, rendered: &Rendered, rel: &str, key: &str, doc: &J) {
    let t = f.target;
    let expected = &t.names.buckets[key].name;
    if doc["name"].as_str() != Some(expected.as_str()) {
        let (path, loc) = place(f, rendered, rel, &format!("buckets.{key}"), "/name");
        f.push(Finding {
            rule: None,
            path,
            loc,
            message: format!(
                "rendered {}/{rel} names bucket {}, not `{expected}`",
                t.name, doc["name"]
            ),
            hint: "a document may only describe the bucket it is for".into(),
        });
    }
    // What apply converges must be this target's bucket, where the target is, owned by
    // strata, with lifecycle rules strata can recognise as its own.
    let (place_key, place_want) = match t.cloud {
        Cloud::Aws => ("region", t.aws().region.clone()),
        Cloud::Gcp => ("location", t.gcp().location.clone()),
    };
    let wrong = |f: &mut Findings, pointer: &str, message: String| {
        let (path, loc) = place(f, rendered, rel, &format!("buckets.{key}"), pointer);
        f.push(Finding {
            rule: None,
            path,
            loc,
            message: format!("rendered {rel}: {message}"),
            hint:
                "a template that replaces a bucket document must keep what strata needs to apply it"
                    .into(),
        });
    };
    if doc[place_key].as_str() != Some(place_want.as_str()) {
        wrong(
            f,
            &format!("/{place_key}"),
            format!(
                "{place_key} is {}, the target's is {place_want}",
                doc[place_key]
            ),
        );
    }
    let tags = &doc["tags"];
    let target_tag = crate::desired::buckets::label_value(&t.name);
    let owned = tags["managed-by"] == "strata"
        && (tags["strata-target"] == t.name.as_str()
            || tags["strata-target"] == target_tag.as_str());
    if !owned {
        wrong(
            f,
            "/tags",
            format!(
                "tags must carry managed-by=strata and strata-target={} (strata's ownership)",
                t.name
            ),
        );
    }
    let mut ids = std::collections::BTreeSet::new();
    for (i, rule) in doc["lifecycle"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let id = rule["id"].as_str().unwrap_or_default();
        let pointer = format!("/lifecycle/{i}/id");
        if !id.starts_with(crate::desired::buckets::RULE_PREFIX) {
            wrong(
                f,
                &pointer,
                format!(
                    "lifecycle rule id {id:?} does not start with `strata-`; apply would never recognise it as its own"
                ),
            );
        } else if !ids.insert(id.to_owned()) {
            wrong(
                f,
                &pointer,
                format!("lifecycle rule id {id:?} appears twice"),
            );
        }
    }
    if !t.is_production() {
        return;
    }
    let mut checks = vec![
        (
            "prod.versioning",
            "versioning",
            doc["versioning"] == J::Bool(true),
        ),
        (
            "prod.encryption",
            "encryption",
            doc["encryption"].as_str().is_some_and(|e| e != "none"),
        ),
        (
            "prod.public-access-block",
            "publicAccessBlock",
            doc["publicAccessBlock"] == J::Bool(true),
        ),
    ];
    if t.cloud == Cloud::Aws {
        checks.push(("prod.tls-only", "tlsOnly", doc["tlsOnly"] == J::Bool(true)));
        checks.push((
            "prod.require-sse",
            "requireSse",
            doc["requireSse"] == J::Bool(true),
        ));
    }
    for (rule, field, ok) in checks {
        if ok {
            continue;
        }
        let what = super::RULES
            .iter()
            .find(|(r, _)| *r == rule)
            .map_or("", |(_, w)| *w);
        let (path, loc) = place(
            f,
            rendered,
            rel,
            &format!("buckets.{key}.{field}"),
            &format!("/{field}"),
        );
        f.push(Finding {
            rule: Some(rule),
            path,
            loc,
            message: format!("production policy `{rule}`: {what}, in {}", t.env),
            hint: format!("set `{field}: true`"),
        });
    }
}

fn strings(value: &J) -> Vec<&str> {
    match value {
        J::String(s) => vec![s.as_str()],
        J::Array(items) => items.iter().filter_map(J::as_str).collect(),
        _ => Vec::new(),
    }
}

/// [`strings`] of the value at `pointer`, each with its own pointer.
fn strings_at<'a>(value: &'a J, pointer: &str) -> Vec<(&'a str, String)> {
    match value {
        J::String(s) => vec![(s.as_str(), pointer.to_owned())],
        J::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| Some((item.as_str()?, format!("{pointer}/{i}"))))
            .collect(),
        _ => Vec::new(),
    }
}

/// IAM actions that hand out IAM or STS power: a workload that holds one can make
/// itself anything.
fn escalates(action: &str) -> bool {
    let lower = action.to_ascii_lowercase();
    lower.starts_with("iam:")
        || lower.starts_with("sts:assumerole")
        || lower.starts_with("organizations:")
        || lower.starts_with("sso:")
        || lower == "*"
}

fn policy(
    f: &mut Findings,
    rendered: &Rendered,
    rel: &str,
    key: &str,
    locs: &[Option<crate::config::Loc>],
    doc: &J,
) {
    let t = f.target;
    let full = format!("{}/{rel}", t.name);
    let from_template = !matches!(rendered.origins.get(&full), Some(Origin::Strata(_)));
    // Statement `i`, about the value at `pointer`: on strata's document, the layer
    // statement (or `access`) behind it; on a template's, the line that wrote it.
    let statement_place = |f: &Findings, i: usize, pointer: &str| -> (String, Loc) {
        let workload = format!("workloads.{key}");
        if from_template {
            let loc = template_loc(f, rendered, rel, pointer)
                .unwrap_or_else(|| origin_loc(rendered, &full));
            return (workload, loc);
        }
        match locs.get(i).cloned().flatten() {
            Some(loc) => {
                let extra = locs[..i].iter().filter(|l| l.is_some()).count();
                (format!("{workload}.statements.{extra}"), loc)
            }
            None => (
                format!("{workload}.access"),
                t.loc_of(&format!("{workload}.access")),
            ),
        }
    };
    let problem = |f: &mut Findings,
                   i: usize,
                   pointer: &str,
                   rule: Option<&'static str>,
                   message: String,
                   hint: &str| {
        let (path, loc) = statement_place(f, i, pointer);
        f.push(Finding {
            rule,
            path,
            loc,
            message: format!("{rel} statement {}: {message}", i + 1),
            hint: hint.to_owned(),
        });
    };
    if doc["Version"] != "2012-10-17" {
        problem(
            f,
            0,
            "/Version",
            None,
            "the policy Version must be \"2012-10-17\"".into(),
            "",
        );
    }
    // Each statement with its pointer.
    let statements: Vec<(&J, String)> = match &doc["Statement"] {
        J::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, s)| (s, format!("/Statement/{i}")))
            .collect(),
        J::Object(_) => vec![(&doc["Statement"], "/Statement".to_owned())],
        _ => {
            problem(
                f,
                0,
                "/Statement",
                None,
                "the policy has no Statement list".into(),
                "",
            );
            return;
        }
    };
    for (i, (s, at)) in statements.iter().enumerate() {
        let Some(map) = s.as_object() else {
            problem(f, i, at, None, "a statement must be an object".into(), "");
            continue;
        };
        for key in map.keys() {
            if !["Sid", "Effect", "Action", "Resource", "Condition"].contains(&key.as_str()) {
                problem(
                    f,
                    i,
                    &format!("{at}/{}", esc(key)),
                    None,
                    format!("`{key}` has no place in a workload's policy"),
                    "identity policies have Sid, Effect, Action, Resource and Condition only (no Principal, NotAction or NotResource)",
                );
            }
        }
        let effect = s["Effect"].as_str().unwrap_or_default();
        if effect != "Allow" && effect != "Deny" {
            problem(
                f,
                i,
                &format!("{at}/Effect"),
                None,
                "Effect must be Allow or Deny".into(),
                "",
            );
            continue;
        }
        let actions = strings_at(&s["Action"], &format!("{at}/Action"));
        let resources = strings_at(&s["Resource"], &format!("{at}/Resource"));
        if actions.is_empty() || resources.is_empty() {
            problem(
                f,
                i,
                at,
                None,
                "a statement needs Action and Resource".into(),
                "",
            );
            continue;
        }
        for (action, pointer) in &actions {
            let well_formed = *action == "*"
                || action.split_once(':').is_some_and(|(service, name)| {
                    !service.is_empty()
                        && service
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '*')
                });
            if !well_formed {
                problem(
                    f,
                    i,
                    pointer,
                    None,
                    format!("`{action}` is not an IAM action (service:Action)"),
                    "",
                );
            }
        }
        for (resource, pointer) in &resources {
            if *resource != "*" && !well_formed_arn(resource) {
                problem(
                    f,
                    i,
                    pointer,
                    None,
                    format!("`{resource}` is not an ARN"),
                    "arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE, e.g. arn:aws:s3:::my-bucket/*",
                );
            }
        }
        if effect != "Allow" {
            continue;
        }
        if let Some((a, pointer)) = actions.iter().find(|(a, _)| a.contains('*')) {
            problem(
                f,
                i,
                pointer,
                Some("iam.wildcard-action"),
                format!("allows `{a}`: a wildcard grants actions nobody reviewed"),
                "list the actions the workload needs",
            );
        }
        if let Some((_, pointer)) = resources.iter().find(|(r, _)| *r == "*") {
            problem(
                f,
                i,
                pointer,
                Some("iam.wildcard-resource"),
                "allows its actions on every resource (`*`)".into(),
                "name the resources (ARNs) the workload needs",
            );
        }
        if let Some((a, pointer)) = actions.iter().find(|(a, _)| escalates(a)) {
            problem(
                f,
                i,
                pointer,
                Some("iam.escalation"),
                format!("allows `{a}`, with which a workload can give itself any permission"),
                "a workload's policy grants data access; IAM and STS belong to the platform",
            );
        }
    }
}

/// `arn:partition:service:region:account:resource`: six parts, a known partition, a
/// service, and a resource.
fn well_formed_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && ["aws", "aws-cn", "aws-us-gov", "aws-iso", "aws-iso-b"].contains(&parts[1])
        && !parts[2].is_empty()
        && parts[2]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !parts[5].is_empty()
}

fn trust(f: &mut Findings, rendered: &Rendered, rel: &str, key: &str, doc: &J) {
    let t = f.target;
    let aws = t.aws();
    let names = &t.names.workloads[key];
    let problem = |f: &mut Findings, pointer: &str, message: String| {
        let (path, loc) = place(f, rendered, rel, &format!("workloads.{key}"), pointer);
        f.push(Finding {
            rule: None,
            path,
            loc,
            message: format!("{rel}: {message}"),
            hint: "a workload's role is assumed by its own service account only".into(),
        });
    };
    let statements = match &doc["Statement"] {
        J::Array(items) if !items.is_empty() => items.clone(),
        _ => {
            problem(f, "/Statement", "the trust policy has no statements".into());
            return;
        }
    };
    let issuer = issuer_host_path(aws.oidc_issuer.as_deref().unwrap_or_default()).to_owned();
    let provider = format!(
        "arn:{}:iam::{}:oidc-provider/{issuer}",
        partition(&aws.region),
        aws.account_id
    );
    let subject = format!(
        "system:serviceaccount:{}:{}",
        names.namespace, names.service_account
    );
    for (i, s) in statements.iter().enumerate() {
        let at = format!("/Statement/{i}");
        if s["Effect"] != "Allow" {
            continue;
        }
        let principal = &s["Principal"];
        let actions = strings(&s["Action"]);
        match aws.identity {
            AwsIdentity::PodIdentity => {
                let services = strings(&principal["Service"]);
                let only_service = principal.as_object().is_some_and(|m| m.len() == 1);
                if !only_service || services != ["pods.eks.amazonaws.com"] {
                    problem(
                        f,
                        &format!("{at}/Principal"),
                        format!(
                            "principal {principal} is not the EKS Pod Identity service (pods.eks.amazonaws.com)"
                        ),
                    );
                }
                if actions
                    .iter()
                    .any(|a| !["sts:AssumeRole", "sts:TagSession"].contains(a))
                {
                    problem(
                        f,
                        &format!("{at}/Action"),
                        format!(
                            "actions {actions:?}: Pod Identity needs sts:AssumeRole and sts:TagSession only"
                        ),
                    );
                }
            }
            AwsIdentity::Irsa => {
                let federated = strings(&principal["Federated"]);
                let only = principal.as_object().is_some_and(|m| m.len() == 1);
                if !only || federated != [provider.as_str()] {
                    problem(
                        f,
                        &format!("{at}/Principal"),
                        format!(
                            "principal {principal} is not this cluster's OIDC provider ({provider})"
                        ),
                    );
                }
                if actions != ["sts:AssumeRoleWithWebIdentity"] {
                    problem(
                        f,
                        &format!("{at}/Action"),
                        format!(
                            "actions {actions:?}: IRSA needs sts:AssumeRoleWithWebIdentity only"
                        ),
                    );
                }
                let sub = &s["Condition"]["StringEquals"][format!("{issuer}:sub")];
                if sub.as_str() != Some(subject.as_str()) {
                    problem(
                        f,
                        &format!(
                            "{at}/Condition/StringEquals/{}",
                            esc(&format!("{issuer}:sub"))
                        ),
                        format!(
                            "the role must be limited to `{subject}` (a StringEquals condition on {issuer}:sub)"
                        ),
                    );
                }
            }
        }
    }
}

fn gcp(f: &mut Findings, rendered: &Rendered, rel: &str, key: &str, doc: &J) {
    let t = f.target;
    let gcp = t.gcp();
    let names = &t.names.workloads[key];
    let email = names.gsa_email.clone().unwrap_or_default();
    let own_member = format!("serviceAccount:{email}");
    let pool_member = format!(
        "serviceAccount:{}.svc.id.goog[{}/{}]",
        gcp.project_id, names.namespace, names.service_account
    );
    let own_buckets: Vec<&str> = t.names.buckets.values().map(|b| b.name.as_str()).collect();
    let base = format!("workloads.{key}");
    let mut problem = |f: &mut Findings,
                       rule: Option<&'static str>,
                       field: &str,
                       pointer: &str,
                       message: String,
                       hint: &str| {
        let (path, loc) = place(f, rendered, rel, &format!("{base}.{field}"), pointer);
        f.push(Finding {
            rule,
            path,
            loc,
            message: format!("{rel}: {message}"),
            hint: hint.to_owned(),
        });
    };
    if doc["serviceAccount"]["email"].as_str() != Some(email.as_str()) {
        problem(
            f,
            None,
            "gcpServiceAccount",
            "/serviceAccount/email",
            format!("the service account must be {email}"),
            "",
        );
    }
    let wi = &doc["workloadIdentity"];
    if wi["role"] != WORKLOAD_IDENTITY_USER || strings(&wi["members"]) != [pool_member.as_str()] {
        problem(
            f,
            None,
            "serviceAccount",
            "/workloadIdentity",
            format!("Workload Identity must bind {WORKLOAD_IDENTITY_USER} to {pool_member} only"),
            "",
        );
    }
    let bindings = |field: &str| -> Vec<J> { doc[field].as_array().cloned().unwrap_or_default() };
    for (i, binding) in bindings("bucketBindings").iter().enumerate() {
        let at = format!("/bucketBindings/{i}");
        let bucket = binding["bucket"].as_str().unwrap_or_default();
        if !own_buckets.contains(&bucket) {
            problem(
                f,
                None,
                "access",
                &format!("{at}/bucket"),
                format!("binds roles on bucket `{bucket}`, which this target does not declare"),
                "",
            );
        }
        members_and_role(f, &mut problem, binding, &at, &own_member, false);
    }
    for (i, binding) in bindings("projectBindings").iter().enumerate() {
        let at = format!("/projectBindings/{i}");
        members_and_role(f, &mut problem, binding, &at, &own_member, true);
    }
}

fn members_and_role(
    f: &mut Findings,
    problem: &mut impl FnMut(&mut Findings, Option<&'static str>, &str, &str, String, &str),
    binding: &J,
    at: &str,
    own_member: &str,
    project: bool,
) {
    let role = binding["role"].as_str().unwrap_or_default();
    let role_at = format!("{at}/role");
    for (member, pointer) in strings_at(&binding["members"], &format!("{at}/members")) {
        if member != own_member {
            problem(
                f,
                None,
                "roles",
                &pointer,
                format!(
                    "grants {role} to `{member}`; a workload's document grants to its own service account only"
                ),
                "",
            );
        }
    }
    if ["roles/owner", "roles/editor", "roles/viewer"].contains(&role) {
        problem(
            f,
            Some("gcp.primitive-role"),
            "roles",
            &role_at,
            format!("grants the basic role {role}"),
            "grant a predefined role for the service the workload uses",
        );
    } else if project
        && (role.ends_with(".admin")
            || role.starts_with("roles/iam.")
            || role.starts_with("roles/resourcemanager."))
    {
        problem(
            f,
            Some("gcp.project-admin"),
            "roles",
            &role_at,
            format!("grants {role} on the whole project"),
            "grant it on the resource instead (e.g. `bucket:`)",
        );
    } else if !role.starts_with("roles/") && !role.starts_with("projects/") {
        problem(
            f,
            None,
            "roles",
            &role_at,
            format!("`{role}` is not a role name (roles/… or projects/<p>/roles/…)"),
            "",
        );
    }
}
