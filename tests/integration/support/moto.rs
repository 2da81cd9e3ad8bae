//! One moto server (S3, IAM, STS) per test process, on a free loopback port.
//!
//! Started from a thread that lives as long as the process, with a parent-death
//! signal, so the server goes away with the test binary.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{assert_loopback, free_port, venv_bin};

/// moto's default account: credentials without an assumed role belong to it.
pub const ACCOUNT: &str = "123456789012";

static URL: OnceLock<String> = OnceLock::new();

/// The URL of the shared moto server, started on first use.
pub fn url() -> &'static str {
    URL.get_or_init(|| {
        let port = free_port();
        let bin = venv_bin().join("moto_server");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::os::unix::process::CommandExt;
            let mut cmd = Command::new(&bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: prctl is async-signal-safe; it only sets this child's death signal.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
            let child = cmd.spawn();
            let _ = tx.send(child.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            if let Ok(mut child) = child {
                let _ = child.wait();
            }
        });
        rx.recv()
            .expect("moto thread")
            .unwrap_or_else(|e| panic!("moto_server could not start: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        assert_loopback(&url);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !super::http_answers(port, "/moto-api/") {
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {url} within 60s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        url
    })
}

/// An SDK config for moto, in `region`, as the default account.
pub async fn sdk_config(region: &str) -> aws_config::SdkConfig {
    let url = url();
    assert_loopback(url);
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "moto",
        ))
        .load()
        .await
}

pub async fn s3(region: &str) -> aws_sdk_s3::Client {
    let conf = sdk_config(region).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    )
}

pub async fn iam() -> aws_sdk_iam::Client {
    aws_sdk_iam::Client::new(&sdk_config("us-east-1").await)
}
