//! Every error strata reports, and the one place that turns them into text.
//!
//! Errors about the user's input carry a [`Loc`] (file:line:col) and the key path,
//! and say how to fix it: `environments/prod.yaml:14:5: bucket.versioning: expected a
//! boolean, found "maybe"`. They never contain a secret value: messages are built from
//! key names and value kinds, and literal values only where the key is not secret-like.

use std::fmt;
use std::path::PathBuf;

use crate::config::Loc;

/// An error in the user's input, pointing at the line that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub loc: Loc,
    /// Dotted key path (`bucket.lifecycle.glacierAfterDays`); empty for a whole file.
    pub key_path: String,
    pub message: String,
    pub hint: Option<String>,
    /// The targets whose rendering broke the rule, when the place does not tell them:
    /// a template line is shared by every target that renders it. Empty otherwise.
    pub targets: Vec<String>,
}

/// Longest key (a segment of a key path, or a name between backticks) an error shows
/// whole; a longer one (a pasted blob, a generated key) is shown as its start, its
/// length and its end, so that one bad key cannot bury every other error.
const LONGEST_NAME: usize = 120;

/// `text` with each name (every other segment between backticks, or every segment
/// between dots) escaped when it holds control characters and cut down to its start
/// and end when it is over-long.
fn elide(text: &str, sep: char, every_other: bool) -> String {
    let mut out = String::with_capacity(text.len().min(1024));
    for (i, segment) in text.split(sep).enumerate() {
        if i > 0 {
            out.push(sep);
        }
        let named = !every_other || i % 2 == 1;
        // A name that holds a line break or another control character is shown
        // escaped, so that one error stays one line (`a\nb`, not two lines).
        let escaped: String;
        let segment = if named && segment.chars().any(char::is_control) {
            escaped = segment
                .chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_default().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            escaped.as_str()
        } else {
            segment
        };
        let count = segment.chars().count();
        if named && count > LONGEST_NAME {
            let head: String = segment.chars().take(40).collect();
            let tail: String = segment.chars().skip(count - 10).collect();
            out.push_str(&format!("{head}…({count} characters)…{tail}"));
        } else {
            out.push_str(segment);
        }
    }
    out
}

impl Located {
    pub fn new(loc: Loc, key_path: impl Into<String>, message: impl Into<String>) -> Self {
        let key_path = key_path.into();
        let message = message.into();
        Located {
            loc,
            key_path: elide(&key_path, '.', false),
            message: elide(&message, '`', true),
            hint: None,
            targets: Vec::new(),
        }
    }

    /// Names the target the error was found in (see [`Located::targets`]).
    pub fn in_target(mut self, target: impl Into<String>) -> Self {
        self.targets = vec![target.into()];
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.loc)?;
        if !self.key_path.is_empty() {
            write!(f, "{}: ", self.key_path)?;
        }
        write!(f, "{}", with_targets(&self.message, "in", &self.targets))?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// `message`, then the targets it was found in when there are any:
/// `… (in targets dev-aws, prod-aws)` (`lead` "in"), `… (rendering target dev-aws)`.
pub fn with_targets(message: &str, lead: &str, targets: &[String]) -> String {
    if targets.is_empty() {
        message.to_owned()
    } else {
        format!("{message} ({lead} {})", targets_phrase(targets))
    }
}

/// Most target names an error lists; a longer list ends in how many more there are,
/// so that a template mistake in a thousand targets stays one readable line.
const TARGETS_LISTED: usize = 6;

/// `target dev-aws`, `targets dev-aws, prod-aws`, or for a long list
/// `targets a, b, c, d, e, f and 994 more`.
fn targets_phrase(targets: &[String]) -> String {
    let plural = if targets.len() == 1 { "" } else { "s" };
    let shown = targets.len().min(TARGETS_LISTED);
    let mut out = format!("target{plural} {}", targets[..shown].join(", "));
    if targets.len() > shown {
        out.push_str(&format!(" and {} more", targets.len() - shown));
    }
    out
}

/// A template that failed to compile or render.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    /// Template path relative to the project, e.g. `templates/values.yaml.j2`.
    pub template: String,
    pub line: Option<u32>,
    pub col: Option<u32>,
    /// The targets being rendered, when the error is specific to them (empty when not).
    pub targets: Vec<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.template)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.col {
                write!(f, ":{col}")?;
            }
        }
        write!(
            f,
            ": {}",
            with_targets(&self.message, "rendering", &self.targets)
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Input(Box<Located>),
    #[error("{0}")]
    Template(Box<TemplateError>),
    /// Several independent problems, reported together so one run shows them all.
    #[error("{}", join(.0))]
    Many(Vec<Error>),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A request the command line made that cannot be met (unknown target, bad folder).
    #[error("{0}")]
    Usage(String),
    /// A cloud API call that failed; the message names the resource and the action.
    #[error("{0}")]
    Cloud(String),
    /// An entry of the project that is not what strata expects there: a file in
    /// `environments/` that is not a layer, a FIFO, a link that leaves the project.
    #[error("{path}: {message}\n  hint: {hint}")]
    Entry {
        /// Relative to the project root, e.g. `environments/staging.yml`.
        path: String,
        message: String,
        hint: String,
    },
    /// An output folder strata will not write into (or compare with), and why.
    #[error("refusing to {doing} {}: {why}\n  hint: {hint}", .path.display())]
    OutDir {
        /// `render into`, `compare with`.
        doing: &'static str,
        path: PathBuf,
        why: String,
        hint: String,
    },
}

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Collects errors: none is Ok, one is itself, more become [`Error::Many`].
    pub fn from_list(mut errors: Vec<Error>) -> Result<(), Error> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Many(errors)),
        }
    }

    /// A copy, for an error kept in two lists (errors with a source keep its text).
    pub fn duplicate(&self) -> Error {
        match self {
            Error::Input(l) => Error::Input(l.clone()),
            Error::Template(t) => Error::Template(t.clone()),
            Error::Many(list) => Error::Many(list.iter().map(Error::duplicate).collect()),
            Error::Usage(u) => Error::Usage(u.clone()),
            Error::Cloud(c) => Error::Cloud(c.clone()),
            other => Error::Usage(other.to_string()),
        }
    }

    /// The errors one by one (a `Many` flattened), for machine-readable output.
    pub fn flatten(&self) -> Vec<&Error> {
        match self {
            Error::Many(list) => list.iter().flat_map(Error::flatten).collect(),
            other => vec![other],
        }
    }
}

impl From<Located> for Error {
    fn from(value: Located) -> Self {
        Error::Input(Box::new(value))
    }
}

impl From<TemplateError> for Error {
    fn from(value: TemplateError) -> Self {
        Error::Template(Box::new(value))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("t{i}")).collect()
    }

    #[test]
    fn a_list_of_targets_is_said_whole_up_to_six_then_counted() {
        assert_eq!(targets_phrase(&names(1)), "target t1");
        assert_eq!(targets_phrase(&names(2)), "targets t1, t2");
        assert_eq!(targets_phrase(&names(6)), "targets t1, t2, t3, t4, t5, t6");
        assert_eq!(
            targets_phrase(&names(1000)),
            "targets t1, t2, t3, t4, t5, t6 and 994 more"
        );
    }

    #[test]
    fn the_targets_of_an_error_come_after_its_message_and_before_its_hint() {
        let e = Located::new(
            Loc::file(std::sync::Arc::from("templates/a.j2")),
            "k",
            "broken",
        )
        .hint("mend it")
        .in_target("dev-aws");
        assert_eq!(
            e.to_string(),
            "templates/a.j2:1:1: k: broken (in target dev-aws)\n  hint: mend it"
        );
        let t = TemplateError {
            template: "templates/a.j2".into(),
            line: Some(3),
            col: None,
            targets: names(7),
            message: "undefined value".into(),
            hint: None,
        };
        assert_eq!(
            t.to_string(),
            "templates/a.j2:3: undefined value (rendering targets t1, t2, t3, t4, t5, t6 and 1 more)"
        );
    }
}
