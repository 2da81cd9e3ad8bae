//! Real validators over every rendered artifact of every bundled example and target:
//! Helm's own engine (lint + render) for each release's chart with the target's
//! `releases/<r>.values.yaml` and for the target's `platform/` chart,
//! kubernetes-validate --strict on what they render, parliament on every IAM policy,
//! and yamllint --strict on every YAML artifact. They come from the test venv; a
//! missing venv fails these tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::example::{EXAMPLES, Example, assert_success};
use crate::support::{repo_root, strata, text, venv_bin};

/// Renders an example into `<tmp>/<name>` and returns the folder.
fn render(example: &Example, tmp: &Path) -> PathBuf {
    let out = tmp.join(example.name);
    let output = strata()
        .current_dir(example.root())
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

/// Lints and renders a chart with Helm's engine (tests/py/helm_render.py) as release
/// `release` in `namespace`; returns the number of objects it rendered.
fn helm_render(chart: &Path, values: &Path, release: &str, namespace: &str, dest: &Path) -> usize {
    check(
        &format!(
            "helm lint+render {} with {} (release {release})",
            chart.display(),
            values.display()
        ),
        Command::new(venv_bin().join("python"))
            .arg(repo_root().join("tests/py/helm_render.py"))
            .args([chart, values])
            .arg(namespace)
            .arg(dest)
            .args(["--release", release]),
    );
    let rendered = std::fs::read_to_string(dest).unwrap();
    let objects = rendered.lines().filter(|l| l.starts_with("kind: ")).count();
    assert!(objects > 0, "{} rendered no objects", dest.display());
    objects
}

fn k8s_validate(files: &[PathBuf]) {
    check(
        &format!("kubernetes-validate --strict {files:?}"),
        Command::new(repo_root().join("tests/py/k8s_validate.sh")).args(files),
    );
}

/// Every file below `dir` whose name ends with `suffix`, sorted (none when `dir` does
/// not exist).
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    if !dir.exists() {
        return Vec::new();
    }
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

#[test]
fn helm_lints_and_renders_every_release_with_its_rendered_values_and_the_output_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rendered = 0;
    for example in EXAMPLES {
        let out = render(example, tmp.path());
        for target in example.targets {
            let values = files_ending(&out.join(target).join("releases"), ".values.yaml");
            assert_eq!(
                values.len(),
                example.releases.len(),
                "{} {target}: {values:?}",
                example.name
            );
            for (release, chart) in example.releases {
                let dest = tmp
                    .path()
                    .join(format!("{}-{target}-{release}.yaml", example.name));
                helm_render(
                    &example.root().join(chart),
                    &out.join(target)
                        .join(format!("releases/{release}.values.yaml")),
                    release,
                    example.namespace,
                    &dest,
                );
                k8s_validate(&[dest]);
                rendered += 1;
            }
        }
    }
    // lakehouse 6 targets × 1 release, three-tier 4 × 3, storage-only none.
    assert_eq!(rendered, 6 + 12);
}

#[test]
fn every_platform_chart_is_a_helm_chart_of_valid_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty-values.yaml");
    std::fs::write(&empty, "{}\n").unwrap();
    let mut charts = 0;
    for example in EXAMPLES {
        let out = render(example, tmp.path());
        for target in example.targets {
            let platform = out.join(target).join("platform");
            let manifests = files_ending(&platform.join("templates"), ".yaml");
            assert!(
                !manifests.is_empty(),
                "{} {target}: no manifests",
                example.name
            );
            k8s_validate(&manifests);
            let dest = tmp
                .path()
                .join(format!("{}-{target}-platform.yaml", example.name));
            let objects = helm_render(
                &platform,
                &empty,
                example.platform_release,
                example.namespace,
                &dest,
            );
            // Helm renders every object strata wrote (none is dropped as empty).
            let written: usize = manifests
                .iter()
                .map(|m| {
                    std::fs::read_to_string(m)
                        .unwrap()
                        .lines()
                        .filter(|l| l.starts_with("kind: "))
                        .count()
                })
                .sum();
            assert_eq!(objects, written, "{} {target}", example.name);
            k8s_validate(&[dest]);
            charts += 1;
        }
    }
    assert_eq!(charts, 6 + 4 + 4);
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
    let mut checked = 0;
    for example in EXAMPLES {
        let out = render(example, tmp.path());
        for target in example.targets {
            let policies = files_ending(&out.join(target), ".policy.json");
            if target.ends_with("-gcp") {
                // The gcp targets have bindings, not policies.
                assert!(
                    policies.is_empty(),
                    "{} {target}: {policies:?}",
                    example.name
                );
                assert!(
                    !files_ending(&out.join(target).join("iam"), ".gcp.json").is_empty(),
                    "{} {target}",
                    example.name
                );
                continue;
            }
            assert!(!policies.is_empty(), "{} {target}", example.name);
            for policy in policies {
                let report = check(
                    &format!("parliament {}", policy.display()),
                    &mut parliament(&policy),
                );
                assert_eq!(
                    report.trim(),
                    "",
                    "parliament findings for {}",
                    policy.display()
                );
                checked += 1;
            }
        }
    }
    // lakehouse 3 aws targets × api; storage-only 2 × ingest; three-tier 2 × (api, worker).
    assert_eq!(checked, 3 + 2 + 4);
}

#[test]
fn parliament_is_strict_enough_to_fail_a_bad_policy() {
    // Guards the flags above: a mismatched policy must fail the same invocation.
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
    let mut files = Vec::new();
    for example in EXAMPLES {
        let out = render(example, tmp.path());
        let yaml = files_ending(&out, ".yaml");
        // Per target: a values file per release, Chart.yaml and the manifests.
        let expected: usize = example
            .targets
            .iter()
            .map(|t| {
                example.releases.len()
                    + 1
                    + files_ending(&out.join(t).join("platform/templates"), ".yaml").len()
            })
            .sum();
        assert_eq!(yaml.len(), expected, "{}: {yaml:#?}", example.name);
        files.extend(yaml);
    }
    // lakehouse 6 × (values, Chart.yaml, 3 manifests), storage-only 4 × (Chart.yaml,
    // 2 manifests), three-tier 4 × (3 values, Chart.yaml, 2 manifests).
    assert_eq!(files.len(), 6 * 5 + 4 * 3 + 4 * 6);
    check(
        "yamllint --strict",
        Command::new(venv_bin().join("yamllint"))
            .args(["--strict", "-c"])
            .arg(repo_root().join(".yamllint"))
            .args(&files),
    );
}

#[test]
fn the_validators_fail_what_they_should() {
    // Each check above must be able to fail: kubernetes-validate on an unknown field,
    // yamllint on a style error, Helm on values its chart refuses.
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("bad.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: x\n  nmespace: y\n",
    )
    .unwrap();
    let output = Command::new(repo_root().join("tests/py/k8s_validate.sh"))
        .arg(&manifest)
        .env("STRATA_TEST_VENV_BIN", venv_bin())
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "kubernetes-validate accepted an unknown field"
    );

    let yaml = tmp.path().join("bad-style.yaml");
    std::fs::write(&yaml, "a:   1\nb: [ 1,2 ]\n").unwrap();
    let output = Command::new(venv_bin().join("yamllint"))
        .args(["--strict", "-c"])
        .arg(repo_root().join(".yamllint"))
        .arg(&yaml)
        .output()
        .unwrap();
    assert!(!output.status.success(), "yamllint accepted bad style");

    let values = tmp.path().join("values.yaml");
    std::fs::write(&values, "backend:\n  replicas: many\n").unwrap();
    let output = Command::new(venv_bin().join("python"))
        .arg(repo_root().join("tests/py/helm_render.py"))
        .arg(repo_root().join("charts/app"))
        .arg(&values)
        .args(["lakehouse"])
        .arg(tmp.path().join("out.yaml"))
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "helm accepted replicas: many\n{}",
        text(&output.stderr)
    );
    assert!(!tmp.path().join("out.yaml").exists());
}
