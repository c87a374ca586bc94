//! MariaDB and MySQL servers (`kind = "mysql"`).
//!
//! Capture: accounts and grants with `mariadb-dump --system=users`; each database with
//! `mariadb-dump --single-transaction` (one consistent snapshot per database while InnoDB
//! writers carry on), plain SQL streamed straight into the repository, where it deduplicates
//! between restore points.
//!
//! Restore, in dependency order (the binary drives the steps for all databases of a server
//! at once): the accounts and roles ([`MyServer::restore_accounts`]); each database's tables
//! and rows ([`MyServer::load_database`]), its triggers, events, routines and views held back
//! ([`crate::mydump`]); then, once every database has its tables, those definitions, views
//! again until none more comes back, so a view reading another database's table or view is
//! created whatever the order of names ([`MyServer::finish_databases`]); then grants, role
//! memberships and default roles ([`MyServer::restore_grants`]). Each account statement is
//! applied on its own: one the server refuses is a warning, never the end of the rest; the
//! account lifeboat connects as (any host) and the server's system accounts are left alone.
//!
//! A database that exists is refused unless `replace` is asked for. A replaced one is loaded
//! into a staging database first; only once that load succeeded are the tables swapped in
//! one atomic `RENAME TABLE` (the old ones into a trash database, dropped afterwards), so a
//! load that fails (a row larger than the server's `max_allowed_packet`, a full disk) leaves
//! the old database as it was. MariaDB cannot rename a database, nor move a view, routine or
//! event, nor a table that has triggers, to another one: the old database's triggers are
//! dropped just before the swap and its views, routines and events just after, and the
//! point's are created from the held-back definitions. A new database whose load fails is
//! dropped, so no half-restored database remains.
//!
//! Everything goes through the server's own client programs (`mariadb-dump`/`mysqldump`,
//! `mariadb`/`mysql`), found on `PATH` or in `LIFEBOAT_MYSQL_BIN`, run with `--no-defaults`
//! so only the binding's settings apply, and the password in the environment.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use lifeboat_format::Id;
use lifeboat_format::manifest::DatabaseFacts;
use lifeboat_repository::{RepoWriter, Repository};

use crate::accounts::Accounts;
use crate::document::{
    Document, document_chunks, document_content, read_document, staging_suffix, store,
    store_counted,
};
use crate::mydump::{DumpSplit, HeldBack};
use crate::pgtls::SslMode;
use crate::process::{self, Running};
use crate::{Result, ServiceError, myaccounts, sqltext};

/// The environment variable naming the folder of the MariaDB/MySQL client programs.
pub const MYSQL_BIN_ENV: &str = "LIFEBOAT_MYSQL_BIN";

/// What `apply_each` selects after each statement, numbered.
const MARKER: &str = "lifeboat-statement-done-";

/// Databases that belong to the server itself, never captured as data.
const SYSTEM_DATABASES: &[&str] = &["information_schema", "mysql", "performance_schema", "sys"];

/// One MariaDB/MySQL server, as a binding names it: `mysql://user@host:port[/database]`.
#[derive(Clone)]
pub struct MyServer {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    database: Option<String>,
    /// The URL's `sslmode`, when it gives one (otherwise the client programs' default).
    ssl_mode: Option<SslMode>,
    /// The URL's `sslrootcert`: the CA certificates the server's must be signed by.
    ssl_ca: Option<std::path::PathBuf>,
    display: String,
    /// Where a database restore counts the bytes it loads (a terminal's progress bar).
    progress: Option<std::sync::Arc<lifeboat_files::Progress>>,
}

impl std::fmt::Debug for MyServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl MyServer {
    pub fn new(url: &str, password: Option<&str>) -> Result<Self> {
        let bad = |why: &str| ServiceError::Database {
            server: "mysql".into(),
            message: format!(
                "`{}` is not a MySQL URL (mysql://user@host:port): {why}",
                crate::redact_url(url)
            ),
        };
        let rest = url
            .strip_prefix("mysql://")
            .or_else(|| url.strip_prefix("mariadb://"))
            .ok_or_else(|| bad("it must start with mysql://"))?;
        // The authority ends at the path or, without one, at the query.
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], &rest[i + 1..]),
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (user, url_password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pw)) => (percent_decode(user), Some(percent_decode(pw))),
                None => (percent_decode(u), None),
            },
            None => ("root".to_string(), None),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                p.parse().map_err(|_| bad("the port is not a number"))?,
            ),
            _ => (hostport.to_string(), 3306),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let database = Some(path).filter(|d| !d.is_empty()).map(percent_decode);
        let (mut ssl_mode, mut ssl_ca) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match key {
                "sslmode" => {
                    ssl_mode = Some(match SslMode::parse(&value) {
                        Some(SslMode::VerifyCa) => {
                            return Err(bad(
                                "sslmode=verify-ca: the MariaDB client programs check the CA                                  only together with the host name; use sslmode=verify-full",
                            ));
                        }
                        Some(mode) => mode,
                        None => {
                            return Err(bad(
                                "sslmode must be one of disable, prefer, require, verify-full",
                            ));
                        }
                    })
                }
                "sslrootcert" => ssl_ca = Some(std::path::PathBuf::from(value)),
                _ => {
                    return Err(bad(&format!(
                        "unknown option `{}` (sslmode and sslrootcert are known)",
                        crate::escape_untrusted(key.as_bytes(), crate::Newlines::Escape)
                    )));
                }
            }
        }
        let display = format!("mysql://{user}@{host}:{port}");
        Ok(Self {
            host,
            port,
            user,
            password: password.map(str::to_string).or(url_password),
            database,
            ssl_mode,
            ssl_ca,
            display,
            progress: None,
        })
    }

    /// The same server, counting what a database restore loads into `progress`.
    pub fn with_progress(mut self, progress: std::sync::Arc<lifeboat_files::Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    pub fn describe(&self) -> &str {
        &self.display
    }

    /// The database a plan's check without `database` runs in.
    pub fn default_database(&self) -> &str {
        self.database.as_deref().unwrap_or("mysql")
    }

    fn error(&self, message: impl Into<String>) -> ServiceError {
        ServiceError::Database {
            server: self.display.clone(),
            message: message.into(),
        }
    }

    /// A client program with the connection settings; `names` are tried in order (MariaDB's
    /// names first, then MySQL's).
    fn tool(&self, names: &[&str]) -> Command {
        let dir = std::env::var_os(MYSQL_BIN_ENV).map(std::path::PathBuf::from);
        let found = names
            .iter()
            .map(|n| match &dir {
                Some(d) => d.join(n),
                None => n.into(),
            })
            .find(|p| (p.is_absolute() && p.exists()) || (!p.is_absolute() && on_path(p)))
            .unwrap_or_else(|| names[0].into());
        let mut command = Command::new(found);
        command
            .arg("--no-defaults")
            .arg(format!("--host={}", self.host))
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={}", self.user))
            .arg("--protocol=TCP");
        if names[0] == "mariadb" {
            // The dump programs take no such option.
            command.arg("--connect-timeout=10");
        }
        match self.ssl_mode {
            Some(SslMode::Disable) => {
                command.arg("--skip-ssl");
            }
            Some(SslMode::Require) => {
                command.arg("--ssl");
            }
            Some(SslMode::VerifyFull) => {
                command.args(["--ssl", "--ssl-verify-server-cert"]);
            }
            Some(SslMode::Prefer | SslMode::VerifyCa) | None => {}
        }
        if let Some(ca) = &self.ssl_ca {
            command.arg(format!("--ssl-ca={}", ca.display()));
        }
        match &self.password {
            Some(password) => command.env("MYSQL_PWD", password),
            None => command.env_remove("MYSQL_PWD"),
        };
        command
    }

    fn start(&self, command: Command, stdin: Stdio) -> Result<Running> {
        let program = command.get_program().to_string_lossy().into_owned();
        process::start(command, program, stdin).map_err(|e| match e {
            ServiceError::Spawn { program, source }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                self.error(format!(
                    "cannot run `{program}`: not found; install the MariaDB client programs \
                     (Debian package mariadb-client) or set {MYSQL_BIN_ENV} to their folder"
                ))
            }
            other => other,
        })
    }

    /// Runs one statement; returns the rows, tab-separated fields unescaped.
    fn query(&self, sql: &str) -> Result<Vec<Vec<String>>> {
        self.query_in(None, sql)
    }

    /// Runs one statement in `database` when given.
    fn query_in(&self, database: Option<&str>, sql: &str) -> Result<Vec<Vec<String>>> {
        let mut command = self.tool(&["mariadb", "mysql"]);
        command.args(["--batch", "--skip-column-names"]);
        if let Some(db) = database {
            command.arg(format!("--database={db}"));
        }
        command.args(["-e", sql]);
        let mut child = self.start(command, Stdio::null())?;
        let mut out = String::new();
        let read = child.stdout().read_to_string(&mut out);
        child.finish().map_err(|e| self.client_error(e))?;
        read.map_err(|e| self.error(format!("reading the client's output: {e}")))?;
        Ok(out
            .lines()
            .map(|line| line.split('\t').map(unescape_batch).collect())
            .collect())
    }

    /// A failed client run as the server's own message: its first lines, shortened, never
    /// the SQL the client echoes (a row of a dump can be megabytes of hex).
    fn client_error(&self, e: ServiceError) -> ServiceError {
        match e {
            ServiceError::CommandFailed { stderr, .. } => {
                let mut message = sqltext::reason(&stderr, 300);
                if message.is_empty() {
                    message = "the client failed without a message".to_string();
                } else if message.contains("ERROR 2006") || message.contains("ERROR 1153") {
                    // The server closes the connection on a packet larger than it accepts.
                    message.push_str(
                        " (the server closed the connection: it does so on a statement larger \
                         than its max_allowed_packet, which may need raising there)",
                    );
                }
                self.error(message)
            }
            other => other,
        }
    }

    /// The first column of the first row of `query`, as text (`NULL` as `None`), in
    /// `database` when given: for health checks.
    pub fn first_value(&self, database: Option<&str>, query: &str) -> Result<Option<String>> {
        let rows = self.query_in(database.or(self.database.as_deref()), query)?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
            .filter(|v| v != "NULL"))
    }

    /// Who this server is: its host name, port and data folder.
    pub fn identity(&self) -> Result<String> {
        self.first_value(
            None,
            "SELECT CONCAT(@@hostname, ':', @@port, ':', @@datadir)",
        )?
        .ok_or_else(|| ServiceError::Database {
            server: self.display.clone(),
            message: "the server did not say who it is".into(),
        })
    }

    /// Drops database `name` only if its comment is `mark`. Returns whether it was dropped.
    pub fn drop_marked(&self, name: &str, mark: &str) -> Result<bool> {
        let comment = self.first_value(
            None,
            &format!(
                "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
                quote_literal(name)
            ),
        )?;
        if comment.as_deref() != Some(mark) {
            return Ok(false);
        }
        self.load(
            None,
            format!("DROP DATABASE IF EXISTS {}", quote_ident(name)).as_bytes(),
        )?;
        Ok(true)
    }

    /// Whether database `name` exists.
    pub fn database_exists(&self, name: &str) -> Result<bool> {
        Ok(!self
            .query(&format!(
                "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
                quote_literal(name)
            ))?
            .is_empty())
    }

    /// Drops database `name` if it exists. Returns whether it existed.
    pub fn drop_database(&self, name: &str) -> Result<bool> {
        let exists = self.database_exists(name)?;
        if exists {
            self.load(
                None,
                format!("DROP DATABASE IF EXISTS {}", quote_ident(name)).as_bytes(),
            )?;
        }
        Ok(exists)
    }

    /// Every database but the server's own and interrupted restores' leftovers, sorted by name.
    pub fn databases(&self) -> Result<Vec<String>> {
        let rows = self.query("SHOW DATABASES")?;
        let mut names: Vec<String> = rows
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .filter(|d| !SYSTEM_DATABASES.contains(&d.as_str()))
            .collect();
        names.sort();
        Ok(crate::document::without_staging(&self.display, names))
    }

    /// Accounts, roles and grants.
    pub fn capture_globals(&self, writer: &RepoWriter<'_>) -> Result<Document> {
        let mut command = self.tool(&["mariadb-dump", "mysqldump"]);
        // `--insert-ignore` writes `CREATE USER IF NOT EXISTS`: accounts the other server
        // already has stay as they are, the grants still apply.
        command.args(["--system=users", "--insert-ignore"]);
        let mut child = self.start(command, Stdio::null())?;
        let stored = store(writer, "users.sql", &mut child.stdout());
        child.finish().map_err(|e| self.client_error(e))?;
        stored
    }

    /// One database in a single transaction, with its character set and collation.
    pub fn capture_database(
        &self,
        writer: &RepoWriter<'_>,
        name: &str,
        progress: Option<&lifeboat_files::Progress>,
    ) -> Result<(Document, DatabaseFacts)> {
        let rows = self.query(&format!(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME, VERSION() \
             FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
            quote_literal(name)
        ))?;
        let Some(row) = rows.into_iter().next().filter(|r| r.len() == 3) else {
            return Err(self.error(format!(
                "database `{name}` no longer exists (dropped during the backup?)"
            )));
        };
        let mut child = self.start(self.dump_command(name), Stdio::null())?;
        let entry = format!("{}.sql", name.replace('/', "_"));
        let stored = store_counted(writer, &entry, &mut child.stdout(), progress);
        child.finish().map_err(|e| match self.client_error(e) {
            ServiceError::Database { message, .. } if message.contains("Unknown database") => self
                .error(format!(
                    "database `{name}` no longer exists (dropped during the backup?)"
                )),
            other => other,
        })?;
        let facts = DatabaseFacts {
            name: name.to_string(),
            encoding: row[0].clone(),
            collate: row[1].clone(),
            server_version: row[2].clone(),
            ..DatabaseFacts::default()
        };
        Ok((stored?, facts))
    }

    /// The dump of one database a capture stores: deterministic for the same data.
    fn dump_command(&self, name: &str) -> Command {
        let mut command = self.tool(&["mariadb-dump", "mysqldump"]);
        command.args([
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--default-character-set=utf8mb4",
            "--skip-dump-date",
            "--",
            name,
        ]);
        command
    }

    /// Compares database `name` with the dump stored under `root`: dumped again now, in one
    /// read-only transaction, and compared byte for byte (nothing is stored or written).
    /// `None` when equal, else how it differs.
    pub fn compare_database(
        &self,
        repo: &Repository,
        root: &Id,
        name: &str,
    ) -> Result<Option<String>> {
        if !self.database_exists(name)? {
            return Ok(Some(format!("database `{name}` does not exist")));
        }
        let chunks = document_chunks(repo, root)?;
        let mut captured = DumpDigest::default();
        lifeboat_files::read_stream(&mut repo.reader(), &chunks, &mut captured)?;
        let mut child = self.start(self.dump_command(name), Stdio::null())?;
        let mut now = DumpDigest::default();
        let copied = std::io::copy(&mut child.stdout(), &mut now);
        child.finish().map_err(|e| self.client_error(e))?;
        copied.map_err(|e| self.error(format!("reading the dump of `{name}`: {e}")))?;
        let (captured, now) = (captured.finish(), now.finish());
        Ok(if captured == now {
            None
        } else if captured.1 != now.1 {
            Some(format!(
                "its dump now has {} statement lines, the restore point's has {}",
                now.1, captured.1
            ))
        } else {
            Some("its dump now differs from the restore point's".to_string())
        })
    }

    /// Creates the accounts a captured server had and this one lacks and applies their
    /// grants at once ([`MyServer::restore_accounts`], then [`MyServer::restore_grants`]):
    /// for a restore of the accounts alone, or when the databases are already there.
    pub fn restore_globals(&self, repo: &Repository, root: &Id) -> Result<Accounts> {
        let mut accounts = self.restore_accounts(repo, root)?;
        self.restore_grants(&mut accounts);
        Ok(accounts)
    }

    /// The first step of applying a captured server's accounts: creates its accounts and
    /// roles (existing ones stay as they are), each statement on its own. What refers to
    /// databases' objects waits for [`MyServer::restore_grants`].
    pub fn restore_accounts(&self, repo: &Repository, root: &Id) -> Result<Accounts> {
        let script = read_document(repo, root)?;
        let (accounts, later, warnings) =
            myaccounts::plan(&String::from_utf8_lossy(&script), &self.user);
        let mut done = Accounts {
            bytes: script.len() as u64,
            warnings,
            later: later.into_iter().map(|(_, s)| s).collect(),
            mine_before: Some(self.my_grants()?),
            ..Accounts::default()
        };
        self.apply_each(&accounts, &mut done);
        Ok(done)
    }

    /// The second step: grants on databases, tables, columns and routines, role memberships
    /// and default roles, each statement on its own (one refused is a warning). Creating a
    /// role grants it to its creator: any role the connecting account gained is taken back.
    pub fn restore_grants(&self, accounts: &mut Accounts) {
        // Memberships the server already has: granting one again needs the role's admin
        // option, which the connecting account does not keep (see below), so a second
        // restore would be refused what is already there.
        let memberships: Vec<(String, String, String, bool)> = self
            .query("SELECT Role, User, Host, Admin_option FROM mysql.roles_mapping")
            .map(|rows| {
                rows.into_iter()
                    .filter_map(|r| match r.as_slice() {
                        [role, user, host, admin] => {
                            Some((role.clone(), user.clone(), host.clone(), admin == "Y"))
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut statements = std::mem::take(&mut accounts.later);
        statements.retain(|statement| {
            let there =
                myaccounts::role_grant(statement).is_some_and(|(role, user, host, admin)| {
                    memberships.iter().any(|(r, u, h, a)| {
                        *r == role && *u == user && *h == host && (*a || !admin)
                    })
                });
            if there {
                accounts.applied += 1;
            }
            !there
        });
        self.apply_each(&statements, accounts);
        let Some(before) = accounts.mine_before.take() else {
            return;
        };
        let now = match self.my_grants() {
            Ok(now) => now,
            Err(e) => {
                accounts.warnings.push(format!(
                    "could not check the connecting account's roles afterwards: {e}"
                ));
                return;
            }
        };
        for line in now.iter().filter(|l| !before.contains(l)) {
            if let Some(role) = myaccounts::granted_role(line) {
                let revoke = format!("REVOKE {} FROM CURRENT_USER", quote_ident(&role));
                if let Err(e) = self.statement(&revoke) {
                    accounts.warnings.push(format!(
                        "the connecting account kept role `{role}` it gained by creating it: {}",
                        message_of(&e)
                    ));
                }
            }
        }
    }

    /// The connecting account's grants, as `SHOW GRANTS` lists them.
    fn my_grants(&self) -> Result<Vec<String>> {
        Ok(self
            .query("SHOW GRANTS FOR CURRENT_USER")?
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect())
    }

    /// Applies account statements each on its own, in one client session: one accepted is
    /// counted, one refused is a warning and the next still runs (`--force`). After each,
    /// `SHOW ERRORS` and a numbered marker tell which failed and why, on stdout (read whole,
    /// unlike stderr's tail).
    fn apply_each(&self, statements: &[String], accounts: &mut Accounts) {
        if statements.is_empty() {
            return;
        }
        let mut script = String::new();
        for (i, statement) in statements.iter().enumerate() {
            script.push_str(&format!(
                "{statement};\nSHOW ERRORS;\nSELECT '{MARKER}{i}';\n"
            ));
        }
        let mut command = self.tool(&["mariadb", "mysql"]);
        command.args([
            "--batch",
            "--skip-column-names",
            "--force",
            "--default-character-set=utf8mb4",
        ]);
        let ran = self.start(command, Stdio::piped()).map(|mut child| {
            let mut stdin = child.stdin();
            // The statement may carry a password hash: on stdin, never on a command line.
            let feeder = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
            let mut out = String::new();
            let _ = child.stdout().read_to_string(&mut out);
            let _ = feeder.join();
            (out, child.finish().map_err(|e| self.client_error(e)))
        });
        let (out, finished) = match ran {
            Ok(ran) => ran,
            Err(e) => (String::new(), Err(e)),
        };
        let mut errors: Vec<Vec<String>> = vec![Vec::new(); statements.len()];
        let mut done = vec![false; statements.len()];
        let mut current = 0;
        for line in out.lines() {
            if let Some(i) = line
                .strip_prefix(MARKER)
                .and_then(|i| i.parse::<usize>().ok())
                .filter(|&i| i < statements.len())
            {
                done[i] = true;
                current = i + 1;
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            if let ["Error", code, message @ ..] = fields.as_slice()
                && current < statements.len()
            {
                errors[current].push(format!(
                    "ERROR {code}: {}",
                    unescape_batch(&message.join("\t"))
                ));
            }
        }
        let unfinished = match &finished {
            Err(e) => message_of(e),
            Ok(_) => "the client stopped before it".to_string(),
        };
        for (i, statement) in statements.iter().enumerate() {
            let why = if !done[i] {
                unfinished.clone()
            } else if errors[i].is_empty() {
                accounts.applied += 1;
                continue;
            } else {
                errors[i].join("; ")
            };
            accounts.warnings.push(format!(
                "refused `{}`: {}",
                sqltext::shown(statement, 160),
                // A syntax error quotes the statement: never its password hash.
                sqltext::shown(&why, 300)
            ));
        }
    }

    /// Runs one statement, fed on stdin (it may carry a password hash: never on a command
    /// line).
    fn statement(&self, sql: &str) -> Result<()> {
        self.load(None, sql.as_bytes())
    }

    /// Runs a script with the client, in `database` when given.
    fn load(&self, database: Option<&str>, script: &[u8]) -> Result<()> {
        let mut command = self.tool(&["mariadb", "mysql"]);
        command.args(["--batch", "--default-character-set=utf8mb4"]);
        if let Some(db) = database {
            command.arg(format!("--database={db}"));
        }
        let mut child = self.start(command, Stdio::piped())?;
        let mut stdin = child.stdin();
        let written = stdin.write_all(script);
        drop(stdin);
        child.finish().map_err(|e| self.client_error(e))?;
        written.map_err(|e| self.error(format!("feeding the client: {e}")))
    }

    /// Refuses a restore into `target` that exists, unless `replace`: checked for every
    /// database before anything is applied, so a refused restore changes nothing.
    pub fn check_restore(&self, target: &str, replace: bool) -> Result<()> {
        if !replace && self.database_exists(target)? {
            return Err(ServiceError::Exists {
                path: format!("database `{target}` on {}", self.display),
            });
        }
        Ok(())
    }

    /// Restores one captured database as `target` completely (load, then definitions): for
    /// a restore of one database, whose views read only databases already there. `mark`,
    /// when given, becomes its comment (a drill drops only databases carrying its mark).
    pub fn restore_database(
        &self,
        repo: &Repository,
        root: &Id,
        facts: Option<&DatabaseFacts>,
        target: &str,
        replace: bool,
        mark: Option<&str>,
    ) -> Result<u64> {
        let load = self.load_database(repo, root, facts, target, replace, mark)?;
        self.finish_databases(vec![load])
            .pop()
            .map_or(Ok(0), |(_, done)| done)
    }

    /// Loads one captured database's tables and rows as `target` (into a staging database
    /// when `target` exists and `replace` is given); its triggers, events, routines and
    /// views wait for [`MyServer::finish_databases`]. A load that fails drops what it
    /// created and leaves an existing `target` as it was.
    pub fn load_database(
        &self,
        repo: &Repository,
        root: &Id,
        facts: Option<&DatabaseFacts>,
        target: &str,
        replace: bool,
        mark: Option<&str>,
    ) -> Result<MyLoad> {
        let exists = self.database_exists(target)?;
        if exists && !replace {
            return Err(ServiceError::Exists {
                path: format!("database `{target}` on {}", self.display),
            });
        }
        let staging = exists.then(|| format!("lifeboat_stage_{}", staging_suffix()));
        let into = staging.as_deref().unwrap_or(target);
        let charset = facts
            .filter(|f| !f.encoding.is_empty())
            .map(|f| (f.encoding.clone(), f.collate.clone()));
        let mut create = format!("CREATE DATABASE {}", quote_ident(into));
        create.push_str(&charset_clause(charset.as_ref()));
        if let Some(mark) = mark {
            create.push_str(&format!(" COMMENT {}", quote_literal(mark)));
        }
        self.load(None, create.as_bytes())?;
        let (chunks, size) = document_content(repo, root)?;
        let progress = self.progress.as_deref();
        if let Some(progress) = progress {
            progress
                .bytes_total
                .store(size, std::sync::atomic::Ordering::Relaxed);
        }
        let mut command = self.tool(&["mariadb", "mysql"]);
        command.args(["--batch", &format!("--database={into}")]);
        let loaded = self.start(command, Stdio::piped()).and_then(|mut child| {
            let mut stdout = child.stdout();
            let drain =
                std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
            let mut split = DumpSplit::new(child.stdin());
            let written = lifeboat_files::read_stream(
                &mut repo.reader(),
                &chunks,
                &mut crate::command::Counted::new(&mut split, progress),
            );
            let held = split.finish().map(|(held, stdin)| {
                drop(stdin);
                held
            });
            let _ = drain.join();
            child.finish().map_err(|e| self.client_error(e))?;
            let bytes = written?;
            let held = held.map_err(|e| self.error(format!("feeding the client: {e}")))?;
            Ok((bytes, held))
        });
        match loaded {
            Ok((bytes, held)) => Ok(MyLoad {
                target: target.to_string(),
                staging,
                held,
                charset,
                bytes,
            }),
            Err(e) => {
                // Never a half-loaded database under the name; an old one stays as it was.
                let _ = self.load(
                    None,
                    format!("DROP DATABASE IF EXISTS {}", quote_ident(into)).as_bytes(),
                );
                Err(match e {
                    ServiceError::Database { server, message } if staging.is_some() => {
                        ServiceError::Database {
                            server,
                            message: format!("{message}; database `{target}` was left as it was"),
                        }
                    }
                    other => other,
                })
            }
        }
    }

    /// Completes loaded databases, together so that their definitions may read each other:
    /// swaps each staged one into place, creates the triggers, events and routines, then
    /// the views, again while a pass creates more (a view may read a view of a database
    /// whose definitions come later). Each database's outcome: the bytes loaded, or why it
    /// failed (a new database that fails is dropped).
    pub fn finish_databases(&self, loads: Vec<MyLoad>) -> Vec<(String, Result<u64>)> {
        let mut outcomes: Vec<(MyLoad, Result<u64>)> = loads
            .into_iter()
            .map(|load| {
                let bytes = load.bytes;
                (load, Ok(bytes))
            })
            .collect();
        for (load, outcome) in &mut outcomes {
            if let Some(staging) = &load.staging
                && let Err(e) = self.swap(&load.target, staging, load.charset.as_ref())
            {
                let _ = self.load(
                    None,
                    format!("DROP DATABASE IF EXISTS {}", quote_ident(staging)).as_bytes(),
                );
                *outcome = Err(e);
            }
        }
        for (load, outcome) in &mut outcomes {
            if outcome.is_ok()
                && !load.held.objects.is_empty()
                && let Err(e) = self.load(Some(&load.target), &load.held.objects)
            {
                *outcome = Err(self.error(format!(
                    "database `{}`: creating its triggers, events and routines: {}",
                    load.target,
                    message_of(&e)
                )));
            }
        }
        let mut pending: Vec<usize> = (0..outcomes.len())
            .filter(|&i| outcomes[i].1.is_ok() && !outcomes[i].0.held.views.is_empty())
            .collect();
        while !pending.is_empty() {
            let mut failed = Vec::new();
            for &i in &pending {
                let load = &outcomes[i].0;
                if let Err(e) = self.load(Some(&load.target), &load.held.views) {
                    failed.push((i, e));
                }
            }
            let progress = failed.len() < pending.len();
            pending = failed.iter().map(|(i, _)| *i).collect();
            if !progress {
                for (i, e) in failed {
                    let target = outcomes[i].0.target.clone();
                    outcomes[i].1 = Err(self.error(format!(
                        "database `{target}`: creating its views: {}",
                        message_of(&e)
                    )));
                }
                break;
            }
        }
        outcomes
            .into_iter()
            .map(|(load, outcome)| {
                let outcome = outcome.inspect_err(|_| {
                    if load.staging.is_none() {
                        // A new database: never left half-restored.
                        let _ = self.load(
                            None,
                            format!("DROP DATABASE IF EXISTS {}", quote_ident(&load.target))
                                .as_bytes(),
                        );
                    }
                });
                (load.target, outcome)
            })
            .collect()
    }

    /// Puts the tables loaded into `staging` in place of `target`'s in one atomic `RENAME
    /// TABLE` (the old ones to a trash database, dropped after), with the point's character
    /// set; `target`'s triggers (which would stop the rename), views, routines and events go.
    /// A swap that fails leaves `target` with its tables, its triggers put back.
    fn swap(&self, target: &str, staging: &str, charset: Option<&(String, String)>) -> Result<()> {
        let names = |sql: String| -> Result<Vec<Vec<String>>> { self.query(&sql) };
        let tables = |db: &str| {
            names(format!(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = {} \
                 AND TABLE_TYPE IN ('BASE TABLE', 'SEQUENCE', 'SYSTEM VERSIONED')",
                quote_literal(db)
            ))
        };
        let (old, new) = (tables(target)?, tables(staging)?);
        let trash = format!("lifeboat_trash_{}", staging_suffix());
        let (t, s, x) = (
            quote_ident(target),
            quote_ident(staging),
            quote_ident(&trash),
        );
        let mut script = format!("CREATE DATABASE {x};\n");
        // The old triggers (and colliding views), as they were made: what the swap dropped is
        // put back if it fails.
        let mut put_back: Vec<(&str, String, String)> = Vec::new();
        for row in names(format!(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {} \
             ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
            quote_literal(target)
        ))? {
            let name = quote_ident(&row[0]);
            let made = self.query_in(Some(target), &format!("SHOW CREATE TRIGGER {name}"))?;
            if let Some([_, mode, statement, client, collation, ..]) =
                made.first().map(Vec::as_slice)
            {
                put_back.push((
                    "TRIGGER",
                    row[0].clone(),
                    format!(
                        "SET NAMES {} COLLATE {};\nSET sql_mode = {};\nDELIMITER ;;\n\
                         {statement};;\nDELIMITER ;\n",
                        quote_literal(client),
                        quote_literal(collation),
                        quote_literal(mode)
                    ),
                ));
            }
            script.push_str(&format!("DROP TRIGGER {t}.{name};\n"));
        }
        // An old view named as a table of the point would stop the rename: it goes first
        // (and comes back if the swap fails).
        for row in names(format!(
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {}",
            quote_literal(target)
        ))? {
            if !new.iter().any(|n| n[0] == row[0]) {
                continue;
            }
            let name = quote_ident(&row[0]);
            let made = self.query_in(Some(target), &format!("SHOW CREATE VIEW {name}"))?;
            if let Some([_, statement, client, collation, ..]) = made.first().map(Vec::as_slice) {
                put_back.push((
                    "VIEW",
                    row[0].clone(),
                    format!(
                        "SET NAMES {} COLLATE {};\n{statement};\n",
                        quote_literal(client),
                        quote_literal(collation),
                    ),
                ));
            }
            script.push_str(&format!("DROP VIEW {t}.{name};\n"));
        }
        let mut pairs: Vec<String> = old
            .iter()
            .map(|r| format!("{t}.{0} TO {x}.{0}", quote_ident(&r[0])))
            .collect();
        pairs.extend(
            new.iter()
                .map(|r| format!("{s}.{0} TO {t}.{0}", quote_ident(&r[0]))),
        );
        if !pairs.is_empty() {
            script.push_str(&format!("RENAME TABLE {};\n", pairs.join(", ")));
        }
        let swapped = self.load(None, script.as_bytes());
        if let Err(e) = swapped {
            let _ = self.load(None, format!("DROP DATABASE IF EXISTS {x}").as_bytes());
            let triggers = if put_back.is_empty() {
                ""
            } else if self.put_back(target, &put_back).is_ok() {
                "; any trigger or view dropped for the swap was put back"
            } else {
                "; putting back the triggers and views dropped for the swap failed too"
            };
            return Err(self.error(format!(
                "swapping the restored tables into `{target}`: {}; database `{target}` keeps \
                 its tables{triggers}",
                message_of(&e)
            )));
        }
        // What belongs to the old database and cannot move: replaced by the point's.
        let mut after = String::new();
        for row in names(format!(
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {}",
            quote_literal(target)
        ))? {
            after.push_str(&format!(
                "DROP VIEW IF EXISTS {t}.{};\n",
                quote_ident(&row[0])
            ));
        }
        for row in names(format!(
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES \
             WHERE ROUTINE_SCHEMA = {} ORDER BY ROUTINE_TYPE = 'PACKAGE'",
            quote_literal(target)
        ))? {
            if let [kind, name] = row.as_slice() {
                after.push_str(&format!(
                    "DROP {kind} IF EXISTS {t}.{};\n",
                    quote_ident(name)
                ));
            }
        }
        for row in names(format!(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {}",
            quote_literal(target)
        ))? {
            after.push_str(&format!(
                "DROP EVENT IF EXISTS {t}.{};\n",
                quote_ident(&row[0])
            ));
        }
        if charset.is_some() {
            after.push_str(&format!("ALTER DATABASE {t}{};\n", charset_clause(charset)));
        }
        after.push_str(&format!("DROP DATABASE {s};\nDROP DATABASE {x};\n"));
        self.load(None, after.as_bytes()).map_err(|e| {
            self.error(format!(
                "database `{target}`: its tables are the restore point's, but clearing what \
                 they replaced failed: {}",
                message_of(&e)
            ))
        })
    }

    /// Creates again those of `dropped` (kind, name, script) that `target` lacks now.
    fn put_back(&self, target: &str, dropped: &[(&str, String, String)]) -> Result<()> {
        let present = |sql: String| -> Result<Vec<String>> {
            Ok(self
                .query(&sql)?
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect())
        };
        let triggers = present(format!(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {}",
            quote_literal(target)
        ))?;
        let views = present(format!(
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {}",
            quote_literal(target)
        ))?;
        let mut script = String::new();
        for (kind, name, made) in dropped {
            let there = if *kind == "TRIGGER" {
                &triggers
            } else {
                &views
            };
            if !there.contains(name) {
                script.push_str(made);
            }
        }
        if script.is_empty() {
            return Ok(());
        }
        self.load(Some(target), script.as_bytes())
    }
}

/// A database loaded by [`MyServer::load_database`] whose triggers, events, routines and
/// views [`MyServer::finish_databases`] has yet to create (and, when it replaces one, whose
/// tables it has yet to swap in).
#[derive(Debug)]
pub struct MyLoad {
    target: String,
    /// Where the tables were loaded, when `target` existed.
    staging: Option<String>,
    held: HeldBack,
    /// The point's character set and collation.
    charset: Option<(String, String)>,
    bytes: u64,
}

impl MyLoad {
    /// The name the database is restored under.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// A database error's message alone (the server is named once, by the caller).
fn message_of(e: &ServiceError) -> String {
    match e {
        ServiceError::Database { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn charset_clause(charset: Option<&(String, String)>) -> String {
    let mut out = String::new();
    if let Some((encoding, collate)) = charset {
        out.push_str(&format!(" CHARACTER SET {}", quote_literal(encoding)));
        if !collate.is_empty() {
            out.push_str(&format!(" COLLATE {}", quote_literal(collate)));
        }
    }
    out
}

fn on_path(program: &std::path::Path) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// `mysql --batch` escapes tabs, newlines, backslashes and NULs in values.
fn unescape_batch(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults() {
        let s = MyServer::new("mysql://lifeboat@10.0.0.6:3307/app", Some("pw")).unwrap();
        assert_eq!(
            (
                s.host.as_str(),
                s.port,
                s.user.as_str(),
                s.default_database()
            ),
            ("10.0.0.6", 3307, "lifeboat", "app")
        );
        assert_eq!(s.describe(), "mysql://lifeboat@10.0.0.6:3307");
        let s = MyServer::new("mysql://db.example", None).unwrap();
        assert_eq!((s.port, s.user.as_str()), (3306, "root"));
        let s = MyServer::new("mysql://u%40x:p%3Aw@[::1]:3306", None).unwrap();
        assert_eq!(
            (s.user.as_str(), s.password.as_deref(), s.host.as_str()),
            ("u@x", Some("p:w"), "::1")
        );
        let e = MyServer::new("postgres://u:secret@h", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mysql://") && !e.contains("secret"), "{e}");
        assert!(MyServer::new("mysql://h:port", None).is_err());
    }

    #[test]
    fn tls_options_reach_every_client_program() {
        let s = MyServer::new(
            "mysql://u@h:3307?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
            None,
        )
        .unwrap();
        assert_eq!((s.port, s.default_database()), (3307, "mysql"));
        let args: Vec<String> = s
            .tool(&["mariadb-dump"])
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for wanted in ["--ssl", "--ssl-verify-server-cert", "--ssl-ca=/etc/ca.pem"] {
            assert!(args.iter().any(|a| a == wanted), "{wanted} in {args:?}");
        }
        let plain = MyServer::new("mysql://u@h/?sslmode=disable", None).unwrap();
        assert!(
            plain
                .tool(&["mariadb"])
                .get_args()
                .any(|a| a == "--skip-ssl"),
            "disable"
        );
        let e = MyServer::new("mysql://u@h/?sslmode=verify-ca", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("verify-full"), "{e}");
        let e = MyServer::new("mysql://u@h/?ssl_ca=x", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown option `ssl_ca`"), "{e}");
    }

    #[test]
    fn batch_output_unescapes() {
        assert_eq!(unescape_batch(r"a\tb\\c\nd"), "a\tb\\c\nd");
        assert_eq!(quote_ident("we`ird"), "`we``ird`");
        assert_eq!(quote_literal("it's \\"), "'it''s \\\\'");
    }
}

/// A digest of a dump's lines, leaving out its comments (they name the host and the server's
/// version, which differ between sites holding the same data).
#[derive(Default)]
struct DumpDigest {
    hasher: std::collections::hash_map::DefaultHasher,
    partial: Vec<u8>,
    lines: u64,
}

impl DumpDigest {
    fn line(&mut self, line: &[u8]) {
        use std::hash::Hasher;
        if !line.starts_with(b"-- ") {
            self.hasher.write(line);
            self.hasher.write_u8(b'\n');
            self.lines += 1;
        }
    }

    fn finish(mut self) -> (u64, u64) {
        use std::hash::Hasher;
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.line(&last);
        }
        (self.hasher.finish(), self.lines)
    }
}

impl Write for DumpDigest {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                self.line(&rest[..end]);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(&rest[..end]);
                self.line(&line);
            }
            rest = &rest[end + 1..];
        }
        self.partial.extend_from_slice(rest);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
