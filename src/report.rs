//! How results and errors reach the terminal: text (optionally coloured), JSON,
//! GitHub Actions annotations, or (for `render --check`) a markdown review summary.
//! Commands build data; this module prints it.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::json;

use crate::cli::{ColorChoice, Format};
use crate::error::Error;
use crate::output::{DriftStatus, FileDrift};

pub struct Reporter {
    pub format: Format,
    color: bool,
    /// The project root as seen from the current folder (`infra`), when it is not the
    /// current folder: GitHub resolves an annotation's `file=` from the workspace
    /// root, while strata's errors name files from the project root.
    annotation_base: OnceLock<String>,
}

impl Reporter {
    pub fn new(format: Format, color: ColorChoice) -> Reporter {
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::stderr().is_terminal()
            }
        };
        Reporter {
            format,
            color,
            annotation_base: OnceLock::new(),
        }
    }

    /// Makes `file=` of later annotations relative to the current folder: `base` is
    /// the project root from there (empty or `.` when it is the current folder).
    pub fn annotate_from(&self, base: &str) {
        let base = base.trim_end_matches('/');
        if !base.is_empty() && base != "." {
            let _ = self.annotation_base.set(base.to_owned());
        }
    }

    /// A project-relative file as an annotation names it (see [`Self::annotate_from`]).
    fn annotated_file(&self, file: &str) -> String {
        match self.annotation_base.get() {
            Some(base) if !std::path::Path::new(file).is_absolute() => format!("{base}/{file}"),
            _ => file.to_owned(),
        }
    }

    /// Prints markdown to stdout and, when `$GITHUB_STEP_SUMMARY` names a file (as in a
    /// GitHub Actions step), appends the same text to it. A summary file that cannot be
    /// written is a warning on stderr, not a change of the exit code: the verdict and
    /// stdout are still right.
    pub fn markdown(&self, md: &str) {
        let text = format!("{}\n", md.trim_end());
        {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
        let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) else {
            return;
        };
        let appended = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut file| file.write_all(text.as_bytes()));
        if let Err(e) = appended {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "{} could not append the summary to $GITHUB_STEP_SUMMARY ({}): {e}",
                self.paint("1;33", "warning:"),
                std::path::Path::new(&path).display()
            );
        }
    }

    pub fn color(&self) -> bool {
        self.color
    }

    /// Wraps `text` in an ANSI style when colour is on (`1;31` bold red, `32` green…).
    pub fn paint(&self, style: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{style}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    /// Prints a line of the main result to stdout.
    pub fn line(&self, text: impl AsRef<str>) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", text.as_ref());
    }

    /// Prints a serializable value as pretty JSON to stdout.
    pub fn json<T: Serialize>(&self, value: &T) {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut out, value);
        let _ = writeln!(out);
    }

    /// Reports an error in the chosen format. Text and GitHub go to stderr; JSON to
    /// stdout (a machine reads it), with the text on stderr too.
    pub fn error(&self, error: &Error) {
        let mut err = std::io::stderr().lock();
        let all = error.flatten();
        for e in &all {
            let _ = writeln!(err, "{} {e}", self.paint("1;31", "error:"));
        }
        if all.len() > 1 {
            let files: std::collections::BTreeSet<String> = error_list(error)
                .into_iter()
                .filter_map(|r| r.file)
                .collect();
            let _ = writeln!(
                err,
                "{} errors in {} file{}",
                all.len(),
                files.len(),
                if files.len() == 1 { "" } else { "s" }
            );
        }
        match self.format {
            // Markdown: `render --check` prints its own summary of an error
            // ([`errors_markdown`]); other commands print text.
            Format::Text | Format::Markdown => {}
            Format::Json => self.json(&json!({"ok": false, "errors": error_list(error)})),
            Format::Github => {
                let mut out = std::io::stdout().lock();
                for mut e in error_list(error) {
                    e.file = e.file.map(|f| self.annotated_file(&f));
                    let _ = writeln!(out, "{}", github_annotation("error", &e));
                }
            }
        }
    }
}

/// One error as data: file, line, column, key path, message, hint.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRecord {
    pub file: Option<String>,
    pub line: Option<u32>,
    pub column: Option<u32>,
    pub key_path: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

pub fn error_list(error: &Error) -> Vec<ErrorRecord> {
    error
        .flatten()
        .into_iter()
        .map(|e| match e {
            Error::Input(l) => ErrorRecord {
                file: Some(l.loc.file.to_string()),
                line: Some(l.loc.line),
                column: (l.loc.col > 0).then_some(l.loc.col),
                key_path: Some(l.key_path.clone()).filter(|k| !k.is_empty()),
                message: crate::error::with_targets(&l.message, "in", &l.targets),
                hint: l.hint.clone(),
            },
            Error::Template(t) => ErrorRecord {
                file: Some(t.template.clone()),
                line: t.line,
                column: t.col,
                key_path: None,
                message: crate::error::with_targets(&t.message, "rendering", &t.targets),
                hint: t.hint.clone(),
            },
            Error::Entry {
                path,
                message,
                hint,
            } => ErrorRecord {
                file: Some(path.clone()),
                line: None,
                column: None,
                key_path: None,
                message: message.clone(),
                hint: Some(hint.clone()),
            },
            Error::OutDir {
                doing,
                path,
                why,
                hint,
            } => ErrorRecord {
                file: None,
                line: None,
                column: None,
                key_path: None,
                message: format!("refusing to {doing} {}: {why}", path.display()),
                hint: Some(hint.clone()),
            },
            other => ErrorRecord {
                file: None,
                line: None,
                column: None,
                key_path: None,
                message: other.to_string(),
                hint: None,
            },
        })
        .collect()
}

/// `::error file=…,line=…,col=…::message` (GitHub Actions workflow command).
pub fn github_annotation(level: &str, e: &ErrorRecord) -> String {
    let mut props = Vec::new();
    if let Some(file) = &e.file {
        props.push(format!("file={}", escape_property(file)));
    }
    if let Some(line) = e.line {
        props.push(format!("line={line}"));
    }
    if let Some(col) = e.column {
        props.push(format!("col={col}"));
    }
    if let Some(key) = &e.key_path {
        props.push(format!("title={}", escape_property(key)));
    }
    let mut message = e.message.clone();
    if let Some(hint) = &e.hint {
        message.push_str("\nhint: ");
        message.push_str(hint);
    }
    let sep = if props.is_empty() { "" } else { " " };
    format!(
        "::{level}{sep}{}::{}",
        props.join(","),
        escape_data(&message)
    )
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

// ---------------------------------------------------------------------------------
// The pull-request review summary of `render --check` (`--format markdown`).

/// The summary shows at most this many lines of one file's diff…
pub const MAX_FILE_LINES: usize = 200;
/// …and this many diff lines in all; the rest is counted in a note that names the
/// command showing everything.
pub const MAX_TOTAL_LINES: usize = 2000;
/// A longer diff line is cut here (minified JSON can be one huge line).
pub const MAX_LINE_CHARS: usize = 400;
/// The table lists at most this many files.
pub const MAX_TABLE_ROWS: usize = 300;
// With these limits the summary stays below the 1 MiB GitHub accepts for a step's
// summary: 2000 lines of at most ~440 bytes, and 300 table rows.

/// What the review summary of one `render --check` is made from.
pub struct DriftReview<'a> {
    /// The folder as named to the user (`snapshots`, relative to the project root).
    pub label: &'a str,
    pub drift: &'a [FileDrift],
    /// How many files the render has.
    pub files: usize,
    /// `Some(targets)` when the folder holds none of the rendered targets.
    pub holds_none: Option<usize>,
    /// How to call strata for this project: `strata`, or `strata -C infra`.
    pub strata: &'a str,
    /// The targets named on the command line (empty: all).
    pub targets: &'a [String],
}

/// The markdown review summary: the verdict as a heading, a table of the changed
/// files, then each file's diff folded in a `<details>` block, with every line that
/// looks like a credential masked and long diffs cut (see [`MAX_FILE_LINES`]). Up to
/// date: one line.
pub fn drift_markdown(review: &DriftReview) -> String {
    let DriftReview {
        label,
        drift,
        files,
        ..
    } = review;
    let folder = code(label);
    let targets: String = review
        .targets
        .iter()
        .map(|t| format!(" {}", shell_word(t)))
        .collect();
    let check = format!(
        "{} render --check --out {}{targets}",
        review.strata,
        shell_word(label)
    );
    if drift.is_empty() {
        return format!("✅ strata: {folder} is up to date ({files} files)\n");
    }
    let mut md = String::new();
    let n = drift.len();
    let touched: std::collections::BTreeSet<&str> =
        drift.iter().map(|d| d.target.as_str()).collect();
    md.push_str(&format!(
        "### ❌ strata: {folder} is stale: {n} {} in {} {} {} from the render\n\n",
        plural(n, "file", "files"),
        touched.len(),
        plural(touched.len(), "target", "targets"),
        plural(n, "differs", "differ"),
    ));
    if let Some(rendered) = review.holds_none {
        md.push_str(&format!(
            "⚠️ {folder} holds none of the {rendered} rendered targets: is it the right folder?\n\n"
        ));
    }
    md.push_str(&format!(
        "Update it with {} and commit the result.\n\n",
        code(&format!(
            "{} render --out {}{targets}",
            review.strata,
            shell_word(label)
        ))
    ));
    md.push_str("| target | file | status | lines |\n|---|---|---|---|\n");
    for d in drift.iter().take(MAX_TABLE_ROWS) {
        md.push_str(&format!(
            "| {} | {} | {} | +{} −{} |\n",
            md_escape(&d.target),
            md_escape(&d.artifact),
            status_word(d.status),
            d.lines_added,
            d.lines_removed
        ));
    }
    if n > MAX_TABLE_ROWS {
        md.push_str(&format!(
            "\n_…and {} more files; all of them: {}_\n",
            n - MAX_TABLE_ROWS,
            code(&check)
        ));
    }
    let mut budget = MAX_TOTAL_LINES;
    let (mut skipped_files, mut skipped_lines) = (0usize, 0usize);
    for d in drift.iter() {
        let lines = masked_lines(&d.diff);
        if budget == 0 {
            skipped_files += 1;
            skipped_lines += lines.len();
            continue;
        }
        let shown = lines.len().min(MAX_FILE_LINES).min(budget);
        budget -= shown;
        let body: Vec<String> = lines[..shown].iter().map(|l| cut_line(l)).collect();
        let fence = "`".repeat(longest_backtick_run(&body.join("\n")).max(2) + 1);
        md.push_str(&format!(
            "\n<details><summary>{} (+{} −{})</summary>\n\n",
            html_escape(&d.path),
            d.lines_added,
            d.lines_removed
        ));
        if d.semantic {
            md.push_str("_Compared as data: key order and layout are ignored._\n\n");
        }
        md.push_str(&format!("{fence}diff\n"));
        for line in &body {
            md.push_str(line);
            md.push('\n');
        }
        md.push_str(&format!("{fence}\n"));
        if shown < lines.len() {
            let left = lines.len() - shown;
            md.push_str(&format!(
                "\n_{left} more {} of this diff not shown (this summary shows at most {MAX_FILE_LINES} lines per file and {MAX_TOTAL_LINES} in all); all of it: {}_\n",
                plural(left, "line", "lines"),
                code(&check)
            ));
        }
        md.push_str("\n</details>\n");
    }
    if skipped_files > 0 {
        md.push_str(&format!(
            "\n_The diffs of {skipped_files} more {} ({skipped_lines} lines) are not shown: this summary holds at most {MAX_TOTAL_LINES} diff lines. All of them: {}_\n",
            plural(skipped_files, "file", "files"),
            code(&check)
        ));
    }
    md
}

/// The markdown summary of an error that stopped `render --check`: a heading, and the
/// messages as strata prints them on stderr (no value of a secret is in them).
pub fn errors_markdown(error: &Error) -> String {
    let all = error.flatten();
    let text = all
        .iter()
        .map(|e| format!("error: {e}"))
        .collect::<Vec<_>>()
        .join("\n");
    let fence = "`".repeat(longest_backtick_run(&text).max(2) + 1);
    format!(
        "### ❌ strata: the render could not be checked ({} {})\n\n{fence}text\n{text}\n{fence}\n",
        all.len(),
        plural(all.len(), "error", "errors")
    )
}

pub fn status_word(status: DriftStatus) -> &'static str {
    match status {
        DriftStatus::Added => "added",
        DriftStatus::Removed => "removed",
        DriftStatus::Changed => "changed",
    }
}

/// The lines of a unified diff, each one that
/// [`scan_artifact`](crate::check::secrets::scan_artifact) flags replaced by
/// `[masked: looks like …]` (after the line's `+`, `-` or ` ` so the diff still
/// reads as one). The scan looks at one line at a time, so the lines between a
/// private key's BEGIN and END lines, plain base64, are masked as part of it.
pub fn masked_lines(diff: &str) -> Vec<String> {
    let mut in_private_key = false;
    // `--- ` and `+++ ` name the files before the first hunk; inside a hunk they are a
    // removed `-- …` or an added `++ …` line.
    let mut in_hunk = false;
    diff.lines()
        .map(|line| {
            in_hunk |= line.starts_with("@@");
            let (marker, content) = match line.chars().next() {
                Some(c @ ('+' | '-' | ' ')) if in_hunk => (c.to_string(), &line[1..]),
                _ => (String::new(), line),
            };
            let found = crate::check::secrets::scan_artifact(content)
                .first()
                .map(|(_, what)| *what);
            if in_private_key {
                if content.contains("-----END") {
                    in_private_key = false;
                }
                return format!("{marker}[masked: part of a private key]");
            }
            match found {
                Some(what) => {
                    if what == "a private key" && !content.contains("-----END") {
                        in_private_key = true;
                    }
                    format!("{marker}[masked: looks like {what}]")
                }
                None => line.to_owned(),
            }
        })
        .collect()
}

/// A diff's lines with every secret-looking one masked (see [`masked_lines`]).
pub fn masked_diff(diff: &str) -> String {
    let mut text = masked_lines(diff).join("\n");
    if diff.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// A line longer than [`MAX_LINE_CHARS`] characters, cut there with a note.
fn cut_line(line: &str) -> String {
    let total = line.chars().count();
    if total <= MAX_LINE_CHARS {
        return line.to_owned();
    }
    let kept: String = line.chars().take(MAX_LINE_CHARS).collect();
    format!(
        "{kept} … [line cut: {} more characters]",
        total - MAX_LINE_CHARS
    )
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

/// `text` as a markdown code span, whatever backticks it holds.
fn code(text: &str) -> String {
    let ticks = "`".repeat(longest_backtick_run(text) + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{ticks}{pad}{text}{pad}{ticks}")
}

/// Plain text for a markdown table cell: markup characters escaped, so a file name
/// cannot end the cell, link, or open HTML.
fn md_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Text inside an HTML element (`<summary>`), where markdown is not read.
fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `word` as one shell word, for a command shown to be copied.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./@%+=:,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift(path: &str, diff: &str, added: usize, removed: usize) -> FileDrift {
        let (target, artifact) = path.split_once('/').unwrap();
        FileDrift {
            path: path.to_owned(),
            target: target.to_owned(),
            artifact: artifact.to_owned(),
            status: DriftStatus::Changed,
            lines_added: added,
            lines_removed: removed,
            semantic: false,
            diff: diff.to_owned(),
        }
    }

    fn review<'a>(drift: &'a [FileDrift]) -> DriftReview<'a> {
        DriftReview {
            label: "snapshots",
            drift,
            files: 10,
            holds_none: None,
            strata: "strata",
            targets: &[],
        }
    }

    #[test]
    fn masking_keeps_the_diff_marker_and_covers_a_whole_private_key() {
        let diff = "--- a\n+++ b\n@@ -1,5 +1,1 @@\n-id: AKIAABCDEFGHIJKLMNOP\n------BEGIN RSA PRIVATE KEY-----\n-MIIEpAIBAAKCAQEA1c\n------END RSA PRIVATE KEY-----\n+kept: 1\n";
        assert_eq!(
            masked_lines(diff),
            [
                "--- a",
                "+++ b",
                "@@ -1,5 +1,1 @@",
                "-[masked: looks like an AWS access key id]",
                "-[masked: looks like a private key]",
                "-[masked: part of a private key]",
                "-[masked: part of a private key]",
                "+kept: 1",
            ]
        );
        assert_eq!(masked_diff(diff).lines().count(), 8);
        assert!(masked_diff(diff).ends_with("+kept: 1\n"));
    }

    #[test]
    fn a_file_name_cannot_break_the_table_or_the_html() {
        assert_eq!(md_escape("a|b_<x>`"), r"a\|b\_&lt;x&gt;\`");
        assert_eq!(html_escape("<b>&"), "&lt;b&gt;&amp;");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(shell_word("snap shots"), "'snap shots'");
        assert_eq!(shell_word("out/x"), "out/x");
    }

    #[test]
    fn a_diff_holding_a_fence_gets_a_longer_one() {
        let d = [drift(
            "t/a.md",
            "--- a\n+++ b\n@@ -1 +1 @@\n ```\n-x\n+y\n",
            1,
            1,
        )];
        let md = drift_markdown(&review(&d));
        assert!(md.contains("\n````diff\n"), "{md}");
        assert!(md.contains("\n````\n"), "{md}");
    }

    #[test]
    fn long_diffs_are_cut_per_file_and_in_all_with_a_note() {
        let long = |n: usize| {
            let mut diff = String::from("--- a\n+++ b\n@@ -0,0 +1 @@\n");
            for i in 0..n {
                diff.push_str(&format!("+line {i}\n"));
            }
            diff
        };
        // 12 files of 303 diff lines: 200 shown of each of the first ten, then none.
        let files: Vec<FileDrift> = (0..12)
            .map(|i| drift(&format!("t{i:02}/f"), &long(300), 300, 0))
            .collect();
        let md = drift_markdown(&review(&files));
        assert_eq!(md.matches("<details>").count(), 10);
        assert_eq!(
            md.matches("_103 more lines of this diff not shown").count(),
            10
        );
        assert!(md.contains(
            "_The diffs of 2 more files (606 lines) are not shown: this summary holds at most 2000 diff lines. All of them: `strata render --check --out snapshots`_"
        ));
        let shown = md.lines().filter(|l| l.starts_with("+line ")).count();
        assert_eq!(shown, 10 * 197);
    }

    #[test]
    fn a_long_line_is_cut() {
        let line = "x".repeat(MAX_LINE_CHARS + 5);
        assert_eq!(
            cut_line(&line),
            format!(
                "{} … [line cut: 5 more characters]",
                "x".repeat(MAX_LINE_CHARS)
            )
        );
    }
}
