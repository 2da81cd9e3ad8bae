//! strata turns layered, per-environment configuration into reviewable deployment
//! artifacts, and applies them.
//!
//! The pipeline, one module a stage, pure until the edges:
//!
//! 1. [`project`] finds the files (a folder, or the example embedded in the binary);
//!    [`config`] parses each layer once and merges base → cloud → env → env.cloud,
//!    keeping the file:line:col of every value.
//! 2. [`model`] types each target's merged tree and derives its names;
//!    [`validate`] checks the rules (secrets, names, production policy); [`iam`] builds
//!    the access documents as data.
//! 3. [`render`] applies the compiled minijinja templates to every target in parallel
//!    and parses each artifact back.
//! 4. [`output`] swaps the rendered tree into the output folder atomically, or compares
//!    it with one (`render --check`).
//!
//! `plan`/`apply` (in [`apply`]) read the rendered target and converge the cloud.

pub mod apply;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod iam;
pub mod model;
pub mod output;
pub mod project;
pub mod render;
pub mod report;
pub mod suggest;
pub mod validate;
pub mod yaml_check;

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
        let selected = self.select(names)?;
        // Secret literals are looked for in each layer file once (not in every merged
        // tree), before anything is typed, so no later error can echo a value. A literal
        // that a later layer overrides is still refused: it is in the repository.
        let mut files: Vec<&String> = selected.iter().flat_map(|t| &t.files).collect();
        files.sort();
        files.dedup();
        let mut errors: Vec<Error> = files
            .par_iter()
            .filter_map(|f| validate::check_secret_literals(&self.layers.files[*f]).err())
            .collect();
        dedup_errors(&mut errors);
        Error::from_list(errors)?;
        let shared = self.layers.shared(&selected);
        let results: Vec<Result<Target>> = selected
            .into_par_iter()
            .map(|t| self.resolve(t, &shared))
            .collect();
        let mut targets = Vec::new();
        let mut errors = Vec::new();
        for result in results {
            match result {
                Ok(t) => targets.push(t),
                Err(e) => errors.push(e),
            }
        }
        dedup_errors(&mut errors);
        Error::from_list(errors)?;
        Ok(targets)
    }

    fn resolve(
        &self,
        layers: &config::TargetLayers,
        shared: &config::SharedLayers,
    ) -> Result<Target> {
        let merged = self.layers.merge_shared(layers, shared);
        let target = model::resolve(layers.clone(), merged)?;
        validate::check_target(&target)?;
        Ok(target)
    }

    pub fn renderer(&self) -> Result<Renderer> {
        Renderer::new(self.project.walk("templates")?)
    }
}

/// The same layer line is often wrong for several targets; say it once.
fn dedup_errors(errors: &mut Vec<Error>) {
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

/// Renders targets in parallel into one tree.
pub fn render_all(renderer: &Renderer, targets: &[Target]) -> Result<Tree> {
    let rendered: Vec<Result<Vec<render::Artifact>>> =
        targets.par_iter().map(|t| renderer.render(t)).collect();
    let mut tree = Tree::new();
    let mut errors = Vec::new();
    for result in rendered {
        match result {
            Ok(artifacts) => tree.extend(artifacts.into_iter().map(|a| (a.path, a.bytes))),
            Err(e) => errors.push(e),
        }
    }
    Error::from_list(merge_template_errors(errors))?;
    Ok(tree)
}

/// A template mistake fails every target the same way: report it once, naming them all.
fn merge_template_errors(errors: Vec<Error>) -> Vec<Error> {
    let mut merged: Vec<Error> = Vec::new();
    for error in errors {
        if let Error::Template(new) = &error
            && let Some(Error::Template(seen)) = merged.iter_mut().find(|e| match e {
                Error::Template(t) => {
                    (&t.template, t.line, t.col, &t.message)
                        == (&new.template, new.line, new.col, &new.message)
                }
                _ => false,
            })
        {
            if let (Some(seen), Some(more)) = (&mut seen.target, &new.target) {
                seen.push_str(", ");
                seen.push_str(more);
            }
            continue;
        }
        merged.push(error);
    }
    merged
}

/// Stack of each worker thread (virtual: only what is used is resident).
const WORKER_STACK: usize = 16 << 20;

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
