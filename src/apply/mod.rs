//! plan and apply: read the live cloud state, compute a [`plan::Plan`] (data), then
//! execute it and record [`plan::Evidence`].

pub mod gcs;
pub mod plan;

use std::path::Path;

use crate::cli::Cli;
use crate::error::{Error, Result};
use crate::report::Reporter;

pub fn plan_command(_cli: &Cli, _out: &Reporter, target: &str) -> Result<u8> {
    Err(Error::Usage(format!(
        "plan {target}: not available in this build yet"
    )))
}

pub fn apply_command(
    _cli: &Cli,
    _out: &Reporter,
    target: &str,
    _approve: bool,
    _skip_helm: bool,
    _dir: &Path,
) -> Result<u8> {
    Err(Error::Usage(format!(
        "apply {target}: not available in this build yet"
    )))
}
