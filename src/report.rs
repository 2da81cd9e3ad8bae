//! How results and errors reach the terminal: text (optionally coloured), JSON, or
//! GitHub Actions annotations. Commands build data; this module prints it.

use std::io::{IsTerminal, Write};

use serde::Serialize;
use serde_json::json;

use crate::cli::{ColorChoice, Format};
use crate::error::Error;

pub struct Reporter {
    pub format: Format,
    color: bool,
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
        Reporter { format, color }
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
            Format::Text => {}
            Format::Json => self.json(&json!({"ok": false, "errors": error_list(error)})),
            Format::Github => {
                let mut out = std::io::stdout().lock();
                for e in error_list(error) {
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
                column: Some(l.loc.col),
                key_path: Some(l.key_path.clone()).filter(|k| !k.is_empty()),
                message: l.message.clone(),
                hint: l.hint.clone(),
            },
            Error::Template(t) => ErrorRecord {
                file: Some(t.template.clone()),
                line: t.line,
                column: t.col,
                key_path: None,
                message: match &t.target {
                    Some(target) => format!("{} (rendering target {target})", t.message),
                    None => t.message.clone(),
                },
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
