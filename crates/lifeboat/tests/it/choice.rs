//! The right restore point for each resource, with real PostgreSQL clusters and real
//! commands: a failover restores each resource from its own newest complete capture (a
//! backup of one resource is used at once, and the dry run says so); a capture of one
//! discovered item never counts as its whole resource (`restore latest`, failover, the
//! audit); `forget` keeps N complete captures per resource and per database, and lets a
//! dropped database's captures go.

use std::time::Duration;

use crate::servers::PgCluster;
use crate::support::with_pg::{json, lifeboat, run};
use crate::support::*;

fn plan(primary: &PgCluster, dr: &PgCluster) -> String {
    format!(
        r#"[repository]
url = "./repo"
password = {{ env = "LIFEBOAT_PASSWORD" }}

[objectives]
rpo = "1h"
rto = "10m"

[state]
dir = "state"

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.pg]
kind = "postgres"
databases = "*"
exclude = ["postgres"]
at.primary = {{ url = "{primary_url}", password = {{ env = "PG_PASSWORD" }} }}
at.dr = {{ url = "{dr_url}", password = {{ env = "PG_PASSWORD" }} }}

[resources.docs]
kind = "files"
at.primary = {{ path = "primary/docs" }}
at.dr = {{ path = "dr/docs" }}

[resources.flows]
kind = "command"
rpo = "2s"
discover = ["ls", "flows"]
at.primary = {{ capture = ["cat", "flows/{{item}}"] }}
at.dr = {{ apply = ["sh", "-c", "mkdir -p dr/flows && cat > \"dr/flows/$0\"", "{{item}}"] }}
"#,
        primary_url = primary.url("postgres"),
        dr_url = dr.url("postgres"),
    )
}

fn workplace(primary: &PgCluster, dr: &PgCluster) -> Workplace {
    let w = Workplace::new();
    write(&w.path("lifeboat.toml"), plan(primary, dr).as_bytes());
    write(&w.path("primary/docs/readme.txt"), b"the docs");
    write(&w.path("flows/ingest"), b"ingest v1\n");
    write(&w.path("flows/export"), b"export v1\n");
    w.init();
    w
}

/// `lifeboat` with the clusters' password and programs, times in UTC.
fn run_utc(w: &Workplace, args: &[&str], code: i32) -> String {
    let out = lifeboat(w).env("TZ", "UTC").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "lifeboat {args:?}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn id(backup: &serde_json::Value) -> String {
    backup["id"]
        .as_str()
        .expect("a restore point id")
        .to_string()
}

/// The dry run's restore point for each resource.
fn planned_points(w: &Workplace) -> serde_json::Map<String, serde_json::Value> {
    let dry = json(w, &["failover", "--to", "dr", "--dry-run"], 0);
    dry["points"]
        .as_array()
        .expect("the dry run lists a point per resource")
        .iter()
        .map(|p| {
            (
                p["resource"].as_str().unwrap().to_string(),
                p["point"].clone(),
            )
        })
        .collect()
}

#[test]
fn failover_after_a_one_resource_backup_restores_that_capture() {
    let primary = PgCluster::start();
    let dr = PgCluster::start();
    primary.sql("postgres", "CREATE DATABASE shop");
    primary.sql(
        "shop",
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2)",
    );
    let w = workplace(&primary, &dr);
    let everything = json(&w, &["backup"], 0);
    // A new database, then `backup pg` alone: the newest capture of `pg` is in a point that
    // holds nothing else.
    primary.sql("postgres", "CREATE DATABASE late");
    primary.sql(
        "late",
        "CREATE TABLE events (id int); INSERT INTO events VALUES (7)",
    );
    primary.sql("shop", "INSERT INTO orders VALUES (3)");
    let pg_only = json(&w, &["backup", "pg"], 0);

    let points = planned_points(&w);
    assert_eq!(points["pg"], id(&pg_only), "{points:?}");
    assert_eq!(points["docs"], id(&everything), "{points:?}");
    assert_eq!(points["flows"], id(&everything), "{points:?}");
    let human = run_utc(&w, &["failover", "--to", "dr", "--dry-run"], 0);
    let pg_line = human
        .lines()
        .find(|l| l.trim_start().starts_with("pg "))
        .unwrap_or_else(|| panic!("the dry run lists `pg`'s point:\n{human}"));
    assert!(
        pg_line.contains(&id(&pg_only)[..8]) && pg_line.contains("UTC") && pg_line.contains("old"),
        "{human}"
    );
    assert!(
        human.lines().any(|l| l.contains("restore `pg` (wave")
            && l.contains(&format!("from restore point {}", &id(&pg_only)[..8]))),
        "{human}"
    );

    run(&w, &["failover", "--to", "dr", "--yes"], 0);
    assert_eq!(dr.sql("late", "SELECT id FROM events").trim(), "7");
    assert_eq!(dr.sql("shop", "SELECT count(*) FROM orders").trim(), "3");
    assert_eq!(
        std::fs::read(w.path("dr/docs/readme.txt")).unwrap(),
        b"the docs"
    );
    // The run file keeps each resource's point, so a resumed run restores the same.
    let runs: Vec<_> = std::fs::read_dir(w.path("state/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let run_file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs[0].join("run.json")).unwrap()).unwrap();
    assert_eq!(run_file["points"]["pg"]["point"], id(&pg_only));
    assert_eq!(run_file["points"]["docs"]["point"], id(&everything));
    // The achieved RPO is the age of the oldest capture restored.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs[0].join("report.json")).unwrap()).unwrap();
    assert_eq!(report["point"], id(&everything));
}

#[test]
fn a_one_item_backup_does_not_stand_in_for_its_discovered_resource() {
    let primary = PgCluster::start();
    let dr = PgCluster::start();
    let w = workplace(&primary, &dr);
    let everything = json(&w, &["backup"], 0);
    std::thread::sleep(Duration::from_millis(2500));
    write(&w.path("flows/ingest"), b"ingest v2\n");
    write(&w.path("flows/export"), b"export v2\n");
    let one = json(&w, &["backup", "flows/ingest"], 0);

    // The whole resource comes from the last point that captured every item it discovered.
    let out = w.path("out");
    run(
        &w,
        &[
            "restore",
            "latest",
            "--resource",
            "flows",
            "--target",
            out.to_str().unwrap(),
        ],
        0,
    );
    let doc = |item: &str| {
        let dir = out.join("flows").join(item);
        let file = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{} restored: {e}", dir.display()))
            .next()
            .expect("one document")
            .unwrap()
            .path();
        std::fs::read(file).unwrap()
    };
    assert_eq!(doc("ingest"), b"ingest v1\n");
    assert_eq!(doc("export"), b"export v1\n");
    // The item alone comes from its own newest capture.
    let item_out = w.path("item-out");
    let restored = json(
        &w,
        &[
            "restore",
            "latest",
            "--resource",
            "flows/ingest",
            "--target",
            item_out.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(restored["point"], id(&one));

    // Failover and its dry run agree.
    assert_eq!(planned_points(&w)["flows"], id(&everything));

    // The audit: `flows` (rpo 2s) has no complete capture newer than 2.5 s.
    let audit = json(&w, &["audit"], 3);
    let stale: Vec<&serde_json::Value> = audit["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["area"] == "freshness" && f["subject"] == "flows")
        .collect();
    assert_eq!(stale.len(), 1, "{audit:#}");
    let message = stale[0]["message"].as_str().unwrap();
    assert!(
        message.contains("past the rpo") && message.contains(&id(&everything)[..8]),
        "{message}"
    );

    // `points` says where each capture was taken, its time with the zone, and what a point
    // lacks of a discovered resource.
    let listing = run_utc(&w, &["points"], 0);
    let line = listing
        .lines()
        .find(|l| l.starts_with(&id(&one)[..8]))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(
        line.contains(" UTC ") && line.contains(" primary "),
        "{line}"
    );
    assert!(line.contains("flows: 1 of 2 items not captured"), "{line}");
}

#[test]
fn forget_keeps_three_complete_captures_per_resource_and_database() {
    let primary = PgCluster::start();
    let dr = PgCluster::start();
    primary.sql("postgres", "CREATE DATABASE app");
    let w = workplace(&primary, &dr);
    let mut ids = Vec::new();
    let mut backup = |args: &[&str]| {
        let mut all = vec!["backup"];
        all.extend_from_slice(args);
        ids.push(id(&json(&w, &all, 0)));
    };
    backup(&["pg"]);
    backup(&["pg"]);
    primary.sql("postgres", "CREATE DATABASE tmp");
    backup(&["pg"]);
    backup(&["pg"]);
    primary.sql("postgres", "DROP DATABASE tmp");
    backup(&["pg"]);
    backup(&["pg"]);
    primary.sql("postgres", "CREATE DATABASE new");
    backup(&["pg"]);
    backup(&["pg"]);
    // One database alone: complete for `pg/app`, not for `pg`.
    backup(&["pg/app"]);
    assert_eq!(ids.len(), 9);

    let dry = json(&w, &["forget", "--keep-last", "3", "--dry-run"], 0);
    let kept: Vec<&str> = dry["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["keep"] == true)
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    // (Counting from 0.) pg: the three newest whole captures, 5, 6, 7; pg/app: 6, 7, 8;
    // pg/new: 6, 7; the dropped pg/tmp keeps nothing of its own.
    let expected: Vec<&str> = [8, 7, 6, 5].iter().map(|&i| ids[i].as_str()).collect();
    assert_eq!(kept, expected, "{dry:#}");
    // Each group keeps its three newest complete captures, by `last`.
    let mut per_group = std::collections::BTreeMap::<String, usize>::new();
    for p in dry["points"].as_array().unwrap() {
        for g in p["groups"].as_array().unwrap() {
            if g["rules"].as_array().unwrap().iter().any(|r| r == "last") {
                assert_eq!(g["complete"], true, "{p:#}");
                *per_group
                    .entry(g["group"].as_str().unwrap().into())
                    .or_default() += 1;
            }
        }
    }
    assert_eq!(per_group["pg"], 3, "{per_group:?}");
    assert_eq!(per_group["pg/app"], 3, "{per_group:?}");
    assert_eq!(per_group["pg/new"], 2, "{per_group:?}");
    assert!(!per_group.contains_key("pg/tmp"), "{per_group:?}");
    // The dry run says why: the point with `tmp` goes, its database no longer discovered.
    let tmp_point = dry["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == ids[3].as_str())
        .unwrap();
    assert_eq!(tmp_point["keep"], false);
    assert!(
        tmp_point["why"]
            .as_str()
            .unwrap()
            .contains("pg/tmp: no longer discovered"),
        "{tmp_point:#}"
    );
    let human = run_utc(&w, &["forget", "--keep-last", "3", "--dry-run"], 0);
    assert!(human.contains("would forget 5 of 9"), "{human}");
    assert!(human.contains("pg/app: last"), "{human}");

    run(&w, &["forget", "--keep-last", "3"], 0);
    let left: Vec<String> = json(&w, &["points"], 0)
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, [5, 6, 7, 8].map(|i| ids[i].clone()).to_vec());
    // Forgetting again changes nothing: the policy is stable.
    let again = json(&w, &["forget", "--keep-last", "3", "--dry-run"], 0);
    assert_eq!(again["removed"], 0, "{again:#}");
}
