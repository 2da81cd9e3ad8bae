//! The rules of this module, run through what `strata validate` runs (load, merge, type,
//! check every target and across them, render) on a copy of the storage-only example
//! with one edit each. No binary, no server: quick enough for every mutant of the fast
//! mutation pass (`scripts/mutants --fast`), which before these saw none of the rules.
//! The binary's own tests of the same rules are in tests/integration/rules.rs.

use std::path::Path;

use crate::Loaded;
use crate::error::Error;
use crate::project::Project;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

/// One edit of a layer file (relative to environments/): `old` replaced by `new` (it
/// must be there), or `new` appended when `old` is empty (the file is created when it
/// does not exist).
type Edit<'a> = (&'a str, &'a str, &'a str);

/// Every error `validate` reports for the storage-only example with `edits`, as printed.
fn validate(edits: &[Edit]) -> Vec<String> {
    validate_example("storage-only", edits)
}

/// The same for the bundled example `name` (its environments/ and charts/).
fn validate_example(name: &str, edits: &[Edit]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let env = dir.path().join("environments");
    let example = Path::new(EXAMPLES).join(name);
    copy_dir(&example.join("environments"), &env);
    for extra in ["charts", "vars.schema.json"] {
        let from = example.join(extra);
        if from.is_dir() {
            copy_dir(&from, &dir.path().join(extra));
        } else if from.is_file() {
            std::fs::copy(&from, dir.path().join(extra)).unwrap();
        }
    }
    for (file, old, new) in edits {
        let path = env.join(file);
        let body = std::fs::read_to_string(&path).unwrap_or_default();
        let body = if old.is_empty() {
            format!("{body}\n{new}\n")
        } else {
            assert!(body.contains(old), "{file} has no `{old}`");
            body.replacen(old, new, 1)
        };
        std::fs::write(&path, body).unwrap();
    }
    let loaded = Loaded::load(Project::Disk(dir.path().to_path_buf())).expect("the layers load");
    let (targets, mut errors) = loaded.targets_and_errors(&[]).expect("no usage error");
    errors.extend(super::across(&targets));
    let (charts, chart_errors) = loaded.charts(&targets);
    errors.extend(chart_errors);
    let renderer = loaded.renderer().expect("templates compile");
    if let Err(e) = crate::render_all(&renderer, &targets, &charts) {
        errors.extend(e.flatten().into_iter().map(Error::duplicate));
    }
    crate::dedup_errors(&mut errors);
    crate::sort_errors(&mut errors);
    errors.iter().map(|e| e.to_string()).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The errors that contain every one of `parts`.
fn matching<'a>(errors: &'a [String], parts: &[&str]) -> Vec<&'a String> {
    errors
        .iter()
        .filter(|e| parts.iter().all(|p| e.contains(p)))
        .collect()
}

#[track_caller]
fn assert_one(errors: &[String], parts: &[&str]) {
    let found = matching(errors, parts);
    assert_eq!(found.len(), 1, "one error with {parts:?} in {errors:#?}");
}

#[track_caller]
fn assert_none(errors: &[String], parts: &[&str]) {
    let found = matching(errors, parts);
    assert!(found.is_empty(), "no error with {parts:?}, got {found:#?}");
}

const EXCEPTION_RULE: &str = "  - rule: prod.versioning\n";
const EXCEPTION_PATH: &str = "    path: buckets.scratch.versioning\n";
const EXCEPTION_REASON: &str = "    reason: scratch holds intermediates that the ingest jobs can recreate and that expire after 7 days\n";

#[test]
fn the_example_is_valid() {
    // Its prod exception names `buckets.scratch.versioning`, set in no layer: a prod
    // setting left at its default counts as there, since its bucket is.
    assert_eq!(validate(&[]), Vec::<String>::new());
}

#[test]
fn an_exception_naming_an_unknown_rule_is_refused_with_the_closest_rule() {
    let errors = validate(&[("prod.yaml", EXCEPTION_RULE, "  - rule: prod.versoning\n")]);
    assert_one(
        &errors,
        &[
            "environments/prod.yaml:26",
            "exceptions.0.rule",
            "unknown rule `prod.versoning`",
            "did you mean `prod.versioning`?",
        ],
    );
    // And what it meant to relax is reported again, with the way to relax it.
    assert_one(
        &errors,
        &[
            "buckets.scratch.versioning",
            "[prod.versioning]",
            "add `exceptions: [{rule: prod.versioning, path: buckets.scratch.versioning",
        ],
    );
}

#[test]
fn an_exception_needs_a_reason_of_ten_characters() {
    let reason = |r: &str| {
        validate(&[(
            "prod.yaml",
            EXCEPTION_REASON,
            &format!("    reason: \"{r}\"\n"),
        )])
    };
    let needs = ["exceptions.0.reason", "an exception needs a reason"];
    assert_none(&reason("ten chars!"), &needs);
    assert_one(&reason("nine char"), &needs);
    // Spaces around it do not count.
    assert_one(&reason("   nine char   "), &needs);
    assert_none(&reason("   ten chars!   "), &needs);
}

#[test]
fn an_exception_whose_path_names_nothing_is_refused() {
    let nothing = "names no key of any target";
    // A misspelt bucket.
    let errors = validate(&[(
        "prod.yaml",
        EXCEPTION_PATH,
        "    path: buckets.scrach.versioning\n",
    )]);
    assert_one(
        &errors,
        &[
            "environments/prod.yaml:27",
            "`buckets.scrach.versioning` names no key of any target",
        ],
    );
    // A prod setting's default counts only under a key that is there, and only for a
    // prod rule.
    let errors = validate(&[("prod.yaml", EXCEPTION_PATH, "    path: versioning\n")]);
    assert_one(&errors, &["`versioning`", nothing]);
    let errors = validate(&[("prod.yaml", EXCEPTION_RULE, "  - rule: secret-literal\n")]);
    assert_one(&errors, &["`buckets.scratch.versioning`", nothing]);
    // A key that is there is fine for any rule.
    let errors = validate(&[
        ("prod.yaml", EXCEPTION_RULE, "  - rule: secret-literal\n"),
        (
            "prod.yaml",
            EXCEPTION_PATH,
            "    path: buckets.scratch.requireSse\n",
        ),
    ]);
    assert_none(&errors, &[nothing]);
    // One exception read by several targets names something when it does so in one of
    // them: base.yaml's (read by the dev targets; prod's list replaces it), for a key
    // only the GCP targets have.
    let errors = validate(&[(
        "base.yaml",
        "",
        "exceptions:\n  - {rule: secret-literal, path: gcp.location, reason: the location is no secret at all}",
    )]);
    assert_none(&errors, &[nothing]);
    let errors = validate(&[(
        "base.yaml",
        "",
        "exceptions:\n  - {rule: secret-literal, path: gcp.locaton, reason: the location is no secret at all}",
    )]);
    assert_one(
        &errors,
        &["environments/base.yaml:", "`gcp.locaton`", nothing],
    );
}

#[test]
fn two_targets_that_would_make_one_bucket_are_refused_naming_both() {
    let errors = validate(&[(
        "dev.aws.yaml",
        "",
        "buckets:\n  raw:\n    name: telemetry-prod-raw-333333333333",
    )]);
    assert_one(
        &errors,
        &[
            // Reported at the second target (prod-aws's name is derived: its bucket's
            // key), naming where the first set it.
            "environments/base.yaml:14:3: buckets.raw",
            "aws bucket `telemetry-prod-raw-333333333333` of target prod-aws",
            "is also the one of target dev-aws (environments/dev.aws.yaml:4:11)",
            "give one of them another name",
        ],
    );
    // Within one target the same name twice is the per-target rule's finding, not
    // one of a target clashing with itself.
    let errors = validate(&[(
        "dev.aws.yaml",
        "",
        "buckets:\n  raw:\n    name: telemetry-dev-one-111111111111\n  scratch:\n    name: telemetry-dev-one-111111111111",
    )]);
    assert_none(
        &errors,
        &["is also the one of target dev-aws (environments"],
    );
    assert!(
        !matching(&errors, &["telemetry-dev-one-111111111111"]).is_empty(),
        "{errors:#?}"
    );
}

#[test]
fn an_aws_account_id_is_twelve_digits() {
    let account = |id: &str| {
        validate(&[(
            "dev.yaml",
            "accountId: \"111111111111\"",
            &format!("accountId: \"{id}\""),
        )])
    };
    let twelve = ["aws.accountId", "an AWS account id is 12 digits"];
    assert_one(&account("11111111111"), &twelve);
    assert_one(&account("1111111111111"), &twelve);
    assert_one(&account("11111111111a"), &twelve);
    assert_none(&account("011111111111"), &twelve);
}

#[test]
fn an_aws_region_and_the_identity_settings_are_checked() {
    let errors = validate(&[("clouds/aws.yaml", "region: eu-west-1", "region: mars-1")]);
    assert_one(
        &errors,
        &["aws.region", "`mars-1` does not look like an AWS region"],
    );

    let irsa = |issuer: &str| {
        validate(&[(
            "dev.aws.yaml",
            "",
            &format!("aws:\n  identity: irsa\n{issuer}"),
        )])
    };
    assert_one(
        &irsa(""),
        &["aws.identity", "IRSA needs the cluster's OIDC issuer"],
    );
    assert_one(
        &irsa("  oidcIssuer: http://oidc.example/x\n"),
        &["aws.oidcIssuer", "is not an OIDC issuer URL"],
    );
    assert_one(
        &irsa("  oidcIssuer: https://x\n"),
        &["aws.oidcIssuer", "`https://x` is not an OIDC issuer URL"],
    );
    let fine = irsa("  oidcIssuer: https://oidc.eks.eu-west-1.amazonaws.com/id/ABC\n");
    assert_none(&fine, &["OIDC issuer"]);
    // The shortest there is: https:// and four characters.
    assert_none(&irsa("  oidcIssuer: https://x.io\n"), &["OIDC issuer"]);

    // A target without workloads assumes no role: it needs neither.
    let errors = validate(&[(
        "dev.aws.yaml",
        "",
        "aws:\n  identity: irsa\nworkloads: null",
    )]);
    assert_none(&errors, &["OIDC issuer"]);
    let errors = validate(&[
        ("dev.yaml", "  cluster: telemetry-dev\n\ngcp", "\ngcp"),
        ("dev.aws.yaml", "", "workloads: null"),
    ]);
    assert_none(&errors, &["aws.cluster"]);

    // Pod Identity goes through the cluster.
    let errors = validate(&[("dev.yaml", "  cluster: telemetry-dev\n\ngcp", "\ngcp")]);
    assert_one(
        &errors,
        &["EKS Pod Identity associates roles through the cluster: `aws.cluster` is not set"],
    );
}

#[test]
fn a_gcp_project_id_follows_googles_rules() {
    let errors = validate(&[(
        "dev.yaml",
        "projectId: telemetry-dev-7305",
        "projectId: Bad",
    )]);
    assert_one(
        &errors,
        &["gcp.projectId", "`Bad` is not a valid GCP project id"],
    );
}

#[test]
fn a_lifecycle_rule_acts_and_archives_before_it_expires() {
    let rules = |list: &str| {
        validate(&[(
            "base.yaml",
            "      - {expireAfterDays: 7}\n",
            &format!("{list}\n"),
        )])
    };
    let action = [
        "buckets.scratch.lifecycle.0",
        "a lifecycle rule needs an action",
    ];
    assert_one(&rules("      - {}"), &action);
    for one in [
        "archiveAfterDays: 3",
        "expireAfterDays: 3",
        "noncurrentExpireAfterDays: 3",
    ] {
        assert_none(&rules(&format!("      - {{{one}}}")), &action);
    }
    let order = "before they would be archived";
    assert_one(
        &rules("      - {archiveAfterDays: 30, expireAfterDays: 30}"),
        &[
            "buckets.scratch.lifecycle.0.expireAfterDays",
            "objects expire after 30 days, before they would be archived after 30",
        ],
    );
    assert_one(
        &rules("      - {archiveAfterDays: 30, expireAfterDays: 29}"),
        &[order],
    );
    assert_none(
        &rules("      - {archiveAfterDays: 30, expireAfterDays: 31}"),
        &[order],
    );
}

const API_REPLICAS: &str = "      replicas: 2\n      args: [serve]\n";

#[test]
fn the_three_tier_example_is_valid() {
    // Its values set annotation keys the charts' values.yaml cannot list (an empty
    // map there takes any keys) and `global`, which every chart shares.
    assert_eq!(validate_example("three-tier", &[]), Vec::<String>::new());
}

#[test]
fn a_release_value_the_chart_does_not_have_is_refused_with_the_closest_key() {
    let typo = |old: &str, new: &str| validate_example("three-tier", &[("base.yaml", old, new)]);
    let errors = typo(API_REPLICAS, "      replicaz: 2\n      args: [serve]\n");
    assert_one(
        &errors,
        &[
            "environments/base.yaml:74",
            "`replicaz` is not a value of charts/backend",
            "did you mean `replicas`?",
            "`strictValues: false` on the release accepts keys the chart does not declare",
        ],
    );
    // Below the top level too.
    let errors = typo("        create: false\n", "        craete: false\n");
    assert_one(
        &errors,
        &[
            "`craete` is not a value of charts/backend",
            "did you mean `create`?",
        ],
    );
    // A key nothing is close to lists what is there instead.
    let errors = typo(
        API_REPLICAS,
        "      zzzzzzzzzz: 2\n      replicas: 2\n      args: [serve]\n",
    );
    assert_one(
        &errors,
        &[
            "`zzzzzzzzzz` is not a value of charts/backend",
            "keys charts/backend/values.yaml has here: ",
        ],
    );
}

#[test]
fn strict_values_false_takes_keys_the_chart_does_not_declare() {
    let unknown = "is not a value of charts/backend";
    let edits = |strict: &str| {
        validate_example(
            "three-tier",
            &[
                (
                    "base.yaml",
                    API_REPLICAS,
                    "      replicaz: 2\n      replicas: 2\n      args: [serve]\n",
                ),
                (
                    "base.yaml",
                    "    timeout: 10m",
                    &format!("    strictValues: {strict}\n    timeout: 10m"),
                ),
            ],
        )
    };
    assert_one(&edits("true"), &[unknown]);
    assert_none(&edits("false"), &[unknown]);
}
