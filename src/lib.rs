//! strata turns layered, per-environment configuration into reviewable deployment
//! artifacts, and applies them.
//!
//! The pipeline, one module a stage, pure until the edges:
//!
//! 1. [`project`] finds the files (a folder, or the example embedded in the binary);
//!    [`config`] parses each layer once and merges base → cloud → env → env.cloud →
//!    the target's lock file (discovered/<target>, written by `preflight --write`),
//!    keeping the file:line:col of every value.
//! 2. [`model`] types each target's strata keys, derives its names, and resolves the
//!    references (`!ref`, `!sub`) in the free-form parts (release values, env, vars).
//! 3. [`desired`] computes each target's desired state as data: buckets, workloads
//!    with their IAM documents, releases with their values, the platform chart.
//! 4. [`render`] prints it (and the project's minijinja templates) into artifacts;
//!    [`check`] runs every rule on those rendered bytes and the charts' schemas.
//! 5. [`output`] swaps the rendered tree into the output folder atomically, or compares
//!    it with one (`render --check`).
//!
//! `plan`/`apply` (in [`apply`]) read the rendered documents, never the model, and
//! converge the cloud.

mod charts;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod desired;
#[cfg(feature = "cloud")]
pub mod engine;
pub mod error;
pub mod model;
pub mod output;
#[cfg(feature = "cloud")]
pub mod preflight;
pub mod project;
pub mod render;
pub mod report;
#[cfg(feature = "cloud")]
pub mod resources;
pub mod suggest;
pub mod yaml_check;
pub mod yaml_emit;

use rayon::prelude::*;

use crate::config::Layers;
use crate::error::{Error, Result};
use crate::model::Target;
use crate::output::Tree;
use crate::project::Project;
use crate::render::Renderer;

/// The exit codes of the command line (see the README).
pub mod exit {
    pub const OK: u8 = 0;
    /// `render --check` found drift; `plan` found changes.
    pub const DIFFERENCES: u8 = 1;
    pub const ERROR: u8 = 2;
}

/// A loaded project: its layers, and the templates compiled.
pub struct Loaded {
    pub project: Project,
    pub layers: Layers,
}

impl Loaded {
    pub fn load(project: Project) -> Result<Loaded> {
        let layers = Layers::load(&project)?;
        Ok(Loaded { project, layers })
    }

    /// The named targets, each once, in the order first named (all when `names` is
    /// empty), or an error naming an unknown one (with a suggestion).
    pub fn select(&self, names: &[String]) -> Result<Vec<&config::TargetLayers>> {
        if names.is_empty() {
            return Ok(self.layers.targets.iter().collect());
        }
        let mut seen = std::collections::HashSet::new();
        names
            .iter()
            .filter(|name| seen.insert(name.as_str()))
            .map(|name| {
                self.layers.target(name).ok_or_else(|| {
                    let known: Vec<&str> = self
                        .layers
                        .targets
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect();
                    let hint = suggest::closest(name, known.iter().copied())
                        .map(|c| format!("did you mean `{c}`?"))
                        .unwrap_or_else(|| format!("targets: {}", known.join(", ")));
                    Error::Usage(format!(
                        "unknown target `{name}` in {}\n  hint: {hint}",
                        self.project.describe()
                    ))
                })
            })
            .collect()
    }

    /// Merges, types and validates the named targets (all when empty), in parallel,
    /// reporting every target's problems together.
    pub fn targets(&self, names: &[String]) -> Result<Vec<Target>> {
        let (targets, errors) = self.targets_and_errors(names)?;
        Error::from_list(errors)?;
        Ok(targets)
    }

    /// The targets that resolved, and the problems of those that did not (and of the
    /// layer files), so that the later stages can still check the good ones: one run
    /// reports everything it can find. Fails outright only on a usage error.
    pub fn targets_and_errors(&self, names: &[String]) -> Result<(Vec<Target>, Vec<Error>)> {
        let selected = self.select(names)?;
        // Secret literals are looked for in each layer file once (not in every merged
        // tree). A literal that a later layer overrides is still refused: it is in the
        // repository. Errors never echo a value under a secret-like key, so the other
        // stages may go on.
        let mut files: Vec<&String> = selected.iter().flat_map(|t| &t.files).collect();
        files.sort();
        files.dedup();
        // A literal passes only where every target that reads its file excepts it. Each
        // target's exceptions are read once, and each file's readers found in one pass
        // (not every target searched for every file: at 1000 targets that was a
        // million searches, in the one part of this stage that is not parallel).
        let exceptions: Vec<Vec<String>> =
            selected.iter().map(|t| self.secret_exceptions(t)).collect();
        let mut readers: std::collections::HashMap<&String, Vec<usize>> =
            std::collections::HashMap::new();
        for (i, t) in selected.iter().enumerate() {
            for f in &t.files {
                readers.entry(f).or_default().push(i);
            }
        }
        let allowed: std::collections::HashMap<&String, Vec<String>> = files
            .iter()
            .map(|f| {
                let mut users = readers.get(*f).into_iter().flatten();
                let first = users
                    .next()
                    .map(|i| exceptions[*i].clone())
                    .unwrap_or_default();
                let common = users.fold(first, |acc, i| {
                    let theirs = &exceptions[*i];
                    acc.into_iter().filter(|p| theirs.contains(p)).collect()
                });
                (*f, common)
            })
            .collect();
        let mut errors: Vec<Error> = files
            .par_iter()
            .filter_map(|f| {
                check::secrets::check_secret_literals(&self.layers.files[*f], &allowed[f]).err()
            })
            .collect();
        for f in &files {
            if let Some(words) = self.layers.helm_words.get(*f) {
                errors.extend(words.iter().cloned().map(Error::from));
            }
        }
        let shared = self.layers.shared(&selected);
        let results: Vec<Result<Target>> = selected
            .into_par_iter()
            .map(|t| self.resolve(t, &shared))
            .collect();
        let mut targets = Vec::new();
        for result in results {
            match result {
                Ok(t) => {
                    errors.extend(t.reference_errors.iter().cloned().map(Error::from));
                    targets.push(t);
                }
                Err(e) => errors.push(e),
            }
        }
        dedup_errors(&mut errors);
        sort_errors(&mut errors);
        Ok((targets, errors))
    }

    fn resolve(
        &self,
        layers: &config::TargetLayers,
        shared: &config::SharedLayers,
    ) -> Result<Target> {
        Error::from_list(self.layers.lock_conflicts(layers))?;
        let merged = self.layers.merge_shared(layers, shared);
        model::resolve(layers.clone(), merged)
    }

    /// The key paths that the `exceptions` of rule `secret-literal` name for one target:
    /// the list of its last layer that has one (lists replace). The literal check runs
    /// on each file before targets are typed, so this reads the layers themselves.
    fn secret_exceptions(&self, target: &config::TargetLayers) -> Vec<String> {
        let mut paths = Vec::new();
        let last = target.files.iter().rev().find_map(|f| {
            self.layers
                .files
                .get(f)
                .and_then(|layer| layer.get("exceptions"))
        });
        if let Some(list) = last {
            let config::Value::Seq(items) = &list.value else {
                return paths;
            };
            for item in items {
                let text = |k: &str| match item.get(k).map(|n| &n.value) {
                    Some(config::Value::Str(s)) => Some(s.clone()),
                    _ => None,
                };
                if text("rule").as_deref() == Some(check::secrets::SECRET_LITERAL)
                    && let Some(path) = text("path")
                {
                    paths.push(path);
                }
            }
        }
        paths
    }

    pub fn renderer(&self) -> Result<Renderer> {
        Renderer::new(self.project.walk("templates")?)
    }

    /// Reads what the checks need from the project: the charts the targets' releases
    /// use (`values.yaml` and the compiled `values.schema.json`; one that is missing or
    /// unreadable is an error at the first release that names it) and the project's
    /// `vars.schema.json`.
    pub fn charts(&self, targets: &[Target]) -> (check::Inputs, Vec<Error>) {
        let mut inputs = check::Inputs::default();
        let mut errors = Vec::new();
        match charts::vars_schema(&self.project) {
            Ok(schema) => inputs.vars_schema = schema,
            Err(e) => errors.push(e),
        }
        let charts = &mut inputs.charts;
        for target in targets {
            for (key, release) in &target.config.releases {
                let path = release.chart.trim_end_matches('/').to_owned();
                if charts.contains_key(&path) {
                    continue;
                }
                let result = charts::read(&self.project, &path);
                match &result {
                    // Placed in the chart's own file already.
                    Err(e @ Error::Input(_)) => errors.push(e.duplicate()),
                    // No chart there: said at the release's `chart:`, with what a chart is.
                    Err(Error::Entry { message, hint, .. }) => {
                        let at = format!("releases.{key}.chart");
                        errors.push(
                            error::Located::new(target.loc_of(&at), at, message.clone())
                                .hint(hint.clone())
                                .into(),
                        );
                    }
                    // A chart file that does not read: said at the release's `chart:`.
                    Err(e) => {
                        let at = format!("releases.{key}.chart");
                        errors.push(
                            error::Located::new(target.loc_of(&at), at, e.to_string()).into(),
                        );
                    }
                    Ok(_) => {}
                }
                charts.insert(path, result);
            }
        }
        (inputs, errors)
    }
}

/// The same layer line is often wrong for several targets; say it once.
pub fn dedup_errors(errors: &mut Vec<Error>) {
    let mut seen = std::collections::HashSet::new();
    let mut flat = Vec::new();
    for e in errors.drain(..) {
        match e {
            Error::Many(list) => flat.extend(list),
            other => flat.push(other),
        }
    }
    flat.retain(|e| seen.insert(e.to_string()));
    *errors = flat;
}

/// Runs one stage of a command; with `STRATA_TIMINGS` set (to anything but `0`), prints
/// its wall time to stderr. For profiling (`scripts/bench` measures whole runs).
pub fn timed<T>(stage: &str, f: impl FnOnce() -> T) -> T {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*ON.get_or_init(|| std::env::var_os("STRATA_TIMINGS").is_some_and(|v| v != "0")) {
        return f();
    }
    let start = std::time::Instant::now();
    let result = f();
    eprintln!(
        "strata: {stage}: {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    result
}

/// Builds, renders and checks targets in parallel into one tree; every error of every
/// target is reported, sorted by file and line.
pub fn render_all(renderer: &Renderer, targets: &[Target], charts: &check::Inputs) -> Result<Tree> {
    let rendered: Vec<Result<render::Rendered>> = targets
        .par_iter()
        .map(|t| render_one(renderer, t, charts))
        .collect();
    let mut tree = Tree::new();
    let mut errors = Vec::new();
    for result in rendered {
        match result {
            Ok(r) => tree.extend(r.artifacts),
            Err(e) => errors.push(e),
        }
    }
    dedup_errors(&mut errors);
    let mut errors = merge_template_errors(errors);
    sort_errors(&mut errors);
    Error::from_list(errors)?;
    Ok(tree)
}

fn render_one(
    renderer: &Renderer,
    target: &Target,
    charts: &check::Inputs,
) -> Result<render::Rendered> {
    let desired = desired::build(target)?;
    let mut rendered = renderer.render(target, &desired)?;
    // A value whose reference failed is reported once, as that.
    let errors: Vec<Error> = check::target(target, &desired, &rendered, charts)
        .into_iter()
        .filter(|e| !matches!(e, Error::Input(l) if target.unresolved_at(&l.loc)))
        .collect();
    Error::from_list(errors)?;
    // Checked: the data strata's own artifacts were written from is not needed any
    // more (kept, it would be held for every target at once).
    rendered.data.clear();
    rendered.lines = None;
    Ok(rendered)
}

/// Errors by file, line and column (then text), so a run reads top to bottom.
pub fn sort_errors(errors: &mut [Error]) {
    fn key(e: &Error) -> (String, u32, u32, String) {
        match e {
            Error::Input(l) => (l.loc.file.to_string(), l.loc.line, l.loc.col, e.to_string()),
            Error::Template(t) => (
                t.template.clone(),
                t.line.unwrap_or(0),
                t.col.unwrap_or(0),
                e.to_string(),
            ),
            _ => (String::new(), 0, 0, e.to_string()),
        }
    }
    errors.sort_by_cached_key(key);
}

/// A template mistake fails every target the same way, and a rule broken at a template
/// line is broken there by each target that renders it: report each once, naming every
/// target it was found in.
fn merge_template_errors(errors: Vec<Error>) -> Vec<Error> {
    /// The error's target list, and what must be equal for two errors to be one.
    fn parts(e: &mut Error) -> Option<(&mut Vec<String>, String)> {
        match e {
            Error::Template(t) if !t.targets.is_empty() => {
                let same = format!("{}\0{:?}\0{:?}\0{}", t.template, t.line, t.col, t.message);
                Some((&mut t.targets, same))
            }
            Error::Input(l) if !l.targets.is_empty() => {
                let same = format!("{}\0{}\0{}\0{:?}", l.loc, l.key_path, l.message, l.hint);
                Some((&mut l.targets, same))
            }
            _ => None,
        }
    }
    let mut merged: Vec<Error> = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for mut error in errors {
        let Some((targets, same)) = parts(&mut error) else {
            merged.push(error);
            continue;
        };
        if let Some(&i) = seen.get(&same) {
            let more = std::mem::take(targets);
            if let Some((list, _)) = parts(&mut merged[i]) {
                list.extend(more);
            }
        } else {
            seen.insert(same, merged.len());
            merged.push(error);
        }
    }
    merged
}

/// Stack of each worker thread (virtual: only what is used is resident).
pub(crate) const WORKER_STACK: usize = 16 << 20;

/// Runs the command line; returns the process exit code.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> u8 {
    use clap::Parser;
    // Layers are parsed, merged and typed on the worker threads, recursively: give
    // them more stack than rayon's 2 MiB (the main thread has 8 MiB), so that the
    // parser's depth budget, not the stack, is what stops a deeply nested file. (Fails
    // only if a pool exists already, as when a test calls `run` twice; that pool is the
    // same.)
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(WORKER_STACK)
        .build_global();
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::ERROR
            } else {
                exit::OK
            };
        }
    };
    let out = report::Reporter::new(cli.format, cli.color);
    match commands::dispatch(&cli, &out) {
        Ok(code) => code,
        Err(e) => {
            out.error(&e);
            exit::ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_named_twice_is_selected_once_in_first_named_order() {
        let loaded = Loaded::load(Project::Embedded).unwrap();
        let names = ["dev-gcp", "dev-aws", "dev-gcp"].map(String::from);
        let selected: Vec<&str> = loaded
            .select(&names)
            .unwrap()
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(selected, ["dev-gcp", "dev-aws"]);
    }
}
