//! The output folder is replaced atomically: stale files go, other targets' files stay
//! when targets are named, and a render killed at any moment leaves exactly the old or
//! exactly the new tree, with its temporary folder removed by the next run.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::example::{Copy, LAKEHOUSE, assert_same_tree, files, tree};
use crate::support::text;

#[test]
fn a_successful_render_removes_stale_files() {
    let copy = Copy::new();
    copy.render_ok();
    // A release and a workload that the layers no longer have, and a whole target.
    std::fs::write(
        copy.out().join("dev-aws/releases/old.values.yaml"),
        "old: true\n",
    )
    .unwrap();
    std::fs::write(copy.out().join("dev-aws/iam/batch.policy.json"), "{}\n").unwrap();
    std::fs::create_dir_all(copy.out().join("gone-target/iam")).unwrap();
    std::fs::write(copy.out().join("gone-target/iam/api.policy.json"), "{}\n").unwrap();
    let output = copy.render_ok();
    let n = LAKEHOUSE.files;
    assert!(
        text(&output.stdout).contains(&format!(
            ": {n} files (0 written, {n} unchanged, 3 removed)"
        )),
        "{}",
        text(&output.stdout)
    );
    assert!(!copy.out().join("dev-aws/releases/old.values.yaml").exists());
    assert!(!copy.out().join("dev-aws/iam/batch.policy.json").exists());
    assert!(!copy.out().join("gone-target").exists());
    assert_same_tree(
        &tree(&copy.out()),
        &tree(&copy.path("snapshots")),
        "out/ is exactly the render",
    );
}

#[test]
fn rendering_named_targets_keeps_the_other_targets_files() {
    use std::os::unix::fs::MetadataExt;
    let copy = Copy::new();
    copy.render_ok();
    std::fs::write(copy.out().join("dev-gcp/extra.txt"), "kept\n").unwrap();
    std::fs::write(copy.out().join("dev-aws/stale.txt"), "old\n").unwrap();
    copy.replace(
        "environments/dev.yaml",
        "LOG_LEVEL: debug",
        "LOG_LEVEL: trace",
    );
    let out = copy.out();
    let inode = |target: &str| std::fs::metadata(out.join(target)).unwrap().ino();
    let untouched = inode("dev-gcp");
    let replaced = inode("dev-aws");
    let output = copy.strata(&["render", "dev-aws", "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    // Only the named target's folder is replaced (the cost follows the targets named):
    // its stale file goes, and the other folders are the very same directories. The
    // count is of the whole folder (the render and extra.txt); written are the env file
    // and the release values that take the env by `!ref`, of dev-aws's 9 files.
    assert!(
        text(&output.stdout).contains(&format!(
            ": {} files (2 written, 7 unchanged, 1 removed)",
            LAKEHOUSE.files + 1
        )),
        "{}",
        text(&output.stdout)
    );
    assert!(!out.join("dev-aws/stale.txt").exists());
    assert_ne!(inode("dev-aws"), replaced, "dev-aws is swapped in whole");
    assert_eq!(inode("dev-gcp"), untouched, "dev-gcp is not rebuilt");
    let env = |target: &str| std::fs::read_to_string(out.join(target).join("env/api.env")).unwrap();
    assert!(env("dev-aws").contains("LOG_LEVEL=trace\n"));
    assert!(
        env("dev-gcp").contains("LOG_LEVEL=debug\n"),
        "dev-gcp was not named, so it is not re-rendered"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("dev-gcp/extra.txt")).unwrap(),
        "kept\n"
    );
    for target in ["prod-aws", "prod-gcp", "staging-aws", "staging-gcp"] {
        assert!(
            out.join(target).join("releases/app.values.yaml").exists(),
            "{target} kept"
        );
    }
}

/// Adds `count` environments (two targets each) to the project, so a render writes
/// thousands of files and takes long enough to be killed half way.
fn grow(project: &Path, count: usize) {
    for i in 0..count {
        let env = format!("load{i:03}");
        std::fs::write(
            project.join(format!("environments/{env}.yaml")),
            format!(
                "clouds: [aws, gcp]\n\
                 aws:\n  accountId: \"{:012}\"\n  cluster: lakehouse-{env}\n  \
                 oidcIssuer: https://oidc.eks.eu-west-1.amazonaws.com/id/{:032X}\n\
                 gcp:\n  projectId: lakehouse-{env}\n  cluster: lakehouse-{env}\n\
                 dns:\n  domain: {env}.example.com\n  hosts:\n    app: lakehouse.{env}.example.com\n",
                100_000_000_000u64 + i as u64,
                i
            ),
        )
        .unwrap();
    }
}

/// xorshift64: enough randomness for kill times, and the seed is printed for reruns.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn leftovers(project: &Path) -> Vec<String> {
    std::fs::read_dir(project)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out.strata-tmp-"))
        .collect()
}

#[test]
fn a_killed_render_leaves_the_old_tree_or_the_new_one_never_a_mix() {
    let copy = Copy::new();
    grow(&copy.root(), 200);
    let out = copy.out();
    let out_arg = out.to_str().unwrap().to_owned();
    let set_level = |level: &str| {
        let base = copy.path("environments/base.yaml");
        let text = std::fs::read_to_string(&base).unwrap();
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("LOG_LEVEL:"))
            .unwrap()
            .to_owned();
        let indent = &line[..line.len() - line.trim_start().len()];
        std::fs::write(
            &base,
            text.replacen(&line, &format!("{indent}LOG_LEVEL: {level}"), 1),
        )
        .unwrap();
    };

    // The two trees a render may leave, each rendered to completion once.
    let mut trees = Vec::new();
    let mut full = Duration::ZERO;
    for level in ["info", "error"] {
        set_level(level);
        let dir = copy.tmp.path().join(format!("full-{level}"));
        let started = Instant::now();
        let output = copy.strata(&["render", "--out", dir.to_str().unwrap()]);
        full = full.max(started.elapsed());
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        trees.push(tree(&dir));
    }
    // 200 more environments of 9 (aws) + 8 (gcp) files each.
    assert_eq!(files(&trees[0]).len(), 200 * 17 + LAKEHOUSE.files);
    assert!(trees[0] != trees[1]);

    set_level("info");
    assert_eq!(
        copy.strata(&["render", "--out", &out_arg]).status.code(),
        Some(0)
    );
    let mut current = 0;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill test: seed {seed}, a full render takes {full:?}");
    let mut rng = Rng(seed);
    let (mut killed, mut saw_leftover) = (0, false);
    for round in 0..8 {
        let next = 1 - current;
        set_level(["info", "error"][next]);
        let mut child = crate::support::strata()
            .args([
                "-C",
                copy.root().to_str().unwrap(),
                "render",
                "--out",
                &out_arg,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(rng.below(full.as_millis() as u64 + 50));
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();
        saw_leftover |= !leftovers(&copy.root()).is_empty();
        let now = tree(&out);
        current = if now == trees[current] {
            current
        } else if now == trees[next] {
            next
        } else {
            panic!(
                "round {round} (killed after {delay:?}, seed {seed}): out/ is neither the old tree nor the new one"
            );
        };
    }
    eprintln!(
        "kill test: {killed} of 8 renders killed while running; a temp folder was left: {saw_leftover}"
    );
    assert!(
        killed > 0,
        "no render was killed while running (seed {seed}); the test proved nothing"
    );

    // A run that finishes removes what killed runs left, including foreign leftovers.
    std::fs::create_dir_all(copy.root().join(".out.strata-tmp-999999/dev-aws/releases")).unwrap();
    std::fs::write(
        copy.root()
            .join(".out.strata-tmp-999999/dev-aws/releases/app.values.yaml"),
        "half: written\n",
    )
    .unwrap();
    set_level("info");
    assert_eq!(
        copy.strata(&["render", "--out", &out_arg]).status.code(),
        Some(0)
    );
    assert!(tree(&out) == trees[0]);
    assert_eq!(leftovers(&copy.root()), Vec::<String>::new());
}
