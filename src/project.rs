//! Where the project's files come from: a folder on disk, or the example embedded in
//! the binary (so `strata render` works anywhere, and `strata init` can write it out).
//!
//! Everything after this module sees files only as (relative path, bytes), which keeps
//! the pipeline pure and lets tests feed it from memory.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The example projects that ship with strata, embedded at build time (see build.rs):
/// the lakehouse at the root, the others under `examples/<name>/`.
pub static EXAMPLE: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/example_files.rs"));

/// The names `strata init --example` takes; the first is the default and the one
/// `strata render` uses outside any project.
pub const EXAMPLES: &[&str] = &["lakehouse", "storage-only", "three-tier"];

/// The files of one example, as (path in the project, bytes).
pub fn example_files(name: &str) -> Option<Vec<(&'static str, &'static [u8])>> {
    if !EXAMPLES.contains(&name) {
        return None;
    }
    let prefix = format!("examples/{name}/");
    Some(
        EXAMPLE
            .iter()
            .filter_map(|(path, bytes)| {
                if name == EXAMPLES[0] {
                    (!path.starts_with("examples/")).then_some((*path, *bytes))
                } else {
                    path.strip_prefix(prefix.as_str())
                        .map(|rest| (rest, *bytes))
                }
            })
            .collect(),
    )
}

#[derive(Debug, Clone)]
pub enum Project {
    /// A project folder: the one holding `environments/`.
    Disk(PathBuf),
    /// The bundled example.
    Embedded,
}

impl Project {
    /// Finds the project folder at `dir` or above it (as git finds `.git`); with no
    /// `environments/` anywhere above, the embedded example.
    pub fn discover(dir: &Path) -> Result<Project> {
        let start = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        for candidate in start.ancestors() {
            if candidate.join("environments").is_dir() {
                return Ok(Project::Disk(candidate.to_path_buf()));
            }
        }
        Ok(Project::Embedded)
    }

    /// A short description for messages: the folder, or "the bundled example".
    pub fn describe(&self) -> String {
        match self {
            Project::Disk(root) => root.display().to_string(),
            Project::Embedded => "the bundled example".to_owned(),
        }
    }

    pub fn root(&self) -> Option<&Path> {
        match self {
            Project::Disk(root) => Some(root),
            Project::Embedded => None,
        }
    }

    /// Reads at most `limit + 1` bytes of one file (enough to tell that it is too
    /// large, without reading a huge file whole); `None` when it does not exist.
    pub fn read_at_most(&self, rel: &str, limit: usize) -> Result<Option<Vec<u8>>> {
        use std::io::Read;
        match self {
            Project::Disk(root) => {
                let file = match std::fs::File::open(root.join(rel)) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(Error::io(rel, e)),
                };
                let mut bytes = Vec::new();
                file.take(limit as u64 + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| Error::io(rel, e))?;
                Ok(Some(bytes))
            }
            Project::Embedded => self.read(rel),
        }
    }

    /// Reads one file; `None` when it does not exist.
    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        match self {
            Project::Disk(root) => {
                let path = root.join(rel);
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io(rel, e)),
                }
            }
            Project::Embedded => Ok(EXAMPLE
                .iter()
                .find(|(path, _)| *path == rel)
                .map(|(_, bytes)| bytes.to_vec())),
        }
    }

    /// The entries directly inside `dir` (not recursing), sorted by path; `None` when
    /// `dir` does not exist. Nothing is opened: a FIFO would block a read, so each entry
    /// is described from its metadata alone, and a symbolic link by where it points.
    pub fn entries(&self, dir: &str) -> Result<Option<Vec<Entry>>> {
        let dir = dir.trim_end_matches('/');
        let mut entries = match self {
            Project::Disk(root) => match disk_entries(root, dir)? {
                Some(entries) => entries,
                None => return Ok(None),
            },
            Project::Embedded => {
                let prefix = format!("{dir}/");
                let mut entries: Vec<Entry> = Vec::new();
                for (path, _) in EXAMPLE {
                    let Some(rest) = path.strip_prefix(&prefix) else {
                        continue;
                    };
                    let (name, kind) = match rest.split_once('/') {
                        Some((folder, _)) => (folder, Kind::Dir),
                        None => (rest, Kind::File),
                    };
                    let path = format!("{prefix}{name}");
                    if !entries.iter().any(|e| e.path == path) {
                        entries.push(Entry {
                            name: Some(name.to_owned()),
                            path,
                            kind,
                            link: None,
                        });
                    }
                }
                if entries.is_empty() {
                    return Ok(None);
                }
                entries
            }
        };
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Some(entries))
    }

    /// Every file below `dir`, recursively, as (path relative to `dir`, bytes), sorted.
    /// On disk, a symbolic link is followed only when it stays inside `dir`: templates
    /// cannot read files from outside their folder.
    pub fn walk(&self, dir: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mut files = match self {
            Project::Disk(root) => walk_disk(&root.join(dir), dir)?,
            Project::Embedded => {
                let prefix = format!("{}/", dir.trim_end_matches('/'));
                EXAMPLE
                    .iter()
                    .filter_map(|(path, bytes)| {
                        path.strip_prefix(&prefix)
                            .map(|rest| (rest.to_owned(), bytes.to_vec()))
                    })
                    .collect()
            }
        };
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(files)
    }
}

/// One entry of a project folder, described without opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the project root, with `/` (lossy when the name is not UTF-8).
    pub path: String,
    /// The file name; `None` when it is not valid UTF-8.
    pub name: Option<String>,
    /// What is there; for a symbolic link, what the link leads to.
    pub kind: Kind,
    /// Set when the entry is a symbolic link.
    pub link: Option<Link>,
}

/// What a folder entry is (after following a link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Fifo,
    Socket,
    BlockDevice,
    CharDevice,
    /// A link whose target does not exist.
    Missing,
    /// A link that cannot be followed (a loop, no permission): the reason.
    Unreadable(String),
}

/// Where a symbolic link points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The link's text, as `ls -l` shows it.
    pub to: String,
    /// Whether it resolves to a path inside the project folder.
    pub inside: bool,
}

fn disk_entries(root: &Path, dir: &str) -> Result<Option<Vec<Entry>>> {
    let read = match std::fs::read_dir(root.join(dir)) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let canonical_root = root.canonicalize().map_err(|e| Error::io(root, e))?;
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let file_name = entry.file_name();
        let path = format!("{dir}/{}", file_name.to_string_lossy());
        // The entry's own type (lstat): never opens it.
        let own = entry.file_type().map_err(|e| Error::io(&path, e))?;
        let (kind, link) = if own.is_symlink() {
            let full = entry.path();
            let to = std::fs::read_link(&full)
                .map(|t| t.display().to_string())
                .map_err(|e| Error::io(&path, e))?;
            // stat follows the link without opening what it finds.
            match std::fs::metadata(&full) {
                Ok(meta) => {
                    let inside = full
                        .canonicalize()
                        .is_ok_and(|resolved| resolved.starts_with(&canonical_root));
                    (kind_of(meta.file_type()), Some(Link { to, inside }))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    (Kind::Missing, Some(Link { to, inside: false }))
                }
                Err(e) => (
                    Kind::Unreadable(e.to_string()),
                    Some(Link { to, inside: false }),
                ),
            }
        } else {
            (kind_of(own), None)
        };
        entries.push(Entry {
            path,
            name: file_name.to_str().map(str::to_owned),
            kind,
            link,
        });
    }
    Ok(Some(entries))
}

#[cfg(unix)]
fn kind_of(file_type: std::fs::FileType) -> Kind {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        Kind::Dir
    } else if file_type.is_file() {
        Kind::File
    } else if file_type.is_fifo() {
        Kind::Fifo
    } else if file_type.is_socket() {
        Kind::Socket
    } else if file_type.is_block_device() {
        Kind::BlockDevice
    } else {
        Kind::CharDevice
    }
}

#[cfg(not(unix))]
fn kind_of(file_type: std::fs::FileType) -> Kind {
    if file_type.is_dir() {
        Kind::Dir
    } else {
        Kind::File
    }
}

fn walk_disk(base: &Path, label: &str) -> Result<Vec<(String, Vec<u8>)>> {
    if !base.is_dir() {
        return Ok(Vec::new());
    }
    let canonical_base = base.canonicalize().map_err(|e| Error::io(base, e))?;
    let mut files = Vec::new();
    let mut errors = Vec::new();
    // Control characters in a name are shown escaped (`x\ny`), never written raw.
    let entry_error = |rel: &str, message: &str, hint: &str| Error::Entry {
        path: format!(
            "{label}/{}",
            rel.chars()
                .map(|c| if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                })
                .collect::<String>()
        ),
        message: message.to_owned(),
        hint: hint.to_owned(),
    };
    // Dotfiles and dot-folders (.gitkeep, .DS_Store) are not templates: left out, as
    // in environments/.
    let walker = walkdir::WalkDir::new(base)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().as_encoded_bytes().starts_with(b"."));
    let mut bad_folders: Vec<String> = Vec::new();
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e
                .path()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| base.to_path_buf());
            Error::io(path, e.into())
        })?;
        if entry.depth() == 0 {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(base)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .replace('\\', "/");
        if bad_folders
            .iter()
            .any(|f| rel.starts_with(&format!("{f}/")))
        {
            continue;
        }
        // A template's name is the name of the file it renders, in every target.
        let problem = match entry.file_name().to_str() {
            None => Some("the name is not valid UTF-8"),
            Some(name) if name.chars().any(char::is_control) => {
                Some("the name holds a control character (a newline, a tab)")
            }
            Some(_) => None,
        };
        if let Some(problem) = problem {
            errors.push(entry_error(
                &rel,
                problem,
                "rename it: the names under templates/ become the names of the files they render",
            ));
            if entry.file_type().is_dir() {
                bad_folders.push(rel);
            }
            continue;
        }
        let mut path = entry.path().to_path_buf();
        if entry.path_is_symlink() {
            let resolved = entry
                .path()
                .canonicalize()
                .map_err(|e| Error::io(format!("{label}/{rel}"), e))?;
            if !resolved.starts_with(&canonical_base) {
                return Err(Error::Usage(format!(
                    "{label}/{rel}: is a symbolic link to {}, outside {label}/\n  hint: templates may only \
                     read files inside {label}/; copy the file in instead of linking to it",
                    resolved.display()
                )));
            }
            path = resolved;
        }
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(format!("{label}/{rel}"), e))?;
        if meta.is_file() {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(format!("{label}/{rel}"), e))?;
            files.push((rel, bytes));
        } else if !meta.is_dir() {
            // A FIFO would block the read; a device is not a template either.
            errors.push(entry_error(
                &rel,
                "is not a regular file (a FIFO, a socket or a device), not a template",
                "remove it: templates/ holds the templates and files to copy into each target",
            ));
        }
    }
    Error::from_list(errors)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is under templates/ besides templates: dotfiles left out, and every name
    /// or kind of file that cannot become an artifact said at its path, in one run.
    #[test]
    fn templates_are_regular_files_with_printable_names_and_dotfiles_are_left_out() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("templates");
        for folder in ["sub", ".hidden", "bad\nfolder"] {
            std::fs::create_dir_all(t.join(folder)).unwrap();
        }
        for file in [
            "ok.yaml.j2",
            ".gitkeep",
            "sub/.j2",
            ".hidden/x.yaml.j2",
            "x\ty.yaml",
            "bad\nfolder/a.yaml",
        ] {
            std::fs::write(t.join(file), "a: 1\n").unwrap();
        }
        std::fs::write(
            t.join(std::ffi::OsStr::from_bytes(b"raw\xff.yaml")),
            "a: 1\n",
        )
        .unwrap();
        let fifo = std::process::Command::new("mkfifo")
            .arg(t.join("pipe.yaml"))
            .status()
            .unwrap();
        assert!(fifo.success());
        let err = walk_disk(&t, "templates").unwrap_err().to_string();
        let said: Vec<&str> = err.lines().filter(|l| !l.starts_with("  hint")).collect();
        assert_eq!(
            said,
            [
                "templates/bad\\nfolder: the name holds a control character (a newline, a tab)",
                "templates/pipe.yaml: is not a regular file (a FIFO, a socket or a device), not a template",
                "templates/raw\u{FFFD}.yaml: the name is not valid UTF-8",
                "templates/x\\ty.yaml: the name holds a control character (a newline, a tab)",
            ],
            "{err}"
        );
        for bad in ["pipe.yaml", "x\ty.yaml"] {
            std::fs::remove_file(t.join(bad)).unwrap();
        }
        std::fs::remove_file(t.join(std::ffi::OsStr::from_bytes(b"raw\xff.yaml"))).unwrap();
        std::fs::remove_dir_all(t.join("bad\nfolder")).unwrap();
        let files: Vec<String> = walk_disk(&t, "templates")
            .unwrap()
            .into_iter()
            .map(|(rel, _)| rel)
            .collect();
        assert_eq!(files, ["ok.yaml.j2"]);
    }
}
