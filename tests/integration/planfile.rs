//! Plan files bind what a reviewer approved to what runs: `plan --out FILE` then
//! `apply FILE` applies exactly it; a changed render, a changed strata or a changed
//! cloud between the two makes `apply FILE` refuse, exit 2, with nothing written
//! (read back from moto, not from strata).

use std::path::Path;

use serde_json::Value;

use crate::support::{self, moto, text};

/// The lakehouse with dev-aws on moto: its own bucket and role names, IRSA with an
/// issuer of its own (the OIDC provider made by strata), no cluster.
fn project(tag: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = support::strata()
        .arg("init")
        .arg(dir.path().join("p"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let issuer = format!(
        "https://oidc.eks.eu-west-1.amazonaws.com/id/{:0>32}",
        tag.replace('-', "").to_uppercase()
    );
    std::fs::write(
        dir.path().join("p/environments/dev.aws.yaml"),
        format!(
            "kube:\n  context: ctx\naws:\n  accountId: \"{}\"\n  cluster: null\n  oidcIssuer: {issuer}\n  createOidcProvider: true\n\
             buckets:\n  data:\n    name: strata-plan-{tag}\nworkloads:\n  api:\n    iamRole: strata-plan-{tag}\n",
            moto::ACCOUNT
        ),
    )
    .unwrap();
    dir
}

fn strata(dir: &Path, args: &[&str]) -> std::process::Output {
    moto::command(dir)
        .current_dir(dir)
        .arg("-C")
        .arg(dir.join("p"))
        .args(args)
        .output()
        .expect("strata runs")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn bucket_exists(name: &str) -> bool {
    block_on(async {
        moto::s3("eu-west-1")
            .await
            .head_bucket()
            .bucket(name)
            .send()
            .await
            .is_ok()
    })
}

fn role_exists(name: &str) -> bool {
    block_on(async {
        moto::iam()
            .await
            .get_role()
            .role_name(name)
            .send()
            .await
            .is_ok()
    })
}

fn tag(what: &str) -> String {
    format!("{what}-{}", std::process::id())
}

#[test]
fn a_plan_file_is_deterministic_and_apply_file_applies_exactly_it() {
    let tag = tag("ok");
    let dir = project(&tag);
    let first = strata(dir.path(), &["plan", "dev-aws", "--out", "a.plan"]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));
    assert!(
        text(&first.stdout).contains("plan written to a.plan"),
        "{}",
        text(&first.stdout)
    );
    let again = strata(dir.path(), &["plan", "dev-aws", "--out", "b.plan"]);
    assert_eq!(again.status.code(), Some(1));
    let a = std::fs::read(dir.path().join("a.plan")).unwrap();
    assert_eq!(
        a,
        std::fs::read(dir.path().join("b.plan")).unwrap(),
        "same inputs, same live state: same bytes"
    );
    let plan: Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(plan["target"], "dev-aws");
    assert!(
        plan["artifacts"]["dev-aws/iam/api.policy.json"]
            .as_str()
            .is_some_and(|d| d.len() == 64)
    );
    let kinds: Vec<&str> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["s3_bucket", "iam_policy", "iam_oidc_provider", "iam_role"]
    );

    // No --approve: the file is the approval.
    let applied = strata(
        dir.path(),
        &["--format", "json", "apply", "a.plan", "--skip-helm"],
    );
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied.stderr));
    let evidence: Value = serde_json::from_slice(&applied.stdout).unwrap();
    assert_eq!(evidence["status"], "applied");
    assert!(bucket_exists(&format!("strata-plan-{tag}")));
    assert!(role_exists(&format!("strata-plan-{tag}")));
    // The same file again: the cloud has moved (it was applied), so it is refused.
    let stale = strata(dir.path(), &["apply", "a.plan", "--skip-helm"]);
    assert_eq!(stale.status.code(), Some(2));
    assert!(
        text(&stale.stderr).contains("the live state changed since the plan"),
        "{}",
        text(&stale.stderr)
    );
}

#[test]
fn a_changed_render_between_plan_and_apply_is_refused_with_no_write() {
    let tag = tag("render");
    let dir = project(&tag);
    assert_eq!(
        strata(dir.path(), &["plan", "dev-aws", "--out", "p.plan"])
            .status
            .code(),
        Some(1)
    );
    // A commit lands between review and deploy.
    let base = dir.path().join("p/environments/base.yaml");
    let body = std::fs::read_to_string(&base)
        .unwrap()
        .replace(r#"tag: "2.4.1""#, r#"tag: "2.4.2""#);
    std::fs::write(&base, body).unwrap();
    let out = strata(dir.path(), &["apply", "p.plan", "--skip-helm"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("refusing to apply the plan for dev-aws")
            && err.contains("dev-aws/releases/app.values.yaml: the render changed")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert!(
        !bucket_exists(&format!("strata-plan-{tag}")),
        "nothing may be written"
    );
    assert!(!role_exists(&format!("strata-plan-{tag}")));
}

#[test]
fn a_live_change_between_plan_and_apply_is_refused_with_no_write() {
    let tag = tag("live");
    let dir = project(&tag);
    assert_eq!(
        strata(dir.path(), &["plan", "dev-aws", "--out", "p.plan"])
            .status
            .code(),
        Some(1)
    );
    // Someone makes the bucket by hand meanwhile.
    let bucket = format!("strata-plan-{tag}");
    block_on(async {
        let s3 = moto::s3("eu-west-1").await;
        s3.create_bucket()
            .bucket(&bucket)
            .create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    let out = strata(dir.path(), &["apply", "p.plan", "--skip-helm"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    // A bucket strata did not make is not strata's to take over: the plan stops there.
    assert!(err.contains(&bucket), "{err}");
    assert!(
        !role_exists(&format!("strata-plan-{tag}")),
        "nothing may be written"
    );
}

#[test]
fn a_plan_of_another_strata_version_is_refused() {
    let tag = tag("version");
    let dir = project(&tag);
    assert_eq!(
        strata(dir.path(), &["plan", "dev-aws", "--out", "p.plan"])
            .status
            .code(),
        Some(1)
    );
    let path = dir.path().join("p.plan");
    let mut plan: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    plan["strataVersion"] = Value::from("0.0.1");
    std::fs::write(&path, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    let out = strata(dir.path(), &["apply", "p.plan", "--skip-helm"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("the plan was made by 0.0.1"), "{err}");
    assert!(!bucket_exists(&format!("strata-plan-{tag}")));
}
