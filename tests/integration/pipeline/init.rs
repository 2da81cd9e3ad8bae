//! `strata init DIR --example NAME` writes a bundled example, and outside any project
//! `strata render` renders the embedded lakehouse: each gives exactly the committed
//! snapshots of that example.

use super::example::{EXAMPLES, LAKEHOUSE, assert_same_tree, assert_success, tree};
use crate::support::{run_in, text};

#[test]
fn init_writes_each_example_and_it_renders_its_snapshots() {
    let schema = run_in(&std::env::temp_dir(), &["schema"]);
    assert_success(&schema);
    for example in EXAMPLES {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("fresh");
        let output = run_in(tmp.path(), &["init", "fresh", "--example", example.name]);
        assert_success(&output);
        assert!(
            text(&output.stdout).contains(&format!("wrote the {} example", example.name)),
            "{}",
            text(&output.stdout)
        );
        // Exactly the example's project files, and the editor schema; no render, no
        // README, nothing of the strata repository around the lakehouse.
        let written = tree(&project);
        let mut expected = tree(&example.root().join("environments"))
            .into_keys()
            .map(|k| format!("environments/{k}"))
            .collect::<Vec<_>>();
        for part in ["charts", "templates"] {
            expected.extend(
                tree(&example.root().join(part))
                    .into_keys()
                    .map(|k| format!("{part}/{k}")),
            );
        }
        for file in ["vars.schema.json", "strata.schema.json"] {
            if example.root().join(file).is_file() || file == "strata.schema.json" {
                expected.push(file.to_owned());
            }
        }
        for dir in ["environments", "charts", "templates"] {
            if example.root().join(dir).is_dir() {
                expected.push(dir.to_owned());
            }
        }
        expected.sort();
        let got: Vec<String> = written.keys().cloned().collect();
        assert_eq!(got, expected, "{}: init wrote other files", example.name);
        for (rel, bytes) in &written {
            if rel == "strata.schema.json" {
                continue;
            }
            assert_eq!(
                bytes.as_deref(),
                std::fs::read(example.root().join(rel)).ok().as_deref(),
                "{} {rel}: init wrote other bytes than the repository holds",
                example.name
            );
        }
        assert_eq!(
            std::fs::read_to_string(project.join("strata.schema.json")).unwrap(),
            text(&schema.stdout),
            "{}: init writes the schema `strata schema` prints",
            example.name
        );

        let output = run_in(tmp.path(), &["-C", "fresh", "render", "--out", "out"]);
        assert_success(&output);
        assert_same_tree(
            &tree(&project.join("out")),
            &tree(&example.snapshots()),
            &format!("{}: init + render vs the committed snapshots", example.name),
        );

        // And it does not overwrite a project.
        let before = tree(&project);
        let again = run_in(tmp.path(), &["init", "fresh", "--example", example.name]);
        assert_eq!(again.status.code(), Some(2), "{}", example.name);
        assert!(
            text(&again.stderr).contains("already holds a project"),
            "{}",
            text(&again.stderr)
        );
        assert!(
            tree(&project) == before,
            "{}: a refused init wrote",
            example.name
        );
    }
}

#[test]
fn init_without_an_example_writes_the_lakehouse() {
    let tmp = tempfile::tempdir().unwrap();
    let output = run_in(tmp.path(), &["init", "fresh"]);
    assert_success(&output);
    assert!(
        text(&output.stdout).contains("wrote the lakehouse example"),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(
        tree(&tmp.path().join("fresh/environments")),
        tree(&LAKEHOUSE.root().join("environments"))
    );
}

#[test]
fn an_unknown_example_is_refused_with_the_close_name_and_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let output = run_in(tmp.path(), &["init", "fresh", "--example", "three-teir"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "error: no example named `three-teir`\n  hint: did you mean `three-tier`? examples: lakehouse, storage-only, three-tier\n"
    );
    assert!(!tmp.path().join("fresh").exists());
}

#[test]
fn init_never_replaces_a_file_of_the_folder_it_writes_into() {
    // A repository without environments/ yet, but with its own chart values where the
    // example writes one, and a file where the example needs a folder: refused, both
    // named, the folder left as it was.
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("charts/app")).unwrap();
    std::fs::write(repo.join("charts/app/values.yaml"), "mine: true\n").unwrap();
    std::fs::write(repo.join("charts/app/templates"), "a file\n").unwrap();
    let before = tree(&repo);
    let output = run_in(tmp.path(), &["init", "repo"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "error: repo already has what the example would write: charts/app/templates, charts/app/values.yaml; nothing was written\n  hint: give a new folder, or move those out of the way\n"
    );
    assert!(tree(&repo) == before, "a refused init wrote");
    // A file as the folder: refused too.
    let output = run_in(tmp.path(), &["init", "repo/charts/app/templates"]);
    assert_eq!(
        (output.status.code(), text(&output.stderr)),
        (
            Some(2),
            "error: repo/charts/app/templates is a file, not a folder; nothing was written\n  hint: give a new folder, or one without environments/\n".to_owned()
        )
    );
    assert!(tree(&repo) == before, "a refused init wrote");
}

#[test]
fn outside_any_project_render_uses_the_embedded_lakehouse() {
    let tmp = tempfile::tempdir().unwrap();
    let output = run_in(tmp.path(), &["render"]);
    assert_success(&output);
    assert!(
        text(&output.stdout).contains("from the bundled example"),
        "{}",
        text(&output.stdout)
    );
    assert_same_tree(
        &tree(&tmp.path().join("out")),
        &tree(&LAKEHOUSE.snapshots()),
        "the embedded example vs snapshots/",
    );
}
