//! The apply lock: one apply or destroy of a target at a time.
//!
//! A lock is something only one run can create, holding who made it (user, host, pid,
//! command) and since when:
//! - AWS: an IAM managed policy `strata-lock-<first bucket>` (path `/strata-lock/`)
//!   that grants nothing and is never attached. IAM refuses a second CreatePolicy of a
//!   name (EntityAlreadyExists), which is the lock; the description holds the holder.
//!   Not an object in the bucket with `If-None-Match: *`: strata's deny-insecure-transport
//!   bucket policy makes moto (which ignores policy conditions) refuse every object write
//!   over its plain-HTTP endpoint, and a target without buckets could not be locked.
//! - GCP: an object [`KEY`] in the target's first bucket, uploaded with
//!   `ifGenerationMatch=0` (GCS answers 412 when it exists), after a read of the key
//!   (which is what catches a held lock on gcp-storage-emulator, which ignores the
//!   precondition). A GCP target without buckets, or whose first bucket does not exist
//!   yet (its first apply), runs without a lock.
//!
//! A run takes the lock only when it will write (a plan with changes, a destroy with
//! deletions), so a converged re-apply still writes nothing. A second run refuses at
//! once, naming the holder; `STRATA_LOCK_WAIT=SECONDS` makes it wait up to that long
//! first. A lock older than [`STALE_AFTER`] is reported as stale with the command that
//! removes it (strata never breaks a lock itself). The lock is removed at the end of
//! the run, whether it succeeded or not; destroy removes a GCS lock before it deletes
//! the buckets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use super::docs::Documents;
use crate::error::{Error, Result};
use crate::model::{Cloud, Target};
use crate::resources::gcp::Client;

/// The lock object's key, at the top of the bucket.
pub const KEY: &str = ".strata-lock.json";
/// A lock older than this is reported as stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// A lock this run holds.
pub enum Held {
    Iam {
        clients: Box<crate::resources::aws::Clients>,
        arn: String,
    },
    Gcs {
        client: Client,
        bucket: String,
        generation: Option<String>,
    },
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// What the lock object holds.
fn content(target: &Target, command: &str) -> Value {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    json!({
        "target": target.name,
        "command": command,
        "owner": format!("{user}@{}", hostname()),
        "pid": std::process::id(),
        "since": now(),
    })
}

/// `2026-12-01T16:40:00Z` for a Unix time (UTC; civil-from-days).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The refusal for a lock someone holds, from what the lock object says.
pub fn held_error(target: &str, location: &str, remove: &str, holder: &Value) -> Error {
    let since = holder["since"].as_u64().unwrap_or(0);
    let age = now().saturating_sub(since);
    let who = format!(
        "`strata {}` by {} (pid {})",
        holder["command"].as_str().unwrap_or("?"),
        holder["owner"].as_str().unwrap_or("?"),
        holder["pid"]
    );
    let hint = if age >= STALE_AFTER.as_secs() {
        format!(
            "the lock is stale (older than {} minutes): if no strata run is still going, remove it with `{remove}` and run again",
            STALE_AFTER.as_secs() / 60
        )
    } else {
        "wait for that run to finish and run again (STRATA_LOCK_WAIT=SECONDS waits for it)"
            .to_owned()
    };
    Error::Cloud(format!(
        "target {target} is locked: {who} has held {location} since {} ({} min ago); nothing was written\n  hint: {hint}",
        utc(since),
        age / 60
    ))
}

/// How long to wait for a held lock: `STRATA_LOCK_WAIT` seconds, 0 by default.
fn wait_budget() -> Duration {
    std::env::var("STRATA_LOCK_WAIT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs)
}

/// Takes the target's lock, waiting up to `STRATA_LOCK_WAIT` for a holder; `None`
/// when there is no bucket to hold it (see the module doc).
pub async fn acquire(target: &Target, docs: &Documents, command: &str) -> Result<Option<Held>> {
    let deadline = std::time::Instant::now() + wait_budget();
    loop {
        let attempt = match target.cloud {
            Cloud::Aws => acquire_iam(target, docs, command).await,
            Cloud::Gcp => match docs.buckets.first() {
                Some(bucket) => acquire_gcs(target, &bucket.name, command).await,
                None => Ok(None),
            },
        };
        match attempt {
            Err(Attempt::Held(e)) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(Attempt::Held(e) | Attempt::Failed(e)) => return Err(e),
            Ok(held) => return Ok(held),
        }
    }
}

enum Attempt {
    Held(Error),
    Failed(Error),
}

/// The IAM policy that is the lock of an AWS target, named after the deployment: its
/// first bucket (bucket names are global), else its first role, else project and target.
pub fn iam_lock_name(target: &Target, docs: &Documents) -> String {
    let base = docs
        .buckets
        .first()
        .map(|b| b.name.clone())
        .or_else(|| target.names.workloads.values().find_map(|w| w.role.clone()))
        .unwrap_or_else(|| format!("{}-{}", target.config.project.name, target.name));
    format!("strata-lock-{base}")
}

/// A managed policy that grants nothing and is never attached: IAM makes a name unique
/// at create, which is the lock; the description says who holds it.
const LOCK_DOCUMENT: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"StrataApplyLock","Effect":"Deny","Action":"iam:GetPolicy","Resource":"arn:aws:iam::*:policy/strata-lock/nothing"}]}"#;

async fn acquire_iam(
    target: &Target,
    docs: &Documents,
    command: &str,
) -> std::result::Result<Option<Held>, Attempt> {
    let clients = crate::resources::aws::clients(target).await;
    let name = iam_lock_name(target, docs);
    let aws = target.aws();
    let arn = format!(
        "arn:{}:iam::{}:policy/strata-lock/{name}",
        crate::model::partition(&aws.region),
        aws.account_id
    );
    let created = clients
        .iam
        .create_policy()
        .policy_name(&name)
        .path("/strata-lock/")
        .policy_document(LOCK_DOCUMENT)
        .description(content(target, command).to_string())
        .send()
        .await;
    match created {
        Ok(_) => Ok(Some(Held::Iam {
            clients: Box::new(clients),
            arn,
        })),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_entity_already_exists_exception()) =>
        {
            let holder = match clients.iam.get_policy().policy_arn(&arn).send().await {
                Ok(out) => out
                    .policy()
                    .and_then(|p| p.description())
                    .and_then(|d| serde_json::from_str(d).ok())
                    .unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            Err(Attempt::Held(held_error(
                &target.name,
                &format!("the IAM policy {arn}"),
                &format!("aws iam delete-policy --policy-arn {arn}"),
                &holder,
            )))
        }
        Err(e) => Err(Attempt::Failed(crate::resources::aws::cloud_error(
            &format!("apply lock {arn}"),
            "CreatePolicy",
            &e,
        ))),
    }
}

fn object_path(bucket: &str) -> String {
    format!("/b/{bucket}/o/{KEY}")
}

async fn acquire_gcs(
    target: &Target,
    bucket: &str,
    command: &str,
) -> std::result::Result<Option<Held>, Attempt> {
    let client = Client::from_env().await.map_err(Attempt::Failed)?;
    let location = format!("gs://{bucket}/{KEY}");
    let what = format!("apply lock {location}");
    let remove = format!("gcloud storage rm {location}");
    let exists = client
        .send(Method::GET, &format!("/b/{bucket}"), &[], None, &what)
        .await
        .map_err(Attempt::Failed)?;
    if !exists.ok() {
        return Ok(None);
    }
    let current = client
        .send(
            Method::GET,
            &object_path(bucket),
            &[("alt", "media".to_owned())],
            None,
            &what,
        )
        .await
        .map_err(Attempt::Failed)?;
    if current.ok() {
        return Err(Attempt::Held(held_error(
            &target.name,
            &location,
            &remove,
            &current.body,
        )));
    }
    let query = [
        ("uploadType", "media".to_owned()),
        ("name", KEY.to_owned()),
        ("ifGenerationMatch", "0".to_owned()),
    ];
    let reply = client
        .send_upload(
            &format!("/b/{bucket}/o"),
            &query,
            &content(target, command),
            &what,
        )
        .await
        .map_err(Attempt::Failed)?;
    match reply.status {
        412 => Err(Attempt::Held(held_error(
            &target.name,
            &location,
            &remove,
            &Value::Null,
        ))),
        _ if reply.ok() => {
            let generation = match &reply.body["generation"] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            };
            Ok(Some(Held::Gcs {
                client,
                bucket: bucket.to_owned(),
                generation,
            }))
        }
        _ => Err(Attempt::Failed(reply.error(&what))),
    }
}

/// Deletes the lock this run wrote (that version, that generation); nothing when none.
pub async fn release(held: Option<Held>) -> Result<()> {
    match held {
        None => Ok(()),
        Some(Held::Iam { clients, arn }) => {
            match clients.iam.delete_policy().policy_arn(&arn).send().await {
                Ok(_) => Ok(()),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_no_such_entity_exception()) =>
                {
                    Ok(())
                }
                Err(e) => Err(crate::resources::aws::cloud_error(
                    &format!("apply lock {arn}"),
                    "DeletePolicy",
                    &e,
                )),
            }
        }
        Some(Held::Gcs {
            client,
            bucket,
            generation,
        }) => {
            let what = format!("release apply lock gs://{bucket}/{KEY}");
            let query: Vec<(&str, String)> = generation
                .into_iter()
                .map(|g| ("ifGenerationMatch", g))
                .collect();
            let reply = client
                .send(Method::DELETE, &object_path(&bucket), &query, None, &what)
                .await?;
            if reply.ok() || reply.status == 404 {
                Ok(())
            } else {
                Err(reply.error(&what))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_unix_time() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_796_140_800), "2026-12-01T16:00:00Z");
    }

    #[test]
    fn an_old_lock_is_reported_stale_with_how_to_remove_it() {
        let holder = json!({"command": "apply", "owner": "ci@runner", "pid": 7, "since": 1_000});
        let e = held_error("dev-aws", "s3://b/.strata-lock.json", "rm it", &holder).to_string();
        assert!(
            e.contains("target dev-aws is locked: `strata apply` by ci@runner (pid 7)"),
            "{e}"
        );
        assert!(e.contains("stale") && e.contains("`rm it`"), "{e}");
        let fresh = json!({"command": "destroy", "owner": "me@here", "pid": 8, "since": now()});
        let e = held_error("dev-aws", "s3://b/.strata-lock.json", "rm it", &fresh).to_string();
        assert!(
            !e.contains("stale") && e.contains("wait for that run"),
            "{e}"
        );
    }
}
