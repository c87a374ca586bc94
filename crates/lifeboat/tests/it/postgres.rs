//! PostgreSQL resources against two real clusters: the primary's written to by pgbench while
//! lifeboat captures it, restored into the DR cluster, compared by schema, row counts and
//! roles; discovery of new databases; rename and replace; bad input.

use std::process::{Child, Stdio};

use crate::servers::{PG_PASSWORD, PgCluster, free_port};
use crate::support::*;

fn plan(primary: &str, dr: &str, extra: &str) -> String {
    format!(
        r#"[repository]
url = "./repo"
password = {{ env = "LIFEBOAT_PASSWORD" }}

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

{extra}
[resources.db]
kind = "postgres"
exclude = ["scratch"]
at.primary = {{ url = "{primary}", password = {{ env = "PG_PASSWORD" }} }}
at.dr = {{ url = "{dr}", password = {{ env = "PG_PASSWORD" }} }}
verify = [{{ sql = "select sum(abalance) from pgbench_accounts", database = "shop" }}]
"#
    )
}

fn pg_workplace(primary: &PgCluster, dr: &PgCluster, extra: &str) -> Workplace {
    let w = Workplace::new();
    write(
        &w.path("lifeboat.toml"),
        plan(&primary.url("postgres"), &dr.url("postgres"), extra).as_bytes(),
    );
    w.init();
    w
}

fn lifeboat(w: &Workplace, args: &[&str], code: i32) -> serde_json::Value {
    let bin = crate::servers::pg_bin();
    let env = [
        ("PG_PASSWORD", PG_PASSWORD),
        ("LIFEBOAT_PG_BIN", bin.to_str().expect("a UTF-8 path")),
    ];
    w.json_env(&env, args, code)
}

/// pgbench's standard transactions, from two clients, until killed.
fn pgbench_writing(cluster: &PgCluster, db: &str) -> Child {
    cluster
        .tool("pgbench")
        .args(["-n", "-c", "2", "-T", "600", db])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgbench (Debian package postgresql-contrib / postgresql-15) starts")
}

fn fill(cluster: &PgCluster, db: &str, scale: &str) {
    let out = cluster
        .tool("pgbench")
        .args(["-i", "-q", "-s", scale, db])
        .output()
        .expect("pgbench runs");
    assert!(out.status.success(), "pgbench -i: {out:?}");
}

fn resource<'a>(point: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    point["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no resource {name} in {point:#}"))
}

#[test]
fn databases_and_roles_round_trip_while_pgbench_writes() {
    let primary = PgCluster::start();
    let dr = PgCluster::start();
    primary.sql(
        "postgres",
        "CREATE ROLE app LOGIN PASSWORD 'app-secret'; CREATE DATABASE shop OWNER app; \
         CREATE DATABASE scratch",
    );
    fill(&primary, "shop", "2");
    primary.sql("shop", "ALTER TABLE pgbench_history OWNER TO app");
    let w = pg_workplace(&primary, &dr, "");

    let mut writer = pgbench_writing(&primary, "shop");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let backup = lifeboat(&w, &["backup"], 0);
    let _ = writer.kill();
    let _ = writer.wait();

    let point = &backup["point"];
    let names: Vec<&str> = point["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["db", "db/postgres", "db/shop"],
        "scratch is excluded"
    );
    let shop = &resource(point, "db/shop")["database"];
    let history_rows = shop["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.pgbench_history")
        .expect("pgbench_history counted")["rows"]
        .as_u64()
        .unwrap();
    assert!(history_rows > 0, "pgbench was writing during the capture");
    assert_eq!(
        shop["checks"][0]["sql"],
        "select sum(abalance) from pgbench_accounts"
    );

    // Restore the shop (its server's roles come along) into the DR cluster.
    let restored = lifeboat(
        &w,
        &["restore", "latest", "--site", "dr", "--resource", "db/shop"],
        0,
    );
    let done: Vec<&str> = restored["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resource"].as_str().unwrap())
        .collect();
    assert_eq!(done, ["db", "db/shop"]);
    assert_eq!(primary.schema("shop"), dr.schema("shop"));
    assert_eq!(
        dr.sql("shop", "SELECT count(*) FROM pgbench_history"),
        history_rows.to_string(),
        "the row count at the snapshot, not at some later moment"
    );
    assert_eq!(
        dr.sql(
            "postgres",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'"
        ),
        "app"
    );
    // The role came across with its password: it logs in on the DR cluster.
    let login = dr
        .tool("psql")
        .env("PGUSER", "app")
        .env("PGPASSWORD", "app-secret")
        .args(["-X", "-A", "-t", "-d", "shop", "-c", "SELECT current_user"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&login.stdout).trim(),
        "app",
        "{login:?}"
    );

    // What was restored matches the manifest; a change on the DR side is found.
    let verified = lifeboat(&w, &["verify", "--site", "dr", "--resource", "db/shop"], 0);
    assert_eq!(
        verified["databases"][0]["differences"],
        serde_json::json!([])
    );
    assert_eq!(verified["databases"][0]["tables"], 4);
    dr.sql("shop", "DELETE FROM pgbench_tellers WHERE tid = 1");
    let verified = lifeboat(&w, &["verify", "--site", "dr", "--resource", "db/shop"], 3);
    let differences = verified["databases"][0]["differences"].to_string();
    assert!(
        differences.contains("public.pgbench_tellers"),
        "{differences}"
    );

    // A database created after the plan was written is protected by the next backup.
    primary.sql("postgres", "CREATE DATABASE late");
    primary.sql(
        "late",
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 42)",
    );
    let second = lifeboat(&w, &["backup"], 0);
    let late = resource(&second["point"], "db/late");
    assert_eq!(late["status"], "complete");
    assert_eq!(late["database"]["tables"][0]["rows"], 42);
    let points = lifeboat(&w, &["points"], 0);
    assert_eq!(points.as_array().unwrap().len(), 2);
}

#[test]
fn rename_and_replace_never_merge_into_an_existing_database() {
    let primary = PgCluster::start();
    let dr = PgCluster::start();
    primary.sql("postgres", "CREATE DATABASE shop");
    fill(&primary, "shop", "1");
    let w = pg_workplace(&primary, &dr, "");
    // One database of the server (its roles come along).
    let backup = lifeboat(&w, &["backup", "db/shop"], 0);
    let names: Vec<&str> = backup["point"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db", "db/shop"]);

    // A drill restores under another name, next to the original.
    lifeboat(
        &w,
        &[
            "restore",
            "latest",
            "--site",
            "primary",
            "--resource",
            "db/shop",
            "--rename",
            "shop=shop_check",
            "--jobs",
            "1",
        ],
        0,
    );
    assert_eq!(
        primary.sql("shop_check", "SELECT count(*) FROM pgbench_accounts"),
        "100000"
    );
    lifeboat(
        &w,
        &[
            "verify",
            "--site",
            "primary",
            "--resource",
            "db/shop",
            "--rename",
            "shop=shop_check",
        ],
        0,
    );

    // The database exists: refused, and left exactly as it was.
    primary.sql("shop", "DELETE FROM pgbench_accounts WHERE aid > 10");
    let refused = lifeboat(
        &w,
        &[
            "restore",
            "latest",
            "--site",
            "primary",
            "--resource",
            "db/shop",
        ],
        1,
    );
    // Refused before anything is applied: one error for the whole restore.
    let error = refused["error"].to_string() + &refused["causes"].to_string();
    assert!(
        error.contains("database `shop`") && error.contains("--replace"),
        "{error}"
    );
    assert_eq!(
        primary.sql("shop", "SELECT count(*) FROM pgbench_accounts"),
        "10"
    );
    let databases = primary.sql(
        "postgres",
        "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
    );
    assert!(
        !databases.contains("lifeboat_restore"),
        "no staging database left: {databases}"
    );

    // With --replace it is replaced as a whole (here by a parallel pg_restore).
    lifeboat(
        &w,
        &[
            "restore",
            "latest",
            "--site",
            "primary",
            "--resource",
            "db/shop",
            "--replace",
            "--jobs",
            "2",
        ],
        0,
    );
    assert_eq!(
        primary.sql("shop", "SELECT count(*) FROM pgbench_accounts"),
        "100000"
    );

    // A rename naming no database being restored is a mistake, caught before anything runs.
    let out = w
        .cmd()
        .env("PG_PASSWORD", PG_PASSWORD)
        .args([
            "restore",
            "latest",
            "--site",
            "dr",
            "--resource",
            "db/shop",
            "--rename",
            "shpo=x",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no database `shpo`"),
        "{out:?}"
    );
}

#[test]
fn unreachable_server_wrong_password_and_a_dropped_database_fail_only_their_part() {
    let primary = PgCluster::start();
    let dr = PgCluster::start();
    primary.sql("postgres", "CREATE DATABASE shop; CREATE DATABASE doomed");
    primary.sql("shop", "CREATE TABLE t (id int); INSERT INTO t VALUES (1)");
    let closed = free_port();
    // Plan order: the files resource, then a command that drops `doomed` after the
    // databases were discovered, then the server.
    let extra = format!(
        r#"[resources.docs]
kind = "files"
at.primary = {{ path = "docs" }}

[resources.dropper]
kind = "command"
at.primary = {{ capture = ["{psql}", "-X", "-q", "-h", "127.0.0.1", "-p", "{port}", "-U", "postgres", "-d", "postgres", "-c", "DROP DATABASE doomed"] }}

[resources.gone]
kind = "postgres"
at.primary = {{ url = "postgres://postgres@127.0.0.1:{closed}/postgres", password = {{ env = "PG_PASSWORD" }} }}

[resources.locked]
kind = "postgres"
at.primary = {{ url = "{url}", password = {{ env = "WRONG_PASSWORD" }} }}
"#,
        psql = primary.bin.join("psql").display(),
        port = primary.port,
        url = primary.url("postgres"),
    );
    let w = pg_workplace(&primary, &dr, &extra);
    write(&w.path("docs/readme.txt"), b"still captured");
    let out = w
        .cmd()
        .env("PG_PASSWORD", PG_PASSWORD)
        .env("PGPASSWORD", PG_PASSWORD)
        .env("WRONG_PASSWORD", "not-it")
        .args(["--json", "backup"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "incomplete: {out:?}");
    let point: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let point = &point["point"];
    assert_eq!(resource(point, "docs")["status"], "complete");
    assert_eq!(resource(point, "db/shop")["status"], "complete");
    let doomed = resource(point, "db/doomed")["error"].as_str().unwrap();
    assert!(doomed.contains("`doomed` no longer exists"), "{doomed}");
    let gone = resource(point, "gone")["error"].as_str().unwrap();
    assert!(
        gone.contains(&format!("127.0.0.1:{closed}")) && gone.to_lowercase().contains("connect"),
        "{gone}"
    );
    let locked = resource(point, "locked")["error"].as_str().unwrap();
    assert!(
        locked.contains("password authentication failed"),
        "{locked}"
    );
    assert!(
        !out.stdout.windows(6).any(|w| w == b"not-it"),
        "a secret was printed"
    );

    // The complete parts restore; the failed ones say why.
    let restored = lifeboat(
        &w,
        &["restore", "latest", "--site", "dr", "--resource", "db/shop"],
        0,
    );
    assert_eq!(restored["resources"][1]["ok"], true);
    assert_eq!(dr.sql("shop", "SELECT count(*) FROM t"), "1");
}

#[test]
fn a_fresh_servers_empty_postgres_database_is_restored_into_without_replace() {
    let primary = PgCluster::start();
    let dr = PgCluster::start();
    primary.sql(
        "postgres",
        "CREATE TABLE settings (k text PRIMARY KEY, v text); \
         INSERT INTO settings VALUES ('mode', 'primary')",
    );
    let w = pg_workplace(&primary, &dr, "");
    lifeboat(&w, &["backup"], 0);
    // Every fresh server has an empty `postgres` database: the whole server restores.
    let restored = lifeboat(&w, &["restore", "latest", "--site", "dr"], 0);
    assert!(
        restored["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["ok"] == true),
        "{restored:#}"
    );
    assert_eq!(dr.sql("postgres", "SELECT v FROM settings"), "primary");
    // Now it holds what a user made: refused as any other existing database.
    dr.sql("postgres", "UPDATE settings SET v = 'dr'");
    let again = lifeboat(
        &w,
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--resource",
            "db/postgres",
        ],
        1,
    );
    assert!(
        again.to_string().contains("exists; restore with --replace"),
        "{again:#}"
    );
    assert_eq!(dr.sql("postgres", "SELECT v FROM settings"), "dr");
}
