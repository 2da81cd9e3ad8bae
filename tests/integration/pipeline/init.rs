//! `strata init` writes the example project, and outside any project `strata render`
//! renders the embedded example: both give exactly the committed snapshots.

use super::example::{assert_success, files, tree};
use crate::support::{repo_root, run_in, text};

#[test]
fn init_writes_a_project_that_renders_the_snapshots() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("fresh");
    let output = run_in(tmp.path(), &["init", "fresh"]);
    assert_success(&output);
    for part in [
        "environments/base.yaml",
        "templates/values.yaml.j2",
        "charts/app/Chart.yaml",
    ] {
        assert!(project.join(part).is_file(), "{part} written");
    }
    let output = run_in(tmp.path(), &["-C", "fresh", "render", "--out", "out"]);
    assert_success(&output);
    let rendered = tree(&project.join("out"));
    let snapshots = tree(&repo_root().join("snapshots"));
    assert!(
        rendered == snapshots,
        "{:?}\nvs\n{:?}",
        files(&rendered),
        files(&snapshots)
    );
    // And it does not overwrite a project.
    let again = run_in(tmp.path(), &["init", "fresh"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("already holds a project"),
        "{}",
        text(&again.stderr)
    );
}

#[test]
fn outside_any_project_render_uses_the_embedded_example() {
    let tmp = tempfile::tempdir().unwrap();
    let output = run_in(tmp.path(), &["render"]);
    assert_success(&output);
    assert!(
        text(&output.stdout).contains("from the bundled example"),
        "{}",
        text(&output.stdout)
    );
    let rendered = tree(&tmp.path().join("out"));
    assert!(
        rendered == tree(&repo_root().join("snapshots")),
        "{:?}",
        files(&rendered)
    );
}
