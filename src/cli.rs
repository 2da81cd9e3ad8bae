//! The command line: one variant per command. Exit codes are documented in the README
//! and relied upon by scripts: 0 ok, 1 differences found (drift, pending changes),
//! 2 error.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// What `strata --version` prints after the name: the package version and the git
/// revision it was built from (`0.1.0 (abc1234)`, or `(unknown revision)` when built
/// outside git; see build.rs), and `, without cloud` for a build without the `cloud`
/// feature (`0.1.0 (abc1234, without cloud)`).
#[cfg(feature = "cloud")]
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("STRATA_REVISION"),
    ")"
);
#[cfg(not(feature = "cloud"))]
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("STRATA_REVISION"),
    ", without cloud)"
);

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version = VERSION,
    about = "Layered environment config → reviewable deployment artifacts, then apply them.",
    after_help = "Exit codes: 0 ok, 1 differences found (render --check, plan), 2 error."
)]
pub struct Cli {
    /// Project folder (the one holding environments/); searched upward from here.
    #[arg(
        short = 'C',
        long = "project",
        global = true,
        default_value = ".",
        value_name = "DIR"
    )]
    pub project: PathBuf,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// When to use colour (NO_COLOR is honoured with `auto`).
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// No progress lines on stderr while plan, apply, destroy and preflight work (they
    /// are off with `--format json` too); results and errors are printed as always.
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// GitHub Actions annotations and a markdown summary.
    Github,
    /// The pull-request review summary of `render --check`, also appended to
    /// $GITHUB_STEP_SUMMARY when that is set; other commands print their text output.
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render all (or the named) targets into the output folder.
    Render {
        /// Targets to render (`prod-aws`); all when none are given.
        targets: Vec<String>,
        /// Output folder; a relative one is taken from the project root.
        #[arg(long, default_value = "out", value_name = "DIR")]
        out: PathBuf,
        /// Render in memory and compare with the output folder; exit 1 on drift.
        #[arg(long)]
        check: bool,
    },
    /// Load, merge, validate and render in memory; write nothing.
    Validate {
        /// Targets to validate; all when none are given.
        targets: Vec<String>,
    },
    /// List the targets.
    List,
    /// Show a key's final value and every layer that set it.
    Explain {
        target: String,
        /// Dotted key path, e.g. buckets.data.versioning, releases.app.values.image.tag, or a derived name such as buckets.data.name.
        key: String,
    },
    /// Show what apply would change in the cloud; no writes.
    Plan {
        target: String,
        /// Also write the plan to FILE, for `strata apply FILE` (which applies exactly it,
        /// or refuses when anything moved since).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Show what `strata destroy TARGET` would delete and keep (and why); no writes.
        #[arg(long)]
        destroy: bool,
    },
    /// Converge the buckets, the workloads' policies and identities, then run helm.
    Apply {
        /// A target, or a plan file written by `strata plan TARGET --out FILE` (which
        /// needs no --approve: the reviewed file is the approval).
        target: String,
        /// Without it, apply only shows the plan.
        #[arg(long)]
        approve: bool,
        /// Skip the helm step (cloud resources only).
        #[arg(long)]
        skip_helm: bool,
        /// Where the rendered artifacts are written before helm runs; a relative folder
        /// is taken from the project root.
        #[arg(long, default_value = "out", value_name = "DIR")]
        out: PathBuf,
    },
    /// Remove what apply made for a target, in reverse order: helm releases, workload
    /// identities and policies, then the buckets whose layers say `retain: false`.
    Destroy {
        target: String,
        /// Without it, destroy only shows what it would do. A target whose layers say
        /// `protected: true` needs its name repeated: `--approve=TARGET`.
        #[arg(long, value_name = "TARGET", num_args = 0..=1, require_equals = true, default_missing_value = "")]
        approve: Option<String>,
        /// Delete every object (all versions, delete markers, generations) of a bucket
        /// that is to be deleted; without it a non-empty bucket stops destroy before
        /// anything is deleted.
        #[arg(long)]
        force_empty: bool,
        /// Skip the helm step (cloud resources only).
        #[arg(long)]
        skip_helm: bool,
    },
    /// Check what the targets depend on in the live cloud (credentials, cluster, add-ons,
    /// bucket names) and discover the DNS zone and certificates; read calls only.
    /// Exit 0 when nothing blocks, 2 otherwise.
    Preflight {
        /// Targets to check (`dev-aws`).
        #[arg(required = true)]
        targets: Vec<String>,
        /// Write what was discovered to environments/discovered/<target>.yaml (the
        /// target's lock file, merged last), when it changed.
        #[arg(long)]
        write: bool,
    },
    /// Print the JSON Schema of the environment files.
    Schema,
    /// Write an example project into DIR (with strata.schema.json for editors).
    Init {
        dir: PathBuf,
        /// Which example: lakehouse (one app on both clouds), storage-only (buckets and
        /// a workload, no release), three-tier (three releases with chart schemas).
        #[arg(long, default_value = "lakehouse", value_name = "NAME")]
        example: String,
    },
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), or write one page per command into a folder.
    Man {
        /// Write strata.1 and strata-<command>.1 for every command into DIR (made if
        /// missing; relative to the current folder) instead of printing strata.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}
