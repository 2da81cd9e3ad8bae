//! File-system helpers for the "nothing lost" tests: a snapshot of a folder tree's
//! bytes, modes, kinds and modification times (taken without opening anything but
//! regular files, so a FIFO in the tree cannot block it), special files, and the
//! output folder's marker.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The file strata writes into an output folder it made, and what it says.
pub const MARKER: &str = ".strata-out";
pub const MARKER_TEXT: &str = "This folder is the output of `strata render`, which replaces everything in it: keep nothing else here.\n";

/// One entry of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    File {
        bytes: Vec<u8>,
        mode: u32,
    },
    Dir {
        mode: u32,
    },
    Link {
        to: String,
    },
    /// A FIFO, socket or device: its kind and mode (never opened).
    Special {
        kind: &'static str,
        mode: u32,
    },
}

/// Every entry below a folder, the folder itself as `""`: node and mtime (ns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot(pub BTreeMap<String, (Node, i128)>);

impl Snapshot {
    pub fn of(dir: &Path) -> Snapshot {
        let mut entries = BTreeMap::new();
        add(dir, dir, &mut entries);
        Snapshot(entries)
    }

    /// The entries outside `rel` (a path relative to the snapshot's folder).
    pub fn except(&self, rel: &str) -> Snapshot {
        let prefix = format!("{rel}/");
        Snapshot(
            self.0
                .iter()
                .filter(|(path, _)| *path != rel && !path.starts_with(&prefix))
                .map(|(p, e)| (p.clone(), e.clone()))
                .collect(),
        )
    }

    /// The same, with the mtime of the folder `rel` set aside (a render swaps its
    /// output folder in, which touches the folder that holds it).
    pub fn forget_mtime(&self, rel: &str) -> Snapshot {
        let mut copy = self.clone();
        if let Some(entry) = copy.0.get_mut(rel) {
            entry.1 = 0;
        }
        copy
    }

    pub fn paths(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

fn add(base: &Path, path: &Path, entries: &mut BTreeMap<String, (Node, i128)>) {
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rel = path
        .strip_prefix(base)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mode = meta.mode() & 0o7777;
    let kind = meta.file_type();
    let node = if kind.is_symlink() {
        Node::Link {
            to: std::fs::read_link(path)
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        }
    } else if kind.is_dir() {
        Node::Dir { mode }
    } else if kind.is_file() {
        Node::File {
            bytes: std::fs::read(path).unwrap(),
            mode,
        }
    } else {
        let kind = if kind.is_fifo() {
            "fifo"
        } else if kind.is_socket() {
            "socket"
        } else {
            "device"
        };
        Node::Special { kind, mode }
    };
    let mtime = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    let is_dir = matches!(node, Node::Dir { .. });
    entries.insert(rel, (node, mtime));
    if is_dir {
        for entry in std::fs::read_dir(path).unwrap() {
            add(base, &entry.unwrap().path(), entries);
        }
    }
}

/// Fails with the paths that differ (and how) when two snapshots are not equal.
#[track_caller]
pub fn assert_same(before: &Snapshot, after: &Snapshot, what: &str) {
    if before == after {
        return;
    }
    let mut differences = Vec::new();
    for path in before.0.keys().chain(after.0.keys()) {
        let (a, b) = (before.0.get(path), after.0.get(path));
        if a == b || differences.iter().any(|(p, _)| p == path) {
            continue;
        }
        let how = match (a, b) {
            (Some(_), None) => "removed".to_owned(),
            (None, Some(_)) => "added".to_owned(),
            (Some((x, t)), Some((y, u))) if x == y => format!("mtime {t} -> {u}"),
            _ => "changed".to_owned(),
        };
        differences.push((path.clone(), how));
    }
    panic!("{what}: the tree changed: {differences:?}");
}

/// Makes a FIFO (named pipe) at `path`.
pub fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

/// Makes a Unix socket file at `path` (the listener is closed; the file stays).
pub fn mksocket(path: &Path) {
    std::os::unix::net::UnixListener::bind(path)
        .unwrap_or_else(|e| panic!("socket {}: {e}", path.display()));
}

pub fn symlink(to: impl AsRef<Path>, link: &Path) {
    std::os::unix::fs::symlink(to, link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
