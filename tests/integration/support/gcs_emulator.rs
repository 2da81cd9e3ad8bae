//! gcp-storage-emulator (the GCS JSON API) on a free loopback port, started once per
//! test process and stopped with it.

use std::sync::OnceLock;

use super::{free_port, start_server};

/// The emulator's host (`http://127.0.0.1:PORT`), as `STORAGE_EMULATOR_HOST` would give it.
pub fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(start)
}

fn start() -> String {
    let port = free_port();
    let args = [
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--in-memory",
        "--quiet",
    ];
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    start_server(
        "gcp-storage-emulator",
        &args,
        port,
        "/storage/v1/b?project=probe",
    )
}
