//! The render pipeline end to end, through the real binary: the committed snapshots,
//! real validators over every artifact, determinism, every error a user can make, atomic
//! output, and `init`.

mod atomic;
mod determinism;
mod drift;
mod errors;
mod example;
mod init;
mod random_layers;
mod validators;
