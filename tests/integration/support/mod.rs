//! Shared test helpers: the strata binary, the test venv, free loopback ports, and the
//! guard that keeps every cloud call on this machine.

#![allow(dead_code)]
pub mod moto;

use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod fixture;
pub mod fs;
pub mod gcs_emulator;
pub mod standins;

/// The repository root (where the example project lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The variables a spawned strata keeps from the test process: what finds programs
/// and temporary files, the locale, and Rust's own diagnostics. Everything else is
/// dropped, so no cloud setting of this machine reaches the binary: not
/// `AWS_ENDPOINT_URL_<SERVICE>` (which the SDK honours over `AWS_ENDPOINT_URL`), not
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`, `AWS_PROFILE`, `AWS_DEFAULT_PROFILE`,
/// `AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE`, `AWS_WEB_IDENTITY_TOKEN_FILE`,
/// `AWS_CONTAINER_CREDENTIALS_*`, not `GOOGLE_APPLICATION_CREDENTIALS`, `CLOUDSDK_*`,
/// `STORAGE_EMULATOR_HOST`, not an HTTP proxy that would carry loopback requests off
/// the machine, not `KUBECONFIG`, `STRATA_HELM` or `GITHUB_*`.
pub const INHERITED: &[&str] = &[
    "PATH",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "LLVM_PROFILE_FILE",
];

/// An empty folder that stands for the home directory of every spawned strata, so
/// nothing under the real `~/.aws`, `~/.config/gcloud` or `~/.kube` is read. One per
/// test process, made on first use.
pub fn empty_home() -> &'static Path {
    static HOME: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    HOME.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("empty-home-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("empty home");
        dir
    })
}

/// A `Command` for the strata binary built for this test run, whose environment is
/// [`INHERITED`] taken from `parent` and nothing else, with `HOME` an empty folder.
/// A test then sets the (loopback) endpoints and test credentials it means.
pub fn strata_from<K, V>(parent: impl IntoIterator<Item = (K, V)>) -> Command
where
    K: AsRef<std::ffi::OsStr>,
    V: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.env_clear();
    for (name, value) in parent {
        let keep = name
            .as_ref()
            .to_str()
            .is_some_and(|name| INHERITED.contains(&name));
        if keep {
            cmd.env(name, value);
        }
    }
    cmd.env("HOME", empty_home());
    cmd
}

/// A `Command` for the strata binary built for this test run, with the test process's
/// environment reduced to [`INHERITED`] (see [`strata_from`]).
pub fn strata() -> Command {
    strata_from(std::env::vars_os())
}

/// Runs strata with `args` in `dir` and returns its output.
pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    strata()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("strata runs")
}

/// The bin folder of the venv `scripts/test` builds. Panics (fails the test) with
/// instructions when it is missing: these tests must not pass by skipping.
pub fn venv_bin() -> PathBuf {
    let dir = std::env::var_os("STRATA_TEST_VENV_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin"));
    assert!(
        dir.join("python").exists(),
        "the test venv is missing at {}: run the suite with scripts/test, which builds it",
        dir.display()
    );
    dir
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .unwrap()
        .port()
}

/// Refuses any endpoint that is not on this machine's loopback interface. Every test
/// that points strata at a cloud API calls this on the URL first.
pub fn assert_loopback(url: &str) {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = if let Some(stripped) = host_port.strip_prefix('[') {
        stripped.split(']').next().unwrap_or_default()
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    assert!(
        loopback,
        "refusing non-loopback endpoint {url}: tests only talk to emulators on 127.0.0.1"
    );
}

/// A reqwest client for talking to the emulators and stand-ins directly. strata's
/// reqwest has no crypto provider of its own: this installs strata's (ring) first.
pub fn http() -> reqwest::Client {
    strata::resources::http::reqwest_builder()
        .build()
        .expect("reqwest client")
}

/// Runs a future to its end on a runtime of its own, from a blocking test.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// GET `url` (on loopback) and its JSON body: a stand-in's or an emulator's state.
pub fn get_json(url: &str) -> serde_json::Value {
    assert_loopback(url);
    block_on(async {
        http()
            .get(url)
            .send()
            .await
            .expect("GET answers")
            .json()
            .await
            .expect("a JSON body")
    })
}

/// Copies a folder recursively (test fixtures are small).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Whether an HTTP server on 127.0.0.1:`port` answers `GET path` (any status).
pub fn http_answers(port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    let answered = stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.");
    // Read the rest, so the server is not reset mid-answer (and logs no traceback).
    let _ = stream.read_to_end(&mut Vec::new());
    answered
}

/// Starts `program` from the test venv with `args` for the rest of the test process
/// (the child gets SIGTERM when the spawning thread's process ends), waits until it
/// answers `GET probe` on 127.0.0.1:`port`, and returns `http://127.0.0.1:PORT`.
pub fn start_server(program: &str, args: &[String], port: u16, probe: &str) -> String {
    use std::os::unix::process::CommandExt;
    let bin = venv_bin().join(program);
    assert!(
        bin.exists(),
        "{} is missing from the test venv",
        bin.display()
    );
    let url = format!("http://127.0.0.1:{port}");
    assert_loopback(&url);
    let args = args.to_vec();
    let (tx, rx) = std::sync::mpsc::channel();
    // The thread lives as long as the process, so PR_SET_PDEATHSIG (which fires when the
    // spawning thread ends) stops the server with the tests and never before.
    std::thread::spawn(move || {
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
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
        .expect("spawner thread answers")
        .unwrap_or_else(|e| panic!("{program} could not start: {e}"));
    wait_until(&format!("{program} on {url}"), 60, || {
        http_answers(port, probe)
    });
    url
}

/// Polls `ready` until it holds, failing the test after `seconds`.
fn wait_until(what: &str, seconds: u64, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not answer within {seconds}s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Text of an output stream, for assertions and snapshots.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn loopback_guard_refuses_remote_endpoints() {
    assert_loopback("http://127.0.0.1:5000");
    assert_loopback("http://localhost:1234/path");
    assert_loopback("http://[::1]:80");
    for remote in [
        "https://s3.amazonaws.com",
        "http://10.0.0.5:5000",
        "http://example.com",
        "https://storage.googleapis.com/storage/v1",
    ] {
        let result = std::panic::catch_unwind(|| assert_loopback(remote));
        assert!(result.is_err(), "{remote} must be refused");
    }
}

/// tests/py/faulty_proxy.py in front of an emulator at `upstream`: answers requests
/// whose "METHOD PATH BODY" contains `pattern` with `status` (the first `count` of them,
/// or all), in the API's own error shape, and forwards the rest. It logs every request
/// ([`FaultyProxy::requests`]). [`FaultyProxy::sweep`] fails the k-th write instead.
pub struct FaultyProxy {
    child: std::process::Child,
    log: tempfile::NamedTempFile,
    pub url: String,
}

/// One request as [`FaultyProxy`] saw it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Faulted {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    /// Whether the proxy answered it itself (rather than forwarding it).
    pub injected: bool,
    /// Seconds since the proxy started, when the answer was sent.
    pub t: f64,
    /// The `etag` of a JSON body the request sent, if any.
    pub etag: Option<String>,
    /// The IAM/STS `Action=` or `X-Amz-Target` operation, if any.
    #[serde(default)]
    pub action: Option<String>,
    /// Whether the proxy counts the request as a write (see [`Recorded::is_write`];
    /// Google's `:getIamPolicy` POST is a read).
    #[serde(default)]
    pub write: bool,
    /// With [`Sweep::after`]: what the server answered behind the injected error.
    #[serde(default)]
    pub hidden_status: Option<u16>,
    /// IAM/STS: the form's `*Name` and `*Arn` parameters (`RoleName`, `PolicyArn`).
    #[serde(default)]
    pub names: std::collections::BTreeMap<String, String>,
}

/// How [`FaultyProxy::sweep`] fails one write: which one, and how.
#[derive(Debug, Clone, Default)]
pub struct Sweep {
    /// Writes let through before the faulted one (k-1 to fail the k-th).
    pub skip: usize,
    /// The status answered (0: [`Sweep::drop`]).
    pub status: u16,
    /// The API error code answered (`AccessDenied`, `AccessDeniedException`,
    /// `PERMISSION_DENIED`).
    pub code: String,
    /// Forward the request first: the change happens, only the answer is an error.
    pub after: bool,
    /// Close the connection without an answer.
    pub drop: bool,
    /// `(path prefix, loopback URL)`: requests under the prefix go there instead.
    pub routes: Vec<(String, String)>,
}

impl Faulted {
    /// See [`Recorded::is_write`].
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD")
    }
}

impl FaultyProxy {
    pub fn start(upstream: &str, pattern: &str, status: u16, count: Option<u32>) -> FaultyProxy {
        Self::start_with(upstream, pattern, status, count, None)
    }

    /// [`Self::start`], answering a matching request with `body` (JSON) rather than an
    /// error in the API's shape: a stand-in for an answer the emulator cannot give.
    pub fn start_with(
        upstream: &str,
        pattern: &str,
        status: u16,
        count: Option<u32>,
        body: Option<&str>,
    ) -> FaultyProxy {
        Self::spawn(upstream, pattern, status, count, body, &[])
    }

    fn spawn(
        upstream: &str,
        pattern: &str,
        status: u16,
        count: Option<u32>,
        body: Option<&str>,
        extra: &[String],
    ) -> FaultyProxy {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        assert_loopback(&url);
        assert_loopback(upstream);
        let log = tempfile::NamedTempFile::new().expect("proxy log");
        let mut cmd = Command::new(venv_bin().join("python"));
        cmd.arg(repo_root().join("tests/py/faulty_proxy.py"))
            .arg(port.to_string())
            .arg(upstream)
            .arg(pattern)
            .arg(status.to_string());
        if let Some(count) = count {
            cmd.arg(count.to_string());
        }
        if let Some(body) = body {
            cmd.arg("--body").arg(body);
        }
        cmd.args(extra);
        cmd.arg("--log").arg(log.path());
        let child = cmd.spawn().expect("faulty proxy starts");
        wait_until(&format!("faulty proxy on {url}"), 20, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        FaultyProxy { child, log, url }
    }

    /// A proxy in front of `upstream` (and [`Sweep::routes`]) that lets `sweep.skip`
    /// writes through and fails the next one as `sweep` says; with `usize::MAX` it
    /// fails none and only counts.
    pub fn sweep(upstream: &str, sweep: &Sweep) -> FaultyProxy {
        let mut extra = vec![
            "--writes".to_owned(),
            "--skip".to_owned(),
            sweep.skip.min(1 << 30).to_string(),
        ];
        if !sweep.code.is_empty() {
            extra.extend(["--code".to_owned(), sweep.code.clone()]);
        }
        if sweep.after {
            extra.push("--after".into());
        }
        if sweep.drop {
            extra.push("--drop".into());
        }
        for (prefix, url) in &sweep.routes {
            assert_loopback(url);
            extra.extend(["--route".to_owned(), format!("{prefix}={url}")]);
        }
        let status = if sweep.status == 0 { 500 } else { sweep.status };
        Self::spawn(upstream, "", status, Some(1), None, &extra)
    }

    /// Every write the proxy saw so far, in order.
    pub fn writes(&self) -> Vec<Faulted> {
        self.requests().into_iter().filter(|r| r.write).collect()
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<Faulted> {
        std::fs::read_to_string(self.log.path())
            .expect("proxy log")
            .lines()
            .map(|line| serde_json::from_str(line).expect("a proxy log line"))
            .collect()
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request as [`RecordingProxy`] forwarded it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The query protocol's `Action` (IAM, STS), when the body has one, or the JSON
    /// protocol's operation (`X-Amz-Target`, ACM).
    pub action: Option<String>,
    pub status: u16,
}

impl Recorded {
    /// Whether the request asks the server to change something: an IAM/STS action
    /// other than Get/List/Describe…, or any S3 / GCS request that is not GET or HEAD
    /// (GCS reads a bucket's IAM policy with GET).
    pub fn is_write(&self) -> bool {
        match &self.action {
            Some(action) => !["Get", "List", "Describe", "Simulate"]
                .iter()
                .any(|read| action.starts_with(read)),
            None => !matches!(self.method.as_str(), "GET" | "HEAD"),
        }
    }
}

/// tests/integration/support/recording_proxy.py in front of an emulator at `upstream`:
/// forwards every request unchanged and logs it, so a test can count what the server
/// saw. Each test starts its own, so the log holds that test's requests only.
pub struct RecordingProxy {
    child: std::process::Child,
    log: tempfile::NamedTempFile,
    pub url: String,
}

impl RecordingProxy {
    pub fn start(upstream: &str) -> RecordingProxy {
        Self::spawn(upstream, None)
    }

    /// The same, serving HTTPS with `cert` (the upstream stays plain HTTP).
    pub fn start_tls(upstream: &str, cert: &SelfSigned) -> RecordingProxy {
        Self::spawn(upstream, Some(cert))
    }

    fn spawn(upstream: &str, tls: Option<&SelfSigned>) -> RecordingProxy {
        assert_loopback(upstream);
        let port = free_port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        assert_loopback(&url);
        let log = tempfile::NamedTempFile::new().expect("proxy log");
        let mut cmd = Command::new(venv_bin().join("python"));
        cmd.arg(repo_root().join("tests/integration/support/recording_proxy.py"))
            .arg(port.to_string())
            .arg(upstream)
            .arg(log.path());
        if let Some(tls) = tls {
            cmd.arg(&tls.cert).arg(&tls.key);
        }
        let child = cmd.spawn().expect("recording proxy starts");
        wait_until(&format!("recording proxy on {url}"), 20, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        RecordingProxy { child, log, url }
    }

    /// Every request forwarded so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        std::fs::read_to_string(self.log.path())
            .expect("proxy log")
            .lines()
            .map(|line| serde_json::from_str(line).expect("a proxy log line"))
            .collect()
    }

    /// The requests that ask for a change (see [`Recorded::is_write`]).
    pub fn writes(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(Recorded::is_write)
            .collect()
    }

    /// Forgets what was logged so far.
    pub fn clear(&self) {
        std::fs::write(self.log.path(), "").expect("proxy log");
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for 127.0.0.1 (and its key), made with the venv's
/// `cryptography`, for HTTPS servers a test trusts through `SSL_CERT_FILE`.
pub struct SelfSigned {
    _dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl SelfSigned {
    pub fn new() -> SelfSigned {
        const SCRIPT: &str = r#"
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "strata test 127.0.0.1")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
    .public_key(key.public_key()).serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(minutes=5))
    .not_valid_after(now + datetime.timedelta(days=1))
    .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    .sign(key, hashes.SHA256()))
open(sys.argv[1], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(sys.argv[2], "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
"#;
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let out = Command::new(venv_bin().join("python"))
            .arg("-c")
            .arg(SCRIPT)
            .arg(&cert)
            .arg(&key)
            .output()
            .expect("python runs");
        assert!(out.status.success(), "{}", text(&out.stderr));
        SelfSigned {
            _dir: dir,
            cert,
            key,
        }
    }
}

/// What a run measured: its output, wall time, and peak resident memory.
pub struct Measured {
    pub output: Output,
    pub elapsed: std::time::Duration,
    /// CPU time (user + system, every thread): unlike wall time, it does not grow
    /// when other processes load the machine.
    pub cpu: std::time::Duration,
    /// The child's own peak resident set size in KiB (`ru_maxrss` from `wait4`, which
    /// reports this one child, not other tests' children).
    pub peak_rss_kib: u64,
}

/// Runs `cmd` (stdout and stderr captured) and measures it; a watchdog kills it with
/// SIGKILL after `limit`, so a run that hangs fails the test instead of blocking it.
pub fn run_measured(mut cmd: Command, limit: std::time::Duration) -> Measured {
    use std::io::Read;
    use std::process::Stdio;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let started = std::time::Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strata runs");
    let pid = child.id() as libc::pid_t;
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let until = std::time::Instant::now() + limit;
            while std::time::Instant::now() < until {
                if done.load(Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if !done.load(Ordering::SeqCst) {
                // Not reaped yet (wait4 below has not returned), so the pid is still
                // this child's.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return true;
            }
            false
        })
    };
    let mut status: libc::c_int = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    done.store(true, Ordering::SeqCst);
    let elapsed = started.elapsed();
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let killed = watchdog.join().unwrap();
    assert!(
        !killed,
        "the run was still going after {limit:?} and was killed"
    );
    // The std Child must not wait for the reaped pid again.
    std::mem::forget(child);
    use std::os::unix::process::ExitStatusExt;
    Measured {
        output: Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        },
        elapsed,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        peak_rss_kib: usage.ru_maxrss as u64,
    }
}

fn timeval(t: libc::timeval) -> std::time::Duration {
    std::time::Duration::from_secs(t.tv_sec as u64)
        + std::time::Duration::from_micros(t.tv_usec as u64)
}
