//! Documents truly delivered: an HTTP apply succeeds only where the document arrived, a large
//! document streams both ways in bounded memory, discovered names are kept exactly, and the
//! audit's coverage compares exact names.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use crate::peer::Peer;
use crate::support::*;

const HEAD: &str = r#"[repository]
url = "./repo"
password = { env = "LIFEBOAT_PASSWORD" }

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"
"#;

/// Runs lifeboat; its exit code must be `code`; stdout and stderr together.
fn run(w: &Workplace, args: &[&str], code: i32) -> String {
    let out = w.cmd().args(args).output().expect("runs");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "{args:?}\n{all}");
    all
}

#[test]
fn an_http_post_apply_succeeds_only_where_the_document_arrived() {
    // Large enough that a 307's re-send must read the document from the repository again.
    let document = noise(3 << 20, 14);
    let served = document.clone();
    let peer = Peer::start(
        move |seen| match (seen.method.as_str(), seen.target.as_str()) {
            ("GET", "/doc") => (200, vec![], served.clone()),
            ("POST", "/moved") => (302, vec![("Location".into(), "/landing".into())], vec![]),
            ("POST", "/temporary") => (307, vec![("Location".into(), "/final".into())], vec![]),
            ("POST", "/final") => (201, vec![], b"created".to_vec()),
            ("GET", "/temporary") => (307, vec![("Location".into(), "/final".into())], vec![]),
            ("GET", "/final") => (200, vec![], served.clone()),
            _ => (200, vec![], vec![]),
        },
    );
    let w = Workplace::new();
    let plan = format!(
        r#"{HEAD}
[resources.moved]
kind = "http"
at.primary = {{ url = "{doc}" }}
at.dr = {{ url = "{moved}", method = "POST" }}

[resources.temporary]
kind = "http"
at.primary = {{ url = "{doc}" }}
at.dr = {{ url = "{temporary}", method = "POST" }}
"#,
        doc = peer.url("/doc"),
        moved = peer.url("/moved"),
        temporary = peer.url("/temporary"),
    );
    write(&w.path("lifeboat.toml"), plan.as_bytes());
    run(&w, &["repo", "init"], 0);
    run(&w, &["backup"], 0);

    // A POST answered 302 did not deliver the document: the apply fails naming the redirect,
    // and nothing is sent to the redirect's target.
    let out = run(
        &w,
        &["restore", "latest", "--site", "dr", "--resource", "moved"],
        1,
    );
    assert!(
        out.contains("302") && out.contains("/landing") && !out.contains("sent "),
        "{out}"
    );
    assert!(
        !peer.seen().iter().any(|s| s.target == "/landing"),
        "{:?}",
        peer.seen().iter().map(|s| &s.target).collect::<Vec<_>>()
    );

    // A 307 is followed with the same method and the whole body.
    let out = run(
        &w,
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--resource",
            "temporary",
        ],
        0,
    );
    assert!(out.contains("sent"), "{out}");
    let finals: Vec<_> = peer
        .seen()
        .into_iter()
        .filter(|s| s.target == "/final")
        .collect();
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].method, "POST");
    assert!(finals[0].body == document, "the body that arrived differs");
    let length = document.len().to_string();
    assert_eq!(finals[0].header("content-length"), Some(length.as_str()));

    // `method = "POST"` is how the document is applied there, not how it is read: a
    // comparison at the site reads it with GET, and posts nothing.
    let posted = peer.seen().iter().filter(|s| s.method == "POST").count();
    let verified = w.json(
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--resource",
            "temporary",
            "--verify",
        ],
        0,
    );
    assert_eq!(verified["resources"][0]["done"], "matches", "{verified:#}");
    assert_eq!(
        peer.seen().iter().filter(|s| s.method == "POST").count(),
        posted
    );
}

#[test]
fn discovered_names_are_kept_exactly() {
    let w = Workplace::new();
    let plan = format!(
        r#"{HEAD}
[resources.flows]
kind = "command"
discover = ["printf", "  padded  \nplain\n\n"]
at.primary = {{ capture = ["printf", "flow [%s]", "{{item}}"] }}
at.dr = {{ apply = ["sh", "-c", "mkdir -p dr && cat > \"dr/[$1]\"", "sh", "{{item}}"] }}
"#
    );
    write(&w.path("lifeboat.toml"), plan.as_bytes());
    run(&w, &["repo", "init"], 0);
    run(&w, &["backup"], 0);
    let points = w.json(&["points"], 0);
    let names: Vec<&str> = points[0]["point"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["flows/  padded  ", "flows/plain"]);
    run(&w, &["restore", "latest", "--site", "dr"], 0);
    assert_eq!(
        std::fs::read(w.path("dr/[  padded  ]")).unwrap(),
        b"flow [  padded  ]"
    );
    assert_eq!(
        std::fs::read(w.path("dr/[plain]")).unwrap(),
        b"flow [plain]"
    );
}

/// The bytes of the large document: a fast PRNG (xorshift), so nothing deduplicates.
struct Prng(u64);

impl Prng {
    fn fill(&mut self, buf: &mut [u8]) {
        for word in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            word.copy_from_slice(&self.0.to_le_bytes()[..word.len()]);
        }
    }
}

/// The BLAKE3 hash of `len` bytes of `Prng(seed)`.
fn prng_hash(seed: u64, len: u64) -> blake3::Hash {
    let (mut prng, mut hasher, mut left) = (Prng(seed), blake3::Hasher::new(), len);
    let mut buf = vec![0u8; 1 << 16];
    while left > 0 {
        let n = buf.len().min(left as usize);
        prng.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    hasher.finalize()
}

/// A streaming HTTP/1.1 server on a loopback port: a GET is answered with `len` bytes of
/// `Prng(seed)`, a PUT's body is hashed as it arrives (never held) and its length and hash
/// recorded. One connection per request.
struct Streamer {
    port: u16,
    received: Arc<Mutex<Vec<(u64, blake3::Hash)>>>,
}

impl Streamer {
    fn start(seed: u64, len: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = received.clone();
        // The thread ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = Streamer::serve(stream, seed, len, &record);
            }
        });
        Streamer { port, received }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn serve(
        stream: TcpStream,
        seed: u64,
        len: u64,
        record: &Mutex<Vec<(u64, blake3::Hash)>>,
    ) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let method = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        let mut length = 0u64;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut stream = stream;
        if method == "GET" {
            write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            )?;
            let (mut prng, mut left) = (Prng(seed), len);
            let mut buf = vec![0u8; 1 << 16];
            while left > 0 {
                let n = buf.len().min(left as usize);
                prng.fill(&mut buf[..n]);
                stream.write_all(&buf[..n])?;
                left -= n as u64;
            }
        } else {
            let mut hasher = blake3::Hasher::new();
            let mut buf = vec![0u8; 1 << 16];
            let mut body = reader.take(length);
            let mut got = 0u64;
            loop {
                let n = body.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                got += n as u64;
            }
            record.lock().unwrap().push((got, hasher.finalize()));
            stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")?;
        }
        stream.flush()
    }
}

/// Runs lifeboat to its end; its exit code and its peak resident memory (`ru_maxrss` of
/// this one child, from `wait4`), in bytes.
fn peak_rss(w: &Workplace, args: &[&str]) -> (i32, u64) {
    let child = w
        .process()
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("runs");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data, filled in by the kernel; `pid` is our own child, waited
    // for here only (the `Child` is forgotten, never waited for again).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    std::mem::forget(child);
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    // Linux gives ru_maxrss in KiB.
    (code, usage.ru_maxrss as u64 * 1024)
}

/// The large document's size: 128 MiB (more than the memory bound, which a document held
/// whole would pass; the debug build's crypto makes larger ones slow), or
/// `LIFEBOAT_TEST_DOCUMENT_MIB`.
fn large_document_len() -> u64 {
    let mib: u64 = std::env::var("LIFEBOAT_TEST_DOCUMENT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    mib << 20
}

#[test]
fn a_large_document_streams_both_ways_in_bounded_memory() {
    const LIMIT: u64 = 100 << 20;
    let len = large_document_len();
    let seed = 0x5eed_b0a7;
    let server = Streamer::start(seed, len);
    let w = Workplace::new();
    let plan = format!(
        r#"{HEAD}
[resources.big]
kind = "http"
at.primary = {{ url = "{get}" }}
at.dr = {{ url = "{put}" }}
"#,
        get = server.url("/export"),
        put = server.url("/import"),
    );
    write(&w.path("lifeboat.toml"), plan.as_bytes());
    run(&w, &["repo", "init"], 0);

    let started = std::time::Instant::now();
    let (code, captured) = peak_rss(&w, &["backup"]);
    assert_eq!(code, 0, "backup");
    let capture_time = started.elapsed();
    let (code, applied) = peak_rss(&w, &["restore", "latest", "--site", "dr"]);
    assert_eq!(code, 0, "restore");
    eprintln!(
        "a {} MiB document: capture peak RSS {} MiB ({capture_time:?}), apply peak RSS {} MiB \
         ({:?})",
        len >> 20,
        captured >> 20,
        applied >> 20,
        started.elapsed() - capture_time
    );
    assert_eq!(
        *server.received.lock().unwrap(),
        [(len, prng_hash(seed, len))],
        "the document that arrived"
    );
    assert!(captured < LIMIT, "capture peak RSS {captured} bytes");
    assert!(applied < LIMIT, "apply peak RSS {applied} bytes");
}

/// The subjects of the audit's coverage findings.
fn coverage(w: &Workplace) -> Vec<String> {
    let out = w.cmd().args(["--json", "audit"]).output().expect("runs");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {out:?}"));
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["area"] == "coverage")
        .map(|f| format!("{} {}", f["subject"], f["message"]))
        .collect()
}

#[test]
fn the_audit_compares_exact_names_and_knows_what_each_kind_covers() {
    let w = Workplace::new();
    let plan = |names_exclude: &str| {
        format!(
            r#"{HEAD}
[resources.flows]
kind = "command"
discover = ["printf", "  padded  \nplain\n"]
at.primary = {{ capture = ["printf", "flow [%s]", "{{item}}"] }}
at.dr = {{ apply = ["sh", "-c", "cat > /dev/null"] }}

[resources.config]
kind = "command"
at.primary = {{ capture = ["env", "LANG=C", "cat", "conf/app.json"] }}
at.dr = {{ apply = ["sh", "-c", "cat > /dev/null"] }}

[resources.app]
kind = "sqlite"
at.primary = {{ path = "srv/app.db" }}
at.dr = {{ path = "dr/app.db" }}

[[inventory]]
name = "flows of the engine"
command = ["printf", "plain\n  padded  \n"]

[[inventory]]
name = "application folder"
directory = "srv"

[[inventory]]
name = "names"
command = ["printf", "config\nconf\napp.json\nconf/app.json\ncat\nenv\n{wal}\n"]
exclude = {names_exclude}
"#,
            wal = w.path("srv/app.db-wal").display()
        )
    };
    write(&w.path("lifeboat.toml"), plan("[]").as_bytes());
    write(&w.path("conf/app.json"), b"{}");
    std::fs::create_dir_all(w.path("srv")).unwrap();
    let made = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3; c=sqlite3.connect('srv/app.db'); \
             c.execute('pragma journal_mode=wal'); c.execute('create table t(x)'); c.commit()",
        ])
        .current_dir(w.dir.path())
        .status()
        .expect("python3 (Debian package python3) makes the SQLite database");
    assert!(made.success());
    for sidecar in ["srv/app.db-wal", "srv/app.db-shm"] {
        if !w.path(sidecar).exists() {
            write(&w.path(sidecar), b"");
        }
    }
    run(&w, &["repo", "init"], 0);
    run(&w, &["backup"], 0);

    // Discovered items, SQLite's side files, a resource's own name and an argument of a
    // capture are protected (SQLite's side files also when a command lists them); a name
    // that is only part of a binding (`conf`, `app.json` of `cat conf/app.json`) is not, nor
    // the programs a capture runs (`env`, `cat`).
    let mut found = coverage(&w);
    found.sort();
    assert_eq!(
        found,
        [
            r#""app.json" "not protected by any resource (names)""#,
            r#""cat" "not protected by any resource (names)""#,
            r#""conf" "not protected by any resource (names)""#,
            r#""env" "not protected by any resource (names)""#,
        ]
    );

    // With those left out deliberately, the coverage is clean.
    write(
        &w.path("lifeboat.toml"),
        plan(r#"["conf", "app.json", "cat", "env"]"#).as_bytes(),
    );
    let found = coverage(&w);
    assert!(found.is_empty(), "{found:#?}");
}
