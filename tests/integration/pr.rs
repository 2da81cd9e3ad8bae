//! Reviewing a pull request: `--format markdown` (the review summary of `render
//! --check`, masked and cut, appended to $GITHUB_STEP_SUMMARY), `--version`, `man
//! --dir`, and the GitHub Action and pre-commit hooks run as their files say, with
//! plain bash, against this build of strata on PATH.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{repo_root, text, venv_bin};

/// strata without the variables a CI job may set for the test run itself: a test
/// must never append to the real job summary.
fn strata() -> Command {
    let mut cmd = crate::support::strata();
    cmd.env_remove("GITHUB_STEP_SUMMARY");
    cmd
}

fn run(dir: &Path, args: &[&str]) -> Output {
    strata().current_dir(dir).args(args).output().unwrap()
}

/// `strata init p` in a temporary folder, rendered into `p/snapshots`.
struct Project {
    tmp: tempfile::TempDir,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::Builder::new()
            .prefix("strata-pr-")
            .tempdir()
            .unwrap();
        let out = run(tmp.path(), &["init", "p"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let project = Project { tmp };
        let out = run(&project.root(), &["render", "--out", "snapshots"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        project
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("p")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    fn edit(&self, rel: &str, from: &str, to: &str) {
        let path = self.path(rel);
        let body = std::fs::read_to_string(&path).unwrap();
        assert!(body.contains(from), "{rel} lacks {from:?}");
        std::fs::write(&path, body.replacen(from, to, 1)).unwrap();
    }

    /// prod's backend goes from 3 replicas to 5 (a v2 key:
    /// releases.app.values.backend.replicas): one line in each prod target's values.
    fn change_prod_replicas(&self) {
        self.edit(
            "environments/prod.yaml",
            "      backend:\n        replicas: 3\n",
            "      backend:\n        replicas: 5\n",
        );
    }

    fn check(&self, format: &str) -> Output {
        run(
            &self.root(),
            &[
                "--format",
                format,
                "render",
                "--check",
                "--out",
                "snapshots",
            ],
        )
    }

    /// How many files the project renders.
    fn files(&self) -> u64 {
        let out = run(&self.root(), &["--format", "json", "validate"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["files"].as_u64().unwrap()
    }
}

/// The `<details>` block of one file in a review summary.
fn details<'a>(md: &'a str, path: &str) -> &'a str {
    let start = md
        .find(&format!("<details><summary>{path} ("))
        .unwrap_or_else(|| panic!("no <details> block for {path}:\n{md}"));
    let len = md[start..].find("</details>").expect("closed") + "</details>".len();
    &md[start..start + len]
}

/// An AWS access key id, made here so that the source holds none.
fn access_key_id() -> String {
    format!("AKIA{}", "Q7ZXW3NB5TRL2KPD")
}

#[test]
fn markdown_summary_of_drift_has_the_verdict_the_table_and_a_folded_diff() {
    let project = Project::new();
    project.change_prod_replicas();
    let out = project.check("markdown");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(
        md.starts_with(
            "### ❌ strata: `snapshots` is stale: 2 files in 2 targets differ from the render\n\n\
             Update it with `strata render --out snapshots` and commit the result.\n\n"
        ),
        "{md}"
    );
    assert!(
        md.contains(
            "| target | file | status | lines |\n\
             |---|---|---|---|\n\
             | prod-aws | releases/app.values.yaml | changed | +1 −1 |\n\
             | prod-gcp | releases/app.values.yaml | changed | +1 −1 |\n\n"
        ),
        "{md}"
    );
    let block = details(&md, "prod-aws/releases/app.values.yaml");
    let lines: Vec<&str> = block.lines().collect();
    assert_eq!(
        lines[..5],
        [
            "<details><summary>prod-aws/releases/app.values.yaml (+1 −1)</summary>",
            "",
            "```diff",
            "--- snapshots/prod-aws/releases/app.values.yaml",
            "+++ rendered/prod-aws/releases/app.values.yaml",
        ],
        "{block}"
    );
    assert_eq!(
        lines[lines.len() - 3..],
        ["```", "", "</details>"],
        "{block}"
    );
    let changed: Vec<&str> = lines[5..]
        .iter()
        .copied()
        .filter(|l| l.starts_with(['+', '-']))
        .collect();
    assert_eq!(changed, ["-  replicas: 3", "+  replicas: 5"], "{block}");
    details(&md, "prod-gcp/releases/app.values.yaml");
    assert_eq!(md.matches("<details>").count(), 2);
    assert!(!md.contains('\x1b'), "no colour in markdown");

    // Up to date: one line. No folder: the one line. Neither has a diff.
    let out = run(&project.root(), &["render", "--out", "snapshots"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = project.check("markdown");
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (
            Some(0),
            format!(
                "✅ strata: `snapshots` is up to date ({} files)\n",
                project.files()
            )
        )
    );
    let out = run(
        &project.root(),
        &[
            "--format", "markdown", "render", "--check", "--out", "nowhere",
        ],
    );
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (
            Some(1),
            format!(
                "❌ strata: nowhere does not exist: nothing to compare the {} rendered files with; create it with `strata render --out nowhere`\n",
                project.files()
            )
        )
    );
}

#[test]
fn markdown_says_why_there_is_no_verdict_and_other_commands_print_text() {
    let project = Project::new();
    project.edit(
        "environments/prod.yaml",
        "        replicas: 3\n",
        "        replicas: three\n",
    );
    let out = project.check("markdown");
    assert_eq!(out.status.code(), Some(2));
    let md = text(&out.stdout);
    assert!(
        md.starts_with("### ❌ strata: the render could not be checked (1 error)\n\n```text\nerror: environments/prod.yaml:"),
        "{md}"
    );
    assert!(md.contains("releases.app.values.backend.replicas"), "{md}");
    assert!(
        text(&out.stderr).contains("error: environments/prod.yaml:"),
        "the error is on stderr as well: {}",
        text(&out.stderr)
    );

    let fixed = Project::new();
    for args in [
        &["validate"][..],
        &["list"],
        &["explain", "prod-aws", "aws.region"],
    ] {
        let plain = run(&fixed.root(), args);
        let mut with_format = vec!["--format", "markdown"];
        with_format.extend_from_slice(args);
        let markdown = run(&fixed.root(), &with_format);
        assert_eq!(plain.status.code(), Some(0), "{}", text(&plain.stderr));
        assert_eq!(
            (markdown.status.code(), text(&markdown.stdout)),
            (plain.status.code(), text(&plain.stdout)),
            "strata {args:?}"
        );
    }
}

#[test]
fn a_credential_in_a_diff_comes_out_masked() {
    let project = Project::new();
    let key = access_key_id();
    let env_file = project.path("snapshots/dev-aws/env/api.env");
    let mut body = std::fs::read_to_string(&env_file).unwrap();
    body.push_str(&format!("LEGACY_UPLOADER_ID={key}\n"));
    std::fs::write(&env_file, body).unwrap();

    let out = project.check("markdown");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(
        md.contains("| dev-aws | env/api.env | changed | +0 −1 |\n"),
        "{md}"
    );
    let block = details(&md, "dev-aws/env/api.env");
    assert!(
        block.contains("\n-[masked: looks like an AWS access key id]\n"),
        "{block}"
    );
    assert!(!md.contains(&key), "the key is in the summary:\n{md}");
    assert!(
        !md.contains("LEGACY_UPLOADER_ID"),
        "the whole line is masked"
    );

    // The GitHub format's diff goes to the job log: masked as well.
    let out = project.check("github");
    assert_eq!(out.status.code(), Some(1));
    let log = text(&out.stdout);
    assert!(
        log.contains("-[masked: looks like an AWS access key id]"),
        "{log}"
    );
    assert!(!log.contains(&key), "{log}");
}

#[test]
fn a_long_diff_is_cut_with_a_note_naming_the_command_that_shows_it_all() {
    let project = Project::new();
    // Twelve files strata did not render, of 300 lines each: each diff is 303 lines
    // (two headers, one hunk header). 200 of each of the first ten fill the 2000.
    let body: String = (0..300).map(|i| format!("note {i}\n")).collect();
    for n in 0..12 {
        std::fs::write(
            project.path(&format!("snapshots/dev-aws/notes-{n:02}.txt")),
            &body,
        )
        .unwrap();
    }
    let out = project.check("markdown");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(
        md.contains("| dev-aws | notes-11.txt | removed | +0 −300 |\n"),
        "every file is in the table:\n{md}"
    );
    let first = details(&md, "dev-aws/notes-00.txt");
    assert_eq!(
        first.lines().filter(|l| l.starts_with("-note ")).count(),
        197,
        "{first}"
    );
    assert!(
        first.contains(
            "\n_103 more lines of this diff not shown (this summary shows at most 200 lines per file and 2000 in all); all of it: `strata render --check --out snapshots`_\n"
        ),
        "{first}"
    );
    assert_eq!(md.matches("<details>").count(), 10);
    assert!(!md.contains("<summary>dev-aws/notes-10.txt"));
    assert!(
        md.trim_end().ends_with(
            "_The diffs of 2 more files (606 lines) are not shown: this summary holds at most 2000 diff lines. All of them: `strata render --check --out snapshots`_"
        ),
        "{md}"
    );
    let diff_lines = md
        .lines()
        .filter(|l| {
            l.starts_with("-note ")
                || l.starts_with("--- ")
                || l.starts_with("+++ ")
                || l.starts_with("@@")
        })
        .count();
    assert_eq!(diff_lines, 2000);
}

#[test]
fn the_summary_is_appended_to_github_step_summary() {
    let project = Project::new();
    let summary = project.tmp.path().join("step-summary.md");
    std::fs::write(&summary, "an earlier command's summary\n").unwrap();
    let check = |format: &str| {
        strata()
            .current_dir(project.root())
            .env("GITHUB_STEP_SUMMARY", &summary)
            .args([
                "--format",
                format,
                "render",
                "--check",
                "--out",
                "snapshots",
            ])
            .output()
            .unwrap()
    };
    let clean = check("markdown");
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean.stderr));
    project.change_prod_replicas();
    let stale = check("markdown");
    assert_eq!(stale.status.code(), Some(1), "{}", text(&stale.stderr));
    // Annotations are not a summary: github leaves the file alone.
    assert_eq!(check("github").status.code(), Some(1));
    assert_eq!(
        std::fs::read_to_string(&summary).unwrap(),
        format!(
            "an earlier command's summary\n{}{}",
            text(&clean.stdout),
            text(&stale.stdout)
        )
    );
    assert!(text(&stale.stdout).starts_with("### ❌ strata:"));
}

#[test]
fn version_names_the_git_revision() {
    let git = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo_root())
        .output();
    let revision = match git {
        Ok(out) if out.status.success() => text(&out.stdout).trim().to_owned(),
        _ => "unknown revision".to_owned(),
    };
    for flag in ["--version", "-V"] {
        let out = run(&repo_root(), &[flag]);
        assert_eq!(
            (out.status.code(), text(&out.stdout)),
            (
                Some(0),
                format!("strata {} ({revision})\n", env!("CARGO_PKG_VERSION"))
            )
        );
    }
}

#[test]
fn man_dir_writes_one_page_per_command_and_the_main_page_names_only_those() {
    let tmp = tempfile::tempdir().unwrap();
    // The commands `strata --help` lists, but clap's own `help`.
    let help = text(&run(tmp.path(), &["--help"]).stdout);
    let commands: Vec<String> = help
        .split("Commands:\n")
        .nth(1)
        .expect("a Commands section")
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 10, "{commands:?}");

    let out = run(tmp.path(), &["man", "--dir", "man/man1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dir = tmp.path().join("man/man1");
    let mut written: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    let mut expected: Vec<String> = commands.iter().map(|c| format!("strata-{c}.1")).collect();
    expected.push("strata.1".to_owned());
    expected.sort();
    assert_eq!(written, expected);

    let main = std::fs::read_to_string(dir.join("strata.1")).unwrap();
    assert_eq!(
        main,
        text(&run(tmp.path(), &["man"]).stdout),
        "`strata man` prints the same main page"
    );
    // Every page the main page points to (`strata-render(1)`) exists, and each
    // command's page is about that command.
    let unescaped = main.replace("\\-", "-");
    let mut referenced: Vec<String> = unescaped
        .match_indices("strata-")
        .filter_map(|(at, _)| {
            let rest = &unescaped[at + "strata-".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase())
                .collect();
            rest[name.len()..]
                .starts_with("(1)")
                .then(|| format!("strata-{name}.1"))
        })
        .collect();
    referenced.push("strata.1".to_owned());
    referenced.sort();
    assert_eq!(referenced, expected, "the main page's references");
    for command in &commands {
        let page = std::fs::read_to_string(dir.join(format!("strata-{command}.1"))).unwrap();
        assert!(
            page.starts_with(&format!(
                ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n.TH strata-{command} 1"
            )) || page.contains(&format!(".TH strata-{command} 1")),
            "strata-{command}.1: {}",
            &page[..200.min(page.len())]
        );
    }
}

// --------------------------------------------------------------------------------
// The GitHub Action and the pre-commit hooks, run from their files.

/// A YAML file of the repository as JSON.
fn yaml(rel: &str) -> serde_json::Value {
    let body = std::fs::read_to_string(repo_root().join(rel)).unwrap();
    serde_saphyr::from_str(&body).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// PATH with `first` ahead of the folder of the strata under test, ahead of PATH.
fn path_with(first: &[&Path]) -> std::ffi::OsString {
    let strata_dir = Path::new(env!("CARGO_BIN_EXE_strata")).parent().unwrap();
    let mut dirs: Vec<PathBuf> = first.iter().map(|p| p.to_path_buf()).collect();
    dirs.push(strata_dir.to_path_buf());
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).unwrap()
}

/// One run step of the action: its id, exit code, stdout, and what it wrote to
/// $GITHUB_OUTPUT.
#[derive(Debug)]
struct StepRun {
    id: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    outputs: BTreeMap<String, String>,
}

/// A job that uses the action: the workspace (checkout) and what the runner provides.
struct Job {
    tmp: tempfile::TempDir,
    workspace: PathBuf,
}

impl Job {
    fn new(workspace: &Path) -> Job {
        let tmp = tempfile::Builder::new()
            .prefix("strata-job-")
            .tempdir()
            .unwrap();
        // A stand-in for cargo: records its arguments and "installs" the strata under
        // test into --root (so the steps after it run this build).
        let bin = tmp.path().join("fake-bin");
        std::fs::create_dir_all(&bin).unwrap();
        let cargo = bin.join("cargo");
        std::fs::write(
            &cargo,
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> \"$FAKE_CARGO_LOG\"\nroot=\nwhile [ $# -gt 0 ]; do\n  if [ \"$1\" = --root ]; then root=$2; fi\n  shift\ndone\nmkdir -p \"$root/bin\" && ln -sf \"$STRATA_UNDER_TEST\" \"$root/bin/strata\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(tmp.path().join("runner-temp")).unwrap();
        Job {
            tmp,
            workspace: workspace.to_path_buf(),
        }
    }

    fn summary(&self) -> PathBuf {
        self.tmp.path().join("step-summary.md")
    }

    fn cargo_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("cargo.log")).unwrap_or_default()
    }

    /// Runs the action's steps in order, as the runner would: `${{ … }}` in `env:`
    /// replaced (inputs with their defaults, github.action_path, runner.temp, outputs of
    /// earlier steps), each `run:` with bash, $GITHUB_OUTPUT per step, $GITHUB_PATH
    /// added to PATH for the steps after; stops at the first step that fails.
    fn use_action(&self, inputs: &[(&str, &str)]) -> Vec<StepRun> {
        let action = yaml("action.yml");
        assert_eq!(action["runs"]["using"], "composite");
        let mut values: BTreeMap<String, String> = BTreeMap::new();
        for (name, input) in action["inputs"].as_object().unwrap() {
            let default = match &input["default"] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            values.insert(format!("inputs.{name}"), default);
        }
        for (name, value) in inputs {
            let key = format!("inputs.{name}");
            assert!(values.contains_key(&key), "action.yml has no input {name}");
            values.insert(key, (*value).to_owned());
        }
        values.insert(
            "github.action_path".into(),
            repo_root().display().to_string(),
        );
        values.insert(
            "runner.temp".into(),
            self.tmp.path().join("runner-temp").display().to_string(),
        );
        let github_path = self.tmp.path().join("github-path");
        std::fs::write(&github_path, "").unwrap();
        let mut runs = Vec::new();
        for (i, step) in action["runs"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let id = step["id"]
                .as_str()
                .expect("every step has an id")
                .to_owned();
            assert!(step.get("if").is_none(), "step {id}: `if:` is not emulated");
            assert_eq!(step["shell"], "bash", "step {id}");
            let script = step["run"].as_str().expect("a run step");
            assert!(
                !script.contains("${{"),
                "step {id}: expressions go through env:, never into the script"
            );
            let output_file = self.tmp.path().join(format!("github-output-{i}"));
            std::fs::write(&output_file, "").unwrap();
            let added: Vec<PathBuf> = std::fs::read_to_string(&github_path)
                .unwrap()
                .lines()
                .rev()
                .map(PathBuf::from)
                .collect();
            let mut first: Vec<&Path> = added.iter().map(PathBuf::as_path).collect();
            let fake_bin = self.tmp.path().join("fake-bin");
            first.push(&fake_bin);
            let mut cmd = Command::new("bash");
            cmd.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
                .current_dir(&self.workspace)
                .env("PATH", path_with(&first))
                .env("GITHUB_STEP_SUMMARY", self.summary())
                .env("GITHUB_OUTPUT", &output_file)
                .env("GITHUB_PATH", &github_path)
                .env("FAKE_CARGO_LOG", self.tmp.path().join("cargo.log"))
                .env("STRATA_UNDER_TEST", env!("CARGO_BIN_EXE_strata"))
                .env_remove("NO_COLOR");
            for (name, value) in step["env"].as_object().into_iter().flatten() {
                cmd.env(name, expand(value.as_str().unwrap(), &values));
            }
            let out = cmd.output().unwrap();
            let outputs: BTreeMap<String, String> = std::fs::read_to_string(&output_file)
                .unwrap()
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            for (k, v) in &outputs {
                values.insert(format!("steps.{id}.outputs.{k}"), v.clone());
            }
            let failed = !out.status.success();
            runs.push(StepRun {
                id,
                code: out.status.code(),
                stdout: text(&out.stdout),
                stderr: text(&out.stderr),
                outputs,
            });
            if failed {
                break;
            }
        }
        // The action's own outputs are those of its steps.
        for (name, output) in action["outputs"].as_object().into_iter().flatten() {
            let value = expand(output["value"].as_str().unwrap(), &values);
            assert!(!value.is_empty(), "output {name} is empty");
        }
        runs
    }
}

/// `${{ a.b }}` replaced by `values["a.b"]`; anything else the runner would evaluate
/// fails the test, so that a new expression in action.yml gets taught to it.
fn expand(template: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("closed expression") + start;
        let expr = rest[start + 3..end].trim();
        out.push_str(
            values
                .get(expr)
                .unwrap_or_else(|| panic!("action.yml: expression {expr} is not emulated")),
        );
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn step<'a>(runs: &'a [StepRun], id: &str) -> &'a StepRun {
    runs.iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("step {id} did not run: {runs:#?}"))
}

#[test]
fn the_action_installs_strata_writes_the_summary_and_fails_on_drift_or_error() {
    let project = Project::new();
    let files = project.files();

    // At the project root, every input at its default: installed from the action's
    // own checkout; up to date, so every step passes.
    let job = Job::new(&project.root());
    let runs = job.use_action(&[]);
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["install", "summary", "annotate"], "{runs:#?}");
    assert!(runs.iter().all(|r| r.code == Some(0)), "{runs:#?}");
    assert_eq!(
        job.cargo_log(),
        format!(
            "install --locked --no-default-features --root {}/runner-temp/strata --path {}\n",
            job.tmp.path().display(),
            repo_root().display()
        )
    );
    assert!(step(&runs, "install").stdout.starts_with("strata "));
    assert_eq!(
        std::fs::read_to_string(job.summary()).unwrap(),
        format!("✅ strata: `snapshots` is up to date ({files} files)\n")
    );
    assert_eq!(step(&runs, "annotate").outputs["exit-code"], "0");

    // Drift: the summary step records 1 and passes; the annotation step fails.
    project.change_prod_replicas();
    let job = Job::new(&project.root());
    let runs = job.use_action(&[]);
    assert_eq!(step(&runs, "summary").code, Some(0), "{runs:#?}");
    assert_eq!(step(&runs, "summary").outputs["exit-code"], "1");
    let annotate = step(&runs, "annotate");
    assert_eq!(annotate.code, Some(1), "{annotate:#?}");
    assert_eq!(annotate.outputs["exit-code"], "1");
    assert!(
        annotate.stdout.contains(
            "::error file=snapshots/prod-aws/releases/app.values.yaml,title=stale artifact::"
        ),
        "{}",
        annotate.stdout
    );
    let summary = std::fs::read_to_string(job.summary()).unwrap();
    assert!(
        summary.starts_with("### ❌ strata: `snapshots` is stale: 2 files"),
        "{summary}"
    );
    assert_eq!(summary, step(&runs, "summary").stdout);

    // From the folder above, `project: p` and a pinned version: installed from git;
    // annotations name files from the workspace root.
    let job = Job::new(project.tmp.path());
    let runs = job.use_action(&[("project", "p"), ("version", "v0.1.0")]);
    assert_eq!(
        job.cargo_log(),
        format!(
            "install --locked --no-default-features --root {}/runner-temp/strata --git https://github.com/strata-dev/strata --rev v0.1.0 strata\n",
            job.tmp.path().display()
        )
    );
    let annotate = step(&runs, "annotate");
    assert_eq!(annotate.code, Some(1), "{annotate:#?}");
    assert!(
        annotate
            .stdout
            .contains("::error file=p/snapshots/prod-aws/releases/app.values.yaml,"),
        "{}",
        annotate.stdout
    );

    // An invalid project: exit 2, the summary says so, the error is annotated at its
    // file and line.
    project.edit(
        "environments/prod.yaml",
        "        replicas: 5\n",
        "        replicas: five\n",
    );
    let job = Job::new(project.tmp.path());
    let runs = job.use_action(&[("project", "p")]);
    assert_eq!(step(&runs, "summary").outputs["exit-code"], "2");
    let annotate = step(&runs, "annotate");
    assert_eq!(annotate.code, Some(2), "{annotate:#?}");
    assert!(
        annotate
            .stdout
            .contains("::error file=p/environments/prod.yaml,line="),
        "{}",
        annotate.stdout
    );
    assert!(
        std::fs::read_to_string(job.summary())
            .unwrap()
            .starts_with("### ❌ strata: the render could not be checked (1 error)")
    );
    assert!(annotate.stderr.contains("error: environments/prod.yaml:"));
}

#[test]
fn the_pre_commit_hooks_run_their_entries_on_the_files_they_name() {
    let hooks = yaml(".pre-commit-hooks.yaml");
    let hooks: BTreeMap<String, serde_json::Value> = hooks
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["id"].as_str().unwrap().to_owned(), h.clone()))
        .collect();
    assert_eq!(
        hooks.keys().collect::<Vec<_>>(),
        ["strata-render-check", "strata-validate"]
    );
    assert_eq!(hooks["strata-validate"]["entry"], "strata validate");
    assert_eq!(
        hooks["strata-render-check"]["entry"],
        "strata render --check --out snapshots"
    );

    // Which staged files start a hook: pre-commit matches `files` with Python's
    // re.search.
    let matches = |hook: &str, paths: &[&str]| -> Vec<String> {
        let pattern = hooks[hook]["files"].as_str().unwrap();
        let out = Command::new(venv_bin().join("python"))
            .args([
                "-c",
                "import re, sys\nfor p in sys.argv[2:]:\n    if re.search(sys.argv[1], p): print(p)",
                pattern,
            ])
            .args(paths)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_owned).collect()
    };
    let paths = [
        "environments/prod.yaml",
        "infra/environments/clouds/aws.yaml",
        "charts/app/values.yaml",
        "templates/notes.txt.j2",
        "vars.schema.json",
        "snapshots/prod-aws/releases/app.values.yaml",
        "src/main.rs",
        "docs/environments.md",
        "README.md",
    ];
    assert_eq!(matches("strata-validate", &paths), paths[..5]);
    assert_eq!(matches("strata-render-check", &paths), paths[..6]);

    let project = Project::new();
    let hook = |id: &str| -> Output {
        assert_eq!(hooks[id]["pass_filenames"], false, "{id}");
        Command::new("bash")
            .args(["-c", hooks[id]["entry"].as_str().unwrap()])
            .current_dir(project.root())
            .env("PATH", path_with(&[]))
            .env_remove("GITHUB_STEP_SUMMARY")
            .env_remove("NO_COLOR")
            .output()
            .unwrap()
    };
    for id in ["strata-validate", "strata-render-check"] {
        let out = hook(id);
        assert_eq!(out.status.code(), Some(0), "{id}: {}", text(&out.stderr));
    }
    assert!(text(&hook("strata-render-check").stdout).starts_with("snapshots: up to date"));

    project.change_prod_replicas();
    assert_eq!(hook("strata-validate").status.code(), Some(0));
    let out = hook("strata-render-check");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).starts_with("snapshots: 2 file(s) differ from the render\n"),
        "{}",
        text(&out.stdout)
    );

    project.edit(
        "environments/prod.yaml",
        "        replicas: 5\n",
        "        replicas: five\n",
    );
    for id in ["strata-validate", "strata-render-check"] {
        let out = hook(id);
        assert_eq!(out.status.code(), Some(2), "{id}");
        assert!(
            text(&out.stderr).contains("releases.app.values.backend.replicas"),
            "{id}: {}",
            text(&out.stderr)
        );
    }
}
