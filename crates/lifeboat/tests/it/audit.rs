//! `lifeboat audit` against a real PostgreSQL server and real folders: an unprotected
//! database and folder, a resource past its rpo and a version drift are found; a fully
//! protected, fresh plan passes.

use crate::servers::{PG_PASSWORD, PgCluster};
use crate::support::*;

fn plan(cluster: &PgCluster, databases: &str, fast_rpo: &str) -> String {
    format!(
        r#"[repository]
url = "./repo"
password = {{ env = "LIFEBOAT_PASSWORD" }}

[objectives]
rpo = "1h"

[state]
dir = "state"

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.db]
kind = "postgres"
databases = {databases}
at.primary = {{ url = "{url}", password = {{ env = "PG_PASSWORD" }} }}
at.dr = {{ url = "{url}", password = {{ env = "PG_PASSWORD" }} }}

[resources.docs]
kind = "files"
at.primary = {{ path = "srv/docs" }}
at.dr = {{ path = "dr/docs" }}

[resources.app]
kind = "sqlite"
at.primary = {{ path = "srv/app.db" }}
at.dr = {{ path = "dr/app.db" }}

[resources.fast]
kind = "files"
rpo = "{fast_rpo}"
at.primary = {{ path = "srv/fast" }}
at.dr = {{ path = "dr/fast" }}

[versions]
at.primary = {{ command = ["echo", "1.0"] }}
at.dr = {{ command = ["cat", "dr-version"] }}

[[inventory]]
name = "databases"
postgres = {{ url = "{url}", password = {{ env = "PG_PASSWORD" }} }}

[[inventory]]
name = "folders"
directory = "srv"
exclude = ["tmp"]
"#,
        url = cluster.url("postgres")
    )
}

fn audit(w: &Workplace, args: &[&str], code: i32) -> serde_json::Value {
    let bin = crate::servers::pg_bin();
    let env = [
        ("PG_PASSWORD", PG_PASSWORD),
        ("LIFEBOAT_PG_BIN", bin.to_str().unwrap()),
    ];
    w.json_env(&env, args, code)
}

#[test]
fn audit_finds_the_unprotected_the_stale_and_the_drifting_then_passes() {
    let cluster = PgCluster::start();
    cluster.sql("postgres", "CREATE DATABASE shop; CREATE DATABASE extra");
    let w = Workplace::new();
    write(
        &w.path("lifeboat.toml"),
        plan(&cluster, r#"["shop"]"#, "1s").as_bytes(),
    );
    for dir in ["srv/docs", "srv/fast", "srv/loose", "srv/tmp"] {
        write(&w.path(&format!("{dir}/a.txt")), b"a");
    }
    write(&w.path("dr-version"), b"1.1\n");
    // A SQLite database with the journals SQLite keeps beside it: all of it is the resource.
    let made = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3; c=sqlite3.connect('srv/app.db'); c.execute('create table t(x)'); c.commit()",
        ])
        .current_dir(w.dir.path())
        .status()
        .unwrap();
    assert!(made.success());
    for sidecar in ["srv/app.db-wal", "srv/app.db-shm"] {
        write(&w.path(sidecar), b"");
    }
    w.init();
    audit(&w, &["backup"], 0);
    std::thread::sleep(std::time::Duration::from_millis(1500));

    let report = audit(&w, &["audit"], 3);
    let findings: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {} {} {}",
                f["severity"], f["area"], f["subject"], f["message"]
            )
        })
        .collect();
    let has = |area: &str, needle: &str| {
        findings
            .iter()
            .any(|f| f.contains(&format!("\"{area}\"")) && f.contains(needle))
    };
    assert!(has("coverage", "`extra`"), "{findings:#?}");
    assert!(!has("coverage", "`shop`"), "{findings:#?}");
    assert!(has("coverage", "srv/loose"), "{findings:#?}");
    assert!(!has("coverage", "app.db"), "{findings:#?}");
    assert!(
        !has("coverage", "srv/tmp") && !has("coverage", "srv/docs"),
        "{findings:#?}"
    );
    assert!(
        has("freshness", "past the rpo") && has("freshness", "\"fast\""),
        "{findings:#?}"
    );
    assert!(!has("freshness", "\"docs\""), "{findings:#?}");
    assert!(has("drift", "dr = 1.1"), "{findings:#?}");
    assert!(has("freshness", "never verified"), "{findings:#?}");
    assert!(has("drill", "never drilled"), "{findings:#?}");

    // Everything protected, fresh and in step: no finding fails the audit.
    write(
        &w.path("lifeboat.toml"),
        plan(&cluster, r#""*""#, "1h").as_bytes(),
    );
    std::fs::remove_dir_all(w.path("srv/loose")).unwrap();
    write(&w.path("dr-version"), b"1.0\n");
    audit(&w, &["backup"], 0);
    audit(&w, &["check"], 0);
    audit(&w, &["drill"], 0);
    let report = audit(&w, &["audit", "--fail-on", "warning"], 0);
    assert_eq!(report["failed"], false, "{report:#}");
    let bin = crate::servers::pg_bin();
    let markdown = w.run_env(
        &[
            ("PG_PASSWORD", PG_PASSWORD),
            ("LIFEBOAT_PG_BIN", bin.to_str().unwrap()),
        ],
        &["audit", "--markdown"],
        0,
    );
    assert!(markdown.starts_with("# lifeboat audit"), "{markdown}");
}
