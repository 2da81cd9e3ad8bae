//! The desired state of one target, as data: its buckets, its workloads with their
//! identity documents, its releases with their values, and its platform chart.
//!
//! Computed once from the resolved [`Target`] and used by render (which prints it),
//! check (which judges what render printed) and explain. Pure: no I/O, no cloud.

pub mod buckets;
pub mod iam;
pub mod platform;

use indexmap::IndexMap;
use serde_json::Value as J;
use std::sync::Arc;

use crate::config::{Loc, Node, Value};
use crate::error::{Error, Located, Result};
use crate::model::{Access, Cloud, SecretKey, Target};

/// Everything strata renders for one target, before it is turned into bytes.
#[derive(Debug, Clone)]
pub struct Desired {
    pub buckets: Vec<BucketSpec>,
    pub workloads: Vec<WorkloadSpec>,
    pub releases: Vec<ReleaseSpec>,
}

#[derive(Debug, Clone)]
pub struct BucketSpec {
    pub key: String,
    /// `buckets/<key>.json`: every setting apply converges to.
    pub document: Arc<J>,
    /// Where the bucket is declared.
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub key: String,
    pub service_account: String,
    pub namespace: String,
    /// Bucket key → access level.
    pub access: IndexMap<String, Access>,
    /// Bucket key → mount path.
    pub mounts: IndexMap<String, String>,
    /// aws: `iam/<key>.policy.json` and `iam/<key>.trust.json`.
    pub policy: Option<Arc<J>>,
    pub trust: Option<Arc<J>>,
    /// gcp: `iam/<key>.gcp.json`.
    pub gcp: Option<Arc<J>>,
    /// `env/<key>.env`: plain variables (resolved) and secret references.
    pub env: IndexMap<String, String>,
    pub secrets: IndexMap<String, SecretKey>,
    /// Where each statement of the policy came from: strata (`None`) or a layer line.
    pub statement_locs: Vec<Option<Loc>>,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
pub struct ReleaseSpec {
    pub key: String,
    pub chart: String,
    pub namespace: String,
    pub timeout: String,
    pub strict_values: bool,
    /// The resolved values, with the location of every value.
    pub values: Node,
    /// Where `values:` (or the release) is written.
    pub values_loc: Loc,
}

/// Builds the desired state of a target, reporting every problem at its line.
pub fn build(target: &Target) -> Result<Desired> {
    let mut errors = Vec::new();
    let c = &target.config;

    // Every bucket key a workload names must exist.
    for (wkey, workload) in &c.workloads {
        let uses = workload
            .access
            .keys()
            .map(|b| (b, "access"))
            .chain(workload.mounts.keys().map(|b| (b, "mounts")))
            .chain(
                workload
                    .roles
                    .iter()
                    .filter_map(|r| r.bucket.as_ref())
                    .map(|b| (b, "roles")),
            );
        for (bucket, section) in uses {
            if !c.buckets.contains_key(bucket) {
                let path = format!("workloads.{wkey}.{section}.{bucket}");
                let hint =
                    match crate::suggest::closest(bucket, c.buckets.keys().map(String::as_str)) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None if c.buckets.is_empty() => {
                            "no bucket is declared under `buckets:`".to_owned()
                        }
                        None => format!(
                            "buckets: {}",
                            c.buckets.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    };
                let loc = if section == "roles" {
                    target.loc_of(&format!("workloads.{wkey}.roles"))
                } else {
                    target.key_loc_of(&path)
                };
                errors.push(
                    Located::new(loc, path, format!("no bucket `{bucket}` in this target"))
                        .hint(hint)
                        .into(),
                );
            }
        }
        for (bucket, mount) in &workload.mounts {
            if !mount.starts_with('/') {
                errors.push(
                    Located::new(
                        target.loc_of(&format!("workloads.{wkey}.mounts.{bucket}")),
                        format!("workloads.{wkey}.mounts.{bucket}"),
                        format!("a mount path must be absolute, found {mount:?}"),
                    )
                    .into(),
                );
            }
            if c.buckets.contains_key(bucket) && !workload.access.contains_key(bucket) {
                errors.push(
                    Located::new(
                        target.key_loc_of(&format!("workloads.{wkey}.mounts.{bucket}")),
                        format!("workloads.{wkey}.mounts.{bucket}"),
                        format!(
                            "workload `{wkey}` mounts bucket `{bucket}` but has no access to it"
                        ),
                    )
                    .hint(format!(
                        "add `access: {{{bucket}: read}}` (or readwrite) to the workload"
                    ))
                    .into(),
                );
            }
        }
    }

    let buckets: Vec<BucketSpec> = c
        .buckets
        .iter()
        .map(|(key, bucket)| BucketSpec {
            key: key.clone(),
            document: Arc::new(buckets::document(target, key, bucket)),
            loc: target.key_loc_of(&format!("buckets.{key}")),
        })
        .collect();

    let mut workloads = Vec::new();
    for (key, workload) in &c.workloads {
        let names = &target.names.workloads[key];
        let env = match env_vars(target, key) {
            Ok(env) => env,
            Err(mut e) => {
                errors.append(&mut e);
                IndexMap::new()
            }
        };
        let extra = match iam::statements(target, key) {
            Ok(extra) => extra,
            Err(mut e) => {
                errors.append(&mut e);
                Vec::new()
            }
        };
        let (policy, trust, gcp, statement_locs) = match target.cloud {
            Cloud::Aws => {
                let (policy, locs) = iam::aws_policy(target, key, workload, extra);
                (
                    Some(Arc::new(policy)),
                    Some(Arc::new(iam::aws_trust(target, key))),
                    None,
                    locs,
                )
            }
            Cloud::Gcp => (
                None,
                None,
                Some(Arc::new(iam::gcp_document(target, key, workload))),
                Vec::new(),
            ),
        };
        workloads.push(WorkloadSpec {
            key: key.clone(),
            service_account: names.service_account.clone(),
            namespace: names.namespace.clone(),
            access: workload.access.clone(),
            mounts: workload.mounts.clone(),
            policy,
            trust,
            gcp,
            env,
            secrets: workload
                .secrets
                .iter()
                .map(|(k, v)| (k.clone(), v.secret_ref.clone()))
                .collect(),
            statement_locs,
            loc: target.key_loc_of(&format!("workloads.{key}")),
        });
    }

    let mut releases = Vec::new();
    for (key, release) in &c.releases {
        let path = format!("releases.{key}.values");
        let values = target.resolved_at(&path).cloned().unwrap_or_else(|| {
            let loc = target.key_loc_of(&format!("releases.{key}"));
            Node {
                value: Value::Map(Default::default()),
                loc: loc.clone(),
                key_loc: loc,
            }
        });
        let values = match &values.value {
            Value::Map(_) => values,
            Value::Null => Node {
                value: Value::Map(Default::default()),
                ..values
            },
            other => {
                errors.push(
                    Located::new(
                        values.loc.clone(),
                        path.clone(),
                        format!("release values must be a mapping, found {}", other.kind()),
                    )
                    .into(),
                );
                continue;
            }
        };
        releases.push(ReleaseSpec {
            key: key.clone(),
            chart: release.chart.trim_end_matches('/').to_owned(),
            namespace: release
                .namespace
                .clone()
                .unwrap_or_else(|| target.names.namespace.clone()),
            timeout: release.timeout.clone(),
            strict_values: release.strict_values,
            values_loc: target.key_loc_of(&path),
            values,
        });
    }
    Error::from_list(errors)?;
    Ok(Desired {
        buckets,
        workloads,
        releases,
    })
}

/// A workload's plain environment variables, each a scalar after references.
fn env_vars(
    target: &Target,
    key: &str,
) -> std::result::Result<IndexMap<String, String>, Vec<Error>> {
    let path = format!("workloads.{key}.env");
    let Some(node) = target.resolved_at(&path) else {
        return Ok(IndexMap::new());
    };
    let mut errors = Vec::new();
    let mut env = IndexMap::new();
    match &node.value {
        Value::Null => {}
        Value::Map(entries) => {
            for (name, value) in entries.iter() {
                let text = match &value.value {
                    // Its reference failed, and says so.
                    Value::Null if target.unresolved_at(&value.loc) => {
                        continue;
                    }
                    Value::Str(s) => s.clone(),
                    Value::Int(i) => i.to_string(),
                    Value::Float(f) => f.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        errors.push(
                            Located::new(
                                value.loc.clone(),
                                format!("{path}.{name}"),
                                format!("an environment variable is a string, number or boolean, found {}", other.kind()),
                            )
                            .into(),
                        );
                        continue;
                    }
                };
                // A process environment cannot hold a NUL, and the other control
                // characters (a carriage return, an escape) would be written raw into
                // the .env file; newlines and tabs are escaped there and are fine.
                if let Some(c) = text
                    .chars()
                    .find(|c| c.is_control() && !matches!(c, '\n' | '\t'))
                {
                    errors.push(
                        Located::new(
                            value.loc.clone(),
                            format!("{path}.{name}"),
                            format!(
                                "an environment variable cannot hold the control character U+{:04X}",
                                u32::from(c)
                            ),
                        )
                        .hint("remove it from the value (only newlines and tabs are allowed)")
                        .into(),
                    );
                    continue;
                }
                env.insert(name.clone(), text);
            }
        }
        other => errors.push(
            Located::new(
                node.loc.clone(),
                path,
                format!("expected a mapping of NAME: value, found {}", other.kind()),
            )
            .into(),
        ),
    }
    if errors.is_empty() {
        Ok(env)
    } else {
        Err(errors)
    }
}
