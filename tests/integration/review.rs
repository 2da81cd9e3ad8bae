//! Made for review: explain, machine-readable output, the editor schema, CI
//! annotations, completions, man page, colour. Each through the real binary.

use std::path::Path;

use crate::support::{repo_root, run_in, text};

/// A copy of the example project in a temp dir, rendered into `snapshots/`.
fn example_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["init", "proj"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let proj = dir.path().join("proj");
    let out = run_in(&proj, &["render", "--out", "snapshots"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    dir
}

fn edit(path: &Path, from: &str, to: &str) {
    let body = std::fs::read_to_string(path).unwrap();
    assert!(body.contains(from), "{} lacks {from:?}", path.display());
    std::fs::write(path, body.replacen(from, to, 1)).unwrap();
}

#[test]
fn explain_shows_every_layer_with_file_and_line() {
    let out = run_in(&repo_root(), &["explain", "prod-aws", "aws.region"]);
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!(text(&out.stdout), @r#"
    prod-aws aws.region = "us-east-1"
      ├─ environments/clouds/aws.yaml:4:11  "eu-west-1"
      └─ environments/prod.aws.yaml:4:11  "us-east-1"  ← final
    "#);
}

#[test]
fn explain_shows_a_null_that_unsets_and_the_layer_that_sets_again() {
    let out = run_in(
        &repo_root(),
        &[
            "explain",
            "prod-gcp",
            "bucket.lifecycle.glacierAfterDays",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!(text(&out.stdout));
}

#[test]
fn explain_derived_name_lists_its_inputs() {
    let out = run_in(&repo_root(), &["explain", "staging-gcp", "names.bucket"]);
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!(text(&out.stdout));
}

#[test]
fn explain_unknown_key_suggests_the_close_one() {
    let out = run_in(&repo_root(), &["explain", "dev-aws", "bucket.versoning"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("did you mean `bucket.versioning`?"), "{err}");
}

#[test]
fn committed_schema_is_current_and_example_files_point_at_it() {
    let out = run_in(&repo_root(), &["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read_to_string(repo_root().join("strata.schema.json")).unwrap();
    assert_eq!(
        text(&out.stdout),
        committed,
        "strata.schema.json is stale: run `strata schema > strata.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
    assert!(schema["properties"]["bucket"].is_object());
    assert!(schema["properties"]["clouds"].is_object());
    for entry in walkdir::WalkDir::new(repo_root().join("environments")) {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "yaml") {
            let body = std::fs::read_to_string(entry.path()).unwrap();
            assert!(
                body.lines()
                    .next()
                    .unwrap_or_default()
                    .starts_with("# yaml-language-server: $schema="),
                "{} lacks the schema line",
                entry.path().display()
            );
        }
    }
}

#[test]
fn check_reports_drift_as_json_and_github() {
    let dir = example_copy();
    let proj = dir.path().join("proj");
    edit(
        &proj.join("environments/prod.yaml"),
        "glacierAfterDays: 90",
        "glacierAfterDays: 120",
    );

    let out = run_in(
        &proj,
        &[
            "render",
            "--check",
            "--out",
            "snapshots",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    let paths: Vec<&str> = doc["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["prod-aws/bucket.json", "prod-gcp/bucket.json"]);
    assert_eq!(doc["drift"][0]["status"], "changed");
    assert_eq!(doc["drift"][0]["linesAdded"], 1);
    assert!(
        doc["drift"][0]["diff"]
            .as_str()
            .unwrap()
            .contains("+      \"afterDays\": 120,")
    );

    let out = run_in(
        &proj,
        &[
            "render",
            "--check",
            "--out",
            "snapshots",
            "--format",
            "github",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(text(&out.stdout));
}

#[test]
fn errors_as_json_and_github_annotations() {
    let dir = example_copy();
    let proj = dir.path().join("proj");
    edit(
        &proj.join("environments/base.yaml"),
        "versioning: true",
        "versioning: maybe",
    );
    let out = run_in(&proj, &["validate", "--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(text(&out.stdout), @r#"
    {
      "errors": [
        {
          "column": 15,
          "file": "environments/base.yaml",
          "hint": null,
          "keyPath": "bucket.versioning",
          "line": 53,
          "message": "expected a boolean, found \"maybe\""
        }
      ],
      "ok": false
    }
    "#);
    let out = run_in(&proj, &["validate", "--format", "github"]);
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(text(&out.stdout), @r#"::error file=environments/base.yaml,line=53,col=15,title=bucket.versioning::expected a boolean, found "maybe""#);
}

#[test]
fn list_as_json_names_layers_in_merge_order() {
    let out = run_in(&repo_root(), &["list", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let prod_aws = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "prod-aws")
        .unwrap();
    assert_eq!(
        prod_aws["layers"],
        serde_json::json!([
            "environments/base.yaml",
            "environments/clouds/aws.yaml",
            "environments/prod.yaml",
            "environments/prod.aws.yaml"
        ])
    );
    assert_eq!(doc.as_array().unwrap().len(), 6);
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    let out = run_in(&repo_root(), &["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0));
    let bash = text(&out.stdout);
    for word in ["render", "explain", "--check", "--approve"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let out = run_in(&repo_root(), &["man"]);
    assert_eq!(out.status.code(), Some(0));
    let man = text(&out.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH strata"),
        "not a man page: {}",
        &man[..80.min(man.len())]
    );
    assert!(man.contains("render"));
}

#[test]
fn colour_only_when_asked_or_on_a_terminal() {
    let dir = example_copy();
    let proj = dir.path().join("proj");
    edit(
        &proj.join("environments/prod.yaml"),
        "glacierAfterDays: 90",
        "glacierAfterDays: 120",
    );
    let always = run_in(
        &proj,
        &[
            "--color",
            "always",
            "render",
            "--check",
            "--out",
            "snapshots",
        ],
    );
    assert!(
        text(&always.stdout).contains("\x1b[32m+"),
        "no colour with --color always"
    );
    // Not a terminal: auto means no colour; NO_COLOR wins over auto as well.
    let auto = run_in(&proj, &["render", "--check", "--out", "snapshots"]);
    assert!(!text(&auto.stdout).contains('\x1b'));
    let no_color = crate::support::strata()
        .current_dir(&proj)
        .env("NO_COLOR", "1")
        .args(["render", "--check", "--out", "snapshots"])
        .output()
        .unwrap();
    assert!(!text(&no_color.stdout).contains('\x1b'));
    let never = run_in(
        &proj,
        &[
            "--color",
            "never",
            "render",
            "--check",
            "--out",
            "snapshots",
        ],
    );
    assert!(!text(&never.stdout).contains('\x1b'));
}

#[test]
fn check_diffs_iam_documents_semantically() {
    let dir = example_copy();
    let proj = dir.path().join("proj");
    // Someone hand-edited the snapshot: one action as a plain string, statements in
    // another order. Same policy, so the diff says so instead of showing every line.
    let policy = proj.join("snapshots/dev-aws/iam/policy.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&policy).unwrap()).unwrap();
    doc["Statement"].as_array_mut().unwrap().reverse();
    let objects = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["Sid"] == "ReadWriteObjects")
        .unwrap();
    let resource = doc["Statement"][objects]["Resource"][0].clone();
    doc["Statement"][objects]["Resource"] = resource;
    let listed = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["Sid"] == "ListBucket")
        .unwrap();
    doc["Statement"][listed]["Action"] =
        serde_json::json!(["s3:ListBucket", "s3:GetBucketLocation"]);
    std::fs::write(&policy, serde_json::to_string(&doc).unwrap()).unwrap();

    let out = run_in(
        &proj,
        &[
            "render",
            "--check",
            "--out",
            "snapshots",
            "--format",
            "json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "bytes differ, so the snapshot is still stale"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let drift = &report["drift"][0];
    assert_eq!(drift["path"], "dev-aws/iam/policy.json");
    assert_eq!(drift["semantic"], true);
    assert_eq!(drift["linesAdded"], 0);
    assert!(
        drift["diff"]
            .as_str()
            .unwrap()
            .contains("same content, formatted differently")
    );

    // A real change among the noise is shown, and only it.
    doc["Statement"][listed]["Action"] = serde_json::json!(["s3:ListBucket"]);
    std::fs::write(&policy, serde_json::to_string(&doc).unwrap()).unwrap();
    let out = run_in(
        &proj,
        &[
            "render",
            "--check",
            "--out",
            "snapshots",
            "--format",
            "json",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let drift = &report["drift"][0];
    assert_eq!(drift["semantic"], true);
    assert_eq!(
        (drift["linesAdded"].as_u64(), drift["linesRemoved"].as_u64()),
        (Some(1), Some(0)),
        "{}",
        drift["diff"]
    );
    assert!(
        drift["diff"]
            .as_str()
            .unwrap()
            .contains("+        \"s3:GetBucketLocation\","),
        "{}",
        drift["diff"]
    );
}

#[test]
fn yaml_merge_keys_work_and_explain_points_at_the_merge() {
    let dir = example_copy();
    let proj = dir.path().join("proj");
    let mut staging = std::fs::read_to_string(proj.join("environments/staging.yaml")).unwrap();
    staging.push_str("\napp:\n  backend: &tuned\n    replicas: 4\n  frontend:\n    <<: *tuned\n");
    std::fs::write(proj.join("environments/staging.yaml"), staging).unwrap();
    let out = run_in(
        &proj,
        &[
            "explain",
            "staging-aws",
            "app.frontend.replicas",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["value"], 4, "the merge brought the anchored value in");
    let last = doc["layers"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["file"], "environments/staging.yaml");
}
