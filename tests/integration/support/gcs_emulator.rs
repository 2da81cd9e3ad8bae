//! gcp-storage-emulator (the GCS JSON API) on a free loopback port, started once per
//! test process and stopped with it.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{assert_loopback, free_port, venv_bin};

/// The emulator's host (`http://127.0.0.1:PORT`), as `STORAGE_EMULATOR_HOST` would give it.
pub fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(start)
}

fn start() -> String {
    let bin = venv_bin().join("gcp-storage-emulator");
    assert!(
        bin.exists(),
        "{} is missing from the test venv",
        bin.display()
    );
    let port = free_port();
    let host = format!("http://127.0.0.1:{port}");
    assert_loopback(&host);
    // Spawned from a thread that lives as long as the process: the child gets SIGTERM
    // when its parent thread ends (PR_SET_PDEATHSIG), so it never outlives the tests.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut cmd = Command::new(&bin);
        cmd.args([
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--in-memory",
            "--quiet",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd.spawn();
        let started = child.is_ok();
        tx.send(child.map(|c| c.id()).map_err(|e| e.to_string()))
            .ok();
        if started {
            loop {
                std::thread::park();
            }
        }
    });
    let pid = rx
        .recv()
        .expect("spawner thread answers")
        .expect("gcp-storage-emulator starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !super::http_answers(port, "/storage/v1/b?project=probe") {
        assert!(
            Instant::now() < deadline,
            "gcp-storage-emulator (pid {pid}) did not answer on port {port} within 30s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    host
}
