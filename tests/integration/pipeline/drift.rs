//! `render --check`: the committed snapshots are current, and drift is shown as a
//! unified diff with exit 1.

use super::example::{Copy, snapshot_settings};
use crate::support::{repo_root, run_in, text};

#[test]
fn committed_snapshots_equal_a_fresh_render() {
    let output = run_in(&repo_root(), &["render", "--check", "--out", "snapshots"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "snapshots/ is stale; run `cargo run -- render --out snapshots`:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert_eq!(text(&output.stdout), "snapshots: up to date (48 files)\n");
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
    for file in ["prod-aws/app.env", "prod-gcp/app.env"] {
        assert!(
            stdout.contains(&format!("--- snapshots/{file}\n+++ rendered/{file}\n")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("-LOG_LEVEL=warn\n+LOG_LEVEL=error\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("dev-"), "only prod changed:\n{stdout}");
    assert_eq!(text(&output.stderr), "");
    snapshot_settings().bind(|| insta::assert_snapshot!("drift_diff", stdout));
    // --check wrote nothing.
    let snap = std::fs::read_to_string(copy.path("snapshots/prod-aws/app.env")).unwrap();
    assert!(snap.contains("LOG_LEVEL=warn"));
}
