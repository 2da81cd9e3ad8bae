//! A fuzz harness for the layer loader and the reference resolver, driven by proptest
//! (cargo-fuzz needs a nightly toolchain and libFuzzer, which CI does not have).
//!
//! Every run replays the committed seed corpus (`tests/fuzz/corpus/loader/*`: raw
//! layer files; `tests/fuzz/corpus/refs/*`: one reference path or `!sub` text per
//! file), then a short random run: fresh random inputs and mutations of the seeds
//! (bytes flipped, inserted, deleted, spliced). Each input must:
//!
//! - never panic (caught and reported with the input),
//! - be accepted, or refused with errors that each carry a location
//!   (`file:line:col: `),
//! - finish within its bound ([`LOADER_CPU`], [`RESOLVER_WALL`]).
//!
//! The random part's size: `STRATA_FUZZ_CASES` (default 200 for the loader and 40 for
//! the resolver, a few seconds). A longer hunt:
//! `STRATA_FUZZ_CASES=100000 cargo test --test integration fuzz -- --nocapture`.
//! An input that fails is printed as an escaped string: save it under the corpus folder
//! so that every later run replays it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::{copy_dir, repo_root};

/// The stack strata gives the threads that parse and resolve (`WORKER_STACK` in
/// src/lib.rs): the harness runs its inputs with the same, so that the parser's depth
/// budget, not a test thread's smaller stack, is what a deep input meets.
const STACK: usize = 16 << 20;

/// Runs `f` on a thread with strata's stack (and makes rayon's pool use it too).
fn with_strata_stack(f: impl FnOnce() + Send + 'static) {
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(STACK)
        .build_global();
    let result = std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .unwrap()
        .join();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// The time one input may take: CPU time of the calling thread for the loader (which
/// parses on it), wall time for the resolver (which loads on rayon's threads; beside
/// other tests on a loaded machine, so the bound is loose). A normal input takes
/// milliseconds: these catch a hang or a blow-up.
const LOADER_CPU: Duration = Duration::from_secs(5);
const RESOLVER_WALL: Duration = Duration::from_secs(30);

/// CPU time used so far by the calling thread.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = repo_root().join("tests/fuzz/corpus").join(kind);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    seeds.sort();
    assert!(
        seeds.len() >= 10,
        "{}: the seed corpus is missing",
        dir.display()
    );
    seeds
}

const LOADER: Bound = Bound::ThreadCpu(LOADER_CPU);
const RESOLVER: Bound = Bound::Wall(RESOLVER_WALL);

fn cases(default: u32) -> u32 {
    std::env::var("STRATA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every error line names its place: `FILE:LINE:COL: ` with numbers ≥ 1.
fn located(text: &str) -> Result<(), String> {
    for line in text.lines().filter(|l| !l.starts_with("  ")) {
        let mut parts = line.splitn(4, ':');
        let file = parts.next().unwrap_or_default();
        let numbers: Vec<Option<u32>> = parts
            .by_ref()
            .take(2)
            .map(|p| p.parse::<u32>().ok())
            .collect();
        let ok = !file.is_empty()
            && numbers.len() == 2
            && numbers.iter().all(|n| n.is_some_and(|n| n >= 1))
            && parts.next().is_some_and(|rest| rest.starts_with(' '));
        if !ok {
            return Err(format!("an error without a location: {line:?}"));
        }
    }
    Ok(())
}

/// How an input's time is measured, and its bound.
#[derive(Clone, Copy)]
enum Bound {
    ThreadCpu(Duration),
    Wall(Duration),
}

/// Runs `f` on `input`, checking the three properties; `what` names the input.
fn check<F: FnOnce() -> Result<(), String>>(
    what: &str,
    input: &[u8],
    bound: Bound,
    f: F,
) -> Result<(), String> {
    let (started, cpu) = (Instant::now(), thread_cpu());
    let result = catch_unwind(AssertUnwindSafe(f));
    let (elapsed, limit) = match bound {
        Bound::ThreadCpu(limit) => (thread_cpu() - cpu, limit),
        Bound::Wall(limit) => (started.elapsed(), limit),
    };
    let shown = format!("{:?}", String::from_utf8_lossy(input));
    match result {
        Err(_) => Err(format!("{what}: panicked on {shown}")),
        Ok(Err(e)) => Err(format!("{what}: {e}\ninput: {shown}")),
        Ok(Ok(())) if elapsed > limit => Err(format!("{what}: took {elapsed:?} on {shown}")),
        Ok(Ok(())) => Ok(()),
    }
}

fn load_layer(bytes: &[u8]) -> Result<(), String> {
    match strata::config::parse_layer(bytes, "f.yaml") {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = e.to_string();
            if !text.starts_with("f.yaml:") {
                return Err(format!("the error names another file: {text}"));
            }
            located(&text)
        }
    }
}

/// Mutations of a seed: what a fuzzer's first stage does, without its coverage map.
fn mutate(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let interesting: Vec<&'static [u8]> = vec![
        b":",
        b"- ",
        b"!ref ",
        b"!sub ",
        b"${",
        b"}",
        b"&a ",
        b"*a",
        b"<<: ",
        b"\n",
        b"\r\n",
        b"\t",
        b"\0",
        b"\xEF\xBB\xBF",
        b"\"",
        b"'",
        b"[",
        b"]",
        b"{",
        b"#",
        b"---\n",
        b"...\n",
        b"? ",
        b"|\n",
        b">-\n",
        b"!!binary ",
        b"%YAML 1.2\n",
        b"\xff",
        b"\xc3",
        b"  ",
    ];
    (
        prop::sample::select(seeds),
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                0..4u8,
                prop::sample::select(interesting),
                any::<u8>(),
            ),
            1..8,
        ),
    )
        .prop_map(|(mut bytes, edits)| {
            for (at, how, token, byte) in edits {
                let i = if bytes.is_empty() {
                    0
                } else {
                    at.index(bytes.len() + 1)
                };
                match how {
                    0 => bytes.splice(i..i, token.iter().copied()).for_each(drop),
                    1 if i < bytes.len() => bytes[i] = byte,
                    2 if i < bytes.len() => {
                        let end = (i + 1 + usize::from(byte % 16)).min(bytes.len());
                        bytes.drain(i..end);
                    }
                    _ => {
                        // Repeat a slice: the way nesting and aliases blow up.
                        let end = (i + usize::from(byte % 32)).min(bytes.len());
                        let piece: Vec<u8> = bytes[i..end].to_vec();
                        for _ in 0..(byte % 8) {
                            bytes.splice(i..i, piece.iter().copied()).for_each(drop);
                        }
                    }
                }
            }
            bytes
        })
}

#[test]
fn the_loader_survives_its_corpus_and_random_input() {
    with_strata_stack(loader);
}

fn loader() {
    let seeds = corpus("loader");
    for (name, bytes) in &seeds {
        if let Err(e) = check(&format!("loader seed {name}"), bytes, LOADER, || {
            load_layer(bytes)
        }) {
            panic!("{e}");
        }
    }
    let mut runner = TestRunner::new(Config {
        cases: cases(200),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = prop_oneof![
        3 => mutate(seeds.into_iter().map(|(_, b)| b).collect()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
        1 => "[ -~\n\t]{0,200}".prop_map(String::into_bytes),
    ];
    let result = runner.run(&strategy, |bytes| {
        check("loader", &bytes, LOADER, || load_layer(&bytes)).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// A project (the lakehouse's environments/) whose dev-aws layer the resolver cases
/// write.
struct Project {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::Builder::new()
            .prefix("strata-fuzz-")
            .tempdir()
            .unwrap();
        let root = tmp.path().join("project");
        copy_dir(
            &repo_root().join("environments"),
            &root.join("environments"),
        );
        Project { _tmp: tmp, root }
    }

    /// Loads the project with `reference` used as a `!ref` path and inside `!sub`
    /// texts (in vars, a workload's env, and release values) and resolves dev-aws.
    fn resolve(&self, reference: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(reference);
        let quoted = serde_json::to_string(&text).unwrap();
        let sub = serde_json::to_string(&format!("a ${{{text}}} b {text}")).unwrap();
        let layer = format!(
            "vars:\n  r: !ref {quoted}\n  s: !sub {sub}\n  chain: !ref vars.r\n\
             workloads:\n  api:\n    env:\n      R: !sub {sub}\n\
             releases:\n  app:\n    values:\n      backend:\n        note: !sub {sub}\n"
        );
        write(&self.root.join("environments/dev.aws.yaml"), &layer);
        let project = strata::project::Project::Disk(self.root.clone());
        // A reference that is not even YAML (a control character) fails the load.
        let loaded = match strata::Loaded::load(project) {
            Ok(loaded) => loaded,
            Err(e) => return located(&e.to_string()),
        };
        match loaded.targets(&["dev-aws".to_owned()]) {
            Ok(_) => Ok(()),
            Err(e) => located(&e.to_string()),
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[test]
fn the_resolver_survives_its_corpus_and_random_references() {
    with_strata_stack(resolver);
}

fn resolver() {
    let seeds = corpus("refs");
    let project = Project::new();
    for (name, bytes) in &seeds {
        if let Err(e) = check(&format!("refs seed {name}"), bytes, RESOLVER, || {
            project.resolve(bytes)
        }) {
            panic!("{e}");
        }
    }
    let mut runner = TestRunner::new(Config {
        cases: cases(40),
        failure_persistence: None,
        ..Config::default()
    });
    let segment = prop_oneof![
        4 => prop::sample::select(vec![
            "target", "project", "kube", "aws", "gcp", "dns", "vars", "buckets", "workloads",
            "data", "api", "name", "arn", "url", "env", "hosts", "app", "r", "s", "chain",
            "serviceAccount", "namespace", "0", "", "*", "..", "${", "}", "$${x}",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,8}",
    ];
    let strategy = prop_oneof![
        4 => prop::collection::vec(segment, 0..6).prop_map(|s| s.join(".").into_bytes()),
        1 => mutate(seeds.into_iter().map(|(_, b)| b).collect()),
    ];
    let result = runner.run(&strategy, |bytes| {
        check("resolver", &bytes, RESOLVER, || project.resolve(&bytes)).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
