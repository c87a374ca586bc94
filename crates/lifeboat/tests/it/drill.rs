//! Drills end to end, against real PostgreSQL clusters: a drill of a database, a file tree
//! and a configuration document restores into a sandbox (a temporary PostgreSQL server it
//! starts itself), verifies, measures RTO and RPO, and leaves nothing behind; a damaged
//! restore point fails the drill naming the resource, and the teardown still happens; a drill
//! killed mid-way is torn down by `--cleanup`, one stopped by SIGTERM tears itself down; the
//! HTML report renders in headless Chromium; `audit` reports the last drill.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::servers::PgCluster;
use crate::support::with_pg::{json, lifeboat, run};
use crate::support::*;

fn plan(primary: &PgCluster, dr: &PgCluster, rto: &str, drill_site: &str) -> String {
    format!(
        r#"[repository]
url = "./repo"
password = {{ env = "LIFEBOAT_PASSWORD" }}

[objectives]
rpo = "1h"
rto = "{rto}"

[state]
dir = "state"

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"
{drill_site}
[resources.db]
kind = "postgres"
databases = ["shop"]
at.primary = {{ url = "{primary_url}", password = {{ env = "PG_PASSWORD" }} }}
at.dr = {{ url = "{dr_url}", password = {{ env = "PG_PASSWORD" }} }}
verify = [{{ sql = "select count(*) from orders", database = "shop" }}]

[resources.docs]
kind = "files"
at.primary = {{ path = "primary/docs" }}
at.dr = {{ path = "dr/docs" }}

[resources.conf]
kind = "command"
depends_on = ["db"]
at.primary = {{ capture = ["cat", "primary/conf.json"] }}
at.dr = {{ apply = ["sh", "-c", "cat > dr/conf.json"] }}
verify = [{{ command = ["sh", "-c", "grep -q queues \"$LIFEBOAT_AT_CONF\"/document" ] }}]
"#,
        primary_url = primary.url("postgres"),
        dr_url = dr.url("postgres"),
    )
}

struct Stack {
    w: Workplace,
    primary: PgCluster,
    dr: PgCluster,
}

fn stack(rto: &str, drill_site: &str) -> Stack {
    let primary = PgCluster::start();
    let dr = PgCluster::start();
    primary.sql("postgres", "CREATE DATABASE shop");
    primary.sql(
        "shop",
        "CREATE TABLE orders (id int primary key); INSERT INTO orders VALUES (1), (2), (3); \
         CREATE TABLE customers (id int); INSERT INTO customers VALUES (7)",
    );
    let w = Workplace::new();
    write(
        &w.path("lifeboat.toml"),
        plan(&primary, &dr, rto, drill_site).as_bytes(),
    );
    write(&w.path("primary/docs/readme.txt"), b"the docs");
    write(&w.path("primary/docs/sub/page.txt"), b"a page");
    write(&w.path("primary/conf.json"), br#"{"queues": 2}"#);
    std::fs::create_dir_all(w.path("sandboxes")).unwrap();
    std::fs::create_dir_all(w.path("hold")).unwrap();
    std::fs::create_dir_all(w.path("reached")).unwrap();
    w.init();
    Stack { w, primary, dr }
}

/// Processes whose command line mentions `needle` (a sandbox's path).
fn processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

fn step<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == id)
        .unwrap_or_else(|| panic!("no step {id} in {report:#}"))
}

fn resource<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == name)
        .unwrap_or_else(|| panic!("no resource {name} in {report:#}"))
}

fn databases(cluster: &PgCluster) -> String {
    cluster.sql(
        "postgres",
        "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database",
    )
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("a headless browser: Debian package chromium")
}

/// What headless Chromium made of a page after its scripts ran.
fn rendered(page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_drill_restores_into_a_sandbox_verifies_measures_and_leaves_nothing_behind() {
    let s = stack("10m", "");
    run(&s.w, &["backup"], 0);
    // After the restore point: one more order, one changed page.
    s.primary.sql("shop", "INSERT INTO orders VALUES (4)");
    write(&s.w.path("primary/docs/sub/page.txt"), b"a newer page");
    let primary_before = databases(&s.primary);
    let dr_before = databases(&s.dr);
    let sandboxes = s.w.path("sandboxes");

    let report = json(
        &s.w,
        &["drill", "--sandbox", sandboxes.to_str().unwrap()],
        0,
    );
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["declared_site"], false);
    for id in [
        "provision:drill",
        "restore:db",
        "restore:docs",
        "restore:conf",
        "verify:db",
        "verify:docs",
        "verify:conf",
        "changes:primary",
        "teardown",
    ] {
        assert_eq!(step(&report, id)["status"], "ok", "{id}: {report:#}");
    }
    assert!(
        step(&report, "provision:drill")["detail"]
            .as_str()
            .unwrap()
            .contains("temporary server"),
        "{report:#}"
    );
    // The configuration document waits for the database it depends on.
    assert!(
        step(&report, "restore:conf")["started_ms"].as_u64()
            >= step(&report, "restore:db")["started_ms"].as_u64()
    );
    let rto = report["achieved_rto_ms"].as_u64().expect("an achieved RTO");
    let verify_end = step(&report, "verify:conf")["started_ms"].as_u64().unwrap()
        + step(&report, "verify:conf")["duration_ms"]
            .as_u64()
            .unwrap();
    assert!(rto >= verify_end, "{report:#}");
    assert_eq!(report["rto_met"], true);
    assert_eq!(report["rpo_met"], true);
    assert!(report["achieved_rpo_ms"].as_u64().unwrap() < 3_600_000);

    let db = resource(&report, "db");
    let verified = db["verified"].to_string();
    assert!(
        verified.contains("row counts of 2 tables and 1 recorded check match"),
        "{db:#}"
    );
    assert_eq!(db["changes"]["count"], 1, "one table grew: {db:#}");
    assert!(
        db["changes"]["examples"].to_string().contains("orders"),
        "{db:#}"
    );
    let docs = resource(&report, "docs");
    assert!(
        docs["verified"].to_string().contains("every file matches"),
        "{docs:#}"
    );
    assert_eq!(docs["changes"]["count"], 1, "{docs:#}");
    assert!(
        resource(&report, "conf")["verified"]
            .to_string()
            .contains("verify #1"),
        "{report:#}"
    );

    // Nothing left: no sandbox, no server, no database or file at a live site.
    assert_eq!(entries(&sandboxes), Vec::<PathBuf>::new());
    assert_eq!(processes_mentioning(&sandboxes), Vec::<String>::new());
    assert_eq!(databases(&s.primary), primary_before);
    assert_eq!(databases(&s.dr), dr_before);
    assert!(!s.w.path("dr").exists(), "the DR site was touched");
    assert_eq!(report["teardown_complete"], true);

    // The report, as a page a browser renders: every step on the timeline, the trend.
    let id = report["drill"].as_str().unwrap();
    let page = s.w.path(&format!("state/drills/{id}/report.html"));
    let dom = rendered(&page);
    let steps = report["steps"].as_array().unwrap().len();
    assert!(
        dom.contains(&format!("data-timeline-steps=\"{steps}\"")),
        "the timeline did not render its {steps} steps:\n{}",
        &dom[..dom.len().min(400)]
    );
    assert!(
        dom.contains("data-trend-points=\"2\""),
        "one drill, two charts"
    );
    assert!(dom.contains("PASSED"));

    // A second drill: the history and the trend hold both.
    json(&s.w, &["drill", "--skip-changes"], 0);
    let history = json(&s.w, &["drill", "--history"], 0);
    assert_eq!(
        history["drills"].as_array().unwrap().len(),
        2,
        "{history:#}"
    );
    let human = run(&s.w, &["drill", "--history"], 0);
    assert_eq!(
        human.lines().filter(|l| l.contains("passed")).count(),
        2,
        "{human}"
    );
}

#[test]
fn a_drill_of_a_damaged_restore_point_names_the_resource_and_still_tears_down() {
    let w = Workplace::new();
    write(
        &w.path("lifeboat.toml"),
        br#"[repository]
url = "./repo"
password = { env = "LIFEBOAT_PASSWORD" }

[state]
dir = "state"

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.docs]
kind = "files"
at.primary = { path = "primary/docs" }
at.dr = { path = "dr/docs" }

[resources.conf]
kind = "command"
at.primary = { capture = ["cat", "primary/conf.json"] }
verify = [{ command = ["sh", "-c", "grep -q replicas \"$LIFEBOAT_AT_CONF\"/document"] }]
"#,
    );
    write(&w.path("primary/docs/big.bin"), &noise(3 << 20, 9));
    write(&w.path("primary/conf.json"), br#"{"queues": 2}"#);
    w.init();
    w.run(&["backup"], 0);
    let sandboxes = w.path("sandboxes");
    std::fs::create_dir_all(&sandboxes).unwrap();

    // Kept, in a sandbox given relative to here: `--cleanup` finds it from anywhere.
    let kept = w.json(
        &[
            "drill",
            "--only",
            "docs",
            "--keep",
            "--sandbox",
            "sandboxes",
        ],
        0,
    );
    assert_eq!(kept["kept"], true, "{kept:#}");
    assert_eq!(entries(&sandboxes).len(), 1);
    std::fs::create_dir_all(w.path("elsewhere")).unwrap();
    let plan_file = w.path("lifeboat.toml");
    let out = w
        .process()
        .current_dir(w.path("elsewhere"))
        .args(["--plan", plan_file.to_str().unwrap(), "drill", "--cleanup"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(entries(&sandboxes), Vec::<PathBuf>::new());

    // A verification that does not hold: the drill fails and says which resource and why.
    let report = w.json(&["drill", "--sandbox", sandboxes.to_str().unwrap()], 3);
    assert_eq!(report["passed"], false);
    let problems = report["problems"].to_string();
    assert!(problems.contains("`conf`: verify #1 failed"), "{problems}");
    assert!(!problems.contains("`docs`"), "{problems}");
    assert_eq!(report["teardown_complete"], true, "{report:#}");
    assert_eq!(entries(&sandboxes), Vec::<PathBuf>::new());

    // Damage every pack of data: the restore fails, named with its resource.
    for pack in w.objects("data") {
        let mut bytes = std::fs::read(&pack).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&pack, bytes).unwrap();
    }
    let report = w.json(
        &[
            "drill",
            "--only",
            "docs",
            "--sandbox",
            sandboxes.to_str().unwrap(),
        ],
        3,
    );
    let problems = report["problems"].to_string();
    assert!(problems.contains("`docs`: restore failed"), "{problems}");
    assert_eq!(step(&report, "restore:docs")["status"], "failed");
    assert_eq!(step(&report, "verify:docs")["status"], "not_run");
    assert_eq!(report["achieved_rto_ms"], serde_json::Value::Null);
    assert_eq!(report["teardown_complete"], true, "{report:#}");
    assert_eq!(step(&report, "teardown")["status"], "ok");
    assert_eq!(entries(&sandboxes), Vec::<PathBuf>::new());
    // Human output names the problem too, and the exit code says the drill failed.
    let out = w.run(&["drill", "--only", "docs"], 3);
    assert!(
        out.contains("FAILED") && out.contains("restore failed"),
        "{out}"
    );
}

/// A declared drill site whose `start` leaves a daemon running, and, while `hold/start` exists,
/// waits in a grandchild that ignores SIGTERM.
const DRILL_SITE: &str = r#"
[sites.rehearsal]
role = "drill"
provision = [["sh", "-c", "mkdir -p rehearsal && echo up > rehearsal/provisioned"]]
start = [["sh", "-c", '''
sh -c 'while true; do sleep 1; done # drill-daemon-marker' > /dev/null 2>&1 &
if [ -e hold/start ]; then
  touch reached/start
  sh -c "trap '' TERM HUP INT; while true; do sleep 1; done # drill-waiter-marker"
fi''']]
decommission = [["sh", "-c", "rm -rf rehearsal && echo gone > decommissioned"]]

[[sites.rehearsal.checks]]
name = "docs-there"
command = ["test", "-f", "rehearsal/docs/readme.txt"]
"#;

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_killed_drill_is_torn_down_by_cleanup_and_a_stopped_one_by_itself() {
    let s = stack("10m", DRILL_SITE);
    // The docs bind at the declared drill site; the database and document are derived.
    let plan = std::fs::read_to_string(s.w.path("lifeboat.toml"))
        .unwrap()
        .replace(
            "at.dr = { path = \"dr/docs\" }",
            "at.dr = { path = \"dr/docs\" }\nat.rehearsal = { path = \"rehearsal/docs\" }",
        );
    write(&s.w.path("lifeboat.toml"), plan.as_bytes());
    run(&s.w, &["backup"], 0);
    let sandboxes = s.w.path("sandboxes");
    let dr_before = databases(&s.dr);

    // A whole drill at the declared site first: provision, start, checks, decommission.
    let report = json(
        &s.w,
        &["drill", "--sandbox", sandboxes.to_str().unwrap()],
        0,
    );
    assert_eq!(report["site"], "rehearsal");
    assert_eq!(report["declared_site"], true);
    assert_eq!(
        step(&report, "checks:rehearsal")["status"],
        "ok",
        "{report:#}"
    );
    assert_eq!(
        std::fs::read_to_string(s.w.path("decommissioned"))
            .unwrap()
            .trim(),
        "gone"
    );
    assert!(!s.w.path("rehearsal").exists());
    assert_eq!(
        processes_mentioning(Path::new("drill-daemon-marker")),
        Vec::<String>::new(),
        "the daemon `start` left is stopped at teardown"
    );
    std::fs::remove_file(s.w.path("decommissioned")).unwrap();

    // Killed while its application starts: the temporary server and the site stay up...
    write(&s.w.path("hold/start"), b"");
    let mut child = lifeboat(&s.w)
        .args(["drill", "--sandbox", sandboxes.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for(&s.w.path("reached/start"), "the drill's start step");
    child.kill().unwrap();
    child.wait().unwrap();
    // A killed drill cannot stop its site's commands: that is for the site to clean up.
    for marker in ["drill-daemon-marker", "drill-waiter-marker"] {
        let _ = std::process::Command::new("pkill")
            .args(["-KILL", "-f", marker])
            .status();
    }
    assert!(
        !processes_mentioning(&sandboxes).is_empty(),
        "the temporary server should outlive a killed drill"
    );
    assert!(s.w.path("rehearsal/docs/readme.txt").exists());

    // ...until --cleanup tears everything down and records the drill as interrupted.
    let cleaned = json(&s.w, &["drill", "--cleanup"], 0);
    assert_eq!(cleaned["complete"], true, "{cleaned:#}");
    assert_eq!(cleaned["cleaned"].as_array().unwrap().len(), 1);
    assert_eq!(processes_mentioning(&sandboxes), Vec::<String>::new());
    assert_eq!(entries(&sandboxes), Vec::<PathBuf>::new());
    assert!(!s.w.path("rehearsal").exists(), "decommission ran");
    assert!(s.w.path("decommissioned").exists());
    let history = json(&s.w, &["drill", "--history"], 0);
    let last = history["drills"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["verdict"], "interrupted", "{history:#}");
    assert_eq!(
        run(&s.w, &["drill", "--cleanup"], 0).trim(),
        "no drill needs a teardown"
    );

    // SIGTERM while it starts: the drill tears itself down and exits 130.
    std::fs::remove_file(s.w.path("reached/start")).unwrap();
    std::fs::remove_file(s.w.path("decommissioned")).unwrap();
    let child = lifeboat(&s.w)
        .args(["drill", "--sandbox", sandboxes.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_for(&s.w.path("reached/start"), "the drill's start step");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("torn down"), "{stderr}");
    // The start command it was running was stopped with it, even what ignores SIGTERM.
    for marker in ["drill-daemon-marker", "drill-waiter-marker"] {
        assert_eq!(
            processes_mentioning(Path::new(marker)),
            Vec::<String>::new(),
            "{marker}"
        );
    }
    let history = json(&s.w, &["drill", "--history"], 0);
    let last = history["drills"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["verdict"], "interrupted", "{history:#}");
    assert_eq!(processes_mentioning(&sandboxes), Vec::<String>::new());
    assert_eq!(entries(&sandboxes), Vec::<PathBuf>::new());
    assert!(s.w.path("decommissioned").exists());
    assert_eq!(databases(&s.dr), dr_before);
    std::fs::remove_file(s.w.path("hold/start")).unwrap();

    // Declared bindings where a live site keeps its data are refused: by the plan check...
    let clash = plan.replace(
        "at.rehearsal = { path = \"rehearsal/docs\" }",
        "at.rehearsal = { path = \"primary/docs/sub\" }",
    );
    write(&s.w.path("lifeboat.toml"), clash.as_bytes());
    let out = lifeboat(&s.w).args(["drill"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a drill would write into live data"),
        "{stderr}"
    );
    // ...and by the drill through a symlink the plan check cannot see.
    std::os::unix::fs::symlink(s.w.path("primary/docs"), s.w.path("docs-link")).unwrap();
    let linked = plan.replace(
        "at.rehearsal = { path = \"rehearsal/docs\" }",
        "at.rehearsal = { path = \"docs-link/drill\" }",
    );
    write(&s.w.path("lifeboat.toml"), linked.as_bytes());
    run(&s.w, &["plan", "check"], 0);
    let out = lifeboat(&s.w).args(["drill"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is where `docs` lives at site `primary`")
            && stderr.contains("never writes to a live site"),
        "{stderr}"
    );
    assert!(!s.w.path("primary/docs/drill").exists());
    // A sandbox inside a live folder is refused as well.
    write(&s.w.path("lifeboat.toml"), plan.as_bytes());
    let out = lifeboat(&s.w)
        .args(["drill", "--sandbox", "primary/docs"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("give --sandbox a folder of its own"),
        "{out:?}"
    );
}

#[test]
fn audit_reports_the_last_drill_against_the_rto() {
    let s = stack("1ms", "");
    run(&s.w, &["backup"], 0);
    let finding = |report: &serde_json::Value| -> Option<String> {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["subject"] == "drill")
            .map(|f| format!("{} {}", f["severity"], f["message"]))
    };
    let report = json(&s.w, &["audit"], 0);
    assert!(
        finding(&report).is_some_and(|f| f.contains("warning") && f.contains("never drilled")),
        "{report:#}"
    );
    // An RTO of 1 ms cannot be met: the drill says so, and so does the audit.
    let drill = json(&s.w, &["drill"], 3);
    assert_eq!(drill["rto_met"], false);
    assert!(
        drill["problems"].to_string().contains("RTO missed"),
        "{drill:#}"
    );
    let report = json(&s.w, &["audit"], 3);
    let f = finding(&report).expect("a finding about the drill");
    assert!(f.contains("error") && f.contains("RTO"), "{f}");
}

#[test]
fn a_mariadb_server_is_drilled_in_a_temporary_mariadb_server() {
    let primary = crate::servers::MariaDb::start();
    primary.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.orders (id int primary key); \
         INSERT INTO shop.orders VALUES (1), (2), (3); \
         CREATE USER clerk@'%' IDENTIFIED BY 'clerk-secret'; GRANT SELECT ON shop.* TO clerk@'%'",
    );
    let w = Workplace::new();
    write(
        &w.path("lifeboat.toml"),
        format!(
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
at.primary = {{ url = "{url}", password = {{ env = "MY_PASSWORD" }} }}
verify = [{{ sql = "select count(*) from orders", database = "shop", expect = "3" }}]
"#,
            url = primary.url()
        )
        .as_bytes(),
    );
    let env = [("MY_PASSWORD", crate::servers::MARIADB_PASSWORD)];
    w.init();
    w.json_env(&env, &["backup"], 0);
    let sandboxes = w.path("sandboxes");
    std::fs::create_dir_all(&sandboxes).unwrap();
    let report = w.json_env(
        &env,
        &["drill", "--sandbox", sandboxes.to_str().unwrap()],
        0,
    );
    assert_eq!(report["passed"], true, "{report:#}");
    let shopdb = resource(&report, "shopdb");
    assert!(
        shopdb["restored_to"]
            .as_str()
            .unwrap()
            .starts_with("mysql://root@127.0.0.1:"),
        "{shopdb:#}"
    );
    assert!(
        shopdb["verified"].to_string().contains("answered `3`"),
        "{shopdb:#}"
    );
    assert_eq!(processes_mentioning(&sandboxes), Vec::<String>::new());
    assert_eq!(entries(&sandboxes), Vec::<PathBuf>::new());
    assert_eq!(primary.sql("SELECT count(*) FROM shop.orders"), "3");
}

#[test]
fn a_declared_drill_site_gets_databases_files_and_sqlite_and_keeps_what_was_there() {
    let primary = PgCluster::start();
    let rehearsal = PgCluster::start();
    primary.sql(
        "postgres",
        "CREATE DATABASE shop; CREATE TABLE notes (n int)",
    );
    primary.sql(
        "shop",
        "CREATE TABLE orders (id int primary key); INSERT INTO orders VALUES (1), (2)",
    );
    rehearsal.sql("postgres", "CREATE DATABASE keepme");
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

[sites.rehearsal]
role = "drill"

[resources.db]
kind = "postgres"
at.primary = {{ url = "{primary}", password = {{ env = "PG_PASSWORD" }} }}
at.rehearsal = {{ url = "{rehearsal}", password = {{ env = "PG_PASSWORD" }} }}

[resources.docs]
kind = "files"
at.primary = {{ path = "primary/docs" }}
at.dr = {{ path = "dr/docs" }}
at.rehearsal = {{ path = "rehearsal/deep/docs" }}

[resources.sessions]
kind = "sqlite"
at.primary = {{ path = "primary/sessions.db" }}
at.dr = {{ path = "dr/sessions.db" }}
at.rehearsal = {{ path = "rehearsal-db/sessions.db" }}
"#,
        primary = primary.url("postgres"),
        rehearsal = rehearsal.url("postgres"),
    );
    write(&w.path("lifeboat.toml"), plan.as_bytes());
    write(&w.path("primary/docs/readme.txt"), b"the docs");
    let made = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             c.execute('CREATE TABLE s (id INTEGER)'); c.execute('INSERT INTO s VALUES (1)'); \
             c.commit()",
        )
        .arg(w.path("primary/sessions.db"))
        .status()
        .expect("python3 runs");
    assert!(made.success());
    w.init();
    run(&w, &["backup"], 0);
    let before = databases(&rehearsal);

    // Every database of the server, the `postgres` one next to the server's own.
    let report = json(&w, &["drill"], 0);
    assert_eq!(report["passed"], true, "{report:#}");
    let verified = resource(&report, "db")["verified"].to_string();
    assert!(
        verified.contains("db/postgres (restored as `postgres_lifeboat_drill`)")
            && verified.contains("db/shop: row counts of 1 table"),
        "{verified}"
    );
    assert_eq!(
        databases(&rehearsal),
        before,
        "all the drill made is dropped"
    );
    assert!(!w.path("rehearsal").exists() && !w.path("rehearsal-db").exists());

    // What is at the drill site is never written over, nor removed.
    rehearsal.sql("postgres", "CREATE DATABASE shop");
    rehearsal.sql(
        "shop",
        "CREATE TABLE mine (x int); INSERT INTO mine VALUES (42)",
    );
    write(&w.path("rehearsal/deep/docs/mine.txt"), b"mine");
    let report = json(&w, &["drill"], 3);
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("database `shop` exists on postgres://postgres@127.0.0.1")
            && problems.contains("rehearsal/deep/docs is not empty"),
        "{problems}"
    );
    assert_eq!(report["teardown_complete"], true, "{report:#}");
    assert_eq!(rehearsal.sql("shop", "SELECT x FROM mine"), "42");
    assert_eq!(
        std::fs::read(w.path("rehearsal/deep/docs/mine.txt")).unwrap(),
        b"mine"
    );
    assert!(databases(&rehearsal).contains("keepme"));
    assert!(
        !w.path("rehearsal-db").exists(),
        "the SQLite copy is removed"
    );

    // The primary's own server under another spelling is refused before anything is written:
    // a role dropped there since the backup stays dropped.
    primary.sql("postgres", "CREATE ROLE clerk");
    run(&w, &["backup"], 0);
    primary.sql("postgres", "DROP ROLE clerk");
    let roles = || {
        primary.sql(
            "postgres",
            "SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles \
             WHERE rolname !~ '^pg_'",
        )
    };
    let before = roles();
    let disguised = plan.replace(
        &rehearsal.url("postgres"),
        &format!("postgres://postgres@0.0.0.0:{}/postgres", primary.port),
    );
    write(&w.path("lifeboat.toml"), disguised.as_bytes());
    let out = lifeboat(&w).args(["drill"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("are one address") && stderr.contains("never writes to a live site"),
        "{stderr}"
    );
    assert_eq!(roles(), before);
}
