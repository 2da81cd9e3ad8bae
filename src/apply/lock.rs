//! The apply lock: one apply or destroy of a target at a time.
//!
//! The lock is an object, [`KEY`], in the target's first bucket, created only if it
//! does not exist: on S3 a PutObject with `If-None-Match: *` (S3 answers 412 when the
//! key exists; moto 5.1 does too), on GCS an upload with `ifGenerationMatch=0` (412
//! likewise), after a read of the key (which is what catches a held lock on
//! gcp-storage-emulator, which ignores the precondition). Its content says who holds it
//! (user, host, pid, command) and since when. A second run refuses at once, naming the
//! holder; `STRATA_LOCK_WAIT=SECONDS` makes it wait up to that long first. A lock older
//! than [`STALE_AFTER`] is reported as stale with the command that removes it (strata
//! never breaks a lock itself). The lock is deleted at the end of the run, by the
//! version (S3) or generation (GCS) it was written with, so it leaves nothing behind in
//! a versioned bucket.
//!
//! No lock is taken when the first bucket does not exist yet (the first apply of a
//! target, which creates it) or the target has no buckets: the evidence says so.
//! Destroy releases the lock before it deletes buckets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use reqwest::Method;
use serde_json::{Value, json};

use super::docs::Documents;
use super::gcs::Client;
use crate::error::{Error, Result};
use crate::model::{Cloud, Target};

/// The lock object's key, at the top of the bucket.
pub const KEY: &str = ".strata-lock.json";
/// A lock older than this is reported as stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// A lock this run holds.
pub enum Held {
    S3 {
        clients: Box<super::aws::Clients>,
        bucket: String,
        version: Option<String>,
    },
    Gcs {
        client: Client,
        bucket: String,
        generation: Option<String>,
    },
}

impl Held {
    pub fn bucket(&self) -> &str {
        match self {
            Held::S3 { bucket, .. } | Held::Gcs { bucket, .. } => bucket,
        }
    }
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
    let Some(bucket) = docs.buckets.first() else {
        return Ok(None);
    };
    let deadline = std::time::Instant::now() + wait_budget();
    loop {
        let attempt = match target.cloud {
            Cloud::Aws => acquire_s3(target, &bucket.name, command).await,
            Cloud::Gcp => acquire_gcs(target, &bucket.name, command).await,
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

async fn acquire_s3(
    target: &Target,
    bucket: &str,
    command: &str,
) -> std::result::Result<Option<Held>, Attempt> {
    let clients = super::aws::clients(target).await;
    let location = format!("s3://{bucket}/{KEY}");
    let exists = clients.s3.head_bucket().bucket(bucket).send().await;
    if exists.is_err() {
        return Ok(None);
    }
    let body = content(target, command).to_string();
    let put = clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(KEY)
        .if_none_match("*")
        .content_type("application/json")
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
        .body(ByteStream::from(body.into_bytes()))
        .send()
        .await;
    match put {
        Ok(out) => Ok(Some(Held::S3 {
            version: out.version_id().map(str::to_owned),
            clients: Box::new(clients),
            bucket: bucket.to_owned(),
        })),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
            let holder = match clients.s3.get_object().bucket(bucket).key(KEY).send().await {
                Ok(out) => out
                    .body
                    .collect()
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b.into_bytes()).ok())
                    .unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            Err(Attempt::Held(held_error(
                &target.name,
                &location,
                &format!("aws s3api delete-object --bucket {bucket} --key {KEY}"),
                &holder,
            )))
        }
        Err(e) => Err(Attempt::Failed(super::aws::cloud_error(
            &format!("apply lock {location}"),
            "PutObject",
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
        Some(Held::S3 {
            clients,
            bucket,
            version,
        }) => {
            let mut delete = clients.s3.delete_object().bucket(&bucket).key(KEY);
            if let Some(version) = version {
                delete = delete.version_id(version);
            }
            delete.send().await.map_err(|e| {
                super::aws::cloud_error(
                    &format!("apply lock s3://{bucket}/{KEY}"),
                    "DeleteObject",
                    &e,
                )
            })?;
            Ok(())
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
