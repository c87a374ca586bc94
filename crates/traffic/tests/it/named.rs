//! A real BIND 9 `named`, authoritative for `example.test.`, for the tests.
//!
//! Each test starts its own server in a temporary directory on a free loopback port, so tests
//! run in parallel and never see each other's updates. `named` runs in the foreground (`-g`)
//! as the user running the tests: without `-u` it keeps that user even as root, so the
//! temporary directory (where it writes the zone's journal) needs no change of owner. It is
//! killed when the value is dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat_traffic::{RecordType, TsigAlgorithm, TsigKey, query_records};

pub const ZONE: &str = "example.test";

/// The key the server grants updates to, with hmac-sha256 (a 32-byte secret).
pub fn key_sha256() -> TsigKey {
    TsigKey {
        name: "lifeboat".to_owned(),
        algorithm: TsigAlgorithm::HmacSha256,
        secret_base64: "bGlmZWJvYXQtdGVzdC1rZXktaG1hYy1zaGEyNTYtMzI=".to_owned(),
    }
}

/// A second granted key, with hmac-sha512 (a 64-byte secret).
pub fn key_sha512() -> TsigKey {
    TsigKey {
        name: "lifeboat-512".to_owned(),
        algorithm: TsigAlgorithm::HmacSha512,
        secret_base64:
            "bGlmZWJvYXQtdGVzdC1rZXktaG1hYy1zaGE1MTItNjQtYnl0ZXMtb2Ytc2VjcmV0LW1hdGVyaWFsLTEyMzQ1Ng=="
                .to_owned(),
    }
}

/// The zone the server starts with.
const ZONE_FILE: &str = "\
$TTL 300
@       IN SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60
@       IN NS  ns1.example.test.
ns1     IN A   127.0.0.1
app  60 IN A   192.0.2.10
pair 60 IN A   192.0.2.21
pair 60 IN A   192.0.2.22
v6   60 IN AAAA 2001:db8::10
www  60 IN CNAME app-blue.example.net.
";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The `named` program, or a failure naming the Debian package to install: these tests must
/// never pass by skipping the server.
fn named_program() -> PathBuf {
    let candidates = ["/usr/sbin/named", "/usr/local/sbin/named"];
    if let Some(found) = candidates.iter().map(Path::new).find(|path| path.is_file()) {
        return found.to_owned();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("named"))
        .find(|path| path.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "BIND 9's `named` is not installed, and these tests need a real DNS server: install \
             the Debian package `bind9` (apt-get install bind9 bind9-dnsutils; .ci/run does)"
        )
    })
}

pub struct Named {
    dir: tempfile::TempDir,
    child: Child,
    pub addr: SocketAddr,
}

impl Named {
    pub fn start() -> Self {
        let program = named_program();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let path = dir.path().display().to_string();
        let zone_file = dir.path().join("example.test.zone");
        std::fs::write(&zone_file, ZONE_FILE).expect("zone file written");
        let (k256, k512) = (key_sha256(), key_sha512());
        let conf = format!(
            r#"key "{k256_name}" {{ algorithm {k256_alg}; secret "{k256_secret}"; }};
key "{k512_name}" {{ algorithm {k512_alg}; secret "{k512_secret}"; }};
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
zone "{ZONE}" {{
    type primary;
    file "{zone_file}";
    allow-update {{ key "{k256_name}"; key "{k512_name}"; }};
}};
"#,
            k256_name = k256.name,
            k256_alg = k256.algorithm,
            k256_secret = k256.secret_base64,
            k512_name = k512.name,
            k512_alg = k512.algorithm,
            k512_secret = k512.secret_base64,
            zone_file = zone_file.display(),
        );
        let conf_path = dir.path().join("named.conf");
        std::fs::write(&conf_path, conf).expect("named.conf written");
        let log = std::fs::File::create(dir.path().join("named.log")).expect("server log");
        let child = Command::new(program)
            .arg("-g")
            .arg("-c")
            .arg(&conf_path)
            .args(["-p", &port.to_string(), "-n", "1"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("server log"))
            .stderr(log)
            .spawn()
            .expect("named starts");
        let mut named = Self { dir, child, addr };
        named.wait_until_answering();
        named
    }

    fn wait_until_answering(&mut self) {
        let started = Instant::now();
        loop {
            let answered = query_records(
                self.addr,
                "app.example.test",
                RecordType::A,
                Duration::from_millis(500),
            );
            if answered.is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("named exited ({status}) before answering:\n{}", self.log());
            }
            if started.elapsed() > Duration::from_secs(30) {
                panic!(
                    "named did not answer within 30s ({answered:?}):\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// What `dig`, an independent client, reads from the server: one value a line, sorted.
    pub fn dig(&self, name: &str, record_type: &str) -> Vec<String> {
        let output = Command::new("dig")
            .args(["+short", "+norecurse", "+tcp"])
            .arg(format!("@{}", self.addr.ip()))
            .args(["-p", &self.addr.port().to_string(), name, record_type])
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run `dig` ({error}): install the Debian package `bind9-dnsutils`")
            });
        assert!(output.status.success(), "dig failed: {output:?}");
        let mut values: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
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
