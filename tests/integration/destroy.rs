//! destroy and `plan --destroy`, through the binary, read back through the servers
//! (moto, the EKS and Google IAM stand-ins, the GCS emulator), never through strata:
//! - dev-aws (IRSA): everything strata made goes, a non-empty bucket is refused without
//!   `--force-empty` (nothing deleted) and emptied with it (versions and delete
//!   markers), the OIDC provider stays while a foreign role trusts it;
//! - prod-aws (Pod Identity, protected): a bare `--approve` is refused, the retained
//!   bucket survives;
//! - dev-gcp: strata's members leave a retained bucket's policy and a foreign member
//!   stays; a fault between two deletions, then a re-run, finishes the job;
//! - the apply lock refuses a second run while one holds it.

use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{Value, json};

use crate::identity::{
    aws_command, block_on, create_cluster, eks_standin, gcp_command, iam_standin, json_of, project,
};
use crate::support::{RecordingProxy, gcs_emulator, moto, text};

fn items(plan: &Value) -> Vec<(String, String, String)> {
    plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_owned(),
                i["name"].as_str().unwrap().to_owned(),
                i["op"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn done(evidence: &Value) -> Vec<(String, String, String)> {
    evidence["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["name"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn triple(kind: &str, name: &str, what: &str) -> (String, String, String) {
    (kind.into(), name.into(), what.into())
}

async fn role_exists(name: &str) -> bool {
    moto::iam()
        .await
        .get_role()
        .role_name(name)
        .send()
        .await
        .is_ok()
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

async fn provider_exists(arn: &str) -> bool {
    moto::iam()
        .await
        .get_open_id_connect_provider()
        .open_id_connect_provider_arn(arn)
        .send()
        .await
        .is_ok()
}

async fn bucket_exists(region: &str, name: &str) -> bool {
    moto::s3(region)
        .await
        .head_bucket()
        .bucket(name)
        .send()
        .await
        .is_ok()
}

/// Every version and delete marker in the bucket, as (key, is a delete marker).
async fn versions(region: &str, bucket: &str) -> Vec<(String, bool)> {
    let out = moto::s3(region)
        .await
        .list_object_versions()
        .bucket(bucket)
        .send()
        .await
        .expect("list versions");
    let mut all: Vec<(String, bool)> = out
        .versions()
        .iter()
        .map(|v| (v.key().unwrap().to_owned(), false))
        .chain(
            out.delete_markers()
                .iter()
                .map(|m| (m.key().unwrap().to_owned(), true)),
        )
        .collect();
    all.sort();
    all
}

fn strata_at(dir: &Path, endpoint: &str) -> std::process::Command {
    let mut cmd = aws_command(dir, None);
    cmd.env("AWS_ENDPOINT_URL", endpoint);
    cmd
}

#[test]
fn destroy_dev_aws_removes_what_strata_made_and_keeps_a_provider_another_role_uses() {
    let tag = format!("{}", std::process::id());
    let issuer = format!(
        "https://oidc.eks.eu-west-1.amazonaws.com/id/{:032X}",
        std::process::id() as u128 * 48611
    );
    let bucket = format!("strata-destroy-irsa-{tag}");
    let role = format!("destroy-irsa-{tag}");
    let layer = format!(
        "aws:\n  accountId: \"{}\"\n  cluster: null\n  oidcIssuer: {issuer}\n  createOidcProvider: true\n\
         buckets:\n  data:\n    name: {bucket}\n    retain: false\n    tlsOnly: false\nworkloads:\n  api:\n    iamRole: {role}\n",
        moto::ACCOUNT
    );
    let dir = project(&[("dev.aws.yaml", layer)]);
    let run = |args: &[&str]| aws_command(dir.path(), None).args(args).output().unwrap();
    json_of(
        &run(&[
            "--format",
            "json",
            "apply",
            "dev-aws",
            "--approve",
            "--skip-helm",
        ]),
        0,
    );
    let policy = format!("arn:aws:iam::{}:policy/{role}", moto::ACCOUNT);
    let host = issuer.trim_start_matches("https://");
    let provider = format!("arn:aws:iam::{}:oidc-provider/{host}", moto::ACCOUNT);
    // What a user did besides: objects with two versions and a delete marker, and a
    // role of their own that trusts the same OIDC provider.
    let foreign = format!("foreign-{tag}");
    block_on(async {
        let s3 = moto::s3("eu-west-1").await;
        for body in ["one", "two"] {
            s3.put_object()
                .bucket(&bucket)
                .key("a.txt")
                .body(ByteStream::from_static(body.as_bytes()))
                .send()
                .await
                .expect("put");
        }
        s3.put_object()
            .bucket(&bucket)
            .key("b.txt")
            .body(ByteStream::from_static(b"b"))
            .send()
            .await
            .expect("put");
        s3.delete_object()
            .bucket(&bucket)
            .key("b.txt")
            .send()
            .await
            .expect("delete marker");
        let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Federated": provider}, "Action": "sts:AssumeRoleWithWebIdentity"}]});
        moto::iam()
            .await
            .create_role()
            .role_name(&foreign)
            .assume_role_policy_document(trust.to_string())
            .send()
            .await
            .expect("foreign role");
    });
    assert_eq!(block_on(versions("eu-west-1", &bucket)).len(), 4);

    // plan --destroy lists it all, and moto sees no write.
    let proxy = RecordingProxy::start(moto::url());
    let out = strata_at(dir.path(), &proxy.url)
        .args(["--format", "json", "plan", "dev-aws", "--destroy"])
        .output()
        .unwrap();
    let plan = json_of(&out, 1);
    assert_eq!(
        items(&plan),
        [
            triple("iam_policy", &policy, "delete"),
            triple("iam_role", &role, "delete"),
            triple("iam_oidc_provider", &provider, "keep"),
            triple("s3_bucket", &bucket, "delete"),
        ],
        "{plan:#}"
    );
    assert!(
        plan["items"][2]["why"]
            .as_str()
            .unwrap()
            .contains(&format!("role {foreign}")),
        "{plan:#}"
    );
    assert_eq!(plan["items"][3]["objects"], 4, "{plan:#}");
    assert!(!proxy.requests().is_empty());
    assert_eq!(proxy.writes().len(), 0, "plan --destroy wrote");
    // destroy without --approve shows the plan and deletes nothing.
    let shown = strata_at(dir.path(), &proxy.url)
        .args(["destroy", "dev-aws"])
        .output()
        .unwrap();
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown.stderr));
    let shown = text(&shown.stdout);
    assert!(
        shown.contains("plan destroy dev-aws (aws account 123456789012, eu-west-1)")
            && shown.contains(&format!("  - delete s3_bucket {bucket} (4 objects)"))
            && shown.contains(&format!(
                "  = keep iam_oidc_provider {provider}: still used"
            ))
            && shown.contains("3 to delete, 1 kept, 0 absent")
            && shown.contains("re-run with --approve"),
        "{shown}"
    );
    assert_eq!(proxy.writes().len(), 0, "destroy without --approve wrote");

    // Non-empty without --force-empty: refused by name and count, nothing deleted.
    let refused = run(&["destroy", "dev-aws", "--approve", "--skip-helm"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stdout));
    let err = text(&refused.stderr);
    assert!(
        err.contains(&format!("s3_bucket {bucket} holds 4 objects"))
            && err.contains("--force-empty")
            && err.contains("nothing was deleted"),
        "{err}"
    );
    assert!(block_on(role_exists(&role)) && block_on(policy_exists(&policy)));

    let evidence = json_of(
        &run(&[
            "--format",
            "json",
            "destroy",
            "dev-aws",
            "--approve",
            "--force-empty",
            "--skip-helm",
        ]),
        0,
    );
    assert_eq!(evidence["status"], "destroyed");
    assert_eq!(
        done(&evidence),
        [
            triple("iam_policy", &policy, "deleted"),
            triple("iam_role", &role, "deleted"),
            triple("s3_bucket", &bucket, "deleted"),
            triple("iam_oidc_provider", &provider, "kept"),
        ],
        "{evidence:#}"
    );
    assert!(!block_on(role_exists(&role)), "role left");
    assert!(!block_on(policy_exists(&policy)), "policy left");
    assert!(
        !block_on(bucket_exists("eu-west-1", &bucket)),
        "bucket left"
    );
    assert!(
        block_on(provider_exists(&provider)),
        "provider in use was deleted"
    );
    assert!(
        block_on(role_exists(&foreign)),
        "the foreign role was touched"
    );

    // Once nothing else trusts it, the provider strata made goes too.
    block_on(async {
        moto::iam()
            .await
            .delete_role()
            .role_name(&foreign)
            .send()
            .await
            .unwrap()
    });
    let last = json_of(
        &run(&[
            "--format",
            "json",
            "destroy",
            "dev-aws",
            "--approve",
            "--skip-helm",
        ]),
        0,
    );
    assert_eq!(
        done(&last),
        [triple("iam_oidc_provider", &provider, "deleted")],
        "{last:#}"
    );
    assert!(!block_on(provider_exists(&provider)));
    // Nothing left: plan --destroy says so, exit 0.
    let after = json_of(
        &run(&["--format", "json", "plan", "dev-aws", "--destroy"]),
        0,
    );
    assert!(
        items(&after).iter().all(|(_, _, op)| op == "absent"),
        "{after:#}"
    );
}

#[test]
fn destroy_prod_aws_needs_the_name_repeated_and_keeps_the_retained_bucket() {
    let tag = format!("{}", std::process::id());
    let cluster = format!("destroy-pod-{tag}");
    block_on(create_cluster("us-east-1", &cluster));
    let (eks, _log, _logs) = eks_standin();
    let role = format!("destroy-pod-{tag}");
    let bucket = format!("strata-destroy-pod-{tag}");
    let layer = format!(
        "aws:\n  region: us-east-1\n  identity: podIdentity\n  accountId: \"{}\"\n  cluster: {cluster}\n\
         buckets:\n  data:\n    name: {bucket}\nworkloads:\n  api:\n    iamRole: {role}\n",
        moto::ACCOUNT
    );
    let dir = project(&[("prod.aws.yaml", layer)]);
    let run = |args: &[&str]| {
        aws_command(dir.path(), Some(&eks))
            .args(args)
            .output()
            .unwrap()
    };
    json_of(
        &run(&[
            "--format",
            "json",
            "apply",
            "prod-aws",
            "--approve",
            "--skip-helm",
        ]),
        0,
    );
    let associations = || -> usize {
        crate::support::get_json(&format!("{eks}/__standin/state"))["associations"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(associations(), 1);

    let bare = run(&["destroy", "prod-aws", "--approve", "--skip-helm"]);
    assert_eq!(bare.status.code(), Some(2));
    let err = text(&bare.stderr);
    assert!(
        err.contains("target prod-aws is protected") && err.contains("--approve=prod-aws"),
        "{err}"
    );
    assert_eq!(
        associations(),
        1,
        "a refused destroy deleted the association"
    );

    let evidence = json_of(
        &run(&[
            "--format",
            "json",
            "destroy",
            "prod-aws",
            "--approve=prod-aws",
            "--skip-helm",
        ]),
        0,
    );
    let policy = format!("arn:aws:iam::{}:policy/{role}", moto::ACCOUNT);
    assert_eq!(
        done(&evidence),
        [
            triple(
                "eks_pod_identity_association",
                &format!("{cluster}/lakehouse/lakehouse-api"),
                "deleted"
            ),
            triple("iam_policy", &policy, "deleted"),
            triple("iam_role", &role, "deleted"),
            triple("s3_bucket", &bucket, "kept"),
        ],
        "{evidence:#}"
    );
    assert!(
        evidence["resources"][3]["why"]
            .as_str()
            .unwrap()
            .starts_with("retained"),
        "{evidence:#}"
    );
    assert_eq!(associations(), 0);
    assert!(!block_on(role_exists(&role)));
    assert!(!block_on(policy_exists(&policy)));
    assert!(
        block_on(bucket_exists("us-east-1", &bucket)),
        "retained bucket deleted"
    );
}

async fn gcs_json(method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let base = strata::resources::gcp::emulator_base(gcs_emulator::host());
    let mut req = crate::support::http().request(method, format!("{base}{path}"));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn gcs_upload(bucket: &str, name: &str, content: &str) {
    let host = gcs_emulator::host().trim_end_matches('/');
    let resp = crate::support::http()
        .post(format!(
            "{host}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}"
        ))
        .header("content-type", "text/plain")
        .body(content.to_owned())
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "upload {name}: {}",
        resp.status()
    );
}

#[test]
fn destroy_dev_gcp_finishes_after_a_fault_and_keeps_foreign_members_of_a_retained_bucket() {
    let tag = format!("{}", std::process::id());
    let project_id = "lakehouse-dev-4821";
    let (iam, _log, _logs) = iam_standin(project_id, 0);
    let kept = format!("strata-destroy-gcp-{tag}");
    let scratch = format!("strata-destroy-gcp-s-{tag}");
    let layer = format!(
        "gcp:\n  location: US\nbuckets:\n  data:\n    name: {kept}\n  scratch:\n    name: {scratch}\n    versioning: false\n    retain: false\n"
    );
    let dir = project(&[("dev.gcp.yaml", layer)]);
    let run = |args: &[&str]| gcp_command(dir.path(), &iam).args(args).output().unwrap();
    json_of(
        &run(&[
            "--format",
            "json",
            "apply",
            "dev-gcp",
            "--approve",
            "--skip-helm",
        ]),
        0,
    );
    let email = format!("lakehouse-dev-api@{project_id}.iam.gserviceaccount.com");
    let someone = "user:someone@example.com";
    block_on(async {
        let (_, mut policy) = gcs_json(reqwest::Method::GET, &format!("/b/{kept}/iam"), None).await;
        let bindings = policy["bindings"].as_array_mut().unwrap();
        bindings.push(json!({"role": "roles/storage.objectViewer", "members": [someone]}));
        let (status, _) = gcs_json(
            reqwest::Method::PUT,
            &format!("/b/{kept}/iam"),
            Some(policy),
        )
        .await;
        assert_eq!(status, 200);
        gcs_upload(&scratch, "x.txt", "x").await;
    });
    // A run holding the lock (its object in the first bucket) keeps destroy out.
    block_on(gcs_upload(
        &kept,
        ".strata-lock.json",
        &json!({"command": "apply", "owner": "ci@runner-7", "pid": 99, "since": 1}).to_string(),
    ));
    let locked = run(&[
        "destroy",
        "dev-gcp",
        "--approve",
        "--force-empty",
        "--skip-helm",
    ]);
    assert_eq!(locked.status.code(), Some(2));
    let err = text(&locked.stderr);
    assert!(
        err.contains(&format!("gs://{kept}/.strata-lock.json"))
            && err.contains("the lock is stale")
            && err.contains(&format!("gcloud storage rm gs://{kept}/.strata-lock.json")),
        "{err}"
    );
    block_on(async {
        let (status, _) = gcs_json(
            reqwest::Method::DELETE,
            &format!("/b/{kept}/o/.strata-lock.json"),
            None,
        )
        .await;
        assert!(status < 300, "{status}");
    });
    // The Google IAM stand-in refuses the service account's deletion once.
    block_on(async {
        let resp = crate::support::http()
            .post(format!("{iam}/__standin/faults"))
            .json(&json!({"op": "delete", "status": 400, "count": 1,
                "message": "injected by the test"}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
    });
    let first = run(&[
        "--format",
        "json",
        "destroy",
        "dev-gcp",
        "--approve",
        "--force-empty",
        "--skip-helm",
    ]);
    let first = json_of(&first, 2);
    assert_eq!(first["status"], "failed");
    assert_eq!(
        done(&first)[..3],
        [
            triple("gcs_bucket_iam", &kept, "deleted"),
            triple("gcp_service_account_iam", &email, "deleted"),
            triple("gcp_service_account", &email, "failed"),
        ],
        "{first:#}"
    );
    // The scratch bucket was not reached.
    let (status, _) = block_on(gcs_json(
        reqwest::Method::GET,
        &format!("/b/{scratch}"),
        None,
    ));
    assert_eq!(status, 200);

    let again = json_of(
        &run(&[
            "--format",
            "json",
            "destroy",
            "dev-gcp",
            "--approve",
            "--force-empty",
            "--skip-helm",
        ]),
        0,
    );
    assert_eq!(
        done(&again),
        [
            triple("gcp_service_account", &email, "deleted"),
            triple("gcs_bucket", &scratch, "deleted"),
            triple("gcs_bucket", &kept, "kept"),
        ],
        "{again:#}"
    );
    block_on(async {
        let (status, _) = gcs_json(reqwest::Method::GET, &format!("/b/{scratch}"), None).await;
        assert_eq!(status, 404, "scratch bucket left");
        let (status, _) = gcs_json(reqwest::Method::GET, &format!("/b/{kept}"), None).await;
        assert_eq!(status, 200, "retained bucket deleted");
        let (_, policy) = gcs_json(reqwest::Method::GET, &format!("/b/{kept}/iam"), None).await;
        let members: Vec<String> = policy["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
            .map(|m| m.as_str().unwrap().to_owned())
            .collect();
        assert!(members.contains(&someone.to_owned()), "{policy:#}");
        assert!(
            !members.contains(&format!("serviceAccount:{email}")),
            "{policy:#}"
        );
        let account = crate::support::http()
            .get(format!(
                "{iam}/v1/projects/{project_id}/serviceAccounts/{email}"
            ))
            .bearer_auth("t")
            .send()
            .await
            .unwrap();
        assert_eq!(account.status().as_u16(), 404, "service account left");
    });
}

/// The lock of an AWS target: an IAM policy only one run can create.
fn lock_arn(bucket: &str) -> String {
    format!(
        "arn:aws:iam::{}:policy/strata-lock/strata-lock-{bucket}",
        moto::ACCOUNT
    )
}

async fn lock_exists(bucket: &str) -> bool {
    policy_exists(&lock_arn(bucket)).await
}

#[test]
fn a_held_lock_refuses_apply_and_destroy_and_a_stale_one_says_how_to_remove_it() {
    let tag = format!("{}", std::process::id());
    let bucket = format!("strata-destroy-lock-{tag}");
    let role = format!("destroy-lock-{tag}");
    let issuer = format!(
        "https://oidc.eks.eu-west-1.amazonaws.com/id/{:032X}",
        std::process::id() as u128 * 7727
    );
    let layer = format!(
        "aws:\n  accountId: \"{}\"\n  cluster: null\n  oidcIssuer: {issuer}\n  createOidcProvider: true\n\
         buckets:\n  data:\n    name: {bucket}\n    retain: false\nworkloads:\n  api:\n    iamRole: {role}\n",
        moto::ACCOUNT
    );
    let dir = project(&[("dev.aws.yaml", layer)]);
    let run = |args: &[&str]| aws_command(dir.path(), None).args(args).output().unwrap();
    // apply takes the lock and removes it at the end.
    json_of(
        &run(&[
            "--format",
            "json",
            "apply",
            "dev-aws",
            "--approve",
            "--skip-helm",
        ]),
        0,
    );
    assert!(!block_on(lock_exists(&bucket)), "the lock was left behind");

    let hold = |since: u64| {
        block_on(async {
            let iam = moto::iam().await;
            let _ = iam
                .delete_policy()
                .policy_arn(lock_arn(&bucket))
                .send()
                .await;
            let holder = json!({"target": "dev-aws", "command": "apply", "owner": "ci@runner-7",
                "pid": 4242, "since": since});
            iam.create_policy()
                .policy_name(format!("strata-lock-{bucket}"))
                .path("/strata-lock/")
                .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"iam:GetPolicy","Resource":"*"}]}"#)
                .description(holder.to_string())
                .send()
                .await
                .expect("lock planted")
        })
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    hold(now);
    // Something apply would change, to see that it does not.
    let untag = || {
        block_on(async {
            moto::iam()
                .await
                .untag_role()
                .role_name(&role)
                .tag_keys("strata-env")
                .send()
                .await
                .unwrap()
        })
    };
    let role_tags = || {
        block_on(async {
            moto::iam()
                .await
                .list_role_tags()
                .role_name(&role)
                .send()
                .await
                .unwrap()
                .tags()
                .iter()
                .map(|t| t.key().to_owned())
                .collect::<Vec<_>>()
        })
    };
    untag();
    let refused = run(&["apply", "dev-aws", "--approve", "--skip-helm"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stdout));
    let err = text(&refused.stderr);
    assert!(
        err.contains("target dev-aws is locked: `strata apply` by ci@runner-7 (pid 4242)")
            && err.contains(&lock_arn(&bucket))
            && err.contains("wait for that run to finish"),
        "{err}"
    );
    assert!(
        !role_tags().contains(&"strata-env".to_owned()),
        "a locked apply wrote"
    );
    let destroy = run(&["destroy", "dev-aws", "--approve", "--skip-helm"]);
    assert_eq!(destroy.status.code(), Some(2));
    assert!(
        text(&destroy.stderr).contains("is locked"),
        "{}",
        text(&destroy.stderr)
    );
    assert!(block_on(role_exists(&role)), "a locked destroy deleted");

    // An old lock: reported stale, with the command that removes it.
    hold(now - 3 * 3600);
    let stale = run(&["apply", "dev-aws", "--approve", "--skip-helm"]);
    assert_eq!(stale.status.code(), Some(2));
    let err = text(&stale.stderr);
    assert!(
        err.contains("the lock is stale")
            && err.contains(&format!(
                "aws iam delete-policy --policy-arn {}",
                lock_arn(&bucket)
            )),
        "{err}"
    );
    // Removed as told, apply runs (and puts the tag back), and leaves no lock.
    block_on(async {
        moto::iam()
            .await
            .delete_policy()
            .policy_arn(lock_arn(&bucket))
            .send()
            .await
            .unwrap()
    });
    json_of(
        &run(&[
            "--format",
            "json",
            "apply",
            "dev-aws",
            "--approve",
            "--skip-helm",
        ]),
        0,
    );
    assert!(role_tags().contains(&"strata-env".to_owned()));
    assert!(!block_on(lock_exists(&bucket)));
    json_of(
        &run(&[
            "--format",
            "json",
            "destroy",
            "dev-aws",
            "--approve",
            "--skip-helm",
        ]),
        0,
    );
    assert!(!block_on(bucket_exists("eu-west-1", &bucket)));
    assert!(!block_on(lock_exists(&bucket)));
}

/// Two real runs overlapping: the first apply is parked by the EKS stand-in (pause on
/// CreatePodIdentityAssociation) while it holds the lock; a second apply of the same
/// target refuses, naming the first; once resumed, the first finishes and the lock is
/// gone.
#[test]
fn a_second_apply_while_the_first_is_paused_mid_way_is_refused() {
    let tag = format!("{}", std::process::id());
    let cluster = format!("destroy-overlap-{tag}");
    block_on(create_cluster("us-east-1", &cluster));
    let (eks, _log, _logs) = eks_standin();
    let bucket = format!("strata-destroy-overlap-{tag}");
    let layer = format!(
        "aws:\n  region: us-east-1\n  identity: podIdentity\n  accountId: \"{}\"\n  cluster: {cluster}\n\
         buckets:\n  data:\n    name: {bucket}\nworkloads:\n  api:\n    iamRole: destroy-overlap-{tag}\n",
        moto::ACCOUNT
    );
    let dir = project(&[("prod.aws.yaml", layer)]);
    let control = |path: &str, body: Value| {
        block_on(async {
            crate::support::http()
                .post(format!("{eks}/__standin/{path}"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    assert_eq!(
        control(
            "pause",
            json!({"op": "CreatePodIdentityAssociation", "timeout": 60})
        ),
        200
    );
    let args = [
        "--format",
        "json",
        "apply",
        "prod-aws",
        "--approve",
        "--skip-helm",
    ];
    let first = aws_command(dir.path(), Some(&eks))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let parked = crate::support::get_json(&format!("{eks}/__standin/paused?wait=1&timeout=60"));
    assert_eq!(parked["waiting"], 1, "{parked}");
    let second = aws_command(dir.path(), Some(&eks))
        .args(["apply", "prod-aws", "--approve", "--skip-helm"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "{}", text(&second.stdout));
    let err = text(&second.stderr);
    assert!(
        err.contains("target prod-aws is locked: `strata apply` by")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(control("resume", json!({})), 200);
    let first = first.wait_with_output().unwrap();
    let evidence = json_of(&first, 0);
    assert_eq!(evidence["status"], "applied");
    assert!(!block_on(lock_exists(&bucket)), "the lock outlived the run");
    json_of(
        &aws_command(dir.path(), Some(&eks))
            .args([
                "--format",
                "json",
                "destroy",
                "prod-aws",
                "--approve=prod-aws",
                "--skip-helm",
            ])
            .output()
            .unwrap(),
        0,
    );
}

/// The releases go first, last-installed first and `platform` last, each `helm status`
/// then `helm uninstall` with the context and namespace apply used; one that is not
/// installed is `absent`. (A stand-in helm records its argv.)
#[test]
fn destroy_uninstalls_the_releases_in_reverse_and_a_missing_one_is_absent() {
    let tag = format!("{}", std::process::id());
    let issuer = format!(
        "https://oidc.eks.eu-west-1.amazonaws.com/id/{:032X}",
        std::process::id() as u128 * 3571
    );
    let layer = format!(
        "kube:\n  context: ctx-{tag}\naws:\n  accountId: \"{}\"\n  cluster: null\n  oidcIssuer: {issuer}\n\
         buckets:\n  data:\n    name: strata-destroy-helm-{tag}\nworkloads:\n  api:\n    iamRole: destroy-helm-{tag}\n",
        moto::ACCOUNT
    );
    let dir = project(&[("dev.aws.yaml", layer)]);
    let log = dir.path().join("helm.log");
    let helm = dir.path().join("helm");
    std::fs::write(
        &helm,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\n\
             if [ \"$1 $2\" = \"status app\" ]; then echo 'Error: release: not found' >&2; exit 1; fi\nexit 0\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helm, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = aws_command(dir.path(), None)
        .args(["--format", "json", "destroy", "dev-aws", "--approve"])
        .env("STRATA_HELM", &helm)
        .output()
        .unwrap();
    let evidence = json_of(&out, 0);
    assert_eq!(
        done(&evidence),
        [
            triple("helm_release", "app", "absent"),
            triple("helm_release", "lakehouse-platform", "deleted"),
        ],
        "{evidence:#}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let scope = format!("--kube-context ctx-{tag}");
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            // helm is checked before the first deletion, as apply does before writing.
            "version --short".to_owned(),
            format!("status app --namespace lakehouse {scope}"),
            format!("status lakehouse-platform --namespace default {scope}"),
            format!("uninstall lakehouse-platform --namespace default {scope} --wait --timeout 5m"),
        ],
        "{calls}"
    );
}
