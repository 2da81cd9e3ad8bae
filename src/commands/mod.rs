//! One function per command, taking resolved arguments (as zola's `cmd/`). They load,
//! call the pipeline, and hand data to the [`Reporter`].

#[cfg(feature = "cloud")]
mod cloud;

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::cli::{Cli, Command, Format};
use crate::config::{Value, merge::join_path};
use crate::error::{Error, Result};
use crate::output::{self, Tree};
use crate::project::Project;
use crate::report::{self, Reporter, status_word};
use crate::{Loaded, exit, render_all, timed};

pub fn dispatch(cli: &Cli, out: &Reporter) -> Result<u8> {
    #[cfg(feature = "cloud")]
    if !cli.quiet
        && out.format != Format::Json
        && matches!(
            cli.command,
            Command::Plan { .. }
                | Command::Apply { .. }
                | Command::Destroy { .. }
                | Command::Preflight { .. }
        )
    {
        crate::engine::progress::install(|line| eprintln!("strata: {line}"));
    }
    match &cli.command {
        Command::Render {
            targets,
            out: dir,
            check,
        } => {
            if *check {
                if out.format == Format::Github {
                    out.annotate_from(&project_from_cwd(cli));
                }
                let checked =
                    in_project(cli, dir).and_then(|dir| render_check(cli, out, targets, &dir));
                if let (Err(e), Format::Markdown) = (&checked, out.format) {
                    // The review summary says why there is no verdict; the text goes
                    // to stderr as for every error.
                    out.markdown(&report::errors_markdown(e));
                }
                checked
            } else {
                render(cli, out, targets, &in_project(cli, dir)?)
            }
        }
        Command::Validate { targets } => validate(cli, out, targets),
        Command::List => list(cli, out),
        Command::Explain { target, key } => explain(cli, out, target, key),
        #[cfg(feature = "cloud")]
        Command::Plan {
            target,
            out: file,
            destroy: false,
        } => cloud::plan(cli, out, target, file.as_deref()),
        #[cfg(feature = "cloud")]
        Command::Plan {
            target,
            out: file,
            destroy: true,
        } => {
            if file.is_some() {
                return Err(Error::Usage(
                    "plan --destroy --out FILE is not supported yet: a destroy is reviewed with `strata plan TARGET --destroy` and run with `strata destroy TARGET --approve`".into(),
                ));
            }
            cloud::plan_destroy(cli, out, target)
        }
        #[cfg(feature = "cloud")]
        Command::Destroy {
            target,
            approve,
            force_empty,
            skip_helm,
        } => cloud::destroy(
            cli,
            out,
            target,
            approve.as_deref(),
            *force_empty,
            *skip_helm,
        ),
        #[cfg(feature = "cloud")]
        Command::Apply {
            target,
            approve,
            skip_helm,
            out: dir,
        } => cloud::apply(
            cli,
            out,
            target,
            *approve,
            *skip_helm,
            &in_project(cli, dir)?,
        ),
        #[cfg(feature = "cloud")]
        Command::Preflight { targets, write } => {
            crate::preflight::preflight_command(cli, out, targets, *write)
        }
        #[cfg(not(feature = "cloud"))]
        Command::Plan { .. }
        | Command::Apply { .. }
        | Command::Destroy { .. }
        | Command::Preflight { .. } => Err(without_cloud(&cli.command)),
        Command::Schema => {
            out.json(&schema());
            Ok(exit::OK)
        }
        Command::Init { dir, example } => init(out, dir, example),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Generated into memory: clap_complete panics when stdout fails, as it
            // does for `strata completions zsh | head`.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "strata", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                // The reader has gone, which is fine.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.map_err(|e| Error::io("stdout", e))?,
            }
            Ok(exit::OK)
        }
        Command::Man { dir: None } => {
            match clap_mangen::Man::new(man_command()).render(&mut std::io::stdout()) {
                // `strata man | head`: the reader has gone, which is fine.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.map_err(|e| Error::io("stdout", e))?,
            }
            Ok(exit::OK)
        }
        Command::Man { dir: Some(dir) } => man_pages(out, dir),
    }
}

/// The command the man pages describe: without clap's `help` subcommand, which has
/// no page of its own, so that the main page lists only pages that exist.
/// The error of a cloud command in a strata built without the `cloud` feature: exit 2,
/// before anything is read, with the way to a strata that has it.
#[cfg(not(feature = "cloud"))]
fn without_cloud(command: &Command) -> Error {
    let name = match command {
        Command::Plan { .. } => "plan",
        Command::Apply { .. } => "apply",
        Command::Destroy { .. } => "destroy",
        _ => "preflight",
    };
    Error::Usage(format!(
        "`strata {name}` is not in this build: it was built without the `cloud` feature \
         (cargo's --no-default-features), which renders and checks but talks to no cloud\n  \
         hint: install the full strata with `cargo install --locked --path .` (no \
         --no-default-features), or run it from a clone with `cargo run --locked -- {name} …`"
    ))
}

fn man_command() -> clap::Command {
    let mut cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// `strata man --dir DIR`: strata.1 and strata-<command>.1 for every command listed
/// on strata.1 (see [`man_command`]).
fn man_pages(out: &Reporter, dir: &Path) -> Result<u8> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let cmd = man_command();
    let mut pages = vec![clap_mangen::Man::new(cmd.clone())];
    pages.extend(
        cmd.get_subcommands()
            .filter(|sub| !sub.is_hide_set())
            // A command's page names strata's version as the main page does.
            .map(|sub| {
                clap_mangen::Man::new(sub.clone()).source(format!("strata {}", crate::cli::VERSION))
            }),
    );
    let mut written = Vec::new();
    for page in pages {
        let path = dir.join(page.get_filename());
        let mut roff = Vec::new();
        page.render(&mut roff)
            .and_then(|()| std::fs::write(&path, roff))
            .map_err(|e| Error::io(&path, e))?;
        written.push(page.get_filename());
    }
    match out.format {
        Format::Json => {
            out.json(&json!({"ok": true, "dir": dir.display().to_string(), "pages": written}))
        }
        _ => out.line(format!(
            "wrote {} man pages into {}: {}",
            written.len(),
            dir.display(),
            written.join(" ")
        )),
    }
    Ok(exit::OK)
}

/// The project root as seen from the current folder (`infra`, or `.`), for GitHub
/// annotations, which name files from the workspace root.
fn project_from_cwd(cli: &Cli) -> String {
    match Project::discover(&cli.project) {
        Ok(Project::Disk(root)) => from_cwd(&root),
        _ => ".".to_owned(),
    }
}

/// `path` relative to the current folder when it is below it (`.` for the folder
/// itself), without `./`; as it is otherwise.
fn from_cwd(path: &Path) -> String {
    let path: std::path::PathBuf = path
        .components()
        .filter(|c| *c != std::path::Component::CurDir)
        .collect();
    let relative = if path.is_absolute() {
        std::env::current_dir()
            .and_then(|cwd| cwd.canonicalize())
            .ok()
            .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
    } else {
        Some(path.clone())
    };
    match relative {
        Some(rel) if rel.as_os_str().is_empty() => ".".to_owned(),
        Some(rel) => rel.display().to_string(),
        None => path.display().to_string(),
    }
}

/// A path given on the command line (`--out`), taken relative to the project root (the
/// folder holding environments/, found upward from `-C DIR`), not to the current folder;
/// outside any project, relative to `-C DIR`.
fn in_project(cli: &Cli, path: &Path) -> Result<std::path::PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let base = match Project::discover(&cli.project)? {
        // Spelled as given when `-C` names the root itself (`out`, not `/abs/out`).
        Project::Disk(root) if cli.project.canonicalize().is_ok_and(|c| c == root) => {
            cli.project.clone()
        }
        Project::Disk(root) => root,
        Project::Embedded => cli.project.clone(),
    };
    Ok(if base == Path::new(".") {
        path.to_path_buf()
    } else {
        base.join(path)
    })
}

fn load(cli: &Cli) -> Result<Loaded> {
    Loaded::load(Project::discover(&cli.project)?)
}

/// Loads, validates and renders the named targets (all when empty), in memory.
pub fn render_tree(
    cli: &Cli,
    names: &[String],
) -> Result<(Loaded, Vec<crate::model::Target>, Tree)> {
    let loaded = timed("load and parse layers", || load(cli))?;
    let (targets, mut errors) = timed("merge, type and validate targets", || {
        loaded.targets_and_errors(names)
    })?;
    // The rules across targets (one name claimed twice) are one serial pass: it runs
    // in a thread of its own beside the render, which is parallel. The render stays on
    // this thread, so the memory freed by loading is the memory it reuses.
    let (across, rendered) = std::thread::scope(|scope| {
        let across = scope.spawn(|| crate::check::across(&targets));
        let rendered = (|| -> Result<_> {
            let renderer = timed("compile templates", || loaded.renderer())?;
            let (charts, chart_errors) = timed("read charts", || loaded.charts(&targets));
            let tree = timed("render targets", || {
                render_all(&renderer, &targets, &charts)
            });
            Ok((chart_errors, tree))
        })();
        (across.join(), rendered)
    });
    errors.extend(across.unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
    let (chart_errors, tree) = rendered?;
    errors.extend(chart_errors);
    let tree = match tree {
        Ok(tree) => tree,
        Err(e) => {
            errors.extend(e.flatten().into_iter().map(Error::duplicate));
            Tree::new()
        }
    };
    crate::dedup_errors(&mut errors);
    crate::sort_errors(&mut errors);
    Error::from_list(errors)?;
    Ok((loaded, targets, tree))
}

/// Leaves a command's large data to the end of the process instead of freeing it
/// node by node: at 1000 targets the frees of the merged trees were a tenth of a
/// render. Only for data a command holds until it returns.
fn leave<T>(data: T) {
    std::mem::forget(data);
}

fn render(cli: &Cli, out: &Reporter, names: &[String], dir: &Path) -> Result<u8> {
    let (loaded, targets, tree) = render_tree(cli, names)?;
    output::check_out_dir(dir, loaded.project.root())?;
    let known: Vec<&str> = loaded
        .layers
        .targets
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    let (files, summary) = timed("write output folder", || {
        output::write_render(dir, tree, names, &known)
    })?;
    match out.format {
        Format::Json => out.json(&json!({
            "ok": true,
            "project": loaded.project.describe(),
            "out": dir.display().to_string(),
            "targets": targets.iter().map(|t| &t.name).collect::<Vec<_>>(),
            "files": files,
            "written": summary.written,
            "unchanged": summary.unchanged,
            "removed": summary.removed,
        })),
        _ => out.line(format!(
            "rendered {} target{} from {} into {}: {} files ({} written, {} unchanged, {} removed)",
            targets.len(),
            if targets.len() == 1 { "" } else { "s" },
            loaded.project.describe(),
            dir.display(),
            files,
            summary.written,
            summary.unchanged,
            summary.removed
        )),
    }
    leave((loaded, targets));
    Ok(exit::OK)
}

fn render_check(cli: &Cli, out: &Reporter, names: &[String], dir: &Path) -> Result<u8> {
    // The folder is read after the render, so that each file that is unchanged is
    // compared as it is read and shares the rendered bytes (no second copy of the
    // folder in memory; the render keeps both cores busy on its own).
    let (loaded, targets, tree) = render_tree(cli, names)?;
    leave(targets);
    let label = loaded
        .project
        .root()
        .and_then(|root| dir.strip_prefix(root).ok())
        .or_else(|| dir.strip_prefix(&cli.project).ok())
        .unwrap_or(dir)
        .display()
        .to_string();
    if !output::check_folder(dir)? {
        print_missing(out, &label, tree.len());
        return Ok(exit::DIFFERENCES);
    }
    // How to call strata again for this project, in the notes of a review summary.
    let strata = if cli.project == Path::new(".") {
        "strata".to_owned()
    } else {
        format!("strata -C {}", cli.project.display())
    };
    let on_disk = timed("read output folder", || {
        output::read_targets(dir, names, &tree)
    })?;
    let drift = timed("compare", || {
        output::compare(&label, &on_disk, &tree, |path| {
            output::in_targets(names, path)
        })
    });
    print_drift(
        out,
        &DriftReport {
            review: report::DriftReview {
                label: &label,
                drift: &drift,
                files: tree.len(),
                holds_none: holds_none(&on_disk, &tree),
                strata: &strata,
                targets: names,
            },
            folder: from_cwd(dir),
        },
    );
    let clean = drift.is_empty();
    leave((tree, on_disk, drift));
    Ok(if clean { exit::OK } else { exit::DIFFERENCES })
}

/// The rendered targets when the folder holds none of them (a folder of another
/// project, or a wrong `--out`): said before the diff, which is all additions.
fn holds_none<B>(on_disk: &std::collections::BTreeMap<String, B>, tree: &Tree) -> Option<usize> {
    let target = |path: &String| path.split('/').next().unwrap_or_default().to_owned();
    let rendered: std::collections::BTreeSet<String> = tree.keys().map(target).collect();
    let present = on_disk.keys().any(|p| rendered.contains(&target(p)));
    (!present && !rendered.is_empty()).then_some(rendered.len())
}

/// `render --check` of a folder that does not exist: one line, not a diff of every file.
fn print_missing(out: &Reporter, label: &str, files: usize) {
    let message = format!(
        "{label} does not exist: nothing to compare the {files} rendered files with; create it with `strata render --out {label}`"
    );
    match out.format {
        Format::Json => out.json(&json!({
            "ok": false,
            "folder": label,
            "files": files,
            "exists": false,
            "drift": [],
        })),
        Format::Github => out.line(format!(
            "::error title=missing output folder::{}",
            message.replace('%', "%25")
        )),
        Format::Markdown => out.markdown(&format!("❌ strata: {message}")),
        Format::Text => out.line(message),
    }
}

/// What `render --check` found, for [`print_drift`].
struct DriftReport<'a> {
    review: report::DriftReview<'a>,
    /// The folder as seen from the current folder, for annotations' `file=`.
    folder: String,
}

fn print_drift(out: &Reporter, report: &DriftReport) {
    let report::DriftReview {
        label,
        drift,
        files,
        holds_none,
        ..
    } = report.review;
    let stranger = holds_none.map(|targets| {
        format!("{label} holds none of the {targets} rendered targets: is it the right folder?")
    });
    match out.format {
        Format::Json => out.json(&json!({
            "ok": drift.is_empty(),
            "folder": label,
            "files": files,
            "exists": true,
            "drift": drift,
        })),
        Format::Github => {
            let mut md = String::new();
            if drift.is_empty() {
                md.push_str(&format!(
                    "### strata: {label} is up to date ({files} files)\n"
                ));
            } else {
                md.push_str(&format!(
                    "### strata: {} file(s) in `{label}` differ from the render\n\n",
                    drift.len()
                ));
                if let Some(stranger) = &stranger {
                    md.push_str(&format!("{stranger}\n\n"));
                }
                md.push_str("| target | artifact | change | lines |\n|---|---|---|---|\n");
                for d in drift {
                    md.push_str(&format!(
                        "| {} | {} | {} | +{} −{} |\n",
                        d.target,
                        d.artifact,
                        status_word(d.status),
                        d.lines_added,
                        d.lines_removed
                    ));
                }
                md.push_str("\n<details><summary>diff</summary>\n\n```diff\n");
                for d in drift {
                    // The job log and summary are read by more people than the repository.
                    md.push_str(&report::masked_diff(&d.diff));
                }
                md.push_str("```\n</details>\n");
                for d in drift {
                    out.line(format!(
                        "::error file={}/{},title=stale artifact::{} is stale; run `strata render --out {label}` and commit the result",
                        report.folder, d.path, d.path
                    ));
                }
            }
            out.line(md);
        }
        Format::Markdown => out.markdown(&report::drift_markdown(&report.review)),
        Format::Text => {
            if drift.is_empty() {
                out.line(format!("{label}: up to date ({files} files)"));
                return;
            }
            if let Some(stranger) = &stranger {
                out.line(stranger);
            }
            out.line(format!(
                "{label}: {} file(s) differ from the render",
                drift.len()
            ));
            let width = drift
                .iter()
                .map(|d| d.target.len())
                .max()
                .unwrap_or(6)
                .max(6);
            let awidth = drift
                .iter()
                .map(|d| d.artifact.len())
                .max()
                .unwrap_or(8)
                .max(8);
            out.line(format!(
                "  {:width$}  {:awidth$}  {:8}  lines",
                "target", "artifact", "change"
            ));
            for d in drift {
                out.line(format!(
                    "  {:width$}  {:awidth$}  {:8}  +{} -{}",
                    d.target,
                    d.artifact,
                    status_word(d.status),
                    d.lines_added,
                    d.lines_removed
                ));
            }
            out.line("");
            for d in drift {
                let mut text = String::new();
                for line in d.diff.lines() {
                    let styled = if line.starts_with("+++") || line.starts_with("---") {
                        out.paint("1", line)
                    } else if line.starts_with('+') {
                        out.paint("32", line)
                    } else if line.starts_with('-') {
                        out.paint("31", line)
                    } else if line.starts_with("@@") {
                        out.paint("36", line)
                    } else {
                        line.to_owned()
                    };
                    text.push_str(&styled);
                    text.push('\n');
                }
                out.line(text.trim_end());
            }
        }
    }
}

fn validate(cli: &Cli, out: &Reporter, names: &[String]) -> Result<u8> {
    let (loaded, targets, tree) = render_tree(cli, names)?;
    match out.format {
        Format::Json => out.json(&json!({
            "ok": true,
            "targets": targets.iter().map(|t| &t.name).collect::<Vec<_>>(),
            "files": tree.len(),
        })),
        _ => out.line(format!(
            "{}: {} target{} valid, {} artifacts render cleanly",
            loaded.project.describe(),
            targets.len(),
            if targets.len() == 1 { "" } else { "s" },
            tree.len()
        )),
    }
    leave((loaded, targets, tree));
    Ok(exit::OK)
}

fn list(cli: &Cli, out: &Reporter) -> Result<u8> {
    let loaded = load(cli)?;
    let targets = loaded.targets(&[])?;
    let keys = |map: Vec<&String>| map.into_iter().cloned().collect::<Vec<_>>();
    match out.format {
        Format::Json => out.json(
            &targets
                .iter()
                .map(|t| {
                    json!({
                        "name": t.name, "env": t.env, "cloud": t.cloud, "layers": t.layers.files,
                        "releases": keys(t.config.releases.keys().collect()),
                        "buckets": t.names.buckets.iter().map(|(k, b)| json!({"key": k, "name": b.name})).collect::<Vec<_>>(),
                        "workloads": keys(t.config.workloads.keys().collect()),
                        "protected": t.config.protected,
                    })
                })
                .collect::<Vec<_>>(),
        ),
        _ => {
            let width = targets.iter().map(|t| t.name.len()).max().unwrap_or(0);
            for t in &targets {
                let join = |v: Vec<&String>| {
                    if v.is_empty() {
                        "-".to_owned()
                    } else {
                        v.into_iter().cloned().collect::<Vec<_>>().join(",")
                    }
                };
                out.line(format!(
                    "{:width$}  releases: {}  buckets: {}  workloads: {}{}",
                    t.name,
                    join(t.config.releases.keys().collect()),
                    join(t.config.buckets.keys().collect()),
                    join(t.config.workloads.keys().collect()),
                    if t.config.protected { "  (protected)" } else { "" },
                ));
            }
        }
    }
    Ok(exit::OK)
}

/// One layer's say about a key.
#[derive(serde::Serialize)]
struct LayerValue {
    file: String,
    line: u32,
    column: u32,
    /// The value this layer wrote (`null` when it removed the key).
    value: serde_json::Value,
    effect: &'static str,
}

fn explain(cli: &Cli, out: &Reporter, target_name: &str, key: &str) -> Result<u8> {
    let loaded = load(cli)?;
    let layers = loaded.select(std::slice::from_ref(&target_name.to_owned()))?[0].clone();
    let targets = loaded.targets(std::slice::from_ref(&target_name.to_owned()))?;
    let target = &targets[0];
    let path: Vec<&str> = key.split('.').filter(|s| !s.is_empty()).collect();

    let scope =
        crate::model::refs::scope(&target.config, &target.names, &target.layers, target.cloud);
    // Derived names: say what they were built from.
    if let Some(d) = target.names.derivations.iter().find(|d| d.path == key) {
        let inputs: Vec<serde_json::Value> = d
            .inputs
            .iter()
            .map(|input| {
                let node = target.merged.tree.lookup(input.split('.'));
                let value = match node {
                    Some(n) => Some(n.to_json()),
                    // target.env, a workload's key: not in any layer, but known.
                    None => input
                        .split('.')
                        .try_fold(&scope, |v, seg| v.get(seg))
                        .cloned(),
                };
                json!({
                    "key": input,
                    "value": value,
                    "setAt": node.map(|n| n.loc.to_string()),
                })
            })
            .collect();
        match out.format {
            Format::Json => out.json(&json!({
                "target": target.name, "key": key, "value": d.value, "derived": true, "rule": d.rule, "inputs": inputs,
            })),
            _ => {
                out.line(format!("{} {key} = {}", target.name, d.value));
                let how = if d.rule == "set" { "set in the layers" } else { "derived by convention" };
                out.line(format!("  {how}, from:"));
                for input in &inputs {
                    out.line(format!(
                        "    {:32} {}  ({})",
                        input["key"].as_str().unwrap_or_default(),
                        input["value"],
                        input["setAt"].as_str().unwrap_or(if input["value"].is_null() { "not set" } else { "the target" })
                    ));
                }
            }
        }
        return Ok(exit::OK);
    }
    // Other derived values (a bucket's ARN or URL, a role ARN, a GSA email): the scope.
    let scope =
        crate::model::refs::scope(&target.config, &target.names, &target.layers, target.cloud);
    let in_scope = path.iter().try_fold(&scope, |v, seg| v.get(*seg));
    let is_layer_key = target.merged.tree.lookup(path.iter().copied()).is_some();
    if let (Some(value), false) = (in_scope, is_layer_key) {
        match out.format {
            Format::Json => out
                .json(&json!({"target": target.name, "key": key, "value": value, "derived": true})),
            _ => out.line(format!(
                "{} {key} = {}  (derived by strata)",
                target.name,
                show(value)
            )),
        }
        return Ok(exit::OK);
    }

    let mut chain = Vec::new();
    for file in &layers.files {
        let layer = &loaded.layers.files[file];
        // A null at or above the key removes it.
        for depth in 1..=path.len() {
            if let Some(node) = layer.lookup(path[..depth].iter().copied()) {
                if node.value == Value::Null {
                    chain.push(LayerValue {
                        file: file.clone(),
                        line: node.loc.line,
                        column: node.loc.col,
                        value: serde_json::Value::Null,
                        effect: "removed",
                    });
                    break;
                }
                if depth == path.len() {
                    chain.push(LayerValue {
                        file: file.clone(),
                        line: node.loc.line,
                        column: node.loc.col,
                        value: node.to_json(),
                        effect: "set",
                    });
                }
            } else {
                break;
            }
        }
    }
    let final_node = target
        .resolved
        .materialize(&target.merged.tree, &path.join("."));
    let Some(final_node) = final_node else {
        let mut all = Vec::new();
        collect_paths(&target.merged.tree, "", &mut all);
        all.extend(target.names.derivations.iter().map(|d| d.path.clone()));
        let hint = crate::suggest::closest(key, all.iter().map(String::as_str))
            .map(|c| format!("did you mean `{c}`?"))
            .unwrap_or_else(|| "keys are dotted paths such as buckets.data.versioning".to_owned());
        let removed = if chain.iter().any(|c| c.effect == "removed") {
            " (a layer removed it with null)"
        } else {
            ""
        };
        return Err(Error::Usage(format!(
            "`{key}` is not set for {}{removed}\n  hint: {hint}",
            target.name
        )));
    };
    let value = final_node.to_json();
    let reference = target.references.get(key);
    match out.format {
        Format::Json => out.json(&json!({"target": target.name, "key": key, "value": value, "derived": false, "layers": chain, "reference": reference})),
        _ => {
            out.line(format!("{} {key} = {}", target.name, show(&value)));
            if let Some(r) = reference {
                out.line(format!("  reference {}  ({})", r.written, r.loc));
                for p in &r.paths {
                    let behind = target
                        .merged
                        .tree
                        .lookup(p.split('.'))
                        .map(|n| format!("set at {}", n.loc))
                        .or_else(|| {
                            target
                                .names
                                .derivations
                                .iter()
                                .find(|d| d.path == *p)
                                .map(|d| format!("{} from {}", if d.rule == "set" { "set" } else { "derived" }, d.inputs.join(", ")))
                        })
                        .unwrap_or_else(|| "derived by strata".to_owned());
                    out.line(format!("    {p}: {behind}"));
                }
            }
            for (i, layer) in chain.iter().enumerate() {
                let last = i + 1 == chain.len();
                out.line(format!(
                    "  {} {}:{}:{}  {}{}",
                    if last { "└─" } else { "├─" },
                    layer.file,
                    layer.line,
                    layer.column,
                    if layer.effect == "removed" { "null (removes the key)".to_owned() } else { show(&layer.value) },
                    if last { "  ← final" } else { "" }
                ));
            }
        }
    }
    Ok(exit::OK)
}

fn show(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
            serde_json::to_string(value).unwrap_or_default()
        }
        other => other.to_string(),
    }
}

fn collect_paths(node: &crate::config::Node, path: &str, all: &mut Vec<String>) {
    if let Value::Map(entries) = &node.value {
        for (key, child) in entries.iter() {
            let p = join_path(path, key);
            all.push(p.clone());
            collect_paths(child, &p, all);
        }
    }
}

/// The JSON Schema of one environment file: the typed model with every key optional
/// (a layer sets only what it changes), plus an environment file's `clouds:` list.
pub fn schema() -> serde_json::Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(crate::model::Config)).unwrap_or_default();
    // List items are written whole by one layer (lists replace): their required keys
    // stay required. Everything else may be partial in any one file.
    let whole: Vec<(String, serde_json::Value)> = ["Exception", "LifecycleRule", "GcpRole"]
        .iter()
        .filter_map(|name| {
            schema["$defs"]
                .get(*name)
                .map(|def| ((*name).to_owned(), def.clone()))
        })
        .collect();
    strip_required(&mut schema);
    for (name, def) in whole {
        schema["$defs"][name] = def;
    }
    if let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
        props.insert(
            "clouds".into(),
            json!({"description": "environment files only: the clouds this environment runs on", "type": "array", "items": {"enum": crate::config::CLOUDS}}),
        );
    }
    if let Some(obj) = schema.as_object_mut() {
        obj.insert("title".into(), json!("strata environment layer"));
    }
    schema
}

/// Layers are partial (maps merge), so a key required in the merged result may be
/// missing from any one file: `required` is kept only inside list items (`exceptions`,
/// `lifecycle`), which a layer writes whole, and in `$defs` only reached from them.
fn strip_required(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("required");
            for (key, child) in map.iter_mut() {
                if key != "items" {
                    strip_required(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_required),
        _ => {}
    }
}

fn init(out: &Reporter, dir: &Path, example: &str) -> Result<u8> {
    let files = crate::project::example_files(example).ok_or_else(|| {
        let hint = crate::suggest::closest(example, crate::project::EXAMPLES.iter().copied())
            .map(|c| format!("did you mean `{c}`? "))
            .unwrap_or_default();
        Error::Usage(format!(
            "no example named `{example}`\n  hint: {hint}examples: {}",
            crate::project::EXAMPLES.join(", ")
        ))
    })?;
    if dir.join("environments").exists() {
        return Err(Error::Usage(format!(
            "{} already holds a project (environments/ exists); nothing was written",
            dir.display()
        )));
    }
    let mut schema = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    schema.push('\n');
    let mut all: Vec<(&str, &[u8])> = files;
    all.push(("strata.schema.json", schema.as_bytes()));
    write_new_files(dir, &all)?;
    match out.format {
        Format::Json => out.json(
            &json!({"ok": true, "dir": dir.display().to_string(), "example": example, "files": all.len()}),
        ),
        _ => out.line(format!(
            "wrote the {example} example ({} files) into {}; next: strata -C {} render",
            all.len(),
            dir.display(),
            dir.display()
        )),
    }
    Ok(exit::OK)
}

/// Writes `files` (paths relative to `dir`) where none of them, nor anything on their
/// way, exists yet: a file of the user's is never replaced (a README.md, a chart of the
/// same name). When a write fails part way, what this run made is removed again.
fn write_new_files(dir: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    if std::fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
        return Err(Error::Usage(format!(
            "{} is a file, not a folder; nothing was written\n  hint: give a new folder, or one without environments/",
            dir.display()
        )));
    }
    let mut in_the_way: Vec<String> = Vec::new();
    for (rel, _) in files {
        // The file itself, and each folder on its way that is not a folder.
        let mut at = dir.to_path_buf();
        let parts: Vec<&str> = rel.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            at.push(part);
            let last = i + 1 == parts.len();
            match std::fs::symlink_metadata(&at) {
                Ok(m) if last || !m.is_dir() => {
                    let shown = parts[..=i].join("/");
                    if !in_the_way.contains(&shown) {
                        in_the_way.push(shown);
                    }
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    if !in_the_way.is_empty() {
        let more = in_the_way.len().saturating_sub(10);
        let mut listed = in_the_way
            .iter()
            .take(10)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        if more > 0 {
            listed.push_str(&format!(" and {more} more"));
        }
        return Err(Error::Usage(format!(
            "{} already has what the example would write: {listed}; nothing was written\n  hint: give a new folder, or move those out of the way",
            dir.display()
        )));
    }
    // What this run made, to take back if a write fails.
    let mut made: Vec<PathBuf> = Vec::new();
    let result = (|| -> Result<()> {
        for (rel, bytes) in files {
            let path = dir.join(rel);
            let mut missing = Vec::new();
            let mut up = path.parent();
            while let Some(p) = up {
                if p.as_os_str().is_empty() || p.exists() {
                    break;
                }
                missing.push(p.to_path_buf());
                up = p.parent();
            }
            for folder in missing.into_iter().rev() {
                std::fs::create_dir(&folder).map_err(|e| Error::io(&folder, e))?;
                made.push(folder);
            }
            std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
            made.push(path);
        }
        Ok(())
    })();
    if result.is_err() {
        for path in made.iter().rev() {
            let _ = std::fs::remove_file(path).or_else(|_| std::fs::remove_dir(path));
        }
    }
    result
}

#[cfg(test)]
mod schema_tests {
    /// The schema editors read (`strata schema`) is the committed one; the binary's
    /// `review::committed_schemas_are_current…` holds the same for every copy.
    #[test]
    fn the_committed_schema_is_what_strata_schema_prints() {
        let mut printed = serde_json::to_string_pretty(&super::schema()).unwrap();
        printed.push('\n');
        let committed =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/strata.schema.json"))
                .unwrap();
        assert!(printed == committed, "strata.schema.json is stale");
    }
}
