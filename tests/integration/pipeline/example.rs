//! Helpers of the pipeline tests: temporary copies of the example project, whole
//! folder trees to compare, and redaction of temporary paths in snapshots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::SystemTime;

use tempfile::TempDir;

use crate::support::{self, copy_dir, repo_root, text};

/// The parts of the repository that make up the example project (and its snapshots).
const PROJECT_PARTS: &[&str] = &["environments", "templates", "charts", "snapshots"];

/// A copy of the example project in a temporary folder: the project is `<tmp>/project`,
/// so a test can put things beside it (outside the project).
pub struct Copy {
    pub tmp: TempDir,
}

impl Copy {
    pub fn new() -> Copy {
        let tmp = tempfile::Builder::new()
            .prefix("strata-pipeline-")
            .tempdir()
            .expect("temp dir");
        let project = tmp.path().join("project");
        for part in PROJECT_PARTS {
            copy_dir(&repo_root().join(part), &project.join(part));
        }
        Copy { tmp }
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("project")
    }

    pub fn out(&self) -> PathBuf {
        self.root().join("out")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// `strata -C <project> ARGS…`, run from the temp folder.
    pub fn strata(&self, args: &[&str]) -> Output {
        let root = self.root();
        let mut all = vec!["-C", root.to_str().expect("utf-8 temp path")];
        all.extend_from_slice(args);
        support::run_in(self.tmp.path(), &all)
    }

    /// `strata -C <project> render --out <project>/out`, which must succeed.
    pub fn render_ok(&self) -> Output {
        let out = self.out();
        let output = self.strata(&["render", "--out", out.to_str().unwrap()]);
        assert_success(&output);
        output
    }

    /// Replaces the only occurrence of `needle` in the project file `rel`.
    pub fn replace(&self, rel: &str, needle: &str, with: &str) {
        let path = self.path(rel);
        let old = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(
            old.matches(needle).count(),
            1,
            "{rel} holds `{needle}` exactly once"
        );
        std::fs::write(&path, old.replacen(needle, with, 1)).unwrap();
    }

    /// Text with the temporary folder (as given and canonical) replaced by `[TMP]`.
    pub fn redact(&self, text: &str) -> String {
        redact(text, self.tmp.path())
    }
}

pub fn redact(text: &str, tmp: &Path) -> String {
    let mut text = text.to_owned();
    let mut forms = vec![tmp.to_path_buf()];
    if let Ok(canonical) = tmp.canonicalize() {
        forms.push(canonical);
    }
    for form in forms {
        text = text.replace(form.to_str().unwrap(), "[TMP]");
    }
    text
}

pub fn assert_success(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "strata failed:\nstdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Every entry below `dir` (relative path with `/` → contents; folders map to `None`),
/// so that two trees compare equal only when they hold exactly the same files. The
/// marker strata writes into its output folder is checked here and left out, so that
/// a rendered folder compares equal to snapshots/ (tests/integration/out_dir.rs pins
/// when it is written).
pub fn tree(dir: &Path) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut tree = BTreeMap::new();
    walk(dir, dir, &mut tree);
    if let Some(marker) = tree.remove(crate::support::fs::MARKER) {
        assert_eq!(
            marker.as_deref(),
            Some(crate::support::fs::MARKER_TEXT.as_bytes()),
            "{}: the output marker",
            dir.display()
        );
    }
    tree
}

fn walk(base: &Path, dir: &Path, tree: &mut BTreeMap<String, Option<Vec<u8>>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path
            .strip_prefix(base)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if entry.file_type().unwrap().is_dir() {
            tree.insert(rel, None);
            walk(base, &path, tree);
        } else {
            tree.insert(rel, Some(std::fs::read(&path).unwrap()));
        }
    }
}

/// Modification times of every file below `dir`.
pub fn mtimes(dir: &Path) -> BTreeMap<String, SystemTime> {
    tree(dir)
        .into_iter()
        .filter(|(_, bytes)| bytes.is_some())
        .map(|(rel, _)| {
            let mtime = std::fs::metadata(dir.join(&rel))
                .unwrap()
                .modified()
                .unwrap();
            (rel, mtime)
        })
        .collect()
}

/// Only the file paths of a tree, for readable assertion messages.
pub fn files(tree: &BTreeMap<String, Option<Vec<u8>>>) -> Vec<&str> {
    tree.iter()
        .filter(|(_, b)| b.is_some())
        .map(|(p, _)| p.as_str())
        .collect()
}

/// The six targets of the example.
pub const TARGETS: &[&str] = &[
    "dev-aws",
    "dev-gcp",
    "prod-aws",
    "prod-gcp",
    "staging-aws",
    "staging-gcp",
];

/// Settings that keep this area's snapshots in `tests/integration/snapshots/`.
pub fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(repo_root().join("tests/integration/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings
}
