//! strata's one integration-test binary (as casey/just does): every area is a module.
//!
//! Tests that need real components (Helm's engine, kubernetes-validate, parliament,
//! yamllint, moto, the GCS emulator) find them in the venv that `scripts/test` builds
//! and fail, rather than skip, when it is missing.

mod support;

mod aws;
mod cli;
mod destroy;
mod environments;
mod faults;
mod fuzz;
mod gcs;
mod identity;
mod out_dir;
mod pipeline;
mod planfile;
mod pr;
mod preflight;
mod promises;
mod readme;
mod review;
mod rules;
