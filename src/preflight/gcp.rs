//! Preflight on GCP, read calls only: Cloud Storage buckets.list (credentials and
//! project) and buckets.get, GKE clusters.get (status, workload pool, GCS FUSE CSI
//! driver), Cloud DNS managedZones.list.
//!
//! Endpoints: Google's, or gcloud's override variables
//! (`CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER`, `CLOUDSDK_API_ENDPOINT_OVERRIDES_DNS`)
//! and `STORAGE_EMULATOR_HOST`, as apply uses them.

use reqwest::Method;
use serde_json::Value;

use super::{Blocked, Check, Checks, Zone, pick_zone};
use crate::config::lock::{Facts, HostFacts};
use crate::model::Target;
use crate::resources::gcp::client::Client;

pub const CONTAINER_ENDPOINT_VAR: &str = "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER";
const CONTAINER_BASE: &str = "https://container.googleapis.com/v1";
pub const DNS_ENDPOINT_VAR: &str = "CLOUDSDK_API_ENDPOINT_OVERRIDES_DNS";
const DNS_BASE: &str = "https://dns.googleapis.com/dns/v1";

/// Runs every check of a GCP target, in order, until one blocks.
pub async fn run(target: &Target) -> (Vec<Check>, Facts) {
    let mut checks = Checks::new(&target.name);
    let mut facts = Facts::default();
    let _ = checks_in_order(target, &mut checks, &mut facts).await;
    (checks.into_vec(), facts)
}

fn credentials_fix(project: &str) -> String {
    format!(
        "give strata credentials that can read project {project} (`gcloud auth application-default login`, GOOGLE_APPLICATION_CREDENTIALS)"
    )
}

async fn checks_in_order(
    target: &Target,
    checks: &mut Checks,
    facts: &mut Facts,
) -> Result<(), Blocked> {
    let gcp = target.gcp();
    let project = &gcp.project_id;
    let storage = match Client::from_env().await {
        Ok(c) => c,
        Err(e) => {
            return checks.push(Check::blocking(
                "credentials",
                e.to_string(),
                credentials_fix(project),
            ));
        }
    };
    let query = [("project", project.clone()), ("maxResults", "1".to_owned())];
    let what = format!("list the buckets of project {project}");
    match storage.send(Method::GET, "/b", &query, None, &what).await {
        Ok(r) if r.ok() => checks.push(Check::found(
            "credentials",
            format!("the credentials can read project {project} (gcp.projectId)"),
        ))?,
        Ok(r) => checks.push(Check::blocking(
            "credentials",
            format!("{what}: HTTP {}: {}", r.status, r.message()),
            credentials_fix(project),
        ))?,
        Err(e) => checks.push(Check::blocking(
            "credentials",
            e.to_string(),
            credentials_fix(project),
        ))?,
    }
    if let Some(cluster) = &gcp.cluster {
        cluster_checks(target, cluster, checks).await?;
    } else if !target.config.workloads.is_empty() {
        checks.push(Check::missing(
            "cluster",
            "gcp.cluster is not set: the cluster and its workload pool were not checked",
            "set gcp.cluster and gcp.clusterLocation to the GKE cluster's",
        ))?;
    }
    for (key, names) in &target.names.buckets {
        let adopt = target.config.buckets.get(key).is_some_and(|b| b.adopt);
        checks.push(bucket_check(&storage, target, key, &names.name, adopt).await)?;
    }
    discover(target, checks, facts).await
}

async fn cluster_checks(
    target: &Target,
    cluster: &str,
    checks: &mut Checks,
) -> Result<(), Blocked> {
    let gcp = target.gcp();
    let project = &gcp.project_id;
    let Some(location) = &gcp.cluster_location else {
        return checks.push(Check::blocking(
            "cluster",
            "gcp.clusterLocation is not set: the cluster cannot be found",
            "set gcp.clusterLocation to the cluster's region or zone",
        ));
    };
    let client = match Client::google_api_from_env(CONTAINER_ENDPOINT_VAR, CONTAINER_BASE).await {
        Ok(c) => c,
        Err(e) => {
            return checks.push(Check::blocking(
                "cluster",
                e.to_string(),
                credentials_fix(project),
            ));
        }
    };
    let path = format!("/projects/{project}/locations/{location}/clusters/{cluster}");
    let what = format!("GKE clusters.get {cluster}");
    let live: Value = match client.send(Method::GET, &path, &[], None, &what).await {
        Ok(r) if r.ok() => r.body,
        Ok(r) if r.status == 404 => {
            return checks.push(Check::blocking(
                "cluster",
                format!("GKE cluster {cluster} does not exist in {project}/{location}"),
                format!(
                    "create it (`gcloud container clusters create-auto {cluster} --location {location} --project {project}`), or set gcp.cluster / gcp.clusterLocation to the cluster's"
                ),
            ));
        }
        Ok(r) => {
            return checks.push(Check::blocking(
                "cluster",
                format!("{what}: HTTP {}: {}", r.status, r.message()),
                "allow container.clusters.get to these credentials",
            ));
        }
        Err(e) => {
            return checks.push(Check::blocking(
                "cluster",
                e.to_string(),
                credentials_fix(project),
            ));
        }
    };
    let status = live["status"].as_str().unwrap_or("UNKNOWN");
    if status != "RUNNING" {
        return checks.push(Check::blocking(
            "cluster",
            format!("GKE cluster {cluster} is {status}, not RUNNING"),
            format!("wait until it is RUNNING: `gcloud container clusters describe {cluster} --location {location} --project {project} --format 'value(status)'`"),
        ));
    }
    checks.push(Check::found(
        "cluster",
        format!("GKE cluster {cluster} is RUNNING in {location}"),
    ))?;
    if !target.config.workloads.is_empty() {
        let want = format!("{project}.svc.id.goog");
        let pool = live["workloadIdentityConfig"]["workloadPool"].as_str();
        checks.push(if pool == Some(want.as_str()) {
            Check::found("workload-pool", format!("Workload Identity is on ({want})"))
        } else {
            Check::blocking(
                "workload-pool",
                match pool {
                    Some(other) => format!("the cluster's workload pool is {other}, not {want}"),
                    None => "Workload Identity is off on the cluster".to_owned(),
                },
                format!("`gcloud container clusters update {cluster} --location {location} --project {project} --workload-pool={want}`"),
            )
        })?;
    }
    if target
        .config
        .workloads
        .values()
        .any(|w| !w.mounts.is_empty())
    {
        let on = live["addonsConfig"]["gcsFuseCsiDriverConfig"]["enabled"].as_bool() == Some(true);
        checks.push(if on {
            Check::found("addon gcs-fuse-csi-driver", "the GCS FUSE CSI driver is enabled")
        } else {
            Check::blocking(
                "addon gcs-fuse-csi-driver",
                format!("the GCS FUSE CSI driver is not enabled on {cluster}; pods that mount a bucket would not start"),
                format!("`gcloud container clusters update {cluster} --location {location} --project {project} --update-addons GcsFuseCsiDriver=ENABLED`"),
            )
        })?;
    }
    Ok(())
}

async fn bucket_check(
    storage: &Client,
    target: &Target,
    key: &str,
    name: &str,
    adopt: bool,
) -> Check {
    let check = format!("bucket {key}");
    let other_name = format!("set buckets.{key}.name to another name (bucket names are global)");
    let what = format!("GCS buckets.get {name}");
    match storage
        .send(Method::GET, &format!("/b/{name}"), &[], None, &what)
        .await
    {
        Ok(r) if r.status == 404 => Check::found(check, format!("gcs bucket {name} is free")),
        Ok(r) if r.status == 403 => Check::blocking(
            check,
            format!("gcs bucket {name} exists and belongs to another project"),
            other_name,
        ),
        Ok(r) if r.ok() => {
            let label = |k: &str| r.body["labels"][k].as_str().map(str::to_owned);
            let managed = label("managed-by").as_deref() == Some("strata");
            match label("strata-target") {
                Some(owner) if managed && owner == target.name => Check::found(
                    check,
                    format!("gcs bucket {name} exists and is this target's"),
                ),
                Some(owner) if managed => Check::blocking(
                    check,
                    format!("gcs bucket {name} belongs to strata target {owner}"),
                    other_name,
                ),
                _ if adopt => Check::found(
                    check,
                    format!(
                        "gcs bucket {name} exists, not made by strata; `adopt: true` takes it over"
                    ),
                ),
                _ => Check::blocking(
                    check,
                    format!("gcs bucket {name} exists but strata did not make it"),
                    format!("set `adopt: true` on buckets.{key} to take it over, or {other_name}"),
                ),
            }
        }
        Ok(r) => Check::blocking(
            check,
            format!("{what}: HTTP {}: {}", r.status, r.message()),
            "allow storage.buckets.get to these credentials",
        ),
        Err(e) => Check::blocking(check, e.to_string(), "check the network and credentials"),
    }
}

async fn discover(target: &Target, checks: &mut Checks, facts: &mut Facts) -> Result<(), Blocked> {
    let project = &target.gcp().project_id;
    for (key, name) in super::hosts(target) {
        // Certificates are not discovered on GCP (Google-managed certificates are made
        // per load balancer); the lock keeps the host names for the stale check only.
        facts.hosts.insert(
            key,
            HostFacts {
                name,
                cert_arn: None,
            },
        );
    }
    let Some(domain) = target.config.dns.as_ref().and_then(|d| d.domain.clone()) else {
        return Ok(());
    };
    facts.domain = Some(domain.clone());
    let client = match Client::google_api_from_env(DNS_ENDPOINT_VAR, DNS_BASE).await {
        Ok(c) => c,
        Err(e) => {
            return checks.push(Check::blocking(
                "dns zone",
                e.to_string(),
                credentials_fix(project),
            ));
        }
    };
    let mut zones = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut query = Vec::new();
        if let Some(t) = &token {
            query.push(("pageToken", t.clone()));
        }
        let what = format!("Cloud DNS managedZones.list {project}");
        let reply = match client
            .send(
                Method::GET,
                &format!("/projects/{project}/managedZones"),
                &query,
                None,
                &what,
            )
            .await
        {
            Ok(r) if r.ok() => r,
            Ok(r) => {
                return checks.push(Check::blocking(
                    "dns zone",
                    format!("{what}: HTTP {}: {}", r.status, r.message()),
                    "enable the Cloud DNS API in the project and allow dns.managedZones.list",
                ));
            }
            Err(e) => {
                return checks.push(Check::blocking(
                    "dns zone",
                    e.to_string(),
                    credentials_fix(project),
                ));
            }
        };
        for z in reply.body["managedZones"].as_array().into_iter().flatten() {
            zones.push(Zone {
                id: z["name"].as_str().unwrap_or_default().to_owned(),
                name: z["dnsName"].as_str().unwrap_or_default().to_owned(),
                private: z["visibility"].as_str() == Some("private"),
            });
        }
        match reply.body["nextPageToken"].as_str() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    match pick_zone(&domain, &zones) {
        Some(zone) => {
            facts.zone_id = Some(zone.id.clone());
            checks.push(Check::found(
                "dns zone",
                format!("Cloud DNS zone {} ({}) holds {domain}", zone.id, zone.name.trim_end_matches('.')),
            ))
        }
        None => checks.push(Check::missing(
            "dns zone",
            format!("no public Cloud DNS zone in {project} holds {domain}"),
            format!("create one (`gcloud dns managed-zones create NAME --dns-name {domain}. --description strata --project {project}`) and delegate {domain} to its name servers"),
        )),
    }
}

/// What no longer holds of a lock file's facts: the managed zone, read by its name.
pub async fn stale_facts(target: &Target, facts: &Facts) -> Vec<String> {
    let (Some(zone), Some(domain)) = (&facts.zone_id, &facts.domain) else {
        return Vec::new();
    };
    let project = &target.gcp().project_id;
    let client = match Client::google_api_from_env(DNS_ENDPOINT_VAR, DNS_BASE).await {
        Ok(c) => c,
        Err(e) => return vec![format!("dns.zoneId: {e}")],
    };
    let what = format!("Cloud DNS managedZones.get {zone}");
    let path = format!("/projects/{project}/managedZones/{zone}");
    match client.send(Method::GET, &path, &[], None, &what).await {
        Ok(r) if r.ok() => {
            let name = r.body["dnsName"].as_str().unwrap_or_default().to_owned();
            let live = Zone {
                id: zone.clone(),
                name: name.clone(),
                private: r.body["visibility"].as_str() == Some("private"),
            };
            if pick_zone(domain, std::slice::from_ref(&live)).is_some() {
                Vec::new()
            } else {
                vec![format!(
                    "dns.zoneId: managed zone {zone} is {name}, which does not hold {domain}"
                )]
            }
        }
        Ok(r) if r.status == 404 => {
            vec![format!("dns.zoneId: managed zone {zone} no longer exists")]
        }
        Ok(r) => vec![format!(
            "dns.zoneId: {what}: HTTP {}: {}",
            r.status,
            r.message()
        )],
        Err(e) => vec![format!("dns.zoneId: {e}")],
    }
}
