//! Database servers restored at DR as an application needs them: its accounts with table-,
//! column- and routine-level grants and default roles, views across databases, the account
//! lifeboat connects as untouched, a refused restore changing nothing, and a `--replace`
//! whose load fails keeping the old database.

use crate::servers::{MARIADB_PASSWORD, MariaDb, PG_PASSWORD, PgCluster};
use crate::support::*;

const PRIMARY_ROOT: &str = "primary-root-secret";

fn my_plan(primary: &MariaDb, dr: &MariaDb) -> String {
    format!(
        r#"[repository]
url = "./repo"
password = {{ env = "LIFEBOAT_PASSWORD" }}

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.shopdb]
kind = "mysql"
exclude = ["skipped"]
at.primary = {{ url = "{primary}", password = {{ env = "PRIMARY_PASSWORD" }} }}
at.dr = {{ url = "{dr}", password = {{ env = "MY_PASSWORD" }} }}
"#,
        primary = primary.url(),
        dr = dr.url(),
    )
}

fn my_lifeboat(w: &Workplace, args: &[&str], code: i32) -> serde_json::Value {
    let env = [
        ("MY_PASSWORD", MARIADB_PASSWORD),
        ("PRIMARY_PASSWORD", PRIMARY_ROOT),
    ];
    w.json_env(&env, args, code)
}

/// Runs `sql` on `server` as `user`; the output, or the error.
fn as_user(server: &MariaDb, user: &str, password: &str, sql: &str) -> Result<String, String> {
    let out = server
        .client()
        .env("MYSQL_PWD", password)
        .args(["-u", user, "--batch", "--skip-column-names", "-e", sql])
        .output()
        .expect("mariadb runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// What the DR server says of root: its password hashes and every grant of each host's
/// account.
fn root_state(dr: &MariaDb) -> String {
    let mut state =
        dr.sql("SELECT User, Host, Password FROM mysql.user WHERE User = 'root' ORDER BY Host");
    for host in ["localhost", "127.0.0.1"] {
        state.push('\n');
        state.push_str(&dr.sql(&format!("SHOW GRANTS FOR root@'{host}'")));
    }
    state
}

#[test]
fn mariadb_accounts_grants_and_cross_database_views_come_back_usable() {
    let primary = MariaDb::start();
    let dr = MariaDb::start();
    primary.sql(
        "CREATE DATABASE zzz; \
         CREATE TABLE zzz.t (id INT PRIMARY KEY, secret VARCHAR(20), pub VARCHAR(20)); \
         INSERT INTO zzz.t VALUES (1, 'hidden', 'shown'), (2, 'hidden', 'also shown'); \
         CREATE TABLE zzz.r (id INT); INSERT INTO zzz.r VALUES (7); \
         CREATE TABLE zzz.big (b LONGBLOB); \
         INSERT INTO zzz.big VALUES (repeat('x', 3 * 1024 * 1024)); \
         CREATE TRIGGER zzz.stamp BEFORE INSERT ON zzz.t FOR EACH ROW SET NEW.pub = 'trigger'; \
         CREATE PROCEDURE zzz.count_t() SELECT count(*) FROM zzz.t; \
         CREATE DATABASE aaa; \
         CREATE VIEW aaa.v AS SELECT id, pub FROM zzz.t; \
         CREATE ROLE reader; GRANT SELECT ON zzz.r TO reader; \
         CREATE USER app@'%' IDENTIFIED BY 'app-secret'; \
         GRANT SELECT (pub) ON zzz.t TO app@'%'; \
         GRANT SELECT ON aaa.v TO app@'%'; \
         GRANT EXECUTE ON PROCEDURE zzz.count_t TO app@'%'; \
         GRANT reader TO app@'%'; SET DEFAULT ROLE reader FOR app@'%'; \
         CREATE USER 'odd;name'@'%' IDENTIFIED BY 'x'; GRANT SELECT ON `a;b`.* TO 'odd;name'@'%'; \
         GRANT PROXY ON app@'%' TO 'odd;name'@'%'; \
         CREATE DATABASE skipped; CREATE TABLE skipped.t (c INT); \
         GRANT SELECT (c) ON skipped.t TO app@'%'; \
         GRANT reader TO root@localhost; \
         ALTER USER root@localhost IDENTIFIED BY 'primary-root-secret'; \
         ALTER USER root@'127.0.0.1' IDENTIFIED BY 'primary-root-secret';",
    );
    let w = Workplace::new();
    write(&w.path("lifeboat.toml"), my_plan(&primary, &dr).as_bytes());
    w.init();
    my_lifeboat(&w, &["backup"], 0);

    let root_before = root_state(&dr);
    let restored = my_lifeboat(&w, &["restore", "latest", "--site", "dr"], 0);
    let resources = restored["resources"].as_array().unwrap();
    assert!(resources.iter().all(|r| r["ok"] == true), "{restored:#}");
    let accounts = resources
        .iter()
        .find(|r| r["resource"] == "shopdb")
        .unwrap();
    let warnings: Vec<&str> = accounts["warnings"]
        .as_array()
        .expect("warnings listed")
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("'root'@'localhost'")),
        "{warnings:#?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("PROXY")),
        "{warnings:#?}"
    );
    // A grant on a table the restore did not bring is refused by the server, and only it.
    let refused: Vec<&&str> = warnings
        .iter()
        .filter(|w| w.starts_with("refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{warnings:#?}");
    assert!(
        refused[0].contains("`skipped`.`t`") && refused[0].contains("doesn't exist"),
        "{warnings:#?}"
    );

    // The application logs in and reads what it may, and only that.
    let app = |sql: &str| as_user(&dr, "app", "app-secret", sql);
    assert_eq!(
        app("SELECT pub FROM zzz.t ORDER BY pub").unwrap(),
        "also shown\nshown"
    );
    assert!(
        app("SELECT secret FROM zzz.t").is_err(),
        "a column-level grant"
    );
    assert_eq!(
        app("SELECT count(*) FROM aaa.v").unwrap(),
        "2",
        "the view across databases"
    );
    assert_eq!(
        app("CALL zzz.count_t()").unwrap(),
        "2",
        "a routine-level grant"
    );
    assert_eq!(
        app("SELECT id FROM zzz.r").unwrap(),
        "7",
        "through its default role"
    );
    assert_eq!(
        dr.sql("SELECT count(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'zzz'"),
        "1"
    );
    assert_eq!(
        dr.sql("SELECT count(*) FROM mysql.user WHERE User = 'odd;name'"),
        "1"
    );
    // The account lifeboat connects as neither gained nor lost anything.
    assert_eq!(root_state(&dr), root_before);

    // A refused restore (the databases exist) changes nothing, not even accounts.
    dr.sql("ALTER USER app@'%' IDENTIFIED BY 'changed-at-dr'; INSERT INTO zzz.r VALUES (99)");
    let refused = my_lifeboat(&w, &["restore", "latest", "--site", "dr"], 1);
    let error =
        refused["error"].as_str().unwrap_or_default().to_string() + &refused["causes"].to_string();
    assert!(error.contains("--replace"), "{refused:#}");
    assert!(as_user(&dr, "app", "changed-at-dr", "SELECT 1").is_ok());
    assert_eq!(root_state(&dr), root_before);

    // A load that fails under --replace (a row larger than the server accepts) keeps the old
    // database exactly, and says why in a line.
    dr.sql("SET GLOBAL max_allowed_packet = 1024 * 1024");
    let failed = my_lifeboat(
        &w,
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--replace",
            "--resource",
            "shopdb/zzz",
        ],
        1,
    );
    let zzz = failed["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "shopdb/zzz")
        .unwrap();
    let message = zzz["error"].as_str().unwrap();
    assert!(message.len() < 700, "a short reason: {message}");
    assert!(!message.contains("0x7878"), "{message}");
    assert!(message.contains("max_allowed_packet"), "{message}");
    assert_eq!(dr.sql("SELECT id FROM zzz.r ORDER BY id"), "7\n99");
    assert_eq!(
        dr.sql("SELECT count(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'zzz'"),
        "1"
    );
    assert_eq!(dr.sql("SHOW DATABASES LIKE 'lifeboat%'"), "");

    // A swap that cannot happen (a session locks an old table past the server's
    // lock_wait_timeout) leaves the old database with its tables and its triggers.
    dr.sql("SET GLOBAL max_allowed_packet = 64 * 1024 * 1024; SET GLOBAL lock_wait_timeout = 2");
    let mut holder = dr
        .client()
        .args(["--batch", "--unbuffered", "--skip-column-names"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut holding = holder.stdin.take().unwrap();
    std::io::Write::write_all(&mut holding, b"LOCK TABLES zzz.r READ; SELECT 'locked';\n").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let failed = my_lifeboat(
        &w,
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--replace",
            "--resource",
            "shopdb/zzz",
        ],
        1,
    );
    drop(holding);
    let _ = holder.wait();
    assert!(failed.to_string().contains("swapping"), "{failed:#}");
    assert_eq!(dr.sql("SELECT id FROM zzz.r ORDER BY id"), "7\n99");
    dr.sql("INSERT INTO zzz.t VALUES (3, 'x', 'y')");
    assert_eq!(
        dr.sql("SELECT pub FROM zzz.t WHERE id = 3"),
        "trigger",
        "the trigger put back"
    );
    assert_eq!(dr.sql("SHOW DATABASES LIKE 'lifeboat%'"), "");
    dr.sql("SET GLOBAL lock_wait_timeout = 86400");

    // With room for the row, the staged replace swaps the restore point in.
    my_lifeboat(&w, &["restore", "latest", "--site", "dr", "--replace"], 0);
    assert_eq!(dr.sql("SELECT id FROM zzz.r"), "7");
    assert_eq!(
        dr.sql("SELECT length(b) FROM zzz.big"),
        (3 * 1024 * 1024).to_string()
    );
    assert_eq!(app("SELECT count(*) FROM aaa.v").unwrap(), "2");
    assert_eq!(app("CALL zzz.count_t()").unwrap(), "2");
    assert_eq!(
        dr.sql("SELECT count(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = 'zzz'"),
        "1"
    );
    assert_eq!(dr.sql("SHOW DATABASES LIKE 'lifeboat%'"), "");
    assert_eq!(root_state(&dr), root_before);
    // Nothing more refused when everything was there already.
    let again = my_lifeboat(&w, &["restore", "latest", "--site", "dr", "--replace"], 0);
    assert_eq!(
        again.to_string().matches("\"refused `").count(),
        1,
        "{again:#}"
    );
}

fn pg_plan(primary: &PgCluster, dr: &PgCluster) -> String {
    format!(
        r#"[repository]
url = "./repo"
password = {{ env = "LIFEBOAT_PASSWORD" }}

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.db]
kind = "postgres"
at.primary = {{ url = "{primary}", password = {{ env = "PG_PASSWORD" }} }}
at.dr = {{ url = "{dr}", password = {{ env = "PG_PASSWORD" }} }}
"#,
        primary = primary.url("postgres"),
        dr = dr.url("postgres"),
    )
}

fn pg_lifeboat(w: &Workplace, args: &[&str], code: i32) -> serde_json::Value {
    let bin = crate::servers::pg_bin();
    let env = [
        ("PG_PASSWORD", PG_PASSWORD),
        ("LIFEBOAT_PG_BIN", bin.to_str().expect("a UTF-8 path")),
    ];
    w.json_env(&env, args, code)
}

/// The roles `postgres` is a member of, and its password hash.
fn postgres_state(dr: &PgCluster) -> String {
    dr.sql(
        "postgres",
        "SELECT coalesce(string_agg(r.rolname, ',' ORDER BY r.rolname), '') || ' ' || \
         (SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres') \
         FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid \
         JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = 'postgres'",
    )
}

#[test]
fn postgres_roles_memberships_and_settings_come_back_without_touching_the_connecting_role() {
    let primary = PgCluster::start();
    let dr = PgCluster::start();
    primary.sql(
        "postgres",
        "CREATE ROLE reader NOLOGIN; CREATE ROLE app LOGIN PASSWORD 'app-secret'; \
         GRANT reader TO app; GRANT reader TO postgres; \
         CREATE ROLE \"odd; \"\"role\" LOGIN PASSWORD 'x;y'; \
         CREATE DATABASE shop",
    );
    primary.sql(
        "shop",
        "CREATE TABLE orders (id int, note text); INSERT INTO orders VALUES (1, 'first'); \
         GRANT SELECT ON orders TO reader; ALTER ROLE app SET work_mem TO '8MB'",
    );
    let w = Workplace::new();
    write(&w.path("lifeboat.toml"), pg_plan(&primary, &dr).as_bytes());
    w.init();
    pg_lifeboat(&w, &["backup"], 0);

    let before = postgres_state(&dr);
    let restored = pg_lifeboat(&w, &["restore", "latest", "--site", "dr"], 0);
    let accounts = restored["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "db")
        .unwrap();
    assert_eq!(
        postgres_state(&dr),
        before,
        "the connecting role gained nothing"
    );
    assert!(
        accounts["warnings"].to_string().contains("role `postgres`"),
        "{restored:#}"
    );
    let out = dr
        .tool("psql")
        .env("PGUSER", "app")
        .env("PGPASSWORD", "app-secret")
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            "shop",
            "-c",
            "SELECT note FROM orders",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "first",
        "{out:?}"
    );
    assert_eq!(
        dr.sql(
            "postgres",
            "SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting s \
             JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = 'app'"
        ),
        "work_mem=8MB",
        "the role's settings"
    );
    assert_eq!(
        postgres_state(&dr),
        before,
        "the connecting role gained nothing"
    );

    // A refused restore changes nothing.
    dr.sql("postgres", "ALTER ROLE app PASSWORD 'changed-at-dr'");
    let hash = dr.sql(
        "postgres",
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'",
    );
    pg_lifeboat(&w, &["restore", "latest", "--site", "dr"], 1);
    assert_eq!(
        dr.sql(
            "postgres",
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'app'"
        ),
        hash
    );

    // A failed load under --replace keeps the old database (the staging one is dropped): a
    // table in a tablespace the DR server cannot have (its folder is the primary's).
    let place = tempfile::tempdir().unwrap();
    let uid = String::from_utf8(
        std::process::Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let gid = String::from_utf8(
        std::process::Command::new("id")
            .args(["-g", "postgres"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::os::unix::fs::chown(
        place.path(),
        uid.trim().parse().ok(),
        gid.trim().parse().ok(),
    )
    .unwrap();
    primary.sql(
        "postgres",
        &format!(
            "CREATE TABLESPACE fast LOCATION '{}'",
            place.path().display()
        ),
    );
    primary.sql("shop", "CREATE TABLE hot (id int) TABLESPACE fast");
    pg_lifeboat(&w, &["backup"], 0);
    dr.sql("shop", "INSERT INTO orders VALUES (99, 'dr only')");
    let failed = pg_lifeboat(
        &w,
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--replace",
            "--resource",
            "db/shop",
        ],
        1,
    );
    let shop = failed["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "db/shop")
        .unwrap();
    assert!(shop["ok"] == false, "{failed:#}");
    // The tablespace the server refuses is one warning; the rest of the accounts applied.
    let accounts = failed["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "db")
        .unwrap();
    assert_eq!(accounts["ok"], true, "{failed:#}");
    assert!(
        accounts["warnings"]
            .to_string()
            .contains("refused `CREATE TABLESPACE fast"),
        "{failed:#}"
    );
    let message = shop["error"].as_str().unwrap();
    assert!(
        message.contains("tablespace") && message.len() < 700 && !message.contains("Command was"),
        "{message}"
    );
    assert_eq!(
        dr.sql("shop", "SELECT id FROM orders ORDER BY id"),
        "1\n99",
        "the old database, as it was"
    );
    assert_eq!(
        dr.sql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'lifeboat%'"
        ),
        "0"
    );
}
