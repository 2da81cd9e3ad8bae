//! AWS destroy: what apply made for a target, read and deleted in reverse order — Pod
//! Identity associations, managed policies (detached from every role, their
//! non-default versions, then the policy), roles, the IAM OIDC provider (only when
//! strata made it for this target and no other role trusts it), then the buckets whose
//! layers say `retain: false`. A resource without this target's `managed-by=strata` /
//! `strata-target` tags is kept, and the plan says why. Each deletion reads first and
//! treats "not found" as absent, so a re-run after a failure finishes the job.

use std::collections::BTreeMap;

use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use super::identity::{
    ASSOCIATION, LiveAssociation, NoCluster, OIDC_PROVIDER, ROLE, association_name, provider_arn,
    read_association, read_role, role_of,
};
use super::{
    BUCKET, Clients, POLICY, check_account, clients, cloud_error, parse_document, policy_of,
    read_bucket_tags, read_policy, status_of,
};
use crate::engine::destroy::{DestroyEvidence, DestroyOp, DestroyPlan, HELM_RELEASE, Item};
use crate::engine::docs::{BucketDoc, Documents};
use crate::engine::lock;
use crate::error::{Error, Result};
use crate::model::{AwsIdentity, Cloud, Target};

/// Why a resource is not this target's, or `None` when it is.
pub(crate) fn not_ours(target: &Target, tags: &BTreeMap<String, String>) -> Option<String> {
    let managed = tags.get("managed-by").is_some_and(|v| v == "strata");
    match tags.get("strata-target") {
        Some(owner) if managed && owner == &target.name => None,
        Some(owner) if managed => Some(format!("not ours: it belongs to strata target {owner}")),
        _ => Some("not ours: no managed-by=strata / strata-target tags".into()),
    }
}

fn retained(b: &BucketDoc) -> String {
    format!(
        "retained: buckets.{}.retain is true (the default); set it to false to delete the bucket",
        b.key
    )
}

/// Reads what destroy would delete; writes nothing.
pub async fn plan(target: &Target, docs: &Documents) -> Result<DestroyPlan> {
    let c = clients(target).await;
    let account = check_account(&c, target).await?;
    let aws = target.aws();
    let mut items = Vec::new();
    let with_role: Vec<&str> = docs
        .workloads
        .iter()
        .filter(|w| w.trust.is_some())
        .map(|w| w.key.as_str())
        .collect();
    if aws.identity == AwsIdentity::PodIdentity {
        for w in with_role.iter().rev() {
            let name = association_name(target, w);
            items.push(
                match read_association(&c, target, w, NoCluster::Absent).await? {
                    None => Item::absent(ASSOCIATION, &name),
                    Some(live) => match not_ours(target, &live.tags) {
                        Some(why) => Item::keep(ASSOCIATION, &name, why),
                        None => Item::delete(ASSOCIATION, &name),
                    },
                },
            );
        }
    }
    for w in docs.workloads.iter().rev().filter(|w| w.policy.is_some()) {
        let (_, arn) = policy_of(target, &w.key);
        items.push(match read_policy(&c, &arn).await? {
            None => Item::absent(POLICY, &arn),
            Some(live) => match not_ours(target, &live.tags) {
                Some(why) => Item::keep(POLICY, &arn, why),
                None => Item::delete(POLICY, &arn),
            },
        });
    }
    for w in with_role.iter().rev() {
        let (name, _, _) = role_of(target, w);
        items.push(match read_role(&c, &name).await? {
            None => Item::absent(ROLE, &name),
            Some(live) => match not_ours(target, &live.tags) {
                Some(why) => Item::keep(ROLE, &name, why),
                None => Item::delete(ROLE, &name),
            },
        });
    }
    if aws.identity == AwsIdentity::Irsa && !with_role.is_empty() && aws.oidc_issuer.is_some() {
        let deleted: Vec<String> = items
            .iter()
            .filter(|i| i.kind == ROLE && i.op == DestroyOp::Delete)
            .map(|i| i.name.clone())
            .collect();
        items.push(plan_provider(&c, target, &deleted).await?);
    }
    for b in docs.buckets.iter().rev() {
        items.push(plan_bucket(&c, target, b).await?);
    }
    Ok(DestroyPlan {
        target: target.name.clone(),
        cloud: Cloud::Aws,
        account,
        region: aws.region.clone(),
        items,
    })
}

async fn plan_provider(c: &Clients, target: &Target, deleted_roles: &[String]) -> Result<Item> {
    let arn = provider_arn(target);
    let resource = format!("iam oidc provider {arn}");
    let tags: BTreeMap<String, String> = match c
        .iam
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(&arn)
        .send()
        .await
    {
        Ok(out) => out
            .tags()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            return Ok(Item::absent(OIDC_PROVIDER, &arn));
        }
        Err(e) => return Err(cloud_error(&resource, "GetOpenIDConnectProvider", &e)),
    };
    if let Some(why) = not_ours(target, &tags) {
        return Ok(Item::keep(
            OIDC_PROVIDER,
            &arn,
            format!("{why} (strata deletes only a provider it created)"),
        ));
    }
    let users = roles_trusting(c, &arn).await?;
    let others: Vec<&String> = users
        .iter()
        .filter(|r| !deleted_roles.contains(r))
        .collect();
    if let Some(first) = others.first() {
        return Ok(Item::keep(
            OIDC_PROVIDER,
            &arn,
            format!(
                "still used: the trust policy of role {first}{} names it",
                if others.len() > 1 {
                    format!(" (and {} more)", others.len() - 1)
                } else {
                    String::new()
                }
            ),
        ));
    }
    Ok(Item::delete(OIDC_PROVIDER, &arn))
}

/// The roles of the account whose trust policy names `provider`.
async fn roles_trusting(c: &Clients, provider: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out = c
            .iam
            .list_roles()
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| cloud_error("iam roles", "ListRoles", &e))?;
        for role in out.roles() {
            let trust = parse_document(role.assume_role_policy_document().unwrap_or_default());
            if trust.to_string().contains(provider) {
                names.push(role.role_name().to_owned());
            }
        }
        match out.marker() {
            Some(m) if out.is_truncated() => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    Ok(names)
}

async fn bucket_exists(c: &Clients, name: &str) -> Result<bool> {
    match c.s3.head_bucket().bucket(name).send().await {
        Ok(_) => Ok(true),
        Err(e) if status_of(&e) == Some(404) => Ok(false),
        Err(e) => Err(cloud_error(&format!("s3 bucket {name}"), "HeadBucket", &e)),
    }
}

async fn plan_bucket(c: &Clients, target: &Target, b: &BucketDoc) -> Result<Item> {
    if !bucket_exists(c, &b.name).await? {
        return Ok(Item::absent(BUCKET, &b.name));
    }
    let tags = read_bucket_tags(c, b).await?;
    if let Some(why) = not_ours(target, &tags) {
        return Ok(Item::keep(BUCKET, &b.name, why));
    }
    if b.retain {
        return Ok(Item::keep(BUCKET, &b.name, retained(b)));
    }
    let objects = object_versions(c, &b.name).await?.len() as u64;
    Ok(Item {
        objects: Some(objects),
        ..Item::delete(BUCKET, &b.name)
    })
}

/// Every version and delete marker in the bucket (an unversioned object is one
/// version, `null`).
async fn object_versions(c: &Clients, bucket: &str) -> Result<Vec<ObjectIdentifier>> {
    let resource = format!("s3 bucket {bucket}");
    let mut all = Vec::new();
    let mut key_marker: Option<String> = None;
    let mut version_marker: Option<String> = None;
    loop {
        let out =
            c.s3.list_object_versions()
                .bucket(bucket)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .map_err(|e| cloud_error(&resource, "ListObjectVersions", &e))?;
        let pairs = out
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                out.delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            );
        for (key, version) in pairs {
            let Some(key) = key else { continue };
            let id = ObjectIdentifier::builder()
                .key(key)
                .set_version_id(version.map(str::to_owned))
                .build()
                .map_err(|e| Error::Cloud(format!("{resource}: {e}")))?;
            all.push(id);
        }
        if out.is_truncated() != Some(true) {
            break;
        }
        key_marker = out.next_key_marker().map(str::to_owned);
        version_marker = out.next_version_id_marker().map(str::to_owned);
        if key_marker.is_none() {
            break;
        }
    }
    Ok(all)
}

/// Deletes what the plan says to delete, in its order, recording each; stops at the
/// first failure.
pub async fn execute(
    target: &Target,
    _docs: &Documents,
    plan: &DestroyPlan,
    evidence: &mut DestroyEvidence,
    _held: &mut Option<lock::Held>,
) -> Result<()> {
    let c = clients(target).await;
    check_account(&c, target).await?;
    for item in plan
        .items
        .iter()
        .filter(|i| i.op == DestroyOp::Delete && i.kind != HELM_RELEASE)
    {
        let result = match item.kind.as_str() {
            ASSOCIATION => delete_association(&c, target, item).await,
            POLICY => delete_policy(&c, &item.name).await,
            ROLE => delete_role(&c, &item.name).await,
            OIDC_PROVIDER => delete_provider(&c, &item.name).await,
            BUCKET => delete_bucket(&c, &item.name, item.objects.unwrap_or(0) > 0).await,
            other => Err(Error::Cloud(format!(
                "destroy: unknown resource kind {other} in the plan"
            ))),
        };
        evidence.record(item, &result);
        result?;
    }
    Ok(())
}

async fn delete_association(c: &Clients, target: &Target, item: &Item) -> Result<bool> {
    let workload = target
        .names
        .workloads
        .keys()
        .find(|w| association_name(target, w) == item.name)
        .ok_or_else(|| {
            Error::Cloud(format!(
                "the plan names association {}, which the render does not have",
                item.name
            ))
        })?;
    let Some(LiveAssociation { id, .. }) =
        read_association(c, target, workload, NoCluster::Absent).await?
    else {
        return Ok(false);
    };
    let cluster = target.aws().cluster.clone().unwrap_or_default();
    match c
        .eks
        .delete_pod_identity_association()
        .cluster_name(&cluster)
        .association_id(&id)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(cloud_error(
            &format!("eks pod identity association {}", item.name),
            "DeletePodIdentityAssociation",
            &e,
        )),
    }
}

fn is_missing<E: aws_sdk_iam::error::ProvideErrorMetadata>(
    e: &aws_sdk_iam::error::SdkError<E>,
) -> bool {
    e.code() == Some("NoSuchEntity")
}

async fn delete_policy(c: &Clients, arn: &str) -> Result<bool> {
    let resource = format!("iam policy {arn}");
    let entities = match c
        .iam
        .list_entities_for_policy()
        .policy_arn(arn)
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if is_missing(&e) => return Ok(false),
        Err(e) => return Err(cloud_error(&resource, "ListEntitiesForPolicy", &e)),
    };
    for role in entities.policy_roles() {
        let Some(name) = role.role_name() else {
            continue;
        };
        detach(c, &resource, name, arn, name).await?;
    }
    let versions = match c.iam.list_policy_versions().policy_arn(arn).send().await {
        Ok(out) => out,
        Err(e) if is_missing(&e) => return Ok(false),
        Err(e) => return Err(cloud_error(&resource, "ListPolicyVersions", &e)),
    };
    for v in versions
        .versions()
        .iter()
        .filter(|v| !v.is_default_version())
    {
        let Some(id) = v.version_id() else { continue };
        match c
            .iam
            .delete_policy_version()
            .policy_arn(arn)
            .version_id(id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if is_missing(&e) => {}
            Err(e) => {
                return Err(cloud_error(
                    &resource,
                    &format!("DeletePolicyVersion {id}"),
                    &e,
                ));
            }
        }
    }
    match c.iam.delete_policy().policy_arn(arn).send().await {
        Ok(_) => Ok(true),
        Err(e) if is_missing(&e) => Ok(false),
        Err(e) => Err(cloud_error(&resource, "DeletePolicy", &e)),
    }
}

/// Detaches policy `arn` from role `role`; one already detached (or gone) is fine.
/// Errors name `resource` and, after the action, `which` (the role or the policy).
async fn detach(c: &Clients, resource: &str, role: &str, arn: &str, which: &str) -> Result<()> {
    match c
        .iam
        .detach_role_policy()
        .role_name(role)
        .policy_arn(arn)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_missing(&e) => Ok(()),
        Err(e) => Err(cloud_error(
            resource,
            &format!("DetachRolePolicy {which}"),
            &e,
        )),
    }
}

async fn delete_role(c: &Clients, name: &str) -> Result<bool> {
    let resource = format!("iam role {name}");
    let Some(live) = read_role(c, name).await? else {
        return Ok(false);
    };
    for arn in &live.attached {
        detach(c, &resource, name, arn, arn).await?;
    }
    let inline = c
        .iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(|e| cloud_error(&resource, "ListRolePolicies", &e))?;
    for policy in inline.policy_names() {
        c.iam
            .delete_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await
            .map_err(|e| cloud_error(&resource, &format!("DeleteRolePolicy {policy}"), &e))?;
    }
    match c.iam.delete_role().role_name(name).send().await {
        Ok(_) => Ok(true),
        Err(e) if is_missing(&e) => Ok(false),
        Err(e) => Err(cloud_error(&resource, "DeleteRole", &e)),
    }
}

async fn delete_provider(c: &Clients, arn: &str) -> Result<bool> {
    match c
        .iam
        .delete_open_id_connect_provider()
        .open_id_connect_provider_arn(arn)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_missing(&e) => Ok(false),
        Err(e) => Err(cloud_error(
            &format!("iam oidc provider {arn}"),
            "DeleteOpenIDConnectProvider",
            &e,
        )),
    }
}

/// Empties the bucket (every version and delete marker) when `empty`, then deletes it.
async fn delete_bucket(c: &Clients, name: &str, empty: bool) -> Result<bool> {
    let resource = format!("s3 bucket {name}");
    if !bucket_exists(c, name).await? {
        return Ok(false);
    }
    if empty {
        loop {
            let batch = object_versions(c, name).await?;
            if batch.is_empty() {
                break;
            }
            for chunk in batch.chunks(1000) {
                let delete = Delete::builder()
                    .set_objects(Some(chunk.to_vec()))
                    .quiet(true)
                    .build()
                    .map_err(|e| Error::Cloud(format!("{resource}: DeleteObjects: {e}")))?;
                let out =
                    c.s3.delete_objects()
                        .bucket(name)
                        .delete(delete)
                        .send()
                        .await
                        .map_err(|e| cloud_error(&resource, "DeleteObjects", &e))?;
                if let Some(err) = out.errors().first() {
                    return Err(Error::Cloud(format!(
                        "{resource}: DeleteObjects: {} {}: {}",
                        err.key().unwrap_or_default(),
                        err.code().unwrap_or_default(),
                        err.message().unwrap_or_default()
                    )));
                }
            }
        }
    }
    match c.s3.delete_bucket().bucket(name).send().await {
        Ok(_) => Ok(true),
        Err(e) if status_of(&e) == Some(404) => Ok(false),
        Err(e) if e.code() == Some("BucketNotEmpty") => Err(Error::Cloud(format!(
            "{resource}: DeleteBucket: objects were written since destroy checked the bucket; nothing else was deleted after it\n  hint: run destroy again (with --force-empty to delete them)"
        ))),
        Err(e) => Err(cloud_error(&resource, "DeleteBucket", &e)),
    }
}

use aws_sdk_s3::error::ProvideErrorMetadata as _;
