//! Which template line produced a line of rendered output.
//!
//! minijinja says where a template *fails*; a template that renders fine can still
//! produce output that is not valid YAML or JSON, and then the output line is all the
//! parser of the output knows. To name the template line behind it, the templates are
//! rendered a second time, instrumented, and only when such an error occurs (a good
//! render never pays for this):
//!
//! - Literal text: minijinja's own lexer splits each template into template data and
//!   tags. After the last non-blank character of every line of template data, a marker
//!   `\u{E000}T:L\u{E001}` is inserted (T the template's index, L its line). A marker
//!   sits after content and before trailing blanks, so every whitespace rule
//!   (`trim_blocks`, `lstrip_blocks`, `{{-`, `-%}`) trims exactly the characters it
//!   trimmed before, and no marker can join or split a tag delimiter.
//! - Expressions: `{{ expr }}` becomes `{{ (expr) | __strata_at(T, L) }}`. The filter
//!   prints the value as the plain `{{ }}` prints it (auto-escaping is off) wrapped in
//!   `\u{E002}T:L\u{E003}` … `\u{E004}`, so an expression that prints several lines
//!   (`| to_yaml`) owns all of them, and a macro's own text inside it keeps its markers.
//!
//! Markers travel with the text through includes, macros and filters. The instrumented
//! output with its markers removed must equal the real output byte for byte; when it
//! does not (a filter that measures or rewrites captured text, say) or the templates
//! already hold such characters, nothing is claimed and the error names the output line
//! only. So a template line named is the one the render itself says produced the line,
//! never a guess by matching text.
//!
//! The line named for output line N: of the markers that produced text on that line
//! (the expression still open where the line starts, each expression opened on it, each
//! literal marker on it), the most deeply nested one, the first of equals: for a macro
//! called from `{{ m() }}` that is the macro's line, for `key: {{ value }}` the line
//! of both.

use minijinja::machinery::{Token, tokenize};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Error, ErrorKind, Value};

const LIT_OPEN: char = '\u{E000}';
const LIT_CLOSE: char = '\u{E001}';
const EXPR_OPEN: char = '\u{E002}';
const EXPR_MID: char = '\u{E003}';
const EXPR_CLOSE: char = '\u{E004}';
/// The filter the instrumented expressions call.
pub const FILTER: &str = "__strata_at";

fn is_marker_char(c: char) -> bool {
    ('\u{E000}'..='\u{E004}').contains(&c)
}

/// The source of template number `index` with markers inserted, or `None` when it
/// cannot be instrumented (it does not lex, or already holds marker characters).
pub fn instrument(source: &str, index: usize, syntax: SyntaxConfig) -> Option<String> {
    if source.chars().any(is_marker_char) {
        return None;
    }
    // (offset, text to insert there), in source order.
    let mut edits: Vec<(usize, String)> = Vec::new();
    let mut open_expr: Option<u32> = None;
    for token in tokenize(source, false, syntax) {
        let (token, span) = token.ok()?;
        let start = span.start_offset as usize;
        let end = span.end_offset as usize;
        match token {
            Token::TemplateData(_) => {
                let data = source.get(start..end)?;
                let mut offset = start;
                for (line, piece) in (span.start_line as u32..).zip(data.split_inclusive('\n')) {
                    let content = piece.trim_end();
                    if !content.trim_start().is_empty() {
                        edits.push((
                            offset + content.len(),
                            format!("{LIT_OPEN}{index}:{line}{LIT_CLOSE}"),
                        ));
                    }
                    offset += piece.len();
                }
            }
            Token::VariableStart => {
                edits.push((end, "(".to_owned()));
                open_expr = Some(span.start_line as u32);
            }
            Token::VariableEnd => {
                let line = open_expr.take()?;
                edits.push((start, format!(") | {FILTER}({index}, {line})")));
            }
            _ => {}
        }
    }
    if open_expr.is_some() {
        return None;
    }
    let mut out = String::with_capacity(source.len() + edits.len() * 12);
    let mut at = 0;
    for (offset, text) in edits {
        out.push_str(source.get(at..offset)?);
        out.push_str(&text);
        at = offset;
    }
    out.push_str(&source[at..]);
    Some(out)
}

/// The `__strata_at(T, L)` filter: the value as `{{ }}` prints it, between markers.
pub fn at_filter(value: &Value, index: u32, line: u32) -> Result<String, Error> {
    if value.is_undefined() {
        return Err(Error::from(ErrorKind::UndefinedError));
    }
    Ok(format!(
        "{EXPR_OPEN}{index}:{line}{EXPR_MID}{value}{EXPR_CLOSE}"
    ))
}

/// The text without markers.
pub fn strip(marked: &str) -> String {
    let mut out = String::with_capacity(marked.len());
    let mut chars = marked.chars();
    while let Some(c) = chars.next() {
        match c {
            LIT_OPEN => {
                for c in chars.by_ref() {
                    if c == LIT_CLOSE {
                        break;
                    }
                }
            }
            EXPR_OPEN => {
                for c in chars.by_ref() {
                    if c == EXPR_MID {
                        break;
                    }
                }
            }
            EXPR_CLOSE => {}
            c => out.push(c),
        }
    }
    out
}

/// Reads `T:L` up to `end`.
fn place(chars: &mut std::str::Chars, end: char) -> Option<(usize, u32)> {
    let mut text = String::new();
    for c in chars.by_ref() {
        if c == end {
            let (t, l) = text.split_once(':')?;
            return Some((t.parse().ok()?, l.parse().ok()?));
        }
        text.push(c);
    }
    None
}

/// The template (index) and line that produced output line `line` (1-based) of the
/// marked output; see the module documentation for which one is named.
pub fn producer(marked: &str, line: usize) -> Option<(usize, u32)> {
    let mut current = 1usize;
    let mut stack: Vec<(usize, u32)> = Vec::new();
    // (depth, place) of the best candidate on the wanted line.
    let mut best: Option<(usize, (usize, u32))> = None;
    let consider = |depth: usize, at: (usize, u32), best: &mut Option<(usize, (usize, u32))>| {
        if best.is_none_or(|(d, _)| depth > d) {
            *best = Some((depth, at));
        }
    };
    let mut chars = marked.chars();
    let mut line_started = true;
    while let Some(c) = chars.next() {
        if current > line {
            break;
        }
        if line_started && current == line {
            if let Some(top) = stack.last() {
                consider(stack.len(), *top, &mut best);
            }
            line_started = false;
        }
        match c {
            LIT_OPEN => {
                let at = place(&mut chars, LIT_CLOSE)?;
                if current == line {
                    consider(stack.len() + 1, at, &mut best);
                }
            }
            EXPR_OPEN => {
                let at = place(&mut chars, EXPR_MID)?;
                stack.push(at);
                if current == line {
                    consider(stack.len(), at, &mut best);
                }
            }
            EXPR_CLOSE => {
                stack.pop();
            }
            '\n' => {
                current += 1;
                line_started = true;
            }
            _ => {}
        }
    }
    best.map(|(_, at)| at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syntax() -> SyntaxConfig {
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .unwrap()
    }

    fn env_of(templates: &[(&str, &str)], marked: bool) -> minijinja::Environment<'static> {
        let mut env = minijinja::Environment::new();
        env.set_syntax(syntax());
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_filter(FILTER, at_filter);
        for (i, (name, source)) in templates.iter().enumerate() {
            let source = if marked {
                instrument(source, i, syntax()).expect("instrumented")
            } else {
                (*source).to_owned()
            };
            env.add_template_owned(name.to_string(), source).unwrap();
        }
        env
    }

    /// Renders `main` plainly and instrumented; checks that the two agree once the
    /// markers are removed, and returns (plain output, marked output).
    fn both(templates: &[(&str, &str)]) -> (String, String) {
        let ctx = minijinja::context! {
            items => vec!["a", "b"],
            nested => minijinja::context! { x => 1, y => vec![1, 2] },
            flag => true,
            name => "n",
        };
        let plain = env_of(templates, false)
            .get_template(templates[0].0)
            .unwrap()
            .render(&ctx)
            .unwrap();
        let marked = env_of(templates, true)
            .get_template(templates[0].0)
            .unwrap()
            .render(&ctx)
            .unwrap();
        assert_eq!(strip(&marked), plain, "marked: {marked:?}");
        (plain, marked)
    }

    /// Every whitespace rule trims the same text with markers in place.
    #[test]
    fn instrumented_templates_render_the_same_text() {
        for source in [
            "a: 1\nb: {{ name }}\n",
            "{% if flag %}\n  x: 1\n{% endif %}\ny: 2\n",
            "list:\n{% for i in items %}\n  - {{ i }}   \n{% endfor %}\n",
            "a: {{- name -}}   \n  b\n{{- name }}\n",
            "  {%- if flag -%}  \n  q  \n  {%- endif -%}\n end\n",
            "{% raw %}{{ not }} an expr\n{% endraw %}\nx\n",
            "{# comment #}\nk: {{ nested | tojson }}\n",
            "v: {{ nested.y if flag else 3 }}\n{{ nested | items | list | length }}\n",
            "{% set c %}\ninner {{ name }}\n{% endset %}\nout: {{ c | indent(2) }}\n",
            "trailing no newline {{ name }}",
            "a\r\nb: {{ name }}\r\n",
        ] {
            both(&[("t.j2", source)]);
        }
    }

    #[test]
    fn each_output_line_names_the_template_line_behind_it() {
        let main = "a: 1\n{% if flag %}\nb: [\n{% endif %}\nc: {{ name }}\nd: {{ items | join('\\n') }}\n{{ m() }}\n";
        let (plain, marked) = both(&[
            ("main.j2", &format!("{{% from '_m.j2' import m %}}\n{main}")),
            ("_m.j2", "{% macro m() %}\nfrom: macro\n{% endmacro %}\n"),
        ]);
        let lines: Vec<&str> = plain.lines().collect();
        assert_eq!(
            lines,
            ["a: 1", "b: [", "c: n", "d: a", "b", "from: macro", ""]
        );
        assert_eq!(producer(&marked, 1), Some((0, 2)));
        assert_eq!(producer(&marked, 2), Some((0, 4)));
        assert_eq!(producer(&marked, 3), Some((0, 6)));
        assert_eq!(producer(&marked, 4), Some((0, 7)));
        // The second line the expression printed is still the expression's.
        assert_eq!(producer(&marked, 5), Some((0, 7)));
        // A macro's text: the macro's line, in its own template.
        assert_eq!(producer(&marked, 6), Some((1, 2)));
        // The macro's output ends with a newline: the (empty) line after it starts
        // inside the call, which is what the markers say.
        assert_eq!(producer(&marked, 7), Some((0, 8)));
        assert_eq!(producer(&marked, 8), None);
    }

    #[test]
    fn of_equally_nested_producers_the_first_is_named() {
        // `{{-` joins line 2's expression to line 1's text: one output line, made by
        // two template lines at the same depth.
        let (plain, marked) = both(&[("t.j2", "key: {{ name }}\n{{- name }}\nnext\n")]);
        assert_eq!(plain, "key: nn\nnext\n");
        assert_eq!(producer(&marked, 1), Some((0, 1)));
        assert_eq!(producer(&marked, 2), Some((0, 3)));
    }

    #[test]
    fn a_template_holding_marker_characters_is_not_instrumented() {
        assert_eq!(instrument("a: \u{E000}\n", 0, syntax()), None);
        assert_eq!(instrument("a: {{ broken\n", 0, syntax()), None);
    }
}
