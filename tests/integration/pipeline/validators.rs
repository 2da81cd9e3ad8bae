//! Real validators over every rendered artifact: Helm's own engine (render + lint) for
//! charts/app with each target's values and for each target's platform chart,
//! kubernetes-validate --strict, parliament for IAM policies, and yamllint.
//! They come from the test venv; a missing venv fails these tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::example::{TARGETS, assert_success};
use crate::support::{repo_root, strata, text, venv_bin};

/// Renders the example into `<tmp>/out` and returns the folder.
fn render_example(tmp: &Path) -> PathBuf {
    let out = tmp.join("out");
    let output = strata()
        .current_dir(repo_root())
        .args(["render", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert_success(&output);
    out
}

/// Runs a validator; fails the test with its whole output unless it exits 0.
fn check(what: &str, cmd: &mut Command) -> String {
    let output = cmd
        .current_dir(repo_root())
        .env("STRATA_TEST_VENV_BIN", venv_bin())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{all}",
        output.status
    );
    all
}

fn helm_render(chart: &Path, values: &Path, dest: &Path) {
    check(
        &format!("helm render {} with {}", chart.display(), values.display()),
        Command::new(venv_bin().join("python"))
            .arg(repo_root().join("tests/py/helm_render.py"))
            .args([chart, values])
            .arg("lakehouse")
            .arg(dest),
    );
    assert!(
        std::fs::read_to_string(dest).unwrap().contains("\nkind: "),
        "{} rendered no objects",
        dest.display()
    );
}

fn k8s_validate(files: &[PathBuf]) {
    check(
        &format!("kubernetes-validate --strict {files:?}"),
        Command::new(repo_root().join("tests/py/k8s_validate.sh")).args(files),
    );
}

fn platform_manifests(out: &Path, target: &str) -> Vec<PathBuf> {
    let dir = out.join(target).join("platform/templates");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{target} has no platform manifests");
    files
}

#[test]
fn helm_renders_and_lints_the_app_chart_for_every_target_and_the_output_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let out = render_example(tmp.path());
    for target in TARGETS {
        let dest = tmp.path().join(format!("{target}-app.yaml"));
        helm_render(
            &repo_root().join("charts/app"),
            &out.join(target).join("values.yaml"),
            &dest,
        );
        k8s_validate(&[dest]);
    }
}

#[test]
fn every_platform_chart_is_a_helm_chart_of_valid_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let out = render_example(tmp.path());
    let empty = tmp.path().join("empty-values.yaml");
    std::fs::write(&empty, "{}\n").unwrap();
    for target in TARGETS {
        k8s_validate(&platform_manifests(&out, target));
        let dest = tmp.path().join(format!("{target}-platform.yaml"));
        helm_render(&out.join(target).join("platform"), &empty, &dest);
        k8s_validate(&[dest]);
    }
}

/// parliament as the suite runs it: every severity, community auditors, JSON out; it
/// exits 1 and prints when it finds anything. One definition, so the guard test below
/// checks the very flags the real check uses.
fn parliament(policy: &Path) -> Command {
    let mut cmd = Command::new(venv_bin().join("parliament"));
    cmd.arg("--files").arg(policy).args([
        "--minimum_severity",
        "INFO",
        "--include-community-auditors",
        "--json",
    ]);
    cmd
}

#[test]
fn parliament_finds_nothing_in_any_aws_policy() {
    let tmp = tempfile::tempdir().unwrap();
    let out = render_example(tmp.path());
    let mut checked = 0;
    for target in TARGETS.iter().filter(|t| t.ends_with("-aws")) {
        let policy = out.join(target).join("iam/policy.json");
        // Every severity counts; parliament exits 1 and prints when it finds anything.
        let report = check(
            &format!("parliament {}", policy.display()),
            &mut parliament(&policy),
        );
        assert_eq!(report.trim(), "", "parliament findings for {target}");
        checked += 1;
    }
    assert_eq!(checked, 3);
    // The gcp targets have bindings, not policies.
    assert!(!out.join("prod-gcp/iam/policy.json").exists());
    assert!(out.join("prod-gcp/iam/bindings.json").exists());
}

#[test]
fn parliament_is_strict_enough_to_fail_a_bad_policy() {
    // Guards the flags above: a wildcard policy must fail the same invocation.
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("bad.json");
    std::fs::write(
        &policy,
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket"}]}"#,
    )
    .unwrap();
    let output = parliament(&policy).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stdout));
    assert!(
        text(&output.stdout).contains("RESOURCE_MISMATCH"),
        "{}",
        text(&output.stdout)
    );
}

#[test]
fn yamllint_strict_passes_on_every_yaml_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let out = render_example(tmp.path());
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(&out)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    // values.yaml, Chart.yaml and three manifests per target.
    assert_eq!(files.len(), 6 * 5, "{files:#?}");
    check(
        "yamllint --strict",
        Command::new(venv_bin().join("yamllint"))
            .args(["--strict", "-c"])
            .arg(repo_root().join(".yamllint"))
            .args(&files),
    );
}
