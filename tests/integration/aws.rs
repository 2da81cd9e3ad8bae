//! plan and apply against moto's real server (S3, IAM, STS on 127.0.0.1), through the
//! strata binary.
//!
//! Every test works on a copy of a v2 project whose accountId is moto's. Buckets and IAM
//! policies and roles are global in the one moto server the tests share, so each test
//! gives its targets their own names: an `<env>.aws.yaml` layer with
//! `buckets.data.name`, and `aws.iamPrefix: Lakehouse-<tag>` (policy and role
//! `Lakehouse-<tag>-<env>-api`).
//!
//! The identity chain (apply's step after buckets and policies) runs in every test, set
//! up so that it is the same on every run, whatever else runs in the process:
//! - dev and staging use IRSA, as the example says, with an OIDC issuer of the test's
//!   own (`issuer`): the layer sets `aws.oidcIssuer` to it, the test makes the account's
//!   IAM OIDC provider for it first (as `eksctl utils associate-iam-oidc-provider`
//!   would; `aws.createOidcProvider` stays unset, so `iam_oidc_provider` is always
//!   `unchanged`), and EKS DescribeCluster of `lakehouse-dev` / `lakehouse-staging`
//!   answers it (`eks_clusters`). moto cannot: it gives every cluster of a region one
//!   issuer, whose provider identity.rs's IRSA test creates and counts;
//! - prod uses EKS Pod Identity, as the example says, through the stand-in
//!   `tests/standins/eks_pod_identity.py` (moto has no Pod Identity API), one per test,
//!   where cluster `lakehouse-prod` exists and roles are checked in moto.
//!
//! Writes are counted by what the server saw: a recording proxy
//! (`support::RecordingProxy`) sits between strata and moto where a test says
//! "writes nothing", and the stand-ins log every request.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

use crate::support::standins::Standin;
use crate::support::{self, FaultyProxy, RecordingProxy, copy_dir, moto, text};

/// The environments whose targets use IRSA, and their clusters (the example's).
const IRSA: [(&str, &str); 2] = [("dev", "lakehouse-dev"), ("staging", "lakehouse-staging")];

struct Project {
    dir: tempfile::TempDir,
    tag: String,
    /// EKS DescribeCluster for the IRSA targets' clusters, when the project has any.
    clusters: Option<Eks>,
    /// The targets whose EKS calls go to the Pod Identity stand-in, and its clusters.
    pod_identity_targets: &'static [&'static str],
    pod_identity_clusters: &'static [&'static str],
    pod_identity: OnceLock<Standin>,
}

impl Project {
    /// The lakehouse example with moto's account and the test's own names.
    fn new(tag: &str) -> Project {
        Self::with_account(tag, moto::ACCOUNT)
    }

    fn with_account(tag: &str, account: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = support::repo_root();
        for sub in ["environments", "charts"] {
            copy_dir(&root.join(sub), &dir.path().join(sub));
        }
        let clusters = IRSA
            .iter()
            .map(|(env, cluster)| ((*cluster).to_owned(), issuer(tag, env)))
            .collect();
        let p = Project {
            dir,
            tag: tag.to_owned(),
            clusters: Some(eks_clusters(clusters)),
            pod_identity_targets: &["prod-aws"],
            pod_identity_clusters: &["lakehouse-prod"],
            pod_identity: OnceLock::new(),
        };
        for (env, example) in [
            ("dev", "111111111111"),
            ("staging", "222222222222"),
            ("prod", "333333333333"),
        ] {
            p.edit(&format!("environments/{env}.yaml"), |body| {
                body.replace(
                    &format!(r#"accountId: "{example}""#),
                    &format!(r#"accountId: "{account}""#),
                )
            });
            // prod.aws.yaml exists (region, identity); the others are new. The bucket
            // comes last: tests append its settings.
            let irsa = if IRSA.iter().any(|(e, _)| *e == env) {
                format!("aws:\n  oidcIssuer: {}\n", issuer(tag, env))
            } else {
                String::new()
            };
            p.append(
                &format!("environments/{env}.aws.yaml"),
                &format!("{irsa}buckets:\n  data:\n    name: {}\n", p.bucket(env)),
            );
        }
        p.edit("environments/clouds/aws.yaml", |body| {
            body.replace(
                "iamPrefix: Lakehouse\n",
                &format!("iamPrefix: Lakehouse-{tag}\n"),
            )
        });
        if account == moto::ACCOUNT {
            for (env, _) in IRSA {
                block_on(create_oidc_provider(&issuer(tag, env)));
            }
        }
        p
    }

    /// `tests/fixtures/cloud/<name>`, whose dev-aws uses EKS Pod Identity on `cluster`.
    fn fixture(name: &str, tag: &str, cluster: &'static [&'static str]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(
            &support::repo_root().join("tests/fixtures/cloud").join(name),
            dir.path(),
        );
        Project {
            dir,
            tag: tag.to_owned(),
            clusters: None,
            pod_identity_targets: &["dev-aws"],
            pod_identity_clusters: cluster,
            pod_identity: OnceLock::new(),
        }
    }

    /// Rewrites a project file; the edit must change it.
    fn edit(&self, rel: &str, f: impl FnOnce(&str) -> String) {
        let path = self.path().join(rel);
        let before = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let after = f(&before);
        assert_ne!(before, after, "the edit of {rel} changed nothing");
        std::fs::write(&path, after).unwrap();
    }

    /// Appends to a project file, creating it (and its folder) when missing.
    fn append(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut body = std::fs::read_to_string(&path).unwrap_or_default();
        if !body.is_empty() && !body.ends_with('\n') {
            body.push('\n');
        }
        body.push_str(text);
        std::fs::write(&path, body).unwrap();
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn bucket(&self, env: &str) -> String {
        format!("strata-it-{}-{env}", self.tag)
    }

    /// The managed policy of workload `api`, and its role: `<iamPrefix>-<env>-api`.
    fn policy_name(&self, env: &str) -> String {
        format!("Lakehouse-{}-{env}-api", self.tag)
    }

    fn policy_arn(&self, env: &str) -> String {
        format!(
            "arn:aws:iam::{}:policy/{}",
            moto::ACCOUNT,
            self.policy_name(env)
        )
    }

    fn role_arn(&self, env: &str) -> String {
        format!(
            "arn:aws:iam::{}:role/{}",
            moto::ACCOUNT,
            self.policy_name(env)
        )
    }

    /// The IAM OIDC provider of an IRSA environment's cluster.
    fn provider_arn(&self, env: &str) -> String {
        let issuer = issuer(&self.tag, env);
        format!(
            "arn:aws:iam::{}:oidc-provider/{}",
            moto::ACCOUNT,
            issuer.trim_start_matches("https://")
        )
    }

    /// The Pod Identity stand-in, started on first use.
    fn pod_identity(&self) -> &Standin {
        self.pod_identity
            .get_or_init(|| Standin::eks_pod_identity(moto::url(), self.pod_identity_clusters))
    }

    /// The EKS endpoint of a command: the Pod Identity stand-in for its targets, the
    /// DescribeCluster stand-in for the IRSA ones.
    fn eks_endpoint(&self, args: &[&str]) -> Option<String> {
        if args.iter().any(|a| self.pod_identity_targets.contains(a)) {
            Some(self.pod_identity().url.clone())
        } else {
            self.clusters.as_ref().map(|eks| eks.url.clone())
        }
    }

    /// strata against moto.
    fn command(&self, args: &[&str]) -> std::process::Command {
        self.command_at(moto::url(), args)
    }

    /// strata with `endpoint` as its only AWS endpoint (EKS aside, see the module doc),
    /// static test credentials and no AWS configuration from this machine. Every
    /// endpoint goes through here.
    fn command_at(&self, endpoint: &str, args: &[&str]) -> std::process::Command {
        support::assert_loopback(endpoint);
        let mut cmd = support::strata();
        cmd.arg("-C")
            .arg(self.path())
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env("AWS_CONFIG_FILE", self.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.path().join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // Helm never reaches a cluster from these tests.
            .env("STRATA_HELM", self.path().join("no-such-helm"));
        if let Some(eks) = self.eks_endpoint(args) {
            support::assert_loopback(&eks);
            cmd.env("AWS_ENDPOINT_URL_EKS", eks);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("strata runs")
    }

    fn run_at(&self, endpoint: &str, args: &[&str]) -> Output {
        self.command_at(endpoint, args)
            .output()
            .expect("strata runs")
    }

    /// Runs with `--format json`, expecting `code`; returns the parsed stdout.
    fn json(&self, args: &[&str], code: i32) -> Value {
        self.json_at(moto::url(), args, code)
    }

    fn json_at(&self, endpoint: &str, args: &[&str], code: i32) -> Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = self.run_at(endpoint, &all);
        parse(&out, &all, code)
    }

    /// A rendered file of `target` (as `strata render` writes it), parsed as JSON.
    fn rendered(&self, target: &str, rel: &str) -> Value {
        let out = self.run(&["render", target, "--out", "rendered"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let path: PathBuf = self.path().join(format!("rendered/{target}/{rel}"));
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| {
            panic!("{}: {e}", path.display());
        }))
        .unwrap()
    }
}

/// An OIDC issuer of this test's own for `env`: no other test makes or counts an IAM
/// OIDC provider for it.
fn issuer(tag: &str, env: &str) -> String {
    use std::hash::{Hash, Hasher};
    let half = |salt: &str| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ("strata-aws-it", tag, env, salt).hash(&mut h);
        h.finish()
    };
    format!(
        "https://oidc.eks.eu-west-1.amazonaws.com/id/{:016X}{:016X}",
        half("a"),
        half("b")
    )
}

/// The account's IAM OIDC provider for `issuer`, made outside strata (as eksctl does).
async fn create_oidc_provider(issuer: &str) {
    moto::iam()
        .await
        .create_open_id_connect_provider()
        .url(issuer)
        .client_id_list("sts.amazonaws.com")
        .send()
        .await
        .unwrap_or_else(|e| panic!("moto creates the OIDC provider for {issuer}: {e:?}"));
}

/// The JSON on stdout of a run that had to exit with `code`.
fn parse(out: &Output, args: &[&str], code: i32) -> Value {
    assert_eq!(
        out.status.code(),
        Some(code),
        "strata {args:?}\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(&out.stdout)))
}

const APPLY_DEV: &[&str] = &["apply", "dev-aws", "--approve", "--skip-helm"];

use crate::support::block_on;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// (kind, outcome) of each resource in the evidence.
fn outcomes(evidence: &Value) -> Vec<(String, String)> {
    evidence["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// (kind, name) of each resource in the evidence or action in a plan.
fn names(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// (kind, op) of each action of a plan.
fn ops(plan: &Value) -> Vec<(String, String)> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_owned(),
                a["op"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn changed_fields(plan: &Value, kind: &str) -> Vec<String> {
    let action = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {plan:#}"));
    action["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap().to_owned())
        .collect()
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn tag_map(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// One lifecycle rule as S3 holds it, in the terms of a bucket document's entries.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    id: String,
    enabled: bool,
    prefix: Option<String>,
    archive: Option<(i32, String)>,
    expire: Option<i32>,
    noncurrent: Option<i32>,
}

impl Rule {
    /// A strata entry of `buckets/<b>.json` (`{id, prefix?, afterDays?, storageClass?,
    /// expireAfterDays?, noncurrentExpireAfterDays?}`), as S3 should hold it.
    fn from_doc(entry: &Value) -> Rule {
        let days = |key: &str| entry[key].as_i64().map(|d| d as i32);
        Rule {
            id: entry["id"].as_str().unwrap().to_owned(),
            enabled: true,
            prefix: entry["prefix"].as_str().map(str::to_owned),
            archive: days("afterDays")
                .map(|d| (d, entry["storageClass"].as_str().unwrap().to_owned())),
            expire: days("expireAfterDays"),
            noncurrent: days("noncurrentExpireAfterDays"),
        }
    }
}

/// Everything strata manages on a bucket, read back through the SDK (`None` where S3
/// answers "not configured").
#[derive(Debug)]
struct BucketReadBack {
    location: Option<String>,
    versioning: Option<String>,
    encryption: Option<String>,
    public_access_block: Option<[Option<bool>; 4]>,
    tags: BTreeMap<String, String>,
    policy: Option<Value>,
    lifecycle: Vec<Rule>,
}

impl BucketReadBack {
    /// The statement that denies plain HTTP, when the policy holds one.
    fn tls_statement(&self) -> Option<Value> {
        self.policy.as_ref().and_then(|p| {
            p["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["Condition"]["Bool"]["aws:SecureTransport"] == "false")
                .cloned()
        })
    }

    /// Compares every managed setting with the rendered `buckets/<b>.json`.
    fn assert_matches(&self, doc: &Value) {
        let name = doc["name"].as_str().unwrap();
        let want_versioning = doc["versioning"].as_bool().unwrap();
        assert_eq!(
            self.versioning.as_deref() == Some("Enabled"),
            want_versioning,
            "{name}: versioning {:?}",
            self.versioning
        );
        assert_eq!(
            self.encryption.as_deref(),
            Some(doc["encryption"].as_str().unwrap()),
            "{name}: encryption"
        );
        let pab = doc["publicAccessBlock"]
            .as_bool()
            .unwrap()
            .then_some([Some(true); 4]);
        assert_eq!(self.public_access_block, pab, "{name}: public access block");
        assert_eq!(
            self.tls_statement().is_some(),
            doc["tlsOnly"].as_bool().unwrap(),
            "{name}: tlsOnly, policy {:?}",
            self.policy
        );
        let tags: BTreeMap<String, String> = serde_json::from_value(doc["tags"].clone()).unwrap();
        assert_eq!(self.tags, tags, "{name}: tags");
        let rules: Vec<Rule> = doc["lifecycle"]
            .as_array()
            .unwrap()
            .iter()
            .map(Rule::from_doc)
            .collect();
        let mut live = self.lifecycle.clone();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        let mut rules = rules;
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(live, rules, "{name}: lifecycle");
    }
}

async fn read_bucket(bucket: &str, region: &str) -> BucketReadBack {
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let s3 = moto::s3(region).await;
    let location = s3
        .get_bucket_location()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let versioning = s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let encryption = s3.get_bucket_encryption().bucket(bucket).send().await.ok();
    let public_access_block = match s3.get_public_access_block().bucket(bucket).send().await {
        Ok(out) => {
            let pab = out.public_access_block_configuration().unwrap();
            Some([
                pab.block_public_acls(),
                pab.ignore_public_acls(),
                pab.block_public_policy(),
                pab.restrict_public_buckets(),
            ])
        }
        Err(e) => {
            assert_eq!(
                e.code(),
                Some("NoSuchPublicAccessBlockConfiguration"),
                "{e:?}"
            );
            None
        }
    };
    let tags = match s3.get_bucket_tagging().bucket(bucket).send().await {
        Ok(out) => out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect(),
        Err(e) => {
            assert_eq!(e.code(), Some("NoSuchTagSet"), "{e:?}");
            BTreeMap::new()
        }
    };
    let policy = match s3.get_bucket_policy().bucket(bucket).send().await {
        Ok(out) => Some(serde_json::from_str(out.policy().unwrap()).unwrap()),
        Err(e) => {
            assert_eq!(e.code(), Some("NoSuchBucketPolicy"), "{e:?}");
            None
        }
    };
    let lifecycle = match s3
        .get_bucket_lifecycle_configuration()
        .bucket(bucket)
        .send()
        .await
    {
        Ok(out) => out
            .rules()
            .iter()
            .map(|r| {
                let t = r.transitions().first();
                Rule {
                    id: r.id().unwrap_or_default().to_owned(),
                    enabled: r.status().as_str() == "Enabled",
                    prefix: r
                        .filter()
                        .and_then(|f| f.prefix())
                        .filter(|p| !p.is_empty())
                        .map(str::to_owned),
                    archive: t.map(|t| {
                        (
                            t.days().unwrap(),
                            t.storage_class().unwrap().as_str().to_owned(),
                        )
                    }),
                    expire: r.expiration().and_then(|e| e.days()),
                    noncurrent: r
                        .noncurrent_version_expiration()
                        .and_then(|e| e.noncurrent_days()),
                }
            })
            .collect(),
        Err(e) => {
            assert_eq!(e.code(), Some("NoSuchLifecycleConfiguration"), "{e:?}");
            Vec::new()
        }
    };
    BucketReadBack {
        location: location
            .location_constraint()
            .map(|l| l.as_str().to_owned())
            .filter(|l| !l.is_empty()),
        versioning: versioning.status().map(|s| s.as_str().to_owned()),
        encryption: encryption
            .as_ref()
            .and_then(|e| e.server_side_encryption_configuration())
            .and_then(|c| c.rules().first())
            .and_then(|r| r.apply_server_side_encryption_by_default())
            .map(|d| d.sse_algorithm().as_str().to_owned()),
        public_access_block,
        tags,
        policy,
        lifecycle,
    }
}

async fn bucket_exists(bucket: &str) -> bool {
    moto::s3("us-east-1")
        .await
        .head_bucket()
        .bucket(bucket)
        .send()
        .await
        .is_ok()
}

/// IAM answers policy documents URL-encoded (RFC 3986); moto may not. Decoded here
/// without strata's own helper, so a bug there cannot hide.
fn decode_document(raw: &str) -> Value {
    if let Ok(doc) = serde_json::from_str(raw) {
        return doc;
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = raw
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("policy document {raw}: {e}"))
}

/// The default version's document of a managed policy, and the policy's tags.
async fn live_policy(arn: &str) -> (Value, BTreeMap<String, String>) {
    let iam = moto::iam().await;
    let policy = iam.get_policy().policy_arn(arn).send().await.unwrap();
    let version = policy
        .policy()
        .unwrap()
        .default_version_id()
        .unwrap()
        .to_owned();
    let doc = iam
        .get_policy_version()
        .policy_arn(arn)
        .version_id(version)
        .send()
        .await
        .unwrap();
    let tags = iam
        .list_policy_tags()
        .policy_arn(arn)
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    (
        decode_document(doc.policy_version().unwrap().document().unwrap()),
        tags,
    )
}

async fn policy_document(arn: &str) -> Value {
    live_policy(arn).await.0
}

async fn policy_exists(arn: &str) -> bool {
    moto::iam()
        .await
        .get_policy()
        .policy_arn(arn)
        .send()
        .await
        .is_ok()
}

/// A role as IAM holds it: its trust document (decoded here, see [`decode_document`]),
/// the ARNs of its attached policies and its tags; `None` when there is no such role.
async fn live_role(name: &str) -> Option<(Value, Vec<String>, BTreeMap<String, String>)> {
    let iam = moto::iam().await;
    let role = iam.get_role().role_name(name).send().await.ok()?;
    let trust = decode_document(role.role().unwrap().assume_role_policy_document().unwrap());
    let attached = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .unwrap()
        .attached_policies()
        .iter()
        .map(|p| p.policy_arn().unwrap().to_owned())
        .collect();
    let tags = iam
        .list_role_tags()
        .role_name(name)
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    Some((trust, attached, tags))
}

/// The tags strata puts on the IAM policies and roles of the example's `<env>-aws`.
fn iam_tags(env: &str) -> BTreeMap<String, String> {
    tag_map(&[
        ("cost-center", "analytics"),
        ("managed-by", "strata"),
        ("owner", "data-platform"),
        ("strata-env", env),
        ("strata-target", &format!("{env}-aws")),
    ])
}

/// The fields a role's plan sets when it creates it: the trust policy, the workload's
/// policy attached, the ownership tags.
/// What the first apply of dev-aws writes to its bucket, in order (the evidence's
/// `fields`; the tags came with the create).
const BUCKET_CREATE_FIELDS: &[&str] = &[
    "bucket",
    "tags.cost-center",
    "tags.data-classification",
    "tags.managed-by",
    "tags.owner",
    "tags.strata-env",
    "tags.strata-target",
    "versioning",
    "encryption",
    "publicAccessBlock",
    "tlsOnly",
];

const ROLE_CREATE_FIELDS: &[&str] = &[
    "trust",
    "attach",
    "tags.cost-center",
    "tags.managed-by",
    "tags.owner",
    "tags.strata-env",
    "tags.strata-target",
];

/// The fields the evidence lists for a created role, in the order they were written:
/// CreateRole (trust and tags), then AttachRolePolicy.
const ROLE_CREATED_FIELDS: &[&str] = &[
    "trust",
    "tags.cost-center",
    "tags.managed-by",
    "tags.owner",
    "tags.strata-env",
    "tags.strata-target",
    "attach",
];

/// The Pod Identity associations the stand-in holds: (cluster, namespace, service
/// account, role ARN).
fn associations(standin: &Standin) -> Vec<(String, String, String, String)> {
    let mut list: Vec<_> = standin.state()["associations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap().to_owned();
            (
                s("clusterName"),
                s("namespace"),
                s("serviceAccount"),
                s("roleArn"),
            )
        })
        .collect();
    list.sort();
    list
}

/// The tags strata puts on every resource of the example's `<env>-aws` target.
fn lakehouse_tags(env: &str, classification: &str) -> BTreeMap<String, String> {
    tag_map(&[
        ("cost-center", "analytics"),
        ("data-classification", classification),
        ("managed-by", "strata"),
        ("owner", "data-platform"),
        ("strata-env", env),
        ("strata-target", &format!("{env}-aws")),
    ])
}

/// The plan of dev-aws in a fresh account (the OIDC provider planted by the test).
const FRESH_PLAN: &[(&str, &str)] = &[
    ("s3_bucket", "create"),
    ("iam_policy", "create"),
    ("iam_oidc_provider", "unchanged"),
    ("iam_role", "create"),
];

/// The writes the server saw, each as `METHOD /path?query` (S3) or the action (IAM).
fn write_calls(proxy: &RecordingProxy) -> Vec<String> {
    proxy
        .writes()
        .into_iter()
        .map(|r| match r.action {
            Some(action) => action,
            None if r.query.is_empty() => format!("{} {}", r.method, r.path),
            None => format!("{} {}?{}", r.method, r.path, r.query),
        })
        .collect()
}

#[test]
fn first_apply_creates_everything_and_the_second_writes_nothing() {
    let p = Project::new("first");
    let bucket = p.bucket("dev");
    let role = p.policy_name("dev");
    let proxy = RecordingProxy::start(moto::url());
    let plan = p.json_at(&proxy.url, &["plan", "dev-aws"], 1);
    assert_eq!(plan["account"], moto::ACCOUNT);
    assert_eq!(plan["region"], "eu-west-1");
    assert_eq!(
        names(&plan["actions"]),
        pairs(&[
            ("s3_bucket", &bucket),
            ("iam_policy", "Lakehouse-first-dev-api"),
            ("iam_oidc_provider", &p.provider_arn("dev")),
            ("iam_role", "Lakehouse-first-dev-api"),
        ])
    );
    assert_eq!(ops(&plan), pairs(FRESH_PLAN));
    assert_eq!(
        changed_fields(&plan, "iam_policy"),
        strings(&[
            "document",
            "tags.cost-center",
            "tags.managed-by",
            "tags.owner",
            "tags.strata-env",
            "tags.strata-target"
        ])
    );
    assert_eq!(
        changed_fields(&plan, "iam_role"),
        strings(ROLE_CREATE_FIELDS)
    );
    assert_eq!(write_calls(&proxy), [] as [String; 0], "plan wrote");
    assert!(!proxy.requests().is_empty(), "plan went through the proxy");
    assert!(!block_on(bucket_exists(&bucket)));
    assert!(block_on(live_role(&role)).is_none());
    // IRSA: plan read the cluster's issuer.
    let eks = p.clusters.as_ref().unwrap();
    assert_eq!(
        *eks.seen.lock().unwrap(),
        ["GET /clusters/lakehouse-dev HTTP/1.1"]
    );

    let evidence = p.json_at(&proxy.url, APPLY_DEV, 0);
    assert_eq!(
        write_calls(&proxy),
        [
            // The apply lock (src/engine/lock.rs), taken first and removed last.
            "CreatePolicy".to_owned(),
            // The ownership tags go with the create: no PutBucketTagging.
            format!("PUT /{bucket}/"),
            format!("PUT /{bucket}/?versioning"),
            format!("PUT /{bucket}/?encryption"),
            format!("PUT /{bucket}/?publicAccessBlock"),
            format!("PUT /{bucket}/?policy"),
            "CreatePolicy".to_owned(),
            "CreateRole".to_owned(),
            "AttachRolePolicy".to_owned(),
            "DeletePolicy".to_owned(),
        ],
        "what the server saw the first apply write"
    );
    assert_eq!(evidence["status"], "applied");
    assert_eq!(evidence["account"], moto::ACCOUNT);
    assert_eq!(evidence["region"], "eu-west-1");
    assert_eq!(
        outcomes(&evidence),
        pairs(&[
            ("s3_bucket", "created"),
            ("iam_policy", "created"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "created"),
        ])
    );
    assert_eq!(
        names(&evidence["resources"]),
        pairs(&[
            ("s3_bucket", &bucket),
            ("iam_policy", "Lakehouse-first-dev-api"),
            ("iam_oidc_provider", &p.provider_arn("dev")),
            ("iam_role", "Lakehouse-first-dev-api"),
        ])
    );
    let existed: Vec<&Value> = evidence["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["existed"])
        .collect();
    assert_eq!(existed, [false, false, true, false]);
    assert_eq!(
        evidence["resources"][0]["fields"],
        json!(BUCKET_CREATE_FIELDS)
    );
    assert_eq!(evidence["resources"][2]["fields"], json!([]));
    assert_eq!(
        evidence["resources"][3]["fields"],
        json!(ROLE_CREATED_FIELDS)
    );

    let live = block_on(read_bucket(&bucket, "eu-west-1"));
    assert_eq!(live.location.as_deref(), Some("eu-west-1"));
    assert_eq!(live.versioning.as_deref(), Some("Enabled"));
    assert_eq!(live.encryption.as_deref(), Some("AES256"));
    assert_eq!(live.public_access_block, Some([Some(true); 4]));
    assert_eq!(live.tags, lakehouse_tags("dev", "internal"));
    assert_eq!(
        live.policy,
        Some(json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "StrataDenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }]}))
    );
    assert_eq!(live.lifecycle, [], "dev has no lifecycle rule");
    live.assert_matches(&p.rendered("dev-aws", "buckets/data.json"));

    let (doc, tags) = block_on(live_policy(&p.policy_arn("dev")));
    assert_eq!(doc, p.rendered("dev-aws", "iam/api.policy.json"));
    assert_eq!(
        doc["Statement"][0]["Resource"],
        json!([format!("arn:aws:s3:::{bucket}")]),
        "the policy is about this test's bucket"
    );
    assert_eq!(tags, iam_tags("dev"));

    // The role: the rendered trust policy (IRSA: this cluster's provider, this
    // service account), the workload's policy attached, the same tags.
    let (trust, attached, tags) = block_on(live_role(&role)).expect("the role exists");
    assert_eq!(trust, p.rendered("dev-aws", "iam/api.trust.json"));
    assert_eq!(
        trust["Statement"][0]["Principal"]["Federated"],
        p.provider_arn("dev")
    );
    let host = issuer("first", "dev").replace("https://", "");
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"][format!("{host}:sub")],
        "system:serviceaccount:lakehouse:lakehouse-api"
    );
    assert_eq!(attached, [p.policy_arn("dev")]);
    assert_eq!(tags, iam_tags("dev"));

    // The second apply, through the proxy: reads only.
    proxy.clear();
    let again = p.json_at(&proxy.url, APPLY_DEV, 0);
    assert_eq!(
        outcomes(&again),
        pairs(&[
            ("s3_bucket", "unchanged"),
            ("iam_policy", "unchanged"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "unchanged"),
        ])
    );
    assert!(
        again["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["existed"] == true && r["fields"] == json!([]))
    );
    assert_eq!(
        write_calls(&proxy),
        [] as [String; 0],
        "the second apply wrote"
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.method == "HEAD" && r.path == format!("/{bucket}/")),
        "the second apply read the bucket through the proxy: {:#?}",
        proxy.requests()
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.action.as_deref() == Some("GetRole")),
        "the second apply read the role through the proxy: {:#?}",
        proxy.requests()
    );
    let plan = p.json(&["plan", "dev-aws"], 0);
    assert_eq!(
        ops(&plan),
        pairs(&[
            ("s3_bucket", "unchanged"),
            ("iam_policy", "unchanged"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "unchanged"),
        ])
    );
}

#[test]
fn us_east_1_bucket_has_no_location_constraint_and_gets_the_archive_rule() {
    let p = Project::new("useast");
    let evidence = p.json(&["apply", "prod-aws", "--approve", "--skip-helm"], 0);
    assert_eq!(evidence["region"], "us-east-1");
    // prod uses EKS Pod Identity: the role, then its association (in the stand-in).
    assert_eq!(
        outcomes(&evidence),
        pairs(&[
            ("s3_bucket", "created"),
            ("iam_policy", "created"),
            ("iam_role", "created"),
            ("eks_pod_identity_association", "created"),
        ])
    );
    assert_eq!(
        names(&evidence["resources"])[3],
        (
            "eks_pod_identity_association".to_owned(),
            "lakehouse-prod/lakehouse/lakehouse-api".to_owned()
        )
    );
    assert_eq!(evidence["resources"][3]["fields"], json!(["roleArn"]));
    assert_eq!(
        p.pod_identity().writes(),
        ["CreatePodIdentityAssociation /clusters/lakehouse-prod/pod-identity-associations"]
    );
    assert_eq!(
        associations(p.pod_identity()),
        [(
            "lakehouse-prod".to_owned(),
            "lakehouse".to_owned(),
            "lakehouse-api".to_owned(),
            p.role_arn("prod")
        )]
    );
    let (trust, attached, tags) = block_on(live_role(&p.policy_name("prod"))).expect("role");
    assert_eq!(trust, p.rendered("prod-aws", "iam/api.trust.json"));
    assert_eq!(
        trust["Statement"][0]["Principal"],
        json!({"Service": "pods.eks.amazonaws.com"})
    );
    assert_eq!(attached, [p.policy_arn("prod")]);
    assert_eq!(tags, iam_tags("prod"));
    let live = block_on(read_bucket(&p.bucket("prod"), "us-east-1"));
    assert_eq!(
        live.location, None,
        "us-east-1 buckets report no LocationConstraint"
    );
    assert_eq!(
        live.lifecycle,
        [Rule {
            id: "strata-0-archive".into(),
            enabled: true,
            prefix: None,
            archive: Some((90, "GLACIER".into())),
            expire: None,
            noncurrent: None,
        }]
    );
    assert_eq!(live.tags, lakehouse_tags("prod", "confidential"));
    live.assert_matches(&p.rendered("prod-aws", "buckets/data.json"));
    let doc = block_on(policy_document(&p.policy_arn("prod")));
    assert_eq!(doc, p.rendered("prod-aws", "iam/api.policy.json"));
    // prod requires SSE: the policy denies unencrypted uploads.
    assert_eq!(doc["Statement"][2]["Sid"], "DenyUnencryptedUploadsData");
    assert_eq!(doc["Statement"][2]["Effect"], "Deny");
    let plan = p.json(&["plan", "prod-aws"], 0);
    assert_eq!(
        ops(&plan),
        pairs(&[
            ("s3_bucket", "unchanged"),
            ("iam_policy", "unchanged"),
            ("iam_role", "unchanged"),
            ("eks_pod_identity_association", "unchanged"),
        ])
    );
    assert_eq!(p.pod_identity().writes().len(), 1, "plan wrote to EKS");
}

#[test]
fn drift_shows_in_plan_and_apply_puts_it_back() {
    let p = Project::new("drift");
    p.json(&["apply", "prod-aws", "--approve", "--skip-helm"], 0);
    let bucket = p.bucket("prod");
    let arn = p.policy_arn("prod");
    block_on(async {
        use aws_sdk_s3::types::{BucketVersioningStatus, Tag, Tagging, VersioningConfiguration};
        let s3 = moto::s3("us-east-1").await;
        s3.put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Suspended)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        // strata's ownership tags stay right (without them the bucket is not strata's
        // to change, docs/apply.md, Ownership); the others go, a foreign tag appears.
        let managed = Tag::builder()
            .key("managed-by")
            .value("strata")
            .build()
            .unwrap();
        let owner = Tag::builder()
            .key("strata-target")
            .value("prod-aws")
            .build()
            .unwrap();
        let foreign = Tag::builder()
            .key("team-note")
            .value("kept")
            .build()
            .unwrap();
        s3.put_bucket_tagging()
            .bucket(&bucket)
            .tagging(
                Tagging::builder()
                    .tag_set(managed)
                    .tag_set(owner)
                    .tag_set(foreign)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        s3.delete_bucket_policy()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        s3.delete_bucket_lifecycle()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        s3.delete_public_access_block()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        let edited = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]});
        moto::iam()
            .await
            .create_policy_version()
            .policy_arn(&arn)
            .policy_document(edited.to_string())
            .set_as_default(true)
            .send()
            .await
            .unwrap();
        // And someone detaches the policy from the role.
        moto::iam()
            .await
            .detach_role_policy()
            .role_name(p.policy_name("prod"))
            .policy_arn(&arn)
            .send()
            .await
            .unwrap();
    });
    let eks_writes = p.pod_identity().writes();
    assert_eq!(eks_writes.len(), 1, "the first apply associated the role");
    let plan = p.json(&["plan", "prod-aws"], 1);
    assert_eq!(
        ops(&plan),
        pairs(&[
            ("s3_bucket", "update"),
            ("iam_policy", "update"),
            ("iam_role", "update"),
            ("eks_pod_identity_association", "unchanged"),
        ])
    );
    assert_eq!(
        changed_fields(&plan, "s3_bucket"),
        strings(&[
            "versioning",
            "publicAccessBlock",
            "lifecycle",
            "tlsOnly",
            "tags.cost-center",
            "tags.data-classification",
            "tags.owner",
            "tags.strata-env",
        ]),
        "managed-by and strata-target are still right, team-note is not strata's"
    );
    assert_eq!(changed_fields(&plan, "iam_policy"), ["document"]);
    assert_eq!(changed_fields(&plan, "iam_role"), ["attach"]);
    assert_eq!(
        (
            &plan["actions"][2]["changes"][0]["from"],
            &plan["actions"][2]["changes"][0]["to"]
        ),
        (&json!([]), &json!(arn))
    );
    let changes = plan["actions"][0]["changes"].as_array().unwrap();
    let change = |field: &str| {
        let c = changes.iter().find(|c| c["field"] == field).unwrap();
        (c["from"].clone(), c["to"].clone())
    };
    assert_eq!(change("versioning"), (json!(false), json!(true)));
    assert_eq!(
        change("lifecycle"),
        (
            json!([]),
            json!([{"id": "strata-0-archive", "afterDays": 90, "storageClass": "GLACIER"}])
        )
    );
    assert_eq!(change("tags.strata-env"), (Value::Null, json!("prod")));

    let text_plan = p.run(&["plan", "prod-aws"]);
    assert_eq!(text_plan.status.code(), Some(1));
    assert!(
        text(&text_plan.stdout).contains("versioning: false → true"),
        "{}",
        text(&text_plan.stdout)
    );

    let evidence = p.json(&["apply", "prod-aws", "--approve", "--skip-helm"], 0);
    assert_eq!(
        outcomes(&evidence),
        pairs(&[
            ("s3_bucket", "updated"),
            ("iam_policy", "updated"),
            ("iam_role", "updated"),
            ("eks_pod_identity_association", "unchanged"),
        ])
    );
    assert_eq!(evidence["resources"][1]["fields"], json!(["document"]));
    assert_eq!(evidence["resources"][2]["fields"], json!(["attach"]));
    let (_, attached, _) = block_on(live_role(&p.policy_name("prod"))).expect("role");
    assert_eq!(attached, std::slice::from_ref(&arn));
    assert_eq!(
        p.pod_identity().writes(),
        eks_writes,
        "the association stood"
    );
    let live = block_on(read_bucket(&bucket, "us-east-1"));
    live.assert_matches_with_foreign_tag(&p.rendered("prod-aws", "buckets/data.json"));
    assert_eq!(
        block_on(policy_document(&arn)),
        p.rendered("prod-aws", "iam/api.policy.json")
    );
    p.json(&["plan", "prod-aws"], 0);
}

impl BucketReadBack {
    /// [`Self::assert_matches`], with the drift test's foreign tag still there.
    fn assert_matches_with_foreign_tag(mut self, doc: &Value) {
        assert_eq!(
            self.tags.remove("team-note").as_deref(),
            Some("kept"),
            "tags strata does not manage stay"
        );
        self.assert_matches(doc);
    }
}

#[test]
fn wrong_account_stops_before_anything_is_read_or_written() {
    let p = Project::with_account("wrongacct", "999999999999");
    let proxy = RecordingProxy::start(moto::url());
    for args in [&["plan", "dev-aws"][..], APPLY_DEV] {
        let out = p.run_at(&proxy.url, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("deploys to AWS account 999999999999")
                && err.contains("belong to account 123456789012"),
            "{err}"
        );
    }
    let evidence = p.json_at(&proxy.url, APPLY_DEV, 2);
    assert_eq!(evidence["status"], "failed");
    assert_eq!(evidence["resources"], json!([]));
    assert!(
        evidence["error"]
            .as_str()
            .unwrap()
            .contains("belong to account 123456789012")
    );
    // What the server saw: the identity check, and nothing else.
    let actions: Vec<Option<String>> = proxy.requests().into_iter().map(|r| r.action).collect();
    assert!(
        !actions.is_empty()
            && actions
                .iter()
                .all(|a| a.as_deref() == Some("GetCallerIdentity")),
        "{:#?}",
        proxy.requests()
    );
    assert!(!block_on(bucket_exists(&p.bucket("dev"))));
}

#[test]
fn apply_without_approve_only_shows_the_plan() {
    let p = Project::new("noapprove");
    let proxy = RecordingProxy::start(moto::url());
    let out = p.json_at(&proxy.url, &["apply", "staging-aws"], 0);
    assert_eq!(out["status"], "needs_approval");
    assert_eq!(
        ops(&out["plan"]),
        pairs(&[
            ("s3_bucket", "create"),
            ("iam_policy", "create"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "create"),
        ])
    );
    assert_eq!(
        write_calls(&proxy),
        [] as [String; 0],
        "nothing may be written without --approve"
    );
    assert!(!block_on(bucket_exists(&p.bucket("staging"))));
    assert!(!block_on(policy_exists(&p.policy_arn("staging"))));
    assert!(block_on(live_role(&p.policy_name("staging"))).is_none());
}

#[test]
fn policy_version_limit_prunes_the_oldest_non_default_version() {
    let p = Project::new("versions");
    p.json(APPLY_DEV, 0);
    let arn = p.policy_arn("dev");
    // Four more versions (five in all, IAM's limit); the last one, edited, is default.
    block_on(async {
        let iam = moto::iam().await;
        for i in 0..4 {
            let doc = json!({"Version": "2012-10-17", "Statement": [{"Sid": format!("V{i}"), "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]});
            iam.create_policy_version()
                .policy_arn(&arn)
                .policy_document(doc.to_string())
                .set_as_default(i == 3)
                .send()
                .await
                .unwrap();
        }
    });
    let plan = p.json(&["plan", "dev-aws"], 1);
    assert_eq!(changed_fields(&plan, "iam_policy"), ["document"]);
    let evidence = p.json(APPLY_DEV, 0);
    assert_eq!(
        outcomes(&evidence),
        pairs(&[
            ("s3_bucket", "unchanged"),
            ("iam_policy", "updated"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "unchanged"),
        ])
    );
    let versions = block_on(async {
        let out = moto::iam()
            .await
            .list_policy_versions()
            .policy_arn(&arn)
            .send()
            .await
            .unwrap();
        let mut ids: Vec<(String, bool)> = out
            .versions()
            .iter()
            .map(|v| (v.version_id().unwrap().to_owned(), v.is_default_version()))
            .collect();
        ids.sort();
        ids
    });
    assert_eq!(
        versions,
        [
            ("v2".to_owned(), false),
            ("v3".to_owned(), false),
            ("v4".to_owned(), false),
            ("v5".to_owned(), false),
            ("v6".to_owned(), true)
        ],
        "v1, the oldest non-default, is pruned; the new one is default"
    );
    assert_eq!(
        block_on(policy_document(&arn)),
        p.rendered("dev-aws", "iam/api.policy.json")
    );
}

#[test]
fn two_applies_at_once_both_finish_with_one_state() {
    // Both start at once; one takes the apply lock, the other waits for it (up to a
    // minute) and then finds the work done, or takes the lock first itself.
    let p = Project::new("race");
    let args = [
        "--format",
        "json",
        "apply",
        "staging-aws",
        "--approve",
        "--skip-helm",
    ];
    let spawn = || {
        p.command(&args)
            .env("STRATA_LOCK_WAIT", "60")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        let evidence = parse(&out, &args, 0);
        assert_eq!(evidence["status"], "applied");
    }
    let plan = p.json(&["plan", "staging-aws"], 0);
    assert_eq!(
        ops(&plan),
        pairs(&[
            ("s3_bucket", "unchanged"),
            ("iam_policy", "unchanged"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "unchanged"),
        ])
    );
    // One role, with the policy attached once and the rendered trust policy.
    let (trust, attached, tags) = block_on(live_role(&p.policy_name("staging"))).expect("role");
    assert_eq!(trust, p.rendered("staging-aws", "iam/api.trust.json"));
    assert_eq!(attached, [p.policy_arn("staging")]);
    assert_eq!(tags, iam_tags("staging"));
    let versions = block_on(async {
        moto::iam()
            .await
            .list_policy_versions()
            .policy_arn(p.policy_arn("staging"))
            .send()
            .await
            .unwrap()
            .versions()
            .len()
    });
    assert_eq!(versions, 1);
}

/// A stand-in for helm that records its argv and, for `upgrade --install`, renders the
/// chart with Helm's own engine (tests/py/helm_render.py) into `rendered-<release>.yaml`.
fn fake_helm(p: &Project) -> (PathBuf, PathBuf) {
    let venv = support::venv_bin();
    let record = p.path().join("helm-argv.txt");
    let helm = p.path().join("fake-helm.sh");
    let empty = p.path().join("empty-values.yaml");
    std::fs::write(&empty, "{}\n").unwrap();
    let script = format!(
        r#"#!/bin/sh
printf '%s\n' "$*" >> '{record}'
[ "$1" = upgrade ] && [ "$2" = --install ] || exit 0
release="$3"; chart="$4"; values='{empty}'; ns=""
while [ $# -gt 0 ]; do
  case "$1" in
    --values) values="$2"; shift ;;
    --namespace) ns="$2"; shift ;;
  esac
  shift
done
exec '{python}' '{render}' "$chart" "$values" "$ns" "$(dirname '{record}')/rendered-$release.yaml" --release "$release"
"#,
        record = record.display(),
        empty = empty.display(),
        python = venv.join("python").display(),
        render = support::repo_root()
            .join("tests/py/helm_render.py")
            .display(),
    );
    std::fs::write(&helm, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helm, std::fs::Permissions::from_mode(0o755)).unwrap();
    (helm, record)
}

#[test]
fn helm_runs_the_platform_chart_then_each_release_with_the_exact_argv_after_the_cloud_step() {
    let p = Project::new("helm");
    // The release's own timeout reaches its install; the platform keeps 5m.
    p.append(
        "environments/dev.aws.yaml",
        "releases:\n  app:\n    timeout: 10m\n",
    );
    let (helm, record) = fake_helm(&p);
    let out = p
        .command(&["--format", "json", "apply", "dev-aws", "--approve"])
        .env("STRATA_HELM", &helm)
        .output()
        .unwrap();
    let evidence = parse(&out, &["apply"], 0);
    assert_eq!(
        outcomes(&evidence),
        pairs(&[
            ("s3_bucket", "created"),
            ("iam_policy", "created"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "created"),
        ])
    );
    let root = p.path().canonicalize().unwrap();
    let out_dir = p.path().join("out/dev-aws");
    let ctx = format!(
        "arn:aws:eks:eu-west-1:{}:cluster/lakehouse-dev",
        moto::ACCOUNT
    );
    // The platform chart makes the (labelled) namespaces, so its release lives in
    // `default` (kube.createNamespace is true by default).
    let platform = format!(
        "upgrade --install lakehouse-platform {} --namespace default --kube-context {ctx} --wait --rollback-on-failure --timeout 5m",
        out_dir.join("platform").display()
    );
    let app = format!(
        "upgrade --install app {} --namespace lakehouse --kube-context {ctx} --wait --rollback-on-failure --timeout 10m --values {}",
        root.join("charts/app").display(),
        out_dir.join("releases/app.values.yaml").display()
    );
    // Before any cloud write, apply made sure helm runs (`version --short`); the
    // installs came after the cloud step.
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        format!("version --short\n{platform}\n{app}\n")
    );
    let runs = evidence["helm"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r["exitCode"] == 0), "{runs:#?}");
    let argv = |i: usize| -> String {
        let list: Vec<&str> = runs[i]["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        list.join(" ")
    };
    assert_eq!(argv(0), format!("{} {platform}", helm.display()));
    assert_eq!(argv(1), format!("{} {app}", helm.display()));
    // Helm's engine rendered both charts from what strata wrote before running helm.
    let platform_yaml =
        std::fs::read_to_string(p.path().join("rendered-lakehouse-platform.yaml")).unwrap();
    assert!(
        platform_yaml.contains("name: lakehouse-api")
            && platform_yaml.contains(&format!(
                "eks.amazonaws.com/role-arn: arn:aws:iam::{}:role/Lakehouse-helm-dev-api",
                moto::ACCOUNT
            )),
        "{platform_yaml}"
    );
    let app_yaml = std::fs::read_to_string(p.path().join("rendered-app.yaml")).unwrap();
    assert!(app_yaml.contains(&p.bucket("dev")), "{app_yaml}");
}

/// A missing helm is found before the first cloud call: nothing is read or written,
/// so no target is left half-applied (the cloud done, helm not).
#[test]
fn missing_helm_is_refused_before_any_cloud_write() {
    let p = Project::new("nohelm");
    let proxy = RecordingProxy::start(moto::url());
    // command_at() points STRATA_HELM at a file that does not exist.
    let out = p.run_at(
        &proxy.url,
        &["--format", "json", "apply", "dev-aws", "--approve"],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: helm could not be run as `{}` (No such file or directory (os error 2)); nothing was written\n  \
             hint: install helm v4 (or set STRATA_HELM to its path), or pass --skip-helm to apply the cloud resources only\n",
            p.path().join("no-such-helm").display()
        )
    );
    assert_eq!(
        proxy.requests(),
        [],
        "not even the account check: helm is checked first"
    );
    assert!(p.clusters.as_ref().unwrap().seen.lock().unwrap().is_empty());
    assert!(!block_on(bucket_exists(&p.bucket("dev"))));
    assert!(!block_on(policy_exists(&p.policy_arn("dev"))));
    assert!(block_on(live_role(&p.policy_name("dev"))).is_none());
    assert!(
        !p.path().join("out/dev-aws").exists(),
        "nothing of the render is written either"
    );
}

/// A minimal HTTP server on 127.0.0.1 for what moto does not serve: `answer` gets the
/// request line and gives the whole response; each connection gets one answer and is
/// closed. Returns the server's URL.
fn loopback_server(answer: impl Fn(&str) -> String + Send + 'static) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    support::assert_loopback(&url);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut first = String::new();
            let mut length = 0usize;
            if reader.read_line(&mut first).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let response = answer(first.trim_end());
            let mut stream = reader.into_inner();
            let _ = stream.write_all(response.as_bytes());
        }
    });
    url
}

/// An HTTP response with a body and `Connection: close`.
fn http_response(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// EKS as the IRSA targets need it: DescribeCluster answers each of `clusters` (name →
/// OIDC issuer), anything else is EKS's ResourceNotFoundException. `seen` holds the
/// request lines, in order.
struct Eks {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

fn eks_clusters(clusters: BTreeMap<String, String>) -> Eks {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let url = loopback_server(move |request| {
        log.lock().unwrap().push(request.to_owned());
        let name = request
            .strip_prefix("GET /clusters/")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_default();
        match clusters.get(name) {
            Some(issuer) => {
                let body = json!({"cluster": {
                    "name": name,
                    "arn": format!("arn:aws:eks:eu-west-1:{}:cluster/{name}", moto::ACCOUNT),
                    "status": "ACTIVE",
                    "identity": {"oidc": {"issuer": issuer}},
                }});
                http_response(
                    "200 OK",
                    "Content-Type: application/json\r\n",
                    &body.to_string(),
                )
            }
            None => http_response(
                "404 Not Found",
                "Content-Type: application/json\r\nx-amzn-ErrorType: ResourceNotFoundException\r\n",
                &json!({"message": format!("No cluster found for name: {name}.")}).to_string(),
            ),
        }
    });
    Eks { url, seen }
}

/// moto answers HeadBucket with 200 for a bucket of another account (and ignores
/// ExpectedBucketOwner), so the 403 that real S3 gives is served here by a minimal
/// loopback stand-in: STS says account 123456789012, every HEAD is 403 Forbidden.
fn forbidding_endpoint() -> String {
    loopback_server(|request| {
        if request.starts_with("HEAD") {
            http_response("403 Forbidden", "", "")
        } else {
            let xml = format!(
                "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult>\
                 <Arn>arn:aws:iam::{0}:user/test</Arn><UserId>TEST</UserId><Account>{0}</Account></GetCallerIdentityResult>\
                 <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
                moto::ACCOUNT
            );
            http_response("200 OK", "Content-Type: text/xml\r\n", &xml)
        }
    })
}

#[test]
fn bucket_of_another_account_is_reported_as_such() {
    let p = Project::new("foreign");
    let url = forbidding_endpoint();
    for args in [&["plan", "dev-aws"][..], APPLY_DEV] {
        let out = p.run_at(&url, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "s3 bucket {}: HeadBucket: 403 Forbidden",
                p.bucket("dev")
            )) && err.contains("belongs to another AWS account"),
            "{err}"
        );
    }
}

#[test]
fn a_failure_partway_exits_2_with_evidence_and_the_next_apply_converges() {
    let p = Project::new("partway");
    let bucket = p.bucket("dev");
    // A helm that runs, so that apply gets past its helm check to the cloud step.
    let (helm, record) = fake_helm(&p);
    // Every PutBucketPolicy fails with 500, after the SDK's own retries: the bucket is
    // made and tagged as strata's (tags come right after the create), then it stops.
    let proxy = FaultyProxy::start(moto::url(), &format!("PUT /{bucket}/?policy"), 500, None);
    let out = p
        .command_at(
            &proxy.url,
            &["--format", "json", "apply", "dev-aws", "--approve"],
        )
        .env("STRATA_HELM", &helm)
        .output()
        .unwrap();
    let evidence = parse(&out, &["apply"], 2);
    assert_eq!(evidence["status"], "failed");
    assert_eq!(
        outcomes(&evidence),
        pairs(&[("s3_bucket", "failed")]),
        "the policy and the identity chain are not attempted after the bucket failed"
    );
    assert_eq!(
        evidence["resources"][0]["fields"],
        json!(BUCKET_CREATE_FIELDS[..BUCKET_CREATE_FIELDS.len() - 1]),
        "what was written before the failure is listed"
    );
    assert_eq!(
        evidence["helm"],
        json!([]),
        "helm does not run after a failure"
    );
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "version --short\n",
        "helm was checked before the cloud step, and not run after it failed"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("s3 bucket {bucket}: PutBucketPolicy:")),
        "{stderr}"
    );
    drop(proxy);

    // The cloud is half-done, and the next plan says what is left: the bucket is
    // strata's (tagged), only its TLS-only policy is missing.
    let plan = p.json(&["plan", "dev-aws"], 1);
    assert_eq!(
        ops(&plan),
        pairs(&[
            ("s3_bucket", "update"),
            ("iam_policy", "create"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "create"),
        ])
    );
    assert_eq!(changed_fields(&plan, "s3_bucket"), strings(&["tlsOnly"]));
    let evidence = p.json(APPLY_DEV, 0);
    assert_eq!(
        outcomes(&evidence),
        pairs(&[
            ("s3_bucket", "updated"),
            ("iam_policy", "created"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "created"),
        ])
    );
    p.json(&["plan", "dev-aws"], 0);
    block_on(read_bucket(&bucket, "eu-west-1"))
        .assert_matches(&p.rendered("dev-aws", "buckets/data.json"));
}

/// A server that drops CreateBucket's tags (moto as shipped: the test's moto does so
/// for a bucket named `…drops-tags…`) gets them right after the create. When that
/// tagging fails, apply deletes the (empty) bucket again and says so, so the next run
/// creates it afresh rather than refusing an untagged bucket as someone else's.
#[test]
fn a_new_bucket_that_cannot_be_tagged_is_deleted_again_and_the_next_apply_creates_it() {
    let p = Project::new("drops-tags");
    let bucket = p.bucket("dev");
    let proxy = FaultyProxy::start(moto::url(), &format!("PUT /{bucket}/?tagging"), 500, None);
    let out = p
        .command_at(&proxy.url, &["--format", "json"])
        .args(APPLY_DEV)
        .output()
        .unwrap();
    let evidence = parse(&out, &["apply"], 2);
    assert_eq!(outcomes(&evidence), pairs(&[("s3_bucket", "failed")]));
    assert_eq!(
        evidence["resources"][0]["fields"],
        json!([]),
        "nothing is left of what was written"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("s3 bucket {bucket}: PutBucketTagging:"))
            && stderr.contains("strata deleted the bucket it had just created"),
        "{stderr}"
    );
    drop(proxy);
    assert!(
        !block_on(bucket_exists(&bucket)),
        "the untagged bucket is gone"
    );
    let plan = p.json(&["plan", "dev-aws"], 1);
    assert_eq!(ops(&plan)[0], ("s3_bucket".to_owned(), "create".to_owned()));
    p.json(APPLY_DEV, 0);
    p.json(&["plan", "dev-aws"], 0);
}

#[test]
fn throttling_is_retried_by_the_sdk_and_a_stopped_server_is_a_clear_error() {
    let p = Project::new("throttle");
    // Two throttled CreatePolicy answers: the SDK's standard retries absorb them.
    // (The pattern names strata's policies, not the apply lock's `strata-lock-…`.)
    let create_policy = "Action=CreatePolicy&Version=2010-05-08&PolicyName=Lakehouse";
    let proxy = FaultyProxy::start(moto::url(), create_policy, 400, Some(2));
    let evidence = p.json_at(&proxy.url, APPLY_DEV, 0);
    assert_eq!(
        outcomes(&evidence),
        pairs(&[
            ("s3_bucket", "created"),
            ("iam_policy", "created"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "created"),
        ])
    );
    drop(proxy);

    // Throttled for good: after the SDK's retries, a clear error naming the policy and
    // the action, and evidence that the bucket was done.
    let proxy = FaultyProxy::start(moto::url(), create_policy, 400, None);
    let out = p.run_at(
        &proxy.url,
        &[
            "--format",
            "json",
            "apply",
            "staging-aws",
            "--approve",
            "--skip-helm",
        ],
    );
    let evidence = parse(&out, &["apply staging-aws"], 2);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "iam policy {}: CreatePolicy: Throttling",
            p.policy_arn("staging")
        )),
        "{stderr}"
    );
    assert_eq!(
        outcomes(&evidence),
        pairs(&[("s3_bucket", "created"), ("iam_policy", "failed")]),
        "{evidence:#}"
    );
    assert!(
        block_on(live_role(&p.policy_name("staging"))).is_none(),
        "no role after its policy failed"
    );
    drop(proxy);

    // Nothing listens on this port any more: exit 2, nothing claimed as done.
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let out = p.run_at(
        &dead,
        &[
            "--format",
            "json",
            "apply",
            "prod-aws",
            "--approve",
            "--skip-helm",
        ],
    );
    let evidence = parse(&out, &["apply prod-aws"], 2);
    assert_eq!(evidence["status"], "failed");
    assert_eq!(evidence["resources"], json!([]), "{evidence:#}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("sts: GetCallerIdentity:"), "{stderr}");
}

#[test]
fn missing_credentials_are_a_readable_error_with_a_hint() {
    let p = Project::new("nocreds");
    let out = p
        .command(&["plan", "dev-aws"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("sts: GetCallerIdentity:"), "{stderr}");
    assert!(
        stderr.contains("hint: give strata AWS credentials"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("DispatchFailure"),
        "no Debug dumps: {stderr}"
    );
}

/// The fixture `tests/fixtures/cloud/two-buckets`: buckets `raw` and `curated` with
/// different settings, workloads `ingest` and `reporting` with different access, each
/// with its role and its EKS Pod Identity association on cluster `strata-it`.
#[test]
fn two_buckets_and_two_workloads_are_applied_from_their_rendered_documents() {
    let p = Project::fixture("two-buckets", "two", &["strata-it"]);
    let raw = format!("strata-it-two-dev-raw-{}", moto::ACCOUNT);
    let curated = format!("strata-it-two-dev-curated-{}", moto::ACCOUNT);
    let policy = |w: &str| {
        format!(
            "arn:aws:iam::{}:policy/strata-it-two-dev-{w}",
            moto::ACCOUNT
        )
    };

    let proxy = RecordingProxy::start(moto::url());
    let evidence = p.json_at(&proxy.url, APPLY_DEV, 0);
    assert_eq!(
        write_calls(&proxy),
        [
            "CreatePolicy".to_owned(), // the apply lock
            format!("PUT /{raw}/"),    // with its tags
            format!("PUT /{raw}/?versioning"),
            format!("PUT /{raw}/?encryption"),
            format!("PUT /{raw}/?publicAccessBlock"),
            format!("PUT /{raw}/?lifecycle"),
            format!("PUT /{raw}/?policy"),
            format!("PUT /{curated}/"),
            format!("PUT /{curated}/?encryption"),
            format!("PUT /{curated}/?lifecycle"),
            "CreatePolicy".to_owned(),
            "CreatePolicy".to_owned(),
            "CreateRole".to_owned(),
            "AttachRolePolicy".to_owned(),
            "CreateRole".to_owned(),
            "AttachRolePolicy".to_owned(),
            "DeletePolicy".to_owned(), // the apply lock, removed
        ],
        "what the server saw the first apply write"
    );
    let associations_path = "/clusters/strata-it/pod-identity-associations";
    assert_eq!(
        p.pod_identity().writes(),
        [
            format!("CreatePodIdentityAssociation {associations_path}"),
            format!("CreatePodIdentityAssociation {associations_path}"),
        ],
        "what EKS saw the first apply write"
    );
    assert_eq!(
        names(&evidence["resources"]),
        pairs(&[
            ("s3_bucket", &raw),
            ("s3_bucket", &curated),
            ("iam_policy", "strata-it-two-dev-ingest"),
            ("iam_policy", "strata-it-two-dev-reporting"),
            ("iam_role", "strata-it-two-dev-ingest"),
            (
                "eks_pod_identity_association",
                "strata-it/strata-it-two/strata-it-two-ingest"
            ),
            ("iam_role", "strata-it-two-dev-reporting"),
            (
                "eks_pod_identity_association",
                "strata-it/strata-it-two/strata-it-two-reporting"
            ),
        ])
    );
    assert_eq!(
        outcomes(&evidence),
        pairs(&[
            ("s3_bucket", "created"),
            ("s3_bucket", "created"),
            ("iam_policy", "created"),
            ("iam_policy", "created"),
            ("iam_role", "created"),
            ("eks_pod_identity_association", "created"),
            ("iam_role", "created"),
            ("eks_pod_identity_association", "created"),
        ])
    );

    // Each bucket with its own settings, as rendered, and as the layers say.
    let live_raw = block_on(read_bucket(&raw, "eu-west-1"));
    live_raw.assert_matches(&p.rendered("dev-aws", "buckets/raw.json"));
    assert_eq!(live_raw.versioning.as_deref(), Some("Enabled"));
    assert_eq!(live_raw.public_access_block, Some([Some(true); 4]));
    assert!(live_raw.tls_statement().is_some());
    assert_eq!(
        live_raw.lifecycle,
        [
            Rule {
                id: "strata-0-archive".into(),
                enabled: true,
                prefix: None,
                archive: Some((30, "GLACIER".into())),
                expire: None,
                noncurrent: None,
            },
            Rule {
                id: "strata-1-expire".into(),
                enabled: true,
                prefix: Some("tmp/".into()),
                archive: None,
                expire: Some(7),
                noncurrent: None,
            },
        ]
    );
    let common = [
        ("managed-by", "strata"),
        ("owner", "it-team"),
        ("strata-env", "dev"),
        ("strata-target", "dev-aws"),
        ("suite", "cloud"),
    ];
    let mut want = tag_map(&common);
    want.insert("tier".into(), "raw".into());
    assert_eq!(live_raw.tags, want);

    let live_curated = block_on(read_bucket(&curated, "eu-west-1"));
    live_curated.assert_matches(&p.rendered("dev-aws", "buckets/curated.json"));
    assert_eq!(live_curated.versioning, None, "never enabled");
    assert_eq!(live_curated.public_access_block, None);
    assert_eq!(live_curated.policy, None, "tlsOnly: false writes no policy");
    assert_eq!(
        live_curated.lifecycle,
        [Rule {
            id: "strata-0-noncurrent".into(),
            enabled: true,
            prefix: None,
            archive: None,
            expire: None,
            noncurrent: Some(14),
        }]
    );
    want.insert("tier".into(), "curated".into());
    assert_eq!(live_curated.tags, want);

    // One managed policy per workload, each exactly its rendered document.
    for w in ["ingest", "reporting"] {
        assert_eq!(
            block_on(policy_document(&policy(w))),
            p.rendered("dev-aws", &format!("iam/{w}.policy.json")),
            "{w}"
        );
    }
    let ingest = block_on(policy_document(&policy("ingest")));
    let resources: Vec<&Value> = ingest["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Resource"].as_array().unwrap())
        .collect();
    assert_eq!(
        resources,
        [
            &json!(format!("arn:aws:s3:::{raw}")),
            &json!(format!("arn:aws:s3:::{raw}/*"))
        ],
        "ingest reaches raw only"
    );
    let reporting = block_on(policy_document(&policy("reporting")));
    assert!(
        reporting.to_string().contains(&curated) && reporting.to_string().contains(&raw),
        "{reporting:#}"
    );

    // One role per workload: the rendered trust policy, its own policy attached; and
    // one association per workload's service account, to its own role.
    let mut want_associations = Vec::new();
    for w in ["ingest", "reporting"] {
        let name = format!("strata-it-two-dev-{w}");
        let (trust, attached, tags) = block_on(live_role(&name)).expect("role");
        assert_eq!(
            trust,
            p.rendered("dev-aws", &format!("iam/{w}.trust.json")),
            "{w}"
        );
        assert_eq!(attached, [policy(w)], "{w}");
        assert_eq!(tags["strata-target"], "dev-aws", "{w}");
        want_associations.push((
            "strata-it".to_owned(),
            "strata-it-two".to_owned(),
            format!("strata-it-two-{w}"),
            format!("arn:aws:iam::{}:role/{name}", moto::ACCOUNT),
        ));
    }
    assert_eq!(associations(p.pod_identity()), want_associations);

    // The second apply: the servers see reads only.
    proxy.clear();
    let again = p.json_at(&proxy.url, APPLY_DEV, 0);
    assert_eq!(
        outcomes(&again),
        pairs(&[
            ("s3_bucket", "unchanged"),
            ("s3_bucket", "unchanged"),
            ("iam_policy", "unchanged"),
            ("iam_policy", "unchanged"),
            ("iam_role", "unchanged"),
            ("eks_pod_identity_association", "unchanged"),
            ("iam_role", "unchanged"),
            ("eks_pod_identity_association", "unchanged"),
        ])
    );
    assert_eq!(
        write_calls(&proxy),
        [] as [String; 0],
        "the second apply wrote"
    );
    assert_eq!(
        p.pod_identity().writes().len(),
        2,
        "the second apply wrote to EKS"
    );
    let heads: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "HEAD")
        .map(|r| r.path)
        .collect();
    assert!(
        heads == [format!("/{raw}/"), format!("/{curated}/")],
        "{heads:?}"
    );
}

/// A project template replaces strata's policy of workload `api` with one that allows
/// everything. The rules judge the rendered document, so apply refuses before any call
/// that writes.
#[test]
fn a_hostile_policy_template_is_refused_at_apply_with_no_write() {
    let p = Project::new("hostile");
    p.write(
        "templates/iam/api.policy.json.j2",
        r#"{% if target.cloud == "aws" %}
{"Version": "2012-10-17", "Statement": [{"Sid": "Everything", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
{% endif %}
"#,
    );
    let proxy = RecordingProxy::start(moto::url());
    let out = p.run_at(&proxy.url, &["apply", "dev-aws", "--approve"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "iam.wildcard-action",
        "iam.wildcard-resource",
        "templates/iam/api.policy.json.j2",
        "allows `s3:*`",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from:\n{stderr}");
    }
    assert_eq!(write_calls(&proxy), [] as [String; 0], "moto saw a write");
    assert!(!block_on(bucket_exists(&p.bucket("dev"))));
    assert!(!block_on(policy_exists(&p.policy_arn("dev"))));
    assert!(
        !p.path().join("out/dev-aws").exists(),
        "nothing of the refused render is written"
    );
}

/// S3 keeps one lifecycle configuration per bucket; strata owns the rules whose id
/// starts with `strata-` and must keep everyone else's.
#[test]
fn a_foreign_lifecycle_rule_survives_a_change_of_strata_rules() {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
        LifecycleRuleFilter,
    };
    let p = Project::new("lifecycle");
    p.append(
        "environments/dev.aws.yaml",
        "    lifecycle:\n      - {archiveAfterDays: 30}\n",
    );
    p.json(APPLY_DEV, 0);
    let bucket = p.bucket("dev");
    let team_rule = Rule {
        id: "team-rule".into(),
        enabled: true,
        prefix: Some("logs/".into()),
        archive: None,
        expire: Some(3),
        noncurrent: None,
    };
    let live = block_on(async {
        let s3 = moto::s3("eu-west-1").await;
        let current = s3
            .get_bucket_lifecycle_configuration()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        let mut rules = current.rules().to_vec();
        rules.push(
            LifecycleRule::builder()
                .id("team-rule")
                .status(ExpirationStatus::Enabled)
                .filter(LifecycleRuleFilter::builder().prefix("logs/").build())
                .expiration(LifecycleExpiration::builder().days(3).build())
                .build()
                .unwrap(),
        );
        s3.put_bucket_lifecycle_configuration()
            .bucket(&bucket)
            .lifecycle_configuration(
                BucketLifecycleConfiguration::builder()
                    .set_rules(Some(rules))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        read_bucket(&bucket, "eu-west-1").await
    });
    assert_eq!(live.lifecycle.len(), 2, "{:?}", live.lifecycle);
    // A foreign rule is no drift.
    let plan = p.json(&["plan", "dev-aws"], 0);
    assert_eq!(
        ops(&plan),
        pairs(&[
            ("s3_bucket", "unchanged"),
            ("iam_policy", "unchanged"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "unchanged"),
        ])
    );

    // strata's rules change: archive later, and expire tmp/.
    p.edit("environments/dev.aws.yaml", |body| {
        body.replace(
            "      - {archiveAfterDays: 30}\n",
            "      - {archiveAfterDays: 45}\n      - {expireAfterDays: 7, prefix: tmp/}\n",
        )
    });
    let plan = p.json(&["plan", "dev-aws"], 1);
    assert_eq!(changed_fields(&plan, "s3_bucket"), ["lifecycle"]);
    let proxy = RecordingProxy::start(moto::url());
    let evidence = p.json_at(&proxy.url, APPLY_DEV, 0);
    assert_eq!(evidence["resources"][0]["fields"], json!(["lifecycle"]));
    assert_eq!(
        write_calls(&proxy),
        [
            "CreatePolicy".to_owned(),
            format!("PUT /{bucket}/?lifecycle"),
            "DeletePolicy".to_owned()
        ],
        "one write of the whole configuration (between taking and removing the apply lock)"
    );

    let live = block_on(read_bucket(&bucket, "eu-west-1"));
    let mut rules = live.lifecycle.clone();
    rules.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        rules,
        [
            Rule {
                id: "strata-0-archive".into(),
                enabled: true,
                prefix: None,
                archive: Some((45, "GLACIER".into())),
                expire: None,
                noncurrent: None,
            },
            Rule {
                id: "strata-1-expire".into(),
                enabled: true,
                prefix: Some("tmp/".into()),
                archive: None,
                expire: Some(7),
                noncurrent: None,
            },
            team_rule,
        ]
    );
    p.json(&["plan", "dev-aws"], 0);
}

/// A loopback server that stands for a far-away endpoint: it counts the connections
/// it gets and answers each with a 500.
fn trap() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let url = loopback_server(move |request| {
        log.lock().unwrap().push(request.to_owned());
        http_response("500 Internal Server Error", "", "trap")
    });
    (url, seen)
}

/// The cloud settings a developer's machine (or a CI runner) may hold, each pointing
/// somewhere a test must never go: a non-routable address (192.0.2.1, TEST-NET-1) or
/// the trap at `trap`. `home` gets an `~/.aws` whose profile points at the trap too.
fn hostile_environment(trap: &str, home: &Path) -> Vec<(String, String)> {
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    let config = home.join(".aws/config");
    std::fs::write(
        &config,
        format!(
            "[default]\nregion = ap-south-1\nendpoint_url = {trap}\n[profile hostile]\nregion = ap-south-1\nendpoint_url = {trap}\n"
        ),
    )
    .unwrap();
    let credentials = home.join(".aws/credentials");
    std::fs::write(
        &credentials,
        "[default]\naws_access_key_id = HOSTILE\naws_secret_access_key = HOSTILE\n",
    )
    .unwrap();
    let far = "http://192.0.2.1:9";
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| !k.starts_with("AWS_"))
        .collect();
    for (k, v) in [
        ("AWS_ENDPOINT_URL_S3", far),
        ("AWS_ENDPOINT_URL_IAM", trap),
        ("AWS_ENDPOINT_URL_STS", trap),
        ("AWS_ENDPOINT_URL_EKS", trap),
        ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ("AWS_PROFILE", "hostile"),
        ("AWS_DEFAULT_PROFILE", "hostile"),
        ("AWS_REGION", "ap-south-1"),
        ("AWS_SESSION_TOKEN", "HOSTILE"),
        ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
        ("HTTP_PROXY", trap),
        ("HTTPS_PROXY", trap),
        ("ALL_PROXY", trap),
        ("http_proxy", trap),
        ("STORAGE_EMULATOR_HOST", trap),
        ("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM", trap),
        (
            "GOOGLE_APPLICATION_CREDENTIALS",
            "/nonexistent/hostile.json",
        ),
        ("HOME", home.to_str().unwrap()),
    ] {
        vars.push((k.to_owned(), v.to_owned()));
    }
    vars
}

/// The test environment starts empty of cloud settings: with every AWS endpoint,
/// profile and config-file variable of the parent pointing elsewhere (a per-service
/// endpoint at 192.0.2.1, the rest at a trap), strata under test still talks only to
/// the endpoint the test gives it. The control run (the same variables passed straight
/// through) shows that they would reach the binary, so this test can fail.
#[test]
fn cloud_settings_of_the_parent_environment_cannot_reach_the_binary() {
    let p = Project::new("hermetic");
    let (trap_url, trapped) = trap();
    let home = tempfile::tempdir().unwrap();
    let hostile = hostile_environment(&trap_url, home.path());
    let proxy = RecordingProxy::start(moto::url());
    let eks = p.clusters.as_ref().unwrap().url.clone();
    support::assert_loopback(&eks);
    // Only what the test means: credentials, its endpoints, no helm.
    let configure = |cmd: &mut std::process::Command| {
        cmd.arg("-C")
            .arg(p.path())
            .args(["--format", "json", "plan", "dev-aws"])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", &proxy.url)
            .env("AWS_ENDPOINT_URL_EKS", &eks)
            .env("STRATA_HELM", p.path().join("no-such-helm"));
    };

    let mut cmd = support::strata_from(hostile.clone());
    configure(&mut cmd);
    let out = cmd.output().unwrap();
    let plan = parse(&out, &["plan", "dev-aws"], 1);
    assert_eq!(plan["account"], moto::ACCOUNT);
    assert_eq!(plan["region"], "eu-west-1", "not the profile's region");
    assert_eq!(
        *trapped.lock().unwrap(),
        [] as [String; 0],
        "the trap was reached"
    );
    let seen: Vec<String> = proxy
        .requests()
        .into_iter()
        .map(|r| r.action.unwrap_or(r.method))
        .collect();
    for wanted in ["GetCallerIdentity", "HEAD", "GetPolicy", "GetRole"] {
        assert!(
            seen.iter().any(|s| s == wanted),
            "{wanted} did not reach the test's endpoint: {seen:?}"
        );
    }

    // Control: the same variables passed through unfiltered do reach the binary.
    let mut control = std::process::Command::new(env!("CARGO_BIN_EXE_strata"));
    control.env_clear().envs(hostile);
    configure(&mut control);
    // Without the trap's per-service STS endpoint, S3 would wait on 192.0.2.1.
    let out = control.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        !trapped.lock().unwrap().is_empty(),
        "the control run did not reach the trap: {}",
        text(&out.stderr)
    );
}

/// README, Apply: "Lifecycle rules, bucket-policy statements and tags that strata does
/// not own are kept", on the bucket and on the IAM policy and role, through a change of
/// strata's own tags and the repair of its drifted statement; read back through the API.
#[test]
fn foreign_policy_statements_and_tags_survive_apply_and_drift_repair() {
    use aws_sdk_s3::types::{Tag, Tagging};
    let p = Project::new("keepers");
    p.json(APPLY_DEV, 0);
    let bucket = p.bucket("dev");
    let role = p.policy_name("dev");
    let arn = p.policy_arn("dev");
    let team_statement = json!({
        "Sid": "TeamReadsReports",
        "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{}:root", moto::ACCOUNT)},
        "Action": "s3:GetObject",
        "Resource": format!("arn:aws:s3:::{bucket}/reports/*"),
    });
    block_on(async {
        let s3 = moto::s3("eu-west-1").await;
        let live = read_bucket(&bucket, "eu-west-1").await;
        // The team's statement beside strata's; the team's tag beside strata's.
        let mut policy = live.policy.clone().expect("strata's TLS statement");
        policy["Statement"]
            .as_array_mut()
            .unwrap()
            .push(team_statement.clone());
        s3.put_bucket_policy()
            .bucket(&bucket)
            .policy(policy.to_string())
            .send()
            .await
            .unwrap();
        let mut tags: Vec<Tag> = live
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
            .collect();
        tags.push(
            Tag::builder()
                .key("team-note")
                .value("kept")
                .build()
                .unwrap(),
        );
        s3.put_bucket_tagging()
            .bucket(&bucket)
            .tagging(Tagging::builder().set_tag_set(Some(tags)).build().unwrap())
            .send()
            .await
            .unwrap();
        let iam = moto::iam().await;
        let note = aws_sdk_iam::types::Tag::builder()
            .key("team-note")
            .value("kept")
            .build()
            .unwrap();
        iam.tag_policy()
            .policy_arn(&arn)
            .tags(note.clone())
            .send()
            .await
            .unwrap();
        iam.tag_role()
            .role_name(&role)
            .tags(note)
            .send()
            .await
            .unwrap();
    });
    // Foreign entries are no drift.
    let plan = p.json(&["plan", "dev-aws"], 0);
    assert_eq!(
        ops(&plan),
        pairs(&[
            ("s3_bucket", "unchanged"),
            ("iam_policy", "unchanged"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "unchanged"),
        ])
    );

    // strata's tags change (project.tags), and its TLS statement drifts away, leaving
    // the team's statement alone in the policy.
    p.edit("environments/base.yaml", |body| {
        body.replace("cost-center: analytics", "cost-center: research")
    });
    block_on(async {
        moto::s3("eu-west-1")
            .await
            .put_bucket_policy()
            .bucket(&bucket)
            .policy(
                json!({"Version": "2012-10-17", "Statement": [team_statement.clone()]}).to_string(),
            )
            .send()
            .await
            .unwrap();
    });
    let plan = p.json(&["plan", "dev-aws"], 1);
    assert_eq!(
        changed_fields(&plan, "s3_bucket"),
        strings(&["tlsOnly", "tags.cost-center"])
    );
    assert_eq!(changed_fields(&plan, "iam_policy"), ["tags.cost-center"]);
    assert_eq!(changed_fields(&plan, "iam_role"), ["tags.cost-center"]);
    let evidence = p.json(APPLY_DEV, 0);
    assert_eq!(
        outcomes(&evidence),
        pairs(&[
            ("s3_bucket", "updated"),
            ("iam_policy", "updated"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "updated"),
        ])
    );

    let live = block_on(read_bucket(&bucket, "eu-west-1"));
    let statements = live.policy.as_ref().unwrap()["Statement"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(statements.len(), 2, "{statements:#?}");
    assert!(
        statements.contains(&team_statement),
        "the team's statement was lost: {statements:#?}"
    );
    assert!(live.tls_statement().is_some(), "strata's statement is back");
    assert_eq!(live.tags.get("team-note").map(String::as_str), Some("kept"));
    assert_eq!(
        live.tags.get("cost-center").map(String::as_str),
        Some("research")
    );
    let mut want = iam_tags("dev");
    want.insert("cost-center".into(), "research".into());
    want.insert("team-note".into(), "kept".into());
    let (_, policy_tags) = block_on(live_policy(&arn));
    assert_eq!(policy_tags, want, "the policy's tags");
    let (_, _, role_tags) = block_on(live_role(&role)).expect("role");
    assert_eq!(role_tags, want, "the role's tags");
    p.json(&["plan", "dev-aws"], 0);
}

/// README, Apply: "a bucket in another region stops the run — buckets cannot move";
/// nothing is written, and the bucket is as it was.
#[test]
fn a_bucket_in_another_region_stops_plan_and_apply_with_nothing_written() {
    let p = Project::new("region");
    let bucket = p.bucket("dev");
    block_on(async {
        use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
        moto::s3("us-west-2")
            .await
            .create_bucket()
            .bucket(&bucket)
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::UsWest2)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    let proxy = RecordingProxy::start(moto::url());
    for args in [&["plan", "dev-aws"][..], APPLY_DEV] {
        let out = p.run_at(&proxy.url, args);
        // The error, without plan's progress lines for what it read before it.
        let stderr: String = text(&out.stderr)
            .lines()
            .filter(|l| !l.starts_with("strata: "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr,
            format!(
                "error: s3 bucket {bucket}: HeadBucket: the bucket exists in region us-west-2, but the target's aws.region is eu-west-1; a bucket cannot move between regions\n  \
                 hint: set aws.region to us-west-2, or set buckets.<key>.name to another name\n"
            ),
            "{args:?}"
        );
    }
    assert_eq!(write_calls(&proxy), [] as [String; 0], "moto saw a write");
    assert!(!block_on(policy_exists(&p.policy_arn("dev"))));
    let live = block_on(read_bucket(&bucket, "us-west-2"));
    assert_eq!(live.location.as_deref(), Some("us-west-2"));
    assert!(live.tags.is_empty() && live.policy.is_none(), "{live:?}");
}

/// A helm whose install of `app` exits 3: apply exits 2, the evidence lists both runs
/// with their exit codes, and stderr names the release.
#[test]
fn a_helm_release_that_fails_stops_apply_with_exit_2_and_its_exit_code_in_the_evidence() {
    let p = Project::new("helmfail");
    let record = p.path().join("helm-argv.txt");
    let helm = p.path().join("failing-helm.sh");
    std::fs::write(
        &helm,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n[ \"$3\" = app ] && {{ echo 'Error: UPGRADE FAILED: context deadline exceeded' >&2; exit 3; }}\nexit 0\n",
            record.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = p
        .command(&["--format", "json", "apply", "dev-aws", "--approve"])
        .env("STRATA_HELM", &helm)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    let evidence = parse(&out, &["apply"], 2);
    assert_eq!(evidence["status"], "failed", "{evidence:#}");
    let runs: Vec<(String, Value)> = evidence["helm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["argv"][3].as_str().unwrap().to_owned(),
                r["exitCode"].clone(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        [
            ("lakehouse-platform".to_owned(), json!(0)),
            ("app".to_owned(), json!(3))
        ]
    );
    // helm's own output, then strata's error naming the release and helm's status.
    assert_eq!(
        stderr,
        format!(
            "Error: UPGRADE FAILED: context deadline exceeded\nerror: helm release app (chart {}): helm upgrade --install failed (exit status: 3)\n",
            p.path().join("charts/app").display()
        )
    );
    // The cloud step had finished: its evidence is there.
    assert_eq!(
        outcomes(&evidence),
        pairs(&[
            ("s3_bucket", "created"),
            ("iam_policy", "created"),
            ("iam_oidc_provider", "unchanged"),
            ("iam_role", "created"),
        ])
    );
    assert_eq!(
        std::fs::read_to_string(&record).unwrap().lines().count(),
        3,
        "version, platform, app; nothing after the failure"
    );
}

/// docs/apply.md: "the helm binary is `$STRATA_HELM`, or `helm` on `PATH`".
#[test]
fn helm_is_found_on_path_when_strata_helm_is_unset() {
    let p = Project::new("helmpath");
    let bin = p.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = p.path().join("helm-argv.txt");
    std::fs::write(
        bin.join("helm"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n[ \"$1\" = version ] && echo v4.1.4\nexit 0\n",
            record.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("helm"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let out = p
        .command(&["--format", "json", "apply", "dev-aws", "--approve"])
        .env_remove("STRATA_HELM")
        .env("PATH", &path)
        .output()
        .unwrap();
    let evidence = parse(&out, &["apply"], 0);
    let argv0: Vec<&str> = evidence["helm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["argv"][0].as_str().unwrap())
        .collect();
    assert_eq!(argv0.len(), 2, "{evidence:#}");
    assert!(
        argv0
            .iter()
            .all(|a| *a == "helm" || Path::new(a) == bin.join("helm")),
        "{argv0:?}"
    );
    let record = std::fs::read_to_string(&record).unwrap();
    assert!(
        record.starts_with("version --short\nupgrade --install lakehouse-platform "),
        "{record}"
    );
    assert_eq!(record.lines().count(), 3, "{record}");
}

/// README, AWS: "A role without strata's tags for this target is never changed", and
/// a bucket of another target is refused even with `adopt: true`: plan and apply stop,
/// exit 2, and the server sees no write.
#[test]
fn a_role_or_bucket_that_is_not_this_targets_is_never_changed() {
    let p = Project::new("notours");
    let role = p.policy_name("dev");
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    block_on(async {
        moto::iam()
            .await
            .create_role()
            .role_name(&role)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .unwrap();
    });
    let proxy = RecordingProxy::start(moto::url());
    for args in [&["plan", "dev-aws"][..], APPLY_DEV] {
        let out = p.run_at(&proxy.url, args);
        // The error, without plan's progress lines for what it read before it.
        let stderr: String = text(&out.stderr)
            .lines()
            .filter(|l| !l.starts_with("strata: "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr,
            format!(
                "error: iam role {role} exists and belongs to no strata target (it has no managed-by=strata / strata-target tags); strata changes nothing it does not own\n  \
                 hint: give the workload another role name (`workloads.<w>.iamRole`), or delete or re-tag the existing role\n"
            ),
            "{args:?}"
        );
    }
    assert_eq!(
        write_calls(&proxy),
        [] as [String; 0],
        "plan refuses the role before apply writes anything"
    );
    let (live_trust, attached, tags) = block_on(live_role(&role)).expect("the role");
    assert_eq!(live_trust, trust, "the role's trust policy was changed");
    assert_eq!(attached, [] as [String; 0]);
    assert!(tags.is_empty(), "{tags:?}");

    // A bucket strata made for staging-aws, under the name dev-aws wants.
    let p = Project::new("othertarget");
    let bucket = p.bucket("dev");
    block_on(async {
        use aws_sdk_s3::types::{
            BucketLocationConstraint, CreateBucketConfiguration, Tag, Tagging,
        };
        let s3 = moto::s3("eu-west-1").await;
        s3.create_bucket()
            .bucket(&bucket)
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::EuWest1)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().unwrap();
        s3.put_bucket_tagging()
            .bucket(&bucket)
            .tagging(
                Tagging::builder()
                    .tag_set(tag("managed-by", "strata"))
                    .tag_set(tag("strata-target", "staging-aws"))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    });
    p.append("environments/dev.aws.yaml", "    adopt: true\n");
    let proxy = RecordingProxy::start(moto::url());
    for args in [&["plan", "dev-aws"][..], APPLY_DEV] {
        let out = p.run_at(&proxy.url, args);
        // The error, without plan's progress lines for what it read before it.
        let stderr: String = text(&out.stderr)
            .lines()
            .filter(|l| !l.starts_with("strata: "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr,
            format!(
                "error: s3 bucket {bucket} belongs to strata target staging-aws, not dev-aws; strata never changes another target's resources; nothing was written\n  \
                 hint: give this target's resource another name\n"
            ),
            "{args:?}"
        );
    }
    assert_eq!(write_calls(&proxy), [] as [String; 0], "moto saw a write");
    let live = block_on(read_bucket(&bucket, "eu-west-1"));
    assert_eq!(live.tags.len(), 2, "{:?}", live.tags);
}

/// Plan and apply print one progress line per resource on stderr as they go (kind,
/// name, what was read or done, seconds since the start); `--quiet` and `--format json`
/// print none, and stdout (the plan, the evidence) is the same either way.
#[test]
fn apply_reports_progress_on_stderr_unless_quiet_or_json() {
    let p = Project::new("progress");
    let bucket = p.bucket("dev");
    // Plan reports each resource as it is read, and what apply would do to it.
    let plan = p.run(&["plan", "dev-aws"]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan.stderr));
    assert!(
        text(&plan.stderr).contains(&format!("strata: s3_bucket {bucket}: read, would create (")),
        "{}",
        text(&plan.stderr)
    );
    let quiet_plan = p.run(&["-q", "plan", "dev-aws"]);
    assert_eq!(quiet_plan.status.code(), Some(1));
    assert!(
        !text(&quiet_plan.stderr).contains("strata: "),
        "{}",
        text(&quiet_plan.stderr)
    );
    assert_eq!(text(&plan.stdout), text(&quiet_plan.stdout));
    let first = p.run(&["apply", "dev-aws", "--approve", "--skip-helm"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let progress: Vec<String> = text(&first.stderr)
        .lines()
        .filter(|l| l.starts_with("strata: "))
        .map(str::to_owned)
        .collect();
    // Apply reports its writes, not the reads of its plan.
    assert!(
        !progress.iter().any(|l| l.contains(": read, ")),
        "{progress:#?}"
    );
    let line = progress
        .iter()
        .find(|l| l.starts_with(&format!("strata: s3_bucket {bucket}: created (")))
        .unwrap_or_else(|| panic!("no progress line for the bucket: {progress:#?}"));
    assert!(line.ends_with(" s)"), "{line}");
    assert!(
        progress
            .iter()
            .any(|l| l.starts_with("strata: iam_role ") && l.contains(": created (")),
        "{progress:#?}"
    );
    for quiet in [
        vec!["--quiet", "apply", "dev-aws", "--approve", "--skip-helm"],
        vec!["-q", "apply", "dev-aws", "--approve", "--skip-helm"],
        vec![
            "--format",
            "json",
            "apply",
            "dev-aws",
            "--approve",
            "--skip-helm",
        ],
    ] {
        let again = p.run(&quiet);
        assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
        assert!(
            !text(&again.stderr).contains("strata: s3_bucket"),
            "{quiet:?}: {}",
            text(&again.stderr)
        );
    }
    let loud = p.run(&["apply", "dev-aws", "--approve", "--skip-helm"]);
    let quiet = p.run(&["--quiet", "apply", "dev-aws", "--approve", "--skip-helm"]);
    assert_eq!(text(&loud.stdout), text(&quiet.stdout));
    assert!(text(&loud.stderr).contains(&format!("strata: s3_bucket {bucket}: unchanged (")));
}

/// strata's HTTPS stack (rustls with ring, src/resources/http.rs; every other test talks
/// plain HTTP to moto): a plan reads moto through a TLS proxy whose self-signed
/// certificate it trusts through `SSL_CERT_FILE`; without that trust the certificate is
/// refused, exit 2, and nothing reaches the server.
#[test]
fn plan_over_https_checks_the_servers_certificate() {
    let p = Project::new("https");
    let tls = support::SelfSigned::new();
    let proxy = RecordingProxy::start_tls(moto::url(), &tls);
    assert!(proxy.url.starts_with("https://"), "{}", proxy.url);

    let args = ["--format", "json", "plan", "dev-aws"];
    let out = p
        .command_at(&proxy.url, &args)
        .env("SSL_CERT_FILE", &tls.cert)
        .output()
        .expect("strata runs");
    let plan = parse(&out, &args, 1);
    assert_eq!(plan["account"], moto::ACCOUNT);
    assert_eq!(ops(&plan), pairs(FRESH_PLAN));
    let actions: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter_map(|r| r.action)
        .collect();
    assert!(
        actions.iter().any(|a| a == "GetCallerIdentity"),
        "STS went through the TLS proxy: {actions:?}"
    );

    proxy.clear();
    let out = p.run_at(&proxy.url, &["plan", "dev-aws"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert_eq!(proxy.requests(), Vec::new(), "nothing reached the server");
}
