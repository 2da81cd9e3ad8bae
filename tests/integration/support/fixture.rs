//! A project made the way a user makes one: `strata init` in a temporary folder. Tests
//! change only the file system (entries added, renamed, linked), never a layer's keys.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::fs::{Snapshot, assert_same};
use super::{run_in, text};

pub struct Fixture {
    pub tmp: tempfile::TempDir,
}

impl Fixture {
    /// `strata init p` in a fresh temporary folder: the project is `<tmp>/p`, so a
    /// test can put things beside it, outside the project.
    pub fn init() -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("strata-fs-")
            .tempdir()
            .expect("temp dir");
        let output = run_in(tmp.path(), &["init", "p"]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        // A templates/ folder of the project's own (the bundled example has none): a
        // partial (`_` in front) renders no artifact, so counts are unchanged.
        let partials = tmp.path().join("p/templates/iam");
        std::fs::create_dir_all(&partials).unwrap();
        std::fs::write(
            partials.join("_macros.j2"),
            "{% macro none() %}{% endmacro %}\n",
        )
        .unwrap();
        Fixture { tmp }
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("p")
    }

    /// A path relative to the project root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// strata with `args`, run in the project folder `cwd` (relative to the root).
    pub fn run(&self, cwd: &str, args: &[&str]) -> Output {
        run_in(&self.path(cwd), args)
    }

    /// The whole temporary folder: the project and everything beside it.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::of(self.tmp.path())
    }

    /// `text` with the temporary folder (as given and canonical) replaced by `[TMP]`.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        let tmp = self.tmp.path();
        for form in [tmp.canonicalize().unwrap(), tmp.to_path_buf()] {
            text = text.replace(form.to_str().unwrap(), "[TMP]");
        }
        text
    }

    /// Runs strata in `cwd` and checks that it refuses: exit 2, nothing on stdout,
    /// exactly `stderr` (redacted), and not one byte, mode or mtime of the temporary
    /// folder changed (no temporary folder left either).
    #[track_caller]
    pub fn assert_refused(&self, cwd: &str, args: &[&str], stderr: &str) {
        let before = self.snapshot();
        let output = self.run(cwd, args);
        assert_eq!(
            (
                output.status.code(),
                text(&output.stdout).as_str(),
                self.redact(&text(&output.stderr)).as_str()
            ),
            (Some(2), "", with_count(stderr).as_str()),
            "strata {args:?} in {cwd}"
        );
        assert_same(&before, &self.snapshot(), &format!("strata {args:?}"));
    }

    /// How many targets and files the project renders (`validate`, which writes
    /// nothing), so that the tests hold whatever the example's templates become.
    pub fn counts(&self, targets: &[&str]) -> (usize, usize) {
        let mut args = vec!["--format", "json", "validate"];
        args.extend_from_slice(targets);
        let output = self.run(".", &args);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let count = |key: &str| match &doc[key] {
            serde_json::Value::Array(items) => items.len(),
            other => other.as_u64().unwrap() as usize,
        };
        (count("targets"), count("files"))
    }

    /// What `render` prints for the whole project rendered into `out` (as named).
    pub fn rendered_line(&self, out: &str, written: usize, unchanged: usize) -> String {
        let (targets, files) = self.counts(&[]);
        format!(
            "rendered {targets} targets from [TMP]/p into {out}: {files} files ({written} written, {unchanged} unchanged, 0 removed)\n"
        )
    }

    /// Renders (all targets, into the default out/) and checks it succeeded.
    pub fn render_ok(&self) -> Output {
        let output = self.run(".", &["render"]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        output
    }
}

/// Writes `text` to `path`, making its folder.
pub fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

/// `expected` stderr with the closing count strata prints under two errors or more
/// (`3 errors in 2 files`), counted from the `error: FILE…` lines themselves.
pub fn with_count(expected: &str) -> String {
    let files: Vec<&str> = expected
        .lines()
        .filter_map(|l| l.strip_prefix("error: "))
        .map(|rest| {
            let head = rest.split(": ").next().unwrap_or_default();
            // `file:LINE:COL` is a place in that file.
            let mut parts: Vec<&str> = head.rsplitn(3, ':').collect();
            if parts.len() == 3
                && parts[0].parse::<u32>().is_ok()
                && parts[1].parse::<u32>().is_ok()
            {
                parts.pop().unwrap_or(head)
            } else {
                head
            }
        })
        .collect();
    if files.len() < 2 {
        return expected.to_owned();
    }
    let mut distinct = files.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let plural = if distinct.len() == 1 { "" } else { "s" };
    format!(
        "{expected}{} errors in {} file{plural}\n",
        files.len(),
        distinct.len()
    )
}
