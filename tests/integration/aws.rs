//! plan and apply against moto's real server (S3, IAM, STS on 127.0.0.1).
//!
//! Every test works on a copy of the example project whose accountId is moto's and
//! whose cluster names carry the test's own tag, so bucket and policy names never
//! collide between tests running in parallel against the one server.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use crate::support::{self, FaultyProxy, copy_dir, moto, text};

struct Project {
    dir: tempfile::TempDir,
    tag: String,
}

impl Project {
    /// The example with moto's account everywhere and `-<tag>` after each cluster name.
    fn new(tag: &str) -> Project {
        Self::with_account(tag, moto::ACCOUNT)
    }

    fn with_account(tag: &str, account: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = support::repo_root();
        for sub in ["environments", "templates", "charts"] {
            copy_dir(&root.join(sub), &dir.path().join(sub));
        }
        for env in ["dev", "staging", "prod"] {
            let path = dir.path().join(format!("environments/{env}.yaml"));
            let body = std::fs::read_to_string(&path).unwrap();
            let body = body
                .replace(
                    &format!("name: lakehouse-{env}\n"),
                    &format!("name: lakehouse-{env}-{tag}\n"),
                )
                .replace(
                    r#"accountId: "111111111111""#,
                    &format!(r#"accountId: "{account}""#),
                )
                .replace(
                    r#"accountId: "222222222222""#,
                    &format!(r#"accountId: "{account}""#),
                )
                .replace(
                    r#"accountId: "333333333333""#,
                    &format!(r#"accountId: "{account}""#),
                );
            std::fs::write(&path, body).unwrap();
        }
        Project {
            dir,
            tag: tag.to_owned(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn bucket(&self, env: &str) -> String {
        format!("lakehouse-{env}-{}-db-{}", self.tag, moto::ACCOUNT)
    }

    fn policy_arn(&self, env: &str) -> String {
        format!(
            "arn:aws:iam::{}:policy/Lakehouse_lakehouse_S3_Policy_lakehouse-{env}-{}",
            moto::ACCOUNT,
            self.tag
        )
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let url = moto::url();
        support::assert_loopback(url);
        let mut cmd = support::strata();
        cmd.arg("-C")
            .arg(self.path())
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", url)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env("AWS_CONFIG_FILE", self.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.path().join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true");
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("strata runs")
    }

    /// Runs with `--format json`, expecting `code`; returns the parsed stdout.
    fn json(&self, args: &[&str], code: i32) -> Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert_eq!(
            out.status.code(),
            Some(code),
            "strata {all:?}\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(&out.stdout)))
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

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

fn changed_fields(plan: &Value, kind: &str) -> Vec<String> {
    let action = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == kind)
        .unwrap();
    action["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap().to_owned())
        .collect()
}

/// Everything strata manages on a bucket, read back through the SDK.
struct BucketReadBack {
    location: Option<String>,
    versioning: Option<String>,
    encryption: Option<String>,
    public_access_block: [Option<bool>; 4],
    tags: std::collections::BTreeMap<String, String>,
    policy: Value,
    lifecycle: Vec<(Option<String>, Option<i32>, Option<String>)>,
}

async fn read_bucket(bucket: &str, region: &str) -> BucketReadBack {
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
    let encryption = s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let pab = s3
        .get_public_access_block()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    let tags = s3.get_bucket_tagging().bucket(bucket).send().await.unwrap();
    let policy = s3.get_bucket_policy().bucket(bucket).send().await.unwrap();
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
                (
                    r.id().map(str::to_owned),
                    t.and_then(|t| t.days()),
                    t.and_then(|t| t.storage_class())
                        .map(|s| s.as_str().to_owned()),
                )
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    BucketReadBack {
        location: location
            .location_constraint()
            .map(|l| l.as_str().to_owned())
            .filter(|l| !l.is_empty()),
        versioning: versioning.status().map(|s| s.as_str().to_owned()),
        encryption: encryption
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| r.apply_server_side_encryption_by_default())
            .map(|d| d.sse_algorithm().as_str().to_owned()),
        public_access_block: [
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets(),
        ],
        tags: tags
            .tag_set()
            .iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect(),
        policy: serde_json::from_str(policy.policy().unwrap()).unwrap(),
        lifecycle,
    }
}

async fn default_policy_document(arn: &str) -> Value {
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
    strata::apply::aws::parse_document(doc.policy_version().unwrap().document().unwrap())
}

fn rendered_policy(project: &Project, target: &str) -> Value {
    let out = project.run(&["render", target, "--out", "rendered"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let path: PathBuf = project
        .path()
        .join(format!("rendered/{target}/iam/policy.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn first_apply_creates_everything_and_the_second_writes_nothing() {
    let p = Project::new("first");
    let plan = p.json(&["plan", "dev-aws"], 1);
    assert_eq!(plan["account"], moto::ACCOUNT);
    assert_eq!(plan["region"], "eu-west-1");
    assert!(
        plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["op"] == "create"),
        "{plan:#}"
    );

    let evidence = p.json(&["apply", "dev-aws", "--approve", "--skip-helm"], 0);
    assert_eq!(evidence["status"], "applied");
    assert_eq!(evidence["account"], moto::ACCOUNT);
    assert_eq!(evidence["region"], "eu-west-1");
    assert_eq!(
        outcomes(&evidence),
        [
            ("s3_bucket".into(), "created".into()),
            ("iam_policy".into(), "created".into())
        ]
    );
    assert_eq!(evidence["resources"][0]["existed"], false);

    let bucket = p.bucket("dev");
    let live = block_on(read_bucket(&bucket, "eu-west-1"));
    assert_eq!(live.location.as_deref(), Some("eu-west-1"));
    assert_eq!(live.versioning.as_deref(), Some("Enabled"));
    assert_eq!(live.encryption.as_deref(), Some("AES256"));
    assert_eq!(live.public_access_block, [Some(true); 4]);
    let expected_tags: std::collections::BTreeMap<String, String> = [
        ("cost-center", "analytics"),
        ("data-classification", "internal"),
        ("strata:env", "dev"),
        ("strata:managed", "true"),
        ("strata:target", "dev-aws"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(live.tags, expected_tags);
    let tls = &live.policy["Statement"][0];
    assert_eq!(tls["Effect"], "Deny");
    assert_eq!(tls["Condition"]["Bool"]["aws:SecureTransport"], "false");
    assert!(live.lifecycle.is_empty(), "dev has no archive rule");
    let doc = block_on(default_policy_document(&p.policy_arn("dev")));
    assert_eq!(doc, rendered_policy(&p, "dev-aws"));

    let again = p.json(&["apply", "dev-aws", "--approve", "--skip-helm"], 0);
    assert_eq!(
        outcomes(&again),
        [
            ("s3_bucket".into(), "unchanged".into()),
            ("iam_policy".into(), "unchanged".into())
        ]
    );
    assert!(
        again["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["existed"] == true && r["fields"] == json!([]))
    );
    let plan = p.json(&["plan", "dev-aws"], 0);
    assert!(
        plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["op"] == "unchanged")
    );
}

#[test]
fn us_east_1_bucket_has_no_location_constraint_and_gets_the_archive_rule() {
    let p = Project::new("useast");
    let evidence = p.json(&["apply", "prod-aws", "--approve", "--skip-helm"], 0);
    assert_eq!(evidence["region"], "us-east-1");
    let live = block_on(read_bucket(&p.bucket("prod"), "us-east-1"));
    assert_eq!(
        live.location, None,
        "us-east-1 buckets report no LocationConstraint"
    );
    assert_eq!(
        live.lifecycle,
        [(
            Some("strata-archive".to_owned()),
            Some(90),
            Some("GLACIER".to_owned())
        )]
    );
    assert_eq!(
        live.tags.get("data-classification").map(String::as_str),
        Some("confidential")
    );
    assert_eq!(
        block_on(default_policy_document(&p.policy_arn("prod"))),
        rendered_policy(&p, "prod-aws")
    );
    p.json(&["plan", "prod-aws"], 0);
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
        let kept = Tag::builder()
            .key("strata:managed")
            .value("true")
            .build()
            .unwrap();
        s3.put_bucket_tagging()
            .bucket(&bucket)
            .tagging(Tagging::builder().tag_set(kept).build().unwrap())
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
    });
    let plan = p.json(&["plan", "prod-aws"], 1);
    let fields = changed_fields(&plan, "s3_bucket");
    for f in [
        "versioning",
        "publicAccessBlock",
        "lifecycle",
        "tlsOnly",
        "tags.strata:env",
        "tags.strata:target",
        "tags.cost-center",
    ] {
        assert!(
            fields.contains(&f.to_owned()),
            "{f} missing from {fields:?}"
        );
    }
    assert!(!fields.contains(&"tags.strata:managed".to_owned()));
    assert_eq!(changed_fields(&plan, "iam_policy"), ["document"]);
    let versioning = plan["actions"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "versioning")
        .unwrap();
    assert_eq!(
        (&versioning["from"], &versioning["to"]),
        (&json!(false), &json!(true))
    );

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
        [
            ("s3_bucket".into(), "updated".into()),
            ("iam_policy".into(), "updated".into())
        ]
    );
    assert_eq!(evidence["resources"][1]["fields"], json!(["document"]));
    let live = block_on(read_bucket(&bucket, "us-east-1"));
    assert_eq!(live.versioning.as_deref(), Some("Enabled"));
    assert_eq!(
        live.tags.get("strata:env").map(String::as_str),
        Some("prod")
    );
    assert_eq!(live.public_access_block, [Some(true); 4]);
    assert_eq!(live.lifecycle.len(), 1);
    assert_eq!(
        block_on(default_policy_document(&arn)),
        rendered_policy(&p, "prod-aws")
    );
    p.json(&["plan", "prod-aws"], 0);
}

#[test]
fn wrong_account_stops_before_anything_is_read_or_written() {
    let p = Project::with_account("wrongacct", "999999999999");
    for args in [
        &["plan", "dev-aws"][..],
        &["apply", "dev-aws", "--approve", "--skip-helm"],
    ] {
        let out = p.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("deploys to AWS account 999999999999")
                && err.contains("belong to account 123456789012"),
            "{err}"
        );
    }
    let evidence = p.json(&["apply", "dev-aws", "--approve", "--skip-helm"], 2);
    assert_eq!(evidence["status"], "failed");
    assert_eq!(evidence["resources"], json!([]));
    assert!(
        evidence["error"]
            .as_str()
            .unwrap()
            .contains("belong to account 123456789012")
    );
    let bucket = "lakehouse-dev-wrongacct-db-999999999999";
    let head = block_on(async {
        moto::s3("eu-west-1")
            .await
            .head_bucket()
            .bucket(bucket)
            .send()
            .await
    });
    assert!(head.is_err(), "nothing may be created");
}

#[test]
fn apply_without_approve_only_shows_the_plan() {
    let p = Project::new("noapprove");
    let out = p.json(&["apply", "staging-aws"], 0);
    assert_eq!(out["status"], "needs_approval");
    assert_eq!(out["plan"]["actions"][0]["op"], "create");
    let head = block_on(async {
        moto::s3("eu-west-1")
            .await
            .head_bucket()
            .bucket(p.bucket("staging"))
            .send()
            .await
    });
    assert!(head.is_err(), "nothing may be created without --approve");
}

#[test]
fn policy_version_limit_prunes_the_oldest_non_default_version() {
    let p = Project::new("versions");
    p.json(&["apply", "dev-aws", "--approve", "--skip-helm"], 0);
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
    let evidence = p.json(&["apply", "dev-aws", "--approve", "--skip-helm"], 0);
    assert_eq!(evidence["resources"][1]["outcome"], "updated");
    let versions = block_on(async {
        let out = moto::iam()
            .await
            .list_policy_versions()
            .policy_arn(&arn)
            .send()
            .await
            .unwrap();
        let mut ids: Vec<String> = out
            .versions()
            .iter()
            .map(|v| v.version_id().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    });
    assert_eq!(
        versions,
        ["v2", "v3", "v4", "v5", "v6"],
        "v1, the oldest non-default, is pruned"
    );
    assert_eq!(
        block_on(default_policy_document(&arn)),
        rendered_policy(&p, "dev-aws")
    );
}

#[test]
fn two_applies_at_once_both_finish_with_one_state() {
    let p = Project::new("race");
    let args = [
        "--format",
        "json",
        "apply",
        "staging-aws",
        "--approve",
        "--skip-helm",
    ];
    let a = p
        .command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let b = p
        .command(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    p.json(&["plan", "staging-aws"], 0);
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

#[test]
fn helm_runs_both_charts_with_the_exact_argv_after_the_cloud_step() {
    let p = Project::new("helm");
    let venv = support::venv_bin();
    let record = p.path().join("helm-argv.txt");
    let helm = p.path().join("fake-helm.sh");
    let empty = p.path().join("empty-values.yaml");
    std::fs::write(&empty, "{}\n").unwrap();
    let script = format!(
        r#"#!/bin/sh
# Records its argv; for `upgrade --install` renders the chart with Helm's engine.
printf '%s\n' "$*" >> '{record}'
[ "$1" = upgrade ] && [ "$2" = --install ] || exit 0
chart="$4"; values='{empty}'; ns=""
while [ $# -gt 0 ]; do
  case "$1" in
    --values) values="$2"; shift ;;
    --namespace) ns="$2"; shift ;;
  esac
  shift
done
exec '{python}' '{render}' "$chart" "$values" "$ns" "$(dirname '{record}')/rendered-$(basename "$chart").yaml"
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

    let out = p
        .command(&["--format", "json", "apply", "dev-aws", "--approve"])
        .env("STRATA_HELM", &helm)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let evidence: Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = p.path().canonicalize().unwrap();
    let out_dir = p.path().join("out/dev-aws");
    let ctx = format!(
        "arn:aws:eks:eu-west-1:{}:cluster/lakehouse-dev-helm",
        moto::ACCOUNT
    );
    let platform = format!(
        "upgrade --install lakehouse-platform {} --namespace lakehouse --kube-context {ctx} --wait --atomic",
        out_dir.join("platform").display()
    );
    let app = format!(
        "upgrade --install lakehouse {} --namespace lakehouse --kube-context {ctx} --wait --atomic --values {}",
        root.join("charts/app").display(),
        out_dir.join("values.yaml").display()
    );
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        format!("{platform}\n{app}\n")
    );
    let runs = evidence["helm"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r["exitCode"] == 0));
    assert_eq!(runs[1]["argv"][0], helm.display().to_string());
    assert!(
        p.path().join("rendered-platform.yaml").exists()
            && p.path().join("rendered-app.yaml").exists()
    );
}

#[test]
fn missing_helm_is_a_clear_error_after_the_cloud_step() {
    let p = Project::new("nohelm");
    let out = p
        .command(&["--format", "json", "apply", "dev-aws", "--approve"])
        .env("STRATA_HELM", p.path().join("no-such-helm"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let evidence: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(evidence["status"], "failed");
    assert_eq!(
        outcomes(&evidence),
        [
            ("s3_bucket".into(), "created".into()),
            ("iam_policy".into(), "created".into())
        ]
    );
    assert_eq!(evidence["helm"][0]["exitCode"], Value::Null);
    assert!(
        text(&out.stderr).contains("--skip-helm"),
        "{}",
        text(&out.stderr)
    );
}

/// moto answers HeadBucket with 200 for a bucket of another account (and ignores
/// ExpectedBucketOwner), so the 403 that real S3 gives is served here by a minimal
/// loopback stand-in: STS says account 123456789012, every HEAD is 403 Forbidden.
fn forbidding_endpoint() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
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
            let response = if first.starts_with("HEAD") {
                "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            } else {
                let xml = format!(
                    "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult>\
                     <Arn>arn:aws:iam::{0}:user/test</Arn><UserId>TEST</UserId><Account>{0}</Account></GetCallerIdentityResult>\
                     <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
                    moto::ACCOUNT
                );
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{xml}",
                    xml.len()
                )
            };
            let mut stream = reader.into_inner();
            let _ = stream.write_all(response.as_bytes());
        }
    });
    url
}

#[test]
fn bucket_of_another_account_is_reported_as_such() {
    let p = Project::new("foreign");
    let url = forbidding_endpoint();
    support::assert_loopback(&url);
    for args in [
        &["plan", "dev-aws"][..],
        &["apply", "dev-aws", "--approve", "--skip-helm"],
    ] {
        let out = p
            .command(args)
            .env("AWS_ENDPOINT_URL", &url)
            .output()
            .unwrap();
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
    // Every PutBucketTagging fails with 500, after the SDK's own retries.
    let proxy = FaultyProxy::start(moto::url(), &format!("PUT /{bucket}/?tagging"), 500, None);
    let out = p
        .command(&[
            "--format",
            "json",
            "apply",
            "dev-aws",
            "--approve",
            "--skip-helm",
        ])
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let evidence: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(evidence["status"], "failed");
    let bucket_record = &evidence["resources"][0];
    assert_eq!(bucket_record["kind"], "s3_bucket");
    assert_eq!(bucket_record["outcome"], "failed", "{evidence:#}");
    assert!(
        bucket_record["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "versioning"),
        "what was written before the failure is listed: {evidence:#}"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&bucket) && stderr.to_lowercase().contains("tagging"),
        "{stderr}"
    );
    drop(proxy);

    // The cloud is half-done, and says so; the next apply finishes the job.
    let plan = p.json(&["plan", "dev-aws"], 1);
    assert!(
        changed_fields(&plan, "s3_bucket")
            .iter()
            .any(|f| f.starts_with("tags")),
        "{plan:#}"
    );
    let evidence = p.json(&["apply", "dev-aws", "--approve", "--skip-helm"], 0);
    assert_eq!(evidence["status"], "applied");
    p.json(&["plan", "dev-aws"], 0);
}

#[test]
fn throttling_is_retried_by_the_sdk_and_a_stopped_server_is_a_clear_error() {
    let p = Project::new("throttle");
    // Two throttled CreatePolicy answers: the SDK's standard retries absorb them.
    let proxy = FaultyProxy::start(moto::url(), "Action=CreatePolicy", 400, Some(2));
    let out = p
        .command(&[
            "--format",
            "json",
            "apply",
            "dev-aws",
            "--approve",
            "--skip-helm",
        ])
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let evidence: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        outcomes(&evidence),
        [
            ("s3_bucket".into(), "created".into()),
            ("iam_policy".into(), "created".into())
        ]
    );
    drop(proxy);

    // Throttled for good: after the SDK's retries, a clear error naming the policy and
    // the action, and evidence that the bucket was done.
    let proxy = FaultyProxy::start(moto::url(), "Action=CreatePolicy", 400, None);
    let out = p
        .command(&[
            "--format",
            "json",
            "apply",
            "staging-aws",
            "--approve",
            "--skip-helm",
        ])
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("CreatePolicy") && stderr.contains("Throttling"),
        "{stderr}"
    );
    let evidence: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        evidence["resources"][0]["outcome"], "created",
        "{evidence:#}"
    );
    drop(proxy);

    // Nothing listens on this port any more: exit 2, nothing claimed as done.
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    support::assert_loopback(&dead);
    let out = p
        .command(&[
            "--format",
            "json",
            "apply",
            "prod-aws",
            "--approve",
            "--skip-helm",
        ])
        .env("AWS_ENDPOINT_URL", &dead)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let evidence: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(evidence["status"], "failed");
    assert!(
        evidence["resources"].as_array().unwrap().is_empty(),
        "{evidence:#}"
    );
    assert!(!text(&out.stderr).is_empty());
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
