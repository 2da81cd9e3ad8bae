//! The identity chain from pod to bucket, applied through the binary and read back
//! through the APIs (not through strata):
//! - aws IRSA (dev-aws) against moto: the OIDC provider strata creates when asked,
//!   the role with the rendered trust policy, the workload's policy attached;
//! - aws EKS Pod Identity (prod-aws) against moto behind the EKS stand-in
//!   (`tests/standins/eks_pod_identity.py`, which forwards what it does not serve);
//! - gcp (dev-gcp) against the GCS emulator and the Google IAM stand-in
//!   (`tests/standins/gcp_iam.py`), including "not yet visible" reads after a create.
//!
//! A second apply must change nothing: the servers' state before and after is the same
//! and the stand-ins log no mutating request.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::support::{self, assert_loopback, free_port, gcs_emulator, moto, start_server, text};

/// The lakehouse example written by `strata init`, with `extra` layers added.
pub(crate) fn project(extra: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = support::strata()
        .args(["init"])
        .arg(dir.path().join("p"))
        .output()
        .expect("init runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (file, body) in extra {
        std::fs::write(dir.path().join("p/environments").join(file), body).unwrap();
    }
    dir
}

pub(crate) fn aws_command(dir: &Path, eks: Option<&str>) -> std::process::Command {
    let mut cmd = moto::command(dir);
    cmd.arg("-C").arg(dir.join("p"));
    if let Some(eks) = eks {
        assert_loopback(eks);
        cmd.env("AWS_ENDPOINT_URL_EKS", eks);
    }
    cmd
}

pub(crate) fn json_of(out: &Output, code: i32) -> Value {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

pub(crate) fn outcomes(evidence: &Value) -> Vec<(String, String)> {
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

pub(crate) use crate::support::block_on;

pub(crate) async fn create_cluster(region: &str, name: &str) -> String {
    let eks = aws_sdk_eks::Client::new(&moto::sdk_config(region).await);
    let vpc = aws_sdk_eks::types::VpcConfigRequest::builder()
        .subnet_ids("subnet-1")
        .build();
    eks.create_cluster()
        .name(name)
        .role_arn(format!("arn:aws:iam::{}:role/eks", moto::ACCOUNT))
        .resources_vpc_config(vpc)
        .send()
        .await
        .expect("moto creates the cluster");
    eks.describe_cluster()
        .name(name)
        .send()
        .await
        .expect("describe")
        .cluster()
        .and_then(|c| c.identity())
        .and_then(|i| i.oidc())
        .and_then(|o| o.issuer())
        .expect("moto gives the cluster an issuer")
        .to_owned()
}

/// The role as IAM holds it: its trust document, attached policy ARNs and tags.
async fn read_role(name: &str) -> (Value, Vec<String>, Vec<(String, String)>) {
    let iam = moto::iam().await;
    let role = iam
        .get_role()
        .role_name(name)
        .send()
        .await
        .expect("role exists");
    let raw = role.role().unwrap().assume_role_policy_document().unwrap();
    let trust = strata::resources::aws::parse_document(raw);
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
    let mut tags: Vec<(String, String)> = iam
        .list_role_tags()
        .role_name(name)
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    tags.sort();
    (trust, attached, tags)
}

fn rendered(dir: &Path, target: &str, rel: &str) -> Value {
    let bytes = std::fs::read(dir.join("p/out").join(target).join(rel))
        .unwrap_or_else(|e| panic!("{target}/{rel}: {e}"));
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn irsa_chain_is_created_read_back_and_a_second_apply_changes_nothing() {
    let tag = format!("{}", std::process::id());
    let cluster = format!("idt-irsa-{tag}");
    let issuer = block_on(create_cluster("eu-west-1", &cluster));
    let role = format!("idt-irsa-api-{tag}");
    let layer = format!(
        "aws:\n  accountId: \"{}\"\n  cluster: {cluster}\n  oidcIssuer: {issuer}\n  createOidcProvider: true\n\
         buckets:\n  data:\n    name: strata-idt-irsa-{tag}\nworkloads:\n  api:\n    iamRole: {role}\n",
        moto::ACCOUNT
    );
    let dir = project(&[("dev.aws.yaml", layer)]);
    let first = json_of(
        &aws_command(dir.path(), None)
            .args([
                "--format",
                "json",
                "apply",
                "dev-aws",
                "--approve",
                "--skip-helm",
            ])
            .output()
            .unwrap(),
        0,
    );
    let kinds: Vec<(String, String)> = outcomes(&first);
    assert_eq!(
        kinds,
        [
            ("s3_bucket".into(), "created".into()),
            ("iam_policy".into(), "created".into()),
            ("iam_oidc_provider".into(), "created".into()),
            ("iam_role".into(), "created".into()),
        ],
        "{first:#}"
    );
    // Read back through IAM, not through strata.
    let (trust, attached, tags) = block_on(read_role(&role));
    let want = rendered(dir.path(), "dev-aws", "iam/api.trust.json");
    assert!(
        strata::resources::aws::same_document(&trust, &want),
        "{trust:#}\n!=\n{want:#}"
    );
    let host = issuer.trim_start_matches("https://");
    assert_eq!(
        want["Statement"][0]["Condition"]["StringEquals"][format!("{host}:sub")],
        "system:serviceaccount:lakehouse:lakehouse-api"
    );
    assert_eq!(
        attached,
        [format!("arn:aws:iam::{}:policy/{role}", moto::ACCOUNT)]
    );
    assert!(
        tags.contains(&("managed-by".into(), "strata".into())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("strata-target".into(), "dev-aws".into())),
        "{tags:?}"
    );
    let providers = block_on(async {
        moto::iam()
            .await
            .list_open_id_connect_providers()
            .send()
            .await
            .unwrap()
            .open_id_connect_provider_list()
            .iter()
            .filter_map(|p| p.arn().map(str::to_owned))
            .collect::<Vec<_>>()
    });
    assert!(
        providers.contains(&format!(
            "arn:aws:iam::{}:oidc-provider/{host}",
            moto::ACCOUNT
        )),
        "{providers:?}"
    );
    // The ServiceAccount carries the role.
    let sa = std::fs::read_to_string(
        dir.path()
            .join("p/out/dev-aws/platform/templates/serviceaccounts.yaml"),
    )
    .unwrap();
    assert!(
        sa.contains(&format!(
            "eks.amazonaws.com/role-arn: arn:aws:iam::{}:role/{role}",
            moto::ACCOUNT
        )),
        "{sa}"
    );

    let again = json_of(
        &aws_command(dir.path(), None)
            .args([
                "--format",
                "json",
                "apply",
                "dev-aws",
                "--approve",
                "--skip-helm",
            ])
            .output()
            .unwrap(),
        0,
    );
    assert!(
        outcomes(&again).iter().all(|(_, o)| o == "unchanged"),
        "{again:#}"
    );
    assert_eq!(block_on(read_role(&role)), (trust, attached, tags));
}

#[test]
fn irsa_without_the_oidc_provider_stops_before_any_write_and_names_the_issuer() {
    let tag = format!("{}", std::process::id());
    // An issuer of its own (no cluster to check it against): no provider exists for it.
    let issuer = format!(
        "https://oidc.eks.eu-west-1.amazonaws.com/id/{:032X}",
        std::process::id() as u128 * 7919
    );
    let bucket = format!("strata-idt-noprov-{tag}");
    let layer = format!(
        "aws:\n  accountId: \"{}\"\n  cluster: null\n  oidcIssuer: {issuer}\n\
         buckets:\n  data:\n    name: {bucket}\nworkloads:\n  api:\n    iamRole: idt-noprov-{tag}\n",
        moto::ACCOUNT
    );
    let dir = project(&[("dev.aws.yaml", layer)]);
    let out = aws_command(dir.path(), None)
        .args(["apply", "dev-aws", "--approve", "--skip-helm"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("iam oidc provider for {issuer} does not exist"))
            && err.contains("createOidcProvider: true"),
        "{err}"
    );
    // The plan failed, so nothing was written: not even the bucket.
    let exists = block_on(async {
        moto::s3("eu-west-1")
            .await
            .head_bucket()
            .bucket(&bucket)
            .send()
            .await
            .is_ok()
    });
    assert!(!exists, "the bucket must not have been created");
}

#[test]
fn irsa_with_a_stale_issuer_is_refused() {
    let tag = format!("{}", std::process::id());
    let cluster = format!("idt-stale-{tag}");
    block_on(create_cluster("eu-west-1", &cluster));
    let layer = format!(
        "aws:\n  accountId: \"{}\"\n  cluster: {cluster}\n  oidcIssuer: https://oidc.eks.eu-west-1.amazonaws.com/id/00000000000000000000000000000000\n\
         buckets:\n  data:\n    name: strata-idt-stale-{tag}\n",
        moto::ACCOUNT
    );
    let dir = project(&[("dev.aws.yaml", layer)]);
    let out = aws_command(dir.path(), None)
        .args(["plan", "dev-aws"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "eks cluster {cluster}: its OIDC issuer is https://"
        )) && err.contains("hint: set aws.oidcIssuer to"),
        "{err}"
    );
}

/// The EKS stand-in in front of moto, with its request log.
pub(crate) fn eks_standin() -> (String, std::path::PathBuf, tempfile::TempDir) {
    let port = free_port();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("eks.jsonl");
    let args = vec![
        support::repo_root()
            .join("tests/standins/eks_pod_identity.py")
            .display()
            .to_string(),
        "--port".into(),
        port.to_string(),
        "--upstream".into(),
        moto::url().to_owned(),
        "--log".into(),
        log.display().to_string(),
    ];
    let url = start_server("python", &args, port, "/__standin/health");
    (url, log, logs)
}

pub(crate) fn mutating(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["mutating"] == Value::Bool(true))
        .count()
}

#[test]
fn pod_identity_chain_is_associated_and_a_second_apply_changes_nothing() {
    let tag = format!("{}", std::process::id());
    let cluster = format!("idt-pod-{tag}");
    block_on(create_cluster("us-east-1", &cluster));
    let (eks, log, _logs) = eks_standin();
    let role = format!("idt-pod-api-{tag}");
    let layer = format!(
        "aws:\n  accountId: \"{}\"\n  cluster: {cluster}\n\
         buckets:\n  data:\n    name: strata-idt-pod-{tag}\nworkloads:\n  api:\n    iamRole: {role}\n",
        moto::ACCOUNT
    );
    let dir = project(&[(
        "prod.aws.yaml",
        format!(
            "aws:\n  region: us-east-1\n  identity: podIdentity\n{}",
            layer.trim_start_matches("aws:\n")
        ),
    )]);
    let first = json_of(
        &aws_command(dir.path(), Some(&eks))
            .args([
                "--format",
                "json",
                "apply",
                "prod-aws",
                "--approve",
                "--skip-helm",
            ])
            .output()
            .unwrap(),
        0,
    );
    assert_eq!(
        outcomes(&first),
        [
            ("s3_bucket".to_owned(), "created".to_owned()),
            ("iam_policy".into(), "created".into()),
            ("iam_role".into(), "created".into()),
            ("eks_pod_identity_association".into(), "created".into()),
        ],
        "{first:#}"
    );
    let (trust, _, _) = block_on(read_role(&role));
    assert_eq!(
        trust["Statement"][0]["Principal"]["Service"],
        "pods.eks.amazonaws.com"
    );
    // The association, as EKS (the stand-in) holds it.
    let association = block_on(async {
        let conf = moto::sdk_config("us-east-1").await;
        let eks_client = aws_sdk_eks::Client::from_conf(
            aws_sdk_eks::config::Builder::from(&conf)
                .endpoint_url(&eks)
                .build(),
        );
        let list = eks_client
            .list_pod_identity_associations()
            .cluster_name(&cluster)
            .send()
            .await
            .expect("list");
        let id = list.associations()[0].association_id().unwrap().to_owned();
        let a = eks_client
            .describe_pod_identity_association()
            .cluster_name(&cluster)
            .association_id(id)
            .send()
            .await
            .expect("describe");
        let a = a.association().unwrap().clone();
        (
            list.associations().len(),
            a.namespace().unwrap().to_owned(),
            a.service_account().unwrap().to_owned(),
            a.role_arn().unwrap().to_owned(),
        )
    });
    assert_eq!(
        association,
        (
            1,
            "lakehouse".to_owned(),
            "lakehouse-api".to_owned(),
            format!("arn:aws:iam::{}:role/{role}", moto::ACCOUNT)
        )
    );
    // No IRSA annotation on a Pod Identity service account.
    let sa = std::fs::read_to_string(
        dir.path()
            .join("p/out/prod-aws/platform/templates/serviceaccounts.yaml"),
    )
    .unwrap();
    assert!(!sa.contains("eks.amazonaws.com/role-arn"), "{sa}");

    let writes = mutating(&log);
    assert_eq!(writes, 1, "one CreatePodIdentityAssociation");
    let again = json_of(
        &aws_command(dir.path(), Some(&eks))
            .args([
                "--format",
                "json",
                "apply",
                "prod-aws",
                "--approve",
                "--skip-helm",
            ])
            .output()
            .unwrap(),
        0,
    );
    assert!(
        outcomes(&again).iter().all(|(_, o)| o == "unchanged"),
        "{again:#}"
    );
    assert_eq!(mutating(&log), writes, "the second apply wrote to EKS");
}

/// Another apply creates the association between this one's read and its create: EKS
/// answers ResourceInUseException. The stand-in's `after` fault makes exactly that
/// (the create happens, the answer is the conflict): apply reads again, finds the
/// association with its role, and says so; no second association, no second create.
#[test]
fn a_lost_race_to_create_the_association_converges_without_a_second_one() {
    let tag = format!("{}", std::process::id());
    let cluster = format!("idt-race-{tag}");
    block_on(create_cluster("us-east-1", &cluster));
    let eks = support::standins::Standin::eks_pod_identity(moto::url(), &[]);
    eks.fault(serde_json::json!({
        "op": "CreatePodIdentityAssociation",
        "status": 409,
        "error": "ResourceInUseException",
        "after": true,
    }));
    let role = format!("idt-race-api-{tag}");
    let dir = project(&[(
        "prod.aws.yaml",
        format!(
            "aws:\n  region: us-east-1\n  identity: podIdentity\n  accountId: \"{}\"\n  cluster: {cluster}\n\
             buckets:\n  data:\n    name: strata-idt-race-{tag}\nworkloads:\n  api:\n    iamRole: {role}\n",
            moto::ACCOUNT
        ),
    )]);
    let evidence = json_of(
        &aws_command(dir.path(), Some(&eks.url))
            .args([
                "--format",
                "json",
                "apply",
                "prod-aws",
                "--approve",
                "--skip-helm",
            ])
            .output()
            .unwrap(),
        0,
    );
    let association = outcomes(&evidence)
        .into_iter()
        .find(|(kind, _)| kind == "eks_pod_identity_association")
        .map(|(_, outcome)| outcome);
    assert_eq!(association.as_deref(), Some("unchanged"), "{evidence:#}");
    let creates: Vec<String> = eks
        .writes()
        .into_iter()
        .filter(|w| w.starts_with("CreatePodIdentityAssociation"))
        .collect();
    assert_eq!(creates.len(), 1, "{creates:?}");
    let state = eks.state();
    let held: Vec<&Value> = state["associations"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    assert_eq!(held.len(), 1, "{state:#}");
    assert_eq!(
        held[0]["roleArn"],
        format!("arn:aws:iam::{}:role/{role}", moto::ACCOUNT),
        "{state:#}"
    );
}

pub(crate) fn iam_standin(
    project: &str,
    not_yet_reads: u32,
) -> (String, std::path::PathBuf, tempfile::TempDir) {
    let port = free_port();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("iam.jsonl");
    let args = vec![
        support::repo_root()
            .join("tests/standins/gcp_iam.py")
            .display()
            .to_string(),
        "--port".into(),
        port.to_string(),
        "--project".into(),
        project.into(),
        "--workload-pools".into(),
        project.into(),
        "--not-yet-reads".into(),
        not_yet_reads.to_string(),
        "--log".into(),
        log.display().to_string(),
    ];
    let url = start_server("python", &args, port, "/__standin/health");
    (url, log, logs)
}

pub(crate) fn gcp_command(dir: &Path, iam: &str) -> std::process::Command {
    let host = gcs_emulator::host();
    assert_loopback(host);
    assert_loopback(iam);
    let mut cmd = support::strata();
    cmd.arg("-C")
        .arg(dir.join("p"))
        .env("STORAGE_EMULATOR_HOST", host)
        .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM", iam)
        .env("GOOGLE_OAUTH_ACCESS_TOKEN", "test-token")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS");
    cmd
}

#[test]
fn gcp_chain_creates_the_account_binds_workload_identity_and_the_bucket() {
    let tag = format!("{}", std::process::id());
    let project_id = "lakehouse-dev-4821";
    let (iam, log, _logs) = iam_standin(project_id, 2);
    let bucket = format!("strata-idt-gcp-{tag}");
    let layer = format!("gcp:\n  location: US\nbuckets:\n  data:\n    name: {bucket}\n");
    let dir = project(&[("dev.gcp.yaml", layer)]);
    let first = json_of(
        &gcp_command(dir.path(), &iam)
            .args([
                "--format",
                "json",
                "apply",
                "dev-gcp",
                "--approve",
                "--skip-helm",
            ])
            .output()
            .unwrap(),
        0,
    );
    assert_eq!(
        outcomes(&first),
        [
            ("gcs_bucket".to_owned(), "created".to_owned()),
            ("gcp_service_account".into(), "created".into()),
            ("gcp_service_account_iam".into(), "created".into()),
            ("gcs_bucket_iam".into(), "created".into()),
        ],
        "{first:#}"
    );
    let email = format!("lakehouse-dev-api@{project_id}.iam.gserviceaccount.com");
    let (account, policy) = block_on(async {
        let http = crate::support::http();
        let account: Value = http
            .get(format!(
                "{iam}/v1/projects/{project_id}/serviceAccounts/{email}"
            ))
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let policy: Value = http
            .post(format!(
                "{iam}/v1/projects/{project_id}/serviceAccounts/{email}:getIamPolicy"
            ))
            .bearer_auth("t")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (account, policy)
    });
    assert_eq!(account["email"], email.as_str(), "{account:#}");
    assert_eq!(
        account["description"],
        "managed-by=strata strata-target=dev-gcp"
    );
    assert_eq!(
        policy["bindings"],
        serde_json::json!([{"role": "roles/iam.workloadIdentityUser",
            "members": [format!("serviceAccount:{project_id}.svc.id.goog[lakehouse/lakehouse-api]")]}]),
        "{policy:#}"
    );
    let bucket_policy = crate::support::get_json(&format!(
        "{}/b/{bucket}/iam",
        strata::resources::gcp::emulator_base(gcs_emulator::host())
    ));
    let members: Vec<String> = bucket_policy["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["role"] == "roles/storage.objectUser")
        .flat_map(|b| b["members"].as_array().unwrap().clone())
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(members, [format!("serviceAccount:{email}")]);

    let writes = mutating(&log);
    let again = json_of(
        &gcp_command(dir.path(), &iam)
            .args([
                "--format",
                "json",
                "apply",
                "dev-gcp",
                "--approve",
                "--skip-helm",
            ])
            .output()
            .unwrap(),
        0,
    );
    assert!(
        outcomes(&again).iter().all(|(_, o)| o == "unchanged"),
        "{again:#}"
    );
    assert_eq!(mutating(&log), writes, "the second apply wrote to IAM");
}

/// The real helm v4 binary (installed by scripts/test into the venv).
fn real_helm() -> std::path::PathBuf {
    let helm = std::env::var_os("STRATA_TEST_HELM")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| support::venv_bin().join("helm"));
    assert!(
        helm.exists(),
        "helm v4 is missing at {}: run scripts/test",
        helm.display()
    );
    helm
}

#[test]
fn apply_runs_platform_then_each_release_through_the_real_helm_with_its_exact_argv() {
    let tag = format!("{}", std::process::id());
    let issuer = format!(
        "https://oidc.eks.eu-west-1.amazonaws.com/id/{:032X}",
        std::process::id() as u128 * 104729
    );
    let context = format!("idt-helm-{tag}");
    let layer = format!(
        "kube:\n  context: {context}\naws:\n  accountId: \"{}\"\n  cluster: null\n  oidcIssuer: {issuer}\n  createOidcProvider: true\n\
         buckets:\n  data:\n    name: strata-idt-helm-{tag}\nworkloads:\n  api:\n    iamRole: idt-helm-{tag}\n",
        moto::ACCOUNT
    );
    let dir = project(&[("dev.aws.yaml", layer)]);
    // A kube API that answers what `helm upgrade --install --dry-run=client` asks.
    let port = free_port();
    let kube_log = dir.path().join("kube.jsonl");
    let args = vec![
        support::repo_root()
            .join("tests/standins/fake_kube.py")
            .display()
            .to_string(),
        "--port".into(),
        port.to_string(),
        "--log".into(),
        kube_log.display().to_string(),
    ];
    let kube = start_server("python", &args, port, "/version");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster: {{server: \"{kube}\"}}\n  name: c\n\
             contexts:\n- context: {{cluster: c, user: u}}\n  name: \"{context}\"\nusers:\n- name: u\n  user: {{token: x}}\n"
        ),
    )
    .unwrap();
    // strata's argv, run by the real helm with --dry-run=client added (so helm renders
    // both charts for real and installs nothing).
    let wrapper = dir.path().join("helm-dry-run");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec \"{}\" \"$@\" --dry-run=client\n",
            real_helm().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = aws_command(dir.path(), None)
        .args(["--format", "json", "apply", "dev-aws", "--approve"])
        .env("STRATA_HELM", &wrapper)
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    let evidence = json_of(&out, 0);
    let runs: Vec<(Vec<String>, Value)> = evidence["helm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["argv"].as_array().unwrap()[1..]
                    .iter()
                    .map(|a| a.as_str().unwrap().to_owned())
                    .collect(),
                r["exitCode"].clone(),
            )
        })
        .collect();
    let out_dir = dir.path().join("p/out/dev-aws");
    let p = dir.path().join("p");
    assert_eq!(
        runs,
        [
            (
                [
                    "upgrade",
                    "--install",
                    "lakehouse-platform",
                    &out_dir.join("platform").display().to_string(),
                    "--namespace",
                    "default",
                    "--kube-context",
                    &context,
                    "--wait",
                    "--rollback-on-failure",
                    "--timeout",
                    "5m",
                ]
                .map(str::to_owned)
                .to_vec(),
                Value::from(0)
            ),
            (
                [
                    "upgrade",
                    "--install",
                    "app",
                    &p.join("charts/app").display().to_string(),
                    "--namespace",
                    "lakehouse",
                    "--kube-context",
                    &context,
                    "--wait",
                    "--rollback-on-failure",
                    "--timeout",
                    "5m",
                    "--values",
                    &out_dir
                        .join("releases/app.values.yaml")
                        .display()
                        .to_string(),
                ]
                .map(str::to_owned)
                .to_vec(),
                Value::from(0)
            ),
        ],
        "{evidence:#}"
    );
    // helm asked the (fake) cluster for each release's history, and wrote nothing.
    let requests = std::fs::read_to_string(&kube_log).unwrap();
    assert!(
        requests.contains("/api/v1/namespaces/default/secrets"),
        "{requests}"
    );
    assert!(
        requests.contains("/api/v1/namespaces/lakehouse/secrets"),
        "{requests}"
    );
    assert!(!requests.contains("\"POST\""), "{requests}");
}

#[test]
fn a_missing_helm_is_refused_before_any_cloud_write() {
    let tag = format!("{}", std::process::id());
    let bucket = format!("strata-idt-nohelm-{tag}");
    let layer = format!(
        "aws:\n  accountId: \"{}\"\n  identity: podIdentity\n  cluster: idt-nohelm-{tag}\nbuckets:\n  data:\n    name: {bucket}\n",
        moto::ACCOUNT
    );
    let dir = project(&[("dev.aws.yaml", layer)]);
    let out = aws_command(dir.path(), None)
        .args(["apply", "dev-aws", "--approve"])
        .env("STRATA_HELM", dir.path().join("no-such-helm"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("helm could not be run") && err.contains("nothing was written"),
        "{err}"
    );
    let exists = block_on(async {
        moto::s3("eu-west-1")
            .await
            .head_bucket()
            .bucket(&bucket)
            .send()
            .await
            .is_ok()
    });
    assert!(!exists, "no bucket may be created when helm is missing");
}
