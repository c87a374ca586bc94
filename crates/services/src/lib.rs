//! Services as resources: what is not a plain file tree.
//!
//! Each capture here is a *document*: one byte stream (a command's output, a consistent copy
//! of a SQLite database) stored as a one-entry tree, so restore points, `check`, `prune` and
//! deduplication treat it exactly like a file. Capture and apply never go through a shell
//! unless the argv itself names one.

mod accounts;
pub mod checks;
mod command;
mod document;
mod http;
mod mail;
mod myaccounts;
mod mydump;
mod mysql;
mod pgtls;
mod postgres;
pub(crate) mod process;
mod sandbox;
mod sqlite;
mod sqltext;
mod staging;
#[cfg(test)]
mod testpeer;
mod text;

pub use accounts::Accounts;
pub use command::{
    apply_command, capture_command, check_item, compare_command, discover, item_folder_name,
    run_command, run_command_in_group, run_with_input, stop_group,
};
pub use document::{Document, document_chunks};
pub use http::{HttpRequest, apply_http, capture_http, compare_http, get_text, post_json};
pub use mail::{Mail, send_mail};
pub use mysql::{MYSQL_BIN_ENV, MyLoad, MyServer};
pub use pgtls::{PgTls, RootCert, SslMode};
pub use postgres::{PG_BIN_ENV, PgRestore, PgServer};
pub use process::stop_children;
pub use sandbox::{TempEngine, TempServer, stop_leftover};
pub use sqlite::{
    Holder, SqliteRestore, SqliteRestored, capture_sqlite, compare_sqlite, restore_sqlite,
    sqlite_holders,
};
pub use staging::remove_staged;
pub use text::{Newlines, escape_untrusted};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}){}", stderr_suffix(.stderr))]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("{server}: {message}")]
    Database { server: String, message: String },
    #[error("{path}: {message}")]
    Sqlite { path: String, message: String },
    #[error("{path} exists; restore with --replace to overwrite it")]
    Exists { path: String },
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Stream(#[from] lifeboat_files::StreamError),
    #[error(transparent)]
    Repo(#[from] lifeboat_repository::RepoError),
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        // Already escaped where it was read; again here, as anyone may build this error.
        format!(": {}", escape_untrusted(trimmed.as_bytes(), Newlines::Keep))
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// A URL with any password replaced, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}
