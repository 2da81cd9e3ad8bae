//! The names strata derives for a target's cloud and cluster resources.
//!
//! Each name is a convention unless the layers set it; [`Derivation`] records which,
//! and from which keys, so that `explain` can say how a name was made.
//!
//! | name | convention |
//! |---|---|
//! | bucket | aws `<project>-<env>-<key>-<accountId>`, gcp `<projectId>-<env>-<key>` (bucket names are global; account and project ids are unique; two environments may share an account or project) |
//! | service account | `<project>-<workload>` |
//! | namespace | `kube.namespace`, else `project.name` |
//! | IAM role and policy (aws) | `<iamPrefix>-<env>-<workload>` (`iamPrefix` default `project.name`) |
//! | Google service account (gcp) | `<project>-<env>-<workload>`, email `<id>@<projectId>.iam.gserviceaccount.com` |
//! | kube context | aws `arn:<partition>:eks:<region>:<account>:cluster/<cluster>`, gcp `gke_<projectId>_<clusterLocation>_<cluster>` |

use indexmap::IndexMap;
use serde::Serialize;

use super::{Cloud, Config, partition};

/// Every derived name of one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Names {
    /// The kube context helm uses; `None` when neither the layers nor a cluster give one.
    pub kube_context: Option<String>,
    /// The default namespace.
    pub namespace: String,
    pub buckets: IndexMap<String, BucketNames>,
    pub workloads: IndexMap<String, WorkloadNames>,
    pub derivations: Vec<Derivation>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketNames {
    pub name: String,
    /// `s3://name` or `gs://name`.
    pub url: String,
    /// aws only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadNames {
    pub service_account: String,
    pub namespace: String,
    /// aws only: the IAM role, and the managed policy of the same name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_arn: Option<String>,
    /// gcp only: the Google service account's id and email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gsa_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gsa_email: Option<String>,
}

/// One derived name and how it was made, for `explain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Derivation {
    /// The reference path of the name (`buckets.data.name`).
    pub path: String,
    pub value: String,
    /// `convention` or `set`.
    pub rule: &'static str,
    /// Config key paths the name was built from (or the key that set it).
    pub inputs: Vec<String>,
}

struct Deriver {
    derivations: Vec<Derivation>,
}

impl Deriver {
    fn pick(
        &mut self,
        path: String,
        set: Option<&String>,
        set_at: String,
        convention: impl FnOnce() -> String,
        inputs: &[&str],
    ) -> String {
        let (value, rule, inputs) = match set {
            Some(v) => (v.clone(), "set", vec![set_at]),
            None => (
                convention(),
                "convention",
                inputs.iter().map(|s| s.to_string()).collect(),
            ),
        };
        self.derivations.push(Derivation {
            path,
            value: value.clone(),
            rule,
            inputs,
        });
        value
    }
}

/// Derives every name of a target from its typed keys.
pub fn derive(config: &Config, cloud: Cloud, env: &str, _target: &str) -> Names {
    let project = &config.project.name;
    let mut d = Deriver {
        derivations: Vec::new(),
    };
    let namespace = d.pick(
        "kube.namespace".into(),
        config.kube.namespace.as_ref(),
        "kube.namespace".into(),
        || project.clone(),
        &["project.name"],
    );
    let kube_context = match (&config.kube.context, cloud) {
        (Some(context), _) => Some(d.pick(
            "kube.context".into(),
            Some(context),
            "kube.context".into(),
            String::new,
            &[],
        )),
        (None, Cloud::Aws) => config.aws.as_ref().and_then(|aws| {
            let cluster = aws.cluster.as_ref()?;
            Some(d.pick(
                "kube.context".into(),
                None,
                String::new(),
                || {
                    format!(
                        "arn:{}:eks:{}:{}:cluster/{cluster}",
                        partition(&aws.region),
                        aws.region,
                        aws.account_id
                    )
                },
                &["aws.region", "aws.accountId", "aws.cluster"],
            ))
        }),
        (None, Cloud::Gcp) => config.gcp.as_ref().and_then(|gcp| {
            let cluster = gcp.cluster.as_ref()?;
            let location = gcp.cluster_location.as_ref()?;
            Some(d.pick(
                "kube.context".into(),
                None,
                String::new(),
                || format!("gke_{}_{location}_{cluster}", gcp.project_id),
                &["gcp.projectId", "gcp.clusterLocation", "gcp.cluster"],
            ))
        }),
    };

    let mut buckets = IndexMap::new();
    for (key, bucket) in &config.buckets {
        let name = d.pick(
            format!("buckets.{key}.name"),
            bucket.name.as_ref(),
            format!("buckets.{key}.name"),
            || match (cloud, &config.aws, &config.gcp) {
                (Cloud::Aws, Some(aws), _) => format!("{project}-{env}-{key}-{}", aws.account_id),
                (Cloud::Gcp, _, Some(gcp)) => format!("{}-{env}-{key}", gcp.project_id),
                _ => format!("{project}-{env}-{key}"),
            },
            match cloud {
                Cloud::Aws => &["project.name", "target.env", "aws.accountId"],
                Cloud::Gcp => &["gcp.projectId", "target.env"],
            },
        );
        let (url, arn) = match cloud {
            Cloud::Aws => {
                let region = config.aws.as_ref().map_or("", |a| a.region.as_str());
                (
                    format!("s3://{name}"),
                    Some(format!("arn:{}:s3:::{name}", partition(region))),
                )
            }
            Cloud::Gcp => (format!("gs://{name}"), None),
        };
        buckets.insert(key.clone(), BucketNames { name, url, arn });
    }

    let mut workloads = IndexMap::new();
    for (key, workload) in &config.workloads {
        let service_account = d.pick(
            format!("workloads.{key}.serviceAccount"),
            workload.service_account.as_ref(),
            format!("workloads.{key}.serviceAccount"),
            || format!("{project}-{key}"),
            &["project.name"],
        );
        let ns = d.pick(
            format!("workloads.{key}.namespace"),
            workload.namespace.as_ref(),
            format!("workloads.{key}.namespace"),
            || namespace.clone(),
            &["kube.namespace"],
        );
        let mut names = WorkloadNames {
            service_account,
            namespace: ns,
            role: None,
            role_arn: None,
            policy_arn: None,
            gsa_id: None,
            gsa_email: None,
        };
        match (cloud, &config.aws, &config.gcp) {
            (Cloud::Aws, Some(aws), _) => {
                let prefix = aws.iam_prefix.as_deref().unwrap_or(project);
                let role = d.pick(
                    format!("workloads.{key}.role"),
                    workload.iam_role.as_ref(),
                    format!("workloads.{key}.iamRole"),
                    || format!("{prefix}-{env}-{key}"),
                    &["aws.iamPrefix", "project.name", "target.env"],
                );
                let part = partition(&aws.region);
                names.role_arn = Some(format!("arn:{part}:iam::{}:role/{role}", aws.account_id));
                names.policy_arn =
                    Some(format!("arn:{part}:iam::{}:policy/{role}", aws.account_id));
                names.role = Some(role);
            }
            (Cloud::Gcp, _, Some(gcp)) => {
                let id = d.pick(
                    format!("workloads.{key}.gsaId"),
                    workload.gcp_service_account.as_ref(),
                    format!("workloads.{key}.gcpServiceAccount"),
                    || format!("{project}-{env}-{key}"),
                    &["project.name", "target.env"],
                );
                names.gsa_email = Some(format!("{id}@{}.iam.gserviceaccount.com", gcp.project_id));
                names.gsa_id = Some(id);
            }
            _ => {}
        }
        workloads.insert(key.clone(), names);
    }
    Names {
        kube_context,
        namespace,
        buckets,
        workloads,
        derivations: d.derivations,
    }
}
