//! What a recovery leaves behind: a file tree restored into a site's binding becomes equal to
//! the restore point within the resource's include/exclude (what the point lacks is removed,
//! what the scope leaves out stays); `restore --target` refuses a non-empty folder unless
//! `--replace` (a mirror) or `--merge` (an overlay); `restore --site --verify` compares and
//! writes nothing.

use std::path::Path;

use crate::servers::PgCluster;
use crate::support::with_pg::{json as pg_json, run as pg_run};
use crate::support::*;

/// The relative paths of every file below `root`, sorted.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn removed_paths(value: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = value["paths"]
        .as_array()
        .unwrap_or_else(|| panic!("no removal list in {value:#}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn failover_and_failback_leave_exactly_the_point_within_scope() {
    let w = Workplace::new();
    write(
        &w.path("lifeboat.toml"),
        br#"[repository]
url = "./repo"
password = { env = "LIFEBOAT_PASSWORD" }

[objectives]
rpo = "1h"
rto = "10m"

[state]
dir = "state"

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"
# A failback stops writes at the DR site before its final capture.
quiesce = [["true"]]

[resources.exports]
kind = "files"
include = ["**/*.csv"]
exclude = ["scratch/**"]
at.primary = { path = "primary/exports" }
at.dr = { path = "dr/exports" }
"#,
    );
    for name in ["a.csv", "b.csv", "c.csv", "sub/d.csv"] {
        write(&w.path(&format!("primary/exports/{name}")), name.as_bytes());
    }
    // Outside the scope: neither captured nor ever removed.
    write(&w.path("primary/exports/notes.txt"), b"not a csv");
    write(&w.path("primary/exports/scratch/tmp.csv"), b"excluded");
    // A stray file already in the DR folder, and one there outside the scope.
    write(&w.path("dr/exports/stray.csv"), b"left from long ago");
    write(&w.path("dr/exports/local.txt"), b"the DR site's own");
    w.init();
    w.run(&["backup"], 0);

    // Changed at the primary after the point: only what the scope captures counts.
    write(&w.path("primary/exports/late.csv"), b"after the point");
    write(&w.path("primary/exports/late.txt"), b"outside the scope");
    write(&w.path("primary/exports/scratch/late.csv"), b"excluded");

    let dry = w.json(&["failover", "--to", "dr", "--dry-run"], 0);
    let restore = dry["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "restore:exports")
        .unwrap();
    assert_eq!(removed_paths(&restore["removes"]), ["stray.csv"], "{dry:#}");
    assert!(
        w.path("dr/exports/stray.csv").exists(),
        "a dry run removes nothing"
    );
    let dry_text = w.run(&["failover", "--to", "dr", "--dry-run"], 0);
    assert!(dry_text.contains("stray.csv"), "{dry_text}");

    let report = w.json(&["failover", "--to", "dr", "--yes"], 0);
    assert_eq!(report["changed_after_point"][0]["paths"], 1, "{report:#}");
    assert_eq!(
        report["changed_after_point"][0]["examples"][0], "late.csv",
        "{report:#}"
    );
    assert_eq!(report["removed"][0]["resource"], "exports", "{report:#}");
    assert_eq!(report["removed"][0]["site"], "dr");
    assert_eq!(
        removed_paths(&report["removed"][0]["removed"]),
        ["stray.csv"]
    );
    assert_eq!(
        files(&w.path("dr/exports")),
        ["a.csv", "b.csv", "c.csv", "local.txt", "sub/d.csv"]
    );

    // Work at the DR site: two files deleted, one written.
    std::fs::remove_file(w.path("dr/exports/a.csv")).unwrap();
    std::fs::remove_file(w.path("dr/exports/sub/d.csv")).unwrap();
    write(&w.path("dr/exports/e.csv"), b"written at dr");

    let out = w.run(&["failback", "--yes"], 0);
    assert!(
        out.contains("`exports` at `primary`") && out.contains("a.csv"),
        "the report names what was removed:\n{out}"
    );
    // The primary's folder equals the DR point within the scope; what the scope leaves out
    // stays; the stray file never travelled.
    assert_eq!(
        files(&w.path("primary/exports")),
        [
            "b.csv",
            "c.csv",
            "e.csv",
            "late.txt",
            "notes.txt",
            "scratch/late.csv",
            "scratch/tmp.csv"
        ]
    );
    assert_eq!(
        std::fs::read(w.path("primary/exports/e.csv")).unwrap(),
        b"written at dr"
    );
    let run_id = std::fs::read_dir(w.path("state/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            std::fs::read_to_string(p.join("report.json")).is_ok_and(|r| r.contains("\"failback\""))
        })
        .expect("the failback's report");
    let back: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_id.join("report.json")).unwrap()).unwrap();
    assert_eq!(
        removed_paths(&back["removed"][0]["removed"]),
        // The DR point lacks the emptied folder too: no file in it is captured.
        ["a.csv", "late.csv", "sub/", "sub/d.csv"],
        "{back:#}"
    );
}

#[test]
fn a_non_empty_target_is_refused_replace_mirrors_and_merge_overlays() {
    let w = Workplace::new();
    write(&w.path("src/a.csv"), b"a from the point");
    write(&w.path("src/b.csv"), b"b from the point");
    write(&w.path("src/sub/c.csv"), b"c from the point");
    w.init();
    w.backup(&w.path("src"));

    let target = w.path("target");
    let reset = || {
        let _ = std::fs::remove_dir_all(&target);
        write(&target.join("a.csv"), b"edited locally");
        write(&target.join("old.csv"), b"an extra file");
        write(&target.join("olddir/x.csv"), b"an extra folder");
    };
    reset();
    let t = target.to_str().unwrap();

    // Refused, naming what is in the way, and nothing is written.
    let err = w.fail(&["restore", "latest", "--target", t], 1);
    assert!(
        err.contains("is not empty") && err.contains("a.csv") && err.contains("old.csv"),
        "{err}"
    );
    assert!(
        err.contains("--replace") && err.contains("--merge"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(target.join("a.csv")).unwrap(),
        b"edited locally"
    );
    assert!(!target.join("b.csv").exists());

    // --merge: today's overlay.
    w.run(&["restore", "latest", "--target", t, "--merge"], 0);
    assert_eq!(
        files(&target),
        ["a.csv", "b.csv", "old.csv", "olddir/x.csv", "sub/c.csv"]
    );
    assert_eq!(
        std::fs::read(target.join("a.csv")).unwrap(),
        b"a from the point"
    );

    // --replace: a mirror, naming what it removed.
    reset();
    let out = w.json(&["restore", "latest", "--target", t, "--replace"], 0);
    let removed = &out["resources"][0]["stats"]["removed"];
    assert_eq!(removed["count"], 3, "{out:#}");
    assert_eq!(
        removed_paths(removed),
        ["old.csv", "olddir/", "olddir/x.csv"]
    );
    assert_eq!(describe(&target), describe(&w.path("src")));
    w.run(&["restore", "latest", "--target", t, "--verify"], 0);

    // A folder where the point has a file goes too, once everything else is restored.
    std::fs::remove_file(target.join("b.csv")).unwrap();
    write(&target.join("b.csv/inner.csv"), b"in the way");
    let merged = w.fail(&["restore", "latest", "--target", t, "--merge"], 1);
    assert!(
        merged.contains("a folder with contents is in the way"),
        "{merged}"
    );
    assert!(
        target.join("b.csv/inner.csv").exists(),
        "an overlay removes nothing"
    );
    let out = w.json(&["restore", "latest", "--target", t, "--replace"], 0);
    assert_eq!(
        removed_paths(&out["resources"][0]["stats"]["removed"]),
        ["b.csv/", "b.csv/inner.csv"]
    );
    assert_eq!(describe(&target), describe(&w.path("src")));

    // An empty or missing folder needs neither.
    let fresh = w.path("fresh");
    w.run(
        &["restore", "latest", "--target", fresh.to_str().unwrap()],
        0,
    );
    assert_eq!(describe(&fresh), describe(&w.path("src")));
}

fn sqlite(path: &Path, script: &str) {
    let done = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             c.execute('PRAGMA journal_mode=WAL'); c.executescript(\"{script}\"); c.commit()"
        ))
        .arg(path)
        .status()
        .expect("python3 runs");
    assert!(done.success());
}

/// Every byte of the SQLite file and its sidecars, for "nothing was written".
fn sqlite_bytes(path: &Path) -> Vec<(String, Option<Vec<u8>>)> {
    ["", "-wal"]
        .iter()
        .map(|suffix| {
            let p = format!("{}{suffix}", path.display());
            (p.clone(), std::fs::read(&p).ok())
        })
        .collect()
}

#[test]
fn verify_at_a_site_compares_every_kind_and_writes_nothing() {
    let primary = PgCluster::start();
    let dr = PgCluster::start();
    primary.sql("postgres", "CREATE DATABASE analytics");
    primary.sql(
        "analytics",
        "CREATE TABLE events (id int primary key); \
         INSERT INTO events SELECT generate_series(1, 43)",
    );
    let w = Workplace::new();
    let plan = format!(
        r#"[repository]
url = "./repo"
password = {{ env = "LIFEBOAT_PASSWORD" }}

[state]
dir = "state"

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.pg]
kind = "postgres"
databases = ["analytics"]
at.primary = {{ url = "{primary}", password = {{ env = "PG_PASSWORD" }} }}
at.dr = {{ url = "{dr}", password = {{ env = "PG_PASSWORD" }} }}

[resources.exports]
kind = "files"
exclude = ["*.tmp"]
at.primary = {{ path = "primary/exports" }}
at.dr = {{ path = "dr/exports" }}

[resources.sessions]
kind = "sqlite"
at.primary = {{ path = "primary/sessions.db" }}
at.dr = {{ path = "dr/sessions.db" }}
"#,
        primary = primary.url("postgres"),
        dr = dr.url("postgres"),
    );
    write(&w.path("lifeboat.toml"), plan.as_bytes());
    write(&w.path("primary/exports/a.csv"), b"a");
    write(&w.path("primary/exports/b.csv"), b"b");
    std::fs::create_dir_all(w.path("primary")).unwrap();
    sqlite(
        &w.path("primary/sessions.db"),
        "CREATE TABLE s (id INTEGER); INSERT INTO s VALUES (1); INSERT INTO s VALUES (2);",
    );
    w.init();
    pg_run(&w, &["backup"], 0);
    pg_run(&w, &["restore", "latest", "--site", "dr", "--replace"], 0);
    // A file the scope leaves out is no difference.
    write(&w.path("dr/exports/scratch.tmp"), b"not captured");

    // Equal: exit 0, every kind compared.
    let same = pg_json(&w, &["restore", "latest", "--site", "dr", "--verify"], 0);
    let names: Vec<&str> = same["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resource"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"pg/analytics")
            && names.contains(&"exports")
            && names.contains(&"sessions"),
        "{same:#}"
    );
    assert!(
        same["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["ok"] == true && r["done"] == "matches"),
        "{same:#}"
    );

    // Work at DR: a row deleted, a SQLite row added, a file changed and one added.
    dr.sql("analytics", "DELETE FROM events WHERE id = 43");
    sqlite(&w.path("dr/sessions.db"), "INSERT INTO s VALUES (3);");
    write(&w.path("dr/exports/a.csv"), b"changed at dr");
    write(&w.path("dr/exports/new.csv"), b"new at dr");
    let exports_before = describe(&w.path("dr/exports"));
    let sqlite_before = sqlite_bytes(&w.path("dr/sessions.db"));

    let out = pg_run(
        &w,
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--resource",
            "pg/analytics",
            "--replace",
            "--verify",
        ],
        3,
    );
    assert!(out.contains("42 rows, the restore point has 43"), "{out}");
    let all = pg_json(
        &w,
        &["restore", "latest", "--site", "dr", "--replace", "--verify"],
        3,
    );
    let text = all.to_string();
    assert!(
        text.contains("a.csv") && text.contains("new.csv") && !text.contains("scratch.tmp"),
        "{all:#}"
    );
    assert!(text.contains("3 rows, the restore point has 2"), "{all:#}");
    let exports = all["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "exports")
        .unwrap();
    assert_eq!(
        exports["differences"].as_array().unwrap().len(),
        2,
        "{all:#}"
    );

    // Nothing was written at the site.
    assert_eq!(dr.sql("analytics", "SELECT count(*) FROM events"), "42");
    assert_eq!(describe(&w.path("dr/exports")), exports_before);
    assert_eq!(sqlite_bytes(&w.path("dr/sessions.db")), sqlite_before);
}

#[test]
fn verify_at_a_site_compares_mariadb_by_dump_and_documents_by_capture() {
    use crate::servers::{MARIADB_PASSWORD, MariaDb};
    let primary = MariaDb::start();
    let dr = MariaDb::start();
    primary.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id int primary key); \
         INSERT INTO shop.orders VALUES (1), (2)",
    );
    let w = Workplace::new();
    let plan = format!(
        r#"[repository]
url = "./repo"
password = {{ env = "LIFEBOAT_PASSWORD" }}

[state]
dir = "state"

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.shopdb]
kind = "mysql"
databases = ["shop"]
at.primary = {{ url = "{primary}", password = {{ env = "MY_PASSWORD" }} }}
at.dr = {{ url = "{dr}", password = {{ env = "MY_PASSWORD" }} }}

[resources.conf]
kind = "command"
at.primary = {{ capture = ["cat", "primary/conf.json"], apply = ["sh", "-c", "cat > primary/conf.json"] }}
at.dr = {{ capture = ["cat", "dr/conf.json"], apply = ["sh", "-c", "mkdir -p dr && cat > dr/conf.json"] }}
"#,
        primary = primary.url(),
        dr = dr.url(),
    );
    write(&w.path("lifeboat.toml"), plan.as_bytes());
    write(&w.path("primary/conf.json"), br#"{"queues": 2}"#);
    let env = [("MY_PASSWORD", MARIADB_PASSWORD)];
    w.init();
    w.run_env(&env, &["backup"], 0);
    w.run_env(&env, &["restore", "latest", "--site", "dr", "--replace"], 0);

    // Another server holding the same data matches (the dumps' comments name the host).
    let same = w.json_env(&env, &["restore", "latest", "--site", "dr", "--verify"], 0);
    assert!(
        same["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["done"] == "matches"),
        "{same:#}"
    );

    dr.sql("INSERT INTO shop.orders VALUES (3)");
    write(&w.path("dr/conf.json"), br#"{"queues": 3}"#);
    let out = w.run_env(
        &env,
        &["restore", "latest", "--site", "dr", "--replace", "--verify"],
        3,
    );
    assert!(
        out.contains("shopdb/shop") && out.contains("its dump now"),
        "{out}"
    );
    assert!(
        out.contains("conf") && out.contains("differs from byte"),
        "{out}"
    );
    // Nothing was written at the site.
    assert_eq!(dr.sql("SELECT count(*) FROM shop.orders"), "3");
    assert_eq!(
        std::fs::read(w.path("dr/conf.json")).unwrap(),
        br#"{"queues": 3}"#
    );
}
