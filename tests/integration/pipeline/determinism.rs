//! Output is a pure function of the inputs: byte-identical on every run, and a render
//! into an up-to-date folder touches nothing. For each bundled example.

use super::example::{Copy, EXAMPLES, assert_same_tree, files, mtimes, tree};
use crate::support::text;

#[test]
fn rendering_twice_gives_byte_identical_trees_equal_to_the_snapshots() {
    for example in EXAMPLES {
        let copy = Copy::of(example);
        let first = copy.tmp.path().join("first");
        let second = copy.tmp.path().join("second");
        for dir in [&first, &second] {
            let output = copy.strata(&["render", "--out", dir.to_str().unwrap()]);
            assert_eq!(
                output.status.code(),
                Some(0),
                "{}: {}",
                example.name,
                text(&output.stderr)
            );
        }
        let (a, b) = (tree(&first), tree(&second));
        assert_eq!(
            files(&a).len(),
            example.files,
            "{}: {:#?}",
            example.name,
            files(&a)
        );
        assert_same_tree(&a, &b, &format!("{}: two renders", example.name));
        // And both equal the committed snapshots.
        assert_same_tree(
            &a,
            &tree(&copy.path("snapshots")),
            &format!("{}: a render vs snapshots/", example.name),
        );
    }
}

#[test]
fn a_render_into_an_up_to_date_folder_changes_nothing() {
    for example in EXAMPLES {
        let copy = Copy::of(example);
        let n = example.files;
        let first = copy.render_ok();
        assert!(
            text(&first.stdout).contains(&format!(
                ": {n} files ({n} written, 0 unchanged, 0 removed)"
            )),
            "{}: {}",
            example.name,
            text(&first.stdout)
        );
        let before = tree(&copy.out());
        let times = mtimes(&copy.out());
        let dir_time = std::fs::metadata(copy.out()).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));

        let again = copy.render_ok();
        assert!(
            text(&again.stdout).contains(&format!(
                ": {n} files (0 written, {n} unchanged, 0 removed)"
            )),
            "{}: {}",
            example.name,
            text(&again.stdout)
        );
        assert!(tree(&copy.out()) == before, "{}", example.name);
        assert_eq!(
            mtimes(&copy.out()),
            times,
            "{}: an up-to-date render rewrote files",
            example.name
        );
        assert_eq!(
            std::fs::metadata(copy.out()).unwrap().modified().unwrap(),
            dir_time,
            "{}",
            example.name
        );
    }
}
