//! A database server's captured accounts, applied in two steps around its databases: the
//! accounts and roles first (a database's owner must exist), then what refers to objects
//! (table-, column- and routine-level grants, role memberships, default roles, per-database
//! settings), once the databases are there. Each statement is applied on its own: one the
//! server refuses becomes a warning and never stops the rest.

/// What applying a server's captured accounts did so far, and what is left for after its
/// databases ([`crate::MyServer::restore_grants`], [`crate::PgServer::restore_grants`]).
#[derive(Debug, Default)]
pub struct Accounts {
    /// Statements the server accepted.
    pub applied: usize,
    /// One line each: a statement left out (it concerns the connecting account, a system
    /// account, or a PROXY grant) or refused by the server, and why.
    pub warnings: Vec<String>,
    /// Statements that refer to databases' objects, applied after them.
    pub(crate) later: Vec<String>,
    /// PostgreSQL: the script's session settings, run first in each session applying it.
    pub(crate) session: Vec<String>,
    /// MariaDB: the connecting account's grants before, so any role it gained by creating
    /// roles is taken back at the end.
    pub(crate) mine_before: Option<Vec<String>>,
    /// The size of the captured script.
    pub bytes: u64,
}

impl Accounts {
    /// A one-line summary: how many statements applied, how many warnings.
    pub fn summary(&self) -> String {
        format!(
            "{} statement(s) applied{}",
            self.applied,
            match self.warnings.len() {
                0 => String::new(),
                n => format!(", {n} skipped or refused (see warnings)"),
            }
        )
    }
}
