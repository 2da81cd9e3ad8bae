//! Which entries of `environments/` are layers. Every entry is accounted for: a layer
//! is a regular `*.yaml` file (or a symbolic link to one inside the project), and
//! anything else is an error naming the entry and what it is, so that a file strata
//! would not read (`staging.yml`, `README.md`) never goes unnoticed.
//!
//! - `environments/` holds layer files and the folders `clouds/` (cloud layers) and
//!   `discovered/` (the lock files `strata preflight --write` generates, one per
//!   target); `clouds/` and `discovered/` hold layer files only.
//! - Dotfiles (`.gitkeep`, an editor's `.#dev.yaml` lock link) are ignored, whatever
//!   they are.
//! - Two files that name one layer (`dev.yaml` and `dev.yml`, or `Dev.yaml`) are one
//!   error naming both.
//! - Every problem of a run is reported, sorted by path.
//!
//! Nothing is opened here: a FIFO would block a read.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::project::{Entry, Kind, Project};

/// The layer folders of `environments/`, besides itself.
const CLOUDS: &str = "clouds";
const DISCOVERED: &str = "discovered";

/// The layer files of `environments/`, `environments/clouds/` and
/// `environments/discovered/` (paths relative to the project, sorted), after checking
/// every entry of the three.
pub fn layer_files(project: &Project) -> Result<Vec<String>> {
    let mut layers = Vec::new();
    let mut errors = Vec::new();
    let mut folders = Vec::new();
    let top = project.entries("environments")?.unwrap_or_default();
    check(&top, Folder::Top, &mut layers, &mut folders, &mut errors);
    for (name, path) in folders {
        let within = if name == CLOUDS {
            Folder::Clouds
        } else {
            Folder::Discovered
        };
        let entries = project.entries(&path)?.unwrap_or_default();
        let mut found = Vec::new();
        check(&entries, within, &mut found, &mut Vec::new(), &mut errors);
        layers.extend(found);
    }
    errors.sort_by(|a, b| a.0.cmp(&b.0));
    Error::from_list(errors.into_iter().map(|(_, e)| e).collect())?;
    layers.sort();
    Ok(layers)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Folder {
    Top,
    Clouds,
    Discovered,
}

impl Folder {
    fn what_belongs(self) -> &'static str {
        match self {
            Folder::Top => {
                "environments/ holds *.yaml layer files and the folders clouds/ and discovered/"
            }
            Folder::Clouds => "environments/clouds/ holds only cloud layer files (*.yaml)",
            Folder::Discovered => "environments/discovered/ holds only generated *.yaml lock files",
        }
    }
}

/// Sorts `entries` into layer files, sub-folders to look into (name, path), and errors
/// (path, error).
fn check(
    entries: &[Entry],
    folder: Folder,
    layers: &mut Vec<String>,
    folders: &mut Vec<(String, String)>,
    errors: &mut Vec<(String, Error)>,
) {
    // Layer-like files by the layer they name (`dev` for dev.yaml, dev.yml, Dev.yaml).
    let mut by_layer: BTreeMap<String, Vec<&Entry>> = BTreeMap::new();
    for entry in entries {
        let fail = |message: String, hint: String| {
            (
                entry.path.clone(),
                Error::Entry {
                    path: entry.path.clone(),
                    message,
                    hint,
                },
            )
        };
        if entry
            .path
            .rsplit('/')
            .next()
            .is_some_and(|n| n.starts_with('.'))
        {
            continue;
        }
        let Some(name) = entry.name.as_deref() else {
            errors.push(fail(
                "the name is not valid UTF-8".into(),
                "rename it: layer names become target and folder names".into(),
            ));
            continue;
        };
        if let Some(link) = &entry.link {
            let problem = match &entry.kind {
                Kind::Missing => Some((
                    format!("is a symbolic link to {}, which does not exist", link.to),
                    "remove the link, or create what it points to".to_owned(),
                )),
                Kind::Unreadable(why) => Some((
                    format!(
                        "is a symbolic link to {} that cannot be followed ({why})",
                        link.to
                    ),
                    "remove or fix the link".to_owned(),
                )),
                _ if !link.inside => Some((
                    format!("is a symbolic link to {}, outside the project", link.to),
                    "a layer must be inside the project, so that it renders the same on every \
                     machine; copy the file in instead of linking to it"
                        .to_owned(),
                )),
                _ => None,
            };
            if let Some((message, hint)) = problem {
                errors.push(fail(message, hint));
                continue;
            }
        }
        let is = |what: &str| match &entry.link {
            Some(link) => format!("is a symbolic link to {what} ({})", link.to),
            None => format!("is {what}"),
        };
        let special = match entry.kind {
            Kind::File => None,
            Kind::Dir => {
                if folder == Folder::Top && (name == CLOUDS || name == DISCOVERED) {
                    folders.push((name.to_owned(), entry.path.clone()));
                } else {
                    errors.push(fail(
                        format!("{}; {}", is("a folder"), folder.what_belongs()),
                        "move its layer files into environments/ (or environments/clouds/), \
                         or move the folder out of environments/"
                            .into(),
                    ));
                }
                continue;
            }
            Kind::Fifo => Some("a FIFO (named pipe)"),
            Kind::Socket => Some("a socket"),
            Kind::BlockDevice => Some("a block device"),
            Kind::CharDevice => Some("a character device"),
            Kind::Missing | Kind::Unreadable(_) => Some("not a file"),
        };
        if let Some(what) = special {
            errors.push(fail(
                format!("{}, not a layer file", is(what)),
                format!("remove it; {}", folder.what_belongs()),
            ));
            continue;
        }
        match yaml_stem(name) {
            Some(stem) => by_layer.entry(stem.to_lowercase()).or_default().push(entry),
            None => errors.push(fail(
                "is not a layer file (*.yaml), and strata reads nothing else here".into(),
                format!(
                    "move it out of {}/ (dotfiles such as .gitkeep are ignored)",
                    parent(&entry.path)
                ),
            )),
        }
    }
    for (layer, files) in by_layer {
        let first = files[0];
        if files.len() > 1 {
            let others: Vec<&str> = files[1..].iter().map(|e| e.path.as_str()).collect();
            errors.push((
                first.path.clone(),
                Error::Entry {
                    path: first.path.clone(),
                    message: format!(
                        "names the same layer `{layer}` as {}",
                        others.join(" and ")
                    ),
                    hint: format!(
                        "keep one file per layer: merge them into {}/{layer}.yaml and delete the others",
                        parent(&first.path)
                    ),
                },
            ));
            continue;
        }
        let name = first.name.as_deref().unwrap_or_default();
        if name.ends_with(".yaml") {
            layers.push(first.path.clone());
        } else {
            let stem = yaml_stem(name).unwrap_or(name);
            errors.push((
                first.path.clone(),
                Error::Entry {
                    path: first.path.clone(),
                    message: "is not read: layer files end in .yaml".into(),
                    hint: format!("rename it to {stem}.yaml"),
                },
            ));
        }
    }
}

/// `dev` for `dev.yaml`, `dev.yml`, `dev.YAML`; `None` for other names.
fn yaml_stem(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    let yaml = ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml");
    (yaml && !stem.is_empty()).then_some(stem)
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_stems() {
        assert_eq!(yaml_stem("dev.yaml"), Some("dev"));
        assert_eq!(yaml_stem("prod.aws.yml"), Some("prod.aws"));
        assert_eq!(yaml_stem("Dev.YAML"), Some("Dev"));
        assert_eq!(yaml_stem("README.md"), None);
        assert_eq!(yaml_stem("yaml"), None);
        assert_eq!(yaml_stem(".yaml"), None);
    }

    /// Every entry of environments/ that is not a layer, said at its path, in one run;
    /// the layers beside them are what is listed once they are gone.
    #[test]
    fn what_is_not_a_layer_is_said_at_its_path() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let root = &dir.path().join("project");
        let env = root.join("environments");
        for folder in [
            "clouds",
            "discovered",
            "other",
            "clouds/deeper",
            "discovered/old",
        ] {
            std::fs::create_dir_all(env.join(folder)).unwrap();
        }
        for file in [
            "base.yaml",
            "dev.yaml",
            "qa.yml",
            "clouds/aws.yaml",
            "notes.txt",
            "prod.yaml",
            "prod.yml",
            "discovered/dev-aws.yaml",
            ".gitkeep",
        ] {
            std::fs::write(env.join(file), "{}\n").unwrap();
        }
        std::fs::write(dir.path().join("outside.yaml"), "{}\n").unwrap();
        symlink("nowhere.yaml", env.join("gone.yaml")).unwrap();
        symlink("loop.yaml", env.join("loop.yaml")).unwrap();
        symlink("../../outside.yaml", env.join("out.yaml")).unwrap();
        symlink("dev.yaml", env.join("staging.yaml")).unwrap();
        let errors = layer_files(&Project::Disk(root.to_path_buf()))
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = errors
            .lines()
            .filter(|l| !l.starts_with("  hint"))
            .collect();
        assert_eq!(
            lines,
            [
                "environments/clouds/deeper: is a folder; environments/clouds/ holds only cloud layer files (*.yaml)",
                "environments/discovered/old: is a folder; environments/discovered/ holds only generated *.yaml lock files",
                "environments/gone.yaml: is a symbolic link to nowhere.yaml, which does not exist",
                "environments/loop.yaml: is a symbolic link to loop.yaml that cannot be followed (Too many levels of symbolic links (os error 40))",
                "environments/notes.txt: is not a layer file (*.yaml), and strata reads nothing else here",
                "environments/other: is a folder; environments/ holds *.yaml layer files and the folders clouds/ and discovered/",
                "environments/out.yaml: is a symbolic link to ../../outside.yaml, outside the project",
                "environments/prod.yaml: names the same layer `prod` as environments/prod.yml",
                "environments/qa.yml: is not read: layer files end in .yaml",
            ],
            "{errors}"
        );
        assert!(
            errors.contains("move it out of environments/ (dotfiles"),
            "{errors}"
        );
        assert!(
            errors.contains("merge them into environments/prod.yaml"),
            "{errors}"
        );
        for file in ["clouds/deeper", "discovered/old", "other"] {
            std::fs::remove_dir(env.join(file)).unwrap();
        }
        for file in [
            "gone.yaml",
            "loop.yaml",
            "out.yaml",
            "notes.txt",
            "prod.yml",
            "qa.yml",
        ] {
            std::fs::remove_file(env.join(file)).unwrap();
        }
        assert_eq!(
            layer_files(&Project::Disk(root.to_path_buf())).unwrap(),
            [
                "environments/base.yaml",
                "environments/clouds/aws.yaml",
                "environments/dev.yaml",
                "environments/discovered/dev-aws.yaml",
                "environments/prod.yaml",
                "environments/staging.yaml",
            ]
        );
    }

    #[test]
    fn the_bundled_example_has_only_layers() {
        let files = layer_files(&Project::Embedded).unwrap();
        assert!(files.contains(&"environments/base.yaml".to_owned()));
        assert!(files.contains(&"environments/clouds/aws.yaml".to_owned()));
    }
}
