//! Embeds the example projects into the binary: the lakehouse at the repository's root
//! (environments/, templates/, charts/) and each of examples/<name>/, so that `strata
//! render` outside any project, and `strata init --example NAME`, use the same files
//! this repository renders into snapshots/ (and examples/<name>/snapshots/).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
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
        writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
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
