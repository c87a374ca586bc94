//! Plan diagnostics: one [`Diagnostic`] per problem, gathered in [`PlanErrors`] with the
//! plan source so they can be rendered by `miette`, as plain text, or as JSON.

use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{LabeledSpan, NamedSource, SourceCode};

/// How bad a diagnostic is. Only errors stop a plan from loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    /// Nothing wrong, but worth knowing (a setting no command performs yet).
    Note,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        })
    }
}

/// One problem in a plan, located by field path and byte span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// Dotted field path (`resources.orders-db.at.dr.password`); empty for the whole file.
    pub path: String,
    /// Byte range in the plan source.
    pub span: Range<usize>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, span: Range<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            path: path.into(),
            span,
            help: None,
        }
    }

    pub fn warning(
        path: impl Into<String>,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, span, message)
        }
    }

    /// Something worth knowing that is not a problem.
    pub fn note(path: impl Into<String>, span: Range<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Note,
            ..Diagnostic::error(path, span, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Note => miette::Severity::Advice,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|help| Box::new(help) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        // The label carries the field path so the fancy report names the field too.
        let label = (!self.path.is_empty()).then(|| self.path.clone());
        let length = self.span.end.saturating_sub(self.span.start);
        Some(Box::new(std::iter::once(LabeledSpan::new(
            label,
            self.span.start,
            length,
        ))))
    }
}

/// Every diagnostic of one plan file, with its source attached.
///
/// Returned as the error of [`crate::load`] and [`crate::parse`] (then it holds at least one
/// error, plus any warnings) and by [`crate::Plan::report`].
#[derive(Clone)]
pub struct PlanErrors {
    // Boxed: this is the error side of `Result<Plan, _>` and should stay small.
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    file: PathBuf,
    source: Arc<str>,
    named_source: NamedSource<Arc<str>>,
    diagnostics: Vec<Diagnostic>,
}

/// The `--json` form of one diagnostic.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct JsonDiagnostic {
    pub severity: Severity,
    pub message: String,
    pub path: String,
    pub file: String,
    /// 1-based line of the span start.
    pub line: usize,
    /// 1-based column (in characters) of the span start.
    pub column: usize,
    pub help: Option<String>,
}

impl PlanErrors {
    /// Gathers diagnostics for `source`, the text of `file`. Diagnostics are kept in source
    /// order (errors before warnings at the same place) so output is stable.
    /// Credentials in the source's URLs are shown as `****` (spans follow), so no snippet
    /// prints a password.
    pub fn new(file: &Path, source: Arc<str>, mut diagnostics: Vec<Diagnostic>) -> Self {
        let credentials = crate::mask::credentials_in(&source);
        let source: Arc<str> = if credentials.is_empty() {
            source
        } else {
            for diagnostic in &mut diagnostics {
                let moved = |offset| crate::mask::offset_after_masking(offset, &credentials);
                diagnostic.span = moved(diagnostic.span.start)..moved(diagnostic.span.end);
            }
            crate::mask::masked(&source).into()
        };
        diagnostics.sort_by(|a, b| {
            (a.span.start, a.severity, &a.path).cmp(&(b.span.start, b.severity, &b.path))
        });
        diagnostics.dedup();
        let named_source = NamedSource::new(file.display().to_string(), Arc::clone(&source));
        PlanErrors {
            inner: Box::new(Inner {
                file: file.to_path_buf(),
                source,
                named_source,
                diagnostics,
            }),
        }
    }

    pub fn file(&self) -> &Path {
        &self.inner.file
    }

    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.inner.diagnostics
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.inner.diagnostics.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.inner
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// Diagnostics that are neither errors nor warnings.
    pub fn notes(&self) -> impl Iterator<Item = &Diagnostic> {
        self.inner
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Note)
    }

    pub fn has_errors(&self) -> bool {
        self.inner.diagnostics.iter().any(Diagnostic::is_error)
    }

    pub fn is_empty(&self) -> bool {
        self.inner.diagnostics.is_empty()
    }

    /// 1-based line and column (in characters) of a byte offset in the source.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        line_column(&self.inner.source, offset)
    }

    /// Renders every diagnostic as plain text, without colours, for logs and pipes:
    ///
    /// ```text
    /// error: unknown field `colour`
    ///   --> lifeboat.toml:12:1 (resources.csv.colour)
    ///    |
    /// 12 | colour = "red"
    ///    | ^^^^^^
    ///    = help: ...
    /// ```
    pub fn render_plain(&self) -> String {
        let mut out = String::new();
        for diagnostic in &self.inner.diagnostics {
            self.render_one(&mut out, diagnostic);
            out.push('\n');
        }
        let _ = writeln!(out, "{}", self.summary());
        out
    }

    fn render_one(&self, out: &mut String, diagnostic: &Diagnostic) {
        let (line, column) = self.line_column(diagnostic.span.start);
        let _ = writeln!(out, "{}: {}", diagnostic.severity, diagnostic.message);
        let gutter = " ".repeat(line.to_string().len());
        let field = if diagnostic.path.is_empty() {
            String::new()
        } else {
            format!(" ({})", diagnostic.path)
        };
        let _ = writeln!(
            out,
            "{gutter}--> {}:{line}:{column}{field}",
            self.inner.file.display()
        );
        let text = self.inner.source.lines().nth(line - 1).unwrap_or_default();
        let _ = writeln!(out, "{gutter} |");
        let _ = writeln!(out, "{line} | {text}");
        let marker_start: usize = column - 1;
        let span_chars = self
            .inner
            .source
            .get(diagnostic.span.clone())
            .map(|spanned| spanned.lines().next().unwrap_or_default().chars().count())
            .unwrap_or(0);
        let available = text.chars().count().saturating_sub(marker_start);
        let width = span_chars.min(available).max(1);
        let _ = writeln!(
            out,
            "{gutter} | {}{}",
            " ".repeat(marker_start),
            "^".repeat(width)
        );
        if let Some(help) = &diagnostic.help {
            let _ = writeln!(out, "{gutter} = help: {help}");
        }
    }

    /// `lifeboat.toml: 2 errors, 1 warning`.
    pub fn summary(&self) -> String {
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        let notes = self.notes().count();
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        format!(
            "{}: {}, {}{}",
            self.inner.file.display(),
            plural(errors, "error"),
            plural(warnings, "warning"),
            if notes > 0 {
                format!(", {}", plural(notes, "note"))
            } else {
                String::new()
            }
        )
    }

    /// The `--json` form: `{severity, message, path, file, line, column, help}` each.
    pub fn to_json(&self) -> Vec<JsonDiagnostic> {
        self.inner
            .diagnostics
            .iter()
            .map(|diagnostic| {
                let (line, column) = self.line_column(diagnostic.span.start);
                JsonDiagnostic {
                    severity: diagnostic.severity,
                    message: diagnostic.message.clone(),
                    path: diagnostic.path.clone(),
                    file: self.inner.file.display().to_string(),
                    line,
                    column,
                    help: diagnostic.help.clone(),
                }
            })
            .collect()
    }
}

pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(source.len());
    while !source.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

impl fmt::Debug for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlanErrors")
            .field("file", &self.inner.file)
            .field("diagnostics", &self.inner.diagnostics)
            .finish()
    }
}

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid plan {}", self.summary())
    }
}

impl std::error::Error for PlanErrors {}

impl miette::Diagnostic for PlanErrors {
    fn severity(&self) -> Option<miette::Severity> {
        Some(if self.has_errors() {
            miette::Severity::Error
        } else {
            miette::Severity::Warning
        })
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.inner.named_source)
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        Some(Box::new(
            self.inner
                .diagnostics
                .iter()
                .map(|diagnostic| diagnostic as &dyn miette::Diagnostic),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_characters() {
        let source = "a = 1\nbé = 2\n";
        assert_eq!(line_column(source, 0), (1, 1));
        assert_eq!(line_column(source, 6), (2, 1));
        assert_eq!(line_column(source, 10), (2, 4));
        assert_eq!(line_column(source, 999), (3, 1));
        // Inside the two-byte `é`: clamps back to its start.
        assert_eq!(line_column(source, 8), (2, 2));
    }
}
