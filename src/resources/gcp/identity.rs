//! GCP: the identity chain from a pod to its buckets, per workload — the Google
//! service account of the rendered `iam/<w>.gcp.json`, and on it the Workload Identity
//! binding (`roles/iam.workloadIdentityUser` for
//! `serviceAccount:<project>.svc.id.goog[<ns>/<ksa>]`). The bucket bindings for the
//! account are converged with each bucket's IAM policy ([`super`]).
//!
//! Through the IAM API (`iam.googleapis.com/v1`, or `CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM`).
//! A service account carries no labels: strata marks its own in the description
//! (`managed-by=strata strata-target=<target>`) and never changes another. The IAM
//! policy is read, only strata's member is added, and it is written back with the etag
//! it was read with; a 409 (someone else wrote in between) starts again from the read.
//! A 404 right after a create is IAM's eventual consistency: read again, with backoff.
//! "Identity Pool does not exist" means Workload Identity is off on the cluster.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super::client::Client;
use crate::engine::docs::WorkloadDocs;
use crate::engine::plan::{Action, FieldChange, Op};
use crate::error::{Error, Result};
use crate::model::Target;

pub const SERVICE_ACCOUNT: &str = "gcp_service_account";
pub const SERVICE_ACCOUNT_IAM: &str = "gcp_service_account_iam";

const ATTEMPTS: u32 = 6;
const FIRST_WAIT: Duration = Duration::from_millis(250);

/// The description that marks a service account as this target's.
pub fn marker(target: &Target) -> String {
    format!("managed-by=strata strata-target={}", target.name)
}

fn account_path(project: &str, email: &str) -> String {
    format!("/projects/{project}/serviceAccounts/{email}")
}

#[derive(Clone)]
pub(super) struct Want {
    project: String,
    id: String,
    pub(super) email: String,
    display_name: String,
    role: String,
    members: Vec<String>,
}

fn want(doc: &Value) -> Option<Want> {
    let sa = &doc["serviceAccount"];
    Some(Want {
        project: sa["project"].as_str()?.to_owned(),
        id: sa["accountId"].as_str()?.to_owned(),
        email: sa["email"].as_str()?.to_owned(),
        display_name: sa["displayName"].as_str().unwrap_or_default().to_owned(),
        role: doc["workloadIdentity"]["role"].as_str()?.to_owned(),
        members: doc["workloadIdentity"]["members"]
            .as_array()?
            .iter()
            .filter_map(|m| m.as_str().map(str::to_owned))
            .collect(),
    })
}

/// GET the account; `None` when it does not exist.
async fn read_account(c: &Client, w: &Want) -> Result<Option<Value>> {
    let what = format!("read gcp service account {}", w.email);
    let reply = c
        .send(
            Method::GET,
            &account_path(&w.project, &w.email),
            &[],
            None,
            &what,
        )
        .await?;
    match reply.status {
        404 => Ok(None),
        _ if reply.ok() => Ok(Some(reply.body)),
        _ => Err(reply.error(&what)),
    }
}

fn foreign(target: &Target, account: &Value, email: &str) -> Option<Error> {
    let description = account["description"].as_str().unwrap_or_default();
    (description != marker(target)).then(|| {
        Error::Cloud(format!(
            "gcp service account {email} exists and is not strata's for {} (its description is {description:?}, not {:?}); strata changes nothing it does not own\n  hint: set `workloads.<w>.gcpServiceAccount` to another id, or delete the account",
            target.name,
            marker(target)
        ))
    })
}

/// The members the policy grants `role` (unconditionally).
fn members(policy: &Value, role: &str) -> Vec<String> {
    policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"].as_str() == Some(role) && b["condition"].is_null())
        .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect()
}

async fn get_policy(c: &Client, w: &Want) -> Result<Reply2> {
    let what = format!("read gcp service account iam {}", w.email);
    let path = format!("{}:getIamPolicy", account_path(&w.project, &w.email));
    // A new account may not be visible yet: a 404 is read again, with backoff.
    let mut wait = FIRST_WAIT;
    for attempt in 1..=ATTEMPTS {
        let reply = c
            .send(Method::POST, &path, &[], Some(&json!({})), &what)
            .await?;
        match reply.status {
            404 if attempt < ATTEMPTS => {
                crate::engine::retries::count();
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            _ if reply.ok() => {
                return Ok(Reply2 {
                    policy: reply.body,
                    attempts: attempt,
                });
            }
            _ => return Err(reply.error(&what)),
        }
    }
    unreachable!("the last attempt returns")
}

struct Reply2 {
    policy: Value,
    #[allow(dead_code)]
    attempts: u32,
}

/// What a workload's rendered `iam/<workload>.gcp.json` asks for; `None` when the
/// workload has no GCP identity. Project-level roles are refused (not applied yet).
pub(super) fn want_of(w: &WorkloadDocs) -> Result<Option<Want>> {
    let Some(doc) = &w.gcp else { return Ok(None) };
    if doc["projectBindings"]
        .as_array()
        .is_some_and(|b| !b.is_empty())
    {
        return Err(Error::Cloud(format!(
            "workload {}: project-level roles (workloads.{}.roles without `bucket:`) are rendered, but this version of strata does not apply them yet; nothing was written\n  hint: grant them on a bucket (`bucket: KEY`), or outside strata for now",
            w.key, w.key
        )));
    }
    want(doc).map(Some).ok_or_else(|| {
        Error::Cloud(format!(
            "iam/{}.gcp.json: not a document strata can apply",
            w.key
        ))
    })
}

/// The service account: created when missing, its display name kept. Returns the
/// action and whether the account exists.
pub(super) async fn plan_account(
    c: &Client,
    target: &Target,
    want: &Want,
) -> Result<(Action, bool)> {
    let Some(account) = read_account(c, want).await? else {
        let action = Action {
            kind: SERVICE_ACCOUNT.into(),
            name: want.email.clone(),
            op: Op::Create,
            changes: vec![FieldChange {
                field: "accountId".into(),
                from: Value::Null,
                to: json!(want.id),
            }],
        };
        return Ok((action, false));
    };
    if let Some(e) = foreign(target, &account, &want.email) {
        return Err(e);
    }
    let mut changes = Vec::new();
    if account["displayName"].as_str().unwrap_or_default() != want.display_name {
        changes.push(FieldChange {
            field: "displayName".into(),
            from: account["displayName"].clone(),
            to: json!(want.display_name),
        });
    }
    let op = if changes.is_empty() {
        Op::Unchanged
    } else {
        Op::Update
    };
    let action = Action {
        kind: SERVICE_ACCOUNT.into(),
        name: want.email.clone(),
        op,
        changes,
    };
    Ok((action, true))
}

/// The Workload Identity members on the account's policy (`account_exists`: whether
/// there is a policy to read yet).
pub(super) async fn plan_binding(c: &Client, want: &Want, account_exists: bool) -> Result<Action> {
    let have = if account_exists {
        members(&get_policy(c, want).await?.policy, &want.role)
    } else {
        Vec::new()
    };
    let missing: Vec<&String> = want.members.iter().filter(|m| !have.contains(m)).collect();
    let (op, changes) = if missing.is_empty() {
        (Op::Unchanged, Vec::new())
    } else {
        let mut after = have.clone();
        after.extend(missing.into_iter().cloned());
        let op = if account_exists {
            Op::Update
        } else {
            Op::Create
        };
        (
            op,
            vec![FieldChange {
                field: format!("bindings.{}", want.role),
                from: json!(have),
                to: json!(after),
            }],
        )
    };
    Ok(Action {
        kind: SERVICE_ACCOUNT_IAM.into(),
        name: want.email.clone(),
        op,
        changes,
    })
}

/// Creates the account when missing, or converges its display name; pushes the fields
/// written. Returns whether it existed before.
pub(super) async fn apply_account(
    c: &Client,
    target: &Target,
    want: &Want,
    written: &mut Vec<String>,
) -> Result<bool> {
    match read_account(c, want).await? {
        None => {
            let what = format!("create gcp service account {}", want.email);
            let body = json!({
                "accountId": want.id,
                "serviceAccount": {"displayName": want.display_name, "description": marker(target)},
            });
            let reply = c
                .send(
                    Method::POST,
                    &format!("/projects/{}/serviceAccounts", want.project),
                    &[],
                    Some(&body),
                    &what,
                )
                .await?;
            match reply.status {
                409 => {
                    // Made meanwhile (a concurrent apply, or an earlier run whose answer
                    // was lost): it must still be ours.
                    if let Some(account) = read_account(c, want).await?
                        && let Some(e) = foreign(target, &account, &want.email)
                    {
                        return Err(e);
                    }
                    Ok(true)
                }
                _ if reply.ok() => {
                    written.push("accountId".to_owned());
                    Ok(false)
                }
                _ => Err(reply.error(&what)),
            }
        }
        Some(account) => {
            if let Some(e) = foreign(target, &account, &want.email) {
                return Err(e);
            }
            if account["displayName"].as_str().unwrap_or_default() != want.display_name {
                let what = format!("update gcp service account {}", want.email);
                let body = json!({
                    "serviceAccount": {"displayName": want.display_name},
                    "updateMask": "displayName",
                });
                let reply = c
                    .send(
                        Method::PATCH,
                        &account_path(&want.project, &want.email),
                        &[],
                        Some(&body),
                        &what,
                    )
                    .await?;
                if !reply.ok() {
                    return Err(reply.error(&what));
                }
                written.push("displayName".to_owned());
            }
            Ok(true)
        }
    }
}

/// Adds the Workload Identity members to the account's policy, keeping every other
/// member and binding; a concurrent change (409) starts again from the read.
pub(super) async fn bind(c: &Client, want: &Want) -> Result<Vec<String>> {
    let what = format!("set gcp service account iam {}", want.email);
    let path = format!("{}:setIamPolicy", account_path(&want.project, &want.email));
    for _ in 0..ATTEMPTS {
        let mut policy = get_policy(c, want).await?.policy;
        let have = members(&policy, &want.role);
        if want.members.iter().all(|m| have.contains(m)) {
            return Ok(Vec::new());
        }
        let mut bindings: Vec<Value> = policy["bindings"].as_array().cloned().unwrap_or_default();
        let existing = bindings
            .iter_mut()
            .find(|b| b["role"].as_str() == Some(want.role.as_str()) && b["condition"].is_null());
        match existing {
            Some(binding) => {
                let mut list: Vec<Value> =
                    binding["members"].as_array().cloned().unwrap_or_default();
                for m in &want.members {
                    if !list.iter().any(|x| x.as_str() == Some(m)) {
                        list.push(json!(m));
                    }
                }
                binding["members"] = Value::Array(list);
            }
            None => bindings.push(json!({"role": want.role, "members": want.members})),
        }
        policy["bindings"] = Value::Array(bindings);
        let reply = c
            .send(
                Method::POST,
                &path,
                &[],
                Some(&json!({"policy": policy})),
                &what,
            )
            .await?;
        match reply.status {
            409 => {
                crate::engine::retries::count();
                continue;
            }
            400 if reply.message().contains("Identity Pool does not exist") => {
                return Err(Error::Cloud(format!(
                    "{what}: {}: Workload Identity is not enabled for project {}\n  hint: enable Workload Identity on the GKE cluster (`gcloud container clusters update CLUSTER --workload-pool={}.svc.id.goog`), then apply again",
                    reply.message(),
                    want.project,
                    want.project
                )));
            }
            _ if reply.ok() => return Ok(vec![format!("bindings.{}", want.role)]),
            _ => return Err(reply.error(&what)),
        }
    }
    Err(Error::Cloud(format!(
        "{what}: the policy kept changing under strata ({ATTEMPTS} concurrent changes); run apply again"
    )))
}

/// Destroy's view of a workload's account: its Workload Identity members (strata's
/// member on the account's policy) and the account itself, each to delete, keep (not
/// this target's) or absent.
pub async fn destroy_plan(
    c: &Client,
    target: &Target,
    w: &WorkloadDocs,
) -> Result<Vec<crate::engine::destroy::Item>> {
    use crate::engine::destroy::Item;
    let Some(want) = w.gcp.as_ref().and_then(want) else {
        return Ok(Vec::new());
    };
    let email = want.email.as_str();
    let Some(account) = read_account(c, &want).await? else {
        return Ok(vec![
            Item::absent(SERVICE_ACCOUNT_IAM, email),
            Item::absent(SERVICE_ACCOUNT, email),
        ]);
    };
    if foreign(target, &account, email).is_some() {
        let why = format!("not ours: its description is not {:?}", marker(target));
        return Ok(vec![
            Item::keep(SERVICE_ACCOUNT_IAM, email, why.clone()),
            Item::keep(SERVICE_ACCOUNT, email, why),
        ]);
    }
    let policy = get_policy(c, &want).await?.policy;
    let have = members(&policy, &want.role);
    let binding = if want.members.iter().any(|m| have.contains(m)) {
        Item::delete(SERVICE_ACCOUNT_IAM, email)
    } else {
        Item::absent(SERVICE_ACCOUNT_IAM, email)
    };
    Ok(vec![binding, Item::delete(SERVICE_ACCOUNT, email)])
}

/// Removes strata's Workload Identity members from the account's policy, keeping the
/// rest; `Ok(false)` when there was nothing to remove (or no account).
pub async fn unbind(c: &Client, w: &WorkloadDocs) -> Result<bool> {
    let Some(want) = w.gcp.as_ref().and_then(want) else {
        return Ok(false);
    };
    let what = format!(
        "remove workload identity members from gcp service account {}",
        want.email
    );
    let path = format!("{}:setIamPolicy", account_path(&want.project, &want.email));
    for _ in 0..ATTEMPTS {
        if read_account(c, &want).await?.is_none() {
            return Ok(false);
        }
        let mut policy = get_policy(c, &want).await?.policy;
        let have = members(&policy, &want.role);
        if !want.members.iter().any(|m| have.contains(m)) {
            return Ok(false);
        }
        let mut bindings: Vec<Value> = policy["bindings"].as_array().cloned().unwrap_or_default();
        for b in bindings
            .iter_mut()
            .filter(|b| b["role"].as_str() == Some(want.role.as_str()) && b["condition"].is_null())
        {
            let kept: Vec<Value> = b["members"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|m| {
                    m.as_str()
                        .is_none_or(|m| !want.members.iter().any(|x| x == m))
                })
                .collect();
            b["members"] = Value::Array(kept);
        }
        bindings.retain(|b| {
            !b["condition"].is_null() || b["members"].as_array().is_some_and(|m| !m.is_empty())
        });
        policy["bindings"] = Value::Array(bindings);
        let reply = c
            .send(
                Method::POST,
                &path,
                &[],
                Some(&json!({"policy": policy})),
                &what,
            )
            .await?;
        match reply.status {
            409 => {
                crate::engine::retries::count();
                continue;
            }
            404 => return Ok(false),
            _ if reply.ok() => return Ok(true),
            _ => return Err(reply.error(&what)),
        }
    }
    Err(Error::Cloud(format!(
        "{what}: the policy kept changing under strata ({ATTEMPTS} concurrent changes); run destroy again"
    )))
}

/// Deletes the account (it was checked to be this target's when planned, and is
/// checked again); `Ok(false)` when it is gone already.
pub async fn delete_account(c: &Client, target: &Target, w: &WorkloadDocs) -> Result<bool> {
    let Some(want) = w.gcp.as_ref().and_then(want) else {
        return Ok(false);
    };
    let Some(account) = read_account(c, &want).await? else {
        return Ok(false);
    };
    if let Some(e) = foreign(target, &account, &want.email) {
        return Err(e);
    }
    let what = format!("delete gcp service account {}", want.email);
    let reply = c
        .send(
            Method::DELETE,
            &account_path(&want.project, &want.email),
            &[],
            None,
            &what,
        )
        .await?;
    match reply.status {
        404 => Ok(false),
        _ if reply.ok() => Ok(true),
        _ => Err(reply.error(&what)),
    }
}

/// The service account email of a workload's document.
pub fn email_of(w: &WorkloadDocs) -> Option<String> {
    w.gcp.as_ref().and_then(want).map(|w| w.email)
}
