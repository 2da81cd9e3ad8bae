//! README.md, followed as a newcomer would, so that the guide cannot rot (issue 16).
//!
//! One test does it all, in this order:
//!
//! 1. **Clone.** `git clone` of this checkout into a temporary folder, at its `HEAD`
//!    commit; then the tracked files you changed and did not commit yet are copied over
//!    (and tracked files you deleted are deleted), so a developer sees their README edit
//!    tested without committing it. Untracked files are NOT copied: a file the install
//!    needs but `git add` forgot fails here as it would for a user. The clone's `.venv`
//!    is a link to this checkout's (the one `scripts/test` builds; the clone has none).
//! 2. **Every fenced block of the clone's README.md**, by its info string:
//!    - `sh`: each line is a command; every line must be listed in [`SH_LINES`], which
//!      says how it runs (exit 0 required) or why it is skipped;
//!    - `console`: run (see below) unless [`CONSOLE`] lists it as skipped, with a reason;
//!    - `yaml`: parsed with strata's own layer parser (tags `!ref`/`!sub` included);
//!    - no info string (folder trees): must be listed in [`PLAIN`], with what it is;
//!    - anything else fails the test, as does a listed entry the README no longer has:
//!      no block is silently left out.
//!
//! **Install, the deviation.** The Install section's `cargo install --locked --path .`
//! runs as `cargo install --locked --path . --debug --root <tmp>/root` with
//! `CARGO_BUILD_BUILD_DIR` set to this test run's own target folder (and
//! `CARGO_TARGET_DIR` to a temporary one, so the test run's `target/debug/strata` is
//! never overwritten) and `CARGO_NET_OFFLINE=true`: every dependency is then already
//! compiled and fetched, and only strata itself compiles (a release build from scratch
//! takes minutes). `<tmp>/root/bin` comes first on `PATH`, so `strata` in every later
//! block is the installed binary. `cargo run` in the quick start builds the same way
//! (its build without the `cloud` feature compiles the dependencies it needs with
//! their own features, once per test folder), and its binary is then checked: it says
//! `without cloud` and refuses `plan` with exit 2.
//!
//! **Sessions.** Each `console` block runs in one `bash` (not interactive: no job
//! numbers are printed for `&`), started in the clone's root with `HOME` a temporary
//! folder, so `export`, `cd` and `&` servers carry over between its `$ ` lines. A block
//! listed in [`CONSOLE`] may first run a *prelude* (set-up the README describes in
//! prose, e.g. "a copy of the example with three mistakes"; its output is not compared,
//! it must exit 0) and may continue the session of the block before it (the AWS
//! walkthrough's three blocks are one session). At a session's end its background
//! jobs are killed. Each `$ ` line's output (stdout and stderr, as a terminal shows
//! them) is compared with the README lines under it, after this normalisation:
//! - trailing spaces and trailing empty lines are ignored;
//! - a README line that is only `…` matches any number of lines, and `…` inside a
//!   README line matches any text (the README shortens long output this way);
//! - the ports the README's servers use (moto 5000, the GCS emulator 9023, the Google
//!   IAM stand-in 9024) become free ports this test picked, in the commands; `/tmp`
//!   in a command becomes a temporary folder of the session, and that folder reads as
//!   `/tmp` in the output;
//! - after a line that ends in `&` the test waits (up to 60 s) until the ports in that
//!   line accept connections, as they would by the time a user types the next line.
//!
//! **Safety.** The sessions get a cleared environment (no AWS/Google credentials or
//! endpoints from the machine), every URL in a command that runs must be on loopback,
//! and `HTTP(S)_PROXY` points at a closed loopback port (`NO_PROXY` for 127.0.0.1), so
//! a block that forgot its emulator fails instead of reaching a cloud.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{self, assert_loopback, free_port, text};

/// How one line of an `sh` block is treated, keyed by the line's command (the text
/// before a `  #` comment, trimmed).
enum Sh {
    /// Run as it is.
    Run,
    /// Run as it is, then this check (exit 0 required) of what it built.
    RunThenCheck(&'static str),
    /// Run as this command instead (the deviation says why).
    Instead(&'static str),
    /// Not run, because…
    Skip(&'static str),
}

/// Why the deploy-pipeline block is not run.
const PIPELINE: &str = "the shape of a deploy pipeline against a real account and cluster; each command runs in the walkthroughs above and in tests/integration/{planfile,destroy}.rs";

const SH_LINES: &[(&str, Sh)] = &[
    (
        "cargo run --locked --no-default-features -- render",
        // The build without the cloud says so, and refuses a cloud command with exit 2
        // and the way to the full build.
        Sh::RunThenCheck(
            r#"b="$CARGO_TARGET_DIR/debug/strata"; "$b" --version | grep -q 'without cloud' && { "$b" plan dev-aws 2> "$TMPDIR/plan.err"; test $? -eq 2; } && grep -q 'cargo install --locked --path .' "$TMPDIR/plan.err""#,
        ),
    ),
    (
        "scripts/test",
        Sh::Skip("it is the test suite that runs this test"),
    ),
    (
        "cargo install --locked --path .",
        Sh::Instead("cargo install --locked --path . --debug --root \"$README_ROOT\" --quiet"),
    ),
    (
        "cargo install --locked --git https://github.com/strata-dev/strata",
        Sh::Skip(
            "needs the network and the published repository; `--path .` above installs the same sources",
        ),
    ),
    (
        "strata completions bash > ~/.local/share/bash-completion/completions/strata",
        Sh::Run,
    ),
    ("strata completions zsh  > \"${fpath[1]}/_strata\"", Sh::Run),
    (
        "strata completions fish > ~/.config/fish/completions/strata.fish",
        Sh::Run,
    ),
    (
        "strata man --dir ~/.local/share/man/man1 && man strata",
        Sh::Run,
    ),
    (
        "scripts/bench",
        Sh::Skip("a release build and minutes of benchmarks; scripts/bench has its own checks"),
    ),
    ("scripts/bench --tmp /dev/shm", Sh::Skip("as scripts/bench")),
    (
        "scripts/bench --baseline OLD/strata",
        Sh::Skip("as scripts/bench, and needs another build"),
    ),
    (
        "# 1. In the pull request: plan, and keep the plan as the thing to review.",
        Sh::Skip(PIPELINE),
    ),
    (
        "strata plan prod-aws --out prod-aws.plan",
        Sh::Skip(PIPELINE),
    ),
    (
        "#    (the job attaches prod-aws.plan and the printed plan for the reviewer)",
        Sh::Skip(PIPELINE),
    ),
    (
        "# 2. After approval, on the main branch: apply exactly what was reviewed.",
        Sh::Skip(PIPELINE),
    ),
    (
        "strata --format json apply prod-aws.plan > evidence.json",
        Sh::Skip(PIPELINE),
    ),
    (
        r#"#    exit 2, nothing written, when the render, strata's version or the live state"#,
        Sh::Skip(PIPELINE),
    ),
    (
        "#    moved since the plan: plan again and review the new one.",
        Sh::Skip(PIPELINE),
    ),
    (
        "# 3. Tearing a target down: look first, then destroy (a protected target needs its name).",
        Sh::Skip(PIPELINE),
    ),
    ("strata plan dev-aws --destroy", Sh::Skip(PIPELINE)),
    (
        "strata destroy dev-aws --approve --force-empty",
        Sh::Skip(PIPELINE),
    ),
    (
        "strata destroy prod-aws --approve=prod-aws",
        Sh::Skip(PIPELINE),
    ),
    (
        "scripts/bench --quick",
        Sh::Skip("a release build; CI runs it after scripts/test"),
    ),
];

/// What runs before the `sh` lines of the Install section: the folders the README
/// says to create first, and zsh's `$fpath` (1-based in zsh; bash runs the line, so
/// both of its first two elements are the folder). `man` prints instead of paging.
const SH_PRELUDE: &str = r#"mkdir -p ~/.local/share/bash-completion/completions ~/.config/fish/completions ~/.local/share/man/man1 ~/.zfunc
fpath=(~/.zfunc ~/.zfunc)"#;

/// A `console` block that needs more than "run it in a new session in the clone's
/// root", found by its first line (`nth` counts blocks with the same first line, from 0).
struct Console {
    first_line: &'static str,
    nth: usize,
    how: How,
}

enum How {
    Run {
        /// Shell run first; its output is not compared.
        prelude: &'static str,
        /// Runs in the session of the `console` block before it.
        continues: bool,
    },
    /// Not run, because… (no console block is skipped today).
    #[allow(dead_code)]
    Skip(&'static str),
}

const CONSOLE: &[Console] = &[
    Console {
        // "The bundled examples": init writes into the current folder.
        first_line: "$ strata init demo                          # lakehouse (the default)",
        nth: 0,
        how: How::Run {
            prelude: "cd /tmp",
            continues: false,
        },
    },
    Console {
        // "Reviewing a change": the committed render, then prod.yaml's archive rule
        // moved from 90 to 120 days, as the prose says.
        first_line: "$ strata render --check --out snapshots; echo \"exit $?\"",
        nth: 0,
        how: How::Run {
            prelude: "cd /tmp && strata init review >/dev/null && cd review && strata render --out snapshots >/dev/null && sed -i 's/archiveAfterDays: 90/archiveAfterDays: 120/' environments/prod.yaml",
            continues: false,
        },
    },
    Console {
        // explain shows "the bundled example": run outside any project.
        first_line: "$ strata explain prod-aws aws.region",
        nth: 0,
        how: How::Run {
            prelude: "cd /tmp",
            continues: false,
        },
    },
    Console {
        // "Errors": a copy of the example with the three mistakes the prose names.
        first_line: "$ strata validate; echo \"exit $?\"",
        nth: 0,
        how: How::Run {
            prelude: "cd /tmp && strata init errors >/dev/null && cd errors && sed -i '22s/requireSse/requireSSE/' environments/prod.yaml && sed -i '95s/buckets\\.data\\.name/buckets.date.name/' environments/base.yaml && sed -i '27s/replicas: 1/replicas: one/' environments/dev.yaml",
            continues: false,
        },
    },
    Console {
        // The AWS walkthrough, second block: the session of the first.
        first_line: "$ $VENV/bin/python -c \"import boto3; boto3.client('s3', region_name='eu-west-1').put_bucket_versioning(Bucket='lakehouse-dev-data-123456789012', VersioningConfiguration={'Status': 'Suspended'})\"",
        nth: 0,
        how: How::Run {
            prelude: "",
            continues: true,
        },
    },
    Console {
        // The AWS walkthrough, third block.
        first_line: "$ strata plan prod-aws",
        nth: 0,
        how: How::Run {
            prelude: "",
            continues: true,
        },
    },
];

/// Blocks without an info string: not commands. Found by their first line.
const PLAIN: &[(&str, &str)] = &[
    (
        "environments/base.yaml              every target",
        "the project layout, a folder tree",
    ),
    (
        "src/              the face: cli.rs, commands/ (one function per command; cloud.rs prints",
        "the source layout, a folder tree",
    ),
];

/// The README's server ports and what they are, replaced by free ports.
const PORTS: &[(u16, &str)] = &[
    (5000, "moto"),
    (9023, "GCS emulator"),
    (9024, "IAM stand-in"),
];

struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    info: String,
    body: Vec<String>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in readme.lines().enumerate() {
        match open.take() {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    open = Some(Block {
                        line: i + 1,
                        info: info.trim().to_owned(),
                        body: Vec::new(),
                    });
                }
            }
            Some(mut block) => {
                if line.trim_end() == "```" {
                    blocks.push(block);
                } else {
                    block.body.push(line.to_owned());
                    open = Some(block);
                }
            }
        }
    }
    assert!(open.is_none(), "README.md: a code block is never closed");
    blocks
}

/// The command of an `sh` line: the text before a `  #` comment.
fn sh_command(line: &str) -> &str {
    line.split("  #").next().unwrap_or(line).trim()
}

/// One `$ ` line and the README lines under it.
struct Step {
    readme_line: usize,
    command: String,
    expected: Vec<String>,
    /// `sh` lines must exit 0; console output is compared instead.
    must_succeed: bool,
    compare: bool,
}

struct Session {
    /// Where it starts (README line of its first block), for messages.
    line: usize,
    prelude: Vec<String>,
    steps: Vec<Step>,
}

fn console_steps(block: &Block) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for (i, line) in block.body.iter().enumerate() {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step {
                readme_line: block.line + 1 + i,
                command: command.to_owned(),
                expected: Vec::new(),
                must_succeed: false,
                compare: true,
            });
        } else {
            let step = steps.last_mut().unwrap_or_else(|| {
                panic!(
                    "README.md:{}: a console block must start with a `$ ` line",
                    block.line
                )
            });
            step.expected.push(line.clone());
        }
    }
    steps
}

/// Everything a session needs from the test: the folders, the ports, the environment.
struct Env {
    clone: PathBuf,
    scratch: PathBuf,
    vars: Vec<(String, String)>,
    ports: Vec<(u16, u16)>,
}

impl Env {
    /// A command line as the test runs it: the README's ports become the picked ones,
    /// `/tmp` the session's folder.
    fn rewrite(&self, command: &str, session_tmp: &Path) -> String {
        let mut out = command.replace("/tmp", &session_tmp.display().to_string());
        for (readme, picked) in &self.ports {
            for (from, to) in [
                (format!(":{readme}"), format!(":{picked}")),
                (format!("-p {readme}"), format!("-p {picked}")),
                (format!("--port {readme}"), format!("--port {picked}")),
            ] {
                out = out.replace(&from, &to);
            }
        }
        for word in out.split_whitespace() {
            if let Some(at) = word.find("http://").or_else(|| word.find("https://")) {
                assert_loopback(word[at..].trim_end_matches(['"', '\'', ';', ')']));
            }
        }
        out
    }

    fn ports_in(&self, command: &str) -> Vec<u16> {
        self.ports
            .iter()
            .filter(|(_, picked)| command.contains(&picked.to_string()))
            .map(|(_, picked)| *picked)
            .collect()
    }
}

const MARK: char = '\u{1e}';

/// Runs a session in one bash; returns per step its output and exit status, or the
/// prelude's failure.
fn run_session(env: &Env, session: &Session, index: usize) -> Result<Vec<(String, i32)>, String> {
    let session_tmp = env.scratch.join(format!("session-{index}"));
    std::fs::create_dir_all(&session_tmp).unwrap();
    let mut script = String::from("exec 2>&1 </dev/null\n");
    for line in &session.prelude {
        let _ = writeln!(script, "{}", env.rewrite(line, &session_tmp));
    }
    let _ = writeln!(script, "printf '{MARK}prelude %d{MARK}\\n' $?");
    for (i, step) in session.steps.iter().enumerate() {
        let command = env.rewrite(&step.command, &session_tmp);
        let _ = writeln!(script, "{command}");
        let _ = writeln!(script, "printf '{MARK}{i} %d{MARK}\\n' $?");
        if command.trim_end().ends_with('&') {
            for port in env.ports_in(&command) {
                let _ = writeln!(
                    script,
                    "for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && break; sleep 0.1; done"
                );
            }
        }
    }
    script.push_str("jobs -p | xargs -r kill 2>/dev/null; wait\n");
    let script_path = session_tmp.join("readme-session.sh");
    std::fs::write(&script_path, &script).unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args(["--kill-after=10", "600", "bash", "--noprofile", "--norc"])
        .arg(&script_path)
        .current_dir(&env.clone)
        .env_clear()
        .envs(env.vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    let out = cmd.output().expect("bash runs");
    let all = text(&out.stdout);
    // Split on the markers: "<output>\x1e<id> <status>\x1e\n".
    let mut results = Vec::new();
    let mut rest = all.as_str();
    let mut prelude_done = false;
    while let Some(start) = rest.find(MARK) {
        let output = &rest[..start];
        let after = &rest[start + MARK.len_utf8()..];
        let end = after.find(MARK).expect("a closed marker");
        let mut fields = after[..end].split(' ');
        let id = fields.next().unwrap();
        let status: i32 = fields.next().unwrap().parse().unwrap();
        rest = after[end + MARK.len_utf8()..]
            .strip_prefix('\n')
            .unwrap_or(&after[end + MARK.len_utf8()..]);
        let output = output.replace(&session_tmp.display().to_string(), "/tmp");
        if id == "prelude" {
            if status != 0 {
                return Err(format!(
                    "README.md:{}: the test's prelude failed (exit {status}):\n{output}",
                    session.line
                ));
            }
            prelude_done = true;
        } else {
            results.push((output, status));
        }
    }
    assert!(prelude_done, "the session never ran its prelude:\n{all}");
    if results.len() != session.steps.len() {
        return Err(format!(
            "README.md:{}: the session stopped after {} of {} commands (bash exit {:?}); its output:\n{all}",
            session.line,
            results.len(),
            session.steps.len(),
            out.status.code()
        ));
    }
    Ok(results)
}

/// Whether `text` matches `pattern`, where `…` in the pattern matches any text.
fn line_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.len() >= part.len() && rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

/// Whether the output lines match the README's, where a README line `…` matches any
/// number of lines.
fn lines_match(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first == "…" => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(a, more)| line_matches(first, a) && lines_match(rest, more)),
    }
}

fn normalised(lines: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = lines.into_iter().map(|l| l.trim_end().to_owned()).collect();
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out
}

#[test]
fn every_readme_block_runs_and_prints_what_the_readme_shows() {
    let started = std::time::Instant::now();
    let source = support::repo_root();
    let tmp = tempfile::tempdir().expect("temp dir");
    let clone = tmp.path().join("strata");

    // 1. The clone: HEAD, plus the tracked files changed in the work tree.
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let head = git(&source, &["rev-parse", "HEAD"]).trim().to_owned();
    let out = Command::new("git")
        .args(["clone", "--quiet", "--no-checkout"])
        .arg(&source)
        .arg(&clone)
        .output()
        .expect("git clone runs");
    assert!(out.status.success(), "git clone: {}", text(&out.stderr));
    git(&clone, &["checkout", "--quiet", "--detach", &head]);
    for path in git(&source, &["diff", "--name-only", "HEAD"]).lines() {
        let from = source.join(path);
        let to = clone.join(path);
        if from.exists() {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap();
        } else {
            let _ = std::fs::remove_file(&to);
        }
    }
    let venv = support::venv_bin().parent().unwrap().to_owned();
    std::os::unix::fs::symlink(&venv, clone.join(".venv")).unwrap();

    // 2. The environment every session gets.
    let home = tmp.path().join("home");
    let root = tmp.path().join("root");
    let scratch = tmp.path().join("scratch");
    for dir in [&home, &root, &scratch, &home.join(".local/bin")] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let test_bin = PathBuf::from(env!("CARGO_BIN_EXE_strata"));
    let build_dir = test_bin.parent().unwrap().parent().unwrap().to_owned();
    let original_home = std::env::var("HOME").unwrap_or_default();
    let path = format!(
        "{}:{}:{}",
        root.join("bin").display(),
        home.join(".local/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut vars: Vec<(String, String)> = vec![
        ("PATH".into(), path),
        ("HOME".into(), home.display().to_string()),
        ("README_ROOT".into(), root.display().to_string()),
        (
            "CARGO_TARGET_DIR".into(),
            tmp.path().join("target").display().to_string(),
        ),
        (
            "CARGO_BUILD_BUILD_DIR".into(),
            build_dir.display().to_string(),
        ),
        ("CARGO_NET_OFFLINE".into(), "true".into()),
        ("MANPAGER".into(), "cat".into()),
        ("PAGER".into(), "cat".into()),
        ("HTTP_PROXY".into(), "http://127.0.0.1:9".into()),
        ("HTTPS_PROXY".into(), "http://127.0.0.1:9".into()),
        ("http_proxy".into(), "http://127.0.0.1:9".into()),
        ("https_proxy".into(), "http://127.0.0.1:9".into()),
        ("NO_PROXY".into(), "127.0.0.1,localhost".into()),
        ("no_proxy".into(), "127.0.0.1,localhost".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("TMPDIR".into(), scratch.display().to_string()),
    ];
    // cargo and rustup keep their caches where the surrounding build has them.
    vars.push((
        "CARGO_HOME".into(),
        std::env::var("CARGO_HOME").unwrap_or_else(|_| format!("{original_home}/.cargo")),
    ));
    vars.push((
        "RUSTUP_HOME".into(),
        std::env::var("RUSTUP_HOME").unwrap_or_else(|_| format!("{original_home}/.rustup")),
    ));
    for keep in ["RUSTUP_TOOLCHAIN", "LANG", "LC_ALL"] {
        if let Ok(value) = std::env::var(keep) {
            vars.push((keep.into(), value));
        }
    }
    let env = Env {
        clone: clone.clone(),
        scratch,
        vars,
        ports: PORTS.iter().map(|(p, _)| (*p, free_port())).collect(),
    };

    // 3. The blocks, sorted into sessions.
    let readme = std::fs::read_to_string(clone.join("README.md")).expect("README.md");
    let blocks = blocks(&readme);
    let mut problems: Vec<String> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut sessions: Vec<Session> = Vec::new();
    let mut used_sh = vec![false; SH_LINES.len()];
    let mut used_console = vec![false; CONSOLE.len()];
    let mut used_plain = vec![false; PLAIN.len()];
    let mut seen_first_lines: Vec<String> = Vec::new();
    let mut yaml_blocks = 0;
    let mut last_console_session: Option<usize> = None;
    for block in &blocks {
        let first = block.body.first().cloned().unwrap_or_default();
        let nth = seen_first_lines.iter().filter(|l| **l == first).count();
        seen_first_lines.push(first.clone());
        match block.info.as_str() {
            "yaml" => {
                yaml_blocks += 1;
                let body = block.body.join("\n");
                if let Err(e) = strata::config::parse_layer(
                    body.as_bytes(),
                    &format!("README.md:{}", block.line + 1),
                ) {
                    problems.push(format!(
                        "README.md:{}: the yaml block does not parse: {e}",
                        block.line
                    ));
                }
            }
            "sh" => {
                let mut steps = Vec::new();
                for (i, line) in block.body.iter().enumerate() {
                    let command = sh_command(line);
                    if command.is_empty() {
                        continue;
                    }
                    let Some(at) = SH_LINES.iter().position(|(c, _)| *c == command) else {
                        problems.push(format!(
                            "README.md:{}: the sh line `{command}` is neither run nor skipped: list it in SH_LINES (tests/integration/readme.rs)",
                            block.line + 1 + i
                        ));
                        continue;
                    };
                    used_sh[at] = true;
                    let run = match &SH_LINES[at].1 {
                        Sh::Run => command.to_owned(),
                        Sh::RunThenCheck(check) => format!("{command} && {{ {check}; }}"),
                        Sh::Instead(instead) => (*instead).to_owned(),
                        Sh::Skip(why) => {
                            skipped.push(format!("README.md:{}: `{command}`: {why}", block.line + 1 + i));
                            continue;
                        }
                    };
                    steps.push(Step {
                        readme_line: block.line + 1 + i,
                        command: run,
                        expected: Vec::new(),
                        must_succeed: true,
                        compare: false,
                    });
                }
                if !steps.is_empty() {
                    sessions.push(Session {
                        line: block.line,
                        prelude: SH_PRELUDE.lines().map(str::to_owned).collect(),
                        steps,
                    });
                }
            }
            "console" => {
                let listed = CONSOLE
                    .iter()
                    .position(|c| c.first_line == first && c.nth == nth);
                if let Some(at) = listed {
                    used_console[at] = true;
                }
                let (prelude, continues) = match listed.map(|at| &CONSOLE[at].how) {
                    Some(How::Skip(why)) => {
                        skipped.push(format!("README.md:{}: console block: {why}", block.line));
                        continue;
                    }
                    Some(How::Run { prelude, continues }) => (*prelude, *continues),
                    None => ("", false),
                };
                let steps = console_steps(block);
                if continues {
                    let at = last_console_session.unwrap_or_else(|| {
                        panic!("README.md:{}: continues no session", block.line)
                    });
                    let session = &mut sessions[at];
                    if !prelude.is_empty() {
                        // A continuing block's prelude runs as an uncompared step.
                        session.steps.push(Step {
                            readme_line: block.line,
                            command: prelude.to_owned(),
                            expected: Vec::new(),
                            must_succeed: true,
                            compare: false,
                        });
                    }
                    session.steps.extend(steps);
                } else {
                    sessions.push(Session {
                        line: block.line,
                        prelude: prelude.lines().map(str::to_owned).collect(),
                        steps,
                    });
                    last_console_session = Some(sessions.len() - 1);
                }
            }
            "" => match PLAIN.iter().position(|(l, _)| *l == first) {
                Some(at) => used_plain[at] = true,
                None => problems.push(format!(
                    "README.md:{}: a block without an info string that PLAIN does not list (tests/integration/readme.rs); mark commands `sh` or `console`",
                    block.line
                )),
            },
            other => problems.push(format!(
                "README.md:{}: a `{other}` block: this test runs `sh` and `console`, parses `yaml`, and lists plain blocks; decide what it is",
                block.line
            )),
        }
    }
    for (i, (command, _)) in SH_LINES.iter().enumerate() {
        if !used_sh[i] {
            problems.push(format!(
                "SH_LINES lists `{command}`, which README.md no longer has"
            ));
        }
    }
    for (i, console) in CONSOLE.iter().enumerate() {
        if !used_console[i] {
            problems.push(format!(
                "CONSOLE lists the block starting `{}` (#{}), which README.md no longer has",
                console.first_line, console.nth
            ));
        }
    }
    for (i, (first, _)) in PLAIN.iter().enumerate() {
        if !used_plain[i] {
            problems.push(format!(
                "PLAIN lists `{first}`, which README.md no longer has"
            ));
        }
    }
    assert!(
        yaml_blocks > 0 && sessions.len() > 5,
        "README.md has its blocks"
    );

    // 4. Run them, in README order (the install comes before anything that needs it).
    let mut ran = 0;
    for (index, session) in sessions.iter().enumerate() {
        let session_started = std::time::Instant::now();
        let results = run_session(&env, session, index);
        eprintln!(
            "README.md:{}: {} command(s) in {:.1?}",
            session.line,
            session.steps.len(),
            session_started.elapsed()
        );
        let results = match results {
            Ok(results) => results,
            Err(problem) => {
                problems.push(problem);
                continue;
            }
        };
        for (step, (output, status)) in session.steps.iter().zip(results) {
            ran += 1;
            if step.must_succeed && status != 0 {
                problems.push(format!(
                    "README.md:{}: `{}` exited {status}:\n{output}",
                    step.readme_line, step.command
                ));
            }
            if !step.compare {
                continue;
            }
            let expected = normalised(step.expected.iter().cloned());
            let actual = normalised(output.lines().map(str::to_owned));
            if !lines_match(&expected, &actual) {
                problems.push(format!(
                    "README.md:{}: `$ {}` printed other lines than the README shows\n--- README.md\n{}\n+++ printed\n{}",
                    step.readme_line,
                    step.command,
                    expected.join("\n"),
                    actual.join("\n")
                ));
            }
        }
    }
    eprintln!(
        "README: {} sessions, {ran} commands, {yaml_blocks} yaml blocks in {:.0?}; not run:\n  {}",
        sessions.len(),
        started.elapsed(),
        skipped.join("\n  ")
    );
    assert!(
        problems.is_empty(),
        "README.md is not what the binary does ({} problem(s)):\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

#[test]
fn the_output_matcher_knows_the_ellipsis() {
    let l = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert!(lines_match(&l(&["a", "…", "z"]), &l(&["a", "b", "c", "z"])));
    assert!(lines_match(&l(&["a", "…"]), &l(&["a"])));
    assert!(!lines_match(&l(&["a", "…", "z"]), &l(&["a", "b"])));
    assert!(lines_match(
        &l(&["doc: {\"V\",…}]}"]),
        &l(&["doc: {\"V\",\"S\":[1]}]}"])
    ));
    assert!(!lines_match(&l(&["doc: {…}]"]), &l(&["doc: {x}"])));
    assert!(!lines_match(&l(&["a"]), &l(&["a", "b"])));
}
