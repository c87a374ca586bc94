//! MariaDB and MySQL servers (`kind = "mysql"`).
//!
//! Capture: accounts and grants with `mariadb-dump --system=users`; each database with
//! `mariadb-dump --single-transaction` (one consistent snapshot per database while InnoDB
//! writers carry on), plain SQL streamed straight into the repository, where it deduplicates
//! between restore points.
//!
//! Restore: creates the database with its character set and collation, then loads the dump
//! with the `mariadb` client. A database that exists is refused unless `replace` is asked
//! for; MariaDB cannot rename a database, so a replaced one is dropped before the load. A
//! load that fails drops the database it created, so no half-restored database remains.
//!
//! Everything goes through the server's own client programs (`mariadb-dump`/`mysqldump`,
//! `mariadb`/`mysql`), found on `PATH` or in `LIFEBOAT_MYSQL_BIN`, run with `--no-defaults`
//! so only the binding's settings apply, and the password in the environment.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use lifeboat_format::Id;
use lifeboat_format::manifest::DatabaseFacts;
use lifeboat_repository::{RepoWriter, Repository};

use crate::document::{
    Document, document_chunks, document_content, read_document, store, store_counted,
};
use crate::pgtls::SslMode;
use crate::process::{self, Running};
use crate::{Result, ServiceError};

/// The environment variable naming the folder of the MariaDB/MySQL client programs.
pub const MYSQL_BIN_ENV: &str = "LIFEBOAT_MYSQL_BIN";

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

    /// A failed client run as the server's own message.
    fn client_error(&self, e: ServiceError) -> ServiceError {
        match e {
            ServiceError::CommandFailed { stderr, .. } => {
                let message = stderr
                    .lines()
                    .filter(|l| !l.trim().is_empty() && !l.starts_with("Warning"))
                    .collect::<Vec<_>>()
                    .join("; ");
                self.error(if message.is_empty() {
                    "the client failed without a message".to_string()
                } else {
                    message
                })
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

    /// Every database but the server's own, sorted by name.
    pub fn databases(&self) -> Result<Vec<String>> {
        let rows = self.query("SHOW DATABASES")?;
        let mut names: Vec<String> = rows
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .filter(|d| !SYSTEM_DATABASES.contains(&d.as_str()))
            .collect();
        names.sort();
        Ok(names)
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

    /// Creates the accounts a captured server had and this one lacks, and applies their
    /// grants, leaving the account lifeboat connects as untouched.
    pub fn restore_globals(&self, repo: &Repository, root: &Id) -> Result<u64> {
        let script = read_document(repo, root)?;
        let script = filter_users(&String::from_utf8_lossy(&script), &self.user);
        self.load(None, script.as_bytes())?;
        Ok(script.len() as u64)
    }

    /// Runs a script with the client, in `database` when given.
    fn load(&self, database: Option<&str>, script: &[u8]) -> Result<()> {
        let mut command = self.tool(&["mariadb", "mysql"]);
        command.arg("--batch");
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

    /// Restores one captured database under the name `target`.
    /// Restores one captured database as `target`; `mark`, when given, becomes its comment (a
    /// drill drops only databases carrying its mark).
    pub fn restore_database(
        &self,
        repo: &Repository,
        root: &Id,
        facts: Option<&DatabaseFacts>,
        target: &str,
        replace: bool,
        mark: Option<&str>,
    ) -> Result<u64> {
        let exists = !self
            .query(&format!(
                "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {}",
                quote_literal(target)
            ))?
            .is_empty();
        if exists && !replace {
            return Err(ServiceError::Exists {
                path: format!("database `{target}` on {}", self.display),
            });
        }
        let mut create = String::new();
        if exists {
            create.push_str(&format!("DROP DATABASE {};\n", quote_ident(target)));
        }
        create.push_str(&format!("CREATE DATABASE {}", quote_ident(target)));
        if let Some(f) = facts {
            if !f.encoding.is_empty() {
                create.push_str(&format!(" CHARACTER SET {}", quote_literal(&f.encoding)));
            }
            if !f.collate.is_empty() {
                create.push_str(&format!(" COLLATE {}", quote_literal(&f.collate)));
            }
        }
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
        command.args(["--batch", &format!("--database={target}")]);
        let loaded = self
            .start(command, Stdio::piped())
            .and_then(|child| crate::command::feed(repo, &chunks, child, progress))
            .map_err(|e| self.client_error(e));
        if loaded.is_err() {
            // Never leave a half-loaded database under the name.
            let _ = self.load(
                None,
                format!("DROP DATABASE {}", quote_ident(target)).as_bytes(),
            );
        }
        loaded
    }
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

/// `mariadb-dump --system=users` made safe to run on another server: nothing that creates,
/// alters or grants to the account lifeboat connects as (on any host), whose password is the
/// DR site's own.
fn filter_users(script: &str, me: &str) -> String {
    let account = format!("{}@", quote_ident(me));
    let mut out = String::with_capacity(script.len());
    for line in script.lines() {
        let about_me = line.contains(&format!("USER IF NOT EXISTS {account}"))
            || line.contains(&format!("TO {account}"))
            || line.contains(&format!("USER {account}"));
        if !about_me {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
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
    fn the_connecting_account_is_left_alone() {
        let script = "\
CREATE USER IF NOT EXISTS `root`@`localhost` IDENTIFIED BY PASSWORD '*AA';
CREATE USER IF NOT EXISTS `app`@`%` IDENTIFIED BY PASSWORD '*BB';
GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED BY PASSWORD '*AA' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON `shop`.* TO `app`@`%`;
GRANT PROXY ON ``@`%` TO `root`@`::1` WITH GRANT OPTION;
";
        assert_eq!(
            filter_users(script, "root"),
            "\
CREATE USER IF NOT EXISTS `app`@`%` IDENTIFIED BY PASSWORD '*BB';
GRANT ALL PRIVILEGES ON `shop`.* TO `app`@`%`;
"
        );
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
