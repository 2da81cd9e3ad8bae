//! The typed model: what one target's merged tree means.
//!
//! Typing happens in two steps, because references (`!ref`, `!sub`) can point at names
//! strata derives from the typed keys:
//!
//! 1. [`Config`] types the strata-owned keys (closed: `deny_unknown_fields`, so a
//!    misspelt key is an error with "did you mean"). The free-form parts — each
//!    release's `values`, each workload's `env` and `statements`, and `vars` — are
//!    skipped here ([`FreeForm`]).
//! 2. [`names`] derives every cloud name; [`refs`] builds the reference scope from the
//!    typed keys and the names, and resolves the references in the free-form parts,
//!    keeping the location of every value.
//!
//! Each top-level section is typed on its own, so one run reports the problems of
//! every section, not only the first. Nothing here does I/O.

pub mod names;
pub mod refs;

use std::collections::BTreeMap;
use std::fmt;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::{Loc, Merged, Node, TargetLayers, Value};
use crate::error::{Error, Located, Result};

pub use names::{BucketNames, WorkloadNames};

/// Everything a layer file may say. Layers are partial; the merged result of a target's
/// layers must be complete.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    pub project: ProjectConfig,
    /// The Kubernetes side: context for helm, default namespace, Pod Security level.
    #[serde(default)]
    pub kube: Kube,
    /// Destroy needs the target name repeated (`--approve=TARGET`).
    #[serde(default)]
    pub protected: bool,
    /// Settings for targets on AWS; required there, ignored elsewhere.
    #[serde(default)]
    pub aws: Option<Aws>,
    /// Settings for targets on GCP; required there, ignored elsewhere.
    #[serde(default)]
    pub gcp: Option<Gcp>,
    /// Buckets, by logical name (zero or more).
    #[serde(default)]
    pub buckets: IndexMap<String, Bucket>,
    /// In-cluster identities, by logical name (zero or more).
    #[serde(default)]
    pub workloads: IndexMap<String, Workload>,
    /// Helm releases, installed in this order after `platform`.
    #[serde(default)]
    pub releases: IndexMap<String, Release>,
    /// The site's domain and host names (preflight discovers the zone and certificates).
    #[serde(default)]
    pub dns: Option<Dns>,
    /// Free-form data for templates and references; typed by `vars.schema.json`.
    #[serde(default)]
    pub vars: FreeForm,
    /// Named, explained exceptions to the rules `strata validate` enforces.
    #[serde(default)]
    pub exceptions: Vec<Exception>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectConfig {
    /// Short name of the project, used in derived names (`lakehouse`).
    pub name: String,
    /// Team that owns the deployment; recorded in tags and labels.
    #[serde(default)]
    pub owner: Option<String>,
    /// Tags (AWS) / labels (GCP) put on every cloud resource strata manages.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Kube {
    /// The kube context helm uses. Default: the name `aws eks update-kubeconfig` or
    /// `gcloud container clusters get-credentials` gives the cluster.
    #[serde(default)]
    pub context: Option<String>,
    /// Default namespace of releases and workloads. Default: `project.name`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Pod Security Standard enforced on the namespaces strata creates.
    #[serde(default)]
    pub pod_security: PodSecurity,
    /// Whether the platform chart creates the namespaces (false when the cluster's
    /// owners create them).
    #[serde(default = "yes")]
    pub create_namespace: bool,
}

impl Default for Kube {
    fn default() -> Self {
        Kube {
            context: None,
            namespace: None,
            pod_security: PodSecurity::default(),
            create_namespace: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PodSecurity {
    Privileged,
    #[default]
    Baseline,
    Restricted,
}

impl PodSecurity {
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurity::Privileged => "privileged",
            PodSecurity::Baseline => "baseline",
            PodSecurity::Restricted => "restricted",
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Aws {
    /// The 12-digit account the target deploys to; apply refuses any other account.
    pub account_id: String,
    pub region: String,
    /// EKS cluster name; needed by workloads (Pod Identity associations) and helm.
    #[serde(default)]
    pub cluster: Option<String>,
    /// How pods get their IAM role: EKS Pod Identity (default) or IRSA.
    #[serde(default)]
    pub identity: AwsIdentity,
    /// IRSA: the cluster's OIDC issuer URL (apply checks it against the live cluster).
    #[serde(default)]
    pub oidc_issuer: Option<String>,
    /// IRSA: create the IAM OIDC provider for the issuer when it is missing.
    #[serde(default)]
    pub create_oidc_provider: bool,
    /// Prefix of IAM role and policy names. Default: `project.name`.
    #[serde(default)]
    pub iam_prefix: Option<String>,
    /// Add-ons installed on the cluster outside EKS add-ons (with Helm or manifests):
    /// preflight cannot see them, and reports them as assumed installed.
    #[serde(default)]
    pub self_managed_addons: Vec<EksAddon>,
}

/// The cluster add-ons strata's workloads need on EKS, by their EKS add-on names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum EksAddon {
    /// EKS Pod Identity: pods get their IAM role from it.
    #[serde(rename = "eks-pod-identity-agent")]
    EksPodIdentityAgent,
    /// The Mountpoint for Amazon S3 CSI driver: pods mount buckets with it.
    #[serde(rename = "aws-mountpoint-s3-csi-driver")]
    AwsMountpointS3CsiDriver,
}

impl EksAddon {
    pub fn as_str(self) -> &'static str {
        match self {
            EksAddon::EksPodIdentityAgent => "eks-pod-identity-agent",
            EksAddon::AwsMountpointS3CsiDriver => "aws-mountpoint-s3-csi-driver",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AwsIdentity {
    #[default]
    PodIdentity,
    Irsa,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gcp {
    pub project_id: String,
    /// Bucket location (`US`, `EU`, `europe-west1`, …).
    pub location: String,
    /// GKE cluster name.
    #[serde(default)]
    pub cluster: Option<String>,
    /// Region or zone of the GKE cluster.
    #[serde(default)]
    pub cluster_location: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bucket {
    /// The cloud name; default `<project>-<env>-<key>` (on aws `-<accountId>` added).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub versioning: bool,
    /// Default encryption (SSE-S3 AES256 on AWS; Google-managed keys on GCP).
    #[serde(default = "yes")]
    pub encryption: bool,
    /// Block all public access (S3 public access block; GCS public access prevention).
    #[serde(default = "yes")]
    pub public_access_block: bool,
    /// Deny every request that does not use TLS (bucket policy on AWS).
    #[serde(default = "yes")]
    pub tls_only: bool,
    /// Uploads must request server-side encryption (AES256); others are denied.
    #[serde(default)]
    pub require_sse: bool,
    /// Lifecycle rules; a later layer replaces the whole list.
    #[serde(default)]
    pub lifecycle: Vec<LifecycleRule>,
    /// Extra tags / labels for the bucket.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Destroy keeps the bucket unless this is false.
    #[serde(default = "yes")]
    pub retain: bool,
    /// Apply may take over an existing bucket that strata did not create.
    #[serde(default)]
    pub adopt: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LifecycleRule {
    /// Only objects whose key starts with this.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Move objects to archival storage (GLACIER on AWS, ARCHIVE on GCP).
    #[serde(default)]
    pub archive_after_days: Option<u32>,
    /// Delete objects this many days after creation.
    #[serde(default)]
    pub expire_after_days: Option<u32>,
    /// Delete noncurrent versions this many days after they became noncurrent.
    #[serde(default)]
    pub noncurrent_expire_after_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    /// Kubernetes ServiceAccount name. Default `<project>-<workload>`.
    #[serde(default)]
    pub service_account: Option<String>,
    /// Default `kube.namespace`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Access to buckets, by bucket key.
    #[serde(default)]
    pub access: IndexMap<String, Access>,
    /// Extra AWS IAM statements (references allowed), checked by the same rules.
    #[serde(default)]
    pub statements: FreeForm,
    /// Extra GCP roles, on a bucket or on the project.
    #[serde(default)]
    pub roles: Vec<GcpRole>,
    /// Buckets mounted into pods (S3 Mountpoint / GCS FUSE CSI): bucket key → path.
    #[serde(default)]
    pub mounts: IndexMap<String, String>,
    /// Plain environment variables (references allowed) → `env/<workload>.env`.
    #[serde(default)]
    pub env: FreeForm,
    /// Secret environment variables, by reference to a Kubernetes Secret only.
    #[serde(default)]
    pub secrets: IndexMap<String, SecretRef>,
    /// AWS IAM role (and policy) name. Default `<iamPrefix>-<env>-<workload>`.
    #[serde(default)]
    pub iam_role: Option<String>,
    /// GCP service account id (6-30 characters). Default `<project>-<env>-<workload>`.
    #[serde(default)]
    pub gcp_service_account: Option<String>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum Access {
    Read,
    Readwrite,
    Admin,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpRole {
    /// `roles/…` or `projects/<p>/roles/…`.
    pub role: String,
    /// The bucket key to grant it on; the project when unset.
    #[serde(default)]
    pub bucket: Option<String>,
}

/// A reference to a key of a Kubernetes Secret; the only way a secret enters config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    pub secret_ref: SecretKey,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKey {
    /// Name of the Kubernetes Secret.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Release {
    /// The chart folder, relative to the project (`charts/app`).
    pub chart: String,
    /// Default `kube.namespace`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// helm `--timeout`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// A key the chart's values.yaml does not know is an error (a warning when false).
    #[serde(default = "yes")]
    pub strict_values: bool,
    /// Free-form Helm values (references allowed), checked against the chart.
    #[serde(default)]
    pub values: FreeForm,
}

fn default_timeout() -> String {
    "5m".to_owned()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dns {
    #[serde(default)]
    pub domain: Option<String>,
    /// Discovered by `preflight --write`: the hosted zone of `domain`.
    #[serde(default)]
    pub zone_id: Option<String>,
    /// Host names by logical name: a string, or `{name, certArn}` once discovered.
    #[serde(default)]
    pub hosts: IndexMap<String, DnsHost>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DnsHost {
    Name(String),
    Discovered(DiscoveredHost),
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoveredHost {
    pub name: String,
    #[serde(default)]
    pub cert_arn: Option<String>,
}

/// A deliberate relaxation of one rule, recorded in the output.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exception {
    /// The rule being relaxed, as `strata validate` names it (e.g. `prod.require-sse`).
    pub rule: String,
    /// Only at this key path (`workloads.api.env.TOKEN_EXPIRE_HOURS`); everywhere when unset.
    #[serde(default)]
    pub path: Option<String>,
    /// Why; shown in review and recorded in the artifacts.
    pub reason: String,
}

/// A free-form part of the tree (release values, env, statements, vars): typing skips
/// it, and [`refs`] resolves it from the merged tree, locations and all.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FreeForm;

impl<'de> Deserialize<'de> for FreeForm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| FreeForm)
    }
}

impl JsonSchema for FreeForm {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FreeForm".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"description": "free-form; `!ref PATH` and `!sub \"…${PATH}…\"` allowed"})
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Aws,
    Gcp,
}

impl Cloud {
    pub fn parse(name: &str) -> Option<Cloud> {
        match name {
            "aws" => Some(Cloud::Aws),
            "gcp" => Some(Cloud::Gcp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Gcp => "gcp",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One environment × cloud, typed, named and with its references resolved.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub env: String,
    pub cloud: Cloud,
    pub config: Config,
    /// The derived names of buckets and workloads, and the kube context and namespace.
    pub names: names::Names,
    /// The free-form subtrees with their references resolved (what explain and
    /// templates see); read through [`Target::resolved_at`].
    pub resolved: refs::Resolved,
    /// Where each resolved reference was written and what it said, by key path.
    pub references: BTreeMap<String, refs::Reference>,
    /// References that reached nothing (or went round in a cycle): the target is
    /// invalid, but is still checked for everything else.
    pub reference_errors: Vec<Located>,
    /// Where a reference left a null because it failed (here or at what it reached):
    /// the later checks say nothing more about the value there.
    pub unresolved: Vec<Loc>,
    /// Whether resolving stopped at its bound (references that multiply): the one
    /// error says so, and nothing else of the target, which is partial, is judged.
    pub references_exhausted: bool,
    pub layers: TargetLayers,
    pub merged: Merged,
}

impl Target {
    pub fn aws(&self) -> &Aws {
        self.config
            .aws
            .as_ref()
            .expect("checked when the target was resolved")
    }

    pub fn gcp(&self) -> &Gcp {
        self.config
            .gcp
            .as_ref()
            .expect("checked when the target was resolved")
    }

    /// Where the config key at `path` was set, or the nearest enclosing key that was.
    pub fn loc_of(&self, path: &str) -> Loc {
        locate(&self.merged.tree, path)
    }

    /// Where the key at `path` was written (its key, not its value), or the nearest
    /// enclosing key.
    pub fn key_loc_of(&self, path: &str) -> Loc {
        let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
        for len in (1..=segments.len()).rev() {
            if let Some(node) = self.merged.tree.lookup(segments[..len].iter().copied()) {
                return node.key_loc.clone();
            }
        }
        self.merged.tree.loc.clone()
    }

    /// Whether a reference failed at `loc` (and left a null there), or resolving gave
    /// up (and any place may hold what is left of it).
    pub fn unresolved_at(&self, loc: &Loc) -> bool {
        self.references_exhausted || self.unresolved.contains(loc)
    }

    /// Whether a named exception relaxes `rule` for this target (at `path`, when the
    /// exception names one).
    pub fn exception(&self, rule: &str, path: &str) -> Option<&Exception> {
        self.config.exceptions.iter().find(|e| {
            e.rule == rule
                && e.path
                    .as_deref()
                    .is_none_or(|p| p == path || path.starts_with(&format!("{p}.")))
        })
    }

    /// The resolved free-form subtree at `path` (e.g. `releases.app.values`).
    /// Any other path reads the merged tree.
    pub fn resolved_at(&self, path: &str) -> Option<&Node> {
        self.resolved.lookup(&self.merged.tree, path)
    }

    pub fn is_production(&self) -> bool {
        self.env.starts_with("prod")
    }
}

/// Resolves one target: types the merged tree section by section, derives names, and
/// resolves references.
pub fn resolve(layers: TargetLayers, merged: Merged) -> Result<Target> {
    let cloud = Cloud::parse(&layers.cloud).expect("clouds are checked on load");
    let config = typed_sections(&merged, &layers)?;
    let mut errors = Vec::new();
    match cloud {
        Cloud::Aws if config.aws.is_none() => errors.push(missing_section(
            &merged,
            &layers,
            "aws",
            "accountId, region",
        )),
        Cloud::Gcp if config.gcp.is_none() => errors.push(missing_section(
            &merged,
            &layers,
            "gcp",
            "projectId, location",
        )),
        _ => {}
    }
    Error::from_list(errors)?;
    let names = names::derive(&config, cloud, &layers.env, &layers.name);
    // A reference to nothing is this target's error, but not the end of it: the
    // reference reads as null, and the later checks still run (they say nothing more
    // about a value whose reference failed).
    let (resolved, references, unresolved) =
        refs::resolve_target(&config, &names, &layers, &merged, cloud);
    Ok(Target {
        name: layers.name.clone(),
        env: layers.env.clone(),
        cloud,
        config,
        names,
        resolved,
        references,
        reference_errors: unresolved.errors,
        unresolved: unresolved.sites,
        references_exhausted: unresolved.exhausted,
        layers,
        merged,
    })
}

/// Types every top-level section on its own (so that one run reports a problem in each),
/// then the whole tree.
fn typed_sections(merged: &Merged, layers: &TargetLayers) -> Result<Config> {
    // The whole tree first: when it types, every section does (they are its fields,
    // with the same types), and one pass is all a good target costs.
    if let Ok(config) = typed(merged, layers) {
        return Ok(config);
    }
    let Some(sections) = merged.tree.map() else {
        return typed(merged, layers);
    };
    let mut errors = Vec::new();
    for (key, node) in sections {
        let result = match key.as_str() {
            "project" => check_section::<ProjectConfig>(merged, layers, key, node),
            "kube" => check_section::<Kube>(merged, layers, key, node),
            "aws" => check_section::<Aws>(merged, layers, key, node),
            "gcp" => check_section::<Gcp>(merged, layers, key, node),
            "buckets" => check_entries::<Bucket>(merged, layers, key, node),
            "workloads" => check_entries::<Workload>(merged, layers, key, node),
            "releases" => check_entries::<Release>(merged, layers, key, node),
            "dns" => check_section::<Dns>(merged, layers, key, node),
            "exceptions" => check_section::<Vec<Exception>>(merged, layers, key, node),
            "protected" => check_section::<bool>(merged, layers, key, node),
            "vars" => Ok(()),
            // The whole-tree pass stops at its first error: each unknown key is said
            // here, so that one run names them all beside the sections' errors.
            _ => Err(type_error(
                merged,
                layers,
                Vec::new(),
                &format!(
                    "unknown field `{key}`, expected one of {}",
                    backticked(TOP_LEVEL)
                ),
            )),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if !sections.contains_key("project") {
        errors.push(type_error(
            merged,
            layers,
            Vec::new(),
            "missing field `project`",
        ));
    }
    if !errors.is_empty() {
        // Every section, every top-level key and `project:` itself were looked at:
        // the whole-tree pass would only say one of these again.
        return Err(Error::from_list(errors).unwrap_err());
    }
    typed(merged, layers)
}

/// The keys of [`Config`], in its order (a test holds them to its schema).
const TOP_LEVEL: &[&str] = &[
    "project",
    "kube",
    "protected",
    "aws",
    "gcp",
    "buckets",
    "workloads",
    "releases",
    "dns",
    "vars",
    "exceptions",
];

/// `` `a`, `b` `` as serde lists the fields it expected.
fn backticked(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Each entry of a section that maps names to one type (`buckets`, `workloads`,
/// `releases`) typed on its own, so that a mistake in each is said in one run.
fn check_entries<T: DeserializeOwned>(
    merged: &Merged,
    layers: &TargetLayers,
    key: &str,
    node: &Node,
) -> Result<()> {
    let Some(entries) = node.map() else {
        return check_section::<IndexMap<String, T>>(merged, layers, key, node);
    };
    let errors: Vec<Error> = entries
        .iter()
        .filter_map(|(name, entry)| {
            check_section::<T>(merged, layers, &format!("{key}.{name}"), entry).err()
        })
        .collect();
    Error::from_list(errors)
}

/// Most unknown keys said in one section (beyond, the next run says the rest).
const UNKNOWN_KEYS_SAID: usize = 100;

/// A section typed as `T`, its error at its key path. The typing stops at its first
/// error; after an unknown key (the usual typo) it runs again without that key, so
/// that every unknown key of the section is said in one run, with the first other
/// error after them.
fn check_section<T: DeserializeOwned>(
    merged: &Merged,
    layers: &TargetLayers,
    key: &str,
    node: &Node,
) -> Result<()> {
    let mut errors = Vec::new();
    let mut node = std::borrow::Cow::Borrowed(node);
    loop {
        let Err(e) = serde_path_to_error::deserialize::<_, T>(node.as_ref()) else {
            break;
        };
        let mut segments: Vec<String> = key.split('.').map(str::to_owned).collect();
        let inner = path_segments(e.path());
        segments.extend(inner.iter().cloned());
        let raw = e.inner().to_string();
        errors.push(type_error(merged, layers, segments, &raw));
        let Some((field, _)) = unknown_field(&raw) else {
            break;
        };
        if errors.len() >= UNKNOWN_KEYS_SAID || !remove_key(node.to_mut(), &inner, field) {
            break;
        }
    }
    Error::from_list(errors)
}

/// Removes the key `field` from the mapping at `path` below `node` (or at `path`
/// itself when its last segment is `field`); whether it was there.
fn remove_key(node: &mut Node, path: &[String], field: &str) -> bool {
    let parent = match path.split_last() {
        Some((last, head)) if last == field => head,
        _ => path,
    };
    let mut at = node;
    for segment in parent {
        at = match &mut at.value {
            Value::Map(entries) => {
                match std::sync::Arc::make_mut(entries).get_mut(segment.as_str()) {
                    Some(next) => next,
                    None => return false,
                }
            }
            Value::Seq(items) => match segment.parse::<usize>().ok().and_then(|i| items.get_mut(i))
            {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match &mut at.value {
        Value::Map(entries) => std::sync::Arc::make_mut(entries)
            .shift_remove(field)
            .is_some(),
        _ => false,
    }
}

fn path_segments(path: &serde_path_to_error::Path) -> Vec<String> {
    path.iter()
        .filter_map(|s| match s {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
            _ => None,
        })
        .collect()
}

fn missing_section(merged: &Merged, layers: &TargetLayers, key: &str, fields: &str) -> Error {
    Located::new(
        env_file_loc(merged, layers),
        key,
        format!(
            "target {} runs on {key} but no layer sets `{key}:`",
            layers.name
        ),
    )
    .hint(format!(
        "set `{key}:` with {fields} in environments/{}.yaml (or environments/clouds/{key}.yaml for what all {key} targets share)",
        layers.env
    ))
    .into()
}

/// Line 1 of the target's own environment file: where a key missing from a new
/// environment is to be added.
fn env_file_loc(merged: &Merged, layers: &TargetLayers) -> Loc {
    let env_file = format!("environments/{}.yaml", layers.env);
    layers
        .files
        .iter()
        .find(|f| **f == env_file)
        .map(|f| Loc::file(std::sync::Arc::from(f.as_str())))
        .unwrap_or_else(|| merged.tree.loc.clone())
}

/// The AWS partition a region belongs to (`aws`, `aws-cn`, `aws-us-gov`).
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Types a merged tree, turning serde's complaint into an error at the right line.
pub fn typed<T: DeserializeOwned>(merged: &Merged, layers: &TargetLayers) -> Result<T> {
    serde_path_to_error::deserialize::<_, T>(&merged.tree).map_err(|e| {
        type_error(
            merged,
            layers,
            path_segments(e.path()),
            &e.inner().to_string(),
        )
    })
}

fn type_error(
    merged: &Merged,
    layers: &TargetLayers,
    mut segments: Vec<String>,
    raw: &str,
) -> Error {
    let mut path = segments.join(".");
    let secret = crate::check::secrets::is_secret_path(&path);
    if let Some((field, rest)) = unknown_field(raw) {
        // serde reports the key itself; point at it and suggest a close spelling.
        if segments.last().map(String::as_str) != Some(field) {
            segments.push(field.to_owned());
        }
        path = segments.join(".");
        let node = merged.tree.lookup(segments.iter().map(String::as_str));
        let loc = node.map_or_else(|| locate(&merged.tree, &path), |n| n.key_loc.clone());
        let expected: Vec<&str> = rest
            .strip_prefix(", expected ")
            .map(|rest| rest.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let mut located = Located::new(loc, path, format!("unknown key `{field}`"));
        located = match crate::suggest::closest(field, expected.iter().copied()) {
            Some(close) => located.hint(format!("did you mean `{close}`?")),
            None if expected.is_empty() => located.hint("this mapping takes no keys here"),
            None => located.hint(format!("allowed keys here: {}", expected.join(", "))),
        };
        return located.into();
    }
    if let Some(field) = between(raw, "missing field `", "`") {
        let full = if path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
        if let Some(removal) = merged.removals.iter().find(|r| r.path == full) {
            return Located::new(
                removal.loc.clone(),
                full,
                format!("`{field}` is required, but this null removes it"),
            )
            .hint("set a value instead of null; null removes a key inherited from an earlier layer")
            .into();
        }
        // A section that exists: the key belongs in it, where it was written. A key at
        // the top (or a section no layer has): the environment's own file.
        let parent = (!path.is_empty())
            .then(|| merged.tree.lookup(path.split('.')))
            .flatten();
        let loc = match parent {
            Some(node) => node.key_loc.clone(),
            None => env_file_loc(merged, layers),
        };
        let holder = parent
            .map(|node| node.key_loc.file.to_string())
            .unwrap_or_else(|| format!("environments/{}.yaml", layers.env));
        return Located::new(
            loc,
            full.clone(),
            format!("required key `{field}` is not set by any layer"),
        )
        .hint(format!(
            "set `{full}` in {holder} (or in environments/base.yaml when every target shares it)"
        ))
        .into();
    }
    let node = merged.tree.lookup(segments.iter().map(String::as_str));
    let loc = node.map_or_else(|| locate(&merged.tree, &path), |n| n.loc.clone());
    let message = describe_type_error(raw, node, secret);
    let mut located = Located::new(loc, path, message);
    if raw.contains(crate::config::node::REFS_NOT_HERE) {
        located = located.hint("write the value itself here; strata-owned keys are not templated");
    } else if let Some(close) = closest_variant(raw) {
        located = located.hint(format!("did you mean `{close}`?"));
    }
    located.into()
}

/// For serde's "unknown variant `restrictd`, expected one of `privileged`, `baseline`,
/// `restricted`" (a value strata takes from a list), the listed value closest to the
/// one written.
fn closest_variant(raw: &str) -> Option<&str> {
    let from = raw.find("unknown variant `")? + "unknown variant `".len();
    let text = &raw[from..];
    let end = text.rfind("`, expected ")?;
    let expected: Vec<&str> = text[end + 1..].split('`').skip(1).step_by(2).collect();
    crate::suggest::closest(&text[..end], expected.iter().copied())
}

/// serde's "invalid type: string \"maybe\", expected a boolean" as "expected a boolean,
/// found \"maybe\"", with the value hidden when the key is secret-like.
fn describe_type_error(raw: &str, node: Option<&Node>, secret: bool) -> String {
    use crate::config::Value;
    let expected = raw.split(", expected ").nth(1).map(str::trim);
    let found = match node.map(|n| &n.value) {
        Some(Value::Str(s)) if !secret => format!("{s:?}"),
        Some(Value::Int(i)) if !secret => format!("{i}"),
        Some(Value::Float(f)) if !secret => format!("{f}"),
        Some(Value::Bool(b)) if !secret => format!("{b}"),
        Some(v) => v.kind().to_owned(),
        None => "nothing".to_owned(),
    };
    match expected {
        Some(expected) if raw.starts_with("invalid") => {
            format!("expected {}, found {found}", humanize(expected))
        }
        _ if secret => "invalid value (hidden: the key is secret-like)".to_owned(),
        _ if raw.starts_with("data did not match any variant") => {
            format!("expected a host name or {{name, certArn}}, found {found}")
        }
        _ => raw.to_owned(),
    }
}

fn humanize(expected: &str) -> String {
    match expected {
        "a sequence" => "a list".to_owned(),
        "u32" | "u16" | "u64" => "a whole number".to_owned(),
        e if e.starts_with("struct ") || e.starts_with("map") => "a mapping".to_owned(),
        e if e.starts_with("one of ") || e.starts_with("variant") => e.to_owned(),
        e => e.to_owned(),
    }
}

/// The key of serde's "unknown field `KEY`, expected one of `a`, `b`" (or ", there are
/// no fields"), and what follows it. The key may hold backticks and those very words
/// itself, so it ends where serde's last words begin: the names it expects are
/// strata's own keys.
fn unknown_field(raw: &str) -> Option<(&str, &str)> {
    let from = raw.find("unknown field `")? + "unknown field `".len();
    let text = &raw[from..];
    let end = if let Some(key) = text.strip_suffix("`, there are no fields") {
        key.len()
    } else if let Some(end) = text.rfind("`, expected ") {
        end
    } else {
        text.strip_suffix('`')?.len()
    };
    Some((&text[..end], &text[end + 1..]))
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// The location of `path` in `tree`, or of its nearest ancestor that exists.
pub fn locate(tree: &Node, path: &str) -> Loc {
    let segments: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    for len in (0..=segments.len()).rev() {
        if let Some(node) = tree.lookup(segments[..len].iter().copied()) {
            return node.loc.clone();
        }
    }
    tree.loc.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_level_keys_are_the_configs_own() {
        let schema = serde_json::to_value(schemars::schema_for!(Config)).unwrap();
        let properties: Vec<&str> = schema["properties"]
            .as_object()
            .expect("Config has properties")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(properties, TOP_LEVEL);
    }
}
