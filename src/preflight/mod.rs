//! `strata preflight TARGET… [--write]`: what a target depends on, read from the live
//! cloud before a first apply, and the facts a user should not have to look up.
//!
//! Checks run in order; the first blocking one stops the rest of that target (a later
//! check would only repeat its cause): credentials and account/project → the cluster
//! exists and is ACTIVE/RUNNING → (AWS irsa) its OIDC issuer is `aws.oidcIssuer` → the
//! add-ons the layers need (AWS) / the workload pool and GCS FUSE driver (GCP) → the
//! buckets' names are free or already this target's → discovery: the DNS zone of
//! `dns.domain` and, on AWS, the ACM certificate of each `dns.hosts` entry.
//!
//! Every check is data ([`Check`]: found / missing / assumed / blocking, the evidence,
//! what to do); the face prints it, and each one is reported as progress
//! ([`crate::engine::progress`]) the moment it is recorded. Only read calls are made:
//! nothing is ever written to the cloud.
//! `--write` writes the discovered facts to the target's lock file
//! (`environments/discovered/<target>.yaml`, see [`crate::config::lock`]), atomically
//! and only when they changed. The choices (which zone, which certificate) are pure
//! functions, tested without a cloud.

pub mod aws;
pub mod gcp;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::{Cli, Format};
use crate::config::lock::{self, Facts};
use crate::error::{Error, Result};
use crate::model::{Cloud, DnsHost, Target};
use crate::project::Project;
use crate::report::Reporter;
use crate::{Loaded, exit, model};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// What the target needs is there (or a fact was discovered).
    Found,
    /// A fact was not found; the target can still be applied, and says what to do.
    Missing,
    /// Not checked: the layers say it is there, where preflight cannot see
    /// (`aws.selfManagedAddons`); says how to make sure.
    Assumed,
    /// Apply, or the pods, would fail: exit 2, and the later checks do not run.
    Blocking,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Found => "found",
            Status::Missing => "missing",
            Status::Assumed => "assumed",
            Status::Blocking => "blocking",
        }
    }
}

/// One check and its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// `credentials`, `cluster`, `oidc-issuer`, `addon eks-pod-identity-agent`,
    /// `bucket data`, `dns zone`, `certificate app`…
    pub check: String,
    pub status: Status,
    /// What was read (`cluster lakehouse-dev is ACTIVE`).
    pub evidence: String,
    /// What to do about it: the command or console step (assumed: how to make sure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn found(check: impl Into<String>, evidence: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            status: Status::Found,
            evidence: evidence.into(),
            fix: None,
        }
    }

    pub fn missing(
        check: impl Into<String>,
        evidence: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            check: check.into(),
            status: Status::Missing,
            evidence: evidence.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn assumed(
        check: impl Into<String>,
        evidence: impl Into<String>,
        verify: impl Into<String>,
    ) -> Check {
        Check {
            check: check.into(),
            status: Status::Assumed,
            evidence: evidence.into(),
            fix: Some(verify.into()),
        }
    }

    pub fn blocking(
        check: impl Into<String>,
        evidence: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            check: check.into(),
            status: Status::Blocking,
            evidence: evidence.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The checks of one target so far; a blocking check ends the run.
#[derive(Debug)]
pub struct Checks {
    target: String,
    checks: Vec<Check>,
}

impl Checks {
    pub fn new(target: &str) -> Checks {
        Checks {
            target: target.to_owned(),
            checks: Vec::new(),
        }
    }

    /// Records `check` and reports it as progress (`dev-aws cluster: found`);
    /// `Err(Blocked)` when it blocks (the caller stops with `?`).
    pub fn push(&mut self, check: Check) -> std::result::Result<(), Blocked> {
        crate::engine::progress::step(&self.target, &check.check, check.status.as_str());
        let blocks = check.status == Status::Blocking;
        self.checks.push(check);
        if blocks { Err(Blocked) } else { Ok(()) }
    }

    pub fn into_vec(self) -> Vec<Check> {
        self.checks
    }
}

/// A blocking check was recorded: the rest of the target's checks do not run.
#[derive(Debug)]
pub struct Blocked;

/// What preflight found for one target.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub target: String,
    pub cloud: Cloud,
    /// AWS account id or GCP project id of the target.
    pub account: String,
    pub checks: Vec<Check>,
    /// A blocking check stopped the run; later checks did not run.
    pub blocked: bool,
    /// What discovery found (what `--write` puts in the lock file).
    pub discovered: Facts,
    /// The lock file, relative to the project.
    pub lock_file: String,
    /// `absent`, `same` (matches what was discovered), `differs`, `written`, or
    /// `not-written` (a blocking check: nothing to write).
    pub lock: String,
}

/// The host names of `dns.hosts`, by key.
pub fn hosts(target: &Target) -> Vec<(String, String)> {
    target
        .config
        .dns
        .iter()
        .flat_map(|d| &d.hosts)
        .map(|(key, host)| {
            let name = match host {
                DnsHost::Name(n) => n.clone(),
                DnsHost::Discovered(d) => d.name.clone(),
            };
            (key.clone(), name)
        })
        .collect()
}

/// A zone a DNS service holds: its id, its domain name (no trailing dot), and whether
/// it is private (a private zone does not serve the public site).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub id: String,
    pub name: String,
    pub private: bool,
}

/// The public zone that holds `domain`: its own, or the longest parent zone.
pub fn pick_zone<'a>(domain: &str, zones: &'a [Zone]) -> Option<&'a Zone> {
    let domain = normalize(domain);
    zones
        .iter()
        .filter(|z| !z.private)
        .filter(|z| {
            let zone = normalize(&z.name);
            domain == zone || domain.ends_with(&format!(".{zone}"))
        })
        // Longest first; among equals the smallest id, so the choice is stable.
        .min_by(|a, b| {
            normalize(&b.name)
                .len()
                .cmp(&normalize(&a.name).len())
                .then_with(|| a.id.cmp(&b.id))
        })
}

/// A certificate: its ARN, the names it covers (domain and alternative names), and its
/// status (`ISSUED`, `PENDING_VALIDATION`, `EXPIRED`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub arn: String,
    pub names: Vec<String>,
    pub status: String,
}

/// How a certificate covers a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cover {
    /// A wildcard `*.rest`; the length of `rest` (a longer one is closer to the host).
    Wildcard(usize),
    Exact,
}

/// Whether `name` (`app.example.com` or `*.example.com`) covers `host`: an exact name,
/// or a wildcard for exactly one label (`*.example.com` covers `app.example.com`, not
/// `example.com` nor `a.b.example.com`).
pub fn covers(name: &str, host: &str) -> Option<Cover> {
    let (name, host) = (normalize(name), normalize(host));
    if name == host {
        return Some(Cover::Exact);
    }
    let rest = name.strip_prefix("*.")?;
    let (label, host_rest) = host.split_once('.')?;
    (!label.is_empty() && host_rest == rest).then_some(Cover::Wildcard(rest.len()))
}

/// The certificate for `host`: ISSUED only; an exact name over a wildcard; the longest
/// wildcard that matches; among equals the smallest ARN. Also the best one that is not
/// issued, to say why nothing was found.
pub fn pick_certificate<'a>(
    host: &str,
    certificates: &'a [Certificate],
) -> (Option<&'a Certificate>, Option<&'a Certificate>) {
    let best = |issued: bool| {
        certificates
            .iter()
            .filter(|c| (c.status == "ISSUED") == issued)
            .filter_map(|c| {
                c.names
                    .iter()
                    .filter_map(|n| covers(n, host))
                    .max()
                    .map(|cover| (cover, c))
            })
            .max_by(|(a, ca), (b, cb)| a.cmp(b).then_with(|| cb.arn.cmp(&ca.arn)))
            .map(|(_, c)| c)
    };
    (best(true), best(false))
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// What no longer matches the live world in the target's lock file (for `plan`): a
/// few read calls, by id (the zone, each certificate), not a new discovery.
pub async fn stale_lock(target: &Target, lock: &crate::config::Node) -> Vec<String> {
    let facts = Facts::from_node(lock);
    match target.cloud {
        Cloud::Aws => aws::stale_facts(target, &facts).await,
        Cloud::Gcp => gcp::stale_facts(target, &facts).await,
    }
}

/// The lock file's state against what was discovered.
fn lock_state(project: &Project, target: &str, facts: &Facts) -> Result<(&'static str, String)> {
    let rel = lock::path(target);
    let text = facts.to_yaml(target);
    let state = match project.read(&rel)? {
        None => "absent",
        Some(bytes) if bytes == text.as_bytes() => "same",
        Some(_) => "differs",
    };
    Ok((state, text))
}

/// Writes `text` to `path` through a temporary file beside it and a rename.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("lock"),
        std::process::id()
    ));
    std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Resolves a target from its layers without its lock file: preflight must run when
/// the lock is stale or absent (the first run, when references to the discovered
/// values do not resolve yet), so reference errors do not stop it either.
fn target_without_lock(loaded: &Loaded, name: &str) -> Result<Target> {
    let layers = loaded.select(&[name.to_owned()])?[0].clone();
    let mut layers = layers;
    if layers.lock_file().is_some() {
        layers.files.pop();
    }
    let merged = loaded.layers.merge(&layers);
    model::resolve(layers, merged)
}

pub fn preflight_command(cli: &Cli, out: &Reporter, names: &[String], write: bool) -> Result<u8> {
    if names.is_empty() {
        return Err(Error::Usage(
            "preflight needs at least one target (`strata preflight dev-aws`)".into(),
        ));
    }
    let loaded = Loaded::load(Project::discover(&cli.project)?)?;
    if write && loaded.project.root().is_none() {
        return Err(Error::Usage(
            "--write needs a project on disk (the lock file goes into its environments/discovered/)".into(),
        ));
    }
    let mut targets = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        match target_without_lock(&loaded, name) {
            Ok(t) => targets.push(t),
            Err(e) => errors.push(e),
        }
    }
    Error::from_list(errors)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    let mut reports = Vec::new();
    for target in &targets {
        let (checks, facts) = match target.cloud {
            Cloud::Aws => runtime.block_on(aws::run(target)),
            Cloud::Gcp => runtime.block_on(gcp::run(target)),
        };
        let blocked = checks.iter().any(|c| c.status == Status::Blocking);
        let (mut state, text) = lock_state(&loaded.project, &target.name, &facts)?;
        if blocked {
            state = "not-written";
        } else if write && state != "same" {
            let root = loaded.project.root().expect("checked above");
            write_atomically(&root.join(lock::path(&target.name)), &text)?;
            state = "written";
        }
        reports.push(Report {
            target: target.name.clone(),
            cloud: target.cloud,
            account: match target.cloud {
                Cloud::Aws => target.aws().account_id.clone(),
                Cloud::Gcp => target.gcp().project_id.clone(),
            },
            checks,
            blocked,
            discovered: facts,
            lock_file: lock::path(&target.name),
            lock: state.to_owned(),
        });
    }
    print(out, &reports, write);
    Ok(if reports.iter().any(|r| r.blocked) {
        exit::ERROR
    } else {
        exit::OK
    })
}

fn print(out: &Reporter, reports: &[Report], write: bool) {
    if out.format == Format::Json {
        out.json(&reports);
        return;
    }
    for r in reports {
        let scope = match r.cloud {
            Cloud::Aws => "account",
            Cloud::Gcp => "project",
        };
        out.line(format!(
            "preflight {} ({} {scope} {})",
            r.target, r.cloud, r.account
        ));
        for c in &r.checks {
            let (word, style) = match c.status {
                Status::Found => ("found", "32"),
                Status::Missing => ("missing", "33"),
                Status::Assumed => ("assumed", "36"),
                Status::Blocking => ("BLOCKING", "1;31"),
            };
            out.line(format!(
                "  {} {}: {}",
                out.paint(style, &format!("{word:>8}")),
                c.check,
                c.evidence
            ));
            if let Some(fix) = &c.fix {
                let label = match c.status {
                    Status::Assumed => "verify",
                    _ => "fix",
                };
                out.line(format!("           {label}: {fix}"));
            }
        }
        let lock = match r.lock.as_str() {
            "not-written" => format!(
                "stopped at a blocking check; {} not written: fix it and run preflight again",
                r.lock_file
            ),
            "written" => format!("{} written; review and commit it", r.lock_file),
            "same" => format!("{} is up to date", r.lock_file),
            "differs" if !write => format!(
                "{} differs from what was discovered; `strata preflight {} --write` updates it",
                r.lock_file, r.target
            ),
            _ if !write => format!(
                "{} does not exist; `strata preflight {} --write` writes it",
                r.lock_file, r.target
            ),
            _ => format!("{} unchanged", r.lock_file),
        };
        out.line(format!("  {lock}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(arn: &str, names: &[&str], status: &str) -> Certificate {
        Certificate {
            arn: arn.into(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            status: status.into(),
        }
    }

    #[test]
    fn a_wildcard_covers_one_label_only() {
        assert_eq!(
            covers("app.example.com", "APP.example.com."),
            Some(Cover::Exact)
        );
        assert_eq!(
            covers("*.example.com", "app.example.com"),
            Some(Cover::Wildcard(11))
        );
        assert_eq!(covers("*.example.com", "example.com"), None);
        assert_eq!(covers("*.example.com", "a.b.example.com"), None);
        assert_eq!(
            covers("*.b.example.com", "a.b.example.com"),
            Some(Cover::Wildcard(13))
        );
        assert_eq!(covers("other.example.com", "app.example.com"), None);
    }

    #[test]
    fn exact_beats_wildcard_and_only_issued_counts() {
        let certs = [
            cert("arn:wild", &["*.example.com"], "ISSUED"),
            cert("arn:exact", &["example.com", "app.example.com"], "ISSUED"),
            cert("arn:pending", &["app.example.com"], "PENDING_VALIDATION"),
        ];
        let (issued, other) = pick_certificate("app.example.com", &certs);
        assert_eq!(issued.map(|c| c.arn.as_str()), Some("arn:exact"));
        assert_eq!(other.map(|c| c.arn.as_str()), Some("arn:pending"));
        let (issued, _) = pick_certificate("web.example.com", &certs);
        assert_eq!(issued.map(|c| c.arn.as_str()), Some("arn:wild"));
        let (issued, other) = pick_certificate("api.example.org", &certs);
        assert!(issued.is_none() && other.is_none());
        let only_pending = [cert(
            "arn:pending",
            &["app.example.com"],
            "PENDING_VALIDATION",
        )];
        let (issued, other) = pick_certificate("app.example.com", &only_pending);
        assert!(issued.is_none());
        assert_eq!(other.map(|c| c.arn.as_str()), Some("arn:pending"));
    }

    #[test]
    fn the_longest_wildcard_wins_and_ties_are_stable() {
        let certs = [
            cert("arn:b", &["*.dev.example.com"], "ISSUED"),
            cert("arn:a", &["*.dev.example.com"], "ISSUED"),
            cert(
                "arn:short",
                &["*.example.com", "*.dev.example.com"],
                "EXPIRED",
            ),
        ];
        let (issued, _) = pick_certificate("app.dev.example.com", &certs);
        assert_eq!(issued.map(|c| c.arn.as_str()), Some("arn:a"));
    }

    #[test]
    fn the_longest_public_zone_holds_the_domain() {
        let zone = |id: &str, name: &str, private| Zone {
            id: id.into(),
            name: name.into(),
            private,
        };
        let zones = [
            zone("Z1", "example.com.", false),
            zone("Z2", "dev.example.com.", false),
            zone("Z3", "app.dev.example.com.", true),
            zone("Z4", "ample.com.", false),
        ];
        assert_eq!(
            pick_zone("app.dev.example.com", &zones).map(|z| z.id.as_str()),
            Some("Z2")
        );
        assert_eq!(
            pick_zone("example.com", &zones).map(|z| z.id.as_str()),
            Some("Z1")
        );
        assert_eq!(pick_zone("www.example.org", &zones), None);
    }
}
