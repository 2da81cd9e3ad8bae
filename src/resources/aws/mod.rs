//! AWS: the target's S3 buckets and its workloads' IAM policies, through the AWS SDK,
//! from the rendered documents ([`crate::engine::docs`]).
//!
//! `plan` reads (STS first, then S3 and IAM) and compares the live state with the
//! desired one field by field; `execute` writes only what the plan says differs, and
//! records each resource's outcome in the evidence as it goes, so a failure half-way
//! still says what was done. Every write is idempotent, and the few that race with a
//! concurrent apply (bucket and policy creation, policy versions) re-read first.

use std::collections::BTreeMap;

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::types::{
    BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, ExpirationStatus, LifecycleRule, LifecycleRuleFilter,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tagging, Transition,
    TransitionStorageClass, VersioningConfiguration,
};
use serde_json::{Value, json};

use crate::engine::docs::{BucketDoc, Documents, LifecycleEntry, WorkloadDocs};
use crate::engine::plan::{Action, Evidence, FieldChange, Op, Plan};
use crate::engine::resource::{self, Resource};
use crate::error::{Error, Result};
use crate::model::{AwsIdentity, Cloud, Target, partition};

pub mod destroy;
pub mod identity;

pub const BUCKET: &str = "s3_bucket";
pub const POLICY: &str = "iam_policy";
/// The id prefix of the lifecycle rules strata owns in a bucket's configuration.
pub const LIFECYCLE_RULE_PREFIX: &str = crate::desired::buckets::RULE_PREFIX;
/// The Sid of the statement strata owns in a bucket's policy.
pub const TLS_SID: &str = "StrataDenyInsecureTransport";
/// IAM keeps at most five versions of a managed policy.
const MAX_POLICY_VERSIONS: usize = 5;

pub struct Clients {
    pub sts: aws_sdk_sts::Client,
    pub s3: aws_sdk_s3::Client,
    pub iam: aws_sdk_iam::Client,
    pub eks: aws_sdk_eks::Client,
}

pub(crate) async fn clients(target: &Target) -> Clients {
    let region = aws_config::Region::new(target.aws().region.clone());
    clients_in(region).await
}

async fn clients_in(region: aws_config::Region) -> Clients {
    let conf = crate::resources::http::aws_config()
        .region(region)
        .load()
        .await;
    // Emulators serve every bucket under one host: address buckets by path there.
    let s3_conf = aws_sdk_s3::config::Builder::from(&conf)
        .force_path_style(conf.endpoint_url().is_some())
        .build();
    Clients {
        sts: aws_sdk_sts::Client::new(&conf),
        s3: aws_sdk_s3::Client::from_conf(s3_conf),
        iam: aws_sdk_iam::Client::new(&conf),
        eks: aws_sdk_eks::Client::new(&conf),
    }
}

/// A failed call, as `s3 bucket NAME: Action: Code: message`.
pub(crate) fn cloud_error<E>(resource: &str, action: &str, e: &SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => match e.raw_response() {
            // No error code to show (an empty or non-XML body): the status says most.
            Some(raw) => format!(
                "HTTP {}: {}",
                raw.status().as_u16(),
                String::from_utf8_lossy(raw.body().bytes().unwrap_or_default())
                    .chars()
                    .take(300)
                    .collect::<String>()
            ),
            None => error_chain(e),
        },
    };
    let hint = if detail.contains("credentials") {
        "\n  hint: give strata AWS credentials (AWS_PROFILE, `aws sso login`, or AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY); AWS_ENDPOINT_URL points it at an emulator"
    } else {
        ""
    };
    Error::Cloud(format!("{resource}: {action}: {detail}{hint}"))
}

/// The messages of an error and its sources, each once: readable, unlike the SDK's
/// Debug dump of a dispatch failure.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

fn code_of<E: ProvideErrorMetadata>(e: &SdkError<E>) -> Option<&str> {
    e.code()
}

fn status_of<E>(e: &SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// The ownership tags of the IAM objects strata makes for a target (buckets carry
/// theirs in their document).
pub fn desired_tags(target: &Target) -> BTreeMap<String, String> {
    crate::desired::buckets::tags(target, &BTreeMap::new())
}

/// The managed policy of a workload: its name (the role's) and ARN.
fn policy_of(target: &Target, workload: &str) -> (String, String) {
    let names = &target.names.workloads[workload];
    (
        names.role.clone().unwrap_or_default(),
        names.policy_arn.clone().unwrap_or_default(),
    )
}

/// The bucket settings strata manages, each as a comparable value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BucketState {
    pub versioning: bool,
    /// The default encryption algorithm (`AES256`), `null` when none.
    pub encryption: Value,
    /// The four public access block flags, `null` when no block is set.
    pub public_access_block: Value,
    /// strata's lifecycle rules (ids `strata-…`), as [`LifecycleEntry`] JSON, by id.
    pub lifecycle: Value,
    pub tags: BTreeMap<String, String>,
    /// Whether the bucket policy holds strata's deny-insecure-transport statement.
    pub tls_only: bool,
}

fn all_blocked() -> Value {
    json!({"blockPublicAcls": true, "ignorePublicAcls": true, "blockPublicPolicy": true, "restrictPublicBuckets": true})
}

pub fn desired_bucket(b: &BucketDoc) -> BucketState {
    let mut rules = b.lifecycle.clone();
    rules.sort_by(|x, y| x.id.cmp(&y.id));
    BucketState {
        versioning: b.versioning,
        encryption: if b.encryption == "none" {
            Value::Null
        } else {
            json!("AES256")
        },
        public_access_block: if b.public_access_block {
            all_blocked()
        } else {
            Value::Null
        },
        lifecycle: json!(rules),
        tags: b.tags.clone(),
        tls_only: b.tls_only,
    }
}

/// Field-by-field differences from `live` to `want`. An unmanaged setting (encryption
/// off) is left as it is; extra tags someone else set are left alone.
pub fn bucket_changes(live: &BucketState, want: &BucketState) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    let mut field =
        |name: &str, from: Value, to: Value| FieldChange::record(&mut changes, name, from, to);
    field("versioning", json!(live.versioning), json!(want.versioning));
    if !want.encryption.is_null() {
        field(
            "encryption",
            live.encryption.clone(),
            want.encryption.clone(),
        );
    }
    field(
        "publicAccessBlock",
        live.public_access_block.clone(),
        want.public_access_block.clone(),
    );
    field("lifecycle", live.lifecycle.clone(), want.lifecycle.clone());
    field("tlsOnly", json!(live.tls_only), json!(want.tls_only));
    tag_changes(&live.tags, &want.tags, &mut changes);
    changes
}

fn tag_changes(
    live: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
    changes: &mut Vec<FieldChange>,
) {
    for (key, value) in want {
        let from = live.get(key).map_or(Value::Null, |v| json!(v));
        if from != json!(value) {
            changes.push(FieldChange {
                field: format!("tags.{key}"),
                from,
                to: json!(value),
            });
        }
    }
}

/// Reads the live state of the target's resources; writes nothing.
pub async fn plan(target: &Target, docs: &Documents) -> Result<Plan> {
    let ctx = Ctx {
        c: clients(target).await,
        target,
    };
    let account = check_account(&ctx.c, target).await?;
    if !docs.workloads.is_empty() && target.aws().identity == AwsIdentity::Irsa {
        identity::check_issuer(&ctx.c, target).await?;
    }
    let actions = resource::plan(&ctx, &resources(target, docs)).await?;
    Ok(Plan {
        target: target.name.clone(),
        cloud: Cloud::Aws,
        account,
        region: target.aws().region.clone(),
        actions,
        stale_lock: Vec::new(),
    })
}

/// Carries out `plan`, recording each resource's outcome in `evidence` as it goes.
pub async fn execute(
    target: &Target,
    docs: &Documents,
    plan: &Plan,
    evidence: &mut Evidence,
) -> Result<()> {
    let ctx = Ctx {
        c: clients(target).await,
        target,
    };
    // The plan was read moments ago with the same credentials; check again anyway,
    // since the account check is what makes any write safe.
    check_account(&ctx.c, target).await?;
    resource::execute(&ctx, &resources(target, docs), plan, evidence).await
}

/// What every AWS resource of a run shares.
pub(crate) struct Ctx<'t> {
    c: Clients,
    target: &'t Target,
}

/// One AWS resource of the target.
pub(crate) struct AwsResource<'t> {
    kind: &'static str,
    name: String,
    what: What<'t>,
}

enum What<'t> {
    Bucket(&'t BucketDoc),
    /// A workload's managed policy and its rendered document.
    Policy(&'t WorkloadDocs, &'t Value),
    /// The cluster's IAM OIDC provider (IRSA).
    OidcProvider,
    /// A workload's role and its rendered trust policy.
    Role(&'t WorkloadDocs, &'t Value),
    /// A workload's EKS Pod Identity association.
    Association(&'t WorkloadDocs),
}

/// The target's resources in apply order: buckets, the workloads' managed policies,
/// the OIDC provider (IRSA), then per workload its role and (Pod Identity) its
/// association.
fn resources<'t>(target: &'t Target, docs: &'t Documents) -> Vec<AwsResource<'t>> {
    let mut all = Vec::new();
    for b in &docs.buckets {
        all.push(AwsResource {
            kind: BUCKET,
            name: b.name.clone(),
            what: What::Bucket(b),
        });
    }
    for w in &docs.workloads {
        if let Some(doc) = &w.policy {
            all.push(AwsResource {
                kind: POLICY,
                name: policy_of(target, &w.key).0,
                what: What::Policy(w, doc),
            });
        }
    }
    if docs.workloads.is_empty() {
        return all;
    }
    let identity = target.aws().identity;
    if identity == AwsIdentity::Irsa {
        all.push(AwsResource {
            kind: identity::OIDC_PROVIDER,
            name: identity::provider_arn(target),
            what: What::OidcProvider,
        });
    }
    for w in &docs.workloads {
        let Some(trust) = &w.trust else { continue };
        all.push(AwsResource {
            kind: identity::ROLE,
            name: identity::role_of(target, &w.key).0,
            what: What::Role(w, trust),
        });
        if identity == AwsIdentity::PodIdentity {
            all.push(AwsResource {
                kind: identity::ASSOCIATION,
                name: identity::association_name(target, &w.key),
                what: What::Association(w),
            });
        }
    }
    all
}

impl<'t> Resource for AwsResource<'t> {
    type Ctx = Ctx<'t>;

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn name(&self) -> String {
        self.name.clone()
    }

    async fn read(&self, ctx: &Ctx<'t>) -> Result<Action> {
        let (c, target) = (&ctx.c, ctx.target);
        match self.what {
            What::Bucket(b) => plan_bucket(c, target, b).await,
            What::Policy(w, doc) => plan_policy(c, target, w, doc).await,
            What::OidcProvider => identity::plan_oidc_provider(c, target).await,
            What::Role(w, trust) => identity::plan_role(c, target, w, trust).await,
            What::Association(w) => identity::plan_association(c, target, &w.key).await,
        }
    }

    async fn write(
        &self,
        ctx: &Ctx<'t>,
        action: &Action,
        written: &mut Vec<String>,
    ) -> Result<bool> {
        let (c, target) = (&ctx.c, ctx.target);
        // Whether a resource the plan would create turned out to exist (a concurrent
        // apply made it meanwhile).
        let already = match self.what {
            What::Bucket(b) => apply_bucket(c, target, b, action, written).await?,
            What::Policy(w, doc) => apply_policy(c, target, w, doc, action, written).await?,
            What::OidcProvider => {
                written.extend(identity::apply_oidc_provider(c, target, &self.name).await?);
                false
            }
            What::Role(w, _) => {
                written.extend(identity::apply_role(c, target, w).await?);
                false
            }
            What::Association(w) => {
                written.extend(identity::apply_association(c, target, &w.key).await?);
                false
            }
        };
        Ok(action.op != Op::Create || already)
    }
}

/// STS GetCallerIdentity: the credentials must belong to the target's account.
async fn check_account(c: &Clients, target: &Target) -> Result<String> {
    let want = &target.aws().account_id;
    let identity = c
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| cloud_error("sts", "GetCallerIdentity", &e))?;
    let account = identity.account().unwrap_or_default().to_owned();
    if &account != want {
        return Err(Error::Cloud(format!(
            "target {} deploys to AWS account {want} (aws.accountId), but the credentials belong to account {account}; \
             nothing was read or written\n  hint: use credentials (AWS_PROFILE, SSO) for account {want}",
            target.name
        )));
    }
    Ok(account)
}

fn bucket_resource(b: &BucketDoc) -> String {
    format!("s3 bucket {}", b.name)
}

fn policy_resource(arn: &str) -> String {
    format!("iam policy {arn}")
}

/// HeadBucket: whether the bucket exists (and is ours), and in which region.
async fn bucket_exists(c: &Clients, target: &Target, b: &BucketDoc) -> Result<bool> {
    let name = &b.name;
    let resource = bucket_resource(b);
    let want_region = &b.region;
    // ExpectedBucketOwner: a bucket of another account answers 403, even when it
    // would let these credentials read it.
    let head =
        c.s3.head_bucket()
            .bucket(name)
            .expected_bucket_owner(&target.aws().account_id);
    match head.send().await {
        Ok(out) => {
            let region = match out.bucket_region() {
                Some(r) => r.to_owned(),
                None => bucket_region(c, b).await?,
            };
            if &region != want_region {
                return Err(Error::Cloud(format!(
                    "{resource}: HeadBucket: the bucket exists in region {region}, but the target's aws.region is {want_region}; \
                     a bucket cannot move between regions\n  hint: set aws.region to {region}, or set buckets.<key>.name to another name"
                )));
            }
            Ok(true)
        }
        Err(e) => match status_of(&e) {
            Some(404) => Ok(false),
            Some(403) => Err(Error::Cloud(format!(
                "{resource}: HeadBucket: 403 Forbidden: the bucket exists but belongs to another AWS account (or these \
                 credentials may not read it); bucket names are global\n  hint: set buckets.<key>.name to another name"
            ))),
            Some(301) => {
                let region = e
                    .raw_response()
                    .and_then(|r| r.headers().get("x-amz-bucket-region"))
                    .unwrap_or("another region")
                    .to_owned();
                Err(Error::Cloud(format!(
                    "{resource}: HeadBucket: the bucket exists in {region}, but the target's aws.region is {want_region}"
                )))
            }
            _ => Err(cloud_error(&resource, "HeadBucket", &e)),
        },
    }
}

async fn bucket_region(c: &Clients, b: &BucketDoc) -> Result<String> {
    let out =
        c.s3.get_bucket_location()
            .bucket(&b.name)
            .send()
            .await
            .map_err(|e| cloud_error(&bucket_resource(b), "GetBucketLocation", &e))?;
    Ok(match out.location_constraint().map(|l| l.as_str()) {
        None | Some("") => "us-east-1".to_owned(),
        Some("EU") => "eu-west-1".to_owned(),
        Some(other) => other.to_owned(),
    })
}

async fn plan_bucket(c: &Clients, target: &Target, b: &BucketDoc) -> Result<Action> {
    let want = desired_bucket(b);
    let exists = bucket_exists(c, target, b).await?;
    let live = if exists {
        let live = read_bucket(c, b).await?;
        crate::engine::check_ownership(&target.name, &bucket_resource(b), &live.tags, b.adopt)?;
        live
    } else {
        BucketState {
            lifecycle: json!([]),
            ..BucketState::default()
        }
    };
    let changes = bucket_changes(&live, &want);
    let op = match (exists, changes.is_empty()) {
        (false, _) => Op::Create,
        (true, true) => Op::Unchanged,
        (true, false) => Op::Update,
    };
    Ok(Action {
        kind: BUCKET.into(),
        name: b.name.clone(),
        op,
        changes,
    })
}

/// Reads every setting strata manages; a "not configured" answer is an empty value.
async fn read_bucket(c: &Clients, b: &BucketDoc) -> Result<BucketState> {
    let name = &b.name;
    let resource = bucket_resource(b);
    let versioning =
        c.s3.get_bucket_versioning()
            .bucket(name)
            .send()
            .await
            .map_err(|e| cloud_error(&resource, "GetBucketVersioning", &e))?;
    let encryption = match c.s3.get_bucket_encryption().bucket(name).send().await {
        Ok(out) => out
            .server_side_encryption_configuration()
            .and_then(|conf| {
                conf.rules()
                    .iter()
                    .find_map(|r| r.apply_server_side_encryption_by_default())
            })
            .map_or(Value::Null, |d| json!(d.sse_algorithm().as_str())),
        Err(e) if code_of(&e) == Some("ServerSideEncryptionConfigurationNotFoundError") => {
            Value::Null
        }
        Err(e) => return Err(cloud_error(&resource, "GetBucketEncryption", &e)),
    };
    let public_access_block = match c.s3.get_public_access_block().bucket(name).send().await {
        Ok(out) => out
            .public_access_block_configuration()
            .map_or(Value::Null, |p| {
                json!({
                    "blockPublicAcls": p.block_public_acls().unwrap_or(false),
                    "ignorePublicAcls": p.ignore_public_acls().unwrap_or(false),
                    "blockPublicPolicy": p.block_public_policy().unwrap_or(false),
                    "restrictPublicBuckets": p.restrict_public_buckets().unwrap_or(false),
                })
            }),
        Err(e) if code_of(&e) == Some("NoSuchPublicAccessBlockConfiguration") => Value::Null,
        Err(e) => return Err(cloud_error(&resource, "GetPublicAccessBlock", &e)),
    };
    let mut owned: Vec<LifecycleEntry> = read_lifecycle(c, b)
        .await?
        .iter()
        .filter(|r| {
            r.id()
                .is_some_and(|id| id.starts_with(LIFECYCLE_RULE_PREFIX))
        })
        .map(lifecycle_entry)
        .collect();
    owned.sort_by(|x, y| x.id.cmp(&y.id));
    let lifecycle = json!(owned);
    let tags = read_bucket_tags(c, b).await?;
    let tls_only = read_bucket_policy(c, b)
        .await?
        .is_some_and(|p| has_tls_statement(&p));
    Ok(BucketState {
        versioning: versioning.status() == Some(&BucketVersioningStatus::Enabled),
        encryption,
        public_access_block,
        lifecycle,
        tags,
        tls_only,
    })
}

/// strata's rule as read back, in the document's terms; a disabled rule reads as
/// one with no action, so that it differs from what strata wants.
fn lifecycle_entry(rule: &LifecycleRule) -> LifecycleEntry {
    let enabled = rule.status() == &ExpirationStatus::Enabled;
    let prefix = rule
        .filter()
        .and_then(|f| f.prefix())
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let transition = rule.transitions().first().filter(|_| enabled);
    LifecycleEntry {
        id: rule.id().unwrap_or_default().to_owned(),
        prefix,
        after_days: transition.and_then(|t| t.days()).map(|d| d as u32),
        storage_class: transition
            .and_then(|t| t.storage_class())
            .map(|s| s.as_str().to_owned()),
        expire_after_days: rule
            .expiration()
            .filter(|_| enabled)
            .and_then(|e| e.days())
            .map(|d| d as u32),
        noncurrent_expire_after_days: rule
            .noncurrent_version_expiration()
            .filter(|_| enabled)
            .and_then(|e| e.noncurrent_days())
            .map(|d| d as u32),
    }
}

async fn read_lifecycle(c: &Clients, b: &BucketDoc) -> Result<Vec<LifecycleRule>> {
    match c
        .s3
        .get_bucket_lifecycle_configuration()
        .bucket(&b.name)
        .send()
        .await
    {
        Ok(out) => Ok(out.rules().to_vec()),
        Err(e) if code_of(&e) == Some("NoSuchLifecycleConfiguration") => Ok(Vec::new()),
        Err(e) => Err(cloud_error(
            &bucket_resource(b),
            "GetBucketLifecycleConfiguration",
            &e,
        )),
    }
}

async fn read_bucket_tags(c: &Clients, b: &BucketDoc) -> Result<BTreeMap<String, String>> {
    match c.s3.get_bucket_tagging().bucket(&b.name).send().await {
        Ok(out) => Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect()),
        Err(e) if code_of(&e) == Some("NoSuchTagSet") => Ok(BTreeMap::new()),
        Err(e) => Err(cloud_error(&bucket_resource(b), "GetBucketTagging", &e)),
    }
}

async fn read_bucket_policy(c: &Clients, b: &BucketDoc) -> Result<Option<Value>> {
    match c.s3.get_bucket_policy().bucket(&b.name).send().await {
        Ok(out) => Ok(out.policy().and_then(|p| serde_json::from_str(p).ok())),
        Err(e) if code_of(&e) == Some("NoSuchBucketPolicy") => Ok(None),
        Err(e) => Err(cloud_error(&bucket_resource(b), "GetBucketPolicy", &e)),
    }
}

/// The statement that denies every request made without TLS.
pub fn tls_statement(b: &BucketDoc) -> Value {
    let arn = format!("arn:{}:s3:::{}", partition(&b.region), b.name);
    json!({
        "Sid": TLS_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [arn.clone(), format!("{arn}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    })
}

fn statements(policy: &Value) -> Vec<Value> {
    match policy.get("Statement") {
        Some(Value::Array(list)) => list.clone(),
        Some(single @ Value::Object(_)) => vec![single.clone()],
        _ => Vec::new(),
    }
}

fn has_tls_statement(policy: &Value) -> bool {
    statements(policy).iter().any(|s| {
        s.get("Effect") == Some(&json!("Deny"))
            && s.pointer("/Condition/Bool/aws:SecureTransport")
                .is_some_and(|v| normalize_under("aws:SecureTransport", v) == json!(["false"]))
    })
}

async fn plan_policy(
    c: &Clients,
    target: &Target,
    w: &WorkloadDocs,
    doc: &Value,
) -> Result<Action> {
    let (name, arn) = policy_of(target, &w.key);
    let want_tags = desired_tags(target);
    let Some(live) = read_policy(c, &arn).await? else {
        let mut changes = vec![FieldChange {
            field: "document".into(),
            from: Value::Null,
            to: doc.clone(),
        }];
        tag_changes(&BTreeMap::new(), &want_tags, &mut changes);
        return Ok(Action {
            kind: POLICY.into(),
            name,
            op: Op::Create,
            changes,
        });
    };
    let mut changes = Vec::new();
    if !same_document(&live.document, doc) {
        changes.push(FieldChange {
            field: "document".into(),
            from: live.document.clone(),
            to: doc.clone(),
        });
    }
    tag_changes(&live.tags, &want_tags, &mut changes);
    let op = if changes.is_empty() {
        Op::Unchanged
    } else {
        Op::Update
    };
    Ok(Action {
        kind: POLICY.into(),
        name,
        op,
        changes,
    })
}

struct LivePolicy {
    document: Value,
    tags: BTreeMap<String, String>,
}

/// GetPolicy by ARN, then its default version's document and its tags.
async fn read_policy(c: &Clients, arn: &str) -> Result<Option<LivePolicy>> {
    let resource = policy_resource(arn);
    let policy = match c.iam.get_policy().policy_arn(arn).send().await {
        Ok(out) => out.policy().cloned(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(cloud_error(&resource, "GetPolicy", &e)),
    };
    let Some(version) = policy.as_ref().and_then(|p| p.default_version_id()) else {
        return Ok(None);
    };
    let out = c
        .iam
        .get_policy_version()
        .policy_arn(arn)
        .version_id(version)
        .send()
        .await
        .map_err(|e| cloud_error(&resource, "GetPolicyVersion", &e))?;
    let raw = out
        .policy_version()
        .and_then(|v| v.document())
        .unwrap_or_default();
    let document = parse_document(raw);
    let tags = c
        .iam
        .list_policy_tags()
        .policy_arn(arn)
        .send()
        .await
        .map_err(|e| cloud_error(&resource, "ListPolicyTags", &e))?
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    Ok(Some(LivePolicy { document, tags }))
}

/// IAM returns policy documents URL-encoded (RFC 3986); emulators sometimes do not.
pub fn parse_document(raw: &str) -> Value {
    serde_json::from_str(raw)
        .or_else(|_| serde_json::from_str(&percent_decode(raw)))
        .unwrap_or_else(|_| Value::String(raw.to_owned()))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether two IAM policy documents mean the same: a single value equals a
/// one-element list, and the order of statements, actions and resources is free.
pub fn same_document(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

/// Keys whose value is a single string in IAM's grammar, never a list.
const SCALAR_KEYS: &[&str] = &["Version", "Id", "Sid", "Effect"];

fn normalize(value: &Value) -> Value {
    normalize_under("", value)
}

fn normalize_under(key: &str, value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let inner = Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), normalize_under(k, v)))
                    .collect(),
            );
            if key == "Statement" {
                json!([inner])
            } else {
                inner
            }
        }
        Value::Array(items) => {
            let mut items: Vec<Value> = items.iter().map(|v| normalize_under("", v)).collect();
            items.sort_by_key(|v| v.to_string());
            items.dedup();
            Value::Array(items)
        }
        Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if SCALAR_KEYS.contains(&key) || key.is_empty() {
                json!(text)
            } else {
                json!([text])
            }
        }
        Value::Null => Value::Null,
    }
}

/// Returns whether the bucket turned out to exist already (a concurrent create).
async fn apply_bucket(
    c: &Clients,
    target: &Target,
    b: &BucketDoc,
    action: &Action,
    written: &mut Vec<String>,
) -> Result<bool> {
    let name = &b.name;
    let resource = bucket_resource(b);
    let mut already = false;
    if action.op == Op::Create {
        // Never create over an existing bucket: look again right before.
        if bucket_exists(c, target, b).await? {
            already = true;
        } else {
            let region = &b.region;
            // The ownership tags go with the create (S3 applies them atomically, given
            // s3:TagResource): a run that stops right after it leaves a bucket the
            // next run knows as strata's.
            let mut conf = CreateBucketConfiguration::builder().set_tags(Some(s3_tag_set(
                &b.tags,
                &resource,
                "CreateBucket",
            )?));
            if region != "us-east-1" {
                conf = conf.location_constraint(BucketLocationConstraint::from(region.as_str()));
            }
            let create =
                c.s3.create_bucket()
                    .bucket(name)
                    .create_bucket_configuration(conf.build());
            match create.send().await {
                Ok(_) => written.push("bucket".to_owned()),
                Err(e) if code_of(&e) == Some("BucketAlreadyOwnedByYou") => already = true,
                Err(e) if code_of(&e) == Some("BucketAlreadyExists") => {
                    return Err(Error::Cloud(format!(
                        "{resource}: CreateBucket: BucketAlreadyExists: the name is taken by another AWS account; \
                         bucket names are global\n  hint: set buckets.<key>.name to another name"
                    )));
                }
                Err(e) => return Err(cloud_error(&resource, "CreateBucket", &e)),
            }
        }
    }
    let want = desired_bucket(b);
    let created_now = written.iter().any(|f| f == "bucket");
    // The ownership tags go first: an S3-compatible server that drops CreateBucket's
    // tags (moto does) gets them before anything else; on S3 they are there already and
    // writing them sends nothing.
    let mut changes: Vec<&FieldChange> = action.changes.iter().collect();
    changes.sort_by_key(|c| !c.field.starts_with("tags."));
    let mut tags_done = false;
    for change in changes {
        let field = change.field.as_str();
        match field {
            "versioning" => {
                let status = if want.versioning {
                    BucketVersioningStatus::Enabled
                } else {
                    BucketVersioningStatus::Suspended
                };
                c.s3.put_bucket_versioning()
                    .bucket(name)
                    .versioning_configuration(
                        VersioningConfiguration::builder().status(status).build(),
                    )
                    .send()
                    .await
                    .map_err(|e| cloud_error(&resource, "PutBucketVersioning", &e))?;
            }
            "encryption" => {
                let by_default = ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::Aes256)
                    .build()
                    .map_err(|e| Error::Cloud(format!("{resource}: PutBucketEncryption: {e}")))?;
                let conf = ServerSideEncryptionConfiguration::builder()
                    .rules(
                        ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(by_default)
                            .build(),
                    )
                    .build()
                    .map_err(|e| Error::Cloud(format!("{resource}: PutBucketEncryption: {e}")))?;
                c.s3.put_bucket_encryption()
                    .bucket(name)
                    .server_side_encryption_configuration(conf)
                    .send()
                    .await
                    .map_err(|e| cloud_error(&resource, "PutBucketEncryption", &e))?;
            }
            "publicAccessBlock" if want.public_access_block.is_null() => {
                c.s3.delete_public_access_block()
                    .bucket(name)
                    .send()
                    .await
                    .map_err(|e| cloud_error(&resource, "DeletePublicAccessBlock", &e))?;
            }
            "publicAccessBlock" => {
                let conf = PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build();
                c.s3.put_public_access_block()
                    .bucket(name)
                    .public_access_block_configuration(conf)
                    .send()
                    .await
                    .map_err(|e| cloud_error(&resource, "PutPublicAccessBlock", &e))?;
            }
            "lifecycle" => write_lifecycle(c, b, &resource).await?,
            "tlsOnly" => write_tls_policy(c, b, want.tls_only, &resource).await?,
            _ if field.starts_with("tags.") => {
                if !tags_done {
                    if let Err(e) = write_bucket_tags(c, b, &want.tags, &resource).await {
                        return Err(if created_now {
                            undo_create(c, b, &resource, e, written).await
                        } else {
                            e
                        });
                    }
                    tags_done = true;
                }
            }
            other => {
                return Err(Error::Cloud(format!(
                    "{resource}: unknown field {other} in the plan"
                )));
            }
        }
        written.push(change.field.clone());
    }
    Ok(already)
}

/// The bucket this run just created could not be tagged as strata's: delete it again
/// (it is empty), so that the next run creates it afresh instead of refusing an
/// untagged bucket as someone else's. Returns the error to report.
async fn undo_create(
    c: &Clients,
    b: &BucketDoc,
    resource: &str,
    cause: Error,
    written: &mut Vec<String>,
) -> Error {
    match c.s3.delete_bucket().bucket(&b.name).send().await {
        Ok(_) => {
            written.clear();
            Error::Cloud(format!(
                "{cause}\n  strata deleted the bucket it had just created (it could not be tagged as strata's), so a re-run starts clean"
            ))
        }
        Err(e) => Error::Cloud(format!(
            "{cause}\n  the bucket was created by this run but is not tagged as strata's, and deleting it again failed: {}\n  hint: delete the empty bucket {}, or set `adopt: true` on it once, and run again",
            cloud_error(resource, "DeleteBucket", &e),
            b.name
        )),
    }
}

/// Rewrites the lifecycle configuration with strata's rules, keeping everyone else's.
async fn write_lifecycle(c: &Clients, b: &BucketDoc, resource: &str) -> Result<()> {
    let name = &b.name;
    let mut rules: Vec<LifecycleRule> = read_lifecycle(c, b)
        .await?
        .into_iter()
        .filter(|r| {
            !r.id()
                .is_some_and(|id| id.starts_with(LIFECYCLE_RULE_PREFIX))
        })
        .collect();
    let fail = |e: aws_sdk_s3::error::BuildError| {
        Error::Cloud(format!("{resource}: PutBucketLifecycleConfiguration: {e}"))
    };
    for entry in &b.lifecycle {
        let mut rule = LifecycleRule::builder()
            .id(&entry.id)
            .status(ExpirationStatus::Enabled)
            .filter(
                LifecycleRuleFilter::builder()
                    .prefix(entry.prefix.clone().unwrap_or_default())
                    .build(),
            );
        if let Some(days) = entry.after_days {
            let class = entry.storage_class.as_deref().unwrap_or("GLACIER");
            rule = rule.transitions(
                Transition::builder()
                    .days(days as i32)
                    .storage_class(TransitionStorageClass::from(class))
                    .build(),
            );
        }
        if let Some(days) = entry.expire_after_days {
            rule = rule.expiration(
                aws_sdk_s3::types::LifecycleExpiration::builder()
                    .days(days as i32)
                    .build(),
            );
        }
        if let Some(days) = entry.noncurrent_expire_after_days {
            rule = rule.noncurrent_version_expiration(
                aws_sdk_s3::types::NoncurrentVersionExpiration::builder()
                    .noncurrent_days(days as i32)
                    .build(),
            );
        }
        rules.push(rule.build().map_err(fail)?);
    }
    if rules.is_empty() {
        c.s3.delete_bucket_lifecycle()
            .bucket(name)
            .send()
            .await
            .map_err(|e| cloud_error(resource, "DeleteBucketLifecycle", &e))?;
        return Ok(());
    }
    let conf = BucketLifecycleConfiguration::builder()
        .set_rules(Some(rules))
        .build()
        .map_err(fail)?;
    c.s3.put_bucket_lifecycle_configuration()
        .bucket(name)
        .lifecycle_configuration(conf)
        .send()
        .await
        .map_err(|e| cloud_error(resource, "PutBucketLifecycleConfiguration", &e))?;
    Ok(())
}

/// Adds (or removes) strata's TLS statement, keeping the rest of the bucket policy.
async fn write_tls_policy(
    c: &Clients,
    b: &BucketDoc,
    tls_only: bool,
    resource: &str,
) -> Result<()> {
    let name = &b.name;
    let live = read_bucket_policy(c, b).await?;
    let mut list: Vec<Value> = live
        .as_ref()
        .map(statements)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.get("Sid") != Some(&json!(TLS_SID)))
        .collect();
    if tls_only {
        list.push(tls_statement(b));
    }
    if list.is_empty() {
        c.s3.delete_bucket_policy()
            .bucket(name)
            .send()
            .await
            .map_err(|e| cloud_error(resource, "DeleteBucketPolicy", &e))?;
        return Ok(());
    }
    let policy = json!({"Version": "2012-10-17", "Statement": list});
    c.s3.put_bucket_policy()
        .bucket(name)
        .policy(policy.to_string())
        .send()
        .await
        .map_err(|e| cloud_error(resource, "PutBucketPolicy", &e))?;
    Ok(())
}

/// PutBucketTagging replaces the whole set: keep tags strata does not manage.
async fn write_bucket_tags(
    c: &Clients,
    b: &BucketDoc,
    want: &BTreeMap<String, String>,
    resource: &str,
) -> Result<()> {
    let mut tags = read_bucket_tags(c, b).await?;
    if want.iter().all(|(k, v)| tags.get(k) == Some(v)) {
        // Set already, by the CreateBucket of this run.
        return Ok(());
    }
    tags.extend(want.clone());
    let tagging = Tagging::builder()
        .set_tag_set(Some(s3_tag_set(&tags, resource, "PutBucketTagging")?))
        .build()
        .map_err(|e| Error::Cloud(format!("{resource}: PutBucketTagging: {e}")))?;
    c.s3.put_bucket_tagging()
        .bucket(&b.name)
        .tagging(tagging)
        .send()
        .await
        .map_err(|e| cloud_error(resource, "PutBucketTagging", &e))?;
    Ok(())
}

fn s3_tag_set(
    tags: &BTreeMap<String, String>,
    resource: &str,
    action: &str,
) -> Result<Vec<aws_sdk_s3::types::Tag>> {
    tags.iter()
        .map(|(k, v)| aws_sdk_s3::types::Tag::builder().key(k).value(v).build())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Cloud(format!("{resource}: {action}: {e}")))
}

pub(crate) fn iam_tags(
    tags: &BTreeMap<String, String>,
    resource: &str,
) -> Result<Vec<aws_sdk_iam::types::Tag>> {
    tags.iter()
        .map(|(k, v)| aws_sdk_iam::types::Tag::builder().key(k).value(v).build())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Cloud(format!("{resource}: tags: {e}")))
}

/// Returns whether the policy turned out to exist already (a concurrent create).
async fn apply_policy(
    c: &Clients,
    target: &Target,
    w: &WorkloadDocs,
    doc: &Value,
    action: &Action,
    written: &mut Vec<String>,
) -> Result<bool> {
    let (name, arn) = policy_of(target, &w.key);
    let resource = policy_resource(&arn);
    let want_tags = desired_tags(target);
    if action.op == Op::Unchanged {
        return Ok(false);
    }
    // Read again: a concurrent apply may have done the work since the plan.
    if let Some(live) = read_policy(c, &arn).await? {
        converge_existing_policy(c, target, &arn, doc, live, written).await?;
        return Ok(action.op == Op::Create);
    }
    {
        let created = c
            .iam
            .create_policy()
            .policy_name(&name)
            .policy_document(doc.to_string())
            .description(format!(
                "strata: bucket access of workload {} of target {}",
                w.key, target.name
            ))
            .set_tags(Some(iam_tags(&want_tags, &resource)?))
            .send()
            .await;
        match created {
            Ok(_) => {
                written.push("document".into());
                written.extend(want_tags.keys().map(|k| format!("tags.{k}")));
                Ok(false)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_already_exists_exception()) =>
            {
                // Lost a race with another apply: converge what it created.
                let live = read_policy(c, &arn).await?.ok_or_else(|| {
                    Error::Cloud(format!("{resource}: CreatePolicy: EntityAlreadyExists, yet GetPolicy finds no policy"))
                })?;
                converge_existing_policy(c, target, &arn, doc, live, written).await?;
                Ok(true)
            }
            Err(e) => Err(cloud_error(&resource, "CreatePolicy", &e)),
        }
    }
}

async fn converge_existing_policy(
    c: &Clients,
    target: &Target,
    arn: &str,
    doc: &Value,
    live: LivePolicy,
    written: &mut Vec<String>,
) -> Result<()> {
    let resource = policy_resource(arn);
    let want_tags = desired_tags(target);
    if !same_document(&live.document, doc) {
        create_default_version(c, arn, &resource, doc).await?;
        written.push("document".into());
    }
    let mut tag_diff = Vec::new();
    tag_changes(&live.tags, &want_tags, &mut tag_diff);
    if !tag_diff.is_empty() {
        c.iam
            .tag_policy()
            .policy_arn(arn)
            .set_tags(Some(iam_tags(&want_tags, &resource)?))
            .send()
            .await
            .map_err(|e| cloud_error(&resource, "TagPolicy", &e))?;
        written.extend(tag_diff.into_iter().map(|c| c.field));
    }
    Ok(())
}

/// A new default version; when IAM already holds five, the oldest non-default one
/// goes first. A concurrent apply can fill the slot again: then prune and retry once.
async fn create_default_version(c: &Clients, arn: &str, resource: &str, doc: &Value) -> Result<()> {
    for attempt in 0..2 {
        let versions = c
            .iam
            .list_policy_versions()
            .policy_arn(arn)
            .send()
            .await
            .map_err(|e| cloud_error(resource, "ListPolicyVersions", &e))?;
        if attempt > 0 {
            // The limit was hit: perhaps by this very document, whose create's answer
            // was lost and retried (the SDK retries a dropped connection). A version
            // that holds it already is made the default instead of a duplicate.
            for v in versions.versions() {
                let Some(id) = v.version_id() else { continue };
                let held = c
                    .iam
                    .get_policy_version()
                    .policy_arn(arn)
                    .version_id(id)
                    .send()
                    .await
                    .map_err(|e| cloud_error(resource, "GetPolicyVersion", &e))?;
                let raw = held
                    .policy_version()
                    .and_then(|p| p.document())
                    .unwrap_or_default();
                if !same_document(&parse_document(raw), doc) {
                    continue;
                }
                if !v.is_default_version() {
                    c.iam
                        .set_default_policy_version()
                        .policy_arn(arn)
                        .version_id(id)
                        .send()
                        .await
                        .map_err(|e| cloud_error(resource, "SetDefaultPolicyVersion", &e))?;
                }
                return Ok(());
            }
        }
        let mut old: Vec<_> = versions
            .versions()
            .iter()
            .filter(|v| !v.is_default_version())
            .collect();
        if versions.versions().len() >= MAX_POLICY_VERSIONS {
            old.sort_by_key(|v| v.create_date().map(|d| (d.secs(), d.subsec_nanos())));
            if let Some(oldest) = old.first().and_then(|v| v.version_id()) {
                match c
                    .iam
                    .delete_policy_version()
                    .policy_arn(arn)
                    .version_id(oldest)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.is_no_such_entity_exception()) => {}
                    Err(e) => {
                        return Err(cloud_error(
                            resource,
                            &format!("DeletePolicyVersion {oldest}"),
                            &e,
                        ));
                    }
                }
            }
        }
        match c
            .iam
            .create_policy_version()
            .policy_arn(arn)
            .policy_document(doc.to_string())
            .set_as_default(true)
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(e)
                if attempt == 0
                    && e.as_service_error()
                        .is_some_and(|s| s.is_limit_exceeded_exception()) =>
            {
                crate::engine::retries::count();
                continue;
            }
            Err(e) => return Err(cloud_error(resource, "CreatePolicyVersion", &e)),
        }
    }
    Err(Error::Cloud(format!(
        "{resource}: CreatePolicyVersion: the version limit was hit twice"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_compare_as_normalized_json() {
        let a = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": ["s3:B", "s3:A"], "Resource": "arn:x"},
            {"Sid": "C", "Effect": "Deny", "Action": "s3:PutObject", "Resource": ["arn:y"],
             "Condition": {"Bool": {"aws:SecureTransport": false}}}]});
        let b = json!({"Version": "2012-10-17", "Statement": [
            {"Sid": "C", "Effect": "Deny", "Action": ["s3:PutObject"], "Resource": "arn:y",
             "Condition": {"Bool": {"aws:SecureTransport": ["false"]}}},
            {"Sid": "A", "Effect": "Allow", "Action": ["s3:A", "s3:B"], "Resource": ["arn:x"]}]});
        assert!(same_document(&a, &b));
        let c = json!({"Version": "2012-10-17", "Statement": {"Sid": "A", "Effect": "Allow", "Action": "s3:A", "Resource": "arn:x"}});
        let d = json!({"Version": "2012-10-17", "Statement": [{"Sid": "A", "Effect": "Allow", "Action": ["s3:A"], "Resource": ["arn:x"]}]});
        assert!(same_document(&c, &d));
        let e = json!({"Version": "2012-10-17", "Statement": [{"Sid": "A", "Effect": "Allow", "Action": ["s3:A", "s3:B"], "Resource": ["arn:x"]}]});
        assert!(!same_document(&d, &e));
    }

    fn example_bucket(name: &str) -> BucketDoc {
        let loaded = crate::Loaded::load(crate::project::Project::Embedded).unwrap();
        let targets = loaded.targets(&[name.to_owned()]).unwrap();
        let renderer = loaded.renderer().unwrap();
        let (charts, _) = loaded.charts(&targets);
        let tree = crate::render_all(&renderer, &targets, &charts).unwrap();
        Documents::read(&targets[0], &tree)
            .unwrap()
            .buckets
            .remove(0)
    }

    #[test]
    fn bucket_changes_name_each_differing_field_and_leave_foreign_tags_alone() {
        let want = desired_bucket(&example_bucket("prod-aws"));
        let mut live = want.clone();
        live.tags.insert("owner-added".into(), "kept".into());
        assert_eq!(bucket_changes(&live, &want), []);

        live.versioning = false;
        live.tags.remove("strata-env");
        live.lifecycle = json!([]);
        let fields: Vec<(String, Value, Value)> = bucket_changes(&live, &want)
            .into_iter()
            .map(|c| (c.field, c.from, c.to))
            .collect();
        assert_eq!(
            fields,
            [
                ("versioning".into(), json!(false), json!(true)),
                (
                    "lifecycle".into(),
                    json!([]),
                    json!([{"id": "strata-0-archive", "afterDays": 90, "storageClass": "GLACIER"}])
                ),
                ("tags.strata-env".into(), Value::Null, json!("prod")),
            ]
        );
    }

    #[test]
    fn a_new_bucket_is_compared_with_an_empty_one() {
        let empty = BucketState {
            lifecycle: json!([]),
            ..BucketState::default()
        };
        let fields: Vec<String> =
            bucket_changes(&empty, &desired_bucket(&example_bucket("dev-aws")))
                .into_iter()
                .map(|c| c.field)
                .collect();
        assert_eq!(
            fields,
            [
                "versioning",
                "encryption",
                "publicAccessBlock",
                "tlsOnly",
                "tags.cost-center",
                "tags.data-classification",
                "tags.managed-by",
                "tags.owner",
                "tags.strata-env",
                "tags.strata-target"
            ]
        );
    }

    #[test]
    fn url_encoded_documents_are_decoded() {
        let raw = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            parse_document(raw),
            json!({"Version": "2012-10-17", "Statement": []})
        );
    }
}
