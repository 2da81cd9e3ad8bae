//! Writing the rendered tree, and comparing it with one on disk.
//!
//! The output folder is replaced atomically: the new tree is built in a temporary
//! folder beside it (files whose bytes are unchanged are hard-linked from the old tree
//! rather than rewritten), then swapped in with one `renameat2(RENAME_EXCHANGE)` on
//! Linux (two renames elsewhere). A run that fails, or is killed, at any point leaves
//! the folder exactly as it was or exactly as rendered, never a mix; leftovers of a
//! killed run are removed by the next one (not those of a run still going). A tree that
//! is already up to date is not touched at all.
//!
//! With targets named (`render dev-aws`), the same is done for each named target's
//! folder alone (`out/dev-aws/`, swapped with a temporary folder beside `out/`): the
//! other targets' folders are not read, linked or touched, so the cost follows what
//! was named. Each target's folder is replaced atomically; with several named, a run
//! killed between two swaps leaves some of them new and the rest old.
//!
//! Nothing that strata did not write is replaced: a folder is strata's when it holds
//! the marker [`MARKER`], which the first render writes ([`claim`] decides, before
//! anything is touched); [`check_out_dir`] refuses the project's own folders and
//! anything that is not a folder. `render --check` only reads, and skips the marker.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};

/// A rendered tree: path relative to the output folder → bytes.
pub type Tree = BTreeMap<String, Arc<[u8]>>;

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WriteSummary {
    pub written: usize,
    pub unchanged: usize,
    pub removed: usize,
}

impl WriteSummary {
    pub fn changed(&self) -> bool {
        self.written > 0 || self.removed > 0
    }
}

const TMP_MARK: &str = ".strata-tmp-";

/// The file that makes a folder strata's output: the first render writes it, and a
/// render into a folder without it is refused unless the folder is new, empty, or an
/// older strata's output (only folders of the project's targets), which is adopted.
pub const MARKER: &str = ".strata-out";

/// What the marker says to whoever opens it.
const MARKER_TEXT: &str = "This folder is the output of `strata render`, which replaces everything in it: keep nothing else here.\n";

/// Refuses output folders whose replacement would destroy something that is not
/// rendered output: a file or a link where the folder should be, the project itself, a
/// folder above it or one of its source folders, or a repository. Writes nothing.
pub fn check_out_dir(out: &Path, project_root: Option<&Path>) -> Result<()> {
    let refuse = |why: String, hint: &str| Err(out_dir_error("render into", out, why, hint));
    const HINT: &str =
        "render into a folder of its own, such as out/ at the project root (the default)";
    // Without a trailing `/`, which would make lstat follow a link.
    let bare: PathBuf = out.components().collect();
    match std::fs::symlink_metadata(&bare) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let to =
                std::fs::read_link(&bare).map_or_else(|_| "?".into(), |t| t.display().to_string());
            return refuse(
                format!(
                    "it is a symbolic link (to {to}), which a render would replace with a folder"
                ),
                "give the folder the link points to",
            );
        }
        Ok(meta) if !meta.is_dir() => {
            return refuse(
                format!("it is {}, not a folder", describe(&meta.file_type())),
                "give a folder: a new one, or one strata rendered into before",
            );
        }
        _ => {}
    }
    let abs = resolve(out)?;
    if let Some(root) = project_root {
        let root = resolve(root)?;
        if abs == root {
            return refuse("it is the project folder".into(), HINT);
        }
        if root.starts_with(&abs) {
            return refuse(
                format!("it contains the project ({})", root.display()),
                HINT,
            );
        }
        for source in ["environments", "templates", "charts", ".git"] {
            if abs.starts_with(root.join(source)) {
                return refuse(
                    format!("it is inside the project's {source}/, which holds its sources"),
                    HINT,
                );
            }
        }
    }
    if abs.components().any(|c| c.as_os_str() == ".git") {
        return refuse("it is inside a repository's .git folder".into(), HINT);
    }
    for marker in [".git", "environments", "Cargo.toml"] {
        if std::fs::symlink_metadata(abs.join(marker)).is_ok() {
            return refuse(format!("it contains {marker}"), HINT);
        }
    }
    Ok(())
}

fn out_dir_error(doing: &'static str, path: &Path, why: String, hint: &str) -> Error {
    // `.` or `..` says little in a message: name the folder.
    let path = match path.file_name() {
        Some(_) => path.to_path_buf(),
        None => resolve(path).unwrap_or_else(|_| path.to_path_buf()),
    };
    Error::OutDir {
        doing,
        path,
        why,
        hint: hint.to_owned(),
    }
}

/// "a file", "a FIFO (named pipe)"…: what a path is, for messages.
fn describe(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_block_device() || file_type.is_char_device() {
            return "a device";
        }
    }
    if file_type.is_dir() {
        "a folder"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else {
        "a file"
    }
}

/// The absolute path with every symbolic link and `..` of its existing part resolved
/// (the rest taken as written), so that no spelling of a folder escapes the checks.
fn resolve(path: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let abs = std::path::absolute(path).map_err(|e| Error::io(path, e))?;
    let components: Vec<Component> = abs.components().collect();
    for existing in (1..=components.len()).rev() {
        let head: PathBuf = components[..existing].iter().collect();
        let Ok(mut resolved) = head.canonicalize() else {
            continue;
        };
        for component in &components[existing..] {
            match component {
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => resolved.push(name),
                _ => {}
            }
        }
        return Ok(resolved);
    }
    Ok(abs)
}

/// Whether strata may replace the folder `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// It holds the marker.
    Owned,
    /// It does not exist, or is empty.
    New,
    /// An older strata's output: only folders named after `known` targets.
    Adopted,
}

/// Decides whether `out` is strata's to replace (see [`MARKER`]); refuses, naming what
/// is in the way, when it is not. Writes nothing.
fn claim(out: &Path, known: &[&str]) -> Result<Claim> {
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Claim::New),
        // A file on the way to it (`report.txt/out`): no folder can be made there.
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(Error::OutDir {
                doing: "render into",
                path: out.to_path_buf(),
                why: "a part of its path is a file, not a folder".into(),
                hint: "give --out a folder whose parents are folders; nothing was written".into(),
            });
        }
        Err(e) => return Err(Error::io(out, e)),
    };
    if std::fs::symlink_metadata(out.join(MARKER)).is_ok_and(|m| m.is_file()) {
        return Ok(Claim::Owned);
    }
    let mut strangers = Vec::new();
    let mut any = false;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(out, e))?;
        any = true;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !(is_dir && known.contains(&name.as_str())) {
            strangers.push(if is_dir { format!("{name}/") } else { name });
        }
    }
    if !any {
        return Ok(Claim::New);
    }
    if strangers.is_empty() {
        return Ok(Claim::Adopted);
    }
    strangers.sort();
    const SHOWN: usize = 5;
    let mut list = strangers
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if strangers.len() > SHOWN {
        list.push_str(&format!(" and {} more", strangers.len() - SHOWN));
    }
    Err(out_dir_error(
        "render into",
        out,
        format!(
            "it is not empty and strata did not make it (it has no {MARKER} file); it holds {list}"
        ),
        "a render replaces everything in its folder: give a new or empty one (--out DIR), or move those entries out",
    ))
}

/// Writes the marker into `dir` unless it is there.
fn ensure_marker(dir: &Path) -> Result<()> {
    let path = dir.join(MARKER);
    if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    std::fs::write(&path, MARKER_TEXT).map_err(|e| Error::io(&path, e))
}

/// For `render --check`: whether the folder exists (a file there is an error: there
/// is nothing to compare with).
pub fn check_folder(dir: &Path) -> Result<bool> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(true),
        Ok(meta) => Err(out_dir_error(
            "compare with",
            dir,
            format!("it is {}, not a folder", describe(&meta.file_type())),
            "give the folder that holds the rendered targets (--out DIR)",
        )),
        // A file on its path (`report.txt/out`): it cannot exist either.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Reads every file below `dir` (relative paths with `/`), but the marker; an absent
/// folder is empty.
/// (Only the tests read a folder without a render to compare it with.)
#[cfg(test)]
pub fn read_tree(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    read_tree_with(dir, |_, path| {
        std::fs::read(path).map_err(|e| Error::io(path, e))
    })
}

/// The files below `dir` as `read_tree` reads them, each file that holds exactly
/// the bytes `rendered` has at its path sharing those bytes (`prefix` is the path of
/// `dir` in `rendered`, with its `/`). `render --check` of an unchanged folder then
/// keeps no second copy of it: each file is read into one buffer per thread and
/// compared there.
pub fn read_tree_against(
    dir: &Path,
    prefix: &str,
    rendered: &Tree,
) -> Result<BTreeMap<String, Arc<[u8]>>> {
    use std::io::Read;
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    read_tree_with(dir, |rel, path| {
        BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            // Read until the end into the buffer (grown, never shrunk): an open, the
            // reads and a close, without the size query of `fs::read`: on a folder of
            // thousands of small files the system calls are most of the cost.
            let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let mut filled = 0;
            loop {
                if filled == buffer.len() {
                    let grown = (buffer.len() * 2).max(64 << 10);
                    buffer.resize(grown, 0);
                }
                match file.read(&mut buffer[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::io(path, e)),
                }
            }
            let content = &buffer[..filled];
            match rendered.get(&format!("{prefix}{rel}")) {
                Some(bytes) if bytes[..] == *content => Ok(bytes.clone()),
                _ => Ok(Arc::from(content)),
            }
        })
    })
}

/// Walks `dir` (each of its entries as one task, in parallel) and reads each file
/// with `read(relative path, path)`.
fn read_tree_with<B: Send>(
    dir: &Path,
    read: impl Fn(&str, &Path) -> Result<B> + Sync,
) -> Result<BTreeMap<String, B>> {
    let mut tree = BTreeMap::new();
    if !dir.exists() {
        return Ok(tree);
    }
    let relative = |path: &Path| {
        path.strip_prefix(dir)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/")
    };
    // Each entry of `dir` (a target's folder) is walked and read as one task, in
    // parallel: one walk of the whole folder opened its thousands of folders one after
    // another. Symbolic links are not followed, as before.
    let top: Vec<walkdir::DirEntry> = walkdir::WalkDir::new(dir)
        .follow_links(false)
        .min_depth(1)
        .max_depth(1)
        .into_iter()
        .filter_map(|entry| entry.ok())
        .collect();
    type Files<B> = Vec<(String, B)>;
    let read: Vec<Result<Files<B>>> = top
        .into_par_iter()
        .map(|top| {
            if top.file_type().is_file() {
                let rel = relative(top.path());
                if rel == MARKER {
                    return Ok(Vec::new());
                }
                let bytes = read(&rel, top.path())?;
                return Ok(vec![(rel, bytes)]);
            }
            if !top.file_type().is_dir() {
                return Ok(Vec::new());
            }
            walkdir::WalkDir::new(top.path())
                .follow_links(false)
                .into_iter()
                .filter_map(|entry| entry.ok())
                .filter(|entry| entry.file_type().is_file())
                .map(|entry| {
                    let rel = relative(entry.path());
                    let bytes = read(&rel, entry.path())?;
                    Ok((rel, bytes))
                })
                .collect()
        })
        .collect();
    for files in read {
        tree.extend(files?);
    }
    Ok(tree)
}

/// [`read_tree_against`] of the folders of `targets` only (all of `dir` when empty): what a
/// `render --check` of named targets compares.
pub fn read_targets(
    dir: &Path,
    targets: &[String],
    rendered: &Tree,
) -> Result<BTreeMap<String, Arc<[u8]>>> {
    if targets.is_empty() {
        return read_tree_against(dir, "", rendered);
    }
    let mut tree = BTreeMap::new();
    for target in targets {
        for (path, bytes) in read_tree_against(&dir.join(target), &format!("{target}/"), rendered)?
        {
            tree.insert(format!("{target}/{path}"), bytes);
        }
    }
    Ok(tree)
}

/// The paths below `dir` that are files, with their sizes (cheap: no contents read).
fn list_files(dir: &Path) -> BTreeMap<String, u64> {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_file())
        .filter_map(|entry| {
            let len = entry.metadata().ok()?.len();
            let rel = entry
                .path()
                .strip_prefix(dir)
                .ok()?
                .to_string_lossy()
                .replace('\\', "/");
            Some((rel, len))
        })
        .collect()
}

/// Replaces `out` with `desired` and the marker, atomically. The caller has checked
/// that the folder is strata's ([`claim`]).
fn write_tree(out: &Path, desired: &Tree) -> Result<WriteSummary> {
    let (parent, base_name) = parent_and_name(out)?;
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    remove_leftovers(&parent, &base_name);
    replace(out, &tmp_path(&parent, &base_name, ""), desired, true)
}

/// The folder that holds `out`, and `out`'s own name.
fn parent_and_name(out: &Path) -> Result<(PathBuf, OsString)> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base_name = out
        .file_name()
        .ok_or_else(|| Error::Usage(format!("{} cannot be an output folder", out.display())))?
        .to_owned();
    Ok((parent, base_name))
}

/// Whether the relative path `rel` names a file inside the folder it is joined to:
/// not empty, and each part a plain name (no `..`, `.`, root or empty part).
fn stays_inside(rel: &str) -> bool {
    rel.split('/')
        .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// `.out.strata-tmp-<pid><suffix>` beside `out`: on the same file system, so that it
/// can be swapped in, and found by [`remove_leftovers`] if the run is killed.
fn tmp_path(parent: &Path, base_name: &std::ffi::OsStr, suffix: &str) -> PathBuf {
    let mut tmp_name = OsString::from(".");
    tmp_name.push(base_name);
    tmp_name.push(format!("{TMP_MARK}{}{suffix}", std::process::id()));
    parent.join(tmp_name)
}

/// Replaces the folder `dest` with `desired` (and the marker, with `marked`), building
/// the new one at `tmp` and swapping the two; a `desired` with no files removes `dest`.
fn replace(dest: &Path, tmp: &Path, desired: &Tree, marked: bool) -> Result<WriteSummary> {
    // The checks refuse any name that could leave its folder; this is the last guard,
    // before anything is written: every file stays inside `dest`.
    if let Some(rel) = desired.keys().find(|rel| !stays_inside(rel)) {
        return Err(Error::OutDir {
            doing: "render into",
            path: dest.to_path_buf(),
            why: format!("the artifact path {rel:?} would leave the folder"),
            hint: "nothing was written; this is a bug in strata's checks, please report it with the key that made the path".into(),
        });
    }
    let mut existing = if dest.exists() {
        list_files(dest)
    } else {
        BTreeMap::new()
    };
    if marked {
        existing.remove(MARKER);
    }
    // Which desired files are byte-identical to what is there already?
    let same: Vec<bool> = desired
        .par_iter()
        .map(|(rel, bytes)| {
            existing
                .get(rel)
                .is_some_and(|len| *len == bytes.len() as u64)
                && std::fs::read(dest.join(rel)).is_ok_and(|old| old[..] == bytes[..])
        })
        .collect();
    let unchanged = same.iter().filter(|s| **s).count();
    let removed = existing
        .keys()
        .filter(|rel| !desired.contains_key(*rel))
        .count();
    let summary = WriteSummary {
        written: desired.len() - unchanged,
        unchanged,
        removed,
    };
    let _ = std::fs::remove_dir_all(tmp);
    if desired.is_empty() {
        // Nothing to write: the folder goes, in one rename.
        if dest.exists() {
            std::fs::rename(dest, tmp).map_err(|e| Error::io(dest, e))?;
            std::fs::remove_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
        }
        return Ok(summary);
    }
    if !summary.changed() && dest.exists() {
        if marked {
            ensure_marker(dest)?;
        }
        return Ok(summary);
    }
    let result = build_and_swap(dest, tmp, desired, &same, marked);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(tmp);
    }
    result.map(|_| summary)
}

fn build_and_swap(
    out: &Path,
    tmp: &Path,
    desired: &Tree,
    same: &[bool],
    marked: bool,
) -> Result<()> {
    // The first write of the run: where it fails, the folder given cannot be made (a
    // parent that is a file, read-only, or a file system that takes no folders).
    std::fs::create_dir_all(tmp).map_err(|e| Error::OutDir {
        doing: "render into",
        path: out.to_path_buf(),
        why: format!("a folder cannot be made beside it ({}: {e})", tmp.display()),
        hint: "give --out a folder in a place you can write to; nothing was written".into(),
    })?;
    let mut dirs: Vec<PathBuf> = desired
        .keys()
        .filter_map(|rel| Path::new(rel).parent().map(|p| tmp.join(p)))
        .collect();
    dirs.dedup();
    for dir in &dirs {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    type Job<'a> = ((&'a String, &'a Arc<[u8]>), &'a bool);
    let work: Vec<Job> = desired.iter().zip(same.iter()).collect();
    work.into_par_iter().try_for_each(|((rel, bytes), same)| {
        let dest = tmp.join(rel);
        if *same && std::fs::hard_link(out.join(rel), &dest).is_ok() {
            return Ok(());
        }
        std::fs::write(&dest, bytes).map_err(|e| Error::io(&dest, e))
    })?;
    if marked {
        ensure_marker(tmp)?;
    }
    if out.exists() {
        exchange(tmp, out)?;
        // `tmp` now holds the old tree.
        std::fs::remove_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    } else {
        std::fs::rename(tmp, out).map_err(|e| Error::io(out, e))?;
    }
    Ok(())
}

/// Whether `path` (relative to the output folder) belongs to one of `targets`; every
/// path does when `targets` is empty (all targets).
pub fn in_targets(targets: &[String], path: &str) -> bool {
    targets.is_empty()
        || targets
            .iter()
            .any(|t| path.split('/').next() == Some(t.as_str()))
}

/// [`write_render`] for a caller that knows only the targets it rendered (apply): an
/// older strata's folder is adopted when it holds no other targets' folders.
pub fn write_targets(
    out: &Path,
    rendered: Tree,
    targets: &[String],
) -> Result<(usize, WriteSummary)> {
    write_render(out, rendered, targets, &[])
}

/// Writes the render of `targets` (all when empty) into `out`, once [`claim`] says the
/// folder is strata's; `known` names every target of the project, the folders an
/// older strata's output may hold. With targets named, only their folders
/// (`out/<target>/`) are replaced, each atomically; the other targets' folders are not
/// touched, so the cost follows the targets named, not the size of `out`. Returns the
/// number of files the folder now holds.
pub fn write_render(
    out: &Path,
    rendered: Tree,
    targets: &[String],
    known: &[&str],
) -> Result<(usize, WriteSummary)> {
    let mut adoptable: Vec<&str> = known.to_vec();
    adoptable.extend(targets.iter().map(String::as_str));
    adoptable.extend(rendered.keys().filter_map(|p| p.split('/').next()));
    claim(out, &adoptable)?;
    if targets.is_empty() {
        let summary = write_tree(out, &rendered)?;
        return Ok((rendered.len(), summary));
    }
    let (parent, base_name) = parent_and_name(out)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    remove_leftovers(&parent, &base_name);
    let mut summary = WriteSummary::default();
    let mut done: Vec<&String> = Vec::new();
    for target in targets {
        if done.contains(&target) {
            continue;
        }
        done.push(target);
        let prefix = format!("{target}/");
        let files: Tree = rendered
            .iter()
            .filter_map(|(path, bytes)| {
                Some((path.strip_prefix(&prefix)?.to_owned(), bytes.clone()))
            })
            .collect();
        let tmp = tmp_path(&parent, &base_name, &format!("-{target}"));
        let one = replace(&out.join(target), &tmp, &files, false)?;
        summary.written += one.written;
        summary.unchanged += one.unchanged;
        summary.removed += one.removed;
    }
    // Last: a run killed before this leaves only target folders, which are adopted.
    ensure_marker(out)?;
    let total = walkdir::WalkDir::new(out)
        .into_iter()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_file())
        .filter(|entry| entry.depth() != 1 || entry.file_name() != MARKER)
        .count();
    Ok((total, summary))
}

/// Swaps two folders in one step where the OS can.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let ca =
        std::ffi::CString::new(a.as_os_str().as_bytes()).map_err(|e| Error::io(a, e.into()))?;
    let cb =
        std::ffi::CString::new(b.as_os_str().as_bytes()).map_err(|e| Error::io(b, e.into()))?;
    // SAFETY: both pointers are valid NUL-terminated paths for the duration of the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        // File systems without RENAME_EXCHANGE: fall back to two renames.
        Some(libc::EINVAL) | Some(libc::ENOSYS) => exchange_by_rename(a, b),
        _ => Err(Error::io(b, err)),
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> Result<()> {
    exchange_by_rename(a, b)
}

fn exchange_by_rename(new: &Path, out: &Path) -> Result<()> {
    let mut parked = new.as_os_str().to_owned();
    parked.push(".old");
    let parked = PathBuf::from(parked);
    std::fs::rename(out, &parked).map_err(|e| Error::io(out, e))?;
    if let Err(e) = std::fs::rename(new, out) {
        let _ = std::fs::rename(&parked, out);
        return Err(Error::io(out, e));
    }
    std::fs::rename(&parked, new).map_err(|e| Error::io(new, e))
}

/// Removes temporary folders left by runs that were killed before they finished. A
/// folder whose run is still going (another strata writing the same output at the
/// same time) is left to it: removing it would fail that run for nothing.
fn remove_leftovers(parent: &Path, base_name: &std::ffi::OsStr) {
    let mut prefix = OsString::from(".");
    prefix.push(base_name);
    prefix.push(TMP_MARK);
    let prefix = prefix.to_string_lossy().into_owned();
    if let Ok(entries) = std::fs::read_dir(parent) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(owner) = name.strip_prefix(&prefix)
                && !another_process_running(owner)
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Is the process named at the start of `owner` (`<pid>` or `<pid>-<target>`, from
/// [`tmp_path`]) another one that is still running?
fn another_process_running(owner: &str) -> bool {
    let digits = owner.bytes().take_while(u8::is_ascii_digit).count();
    let Ok(pid) = owner[..digits].parse::<u32>() else {
        return false;
    };
    pid != std::process::id() && process_exists(pid)
}

#[cfg(unix)]
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_exists(_pid: u32) -> bool {
    false
}

/// How one file differs between the folder on disk and the render.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileDrift {
    pub path: String,
    pub target: String,
    pub artifact: String,
    pub status: DriftStatus,
    pub lines_added: usize,
    pub lines_removed: usize,
    /// The diff compares canonical forms (sorted keys; for IAM documents, a string and
    /// a one-element list are one thing and lists are unordered) because the text
    /// differs in more ways than the content does.
    pub semantic: bool,
    /// The unified diff of the file.
    pub diff: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftStatus {
    Added,
    Removed,
    Changed,
}

/// Compares the rendered tree with the folder's contents (`label` names the folder in
/// diff headers). Only paths for which `in_scope` holds are compared.
pub fn compare<B: AsRef<[u8]> + Sync>(
    label: &str,
    on_disk: &BTreeMap<String, B>,
    rendered: &Tree,
    in_scope: impl Fn(&str) -> bool,
) -> Vec<FileDrift> {
    // Both maps are sorted: their keys merged in one pass, each path once.
    let mut paths: Vec<&String> = Vec::with_capacity(on_disk.len().max(rendered.len()));
    let (mut a, mut b) = (on_disk.keys().peekable(), rendered.keys().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x < y => a.next(),
            (Some(x), Some(y)) if x > y => b.next(),
            (Some(_), Some(_)) => {
                a.next();
                b.next()
            }
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(path) if in_scope(path) => paths.push(path),
            Some(_) => {}
            None => break,
        }
    }
    paths
        .into_par_iter()
        .filter_map(|path| {
            let old = on_disk.get(path).map(AsRef::as_ref);
            let new = rendered.get(path).map(|b| &b[..]);
            let status = match (old, new) {
                // The same bytes: shared by `read_tree_against`, or equal.
                (Some(a), Some(b)) if std::ptr::eq(a, b) || a == b => return None,
                (Some(_), Some(_)) => DriftStatus::Changed,
                (None, Some(_)) => DriftStatus::Added,
                (Some(_), None) => DriftStatus::Removed,
                (None, None) => return None,
            };
            let (target, artifact) = path.split_once('/').unwrap_or(("", path.as_str()));
            let old_text = String::from_utf8_lossy(old.unwrap_or_default());
            let new_text = String::from_utf8_lossy(new.unwrap_or_default());
            let old_name = if old.is_some() { format!("{label}/{path}") } else { "/dev/null".to_owned() };
            let new_name = if new.is_some() { format!("rendered/{path}") } else { "/dev/null".to_owned() };
            let mut shown = LineDiff::new(&old_text, &new_text, &old_name, &new_name);
            let mut semantic = false;
            if status == DriftStatus::Changed {
                // Key order, a string for a one-element list: noise to a reviewer. Diff
                // the canonical forms when that says the same with fewer lines.
                if let (Some(a), Some(b)) = (canonical(path, &old_text), canonical(path, &new_text)) {
                    let canonical_diff = LineDiff::new(&a, &b, &old_name, &new_name);
                    if a == b || canonical_diff.changed() < shown.changed() {
                        shown = canonical_diff;
                        semantic = true;
                    }
                }
            }
            Some(FileDrift {
                path: path.clone(),
                target: target.to_owned(),
                artifact: artifact.to_owned(),
                status,
                lines_added: shown.added,
                lines_removed: shown.removed,
                semantic,
                diff: if semantic && shown.changed() == 0 {
                    format!("--- {old_name}\n+++ {new_name}\n# same content, formatted differently (key order or layout)\n")
                } else {
                    shown.text
                },
            })
        })
        .collect()
}

/// A unified diff and its line counts.
struct LineDiff {
    text: String,
    added: usize,
    removed: usize,
}

impl LineDiff {
    fn new(old: &str, new: &str, old_name: &str, new_name: &str) -> LineDiff {
        let diff = similar::TextDiff::from_lines(old, new);
        let (mut added, mut removed) = (0, 0);
        for change in diff.iter_all_changes() {
            match change.tag() {
                similar::ChangeTag::Insert => added += 1,
                similar::ChangeTag::Delete => removed += 1,
                similar::ChangeTag::Equal => {}
            }
        }
        let text = diff
            .unified_diff()
            .context_radius(3)
            .header(old_name, new_name)
            .to_string();
        LineDiff {
            text,
            added,
            removed,
        }
    }

    fn changed(&self) -> usize {
        self.added + self.removed
    }
}

/// The canonical text of a JSON or YAML artifact (pretty JSON, keys sorted), or None
/// when the file is of another kind or does not parse.
fn canonical(path: &str, text: &str) -> Option<String> {
    let mut value: serde_json::Value = if path.ends_with(".json") {
        serde_json::from_str(text).ok()?
    } else if path.ends_with(".yaml") || path.ends_with(".yml") {
        let docs: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(text).ok()?;
        serde_json::Value::Array(docs)
    } else {
        return None;
    };
    // serde_json keeps the order keys were read in (`preserve_order`): sort them, first,
    // so that normalize_iam orders the statements by content alone.
    value.sort_all_objects();
    if path.contains("/iam/") {
        normalize_iam(&mut value);
    }
    serde_json::to_string_pretty(&value).ok().map(|s| s + "\n")
}

/// IAM's equivalences: `"Action": "s3:GetObject"` is `["s3:GetObject"]`, and the order of
/// actions, resources, members and statements carries no meaning.
fn normalize_iam(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                normalize_iam(item);
                let unordered = [
                    "Action",
                    "NotAction",
                    "Resource",
                    "NotResource",
                    "members",
                    "Statement",
                    "bindings",
                ];
                if unordered.contains(&key.as_str()) {
                    if let Value::String(s) = item {
                        *item = Value::Array(vec![Value::String(std::mem::take(s))]);
                    }
                    if let Value::Array(items) = item {
                        items.sort_by_key(|v| v.to_string());
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_iam),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(files: &[(&str, &str)]) -> Tree {
        files
            .iter()
            .map(|(p, b)| (p.to_string(), Arc::from(b.as_bytes())))
            .collect()
    }

    fn on_disk(files: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        files
            .iter()
            .map(|(p, b)| (p.to_string(), b.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn compare_reports_changed_added_and_removed_files_with_unified_diffs() {
        let disk = on_disk(&[
            ("a/app.env", "X=1\nY=2\n"),
            ("a/gone.yaml", "k: v\n"),
            ("b/same.yaml", "s: 1\n"),
        ]);
        let new = rendered(&[
            ("a/app.env", "X=1\nY=3\n"),
            ("a/new.yaml", "n: 1\n"),
            ("b/same.yaml", "s: 1\n"),
        ]);
        let drift = compare("snapshots", &disk, &new, |_| true);
        let summary: Vec<(&str, DriftStatus, usize, usize)> = drift
            .iter()
            .map(|d| (d.path.as_str(), d.status, d.lines_added, d.lines_removed))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("a/app.env", DriftStatus::Changed, 1, 1),
                ("a/gone.yaml", DriftStatus::Removed, 0, 1),
                ("a/new.yaml", DriftStatus::Added, 1, 0),
            ]
        );
        assert_eq!(
            drift[0].diff,
            "--- snapshots/a/app.env\n+++ rendered/a/app.env\n@@ -1,2 +1,2 @@\n X=1\n-Y=2\n+Y=3\n"
        );
        assert!(
            drift[1]
                .diff
                .starts_with("--- snapshots/a/gone.yaml\n+++ /dev/null\n")
        );
        assert!(
            drift[2]
                .diff
                .starts_with("--- /dev/null\n+++ rendered/a/new.yaml\n")
        );
        assert_eq!(
            (drift[0].target.as_str(), drift[0].artifact.as_str()),
            ("a", "app.env")
        );
    }

    #[test]
    fn compare_only_looks_at_paths_in_scope() {
        let disk = on_disk(&[("a/x", "1\n"), ("b/x", "1\n")]);
        let new = rendered(&[("a/x", "2\n")]);
        let drift = compare("out", &disk, &new, |p| p.starts_with("a/"));
        assert_eq!(drift.len(), 1);
        assert_eq!(drift[0].path, "a/x");
    }

    #[test]
    fn a_path_that_would_leave_the_folder_is_refused_before_anything_is_written() {
        for good in ["a", "dev-aws/buckets/raw.json", "a/.b"] {
            assert!(stays_inside(good), "{good}");
        }
        for bad in [
            "",
            "/etc/x",
            "../x",
            "a/../../x",
            "a//b",
            "a/./b",
            "./a",
            "a/",
        ] {
            assert!(!stays_inside(bad), "{bad}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let tree: Tree = [
            ("dev-aws/a.json".to_owned(), Arc::from(&b"{}"[..])),
            (
                "dev-aws/buckets/../../../x.json".to_owned(),
                Arc::from(&b"{}"[..]),
            ),
        ]
        .into_iter()
        .collect();
        let err = write_tree(&out, &tree).unwrap_err().to_string();
        assert!(err.contains("would leave the folder"), "{err}");
        assert!(!out.exists());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn write_tree_replaces_the_folder_and_reports_what_it_did() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let first = write_tree(&out, &rendered(&[("t/a", "1"), ("t/b", "2")])).unwrap();
        assert_eq!(
            first,
            WriteSummary {
                written: 2,
                unchanged: 0,
                removed: 0
            }
        );
        let second = write_tree(&out, &rendered(&[("t/a", "1"), ("t/c", "3")])).unwrap();
        assert_eq!(
            second,
            WriteSummary {
                written: 1,
                unchanged: 1,
                removed: 1
            }
        );
        let tree = read_tree(&out).unwrap();
        assert_eq!(tree, on_disk(&[("t/a", "1"), ("t/c", "3")]));
        let third = write_tree(&out, &rendered(&[("t/a", "1"), ("t/c", "3")])).unwrap();
        assert!(!third.changed());
        // Nothing but the output folder is left beside it.
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out")]);
    }

    #[test]
    fn write_tree_removes_leftovers_of_killed_runs() {
        // A process that has ended (and been reaped), and one that is still running.
        let mut ended = std::process::Command::new("true").spawn().unwrap();
        ended.wait().unwrap();
        let mut running = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let leftover = tmp.path().join(format!(".out{TMP_MARK}{}", ended.id()));
        std::fs::create_dir_all(leftover.join("t")).unwrap();
        std::fs::write(leftover.join("t/a"), "half").unwrap();
        let target_leftover = tmp
            .path()
            .join(format!(".out{TMP_MARK}{}-dev-aws", ended.id()));
        std::fs::create_dir_all(&target_leftover).unwrap();
        // Another strata writing the same output right now: its folder is its own.
        let in_use = tmp
            .path()
            .join(format!(".out{TMP_MARK}{}-dev-aws", running.id()));
        std::fs::create_dir_all(&in_use).unwrap();
        // A folder of another output (`.other…`) is not ours to remove.
        let other = tmp.path().join(format!(".other{TMP_MARK}{}", ended.id()));
        std::fs::create_dir_all(&other).unwrap();
        write_tree(&out, &rendered(&[("t/a", "1")])).unwrap();
        let _ = running.kill();
        let _ = running.wait();
        assert!(!leftover.exists());
        assert!(!target_leftover.exists());
        assert!(in_use.exists(), "a running writer's folder is left alone");
        assert!(other.exists());
    }

    #[test]
    fn check_out_dir_refuses_the_project_and_repositories() {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("p");
        std::fs::create_dir_all(project.join("environments")).unwrap();
        assert!(check_out_dir(&project, Some(&project)).is_err());
        assert!(check_out_dir(tmp.path(), Some(&project)).is_err());
        assert!(check_out_dir(&project.join("out"), Some(&project)).is_ok());
        std::fs::create_dir_all(tmp.path().join("repo/.git")).unwrap();
        assert!(check_out_dir(&tmp.path().join("repo"), None).is_err());
        for source in ["environments", "templates/x", ".git/y"] {
            assert!(check_out_dir(&project.join(source), Some(&project)).is_err());
        }
        std::fs::write(tmp.path().join("file"), "x").unwrap();
        assert!(check_out_dir(&tmp.path().join("file"), None).is_err());
    }

    #[test]
    fn claim_takes_new_empty_marked_and_older_stratas_folders_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = |name: &str| tmp.path().join(name);
        let claim_of = |name: &str, known: &[&str]| claim(&dir(name), known).ok();
        assert_eq!(claim_of("absent", &[]), Some(Claim::New));
        std::fs::create_dir(dir("empty")).unwrap();
        assert_eq!(claim_of("empty", &[]), Some(Claim::New));
        std::fs::create_dir_all(dir("old/dev-aws")).unwrap();
        assert_eq!(claim_of("old", &["dev-aws"]), Some(Claim::Adopted));
        assert_eq!(claim_of("old", &["prod-aws"]), None);
        std::fs::write(dir("old/notes.txt"), "mine").unwrap();
        assert_eq!(claim_of("old", &["dev-aws"]), None);
        // A file named like a target is not a target's folder.
        std::fs::create_dir(dir("files")).unwrap();
        std::fs::write(dir("files/dev-aws"), "mine").unwrap();
        assert_eq!(claim_of("files", &["dev-aws"]), None);
        // The marker makes it strata's, whatever else is there.
        std::fs::write(dir("old").join(MARKER), MARKER_TEXT).unwrap();
        assert_eq!(claim_of("old", &[]), Some(Claim::Owned));
        // A folder named like the marker is not one.
        std::fs::create_dir_all(dir("fake").join(MARKER)).unwrap();
        assert_eq!(claim_of("fake", &[]), None);
    }

    #[test]
    fn resolve_follows_the_links_and_dots_of_the_part_that_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        let canonical = real.canonicalize().unwrap();
        assert_eq!(
            resolve(&tmp.path().join("link/new/../x")).unwrap(),
            canonical.join("x")
        );
        assert_eq!(
            resolve(&tmp.path().join("link/../real/./y")).unwrap(),
            canonical.join("y")
        );
    }

    #[test]
    fn the_marker_is_written_with_the_tree_and_not_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let (files, _) = write_render(&out, rendered(&[("t/a", "1")]), &[], &[]).unwrap();
        assert_eq!(files, 1);
        assert_eq!(
            std::fs::read_to_string(out.join(MARKER)).unwrap(),
            MARKER_TEXT
        );
        assert_eq!(read_tree(&out).unwrap(), on_disk(&[("t/a", "1")]));
        // Named targets: the marker is not counted, nor removed.
        let (files, summary) =
            write_render(&out, rendered(&[("u/b", "2")]), &["u".to_owned()], &[]).unwrap();
        assert_eq!((files, summary.removed), (2, 0));
        assert!(out.join(MARKER).is_file());
    }

    /// The refusal of `check_out_dir(path)`, as printed.
    fn refusal(path: &Path) -> String {
        check_out_dir(path, None).unwrap_err().to_string()
    }

    #[test]
    fn check_out_dir_names_what_is_in_the_way() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let why = refusal(&link);
        assert!(
            why.contains(&format!(
                "it is a symbolic link (to {}), which a render would replace with a folder",
                real.display()
            )),
            "{why}"
        );
        assert!(
            why.contains("hint: give the folder the link points to"),
            "{why}"
        );
        // With a trailing `/` too, which would make lstat follow the link.
        let slashed = PathBuf::from(format!("{}/", link.display()));
        assert!(refusal(&slashed).contains("it is a symbolic link"));
        assert!(check_out_dir(&real, None).is_ok());

        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(refusal(&file).contains("it is a file, not a folder"));
        assert!(refusal(Path::new("/dev/null")).contains("it is a device, not a folder"));
        let fifo = tmp.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(refusal(&fifo).contains("it is a FIFO (named pipe), not a folder"));
        let socket = tmp.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        assert!(refusal(&socket).contains("it is a socket, not a folder"));
        // A folder that holds a repository or a project, or lies in a repository.
        for (inside, why) in [
            (".git", "it contains .git"),
            ("environments", "it contains environments"),
            ("Cargo.toml", "it contains Cargo.toml"),
        ] {
            let dir = tmp.path().join(format!("has-{inside}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(inside), "").unwrap();
            assert!(refusal(&dir).contains(why), "{inside}");
        }
        let in_git = tmp.path().join("repo/.git/out");
        assert!(refusal(&in_git).contains("it is inside a repository's .git folder"));
    }

    #[test]
    fn check_out_dir_says_which_of_the_project_it_would_destroy() {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("p");
        std::fs::create_dir_all(&project).unwrap();
        let why = |out: &Path| check_out_dir(out, Some(&project)).unwrap_err().to_string();
        assert!(why(&project).contains("it is the project folder"));
        assert!(why(&project.join(".")).contains("it is the project folder"));
        assert!(why(tmp.path()).contains("it contains the project ("));
        assert!(why(&project.join("charts/x")).contains("it is inside the project's charts/"));
        assert!(check_out_dir(&project.join("out"), Some(&project)).is_ok());
        assert!(check_out_dir(&project.join("environments-out"), Some(&project)).is_ok());
    }

    #[test]
    fn a_refused_folder_written_as_dots_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("p");
        std::fs::create_dir_all(&project).unwrap();
        let why = check_out_dir(&project.join(".."), Some(&project))
            .unwrap_err()
            .to_string();
        let named = tmp.path().canonicalize().unwrap();
        assert!(
            why.starts_with(&format!(
                "refusing to render into {}: it contains the project",
                named.display()
            )),
            "{why}"
        );
    }

    #[test]
    fn check_folder_is_false_for_nothing_and_refuses_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(!check_folder(&tmp.path().join("absent")).unwrap());
        assert!(check_folder(tmp.path()).unwrap());
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        // Below a file, no folder can exist: absent too. Another error is one.
        assert!(!check_folder(&file.join("below")).unwrap());
        assert!(check_folder(Path::new("out\0x")).is_err());
        let why = check_folder(&file).unwrap_err().to_string();
        assert!(
            why.starts_with(&format!(
                "refusing to compare with {}: it is a file, not a folder",
                file.display()
            )),
            "{why}"
        );
    }

    #[test]
    fn claim_lists_five_strangers_and_counts_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        for name in ["a", "b", "c", "d"] {
            std::fs::write(out.join(name), "").unwrap();
        }
        std::fs::create_dir(out.join("e")).unwrap();
        let why = |out: &Path| claim(out, &[]).unwrap_err().to_string();
        assert!(
            why(&out).contains("it holds a, b, c, d, e/\n"),
            "{}",
            why(&out)
        );
        for name in ["f", "g"] {
            std::fs::write(out.join(name), "").unwrap();
        }
        assert!(
            why(&out).contains("it holds a, b, c, d, e/ and 2 more\n"),
            "{}",
            why(&out)
        );
        // A folder that cannot be read is no new folder (a file, here).
        assert!(claim(&out.join("a"), &[]).is_err());
        // Below a file: refused in words. Another error (a NUL in the path) is said as
        // the system says it, not as a file on the way.
        let below = claim(&out.join("a").join("x"), &[])
            .unwrap_err()
            .to_string();
        assert!(
            below.ends_with(": a part of its path is a file, not a folder\n  hint: give --out a folder whose parents are folders; nothing was written"),
            "{below}"
        );
        let nul = claim(Path::new("out\0x"), &[]).unwrap_err().to_string();
        assert!(!nul.contains("a part of its path is a file"), "{nul}");
    }

    #[test]
    fn a_write_that_only_changes_or_only_removes_files_is_done() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        write_tree(&out, &rendered(&[("t/a", "1"), ("t/b", "2")])).unwrap();
        // One file changed, none removed.
        let summary = write_tree(&out, &rendered(&[("t/a", "1"), ("t/b", "3")])).unwrap();
        assert_eq!(
            summary,
            WriteSummary {
                written: 1,
                unchanged: 1,
                removed: 0
            }
        );
        assert!(summary.changed());
        assert_eq!(
            read_tree(&out).unwrap(),
            on_disk(&[("t/a", "1"), ("t/b", "3")])
        );
        // One removed, none written.
        let summary = write_tree(&out, &rendered(&[("t/a", "1")])).unwrap();
        assert_eq!(
            summary,
            WriteSummary {
                written: 0,
                unchanged: 1,
                removed: 1
            }
        );
        assert!(summary.changed());
        assert_eq!(read_tree(&out).unwrap(), on_disk(&[("t/a", "1")]));
        // Same length, other bytes: written.
        let summary = write_tree(&out, &rendered(&[("t/a", "2")])).unwrap();
        assert_eq!(summary.written, 1);
        assert_eq!(read_tree(&out).unwrap(), on_disk(&[("t/a", "2")]));
        assert!(out.join(MARKER).is_file());
        // Nothing at all: the folder goes.
        let summary = write_tree(&out, &Tree::new()).unwrap();
        assert_eq!(summary.removed, 1);
        assert!(!out.exists());
    }

    #[test]
    fn an_unchanged_file_is_linked_not_rewritten() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        write_tree(&out, &rendered(&[("t/a", "1"), ("t/b", "2")])).unwrap();
        let inode = |rel: &str| std::fs::metadata(out.join(rel)).unwrap().ino();
        let (a, b) = (inode("t/a"), inode("t/b"));
        write_tree(&out, &rendered(&[("t/a", "1"), ("t/b", "3")])).unwrap();
        assert_eq!(inode("t/a"), a, "the unchanged file is the same file");
        assert_ne!(inode("t/b"), b);
        assert_eq!(std::fs::read_to_string(out.join("t/b")).unwrap(), "3");
    }

    #[test]
    fn named_targets_add_up_and_a_target_that_renders_nothing_goes() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let both = ["t".to_owned(), "u".to_owned()];
        let (files, summary) = write_render(
            &out,
            rendered(&[("t/a", "1"), ("t/b", "2"), ("u/c", "3")]),
            &both,
            &[],
        )
        .unwrap();
        assert_eq!(files, 3);
        assert_eq!(
            summary,
            WriteSummary {
                written: 3,
                unchanged: 0,
                removed: 0
            }
        );
        let (files, summary) = write_render(
            &out,
            rendered(&[("t/a", "1"), ("t/b", "9"), ("u/d", "4")]),
            &both,
            &[],
        )
        .unwrap();
        assert_eq!(files, 3);
        assert_eq!(
            summary,
            WriteSummary {
                written: 2,
                unchanged: 1,
                removed: 1
            }
        );
        // A marker in a target's folder is its file like any other, and counted.
        std::fs::write(out.join("u").join(MARKER), "").unwrap();
        let (files, _) =
            write_render(&out, rendered(&[("t/a", "1")]), &["t".to_owned()], &[]).unwrap();
        assert_eq!(files, 3, "t/a, u/d and u/{MARKER}");
        let (files, summary) = write_render(&out, Tree::new(), &["u".to_owned()], &[]).unwrap();
        assert_eq!((files, summary.removed), (1, 2));
        assert!(!out.join("u").exists());
        assert_eq!(read_tree(&out).unwrap(), on_disk(&[("t/a", "1")]));
    }

    #[test]
    fn write_targets_writes_only_the_targets_it_names() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        write_render(&out, rendered(&[("t/a", "1"), ("u/b", "2")]), &[], &[]).unwrap();
        let (files, summary) =
            write_targets(&out, rendered(&[("u/b", "3")]), &["u".to_owned()]).unwrap();
        assert_eq!((files, summary.written), (2, 1));
        assert_eq!(
            read_tree(&out).unwrap(),
            on_disk(&[("t/a", "1"), ("u/b", "3")])
        );
    }

    #[test]
    fn read_targets_reads_the_folders_of_the_targets_named() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        write_render(&out, rendered(&[("t/a", "1"), ("u/b/c", "2")]), &[], &[]).unwrap();
        let bytes = |tree: BTreeMap<String, Arc<[u8]>>| -> BTreeMap<String, Vec<u8>> {
            tree.into_iter().map(|(p, b)| (p, b.to_vec())).collect()
        };
        let nothing = Tree::new();
        assert_eq!(
            bytes(read_targets(&out, &["u".to_owned()], &nothing).unwrap()),
            on_disk(&[("u/b/c", "2")])
        );
        assert_eq!(
            bytes(read_targets(&out, &[], &nothing).unwrap()),
            on_disk(&[("t/a", "1"), ("u/b/c", "2")])
        );
        assert_eq!(read_tree(&tmp.path().join("absent")).unwrap(), on_disk(&[]));
    }

    #[test]
    fn a_file_larger_than_the_read_buffer_is_read_whole() {
        // The buffer starts at 64 KiB and doubles: 300 KiB takes three growths.
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let big: String = (0..300 * 1024)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        write_render(
            &out,
            rendered(&[("t/big", &big), ("t/small", "s")]),
            &[],
            &[],
        )
        .unwrap();
        let nothing = Tree::new();
        let read = read_targets(&out, &[], &nothing).unwrap();
        assert_eq!(read["t/big"].len(), big.len());
        assert_eq!(&read["t/big"][..], big.as_bytes());
        assert_eq!(&read["t/small"][..], b"s");
        // The same file, rendered the same: shared, not reported.
        let now = rendered(&[("t/big", &big), ("t/small", "s")]);
        let read = read_targets(&out, &[], &now).unwrap();
        assert!(Arc::ptr_eq(&read["t/big"], &now["t/big"]));
        assert!(compare("out", &read, &now, |_| true).is_empty());
    }

    #[test]
    fn compare_reports_a_removed_file_that_sorts_after_every_rendered_one() {
        // Each side's paths come in order: one on disk that sorts after a rendered one
        // that is not on disk must not be skipped.
        let disk = on_disk(&[("b/removed", "1\n")]);
        let new = rendered(&[("a/new", "2\n")]);
        let drift = compare("out", &disk, &new, |_| true);
        let seen: Vec<(&str, DriftStatus)> =
            drift.iter().map(|d| (d.path.as_str(), d.status)).collect();
        assert_eq!(
            seen,
            vec![
                ("a/new", DriftStatus::Added),
                ("b/removed", DriftStatus::Removed)
            ]
        );
        let drift = compare(
            "out",
            &on_disk(&[("a/x", "1\n"), ("c/y", "1\n")]),
            &rendered(&[("b/z", "1\n")]),
            |_| true,
        );
        let paths: Vec<&str> = drift.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, vec!["a/x", "b/z", "c/y"]);
    }

    #[test]
    fn read_targets_shares_the_rendered_bytes_of_an_unchanged_file_and_reads_a_changed_one() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        write_render(
            &out,
            rendered(&[
                ("t/same", "1\n"),
                ("t/changed", "old\n"),
                ("t/extra", "x\n"),
            ]),
            &[],
            &[],
        )
        .unwrap();
        let now = rendered(&[("t/same", "1\n"), ("t/changed", "new\n")]);
        for names in [vec![], vec!["t".to_owned()]] {
            let read = read_targets(&out, &names, &now).unwrap();
            assert!(Arc::ptr_eq(&read["t/same"], &now["t/same"]), "{names:?}");
            assert_eq!(&read["t/changed"][..], b"old\n");
            assert!(!Arc::ptr_eq(&read["t/changed"], &now["t/changed"]));
            assert_eq!(&read["t/extra"][..], b"x\n");
            let drift = compare("out", &read, &now, |_| true);
            let seen: Vec<(&str, DriftStatus)> =
                drift.iter().map(|d| (d.path.as_str(), d.status)).collect();
            assert_eq!(
                seen,
                vec![
                    ("t/changed", DriftStatus::Changed),
                    ("t/extra", DriftStatus::Removed)
                ]
            );
        }
    }

    #[test]
    fn in_targets_matches_the_first_segment_only() {
        let dev = ["dev".to_owned()];
        assert!(in_targets(&[], "anything/x"));
        assert!(in_targets(&dev, "dev/a.yaml"));
        assert!(!in_targets(&dev, "dev-aws/a.yaml"));
        assert!(!in_targets(&dev, "prod/dev"));
    }

    #[test]
    fn parent_and_name_of_relative_and_root_paths() {
        assert_eq!(
            parent_and_name(Path::new("out")).unwrap(),
            (PathBuf::from("."), OsString::from("out"))
        );
        assert_eq!(
            parent_and_name(Path::new("a/out")).unwrap(),
            (PathBuf::from("a"), OsString::from("out"))
        );
        assert!(parent_and_name(Path::new("/")).is_err());
    }

    #[test]
    fn exchange_by_rename_swaps_two_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for (dir, text) in [(&a, "new"), (&b, "old")] {
            std::fs::create_dir(dir).unwrap();
            std::fs::write(dir.join("f"), text).unwrap();
        }
        exchange_by_rename(&a, &b).unwrap();
        assert_eq!(std::fs::read_to_string(b.join("f")).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(a.join("f")).unwrap(), "old");
        exchange(&a, &b).unwrap();
        assert_eq!(std::fs::read_to_string(b.join("f")).unwrap(), "old");
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_leftover_of_this_very_process_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path();
        let mine = tmp_path(parent, std::ffi::OsStr::new("out"), "-t");
        std::fs::create_dir(&mine).unwrap();
        remove_leftovers(parent, std::ffi::OsStr::new("out"));
        assert!(!mine.exists());
        assert!(!another_process_running("x"));
        assert!(!another_process_running(&std::process::id().to_string()));
        assert!(process_exists(1), "init, always there");
    }

    #[test]
    fn compare_diffs_the_canonical_form_when_that_says_it_in_fewer_lines() {
        // Keys in another order: the same content.
        let disk = on_disk(&[
            ("t/a.json", "{\"b\": 1, \"a\": 2}\n"),
            ("t/b.yaml", "b: 1\na: 2\n"),
            ("t/c.yml", "b: 1\na: 2\n"),
        ]);
        let new = rendered(&[
            ("t/a.json", "{\"a\": 2, \"b\": 1}\n"),
            ("t/b.yaml", "a: 2\nb: 1\n"),
            ("t/c.yml", "a: 2\nb: 1\n"),
        ]);
        for d in compare("out", &disk, &new, |_| true) {
            assert!(d.semantic, "{}", d.path);
            assert_eq!((d.lines_added, d.lines_removed), (0, 0), "{}", d.path);
            assert_eq!(
                d.diff,
                format!(
                    "--- out/{0}\n+++ rendered/{0}\n# same content, formatted differently (key order or layout)\n",
                    d.path
                )
            );
        }
        // A change in a file already in canonical form: the plain diff, as is.
        let canonical_old = "{\n  \"a\": 1,\n  \"b\": 2\n}\n";
        let canonical_new = "{\n  \"a\": 1,\n  \"b\": 3\n}\n";
        let d = compare(
            "out",
            &on_disk(&[("t/x.json", canonical_old)]),
            &rendered(&[("t/x.json", canonical_new)]),
            |_| true,
        );
        assert!(!d[0].semantic);
        assert_eq!((d[0].lines_added, d[0].lines_removed), (1, 1));
        // Reordered and changed: the canonical diff shows only the change.
        let d = compare(
            "out",
            &on_disk(&[("t/x.json", "{\n  \"c\": 1,\n  \"b\": 2,\n  \"a\": 1\n}\n")]),
            &rendered(&[("t/x.json", "{\n  \"a\": 1,\n  \"b\": 3,\n  \"c\": 1\n}\n")]),
            |_| true,
        );
        assert!(d[0].semantic);
        assert_eq!((d[0].lines_added, d[0].lines_removed), (1, 1));
        assert!(
            d[0].diff.contains("-  \"b\": 2,\n+  \"b\": 3,\n"),
            "{}",
            d[0].diff
        );
        // Reordered with a key added, nothing removed: the diff shows the addition.
        let d = compare(
            "out",
            &on_disk(&[("t/x.json", "{\n  \"c\": 1,\n  \"b\": 2,\n  \"a\": 1\n}\n")]),
            &rendered(&[(
                "t/x.json",
                "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 1,\n  \"0\": 4\n}\n",
            )]),
            |_| true,
        );
        assert!(d[0].semantic);
        assert_eq!((d[0].lines_added, d[0].lines_removed), (1, 0));
        assert!(d[0].diff.contains("+  \"0\": 4,\n"), "{}", d[0].diff);
        // Not JSON or YAML (or not parsing): as it is.
        let d = compare(
            "out",
            &on_disk(&[
                ("t/x.env", "B=1\nA=2\n"),
                ("t/y.json", "{\"b\": 1, \"a\": \n"),
            ]),
            &rendered(&[
                ("t/x.env", "A=2\nB=1\n"),
                ("t/y.json", "{\"a\": 2, \"b\": 1}\n"),
            ]),
            |_| true,
        );
        assert!(d.iter().all(|d| !d.semantic));
        // Added and removed files are never "semantic".
        let d = compare(
            "out",
            &on_disk(&[("t/gone.json", "{}\n")]),
            &rendered(&[("t/new.json", "{}\n")]),
            |_| true,
        );
        assert!(
            d.iter()
                .all(|d| !d.semantic && d.lines_added + d.lines_removed == 1)
        );
    }

    #[test]
    fn compare_takes_iams_equivalences_in_iam_documents_only() {
        let old = r#"{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": "s3:GetObject", "Resource": ["arn:b", "arn:a"]},
  {"Effect": "Allow", "Action": ["s3:PutObject", "s3:DeleteObject"], "Resource": "arn:c"}
]}
"#;
        let new = r#"{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["s3:DeleteObject", "s3:PutObject"], "Resource": ["arn:c"]},
  {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:a", "arn:b"]}
]}
"#;
        let gcp_old = r#"{"bindings": [{"role": "r", "members": ["user:b", "user:a"]}]}"#;
        let gcp_new = r#"{"bindings": [{"role": "r", "members": ["user:a", "user:b"]}]}"#;
        let d = compare(
            "out",
            &on_disk(&[
                ("t/iam/x.policy.json", old),
                ("t/iam/y.gcp.json", gcp_old),
                ("t/buckets/x.json", old),
            ]),
            &rendered(&[
                ("t/iam/x.policy.json", new),
                ("t/iam/y.gcp.json", gcp_new),
                ("t/buckets/x.json", new),
            ]),
            |_| true,
        );
        let same: Vec<(&str, usize)> = d
            .iter()
            .map(|d| (d.path.as_str(), d.lines_added + d.lines_removed))
            .collect();
        assert_eq!(
            same[1..],
            [("t/iam/x.policy.json", 0), ("t/iam/y.gcp.json", 0)]
        );
        assert_eq!(same[0].0, "t/buckets/x.json");
        assert!(same[0].1 > 0, "outside iam/ a list's order is content");
    }
}
