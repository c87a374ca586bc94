//! Configuration documents by command (with discovery) and SQLite databases, captured at the
//! primary and restored into the DR site's bindings, with real processes.

use std::time::Duration;

use crate::support::*;

const PLAN: &str = r#"[repository]
url = "./repo"
password = { env = "LIFEBOAT_PASSWORD" }

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.config]
kind = "command"
at.primary = { capture = ["cat", "conf/app.json"] }
at.dr = { apply = ["sh", "-c", "mkdir -p dr && cat > dr/app.json"] }

[resources.flows]
kind = "command"
discover = ["ls", "flows"]
at.primary = { capture = ["cat", "flows/{item}"] }
at.dr = { apply = ["sh", "-c", "mkdir -p dr/flows && cat > \"dr/flows/$0\"", "{item}"] }

[resources.broken]
kind = "command"
at.primary = { capture = ["sh", "-c", "echo 'permission denied on the broker' >&2; exit 3"] }
at.dr = { apply = ["true"] }

[resources.sessions]
kind = "sqlite"
at.primary = { path = "app.db" }
at.dr = { path = "dr/app.db" }
"#;

/// Python's sqlite3 module: a real SQLite writer in another process.
fn python(script: &str, dir: &std::path::Path) -> std::process::Child {
    std::process::Command::new("python3")
        .args(["-c", script])
        .current_dir(dir)
        .spawn()
        .expect("python3 (Debian package python3) runs the SQLite writer")
}

#[test]
fn documents_and_sqlite_round_trip_to_the_dr_site() {
    let w = Workplace::new();
    write(&w.path("lifeboat.toml"), PLAN.as_bytes());
    write(
        &w.path("conf/app.json"),
        br#"{"queues": ["orders", "invoices"]}"#,
    );
    write(&w.path("flows/ingest"), b"flow: ingest\n");
    write(&w.path("flows/export daily"), b"flow: export\n");
    let setup = python(
        "import sqlite3; c=sqlite3.connect('app.db'); c.execute('pragma journal_mode=wal'); \
         c.execute('create table s(id integer primary key, v text)'); \
         c.executemany('insert into s(v) values (?)', [('x'*200,)]*5000); c.commit()",
        w.dir.path(),
    )
    .wait()
    .unwrap();
    assert!(setup.success());
    // A writer keeps writing during the backup.
    let mut writer = python(
        "import sqlite3, time\nc=sqlite3.connect('app.db', timeout=30)\nfor i in range(400):\n    c.execute('insert into s(v) values (?)', ('y'*100,)); c.commit(); time.sleep(0.005)",
        w.dir.path(),
    );
    let run = |args: &[&str], code: i32| {
        let out = w
            .cmd()
            .env_remove("LIFEBOAT_REPOSITORY")
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    run(&["repo", "init"], 0);
    std::thread::sleep(Duration::from_millis(200));
    // `broken` fails with its stderr; everything else is captured.
    let out = run(&["backup"], 4);
    assert!(
        out.contains("broken: FAILED") && out.contains("permission denied on the broker"),
        "{out}"
    );
    assert!(writer.wait().unwrap().success());

    let points = w
        .cmd()
        .env_remove("LIFEBOAT_REPOSITORY")
        .args(["--json", "points"])
        .output()
        .unwrap();
    let points: serde_json::Value = serde_json::from_slice(&points.stdout).unwrap();
    let names: Vec<&str> = points[0]["point"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "config",
            "flows/export daily",
            "flows/ingest",
            "broken",
            "sessions"
        ]
    );

    // Everything that was captured goes to the DR site.
    run(
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--resource",
            "config",
            "--resource",
            "flows",
            "--resource",
            "sessions",
        ],
        0,
    );
    assert_eq!(
        std::fs::read(w.path("dr/app.json")).unwrap(),
        std::fs::read(w.path("conf/app.json")).unwrap()
    );
    assert_eq!(
        std::fs::read(w.path("dr/flows/export daily")).unwrap(),
        b"flow: export\n"
    );
    assert_eq!(
        std::fs::read(w.path("dr/flows/ingest")).unwrap(),
        b"flow: ingest\n"
    );
    let check = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3; c=sqlite3.connect('dr/app.db'); \
             assert c.execute('pragma integrity_check').fetchone()[0]=='ok'; \
             m=c.execute('pragma journal_mode').fetchone()[0]; assert m=='wal', m; \
             n=c.execute('select count(*) from s').fetchone()[0]; assert 5000 <= n <= 5400, n; print(n)",
        ])
        .current_dir(w.dir.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    // Nothing of the restore is left beside the database (staging names, their journals).
    let leftovers: Vec<String> = std::fs::read_dir(w.path("dr"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".lifeboat-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A database that exists is not overwritten without --replace; all of it is, with it.
    let out = run(
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--resource",
            "sessions",
        ],
        1,
    );
    assert!(out.contains("exists; restore with --replace"), "{out}");
    run(
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--resource",
            "sessions",
            "--replace",
        ],
        0,
    );
    // The failed resource is reported, the others still restored.
    let out = run(&["restore", "latest", "--site", "dr", "--replace"], 1);
    assert!(out.contains("broken: FAILED: not captured"), "{out}");
    assert!(out.contains("config: applied"), "{out}");
}

/// A real HTTP server (Python's http.server) holding documents; PUT/POST bodies are also
/// written to `dir` so the test can read them.
const SERVER: &str = r#"
import http.server, os, sys
out = sys.argv[1]
docs = {'/api/definitions': b'{"queues": ["orders", "invoices"], "vhost": "/"}'}
class H(http.server.BaseHTTPRequestHandler):
    def ok(self):
        if self.headers.get('Authorization') != 'Bearer s3cret-token':
            self.send_response(401); self.end_headers(); self.wfile.write(b'unknown credentials'); return False
        return True
    def do_GET(self):
        if not self.ok(): return
        body = docs.get(self.path)
        if body is None:
            self.send_response(404); self.end_headers(); return
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_PUT(self):
        if not self.ok(): return
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        docs[self.path] = body
        open(os.path.join(out, self.command + self.path.replace('/', '_')), 'wb').write(body)
        self.send_response(204); self.end_headers()
    do_POST = do_PUT
    def log_message(self, *args): pass
server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_http_document_round_trips_and_a_refused_capture_is_reported() {
    use std::io::BufRead;
    let w = Workplace::new();
    std::fs::create_dir_all(w.path("received")).unwrap();
    let mut child = std::process::Command::new("python3")
        .args(["-c", SERVER, w.path("received").to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (Debian package python3) runs the HTTP server");
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let _server = Server(child);
    let port = port.trim();
    let plan = format!(
        r#"[repository]
url = "./repo"
password = {{ env = "LIFEBOAT_PASSWORD" }}

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.broker]
kind = "http"
at.primary = {{ url = "http://127.0.0.1:{port}/api/definitions", headers = {{ Authorization = {{ env = "BROKER_AUTH" }}, Accept = "application/json" }} }}
at.dr = {{ url = "http://127.0.0.1:{port}/dr/definitions", method = "POST", headers = {{ Authorization = {{ env = "BROKER_AUTH" }} }} }}
"#
    );
    write(&w.path("lifeboat.toml"), plan.as_bytes());
    let run = |token: &str, args: &[&str], code: i32| {
        let out = w
            .cmd()
            .env_remove("LIFEBOAT_REPOSITORY")
            .env("BROKER_AUTH", token)
            .args(args)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "{args:?}\n{all}");
        assert!(!all.contains("s3cret-token"), "a secret leaked: {all}");
        all
    };
    run("Bearer s3cret-token", &["repo", "init"], 0);
    let out = run("Bearer wrong", &["backup"], 4);
    assert!(
        out.contains("HTTP 401") && out.contains("unknown credentials"),
        "{out}"
    );
    run("Bearer s3cret-token", &["backup"], 0);
    run(
        "Bearer s3cret-token",
        &["restore", "latest", "--site", "dr"],
        0,
    );
    assert_eq!(
        std::fs::read(w.path("received/POST_dr_definitions")).unwrap(),
        br#"{"queues": ["orders", "invoices"], "vhost": "/"}"#
    );
}
