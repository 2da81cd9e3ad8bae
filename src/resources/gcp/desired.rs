//! What a gcp target's bucket and bindings should look like, and how live state
//! differs from it. Pure: live state comes in as the API's JSON, changes go out as
//! [`FieldChange`]s and request bodies.
//!
//! Managed bucket fields: `location` (checked, never written after create: GCS cannot
//! move a bucket), `versioning.enabled`, `iamConfiguration.uniformBucketLevelAccess.enabled`
//! (always true), `iamConfiguration.publicAccessPrevention` (`enforced` when
//! `bucket.publicAccessBlock`, else `inherited`), strata's `lifecycle` rules (others'
//! rules are kept: see [`LIFECYCLE_LABEL`]) and the labels strata sets. Labels strata
//! does not set are left alone, never removed.
//!
//! Bindings: strata adds the members its rendered bindings grant; members and roles
//! it does not manage stay as they are.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::engine::docs::BucketDoc;
use crate::engine::plan::FieldChange;

/// The bucket strata wants for a target.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredBucket {
    pub name: String,
    pub location: String,
    pub versioning: bool,
    pub public_access_prevention: &'static str,
    /// The lifecycle rules, as the API spells them.
    pub lifecycle: Vec<Value>,
    pub labels: BTreeMap<String, String>,
}

pub fn desired_bucket(b: &BucketDoc) -> DesiredBucket {
    let mut lifecycle = Vec::new();
    for entry in &b.lifecycle {
        let condition = |mut c: Value| {
            if let Some(prefix) = &entry.prefix {
                c["matchesPrefix"] = json!([prefix]);
            }
            c
        };
        if let Some(days) = entry.after_days {
            let class = entry.storage_class.as_deref().unwrap_or("ARCHIVE");
            lifecycle.push(json!({
                "action": {"type": "SetStorageClass", "storageClass": class},
                "condition": condition(json!({"age": days})),
            }));
        }
        if let Some(days) = entry.expire_after_days {
            lifecycle.push(json!({
                "action": {"type": "Delete"},
                "condition": condition(json!({"age": days})),
            }));
        }
        if let Some(days) = entry.noncurrent_expire_after_days {
            lifecycle.push(json!({
                "action": {"type": "Delete"},
                "condition": condition(json!({"daysSinceNoncurrentTime": days})),
            }));
        }
    }
    let mut labels = b.tags.clone();
    labels.insert(LIFECYCLE_LABEL.to_owned(), lifecycle_label(&lifecycle));
    DesiredBucket {
        name: b.name.clone(),
        location: b.location.clone(),
        versioning: b.versioning,
        public_access_prevention: if b.public_access_block {
            "enforced"
        } else {
            "inherited"
        },
        lifecycle,
        labels,
    }
}

/// The label that remembers which lifecycle rules strata wrote: GCS rules have no id
/// (S3's do, and strata's start with `strata-`), so strata records a short digest of
/// each rule it writes, joined by `-` (`none` for no rule). On the next apply a live
/// rule is strata's when its digest is listed there or it equals a rule strata wants;
/// every other rule is someone else's and is kept as it is. A label value holds at
/// most [`MAX_REMEMBERED`] digests; rules past that are recognised by equality only.
pub const LIFECYCLE_LABEL: &str = "strata-lifecycle";
pub const MAX_REMEMBERED: usize = 9;

/// A rule with its object keys sorted at every level (the API may order them freely).
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Six hex digits of the SHA-256 of the rule's action and condition.
pub fn rule_digest(rule: &Value) -> String {
    use sha2::{Digest, Sha256};
    let rule = canonical(&json!({"action": rule["action"], "condition": rule["condition"]}));
    Sha256::digest(rule.to_string().as_bytes())
        .iter()
        .take(3)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of [`LIFECYCLE_LABEL`] for the rules strata writes.
pub fn lifecycle_label(rules: &[Value]) -> String {
    if rules.is_empty() {
        return "none".into();
    }
    rules
        .iter()
        .take(MAX_REMEMBERED)
        .map(rule_digest)
        .collect::<Vec<_>>()
        .join("-")
}

/// The live rules split into strata's (listed in the label or equal to a wanted
/// rule) and everyone else's, each in the live order.
pub fn split_lifecycle(d: &DesiredBucket, live: &Value) -> (Vec<Value>, Vec<Value>) {
    let written: BTreeSet<String> = live["labels"][LIFECYCLE_LABEL]
        .as_str()
        .unwrap_or_default()
        .split('-')
        .map(str::to_owned)
        .collect();
    let wanted: Vec<Value> = d.lifecycle.iter().map(canonical).collect();
    live_lifecycle(live)
        .into_iter()
        .partition(|rule| wanted.contains(&canonical(rule)) || written.contains(&rule_digest(rule)))
}

/// The bindings the workloads' documents grant on one bucket, as `{bindings: […]}`.
pub fn bucket_bindings(bucket: &str, workloads: &[crate::engine::docs::WorkloadDocs]) -> Value {
    let bindings: Vec<Value> = workloads
        .iter()
        .filter_map(|w| w.gcp.as_ref())
        .flat_map(|doc| {
            doc["bucketBindings"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|b| b["bucket"].as_str() == Some(bucket))
        .map(|b| json!({"role": b["role"], "members": b["members"]}))
        .collect();
    // Every workload's account is strata's, whether it has a role here or not (a
    // workload whose access to this bucket was removed loses it).
    let owned: BTreeSet<String> = workloads
        .iter()
        .filter_map(|w| w.gcp.as_ref())
        .filter_map(|doc| doc["serviceAccount"]["email"].as_str())
        .map(|email| format!("serviceAccount:{email}"))
        .collect();
    json!({"bindings": bindings, "owned": owned})
}

/// The body of the create request: every managed setting.
pub fn create_body(d: &DesiredBucket) -> Value {
    let mut body = json!({
        "name": d.name,
        "location": d.location,
        "versioning": {"enabled": d.versioning},
        "iamConfiguration": {
            "uniformBucketLevelAccess": {"enabled": true},
            "publicAccessPrevention": d.public_access_prevention,
        },
        "labels": d.labels,
    });
    if !d.lifecycle.is_empty() {
        body["lifecycle"] = json!({"rule": d.lifecycle});
    }
    body
}

/// The settings a create writes, as changes from nothing (for the plan).
pub fn create_changes(d: &DesiredBucket) -> Vec<FieldChange> {
    bucket_changes(d, &json!({"location": d.location}))
}

/// A live location that is not the wanted one; GCS cannot move a bucket.
pub fn location_mismatch(d: &DesiredBucket, live: &Value) -> Option<String> {
    let live_location = live["location"].as_str().unwrap_or_default();
    (!live_location.eq_ignore_ascii_case(&d.location)).then(|| live_location.to_owned())
}

fn live_lifecycle(live: &Value) -> Vec<Value> {
    live["lifecycle"]["rule"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|rule| json!({"action": rule["action"], "condition": rule["condition"]}))
        .collect()
}

fn live_labels(live: &Value) -> BTreeMap<String, String> {
    live["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
        .collect()
}

/// Each managed field whose live value differs from the desired one. Location is not
/// among them (see [`location_mismatch`]).
pub fn bucket_changes(d: &DesiredBucket, live: &Value) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    let mut field =
        |name: &str, from: Value, to: Value| FieldChange::record(&mut changes, name, from, to);
    let live_versioning = live["versioning"]["enabled"].as_bool().unwrap_or(false);
    field("versioning", json!(live_versioning), json!(d.versioning));
    let ubla = live["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"]
        .as_bool()
        .unwrap_or(false);
    field("uniformBucketLevelAccess", json!(ubla), json!(true));
    let pap = live["iamConfiguration"]["publicAccessPrevention"]
        .as_str()
        .unwrap_or("inherited");
    field(
        "publicAccessPrevention",
        json!(pap),
        json!(d.public_access_prevention),
    );
    let (ours, _) = split_lifecycle(d, live);
    field(
        "lifecycle",
        Value::Array(ours),
        Value::Array(d.lifecycle.clone()),
    );
    let live_labels = live_labels(live);
    for (key, value) in &d.labels {
        let from = live_labels.get(key).map_or(Value::Null, |v| json!(v));
        field(&format!("labels.{key}"), from, json!(value));
    }
    changes
}

/// The PATCH body that sets exactly the fields in `changes`. Labels are sent as the
/// whole map (live labels plus the managed ones), which is right whether the server
/// merges label keys (GCS) or replaces the map (some emulators).
pub fn patch_body(d: &DesiredBucket, live: &Value, changes: &[FieldChange]) -> Value {
    let mut body = Map::new();
    let changed = |name: &str| changes.iter().any(|c| c.field == name);
    if changed("versioning") {
        body.insert("versioning".into(), json!({"enabled": d.versioning}));
    }
    if changed("uniformBucketLevelAccess") || changed("publicAccessPrevention") {
        body.insert(
            "iamConfiguration".into(),
            json!({
                "uniformBucketLevelAccess": {"enabled": true},
                "publicAccessPrevention": d.public_access_prevention,
            }),
        );
    }
    if changed("lifecycle") {
        // Everyone else's rules first, as they were, then strata's. An empty rule list
        // clears the configuration (as Google's client libraries do).
        let (_, mut rules) = split_lifecycle(d, live);
        rules.extend(d.lifecycle.iter().cloned());
        body.insert("lifecycle".into(), json!({"rule": rules}));
    }
    if changes.iter().any(|c| c.field.starts_with("labels.")) {
        let mut labels = live_labels(live);
        labels.extend(d.labels.clone());
        body.insert("labels".into(), json!(labels));
    }
    Value::Object(body)
}

/// The names of the fields a change list writes, for evidence.
pub fn field_names(changes: &[FieldChange]) -> Vec<String> {
    changes.iter().map(|c| c.field.clone()).collect()
}

fn members_by_role(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut roles: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for binding in doc["bindings"].as_array().into_iter().flatten() {
        // A conditional binding grants less than an unconditional one; it does not count.
        if !binding["condition"].is_null() {
            continue;
        }
        let Some(role) = binding["role"].as_str() else {
            continue;
        };
        let members = binding["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str);
        roles
            .entry(role.to_owned())
            .or_default()
            .extend(members.map(str::to_owned));
    }
    roles
}

/// The members strata owns on a bucket (its workloads' service accounts), as the
/// rendered bindings list them under `owned`: a role it no longer grants one of them
/// is taken back. Everyone else's members are never touched.
fn owned_members(rendered: &Value) -> BTreeSet<String> {
    rendered["owned"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect()
}

/// Per role whose members must change: the rendered members added, and strata's own
/// members that the render no longer grants that role removed. `bindings.<role>` from
/// the live members to what they become.
pub fn iam_changes(rendered: &Value, live_policy: &Value) -> Vec<FieldChange> {
    let live = members_by_role(live_policy);
    let want = members_by_role(rendered);
    let owned = owned_members(rendered);
    let roles: BTreeSet<&String> = live.keys().chain(want.keys()).collect();
    let mut changes = Vec::new();
    for role in roles {
        let have = live.get(role).cloned().unwrap_or_default();
        let wanted = want.get(role).cloned().unwrap_or_default();
        let after: BTreeSet<String> = have
            .iter()
            .filter(|m| !owned.contains(*m) || wanted.contains(*m))
            .chain(wanted.iter())
            .cloned()
            .collect();
        if after == have {
            continue;
        }
        changes.push(FieldChange {
            field: format!("bindings.{role}"),
            from: json!(have),
            to: json!(after),
        });
    }
    changes
}

/// The live policy with the rendered members added (to the role's first unconditional
/// binding, or a new binding) and strata's members it no longer grants removed (a
/// binding left empty goes), everything else kept, the etag included.
pub fn merged_policy(rendered: &Value, live_policy: &Value) -> Value {
    let mut policy = live_policy.clone();
    if !policy.is_object() {
        policy = json!({});
    }
    let want = members_by_role(rendered);
    let owned = owned_members(rendered);
    let mut bindings: Vec<Value> = policy["bindings"].as_array().cloned().unwrap_or_default();
    for binding in bindings.iter_mut().filter(|b| b["condition"].is_null()) {
        let role = binding["role"].as_str().unwrap_or_default().to_owned();
        let wanted = want.get(&role).cloned().unwrap_or_default();
        let members: Vec<Value> = binding["members"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|m| {
                m.as_str()
                    .is_none_or(|m| !owned.contains(m) || wanted.contains(m))
            })
            .collect();
        binding["members"] = Value::Array(members);
    }
    bindings.retain(|b| {
        !b["condition"].is_null() || b["members"].as_array().is_some_and(|m| !m.is_empty())
    });
    for (role, wanted) in want {
        let existing = bindings
            .iter_mut()
            .find(|b| b["role"].as_str() == Some(role.as_str()) && b["condition"].is_null());
        match existing {
            Some(binding) => {
                let mut members: Vec<Value> =
                    binding["members"].as_array().cloned().unwrap_or_default();
                for member in &wanted {
                    if !members.iter().any(|m| m.as_str() == Some(member.as_str())) {
                        members.push(json!(member));
                    }
                }
                binding["members"] = Value::Array(members);
            }
            None => bindings.push(json!({"role": role, "members": wanted})),
        }
    }
    policy["bindings"] = Value::Array(bindings);
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredBucket {
        DesiredBucket {
            name: "b".into(),
            location: "EU".into(),
            versioning: true,
            public_access_prevention: "enforced",
            lifecycle: vec![
                json!({"action": {"type": "SetStorageClass", "storageClass": "ARCHIVE"}, "condition": {"age": 90}}),
            ],
            labels: BTreeMap::from([("strata-managed".into(), "true".into())]),
        }
    }

    #[test]
    fn converged_bucket_has_no_changes_and_foreign_labels_survive_a_patch() {
        let d = desired();
        let live = json!({
            "location": "eu",
            "versioning": {"enabled": true},
            "iamConfiguration": {"uniformBucketLevelAccess": {"enabled": true, "lockedTime": "x"}, "publicAccessPrevention": "enforced"},
            "lifecycle": {"rule": [{"action": {"type": "SetStorageClass", "storageClass": "ARCHIVE"}, "condition": {"age": 90}}]},
            "labels": {"strata-managed": "true", "team": "x"},
        });
        assert_eq!(location_mismatch(&d, &live), None);
        assert!(bucket_changes(&d, &live).is_empty());
        let drifted = json!({"location": "EU", "labels": {"team": "x"}});
        let changes = bucket_changes(&d, &drifted);
        let names = field_names(&changes);
        assert_eq!(
            names,
            [
                "versioning",
                "uniformBucketLevelAccess",
                "publicAccessPrevention",
                "lifecycle",
                "labels.strata-managed"
            ]
        );
        let body = patch_body(&d, &drifted, &changes);
        assert_eq!(
            body["labels"],
            json!({"strata-managed": "true", "team": "x"})
        );
    }

    #[test]
    fn foreign_lifecycle_rules_are_kept_and_strata_s_earlier_rules_replaced() {
        let mut d = desired();
        let old = json!({"action": {"type": "Delete"}, "condition": {"age": 400}});
        let foreign = json!({"action": {"type": "Delete"}, "condition": {"age": 7, "matchesPrefix": ["tmp/"]}});
        let live = json!({
            "location": "EU",
            // strata wrote `old` last time; someone added `foreign`; keys in any order.
            "labels": {LIFECYCLE_LABEL: lifecycle_label(std::slice::from_ref(&old))},
            "lifecycle": {"rule": [{"condition": {"age": 400}, "action": {"type": "Delete"}}, foreign]},
        });
        let (ours, theirs) = split_lifecycle(&d, &live);
        assert_eq!((ours, theirs.clone()), (vec![old], vec![foreign.clone()]));
        d.labels
            .insert(LIFECYCLE_LABEL.into(), lifecycle_label(&d.lifecycle));
        let changes = bucket_changes(&d, &live);
        let body = patch_body(&d, &live, &changes);
        assert_eq!(
            body["lifecycle"]["rule"],
            json!([foreign, d.lifecycle[0]]),
            "{body:#}"
        );
        assert_eq!(
            body["labels"][LIFECYCLE_LABEL],
            json!(rule_digest(&d.lifecycle[0]))
        );
        assert_eq!(lifecycle_label(&[]), "none");
    }

    #[test]
    fn a_role_no_longer_granted_is_taken_back_from_strata_s_members_only() {
        let me = "serviceAccount:app@p.iam.gserviceaccount.com";
        let rendered = json!({"bindings": [{"role": "roles/storage.objectViewer", "members": [me]}], "owned": [me]});
        let live = json!({"etag": "E", "bindings": [
            {"role": "roles/storage.objectUser", "members": [me, "user:someone@example.com"]},
            {"role": "roles/storage.objectAdmin", "members": [me]},
        ]});
        let fields: Vec<(String, Value)> = iam_changes(&rendered, &live)
            .into_iter()
            .map(|c| (c.field, c.to))
            .collect();
        assert_eq!(
            fields,
            [
                ("bindings.roles/storage.objectAdmin".to_owned(), json!([])),
                (
                    "bindings.roles/storage.objectUser".to_owned(),
                    json!(["user:someone@example.com"])
                ),
                (
                    "bindings.roles/storage.objectViewer".to_owned(),
                    json!([me])
                ),
            ]
        );
        let merged = merged_policy(&rendered, &live);
        assert_eq!(
            merged["bindings"],
            json!([
                {"role": "roles/storage.objectUser", "members": ["user:someone@example.com"]},
                {"role": "roles/storage.objectViewer", "members": [me]},
            ])
        );
        assert!(iam_changes(&rendered, &merged).is_empty());
    }

    #[test]
    fn bindings_add_missing_members_and_keep_foreign_ones() {
        let rendered = json!({"bindings": [{"role": "roles/storage.objectUser", "members": ["serviceAccount:app@p.iam.gserviceaccount.com"]}]});
        let live = json!({"etag": "E", "bindings": [
            {"role": "roles/storage.objectUser", "members": ["user:someone@example.com"]},
            {"role": "roles/storage.legacyBucketOwner", "members": ["projectOwner:p"]},
        ]});
        let changes = iam_changes(&rendered, &live);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].field, "bindings.roles/storage.objectUser");
        assert_eq!(changes[0].from, json!(["user:someone@example.com"]));
        assert_eq!(
            changes[0].to,
            json!([
                "serviceAccount:app@p.iam.gserviceaccount.com",
                "user:someone@example.com"
            ])
        );
        let merged = merged_policy(&rendered, &live);
        assert_eq!(merged["etag"], "E");
        assert!(iam_changes(&rendered, &merged).is_empty());
        assert_eq!(merged["bindings"][1], live["bindings"][1]);
    }
}
