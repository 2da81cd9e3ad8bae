//! The typed model: what one target's merged tree means.
//!
//! [`Config`] is the schema of the environment files (`deny_unknown_fields`
//! everywhere, so a misspelt key is an error with "did you mean"); [`Target`] adds what
//! strata derives from it: the target's identity and the cloud resource names. Nothing
//! here does I/O.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::{Loc, Merged, Node, TargetLayers};
use crate::error::{Error, Located, Result};

/// Everything an environment file may say. Layers are partial; the merged result of a
/// target's layers must be complete.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    pub project: ProjectConfig,
    pub cluster: Cluster,
    pub app: App,
    pub auth: Auth,
    pub bucket: Bucket,
    pub ingress: Ingress,
    /// Settings for targets on AWS; required there, ignored elsewhere.
    #[serde(default)]
    pub aws: Option<Aws>,
    /// Settings for targets on GCP; required there, ignored elsewhere.
    #[serde(default)]
    pub gcp: Option<Gcp>,
    /// Overrides for the names strata derives; leave unset to use the conventions.
    #[serde(default)]
    pub names: NameOverrides,
    /// Named, explained exceptions to the policy rules `strata validate` enforces.
    #[serde(default)]
    pub exceptions: Vec<Exception>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectConfig {
    /// Short name of the application, used in resource names (`lakehouse`).
    pub name: String,
    /// Prefix of IAM policy and role names (`Lakehouse`).
    pub iam_prefix: String,
    /// Kubernetes namespace the application runs in.
    pub namespace: String,
    /// Team that owns the deployment; recorded in tags and labels.
    pub owner: String,
    /// Tags (AWS) / labels (GCP) put on every cloud resource strata manages.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cluster {
    /// Kubernetes cluster name (EKS or GKE).
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct App {
    pub backend: Component,
    pub frontend: Component,
    /// Plain configuration, given to both pods as environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, Scalar>,
    /// Secret environment variables, by reference to a Kubernetes Secret only.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    pub storage: Storage,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Component {
    /// Image repository, without tag.
    pub image: String,
    /// Pinned image tag (never `latest`).
    pub tag: String,
    pub replicas: u32,
    pub port: u16,
    pub resources: Resources,
    pub probes: Probes,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    pub requests: ResourceList,
    pub limits: ResourceList,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceList {
    pub cpu: Scalar,
    pub memory: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probes {
    pub liveness_path: String,
    pub readiness_path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Storage {
    /// Where the backend mounts the data bucket.
    pub mount_path: String,
    #[serde(default)]
    pub read_only: bool,
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
pub struct Auth {
    /// `auto` picks `cognito` on AWS and `google` on GCP.
    pub provider: AuthProvider,
    pub client_id: String,
    pub client_secret: SecretRef,
    #[serde(default)]
    pub google: Option<GoogleAuth>,
    #[serde(default)]
    pub cognito: Option<CognitoAuth>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AuthProvider {
    Auto,
    Google,
    Cognito,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GoogleAuth {
    /// Restrict sign-in to one Google Workspace domain.
    #[serde(default)]
    pub hosted_domain: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CognitoAuth {
    pub user_pool_id: String,
    pub domain: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bucket {
    pub versioning: bool,
    /// Default encryption (SSE-S3 AES256 on AWS; Google-managed keys on GCP).
    pub encryption: bool,
    /// Block all public access (S3 public access block; GCS public access prevention).
    pub public_access_block: bool,
    /// Whether the application may delete objects.
    pub allow_delete: bool,
    /// Uploads must request server-side encryption (AES256); others are denied.
    pub require_sse: bool,
    /// Deny every request that does not use TLS (bucket policy on AWS).
    #[serde(default = "yes")]
    pub tls_only: bool,
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// Extra tags / labels for the bucket.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lifecycle {
    /// Move objects to archival storage (GLACIER on AWS, ARCHIVE on GCP) after this
    /// many days; unset keeps them in the standard class.
    #[serde(default)]
    pub glacier_after_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ingress {
    pub host: String,
    pub tls: bool,
    pub class_name: String,
    /// Namespace of the ingress controller, allowed through the NetworkPolicy.
    pub controller_namespace: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Aws {
    /// The 12-digit account the target deploys to; apply refuses any other account.
    pub account_id: String,
    pub region: String,
    /// How pods get the IAM role: IRSA (annotated ServiceAccount) or EKS Pod Identity.
    #[serde(default)]
    pub identity: AwsIdentity,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AwsIdentity {
    #[default]
    Irsa,
    PodIdentity,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gcp {
    pub project_id: String,
    /// Bucket location (`US`, `EU`, `europe-west1`, …).
    pub location: String,
    /// Region of the GKE cluster (used in the kube context name).
    pub region: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NameOverrides {
    pub bucket: Option<String>,
    pub policy: Option<String>,
    pub role: Option<String>,
    pub service_account: Option<String>,
    pub gcp_service_account: Option<String>,
    pub kube_context: Option<String>,
}

/// A deliberate relaxation of one policy rule, recorded in the output.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exception {
    /// The rule being relaxed, as `strata validate` names it (e.g. `prod.allow-delete`).
    pub rule: String,
    /// Why; shown in review and recorded in the artifacts.
    pub reason: String,
}

/// A scalar written in YAML (string, number or boolean), kept as the text it stands
/// for: environment variables and Kubernetes quantities are strings in the end.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Scalar(pub String);

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_bool<E>(self, v: bool) -> std::result::Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
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

/// The names strata derives for a target, each overridable under `names:`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Names {
    pub bucket: String,
    pub service_account: String,
    pub kube_context: String,
    pub namespace: String,
    /// The PersistentVolumeClaim the platform chart binds to the bucket.
    pub claim: String,
    /// AWS only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// AWS only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// AWS only: the role's ARN, in the region's partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// GCP only: the Google service account bound through Workload Identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcp_service_account: Option<String>,
}

/// One derived name and how it was made, for `explain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Derivation {
    pub name: &'static str,
    pub value: String,
    /// `convention` or `override`.
    pub rule: String,
    /// Config key paths the name was built from.
    pub inputs: Vec<String>,
}

/// One environment × cloud, fully resolved.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub env: String,
    pub cloud: Cloud,
    pub config: Config,
    pub names: Names,
    pub derivations: Vec<Derivation>,
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

    /// The auth provider after resolving `auto`.
    pub fn auth_provider(&self) -> AuthProvider {
        match (self.config.auth.provider, self.cloud) {
            (AuthProvider::Auto, Cloud::Aws) => AuthProvider::Cognito,
            (AuthProvider::Auto, Cloud::Gcp) => AuthProvider::Google,
            (p, _) => p,
        }
    }

    /// Where the config key at `path` was set, or the nearest enclosing key that was.
    pub fn loc_of(&self, path: &str) -> Loc {
        locate(&self.merged.tree, path)
    }

    /// Whether a named exception relaxes `rule` for this target.
    pub fn exception(&self, rule: &str) -> Option<&Exception> {
        self.config.exceptions.iter().find(|e| e.rule == rule)
    }
}

/// Resolves one target: types the merged tree and derives names.
pub fn resolve(layers: TargetLayers, merged: Merged) -> Result<Target> {
    let cloud = Cloud::parse(&layers.cloud).expect("clouds are checked on load");
    let config: Config = typed(&merged)?;
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
            "projectId, location, region",
        )),
        _ => {}
    }
    Error::from_list(errors)?;
    let (names, derivations) = derive_names(&config, cloud);
    Ok(Target {
        name: layers.name.clone(),
        env: layers.env.clone(),
        cloud,
        config,
        names,
        derivations,
        layers,
        merged,
    })
}

fn missing_section(merged: &Merged, layers: &TargetLayers, key: &str, fields: &str) -> Error {
    Located::new(
        merged.tree.loc.clone(),
        key,
        format!(
            "target {} runs on {key} but no layer sets `{key}:`",
            layers.name
        ),
    )
    .hint(format!(
        "set `{key}:` with {fields} in environments/clouds/{key}.yaml or a {}.{key}.yaml layer",
        layers.env
    ))
    .into()
}

fn derive_names(config: &Config, cloud: Cloud) -> (Names, Vec<Derivation>) {
    let o = &config.names;
    let cluster = &config.cluster.name;
    let namespace = &config.project.namespace;
    let prefix = &config.project.iam_prefix;
    let mut derivations = Vec::new();
    let mut pick =
        |name: &'static str, over: &Option<String>, convention: String, inputs: &[&str]| {
            let (value, rule, inputs) = match over {
                Some(v) => (
                    v.clone(),
                    "override".to_owned(),
                    vec![format!("names.{name}")],
                ),
                None => (
                    convention,
                    "convention".to_owned(),
                    inputs.iter().map(|s| s.to_string()).collect(),
                ),
            };
            derivations.push(Derivation {
                name,
                value: value.clone(),
                rule,
                inputs,
            });
            value
        };
    let service_account = pick(
        "serviceAccount",
        &o.service_account,
        format!("{namespace}-sa"),
        &["project.namespace"],
    );
    let claim = format!("{}-data", config.project.name);
    let names = match cloud {
        Cloud::Aws => {
            let aws = config.aws.as_ref();
            let account = aws.map_or("", |a| a.account_id.as_str());
            let region = aws.map_or("", |a| a.region.as_str());
            let role = pick(
                "role",
                &o.role,
                format!("{prefix}_{service_account}_{cluster}"),
                &["project.iamPrefix", "names.serviceAccount", "cluster.name"],
            );
            Names {
                bucket: pick(
                    "bucket",
                    &o.bucket,
                    format!("{cluster}-db-{account}"),
                    &["cluster.name", "aws.accountId"],
                ),
                policy: Some(pick(
                    "policy",
                    &o.policy,
                    format!("{prefix}_{namespace}_S3_Policy_{cluster}"),
                    &["project.iamPrefix", "project.namespace", "cluster.name"],
                )),
                role_arn: Some(format!(
                    "arn:{}:iam::{account}:role/{role}",
                    partition(region)
                )),
                role: Some(role),
                kube_context: pick(
                    "kubeContext",
                    &o.kube_context,
                    format!(
                        "arn:{}:eks:{region}:{account}:cluster/{cluster}",
                        partition(region)
                    ),
                    &["aws.region", "aws.accountId", "cluster.name"],
                ),
                gcp_service_account: None,
                service_account,
                namespace: namespace.clone(),
                claim,
            }
        }
        Cloud::Gcp => {
            let gcp = config.gcp.as_ref();
            let project = gcp.map_or("", |g| g.project_id.as_str());
            let region = gcp.map_or("", |g| g.region.as_str());
            Names {
                bucket: pick(
                    "bucket",
                    &o.bucket,
                    format!("{project}-{cluster}-db"),
                    &["gcp.projectId", "cluster.name"],
                ),
                gcp_service_account: Some(pick(
                    "gcpServiceAccount",
                    &o.gcp_service_account,
                    format!("{service_account}@{project}.iam.gserviceaccount.com"),
                    &["names.serviceAccount", "gcp.projectId"],
                )),
                kube_context: pick(
                    "kubeContext",
                    &o.kube_context,
                    format!("gke_{project}_{region}_{cluster}"),
                    &["gcp.projectId", "gcp.region", "cluster.name"],
                ),
                policy: None,
                role: None,
                role_arn: None,
                service_account,
                namespace: namespace.clone(),
                claim,
            }
        }
    };
    (names, derivations)
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
pub fn typed<T: DeserializeOwned>(merged: &Merged) -> Result<T> {
    serde_path_to_error::deserialize::<_, T>(&merged.tree).map_err(|e| {
        let segments: Vec<String> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        type_error(merged, segments, &e.inner().to_string())
    })
}

fn type_error(merged: &Merged, mut segments: Vec<String>, raw: &str) -> Error {
    let mut path = segments.join(".");
    let secret = crate::validate::is_secret_path(&path);
    if let Some(field) = between(raw, "unknown field `", "`") {
        // serde reports the key itself; point at it and suggest a close spelling.
        if segments.last().map(String::as_str) != Some(field) {
            segments.push(field.to_owned());
        }
        path = segments.join(".");
        let node = merged.tree.lookup(segments.iter().map(String::as_str));
        let loc = node.map_or_else(|| locate(&merged.tree, &path), |n| n.key_loc.clone());
        let expected: Vec<&str> = raw
            .split("expected ")
            .nth(1)
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
        return Located::new(
            locate(&merged.tree, &path),
            full,
            format!("required key `{field}` is not set by any layer"),
        )
        .hint(format!(
            "set `{field}` in environments/base.yaml or a later layer"
        ))
        .into();
    }
    let node = merged.tree.lookup(segments.iter().map(String::as_str));
    let loc = node.map_or_else(|| locate(&merged.tree, &path), |n| n.loc.clone());
    let message = describe_type_error(raw, node, secret);
    Located::new(loc, path, message).into()
}

/// serde's "invalid type: string \"maybe\", expected a boolean" as "expected a boolean,
/// found \"maybe\"", with the value hidden when the key is secret-like.
fn describe_type_error(raw: &str, node: Option<&Node>, secret: bool) -> String {
    let expected = raw.split(", expected ").nth(1).map(str::trim);
    let found = match node.map(|n| &n.value) {
        Some(crate::config::Value::Str(s)) if !secret => format!("{s:?}"),
        Some(crate::config::Value::Int(i)) if !secret => format!("{i}"),
        Some(crate::config::Value::Float(f)) if !secret => format!("{f}"),
        Some(crate::config::Value::Bool(b)) if !secret => format!("{b}"),
        Some(v) => v.kind().to_owned(),
        None => "nothing".to_owned(),
    };
    match expected {
        Some(expected) if raw.starts_with("invalid") => {
            format!("expected {}, found {found}", humanize(expected))
        }
        _ if secret => "invalid value (hidden: the key is secret-like)".to_owned(),
        _ => raw.to_owned(),
    }
}

fn humanize(expected: &str) -> String {
    match expected {
        "a sequence" => "a list".to_owned(),
        "u32" | "u16" | "u64" => "a whole number".to_owned(),
        e if e.starts_with("struct ") || e.starts_with("map") => "a mapping".to_owned(),
        e => e.to_owned(),
    }
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
