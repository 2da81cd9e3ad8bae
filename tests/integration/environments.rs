//! Every entry of `environments/` is accounted for: a layer is a regular `*.yaml` file
//! (or a link to one inside the project); anything else is exit 2, one exact line per
//! entry, sorted, all of them in one run, with nothing written. Dotfiles are ignored.
//! Nothing is opened that is not a file: a FIFO never blocks a run.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::fixture::{Fixture, with_count, write};
use crate::support::fs::{assert_same, mkfifo, mksocket, symlink};
use crate::support::text;

const TOP: &str = "environments/ holds *.yaml layer files and the folders clouds/ and discovered/";
const CLOUDS: &str = "environments/clouds/ holds only cloud layer files (*.yaml)";
const DISCOVERED: &str = "environments/discovered/ holds only generated *.yaml lock files";
const FOLDER_HINT: &str = "move its layer files into environments/ (or environments/clouds/), or move the folder out of environments/";

fn folder(path: &str, belongs: &str) -> String {
    format!("error: {path}: is a folder; {belongs}\n  hint: {FOLDER_HINT}\n")
}

fn special(path: &str, what: &str, belongs: &str) -> String {
    format!("error: {path}: is {what}, not a layer file\n  hint: remove it; {belongs}\n")
}

fn not_a_layer(path: &str, dir: &str) -> String {
    format!(
        "error: {path}: is not a layer file (*.yaml), and strata reads nothing else here\n  \
         hint: move it out of {dir}/ (dotfiles such as .gitkeep are ignored)\n"
    )
}

fn rename(path: &str, to: &str) -> String {
    format!("error: {path}: is not read: layer files end in .yaml\n  hint: rename it to {to}\n")
}

fn same_layer(path: &str, layer: &str, others: &str, dir: &str) -> String {
    format!(
        "error: {path}: names the same layer `{layer}` as {others}\n  hint: keep one file per \
         layer: merge them into {dir}/{layer}.yaml and delete the others\n"
    )
}

fn link_outside(path: &str, to: &str) -> String {
    format!(
        "error: {path}: is a symbolic link to {to}, outside the project\n  hint: a layer must be \
         inside the project, so that it renders the same on every machine; copy the file in \
         instead of linking to it\n"
    )
}

fn dangling(path: &str, to: &str) -> String {
    format!(
        "error: {path}: is a symbolic link to {to}, which does not exist\n  hint: remove the \
         link, or create what it points to\n"
    )
}

type Setup = fn(&Fixture);

/// One kind of stray entry each: how to make it, and exactly what strata says.
fn cases() -> Vec<(&'static str, Setup, String)> {
    vec![
        (
            "a layer saved as .yml",
            |f| {
                std::fs::rename(
                    f.path("environments/staging.yaml"),
                    f.path("environments/staging.yml"),
                )
                .unwrap()
            },
            rename("environments/staging.yml", "staging.yaml"),
        ),
        (
            "a layer saved as .YAML",
            |f| {
                std::fs::rename(
                    f.path("environments/staging.yaml"),
                    f.path("environments/staging.YAML"),
                )
                .unwrap()
            },
            rename("environments/staging.YAML", "staging.yaml"),
        ),
        (
            "a folder other than clouds/ and discovered/",
            |f| write(&f.path("environments/old/dev.yaml"), "\n"),
            folder("environments/old", TOP),
        ),
        (
            "a link out of the project",
            |f| {
                symlink(
                    f.tmp.path().join("outside.yaml"),
                    &f.path("environments/shared.yaml"),
                )
            },
            link_outside("environments/shared.yaml", "[TMP]/outside.yaml"),
        ),
        (
            "a dangling link",
            |f| symlink("missing.yaml", &f.path("environments/gone.yaml")),
            dangling("environments/gone.yaml", "missing.yaml"),
        ),
        (
            "a link that loops",
            |f| symlink("loop.yaml", &f.path("environments/loop.yaml")),
            "error: environments/loop.yaml: is a symbolic link to loop.yaml that cannot be \
             followed (Too many levels of symbolic links (os error 40))\n  hint: remove or fix \
             the link\n"
                .to_owned(),
        ),
        (
            "a link to a folder",
            |f| symlink("../templates", &f.path("environments/tpl")),
            format!(
                "error: environments/tpl: is a symbolic link to a folder (../templates); {TOP}\n  hint: {FOLDER_HINT}\n"
            ),
        ),
        (
            "a FIFO",
            |f| mkfifo(&f.path("environments/pipe.yaml")),
            special("environments/pipe.yaml", "a FIFO (named pipe)", TOP),
        ),
        (
            "a socket",
            |f| mksocket(&f.path("environments/agent.sock")),
            special("environments/agent.sock", "a socket", TOP),
        ),
        (
            "a README",
            |f| write(&f.path("environments/README.md"), "# layers\n"),
            not_a_layer("environments/README.md", "environments"),
        ),
        (
            "a backup copy",
            |f| {
                std::fs::copy(
                    f.path("environments/dev.yaml"),
                    f.path("environments/dev.yaml.bak"),
                )
                .unwrap();
            },
            not_a_layer("environments/dev.yaml.bak", "environments"),
        ),
        (
            "a name that is not UTF-8",
            |f| {
                use std::os::unix::ffi::OsStrExt;
                let name = std::ffi::OsStr::from_bytes(b"caf\xe9.yaml");
                std::fs::copy(
                    f.path("environments/dev.yaml"),
                    f.path("environments").join(name),
                )
                .unwrap();
            },
            "error: environments/caf\u{fffd}.yaml: the name is not valid UTF-8\n  hint: rename \
             it: layer names become target and folder names\n"
                .to_owned(),
        ),
        (
            "dev.yaml and dev.yml",
            |f| {
                std::fs::copy(
                    f.path("environments/dev.yaml"),
                    f.path("environments/dev.yml"),
                )
                .unwrap();
            },
            same_layer(
                "environments/dev.yaml",
                "dev",
                "environments/dev.yml",
                "environments",
            ),
        ),
        (
            "dev.yaml and Dev.yaml",
            |f| {
                std::fs::copy(
                    f.path("environments/dev.yaml"),
                    f.path("environments/Dev.yaml"),
                )
                .unwrap();
            },
            same_layer(
                "environments/Dev.yaml",
                "dev",
                "environments/dev.yaml",
                "environments",
            ),
        ),
        (
            "a cloud layer twice",
            |f| {
                std::fs::copy(
                    f.path("environments/clouds/aws.yaml"),
                    f.path("environments/clouds/AWS.yml"),
                )
                .unwrap();
            },
            same_layer(
                "environments/clouds/AWS.yml",
                "aws",
                "environments/clouds/aws.yaml",
                "environments/clouds",
            ),
        ),
        (
            "a folder in clouds/",
            |f| std::fs::create_dir(f.path("environments/clouds/azure")).unwrap(),
            folder("environments/clouds/azure", CLOUDS),
        ),
        (
            "a FIFO in clouds/",
            |f| mkfifo(&f.path("environments/clouds/azure.yaml")),
            special(
                "environments/clouds/azure.yaml",
                "a FIFO (named pipe)",
                CLOUDS,
            ),
        ),
        (
            "a stray file in discovered/",
            |f| write(&f.path("environments/discovered/notes.txt"), "x\n"),
            not_a_layer(
                "environments/discovered/notes.txt",
                "environments/discovered",
            ),
        ),
        (
            "a lock file saved as .yml",
            |f| write(&f.path("environments/discovered/lock.yml"), "x: 1\n"),
            rename("environments/discovered/lock.yml", "lock.yaml"),
        ),
        (
            "a folder in discovered/",
            |f| std::fs::create_dir_all(f.path("environments/discovered/old")).unwrap(),
            folder("environments/discovered/old", DISCOVERED),
        ),
    ]
}

/// A rendered project, with a file beside it for links to leave the project to.
fn rendered_fixture() -> Fixture {
    let f = Fixture::init();
    write(&f.tmp.path().join("outside.yaml"), "stolen: true\n");
    f.render_ok();
    f
}

#[test]
fn each_stray_entry_is_named_and_nothing_is_written() {
    for (about, setup, stderr) in cases() {
        let f = rendered_fixture();
        setup(&f);
        for args in [
            &["render"][..],
            &["validate"],
            &["list"],
            &["render", "--check"],
        ] {
            let before = f.snapshot();
            let output = f.run(".", args);
            assert_eq!(
                (
                    output.status.code(),
                    text(&output.stdout),
                    f.redact(&text(&output.stderr))
                ),
                (Some(2), String::new(), stderr.clone()),
                "{about}: strata {args:?}"
            );
            assert_same(&before, &f.snapshot(), about);
        }
    }
}

#[test]
fn one_run_reports_every_stray_entry_sorted() {
    let f = rendered_fixture();
    let mut expected = Vec::new();
    for (about, setup, stderr) in cases() {
        match about {
            // Each case's entry must be its own: staging.yaml can be renamed once, and
            // the loop's message is the OS's (checked on its own above).
            "a layer saved as .YAML" | "a link that loops" => continue,
            // dev.yml and Dev.yaml name one layer with dev.yaml: one error names all three.
            "dev.yaml and dev.yml" => {}
            "dev.yaml and Dev.yaml" => expected.push(same_layer(
                "environments/Dev.yaml",
                "dev",
                "environments/dev.yaml and environments/dev.yml",
                "environments",
            )),
            _ => expected.push(stderr),
        }
        setup(&f);
    }
    // Sorted by path, as the run reports them.
    let path = |message: &String| {
        message["error: ".len()..]
            .split(": ")
            .next()
            .unwrap()
            .to_owned()
    };
    expected.sort_by_key(path);
    f.assert_refused(".", &["render"], &expected.concat());
}

#[test]
fn dotfiles_links_inside_the_project_and_lock_files_are_fine() {
    let f = rendered_fixture();
    // The target names `list` prints, one a line (the first column).
    let list = |f: &Fixture| {
        let output = f.run(".", &["list"]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        text(&output.stdout)
            .lines()
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_owned() + "\n")
            .collect::<String>()
    };
    let before = list(&f);
    write(&f.path("environments/.gitkeep"), "");
    write(&f.path("environments/clouds/.DS_Store"), "\0\0");
    std::fs::create_dir(f.path("environments/.cache")).unwrap();
    // An editor's lock: a dangling link, named with a dot.
    symlink("user@host.1234", &f.path("environments/.#dev.yaml"));
    mkfifo(&f.path("environments/.pipe"));
    // A target's lock file, as `strata preflight dev-aws --write` writes it.
    write(
        &f.path("environments/discovered/dev-aws.yaml"),
        "# Generated by `strata preflight dev-aws --write` from the live cloud; do not edit.\ndns: {zoneId: Z1}\n",
    );
    // Links to layers elsewhere in the project: a copy of an environment, twice.
    symlink("dev.yaml", &f.path("environments/qa.yaml"));
    std::fs::create_dir(f.path("shared")).unwrap();
    std::fs::copy(f.path("environments/dev.yaml"), f.path("shared/uat.yaml")).unwrap();
    symlink(f.path("shared/uat.yaml"), &f.path("environments/uat.yaml"));
    let after = list(&f);
    // The dev targets, again as qa and uat.
    let dev: Vec<&str> = before.lines().filter(|t| t.starts_with("dev-")).collect();
    let mut wanted: Vec<String> = before.lines().map(str::to_owned).collect();
    for env in ["qa", "uat"] {
        wanted.extend(dev.iter().map(|t| t.replacen("dev", env, 1)));
    }
    wanted.sort();
    assert_eq!(after.lines().collect::<Vec<_>>(), wanted);
    let output = f.run(".", &["render"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "");
    for target in &wanted {
        assert!(f.path("out").join(target).is_dir(), "{target} rendered");
    }
}

/// Runs strata in `dir`, killing it and failing the test if it has not finished
/// within `limit` (it would be blocked, reading a FIFO nobody writes).
fn run_with_deadline(dir: &Path, args: &[&str], limit: Duration) -> std::process::Output {
    let child = crate::support::strata()
        .current_dir(dir)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let id = child.id();
    let mut child = Some(child);
    loop {
        if let Some(Some(_)) = child.as_mut().map(|c| c.try_wait().unwrap()) {
            return child.take().unwrap().wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            let mut c = child.take().unwrap();
            let _ = c.kill();
            let _ = c.wait();
            panic!(
                "strata {args:?} (pid {id}) was still running after {limit:?}: blocked on a FIFO?"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_fifo_in_environments_never_blocks_a_run() {
    let f = rendered_fixture();
    mkfifo(&f.path("environments/pipe.yaml"));
    mkfifo(&f.path("environments/clouds/azure.yaml"));
    symlink("pipe.yaml", &f.path("environments/piped.yaml"));
    // In place of a layer, too.
    std::fs::remove_file(f.path("environments/staging.yaml")).unwrap();
    mkfifo(&f.path("environments/staging.yaml"));
    let stderr = [
        special(
            "environments/clouds/azure.yaml",
            "a FIFO (named pipe)",
            CLOUDS,
        ),
        special("environments/pipe.yaml", "a FIFO (named pipe)", TOP),
        special(
            "environments/piped.yaml",
            "a symbolic link to a FIFO (named pipe) (pipe.yaml)",
            TOP,
        ),
        special("environments/staging.yaml", "a FIFO (named pipe)", TOP),
    ]
    .concat();
    let before = f.snapshot();
    for args in [
        &["render"][..],
        &["render", "dev-aws"],
        &["render", "--check"],
        &["validate"],
        &["list"],
        &["explain", "dev-aws", "names.bucket"],
    ] {
        let output = run_with_deadline(&f.root(), args, Duration::from_secs(20));
        assert_eq!(
            (
                output.status.code(),
                text(&output.stdout),
                text(&output.stderr)
            ),
            (Some(2), String::new(), with_count(&stderr)),
            "strata {args:?}"
        );
    }
    assert_same(&before, &f.snapshot(), "runs with FIFOs in environments/");
}

mod layouts {
    //! Random layouts of `environments/`: extra entries of every kind, in every layer
    //! folder. A model says which are errors; the run must agree exactly: render (the
    //! new targets there, nothing outside out/ changed) or exit 2 naming exactly the
    //! predicted entries, sorted, with every byte, mode and mtime as it was.

    use proptest::prelude::*;
    use std::collections::BTreeMap;

    use super::*;
    use crate::support::copy_dir;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Place {
        Top,
        Clouds,
        Discovered,
    }

    impl Place {
        fn dir(self) -> &'static str {
            match self {
                Place::Top => "environments",
                Place::Clouds => "environments/clouds",
                Place::Discovered => "environments/discovered",
            }
        }

        /// Names to draw from: new layers, collisions with the example's files
        /// (whatever the example's keys, its files are named as in the README), wrong
        /// extensions, notes and dotfiles.
        fn names(self) -> &'static [&'static str] {
            match self {
                Place::Top => &[
                    "qa.yaml", "qa.yml", "QA.yml", "Dev.yaml", "dev.yml", "notes.md", "qa",
                    ".gitkeep", ".qa.yaml",
                ],
                Place::Clouds => &["AWS.yaml", "gcp.yml", "azure", "README", ".keep"],
                Place::Discovered => &[
                    "dev-aws.yaml",
                    "lock.yaml",
                    "Lock.yaml",
                    "lock.yml",
                    "lock.json",
                    ".tmp",
                ],
            }
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        /// A copy of environments/dev.yaml (an environment layer); in discovered/, a
        /// lock file's content.
        Copy,
        /// A link to environments/dev.yaml (inside the project); in discovered/, to a
        /// lock file's content elsewhere in the project.
        LinkInside,
        /// A link to a file beside the project.
        LinkOutside,
        Dangling,
        Dir,
        Fifo,
        Socket,
    }

    fn entry() -> impl Strategy<Value = (Place, usize, Kind)> {
        (
            prop_oneof![
                Just(Place::Top),
                Just(Place::Clouds),
                Just(Place::Discovered)
            ],
            0..9usize,
            prop_oneof![
                3 => Just(Kind::Copy),
                2 => Just(Kind::LinkInside),
                1 => Just(Kind::LinkOutside),
                1 => Just(Kind::Dangling),
                1 => Just(Kind::Dir),
                1 => Just(Kind::Fifo),
                1 => Just(Kind::Socket),
            ],
        )
    }

    /// `dev` for dev.yaml, dev.yml, Dev.YAML.
    fn layer_of(name: &str) -> Option<String> {
        let (stem, ext) = name.rsplit_once('.')?;
        let yaml = ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml");
        (yaml && !stem.is_empty()).then(|| stem.to_lowercase())
    }

    /// The model: the paths strata must name (sorted), and the new environments. Entries
    /// of environments/ are checked first, all of them; only when they pass are the lock
    /// files of discovered/ read, and one for a target that does not exist (anything
    /// but dev-aws here) is named at its first line.
    fn predict(
        existing: &BTreeMap<Place, Vec<String>>,
        extra: &BTreeMap<(Place, String), Kind>,
    ) -> (Vec<String>, Vec<String>) {
        let mut errors = Vec::new();
        let mut new_envs = Vec::new();
        let mut locks = Vec::new();
        for place in [Place::Top, Place::Clouds, Place::Discovered] {
            let mut layers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for name in existing.get(&place).into_iter().flatten() {
                layers
                    .entry(layer_of(name).unwrap())
                    .or_default()
                    .push(name.clone());
            }
            for ((p, name), kind) in extra {
                if *p != place || name.starts_with('.') {
                    continue;
                }
                let path = format!("{}/{name}", place.dir());
                match kind {
                    Kind::Copy | Kind::LinkInside => match layer_of(name) {
                        Some(layer) => layers.entry(layer).or_default().push(name.clone()),
                        None => errors.push(path),
                    },
                    _ => errors.push(path),
                }
            }
            for (layer, mut names) in layers {
                names.sort();
                let path = format!("{}/{}", place.dir(), names[0]);
                if names.len() > 1 || !names[0].ends_with(".yaml") {
                    errors.push(path);
                } else if place == Place::Top && !existing[&Place::Top].contains(&names[0]) {
                    new_envs.push(layer);
                } else if place == Place::Discovered && names[0] != "dev-aws.yaml" {
                    locks.push(format!("{path}:1:1"));
                }
            }
        }
        if errors.is_empty() {
            errors = locks;
        }
        errors.sort();
        (errors, new_envs)
    }

    fn make(f: &Fixture, place: Place, name: &str, kind: Kind) {
        let dir = f.path(place.dir());
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let mut dev = f.path("environments/dev.yaml");
        if place == Place::Discovered {
            dev = f.path("lock-source.yaml");
            std::fs::write(&dev, "dns: {zoneId: Z1}\n").unwrap();
        }
        match kind {
            Kind::Copy => {
                std::fs::copy(&dev, &path).unwrap();
            }
            Kind::LinkInside => symlink(&dev, &path),
            Kind::LinkOutside => symlink(f.tmp.path().join("outside.yaml"), &path),
            Kind::Dangling => symlink("nothing-here.yaml", &path),
            Kind::Dir => std::fs::create_dir(&path).unwrap(),
            Kind::Fifo => mkfifo(&path),
            Kind::Socket => mksocket(&path),
        }
    }

    #[test]
    fn a_layout_renders_or_is_refused_as_predicted() {
        // One initialised, rendered project, copied for each case.
        let template = rendered_fixture();
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 48,
            ..ProptestConfig::default()
        });
        let strategy = proptest::collection::vec(entry(), 0..6);
        let result = runner.run(&strategy, |entries| {
            let tmp = tempfile::Builder::new()
                .prefix("strata-fs-")
                .tempdir()
                .unwrap();
            copy_dir(template.tmp.path(), tmp.path());
            let f = Fixture { tmp };
            let mut existing: BTreeMap<Place, Vec<String>> = BTreeMap::new();
            for place in [Place::Top, Place::Clouds] {
                existing.insert(
                    place,
                    std::fs::read_dir(f.path(place.dir()))
                        .unwrap()
                        .map(|e| e.unwrap())
                        .filter(|e| e.file_type().unwrap().is_file())
                        .map(|e| e.file_name().into_string().unwrap())
                        .collect(),
                );
            }
            let extra: BTreeMap<(Place, String), Kind> = entries
                .into_iter()
                .map(|(place, i, kind)| {
                    let names = place.names();
                    ((place, names[i % names.len()].to_owned()), kind)
                })
                .collect();
            for ((place, name), kind) in &extra {
                make(&f, *place, name, *kind);
            }
            let (errors, new_envs) = predict(&existing, &extra);
            let before = f.snapshot();

            let output = f.run(".", &["render"]);
            let stderr = f.redact(&text(&output.stderr));
            let after = f.snapshot();
            if errors.is_empty() {
                prop_assert_eq!(output.status.code(), Some(0), "{}", stderr);
                prop_assert_eq!(stderr, "");
                // Only out/ changed (and the folder holding it, which the swap touches).
                assert_same(
                    &before.except("p/out").forget_mtime("p"),
                    &after.except("p/out").forget_mtime("p"),
                    "outside out/",
                );
                let rendered: Vec<String> = std::fs::read_dir(f.path("out"))
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                for env in &new_envs {
                    for target in rendered.iter().filter(|t| t.starts_with("dev-")) {
                        let name = target.replacen("dev", env, 1);
                        prop_assert!(rendered.contains(&name), "{} rendered", name);
                    }
                }
                prop_assert_eq!(
                    rendered.iter().filter(|t| t.starts_with("qa-")).count(),
                    if new_envs.is_empty() {
                        0
                    } else {
                        rendered.iter().filter(|t| t.starts_with("dev-")).count()
                    }
                );
            } else {
                prop_assert_eq!(output.status.code(), Some(2));
                prop_assert_eq!(text(&output.stdout), "");
                let named: Vec<&str> = stderr
                    .lines()
                    .filter_map(|l| l.strip_prefix("error: "))
                    .map(|l| l.split(": ").next().unwrap())
                    .collect();
                prop_assert_eq!(
                    named,
                    errors.iter().map(String::as_str).collect::<Vec<_>>(),
                    "{}",
                    stderr
                );
                assert_same(&before, &after, "a refused layout");
            }
            Ok(())
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}
