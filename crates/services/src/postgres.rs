//! PostgreSQL servers (`kind = "postgres"`).
//!
//! Capture: roles and tablespaces with `pg_dumpall --globals-only`; each database with
//! `pg_dump --format=custom --compress=0` streamed straight into the repository (the
//! repository compresses; an already compressed dump would defeat deduplication between
//! restore points). The dump runs in a snapshot exported by lifeboat's own transaction, in
//! which lifeboat also counts every table's rows and runs the plan's checks, so the manifest
//! describes exactly what the dump holds while writers carry on.
//!
//! Restore: into a staging database that is renamed into place only once `pg_restore`
//! succeeded (an existing database is replaced only when asked), so a failed restore never
//! leaves a half-restored database under the real name, nor loses the one that was there.
//!
//! Queries go through the `postgres` crate; dumps and restores through the server's own
//! tools (`pg_dump`, `pg_dumpall`, `pg_restore`, `psql`), found on `PATH` or in
//! `LIFEBOAT_PG_BIN`, with the password passed in the environment, never on the command line.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use lifeboat_format::Id;
use lifeboat_format::manifest::{DatabaseFacts, QueryResult, TableRows};
use lifeboat_repository::{RepoWriter, Repository};
use postgres::error::SqlState;
use postgres::{Client, Config, NoTls, SimpleQueryMessage};

use crate::accounts::Accounts;
use crate::document::{
    Document, document_content, read_document, staging_suffix, store, store_counted,
};
use crate::pgtls::{PgTls, RustlsConnect, SslMode, split_tls};
use crate::process::{self, Running};
use crate::{Result, ServiceError};

/// The environment variable naming the folder of the PostgreSQL client tools.
pub const PG_BIN_ENV: &str = "LIFEBOAT_PG_BIN";

/// One PostgreSQL server, as a binding names it.
#[derive(Clone)]
pub struct PgServer {
    config: Config,
    /// `sslmode` and `sslrootcert` (for the client programs) and lifeboat's own TLS
    /// connector (`None` for `sslmode=disable`).
    tls: std::sync::Arc<(PgTls, Option<RustlsConnect>)>,
    /// `postgres://user@host:port`, for messages: never the password.
    display: String,
    /// Where a database restore counts the bytes it loads (a terminal's progress bar).
    progress: Option<std::sync::Arc<lifeboat_files::Progress>>,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

/// How a database is restored.
#[derive(Clone, Debug)]
pub struct PgRestore<'a> {
    /// The name it is restored under.
    pub target: &'a str,
    /// Replace a database of that name; without it an existing database is an error.
    pub replace: bool,
    /// `pg_restore --jobs`; above 1 the dump is first written to a temporary file, as
    /// parallel restore needs to seek.
    pub jobs: u32,
    /// The staging database's name; by default a unique one. A drill names it, so that a
    /// clean-up after a kill can drop it.
    pub staging: Option<&'a str>,
    /// A comment set on the new database (it stays through the rename): a drill marks what it
    /// made, and drops only databases carrying its mark.
    pub mark: Option<&'a str>,
}

impl PgServer {
    /// `url` is a libpq URL (`postgres://user@host:port/db?...`, `sslmode` and `sslrootcert`
    /// as libpq reads them); `password`, when given, overrides one in the URL.
    pub fn new(url: &str, password: Option<&str>) -> Result<Self> {
        let bad = |message: String| ServiceError::Database {
            server: "postgres".into(),
            message: format!("`{}`: {message}", crate::redact_url(url)),
        };
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        let (rest, tls) = split_tls(url, home.as_deref()).map_err(bad)?;
        let connector = tls.connector().map_err(bad)?;
        let mut config: Config = rest.parse().map_err(|e| ServiceError::Database {
            server: "postgres".into(),
            message: format!("`{}` is not a PostgreSQL URL: {e}", crate::redact_url(url)),
        })?;
        config.ssl_mode(match tls.mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                postgres::config::SslMode::Require
            }
        });
        if let Some(password) = password {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("lifeboat");
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config
            .get_user()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let display = format!("postgres://{user}{host}:{port}");
        Ok(Self {
            config,
            tls: std::sync::Arc::new((tls, connector)),
            display,
            progress: None,
        })
    }

    /// The same server, counting what a database restore loads into `progress`.
    pub fn with_progress(mut self, progress: std::sync::Arc<lifeboat_files::Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The server without credentials, for messages and manifests.
    pub fn describe(&self) -> &str {
        &self.display
    }

    /// The database the binding's URL names: where server-wide work connects, and what a
    /// plan's check without `database` runs in.
    pub fn default_database(&self) -> &str {
        self.maintenance_db()
    }

    fn maintenance_db(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    fn error(&self, message: impl Into<String>) -> ServiceError {
        ServiceError::Database {
            server: self.display.clone(),
            message: message.into(),
        }
    }

    fn query_error(&self, what: &str, e: postgres::Error) -> ServiceError {
        self.error(format!("{what}: {}", describe_error(&e)))
    }

    fn connect(&self, dbname: &str) -> Result<Client> {
        let mut config = self.config.clone();
        config.dbname(dbname);
        let connected = match &self.tls.1 {
            Some(tls) => config.connect(tls.clone()),
            None => config.connect(NoTls),
        };
        connected.map_err(|e| {
            if e.code() == Some(&SqlState::INVALID_CATALOG_NAME) {
                return self.error(format!("database `{dbname}` does not exist"));
            }
            let mut message = format!("connecting to database `{dbname}`: {}", describe_error(&e));
            message.push_str(&self.tls_hint(&message));
            self.error(message)
        })
    }

    /// Every database that accepts connections, templates and interrupted restores' leftovers
    /// aside, sorted by name.
    pub fn databases(&self) -> Result<Vec<String>> {
        let mut client = self.connect(self.maintenance_db())?;
        let rows = client
            .query(
                "SELECT datname::text FROM pg_database \
                 WHERE datallowconn AND NOT datistemplate ORDER BY 1",
                &[],
            )
            .map_err(|e| self.query_error("listing databases", e))?;
        Ok(crate::document::without_staging(
            &self.display,
            rows.iter().map(|r| r.get(0)).collect(),
        ))
    }

    /// A client tool connected to `dbname` through the environment.
    fn tool(&self, program: &str, dbname: &str) -> Command {
        let path = match std::env::var_os(PG_BIN_ENV) {
            Some(dir) => std::path::Path::new(&dir).join(program),
            None => program.into(),
        };
        let mut command = Command::new(path);
        for var in ["PGSERVICE", "PGSERVICEFILE", "PGOPTIONS"] {
            command.env_remove(var);
        }
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                postgres::config::Host::Tcp(h) => h.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        if !hosts.is_empty() {
            command.env("PGHOST", hosts.join(","));
        }
        let ports: Vec<String> = self.config.get_ports().iter().map(u16::to_string).collect();
        if !ports.is_empty() {
            command.env("PGPORT", ports.join(","));
        }
        if let Some(user) = self.config.get_user() {
            command.env("PGUSER", user);
        }
        match self.config.get_password() {
            Some(password) => command.env("PGPASSWORD", String::from_utf8_lossy(password).as_ref()),
            None => command.env_remove("PGPASSWORD"),
        };
        match &self.tls.0.root_cert {
            Some(root) => command.env("PGSSLROOTCERT", root.as_env()),
            None => command.env_remove("PGSSLROOTCERT"),
        };
        command
            .env("PGDATABASE", dbname)
            .env("PGSSLMODE", self.tls.0.mode.as_str())
            .env("PGAPPNAME", "lifeboat")
            .env(
                "PGCONNECT_TIMEOUT",
                self.config
                    .get_connect_timeout()
                    .map_or(10, |t| t.as_secs().max(1))
                    .to_string(),
            );
        command
    }

    fn start(&self, command: Command, stdin: Stdio) -> Result<Running> {
        let program = command.get_program().to_string_lossy().into_owned();
        process::start(command, program.clone(), stdin).map_err(|e| match e {
            ServiceError::Spawn { program, source }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                self.error(format!(
                    "cannot run `{program}`: not found; install the PostgreSQL client tools \
                     (Debian package postgresql-client) or set {PG_BIN_ENV} to their folder"
                ))
            }
            other => other,
        })
    }

    /// What to add to a failed connection's `message` when TLS is why.
    fn tls_hint(&self, message: &str) -> String {
        let root = match &self.tls.0.root_cert {
            Some(crate::pgtls::RootCert::File(path)) => format!("sslrootcert {}", path.display()),
            Some(crate::pgtls::RootCert::System) => "the system's trusted CAs".into(),
            None => "sslrootcert".into(),
        };
        if message.contains("UnknownIssuer") || message.contains("BadSignature") {
            format!(" (the server's certificate is not signed by a CA in {root})")
        } else if message.contains("NotValidForName") || message.contains("not valid for name") {
            format!(
                " (sslmode={}: the server's certificate does not name the host connected to)",
                self.tls.0.mode.as_str()
            )
        } else if message.contains("server does not support TLS") {
            format!(
                " (sslmode={} needs TLS, which the server does not offer)",
                self.tls.0.mode.as_str()
            )
        } else {
            String::new()
        }
    }

    /// Roles (with their password hashes when the user may read them) and tablespaces.
    pub fn capture_globals(&self, writer: &RepoWriter<'_>) -> Result<Document> {
        let attempt = |extra: &[&str]| -> Result<Document> {
            let mut command = self.tool("pg_dumpall", self.maintenance_db());
            command
                .args(["--globals-only", "--no-password"])
                .args(extra);
            let mut child = self.start(command, Stdio::null())?;
            let stored = store(writer, "globals.sql", &mut child.stdout());
            child.finish()?;
            stored
        };
        match attempt(&[]) {
            // Only superusers may read password hashes; roles without them still matter.
            Err(ServiceError::CommandFailed { stderr, .. }) if stderr.contains("pg_authid") => {
                tracing::warn!(
                    "{}: not allowed to read role passwords; capturing roles without them",
                    self.display
                );
                attempt(&["--no-role-passwords"])
            }
            other => other,
        }
    }

    /// One database, consistently, with its row counts and the results of `checks` taken
    /// in the same snapshot.
    pub fn capture_database(
        &self,
        writer: &RepoWriter<'_>,
        name: &str,
        checks: &[String],
        progress: Option<&lifeboat_files::Progress>,
    ) -> Result<(Document, DatabaseFacts)> {
        let mut client = self.connect(name).map_err(|e| match e {
            ServiceError::Database { message, .. } if message.ends_with("does not exist") => self
                .error(format!(
                    "database `{name}` no longer exists (dropped during the backup?)"
                )),
            other => other,
        })?;
        let q = |e| self.query_error(&format!("database `{name}`"), e);
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(q)?;
        let snapshot: String = client
            .query_one("SELECT pg_export_snapshot()", &[])
            .map_err(q)?
            .get(0);
        let row = client
            .query_one(
                "SELECT pg_get_userbyid(datdba)::text, pg_encoding_to_char(encoding)::text, \
                 datcollate::text, datctype::text, current_setting('server_version') \
                 FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .map_err(q)?;
        let mut facts = DatabaseFacts {
            name: name.to_string(),
            owner: row.get(0),
            encoding: row.get(1),
            collate: row.get(2),
            ctype: row.get(3),
            server_version: row.get(4),
            ..DatabaseFacts::default()
        };

        let mut command = self.tool("pg_dump", name);
        command.args([
            "--format=custom",
            "--compress=0",
            "--no-password",
            &format!("--snapshot={snapshot}"),
        ]);
        let mut child = self.start(command, Stdio::null())?;
        let entry = format!("{}.pgdump", name.replace('/', "_"));
        let (stored, counted) = std::thread::scope(|s| {
            // Counting runs beside the dump, inside the same snapshot.
            let counter = s.spawn(move || {
                let counted = count_rows(&mut client, checks);
                (counted, client)
            });
            let stored = store_counted(writer, &entry, &mut child.stdout(), progress);
            let counted = counter.join();
            (stored, counted)
        });
        child.finish()?;
        let document = stored?;
        let Ok((counted, mut client)) = counted else {
            return Err(self.error(format!(
                "database `{name}`: counting rows failed unexpectedly"
            )));
        };
        let (tables, check_results) = counted.map_err(q)?;
        // The snapshot had to outlive pg_dump's import of it; a read-only commit.
        client.batch_execute("COMMIT").map_err(q)?;
        facts.tables = tables;
        facts.checks = check_results;
        Ok((document, facts))
    }

    /// Applies a captured server's roles at once ([`PgServer::restore_accounts`], then
    /// [`PgServer::restore_grants`]): for a restore of the roles alone.
    pub fn restore_globals(&self, repo: &Repository, root: &Id) -> Result<Accounts> {
        let mut accounts = self.restore_accounts(repo, root)?;
        self.restore_grants(&mut accounts)?;
        Ok(accounts)
    }

    /// The first step of applying a captured server's roles: creates the roles and
    /// tablespaces this server lacks and brings the attributes of the others in line, each
    /// statement on its own (one refused is a warning), never the role lifeboat connects
    /// as. Memberships and settings wait for [`PgServer::restore_grants`].
    pub fn restore_accounts(&self, repo: &Repository, root: &Id) -> Result<Accounts> {
        let script = read_document(repo, root)?;
        let script = String::from_utf8_lossy(&script);
        let mut client = self.connect(self.maintenance_db())?;
        let list = |client: &mut Client, sql: &str, what: &str| -> Result<Vec<String>> {
            Ok(client
                .query(sql, &[])
                .map_err(|e| self.query_error(what, e))?
                .iter()
                .map(|r| r.get(0))
                .collect())
        };
        let roles = list(
            &mut client,
            "SELECT rolname::text FROM pg_roles",
            "listing roles",
        )?;
        let tablespaces = list(
            &mut client,
            "SELECT spcname::text FROM pg_tablespace",
            "listing tablespaces",
        )?;
        let me = self.config.get_user().unwrap_or("postgres");
        let planned = plan_globals(&script, &roles, &tablespaces, me);
        let mut done = Accounts {
            bytes: script.len() as u64,
            warnings: planned.warnings,
            later: planned.later,
            session: planned.session,
            ..Accounts::default()
        };
        self.apply_all(&mut client, planned.first, &mut done);
        Ok(done)
    }

    /// The second step, once the databases are there: role memberships, role settings (per
    /// database too) and anything else of the script, each statement on its own.
    pub fn restore_grants(&self, accounts: &mut Accounts) -> Result<()> {
        let later = std::mem::take(&mut accounts.later);
        if later.is_empty() {
            return Ok(());
        }
        let mut client = self.connect(self.maintenance_db())?;
        self.apply_all(&mut client, later, accounts);
        Ok(())
    }

    /// Runs the session settings, then each statement on its own (autocommit): one the
    /// server refuses is a warning and the next still runs.
    fn apply_all(&self, client: &mut Client, statements: Vec<String>, accounts: &mut Accounts) {
        for setting in &accounts.session {
            let _ = client.batch_execute(setting);
        }
        for statement in statements {
            match client.batch_execute(&statement) {
                Ok(()) => accounts.applied += 1,
                Err(e) => accounts.warnings.push(format!(
                    "refused `{}`: {}",
                    crate::sqltext::shown(&statement, 160),
                    // An error may quote the statement: never its password.
                    crate::sqltext::shown(&describe_error(&e), 300)
                )),
            }
        }
    }

    /// Whether a restore into `target` will be refused (it exists and `replace` is not
    /// given, an empty `postgres` aside): checked for every database before anything is
    /// applied, so a refused restore changes nothing.
    pub fn check_restore(&self, target: &str, replace: bool, mark: Option<&str>) -> Result<()> {
        if replace || !self.database_exists(target)? {
            return Ok(());
        }
        if target == "postgres" && mark.is_none() && self.is_empty(target)? {
            return Ok(());
        }
        Err(ServiceError::Exists {
            path: format!("database `{target}` on {}", self.display),
        })
    }

    /// Restores one captured database as `how.target`.
    pub fn restore_database(
        &self,
        repo: &Repository,
        root: &Id,
        facts: Option<&DatabaseFacts>,
        how: &PgRestore<'_>,
    ) -> Result<u64> {
        let target = how.target;
        // A database cannot be dropped or renamed over from a session inside it.
        let admin_db = if self.maintenance_db() == target {
            "template1"
        } else {
            self.maintenance_db()
        };
        let mut admin = self.connect(admin_db)?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&target])
            .map_err(|e| self.query_error("looking for the database", e))?
            .is_some();
        // Every fresh server has an empty `postgres` database: restoring over it destroys
        // nothing (outside drills, which never replace).
        let replace = how.replace
            || (exists && target == "postgres" && how.mark.is_none() && self.is_empty(target)?);
        if exists && !replace {
            return Err(ServiceError::Exists {
                path: format!("database `{target}` on {}", self.display),
            });
        }
        let staging = how.staging.map_or_else(
            || format!("lifeboat_restore_{}", staging_suffix()),
            str::to_string,
        );
        let mut create = format!(
            "CREATE DATABASE {} TEMPLATE template0",
            quote_ident(&staging)
        );
        if let Some(f) = facts {
            for (option, value) in [
                ("ENCODING", &f.encoding),
                ("LC_COLLATE", &f.collate),
                ("LC_CTYPE", &f.ctype),
            ] {
                if !value.is_empty() {
                    create.push_str(&format!(" {option} {}", quote_literal(value)));
                }
            }
        }
        admin
            .batch_execute(&create)
            .map_err(|e| self.query_error(&format!("creating database `{target}`"), e))?;
        if let Some(mark) = how.mark {
            let marked = admin.batch_execute(&format!(
                "COMMENT ON DATABASE {} IS {}",
                quote_ident(&staging),
                quote_literal(mark)
            ));
            if let Err(e) = marked {
                let _ = admin.batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(&staging)
                ));
                return Err(self.query_error("marking the database", e));
            }
        }
        let restored = self
            .fill(&mut admin, repo, root, facts, &staging, how.jobs)
            .map_err(|e| match e {
                // pg_restore's own reason, shortened: not the statements it echoes.
                ServiceError::CommandFailed { stderr, .. } => self.error(format!(
                    "restoring database `{target}`: {}{}",
                    crate::sqltext::reason(&stderr, 300),
                    if exists {
                        "; the existing database was left as it was"
                    } else {
                        ""
                    }
                )),
                other => other,
            });
        let swapped = restored.and_then(|bytes| {
            if exists {
                // An empty `postgres` may have been written to while the restore ran.
                if !how.replace && !self.is_empty(target)? {
                    return Err(ServiceError::Exists {
                        path: format!(
                            "database `{target}` on {} (written to during the restore)",
                            self.display
                        ),
                    });
                }
                admin
                    .batch_execute(&format!(
                        "DROP DATABASE {} WITH (FORCE)",
                        quote_ident(target)
                    ))
                    .map_err(|e| self.query_error(&format!("replacing database `{target}`"), e))?;
            }
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    quote_ident(&staging),
                    quote_ident(target)
                ))
                .map_err(|e| self.query_error(&format!("renaming into `{target}`"), e))?;
            Ok(bytes)
        });
        if swapped.is_err() {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&staging)
            ));
        }
        swapped
    }

    /// Whether database `name` holds nothing a user made: no table, view, sequence, function,
    /// type, large object, publication, schema beyond `public`, or extension beyond `plpgsql`.
    fn is_empty(&self, name: &str) -> Result<bool> {
        const USER_OBJECTS: &str = "SELECT
              (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%')
            + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema'))
            + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                  AND t.typtype IN ('d', 'e', 'r', 'm'))
            + (SELECT count(*) FROM pg_namespace
                WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public')
                  AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp%')
            + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
            + (SELECT count(*) FROM pg_largeobject_metadata)
            + (SELECT count(*) FROM pg_publication)";
        let mut client = self.connect(name)?;
        let row = client
            .query_one(USER_OBJECTS, &[])
            .map_err(|e| self.query_error(&format!("looking into database `{name}`"), e))?;
        let count: i64 = row.get(0);
        Ok(count == 0)
    }

    /// Runs `pg_restore` into the (new, empty) database `staging`.
    fn fill(
        &self,
        admin: &mut Client,
        repo: &Repository,
        root: &Id,
        facts: Option<&DatabaseFacts>,
        staging: &str,
        jobs: u32,
    ) -> Result<u64> {
        if let Some(owner) = facts.map(|f| f.owner.as_str()).filter(|o| !o.is_empty()) {
            let known = admin
                .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&owner])
                .map_err(|e| self.query_error("looking up the owner", e))?
                .is_some();
            if known {
                admin
                    .batch_execute(&format!(
                        "ALTER DATABASE {} OWNER TO {}",
                        quote_ident(staging),
                        quote_ident(owner)
                    ))
                    .map_err(|e| self.query_error("setting the owner", e))?;
            }
        }
        let (chunks, size) = document_content(repo, root)?;
        let progress = self.progress.as_deref();
        if let Some(progress) = progress {
            progress
                .bytes_total
                .store(size, std::sync::atomic::Ordering::Relaxed);
        }
        let mut command = self.tool("pg_restore", staging);
        command.args([
            "--no-password",
            "--exit-on-error",
            &format!("--dbname={staging}"),
        ]);
        if jobs <= 1 {
            let child = self.start(command, Stdio::piped())?;
            return crate::command::feed(repo, &chunks, child, progress);
        }
        // Parallel restore seeks in the archive: give it a file.
        let mut file = tempfile::NamedTempFile::new()
            .map_err(|e| ServiceError::Io(format!("temporary file for pg_restore: {e}")))?;
        let path = file.path().to_path_buf();
        let bytes = {
            let mut out = crate::command::Counted::new(
                std::io::BufWriter::with_capacity(1 << 20, file.as_file_mut()),
                progress,
            );
            let n = lifeboat_files::read_stream(&mut repo.reader(), &chunks, &mut out)?;
            out.flush()
                .map_err(|e| ServiceError::Io(format!("writing {}: {e}", path.display())))?;
            n
        };
        command.arg(format!("--jobs={jobs}")).arg(file.path());
        self.start(command, Stdio::null())?.finish()?;
        Ok(bytes)
    }

    /// Every table of database `name` with its exact row count, in a read-only session.
    pub fn table_rows(&self, name: &str) -> Result<Vec<TableRows>> {
        let mut client = self.connect(name)?;
        let q = |e| self.query_error(&format!("database `{name}`: counting rows"), e);
        client
            .batch_execute("SET default_transaction_read_only = on")
            .map_err(q)?;
        count_rows(&mut client, &[])
            .map(|(tables, _)| tables)
            .map_err(q)
    }

    /// Who this server is: its cluster's system identifier and when its postmaster started
    /// (a replica shares the first, not the second). Two bindings naming one server agree.
    pub fn identity(&self) -> Result<String> {
        let mut client = self.connect(self.maintenance_db())?;
        first_value(
            &mut client,
            "SELECT system_identifier::text || ' started ' || pg_postmaster_start_time()::text \
             FROM pg_control_system()",
        )
        .map_err(|e| self.query_error("asking the server who it is", e))?
        .ok_or_else(|| self.error("the server did not say who it is"))
    }

    /// Drops database `name` only if its comment is `mark` (and `staging`, a name only a drill
    /// uses, if it exists). Returns whether `name` was dropped.
    pub fn drop_marked(&self, name: &str, mark: &str) -> Result<bool> {
        let mut admin = self.connect(if self.maintenance_db() == name {
            "template1"
        } else {
            self.maintenance_db()
        })?;
        let comment: Option<Option<String>> = admin
            .query_opt(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .map_err(|e| self.query_error("looking for the database", e))?
            .map(|row| row.get(0));
        if comment.flatten().as_deref() != Some(mark) {
            return Ok(false);
        }
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(name)
            ))
            .map_err(|e| self.query_error(&format!("dropping database `{name}`"), e))?;
        Ok(true)
    }

    /// Whether database `name` exists, whether or not it accepts connections.
    pub fn database_exists(&self, name: &str) -> Result<bool> {
        let mut admin = self.connect(self.maintenance_db())?;
        Ok(admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .map_err(|e| self.query_error("looking for the database", e))?
            .is_some())
    }

    /// Drops database `name` if it exists, disconnecting its sessions. Returns whether it
    /// existed.
    pub fn drop_database(&self, name: &str) -> Result<bool> {
        let admin_db = if self.maintenance_db() == name {
            "template1"
        } else {
            self.maintenance_db()
        };
        let mut admin = self.connect(admin_db)?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .map_err(|e| self.query_error("looking for the database", e))?
            .is_some();
        if exists {
            admin
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    quote_ident(name)
                ))
                .map_err(|e| self.query_error(&format!("dropping database `{name}`"), e))?;
        }
        Ok(exists)
    }

    /// The first column of the first row of `query`, as text, in `database` (the URL's when
    /// `None`): for health checks.
    pub fn first_value(&self, database: Option<&str>, query: &str) -> Result<Option<String>> {
        let database = database.unwrap_or(self.maintenance_db());
        let mut client = self.connect(database)?;
        first_value(&mut client, query).map_err(|e| self.query_error(&format!("`{query}`"), e))
    }

    /// Compares database `name` on this server with what a capture saw: every table's row
    /// count and every check's result. Returns the differences. Read-only: a check that
    /// would write fails instead (it may run against a live primary).
    pub fn verify_database(&self, name: &str, facts: &DatabaseFacts) -> Result<Vec<String>> {
        let mut client = self.connect(name)?;
        client
            .batch_execute("SET default_transaction_read_only = on")
            .map_err(|e| self.query_error("making the session read-only", e))?;
        let mut differences = Vec::new();
        for table in &facts.tables {
            let sql = format!("SELECT count(*) FROM {}", table.table);
            match client.query_one(sql.as_str(), &[]) {
                Ok(row) => {
                    let rows = row.get::<_, i64>(0) as u64;
                    if rows != table.rows {
                        differences.push(format!(
                            "table {}: {rows} rows, the restore point has {}",
                            table.table, table.rows
                        ));
                    }
                }
                Err(e) => {
                    differences.push(format!("table {}: {}", table.table, describe_error(&e)))
                }
            }
        }
        for check in &facts.checks {
            if check.error.is_some() {
                continue;
            }
            match first_value(&mut client, &check.sql) {
                Ok(value) if value == check.value => {}
                Ok(value) => differences.push(format!(
                    "`{}` gives {}, the restore point has {}",
                    check.sql,
                    shown(&value),
                    shown(&check.value)
                )),
                Err(e) => differences.push(format!("`{}`: {}", check.sql, describe_error(&e))),
            }
        }
        Ok(differences)
    }
}

fn shown(value: &Option<String>) -> String {
    value
        .as_deref()
        .map_or_else(|| "NULL".to_string(), |v| format!("`{v}`"))
}

/// Exact row counts of every ordinary table, then each check, in the open transaction.
fn count_rows(
    client: &mut Client,
    checks: &[String],
) -> Result<(Vec<TableRows>, Vec<QueryResult>), postgres::Error> {
    let tables: Vec<String> = client
        .query(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' \
             AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut counted = Vec::with_capacity(tables.len());
    for table in tables {
        let rows: i64 = client
            .query_one(format!("SELECT count(*) FROM {table}").as_str(), &[])?
            .get(0);
        counted.push(TableRows {
            table,
            rows: rows as u64,
        });
    }
    let mut results = Vec::new();
    for sql in checks {
        // A broken check must not abort the transaction the dump's snapshot lives in.
        client.batch_execute("SAVEPOINT lifeboat_check")?;
        let result = match first_value(client, sql) {
            Ok(value) => QueryResult {
                sql: sql.clone(),
                value,
                error: None,
            },
            Err(e) => {
                client.batch_execute("ROLLBACK TO SAVEPOINT lifeboat_check")?;
                QueryResult {
                    sql: sql.clone(),
                    value: None,
                    error: Some(describe_error(&e)),
                }
            }
        };
        results.push(result);
    }
    Ok((counted, results))
}

/// The first column of the first row, as text.
fn first_value(client: &mut Client, sql: &str) -> Result<Option<String>, postgres::Error> {
    for message in client.simple_query(sql)? {
        if let SimpleQueryMessage::Row(row) = message {
            return Ok(row.get(0).map(str::to_string));
        }
    }
    Ok(None)
}

/// The whole story of a client error: the server's message with detail and hint, or the
/// chain of causes of a connection failure; on one line, control characters escaped.
fn describe_error(e: &postgres::Error) -> String {
    crate::escape_untrusted(error_story(e).as_bytes(), crate::Newlines::Escape)
}

fn error_story(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut out = db.message().to_string();
        if let Some(detail) = db.detail() {
            out.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = db.hint() {
            out.push_str(&format!("; hint: {hint}"));
        }
        return out;
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The identifier at the start of `rest` as `pg_dumpall` writes it (quoted only when it must
/// be), and what follows it.
fn leading_ident(rest: &str) -> Option<(String, &str)> {
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if quoted[i + 1..].starts_with('"') {
                    name.push('"');
                    chars.next();
                } else {
                    return Some((name, &quoted[i + 1..]));
                }
            } else {
                name.push(c);
            }
        }
        None
    } else {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
            .unwrap_or(rest.len());
        (end > 0).then(|| (rest[..end].to_string(), &rest[end..]))
    }
}

/// `pg_dumpall --globals-only` output in the order a restore applies it.
#[derive(Debug, Default, PartialEq, Eq)]
struct GlobalsPlan {
    /// `SET` statements: the session every step runs in.
    session: Vec<String>,
    /// Roles and tablespaces, before the databases.
    first: Vec<String>,
    /// Memberships, settings, comments: after the databases.
    later: Vec<String>,
    warnings: Vec<String>,
}

/// Plans a `pg_dumpall --globals-only` script for another server: no `CREATE` for roles and
/// tablespaces it already has, and nothing that changes the role lifeboat connects as (its
/// password is the DR site's, not the primary's) or makes it a member of a role (one
/// warning counts those statements).
fn plan_globals(script: &str, roles: &[String], tablespaces: &[String], me: &str) -> GlobalsPlan {
    let mut plan = GlobalsPlan::default();
    let mut about_me = 0;
    // `CURRENT_USER` and its kin name the connecting role too (pg_dumpall writes names, but
    // a quoted role of that name is left alone as well: the safe side).
    let is_me = |name: &str| {
        name == me
            || ["CURRENT_USER", "CURRENT_ROLE", "SESSION_USER"]
                .contains(&name.to_ascii_uppercase().as_str())
    };
    for statement in crate::sqltext::split(script, crate::sqltext::Dialect::Postgres) {
        let upper = statement.to_ascii_uppercase();
        let after = |prefix: &str| {
            upper
                .starts_with(prefix)
                .then(|| leading_ident(&statement[prefix.len()..]))
                .flatten()
        };
        if upper.starts_with("SET ") {
            plan.session.push(statement);
        } else if let Some((name, _)) = after("CREATE ROLE ") {
            if !roles.contains(&name) {
                plan.first.push(statement);
            }
        } else if let Some((name, rest)) = after("ALTER ROLE ") {
            if is_me(&name) {
                about_me += 1;
            } else if rest.trim_start().to_ascii_uppercase().starts_with("WITH") {
                plan.first.push(statement);
            } else {
                plan.later.push(statement);
            }
        } else if let Some((name, _)) = after("CREATE TABLESPACE ") {
            if !tablespaces.contains(&name) {
                plan.first.push(statement);
            }
        } else if upper.starts_with("GRANT ") && grantees(&statement).iter().any(|g| is_me(g)) {
            about_me += 1;
        } else {
            plan.later.push(statement);
        }
    }
    if about_me > 0 {
        plan.warnings.push(format!(
            "left alone: role `{me}` (the role lifeboat connects as): {about_me} statement(s) \
             about it not applied"
        ));
    }
    plan
}

/// The roles a `GRANT ... TO a, b [WITH ...] [GRANTED BY c]` names after `TO`.
fn grantees(statement: &str) -> Vec<String> {
    let upper = statement.to_ascii_uppercase();
    // The last ` TO ` outside quotes: identifiers with spaces are quoted, so a quoted
    // name's ` TO ` is skipped by walking the statement.
    let mut at = None;
    let mut quoted = false;
    let bytes = upper.as_bytes();
    for i in 0..bytes.len() {
        if bytes[i] == b'"' {
            quoted = !quoted;
        } else if !quoted && upper[i..].starts_with(" TO ") {
            at = Some(i + 4);
        }
    }
    let Some(mut rest) = at.map(|i| &statement[i..]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start();
        let Some((name, after)) = leading_ident(rest) else {
            break;
        };
        out.push(name);
        match after.trim_start().strip_prefix(',') {
            Some(more) => rest = more,
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globals_keep_new_roles_and_leave_the_connecting_role_alone() {
        let script = "\
\\restrict k3y
SET standard_conforming_strings = on;
CREATE ROLE app;
ALTER ROLE app WITH LOGIN PASSWORD 'SCRAM-SHA-256$x;y';
CREATE ROLE \"Odd \"\"Name; TO postgres\";
ALTER ROLE \"Odd \"\"Name; TO postgres\" WITH NOLOGIN;
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER LOGIN PASSWORD 'SCRAM-SHA-256$primary';
ALTER ROLE app SET search_path TO 'a;b';
ALTER ROLE app IN DATABASE shop SET work_mem TO '8MB';
CREATE TABLESPACE fast OWNER postgres LOCATION '/srv/fast';
GRANT app TO \"Odd \"\"Name; TO postgres\" GRANTED BY postgres;
GRANT \"Odd \"\"Name; TO postgres\" TO postgres GRANTED BY postgres;
GRANT reader TO app, postgres;
GRANT reader TO CURRENT_USER;
";
        let plan = plan_globals(
            script,
            &["postgres".into(), "Odd \"Name; TO postgres".into()],
            &["fast".into()],
            "postgres",
        );
        assert_eq!(plan.session, ["SET standard_conforming_strings = on"]);
        assert_eq!(
            plan.first,
            [
                "CREATE ROLE app",
                "ALTER ROLE app WITH LOGIN PASSWORD 'SCRAM-SHA-256$x;y'",
                "ALTER ROLE \"Odd \"\"Name; TO postgres\" WITH NOLOGIN",
            ]
        );
        assert_eq!(
            plan.later,
            [
                "ALTER ROLE app SET search_path TO 'a;b'",
                "ALTER ROLE app IN DATABASE shop SET work_mem TO '8MB'",
                "GRANT app TO \"Odd \"\"Name; TO postgres\" GRANTED BY postgres",
            ]
        );
        assert_eq!(
            plan.warnings,
            [
                "left alone: role `postgres` (the role lifeboat connects as): 4 statement(s) about it not applied"
            ]
        );
    }

    #[test]
    fn identifiers_parse_as_pg_dumpall_writes_them() {
        assert_eq!(leading_ident("app;"), Some(("app".to_string(), ";")));
        assert_eq!(
            leading_ident("\"a \"\"b\" WITH"),
            Some(("a \"b".to_string(), " WITH"))
        );
        assert_eq!(leading_ident("\"unterminated"), None);
        assert_eq!(leading_ident(";"), None);
    }

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            crate::redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(crate::redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn a_server_is_described_without_its_password() {
        let server = PgServer::new("postgres://lifeboat:pw@10.0.0.5:6432/app", Some("x")).unwrap();
        assert_eq!(server.describe(), "postgres://lifeboat@10.0.0.5:6432");
        assert_eq!(server.maintenance_db(), "app");
        let e = PgServer::new("mysql://nope", None).unwrap_err().to_string();
        assert!(e.contains("not a PostgreSQL URL"), "{e}");
    }
}
