//! docs/promises.md maps every promise of README.md and docs/ to the tests that pin
//! it. This test fails when a promise has no row, when a row names a promise that is
//! no longer made, or when a row names a test that does not exist.
//!
//! What counts as a promise (so that a new one cannot slip in unseen):
//! - every bullet that opens with a bold lead (`- **Buckets**, …`) in the documents
//!   of [`DOCS`], outside the sections of [`NOT_PROMISES`]; its key is
//!   `FILE › SECTION › LEAD` (SECTION: the nearest `##`/`###` heading above it);
//! - every rule an exception may name (`strata::check::RULES`): `rule › NAME`;
//! - every exit code of README's table: `exit code › N`.
//!
//! A row may also pin a sentence: `FILE › SECTION › "a phrase"`, which must appear in
//! that section. A row's tests are `module::…::function` names, each a `#[test]` of
//! `tests/integration`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::repo_root;

/// The documents whose promises need a row.
const DOCS: &[&str] = &[
    "README.md",
    "docs/apply.md",
    "docs/artifacts.md",
    "docs/commands.md",
    "docs/layers.md",
    "docs/rules.md",
];

/// Sections that list what is not built yet: disclaimers, not promises.
const NOT_PROMISES: &[(&str, &str)] = &[("README.md", "Not built yet")];

/// The heading of each line of a markdown file (`##` and `###`), and the line; lines
/// inside fenced code blocks are left out.
fn sections(text: &str) -> Vec<(String, &str)> {
    let mut heading = String::new();
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if let Some(h) = line
            .strip_prefix("### ")
            .or_else(|| line.strip_prefix("## "))
        {
            heading = h.trim().to_owned();
        }
        out.push((heading.clone(), line));
    }
    out
}

/// The bold leads of bullets: (section, lead).
fn bold_leads(text: &str) -> Vec<(String, String)> {
    sections(text)
        .into_iter()
        .filter_map(|(section, line)| {
            let rest = line.trim_start().strip_prefix("- **")?;
            let lead = rest.split("**").next()?;
            let lead = lead.trim().trim_end_matches(['.', ':']).trim().to_owned();
            Some((section, lead))
        })
        .collect()
}

/// The promises the documents make, each a key as docs/promises.md spells it.
fn promises() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for doc in DOCS {
        let text = std::fs::read_to_string(repo_root().join(doc)).unwrap();
        for (section, lead) in bold_leads(&text) {
            if NOT_PROMISES.contains(&(*doc, section.as_str())) {
                continue;
            }
            keys.insert(format!("{doc} › {section} › {lead}"));
        }
    }
    for (rule, _) in strata::check::RULES {
        keys.insert(format!("rule › {rule}"));
    }
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    for (section, line) in sections(&readme) {
        if section == "Exit codes"
            && let Some(code) = line.strip_prefix("| ").and_then(|l| l.split(' ').next())
            && code.parse::<u8>().is_ok()
        {
            keys.insert(format!("exit code › {code}"));
        }
    }
    keys
}

/// The rows of docs/promises.md: key → test names.
fn rows() -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(repo_root().join("docs/promises.md")).unwrap();
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split(" | ").collect();
        let Some(key) = cells.first().and_then(|c| c.strip_prefix("| ")) else {
            continue;
        };
        if !key.contains(" › ") {
            continue;
        }
        assert_eq!(
            cells.len(),
            2,
            "docs/promises.md: a row has two cells: {line}"
        );
        let tests: Vec<String> = cells[1]
            .trim_end_matches('|')
            .split(',')
            .map(|t| t.trim().trim_matches('`').to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        assert!(!tests.is_empty(), "docs/promises.md: {key} names no test");
        let before = rows.insert(key.trim().to_owned(), tests);
        assert!(before.is_none(), "docs/promises.md: {key} has two rows");
    }
    rows
}

/// Whether `module::…::function` is a `#[test]` function of tests/integration.
fn test_exists(name: &str) -> bool {
    let Some((module, function)) = name.rsplit_once("::") else {
        return false;
    };
    let base = repo_root()
        .join("tests/integration")
        .join(module.replace("::", "/"));
    let file = [base.with_extension("rs"), base.join("mod.rs")]
        .into_iter()
        .find(|p| p.exists());
    let Some(file) = file else {
        return false;
    };
    is_test_in(&file, function)
}

fn is_test_in(file: &Path, function: &str) -> bool {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    lines.iter().enumerate().any(|(i, line)| {
        let trimmed = line.trim_start();
        let named = [format!("fn {function}("), format!("async fn {function}(")]
            .iter()
            .any(|sig| trimmed.starts_with(sig.as_str()));
        named
            && lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with("#["))
                .any(|l| {
                    let l = l.trim();
                    l == "#[test]" || l.starts_with("#[tokio::test")
                })
    })
}

/// Whether a `FILE › SECTION › "phrase"` key names a sentence that is there.
fn phrase_is_there(key: &str) -> bool {
    let parts: Vec<&str> = key.splitn(3, " › ").collect();
    let [doc, section, quoted] = parts[..] else {
        return false;
    };
    let Some(phrase) = quoted.strip_prefix('"').and_then(|q| q.strip_suffix('"')) else {
        return false;
    };
    let Ok(text) = std::fs::read_to_string(repo_root().join(doc)) else {
        return false;
    };
    // A sentence may wrap: compare with the section's lines joined by spaces.
    let joined: Vec<&str> = sections(&text)
        .into_iter()
        .filter(|(s, _)| s == section)
        .map(|(_, l)| l.trim())
        .collect();
    joined.join(" ").contains(phrase)
}

#[test]
fn every_promise_has_a_row_and_every_row_names_tests_that_exist() {
    let promises = promises();
    let rows = rows();
    let missing: Vec<&String> = promises.iter().filter(|p| !rows.contains_key(*p)).collect();
    let stale: Vec<&String> = rows
        .keys()
        .filter(|k| !promises.contains(*k) && !phrase_is_there(k))
        .collect();
    let unknown: Vec<String> = rows
        .iter()
        .flat_map(|(key, tests)| {
            tests
                .iter()
                .filter(|t| !test_exists(t))
                .map(move |t| format!("{key}: {t}"))
        })
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty() && unknown.is_empty(),
        "docs/promises.md is out of date.\npromises without a row:\n  {}\nrows whose promise is not made (or whose phrase is not in that section):\n  {}\ntests that do not exist:\n  {}",
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        stale
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        unknown.join("\n  ")
    );
    assert!(
        promises.len() > 40,
        "the promise finder found too few: {promises:#?}"
    );
}

/// The finder itself: it must see a bold lead, skip a fenced block and a
/// not-promise section, and the test lookup must tell a test from a helper.
#[test]
fn the_promise_finder_sees_leads_and_tells_tests_from_helpers() {
    let text = "## A\n- **One**, two.\n```\n- **Fenced** not a lead\n```\n### B\n  - **Two:** x\n- plain\n";
    assert_eq!(
        bold_leads(text),
        [
            ("A".to_owned(), "One".to_owned()),
            ("B".to_owned(), "Two".to_owned())
        ]
    );
    assert!(test_exists(
        "promises::every_promise_has_a_row_and_every_row_names_tests_that_exist"
    ));
    assert!(!test_exists("promises::bold_leads"), "a helper is no test");
    assert!(!test_exists("promises::no_such_test"));
    assert!(!test_exists("no_such_module::x"));
    assert!(phrase_is_there(
        "README.md › Exit codes › \"Only `render --check` and `plan` exit 1.\""
    ));
    assert!(!phrase_is_there(
        "README.md › Exit codes › \"not in the README\""
    ));
}
