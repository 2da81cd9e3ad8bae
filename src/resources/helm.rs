//! The helm step of apply: the commands as data (what would run is printable and
//! testable), and running them as a separate step.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::engine::plan::HelmRun;
use crate::error::{Error, Result};
use crate::model::Target;

/// One `helm upgrade --install`, always with an explicit context and namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct HelmInstall {
    pub release: String,
    pub chart: PathBuf,
    pub namespace: String,
    pub kube_context: String,
    pub values: Option<PathBuf>,
    /// helm `--timeout`.
    pub timeout: String,
}

impl HelmInstall {
    /// The arguments after the program name.
    pub fn argv(&self) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            "upgrade".into(),
            "--install".into(),
            self.release.clone(),
            self.chart.display().to_string(),
            "--namespace".into(),
            self.namespace.clone(),
            "--kube-context".into(),
            self.kube_context.clone(),
            "--wait".into(),
            "--rollback-on-failure".into(),
            "--timeout".into(),
            self.timeout.clone(),
        ];
        if let Some(values) = &self.values {
            argv.push("--values".into());
            argv.push(values.display().to_string());
        }
        argv
    }
}

/// The installs for a target rendered into `out`: the platform chart first
/// (namespaces, service accounts, volumes), then each release in the layers' order.
/// A missing helm binary is found before any of them runs (see [`check_binary`]).
pub fn installs(target: &Target, out: &Path, project_root: &Path) -> Result<Vec<HelmInstall>> {
    let project = &target.config.project.name;
    let rendered = out.join(&target.name);
    let Some(context) = target.names.kube_context.clone() else {
        return Err(Error::Usage(format!(
            "target {}: helm needs a kube context, and no layer sets `kube.context` (nor the cluster it is derived from)\n  hint: set kube.context, or aws.cluster / gcp.cluster and gcp.clusterLocation",
            target.name
        )));
    };
    // The platform chart makes the namespaces (with their Pod Security labels), so its
    // own release lives in `default`, which every cluster has: one apply works on an
    // empty cluster, and a re-apply is the same release owning the same namespaces
    // (`helm --create-namespace` would make them unlabelled, and then refuse to let the
    // chart adopt them). Without `kube.createNamespace` the namespace exists already.
    let platform_namespace = if target.config.kube.create_namespace {
        "default".to_owned()
    } else {
        target.names.namespace.clone()
    };
    let mut installs = vec![HelmInstall {
        release: format!("{project}-platform"),
        chart: rendered.join("platform"),
        namespace: platform_namespace,
        kube_context: context.clone(),
        values: None,
        timeout: "5m".to_owned(),
    }];
    for (key, release) in &target.config.releases {
        installs.push(HelmInstall {
            release: key.clone(),
            chart: project_root.join(release.chart.trim_end_matches('/')),
            namespace: release
                .namespace
                .clone()
                .unwrap_or_else(|| target.names.namespace.clone()),
            kube_context: context.clone(),
            values: Some(rendered.join(format!("releases/{key}.values.yaml"))),
            timeout: release.timeout.clone(),
        });
    }
    Ok(installs)
}

/// Fails, naming what was looked for, when the helm binary cannot be run: apply calls
/// this before any cloud write, so a missing helm never leaves a half-applied target.
pub fn check_binary() -> Result<()> {
    let bin = binary();
    match std::process::Command::new(&bin)
        .arg("version")
        .arg("--short")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::Usage(format!(
            "helm could not be run as `{bin}` ({e}); nothing was written\n  hint: install helm v4 (or set STRATA_HELM to its path), or pass --skip-helm to apply the cloud resources only"
        ))),
    }
}

/// The helm binary: `$STRATA_HELM`, else `helm` on PATH.
pub fn binary() -> String {
    std::env::var("STRATA_HELM")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "helm".to_owned())
}

/// Runs the installs in order, recording each; stops at the first failure.
pub fn run(installs: &[HelmInstall], runs: &mut Vec<HelmRun>) -> Result<()> {
    let program = binary();
    for install in installs {
        let args = install.argv();
        let mut argv = vec![program.clone()];
        argv.extend(args.iter().cloned());
        // helm's own report goes to stderr: stdout is strata's (the evidence, JSON with
        // --format json), and must stay parseable.
        let to_stderr = std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map(std::process::Stdio::from)
            .unwrap_or_else(|_| std::process::Stdio::null());
        let status = std::process::Command::new(&program)
            .args(&args)
            .stdout(to_stderr)
            .status();
        match status {
            Ok(status) => {
                runs.push(HelmRun {
                    argv,
                    exit_code: status.code(),
                });
                crate::engine::progress::step(
                    "helm_release",
                    &install.release,
                    if status.success() {
                        "upgrade --install done"
                    } else {
                        "upgrade --install failed"
                    },
                );
                if !status.success() {
                    return Err(Error::Cloud(format!(
                        "helm release {} (chart {}): helm upgrade --install failed ({})",
                        install.release,
                        install.chart.display(),
                        status
                    )));
                }
            }
            Err(e) => {
                runs.push(HelmRun {
                    argv,
                    exit_code: None,
                });
                let hint = if e.kind() == std::io::ErrorKind::NotFound {
                    "\n  hint: install helm, set STRATA_HELM to its path, or pass --skip-helm; the cloud resources were applied (see the evidence)"
                } else {
                    ""
                };
                return Err(Error::Cloud(format!(
                    "helm release {}: could not run `{program}`: {e}{hint}",
                    install.release
                )));
            }
        }
    }
    Ok(())
}

/// One `helm uninstall` of destroy, with the context and namespace apply installed with.
#[derive(Debug, Clone, PartialEq)]
pub struct HelmUninstall {
    pub release: String,
    pub namespace: String,
    pub kube_context: String,
    pub timeout: String,
}

/// The releases of a target in uninstall order: apply's installs reversed, so the
/// `platform` release (namespaces, service accounts) goes last.
pub fn uninstalls(target: &Target) -> Result<Vec<HelmUninstall>> {
    Ok(installs(target, Path::new("out"), Path::new("."))?
        .into_iter()
        .rev()
        .map(|i| HelmUninstall {
            release: i.release,
            namespace: i.namespace,
            kube_context: i.kube_context,
            timeout: i.timeout,
        })
        .collect())
}

/// Uninstalls one release; `Ok(false)` when it is not installed (`helm status` says
/// "not found"), which is not an error: a re-run of destroy finds it gone.
pub fn uninstall(u: &HelmUninstall, runs: &mut Vec<HelmRun>) -> Result<bool> {
    let program = binary();
    let scope = [
        "--namespace".to_owned(),
        u.namespace.clone(),
        "--kube-context".to_owned(),
        u.kube_context.clone(),
    ];
    let status_args: Vec<String> = ["status".to_owned(), u.release.clone()]
        .into_iter()
        .chain(scope.iter().cloned())
        .collect();
    let status = std::process::Command::new(&program)
        .args(&status_args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output();
    let mut argv = vec![program.clone()];
    argv.extend(status_args.iter().cloned());
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            runs.push(HelmRun {
                argv,
                exit_code: None,
            });
            return Err(Error::Cloud(format!(
                "helm release {}: could not run `{program}`: {e}",
                u.release
            )));
        }
    };
    runs.push(HelmRun {
        argv,
        exit_code: status.status.code(),
    });
    if !status.status.success() {
        let stderr = String::from_utf8_lossy(&status.stderr);
        if stderr.contains("not found") {
            return Ok(false);
        }
        return Err(Error::Cloud(format!(
            "helm release {}: helm status failed ({}): {}",
            u.release,
            status.status,
            stderr.trim()
        )));
    }
    let args: Vec<String> = ["uninstall".to_owned(), u.release.clone()]
        .into_iter()
        .chain(scope.iter().cloned())
        .chain([
            "--wait".to_owned(),
            "--timeout".to_owned(),
            u.timeout.clone(),
        ])
        .collect();
    let mut argv = vec![program.clone()];
    argv.extend(args.iter().cloned());
    let to_stderr = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::process::Stdio::from)
        .unwrap_or_else(|_| std::process::Stdio::null());
    let done = std::process::Command::new(&program)
        .args(&args)
        .stdout(to_stderr)
        .status();
    runs.push(HelmRun {
        argv,
        exit_code: done.as_ref().ok().and_then(|s| s.code()),
    });
    match done {
        Ok(s) if s.success() => Ok(true),
        Ok(s) => Err(Error::Cloud(format!(
            "helm release {}: helm uninstall failed ({s})",
            u.release
        ))),
        Err(e) => Err(Error::Cloud(format!(
            "helm release {}: could not run `{program}`: {e}",
            u.release
        ))),
    }
}
