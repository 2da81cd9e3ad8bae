//! Every mistake a user can make fails with exit 2, an exact message on stderr
//! (snapshotted), and the output folder exactly as it was; hostile input that is valid
//! (a BOM, CRLF line endings) renders exactly what the plain file renders.
//!
//! Each case is a folder in `tests/fixtures/errors/`: `case.yaml` names the bundled
//! example to copy (default: the lakehouse), the command (`render`, the default, or
//! `validate`), and how to break the copy: replace text in a file, append or prepend
//! to a file (creating it), copy a file of the case folder in, delete a file, add a
//! symbolic link, generate a huge file (`repeat` a line `times` times between `head`
//! and `tail`) or many files (`each` written to `file` with `{i}` numbered `times`
//! times), or convert every file below a folder to CRLF line endings. Huge inputs are
//! generated at test time, never committed.
//!
//! Every case also runs within bounds: under [`TIME_LIMIT`] of CPU time (user + system
//! of every thread, from `wait4`: wall time on a shared machine measures the other
//! processes too) and [`MEMORY_LIMIT_KIB`] of peak resident memory (the child's own
//! `ru_maxrss`), so a regression to exponential work or unbounded reading fails here.
//! A watchdog kills a run still going after [`WALL_LIMIT`].

use std::path::Path;
use std::time::Duration;

/// CPU time one case may take (a debug build: the largest cases, a million-item list
/// and 5000 layer files, need 2 to 6 s).
const TIME_LIMIT: Duration = Duration::from_secs(10);
/// Wall time after which a run is killed (and the case fails).
const WALL_LIMIT: Duration = Duration::from_secs(120);
/// Peak resident memory one run may use: 1 GiB. A good render of the lakehouse needs
/// a few tens of MiB; a 50 MB layer read whole, or an expanded alias bomb, would pass
/// or exceed this.
const MEMORY_LIMIT_KIB: u64 = 1 << 20;

use serde::Deserialize;

use super::example::{Copy, EXAMPLES, files, mtimes, snapshot_settings, tree};
use crate::support::{run_measured, text};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    about: String,
    /// Which bundled example the case breaks (default `lakehouse`).
    #[serde(default)]
    example: Option<String>,
    /// `render` (default) or `validate`.
    #[serde(default)]
    command: Option<String>,
    edits: Vec<Edit>,
    /// How many errors the run must report (each `error:` line), when the case is
    /// about reporting several at once.
    #[serde(default)]
    errors: Option<usize>,
    /// Text the error output must never contain (secret values).
    #[serde(default)]
    must_not_contain: Vec<String>,
    /// The input is valid after all: the run exits 0, prints nothing on stderr, and
    /// renders byte for byte what the unbroken project rendered.
    #[serde(default)]
    succeeds: bool,
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
    prepend: Option<String>,
    head: Option<String>,
    repeat: Option<String>,
    tail: Option<String>,
    each: Option<String>,
    times: Option<usize>,
    crlf: Option<String>,
}

impl Edit {
    fn apply(&self, copy: &Copy, case_dir: &Path) {
        let parent = |rel: &str| {
            std::fs::create_dir_all(copy.path(rel).parent().unwrap()).unwrap();
        };
        match self {
            Edit {
                file: Some(file),
                replace: Some(needle),
                with: Some(with),
                append: None,
                copy: None,
                ..
            } => copy.replace(file, needle, with),
            Edit {
                file: Some(file),
                append: Some(more),
                replace: None,
                copy: None,
                ..
            } => copy.append(file, more),
            Edit {
                file: Some(file),
                prepend: Some(before),
                ..
            } => {
                parent(file);
                let old = std::fs::read(copy.path(file)).unwrap_or_default();
                let mut bytes = before.as_bytes().to_vec();
                bytes.extend(old);
                std::fs::write(copy.path(file), bytes).unwrap();
            }
            Edit {
                file: Some(file),
                repeat: Some(line),
                times: Some(times),
                ..
            } => {
                parent(file);
                let head = self.head.as_deref().unwrap_or_default();
                let tail = self.tail.as_deref().unwrap_or_default();
                let mut text = String::with_capacity(head.len() + line.len() * times + tail.len());
                text.push_str(head);
                for _ in 0..*times {
                    text.push_str(line);
                }
                text.push_str(tail);
                std::fs::write(copy.path(file), text).unwrap();
            }
            Edit {
                file: Some(pattern),
                each: Some(text),
                times: Some(times),
                ..
            } => {
                parent(pattern);
                for i in 0..*times {
                    let name = pattern.replace("{i}", &i.to_string());
                    std::fs::write(copy.path(&name), text.replace("{i}", &i.to_string())).unwrap();
                }
            }
            Edit {
                crlf: Some(dir),
                file: None,
                ..
            } => {
                for entry in walkdir::WalkDir::new(copy.path(dir)) {
                    let entry = entry.unwrap();
                    if entry.file_type().is_file() {
                        let text = std::fs::read_to_string(entry.path()).unwrap();
                        assert!(!text.contains('\r'), "{}", entry.path().display());
                        std::fs::write(entry.path(), text.replace('\n', "\r\n")).unwrap();
                    }
                }
            }
            Edit {
                file: Some(file),
                copy: Some(from),
                replace: None,
                append: None,
                ..
            } => {
                parent(file);
                std::fs::copy(case_dir.join(from), copy.path(file))
                    .unwrap_or_else(|e| panic!("{from}: {e}"));
            }
            Edit {
                delete: Some(file),
                file: None,
                ..
            } => std::fs::remove_file(copy.path(file)).unwrap(),
            Edit {
                symlink: Some(link),
                to: Some(to),
                file: None,
                ..
            } => {
                parent(link);
                std::os::unix::fs::symlink(to, copy.path(link)).unwrap()
            }
            _ => panic!(
                "an edit is file+replace+with, file+append, file+prepend, file+copy, \
                 file+repeat+times (+head, +tail), file+each+times, delete, symlink+to, or crlf"
            ),
        }
    }
}

/// Renders a good copy, breaks it as the case says, runs the command again, and returns
/// the redacted stderr after checking the exit code and that `out/` did not change.
fn run_case(case_file: &Path) -> (Case, String) {
    let case: Case =
        serde_saphyr::from_str(&std::fs::read_to_string(case_file).unwrap()).expect("case.yaml");
    let name = case.example.as_deref().unwrap_or("lakehouse");
    let example = EXAMPLES
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("{}: no example `{name}`", case_file.display()));
    let copy = Copy::of(example);
    // Something outside the project for links to point at.
    std::fs::write(copy.tmp.path().join("outside.yaml"), "stolen: true\n").unwrap();
    copy.render_ok();
    let before = tree(&copy.out());
    let times = mtimes(&copy.out());

    for edit in &case.edits {
        edit.apply(&copy, case_file.parent().unwrap());
    }
    let out = copy.out();
    let cmd = match case.command.as_deref().unwrap_or("render") {
        "render" => copy.command(&["render", "--out", out.to_str().unwrap()]),
        "validate" => copy.command(&["validate"]),
        other => panic!("{}: unknown command `{other}`", case_file.display()),
    };
    let run = run_measured(cmd, WALL_LIMIT);
    let output = run.output;
    let stderr = copy.redact(&text(&output.stderr));

    assert!(
        run.cpu < TIME_LIMIT,
        "{}: took {:?} of CPU ({:?} wall)",
        case.about,
        run.cpu,
        run.elapsed
    );
    assert!(
        run.peak_rss_kib < MEMORY_LIMIT_KIB,
        "{}: peak memory {} KiB",
        case.about,
        run.peak_rss_kib
    );
    let after = tree(&copy.out());
    assert!(
        after == before,
        "{}: out/ changed: {:?} -> {:?}",
        case.about,
        files(&before),
        files(&after)
    );
    if case.succeeds {
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}: expected success\nstderr:\n{stderr}",
            case.about
        );
        assert_eq!(stderr, "", "{}", case.about);
        return (case, stderr);
    }
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
    assert!(
        !case.edits.is_empty(),
        "{}: a case breaks something",
        case.about
    );
    // Every run reads top to bottom: errors sorted by file, line and column.
    let places: Vec<(String, u32, u32)> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("error: "))
        .map(|rest| {
            let mut parts = rest.splitn(4, ':');
            let file = parts.next().unwrap_or_default().to_owned();
            let mut number = || {
                parts
                    .next()
                    .and_then(|p| p.parse::<u32>().ok())
                    .unwrap_or(0)
            };
            let line = number();
            let col = number();
            (file, line, col)
        })
        .collect();
    let mut sorted = places.clone();
    sorted.sort();
    assert_eq!(
        places, sorted,
        "{}: errors out of order:\n{stderr}",
        case.about
    );
    if let Some(count) = case.errors {
        assert_eq!(places.len(), count, "{}:\n{stderr}", case.about);
    }
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
            if case.succeeds {
                return;
            }
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
    // Expanded, 9^9 strings would take minutes of CPU and gigabytes; refused, a debug
    // build needs well under a second of CPU. CPU time, not wall time: a loaded machine
    // stretches the one, not the other.
    let run = run_measured(copy.command(&["validate"]), Duration::from_secs(300));
    let output = run.output;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        run.cpu < Duration::from_secs(10),
        "took {:?} of CPU",
        run.cpu
    );
    assert!(
        run.peak_rss_kib < 1024 * 1024,
        "peak RSS {} KiB",
        run.peak_rss_kib
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
        "    requireSse: true",
        "    requireSse: true\n    versioning: false",
    );
    let violation = copy.strata(&["validate"]);
    assert_eq!(
        violation.status.code(),
        Some(2),
        "{}",
        text(&violation.stderr)
    );
    assert!(
        text(&violation.stderr).contains(
            "environments/prod.yaml:23:17: buckets.data.versioning: production policy `prod.versioning`"
        ),
        "{}",
        text(&violation.stderr)
    );

    // An exception for another bucket's key does not cover this one. (Lists replace:
    // prod's list must repeat base's exception for the TLS secret's name.)
    copy.append(
        "environments/prod.yaml",
        "\nexceptions:\n  - rule: prod.versioning\n    path: buckets.scratch.versioning\n    reason: the archive bucket is written once and copied to tape nightly\n  - rule: secret-literal\n    path: releases.app.values.ingress.tlsSecretName\n    reason: the name of the Secret that holds the certificate, not a secret\n",
    );
    let still = copy.strata(&["validate"]);
    assert_eq!(still.status.code(), Some(2), "{}", text(&still.stderr));
    assert!(text(&still.stderr).contains("prod.versioning"));
    assert!(
        text(&still.stderr).contains("`buckets.scratch.versioning` names no key of any target"),
        "{}",
        text(&still.stderr)
    );

    copy.replace(
        "environments/prod.yaml",
        "path: buckets.scratch.versioning",
        "path: buckets.data.versioning",
    );
    let output = copy.render_ok();
    assert_eq!(text(&output.stderr), "");
    for target in ["prod-aws", "prod-gcp"] {
        let bucket =
            std::fs::read_to_string(copy.out().join(target).join("buckets/data.json")).unwrap();
        assert!(
            bucket.contains("\"versioning\": false"),
            "{target}: the exception lets the setting through:\n{bucket}"
        );
    }
    // Staging is not production: the same setting needs no exception there.
    copy.replace(
        "environments/staging.yaml",
        "    requireSse: true",
        "    requireSse: true\n    versioning: false",
    );
    copy.render_ok();
}

#[test]
fn a_secret_literal_is_refused_even_when_a_later_layer_overrides_it() {
    let copy = Copy::new();
    // base.yaml commits the value; prod.aws.yaml removes it again. The value is
    // still in the repository, so strata refuses, pointing at base.yaml, not showing it.
    copy.replace(
        "environments/base.yaml",
        "      LOG_LEVEL: info",
        "      LOG_LEVEL: info\n      SMTP_PASSWORD: tr0ub4dor-and-3",
    );
    copy.append(
        "environments/prod.aws.yaml",
        "\nworkloads:\n  api:\n    env:\n      SMTP_PASSWORD: null\n",
    );
    let out = copy.strata(&["validate", "prod-aws"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.lines().next().unwrap_or_default(),
        "error: environments/base.yaml:40:22: workloads.api.env.SMTP_PASSWORD: a secret-like key holds a literal string (value not shown)",
        "{stderr}"
    );
    assert!(
        !stderr.contains("tr0ub4dor"),
        "the value must never be printed: {stderr}"
    );
}

#[test]
fn a_secret_literal_exception_with_its_path_lets_exactly_that_key_through() {
    let copy = Copy::new();
    copy.replace(
        "environments/base.yaml",
        "      LOG_LEVEL: info",
        "      LOG_LEVEL: info\n      TOKEN_AUDIENCE: lakehouse-api",
    );
    let refused = copy.strata(&["validate"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("workloads.api.env.TOKEN_AUDIENCE: a secret-like key"),
        "{}",
        text(&refused.stderr)
    );
    copy.replace(
        "environments/base.yaml",
        "\nexceptions:\n",
        "\nexceptions:\n  - rule: secret-literal\n    path: workloads.api.env.TOKEN_AUDIENCE\n    reason: the audience the tokens are issued for, a public name\n",
    );
    copy.render_ok();
    let env = std::fs::read_to_string(copy.out().join("dev-aws/env/api.env")).unwrap();
    assert!(env.contains("TOKEN_AUDIENCE=lakehouse-api\n"), "{env}");
}
