//! Real servers for the tests, each in its own temporary directory on a free loopback port,
//! stopped when dropped. A missing server binary fails the test with the package to install.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The folder of the newest PostgreSQL server binaries.
pub fn pg_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).expect(
        "PostgreSQL server binaries in /usr/lib/postgresql/*/bin (Debian package postgresql-15)",
    )
}

/// Servers refuse to run as root: as root, run them as this unprivileged user.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    let entry = |name: &str| -> Option<(u32, u32)> {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 || fields[0] != name {
                return None;
            }
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        })
    };
    Some(
        entry("postgres")
            .or_else(|| entry("nobody"))
            .expect("a `postgres` or `nobody` user to run servers as"),
    )
}

fn hand_over(path: &Path, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to the server user");
    }
}

fn as_server_user(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
}

/// Stops a server child: a polite signal first, then a kill.
fn stop(child: &mut Child, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

pub const PG_PASSWORD: &str = "pg-superuser-secret";

/// A PostgreSQL cluster with superuser `postgres` (password [`PG_PASSWORD`], SCRAM) on
/// 127.0.0.1.
pub struct PgCluster {
    pub port: u16,
    pub bin: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

/// A test CA (its own temporary folder) and a server certificate it signed for 127.0.0.1,
/// made with the `openssl` command.
pub struct TestCa {
    /// The CA certificate (PEM): what `sslrootcert` names.
    pub ca: PathBuf,
    /// The server's certificate and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = |name: &str| dir.path().join(name);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("the openssl command (Debian package openssl) runs");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        // Own configuration files, so nothing depends on the system's openssl.cnf.
        std::fs::write(
            path("ca.cnf"),
            "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = ext\n\
             [dn]\nCN = lifeboat test CA\n\
             [ext]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier = hash\n",
        )
        .expect("ca.cnf");
        std::fs::write(
            path("server.cnf"),
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = 127.0.0.1\n",
        )
        .expect("server.cnf");
        std::fs::write(
            path("server.ext"),
            "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1\n\
             authorityKeyIdentifier = keyid\nsubjectKeyIdentifier = hash\n",
        )
        .expect("server.ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509", "-config", "ca.cnf", "-days", "2"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.pem"],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req", "-new", "-config", "server.cnf"][..],
                &ec,
                &["-keyout", "server.key", "-out", "server.csr"],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        TestCa {
            ca: path("ca.pem"),
            cert: path("server.pem"),
            key: path("server.key"),
            _dir: dir,
        }
    }
}

impl PgCluster {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A cluster that accepts only TLS connections over TCP (`hostssl` alone in
    /// `pg_hba.conf`), with `ca`'s server certificate.
    pub fn start_tls(ca: &TestCa) -> Self {
        Self::start_with(Some(ca))
    }

    fn start_with(tls: Option<&TestCa>) -> Self {
        let bin = pg_bin();
        let dir = tempfile::tempdir().expect("temporary directory");
        let user = server_user();
        hand_over(dir.path(), user);
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, PG_PASSWORD).expect("password file");
        hand_over(&pwfile, user);
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .arg("-D")
            .arg(&data)
            .env("LC_ALL", "C.UTF-8")
            .stdout(Stdio::null());
        as_server_user(&mut initdb, user);
        let out = initdb.output().expect("initdb runs");
        assert!(out.status.success(), "initdb failed: {out:?}");
        let port = free_port();
        let mut postgres = Command::new(bin.join("postgres"));
        if let Some(ca) = tls {
            let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
            std::fs::copy(&ca.cert, &cert).expect("server certificate");
            std::fs::copy(&ca.key, &key).expect("server key");
            // The server refuses a key others may read.
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("key mode");
            hand_over(&cert, user);
            hand_over(&key, user);
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all scram-sha-256\n\
                 hostssl all all 127.0.0.1/32 scram-sha-256\n\
                 hostnossl all all 0.0.0.0/0 reject\n",
            )
            .expect("pg_hba.conf");
            postgres
                .args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!("ssl_cert_file={}", cert.display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", key.display()));
        }
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            .arg("-k")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("server.log")).expect("server log"));
        as_server_user(&mut postgres, user);
        let child = postgres.spawn().expect("postgres starts");
        let cluster = PgCluster {
            port,
            bin,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = cluster
                .tool("pg_isready")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// The libpq URL of database `db`, without the password.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A client tool pointed at this cluster as the superuser.
    pub fn tool(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGPASSWORD", PG_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10");
        c
    }

    /// Runs SQL in `db` as a script (each statement on its own, so `CREATE DATABASE` may
    /// follow another); returns the unaligned, tuples-only output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        use std::io::Write;
        let mut child = self
            .tool("psql")
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                db,
                "-f",
                "-",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("psql runs");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(sql.as_bytes()).unwrap();
        stdin.write_all(b";\n").unwrap();
        drop(stdin);
        let out = child.wait_with_output().expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql:?} in {db}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `pg_dump --schema-only` of `db`, for comparing two servers.
    pub fn schema(&self, db: &str) -> String {
        let out = self
            .tool("pg_dump")
            .args(["--schema-only", "--no-comments", "-d", db])
            .output()
            .expect("pg_dump runs");
        assert!(out.status.success(), "pg_dump {db}: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            // `\restrict` lines carry a random key per run.
            .filter(|l| {
                !l.starts_with("--")
                    && !l.starts_with("\\restrict")
                    && !l.starts_with("\\unrestrict")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown.
        stop(&mut self.child, "-INT");
    }
}

pub const MARIADB_PASSWORD: &str = "mariadb-root-secret";

/// A MariaDB server with `root` (password [`MARIADB_PASSWORD`]) on 127.0.0.1.
pub struct MariaDb {
    pub port: u16,
    /// Only TLS connections are accepted (`require_secure_transport`).
    tls: bool,
    child: Child,
    _dir: tempfile::TempDir,
}

fn mariadb_program(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("`{name}` not found (Debian packages mariadb-server and mariadb-client)")
        })
}

impl MariaDb {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A server that accepts only TLS connections, with `ca`'s server certificate.
    pub fn start_tls(ca: &TestCa) -> Self {
        Self::start_with(Some(ca))
    }

    fn start_with(tls: Option<&TestCa>) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        // MariaDB's own account when there is one, as the package runs it.
        let user = server_user().map(|fallback| {
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            passwd
                .lines()
                .find_map(|line| {
                    let f: Vec<&str> = line.split(':').collect();
                    (f.len() > 3 && f[0] == "mysql")
                        .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                        .flatten()
                })
                .unwrap_or(fallback)
        });
        hand_over(dir.path(), user);
        let data = dir.path().join("data");
        let mut install = Command::new(mariadb_program("mariadb-install-db"));
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .stdout(Stdio::null());
        as_server_user(&mut install, user);
        let out = install.output().expect("mariadb-install-db runs");
        assert!(out.status.success(), "mariadb-install-db failed: {out:?}");
        let port = free_port();
        let mut server = Command::new(mariadb_program("mariadbd"));
        server.arg("--no-defaults");
        if let Some(ca) = tls {
            let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
            std::fs::copy(&ca.cert, &cert).expect("server certificate");
            std::fs::copy(&ca.key, &key).expect("server key");
            hand_over(&cert, user);
            hand_over(&key, user);
            server
                .arg(format!("--ssl-cert={}", cert.display()))
                .arg(format!("--ssl-key={}", key.display()))
                .arg("--require-secure-transport=ON");
        }
        server
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!(
                "--log-error={}",
                dir.path().join("error.log").display()
            ))
            .arg(format!("--port={port}"))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_server_user(&mut server, user);
        let child = server.spawn().expect("mariadbd starts");
        let db = MariaDb {
            port,
            tls: tls.is_some(),
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        // Fresh root has no password yet; give it one over TCP, then use it.
        loop {
            let set = db
                .client_with(None)
                .args([
                    "-e",
                    &format!(
                        "ALTER USER root@localhost IDENTIFIED BY '{MARIADB_PASSWORD}'; \
                         ALTER USER root@'127.0.0.1' IDENTIFIED BY '{MARIADB_PASSWORD}'"
                    ),
                ])
                .output()
                .expect("the mariadb client runs (Debian package mariadb-client)");
            if set.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not start on port {port}: {set:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        db
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    fn client_with(&self, password: Option<&str>) -> Command {
        let mut c = Command::new(mariadb_program("mariadb"));
        c.args([
            "--no-defaults",
            "--protocol=TCP",
            "-h",
            "127.0.0.1",
            "-u",
            "root",
        ])
        .arg(format!("--port={}", self.port));
        if self.tls {
            c.arg("--ssl");
        }
        match password {
            Some(p) => c.env("MYSQL_PWD", p),
            None => c.env_remove("MYSQL_PWD"),
        };
        c
    }

    /// A client as root.
    pub fn client(&self) -> Command {
        self.client_with(Some(MARIADB_PASSWORD))
    }

    /// Runs SQL; returns tab-separated rows without headers.
    pub fn sql(&self, sql: &str) -> String {
        let out = self
            .client()
            .args(["--batch", "--skip-column-names", "-e", sql])
            .output()
            .expect("mariadb runs");
        assert!(
            out.status.success(),
            "mariadb {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The schema of `db`, for comparing two servers.
    pub fn schema(&self, db: &str) -> String {
        let out = Command::new(mariadb_program("mariadb-dump"))
            .args([
                "--no-defaults",
                "--protocol=TCP",
                "-h",
                "127.0.0.1",
                "-u",
                "root",
            ])
            .arg(format!("--port={}", self.port))
            .args(self.tls.then_some("--ssl"))
            .args([
                "--no-data",
                "--routines",
                "--triggers",
                "--skip-dump-date",
                db,
            ])
            .env("MYSQL_PWD", MARIADB_PASSWORD)
            .output()
            .expect("mariadb-dump runs");
        assert!(out.status.success(), "mariadb-dump {db}: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("--"))
            // The next AUTO_INCREMENT value is the writer's progress, not the schema.
            .map(|l| match l.split_once(" AUTO_INCREMENT=") {
                Some((head, tail)) => {
                    format!(
                        "{head}{}",
                        tail.trim_start_matches(|c: char| c.is_ascii_digit())
                    )
                }
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        stop(&mut self.child, "-TERM");
    }
}

/// The TSIG key BIND grants updates to (hmac-sha256), base64.
pub const TSIG_SECRET: &str = "bGlmZWJvYXQtdGVzdC1rZXktaG1hYy1zaGEyNTYtMzI=";

/// A BIND 9 `named`, authoritative for `example.test.` (`app` A 192.0.2.10, TTL 60), granting
/// updates to the key `lifeboat` ([`TSIG_SECRET`]). Runs in the foreground as the test's user
/// (without `-u` it keeps it, even as root); killed when dropped.
pub struct Named {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Named {
    pub fn start() -> Self {
        let program = ["/usr/sbin/named", "/usr/local/sbin/named"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("BIND 9's `named` (Debian package bind9)");
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().display().to_string();
        let zone = dir.path().join("example.test.zone");
        std::fs::write(
            &zone,
            "$TTL 300\n@ IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60\n\
             @ IN NS ns1.example.test.\nns1 IN A 127.0.0.1\napp 60 IN A 192.0.2.10\n",
        )
        .expect("zone file");
        let port = free_port();
        let conf = format!(
            r#"key "lifeboat" {{ algorithm hmac-sha256; secret "{TSIG_SECRET}"; }};
options {{
    directory "{path}";
    pid-file "{path}/named.pid";
    session-keyfile "{path}/session.key";
    managed-keys-directory "{path}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
zone "example.test" {{
    type primary;
    file "{zone}";
    allow-update {{ key "lifeboat"; }};
}};
"#,
            zone = zone.display()
        );
        let conf_path = dir.path().join("named.conf");
        std::fs::write(&conf_path, conf).expect("named.conf");
        let log = std::fs::File::create(dir.path().join("named.log")).expect("log");
        let child = Command::new(program)
            .arg("-g")
            .arg("-c")
            .arg(&conf_path)
            .args(["-p", &port.to_string(), "-n", "1"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("named starts");
        let named = Named {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while named.dig("app.example.test").is_empty() {
            assert!(
                Instant::now() < deadline,
                "named did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        named
    }

    /// What `dig` reads from the server for an A record: sorted values.
    pub fn dig(&self, name: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args([
                "+short",
                "+norecurse",
                "+tcp",
                "+time=2",
                "+tries=1",
                "@127.0.0.1",
            ])
            .args(["-p", &self.port.to_string(), name, "A"])
            .output()
            .expect("dig (Debian package bind9-dnsutils) runs");
        let mut values: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with(';'))
            .map(str::to_string)
            .collect();
        values.sort();
        values
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
