//! plan and apply of gcp targets against gcp-storage-emulator on 127.0.0.1.
//!
//! Each test copies the example's environments to a temp folder and adds a
//! `dev.gcp.yaml` layer giving `dev-gcp` its own bucket name (tests run in parallel
//! against one emulator) and location `US` (the emulator reports every bucket in `US`,
//! whatever the create asked for).
//!
//! What the emulator cannot show is listed in `src/resources/gcp/mod.rs`'s module doc; the
//! fault proxy (`tests/py/faulty_proxy.py`) answers in its place, through the CLI: a
//! 412 on a PATCH guarded by a stale metageneration, a 409/412 on a policy PUT with a
//! stale etag, a 403, the listing of another project, and each transient status with
//! the waits between the retries as the proxy timed them.
//!
//! The library tests call the storage entry points (`gcs::plan_with`/`execute_with`:
//! buckets and their bindings only). The CLI tests run the whole apply, the workloads'
//! Google service accounts and Workload Identity bindings included, against the IAM
//! stand-in `tests/standins/gcp_iam.py` (one per project), and list what it saw
//! written as exactly as what the emulator saw.

use serde_json::{Value, json};
use strata::engine::docs::Documents;
use strata::engine::plan::{Evidence, Op, Outcome, Plan};
use strata::model::{Cloud, Target};
use strata::resources::gcp::desired::{LIFECYCLE_LABEL, lifecycle_label, rule_digest};
use strata::resources::gcp::{self as gcs, Client};

use std::path::Path;
use std::process::Output;

use crate::support::standins::Standin;
use crate::support::{
    FaultyProxy, RecordingProxy, assert_loopback, copy_dir, gcs_emulator, repo_root, text,
};

const ROLE: &str = "roles/storage.objectUser";
/// The example's dev-gcp project, and its workload's Google service account
/// (`<project>-<env>-<workload>`).
const PROJECT: &str = "lakehouse-dev-4821";
const GSA: &str = "lakehouse-dev-api@lakehouse-dev-4821.iam.gserviceaccount.com";
const FOREIGN: &str = "user:someone-else@example.com";

struct Fixture {
    _dir: tempfile::TempDir,
    target: Target,
    docs: Documents,
    bucket: String,
    client: Client,
    http: reqwest::Client,
    base: String,
}

/// `dev-gcp` with bucket `bucket`, archive after 30 days, and a client of the emulator.
fn fixture(bucket: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["environments", "charts"] {
        copy_dir(&repo_root().join(sub), &dir.path().join(sub));
    }
    std::fs::write(
        dir.path().join("environments/dev.gcp.yaml"),
        format!("gcp:\n  location: US\nbuckets:\n  data:\n    name: {bucket}\n    lifecycle:\n      - {{archiveAfterDays: 30}}\n    tags:\n      Team Name: Data&Platform\n"),
    )
    .unwrap();
    let project = strata::project::Project::discover(dir.path()).expect("project");
    let loaded = strata::Loaded::load(project).expect("loads");
    let targets = loaded
        .targets(&["dev-gcp".into()])
        .expect("dev-gcp resolves");
    let renderer = loaded.renderer().expect("templates compile");
    let (charts, errors) = loaded.charts(&targets);
    assert!(errors.is_empty(), "{errors:?}");
    let tree = strata::render_all(&renderer, &targets, &charts).expect("renders");
    let target = targets.into_iter().next().unwrap();
    let docs = Documents::read(&target, &tree).expect("documents");
    assert_eq!(target.names.buckets["data"].name, bucket);
    let host = gcs_emulator::host();
    assert_loopback(host);
    Fixture {
        _dir: dir,
        target,
        docs,
        bucket: bucket.to_owned(),
        client: Client::emulator(host).expect("client"),
        http: crate::support::http(),
        base: gcs::emulator_base(host),
    }
}

impl Fixture {
    fn member(&self) -> String {
        self.docs.workloads[0].gcp.as_ref().unwrap()["bucketBindings"][0]["members"][0]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn plan(&self) -> Plan {
        gcs::plan_with(&self.client, &self.target, &self.docs)
            .await
            .expect("plan")
    }

    async fn apply(&self) -> Evidence {
        let plan = self.plan().await;
        let mut evidence = empty_evidence(&plan);
        gcs::execute_with(&self.client, &self.target, &self.docs, &plan, &mut evidence)
            .await
            .expect("execute");
        evidence
    }

    /// A raw call to the emulator, as another tool or a person would make it.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("emulator answers");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.expect("json")
    }

    async fn bucket(&self) -> Value {
        self.call(reqwest::Method::GET, &format!("/b/{}", self.bucket), None)
            .await
    }

    async fn policy(&self) -> Value {
        self.call(
            reqwest::Method::GET,
            &format!("/b/{}/iam", self.bucket),
            None,
        )
        .await
    }

    async fn put_policy(&self, bindings: Value) {
        let mut policy = self.policy().await;
        policy["bindings"] = bindings;
        self.call(
            reqwest::Method::PUT,
            &format!("/b/{}/iam", self.bucket),
            Some(policy),
        )
        .await;
    }
}

/// Evidence as the apply command starts it, before any resource is touched.
fn empty_evidence(plan: &Plan) -> Evidence {
    Evidence {
        target: plan.target.clone(),
        cloud: Cloud::Gcp,
        account: plan.account.clone(),
        region: plan.region.clone(),
        status: "applied".into(),
        resources: Vec::new(),
        helm: Vec::new(),
        error: None,
    }
}

fn ops(plan: &Plan) -> Vec<(&str, Op)> {
    plan.actions
        .iter()
        .map(|a| (a.kind.as_str(), a.op))
        .collect()
}

fn outcomes(evidence: &Evidence) -> Vec<(&str, bool, Outcome)> {
    evidence
        .resources
        .iter()
        .map(|r| (r.kind.as_str(), r.existed, r.outcome))
        .collect()
}

fn fields(plan: &Plan, kind: &str) -> Vec<String> {
    let action = plan
        .actions
        .iter()
        .find(|a| a.kind == kind)
        .expect("action");
    action.changes.iter().map(|c| c.field.clone()).collect()
}

fn members(policy: &Value, role: &str) -> Vec<String> {
    let mut all: Vec<String> = policy["bindings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["role"] == role)
        .flat_map(|b| b["members"].as_array().cloned().unwrap_or_default())
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn first_apply_creates_the_bucket_with_every_setting_and_the_binding() {
    let f = fixture("strata-it-first-apply");
    let plan = f.plan().await;
    assert_eq!(
        ops(&plan),
        [("gcs_bucket", Op::Create), ("gcs_bucket_iam", Op::Create)]
    );
    assert_eq!(
        (plan.account.as_str(), plan.region.as_str()),
        ("lakehouse-dev-4821", "US")
    );
    assert_eq!(
        fields(&plan, "gcs_bucket"),
        [
            "versioning",
            "uniformBucketLevelAccess",
            "publicAccessPrevention",
            "lifecycle",
            "labels.cost-center",
            "labels.data-classification",
            "labels.managed-by",
            "labels.owner",
            "labels.strata-env",
            "labels.strata-lifecycle",
            "labels.strata-target",
            "labels.team_name",
        ]
    );
    assert_eq!(
        fields(&plan, "gcs_bucket_iam"),
        [format!("bindings.{ROLE}")]
    );
    // plan wrote nothing
    let probe = f
        .http
        .get(format!("{}/b/{}", f.base, f.bucket))
        .send()
        .await
        .unwrap();
    assert_eq!(probe.status().as_u16(), 404);

    let evidence = f.apply().await;
    assert_eq!(
        outcomes(&evidence),
        [
            ("gcs_bucket", false, Outcome::Created),
            ("gcs_bucket_iam", false, Outcome::Created)
        ]
    );

    let bucket = f.bucket().await;
    assert_eq!(bucket["versioning"]["enabled"], true);
    assert_eq!(
        bucket["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"],
        true
    );
    assert_eq!(
        bucket["iamConfiguration"]["publicAccessPrevention"],
        "enforced"
    );
    assert_eq!(
        bucket["lifecycle"]["rule"],
        json!([{"action": {"type": "SetStorageClass", "storageClass": "ARCHIVE"}, "condition": {"age": 30}}])
    );
    assert_eq!(
        bucket["labels"],
        json!({
            "cost-center": "analytics",
            "data-classification": "internal",
            "managed-by": "strata",
            "owner": "data-platform",
            "strata-env": "dev",
            "strata-lifecycle": rule_digest(&bucket["lifecycle"]["rule"][0]),
            "strata-target": "dev-gcp",
            "team_name": "data_platform",
        }),
        "tags are rewritten to GCS label rules (`Team Name: Data&Platform`), and the \
         lifecycle label remembers strata's one rule"
    );
    let mut tags = json!(f.docs.buckets[0].tags);
    tags[LIFECYCLE_LABEL] = bucket["labels"][LIFECYCLE_LABEL].clone();
    assert_eq!(bucket["labels"], tags);
    assert_eq!(f.member(), format!("serviceAccount:{GSA}"));
    assert_eq!(members(&f.policy().await, ROLE), [f.member()]);
}

#[tokio::test]
async fn second_apply_writes_nothing() {
    let f = fixture("strata-it-second-apply");
    f.apply().await;
    let before = f.bucket().await;
    let plan = f.plan().await;
    assert!(!plan.has_changes(), "{plan:#?}");
    assert_eq!(
        ops(&plan),
        [
            ("gcs_bucket", Op::Unchanged),
            ("gcs_bucket_iam", Op::Unchanged)
        ]
    );
    let evidence = f.apply().await;
    assert_eq!(
        outcomes(&evidence),
        [
            ("gcs_bucket", true, Outcome::Unchanged),
            ("gcs_bucket_iam", true, Outcome::Unchanged)
        ]
    );
    assert!(evidence.resources.iter().all(|r| r.fields.is_empty()));
    let after = f.bucket().await;
    assert_eq!(
        before["metageneration"], after["metageneration"],
        "no PATCH reached the bucket"
    );
}

#[tokio::test]
async fn drift_in_labels_versioning_and_bindings_is_planned_and_repaired() {
    let f = fixture("strata-it-drift");
    f.apply().await;
    let name = f.bucket.clone();
    let mut labels = f.bucket().await["labels"].clone();
    labels["strata-env"] = json!("prod");
    labels["owner-note"] = json!("kept");
    f.call(
        reqwest::Method::PATCH,
        &format!("/b/{name}"),
        Some(json!({"versioning": {"enabled": false}, "labels": labels})),
    )
    .await;
    f.put_policy(json!([])).await;

    let plan = f.plan().await;
    assert_eq!(
        ops(&plan),
        [("gcs_bucket", Op::Update), ("gcs_bucket_iam", Op::Update)]
    );
    assert_eq!(
        fields(&plan, "gcs_bucket"),
        ["versioning", "labels.strata-env"]
    );
    let bucket_action = &plan.actions[0];
    assert_eq!(
        (&bucket_action.changes[1].from, &bucket_action.changes[1].to),
        (&json!("prod"), &json!("dev"))
    );
    let iam_change = &plan.actions[1].changes[0];
    assert_eq!(iam_change.field, format!("bindings.{ROLE}"));
    assert_eq!(
        (&iam_change.from, &iam_change.to),
        (&json!([]), &json!([f.member()]))
    );

    let evidence = f.apply().await;
    assert_eq!(
        outcomes(&evidence),
        [
            ("gcs_bucket", true, Outcome::Updated),
            ("gcs_bucket_iam", true, Outcome::Updated)
        ]
    );
    assert_eq!(
        evidence.resources[0].fields,
        ["versioning", "labels.strata-env"]
    );

    let bucket = f.bucket().await;
    assert_eq!(bucket["versioning"]["enabled"], true);
    assert_eq!(bucket["labels"]["strata-env"], "dev");
    assert_eq!(
        bucket["labels"]["owner-note"], "kept",
        "labels strata does not manage stay"
    );
    assert_eq!(members(&f.policy().await, ROLE), [f.member()]);
    assert!(!f.plan().await.has_changes());
}

#[tokio::test]
async fn foreign_bindings_are_preserved() {
    let f = fixture("strata-it-foreign-bindings");
    f.apply().await;
    let viewer = "roles/storage.objectViewer";
    f.put_policy(json!([
        {"role": ROLE, "members": [FOREIGN]},
        {"role": viewer, "members": ["group:readers@example.com"]},
    ]))
    .await;
    let plan = f.plan().await;
    let change = &plan.actions[1].changes[0];
    assert_eq!(
        (&change.from, &change.to),
        (&json!([FOREIGN]), &json!([f.member(), FOREIGN]))
    );

    let evidence = f.apply().await;
    assert_eq!(evidence.resources[1].outcome, Outcome::Updated);
    let policy = f.policy().await;
    let mut expected = vec![f.member(), FOREIGN.to_owned()];
    expected.sort();
    assert_eq!(members(&policy, ROLE), expected);
    assert_eq!(members(&policy, viewer), ["group:readers@example.com"]);
    // Converged with foreign members present: nothing to do.
    assert!(!f.plan().await.has_changes());
}

#[tokio::test]
async fn a_bucket_made_outside_strata_is_adopted_and_updated() {
    let f = fixture("strata-it-adopt");
    f.call(
        reqwest::Method::POST,
        "/b?project=lakehouse-dev-4821",
        Some(json!({"name": f.bucket})),
    )
    .await;
    // The emulator takes nothing but the name on create: the label comes by PATCH.
    f.call(
        reqwest::Method::PATCH,
        &format!("/b/{}", f.bucket),
        Some(json!({"labels": {"team": "made-by-hand"}})),
    )
    .await;
    // v2: taking over a bucket strata did not create is what `adopt: true` asks for
    // (docs/apply.md, Ownership).
    let mut docs = f.docs.clone();
    docs.buckets[0].adopt = true;
    let plan = gcs::plan_with(&f.client, &f.target, &docs)
        .await
        .expect("plan");
    assert_eq!(
        ops(&plan),
        [("gcs_bucket", Op::Update), ("gcs_bucket_iam", Op::Update)]
    );
    assert!(
        fields(&plan, "gcs_bucket").contains(&"labels.managed-by".to_owned()),
        "{plan:#?}"
    );
    let mut evidence = empty_evidence(&plan);
    gcs::execute_with(&f.client, &f.target, &docs, &plan, &mut evidence)
        .await
        .expect("execute");
    assert_eq!(
        outcomes(&evidence),
        [
            ("gcs_bucket", true, Outcome::Updated),
            ("gcs_bucket_iam", true, Outcome::Updated)
        ]
    );
    let bucket = f.bucket().await;
    assert_eq!(bucket["labels"]["managed-by"], "strata", "adopted: tagged");
    assert_eq!(
        bucket["labels"]["team"], "made-by-hand",
        "its own labels stay"
    );
    assert_eq!(bucket["versioning"]["enabled"], true);
    assert_eq!(members(&f.policy().await, ROLE), [f.member()]);
    let again = gcs::plan_with(&f.client, &f.target, &docs)
        .await
        .expect("plan");
    assert!(!again.has_changes(), "{again:#?}");
}

#[tokio::test]
async fn a_bucket_in_another_location_stops_the_plan() {
    let f = fixture("strata-it-location");
    f.apply().await;
    let mut eu = f.docs.clone();
    eu.buckets[0].location = "EU".into();
    let err = gcs::plan_with(&f.client, &f.target, &eu)
        .await
        .expect_err("location differs");
    let text = err.to_string();
    assert!(
        text.contains("strata-it-location")
            && text.contains("in US")
            && text.contains("cannot move"),
        "{text}"
    );
}

#[tokio::test]
async fn dropping_the_archive_rule_from_config_clears_the_lifecycle() {
    let f = fixture("strata-it-lifecycle");
    f.apply().await;
    let target = f.target.clone();
    let mut docs = f.docs.clone();
    docs.buckets[0].lifecycle.clear();
    let plan = gcs::plan_with(&f.client, &target, &docs)
        .await
        .expect("plan");
    let changed = ["lifecycle", "labels.strata-lifecycle"];
    assert_eq!(fields(&plan, "gcs_bucket"), changed);
    let mut evidence = empty_evidence(&plan);
    gcs::execute_with(&f.client, &target, &docs, &plan, &mut evidence)
        .await
        .expect("execute");
    assert_eq!(evidence.resources[0].fields, changed);
    assert_eq!(f.bucket().await["labels"][LIFECYCLE_LABEL], "none");
    let rules = f.bucket().await["lifecycle"]["rule"].clone();
    assert!(rules.as_array().is_none_or(Vec::is_empty), "{rules}");
    let again = gcs::plan_with(&f.client, &target, &docs)
        .await
        .expect("plan");
    assert!(!again.has_changes(), "{again:#?}");
}

/// A rule someone added through the API (not strata's) survives an apply that changes
/// strata's rules; strata's old rule goes, its new one is added.
#[tokio::test]
async fn a_foreign_lifecycle_rule_survives_an_apply_that_changes_strata_s_rules() {
    let f = fixture("strata-it-foreign-rule");
    f.apply().await;
    let live = f.bucket().await;
    let strata_rule = live["lifecycle"]["rule"][0].clone();
    // Planted through the emulator's JSON API, as the console or gcloud would.
    let foreign = json!({"action": {"type": "Delete"}, "condition": {"age": 3, "matchesPrefix": ["scratch/"]}});
    let patched = f
        .http
        .patch(format!("{}/b/{}", f.base, f.bucket))
        .json(&json!({"lifecycle": {"rule": [strata_rule, foreign]}}))
        .send()
        .await
        .unwrap();
    assert!(patched.status().is_success(), "{}", patched.status());
    // Nothing of strata's changed: the foreign rule is no drift.
    let plan = f.plan().await;
    assert!(!plan.has_changes(), "{plan:#?}");

    let target = f.target.clone();
    let mut docs = f.docs.clone();
    docs.buckets[0].lifecycle[0].after_days = Some(60);
    let plan = gcs::plan_with(&f.client, &target, &docs)
        .await
        .expect("plan");
    assert_eq!(
        fields(&plan, "gcs_bucket"),
        ["lifecycle", "labels.strata-lifecycle"]
    );
    let mut evidence = empty_evidence(&plan);
    gcs::execute_with(&f.client, &target, &docs, &plan, &mut evidence)
        .await
        .expect("execute");
    let rules = f.bucket().await["lifecycle"]["rule"].clone();
    assert_eq!(
        rules,
        json!([foreign, {"action": {"type": "SetStorageClass", "storageClass": "ARCHIVE"}, "condition": {"age": 60}}]),
        "read back from the emulator"
    );
    let again = gcs::plan_with(&f.client, &target, &docs)
        .await
        .expect("plan");
    assert!(!again.has_changes(), "{again:#?}");
}

/// A project on disk, as a user's, with its own Google IAM stand-in: service account
/// names follow the project (the example's are the same in every test), so each
/// project's accounts live in a server of its own.
struct CliProject {
    dir: tempfile::TempDir,
    iam: Standin,
}

impl CliProject {
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// A copy of the example whose `dev-gcp` uses `bucket` (location `US`).
fn cli_project(bucket: &str) -> CliProject {
    let dir = tempfile::tempdir().expect("temp dir");
    for sub in ["environments", "charts"] {
        copy_dir(&repo_root().join(sub), &dir.path().join(sub));
    }
    std::fs::write(
        dir.path().join("environments/dev.gcp.yaml"),
        format!("gcp:\n  location: US\nbuckets:\n  data:\n    name: {bucket}\n"),
    )
    .unwrap();
    CliProject {
        dir,
        iam: Standin::gcp_iam(PROJECT),
    }
}

/// strata in `p`, with `STORAGE_EMULATOR_HOST` (set on the child process only) as its
/// only GCS endpoint, the project's IAM stand-in as its only Google IAM endpoint (with
/// a token it takes: the stand-in wants one, and checks nothing else), and no other
/// credentials. Every endpoint goes through here.
fn cli(p: &CliProject, host: &str, args: &[&str]) -> std::process::Command {
    assert_loopback(host);
    assert_loopback(&p.iam.url);
    let mut cmd = crate::support::strata();
    cmd.arg("-C")
        .arg(p.path())
        .args(args)
        .env("STORAGE_EMULATOR_HOST", host)
        .env("CLOUDSDK_API_ENDPOINT_OVERRIDES_IAM", &p.iam.url)
        .env("GOOGLE_OAUTH_ACCESS_TOKEN", "test-token")
        .env(
            "GOOGLE_APPLICATION_CREDENTIALS",
            p.path().join("no-credentials.json"),
        )
        // Helm never reaches a cluster from these tests.
        .env("STRATA_HELM", p.path().join("no-such-helm"));
    cmd
}

fn run_cli(p: &CliProject, host: &str, args: &[&str]) -> Output {
    cli(p, host, args).output().expect("strata runs")
}

/// The JSON on stdout of a run that had to exit with `code`.
fn parse(out: &Output, code: i32) -> Value {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(&out.stdout)))
}

/// (kind, name, outcome) of each resource in JSON evidence.
fn cli_outcomes(evidence: &Value) -> Vec<(String, String, String)> {
    evidence["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["name"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn triples(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned()))
        .collect()
}

/// A bucket and its IAM policy straight from the emulator (not through strata).
async fn emulator_get(path: &str) -> reqwest::Response {
    let base = gcs::emulator_base(gcs_emulator::host());
    assert_loopback(&base);
    crate::support::http()
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("emulator answers")
}

/// A successful answer of the emulator, as JSON.
async fn emulator_json(path: &str) -> Value {
    let response = emulator_get(path).await;
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.expect("json")
}

/// Role → sorted members of a policy's unconditional bindings.
fn by_role(bindings: &Value) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for b in bindings.as_array().into_iter().flatten() {
        let members = out
            .entry(b["role"].as_str().unwrap().to_owned())
            .or_default();
        for m in b["members"].as_array().unwrap() {
            members.push(m.as_str().unwrap().to_owned());
        }
        members.sort();
        members.dedup();
    }
    out
}

const APPLY: &[&str] = &[
    "--format",
    "json",
    "apply",
    "dev-gcp",
    "--approve",
    "--skip-helm",
];

/// The whole path a user takes: the CLI, with `STORAGE_EMULATOR_HOST` choosing the
/// endpoint (set on the child process only), plan → apply → plan.
#[test]
fn the_cli_plans_and_applies_a_gcp_target_through_storage_emulator_host() {
    let bucket = "strata-cli-gcs-test";
    let dir = cli_project(bucket);
    let proxy = RecordingProxy::start(gcs_emulator::host());
    let plan = parse(
        &run_cli(&dir, &proxy.url, &["--format", "json", "plan", "dev-gcp"]),
        1,
    );
    assert_eq!(plan["actions"][0]["op"], "create");
    assert_eq!(plan["actions"][0]["name"], bucket);
    // Every resource apply will make, once. Sorted: for a new bucket the plan lists its
    // binding next to it, before the service accounts that apply makes first.
    let mut actions: Vec<(String, String, String)> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap().to_owned();
            (s("kind"), s("name"), s("op"))
        })
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        triples(&[
            ("gcp_service_account", GSA, "create"),
            ("gcp_service_account_iam", GSA, "create"),
            ("gcs_bucket", bucket, "create"),
            ("gcs_bucket_iam", bucket, "create"),
        ])
    );
    assert_eq!(proxy.writes(), [], "plan wrote");
    assert_eq!(dir.iam.writes(), [] as [String; 0], "plan wrote to IAM");
    assert!(!dir.iam.requests().is_empty(), "plan read the account");

    let evidence = parse(&run_cli(&dir, &proxy.url, APPLY), 0);
    assert_eq!(evidence["status"], "applied");
    // Buckets, then the service account and its Workload Identity binding, then the
    // bucket's binding, which names the account.
    assert_eq!(
        cli_outcomes(&evidence),
        triples(&[
            ("gcs_bucket", bucket, "created"),
            ("gcp_service_account", GSA, "created"),
            ("gcp_service_account_iam", GSA, "created"),
            ("gcs_bucket_iam", bucket, "created")
        ])
    );
    for rel in ["iam/api.gcp.json", "buckets/data.json"] {
        assert!(
            dir.path().join("out/dev-gcp").join(rel).exists(),
            "apply writes the render it applied: {rel}"
        );
    }
    let writes: Vec<(String, String)> = proxy
        .writes()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        writes,
        [
            ("POST".to_owned(), "/storage/v1/b".to_owned()),
            // gcp-storage-emulator keeps only the name of a create, so strata patches
            // the rest right after (see src/resources/gcp/mod.rs); on GCS this PATCH is
            // not sent.
            ("PATCH".to_owned(), format!("/storage/v1/b/{bucket}")),
            ("PUT".to_owned(), format!("/storage/v1/b/{bucket}/iam")),
        ],
        "what the storage server saw"
    );
    assert_eq!(
        dir.iam.writes(),
        [
            format!("create /v1/projects/{PROJECT}/serviceAccounts"),
            format!("setIamPolicy /v1/projects/{PROJECT}/serviceAccounts/{GSA}:setIamPolicy"),
        ],
        "what the IAM server saw"
    );
    // The account as IAM holds it: strata's, bound to the workload's KSA.
    let state = dir.iam.state();
    let accounts: Vec<(&str, &str)> = state["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["email"].as_str().unwrap(),
                a["description"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(accounts, [(GSA, "managed-by=strata strata-target=dev-gcp")]);

    proxy.clear();
    let iam_writes = dir.iam.writes();
    let again = run_cli(&dir, &proxy.url, &["plan", "dev-gcp"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stdout));
    assert_eq!(proxy.writes(), []);
    assert_eq!(dir.iam.writes(), iam_writes);
}

/// A 503 on setIamPolicy is retried; a 500 that lasts stops apply with exit 2, evidence
/// of what was done, and a message saying it was retried; the next apply converges; a
/// server that is not there is tried again, then named.
#[test]
fn transient_gcs_errors_are_retried_and_a_lasting_one_stops_apply_with_evidence() {
    let upstream = gcs_emulator::host();

    let dir = cli_project("strata-cli-gcs-retry");
    let proxy = FaultyProxy::start(
        upstream,
        "PUT /storage/v1/b/strata-cli-gcs-retry/iam",
        503,
        Some(2),
    );
    let evidence = parse(&run_cli(&dir, &proxy.url, APPLY), 0);
    assert_eq!(evidence["status"], "applied", "{evidence:#}");
    assert_eq!(
        cli_outcomes(&evidence),
        triples(&[
            ("gcs_bucket", "strata-cli-gcs-retry", "created"),
            ("gcp_service_account", GSA, "created"),
            ("gcp_service_account_iam", GSA, "created"),
            ("gcs_bucket_iam", "strata-cli-gcs-retry", "created")
        ])
    );
    // The evidence counts the retries: the two 503s on the bucket's policy, nothing else.
    let retries: Vec<(String, u64)> = evidence["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["retries"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        retries,
        [
            ("gcs_bucket".to_owned(), 0),
            ("gcp_service_account".to_owned(), 0),
            ("gcp_service_account_iam".to_owned(), 0),
            ("gcs_bucket_iam".to_owned(), 2)
        ],
        "{evidence:#}"
    );
    drop(proxy);
    let plan = run_cli(&dir, upstream, &["plan", "dev-gcp"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stdout));

    let dir = cli_project("strata-cli-gcs-fault");
    let proxy = FaultyProxy::start(
        upstream,
        "PUT /storage/v1/b/strata-cli-gcs-fault/iam",
        500,
        None,
    );
    let out = run_cli(&dir, &proxy.url, APPLY);
    let stderr = text(&out.stderr);
    let evidence = parse(&out, 2);
    assert!(
        stderr.contains("set gcs_bucket_iam strata-cli-gcs-fault: HTTP 500")
            && stderr.contains("injected by faulty_proxy")
            && stderr.contains(&format!("(after {} attempts)", gcs::ATTEMPTS)),
        "{stderr}"
    );
    assert_eq!(evidence["status"], "failed", "{evidence:#}");
    assert_eq!(
        cli_outcomes(&evidence),
        triples(&[
            ("gcs_bucket", "strata-cli-gcs-fault", "created"),
            ("gcp_service_account", GSA, "created"),
            ("gcp_service_account_iam", GSA, "created"),
            ("gcs_bucket_iam", "strata-cli-gcs-fault", "failed")
        ]),
        "{evidence:#}"
    );
    drop(proxy);

    // The binding is what is missing; the next apply adds it and nothing else.
    let plan = parse(
        &run_cli(&dir, upstream, &["--format", "json", "plan", "dev-gcp"]),
        1,
    );
    let changed: Vec<(&str, &str)> = plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["op"] != "unchanged")
        .map(|a| (a["kind"].as_str().unwrap(), a["op"].as_str().unwrap()))
        .collect();
    assert_eq!(changed, [("gcs_bucket_iam", "update")], "{plan:#}");
    let iam_writes = dir.iam.writes();
    let evidence = parse(&run_cli(&dir, upstream, APPLY), 0);
    assert_eq!(
        cli_outcomes(&evidence),
        triples(&[
            ("gcs_bucket", "strata-cli-gcs-fault", "unchanged"),
            ("gcp_service_account", GSA, "unchanged"),
            ("gcp_service_account_iam", GSA, "unchanged"),
            ("gcs_bucket_iam", "strata-cli-gcs-fault", "updated")
        ])
    );
    assert_eq!(dir.iam.writes(), iam_writes, "the account was done already");
    let plan = run_cli(&dir, upstream, &["plan", "dev-gcp"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stdout));

    // Nothing listens: the connection is tried again, then a clear error, exit 2.
    let dead = format!("127.0.0.1:{}", crate::support::free_port());
    let plan = run_cli(&dir, &dead, &["plan", "dev-gcp"]);
    let stderr = text(&plan.stderr);
    assert_eq!(plan.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&dead) && stderr.contains(&format!("(after {} attempts)", gcs::ATTEMPTS)),
        "{stderr}"
    );
}

/// The fixture `tests/fixtures/cloud/two-buckets` on gcp: buckets
/// `strata-it-two-dev-raw` and `strata-it-two-dev-curated` with different settings,
/// each with the bindings both workloads' rendered documents give it, to the workloads'
/// service accounts (`strata-it-two-dev-<workload>`), each bound to its Kubernetes
/// service account; the second apply writes nothing.
#[tokio::test]
async fn two_buckets_and_two_workloads_get_their_settings_and_bindings() {
    let project = "strata-it-two";
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &repo_root().join("tests/fixtures/cloud/two-buckets"),
        dir.path(),
    );
    let dir = CliProject {
        dir,
        iam: Standin::gcp_iam(project),
    };
    let proxy = RecordingProxy::start(gcs_emulator::host());
    let evidence = parse(&run_cli(&dir, &proxy.url, APPLY), 0);
    let (raw, curated) = ("strata-it-two-dev-raw", "strata-it-two-dev-curated");
    let email = |w: &str| format!("strata-it-two-dev-{w}@{project}.iam.gserviceaccount.com");
    let (ingest, reporting) = (email("ingest"), email("reporting"));
    // Buckets, then each workload's account and its Workload Identity binding, then
    // the buckets' bindings (which name the accounts).
    assert_eq!(
        cli_outcomes(&evidence),
        triples(&[
            ("gcs_bucket", raw, "created"),
            ("gcs_bucket", curated, "created"),
            ("gcp_service_account", &ingest, "created"),
            ("gcp_service_account_iam", &ingest, "created"),
            ("gcp_service_account", &reporting, "created"),
            ("gcp_service_account_iam", &reporting, "created"),
            ("gcs_bucket_iam", raw, "created"),
            ("gcs_bucket_iam", curated, "created"),
        ])
    );
    let accounts = format!("/v1/projects/{project}/serviceAccounts");
    assert_eq!(
        dir.iam.writes(),
        [
            format!("create {accounts}"),
            format!("setIamPolicy {accounts}/{ingest}:setIamPolicy"),
            format!("create {accounts}"),
            format!("setIamPolicy {accounts}/{reporting}:setIamPolicy"),
        ],
        "what the IAM server saw the first apply write"
    );
    let rendered = |rel: &str| -> Value {
        let path = dir.path().join("out/dev-gcp").join(rel);
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
    };

    let live_raw: Value = emulator_json(&format!("/b/{raw}")).await;
    assert_eq!(live_raw["versioning"]["enabled"], true);
    assert_eq!(
        live_raw["iamConfiguration"]["publicAccessPrevention"],
        "enforced"
    );
    assert_eq!(
        live_raw["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"],
        true
    );
    assert_eq!(
        live_raw["lifecycle"]["rule"],
        json!([
            {"action": {"type": "SetStorageClass", "storageClass": "ARCHIVE"}, "condition": {"age": 30}},
            {"action": {"type": "Delete"}, "condition": {"age": 7, "matchesPrefix": ["tmp/"]}},
        ])
    );
    let mut labels = json!({
        "managed-by": "strata",
        "owner": "it-team",
        "strata-env": "dev",
        "strata-target": "dev-gcp",
        "suite": "cloud",
        "tier": "raw",
    });
    assert_eq!(
        live_raw["labels"][LIFECYCLE_LABEL],
        lifecycle_label(&live_raw["lifecycle"]["rule"].as_array().unwrap().clone()),
        "the label remembers strata's rules"
    );
    let mut rendered_tags = rendered("buckets/raw.json")["tags"].clone();
    labels[LIFECYCLE_LABEL] = live_raw["labels"][LIFECYCLE_LABEL].clone();
    rendered_tags[LIFECYCLE_LABEL] = live_raw["labels"][LIFECYCLE_LABEL].clone();
    assert_eq!(live_raw["labels"], labels);
    assert_eq!(live_raw["labels"], rendered_tags);

    let live_curated: Value = emulator_json(&format!("/b/{curated}")).await;
    // The emulator leaves `enabled: false` out, as GCS may.
    assert!(
        matches!(
            live_curated["versioning"]["enabled"],
            Value::Null | Value::Bool(false)
        ),
        "{live_curated:#}"
    );
    assert_eq!(
        live_curated["iamConfiguration"]["publicAccessPrevention"],
        "inherited"
    );
    assert_eq!(
        live_curated["lifecycle"]["rule"],
        json!([{"action": {"type": "Delete"}, "condition": {"daysSinceNoncurrentTime": 14}}])
    );
    let mut curated_tags = rendered("buckets/curated.json")["tags"].clone();
    curated_tags[LIFECYCLE_LABEL] = json!(rule_digest(&live_curated["lifecycle"]["rule"][0]));
    assert_eq!(live_curated["labels"], curated_tags);
    assert_eq!(live_curated["labels"]["tier"], "curated");

    // Each bucket's policy holds exactly what the two rendered documents grant on it.
    let sa = |w: &str| format!("serviceAccount:{}", email(w));
    for (bucket, want) in [
        (
            raw,
            json!([
                {"role": "roles/storage.objectUser", "members": [sa("ingest")]},
                {"role": "roles/storage.objectViewer", "members": [sa("reporting")]},
            ]),
        ),
        (
            curated,
            json!([{"role": "roles/storage.objectAdmin", "members": [sa("reporting")]}]),
        ),
    ] {
        let from_docs: Vec<Value> = ["ingest", "reporting"]
            .iter()
            .flat_map(|w| {
                rendered(&format!("iam/{w}.gcp.json"))["bucketBindings"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .filter(|b| b["bucket"] == bucket)
            .collect();
        assert_eq!(by_role(&json!(from_docs)), by_role(&want), "{bucket}");
        let policy: Value = emulator_json(&format!("/b/{bucket}/iam")).await;
        assert_eq!(
            by_role(&policy["bindings"]),
            by_role(&want),
            "{bucket}: {policy:#}"
        );
    }

    // Each account as IAM holds it (read through the API, not through strata): strata's,
    // and bound to its workload's Kubernetes service account, as rendered.
    let http = crate::support::http();
    for w in ["ingest", "reporting"] {
        let doc = rendered(&format!("iam/{w}.gcp.json"));
        let base = format!(
            "{}/v1/projects/{project}/serviceAccounts/{}",
            dir.iam.url,
            email(w)
        );
        let account: Value = http
            .get(&base)
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            (&account["email"], &account["description"]),
            (
                &json!(email(w)),
                &json!("managed-by=strata strata-target=dev-gcp")
            ),
            "{account:#}"
        );
        let policy: Value = http
            .post(format!("{base}:getIamPolicy"))
            .bearer_auth("t")
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            policy["bindings"],
            json!([{"role": "roles/iam.workloadIdentityUser",
                "members": [format!("serviceAccount:{project}.svc.id.goog[strata-it-two/strata-it-two-{w}]")]}]),
            "{w}: {policy:#}"
        );
        assert_eq!(
            by_role(&policy["bindings"]),
            by_role(&json!([doc["workloadIdentity"]])),
            "{w}: as rendered"
        );
    }

    proxy.clear();
    let iam_writes = dir.iam.writes();
    let again = parse(&run_cli(&dir, &proxy.url, APPLY), 0);
    assert_eq!(
        cli_outcomes(&again),
        triples(&[
            ("gcs_bucket", raw, "unchanged"),
            ("gcs_bucket", curated, "unchanged"),
            ("gcp_service_account", &ingest, "unchanged"),
            ("gcp_service_account_iam", &ingest, "unchanged"),
            ("gcp_service_account", &reporting, "unchanged"),
            ("gcp_service_account_iam", &reporting, "unchanged"),
            ("gcs_bucket_iam", raw, "unchanged"),
            ("gcs_bucket_iam", curated, "unchanged"),
        ])
    );
    assert_eq!(proxy.writes(), [], "the second apply wrote");
    assert_eq!(
        dir.iam.writes(),
        iam_writes,
        "the second apply wrote to IAM"
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.path == format!("/storage/v1/b/{curated}/iam")),
        "{:#?}",
        proxy.requests()
    );
}

/// A project template replaces strata's Google IAM document of workload `api` with one
/// that makes the bucket world-owned. The rules judge the rendered document, so apply
/// refuses it before any call that writes.
#[tokio::test]
async fn a_hostile_gcp_iam_template_is_refused_at_apply_with_no_write() {
    let bucket = "strata-it-hostile-gcp";
    let dir = cli_project(bucket);
    let template = dir.path().join("templates/iam/api.gcp.json.j2");
    std::fs::create_dir_all(template.parent().unwrap()).unwrap();
    std::fs::write(
        &template,
        r#"{% if target.cloud == "gcp" %}
{"serviceAccount": {"accountId": "lakehouse-api", "email": "{{ workloads.api.gsaEmail }}", "project": "{{ gcp.projectId }}", "displayName": "api"},
 "workloadIdentity": {"role": "roles/iam.workloadIdentityUser", "members": ["serviceAccount:{{ gcp.projectId }}.svc.id.goog[{{ workloads.api.namespace }}/{{ workloads.api.serviceAccount }}]"]},
 "bucketBindings": [{"bucket": "{{ buckets.data.name }}", "role": "roles/owner", "members": ["allUsers"]}],
 "projectBindings": []}
{% endif %}
"#,
    )
    .unwrap();
    let proxy = RecordingProxy::start(gcs_emulator::host());
    let out = run_cli(&dir, &proxy.url, &["apply", "dev-gcp", "--approve"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in [
        "gcp.primitive-role",
        "grants roles/owner to `allUsers`",
        "templates/iam/api.gcp.json.j2",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from:\n{stderr}");
    }
    assert_eq!(proxy.writes(), [], "the emulator saw a write");
    assert_eq!(
        dir.iam.requests(),
        [] as [Value; 0],
        "IAM saw a request: the render is refused before any call"
    );
    assert_eq!(
        emulator_get(&format!("/b/{bucket}"))
            .await
            .status()
            .as_u16(),
        404,
        "no bucket"
    );
    assert_eq!(
        emulator_get(&format!("/b/{bucket}/iam"))
            .await
            .status()
            .as_u16(),
        404,
        "no bucket IAM policy"
    );
}

/// The helm step on gcp: the kube context is derived from `gcp.cluster` and
/// `gcp.clusterLocation` (`gke_<project>_<location>_<cluster>`), unless `kube.context`
/// says otherwise; the platform release goes first, then `app`.
#[test]
fn helm_runs_with_the_gke_context_or_the_one_kube_context_sets() {
    let bucket = "strata-it-helm-gcp";
    let dir = cli_project(bucket);
    let record = dir.path().join("helm-argv.txt");
    let helm = dir.path().join("fake-helm.sh");
    std::fs::write(
        &helm,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n",
            record.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helm, std::fs::Permissions::from_mode(0o755)).unwrap();
    let apply = |dir: &CliProject| {
        cli(
            dir,
            gcs_emulator::host(),
            &["--format", "json", "apply", "dev-gcp", "--approve"],
        )
        .env("STRATA_HELM", &helm)
        .output()
        .expect("strata runs")
    };
    let out_dir = dir.path().join("out/dev-gcp");
    let chart = dir.path().canonicalize().unwrap().join("charts/app");
    // Before any cloud write apply makes sure helm runs (`version --short`); then the
    // platform chart, whose release lives in `default` (it makes the labelled
    // namespaces: kube.createNamespace is true by default), then `app`.
    let argv = |ctx: &str| {
        format!(
            "version --short\n\
             upgrade --install lakehouse-platform {platform} --namespace default --kube-context {ctx} --wait --rollback-on-failure --timeout 5m\n\
             upgrade --install app {chart} --namespace lakehouse --kube-context {ctx} --wait --rollback-on-failure --timeout 5m --values {values}\n",
            platform = out_dir.join("platform").display(),
            chart = chart.display(),
            values = out_dir.join("releases/app.values.yaml").display(),
        )
    };

    let evidence = parse(&apply(&dir), 0);
    assert_eq!(evidence["helm"].as_array().unwrap().len(), 2);
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        argv("gke_lakehouse-dev-4821_europe-west1_lakehouse-dev")
    );

    std::fs::write(&record, "").unwrap();
    let layer = dir.path().join("environments/dev.gcp.yaml");
    let mut body = std::fs::read_to_string(&layer).unwrap();
    body.push_str("kube:\n  context: ci-gke\n");
    std::fs::write(&layer, body).unwrap();
    let evidence = parse(&apply(&dir), 0);
    assert_eq!(
        cli_outcomes(&evidence),
        triples(&[
            ("gcs_bucket", bucket, "unchanged"),
            ("gcp_service_account", GSA, "unchanged"),
            ("gcp_service_account_iam", GSA, "unchanged"),
            ("gcs_bucket_iam", bucket, "unchanged")
        ])
    );
    assert_eq!(std::fs::read_to_string(&record).unwrap(), argv("ci-gke"));
}

/// A CLI project whose first apply went straight to the emulator; returns it converged.
fn applied_cli_project(bucket: &str) -> CliProject {
    let dir = cli_project(bucket);
    let evidence = parse(&run_cli(&dir, gcs_emulator::host(), APPLY), 0);
    assert_eq!(evidence["status"], "applied", "{evidence:#}");
    dir
}

/// Appends a bucket tag to dev.gcp.yaml, so the next apply PATCHes the labels.
fn add_label(dir: &CliProject) {
    let path = dir.path().join("environments/dev.gcp.yaml");
    let mut body = std::fs::read_to_string(&path).unwrap();
    body.push_str("    tags:\n      team: storage\n");
    std::fs::write(path, body).unwrap();
}

/// README, GCP: "otherwise only the differing fields are PATCHed, guarded by the
/// bucket's metageneration". A PATCH that meets a changed bucket (412) stops apply,
/// exit 2, with evidence and no later write; the next apply converges.
#[test]
fn a_stale_metageneration_stops_apply_with_exit_2_and_nothing_after_it() {
    let bucket = "strata-cli-gcs-metageneration";
    let dir = applied_cli_project(bucket);
    add_label(&dir);
    let live = block_on_json(&format!("/b/{bucket}"));
    let metageneration = live["metageneration"]
        .as_str()
        .map_or_else(|| live["metageneration"].to_string(), str::to_owned);
    let proxy = FaultyProxy::start(
        gcs_emulator::host(),
        &format!("PATCH /storage/v1/b/{bucket}?"),
        412,
        None,
    );
    let out = run_cli(&dir, &proxy.url, APPLY);
    let stderr = text(&out.stderr);
    let evidence = parse(&out, 2);
    assert_eq!(
        stderr,
        format!(
            "error: update gcs_bucket {bucket}: the bucket changed while strata was applying; run apply again\n"
        )
    );
    assert_eq!(evidence["status"], "failed");
    assert_eq!(
        cli_outcomes(&evidence),
        triples(&[("gcs_bucket", bucket, "failed")]),
        "{evidence:#}"
    );
    // The apply lock's object (taken before, released after) aside.
    let writes: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| {
            r.is_write() && !format!("{}?{}", r.path, r.query).contains(".strata-lock.json")
        })
        .collect();
    assert_eq!(
        writes.len(),
        1,
        "one PATCH, not retried, nothing after: {writes:#?}"
    );
    assert_eq!(writes[0].method, "PATCH");
    assert!(
        writes[0]
            .query
            .contains(&format!("ifMetagenerationMatch={metageneration}")),
        "the PATCH is guarded by the metageneration read: {:?}",
        writes[0]
    );
    drop(proxy);
    let again = parse(&run_cli(&dir, gcs_emulator::host(), APPLY), 0);
    assert_eq!(again["resources"][0]["outcome"], "updated");
    let plan = run_cli(&dir, gcs_emulator::host(), &["plan", "dev-gcp"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stdout));
}

/// README, GCP: bucket bindings are "written back with its etag". A 409 or 412 on
/// the PUT (someone wrote in between) stops apply, exit 2, saying so.
#[test]
fn a_stale_etag_on_the_bucket_policy_stops_apply_with_exit_2() {
    for status in [409, 412] {
        let bucket = format!("strata-cli-gcs-etag-{status}");
        let dir = cli_project(&bucket);
        let proxy = FaultyProxy::start(
            gcs_emulator::host(),
            &format!("PUT /storage/v1/b/{bucket}/iam"),
            status,
            None,
        );
        let out = run_cli(&dir, &proxy.url, APPLY);
        let stderr = text(&out.stderr);
        let evidence = parse(&out, 2);
        assert_eq!(
            stderr,
            format!(
                "error: set gcs_bucket_iam {bucket}: the policy changed while strata was applying (etag mismatch); run apply again\n"
            ),
            "{status}"
        );
        assert_eq!(
            cli_outcomes(&evidence).last().unwrap(),
            &(
                "gcs_bucket_iam".to_owned(),
                bucket.clone(),
                "failed".to_owned()
            )
        );
        let puts: Vec<_> = proxy
            .requests()
            .into_iter()
            .filter(|r| r.method == "PUT")
            .collect();
        assert_eq!(puts.len(), 1, "{status}: not retried: {puts:#?}");
        assert!(
            puts[0].etag.as_deref().is_some_and(|e| !e.is_empty()),
            "{status}: the PUT carries the etag it read: {:?}",
            puts[0]
        );
    }
}

/// README, GCP: "a 403 means the name is taken". Plan and apply stop, exit 2, with
/// the project and the hint, and nothing is written.
#[test]
fn a_403_on_the_bucket_means_the_name_is_taken_and_nothing_is_written() {
    let bucket = "strata-cli-gcs-forbidden";
    let dir = cli_project(bucket);
    let proxy = FaultyProxy::start(
        gcs_emulator::host(),
        &format!("GET /storage/v1/b/{bucket} "),
        403,
        None,
    );
    for args in [&["plan", "dev-gcp"][..], APPLY] {
        let out = run_cli(&dir, &proxy.url, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!(
                "error: read gcs_bucket {bucket}: access denied (403): the name is taken by a bucket outside project {PROJECT}"
            )) && stderr.contains("hint: bucket names are global"),
            "{args:?}: {stderr}"
        );
    }
    let requests = proxy.requests();
    assert!(requests.iter().any(|r| r.injected), "{requests:#?}");
    assert!(
        requests.iter().all(|r| !r.is_write()),
        "a write after a 403: {requests:#?}"
    );
    assert_eq!(dir.iam.writes(), [] as [String; 0]);
}

/// README, GCP: a bucket "not in the target's project stops the run". The emulator
/// ignores `project` when listing, so the proxy answers the project's listing with no
/// such bucket, as GCS would for a bucket of another project.
#[test]
fn a_bucket_of_another_project_stops_plan_and_apply_with_nothing_written() {
    let bucket = "strata-cli-gcs-other-project";
    let dir = applied_cli_project(bucket);
    add_label(&dir);
    let proxy = FaultyProxy::start_with(
        gcs_emulator::host(),
        &format!("GET /storage/v1/b?project={PROJECT}&prefix={bucket}"),
        200,
        None,
        Some(r#"{"kind": "storage#buckets"}"#),
    );
    let iam_writes = dir.iam.writes();
    for args in [&["plan", "dev-gcp"][..], APPLY] {
        let out = run_cli(&dir, &proxy.url, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr,
            format!(
                "error: gcs_bucket {bucket} exists but does not belong to project {PROJECT} (gcp.projectId); strata changes nothing in another project\n  \
                 hint: check gcp.projectId, or set buckets.<key>.name to another name\n"
            ),
            "{args:?}"
        );
    }
    let requests = proxy.requests();
    assert!(requests.iter().any(|r| r.injected), "{requests:#?}");
    assert!(requests.iter().all(|r| !r.is_write()), "{requests:#?}");
    assert_eq!(dir.iam.writes(), iam_writes);
    // Without the stand-in answer the same project plans the label change.
    drop(proxy);
    let plan = run_cli(&dir, gcs_emulator::host(), &["plan", "dev-gcp"]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan.stderr));
}

/// README, GCP: "HTTP 408, 429, 500, 502, 503, 504 and lost connections are retried
/// up to 4 attempts, waiting 0.25, 0.5 and 1 s". Each transient status once is
/// retried and plan succeeds; a lasting one is tried 4 times with those waits between
/// (measured by the proxy) and named; a 400 is not retried at all.
#[test]
fn transient_statuses_are_retried_with_their_waits_and_others_are_not() {
    let bucket = "strata-cli-gcs-waits";
    let dir = applied_cli_project(bucket);
    let get = format!("GET /storage/v1/b/{bucket} ");
    let path = format!("/storage/v1/b/{bucket}");
    let tries = |proxy: &FaultyProxy| -> Vec<crate::support::Faulted> {
        proxy
            .requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path == path)
            .collect()
    };
    for status in [408, 429, 500, 502, 503, 504] {
        let proxy = FaultyProxy::start(gcs_emulator::host(), &get, status, Some(1));
        let out = run_cli(&dir, &proxy.url, &["plan", "dev-gcp"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{status}: {}",
            text(&out.stderr)
        );
        let seen = tries(&proxy);
        assert_eq!(
            seen.iter()
                .map(|r| (r.status, r.injected))
                .collect::<Vec<_>>(),
            [(status, true), (200, false)],
            "{status}"
        );
        assert!(seen[1].t - seen[0].t >= 0.24, "{status}: {seen:#?}");
    }

    let proxy = FaultyProxy::start(gcs_emulator::host(), &get, 503, None);
    let out = run_cli(&dir, &proxy.url, &["plan", "dev-gcp"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("read gcs_bucket {bucket}: HTTP 503"))
            && stderr.contains(&format!("(after {} attempts)", gcs::ATTEMPTS)),
        "{stderr}"
    );
    let seen = tries(&proxy);
    assert_eq!(seen.len(), gcs::ATTEMPTS as usize, "{seen:#?}");
    let waits: Vec<f64> = seen.windows(2).map(|w| w[1].t - w[0].t).collect();
    for (wait, least) in waits.iter().zip([0.25, 0.5, 1.0]) {
        // The proxy stamps each answer; the next request comes after strata's wait.
        assert!(
            *wait >= least * 0.95 && *wait < least * 4.0 + 3.0,
            "waits {waits:?}, wanted about 0.25, 0.5, 1 s"
        );
    }

    let proxy = FaultyProxy::start(gcs_emulator::host(), &get, 400, None);
    let out = run_cli(&dir, &proxy.url, &["plan", "dev-gcp"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert_eq!(tries(&proxy).len(), 1, "a 400 is not retried");
}

/// The emulator's answer to GET `path` (below /storage/v1), from a blocking test.
fn block_on_json(path: &str) -> Value {
    crate::support::block_on(emulator_json(path))
}

/// POST to the IAM stand-in of `dir` (as strata does, with a token); the JSON answer.
async fn iam_post(dir: &CliProject, path: &str, body: Value) -> Value {
    assert_loopback(&dir.iam.url);
    let response = crate::support::http()
        .post(format!("{}{path}", dir.iam.url))
        .bearer_auth("test-token")
        .json(&body)
        .send()
        .await
        .expect("stand-in answers");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// Role → members of the workload's Google service account's policy, read through
/// the IAM API, and its etag.
async fn gsa_policy(dir: &CliProject) -> (std::collections::BTreeMap<String, Vec<String>>, Value) {
    let policy = iam_post(
        dir,
        &format!("/v1/projects/{PROJECT}/serviceAccounts/{GSA}:getIamPolicy"),
        json!({}),
    )
    .await;
    (by_role(&policy["bindings"]), policy["etag"].clone())
}

/// A bucket's policy read straight from the emulator, by role, and its etag.
async fn bucket_policy(bucket: &str) -> (std::collections::BTreeMap<String, Vec<String>>, Value) {
    let policy = emulator_json(&format!("/b/{bucket}/iam")).await;
    (by_role(&policy["bindings"]), policy["etag"].clone())
}

/// PUT a bucket policy straight to the emulator.
async fn put_bucket_policy(bucket: &str, bindings: Value, etag: &Value) {
    let base = gcs::emulator_base(gcs_emulator::host());
    assert_loopback(&base);
    let response = crate::support::http()
        .put(format!("{base}/b/{bucket}/iam"))
        .json(&json!({"bindings": bindings, "etag": etag}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

fn policy_json(roles: &std::collections::BTreeMap<String, Vec<String>>) -> Value {
    Value::Array(
        roles
            .iter()
            .map(|(role, members)| json!({"role": role, "members": members}))
            .collect(),
    )
}

/// Through the binary: members strata does not manage, on the bucket and on the
/// Google service account, are no drift (a second apply writes nothing, as the
/// emulator's proxy and the IAM stand-in count it) and survive the repair of
/// strata's own members, read back through the APIs.
#[test]
fn foreign_members_on_the_bucket_and_the_service_account_survive_apply_and_repair() {
    let bucket = "strata-cli-gcs-foreign-members";
    let dir = applied_cli_project(bucket);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let me = format!("serviceAccount:{GSA}");
    let wi = "roles/iam.workloadIdentityUser";
    let pool_member = format!("serviceAccount:{PROJECT}.svc.id.goog[lakehouse/lakehouse-api]");
    let viewer = "roles/storage.objectViewer";
    let token_creator = "roles/iam.serviceAccountTokenCreator";
    let ops = "group:ops@example.com";
    runtime.block_on(async {
        let (mut roles, etag) = bucket_policy(bucket).await;
        assert_eq!(roles[ROLE], std::slice::from_ref(&me), "strata's binding");
        roles.get_mut(ROLE).unwrap().push(FOREIGN.to_owned());
        roles.insert(viewer.into(), vec!["group:readers@example.com".into()]);
        put_bucket_policy(bucket, policy_json(&roles), &etag).await;
        let (mut roles, etag) = gsa_policy(&dir).await;
        assert_eq!(
            roles[wi],
            std::slice::from_ref(&pool_member),
            "strata's binding"
        );
        roles.insert(token_creator.into(), vec![ops.into()]);
        iam_post(
            &dir,
            &format!("/v1/projects/{PROJECT}/serviceAccounts/{GSA}:setIamPolicy"),
            json!({"policy": {"bindings": policy_json(&roles), "etag": etag}}),
        )
        .await;
    });

    let proxy = RecordingProxy::start(gcs_emulator::host());
    let iam_writes = dir.iam.writes();
    let plan = run_cli(&dir, &proxy.url, &["plan", "dev-gcp"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "foreign members are no drift: {}",
        text(&plan.stdout)
    );
    let again = parse(&run_cli(&dir, &proxy.url, APPLY), 0);
    assert!(
        cli_outcomes(&again)
            .iter()
            .all(|(_, _, o)| o == "unchanged"),
        "{again:#}"
    );
    assert_eq!(proxy.writes(), [], "the storage server saw a write");
    assert!(!proxy.requests().is_empty(), "apply read through the proxy");
    assert_eq!(dir.iam.writes(), iam_writes, "the IAM server saw a write");

    // Someone takes strata's members away, leaving the foreign ones.
    runtime.block_on(async {
        let (mut roles, etag) = bucket_policy(bucket).await;
        roles.insert(ROLE.into(), vec![FOREIGN.into()]);
        put_bucket_policy(bucket, policy_json(&roles), &etag).await;
        let (mut roles, etag) = gsa_policy(&dir).await;
        roles.remove(wi);
        iam_post(
            &dir,
            &format!("/v1/projects/{PROJECT}/serviceAccounts/{GSA}:setIamPolicy"),
            json!({"policy": {"bindings": policy_json(&roles), "etag": etag}}),
        )
        .await;
    });
    let plan = run_cli(&dir, gcs_emulator::host(), &["plan", "dev-gcp"]);
    assert_eq!(plan.status.code(), Some(1), "{}", text(&plan.stderr));
    let repaired = parse(&run_cli(&dir, gcs_emulator::host(), APPLY), 0);
    assert_eq!(
        cli_outcomes(&repaired),
        triples(&[
            ("gcs_bucket", bucket, "unchanged"),
            ("gcp_service_account", GSA, "unchanged"),
            ("gcp_service_account_iam", GSA, "updated"),
            ("gcs_bucket_iam", bucket, "updated")
        ])
    );
    runtime.block_on(async {
        let (roles, _) = bucket_policy(bucket).await;
        let mut both = vec![me.clone(), FOREIGN.to_owned()];
        both.sort();
        assert_eq!(roles[ROLE], both);
        assert_eq!(roles[viewer], ["group:readers@example.com"]);
        let (roles, _) = gsa_policy(&dir).await;
        assert_eq!(roles[wi], std::slice::from_ref(&pool_member));
        assert_eq!(roles[token_creator], [ops]);
    });
    let plan = run_cli(&dir, gcs_emulator::host(), &["plan", "dev-gcp"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan.stdout));
}

/// README, GCP: a service account "that exists without that mark is never changed":
/// plan and apply stop, exit 2, and neither server sees a write.
#[test]
fn a_service_account_strata_did_not_mark_is_never_changed() {
    let bucket = "strata-cli-gcs-sa-not-ours";
    let dir = cli_project(bucket);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let account_id = GSA.split('@').next().unwrap();
    runtime.block_on(iam_post(
        &dir,
        &format!("/v1/projects/{PROJECT}/serviceAccounts"),
        json!({"accountId": account_id, "serviceAccount": {"displayName": "the data team's", "description": "made by hand"}}),
    ));
    let made = dir.iam.writes();
    let proxy = RecordingProxy::start(gcs_emulator::host());
    for args in [&["plan", "dev-gcp"][..], APPLY] {
        let out = run_cli(&dir, &proxy.url, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "gcp service account {GSA} exists and is not strata's for dev-gcp (its description is \"made by hand\""
            )) && stderr.contains("strata changes nothing it does not own"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(dir.iam.writes(), made, "the IAM server saw a write");
    assert_eq!(proxy.writes(), [], "the storage server saw a write");
    let state = dir.iam.state();
    let description = state["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["email"] == GSA)
        .map(|a| a["description"].clone());
    assert_eq!(description, Some(json!("made by hand")));
}
