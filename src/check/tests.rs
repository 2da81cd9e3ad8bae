//! The rules of this module, run through what `strata validate` runs (load, merge, type,
//! check every target and across them, render) on a copy of the storage-only example
//! with one edit each. No binary, no server: quick enough for every mutant of the fast
//! mutation pass (`scripts/mutants --fast`), which before these saw none of the rules.
//! The binary's own tests of the same rules are in tests/integration/rules.rs.

use std::collections::BTreeMap;
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
    let files: Vec<String> = edits
        .iter()
        .map(|(file, _, _)| format!("environments/{file}"))
        .collect();
    let edits: Vec<Edit> = edits
        .iter()
        .zip(&files)
        .map(|((_, old, new), file)| (file.as_str(), *old, *new))
        .collect();
    validate_project(name, &[], &edits)
}

/// The same with the files of the project root `removed` first, then `edits` of any
/// file of the project (paths relative to its root: `charts/backend/values.yaml`,
/// `templates/releases/api.values.yaml`).
fn validate_project(name: &str, removed: &[&str], edits: &[Edit]) -> Vec<String> {
    let dir = example_copy(name, removed, edits);
    validate_dir(dir.path())
}

/// Every error `validate` reports for the project in `dir`, as printed.
fn validate_dir(dir: &Path) -> Vec<String> {
    let loaded = Loaded::load(Project::Disk(dir.to_path_buf())).expect("the layers load");
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

/// The errors of loading the project of [`validate_project`] and typing its targets
/// (the stage before the checks), one text; empty when there are none.
fn load_errors(removed: &[&str], edits: &[Edit]) -> String {
    let dir = example_copy("storage-only", removed, edits);
    match Loaded::load(Project::Disk(dir.path().to_path_buf())) {
        Err(e) => e.to_string(),
        Ok(loaded) => match loaded.targets_and_errors(&[]) {
            Err(e) => e.to_string(),
            Ok((_, errors)) => errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        },
    }
}

/// What `render` writes for the project of [`validate_project`], which must be valid:
/// each artifact's text by its path under the output folder.
fn render_project(name: &str, removed: &[&str], edits: &[Edit]) -> BTreeMap<String, String> {
    let dir = example_copy(name, removed, edits);
    render_dir(dir.path())
        .into_iter()
        .map(|(path, bytes)| (path, String::from_utf8(bytes).expect("UTF-8")))
        .collect()
}

/// A copy of the bundled example `name` (its environments/, charts/, templates/ and
/// vars.schema.json) with `removed` and `edits` applied.
fn example_copy(name: &str, removed: &[&str], edits: &[Edit]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let example = Path::new(EXAMPLES).join(name);
    for extra in ["environments", "charts", "templates", "vars.schema.json"] {
        let from = example.join(extra);
        if from.is_dir() {
            copy_dir(&from, &dir.path().join(extra));
        } else if from.is_file() {
            std::fs::copy(&from, dir.path().join(extra)).unwrap();
        }
    }
    for file in removed {
        std::fs::remove_file(dir.path().join(file)).expect("a file of the example");
    }
    for (file, old, new) in edits {
        let path = dir.path().join(file);
        let body = std::fs::read_to_string(&path).unwrap_or_default();
        let body = if old.is_empty() {
            format!("{body}\n{new}\n")
        } else {
            assert!(body.contains(old), "{file} has no `{old}`");
            body.replacen(old, new, 1)
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
    }
    dir
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

/// Exactly one error, and it contains `part`.
#[track_caller]
fn assert_only(errors: &[String], part: &str) {
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains(part), "{errors:#?}");
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

/// The errors, one string each, for the three-tier example with `edits` anywhere in
/// the project and `removed` files gone.
fn three_tier(removed: &[&str], edits: &[Edit]) -> Vec<String> {
    validate_project("three-tier", removed, edits)
}

const WORKER_VALUES: &str =
    "      replicas: 1\n      args: [work, --queue, jobs]\n      service: {enabled: false}\n";
const BACKEND_SCHEMA: &str = "charts/backend/values.schema.json";
const BACKEND_VALUES: &str = "charts/backend/values.yaml";

#[test]
fn a_release_value_of_the_wrong_type_is_refused_at_the_value_or_the_list_item() {
    // A scalar: the value's own column; an item of a list: that item; a list where
    // a mapping belongs: its key (its value may start a line further down).
    let errors = three_tier(
        &[],
        &[(
            "environments/base.yaml",
            WORKER_VALUES,
            "      replicas: one\n      args: [work, --queue, 3]\n      service: [false]\n",
        )],
    );
    assert_eq!(
        errors,
        [
            "environments/base.yaml:95:17: releases.worker.values.replicas: charts/backend/values.schema.json: value is not of type \"integer\" (at /replicas, rule `type`)",
            "environments/base.yaml:96:29: releases.worker.values.args.2: charts/backend/values.schema.json: value is not of type \"string\" (at /args/2, rule `type`)",
            "environments/base.yaml:97:7: releases.worker.values.service: charts/backend/values.schema.json: value is not of type \"object\" (at /service, rule `type`)",
        ]
    );
}

#[test]
fn a_required_key_nobody_sets_is_reported_at_the_values_line() {
    // Helm checks the schema against values.yaml with the values over it: `port`,
    // required, is in neither once the chart's default goes.
    let errors = three_tier(&[], &[(BACKEND_VALUES, "port: 8080\n", "")]);
    assert_eq!(
        errors,
        [
            "environments/base.yaml:71:5: releases.api.values: charts/backend/values.schema.json: \"port\" is a required property (at /, rule `required`)",
            "environments/base.yaml:92:5: releases.worker.values: charts/backend/values.schema.json: \"port\" is a required property (at /, rule `required`)",
        ]
    );
}

const REPLICAZ: &str = "      replicaz: 2\n      replicas: 2\n      args: [serve]\n";
const REPLICAZ_ERROR: &str = "environments/base.yaml:74:7: releases.api.values.replicaz: `replicaz` is not a value of charts/backend (values.yaml has no such key)\n  hint: did you mean `replicas`?; `strictValues: false` on the release accepts keys the chart does not declare";

#[test]
fn an_unknown_key_is_reported_once_at_the_key_and_not_again_by_the_schema() {
    // The schema (additionalProperties: false) refuses it too; that is not repeated.
    let errors = three_tier(&[], &[("environments/base.yaml", API_REPLICAS, REPLICAZ)]);
    assert_eq!(errors, [REPLICAZ_ERROR]);
}

#[test]
fn strict_values_false_leaves_an_unknown_key_to_the_schema_which_points_at_the_key() {
    let errors = three_tier(
        &[],
        &[
            ("environments/base.yaml", API_REPLICAS, REPLICAZ),
            (
                "environments/base.yaml",
                "    timeout: 10m",
                "    strictValues: false\n    timeout: 10m",
            ),
        ],
    );
    assert_eq!(
        errors,
        [
            "environments/base.yaml:75:7: releases.api.values.replicaz: charts/backend/values.schema.json: Additional properties are not allowed ('replicaz' was unexpected) (at /replicaz, rule `additionalProperties`)"
        ]
    );
}

#[test]
fn a_chart_with_only_values_yaml_or_only_a_schema_still_refuses_unknown_keys() {
    let typo = [("environments/base.yaml", API_REPLICAS, REPLICAZ)];
    assert_eq!(three_tier(&[BACKEND_SCHEMA], &typo), [REPLICAZ_ERROR]);
    // Without values.yaml the schema's `properties` are the keys (and its required
    // keys are missing).
    let errors = three_tier(&[BACKEND_VALUES], &typo);
    assert_one(&errors, &[REPLICAZ_ERROR]);
    assert_one(
        &errors,
        &["releases.api.values: ", "\"port\" is a required property"],
    );
}

#[test]
fn a_schema_that_opens_a_map_takes_keys_values_yaml_does_not_list() {
    // The api sets three prometheus.io/* pod annotations (and the worker one in prod);
    // values.yaml lists one other.
    let annotations = |schema: &str| {
        three_tier(
            &[],
            &[
                (
                    BACKEND_VALUES,
                    "podAnnotations: {}\n",
                    "podAnnotations: {team: shop}\n",
                ),
                (
                    BACKEND_SCHEMA,
                    "\"podAnnotations\": {\"$ref\": \"#/definitions/stringMap\"},",
                    &format!("\"podAnnotations\": {schema},"),
                ),
            ],
        )
    };
    for open in [
        r#"{"type": "object", "additionalProperties": {"type": "string"}}"#,
        r#"{"type": "object", "additionalProperties": true}"#,
        r#"{"type": "object", "patternProperties": {"^.+$": {"type": "string"}}}"#,
    ] {
        assert_eq!(annotations(open), Vec::<String>::new(), "{open}");
    }
    let errors = annotations(r#"{"type": "object", "properties": {"team": {"type": "string"}}}"#);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_one(
        &errors,
        &[
            "environments/base.yaml:80:9: releases.api.values.podAnnotations.prometheus.io/scrape: `prometheus.io/scrape` is not a value of charts/backend",
            "keys charts/backend/values.yaml has here: team;",
        ],
    );
}

#[test]
fn a_mapping_the_schema_declares_with_no_properties_has_no_keys_to_offer() {
    let errors = three_tier(
        &[],
        &[
            (
                BACKEND_SCHEMA,
                "\"podAnnotations\":",
                "\"labels\": {\"type\": \"object\", \"properties\": {}},\n    \"podAnnotations\":",
            ),
            (
                "environments/base.yaml",
                API_REPLICAS,
                "      replicas: 2\n      labels: {team: shop}\n      args: [serve]\n",
            ),
        ],
    );
    assert_eq!(
        errors,
        [
            "environments/base.yaml:75:16: releases.api.values.labels.team: `team` is not a value of charts/backend (values.yaml has no such key)\n  hint: the chart's values.yaml has no keys here; `strictValues: false` on the release accepts keys the chart does not declare"
        ]
    );
}

#[test]
fn vars_are_checked_against_vars_schema_json_at_the_value() {
    let errors = three_tier(
        &[],
        &[(
            "environments/dev.yaml",
            "  logLevel: debug\n",
            "  logLevel: verbose\n",
        )],
    );
    assert_eq!(
        errors,
        [
            "environments/dev.yaml:17:13: vars.logLevel: vars.schema.json: value is not one of \"debug\", \"info\" or 2 other candidates (at /logLevel, rule `enum`)"
        ]
    );
}

#[test]
fn a_values_file_from_templates_is_checked_at_the_template_line_and_column() {
    // Copied as it is (no `.j2`): the findings name its very line and column.
    let errors = three_tier(
        &[],
        &[(
            "templates/releases/api.values.yaml",
            "",
            "global: {environment: dev, imageRegistry: ghcr.io/example/shop}\nimage: {name: api, tag: \"3.2.0\"}\nreplicaz: 2\nreplicas: two\nargs: [serve, 3]\nservice: [false]\n",
        )],
    );
    assert_eq!(
        errors,
        [
            "templates/releases/api.values.yaml:4:1: releases.api.values.replicaz: `replicaz` is not a value of charts/backend (values.yaml has no such key) (in targets dev-aws, dev-gcp, prod-aws, prod-gcp)\n  hint: did you mean `replicas`?; `strictValues: false` on the release accepts keys the chart does not declare",
            "templates/releases/api.values.yaml:5:11: releases.api.values.replicas: charts/backend/values.schema.json: value is not of type \"integer\" (at /replicas, rule `type`) (in targets dev-aws, dev-gcp, prod-aws, prod-gcp)",
            "templates/releases/api.values.yaml:6:15: releases.api.values.args.1: charts/backend/values.schema.json: value is not of type \"string\" (at /args/1, rule `type`) (in targets dev-aws, dev-gcp, prod-aws, prod-gcp)",
            "templates/releases/api.values.yaml:7:1: releases.api.values.service: charts/backend/values.schema.json: value is not of type \"object\" (at /service, rule `type`) (in targets dev-aws, dev-gcp, prod-aws, prod-gcp)",
        ]
    );
}

#[test]
fn release_values_that_resolve_to_null_are_an_empty_mapping() {
    // The merge drops a `values: null` (it removes the key), but a reference can still
    // reach a null: an item of a list. The values file and what templates see are an
    // empty mapping, as when a release has no `values:`.
    let rendered = render_project(
        "storage-only",
        &[],
        &[
            (
                "environments/base.yaml",
                "",
                "vars:\n  nulls: [~]\nreleases:\n  extra:\n    chart: charts/extra\n    values: !ref vars.nulls.0\n",
            ),
            (
                "charts/extra/Chart.yaml",
                "",
                "apiVersion: v2\nname: extra\nversion: 0.1.0\n",
            ),
            ("charts/extra/values.yaml", "", "replicas: 1\n"),
            (
                "templates/extra.yaml.j2",
                "",
                "values: {{ releases.extra.values | to_json }}\n",
            ),
        ],
    );
    assert_eq!(rendered["dev-aws/extra.yaml"].trim(), "values: {}");
    assert!(
        rendered["dev-aws/releases/extra.values.yaml"].ends_with("do not edit.\n{}\n"),
        "{}",
        rendered["dev-aws/releases/extra.values.yaml"]
    );
}

#[test]
fn a_map_the_chart_schema_opens_through_a_ref_takes_keys_values_yaml_does_not_list() {
    // charts/backend: `resources` is `$ref: #/definitions/resources`, whose `requests`
    // is `$ref: #/definitions/resourceList`, a map of any resource names.
    let edit = |new: &str| {
        validate_example(
            "three-tier",
            &[(
                "base.yaml",
                "        requests: {cpu: 250m, memory: 256Mi}\n",
                new,
            )],
        )
    };
    assert_eq!(
        edit("        requests: {cpu: 250m, memory: 256Mi, ephemeral-storage: 1Gi}\n"),
        Vec::<String>::new()
    );
    // What the referenced schema closes stays closed: `resources` has only requests
    // and limits.
    let errors =
        edit("        requests: {cpu: 250m, memory: 256Mi}\n        requestz: {cpu: 1m}\n");
    assert_one(
        &errors,
        &[
            "environments/base.yaml:102",
            "`requestz` is not a value of charts/backend",
            "did you mean `requests`?",
        ],
    );
}

#[test]
fn a_secret_like_key_with_a_literal_string_is_refused_without_the_value() {
    let literal = "a secret-like key holds a literal string (value not shown)";
    let env = "      LOG_LEVEL: info\n";
    let errors = validate(&[(
        "base.yaml",
        env,
        "      LOG_LEVEL: info\n      DB_PASSWORD: hunter2hunter2\n",
    )]);
    assert_one(
        &errors,
        &[
            "environments/base.yaml:40:20: workloads.ingest.env.DB_PASSWORD",
            literal,
            "move it under the workload's `secrets:`",
        ],
    );
    assert!(errors.iter().all(|e| !e.contains("hunter2")), "{errors:#?}");
    // A number under such a key is a setting, and an exception lets a string through.
    assert_eq!(
        validate(&[(
            "base.yaml",
            env,
            "      LOG_LEVEL: info\n      TOKEN_EXPIRE_HOURS: 8\n"
        )]),
        Vec::<String>::new()
    );
    // An empty string holds no secret (a chart's "generate one").
    assert_eq!(
        validate(&[(
            "base.yaml",
            env,
            "      LOG_LEVEL: info\n      DB_PASSWORD: \"\"\n"
        )]),
        Vec::<String>::new()
    );
    // An exception lets the string through in a file that only targets with that
    // exception read: dev.yaml, read by the dev targets alone.
    let exception = "exceptions:\n  - {rule: secret-literal, path: workloads.ingest.env.DB_PASSWORD, reason: a fixture password of the test database}";
    let in_dev = |exception: &str| {
        validate(&[
            (
                "dev.yaml",
                "      LOG_LEVEL: debug",
                "      LOG_LEVEL: debug\n      DB_PASSWORD: hunter2hunter2",
            ),
            ("dev.yaml", "", exception),
        ])
    };
    assert_eq!(in_dev(exception), Vec::<String>::new());
    assert_one(
        &in_dev(&exception.replace("DB_PASSWORD", "DB_PASSWORT")),
        &[
            "environments/dev.yaml:15:20: workloads.ingest.env.DB_PASSWORD",
            literal,
        ],
    );
    // In base.yaml it is not enough: the prod targets read base.yaml too, and their
    // exceptions are prod.yaml's (a list replaces the one before it).
    let in_base = validate(&[
        (
            "base.yaml",
            env,
            "      LOG_LEVEL: info\n      DB_PASSWORD: hunter2hunter2\n",
        ),
        ("base.yaml", "", exception),
    ]);
    assert_one(
        &in_base,
        &[
            "environments/base.yaml:40:20: workloads.ingest.env.DB_PASSWORD",
            literal,
        ],
    );
}

#[test]
fn a_credential_is_refused_under_any_key_in_a_map_a_list_or_a_sub() {
    let aws = "AKIAABCDEFGHIJKLMNOP";
    let github = format!("ghp_{}", "a1".repeat(18));
    let errors = validate(&[(
        "base.yaml",
        "      LOG_LEVEL: info\n",
        &format!(
            "      LOG_LEVEL: {github}\n      BATCH_LABEL: !sub \"xoxb-{}\"\n",
            "1234567890".repeat(3)
        ),
    )]);
    assert_one(
        &errors,
        &[
            "environments/base.yaml:39:18: workloads.ingest.env.LOG_LEVEL",
            "this value looks like a GitHub token (value not shown)",
            "revoke it",
        ],
    );
    assert_one(
        &errors,
        &[
            "workloads.ingest.env.BATCH_LABEL",
            "this value looks like a Slack token (value not shown)",
        ],
    );
    let errors = validate(&[(
        "base.yaml",
        "    cost-center: platform\n",
        &format!("    cost-center: platform\n  owners: [data-eng, {aws}]\n"),
    )]);
    assert_one(
        &errors,
        &[
            "project.owners.1",
            "this value looks like an AWS access key id (value not shown)",
        ],
    );
    for e in &errors {
        assert!(!e.contains(aws) && !e.contains(&github), "{e}");
    }
}

/// What `render` writes for the project at `dir`, read in place: each artifact's
/// bytes by its path under the output folder.
fn render_dir(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let loaded = Loaded::load(Project::Disk(dir.to_path_buf())).expect("the layers load");
    let (targets, errors) = loaded.targets_and_errors(&[]).expect("no usage error");
    assert!(errors.is_empty(), "{errors:#?}");
    let (charts, chart_errors) = loaded.charts(&targets);
    assert!(chart_errors.is_empty(), "{chart_errors:#?}");
    let renderer = loaded.renderer().expect("templates compile");
    let tree = crate::render_all(&renderer, &targets, &charts).expect("it renders");
    tree.into_iter()
        .map(|(path, bytes)| (path, bytes.to_vec()))
        .collect()
}

/// Every file under `dir`, by its path relative to it.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, into);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                into.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

/// The committed renders (`snapshots/` of the lakehouse at the root and of each
/// bundled example) are what the render writes, byte for byte. The binary's
/// `pipeline::drift` holds the same through `render --check`; this one runs in the
/// fast mutation pass, so that a mutant of the model, the desired state or the render
/// that changes any artifact of the examples is caught there.
#[test]
fn every_bundled_project_renders_its_committed_snapshots() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut projects = vec![root.to_path_buf()];
    projects.extend(["storage-only", "three-tier"].map(|name| Path::new(EXAMPLES).join(name)));
    for project in projects {
        let rendered = render_dir(&project);
        let mut committed = files_under(&project.join("snapshots"));
        // The output folder's own marker (a dotfile), which `render` writes beside
        // the targets.
        committed.retain(|path, _| !path.starts_with('.'));
        let only = |a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>| {
            a.keys()
                .filter(|k| !b.contains_key(*k))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            (only(&rendered, &committed), only(&committed, &rendered)),
            (vec![], vec![]),
            "{}: (rendered only, committed only)",
            project.display()
        );
        for (path, bytes) in &rendered {
            assert!(
                committed[path] == *bytes,
                "{}: snapshots/{path} differs from the render:\n{}",
                project.display(),
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

/// The first line of each error (its place, key path and message).
fn first_lines(errors: &[String]) -> Vec<&str> {
    errors
        .iter()
        .map(|e| e.lines().next().unwrap_or_default())
        .collect()
}

#[test]
fn a_type_error_in_each_section_is_reported_once_at_its_key_with_every_unknown_top_level_key() {
    let errors = validate(&[
        ("base.yaml", "  owner: data-eng", "  owner: [data-eng]"),
        (
            "base.yaml",
            "    versioning: true",
            "    versioning: sometimes",
        ),
        ("base.yaml", "      raw: readwrite", "      raw: writeonly"),
        (
            "base.yaml",
            "",
            "kube:\n  createNamespace: maybe\ndns:\n  domain: [a]\nreleases:\n  web: {chart: [x]}\nsurprise: 1\nprotected: maybe\nexceptionz: []\nvars: {a: 1}",
        ),
        (
            "dev.yaml",
            "  cluster: telemetry-dev",
            "  cluster: [telemetry-dev]",
        ),
        (
            "dev.yaml",
            "  projectId: telemetry-dev-7305",
            "  projectId: {a: 1}",
        ),
        ("prod.yaml", EXCEPTION_REASON, "    reason: [x]\n"),
    ]);
    assert_eq!(
        first_lines(&errors),
        [
            "environments/base.yaml:6:10: project.owner: expected a string, found a list",
            "environments/base.yaml:15:17: buckets.raw.versioning: expected a boolean, found \"sometimes\"",
            "environments/base.yaml:34:12: workloads.ingest.access.raw: unknown variant `writeonly`, expected one of `read`, `readwrite`, `admin`",
            "environments/base.yaml:43:20: kube.createNamespace: expected a boolean, found \"maybe\"",
            "environments/base.yaml:45:11: dns.domain: expected a string, found a list",
            "environments/base.yaml:47:16: releases.web.chart: expected a string, found a list",
            "environments/base.yaml:48:1: surprise: unknown key `surprise`",
            "environments/base.yaml:49:12: protected: expected a boolean, found \"maybe\"",
            "environments/base.yaml:50:1: exceptionz: unknown key `exceptionz`",
            "environments/dev.yaml:5:12: aws.cluster: expected a string, found a list",
            "environments/dev.yaml:8:14: gcp.projectId: expected a string, found a mapping",
            "environments/prod.yaml:28:13: exceptions.0.reason: expected a string, found a list",
        ]
    );
    assert_one(
        &errors,
        &["unknown key `exceptionz`", "did you mean `exceptions`?"],
    );
    assert_one(
        &errors,
        &[
            "unknown key `surprise`",
            "allowed keys here: project, kube, protected, aws, gcp, buckets, workloads, releases, dns, vars, exceptions",
        ],
    );
}

#[test]
fn a_missing_project_or_cloud_section_is_said_beside_the_other_errors() {
    // No `project:` at all, and a type error: both.
    let errors = validate(&[
        (
            "base.yaml",
            "project:\n  name: telemetry\n  owner: data-eng\n  tags:\n    cost-center: platform\n",
            "",
        ),
        (
            "base.yaml",
            "    versioning: true",
            "    versioning: sometimes",
        ),
    ]);
    // Once for each environment, at its own file, which every target of it reads.
    for env in ["dev", "prod"] {
        assert_one(
            &errors,
            &[
                &format!(
                    "environments/{env}.yaml:1:1: project: required key `project` is not set by any layer"
                ),
                "or in environments/base.yaml when every target shares it",
            ],
        );
    }
    assert_one(&errors, &["buckets.raw.versioning: expected a boolean"]);
    // A target on aws whose layers set no `aws:`.
    let errors = validate(&[
        ("clouds/aws.yaml", "aws:\n  region: eu-west-1\n", ""),
        (
            "dev.yaml",
            "aws:\n  accountId: \"111111111111\"\n  cluster: telemetry-dev\n",
            "",
        ),
    ]);
    assert_one(
        &errors,
        &[
            "environments/dev.yaml:1:1: aws: target dev-aws runs on aws but no layer sets `aws:`",
            "set `aws:` with accountId, region in environments/dev.yaml",
        ],
    );
    assert_none(&errors, &["target dev-gcp runs on"]);
    let errors = validate(&[
        (
            "clouds/gcp.yaml",
            "gcp:\n  location: EU\n  clusterLocation: europe-west1\n",
            "",
        ),
        (
            "dev.yaml",
            "gcp:\n  projectId: telemetry-dev-7305\n  cluster: telemetry-dev\n",
            "",
        ),
    ]);
    assert_one(
        &errors,
        &[
            "target dev-gcp runs on gcp but no layer sets `gcp:`",
            "projectId, location",
        ],
    );
    assert_none(&errors, &["target dev-aws runs on"]);
}

#[test]
fn a_workload_naming_a_bucket_the_target_lacks_is_refused_with_what_there_is() {
    let access = |line: &str| validate(&[("base.yaml", "      raw: readwrite\n", line)]);
    assert_one(
        &access("      rwa: readwrite\n"),
        &[
            "environments/base.yaml:34:7: workloads.ingest.access.rwa",
            "no bucket `rwa` in this target",
            "did you mean `raw`?",
        ],
    );
    assert_one(
        &access("      archive: readwrite\n"),
        &[
            "no bucket `archive` in this target",
            "buckets: raw, scratch",
        ],
    );
    // A target with no bucket at all says so.
    let errors = validate(&[("dev.yaml", "", "buckets: null")]);
    assert_one(
        &errors,
        &[
            "workloads.ingest.access.raw",
            "no bucket `raw` in this target",
            "no bucket is declared under `buckets:`",
        ],
    );
}

#[test]
fn an_environment_variable_is_a_scalar_without_control_characters() {
    let env = |line: &str| {
        validate(&[(
            "base.yaml",
            "      LOG_LEVEL: info\n",
            &format!("      LOG_LEVEL: info\n{line}\n"),
        )])
    };
    assert_eq!(
        env("      NOTE: \"two\\nlines\\tand a tab\""),
        Vec::<String>::new()
    );
    assert_one(
        &env("      NOTE: \"a\\rb\""),
        &[
            "environments/base.yaml:40:13: workloads.ingest.env.NOTE",
            "an environment variable cannot hold the control character U+000D",
            "only newlines and tabs are allowed",
        ],
    );
    assert_one(
        &env("      NOTE: [a, b]"),
        &[
            "environments/base.yaml:40:13: workloads.ingest.env.NOTE",
            "an environment variable is a string, number or boolean, found a list",
        ],
    );
    // A reference to a null is a null variable; a reference to nothing is said once,
    // as that, not again as a null variable.
    let errors = validate(&[
        (
            "base.yaml",
            "      LOG_LEVEL: info\n",
            "      LOG_LEVEL: info\n      NOTE: !ref vars.nulls.0\n",
        ),
        ("base.yaml", "", "vars:\n  nulls: [null]"),
    ]);
    assert_one(
        &errors,
        &[
            "workloads.ingest.env.NOTE: an environment variable is a string, number or boolean, found null",
        ],
    );
    let errors = env("      NOTE: !ref buckets.nope.name");
    assert_only(
        &errors,
        "environments/base.yaml:40:18: workloads.ingest.env.NOTE: `buckets.nope.name` points at nothing",
    );
}

#[test]
fn a_template_is_read_with_trimmed_blocks_and_ends_with_one_newline() {
    let rendered = render_project(
        "storage-only",
        &[],
        &[
            // Block tags take their line with them, indentation before them too.
            (
                "templates/blocks.yaml.j2",
                "",
                "a: 1\n  {% if target.cloud == \"aws\" %}\nb: 2\n  {% endif %}\nc: 3\n",
            ),
            // No newline at the end: one is added; one there is kept, not doubled.
            // (An edit with `old` empty appends "\n{new}\n": the second edit takes the
            // newline at the end away.)
            ("templates/bare.yaml.j2", "", "a: {{ 1 + 1 }}"),
            ("templates/bare.yaml.j2", "}}\n", "}}"),
        ],
    );
    assert_eq!(rendered["dev-aws/blocks.yaml"], "\na: 1\nb: 2\nc: 3\n\n");
    assert_eq!(rendered["dev-gcp/blocks.yaml"], "\na: 1\nc: 3\n\n");
    assert_eq!(rendered["dev-aws/bare.yaml"], "\na: 2\n");
}

#[test]
fn a_macro_that_breaks_the_yaml_of_its_caller_is_named_at_the_macros_line() {
    let errors = validate_project(
        "storage-only",
        &[],
        &[
            (
                "templates/_macros.j2",
                "",
                "{% macro owner() %}\nowner: [{{ project.owner }}\n{% endmacro %}",
            ),
            (
                "templates/notes.yaml.j2",
                "",
                "{% from '_macros.j2' import owner %}\ntarget: {{ target.name }}\n{{ owner() }}",
            ),
        ],
    );
    assert_eq!(
        first_lines(&errors),
        [
            "templates/_macros.j2:3: rendered notes.yaml (from templates/notes.yaml.j2) is not valid YAML (output line 3): unclosed bracket '[' (rendering targets dev-aws, dev-gcp, prod-aws, prod-gcp)"
        ]
    );
    // The template's own line, when the template itself wrote it.
    let errors = validate_project(
        "storage-only",
        &[],
        &[(
            "templates/notes.yaml.j2",
            "",
            "target: {{ target.name }}\nowner: [{{ project.owner }}",
        )],
    );
    assert_eq!(
        first_lines(&errors),
        [
            "templates/notes.yaml.j2:3: rendered notes.yaml is not valid YAML (output line 3): unclosed bracket '[' (rendering targets dev-aws, dev-gcp, prod-aws, prod-gcp)"
        ]
    );
}

/// `validate` with `vars` appended to base.yaml and `env` lines added to the ingest
/// workload's env (after `LOG_LEVEL: info`, line 39).
fn with_references(vars: &str, env: &str) -> Vec<String> {
    let mut edits = vec![(
        "base.yaml",
        "      LOG_LEVEL: info\n",
        format!("      LOG_LEVEL: info\n{env}\n"),
    )];
    if !vars.is_empty() {
        edits.push(("base.yaml", "", format!("vars:\n{vars}")));
    }
    let edits: Vec<Edit> = edits.iter().map(|(f, o, n)| (*f, *o, n.as_str())).collect();
    validate(&edits)
}

#[test]
fn references_that_fail_are_said_at_the_reference_with_what_would_do() {
    let cases: &[(&str, &str)] = &[
        // An unknown root, close to one and far from all.
        ("", "      A: !ref bukets.raw.name"),
        ("", "      A: !ref elsewhere.raw"),
        // Nothing under a known root, and a name a reference cannot reach.
        ("", "      A: !ref vars.region"),
        ("  zone: a\n  tier: b", "      A: !ref vars.regio"),
        ("", "      A: !ref buckets.raw.nmae"),
        // A cycle through vars, and one of !sub.
        (
            "  region: !ref vars.zone\n  zone: !sub \"${vars.region}-a\"",
            "      A: !ref vars.zone",
        ),
        // !sub takes scalars only.
        ("  m: {a: 1}", "      A: !sub \"x-${vars.m}\""),
        // A key with a dot in its name, which no reference can name.
        ("  \"a.b\": 1", "      A: !ref vars.a.b"),
        // A reference of !sub left open (one of the shell's is text).
        ("  x: 1", "      A: !sub \"${HOME ${vars.x\""),
    ];
    let expected: &[&[&str]] = &[
        &[
            "environments/base.yaml:40:15: workloads.ingest.env.A: `bukets.raw.name` is not something a reference can reach\n  hint: did you mean `buckets`? references start with one of: target, project, kube, aws, gcp, dns, vars, buckets, workloads",
        ],
        &[
            "environments/base.yaml:40:15: workloads.ingest.env.A: `elsewhere.raw` is not something a reference can reach\n  hint: references start with one of: target, project, kube, aws, gcp, dns, vars, buckets, workloads",
        ],
        // Said for each target whose hint differs: aws targets have an `aws.region`.
        &[
            "environments/base.yaml:40:15: workloads.ingest.env.A: `vars.region` points at nothing\n  hint: did you mean `aws.region`?",
            "environments/base.yaml:40:15: workloads.ingest.env.A: `vars.region` points at nothing\n  hint: this target has nothing under `vars`",
        ],
        &[
            "environments/base.yaml:40:15: workloads.ingest.env.A: `vars.regio` points at nothing\n  hint: did you mean `aws.region`?",
            "environments/base.yaml:40:15: workloads.ingest.env.A: `vars.regio` points at nothing\n  hint: did you mean `vars.tier`?",
        ],
        &[
            "environments/base.yaml:40:15: workloads.ingest.env.A: `buckets.raw.nmae` points at nothing\n  hint: did you mean `buckets.raw.name`?",
        ],
        // The cycle is said once, where it closes; the env var that reached into it is
        // not judged again as a null (it was, before: "found null").
        &[
            "environments/base.yaml:44:16: vars.region: reference cycle: vars.zone -> vars.region -> vars.zone\n  hint: break the cycle: one of these values must be written out",
        ],
        &[
            "environments/base.yaml:40:15: workloads.ingest.env.A: `${vars.m}` is a mapping, and !sub puts only strings, numbers and booleans into text\n  hint: use !ref for a whole value, or reach a scalar inside it",
        ],
        &[
            "environments/base.yaml:40:15: workloads.ingest.env.A: `vars.a.b` points at nothing\n  hint: a key on this path has a `.` in its name, and a reference reads each `.` as a step into a mapping: rename the key (`a.b` to `a_b`) to refer to it",
        ],
        &[
            "environments/base.yaml:40:15: workloads.ingest.env.A: `${vars.x` is not closed\n  hint: end the reference with `}`, or write `$${` for a `${` meant as text",
        ],
    ];
    for ((vars, env), expected) in cases.iter().zip(expected) {
        assert_eq!(with_references(vars, env), *expected, "{vars:?} {env:?}");
    }
}

#[test]
fn references_resolve_through_vars_and_sub_into_the_artifacts() {
    let rendered = render_project(
        "storage-only",
        &[],
        &[
            (
                "environments/base.yaml",
                "      LOG_LEVEL: info\n",
                "      LOG_LEVEL: info\n      A: !ref vars.zone\n      B: !sub \"$${literal} ${vars.zone}/${buckets.raw.name} ${vars.n} ${vars.on}\"\n      C: !ref vars.list.1\n",
            ),
            (
                "environments/base.yaml",
                "",
                "vars:\n  region: !ref target.env\n  zone: !sub \"${vars.region}-a\"\n  n: 3\n  on: true\n  list: [x, !ref vars.region]",
            ),
        ],
    );
    assert_eq!(
        rendered["dev-aws/env/ingest.env"]
            .lines()
            .filter(|l| ["A=", "B=", "C="].iter().any(|p| l.starts_with(p)))
            .collect::<Vec<_>>(),
        [
            "A=dev-a",
            // `$${` is a literal `${`; the env file quotes the line and escapes the `$`.
            "B=\"\\${literal} dev-a/telemetry-dev-raw-111111111111 3 true\"",
            "C=dev",
        ]
    );
}

#[test]
fn references_that_multiply_are_stopped_before_they_exhaust_the_memory() {
    // Each value of vars refers twice to the next: 2^24 values if copied out. Stopped
    // at 100000, said at the reference that would pass it.
    let vars: String = (0..24)
        .map(|i| {
            format!(
                "  v{i}: {{a: !ref vars.v{}, b: !ref vars.v{}}}\n",
                i + 1,
                i + 1
            )
        })
        .chain(["  v24: leaf".to_owned()])
        .collect();
    let errors = with_references(&vars, "");
    assert!(
        errors.iter().any(|e| e.contains(": the references of this target make more than 100000 values\n  hint: a value of vars that refers more than once")),
        "{errors:#?}"
    );
    // Many references, each to one value: 100000 resolve, one more is stopped. (An aws
    // target of the example has three references of its own: two bucket URLs and
    // AWS_REGION.)
    let rendered = render_project(
        "storage-only",
        &[],
        &[
            (
                "environments/base.yaml",
                "      LOG_LEVEL: info\n",
                &format!(
                    "      LOG_LEVEL: info\n      A: !sub \"{}\"\n",
                    "${vars.x}".repeat(99_997)
                ),
            ),
            ("environments/base.yaml", "", "vars:\n  x: a"),
        ],
    );
    // The last of the 100000, AWS_REGION, resolved too.
    assert_eq!(env_line(&rendered, "A").map(|l| l.len()), Some(2 + 99_997));
    assert_eq!(
        env_line(&rendered, "AWS_REGION").as_deref(),
        Some("AWS_REGION=eu-west-1")
    );
    let many = "${vars.x}".repeat(99_998);
    let errors = with_references("  x: a", &format!("      A: !sub \"{many}\""));
    assert!(
        errors
            == [
                "environments/clouds/aws.yaml:9:24: workloads.ingest.env.AWS_REGION: more than 100000 references to resolve\n  hint: references that refer to each other multiply; simplify vars",
                "environments/clouds/gcp.yaml:10:34: workloads.ingest.env.GOOGLE_CLOUD_PROJECT: more than 100000 references to resolve\n  hint: references that refer to each other multiply; simplify vars",
            ],
        "{:#?}",
        errors
            .iter()
            .map(|e| e.chars().take(300).collect::<String>())
            .collect::<Vec<_>>()
    );
}

#[test]
fn one_copy_that_crosses_the_bound_is_said_at_its_reference_and_nothing_else_is() {
    // vars.big is a list of 100000 items (100001 values with the list). The first
    // reference resolves it; the second copies it, and that copy crosses the bound:
    // said at its reference, once (the same for the four targets), and the partial
    // targets are not judged (no error follows from the copy that was not made).
    let items = "0,".repeat(99_999);
    let vars = format!("  big: [{items}0]\n  copy: !ref vars.big\n  again: !ref vars.big");
    // The misspelt rule of prod's exception, said of a whole target, is not said of
    // these partial ones. (A mistake of one layer file, such as a secret literal, is
    // judged apart from the targets, and would be said.)
    let errors = validate(&[
        ("base.yaml", "", &format!("vars:\n{vars}")),
        ("prod.yaml", EXCEPTION_RULE, "  - rule: prod.versoning\n"),
    ]);
    assert_eq!(
        errors,
        [
            "environments/base.yaml:45:15: vars.again: the references of this target make more than 100000 values\n  hint: a value of vars that refers more than once to another, itself made the same way, doubles at each step; refer to the value it is built from instead"
        ]
    );
}

#[test]
fn copies_of_a_typed_mapping_count_each_of_its_values() {
    // project.tags with 1000 tags and the example's cost-center is 1002 values: 99
    // copies (99198 values) stay under the bound, 100 copies (100200) cross it.
    let tags: String = (0..1000).map(|i| format!("    t{i}: v\n")).collect();
    let at = |copies: usize| {
        let vars: String = (0..copies)
            .map(|i| format!("  c{i}: !ref project.tags\n"))
            .collect();
        validate(&[
            ("base.yaml", "  tags:\n", &format!("  tags:\n{tags}")),
            ("base.yaml", "", &format!("vars:\n{vars}")),
        ])
        .iter()
        .filter(|e| e.contains("the references of this target make more than 100000 values"))
        .count()
    };
    assert_eq!(at(99), 0);
    assert_eq!(at(100), 1);
}

#[test]
fn copies_of_a_list_count_each_of_its_items() {
    // aws.selfManagedAddons, the one list a reference reaches in the typed roots: 1000
    // add-ons are 1001 values; 99 copies (99099 values, and the example's three) stay
    // under the bound, 100 copies (100100) cross it, in each AWS target.
    let addons = "eks-pod-identity-agent,".repeat(999);
    let at = |copies: usize| {
        let vars: String = (0..copies)
            .map(|i| format!("  c{i}: !ref aws.selfManagedAddons\n"))
            .collect();
        validate(&[(
            "clouds/aws.yaml",
            "  region: eu-west-1\n",
            &format!(
                "  region: eu-west-1\n  selfManagedAddons: [{addons}eks-pod-identity-agent]\nvars:\n{vars}"
            ),
        )])
        .iter()
        .filter(|e| e.contains("the references of this target make more than 100000 values"))
        .count()
    };
    assert_eq!(at(99), 0);
    assert_eq!(at(100), 1);
}

#[test]
fn references_that_make_exactly_the_bound_leave_the_target_whole() {
    // 19 copies of project.tags with 5262 tags (5261 here and the example's
    // cost-center: 5263 values each, 99997) and the three values the example's own
    // references bring make 100000 values: within the bound, so prod's misspelt rule
    // is still said. One tag more crosses it, and then only the bound is said.
    let at = |tags: usize| {
        let tags: String = (0..tags).map(|i| format!("    t{i}: v\n")).collect();
        let vars: String = (0..19)
            .map(|i| format!("  c{i}: !ref project.tags\n"))
            .collect();
        validate(&[
            ("base.yaml", "  tags:\n", &format!("  tags:\n{tags}")),
            ("base.yaml", "", &format!("vars:\n{vars}")),
            ("prod.yaml", EXCEPTION_RULE, "  - rule: prod.versoning\n"),
        ])
        .iter()
        .map(|e| e.lines().next().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
    };
    assert_eq!(
        at(5261),
        [
            "environments/base.yaml:5285:5: buckets.scratch.versioning: production policy `prod.versioning`: production buckets keep versions (versioning: true), in prod [prod.versioning]",
            "environments/prod.yaml:26:11: exceptions.0.rule: unknown rule `prod.versoning`",
        ]
    );
    assert_eq!(
        at(5262),
        [
            "environments/base.yaml:5323:13: vars.c18: the references of this target make more than 100000 values"
        ]
    );
}

#[test]
fn a_target_at_exactly_the_bound_is_judged_whole() {
    // 100000 values delivered (99997 references here and three of the example's own)
    // is within the bound: the target's other mistakes are still said, those found
    // while its desired state is built (a bucket name) and those the checks find after
    // it (a misspelt rule), which a partial target would not say.
    let errors = validate(&[
        (
            "base.yaml",
            "      LOG_LEVEL: info\n",
            &format!(
                "      LOG_LEVEL: info\n      A: !sub \"{}\"\n",
                "${vars.x}".repeat(99_997)
            ),
        ),
        ("base.yaml", "", "vars:\n  x: a"),
        (
            "prod.yaml",
            "  raw:\n    requireSse: true\n",
            "  raw:\n    requireSse: true\n    name: Not_A_Bucket_Name\n",
        ),
        ("prod.yaml", EXCEPTION_RULE, "  - rule: prod.versoning\n"),
    ]);
    assert_eq!(
        first_lines(&errors),
        [
            "environments/base.yaml:24:5: buckets.scratch.versioning: production policy `prod.versioning`: production buckets keep versions (versioning: true), in prod [prod.versioning]",
            "environments/prod.yaml:17:11: buckets.raw.name: bucket name `Not_A_Bucket_Name` is invalid for aws: only lowercase letters, digits, '-' and '.' are allowed",
            "environments/prod.yaml:17:11: buckets.raw.name: bucket name `Not_A_Bucket_Name` is invalid for gcp: only lowercase letters, digits, '-', '_' and '.' are allowed",
            "environments/prod.yaml:27:11: exceptions.0.rule: unknown rule `prod.versoning`",
        ]
    );
}

#[test]
fn sub_leaves_what_is_not_a_reference_as_written() {
    // Not a known root (`${HOME}`, `${foo.bar}`), or a root alone (`${vars}`): the
    // shell's or the program's, written as it is; `${project.name}` is strata's.
    let rendered = render_project(
        "storage-only",
        &[],
        &[(
            "environments/base.yaml",
            "      LOG_LEVEL: info\n",
            "      LOG_LEVEL: info\n      A: !sub \"${HOME} ${foo.bar} ${vars} ${project.name}\"\n",
        )],
    );
    let line = env_line(&rendered, "A");
    assert_eq!(
        line.as_deref(),
        Some("A=\"\\${HOME} \\${foo.bar} \\${vars} telemetry\"")
    );
    // A `${` of the shell's left open does not swallow the reference after it.
    let rendered = render_project(
        "storage-only",
        &[],
        &[(
            "environments/base.yaml",
            "      LOG_LEVEL: info\n",
            "      LOG_LEVEL: info\n      A: !sub \"${HOME ${project.name}\"\n      B: !sub \"x ${vars\"\n",
        )],
    );
    assert_eq!(
        env_line(&rendered, "A").as_deref(),
        Some("A=\"\\${HOME telemetry\"")
    );
    // A root alone left open is text, as a root alone closed is.
    assert_eq!(
        env_line(&rendered, "B").as_deref(),
        Some("B=\"x \\${vars\"")
    );
}

#[test]
fn a_value_reached_by_reference_is_judged_at_the_reference() {
    // Each part of a value of vars a release's values reach (the value, a member of a
    // mapping, an item of a list) is reported at the `!ref` that brought it there.
    let errors = validate_project(
        "three-tier",
        &["vars.schema.json"],
        &[(
            "environments/dev.aws.yaml",
            "",
            "releases:\n  api:\n    values:\n      args: !ref vars.argv\n      replicas: !ref vars.reps\n      service: !ref vars.svc\nvars:\n  argv: [serve, 3]\n  reps: two\n  svc: {enabled: \"yes\"}",
        )],
    );
    assert_eq!(
        first_lines(&errors),
        [
            "environments/dev.aws.yaml:5:18: releases.api.values.args.1: charts/backend/values.schema.json: value is not of type \"string\" (at /args/1, rule `type`)",
            "environments/dev.aws.yaml:6:22: releases.api.values.replicas: charts/backend/values.schema.json: value is not of type \"integer\" (at /replicas, rule `type`)",
            "environments/dev.aws.yaml:7:21: releases.api.values.service.enabled: charts/backend/values.schema.json: value is not of type \"boolean\" (at /service/enabled, rule `type`)",
        ]
    );
}

#[test]
fn a_host_reached_by_reference_is_its_name_also_once_the_lock_file_holds_its_certificate() {
    let rendered = render_project(
        "three-tier",
        &[],
        &[(
            "environments/discovered/dev-aws.yaml",
            "",
            "dns:\n  domain: dev.example.com\n  hosts:\n    web:\n      name: shop.dev.example.com\n      certArn: \"arn:aws:acm:eu-central-1:444444444444:certificate/abc\"",
        )],
    );
    let web = &rendered["dev-aws/releases/web.values.yaml"];
    assert!(
        web.contains("publicUrl: https://shop.dev.example.com\n"),
        "{web}"
    );
    assert!(web.contains("  host: shop.dev.example.com\n"), "{web}");
}

#[test]
fn sub_reaches_into_lists_of_the_target_and_writes_numbers_as_written() {
    let rendered = render_project(
        "storage-only",
        &[],
        &[
            (
                "environments/clouds/aws.yaml",
                "  region: eu-west-1\n",
                "  region: eu-west-1\n  selfManagedAddons: [aws-mountpoint-s3-csi-driver]\n",
            ),
            (
                "environments/clouds/aws.yaml",
                "      AWS_REGION: !ref aws.region\n",
                "      AWS_REGION: !ref aws.region\n      A: !sub \"${aws.selfManagedAddons.0} ${vars.ratio} ${vars.n}\"\n",
            ),
            ("environments/base.yaml", "", "vars:\n  ratio: 0.5\n  n: 7"),
        ],
    );
    let line = env_line(&rendered, "A");
    assert_eq!(
        line.as_deref(),
        Some("A=\"aws-mountpoint-s3-csi-driver 0.5 7\"")
    );
}

#[test]
fn a_prod_rule_broken_in_a_document_strata_writes_is_said_once_at_the_layer_key() {
    let errors = validate(&[(
        "prod.yaml",
        "  raw:\n    requireSse: true\n",
        "  raw:\n    requireSse: true\n    versioning: false\n",
    )]);
    assert_eq!(
        first_lines(&errors),
        [
            "environments/prod.yaml:17:17: buckets.raw.versioning: production policy `prod.versioning`: production buckets keep versions (versioning: true), in prod [prod.versioning]"
        ]
    );
}

#[test]
fn a_key_that_would_name_a_file_outside_its_folder_is_refused_at_the_key() {
    // With its own valid name, a bucket keyed `../../../x` rendered
    // `dev-aws/buckets/../../../x.json`: outside the output folder.
    let errors = validate(&[
        (
            "base.yaml",
            "  scratch:\n",
            "  \"../../../x\":\n    name: telemetry-x-1\n",
        ),
        (
            "base.yaml",
            "      scratch: admin\n",
            "      \"../../../x\": admin\n",
        ),
        (
            "base.yaml",
            "      SCRATCH_BUCKET_URL: !ref buckets.scratch.url\n",
            "",
        ),
        ("base.yaml", "  ingest:\n", "  in.gest:\n"),
    ]);
    let keys: Vec<&str> = first_lines(&errors)
        .into_iter()
        .filter(|e| e.contains("is not a name"))
        .collect();
    assert_eq!(
        keys,
        [
            "environments/base.yaml:23:3: buckets.../../../x: bucket key `../../../x` is not a name: only letters, digits, '_' and '-' are allowed, a letter or digit first",
            "environments/base.yaml:33:3: workloads.in.gest: workload key `in.gest` is not a name: only letters, digits, '_' and '-' are allowed, a letter or digit first",
        ],
        "{errors:#?}"
    );
}

#[test]
fn a_null_in_a_list_item_leaves_its_optional_key_unset() {
    // The merge removes a null map value, but not inside a list item: there the typing
    // reads it as the optional key left unset.
    let errors = validate(&[(
        "base.yaml",
        "      - {expireAfterDays: 7}\n",
        "      - {expireAfterDays: 7, prefix: ~}\n",
    )]);
    assert_eq!(errors, Vec::<String>::new());
}

#[test]
fn actions_are_judged_by_their_service_and_name_and_those_that_hand_out_power_are_named() {
    let errors = with_templates(&[(
        "iam/ingest.policy.json.j2",
        r#"{% if target.cloud == "aws" %}{"Version": "2012-10-17", "Statement": [
 {"Effect": "Allow", "Action": ["s3:GetObject", "organizations:ListAccounts"], "Resource": "arn:aws:s3:::telemetry-dev-raw-111111111111/*"},
 {"Effect": "Allow", "Action": ["s3:GetObject", "sso:CreatePermissionSet"], "Resource": "arn:aws:s3:::telemetry-dev-raw-111111111111/*"},
 {"Effect": "Allow", "Action": ["s3:GetObject", "sts:AssumeRole"], "Resource": "arn:aws:s3:::telemetry-dev-raw-111111111111/*"},
 {"Effect": "Allow", "Action": [":GetObject", "S3:GetObject", "s3:", "s3:Get-Object", "s3:Get*", "s3-x2:Get"], "Resource": "arn:aws:s3:::telemetry-dev-raw-111111111111/*"}
]}{% endif %}"#,
    )]);
    let said: Vec<&str> = first_lines(&errors)
        .into_iter()
        .filter(|e| e.contains("(in targets dev-aws, prod-aws)"))
        .filter(|e| e.contains("[iam.escalation]") || e.contains("is not an IAM action"))
        .map(|e| e.split("statement ").nth(1).unwrap_or(e))
        .collect();
    assert_eq!(
        said,
        [
            "1: allows `organizations:ListAccounts`, with which a workload can give itself any permission [iam.escalation] (in targets dev-aws, prod-aws)",
            "2: allows `sso:CreatePermissionSet`, with which a workload can give itself any permission [iam.escalation] (in targets dev-aws, prod-aws)",
            "3: allows `sts:AssumeRole`, with which a workload can give itself any permission [iam.escalation] (in targets dev-aws, prod-aws)",
            "4: `:GetObject` is not an IAM action (service:Action) (in targets dev-aws, prod-aws)",
            "4: `S3:GetObject` is not an IAM action (service:Action) (in targets dev-aws, prod-aws)",
            "4: `s3:Get-Object` is not an IAM action (service:Action) (in targets dev-aws, prod-aws)",
            "4: `s3:` is not an IAM action (service:Action) (in targets dev-aws, prod-aws)",
        ],
        "{errors:#?}"
    );
}

#[test]
fn every_unknown_key_of_every_bucket_is_said_in_one_run() {
    // The typing stops at a section's first error: each bucket is typed on its own,
    // and after an unknown key it runs again without it.
    let errors = validate(&[(
        "dev.yaml",
        "",
        "buckets:\n  extra: {versionin: true, tagz: {}, lifecycle: [{expireAfterDays: x}]}\n  scratch: {retain: maybe}",
    )]);
    // In the merged order of the keys; a type error (not a typo) ends its bucket's.
    assert_eq!(
        first_lines(&errors),
        [
            "environments/dev.yaml:17:11: buckets.extra.versionin: unknown key `versionin`",
            "environments/dev.yaml:17:28: buckets.extra.tagz: unknown key `tagz`",
            "environments/dev.yaml:17:68: buckets.extra.lifecycle.0.expireAfterDays: expected a whole number, found \"x\"",
            "environments/dev.yaml:18:21: buckets.scratch.retain: expected a boolean, found \"maybe\"",
        ]
    );
}

#[test]
fn a_chart_file_that_does_not_parse_is_said_at_its_own_line() {
    // values.yaml: at its line, in the words a layer's error gets (the parser's own
    // are several lines of its source); a schema that is not JSON: at the release's
    // chart key, without the hint for a missing chart.
    let errors = three_tier(
        &[],
        &[
            ("charts/backend/values.yaml", "", "replicas: 1\nreplicas: 2"),
            ("charts/web/values.schema.json", "", "{"),
        ],
    );
    let said: Vec<&str> = errors
        .iter()
        .filter(|e| e.contains("charts/"))
        .map(String::as_str)
        .collect();
    assert_eq!(said.len(), 2, "{errors:#?}");
    assert!(
        said[0].starts_with("charts/backend/values.yaml:")
            && said[0].contains(
                ": duplicate mapping key: replicas\n  hint: remove one of the two entries"
            ),
        "{said:#?}"
    );
    assert!(
        said[1].contains(": releases.web.chart: charts/web/values.schema.json is not valid JSON: ")
            && !said[1].contains("helm create"),
        "{said:#?}"
    );
}

#[test]
fn resources_are_arns_and_project_roles_that_administer_are_named() {
    let errors = with_templates(&[(
        "iam/ingest.policy.json.j2",
        r#"{% if target.cloud == "aws" %}{"Version": "2012-10-17", "Statement": [
 {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::telemetry-dev-raw-111111111111/*", "xrn:aws:s3:::x", "arn:aws:S3:::x", "arn:aws:execute-api:eu-west-1:111111111111:abc/*", "arn:aws:s3:::"]}
]}{% endif %}"#,
    )]);
    let arns: Vec<&str> = first_lines(&errors)
        .into_iter()
        .filter(|e| e.contains("is not an ARN"))
        .map(|e| e.split("statement 1: ").nth(1).unwrap_or(e))
        .collect();
    assert_eq!(
        arns,
        [
            "`arn:aws:S3:::x` is not an ARN (in targets dev-aws, prod-aws)",
            "`arn:aws:s3:::` is not an ARN (in targets dev-aws, prod-aws)",
            "`xrn:aws:s3:::x` is not an ARN (in targets dev-aws, prod-aws)",
        ],
        "{errors:#?}"
    );
    let errors = with_templates(&[(
        "iam/ingest.gcp.json.j2",
        r#"{% if target.cloud == "gcp" %}{"serviceAccount": {"accountId": {{ workloads.ingest.gsaId | to_json }}, "email": {{ workloads.ingest.gsaEmail | to_json }}, "project": {{ gcp.projectId | to_json }}},
 "workloadIdentity": {"role": "roles/iam.workloadIdentityUser", "members": [{{ ("serviceAccount:" ~ gcp.projectId ~ ".svc.id.goog[telemetry/telemetry-ingest]") | to_json }}]},
 "bucketBindings": [
   {"bucket": {{ buckets.raw.name | to_json }}, "role": "roles/storage.admin", "members": [{{ ("serviceAccount:" ~ workloads.ingest.gsaEmail) | to_json }}]}],
 "projectBindings": [
   {"role": "roles/storage.admin", "members": [{{ ("serviceAccount:" ~ workloads.ingest.gsaEmail) | to_json }}]},
   {"role": "roles/iam.serviceAccountUser", "members": [{{ ("serviceAccount:" ~ workloads.ingest.gsaEmail) | to_json }}]},
   {"role": "projects/p/roles/custom", "members": [{{ ("serviceAccount:" ~ workloads.ingest.gsaEmail) | to_json }}]},
   {"role": "storage.objectViewer", "members": [{{ ("serviceAccount:" ~ workloads.ingest.gsaEmail) | to_json }}]}]}{% endif %}"#,
    )]);
    let roles: Vec<&str> = first_lines(&errors)
        .into_iter()
        .filter(|e| e.contains(": workloads.ingest.roles: "))
        .map(|e| e.split("iam/ingest.gcp.json: ").nth(1).unwrap_or(e))
        .collect();
    assert_eq!(
        roles,
        [
            "grants roles/storage.admin on the whole project [gcp.project-admin] (in targets dev-gcp, prod-gcp)",
            "grants roles/iam.serviceAccountUser on the whole project [gcp.project-admin] (in targets dev-gcp, prod-gcp)",
            "`storage.objectViewer` is not a role name (roles/… or projects/<p>/roles/…) (in targets dev-gcp, prod-gcp)",
        ],
        "{errors:#?}"
    );
}

#[test]
fn a_statement_that_does_not_type_is_said_at_the_statement_or_its_key() {
    let errors = validate(&[(
        "clouds/aws.yaml",
        "      AWS_REGION: !ref aws.region\n",
        "      AWS_REGION: !ref aws.region\n    statements:\n      - 5\n      - {Effect: Allow, Action: [s3:GetObject], Resource: [arn:aws:s3:::x], Principal: '*'}\n",
    )]);
    let said: Vec<&str> = first_lines(&errors)
        .into_iter()
        .map(|e| e.split(": ").nth(1).unwrap_or(e))
        .collect();
    assert_eq!(
        said,
        [
            "workloads.ingest.statements.0",
            "workloads.ingest.statements.1.Principal",
        ],
        "{errors:#?}"
    );
}

#[test]
fn two_references_that_fail_in_one_target_are_both_said() {
    let errors = with_references("", "      A: !ref vars.nope\n      B: !ref vars.nada");
    for name in ["vars.nope", "vars.nada"] {
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&format!("`{name}` points at nothing"))),
            "{name}: {errors:#?}"
        );
    }
}

#[test]
fn a_reference_to_an_optional_key_left_unset_points_at_nothing() {
    // `aws.iamPrefix` is optional and the storage-only example leaves it unset: the
    // reference fails as one to a missing key, not as a null put into the env var.
    let errors = with_references("", "      A: !ref aws.iamPrefix");
    // Said for the aws targets (whose aws section leaves it unset) and the gcp ones.
    assert_eq!(errors.len(), 2, "{errors:#?}");
    for e in &errors {
        assert!(
            e.starts_with("environments/base.yaml:40:15: workloads.ingest.env.A: `aws.iamPrefix` points at nothing"),
            "{errors:#?}"
        );
    }
}

#[test]
fn references_inside_a_list_are_resolved_where_the_list_is_written_and_where_it_is_reached() {
    // A workload's extra statements are a list: a `!sub` in an item's Resource list
    // reaches the policy resolved.
    let rendered = render_project(
        "storage-only",
        &[],
        &[(
            "environments/clouds/aws.yaml",
            "      AWS_REGION: !ref aws.region\n",
            "      AWS_REGION: !ref aws.region\n    statements:\n      - Effect: Allow\n        Action: [s3:GetObject]\n        Resource: [!sub \"arn:aws:s3:::${buckets.raw.name}/extra/*\"]\n",
        )],
    );
    assert!(
        rendered["dev-aws/iam/ingest.policy.json"]
            .contains("\"arn:aws:s3:::telemetry-dev-raw-111111111111/extra/*\""),
        "{}",
        rendered["dev-aws/iam/ingest.policy.json"]
    );
    // A `!ref` to a list of `vars` that holds a reference: the list arrives resolved.
    // (Without the example's vars schema, which lists the keys of `vars`.)
    let rendered = render_project(
        "three-tier",
        &["vars.schema.json"],
        &[
            (
                "environments/base.yaml",
                "      args: [serve]\n",
                "      args: !ref vars.argv\n",
            ),
            (
                "environments/base.yaml",
                "  logLevel: info\n",
                "  logLevel: info\n  argv: [serve, !ref buckets.assets.name]\n",
            ),
        ],
    );
    assert!(
        rendered["dev-aws/releases/api.values.yaml"]
            .contains("args:\n  - serve\n  - shop-dev-assets-444444444444\n"),
        "{}",
        rendered["dev-aws/releases/api.values.yaml"]
    );
}

#[test]
fn a_resolved_value_is_read_at_any_depth_and_in_any_section_that_holds_resolved_parts() {
    // What `strata explain` reads: a key below a resolved subtree, and a section (or the
    // whole tree) that holds several, each with its references resolved.
    let dir = example_copy("three-tier", &[], &[]);
    let loaded = Loaded::load(Project::Disk(dir.path().to_path_buf())).expect("the layers load");
    let (targets, errors) = loaded.targets_and_errors(&[]).expect("no usage error");
    assert!(errors.is_empty(), "{errors:#?}");
    let t = targets
        .iter()
        .find(|t| t.name == "dev-aws")
        .expect("dev-aws");
    let at = |path: &str| {
        t.resolved
            .materialize(&t.merged.tree, path)
            .map(|n| n.to_json())
    };
    assert_eq!(
        at("releases.api.values.image.tag"),
        Some(serde_json::json!("3.2.0"))
    );
    assert_eq!(
        at("releases.api.values.global.target"),
        Some(serde_json::json!("dev-aws"))
    );
    for (whole, below) in [
        ("", "/releases/api/values/global/target"),
        ("releases", "/api/values/global/target"),
        ("releases.api", "/values/global/target"),
    ] {
        let node = at(whole).unwrap_or_else(|| panic!("{whole:?}"));
        assert_eq!(
            node.pointer(below),
            Some(&serde_json::json!("dev-aws")),
            "{whole:?}"
        );
    }
    assert_eq!(at("releases.api.values.nope"), None);
}

/// The line of `name` in dev-aws's env file of the storage-only example's workload.
fn env_line(rendered: &BTreeMap<String, String>, name: &str) -> Option<String> {
    rendered["dev-aws/env/ingest.env"]
        .lines()
        .find(|l| l.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// `validate` of the storage-only example with `templates` (path under templates/,
/// text) added: each replaces one of strata's documents.
fn with_templates(templates: &[(&str, &str)]) -> Vec<String> {
    let paths: Vec<String> = templates
        .iter()
        .map(|(p, _)| format!("templates/{p}"))
        .collect();
    let edits: Vec<Edit> = templates
        .iter()
        .zip(&paths)
        .map(|((_, text), path)| (path.as_str(), "", *text))
        .collect();
    validate_project("storage-only", &[], &edits)
}

/// A bucket document that breaks what apply needs (name, place, ownership, rule ids)
/// and, in production, every setting a prod rule asks for.
const HOSTILE_BUCKET: &str = r#"{"name": "someone-elses-bucket",
 "key": "raw", "cloud": {{ target.cloud | to_json }},
 "region": "us-east-1", "location": "US",
 "versioning": false, "encryption": "none", "publicAccessBlock": false, "tlsOnly": false, "requireSse": false,
 "lifecycle": [{"id": "mine", "afterDays": 30}, {"id": "strata-0-x", "afterDays": 30}, {"id": "strata-0-x", "afterDays": 31}],
 "tags": {"managed-by": "strata", "strata-target": "another-target"},
 "retain": true, "adopt": false}"#;

#[test]
fn a_template_made_bucket_document_keeps_what_apply_needs_and_the_prod_rules() {
    let errors = with_templates(&[("buckets/raw.json.j2", HOSTILE_BUCKET)]);
    // Each at the template line that wrote it; the prod rules in prod only (the dev
    // targets' documents break them too, and are not told).
    assert_eq!(
        first_lines(&errors),
        [
            "templates/buckets/raw.json.j2:2: buckets.raw: rendered dev-aws/buckets/raw.json names bucket \"someone-elses-bucket\", not `telemetry-dev-raw-111111111111` (in target dev-aws)",
            "templates/buckets/raw.json.j2:2: buckets.raw: rendered dev-gcp/buckets/raw.json names bucket \"someone-elses-bucket\", not `telemetry-dev-7305-dev-raw` (in target dev-gcp)",
            "templates/buckets/raw.json.j2:2: buckets.raw: rendered prod-aws/buckets/raw.json names bucket \"someone-elses-bucket\", not `telemetry-prod-raw-333333333333` (in target prod-aws)",
            "templates/buckets/raw.json.j2:2: buckets.raw: rendered prod-gcp/buckets/raw.json names bucket \"someone-elses-bucket\", not `telemetry-prod-7305-prod-raw` (in target prod-gcp)",
            "templates/buckets/raw.json.j2:4: buckets.raw: rendered buckets/raw.json: location is \"US\", the target's is EU (in targets dev-gcp, prod-gcp)",
            "templates/buckets/raw.json.j2:4: buckets.raw: rendered buckets/raw.json: region is \"us-east-1\", the target's is eu-west-1 (in targets dev-aws, prod-aws)",
            "templates/buckets/raw.json.j2:5: buckets.raw.encryption: production policy `prod.encryption`: production buckets are encrypted (encryption: true), in prod [prod.encryption] (in targets prod-aws, prod-gcp)",
            "templates/buckets/raw.json.j2:5: buckets.raw.publicAccessBlock: production policy `prod.public-access-block`: production buckets block public access (publicAccessBlock: true), in prod [prod.public-access-block] (in targets prod-aws, prod-gcp)",
            "templates/buckets/raw.json.j2:5: buckets.raw.requireSse: production policy `prod.require-sse`: production uploads request encryption (requireSse: true), in prod [prod.require-sse] (in target prod-aws)",
            "templates/buckets/raw.json.j2:5: buckets.raw.tlsOnly: production policy `prod.tls-only`: production buckets refuse plain HTTP (tlsOnly: true), in prod [prod.tls-only] (in target prod-aws)",
            "templates/buckets/raw.json.j2:5: buckets.raw.versioning: production policy `prod.versioning`: production buckets keep versions (versioning: true), in prod [prod.versioning] (in targets prod-aws, prod-gcp)",
            "templates/buckets/raw.json.j2:6: buckets.raw: rendered buckets/raw.json: lifecycle rule id \"mine\" does not start with `strata-`; apply would never recognise it as its own (in targets dev-aws, dev-gcp, prod-aws, prod-gcp)",
            "templates/buckets/raw.json.j2:6: buckets.raw: rendered buckets/raw.json: lifecycle rule id \"strata-0-x\" appears twice (in targets dev-aws, dev-gcp, prod-aws, prod-gcp)",
            "templates/buckets/raw.json.j2:7: buckets.raw: rendered buckets/raw.json: tags must carry managed-by=strata and strata-target=dev-aws (strata's ownership) (in target dev-aws)",
            "templates/buckets/raw.json.j2:7: buckets.raw: rendered buckets/raw.json: tags must carry managed-by=strata and strata-target=dev-gcp (strata's ownership) (in target dev-gcp)",
            "templates/buckets/raw.json.j2:7: buckets.raw: rendered buckets/raw.json: tags must carry managed-by=strata and strata-target=prod-aws (strata's ownership) (in target prod-aws)",
            "templates/buckets/raw.json.j2:7: buckets.raw: rendered buckets/raw.json: tags must carry managed-by=strata and strata-target=prod-gcp (strata's ownership) (in target prod-gcp)",
        ]
    );
    // The same document with its name, place, ids and tags mended passes outside
    // prod, and in prod is told only the prod rules.
    let mended = HOSTILE_BUCKET
        .replace(
            "\"someone-elses-bucket\"",
            "{{ buckets.raw.name | to_json }}",
        )
        .replace(
            "\"us-east-1\"",
            "{{ (aws.region if target.cloud == 'aws' else '') | to_json }}",
        )
        .replace(
            "\"US\"",
            "{{ (gcp.location if target.cloud == 'gcp' else '') | to_json }}",
        )
        .replace("\"mine\"", "\"strata-9-mine\"")
        .replace(
            "\"strata-0-x\", \"afterDays\": 31",
            "\"strata-1-x\", \"afterDays\": 31",
        )
        .replace("\"another-target\"", "{{ target.name | to_json }}");
    let errors = with_templates(&[("buckets/raw.json.j2", &mended)]);
    assert!(
        errors.iter().all(|e| e.contains("production policy")),
        "{errors:#?}"
    );
    assert_eq!(errors.len(), 5, "{errors:#?}");
}

#[test]
fn a_template_env_file_is_name_equals_value_and_a_template_mistake_has_its_column() {
    let env = |text: &str| with_templates(&[("notes.env.j2", text)]);
    // Comments, blank lines (indented too) and NAME=value pass.
    assert_eq!(
        env("# a comment\n  \n  # indented\nGOOD_1=x=y\nB=\n"),
        Vec::<String>::new()
    );
    for (text, line) in [
        ("GOOD=1\nbad-name=2\n", 3),
        ("=x\n", 2),
        ("GOOD=1\nNOEQUALS\n", 3),
    ] {
        assert_eq!(
            first_lines(&env(text)),
            [format!(
                "templates/notes.env.j2:{line}: rendered notes.env line {line} is not NAME=value (rendering targets dev-aws, dev-gcp, prod-aws, prod-gcp)"
            )],
            "{text:?}"
        );
    }
    // An undefined value, at its line and column, with the whole expression.
    let errors = with_templates(&[("notes.yaml.j2", "a: 1\nb: {{ buckets.raw.nmae }}\n")]);
    assert_eq!(
        first_lines(&errors),
        [
            "templates/notes.yaml.j2:3:14: undefined value `buckets.raw.nmae` (rendering targets dev-aws, dev-gcp, prod-aws, prod-gcp)"
        ]
    );
    // Underscores belong to the expression; a parenthesis before it does not.
    let errors = with_templates(&[("notes.yaml.j2", "b: {{ (buckets.raw_data.name) }}\n")]);
    assert_eq!(
        first_lines(&errors),
        [
            "templates/notes.yaml.j2:2:15: undefined value `buckets.raw_data.name` (rendering targets dev-aws, dev-gcp, prod-aws, prod-gcp)"
        ]
    );
}

#[test]
fn a_lock_file_discovered_for_another_domain_is_stale_for_its_target_only() {
    let lock = "dns:\n  domain: old.example.com\n  zoneId: Z123\n";
    let errors = validate_project(
        "storage-only",
        &[],
        &[
            (
                "environments/dev.yaml",
                "",
                "dns:\n  domain: dev.example.com",
            ),
            ("environments/discovered/dev-aws.yaml", "", lock),
        ],
    );
    assert_eq!(
        errors,
        [
            "environments/discovered/dev-aws.yaml:3:11: dns.domain: the lock file was discovered for \"old.example.com\", but the layers now say \"dev.example.com\"\n  hint: run `strata preflight dev-aws --write` to discover again, and commit the lock file"
        ]
    );
    // A lock file for a target no environment defines (an old one, a typo).
    let error = load_errors(&[], &[("environments/discovered/qa-aws.yaml", "", lock)]);
    assert!(
        error.contains("environments/discovered/qa-aws.yaml:1:1: this lock file is for target `qa-aws`, which no environment defines"),
        "{error}"
    );
    // Discovered for the domain the layers say: nothing to say.
    let errors = validate_project(
        "storage-only",
        &[],
        &[
            (
                "environments/dev.yaml",
                "",
                "dns:\n  domain: old.example.com",
            ),
            ("environments/discovered/dev-aws.yaml", "", lock),
        ],
    );
    assert_eq!(errors, Vec::<String>::new());
}

/// A workload policy with one mistake a statement, from line 3 on (aws targets only).
const HOSTILE_POLICY: &str = r#"{% if target.cloud == "aws" %}{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": "*", "Resource": "*"},
  {"Effect": "Permit", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::x/*"},
  {"Effect": "Allow", "Action": "s3GetObject", "Resource": "bucket-x"},
  {"Effect": "Allow", "Action": ["iam:PassRole", "sts:AssumeRole"], "Resource": "arn:aws:iam::111111111111:role/x"},
  {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::x/*", "Principal": "*"},
  {"Effect": "Allow", "Action": "s3:GetObject"},
  "a string",
  {"Effect": "Deny", "Action": "*", "Resource": "*"}
]}{% endif %}"#;

/// A Pod Identity trust policy that lets anyone in, with a foreign action.
const HOSTILE_TRUST: &str = r#"{% if target.cloud == "aws" %}{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Principal": {"AWS": "*"},
   "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"]},
  {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
]}{% endif %}"#;

#[test]
fn a_template_made_policy_and_trust_are_judged_statement_by_statement() {
    let errors = with_templates(&[
        ("iam/ingest.policy.json.j2", HOSTILE_POLICY),
        ("iam/ingest.trust.json.j2", HOSTILE_TRUST),
    ]);
    // Each statement's findings at its line; a Deny is not judged for what it allows.
    assert_eq!(
        first_lines(&errors),
        [
            "templates/iam/ingest.policy.json.j2:3: workloads.ingest: iam/ingest.policy.json statement 1: allows `*`, with which a workload can give itself any permission [iam.escalation] (in targets dev-aws, prod-aws)",
            "templates/iam/ingest.policy.json.j2:3: workloads.ingest: iam/ingest.policy.json statement 1: allows `*`: a wildcard grants actions nobody reviewed [iam.wildcard-action] (in targets dev-aws, prod-aws)",
            "templates/iam/ingest.policy.json.j2:3: workloads.ingest: iam/ingest.policy.json statement 1: allows its actions on every resource (`*`) [iam.wildcard-resource] (in targets dev-aws, prod-aws)",
            "templates/iam/ingest.policy.json.j2:4: workloads.ingest: iam/ingest.policy.json statement 2: Effect must be Allow or Deny (in targets dev-aws, prod-aws)",
            "templates/iam/ingest.policy.json.j2:5: workloads.ingest: iam/ingest.policy.json statement 3: `bucket-x` is not an ARN (in targets dev-aws, prod-aws)",
            "templates/iam/ingest.policy.json.j2:5: workloads.ingest: iam/ingest.policy.json statement 3: `s3GetObject` is not an IAM action (service:Action) (in targets dev-aws, prod-aws)",
            "templates/iam/ingest.policy.json.j2:6: workloads.ingest: iam/ingest.policy.json statement 4: allows `iam:PassRole`, with which a workload can give itself any permission [iam.escalation] (in targets dev-aws, prod-aws)",
            "templates/iam/ingest.policy.json.j2:7: workloads.ingest: iam/ingest.policy.json statement 5: `Principal` has no place in a workload's policy (in targets dev-aws, prod-aws)",
            "templates/iam/ingest.policy.json.j2:8: workloads.ingest: iam/ingest.policy.json statement 6: a statement needs Action and Resource (in targets dev-aws, prod-aws)",
            "templates/iam/ingest.policy.json.j2:9: workloads.ingest: iam/ingest.policy.json statement 7: a statement must be an object (in targets dev-aws, prod-aws)",
            "templates/iam/ingest.trust.json.j2:3: workloads.ingest: iam/ingest.trust.json: principal {\"AWS\":\"*\"} is not the EKS Pod Identity service (pods.eks.amazonaws.com) (in targets dev-aws, prod-aws)",
            "templates/iam/ingest.trust.json.j2:4: workloads.ingest: iam/ingest.trust.json: actions [\"sts:AssumeRole\", \"sts:SetSourceIdentity\"]: Pod Identity needs sts:AssumeRole and sts:TagSession only (in targets dev-aws, prod-aws)",
        ]
    );
    // A lone statement object is judged too; an empty trust policy is refused.
    let errors = with_templates(&[
        (
            "iam/ingest.policy.json.j2",
            "{% if target.cloud == \"aws\" %}{\"Version\": \"2012-10-17\", \"Statement\": {\"Effect\": \"Allow\", \"Action\": \"s3:*\", \"Resource\": \"arn:aws:s3:::x\"}}{% endif %}",
        ),
        (
            "iam/ingest.trust.json.j2",
            "{% if target.cloud == \"aws\" %}{\"Statement\": []}{% endif %}",
        ),
    ]);
    assert_eq!(
        first_lines(&errors),
        [
            "templates/iam/ingest.policy.json.j2:2: workloads.ingest: iam/ingest.policy.json statement 1: allows `s3:*`: a wildcard grants actions nobody reviewed [iam.wildcard-action] (in targets dev-aws, prod-aws)",
            "templates/iam/ingest.trust.json.j2:2: workloads.ingest: iam/ingest.trust.json: the trust policy has no statements (in targets dev-aws, prod-aws)",
        ]
    );
    let errors = with_templates(&[(
        "iam/ingest.policy.json.j2",
        "{% if target.cloud == \"aws\" %}{\"Version\": \"2012-10-17\"}{% endif %}",
    )]);
    assert_eq!(
        first_lines(&errors),
        [
            "templates/iam/ingest.policy.json.j2:2: workloads.ingest: iam/ingest.policy.json statement 1: the policy has no Statement list (in targets dev-aws, prod-aws)",
        ]
    );
}

const HOSTILE_GCP: &str = r#"{% if target.cloud == "gcp" %}{"serviceAccount": {"accountId": "x", "email": "someone@other.iam.gserviceaccount.com", "project": {{ gcp.projectId | to_json }}},
 "workloadIdentity": {"role": "roles/iam.workloadIdentityUser",
   "members": ["serviceAccount:elsewhere.svc.id.goog[ns/sa]"]},
 "bucketBindings": [
   {"bucket": "not-ours", "role": "roles/storage.objectViewer", "members": [{{ ("serviceAccount:" ~ workloads.ingest.gsaEmail) | to_json }}]},
   {"bucket": {{ buckets.raw.name | to_json }}, "role": "roles/owner", "members": [{{ ("serviceAccount:" ~ workloads.ingest.gsaEmail) | to_json }}]},
   {"bucket": {{ buckets.raw.name | to_json }}, "role": "roles/storage.objectViewer", "members": ["allUsers"]}],
 "projectBindings": [
   {"role": "roles/resourcemanager.projectIamAdmin", "members": [{{ ("serviceAccount:" ~ workloads.ingest.gsaEmail) | to_json }}]},
   {"role": "roles/editor", "members": ["user:someone@example.com"]}]}{% endif %}"#;

const HOSTILE_IRSA_TRUST: &str = r#"{% if target.cloud == "aws" %}{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Principal": {"Federated": "arn:aws:iam::999999999999:oidc-provider/elsewhere"},
   "Action": "sts:AssumeRole",
   "Condition": {"StringEquals": {
     "oidc.eks.eu-west-1.amazonaws.com/id/ABC:sub": "system:serviceaccount:other:sa"}}}
]}{% endif %}"#;

#[test]
fn a_template_made_gcp_document_and_irsa_trust_grant_to_their_own_only() {
    let errors = with_templates(&[("iam/ingest.gcp.json.j2", HOSTILE_GCP)]);
    assert_eq!(
        first_lines(&errors),
        [
            "templates/iam/ingest.gcp.json.j2:2: workloads.ingest.gcpServiceAccount: iam/ingest.gcp.json: the service account must be telemetry-dev-ingest@telemetry-dev-7305.iam.gserviceaccount.com (in target dev-gcp)",
            "templates/iam/ingest.gcp.json.j2:2: workloads.ingest.gcpServiceAccount: iam/ingest.gcp.json: the service account must be telemetry-prod-ingest@telemetry-prod-7305.iam.gserviceaccount.com (in target prod-gcp)",
            "templates/iam/ingest.gcp.json.j2:3: workloads.ingest.serviceAccount: iam/ingest.gcp.json: Workload Identity must bind roles/iam.workloadIdentityUser to serviceAccount:telemetry-dev-7305.svc.id.goog[telemetry/telemetry-ingest] only (in target dev-gcp)",
            "templates/iam/ingest.gcp.json.j2:3: workloads.ingest.serviceAccount: iam/ingest.gcp.json: Workload Identity must bind roles/iam.workloadIdentityUser to serviceAccount:telemetry-prod-7305.svc.id.goog[telemetry/telemetry-ingest] only (in target prod-gcp)",
            "templates/iam/ingest.gcp.json.j2:6: workloads.ingest.access: iam/ingest.gcp.json: binds roles on bucket `not-ours`, which this target does not declare (in targets dev-gcp, prod-gcp)",
            "templates/iam/ingest.gcp.json.j2:7: workloads.ingest.roles: iam/ingest.gcp.json: grants the basic role roles/owner [gcp.primitive-role] (in targets dev-gcp, prod-gcp)",
            "templates/iam/ingest.gcp.json.j2:8: workloads.ingest.roles: iam/ingest.gcp.json: grants roles/storage.objectViewer to `allUsers`; a workload's document grants to its own service account only (in targets dev-gcp, prod-gcp)",
            "templates/iam/ingest.gcp.json.j2:10: workloads.ingest.roles: iam/ingest.gcp.json: grants roles/resourcemanager.projectIamAdmin on the whole project [gcp.project-admin] (in targets dev-gcp, prod-gcp)",
            "templates/iam/ingest.gcp.json.j2:11: workloads.ingest.roles: iam/ingest.gcp.json: grants roles/editor to `user:someone@example.com`; a workload's document grants to its own service account only (in targets dev-gcp, prod-gcp)",
            "templates/iam/ingest.gcp.json.j2:11: workloads.ingest.roles: iam/ingest.gcp.json: grants the basic role roles/editor [gcp.primitive-role] (in targets dev-gcp, prod-gcp)",
        ]
    );
    let irsa = "  cluster: telemetry-dev\n  identity: irsa\n  oidcIssuer: https://oidc.eks.eu-west-1.amazonaws.com/id/ABC\n";
    let errors = validate_project(
        "storage-only",
        &[],
        &[
            ("environments/dev.yaml", "  cluster: telemetry-dev\n", irsa),
            ("templates/iam/ingest.trust.json.j2", "", HOSTILE_IRSA_TRUST),
        ],
    );
    // dev-aws (IRSA) is told what IRSA needs; prod-aws (Pod Identity) what it needs.
    assert_eq!(
        first_lines(&errors),
        [
            "templates/iam/ingest.trust.json.j2:3: workloads.ingest: iam/ingest.trust.json: principal {\"Federated\":\"arn:aws:iam::999999999999:oidc-provider/elsewhere\"} is not the EKS Pod Identity service (pods.eks.amazonaws.com) (in target prod-aws)",
            "templates/iam/ingest.trust.json.j2:3: workloads.ingest: iam/ingest.trust.json: principal {\"Federated\":\"arn:aws:iam::999999999999:oidc-provider/elsewhere\"} is not this cluster's OIDC provider (arn:aws:iam::111111111111:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC) (in target dev-aws)",
            "templates/iam/ingest.trust.json.j2:4: workloads.ingest: iam/ingest.trust.json: actions [\"sts:AssumeRole\"]: IRSA needs sts:AssumeRoleWithWebIdentity only (in target dev-aws)",
            "templates/iam/ingest.trust.json.j2:6: workloads.ingest: iam/ingest.trust.json: the role must be limited to `system:serviceaccount:telemetry:telemetry-ingest` (a StringEquals condition on oidc.eks.eu-west-1.amazonaws.com/id/ABC:sub) (in target dev-aws)",
        ]
    );
}

#[test]
fn a_template_loop_that_would_run_for_hours_is_stopped_at_its_template() {
    let errors = with_templates(&[(
        "notes.txt.j2",
        "ok\n{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}\n",
    )]);
    assert_eq!(
        first_lines(&errors),
        [
            "templates/notes.txt.j2:3:41: the template ran more than 2000000 steps and was stopped (rendering targets dev-aws, dev-gcp, prod-aws, prod-gcp)"
        ]
    );
}

#[test]
fn a_template_that_would_render_a_file_too_large_to_hold_is_stopped() {
    // 100000 times 100 kB: 10 GB of output before the fuel would run out.
    let errors = with_templates(&[(
        "notes.txt.j2",
        "{% for i in range(100000) %}{{ \"x\" * 100000 }}{% endfor %}\n",
    )]);
    assert_eq!(
        first_lines(&errors),
        [
            "templates/notes.txt.j2: rendered notes.txt would be larger than 16 MiB and was stopped (rendering targets dev-aws, dev-gcp, prod-aws, prod-gcp)"
        ]
    );
    // At the bound: a file of exactly 16 MiB is written (the empty line the edit
    // starts with, 16383 lines of 1 KiB, 1022 bytes and the file's last newline).
    let rendered = render_project(
        "storage-only",
        &[],
        &[(
            "templates/notes.txt.j2",
            "",
            "{% for i in range(16 * 1024 - 1) %}{{ \"x\" * 1023 }}\n{% endfor %}{{ \"y\" * 1022 }}",
        )],
    );
    assert_eq!(rendered["dev-aws/notes.txt"].len(), 16 << 20);
}

#[test]
fn a_template_syntax_error_is_named_at_its_line_and_a_project_without_base_yaml_is_refused() {
    // Said when the templates are compiled, before any target renders.
    let dir = example_copy(
        "storage-only",
        &[],
        &[(
            "templates/notes.yaml.j2",
            "",
            "a: 1\n{% if target.cloud == %}\nb: 2\n{% endif %}",
        )],
    );
    let loaded = Loaded::load(Project::Disk(dir.path().to_path_buf())).expect("the layers load");
    let error = loaded.renderer().err().expect("a syntax error").to_string();
    assert_eq!(
        error,
        "templates/notes.yaml.j2:3:23: syntax error: unexpected end of block"
    );
    let dir = example_copy("storage-only", &["environments/base.yaml"], &[]);
    let error = Loaded::load(Project::Disk(dir.path().to_path_buf()))
        .err()
        .expect("no base layer")
        .to_string();
    assert!(
        error.starts_with("environments/base.yaml is missing in ")
            && error.contains("every project needs a base layer"),
        "{error}"
    );
    // Any other layer may be missing: a project of base.yaml and one environment.
    let dir = example_copy("storage-only", &["environments/prod.yaml"], &[]);
    assert!(Loaded::load(Project::Disk(dir.path().to_path_buf())).is_ok());
}

#[test]
fn the_filters_to_yaml_to_json_and_quote_write_what_yaml_and_json_read_back() {
    let rendered = render_project(
        "storage-only",
        &[],
        &[
            (
                "environments/base.yaml",
                "",
                "vars:\n  m: {b: [1, two], a: \"yes\"}",
            ),
            (
                "templates/filters.yaml.j2",
                "",
                "m:\n{{ vars.m | to_yaml | indent(2, true) }}\nj: {{ vars.m | to_json }}\nq: {{ \"a \\\"b\\\": c\" | quote }}\nn: {{ 5 | quote }}",
            ),
        ],
    );
    assert_eq!(
        rendered["dev-aws/filters.yaml"],
        // (Keys in the order templates see them: sorted; `to_json` indents.)
        "\nm:\n  a: \"yes\"\n  b:\n  - 1\n  - two\nj: {\n  \"a\": \"yes\",\n  \"b\": [\n    1,\n    \"two\"\n  ]\n}\nq: \"a \\\"b\\\": c\"\nn: \"5\"\n"
    );
}

#[test]
fn an_env_layer_for_a_cloud_its_environment_does_not_list_and_a_bad_env_name_are_refused() {
    // prod lists only aws: its gcp layer is used by no target; an env nobody defines.
    let errors = load_errors(
        &[],
        &[
            (
                "environments/prod.yaml",
                "clouds: [aws, gcp]",
                "clouds: [aws]",
            ),
            ("environments/prod.gcp.yaml", "", "gcp: {location: EU}"),
            ("environments/qa.aws.yaml", "", "aws: {region: eu-west-1}"),
        ],
    );
    assert!(
        errors.contains("environments/prod.gcp.yaml:1:1: this layer is for target `prod-gcp`, which no environment defines\n  hint: list `gcp` under `clouds:` in environments/prod.yaml, or delete this file")
            && errors.contains("environments/qa.aws.yaml:1:1: this layer is for target `qa-aws`"),
        "{errors}"
    );
    assert!(!errors.contains("dev.aws.yaml"), "{errors}");
    // Environment names: lowercase letters, digits and '-', a letter first, 32 at most.
    let env_file = "clouds: [aws]\naws: {accountId: \"222222222222\", cluster: c}";
    for (name, valid) in [
        ("Qa", false),
        ("qa_1", false),
        ("1qa", false),
        (&*"q".repeat(33), false),
        (&*"q".repeat(32), true),
        ("qa-2", true),
    ] {
        let file = format!("environments/{name}.yaml");
        let errors = load_errors(&[], &[(&file, "", env_file)]);
        let refused = format!("`{name}` is not a valid environment name");
        assert_eq!(errors.contains(&refused), !valid, "{name}: {errors}");
    }
    // A layer both clouds of dev use is fine.
    assert_eq!(
        load_errors(
            &[],
            &[(
                "environments/dev.aws.yaml",
                "",
                "aws: {cluster: telemetry-dev}"
            )]
        ),
        ""
    );
}

#[test]
fn a_null_that_removes_a_required_key_is_said_at_the_null() {
    let errors = validate(&[("dev.aws.yaml", "", "aws:\n  region: null")]);
    assert_eq!(
        first_lines(&errors),
        [
            "environments/dev.aws.yaml:3:11: aws.region: `region` is required, but this null removes it"
        ]
    );
    assert_one(&errors, &["set a value instead of null"]);
}

/// An umbrella chart: charts/web with a dependency aliased `cache` (vendored as a
/// folder, with a subchart of its own), one not yet fetched (`postgresql`), one packed
/// (`queue-2.1.0.tgz`) and a folder in charts/ that no dependency names (`metrics`).
const UMBRELLA: [Edit; 8] = [
    (
        "charts/web/Chart.yaml",
        "",
        "dependencies:\n  - {name: redis, version: 1.0.0, repository: https://charts.example.com, alias: cache, condition: \"cache.enabled,global.cache.enabled\"}\n  - {name: postgresql, version: 12.0.0, repository: oci://registry.example.com/charts}\n  - {name: queue, version: 2.1.0, repository: https://charts.example.com}",
    ),
    (
        "charts/web/charts/redis/Chart.yaml",
        "",
        "apiVersion: v2\nname: redis\nversion: 1.0.0",
    ),
    (
        "charts/web/charts/redis/values.yaml",
        "",
        "architecture: replication\nauth: {enabled: true}",
    ),
    (
        "charts/web/charts/redis/charts/common/Chart.yaml",
        "",
        "apiVersion: v2\nname: common\nversion: 2.0.0",
    ),
    (
        "charts/web/charts/redis/charts/common/values.yaml",
        "",
        "labels: {tier: cache}",
    ),
    (
        "charts/web/charts/metrics/Chart.yaml",
        "",
        "apiVersion: v2\nname: metrics\nversion: 0.1.0",
    ),
    ("charts/web/charts/metrics/values.yaml", "", "interval: 30s"),
    ("charts/web/charts/queue-2.1.0.tgz", "", "packed"),
];

/// The web release's values of [`UMBRELLA`]'s tests, after `values` (at the values'
/// own indent), appended to base.yaml.
fn umbrella(values: &str) -> Vec<String> {
    let mut edits = UMBRELLA.to_vec();
    edits.push(("environments/base.yaml", "", values));
    three_tier(&["charts/web/values.schema.json"], &edits)
}

#[test]
fn a_subcharts_values_go_under_its_key_and_are_checked_against_its_own_values_yaml() {
    // Under `cache` (the alias), redis's keys and its `global`; under `cache.common`,
    // the common subchart's; under a dependency strata cannot read (not fetched, or
    // packed), any keys; under a folder no dependency names, its own; `tags` at the top.
    let good = "      cache:\n        enabled: true\n        architecture: standalone\n        auth: {enabled: false}\n        global: {x: 1}\n        common: {labels: {tier: db}}\n      postgresql: {primary: {persistence: {size: 8Gi}}}\n      queue: {anything: 1}\n      metrics: {interval: 10s}\n      tags: {db: true}";
    assert_eq!(umbrella(good), Vec::<String>::new());
    // A packed chart in charts/ that no dependency names is a subchart too, by the
    // name before its version.
    let mut edits = UMBRELLA.to_vec();
    edits.push(("charts/web/charts/extra-0.3.0.tgz", "", "packed"));
    edits.push(("environments/base.yaml", "", "      extra: {anything: 1}"));
    assert_eq!(
        three_tier(&["charts/web/values.schema.json"], &edits),
        Vec::<String>::new()
    );
    // The chart's own values.yaml may add keys under a subchart's (Helm merges them
    // over the subchart's), at any depth.
    let mut edits = UMBRELLA.to_vec();
    edits.push((
        "charts/web/values.yaml",
        "",
        "cache:\n  sentinel: {quorum: 2}\n  common: {extraLabels: {}}",
    ));
    edits.push((
        "environments/base.yaml",
        "",
        "      cache: {sentinel: {quorum: 3}, common: {extraLabels: {a: b}}, architecture: standalone}",
    ));
    assert_eq!(
        three_tier(&["charts/web/values.schema.json"], &edits),
        Vec::<String>::new()
    );
    // Each subchart's own mistakes, said against its own values.yaml.
    let bad = "      cache:\n        architecturez: standalone\n        common: {labelz: {}}\n      metrics: {intervall: 10s}\n      cahce: {}";
    assert_eq!(
        umbrella(bad),
        [
            "environments/base.yaml:129:9: releases.web.values.cache.architecturez: `architecturez` is not a value of charts/web/charts/redis (values.yaml has no such key)\n  hint: did you mean `architecture`?; `strictValues: false` on the release accepts keys the chart does not declare",
            "environments/base.yaml:130:18: releases.web.values.cache.common.labelz: `labelz` is not a value of charts/web/charts/redis/charts/common (values.yaml has no such key)\n  hint: did you mean `labels`?; `strictValues: false` on the release accepts keys the chart does not declare",
            "environments/base.yaml:131:17: releases.web.values.metrics.intervall: `intervall` is not a value of charts/web/charts/metrics (values.yaml has no such key)\n  hint: did you mean `interval`?; `strictValues: false` on the release accepts keys the chart does not declare",
            "environments/base.yaml:132:7: releases.web.values.cahce: `cahce` is not a value of charts/web (values.yaml has no such key)\n  hint: did you mean `cache`?; `strictValues: false` on the release accepts keys the chart does not declare",
        ]
    );
}

#[test]
fn a_chart_without_subcharts_takes_no_tags_and_a_subchart_key_takes_no_global_below_its_top() {
    // `tags` is Helm's only for a chart with dependencies; `global` only at a chart's
    // top (the release's chart's, or a subchart's). A file in charts/ that is not a
    // packed chart (`.gitkeep`) is no subchart.
    let errors = three_tier(
        &["charts/web/values.schema.json"],
        &[
            ("charts/web/charts/.gitkeep", "", ""),
            (
                "environments/base.yaml",
                "",
                "      tags: {db: true}\n      resources: {global: {}}\n      .gitkeep: {}",
            ),
        ],
    );
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[1].contains(
            "releases.web.values.resources.global: `global` is not a value of charts/web"
        ),
        "{errors:#?}"
    );
    assert!(
        errors[2].contains("`.gitkeep` is not a value of charts/web"),
        "{errors:#?}"
    );
    assert!(
        errors[0].contains("releases.web.values.tags: `tags` is not a value of charts/web"),
        "{errors:#?}"
    );
}

#[test]
fn an_api_v1_charts_requirements_yaml_names_its_subcharts() {
    let values = "      cache: {architecturez: standalone}";
    let mut edits = UMBRELLA.to_vec();
    edits[0] = (
        "charts/web/requirements.yaml",
        "",
        "dependencies:\n  - {name: redis, version: 1.0.0, repository: https://charts.example.com, alias: cache}",
    );
    edits.push(("environments/base.yaml", "", values));
    let errors = three_tier(&["charts/web/values.schema.json"], &edits);
    assert_only(
        &errors,
        "`architecturez` is not a value of charts/web/charts/redis",
    );
}

#[test]
fn a_subchart_folder_that_links_back_to_its_chart_is_an_error_not_an_endless_walk() {
    let dir = example_copy("three-tier", &[], &[]);
    std::os::unix::fs::symlink("..", dir.path().join("charts/web/charts")).unwrap_or_else(|_| {
        std::fs::create_dir_all(dir.path().join("charts/web/charts")).unwrap();
        std::os::unix::fs::symlink("../..", dir.path().join("charts/web/charts/self")).unwrap();
    });
    let errors = validate_dir(dir.path());
    assert_only(&errors, "subcharts nested more than 16 deep");
    // 1001 subcharts (links to one chart) are more than the walk reads.
    let dir = example_copy("three-tier", &[], &[]);
    let charts = dir.path().join("charts/web/charts");
    std::fs::create_dir_all(&charts).unwrap();
    for i in 0..1001 {
        std::os::unix::fs::symlink("../../backend", charts.join(format!("s{i}"))).unwrap();
    }
    let errors = validate_dir(dir.path());
    assert_only(
        &errors,
        "more than 1000 subcharts (does a folder in charts/ link back",
    );
}

#[test]
fn a_subcharts_chart_yaml_that_does_not_parse_is_said_at_its_line() {
    let mut edits = UMBRELLA.to_vec();
    edits[1] = (
        "charts/web/charts/redis/Chart.yaml",
        "",
        "apiVersion: v2\nname: [redis\nversion: 1.0.0",
    );
    let errors = three_tier(&[], &edits);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].starts_with("charts/web/charts/redis/Chart.yaml:4:"),
        "{errors:#?}"
    );
}

#[test]
fn a_chart_that_is_not_a_folder_of_the_project_is_said_with_how_to_copy_one_in() {
    let at = |chart: &str| {
        three_tier(
            &[],
            &[(
                "environments/base.yaml",
                "    chart: charts/web",
                &format!("    chart: {chart}"),
            )],
        )
    };
    let cases: [(&str, &[&str]); 8] = [
        (
            "oci://registry.example.com/charts/web",
            &[
                "environments/base.yaml:113:12: releases.web.chart: `oci://registry.example.com/charts/web` is a chart in a repository or registry",
                "helm pull oci://registry.example.com/charts/web --version VERSION --untar --untardir charts",
            ],
        ),
        (
            "bitnami/nginx",
            &[
                "environments/base.yaml:113:12: releases.web.chart: no chart at bitnami/nginx (it has no Chart.yaml)",
                "`helm pull REPO/CHART --untar --untardir charts`",
            ],
        ),
        ("../web", &["`../web` is outside the project"]),
        // `.` and an empty part are no step down.
        ("././/../web", &["`././/../web` is outside the project"]),
        (
            "charts/web/../web",
            &[
                "`charts/web/../web` has a `..` part; a release's chart is named by its folder's path from the project root (charts/NAME)",
            ],
        ),
        (
            "charts/web/Chart.yaml",
            &[
                "`charts/web/Chart.yaml` is a file; a release's chart is the folder that holds Chart.yaml (`charts/web`?)",
            ],
        ),
        ("\"\"", &["releases.web.chart: `chart:` is empty"]),
        ("\" \"", &["releases.web.chart: `chart:` is empty"]),
    ];
    for (chart, parts) in cases {
        let errors = at(chart);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_one(&errors, parts);
    }
}

#[test]
fn an_env_var_name_that_is_empty_or_dotted_is_said_at_its_own_line() {
    // Located by its segments, not a dotted path (which found the `env` section).
    let errors = validate(&[(
        "base.yaml",
        "      LOG_LEVEL: info\n",
        "      LOG_LEVEL: info\n      \"\": x\n      \"A.B\": y\n",
    )]);
    assert_eq!(
        first_lines(&errors),
        [
            "environments/base.yaml:40:11: workloads.ingest.env.: `` is not a valid environment variable name",
            "environments/base.yaml:41:14: workloads.ingest.env.A.B: `A.B` is not a valid environment variable name",
        ]
    );
}

#[test]
fn a_value_strata_takes_from_a_list_is_said_with_the_close_one() {
    let errors = validate(&[("dev.yaml", "", "kube:\n  podSecurity: restrictd")]);
    assert_one(
        &errors,
        &[
            "kube.podSecurity: unknown variant `restrictd`, expected one of `privileged`, `baseline`, `restricted`\n  hint: did you mean `restricted`?",
        ],
    );
}

#[test]
fn an_unknown_key_with_backticks_in_it_is_said_whole_at_its_place() {
    // serde quotes the key in backticks; one inside the key, or serde's own words,
    // must not cut it short (it was said as `bogus` at the first key of base.yaml).
    let errors = validate(&[(
        "dev.yaml",
        "",
        "bogus`x: 1\n\"other`, expected `a`\": 1\nbuckets:\n  raw:\n    \"ver`sioning\": true",
    )]);
    assert_eq!(
        first_lines(&errors),
        [
            "environments/dev.yaml:16:1: bogus`x: unknown key `bogus`x`",
            "environments/dev.yaml:17:1: other`, expected `a`: unknown key `other`, expected `a``",
            "environments/dev.yaml:20:5: buckets.raw.ver`sioning: unknown key `ver`sioning`",
        ]
    );
    assert_one(&errors, &["ver`sioning", "did you mean `versioning`?"]);
}

#[test]
fn unknown_keys_inside_a_list_item_are_all_said_and_one_section_says_at_most_a_hundred() {
    // Typing stops at its first error and runs again without the unknown key: the
    // key is found again inside the bucket's list item and removed there.
    let errors = validate(&[(
        "base.yaml",
        "      - {archiveAfterDays: 30}",
        "      - {archiveAfterDays: 30, fooo: 1, barr: 2}",
    )]);
    assert_one(
        &errors,
        &["buckets.raw.lifecycle.0.fooo", "unknown key `fooo`"],
    );
    assert_one(
        &errors,
        &["buckets.raw.lifecycle.0.barr", "unknown key `barr`"],
    );
    // 101 unknown keys in one bucket: the first 100 are said, the next run says the rest.
    let keys: String = (0..101).map(|i| format!("    k{i:03}: 1\n")).collect();
    let edit = format!("  scratch:\n{keys}");
    let errors = validate(&[("base.yaml", "  scratch:\n", &edit)]);
    let said = errors
        .iter()
        .filter(|e| e.contains(": buckets.scratch.k"))
        .count();
    assert_eq!(said, 100, "{errors:#?}");
}

#[test]
fn a_charts_values_yaml_over_its_own_node_budget_names_that_budget() {
    // A chart's budget is 250000 nodes (a layer's 200000): the message says the one
    // that was breached, at the chart's file.
    let items = "0,".repeat(250_001);
    let errors = three_tier(&[], &[(BACKEND_VALUES, "", &format!("big: [{items}0]"))]);
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("charts/backend/values.yaml:")
                && e.contains("the document has more than 250000 nodes")
                && e.contains("hint: the document is too large or too deeply nested")),
        "{errors:#?}"
    );
}

#[test]
fn a_layer_file_name_that_is_no_env_and_cloud_is_said_as_that() {
    let said = |file: &str| {
        let path = format!("environments/{file}");
        load_errors(&[], &[(path.as_str(), "", "vars: {}")])
    };
    let not_a_name = |stem: &str, close: &str| {
        format!(
            "environments/{stem}.yaml:1:1: `{stem}.yaml` is not a layer name: an environment's layer for one cloud is <env>.<cloud>.yaml, the cloud one of aws, gcp\n  hint: rename it{close}, or move it out of environments/"
        )
    };
    assert_eq!(said("dev..yaml"), not_a_name("dev.", ""));
    assert_eq!(said("dev.aws.extra.yaml"), not_a_name("dev.aws.extra", ""));
    assert_eq!(
        said("dev.gpc.yaml"),
        not_a_name("dev.gpc", " (did you mean dev.gcp.yaml?)")
    );
    // A known cloud: the target is missing, and what makes it depends on whether the
    // environment has a layer.
    assert_eq!(
        said("qa.aws.yaml"),
        "environments/qa.aws.yaml:1:1: this layer is for target `qa-aws`, which no environment defines\n  hint: there is no environments/qa.yaml: create it with `clouds: [aws]`, or delete this file"
    );
}

#[test]
fn a_plain_yaml_1_1_boolean_word_in_release_values_is_said_at_its_place() {
    // Without the chart's schema (which would say its own line), only strata's word:
    // `no` plain is said, `"no"` quoted is not.
    let errors = three_tier(
        &["charts/web/values.schema.json"],
        &[(
            "environments/base.yaml",
            "",
            "      podAnnotations: {team: no, quoted: \"no\"}",
        )],
    );
    assert_eq!(
        first_lines(&errors),
        [
            "environments/base.yaml:128:30: releases.web.values.podAnnotations.team: `no` is the string \"no\" to strata (YAML 1.2), but false in a Helm values file (YAML 1.1)"
        ]
    );
}

#[test]
fn a_chart_schema_with_a_ref_to_another_document_is_used_without_it() {
    // The remote $ref is not fetched: what it would check is not checked (helm does, at
    // apply), and the rest of the schema still is.
    let web_schema = "charts/web/values.schema.json";
    let remote = [
        (
            web_schema,
            "\"requests\": {\"$ref\": \"#/definitions/resourceList\"}",
            "\"requests\": {\"$ref\": \"https://raw.githubusercontent.com/yannh/kubernetes-json-schema/master/v1.29.0/_definitions.json#/definitions/io.k8s.api.core.v1.ResourceList\"}",
        ),
        // One inside a list (`allOf`), too.
        (
            web_schema,
            "\"limits\": {\"$ref\": \"#/definitions/resourceList\"}",
            "\"limits\": {\"allOf\": [{\"$ref\": \"other.json\"}]}",
        ),
        (
            "environments/base.yaml",
            "",
            "      resources: {requests: {cpu: [not, a, quantity]}, limits: {cpu: [nor, this]}}\n      podAnnotations: [not-a-map]",
        ),
    ];
    let errors = three_tier(&[], &remote);
    assert_only(
        &errors,
        "releases.web.values.podAnnotations: charts/web/values.schema.json: value is not of type \"object\"",
    );
}

#[test]
fn a_chart_file_that_is_a_fifo_or_too_large_is_an_error_not_a_hang() {
    // A FIFO would block the read until something wrote to it.
    let dir = example_copy("three-tier", &[BACKEND_VALUES], &[]);
    let fifo = std::ffi::CString::new(
        dir.path()
            .join(BACKEND_VALUES)
            .to_str()
            .expect("UTF-8 path"),
    )
    .unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo touches nothing else.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let errors = validate_dir(dir.path());
    assert_only(
        &errors,
        "releases.api.chart: charts/backend/values.yaml is not a regular file",
    );
    // Exactly 16 MiB is read (the example's schema, padded with blanks).
    let dir = example_copy("three-tier", &[], &[]);
    let mut schema = std::fs::read(dir.path().join(BACKEND_SCHEMA)).unwrap();
    schema.resize(16 << 20, b' ');
    std::fs::write(dir.path().join(BACKEND_SCHEMA), schema).unwrap();
    assert_eq!(validate_dir(dir.path()), Vec::<String>::new());
    // Past 16 MiB, refused after reading 16 MiB and one byte.
    let dir = example_copy("three-tier", &[], &[]);
    std::fs::write(dir.path().join(BACKEND_SCHEMA), vec![b' '; (16 << 20) + 1]).unwrap();
    let errors = validate_dir(dir.path());
    assert_only(
        &errors,
        "charts/backend/values.schema.json is larger than 16 MiB",
    );
}

#[test]
fn a_dependency_condition_names_a_key_at_any_depth_under_the_subchart() {
    // `cache.persistence.enabled`: redis's values.yaml has no `persistence`; the
    // condition makes `persistence.enabled` known, and nothing else under it.
    let mut edits = UMBRELLA.to_vec();
    edits[0] = (
        "charts/web/Chart.yaml",
        "",
        "dependencies:\n  - {name: redis, version: 1.0.0, repository: https://charts.example.com, alias: cache, condition: cache.persistence.enabled}",
    );
    edits.push((
        "environments/base.yaml",
        "",
        "      cache: {persistence: {enabled: false, size: 1Gi}}",
    ));
    let errors = three_tier(&["charts/web/values.schema.json"], &edits);
    assert_only(
        &errors,
        "releases.web.values.cache.persistence.size: `size` is not a value of charts/web/charts/redis",
    );
}

#[test]
fn a_dependency_condition_deeper_than_any_value_is_left_out() {
    // 200000 segments: a mapping that deep would overflow the stack when dropped.
    let mut edits = UMBRELLA.to_vec();
    let condition = format!("cache.{}enabled", "a.".repeat(200_000));
    let chart = format!(
        "dependencies:\n  - {{name: redis, version: 1.0.0, repository: https://charts.example.com, alias: cache, condition: \"{condition}\"}}"
    );
    edits[0] = ("charts/web/Chart.yaml", "", &chart);
    edits.push(("environments/base.yaml", "", "      cache: {a: {}}"));
    let errors = three_tier(&["charts/web/values.schema.json"], &edits);
    assert_only(
        &errors,
        "releases.web.values.cache.a: `a` is not a value of charts/web/charts/redis",
    );
}
