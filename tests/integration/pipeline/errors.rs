//! Every mistake a user can make fails the render with exit 2, an exact message on
//! stderr (snapshotted), and the output folder exactly as it was.
//!
//! Each case is a folder in `tests/fixtures/errors/`: `case.yaml` says how to break a
//! copy of the example project (replace text in a file, append to one, copy a file of
//! the case folder in, delete a file, or add a symbolic link).

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::example::{Copy, files, mtimes, snapshot_settings, tree};
use crate::support::text;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    about: String,
    edits: Vec<Edit>,
    /// Text the error output must never contain (secret values).
    #[serde(default)]
    must_not_contain: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Edit {
    file: Option<String>,
    replace: Option<String>,
    with: Option<String>,
    append: Option<String>,
    copy: Option<String>,
    delete: Option<String>,
    symlink: Option<String>,
    to: Option<String>,
}

impl Edit {
    fn apply(&self, copy: &Copy, case_dir: &Path) {
        match self {
            Edit {
                file: Some(file),
                replace: Some(needle),
                with: Some(with),
                ..
            } => copy.replace(file, needle, with),
            Edit {
                file: Some(file),
                append: Some(more),
                ..
            } => {
                let path = copy.path(file);
                let mut text = std::fs::read_to_string(&path).unwrap();
                text.push_str(more);
                std::fs::write(path, text).unwrap();
            }
            Edit {
                file: Some(file),
                copy: Some(from),
                ..
            } => {
                std::fs::copy(case_dir.join(from), copy.path(file)).unwrap();
            }
            Edit {
                delete: Some(file), ..
            } => std::fs::remove_file(copy.path(file)).unwrap(),
            Edit {
                symlink: Some(link),
                to: Some(to),
                ..
            } => std::os::unix::fs::symlink(to, copy.path(link)).unwrap(),
            _ => panic!(
                "an edit needs file+replace+with, file+append, file+copy, delete, or symlink+to"
            ),
        }
    }
}

/// Renders a good copy, breaks it as the case says, renders again, and returns the
/// redacted stderr after checking the exit code and that `out/` did not change.
fn run_case(case_file: &Path) -> (Case, String) {
    let case: Case =
        serde_saphyr::from_str(&std::fs::read_to_string(case_file).unwrap()).expect("case.yaml");
    let copy = Copy::new();
    // Something outside the project for links to point at.
    std::fs::write(copy.tmp.path().join("outside.yaml"), "stolen: true\n").unwrap();
    copy.render_ok();
    let before = tree(&copy.out());
    let times = mtimes(&copy.out());

    for edit in &case.edits {
        edit.apply(&copy, case_file.parent().unwrap());
    }
    let out = copy.out();
    let started = Instant::now();
    let output = copy.strata(&["render", "--out", out.to_str().unwrap()]);
    let elapsed = started.elapsed();
    let stderr = copy.redact(&text(&output.stderr));

    assert_eq!(
        output.status.code(),
        Some(2),
        "{}: expected exit 2\nstderr:\n{stderr}",
        case.about
    );
    assert_eq!(
        text(&output.stdout),
        "",
        "{}: nothing on stdout",
        case.about
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        elapsed < Duration::from_secs(10),
        "{}: took {elapsed:?}",
        case.about
    );
    let after = tree(&copy.out());
    assert!(
        after == before,
        "{}: out/ changed: {:?} -> {:?}",
        case.about,
        files(&before),
        files(&after)
    );
    assert_eq!(
        mtimes(&copy.out()),
        times,
        "{}: out/ files were rewritten",
        case.about
    );
    // No temporary folder is left beside out/.
    let leftovers: Vec<String> = std::fs::read_dir(copy.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    for secret in &case.must_not_contain {
        assert!(
            !stderr.contains(secret.as_str()),
            "{}: the error shows `{secret}`:\n{stderr}",
            case.about
        );
    }
    (case, stderr)
}

#[test]
fn error_cases() {
    snapshot_settings().bind(|| {
        insta::glob!("../../fixtures/errors", "*/case.yaml", |path| {
            let (case, stderr) = run_case(path);
            insta::with_settings!({ description => case.about.as_str(), omit_expression => true }, {
                insta::assert_snapshot!(stderr);
            });
        });
    });
}

#[test]
fn an_alias_bomb_is_refused_quickly_by_validate_too() {
    let copy = Copy::new();
    let bomb = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/errors/yaml_alias_bomb/dev.gcp.yaml");
    std::fs::copy(bomb, copy.path("environments/dev.gcp.yaml")).unwrap();
    let started = Instant::now();
    let output = copy.strata(&["validate"]);
    assert_eq!(output.status.code(), Some(2));
    // Expanded, 9^9 strings would take minutes and gigabytes; refused, a debug build
    // on a loaded machine needs a second or two.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        text(&output.stderr).contains("environments/dev.gcp.yaml"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_named_exception_lets_production_turn_a_rule_off() {
    let copy = Copy::new();
    copy.replace(
        "environments/prod.yaml",
        "  allowDelete: false",
        "  allowDelete: false\n  versioning: false",
    );
    let violation = copy.strata(&["validate"]);
    assert_eq!(
        violation.status.code(),
        Some(2),
        "{}",
        text(&violation.stderr)
    );
    assert!(text(&violation.stderr).contains("prod.versioning"));

    let mut prod = std::fs::read_to_string(copy.path("environments/prod.yaml")).unwrap();
    prod.push_str("\nexceptions:\n  - rule: prod.versioning\n    reason: the archive bucket is written once and copied to tape nightly\n");
    std::fs::write(copy.path("environments/prod.yaml"), prod).unwrap();
    let output = copy.render_ok();
    assert_eq!(text(&output.stderr), "");
    for target in ["prod-aws", "prod-gcp"] {
        let values = std::fs::read_to_string(copy.out().join(target).join("values.yaml")).unwrap();
        assert!(
            values
                .contains("# policy exception prod.versioning: the archive bucket is written once"),
            "{target}: the exception is recorded in the output:\n{values}"
        );
    }
    // Staging and dev are not production: no exception needed or recorded.
    let staging = std::fs::read_to_string(copy.out().join("staging-aws/values.yaml")).unwrap();
    assert!(!staging.contains("policy exception"));
}

#[test]
fn a_secret_literal_is_refused_even_when_a_later_layer_overrides_it() {
    let copy = Copy::new();
    // base.yaml commits the value; prod.aws.yaml removes it again. The value is
    // still in the repository, so strata refuses, pointing at base.yaml, not showing it.
    copy.replace(
        "environments/base.yaml",
        "  env:\n    LOG_LEVEL: info",
        "  env:\n    LOG_LEVEL: info\n    SMTP_PASSWORD: tr0ub4dor-and-3",
    );
    let mut layer = std::fs::read_to_string(copy.path("environments/prod.aws.yaml")).unwrap();
    layer.push_str("\napp:\n  env:\n    SMTP_PASSWORD: null\n");
    std::fs::write(copy.path("environments/prod.aws.yaml"), layer).unwrap();
    let out = copy.strata(&["validate", "prod-aws"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("environments/base.yaml:") && stderr.contains("app.env.SMTP_PASSWORD"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("tr0ub4dor"),
        "the value must never be printed: {stderr}"
    );
}
