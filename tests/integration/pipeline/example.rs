//! Helpers of the pipeline tests: the three bundled examples, temporary copies of
//! them, whole folder trees to compare, and redaction of temporary paths in snapshots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::SystemTime;

use tempfile::TempDir;

use crate::support::{self, copy_dir, repo_root, text};

/// One example strata bundles (`strata init DIR --example NAME`), as this repository
/// holds it, with what its committed render contains.
pub struct Example {
    pub name: &'static str,
    /// The project folder, relative to the repository root (the lakehouse is the root).
    pub dir: &'static str,
    pub targets: &'static [&'static str],
    /// Files in the committed render (`snapshots/` of the project).
    pub files: usize,
    /// The default namespace (`kube.namespace`, else `project.name`): the platform
    /// chart's and every release's, as no release of the examples sets its own.
    pub namespace: &'static str,
    /// The platform chart's release: `<project.name>-platform`.
    pub platform_release: &'static str,
    /// Each release and its chart folder, in the layers' order.
    pub releases: &'static [(&'static str, &'static str)],
}

const BOTH_CLOUDS_DEV_STAGING_PROD: &[&str] = &[
    "dev-aws",
    "dev-gcp",
    "prod-aws",
    "prod-gcp",
    "staging-aws",
    "staging-gcp",
];
const BOTH_CLOUDS_DEV_PROD: &[&str] = &["dev-aws", "dev-gcp", "prod-aws", "prod-gcp"];

pub const LAKEHOUSE: Example = Example {
    name: "lakehouse",
    dir: "",
    targets: BOTH_CLOUDS_DEV_STAGING_PROD,
    // aws: bucket, env, policy, trust, Chart.yaml, 3 manifests, values = 9; gcp: 8.
    files: 3 * 9 + 3 * 8,
    namespace: "lakehouse",
    platform_release: "lakehouse-platform",
    releases: &[("app", "charts/app")],
};

pub const STORAGE_ONLY: Example = Example {
    name: "storage-only",
    dir: "examples/storage-only",
    targets: BOTH_CLOUDS_DEV_PROD,
    // aws: 2 buckets, env, policy, trust, Chart.yaml, 2 manifests = 8; gcp: 7.
    files: 2 * 8 + 2 * 7,
    namespace: "telemetry",
    platform_release: "telemetry-platform",
    releases: &[],
};

pub const THREE_TIER: Example = Example {
    name: "three-tier",
    dir: "examples/three-tier",
    targets: BOTH_CLOUDS_DEV_PROD,
    // aws: 2 buckets, 2 env, 2 policies, 2 trusts, Chart.yaml, 2 manifests, 3 values
    // = 14; gcp: 12.
    files: 2 * 14 + 2 * 12,
    namespace: "shop",
    platform_release: "shop-platform",
    releases: &[
        ("api", "charts/backend"),
        ("worker", "charts/backend"),
        ("web", "charts/web"),
    ],
};

pub const EXAMPLES: &[&Example] = &[&LAKEHOUSE, &STORAGE_ONLY, &THREE_TIER];

impl Example {
    /// The project folder in this repository.
    pub fn root(&self) -> PathBuf {
        repo_root().join(self.dir)
    }

    /// The committed render.
    pub fn snapshots(&self) -> PathBuf {
        self.root().join("snapshots")
    }
}

/// The parts of a project folder (and its committed render) that a copy takes; the
/// lakehouse shares its folder with the source of strata, so nothing else is copied.
const PROJECT_PARTS: &[&str] = &[
    "environments",
    "templates",
    "charts",
    "snapshots",
    "vars.schema.json",
];

/// A copy of an example project in a temporary folder: the project is
/// `<tmp>/project`, so a test can put things beside it (outside the project).
pub struct Copy {
    pub tmp: TempDir,
}

impl Copy {
    /// A copy of the lakehouse.
    pub fn new() -> Copy {
        Copy::of(&LAKEHOUSE)
    }

    pub fn of(example: &Example) -> Copy {
        let tmp = tempfile::Builder::new()
            .prefix("strata-pipeline-")
            .tempdir()
            .expect("temp dir");
        let project = tmp.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        for part in PROJECT_PARTS {
            let from = example.root().join(part);
            if from.is_dir() {
                copy_dir(&from, &project.join(part));
            } else if from.is_file() {
                std::fs::copy(&from, project.join(part)).unwrap();
            }
        }
        assert!(
            project.join("environments/base.yaml").is_file(),
            "{} has no environments/base.yaml",
            example.root().display()
        );
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

    /// The command [`Copy::strata`] runs, to run it another way.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = support::strata();
        cmd.current_dir(self.tmp.path())
            .arg("-C")
            .arg(self.root())
            .args(args);
        cmd
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

    /// Appends `more` to the project file `rel`, creating it (and its folder) if needed.
    pub fn append(&self, rel: &str, more: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(more);
        std::fs::write(path, text).unwrap();
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

/// Asserts that two trees are equal, naming the files that differ (not dumping bytes).
pub fn assert_same_tree(
    got: &BTreeMap<String, Option<Vec<u8>>>,
    want: &BTreeMap<String, Option<Vec<u8>>>,
    what: &str,
) {
    if got == want {
        return;
    }
    let only_got: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let only_want: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let differ: Vec<&String> = got
        .iter()
        .filter(|(k, v)| want.get(*k).is_some_and(|w| w != *v))
        .map(|(k, _)| k)
        .collect();
    panic!(
        "{what}: only in the render {only_got:?}, missing from it {only_want:?}, different {differ:?}"
    );
}

/// Settings that keep this area's snapshots in `tests/integration/snapshots/`.
pub fn snapshot_settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(repo_root().join("tests/integration/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// The example tables above agree with the committed renders: each target's folder,
/// and the file count, and the releases (a release added to an example without a line
/// here would escape the Helm checks in validators.rs).
#[test]
fn the_example_tables_match_the_committed_renders() {
    for example in EXAMPLES {
        let snapshots = tree(&example.snapshots());
        assert_eq!(
            files(&snapshots).len(),
            example.files,
            "{}: {:#?}",
            example.name,
            files(&snapshots)
        );
        let targets: Vec<&str> = snapshots
            .keys()
            .filter(|k| !k.contains('/'))
            .map(String::as_str)
            .collect();
        assert_eq!(targets, example.targets, "{}", example.name);
        for target in example.targets {
            let mut releases: Vec<String> = files(&snapshots)
                .iter()
                .filter_map(|f| f.strip_prefix(&format!("{target}/releases/")))
                .map(|f| f.strip_suffix(".values.yaml").unwrap().to_owned())
                .collect();
            releases.sort();
            let mut listed: Vec<String> = example
                .releases
                .iter()
                .map(|(r, _)| r.to_string())
                .collect();
            listed.sort();
            assert_eq!(releases, listed, "{} {target}", example.name);
            // The values file's header names the chart the layers give the release.
            for (release, chart) in example.releases {
                let values = &snapshots[&format!("{target}/releases/{release}.values.yaml")];
                let first = text(values.as_deref().unwrap())
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                assert!(
                    first.contains(&format!("release {release} ({chart})")),
                    "{} {target}: {first}",
                    example.name
                );
            }
        }
        for (release, chart) in example.releases {
            let chart = example.root().join(chart);
            assert!(
                chart.join("Chart.yaml").is_file(),
                "{} release {release}: no chart at {}",
                example.name,
                chart.display()
            );
        }
    }
}
