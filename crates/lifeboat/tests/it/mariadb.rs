//! MariaDB resources against two real servers: captured while a writer commits, restored
//! into the DR server, compared by schema and by an invariant every committed transaction
//! keeps; discovery, rename, replace and bad input.

use std::process::{Child, Stdio};

use crate::servers::{MARIADB_PASSWORD, MariaDb, free_port};
use crate::support::*;

fn plan(primary: &MariaDb, dr: &MariaDb, closed: u16) -> String {
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
at.primary = {{ url = "{primary}", password = {{ env = "MY_PASSWORD" }} }}
at.dr = {{ url = "{dr}", password = {{ env = "MY_PASSWORD" }} }}

[resources.locked]
kind = "mysql"
databases = ["shop"]
at.primary = {{ url = "{primary}", password = {{ env = "WRONG_PASSWORD" }} }}

[resources.gone]
kind = "mysql"
at.primary = {{ url = "mysql://root@127.0.0.1:{closed}" }}
"#,
        primary = primary.url(),
        dr = dr.url(),
    )
}

fn lifeboat(w: &Workplace, args: &[&str], code: i32) -> serde_json::Value {
    let env = [
        ("MY_PASSWORD", MARIADB_PASSWORD),
        ("WRONG_PASSWORD", "not-the-password"),
    ];
    w.json_env(&env, args, code)
}

fn resource<'a>(point: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    point["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no resource {name} in {point:#}"))
}

/// Commits transactions that each add one order and one line, until killed.
fn writing(server: &MariaDb) -> Child {
    let client = server.client();
    let program = client.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = client
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while true; do \"{program}\" {} -e \"START TRANSACTION; \
             INSERT INTO shop.orders (note) VALUES ('written'); \
             INSERT INTO shop.order_lines (order_id) VALUES (LAST_INSERT_ID()); COMMIT\"; done",
            args.join(" ")
        ))
        .env("MYSQL_PWD", MARIADB_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs the writer")
}

#[test]
fn databases_and_accounts_round_trip_while_a_writer_commits() {
    let primary = MariaDb::start();
    let dr = MariaDb::start();
    primary.sql(
        "CREATE USER app@'%' IDENTIFIED BY 'app-secret'; \
         CREATE DATABASE shop CHARACTER SET utf8mb4 COLLATE utf8mb4_bin; \
         GRANT ALL ON shop.* TO app@'%'; \
         CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(40)); \
         CREATE TABLE shop.order_lines (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT); \
         INSERT INTO shop.orders (note) SELECT concat('seed ', seq) FROM shop.seq_1_to_5000; \
         CREATE VIEW shop.open_orders AS SELECT id FROM shop.orders WHERE note <> 'done'; \
         CREATE PROCEDURE shop.count_orders() SELECT count(*) FROM shop.orders;",
    );
    let w = Workplace::new();
    write(
        &w.path("lifeboat.toml"),
        plan(&primary, &dr, free_port()).as_bytes(),
    );
    w.init();

    let mut writer = writing(&primary);
    std::thread::sleep(std::time::Duration::from_millis(700));
    let backup = lifeboat(&w, &["backup"], 4);
    let _ = writer.kill();
    let _ = writer.wait();
    let point = &backup["point"];
    for name in ["shopdb", "shopdb/shop"] {
        assert_eq!(resource(point, name)["status"], "complete", "{point:#}");
    }
    let shop = resource(point, "shopdb/shop");
    assert_eq!(shop["database"]["collate"], "utf8mb4_bin");
    let locked = resource(point, "locked")["error"].as_str().unwrap();
    assert!(locked.contains("Access denied"), "{locked}");
    assert!(!backup.to_string().contains("not-the-password"));
    let gone = resource(point, "gone")["error"].as_str().unwrap();
    assert!(gone.contains("Can't connect"), "{gone}");

    // Restore into the DR server: accounts first, then the database.
    let restored = lifeboat(
        &w,
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--resource",
            "shopdb/shop",
        ],
        0,
    );
    assert_eq!(restored["resources"][0]["resource"], "shopdb");
    assert_eq!(primary.schema("shop"), dr.schema("shop"));
    let orders: u64 = dr.sql("SELECT count(*) FROM shop.orders").parse().unwrap();
    let lines: u64 = dr
        .sql("SELECT count(*) FROM shop.order_lines")
        .parse()
        .unwrap();
    assert!(lines > 0, "the writer committed during the capture");
    assert_eq!(
        orders - 5000,
        lines,
        "one consistent snapshot: every transaction whole"
    );
    let login = dr
        .client()
        .env("MYSQL_PWD", "app-secret")
        .args([
            "-u",
            "app",
            "--batch",
            "--skip-column-names",
            "-e",
            "SELECT current_user()",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&login.stdout).starts_with("app@"),
        "{login:?}"
    );
    assert_eq!(
        dr.sql("SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'shop'"),
        "utf8mb4_bin"
    );

    // Existing database: refused and untouched; a rename restores beside it; --replace
    // replaces it.
    dr.sql("DELETE FROM shop.order_lines");
    let refused = lifeboat(
        &w,
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--resource",
            "shopdb/shop",
        ],
        1,
    );
    // Refused before anything is applied: one error for the whole restore.
    let error = refused["error"].to_string() + &refused["causes"].to_string();
    assert!(
        error.contains("database `shop`") && error.contains("--replace"),
        "{error}"
    );
    assert_eq!(dr.sql("SELECT count(*) FROM shop.order_lines"), "0");
    lifeboat(
        &w,
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--resource",
            "shopdb/shop",
            "--rename",
            "shop=shop_check",
        ],
        0,
    );
    assert_eq!(
        dr.sql("SELECT count(*) FROM shop_check.order_lines"),
        lines.to_string()
    );
    lifeboat(
        &w,
        &[
            "restore",
            "latest",
            "--site",
            "dr",
            "--resource",
            "shopdb/shop",
            "--replace",
        ],
        0,
    );
    assert_eq!(
        dr.sql("SELECT count(*) FROM shop.order_lines"),
        lines.to_string()
    );

    // A database created later is protected by the next backup.
    primary
        .sql("CREATE DATABASE late; CREATE TABLE late.t (id INT); INSERT INTO late.t VALUES (7)");
    let second = lifeboat(&w, &["backup", "shopdb"], 0);
    assert_eq!(
        resource(&second["point"], "shopdb/late")["status"],
        "complete"
    );
}
