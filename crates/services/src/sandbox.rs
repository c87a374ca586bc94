//! Temporary database servers, for drills: a PostgreSQL cluster (`initdb`, `postgres`) or a
//! MariaDB server (`mariadb-install-db`, `mariadbd`) in a folder of its own, listening on a
//! free loopback port, its superuser protected by a password the caller chooses (set before
//! the server accepts a connection), and stopped again with everything it wrote.
//!
//! Database servers refuse to run as root: as root, the server runs as the engine's own
//! system account (`postgres`, `mysql`), else `nobody`, and its folder is handed to it. The
//! server runs in a process group of its own, so a Ctrl-C at the terminal reaches lifeboat,
//! which then tears down in order, rather than the server.
//!
//! A server left behind by a killed drill is found again from its folder (the pid file it
//! wrote) and stopped only if that process still runs from that folder.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{MyServer, PgServer, Result, ServiceError};

/// A database engine lifeboat can start a temporary server of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TempEngine {
    Postgres,
    Mariadb,
}

impl TempEngine {
    fn name(self) -> &'static str {
        match self {
            TempEngine::Postgres => "PostgreSQL",
            TempEngine::Mariadb => "MariaDB",
        }
    }

    /// The superuser lifeboat connects as.
    pub fn superuser(self) -> &'static str {
        match self {
            TempEngine::Postgres => "postgres",
            TempEngine::Mariadb => "root",
        }
    }
}

/// A running temporary server.
pub struct TempServer {
    pub engine: TempEngine,
    pub dir: PathBuf,
    pub port: u16,
    pub pid: u32,
    child: Child,
}

impl std::fmt::Debug for TempServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "temporary {} server on 127.0.0.1:{} in {}",
            self.engine.name(),
            self.port,
            self.dir.display()
        )
    }
}

fn io(what: impl std::fmt::Display, e: std::io::Error) -> ServiceError {
    ServiceError::Io(format!("{what}: {e}"))
}

/// A system account from `/etc/passwd`: (uid, gid).
fn account(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 4 || fields[0] != name {
            return None;
        }
        Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
    })
}

/// Who the server runs as: `None` (ourselves) unless we are root.
fn server_account(engine: TempEngine) -> Result<Option<(u32, u32)>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    let own = match engine {
        TempEngine::Postgres => "postgres",
        TempEngine::Mariadb => "mysql",
    };
    account(own)
        .or_else(|| account("nobody"))
        .map(Some)
        .ok_or_else(|| {
            ServiceError::Io(format!(
                "running as root, a temporary {} server needs an unprivileged account to run \
                 as (`{own}` or `nobody`), and /etc/passwd has neither",
                engine.name()
            ))
        })
}

fn hand_over(path: &Path, account: Option<(u32, u32)>) -> Result<()> {
    if let Some((uid, gid)) = account {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| {
            io(
                format!("handing {} to the server's account", path.display()),
                e,
            )
        })?;
    }
    Ok(())
}

fn as_account(command: &mut Command, account: Option<(u32, u32)>) {
    if let Some((uid, gid)) = account {
        command.uid(uid).gid(gid);
    }
}

/// The first of `dirs` holding `program`.
fn find_program(program: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter()
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `env` (a folder), then `PATH`, then `more`.
fn search_dirs(env: &str, more: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os(env)
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.extend(more);
    dirs
}

/// PostgreSQL's `initdb` and `postgres`: from `LIFEBOAT_PG_BIN`, `PATH`, else the newest
/// `/usr/lib/postgresql/*/bin` (where Debian keeps them, off `PATH`).
fn postgres_programs() -> Result<(PathBuf, PathBuf)> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort();
    let dirs = search_dirs(
        crate::PG_BIN_ENV,
        versions.into_iter().rev().map(|(_, dir)| dir).collect(),
    );
    // Both from one folder, so that they are of one version.
    dirs.iter()
        .find(|dir| dir.join("initdb").is_file() && dir.join("postgres").is_file())
        .map(|dir| (dir.join("initdb"), dir.join("postgres")))
        .ok_or_else(|| {
            ServiceError::Io(format!(
                "a temporary PostgreSQL server needs the server programs `initdb` and \
                 `postgres` (Debian package postgresql), on PATH, in /usr/lib/postgresql/*/bin \
                 or in {}",
                crate::PG_BIN_ENV
            ))
        })
}

/// MariaDB's `mariadb-install-db` and `mariadbd` (Debian keeps the server in /usr/sbin).
fn mariadb_programs() -> Result<(PathBuf, PathBuf)> {
    let dirs = search_dirs(
        crate::MYSQL_BIN_ENV,
        vec!["/usr/sbin".into(), "/usr/bin".into()],
    );
    find_program("mariadb-install-db", &dirs)
        .zip(find_program("mariadbd", &dirs))
        .ok_or_else(|| {
            ServiceError::Io(format!(
                "a temporary MariaDB server needs `mariadb-install-db` and `mariadbd` (Debian \
                 package mariadb-server), on PATH, in /usr/sbin or in {}",
                crate::MYSQL_BIN_ENV
            ))
        })
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| io("finding a free loopback port", e))
}

/// Runs a set-up program (initdb, mariadb-install-db) to its end; `spawned` hears its pid
/// (and `false` stops it: the caller is tearing down).
fn set_up(mut command: Command, what: &str, spawned: &mut dyn FnMut(u32) -> bool) -> Result<()> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| io(format!("cannot run {what}"), e))?;
    if !spawned(child.id()) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(cancelled());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| io(format!("waiting for {what}"), e))?;
    if !out.status.success() {
        return Err(ServiceError::CommandFailed {
            command: what.to_string(),
            status: out.status.to_string(),
            stderr: crate::escape_untrusted(&out.stderr, crate::Newlines::Keep),
        });
    }
    Ok(())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = crate::escape_untrusted(&text, crate::Newlines::Keep);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(6)..].join("\n")
}

fn cancelled() -> ServiceError {
    ServiceError::Io("the temporary server was stopped: its drill is being torn down".into())
}

/// Starts the server `command` makes for a port, in `dir`, as `account`, in a process group
/// of its own, until it answers `ready` (another port when the first was taken meanwhile).
fn launch(
    engine: TempEngine,
    dir: &Path,
    account: Option<(u32, u32)>,
    log: &Path,
    spawned: &mut dyn FnMut(u32) -> bool,
    command: impl Fn(u16) -> Result<Command>,
    ready: impl Fn(&str) -> Result<()>,
) -> Result<TempServer> {
    // The free port may be taken between asking and binding: try another.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let port = free_port()?;
        let mut server = command(port)?;
        server
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .process_group(0);
        as_account(&mut server, account);
        let child = server
            .spawn()
            .map_err(|e| io(format!("cannot start the {} server", engine.name()), e))?;
        let wanted = spawned(child.id());
        let mut started = TempServer {
            engine,
            dir: dir.to_path_buf(),
            port,
            pid: child.id(),
            child,
        };
        if !wanted {
            let _ = started.stop_child();
            return Err(cancelled());
        }
        let url = started.url();
        match started.wait_ready(|| ready(&url), log) {
            Ok(()) => return Ok(started),
            Err(e) => {
                let _ = started.stop_child();
                if attempts == 3 {
                    return Err(e);
                }
            }
        }
    }
}

/// How long a fresh server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(90);

impl TempServer {
    /// Creates and starts a PostgreSQL cluster in `dir` (which must not exist) with
    /// superuser `postgres` and `password`. `spawned` hears the pid of each process started
    /// in `dir` (initdb, then the server) as soon as it exists, so that it can be written down
    /// for a later clean-up; when it answers `false` (the caller is tearing down) that process
    /// is stopped and this fails.
    pub fn postgres(
        dir: &Path,
        password: &str,
        spawned: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Self> {
        let (initdb_program, postgres_program) = postgres_programs()?;
        let account = server_account(TempEngine::Postgres)?;
        make_private_dir(dir, account)?;
        let pwfile = dir.join("pwfile");
        write_private(&pwfile, password.as_bytes(), account)?;
        let data = dir.join("data");
        let mut initdb = Command::new(&initdb_program);
        initdb
            .args(["-U", "postgres", "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&data)
            .current_dir(dir);
        as_account(&mut initdb, account);
        let made = set_up(initdb, "initdb", spawned);
        let _ = std::fs::remove_file(&pwfile);
        made?;
        let log = dir.join("server.log");
        let server = |port: u16| -> Result<Command> {
            let mut server = Command::new(&postgres_program);
            server
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "unix_socket_permissions=0700"])
                .arg("-k")
                .arg(dir)
                .stderr(std::fs::File::create(&log).map_err(|e| io(log.display(), e))?);
            Ok(server)
        };
        let ready = |url: &str| PgServer::new(url, Some(password))?.databases().map(|_| ());
        launch(
            TempEngine::Postgres,
            dir,
            account,
            &log,
            spawned,
            server,
            ready,
        )
    }

    /// Creates and starts a MariaDB server in `dir` (which must not exist), its `root`
    /// protected by `password` from the first instant (an init file the server runs before
    /// it accepts connections).
    pub fn mariadb(
        dir: &Path,
        password: &str,
        spawned: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Self> {
        let (install_program, server_program) = mariadb_programs()?;
        let account = server_account(TempEngine::Mariadb)?;
        make_private_dir(dir, account)?;
        let data = dir.join("data");
        let mut install = Command::new(&install_program);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .current_dir(dir)
            .stdout(Stdio::null());
        as_account(&mut install, account);
        set_up(install, "mariadb-install-db", spawned)?;
        let quoted = password.replace('\\', "\\\\").replace('\'', "\\'");
        let init = dir.join("init.sql");
        write_private(
            &init,
            ["localhost", "127.0.0.1", "::1"]
                .iter()
                .map(|host| {
                    format!("ALTER USER IF EXISTS root@'{host}' IDENTIFIED BY '{quoted}';\n")
                })
                .collect::<String>()
                .as_bytes(),
            account,
        )?;
        let log = dir.join("server.log");
        let server = |port: u16| -> Result<Command> {
            let mut server = Command::new(&server_program);
            server
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", dir.join("sock").display()))
                .arg(format!("--pid-file={}", dir.join("pid").display()))
                .arg(format!("--log-error={}", log.display()))
                .arg(format!("--init-file={}", init.display()))
                .arg(format!("--port={port}"))
                .args(["--bind-address=127.0.0.1", "--skip-log-bin"])
                .stderr(Stdio::null());
            Ok(server)
        };
        let ready = |url: &str| MyServer::new(url, Some(password))?.databases().map(|_| ());
        let started = launch(
            TempEngine::Mariadb,
            dir,
            account,
            &log,
            spawned,
            server,
            ready,
        );
        // It held the password: the server has read it by now, or will never run.
        let _ = std::fs::remove_file(&init);
        started
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres` or `mysql://root@127.0.0.1:PORT`:
    /// without the password.
    pub fn url(&self) -> String {
        match self.engine {
            TempEngine::Postgres => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            TempEngine::Mariadb => format!("mysql://root@127.0.0.1:{}", self.port),
        }
    }

    fn wait_ready(&mut self, probe: impl Fn() -> Result<()>, log: &Path) -> Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let attempt = probe();
            if attempt.is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ServiceError::Io(format!(
                    "the temporary {} server exited ({status}) before accepting connections:\n{}",
                    self.engine.name(),
                    log_tail(log)
                )));
            }
            if Instant::now() > deadline {
                return Err(ServiceError::Io(format!(
                    "the temporary {} server did not accept connections within {}s: {}\n{}",
                    self.engine.name(),
                    READY_WITHIN.as_secs(),
                    attempt.err().map(|e| e.to_string()).unwrap_or_default(),
                    log_tail(log)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop_child(&mut self) -> Result<()> {
        // Once reaped, the pid may be another process's: never signal it then.
        if let Ok(Some(_)) = self.child.try_wait() {
            return Ok(());
        }
        signal(self.pid, polite(self.engine));
        let deadline = Instant::now() + STOP_WITHIN;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child
            .wait()
            .map(|_| ())
            .map_err(|e| io("waiting for the temporary server", e))
    }

    /// Stops the server (its own fast shutdown, then a kill) and removes its folder.
    pub fn stop(mut self) -> Result<()> {
        self.stop_child()?;
        remove_dir(&self.dir)
    }
}

/// How long a server may take to shut down before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(30);

fn polite(engine: TempEngine) -> rustix::process::Signal {
    match engine {
        // PostgreSQL's fast shutdown: disconnect everyone, stop cleanly.
        TempEngine::Postgres => rustix::process::Signal::INT,
        TempEngine::Mariadb => rustix::process::Signal::TERM,
    }
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Whether process `pid` runs, from a command line that names `dir` (so a recycled pid of
/// some other program is never signalled).
fn runs_from(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = dir.as_os_str().as_encoded_bytes();
    cmdline.windows(needle.len()).any(|w| w == needle)
}

/// The pid a server wrote in `dir`, if any.
fn pid_file(engine: TempEngine, dir: &Path) -> Option<u32> {
    let path = match engine {
        TempEngine::Postgres => dir.join("data").join("postmaster.pid"),
        TempEngine::Mariadb => dir.join("pid"),
    };
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Stops a server a killed drill left in `dir` (found by its pid file, or by `pid`), then
/// removes the folder. Returns whether a server was still running. Safe to repeat.
pub fn stop_leftover(engine: TempEngine, dir: &Path, pid: Option<u32>) -> Result<bool> {
    let running: Vec<u32> = pid_file(engine, dir)
        .into_iter()
        .chain(pid)
        .filter(|p| runs_from(*p, dir))
        .collect();
    for &p in &running {
        signal(p, polite(engine));
    }
    let deadline = Instant::now() + STOP_WITHIN;
    while running.iter().any(|p| runs_from(*p, dir)) {
        if Instant::now() > deadline {
            for &p in &running {
                signal(p, rustix::process::Signal::KILL);
            }
            std::thread::sleep(Duration::from_millis(200));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(p) = running.iter().find(|p| runs_from(**p, dir)) {
        return Err(ServiceError::Io(format!(
            "the temporary {} server (pid {p}) in {} does not stop",
            engine.name(),
            dir.display()
        )));
    }
    remove_dir(dir)?;
    Ok(!running.is_empty())
}

fn make_private_dir(dir: &Path, account: Option<(u32, u32)>) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| io(format!("creating {}", dir.display()), e))?;
    hand_over(dir, account)
}

fn write_private(path: &Path, bytes: &[u8], account: Option<(u32, u32)>) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io(format!("creating {}", path.display()), e))?;
    file.write_all(bytes)
        .map_err(|e| io(format!("writing {}", path.display()), e))?;
    hand_over(path, account)
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("removing {}", dir.display()), e)),
    }
}
