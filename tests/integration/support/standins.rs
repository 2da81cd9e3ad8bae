//! The loopback stand-ins of `tests/standins/` for APIs that have no emulator: EKS Pod
//! Identity (in front of moto) and Google IAM. One per test, stopped when dropped, each
//! with its own request log, so a test can list exactly what the server saw written.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::{assert_loopback, repo_root, venv_bin, wait_until};

pub struct Standin {
    child: Child,
    dir: tempfile::TempDir,
    pub url: String,
}

impl Standin {
    /// `eks_pod_identity.py`: the association API, with `clusters` existing in every
    /// region; roles (and their trust policies) are checked in moto at `upstream`,
    /// which also gets every other EKS request.
    pub fn eks_pod_identity(upstream: &str, clusters: &[&str]) -> Standin {
        assert_loopback(upstream);
        let mut args = vec!["--upstream".to_owned(), upstream.to_owned()];
        for cluster in clusters {
            args.push("--cluster".into());
            args.push((*cluster).to_owned());
        }
        Standin::start("eks_pod_identity.py", &args)
    }

    /// `eks_pod_identity.py` asking moto at `upstream` for clusters, with the EKS add-ons
    /// `addons` (cluster, add-on name, status) installed.
    pub fn eks_with_addons(upstream: &str, addons: &[(&str, &str, &str)]) -> Standin {
        assert_loopback(upstream);
        let mut args = vec!["--upstream".to_owned(), upstream.to_owned()];
        for (cluster, addon, status) in addons {
            args.push("--addon".into());
            args.push(format!("{cluster}:{addon}:{status}"));
        }
        Standin::start("eks_pod_identity.py", &args)
    }

    /// `gcp_preflight.py`: GKE clusters.get and Cloud DNS managed zones of `project`;
    /// `clusters` as `LOCATION/NAME[/STATUS]`, `zones` as `NAME/DNS_NAME[/private]`.
    pub fn gcp_preflight(project: &str, clusters: &[&str], zones: &[&str]) -> Standin {
        let mut args = vec!["--project".to_owned(), project.to_owned()];
        for cluster in clusters {
            args.push("--cluster".into());
            args.push(format!("{project}/{cluster}"));
        }
        for zone in zones {
            args.push("--zone".into());
            args.push(format!("{project}/{zone}"));
        }
        Standin::start("gcp_preflight.py", &args)
    }

    /// `gcp_iam.py`: Google IAM v1 for `project`, whose Workload Identity pool exists.
    pub fn gcp_iam(project: &str) -> Standin {
        let args = [
            "--project".to_owned(),
            project.to_owned(),
            "--workload-pools".to_owned(),
            project.to_owned(),
        ];
        Standin::start("gcp_iam.py", &args)
    }

    fn start(script: &str, args: &[String]) -> Standin {
        let dir = tempfile::tempdir().expect("stand-in dir");
        let port_file = dir.path().join("port");
        let child = Command::new(venv_bin().join("python"))
            .arg(repo_root().join("tests/standins").join(script))
            .args(args)
            .arg("--port")
            .arg("0")
            .arg("--port-file")
            .arg(&port_file)
            .arg("--log")
            .arg(dir.path().join("requests.jsonl"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{script} could not start: {e}"));
        wait_until(&format!("{script}'s port file"), 30, || {
            std::fs::read_to_string(&port_file).is_ok_and(|p| p.trim().parse::<u16>().is_ok())
        });
        let port: u16 = std::fs::read_to_string(&port_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        assert_loopback(&url);
        wait_until(&format!("{script} on {url}"), 30, || {
            super::http_answers(port, "/__standin/health")
        });
        Standin { child, dir, url }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("requests.jsonl")
    }

    /// Every API request the stand-in logged, in order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("a stand-in log line"))
            .collect()
    }

    /// The requests that ask for a change (by operation: getIamPolicy is a read), each
    /// as `OP PATH` (`create /v1/projects/p/serviceAccounts`,
    /// `CreatePodIdentityAssociation /clusters/c/pod-identity-associations`).
    pub fn writes(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r["mutating"] == Value::Bool(true))
            .map(|r| {
                format!(
                    "{} {}",
                    r["op"].as_str().unwrap_or("forwarded"),
                    r["path"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }

    /// The state the stand-in holds (associations; accounts and policies).
    pub fn state(&self) -> Value {
        self.control("GET", "/__standin/state", None)
    }

    /// Adds a fault rule (see tests/standins/README.md, "Control endpoints").
    pub fn fault(&self, rule: Value) {
        self.control("POST", "/__standin/faults", Some(&rule));
    }

    /// Forgets the state, faults and logged requests (settings given at the start, such
    /// as `--addon`, come back).
    pub fn reset(&self) {
        self.control(
            "POST",
            "/__standin/reset",
            Some(&serde_json::json!({"truncate_log": true})),
        );
    }

    /// POST /__standin/config: the stand-in's settings (see its doc), the effective ones back.
    pub fn configure(&self, settings: &Value) -> Value {
        self.control("POST", "/__standin/config", Some(settings))
    }

    fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let port: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("stand-in");
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("stand-in {path} ({e}): {body}"))
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
