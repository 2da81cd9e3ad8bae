//! GCP destroy: strata's members in the buckets' IAM policies (its workloads' service
//! accounts; everyone else's members stay), the Workload Identity members on each
//! service account, the service accounts, then the buckets whose layers say
//! `retain: false` (emptied of every generation first with `--force-empty`). A bucket
//! without this target's `managed-by=strata` / `strata-target` labels, or an account
//! without strata's description, is kept and the plan says why.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use super::identity::{self, SERVICE_ACCOUNT, SERVICE_ACCOUNT_IAM};
use super::{Client, KIND_BUCKET, KIND_BUCKET_IAM, identity_client, read_policy};
use crate::engine::destroy::{DestroyEvidence, DestroyOp, DestroyPlan, HELM_RELEASE, Item};
use crate::engine::docs::{BucketDoc, Documents};
use crate::engine::lock;
use crate::error::{Error, Result};
use crate::model::{Cloud, Target};
use crate::resources::aws::destroy::not_ours;

/// Reads what destroy would delete; writes nothing.
pub async fn plan(target: &Target, docs: &Documents) -> Result<DestroyPlan> {
    let client = Client::from_env().await?;
    let iam = identity_client(docs).await?;
    plan_full(&client, iam.as_ref(), target, docs).await
}

/// The members strata owns on any bucket: its workloads' service accounts.
fn owned(docs: &Documents) -> BTreeSet<String> {
    docs.workloads
        .iter()
        .filter_map(identity::email_of)
        .map(|e| format!("serviceAccount:{e}"))
        .collect()
}

/// The live bucket, `None` when it does not exist.
async fn get_bucket(client: &Client, name: &str) -> Result<Option<Value>> {
    let what = format!("read gcs_bucket {name}");
    let reply = client
        .send(Method::GET, &format!("/b/{name}"), &[], None, &what)
        .await?;
    match reply.status {
        404 => Ok(None),
        _ if reply.ok() => Ok(Some(reply.body)),
        _ => Err(reply.error(&what)),
    }
}

fn labels(live: &Value) -> std::collections::BTreeMap<String, String> {
    live["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect()
}

/// [`plan`] with explicit clients.
pub async fn plan_full(
    client: &Client,
    iam: Option<&Client>,
    target: &Target,
    docs: &Documents,
) -> Result<DestroyPlan> {
    let owned = owned(docs);
    let mut live_buckets = Vec::new();
    for b in &docs.buckets {
        let live = get_bucket(client, &b.name).await?;
        let why = live.as_ref().and_then(|l| not_ours(target, &labels(l)));
        live_buckets.push((b, live, why));
    }
    let mut items = Vec::new();
    for (b, live, why) in live_buckets.iter().rev() {
        items.push(match (live, why) {
            (None, _) => Item::absent(KIND_BUCKET_IAM, &b.name),
            (Some(_), Some(why)) => Item::keep(KIND_BUCKET_IAM, &b.name, why.clone()),
            (Some(_), None) => {
                let policy = read_policy(client, &b.name).await?;
                if members_of(&policy).iter().any(|m| owned.contains(m)) {
                    Item::delete(KIND_BUCKET_IAM, &b.name)
                } else {
                    Item::absent(KIND_BUCKET_IAM, &b.name)
                }
            }
        });
    }
    if let Some(iam) = iam {
        for w in docs.workloads.iter().rev() {
            items.extend(identity::destroy_plan(iam, target, w).await?);
        }
    }
    for (b, live, why) in live_buckets.iter().rev() {
        items.push(match (live, why) {
            (None, _) => Item::absent(KIND_BUCKET, &b.name),
            (Some(_), Some(why)) => Item::keep(KIND_BUCKET, &b.name, why.clone()),
            (Some(_), None) if b.retain => Item::keep(KIND_BUCKET, &b.name, retained(b)),
            (Some(_), None) => {
                let objects = generations(client, &b.name)
                    .await?
                    .iter()
                    .filter(|(name, _)| name != lock::KEY)
                    .count() as u64;
                Item {
                    objects: Some(objects),
                    ..Item::delete(KIND_BUCKET, &b.name)
                }
            }
        });
    }
    Ok(DestroyPlan {
        target: target.name.clone(),
        cloud: Cloud::Gcp,
        account: target.gcp().project_id.clone(),
        region: target.gcp().location.clone(),
        items,
    })
}

fn retained(b: &BucketDoc) -> String {
    format!(
        "retained: buckets.{}.retain is true (the default); set it to false to delete the bucket",
        b.key
    )
}

/// Every member of the policy's unconditional bindings.
fn members_of(policy: &Value) -> BTreeSet<String> {
    policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["condition"].is_null())
        .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect()
}

/// Every object generation in the bucket (`versions=true`), as (name, generation).
async fn generations(client: &Client, bucket: &str) -> Result<Vec<(String, Option<String>)>> {
    let what = format!("list the objects of gcs_bucket {bucket}");
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut query = vec![
            ("versions", "true".to_owned()),
            ("fields", "items(name,generation),nextPageToken".to_owned()),
        ];
        if let Some(t) = &token {
            query.push(("pageToken", t.clone()));
        }
        let reply = client
            .send(Method::GET, &format!("/b/{bucket}/o"), &query, None, &what)
            .await?;
        if !reply.ok() {
            return Err(reply.error(&what));
        }
        for item in reply.body["items"].as_array().into_iter().flatten() {
            let Some(name) = item["name"].as_str() else {
                continue;
            };
            let generation = match &item["generation"] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            all.push((name.to_owned(), generation));
        }
        match reply.body["nextPageToken"].as_str() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    Ok(all)
}

/// Deletes what the plan says, in its order; stops at the first failure.
pub async fn execute(
    target: &Target,
    docs: &Documents,
    plan: &DestroyPlan,
    evidence: &mut DestroyEvidence,
    held: &mut Option<lock::Held>,
) -> Result<()> {
    let client = Client::from_env().await?;
    let iam = identity_client(docs).await?;
    execute_full(&client, iam.as_ref(), target, docs, plan, evidence, held).await
}

/// [`execute`] with explicit clients.
pub async fn execute_full(
    client: &Client,
    iam: Option<&Client>,
    target: &Target,
    docs: &Documents,
    plan: &DestroyPlan,
    evidence: &mut DestroyEvidence,
    held: &mut Option<lock::Held>,
) -> Result<()> {
    let owned = owned(docs);
    let workload = |email: &str| {
        docs.workloads
            .iter()
            .find(|w| identity::email_of(w).as_deref() == Some(email))
    };
    for item in plan
        .items
        .iter()
        .filter(|i| i.op == DestroyOp::Delete && i.kind != HELM_RELEASE)
    {
        if item.kind == KIND_BUCKET {
            lock::release(held.take()).await?;
        }
        let result = match (item.kind.as_str(), iam) {
            (KIND_BUCKET_IAM, _) => remove_members(client, &item.name, &owned).await,
            (SERVICE_ACCOUNT_IAM, Some(iam)) => match workload(&item.name) {
                Some(w) => identity::unbind(iam, w).await,
                None => Ok(false),
            },
            (SERVICE_ACCOUNT, Some(iam)) => match workload(&item.name) {
                Some(w) => identity::delete_account(iam, target, w).await,
                None => Ok(false),
            },
            (KIND_BUCKET, _) => {
                delete_bucket(client, &item.name, item.objects.unwrap_or(0) > 0).await
            }
            (other, _) => Err(Error::Cloud(format!(
                "destroy: cannot delete {other} {} here",
                item.name
            ))),
        };
        evidence.record(item, &result);
        result?;
    }
    Ok(())
}

/// Takes strata's members out of the bucket's policy (a binding left empty goes),
/// keeping everything else and the etag; `Ok(false)` when none was there.
async fn remove_members(client: &Client, bucket: &str, owned: &BTreeSet<String>) -> Result<bool> {
    if get_bucket(client, bucket).await?.is_none() {
        return Ok(false);
    }
    let mut policy = read_policy(client, bucket).await?;
    if !members_of(&policy).iter().any(|m| owned.contains(m)) {
        return Ok(false);
    }
    let mut bindings: Vec<Value> = policy["bindings"].as_array().cloned().unwrap_or_default();
    for b in bindings.iter_mut().filter(|b| b["condition"].is_null()) {
        let kept: Vec<Value> = b["members"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.as_str().is_none_or(|m| !owned.contains(m)))
            .collect();
        b["members"] = Value::Array(kept);
    }
    bindings.retain(|b| {
        !b["condition"].is_null() || b["members"].as_array().is_some_and(|m| !m.is_empty())
    });
    policy["bindings"] = Value::Array(bindings);
    let what = format!("remove strata's members from gcs_bucket_iam {bucket}");
    let reply = client
        .send(
            Method::PUT,
            &format!("/b/{bucket}/iam"),
            &[],
            Some(&policy),
            &what,
        )
        .await?;
    match reply.status {
        _ if reply.ok() => Ok(true),
        409 | 412 => Err(Error::Cloud(format!(
            "{what}: the policy changed while strata was destroying (etag mismatch); run destroy again"
        ))),
        _ => Err(reply.error(&what)),
    }
}

/// Deletes every generation when `empty`, then the bucket.
async fn delete_bucket(client: &Client, bucket: &str, empty: bool) -> Result<bool> {
    if get_bucket(client, bucket).await?.is_none() {
        return Ok(false);
    }
    if empty {
        for (name, generation) in generations(client, bucket).await? {
            let what = format!("delete gs://{bucket}/{name}");
            let query: Vec<(&str, String)> =
                generation.into_iter().map(|g| ("generation", g)).collect();
            let path = format!("/b/{bucket}/o/{}", encode(&name));
            let reply = client
                .send(Method::DELETE, &path, &query, None, &what)
                .await?;
            if !reply.ok() && reply.status != 404 {
                return Err(reply.error(&what));
            }
        }
    }
    let what = format!("delete gcs_bucket {bucket}");
    let reply = client
        .send(Method::DELETE, &format!("/b/{bucket}"), &[], None, &what)
        .await?;
    match reply.status {
        404 => Ok(false),
        409 => Err(Error::Cloud(format!(
            "{what}: the bucket is not empty: objects were written since destroy checked it\n  hint: run destroy again (with --force-empty to delete them)"
        ))),
        _ if reply.ok() => Ok(true),
        _ => Err(reply.error(&what)),
    }
}

/// An object name as one path segment (`/` and everything outside the unreserved set
/// percent-encoded).
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
