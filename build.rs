//! Embeds the example projects into the binary: the lakehouse at the repository's root
//! (environments/, templates/, charts/) and each of examples/<name>/, so that `strata
//! render` outside any project, and `strata init --example NAME`, use the same files
//! this repository renders into snapshots/ (and examples/<name>/snapshots/).
//!
//! Also sets `STRATA_REVISION`, the git revision `strata --version` shows.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    // At run time, not `env!` (compile time): one compiled build script may serve
    // several checkouts that share a build folder (the README test's clone does), and
    // each must embed its own files.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir);
    println!(
        "cargo:rustc-env=STRATA_REVISION={}",
        revision(root).unwrap_or_else(|| "unknown revision".to_owned())
    );
    let mut files = Vec::new();
    for dir in ["environments", "templates", "charts"] {
        println!("cargo:rerun-if-changed={dir}");
        collect(root, &root.join(dir), &mut files);
    }
    println!("cargo:rerun-if-changed=examples");
    if let Ok(entries) = std::fs::read_dir(root.join("examples")) {
        for entry in entries.flatten() {
            for dir in ["environments", "templates", "charts", "vars.schema.json"] {
                let path = entry.path().join(dir);
                if path.is_file() {
                    println!("cargo:rerun-if-changed={}", path.display());
                    files.push(
                        path.strip_prefix(root)
                            .unwrap()
                            .to_string_lossy()
                            .replace('\\', "/"),
                    );
                } else {
                    collect(root, &path, &mut files);
                }
            }
        }
    }
    files.sort();
    let mut out = String::from("&[\n");
    for rel in &files {
        let abs = root.join(rel);
        println!("cargo:rerun-if-changed={}", abs.display());
        // Relative to the crate being compiled, not to this script's checkout: another
        // checkout sharing the build folder (the README test's clone) may run this
        // script and overwrite this file, and the text must then be the same.
        writeln!(
            out,
            "    ({rel:?}, include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {:?}))),",
            format!("/{rel}")
        )
        .unwrap();
    }
    out.push(']');
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("example_files.rs");
    std::fs::write(dest, out).unwrap();
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, files);
        } else if path.is_file() {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            files.push(rel);
        }
    }
}

/// The short git revision the binary is built from, or None (never an error: a build
/// from a crate tarball, or without git, has no revision to show).
///
/// A packaged crate (crates.io, `cargo package`) carries the commit it was packaged
/// from in `.cargo_vcs_info.json`; git is not asked then, since the folder may sit
/// inside some other repository (vendored sources) whose HEAD says nothing about
/// strata. Otherwise `git rev-parse --short HEAD`, and the build reruns when HEAD or
/// the branch it names moves, so the revision is never stale.
fn revision(root: &Path) -> Option<String> {
    let vcs_info = root.join(".cargo_vcs_info.json");
    if vcs_info.is_file() {
        println!("cargo:rerun-if-changed={}", vcs_info.display());
        let text = std::fs::read_to_string(&vcs_info).ok()?;
        let after = &text[text.find("\"sha1\"")? + "\"sha1\"".len()..];
        let start = after.find('"')? + 1;
        let sha: String = after[start..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        return (sha.len() >= 7).then(|| sha[..7].to_owned());
    }
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()?;
        let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
        (output.status.success() && !text.is_empty()).then_some(text)
    };
    let short = git(&["rev-parse", "--short", "HEAD"])?;
    if !short.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    // HEAD itself (a checkout), the branch it points to (a commit), and packed-refs
    // (where the branch may live instead). Only files that exist: cargo reruns the
    // script on every build for a missing one.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path = PathBuf::from(path);
            let path = if path.is_absolute() {
                path
            } else {
                root.join(path)
            };
            if path.is_file() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(short)
}
