//! The lifeboat plan: `lifeboat.toml`, read into typed values with diagnostics that point
//! at the file, line and field of every problem.
//!
//! # Design
//!
//! Loading runs in three passes, so a user sees **every** mistake in one run instead of
//! fixing them one at a time:
//!
//! 1. **Syntax.** The text is parsed into `toml`'s spanned tree ([`toml::de::DeTable`]):
//!    every key and value keeps its byte range. A syntax error stops here, as one
//!    diagnostic (later errors in a broken document are mostly echoes of the first).
//! 2. **Typed decoding** (`decode`). Each section, site, resource, check and binding is
//!    decoded on its own by small readers (`read`) instead of one serde derive: a reader
//!    records a diagnostic and carries on, so an unknown key in one resource and a bad
//!    duration in another are both reported. Readers know the field path they are at
//!    (`resources.orders-db.at.dr.password`) and the span of what they read. Unknown
//!    keys are rejected everywhere, with a "did you mean" or, when the key belongs to
//!    another resource kind, a note saying so.
//! 3. **Semantic validation** (`validate`): rules across sections — exactly one primary
//!    site, dependency cycles, what an sql check points at, traffic bound to every site.
//!    It runs even when decoding found errors, on whatever could be decoded.
//!
//! Errors and warnings come back as one [`PlanErrors`], a `miette::Diagnostic` whose
//! `related()` holds every [`Diagnostic`] with its label, plus plain-text and JSON
//! renderings for pipes and `--json`.
//!
//! Secrets are references (`{ env = "NAME" }`, `{ file = "PATH" }`), never values;
//! [`check_secrets`] resolves them all on request. Relative paths are resolved against
//! the plan file's folder while decoding.

mod cron;
mod decode;
mod diagnostic;
mod duration;
mod mask;
mod read;
mod schema;
mod secret;
mod shell;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use cron::validate_cron;
pub use diagnostic::{Diagnostic, JsonDiagnostic, PlanErrors, Severity};
pub use duration::{DurationError, HumanDuration, format_duration, parse_duration};
pub use mask::{MASK, credentials_in, masked};
pub use schema::*;
pub use secret::{Secret, SecretError, SecretUse, SecretValue, StringOrSecret};
pub use shell::{ShellWrapping, command_operands, shell_wrapping};

use read::{Cx, Node, SpanIndex};
use schema::Origin;

/// Reads and validates the plan at `path`.
pub fn load(path: &Path) -> Result<Plan, PlanErrors> {
    match std::fs::read_to_string(path) {
        Ok(source) => parse(&source, path),
        Err(error) => Err(PlanErrors::new(
            path,
            Arc::from(""),
            vec![
                Diagnostic::error("", 0..0, format!("cannot read the plan: {error}"))
                    .with_help("pass the plan file with `--plan PATH`"),
            ],
        )),
    }
}

/// Parses and validates plan text; `path` names the file in diagnostics and anchors
/// relative paths (its folder, made absolute against the current directory).
pub fn parse(source: &str, path: &Path) -> Result<Plan, PlanErrors> {
    let shared_source: Arc<str> = Arc::from(source);
    let fail = |diagnostics: Vec<Diagnostic>| {
        PlanErrors::new(path, Arc::clone(&shared_source), diagnostics)
    };

    let root = match toml::de::DeTable::parse(source) {
        Ok(root) => root,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            let message = error.message().trim_end().to_string();
            return Err(fail(vec![Diagnostic::error(
                "",
                span,
                format!("TOML syntax error: {message}"),
            )]));
        }
    };
    let root: Node<'_> =
        toml::Spanned::new(root.span(), toml::de::DeValue::Table(root.into_inner()));

    let plan_dir = plan_dir_of(path);
    let mut cx = Cx::new(plan_dir.clone());
    let spans = SpanIndex::build(&root);
    let draft = decode::decode_plan(&root, &mut cx);
    cx.diagnostics.extend(validate::validate(&draft, &spans));

    let has_errors = cx.diagnostics.iter().any(Diagnostic::is_error);
    let origin = Origin {
        file: path.to_path_buf(),
        plan_dir,
        source: Arc::clone(&shared_source),
        spans,
        secrets: cx.secrets,
        warnings: cx
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .cloned()
            .collect(),
        notes: cx
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Note)
            .cloned()
            .collect(),
    };
    match (has_errors, draft.repository) {
        (false, Some(repository)) => Ok(Plan {
            repository,
            objectives: draft.objectives,
            state: draft.state,
            sites: draft.sites,
            resources: draft.resources,
            traffic: draft.traffic,
            fence: draft.fence,
            watch: draft.watch,
            versions: draft.versions,
            inventory: draft.inventory,
            notify: draft.notify,
            schedule: draft.schedule,
            origin,
        }),
        _ => Err(fail(cx.diagnostics)),
    }
}

/// The plan's folder as an absolute path (relative paths in the plan hang off it).
fn plan_dir_of(path: &Path) -> PathBuf {
    let folder = path.parent().unwrap_or(Path::new(""));
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf())
}

/// Resolves every secret reference of the plan and reports each one that cannot be read
/// (unset or empty variable, unreadable or empty file), at the field that names it.
/// Values are dropped at once and never appear in a diagnostic.
pub fn check_secrets(plan: &Plan) -> Vec<Diagnostic> {
    plan.secrets()
        .iter()
        .filter_map(|used| {
            let error = used.secret.resolve().err()?;
            let help = match &used.secret {
                Secret::Env(name) => format!("export {name} before running lifeboat, or point the field at a file with `{{ file = \"PATH\" }}`"),
                Secret::File(_) => "create the file, readable by the user running lifeboat".to_string(),
            };
            Some(
                Diagnostic::error(used.path.clone(), used.span.clone(), format!("secret `{}` cannot be read: {error}", used.path))
                    .with_help(help),
            )
        })
        .collect()
}

/// A complete plan with a comment on every field, for `lifeboat init` and the docs.
pub fn example() -> &'static str {
    include_str!("example.toml")
}
