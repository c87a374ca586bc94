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
             n=c.execute('select count(*) from s').fetchone()[0]; assert 5000 <= n <= 5400, n; print(n)",
        ])
        .current_dir(w.dir.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");

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
