//! Runbooks end to end: a plan with a PostgreSQL database (two real clusters), a file tree
//! and a configuration document fails over to the DR site and back; runs killed with SIGKILL
//! at several steps resume to the same result; `--dry-run` changes nothing; `--only`
//! restores only what it names; a failing health check stops the run, resumable.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::servers::PgCluster;
use crate::support::with_pg::{json, lifeboat, run};
use crate::support::*;

/// A command that, while `hold/<gate>` exists, marks `reached/<gate>` and waits: the test's
/// way to stop a run at a known step.
fn gate(name: &str, then: &str) -> String {
    format!(
        r#"["sh", "-c", "if [ -e hold/{name} ]; then touch reached/{name}; sleep 120; fi; {then}"]"#
    )
}

fn plan(primary: &PgCluster, dr: &PgCluster, check: &str) -> String {
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
on_demand = true
provision = [{provision}]
start = [{start}]
decommission = [["sh", "-c", "echo gone > dr/decommissioned"]]
env = {{ REGION = "far" }}
quiesce = [["sh", "-c", "echo quiesced > dr-quiesced"]]

[[sites.dr.checks]]
name = "db-port"
tcp = "127.0.0.1:{dr_port}"

[[sites.dr.checks]]
name = "orders"
sql = "select count(*) from orders"
resource = "db"
database = "shop"
expect = "3"

[[sites.dr.checks]]
name = "app"
command = {check}
retries = 2
retry_interval = "100ms"

[[sites.primary.checks]]
name = "db-port"
tcp = "127.0.0.1:{primary_port}"

[resources.db]
kind = "postgres"
databases = ["shop"]
at.primary = {{ url = "{primary_url}", password = {{ env = "PG_PASSWORD" }} }}
at.dr = {{ url = "{dr_url}", password = {{ env = "PG_PASSWORD" }} }}
verify = [{{ sql = "select count(*) > 0 from orders", database = "shop", expect = "t" }}]

[resources.docs]
kind = "files"
at.primary = {{ path = "primary/docs" }}
at.dr = {{ path = "dr/docs" }}

[resources.conf]
kind = "command"
depends_on = ["db"]
at.primary = {{ capture = ["cat", "primary/conf.json"], apply = ["sh", "-c", "cat > primary/conf.json"] }}
at.dr = {{ capture = ["cat", "dr/conf.json"], apply = {apply} }}

[traffic]
kind = "command"
at.primary = {{ run = [["sh", "-c", "echo primary > traffic"]] }}
at.dr = {{ run = [["sh", "-c", "echo dr > traffic"]] }}

[fence]
run = [["sh", "-c", "echo fenced > fence-mark"]]

[[notify]]
command = ["sh", "-c", "cat >> notifications"]
"#,
        provision = gate(
            "provision",
            "mkdir -p dr && echo \\\"$LIFEBOAT_SITE $REGION\\\" > dr/provisioned"
        ),
        start = gate("start", "touch dr/started"),
        apply = gate("apply", "mkdir -p dr && cat > dr/conf.json"),
        dr_port = dr.port,
        primary_port = primary.port,
        primary_url = primary.url("postgres"),
        dr_url = dr.url("postgres"),
    )
}

struct Stack {
    w: Workplace,
    primary: PgCluster,
    dr: PgCluster,
}

fn stack(check: &str) -> Stack {
    let primary = PgCluster::start();
    let dr = PgCluster::start();
    primary.sql("postgres", "CREATE DATABASE shop");
    primary.sql(
        "shop",
        "CREATE TABLE orders (id int primary key); INSERT INTO orders VALUES (1), (2), (3)",
    );
    let w = Workplace::new();
    write(
        &w.path("lifeboat.toml"),
        plan(&primary, &dr, check).as_bytes(),
    );
    write(&w.path("primary/docs/readme.txt"), b"the docs");
    write(&w.path("primary/docs/sub/page.txt"), b"a page");
    write(&w.path("primary/conf.json"), br#"{"queues": 2}"#);
    std::fs::create_dir_all(w.path("hold")).unwrap();
    std::fs::create_dir_all(w.path("reached")).unwrap();
    w.init();
    Stack { w, primary, dr }
}

/// What the DR site holds, for comparing runs.
fn dr_site(s: &Stack) -> Vec<String> {
    // Each stack wrote its own files (other mtimes): the docs are compared with the source.
    let mut out = vec![format!(
        "docs restored whole: {}",
        describe(&s.w.path("dr/docs")) == describe(&s.w.path("primary/docs"))
    )];
    for file in ["dr/conf.json", "dr/provisioned", "dr/started", "traffic"] {
        out.push(format!(
            "{file}: {}",
            std::fs::read_to_string(s.w.path(file))
                .unwrap_or_else(|_| "(missing)".into())
                .trim()
        ));
    }
    out.push(format!(
        "orders: {}",
        s.dr.sql(
            "shop",
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM orders"
        )
    ));
    out
}

#[test]
fn failover_then_failback_moves_the_stack_and_measures_itself() {
    let s = stack(r#"["test", "-f", "dr/conf.json"]"#);
    run(&s.w, &["backup"], 0);
    assert_eq!(json(&s.w, &["status"], 0)["state"], "ActiveNoDR");

    // A dry run lists the steps and changes nothing.
    let dry = json(&s.w, &["failover", "--to", "dr", "--dry-run"], 0);
    let ids: Vec<&str> = dry["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "fence:primary",
            "provision:dr",
            "restore:db",
            "restore:docs",
            "restore:conf",
            "start:dr",
            "checks:dr",
            "switch-traffic:dr",
            "confirm-traffic:dr",
            "notify"
        ]
    );
    assert!(!s.w.path("dr").exists() && !s.w.path("traffic").exists());
    assert!(!s.w.path("state/state.json").exists());

    // Not on a terminal and no --yes: refused.
    let out = lifeboat(&s.w)
        .args(["failover", "--to", "dr"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));

    // Written at the primary after the restore point: the report tells what is missing.
    write(&s.w.path("primary/docs/late.txt"), b"after the point");
    let report = json(&s.w, &["failover", "--to", "dr", "--yes"], 0);
    assert_eq!(report["changed_after_point"][0]["resource"], "docs");
    assert_eq!(report["changed_after_point"][0]["paths"], 1, "{report:#}");
    std::fs::remove_file(s.w.path("primary/docs/late.txt")).unwrap();
    assert_eq!(report["kind"], "failover");
    assert_eq!(report["rto_met"], true);
    assert!(report["achieved_rpo_ms"].as_u64().is_some());
    assert_eq!(report["steps"].as_array().unwrap().len(), 10);
    let restored_db = report["steps"][2]["detail"].as_str().unwrap();
    assert!(
        restored_db.contains("verify #1: answered `t`"),
        "{restored_db}"
    );
    assert_eq!(
        std::fs::read_to_string(s.w.path("dr/provisioned"))
            .unwrap()
            .trim(),
        "dr far",
        "site commands see the site's facts"
    );
    assert_eq!(
        std::fs::read_to_string(s.w.path("traffic")).unwrap().trim(),
        "dr"
    );
    assert_eq!(
        std::fs::read_to_string(s.w.path("fence-mark"))
            .unwrap()
            .trim(),
        "fenced"
    );
    assert_eq!(
        describe(&s.w.path("dr/docs")),
        describe(&s.w.path("primary/docs"))
    );
    assert_eq!(
        std::fs::read_to_string(s.w.path("dr/conf.json")).unwrap(),
        r#"{"queues": 2}"#
    );
    assert_eq!(s.dr.sql("shop", "SELECT count(*) FROM orders"), "3");
    assert!(
        std::fs::read_to_string(s.w.path("notifications"))
            .unwrap()
            .contains("\"failover\"")
    );
    let status = json(&s.w, &["status"], 0);
    assert_eq!(status["state"], "ActiveDR");
    assert_eq!(status["epoch"], 2);

    // Backups now capture at the DR site; a second failover is refused.
    let refused = lifeboat(&s.w)
        .args(["failover", "--to", "dr", "--yes"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already the active site"));

    // Work happens at the DR site, then the primary comes back.
    s.dr.sql("shop", "INSERT INTO orders VALUES (4)");
    write(&s.w.path("dr/docs/new.txt"), b"written at dr");
    write(&s.w.path("dr/conf.json"), br#"{"queues": 3}"#);
    std::fs::write(s.w.path("traffic"), "dr\n").unwrap();
    let back = json(&s.w, &["failback", "--yes"], 0);
    assert_eq!(back["to"], "primary");
    assert_eq!(back["quiesce"]["site"], "dr");
    assert_eq!(back["quiesce"]["confirmed"], true);
    assert!(s.w.path("dr-quiesced").exists());
    assert_eq!(
        std::fs::read_to_string(s.w.path("traffic")).unwrap().trim(),
        "primary"
    );
    assert_eq!(s.primary.sql("shop", "SELECT count(*) FROM orders"), "4");
    assert_eq!(
        std::fs::read_to_string(s.w.path("primary/docs/new.txt")).unwrap(),
        "written at dr"
    );
    assert_eq!(
        std::fs::read_to_string(s.w.path("primary/conf.json")).unwrap(),
        r#"{"queues": 3}"#
    );
    assert_eq!(
        std::fs::read_to_string(s.w.path("dr/decommissioned"))
            .unwrap()
            .trim(),
        "gone",
        "the on-demand site is torn down"
    );
    let status = json(&s.w, &["status"], 0);
    assert_eq!(
        (status["state"].as_str(), status["epoch"].as_u64()),
        (Some("ActiveNoDR"), Some(3))
    );

    // A planned move: the primary's latest state goes to the DR site.
    // (The DR site's SQL check expects three orders.)
    s.primary.sql("shop", "DELETE FROM orders WHERE id = 2");
    let moved = json(&s.w, &["switchover", "--to", "dr", "--yes"], 0);
    // Provisioned while the primary still serves, then the primary's writes stop (its
    // fence, for want of a `quiesce`) before its final capture.
    assert_eq!(moved["steps"][1]["step"], "quiesce:primary");
    assert_eq!(moved["steps"][2]["step"], "backup:primary");
    assert_eq!(
        std::fs::read_to_string(s.w.path("traffic")).unwrap().trim(),
        "dr"
    );
    assert_eq!(json(&s.w, &["status"], 0)["epoch"], 4);
    assert_eq!(
        s.dr.sql(
            "shop",
            "SELECT string_agg(id::text, ',' ORDER BY id) FROM orders"
        ),
        "1,3,4"
    );
}

/// Runs a failover in its own process group, stops it with SIGKILL once it reaches `gate`,
/// then resumes it.
fn killed_at_then_resumed(s: &Stack, gate: &str) {
    std::fs::write(s.w.path("hold").join(gate), "").unwrap();
    let mut child = lifeboat(&s.w)
        .args(["failover", "--to", "dr", "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let reached = s.w.path("reached").join(gate);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reached.exists() {
        assert!(Instant::now() < deadline, "the run never reached {gate}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {gate}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let group = format!("-{}", child.id());
    std::process::Command::new("kill")
        .args(["-KILL", "--", &group])
        .status()
        .unwrap();
    let _ = child.wait();
    std::fs::remove_file(s.w.path("hold").join(gate)).unwrap();
    let status = json(&s.w, &["status"], 0);
    assert!(
        status["state"].as_str().unwrap().contains("in progress"),
        "{status:#}"
    );
    run(&s.w, &["resume"], 0);
}

#[test]
fn runs_killed_at_several_steps_resume_to_the_same_result() {
    // The reference: one uninterrupted run.
    let reference = stack(r#"["test", "-f", "dr/conf.json"]"#);
    run(&reference.w, &["backup"], 0);
    json(&reference.w, &["failover", "--to", "dr", "--yes"], 0);
    let expected = dr_site(&reference);

    for gate in ["provision", "apply", "start"] {
        let s = stack(r#"["test", "-f", "dr/conf.json"]"#);
        run(&s.w, &["backup"], 0);
        killed_at_then_resumed(&s, gate);
        assert_eq!(dr_site(&s), expected, "killed at {gate}");
        let status = json(&s.w, &["status"], 0);
        assert_eq!(status["state"], "ActiveDR", "killed at {gate}");
        let journal = status["last_run"]["journal"].to_string();
        assert!(journal.contains("\"finished\""), "{journal}");
        // What finished before the kill was not done again.
        let provisions = status["last_run"]["journal"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["step"] == "provision:dr" && r["event"] == "finished")
            .count();
        assert_eq!(provisions, 1, "killed at {gate}");
    }
}

#[test]
fn only_dry_run_and_a_failing_check() {
    let s = stack(r#"["test", "-f", "ready"]"#);
    run(&s.w, &["backup"], 0);
    // The DR server already holds what the SQL check asks for.
    s.dr.sql("postgres", "CREATE DATABASE shop");
    s.dr.sql(
        "shop",
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2), (3)",
    );

    // --only restores that resource and what it depends on.
    let dry = json(
        &s.w,
        &["failover", "--to", "dr", "--only", "conf", "--dry-run"],
        0,
    );
    assert_eq!(dry["waves"], serde_json::json!([["db"], ["conf"]]));

    // The health check fails: the run stops there, naming the step, the check and its
    // output, and stays resumable.
    let out = lifeboat(&s.w)
        .args(["failover", "--to", "dr", "--only", "docs", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("checks:dr") && stderr.contains("`app`") && stderr.contains("3 attempt"),
        "{stderr}"
    );
    assert!(stderr.contains("lifeboat resume"), "{stderr}");
    assert!(Path::new(&s.w.path("dr/docs/readme.txt")).exists());
    assert!(
        !s.w.path("dr/conf.json").exists(),
        "--only docs restores nothing else"
    );
    assert!(!s.w.path("traffic").exists(), "traffic did not move");
    let status = json(&s.w, &["status"], 0);
    assert_eq!(status["last_run"]["remaining"][0], "checks:dr");

    // Fixed: resume finishes from the failed step.
    write(&s.w.path("ready"), b"");
    run(&s.w, &["resume"], 0);
    assert_eq!(
        std::fs::read_to_string(s.w.path("traffic")).unwrap().trim(),
        "dr"
    );
    let status = json(&s.w, &["status"], 0);
    assert_eq!(status["state"], "ActiveDR");
    assert!(
        String::from_utf8_lossy(&lifeboat(&s.w).arg("resume").output().unwrap().stderr)
            .contains("no run is under way")
    );
}

#[test]
fn dns_traffic_moves_with_a_signed_update_and_a_wrong_key_changes_nothing() {
    let named = crate::servers::Named::start();
    let w = Workplace::new();
    write(
        &w.path("lifeboat.toml"),
        format!(
            r#"[repository]
url = "./repo"
password = {{ env = "LIFEBOAT_PASSWORD" }}

[objectives]
rto = "30s"

[state]
dir = "state"

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"
quiesce = [["touch", "dr-quiesced"]]

[resources.docs]
kind = "files"
at.primary = {{ path = "primary/docs" }}
at.dr = {{ path = "dr/docs" }}

[traffic]
kind = "dns"
server = "127.0.0.1:{port}"
zone = "example.test."
name = "app.example.test."
ttl = 60
tsig = {{ name = "lifeboat", algorithm = "hmac-sha256", secret = {{ file = "tsig.secret" }} }}
at.primary = {{ address = "192.0.2.10" }}
at.dr = {{ address = "198.51.100.10" }}
"#,
            port = named.port
        )
        .as_bytes(),
    );
    write(&w.path("primary/docs/a.txt"), b"a");
    // A wrong key first: the server refuses, nothing changes, the run waits to be resumed.
    write(
        &w.path("tsig.secret"),
        b"d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktMzI=\n",
    );
    w.init();
    run(&w, &["backup"], 0);
    let out = lifeboat(&w)
        .args(["failover", "--to", "dr", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("switch-traffic:dr") && stderr.contains("TSIG"),
        "{stderr}"
    );
    assert!(!stderr.contains("d3Jvbmct"), "the secret was printed");
    assert_eq!(named.dig("app.example.test"), ["192.0.2.10"]);

    // The right key: resume switches with one signed update and confirms it.
    write(
        &w.path("tsig.secret"),
        format!("{}\n", crate::servers::TSIG_SECRET).as_bytes(),
    );
    let resumed = run(&w, &["resume"], 0);
    assert!(
        resumed.contains("switched from 192.0.2.10 to 198.51.100.10"),
        "{resumed}"
    );
    assert!(
        resumed.contains("warning"),
        "a 60 s TTL exceeds a 30 s RTO: {resumed}"
    );
    assert_eq!(named.dig("app.example.test"), ["198.51.100.10"]);

    // And back.
    json(&w, &["failback", "--yes"], 0);
    assert_eq!(named.dig("app.example.test"), ["192.0.2.10"]);
}
