//! GCP: the target's buckets and their IAM bindings through the Cloud Storage JSON
//! API, from the rendered documents ([`crate::engine::docs`]).
//!
//! `plan` reads the bucket (GET `/b/{bucket}`) and its policy (GET `/b/{bucket}/iam`)
//! and writes nothing. `execute` reads them again (a plan may be stale), then creates
//! the bucket when it is missing (POST `/b?project=…` with every setting), or PATCHes
//! only the fields that differ, guarded by `ifMetagenerationMatch`; bindings are added
//! to the live policy and PUT back with its etag. A converged target gets no write.
//!
//! Which project owns a bucket: the bucket resource only carries the project *number*,
//! and mapping a project id to its number needs the Resource Manager API. strata
//! instead lists the target project's buckets with the bucket's name as prefix: an
//! existing bucket that is not listed there belongs to another project, and plan and
//! execute stop before any write. A 403 on the GET means the (global) name is taken by
//! a bucket this caller cannot see.
//!
//! Checked against gcp-storage-emulator in `tests/integration/gcs.rs`: create, PATCH of
//! versioning / uniform access / public access prevention / lifecycle / labels, IAM
//! GET and PUT, and that a second apply writes nothing. Not checkable there (the code
//! sends the real API's requests regardless): the emulator ignores every setting on
//! create except the name (it always reports location `US`), so right after a create
//! strata reads the bucket back and PATCHes what the server did not take — on GCS that
//! PATCH finds nothing to do; it ignores `ifMetagenerationMatch` and the policy etag
//! (no 412 on a concurrent change), ignores `project` when listing (so the
//! wrong-project refusal cannot be exercised), never answers 403, and merges no
//! default bindings into a new bucket's policy, nor knows policy version 3 (requested so
//! that conditional bindings survive the PUT).
//!
//! `tests/integration/gcs.rs` has a fault proxy give, through the CLI, the answers the
//! emulator does not: 412 on a stale metageneration, 409/412 on a stale etag, 403, a
//! bucket missing from the project's listing, and transient statuses.
//!
//! The library tests call [`plan_with`] / [`execute_with`] with [`Client::emulator`] rather than
//! setting `STORAGE_EMULATOR_HOST` in the (multi-threaded) test process; the choice of
//! endpoint and credentials in [`Client::from_env`] is covered by unit tests only as far
//! as the emulator URL goes.

pub mod client;
pub mod desired;
pub mod destroy;
pub mod identity;

use reqwest::Method;
use serde_json::{Value, json};

pub use self::client::{ATTEMPTS, Client, emulator_base};
use self::desired::{DesiredBucket, desired_bucket};
use crate::engine::docs::Documents;
use crate::engine::plan::{Action, Evidence, FieldChange, Op, Plan};
use crate::engine::resource::{self, Resource};
use crate::error::{Error, Result};
use crate::model::{Cloud, Target};

pub const KIND_BUCKET: &str = "gcs_bucket";
pub const KIND_BUCKET_IAM: &str = "gcs_bucket_iam";

/// Reads the live state of the target's buckets, bindings and workload identities;
/// writes nothing.
pub async fn plan(target: &Target, docs: &Documents) -> Result<Plan> {
    let iam = identity_client(docs).await?;
    plan_full(&Client::from_env().await?, iam.as_ref(), target, docs).await
}

/// Carries out `plan`, recording each resource's outcome in `evidence` as it goes.
pub async fn execute(
    target: &Target,
    docs: &Documents,
    plan: &Plan,
    evidence: &mut Evidence,
) -> Result<()> {
    let iam = identity_client(docs).await?;
    execute_full(
        &Client::from_env().await?,
        iam.as_ref(),
        target,
        docs,
        plan,
        evidence,
    )
    .await
}

/// The IAM API client, when the target has workloads.
async fn identity_client(docs: &Documents) -> Result<Option<Client>> {
    if docs.workloads.iter().any(|w| w.gcp.is_some()) {
        Ok(Some(Client::iam_from_env().await?))
    } else {
        Ok(None)
    }
}

/// The storage part of [`plan`] (buckets and their bindings) with an explicit client.
pub async fn plan_with(client: &Client, target: &Target, docs: &Documents) -> Result<Plan> {
    plan_full(client, None, target, docs).await
}

/// [`plan`] with explicit clients: buckets, then (with `iam`) the workloads' service
/// accounts and Workload Identity bindings, then the buckets' bindings, in apply order.
pub async fn plan_full(
    client: &Client,
    iam: Option<&Client>,
    target: &Target,
    docs: &Documents,
) -> Result<Plan> {
    let ctx = Ctx {
        storage: client,
        iam,
        target,
        missing: Default::default(),
    };
    let actions = resource::plan(&ctx, &resources(&ctx, docs)?).await?;
    Ok(Plan {
        target: target.name.clone(),
        cloud: Cloud::Gcp,
        account: target.gcp().project_id.clone(),
        region: target.gcp().location.clone(),
        actions,
        stale_lock: Vec::new(),
    })
}

/// The storage part of [`execute`] with an explicit client.
pub async fn execute_with(
    client: &Client,
    target: &Target,
    docs: &Documents,
    plan: &Plan,
    evidence: &mut Evidence,
) -> Result<()> {
    execute_full(client, None, target, docs, plan, evidence).await
}

/// [`execute`] with explicit clients. Each resource is read again and converged to
/// the desired state, so a stale plan never writes stale values; the plan must be the
/// target's. Order: buckets, service accounts and their Workload Identity bindings,
/// then the buckets' bindings (which name the accounts).
pub async fn execute_full(
    client: &Client,
    iam: Option<&Client>,
    target: &Target,
    docs: &Documents,
    plan: &Plan,
    evidence: &mut Evidence,
) -> Result<()> {
    if plan.target != target.name || plan.cloud != Cloud::Gcp {
        return Err(Error::Cloud(format!(
            "apply {}: the plan is for {} ({}), not this target",
            target.name,
            plan.target,
            plan.cloud.as_str()
        )));
    }
    let ctx = Ctx {
        storage: client,
        iam,
        target,
        missing: Default::default(),
    };
    resource::execute(&ctx, &resources(&ctx, docs)?, plan, evidence).await
}

/// What every GCP resource of a run shares.
pub(crate) struct Ctx<'t> {
    storage: &'t Client,
    /// The IAM API client, when the target has workloads.
    iam: Option<&'t Client>,
    target: &'t Target,
    /// What planning found missing (buckets and service accounts by name): their IAM
    /// policies do not exist yet either, and are not read.
    missing: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

/// One GCP resource of the target.
pub(crate) struct GcpResource<'t> {
    kind: &'static str,
    name: String,
    what: What,
    ctx: std::marker::PhantomData<Ctx<'t>>,
}

enum What {
    /// The bucket and whether the layers adopt an existing one (`adopt: true`).
    Bucket(DesiredBucket, bool),
    /// A bucket's IAM policy: strata's bindings in it.
    BucketIam(Value),
    ServiceAccount(identity::Want),
    /// The Workload Identity members on a service account's policy.
    ServiceAccountIam(identity::Want),
}

/// The target's resources in apply order: buckets, then (with the IAM client) per
/// workload its service account and Workload Identity binding, then the buckets'
/// bindings, which name the accounts.
fn resources<'t>(ctx: &Ctx<'t>, docs: &Documents) -> Result<Vec<GcpResource<'t>>> {
    let mut all = Vec::new();
    let mut bindings = Vec::new();
    for doc in &docs.buckets {
        let desired = desired_bucket(doc);
        let name = desired.name.clone();
        bindings.push(GcpResource {
            kind: KIND_BUCKET_IAM,
            name: name.clone(),
            what: What::BucketIam(desired::bucket_bindings(&name, &docs.workloads)),
            ctx: std::marker::PhantomData,
        });
        all.push(GcpResource {
            kind: KIND_BUCKET,
            name,
            what: What::Bucket(desired, doc.adopt),
            ctx: std::marker::PhantomData,
        });
    }
    if ctx.iam.is_some() {
        for w in &docs.workloads {
            let Some(want) = identity::want_of(w)? else {
                continue;
            };
            all.push(GcpResource {
                kind: identity::SERVICE_ACCOUNT,
                name: want.email.clone(),
                what: What::ServiceAccount(want.clone()),
                ctx: std::marker::PhantomData,
            });
            all.push(GcpResource {
                kind: identity::SERVICE_ACCOUNT_IAM,
                name: want.email.clone(),
                what: What::ServiceAccountIam(want),
                ctx: std::marker::PhantomData,
            });
        }
    }
    all.append(&mut bindings);
    Ok(all)
}

impl<'t> Resource for GcpResource<'t> {
    type Ctx = Ctx<'t>;

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    async fn read(&self, ctx: &Ctx<'t>) -> Result<Action> {
        let missing = |ctx: &Ctx<'t>| ctx.missing.borrow().contains(&self.name);
        match &self.what {
            What::Bucket(desired, adopt) => {
                let Some(live) = read_bucket(ctx.storage, ctx.target, desired).await? else {
                    ctx.missing.borrow_mut().insert(self.name.clone());
                    let changes = desired::create_changes(desired);
                    return Ok(action(KIND_BUCKET, &self.name, Op::Create, changes));
                };
                let labels: std::collections::BTreeMap<String, String> = live["labels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                    .collect();
                crate::engine::check_ownership(
                    &ctx.target.name,
                    &format!("gcs bucket {}", self.name),
                    &labels,
                    *adopt,
                )?;
                let changes = desired::bucket_changes(desired, &live);
                Ok(action(KIND_BUCKET, &self.name, op(&changes), changes))
            }
            What::BucketIam(bindings) => {
                if missing(ctx) {
                    let changes = desired::iam_changes(bindings, &json!({}));
                    return Ok(action(
                        KIND_BUCKET_IAM,
                        &self.name,
                        op_create(&changes),
                        changes,
                    ));
                }
                let policy = read_policy(ctx.storage, &self.name).await?;
                let changes = desired::iam_changes(bindings, &policy);
                Ok(action(KIND_BUCKET_IAM, &self.name, op(&changes), changes))
            }
            What::ServiceAccount(want) => {
                let (action, exists) = identity::plan_account(iam(ctx)?, ctx.target, want).await?;
                if !exists {
                    ctx.missing.borrow_mut().insert(self.name.clone());
                }
                Ok(action)
            }
            What::ServiceAccountIam(want) => {
                identity::plan_binding(iam(ctx)?, want, !missing(ctx)).await
            }
        }
    }

    async fn write(
        &self,
        ctx: &Ctx<'t>,
        action: &Action,
        written: &mut Vec<String>,
    ) -> Result<bool> {
        match &self.what {
            What::Bucket(desired, _) => {
                converge_bucket(ctx.storage, ctx.target, desired, written).await
            }
            What::BucketIam(bindings) => {
                converge_bindings(ctx.storage, &self.name, bindings, written).await?;
                Ok(action.op != Op::Create)
            }
            What::ServiceAccount(want) => {
                identity::apply_account(iam(ctx)?, ctx.target, want, written).await
            }
            What::ServiceAccountIam(want) => {
                written.extend(identity::bind(iam(ctx)?, want).await?);
                Ok(action.op != Op::Create)
            }
        }
    }
}

fn iam<'c>(ctx: &Ctx<'c>) -> Result<&'c Client> {
    ctx.iam
        .ok_or_else(|| Error::Cloud("no IAM API client for the workloads' identities".into()))
}

/// Creates or patches the bucket, pushing the fields written; returns whether it
/// existed before.
async fn converge_bucket(
    client: &Client,
    target: &Target,
    desired: &DesiredBucket,
    written: &mut Vec<String>,
) -> Result<bool> {
    let name = desired.name.as_str();
    let Some(live) = read_bucket(client, target, desired).await? else {
        let fields = desired::field_names(&desired::create_changes(desired));
        let query = [("project", target.gcp().project_id.clone())];
        let body = desired::create_body(desired);
        let reply = client
            .send(
                Method::POST,
                "/b",
                &query,
                Some(&body),
                &format!("create gcs_bucket {name}"),
            )
            .await?;
        if !reply.ok() {
            return Err(match reply.status {
                409 => Error::Cloud(format!(
                    "create gcs_bucket {name}: the name is already taken (bucket names are global)\n  hint: set buckets.<key>.name to another name"
                )),
                _ => reply.error(&format!("create gcs_bucket {name}")),
            });
        }
        let created = reply.body;
        written.extend(fields);
        // The API may not take every setting on create (emulators don't): whatever
        // still differs is patched below and reported as part of the create.
        let rest = desired::bucket_changes(desired, &created);
        if !rest.is_empty() {
            patch_bucket(client, desired, &created, &rest).await?;
        }
        return Ok(false);
    };
    let changes = desired::bucket_changes(desired, &live);
    if changes.is_empty() {
        return Ok(true);
    }
    patch_bucket(client, desired, &live, &changes).await?;
    written.extend(desired::field_names(&changes));
    Ok(true)
}

async fn patch_bucket(
    client: &Client,
    desired: &DesiredBucket,
    live: &Value,
    changes: &[FieldChange],
) -> Result<()> {
    let name = &desired.name;
    let what = format!("update gcs_bucket {name}");
    let mut query = Vec::new();
    if let Some(generation) = metageneration(live) {
        query.push(("ifMetagenerationMatch", generation));
    }
    let body = desired::patch_body(desired, live, changes);
    let reply = client
        .send(
            Method::PATCH,
            &format!("/b/{name}"),
            &query,
            Some(&body),
            &what,
        )
        .await?;
    match reply.status {
        _ if reply.ok() => Ok(()),
        412 => Err(Error::Cloud(format!(
            "{what}: the bucket changed while strata was applying; run apply again"
        ))),
        _ => Err(reply.error(&what)),
    }
}

fn metageneration(live: &Value) -> Option<String> {
    match &live["metageneration"] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Adds strata's bindings to the bucket's policy, keeping every other member.
async fn converge_bindings(
    client: &Client,
    bucket: &str,
    bindings: &Value,
    written: &mut Vec<String>,
) -> Result<()> {
    let policy = read_policy(client, bucket).await?;
    let changes = desired::iam_changes(bindings, &policy);
    if changes.is_empty() {
        return Ok(());
    }
    let what = format!("set gcs_bucket_iam {bucket}");
    let body = desired::merged_policy(bindings, &policy);
    let reply = client
        .send(
            Method::PUT,
            &format!("/b/{bucket}/iam"),
            &[],
            Some(&body),
            &what,
        )
        .await?;
    if !reply.ok() {
        return Err(match reply.status {
            409 | 412 => Error::Cloud(format!(
                "{what}: the policy changed while strata was applying (etag mismatch); run apply again"
            )),
            _ => reply.error(&what),
        });
    }
    written.extend(desired::field_names(&changes));
    Ok(())
}

/// The live bucket, `None` when it does not exist. Refuses a bucket of another project
/// and a location GCS cannot change.
async fn read_bucket(
    client: &Client,
    target: &Target,
    desired: &DesiredBucket,
) -> Result<Option<Value>> {
    let name = &desired.name;
    let what = format!("read gcs_bucket {name}");
    let reply = client
        .send(Method::GET, &format!("/b/{name}"), &[], None, &what)
        .await?;
    let live = match reply.status {
        404 => return Ok(None),
        403 => {
            return Err(Error::Cloud(format!(
                "{what}: access denied (403): the name is taken by a bucket outside project {} or the credentials lack storage.buckets.get\n  hint: bucket names are global; set buckets.<key>.name to another name, or grant access",
                target.gcp().project_id
            )));
        }
        _ if reply.ok() => reply.body,
        _ => return Err(reply.error(&what)),
    };
    check_project(client, target, name).await?;
    if let Some(actual) = desired::location_mismatch(desired, &live) {
        return Err(Error::Cloud(format!(
            "{what}: the bucket is in {actual}, the target wants {} (gcp.location); GCS cannot move a bucket\n  hint: set gcp.location to {actual}, or buckets.<key>.name to a new name",
            desired.location
        )));
    }
    Ok(Some(live))
}

/// An existing bucket must be one of the target project's buckets.
async fn check_project(client: &Client, target: &Target, name: &str) -> Result<()> {
    let project = &target.gcp().project_id;
    let what = format!("read gcs_bucket {name}: list the buckets of project {project}");
    let query = [
        ("project", project.clone()),
        ("prefix", name.to_owned()),
        ("fields", "items/name".to_owned()),
    ];
    let reply = client.send(Method::GET, "/b", &query, None, &what).await?;
    if !reply.ok() {
        return Err(reply.error(&what));
    }
    // With the name as prefix the bucket itself sorts first, so one page is enough.
    let listed = reply.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|item| item["name"].as_str() == Some(name));
    if listed {
        Ok(())
    } else {
        Err(Error::Cloud(format!(
            "gcs_bucket {name} exists but does not belong to project {project} (gcp.projectId); strata changes nothing in another project\n  hint: check gcp.projectId, or set buckets.<key>.name to another name"
        )))
    }
}

async fn read_policy(client: &Client, bucket: &str) -> Result<Value> {
    let what = format!("read gcs_bucket_iam {bucket}");
    // Version 3 returns conditional bindings too, so a PUT of the policy keeps them.
    let query = [("optionsRequestedPolicyVersion", "3".to_owned())];
    let reply = client
        .send(
            Method::GET,
            &format!("/b/{bucket}/iam"),
            &query,
            None,
            &what,
        )
        .await?;
    if reply.ok() {
        Ok(reply.body)
    } else {
        Err(reply.error(&what))
    }
}

fn op_create(changes: &[FieldChange]) -> Op {
    if changes.is_empty() {
        Op::Unchanged
    } else {
        Op::Create
    }
}

fn op(changes: &[FieldChange]) -> Op {
    if changes.is_empty() {
        Op::Unchanged
    } else {
        Op::Update
    }
}

fn action(kind: &str, name: &str, op: Op, changes: Vec<FieldChange>) -> Action {
    Action {
        kind: kind.into(),
        name: name.into(),
        op,
        changes,
    }
}
