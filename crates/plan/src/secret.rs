//! Secret references and their resolution.
//!
//! The plan never holds a secret value, only where to find it: an environment variable
//! or a file. Values are read on demand with [`Secret::resolve`] and come back wrapped in
//! [`SecretValue`], which refuses to print itself.

use std::fmt;
use std::path::PathBuf;

/// Where a secret lives: `{ env = "NAME" }` or `{ file = "PATH" }`.
///
/// File paths are already resolved against the plan file's folder.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Secret {
    /// Read from this environment variable; it must be set and non-empty.
    Env(String),
    /// Read from this file; one trailing newline is trimmed.
    File(PathBuf),
}

/// Why a secret reference could not be resolved. Never contains the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable `{name}` is not set")]
    EnvMissing { name: String },
    #[error("environment variable `{name}` is empty")]
    EnvEmpty { name: String },
    #[error("environment variable `{name}` is not valid UTF-8")]
    EnvNotUnicode { name: String },
    #[error("cannot read secret file `{}`: {source}", path.display())]
    FileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret file `{}` is empty", path.display())]
    FileEmpty { path: PathBuf },
    #[error("secret file `{}` is not valid UTF-8", path.display())]
    FileNotUnicode { path: PathBuf },
}

impl Secret {
    /// Reads the secret's value from its environment variable or file.
    pub fn resolve(&self) -> Result<SecretValue, SecretError> {
        match self {
            Secret::Env(name) => match std::env::var(name) {
                Ok(value) if value.is_empty() => Err(SecretError::EnvEmpty { name: name.clone() }),
                Ok(value) => Ok(SecretValue(value)),
                Err(std::env::VarError::NotPresent) => {
                    Err(SecretError::EnvMissing { name: name.clone() })
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    Err(SecretError::EnvNotUnicode { name: name.clone() })
                }
            },
            Secret::File(path) => {
                let bytes = std::fs::read(path).map_err(|source| SecretError::FileUnreadable {
                    path: path.clone(),
                    source,
                })?;
                let mut value = String::from_utf8(bytes)
                    .map_err(|_| SecretError::FileNotUnicode { path: path.clone() })?;
                // Editors add a final newline; it is never part of the secret.
                if value.ends_with('\n') {
                    value.pop();
                    if value.ends_with('\r') {
                        value.pop();
                    }
                }
                if value.is_empty() {
                    return Err(SecretError::FileEmpty { path: path.clone() });
                }
                Ok(SecretValue(value))
            }
        }
    }

    /// A short description of the reference (`env LIFEBOAT_PASSWORD`), safe to print.
    pub fn describe(&self) -> String {
        match self {
            Secret::Env(name) => format!("environment variable `{name}`"),
            Secret::File(path) => format!("file `{}`", path.display()),
        }
    }
}

/// A resolved secret. `Debug` and `Display` print `[redacted]`; use
/// [`SecretValue::expose`] at the one place the value is really needed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a value obtained elsewhere (e.g. a prompt) so it cannot be printed by accident.
    pub fn new(value: String) -> Self {
        SecretValue(value)
    }

    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A plain string or a secret reference: for values that are sometimes credentials
/// (HTTP header values, webhook URLs that embed a token).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum StringOrSecret {
    Plain(String),
    Secret(Secret),
}

impl StringOrSecret {
    /// The plain string, or the resolved secret.
    pub fn resolve(&self) -> Result<SecretValue, SecretError> {
        match self {
            StringOrSecret::Plain(text) => Ok(SecretValue(text.clone())),
            StringOrSecret::Secret(secret) => secret.resolve(),
        }
    }
}

/// One secret reference in a plan, with the field it was written in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretUse {
    /// Dotted field path, e.g. `resources.orders-db.at.dr.password`.
    pub path: String,
    /// Byte span of the reference (`{ env = "..." }`) in the plan source.
    pub span: std::ops::Range<usize>,
    pub secret: Secret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_values_never_print() {
        let value = SecretValue::new("hunter2".into());
        assert_eq!(format!("{value}"), "[redacted]");
        assert!(!format!("{value:?}").contains("hunter2"));
        assert_eq!(value.expose(), "hunter2");
    }

    #[test]
    fn file_secret_trims_one_trailing_newline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\n\n").expect("write");
        let value = Secret::File(path.clone()).resolve().expect("resolves");
        assert_eq!(value.expose(), "s3cret\n");
        std::fs::write(&path, "\n").expect("write");
        assert!(matches!(
            Secret::File(path).resolve(),
            Err(SecretError::FileEmpty { .. })
        ));
    }

    #[test]
    fn missing_env_names_the_variable() {
        let error = Secret::Env("LIFEBOAT_TEST_SURELY_UNSET_VARIABLE".into())
            .resolve()
            .expect_err("unset");
        assert!(
            error
                .to_string()
                .contains("LIFEBOAT_TEST_SURELY_UNSET_VARIABLE")
        );
    }
}
