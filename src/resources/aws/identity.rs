//! AWS: the identity chain from a pod to its buckets, per workload — the IAM role
//! whose trust policy is the rendered `iam/<w>.trust.json`, the workload's managed
//! policy attached to it, and how the pod gets the role: an EKS Pod Identity
//! association (cluster, namespace, service account → role), or IRSA (the cluster's
//! IAM OIDC provider, which must exist; strata creates it only when the layers say
//! `aws.createOidcProvider: true`, and checks the cluster's live issuer against
//! `aws.oidcIssuer`).
//!
//! Each resource is read first and written only where it differs; a role strata did
//! not make (no `managed-by=strata` / `strata-target` tags for this target) is never
//! changed. IAM is eventually consistent (a role just created may not be assumable by
//! EKS yet, a policy just created may not be attachable): those calls are retried
//! with bounded backoff.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_iam::error::ProvideErrorMetadata;
use serde_json::{Value, json};

use super::{Clients, cloud_error, desired_tags, iam_tags, parse_document, same_document};
use crate::desired::iam::issuer_host_path;
use crate::engine::docs::WorkloadDocs;
use crate::engine::plan::{Action, FieldChange, Op};
use crate::error::{Error, Result};
use crate::model::{Target, partition};

pub const ROLE: &str = "iam_role";
pub const OIDC_PROVIDER: &str = "iam_oidc_provider";
pub const ASSOCIATION: &str = "eks_pod_identity_association";

/// How often, and how long apart, an eventually consistent call is tried.
const ATTEMPTS: u32 = 6;
const FIRST_WAIT: Duration = Duration::from_millis(250);

/// Runs `call` until it succeeds, its error is not one of `transient`, or the attempts
/// are spent; waits double from 250 ms.
async fn retry<T, E, F, Fut>(transient: &[&str], mut call: F) -> std::result::Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
    E: ProvideErrorMetadata,
{
    let mut wait = FIRST_WAIT;
    let mut attempt = 1;
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < ATTEMPTS && e.code().is_some_and(|c| transient.contains(&c)) => {
                crate::engine::retries::count();
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn role_of(target: &Target, workload: &str) -> (String, String, String) {
    let names = &target.names.workloads[workload];
    (
        names.role.clone().unwrap_or_default(),
        names.role_arn.clone().unwrap_or_default(),
        names.policy_arn.clone().unwrap_or_default(),
    )
}

/// The live role: its trust document, attached policies and tags.
pub(crate) struct LiveRole {
    pub trust: Value,
    pub attached: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

pub(crate) async fn read_role(c: &Clients, name: &str) -> Result<Option<LiveRole>> {
    let resource = format!("iam role {name}");
    let role = match c.iam.get_role().role_name(name).send().await {
        Ok(out) => out.role().cloned(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(cloud_error(&resource, "GetRole", &e)),
    };
    let Some(role) = role else { return Ok(None) };
    let trust = parse_document(role.assume_role_policy_document().unwrap_or_default());
    let attached = c
        .iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(|e| cloud_error(&resource, "ListAttachedRolePolicies", &e))?
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_owned))
        .collect();
    let tags = c
        .iam
        .list_role_tags()
        .role_name(name)
        .send()
        .await
        .map_err(|e| cloud_error(&resource, "ListRoleTags", &e))?
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    Ok(Some(LiveRole {
        trust,
        attached,
        tags,
    }))
}

/// A role that exists but is not this target's: say whose it is, change nothing.
fn foreign(target: &Target, resource: &str, tags: &BTreeMap<String, String>) -> Option<Error> {
    let owner = tags.get("strata-target");
    let managed = tags.get("managed-by").is_some_and(|v| v == "strata");
    if managed && owner == Some(&target.name) {
        return None;
    }
    let whose = match (managed, owner) {
        (true, Some(other)) => format!("strata target {other}"),
        _ => "no strata target (it has no managed-by=strata / strata-target tags)".to_owned(),
    };
    Some(Error::Cloud(format!(
        "{resource} exists and belongs to {whose}; strata changes nothing it does not own\n  hint: give the workload another role name (`workloads.<w>.iamRole`), or delete or re-tag the existing role"
    )))
}

fn tag_diff(live: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> Vec<FieldChange> {
    want.iter()
        .filter(|(k, v)| live.get(*k) != Some(*v))
        .map(|(k, v)| FieldChange {
            field: format!("tags.{k}"),
            from: live.get(k).map_or(Value::Null, |v| json!(v)),
            to: json!(v),
        })
        .collect()
}

/// The role of a workload (its trust policy `trust`, the managed policy attached, the
/// tags): what differs from the live role.
pub(super) async fn plan_role(
    c: &Clients,
    target: &Target,
    w: &WorkloadDocs,
    trust: &Value,
) -> Result<Action> {
    let want_tags = desired_tags(target);
    let (name, _, policy_arn) = role_of(target, &w.key);
    let resource = format!("iam role {name}");
    match read_role(c, &name).await? {
        None => {
            let mut changes = vec![
                FieldChange {
                    field: "trust".into(),
                    from: Value::Null,
                    to: trust.clone(),
                },
                FieldChange {
                    field: "attach".into(),
                    from: Value::Null,
                    to: json!(policy_arn),
                },
            ];
            changes.extend(tag_diff(&BTreeMap::new(), &want_tags));
            Ok(Action {
                kind: ROLE.into(),
                name,
                op: Op::Create,
                changes,
            })
        }
        Some(live) => {
            if let Some(e) = foreign(target, &resource, &live.tags) {
                return Err(e);
            }
            let mut changes = Vec::new();
            if !same_document(&live.trust, trust) {
                changes.push(FieldChange {
                    field: "trust".into(),
                    from: live.trust.clone(),
                    to: trust.clone(),
                });
            }
            if !live.attached.contains(&policy_arn) {
                changes.push(FieldChange {
                    field: "attach".into(),
                    from: json!(live.attached),
                    to: json!(policy_arn),
                });
            }
            changes.extend(tag_diff(&live.tags, &want_tags));
            let op = if changes.is_empty() {
                Op::Unchanged
            } else {
                Op::Update
            };
            Ok(Action {
                kind: ROLE.into(),
                name,
                op,
                changes,
            })
        }
    }
}

/// IRSA: the cluster's live OIDC issuer must be the one the layers (and so the
/// rendered trust policies) name.
pub(super) async fn check_issuer(c: &Clients, target: &Target) -> Result<()> {
    let aws = target.aws();
    let (Some(cluster), Some(want)) = (&aws.cluster, &aws.oidc_issuer) else {
        return Ok(());
    };
    let resource = format!("eks cluster {cluster}");
    let out = c
        .eks
        .describe_cluster()
        .name(cluster)
        .send()
        .await
        .map_err(|e| cloud_error(&resource, "DescribeCluster", &e))?;
    let live = out
        .cluster()
        .and_then(|c| c.identity())
        .and_then(|i| i.oidc())
        .and_then(|o| o.issuer())
        .unwrap_or_default();
    if issuer_host_path(live) != issuer_host_path(want) {
        return Err(Error::Cloud(format!(
            "{resource}: its OIDC issuer is {live}, but aws.oidcIssuer says {want}; the rendered trust policies would trust the wrong provider; nothing was written\n  hint: set aws.oidcIssuer to {live}"
        )));
    }
    Ok(())
}

pub(crate) fn provider_arn(target: &Target) -> String {
    let aws = target.aws();
    format!(
        "arn:{}:iam::{}:oidc-provider/{}",
        partition(&aws.region),
        aws.account_id,
        issuer_host_path(aws.oidc_issuer.as_deref().unwrap_or_default())
    )
}

async fn oidc_provider_exists(c: &Clients, arn: &str) -> Result<bool> {
    let out = c
        .iam
        .list_open_id_connect_providers()
        .send()
        .await
        .map_err(|e| cloud_error("iam oidc providers", "ListOpenIDConnectProviders", &e))?;
    Ok(out
        .open_id_connect_provider_list()
        .iter()
        .any(|p| p.arn() == Some(arn)))
}

pub(super) async fn plan_oidc_provider(c: &Clients, target: &Target) -> Result<Action> {
    let aws = target.aws();
    let arn = provider_arn(target);
    let issuer = aws.oidc_issuer.clone().unwrap_or_default();
    let op = if oidc_provider_exists(c, &arn).await? {
        Op::Unchanged
    } else if aws.create_oidc_provider {
        Op::Create
    } else {
        return Err(Error::Cloud(format!(
            "iam oidc provider for {issuer} does not exist in account {}; IRSA roles cannot be assumed without it; nothing was written\n  hint: create it (`eksctl utils associate-iam-oidc-provider --cluster {}`), or set aws.createOidcProvider: true to let strata create it",
            aws.account_id,
            aws.cluster.as_deref().unwrap_or("<cluster>")
        )));
    };
    let changes = if op == Op::Create {
        vec![FieldChange {
            field: "url".into(),
            from: Value::Null,
            to: json!(issuer),
        }]
    } else {
        Vec::new()
    };
    Ok(Action {
        kind: OIDC_PROVIDER.into(),
        name: arn,
        op,
        changes,
    })
}

/// A workload's live Pod Identity association.
pub(crate) struct LiveAssociation {
    pub id: String,
    pub role_arn: String,
    pub tags: BTreeMap<String, String>,
}

/// How [`read_association`] takes a cluster that does not exist.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum NoCluster {
    /// An error: apply needs the cluster.
    Refuse,
    /// No cluster, no association: what destroy wants to know.
    Absent,
}

/// The association of the workload's service account, if any.
pub(crate) async fn read_association(
    c: &Clients,
    target: &Target,
    workload: &str,
    no_cluster: NoCluster,
) -> Result<Option<LiveAssociation>> {
    let cluster = target.aws().cluster.clone().unwrap_or_default();
    let names = &target.names.workloads[workload];
    let resource = format!(
        "eks pod identity association {cluster}/{}/{}",
        names.namespace, names.service_account
    );
    let list = c
        .eks
        .list_pod_identity_associations()
        .cluster_name(&cluster)
        .namespace(&names.namespace)
        .service_account(&names.service_account)
        .send()
        .await;
    let list = match list {
        Ok(list) => list,
        Err(e)
            if no_cluster == NoCluster::Absent
                && e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(cloud_error(&resource, "ListPodIdentityAssociations", &e)),
    };
    let Some(id) = list.associations().first().and_then(|a| a.association_id()) else {
        return Ok(None);
    };
    let out = c
        .eks
        .describe_pod_identity_association()
        .cluster_name(&cluster)
        .association_id(id)
        .send()
        .await
        .map_err(|e| cloud_error(&resource, "DescribePodIdentityAssociation", &e))?;
    let association = out.association();
    Ok(Some(LiveAssociation {
        id: id.to_owned(),
        role_arn: association
            .and_then(|a| a.role_arn())
            .unwrap_or_default()
            .to_owned(),
        tags: association
            .and_then(|a| a.tags())
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    }))
}

pub(crate) fn association_name(target: &Target, workload: &str) -> String {
    let names = &target.names.workloads[workload];
    format!(
        "{}/{}/{}",
        target.aws().cluster.as_deref().unwrap_or_default(),
        names.namespace,
        names.service_account
    )
}

pub(super) async fn plan_association(
    c: &Clients,
    target: &Target,
    workload: &str,
) -> Result<Action> {
    let (_, role_arn, _) = role_of(target, workload);
    let name = association_name(target, workload);
    let live = read_association(c, target, workload, NoCluster::Refuse).await?;
    let (op, changes) = match live.map(|a| a.role_arn) {
        None => (
            Op::Create,
            vec![FieldChange {
                field: "roleArn".into(),
                from: Value::Null,
                to: json!(role_arn),
            }],
        ),
        Some(live) if live == role_arn => (Op::Unchanged, Vec::new()),
        Some(live) => (
            Op::Update,
            vec![FieldChange {
                field: "roleArn".into(),
                from: json!(live),
                to: json!(role_arn),
            }],
        ),
    };
    Ok(Action {
        kind: ASSOCIATION.into(),
        name,
        op,
        changes,
    })
}

/// Creates the IAM OIDC provider of the cluster's issuer unless it exists (IRSA, with
/// `aws.createOidcProvider: true`); returns the fields written.
pub(super) async fn apply_oidc_provider(
    c: &Clients,
    target: &Target,
    arn: &str,
) -> Result<Vec<String>> {
    if oidc_provider_exists(c, arn).await? {
        return Ok(Vec::new());
    }
    let issuer = target.aws().oidc_issuer.clone().unwrap_or_default();
    let tags = desired_tags(target);
    let created = c
        .iam
        .create_open_id_connect_provider()
        .url(&issuer)
        .client_id_list("sts.amazonaws.com")
        .set_tags(Some(iam_tags(&tags, arn)?))
        .send()
        .await;
    match created {
        Ok(_) => Ok(vec!["url".into()]),
        // Another apply made it meanwhile: it exists, which is all this needs.
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_entity_already_exists_exception()) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(cloud_error(
            &format!("iam oidc provider {issuer}"),
            "CreateOpenIDConnectProvider",
            &e,
        )),
    }
}

pub(super) async fn apply_role(
    c: &Clients,
    target: &Target,
    w: &WorkloadDocs,
) -> Result<Vec<String>> {
    let (name, _, policy_arn) = role_of(target, &w.key);
    let resource = format!("iam role {name}");
    let trust = w
        .trust
        .as_ref()
        .ok_or_else(|| Error::Cloud(format!("{resource}: no rendered trust policy")))?;
    let want_tags = desired_tags(target);
    let mut written = Vec::new();
    // Read again right before writing: the plan may be stale.
    let live = match read_role(c, &name).await? {
        Some(live) => live,
        None => {
            let created = c
                .iam
                .create_role()
                .role_name(&name)
                .assume_role_policy_document(trust.to_string())
                .description(format!(
                    "strata: workload {} of target {}",
                    w.key, target.name
                ))
                .set_tags(Some(iam_tags(&want_tags, &resource)?))
                .send()
                .await;
            match created {
                Ok(_) => {
                    written.push("trust".to_owned());
                    written.extend(want_tags.keys().map(|k| format!("tags.{k}")));
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_entity_already_exists_exception()) => {}
                Err(e) => return Err(cloud_error(&resource, "CreateRole", &e)),
            }
            read_role(c, &name).await?.ok_or_else(|| {
                Error::Cloud(format!("{resource}: created, but GetRole does not find it"))
            })?
        }
    };
    if let Some(e) = foreign(target, &resource, &live.tags) {
        return Err(e);
    }
    if !same_document(&live.trust, trust) {
        retry(&["NoSuchEntity", "MalformedPolicyDocument"], || {
            c.iam
                .update_assume_role_policy()
                .role_name(&name)
                .policy_document(trust.to_string())
                .send()
        })
        .await
        .map_err(|e| cloud_error(&resource, "UpdateAssumeRolePolicy", &e))?;
        written.push("trust".into());
    }
    if !live.attached.contains(&policy_arn) {
        retry(&["NoSuchEntity"], || {
            c.iam
                .attach_role_policy()
                .role_name(&name)
                .policy_arn(&policy_arn)
                .send()
        })
        .await
        .map_err(|e| cloud_error(&resource, &format!("AttachRolePolicy {policy_arn}"), &e))?;
        written.push("attach".into());
    }
    let diff = tag_diff(&live.tags, &want_tags);
    if !diff.is_empty() {
        c.iam
            .tag_role()
            .role_name(&name)
            .set_tags(Some(iam_tags(&want_tags, &resource)?))
            .send()
            .await
            .map_err(|e| cloud_error(&resource, "TagRole", &e))?;
        written.extend(diff.into_iter().map(|c| c.field));
    }
    // Read back: what IAM holds now must be what was rendered.
    let after = read_role(c, &name).await?.ok_or_else(|| {
        Error::Cloud(format!(
            "{resource}: GetRole does not find the role after apply"
        ))
    })?;
    if !same_document(&after.trust, trust) || !after.attached.contains(&policy_arn) {
        return Err(Error::Cloud(format!(
            "{resource}: read back after apply, the trust policy or the attachment is not what was rendered; run apply again"
        )));
    }
    Ok(written)
}

/// A role just created may not be visible to EKS yet: the association calls retry
/// what says so.
const ASSOCIATION_TRANSIENT: [&str; 3] = [
    "InvalidParameterException",
    "ResourceNotFoundException",
    "ThrottlingException",
];

/// Points an existing association at `role_arn` unless it already is; returns the
/// fields written.
async fn point_at_role(
    c: &Clients,
    cluster: &str,
    live: LiveAssociation,
    role_arn: &str,
    resource: &str,
) -> Result<Vec<String>> {
    if live.role_arn == role_arn {
        return Ok(Vec::new());
    }
    retry(&ASSOCIATION_TRANSIENT, || {
        c.eks
            .update_pod_identity_association()
            .cluster_name(cluster)
            .association_id(&live.id)
            .role_arn(role_arn)
            .send()
    })
    .await
    .map_err(|e| cloud_error(resource, "UpdatePodIdentityAssociation", &e))?;
    Ok(vec!["roleArn".into()])
}

pub(super) async fn apply_association(
    c: &Clients,
    target: &Target,
    workload: &str,
) -> Result<Vec<String>> {
    let cluster = target.aws().cluster.clone().unwrap_or_default();
    let names = &target.names.workloads[workload];
    let (_, role_arn, _) = role_of(target, workload);
    let resource = format!(
        "eks pod identity association {}",
        association_name(target, workload)
    );
    let tags: HashMap<String, String> = desired_tags(target).into_iter().collect();
    let live = read_association(c, target, workload, NoCluster::Refuse).await?;
    match live {
        Some(live) => point_at_role(c, &cluster, live, &role_arn, &resource).await,
        None => {
            let created = retry(&ASSOCIATION_TRANSIENT, || {
                c.eks
                    .create_pod_identity_association()
                    .cluster_name(&cluster)
                    .namespace(&names.namespace)
                    .service_account(&names.service_account)
                    .role_arn(&role_arn)
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await;
            match created {
                Ok(_) => Ok(vec!["roleArn".into()]),
                // Another apply created it between the read and the create: read what
                // it made, and converge that (its role may be another's).
                Err(e) if e.code() == Some("ResourceInUseException") => {
                    match read_association(c, target, workload, NoCluster::Refuse).await? {
                        Some(live) => point_at_role(c, &cluster, live, &role_arn, &resource).await,
                        None => Err(cloud_error(&resource, "CreatePodIdentityAssociation", &e)),
                    }
                }
                Err(e) => Err(cloud_error(&resource, "CreatePodIdentityAssociation", &e)),
            }
        }
    }
}
