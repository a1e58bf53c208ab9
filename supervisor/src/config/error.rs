//! [`ConfigError`] and [`Diagnostic`]: every problem names the file, `line:column`, the field
//! and what is expected.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a config file, at a position.
///
/// Displays as `FILE:LINE:COLUMN: FIELD: MESSAGE` (the field is left out when the problem is not
/// tied to one, e.g. a TOML syntax error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file, as it was given to [`load`](super::load) / [`parse`](super::parse).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// Dotted path of the offending key, e.g. `workers.hash.depends_on`; empty when unknown.
    pub field: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl Diagnostic {
    /// Builds a diagnostic for the byte range `span` of `text`.
    pub(super) fn at(
        text: &str,
        origin: &Path,
        span: Range<usize>,
        field: String,
        message: String,
    ) -> Self {
        let (line, column) = line_col(text, span.start);
        Self {
            file: origin.to_path_buf(),
            line,
            column,
            field,
            message,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML; fix the syntax at the given position.
    #[error("{0}")]
    Syntax(Diagnostic),
    /// The file is valid TOML but a key or value does not fit the schema: an unknown key, a
    /// missing required key, a value of the wrong type or a malformed duration/size/signal.
    /// Parsing stops at the first such problem.
    #[error("{0}")]
    Schema(Diagnostic),
    /// The file parsed, but some values are impossible together (unknown or cyclic
    /// dependencies, out-of-range numbers...). Holds every problem found, in file order; the
    /// Display shows one per line.
    #[error("{}", DisplayAll(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The positioned problems this error carries (none for [`ConfigError::Read`]).
    #[must_use]
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Self::Read { .. } => &[],
            Self::Syntax(d) | Self::Schema(d) => std::slice::from_ref(d),
            Self::Invalid(all) => all,
        }
    }
}

/// Displays diagnostics one per line.
struct DisplayAll<'a>(&'a [Diagnostic]);

impl fmt::Display for DisplayAll<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`. An offset past the end
/// (an error at end of file) points just after the last character.
#[must_use]
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Turns an error from the toml crate into a diagnostic, finding the dotted path of the key
/// its span falls on by walking the parsed document.
pub(super) fn from_toml(
    text: &str,
    origin: &Path,
    err: &toml::de::Error,
    syntax: bool,
) -> Diagnostic {
    let span = err.span().unwrap_or(0..0);
    // A syntax error leaves a best-effort document that still locates most keys.
    let (doc, _) = toml::de::DeTable::parse_recoverable(text);
    let field = path_for_span(doc.get_ref(), &span)
        .map(|keys| join_path(&keys))
        .unwrap_or_default();
    let message = err.message().trim_end();
    let message = if syntax {
        format!("invalid TOML: {message}")
    } else {
        message.to_owned()
    };
    Diagnostic::at(text, origin, span, field, message)
}

/// Joins keys with dots, except before an array index: `class[0].name`.
fn join_path(keys: &[String]) -> String {
    let mut out = String::new();
    for key in keys {
        if !out.is_empty() && !key.starts_with('[') {
            out.push('.');
        }
        out.push_str(key);
    }
    out
}

/// Whether two byte ranges overlap (an empty range counts as its first byte).
fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    let b_end = b.end.max(b.start + 1);
    let a_end = a.end.max(a.start + 1);
    a.start < b_end && b.start < a_end
}

/// The key path the error `span` points at: the key or value whose span is exactly `span` (an
/// unknown key, a bad value, a table missing a key), else the deepest key or value overlapping it (a bad value, or a table header for a
/// missing key). A table's own span covers only its header, so children are searched even when
/// their parent does not overlap.
fn path_for_span(doc: &toml::de::DeTable<'_>, span: &Range<usize>) -> Option<Vec<String>> {
    path_in_table(doc, span, true).or_else(|| path_in_table(doc, span, false))
}

fn path_in_table(
    table: &toml::de::DeTable<'_>,
    span: &Range<usize>,
    exact: bool,
) -> Option<Vec<String>> {
    let mut shallow = None;
    for (key, value) in table.iter() {
        let here = || vec![key.get_ref().to_string()];
        if exact && (key.span() == *span || value.span() == *span) {
            return Some(here());
        }
        if let Some(mut sub) = path_in_value(value.get_ref(), span, exact) {
            sub.insert(0, key.get_ref().to_string());
            return Some(sub);
        }
        if !exact
            && shallow.is_none()
            && (overlaps(&key.span(), span) || overlaps(&value.span(), span))
        {
            shallow = Some(here());
        }
    }
    shallow
}

fn path_in_value(
    value: &toml::de::DeValue<'_>,
    span: &Range<usize>,
    exact: bool,
) -> Option<Vec<String>> {
    match value {
        toml::de::DeValue::Table(t) => path_in_table(t, span, exact),
        toml::de::DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                let deeper = path_in_value(item.get_ref(), span, exact);
                if deeper.is_some() || (!exact && overlaps(&item.span(), span)) {
                    let mut keys = deeper.unwrap_or_default();
                    // `join_path` renders this as `key[i]`.
                    keys.insert(0, format!("[{i}]"));
                    return Some(keys);
                }
            }
            None
        }
        _ => None,
    }
}
