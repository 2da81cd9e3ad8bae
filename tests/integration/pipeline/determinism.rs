//! Output is a pure function of the inputs: byte-identical on every run, and a render
//! into an up-to-date folder touches nothing.

use super::example::{Copy, files, mtimes, tree};
use crate::support::text;

#[test]
fn rendering_twice_gives_byte_identical_trees() {
    let copy = Copy::new();
    let first = copy.tmp.path().join("first");
    let second = copy.tmp.path().join("second");
    assert_eq!(
        copy.strata(&["render", "--out", first.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        copy.strata(&["render", "--out", second.to_str().unwrap()])
            .status
            .code(),
        Some(0)
    );
    let (a, b) = (tree(&first), tree(&second));
    assert_eq!(files(&a).len(), 48, "{:#?}", files(&a));
    assert!(
        a == b,
        "two renders differ:\n{:#?}\n{:#?}",
        files(&a),
        files(&b)
    );
    // And both equal the committed snapshots.
    assert!(
        a == tree(&copy.path("snapshots")),
        "a render differs from snapshots/"
    );
}

#[test]
fn a_render_into_an_up_to_date_folder_changes_nothing() {
    let copy = Copy::new();
    let first = copy.render_ok();
    assert!(
        text(&first.stdout).contains(": 48 files (48 written, 0 unchanged, 0 removed)"),
        "{}",
        text(&first.stdout)
    );
    let before = tree(&copy.out());
    let times = mtimes(&copy.out());
    let dir_time = std::fs::metadata(copy.out()).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));

    let again = copy.render_ok();
    assert!(
        text(&again.stdout).contains(": 48 files (0 written, 48 unchanged, 0 removed)"),
        "{}",
        text(&again.stdout)
    );
    assert!(tree(&copy.out()) == before);
    assert_eq!(
        mtimes(&copy.out()),
        times,
        "an up-to-date render rewrote files"
    );
    assert_eq!(
        std::fs::metadata(copy.out()).unwrap().modified().unwrap(),
        dir_time
    );
}
