//! The command line's own promises (docs/commands.md): exit codes of `render --check`
//! and of usage errors, the JSON documents' shapes, and the shell completions.

use serde_json::{Map, Value};

use crate::support::fixture::{Fixture, write};
use crate::support::fs::assert_same;
use crate::support::{repo_root, run_in, strata, text};

/// The shape of a JSON document: every value replaced by its type, objects with all
/// their keys (in order), arrays by the shape of their first item.
fn shape(value: &Value) -> Value {
    match value {
        Value::Null => Value::String("null".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::String(_) => Value::String("string".into()),
        Value::Array(items) => Value::Array(items.first().map(shape).into_iter().collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), shape(v)))
                .collect::<Map<String, Value>>(),
        ),
    }
}

/// Runs `strata --format json <args>` in the project, expecting `code`; the document.
#[track_caller]
fn json(f: &Fixture, args: &[&str], code: i32) -> Value {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let out = f.run(".", &all);
    assert_eq!(
        out.status.code(),
        Some(code),
        "strata {all:?}:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("strata {all:?}: not JSON ({e}):\n{}", text(&out.stdout)))
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap()
}

#[test]
fn json_documents_of_render_validate_init_and_errors_keep_their_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_in(tmp.path(), &["--format", "json", "init", "p"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let init: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(init["dir"], "p");
    assert_eq!(init["example"], "lakehouse");
    insta::assert_snapshot!("json_shape_init", pretty(&shape(&init)));

    let f = Fixture::init();
    let validate = json(&f, &["validate"], 0);
    let (targets, files) = f.counts(&[]);
    assert_eq!(validate["ok"], true);
    assert_eq!(validate["targets"].as_array().unwrap().len(), targets);
    insta::assert_snapshot!("json_shape_validate", pretty(&shape(&validate)));

    let render = json(&f, &["render"], 0);
    assert_eq!(
        (
            &render["ok"],
            &render["out"],
            &render["files"],
            &render["written"],
            &render["unchanged"],
            &render["removed"]
        ),
        (
            &Value::Bool(true),
            &Value::from("out"),
            &Value::from(files),
            &Value::from(files),
            &Value::from(0),
            &Value::from(0)
        )
    );
    insta::assert_snapshot!("json_shape_render", pretty(&shape(&render)));

    let clean = json(&f, &["render", "--check"], 0);
    assert_eq!(clean["drift"], Value::Array(vec![]));
    std::fs::write(f.path("out/dev-aws/buckets/data.json"), "{}\n").unwrap();
    let drift = json(&f, &["render", "--check"], 1);
    assert_eq!(drift["drift"][0]["path"], "dev-aws/buckets/data.json");
    assert_eq!(drift["drift"][0]["status"], "changed");
    insta::assert_snapshot!("json_shape_render_check", pretty(&shape(&drift)));

    std::fs::write(
        f.path("environments/prod.yaml"),
        std::fs::read_to_string(f.path("environments/prod.yaml"))
            .unwrap()
            .replace("requireSse: true", "requireSSE: true"),
    )
    .unwrap();
    let error = json(&f, &["validate"], 2);
    assert_eq!(error["ok"], false);
    assert_eq!(error["errors"][0]["file"], "environments/prod.yaml");
    assert_eq!(error["errors"][0]["keyPath"], "buckets.data.requireSSE");
    insta::assert_snapshot!("json_shape_error", pretty(&shape(&error)));
}

/// An invalid project is an error, not drift: `render --check` exits 2 (docs/commands.md),
/// in every format, and writes nothing.
#[test]
fn render_check_of_an_invalid_project_exits_2_not_1() {
    let f = Fixture::init();
    f.render_ok();
    write(
        &f.path("environments/dev.aws.yaml"),
        "buckets:\n  data:\n    versionning: true\n",
    );
    for format in ["text", "json", "github", "markdown"] {
        let before = f.snapshot();
        let out = f.run(".", &["--format", format, "render", "--check"]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "--format {format}:\n{all}");
        assert!(
            all.contains("environments/dev.aws.yaml") && all.contains("versionning"),
            "--format {format}:\n{all}"
        );
        assert_same(
            &before,
            &f.snapshot(),
            &format!("render --check ({format})"),
        );
    }
}

/// A usage error is exit 2 (docs/commands.md, Exit codes), with clap's message on
/// stderr and nothing on stdout.
#[test]
fn usage_errors_exit_2_with_the_message_on_stderr() {
    let dir = repo_root();
    for (args, says) in [
        (&["rendr"][..], "unrecognized subcommand 'rendr'"),
        (
            &["render", "--outt", "x"][..],
            "unexpected argument '--outt'",
        ),
        (&["explain"][..], "required"),
        (
            &["--format", "yaml", "validate"][..],
            "invalid value 'yaml'",
        ),
        (&["completions", "tcsh"][..], "invalid value 'tcsh'"),
        (&["apply"][..], "required"),
        (&[][..], "Usage: strata"),
    ] {
        let out = run_in(&dir, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "strata {args:?}:\n{}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stdout), "", "strata {args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "strata {args:?}: {says:?} missing from:\n{}",
            text(&out.stderr)
        );
    }
}

/// Every command, and the flags a user types most, are in each shell's completions;
/// the zsh and fish scripts are pinned as a whole.
#[test]
fn zsh_fish_and_bash_completions_name_every_command() {
    let commands: Vec<String> = {
        let out = run_in(&repo_root(), &["--help"]);
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        let section = help
            .split("Commands:\n")
            .nth(1)
            .expect("a Commands: section")
            .split("\n\n")
            .next()
            .unwrap()
            .to_owned();
        section
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    };
    for wanted in ["render", "validate", "plan", "apply", "completions"] {
        assert!(commands.iter().any(|c| c == wanted), "{commands:?}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = run_in(&repo_root(), &["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert_eq!(text(&out.stderr), "", "{shell}");
        let script = text(&out.stdout);
        for word in &commands {
            assert!(
                script.contains(word.as_str()),
                "{shell} completion lacks {word}"
            );
        }
        for flag in ["check", "approve", "skip-helm", "out", "format"] {
            // fish spells a long option `-l NAME`.
            let word = if shell == "fish" {
                format!("-l {flag}")
            } else {
                format!("--{flag}")
            };
            assert!(script.contains(&word), "{shell} completion lacks {word}");
        }
        match shell {
            "zsh" => {
                assert!(script.starts_with("#compdef strata\n"));
                insta::assert_snapshot!("completions_zsh", script);
            }
            "fish" => {
                assert!(script.contains("complete -c strata"));
                insta::assert_snapshot!("completions_fish", script);
            }
            _ => assert!(script.contains("complete -F _strata")),
        }
    }
}

/// `strata completions zsh | head` and `strata man | head`: a reader that goes away
/// is no error (and no panic).
#[test]
fn completions_and_man_into_a_closed_pipe_exit_0() {
    let mut fds = [0; 2];
    // SAFETY: a two-int array for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the read end is ours and closed once; every write then fails with EPIPE.
    unsafe { libc::close(fds[0]) };
    for args in [&["completions", "zsh"][..], &["man"][..]] {
        // SAFETY: dup gives a fresh descriptor the Stdio takes ownership of.
        let write_end = unsafe { libc::dup(fds[1]) };
        assert!(write_end >= 0);
        let stdout = {
            use std::os::fd::FromRawFd;
            // SAFETY: `write_end` is an open descriptor owned by nothing else.
            unsafe { std::process::Stdio::from_raw_fd(write_end) }
        };
        let out = strata()
            .args(args)
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "strata {args:?} into a closed pipe:\n{}",
            text(&out.stderr)
        );
        assert_eq!(text(&out.stderr), "", "strata {args:?}");
    }
    // SAFETY: closing our own descriptor once.
    unsafe { libc::close(fds[1]) };
}
