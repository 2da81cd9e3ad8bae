//! `render --check`: the committed snapshots of every bundled example are current, and
//! drift is shown as a unified diff with exit 1.

use super::example::{Copy, EXAMPLES, snapshot_settings};
use crate::support::{run_in, text};

#[test]
fn committed_snapshots_equal_a_fresh_render() {
    for example in EXAMPLES {
        let output = run_in(
            &example.root(),
            &["render", "--check", "--out", "snapshots"],
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}/snapshots is stale; run `strata -C {} render --out snapshots`:\n{}{}",
            example.dir,
            example.root().display(),
            text(&output.stdout),
            text(&output.stderr)
        );
        assert_eq!(
            text(&output.stdout),
            format!("snapshots: up to date ({} files)\n", example.files),
            "{}",
            example.name
        );
    }
}

#[test]
fn a_changed_value_is_drift_with_a_unified_diff() {
    let copy = Copy::new();
    copy.replace(
        "environments/prod.yaml",
        "LOG_LEVEL: warn",
        "LOG_LEVEL: error",
    );
    let output = copy.strata(&["render", "--check", "--out", "snapshots"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "stderr: {}",
        text(&output.stderr)
    );
    let stdout = copy.redact(&text(&output.stdout));
    // The workload's env file, and the release values that take it by `!ref`.
    for file in [
        "prod-aws/env/api.env",
        "prod-gcp/env/api.env",
        "prod-aws/releases/app.values.yaml",
        "prod-gcp/releases/app.values.yaml",
    ] {
        assert!(
            stdout.contains(&format!("--- snapshots/{file}\n+++ rendered/{file}\n")),
            "{file}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("-LOG_LEVEL=warn\n+LOG_LEVEL=error\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("-  LOG_LEVEL: warn\n+  LOG_LEVEL: error\n"),
        "{stdout}"
    );
    assert!(stdout.contains("4 file(s) differ"), "{stdout}");
    assert!(!stdout.contains("dev-"), "only prod changed:\n{stdout}");
    assert!(!stdout.contains("staging-"), "only prod changed:\n{stdout}");
    assert_eq!(text(&output.stderr), "");
    snapshot_settings().bind(|| insta::assert_snapshot!("drift_diff", stdout));
    // --check wrote nothing.
    let snap = std::fs::read_to_string(copy.path("snapshots/prod-aws/env/api.env")).unwrap();
    assert!(snap.contains("LOG_LEVEL=warn"));
}

#[test]
fn a_removed_snapshot_file_and_a_stray_one_are_drift() {
    let copy = Copy::new();
    std::fs::remove_file(copy.path("snapshots/dev-gcp/buckets/data.json")).unwrap();
    std::fs::write(copy.path("snapshots/dev-aws/iam/old.policy.json"), "{}\n").unwrap();
    let output = copy.strata(&[
        "render",
        "--check",
        "--out",
        "snapshots",
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let drift: Vec<(String, String)> = report["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_owned(),
                d["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        drift,
        [
            (
                "dev-aws/iam/old.policy.json".to_owned(),
                "removed".to_owned()
            ),
            ("dev-gcp/buckets/data.json".to_owned(), "added".to_owned()),
        ],
        "{report:#}"
    );
}
