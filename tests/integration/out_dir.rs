//! The output folder is strata's only when strata made it, and `--out` is taken from
//! the project root. Every refusal is exit 2 with an exact message, and leaves the
//! temporary folder (the project, the folder named, everything beside them)
//! byte-identical, with the same modes and modification times.

use crate::support::fixture::{Fixture, write};
use crate::support::fs::{MARKER, MARKER_TEXT, Snapshot, assert_same, mkfifo, set_mode, symlink};
use crate::support::text;

const HINT_OWN_FOLDER: &str =
    "  hint: render into a folder of its own, such as out/ at the project root (the default)\n";

#[test]
fn the_first_render_writes_the_marker_and_a_second_leaves_it_alone() {
    let f = Fixture::init();
    let (_, files) = f.counts(&[]);
    let output = f.render_ok();
    assert_eq!(
        f.redact(&text(&output.stdout)),
        f.rendered_line("out", files, 0)
    );
    assert_eq!(text(&output.stderr), "");
    let marker = f.path("out").join(MARKER);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), MARKER_TEXT);
    let before = f.snapshot();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = f.render_ok();
    assert_eq!(
        f.redact(&text(&again.stdout)),
        f.rendered_line("out", 0, files)
    );
    assert_same(&before, &f.snapshot(), "an up-to-date render");
    // A marked folder is strata's: what else is in it goes with the next render.
    write(
        &f.path("out/stray.txt"),
        "rendered folders hold only renders\n",
    );
    f.render_ok();
    assert!(!f.path("out/stray.txt").exists());
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), MARKER_TEXT);
}

#[test]
fn a_folder_strata_did_not_make_is_refused_and_left_as_it_was() {
    let f = Fixture::init();
    write(&f.path("notes/todo.txt"), "buy milk\n");
    write(&f.path("notes/drafts/a.md"), "# draft\n");
    set_mode(&f.path("notes/todo.txt"), 0o600);
    let stderr = "error: refusing to render into notes: it is not empty and strata did not make it \
                  (it has no .strata-out file); it holds drafts/, todo.txt\n  hint: a render \
                  replaces everything in its folder: give a new or empty one (--out DIR), or move \
                  those entries out\n";
    f.assert_refused(".", &["render", "--out", "notes"], stderr);
    f.assert_refused(".", &["render", "dev-aws", "--out", "notes"], stderr);
    // Named by a folder that looks like a target's: still not strata's.
    write(
        &f.path("looks/dev-aws/releases/app.values.yaml"),
        "mine: true\n",
    );
    write(&f.path("looks/keep.txt"), "mine\n");
    f.assert_refused(
        ".",
        &["render", "--out", "looks"],
        "error: refusing to render into looks: it is not empty and strata did not make it (it \
         has no .strata-out file); it holds keep.txt\n  hint: a render replaces everything in its \
         folder: give a new or empty one (--out DIR), or move those entries out\n",
    );
}

#[test]
fn a_long_list_of_strangers_is_cut_short() {
    let f = Fixture::init();
    for name in ["a", "b", "c", "d", "e", "f", "g"] {
        write(&f.path(&format!("full/{name}")), "x\n");
    }
    f.assert_refused(
        ".",
        &["render", "--out", "full"],
        "error: refusing to render into full: it is not empty and strata did not make it (it \
         has no .strata-out file); it holds a, b, c, d, e and 2 more\n  hint: a render replaces \
         everything in its folder: give a new or empty one (--out DIR), or move those entries \
         out\n",
    );
}

#[test]
fn a_file_where_the_folder_should_be_is_refused_and_left_byte_identical() {
    let f = Fixture::init();
    write(&f.path("out"), "not a folder\n");
    set_mode(&f.path("out"), 0o640);
    let stderr = "error: refusing to render into out: it is a file, not a folder\n  hint: give a \
                  folder: a new one, or one strata rendered into before\n";
    f.assert_refused(".", &["render"], stderr);
    f.assert_refused(".", &["render", "prod-gcp"], stderr);
    f.assert_refused(
        ".",
        &["render", "--check"],
        "error: refusing to compare with out: it is a file, not a folder\n  hint: give the folder \
         that holds the rendered targets (--out DIR)\n",
    );
    // A FIFO is not opened (that would block): it is named for what it is.
    mkfifo(&f.path("pipe"));
    f.assert_refused(
        ".",
        &["render", "--out", "pipe"],
        "error: refusing to render into pipe: it is a FIFO (named pipe), not a folder\n  hint: \
         give a folder: a new one, or one strata rendered into before\n",
    );
}

#[test]
fn a_folder_below_a_file_is_refused_and_checked_as_absent() {
    // `--out report.txt/out`: no folder can be made there. render refuses it in words
    // (not the system's "Not a directory"); render --check finds nothing to compare.
    let f = Fixture::init();
    write(&f.path("report.txt"), "a file\n");
    f.assert_refused(
        ".",
        &["render", "--out", "report.txt/out"],
        "error: refusing to render into report.txt/out: a part of its path is a file, not a \
         folder\n  hint: give --out a folder whose parents are folders; nothing was written\n",
    );
    let (_, files) = f.counts(&[]);
    let before = f.snapshot();
    let output = f.run(".", &["render", "--check", "--out", "report.txt/out"]);
    assert_eq!(
        (output.status.code(), text(&output.stdout)),
        (
            Some(1),
            format!(
                "report.txt/out does not exist: nothing to compare the {files} rendered files \
                 with; create it with `strata render --out report.txt/out`\n"
            ),
        )
    );
    assert_same(&before, &f.snapshot(), "render --check");
}

#[test]
fn a_symbolic_link_as_the_output_folder_is_refused() {
    let f = Fixture::init();
    f.render_ok();
    symlink("out", &f.path("latest"));
    f.assert_refused(
        ".",
        &["render", "--out", "latest"],
        "error: refusing to render into latest: it is a symbolic link (to out), which a render \
         would replace with a folder\n  hint: give the folder the link points to\n",
    );
    // A trailing slash does not make it the folder.
    for args in [
        &["render", "--out", "latest/"][..],
        &["render", "dev-aws", "--out", "latest/"],
    ] {
        f.assert_refused(
            ".",
            args,
            "error: refusing to render into latest/: it is a symbolic link (to out), which a \
             render would replace with a folder\n  hint: give the folder the link points to\n",
        );
    }
}

#[test]
fn the_projects_own_folders_and_the_folders_above_it_are_refused() {
    let f = Fixture::init();
    std::fs::create_dir(f.path(".git")).unwrap();
    write(&f.path(".git/HEAD"), "ref: refs/heads/main\n");
    for (out, why) in [
        (
            "environments",
            "it is inside the project's environments/, which holds its sources",
        ),
        (
            "environments/clouds/new",
            "it is inside the project's environments/, which holds its sources",
        ),
        (
            "templates",
            "it is inside the project's templates/, which holds its sources",
        ),
        (
            "templates/out",
            "it is inside the project's templates/, which holds its sources",
        ),
        (
            "charts/app",
            "it is inside the project's charts/, which holds its sources",
        ),
        (
            ".git",
            "it is inside the project's .git/, which holds its sources",
        ),
        (
            ".git/out",
            "it is inside the project's .git/, which holds its sources",
        ),
        (
            "templates/../charts",
            "it is inside the project's charts/, which holds its sources",
        ),
    ] {
        f.assert_refused(
            ".",
            &["render", "--out", out],
            &format!("error: refusing to render into {out}: {why}\n{HINT_OWN_FOLDER}"),
        );
    }
    f.assert_refused(
        ".",
        &["render", "--out", "."],
        &format!(
            "error: refusing to render into [TMP]/p: it is the project folder\n{HINT_OWN_FOLDER}"
        ),
    );
    f.assert_refused(
        ".",
        &["render", "--out", ".."],
        &format!("error: refusing to render into [TMP]: it contains the project ([TMP]/p)\n{HINT_OWN_FOLDER}"),
    );
    // Spelled through a link, it is the same folder.
    symlink("templates", &f.path("tpl"));
    f.assert_refused(
        ".",
        &["render", "--out", "tpl/x"],
        &format!("error: refusing to render into tpl/x: it is inside the project's templates/, which holds its sources\n{HINT_OWN_FOLDER}"),
    );
    // A repository outside the project.
    write(
        &f.tmp.path().join("repo/.git/HEAD"),
        "ref: refs/heads/main\n",
    );
    let repo = f.tmp.path().join("repo");
    f.assert_refused(
        ".",
        &["render", "--out", repo.to_str().unwrap()],
        &format!("error: refusing to render into [TMP]/repo: it contains .git\n{HINT_OWN_FOLDER}"),
    );
}

#[test]
fn an_older_stratas_folder_is_adopted_once() {
    let f = Fixture::init();
    let (_, files) = f.counts(&[]);
    f.render_ok();
    // What an older strata left: the targets' folders, no marker.
    std::fs::remove_file(f.path("out").join(MARKER)).unwrap();
    // `render --check` reads it as it is, and writes nothing, the marker neither.
    let before = f.snapshot();
    let check = f.run(".", &["render", "--check"]);
    assert_eq!(
        (
            check.status.code(),
            text(&check.stdout).as_str(),
            text(&check.stderr).as_str()
        ),
        (
            Some(0),
            format!("out: up to date ({files} files)\n").as_str(),
            ""
        )
    );
    assert_same(&before, &f.snapshot(), "render --check");
    // A render adopts it: the files are left as they are, the marker is added.
    let output = f.render_ok();
    assert_eq!(
        f.redact(&text(&output.stdout)),
        f.rendered_line("out", 0, files)
    );
    assert_eq!(
        std::fs::read_to_string(f.path("out").join(MARKER)).unwrap(),
        MARKER_TEXT
    );
    assert_same(
        &before.except("p/out").forget_mtime("p"),
        &f.snapshot().except("p/out").forget_mtime("p"),
        "adopting out/",
    );

    // Rendering one target adopts it too: the other targets are this project's.
    std::fs::remove_file(f.path("out").join(MARKER)).unwrap();
    let one = f.run(".", &["render", "dev-gcp"]);
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stderr));
    assert!(f.path("out").join(MARKER).is_file());

    // A folder of targets this project does not render is not an older strata's.
    std::fs::remove_file(f.path("out").join(MARKER)).unwrap();
    std::fs::create_dir(f.path("out/qa-aws")).unwrap();
    f.assert_refused(
        ".",
        &["render"],
        "error: refusing to render into out: it is not empty and strata did not make it (it has \
         no .strata-out file); it holds qa-aws/\n  hint: a render replaces everything in its \
         folder: give a new or empty one (--out DIR), or move those entries out\n",
    );
}

#[test]
fn an_empty_folder_is_taken() {
    let f = Fixture::init();
    let (_, files) = f.counts(&[]);
    std::fs::create_dir(f.path("build")).unwrap();
    let output = f.run(".", &["render", "--out", "build"]);
    assert_eq!(
        f.redact(&text(&output.stdout)),
        f.rendered_line("build", files, 0)
    );
    assert_eq!(
        std::fs::read_to_string(f.path("build").join(MARKER)).unwrap(),
        MARKER_TEXT
    );
}

#[test]
fn out_is_taken_from_the_project_root_wherever_strata_runs() {
    let f = Fixture::init();
    let (_, files) = f.counts(&[]);
    let templates = Snapshot::of(&f.path("templates"));
    // From inside templates/: the default out/ is the project's, not templates/out.
    let output = f.run("templates", &["render"]);
    assert_eq!(text(&output.stderr), "");
    assert_eq!(
        f.redact(&text(&output.stdout)),
        f.rendered_line("[TMP]/p/out", files, 0)
    );
    assert!(
        f.path("out")
            .join("dev-aws/releases/app.values.yaml")
            .is_file()
    );
    assert_same(
        &templates,
        &Snapshot::of(&f.path("templates")),
        "templates/",
    );
    // A relative --out too.
    let output = f.run("templates/iam", &["render", "--out", "build"]);
    assert_eq!(
        f.redact(&text(&output.stdout)),
        f.rendered_line("[TMP]/p/build", files, 0)
    );
    // -C names a folder inside the project: the same root.
    let output = crate::support::run_in(f.tmp.path(), &["-C", "p/charts", "render"]);
    assert_eq!(
        f.redact(&text(&output.stdout)),
        f.rendered_line("[TMP]/p/out", 0, files)
    );
    // -C the root: paths as given.
    let output = crate::support::run_in(f.tmp.path(), &["-C", "p", "render", "--out", "o2"]);
    assert_eq!(
        f.redact(&text(&output.stdout)),
        f.rendered_line("p/o2", files, 0)
    );
    // An absolute --out stays where it says.
    let abs = f.tmp.path().join("elsewhere");
    let output = f.run("templates", &["render", "--out", abs.to_str().unwrap()]);
    assert_eq!(
        f.redact(&text(&output.stdout)),
        f.rendered_line("[TMP]/elsewhere", files, 0)
    );
    assert_same(
        &templates,
        &Snapshot::of(&f.path("templates")),
        "templates/",
    );
    // And --check compares with the project's out/, named as the project names it.
    let check = f.run("templates", &["render", "--check"]);
    assert_eq!(
        (check.status.code(), text(&check.stdout).as_str()),
        (
            Some(0),
            format!("out: up to date ({files} files)\n").as_str()
        )
    );
}

#[test]
fn check_against_a_missing_folder_is_one_line_and_creates_nothing() {
    let f = Fixture::init();
    let (_, files) = f.counts(&[]);
    let (_, dev_aws_files) = f.counts(&["dev-aws"]);
    let before = f.snapshot();
    let output = f.run(".", &["render", "--check", "--out", "snapshots"]);
    assert_eq!(
        (
            output.status.code(),
            text(&output.stdout),
            text(&output.stderr).as_str()
        ),
        (
            Some(1),
            format!(
                "snapshots does not exist: nothing to compare the {files} rendered files with; \
                 create it with `strata render --out snapshots`\n"
            ),
            ""
        )
    );
    let named = f.run(".", &["render", "--check", "dev-aws", "--out", "snapshots"]);
    assert_eq!(
        (named.status.code(), text(&named.stdout)),
        (
            Some(1),
            format!(
                "snapshots does not exist: nothing to compare the {dev_aws_files} rendered files \
                 with; create it with `strata render --out snapshots`\n"
            ),
        )
    );
    let json = f.run(
        ".",
        &[
            "--format",
            "json",
            "render",
            "--check",
            "--out",
            "snapshots",
        ],
    );
    assert_eq!(json.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        doc,
        serde_json::json!({"ok": false, "folder": "snapshots", "files": files, "exists": false, "drift": []})
    );
    assert_same(&before, &f.snapshot(), "render --check");
}

#[test]
fn check_against_another_projects_folder_says_so_before_the_diff() {
    let f = Fixture::init();
    let (targets, files) = f.counts(&[]);
    write(&f.path("theirs/web-aws/values.yaml"), "replicas: 2\n");
    let before = f.snapshot();
    let output = f.run(".", &["render", "--check", "--out", "theirs"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr), "");
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // Every rendered file is added, theirs is removed.
    let drift = files + 1;
    assert_eq!(
        lines[..2],
        [
            format!("theirs holds none of the {targets} rendered targets: is it the right folder?"),
            format!("theirs: {drift} file(s) differ from the render"),
        ]
    );
    assert!(lines[2].starts_with("  target "), "{}", lines[2]);
    let table_end = lines.iter().position(|l| l.is_empty()).unwrap();
    let first_diff = lines.iter().position(|l| l.starts_with("--- ")).unwrap();
    assert_eq!(
        (table_end, first_diff),
        (3 + drift, 4 + drift),
        "the summary (two lines, the table) comes first, then the diff"
    );
    assert!(stdout.contains("--- theirs/web-aws/values.yaml\n+++ /dev/null\n"));
    assert_same(&before, &f.snapshot(), "render --check");
}
