//! Integration tests of `lifeboat-plan`: one binary, one module per concern.

mod commands;
mod diagnostics;
mod fuzz;
mod plans;
mod secrets;

use std::path::{Path, PathBuf};

use lifeboat_plan::{Plan, PlanErrors};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Parses `source` as if it were `/plans/lifeboat.toml`.
pub fn parse(source: &str) -> Result<Plan, PlanErrors> {
    lifeboat_plan::parse(source, Path::new("/plans/lifeboat.toml"))
}

#[track_caller]
pub fn parse_ok(source: &str) -> Plan {
    match parse(source) {
        Ok(plan) => plan,
        Err(errors) => panic!("plan should parse:\n{}", errors.render_plain()),
    }
}

#[track_caller]
pub fn parse_err(source: &str) -> PlanErrors {
    match parse(source) {
        Ok(_) => panic!("plan should not parse"),
        Err(errors) => errors,
    }
}

/// A valid plan to which tests append sections.
pub const MINIMAL: &str = r#"
[repository]
url = "./repo"
password = { env = "LIFEBOAT_PASSWORD" }

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.docs]
kind = "files"
at.primary = { path = "/srv/docs" }
at.dr = { path = "/srv/dr/docs" }
"#;

/// `(line, path, message)` of every error, for compact assertions.
pub fn errors_of(errors: &PlanErrors) -> Vec<(usize, String, String)> {
    errors
        .errors()
        .map(|diagnostic| {
            let (line, _) = errors.line_column(diagnostic.span.start);
            (line, diagnostic.path.clone(), diagnostic.message.clone())
        })
        .collect()
}
