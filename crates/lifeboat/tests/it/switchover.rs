//! Planned moves lose nothing, failures are heard: a switchover under a writer committing a
//! row every 50 ms quiesces the primary (read-only, sessions ended, confirmed by an SQL
//! check) before its final capture and loses no acknowledged row; a quiesce that fails stops
//! the run before anything is captured or restored (and `--force` reports the RPO unknown);
//! a failed step sends exactly one alert naming the step, the site and the resume command,
//! and `status` says the fenced site does not serve.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::peer::Peer;
use crate::servers::{PG_PASSWORD, PgCluster};
use crate::support::with_pg::lifeboat;
use crate::support::*;

/// Runs lifeboat with the test clusters' passwords (also `PGPASSWORD`, for the plan's
/// `psql` quiesce command); returns the output.
fn lifeboat_out(w: &Workplace, args: &[&str]) -> std::process::Output {
    lifeboat(w)
        .env("PGPASSWORD", PG_PASSWORD)
        .args(args)
        .output()
        .expect("lifeboat runs")
}

fn json_of(w: &Workplace, args: &[&str], code: i32) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = lifeboat_out(w, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "lifeboat {args:?}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// The alerts of runs that stopped, as the webhook received them.
fn stop_alerts(hook: &Peer) -> Vec<serde_json::Value> {
    hook.seen()
        .iter()
        .filter_map(|seen| serde_json::from_slice::<serde_json::Value>(&seen.body).ok())
        .filter(|alert| alert["event"] == "run_stopped")
        .collect()
}

/// Two sites, each with its own PostgreSQL cluster holding `shop`; the primary's quiesce
/// makes `shop` read-only and ends its sessions (`quiesce`), confirmed by an SQL check.
fn plan(primary: &PgCluster, dr: &PgCluster, quiesce: &str, hook: &Peer) -> String {
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
quiesce = [{quiesce}]

[[sites.primary.quiesce_checks]]
name = "read-only"
sql = "show default_transaction_read_only"
resource = "db"
database = "shop"
expect = "on"

[sites.dr]
role = "standby"

[resources.db]
kind = "postgres"
databases = ["shop"]
at.primary = {{ url = "{primary_url}", password = {{ env = "PG_PASSWORD" }} }}
at.dr = {{ url = "{dr_url}", password = {{ env = "PG_PASSWORD" }} }}

[traffic]
kind = "command"
at.primary = {{ run = [["sh", "-c", "echo primary > traffic"]] }}
at.dr = {{ run = [["sh", "-c", "echo dr > traffic"]] }}

[[notify]]
webhook = "{hook}"
"#,
        primary_url = primary.url("postgres"),
        dr_url = dr.url("postgres"),
        hook = hook.url("/alerts"),
    )
}

/// The quiesce a DBA would run: `shop` refuses writes in new sessions, and every session in
/// it ends.
fn read_only_quiesce(primary: &PgCluster) -> String {
    format!(
        r#"["{psql}", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", "{port}", "-U", "postgres", "-d", "postgres", "-c", "ALTER DATABASE shop SET default_transaction_read_only = on", "-c", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'shop' AND pid <> pg_backend_pid()"]"#,
        psql = primary.bin.join("psql").display(),
        port = primary.port,
    )
}

fn clusters() -> (PgCluster, PgCluster) {
    let primary = PgCluster::start();
    let dr = PgCluster::start();
    primary.sql("postgres", "CREATE DATABASE shop");
    primary.sql("shop", "CREATE TABLE orders (id int primary key)");
    (primary, dr)
}

/// A writer committing one row every 50 ms at the primary, each in a new session (as an
/// application's pool reconnecting would), counting what the server acknowledged.
struct Writer {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<Vec<u32>>>,
    refused: Arc<Mutex<u32>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(primary: &PgCluster) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let mut psql = primary.tool("psql");
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "shop", "-c"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let thread = {
            let (stop, acknowledged, refused) =
                (stop.clone(), acknowledged.clone(), refused.clone());
            let program = psql.get_program().to_owned();
            let args: Vec<_> = psql.get_args().map(|a| a.to_owned()).collect();
            let envs: Vec<_> = psql
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
                .collect();
            std::thread::spawn(move || {
                let mut id = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    id += 1;
                    let ok = std::process::Command::new(&program)
                        .args(&args)
                        .arg(format!("INSERT INTO orders VALUES ({id})"))
                        .envs(envs.iter().map(|(k, v)| (k, v)))
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success());
                    if ok {
                        acknowledged.lock().unwrap().push(id);
                    } else {
                        *refused.lock().unwrap() += 1;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Writer {
            stop,
            acknowledged,
            refused,
            thread: Some(thread),
        }
    }

    fn acknowledged(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Stops it; returns the ids acknowledged and how many writes were refused.
    fn finish(mut self) -> (BTreeSet<u32>, u32) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        let acknowledged = self.acknowledged.lock().unwrap().iter().copied().collect();
        let refused = *self.refused.lock().unwrap();
        (acknowledged, refused)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn ids(cluster: &PgCluster) -> BTreeSet<u32> {
    cluster
        .sql("shop", "SELECT id FROM orders ORDER BY id")
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

#[test]
fn a_switchover_under_a_writer_loses_no_committed_row() {
    let (primary, dr) = clusters();
    let hook = Peer::start(|_| (200, vec![], b"ok".to_vec()));
    let w = Workplace::new();
    write(
        &w.path("lifeboat.toml"),
        plan(&primary, &dr, &read_only_quiesce(&primary), &hook).as_bytes(),
    );
    w.init();

    // The dry run shows the quiesce before the capture.
    let dry = json_of(&w, &["switchover", "--to", "dr", "--dry-run"], 0);
    let steps: Vec<&str> = dry["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "quiesce:primary",
            "backup:primary",
            "restore:db",
            "switch-traffic:dr",
            "confirm-traffic:dr",
            "notify"
        ]
    );
    assert!(
        dry["steps"][0]["touches"]
            .as_str()
            .unwrap()
            .contains("confirmed by `read-only`"),
        "{dry:#}"
    );

    let writer = Writer::start(&primary);
    let deadline = Instant::now() + Duration::from_secs(60);
    while writer.acknowledged() < 10 {
        assert!(Instant::now() < deadline, "the writer never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = json_of(&w, &["switchover", "--to", "dr", "--yes"], 0);
    // The writer keeps trying after the move: the primary refuses it.
    let refused_before = *writer.refused.lock().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while *writer.refused.lock().unwrap() < refused_before + 3 {
        assert!(Instant::now() < deadline, "the primary still takes writes");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (acknowledged, refused) = writer.finish();
    assert!(refused > 0 && acknowledged.len() >= 10);

    // Every acknowledged row is at the new site, and the new site holds what the primary
    // holds: nothing written at the primary was left behind.
    let at_dr = ids(&dr);
    let missing: Vec<&u32> = acknowledged.difference(&at_dr).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged row(s) lost: {missing:?} ({} at dr, {} acknowledged)",
        missing.len(),
        at_dr.len(),
        acknowledged.len()
    );
    assert_eq!(at_dr, ids(&primary));

    // The RPO says why it is 0: writes stopped, confirmed, before the capture began.
    assert_eq!(report["quiesce"]["confirmed"], true, "{report:#}");
    assert_eq!(report["achieved_rpo_ms"], 0, "{report:#}");
    assert_eq!(report["rpo_met"], true);
    let basis = report["rpo_basis"].as_str().unwrap();
    assert!(basis.contains("quiesce confirmed"), "{basis}");
    let quiesced = report["steps"][0]["detail"].as_str().unwrap();
    assert!(
        report["steps"][0]["step"] == "quiesce:primary" && quiesced.contains("read-only"),
        "{report:#}"
    );
    assert_eq!(
        std::fs::read_to_string(w.path("traffic")).unwrap().trim(),
        "dr"
    );
    assert!(stop_alerts(&hook).is_empty());

    let status = json_of(&w, &["status"], 0);
    assert_eq!(status["serving"], "dr", "{status:#}");
    assert_eq!(status["stopped"][0]["site"], "primary");
    assert_eq!(status["stopped"][0]["how"], "quiesced");
    assert_eq!(status["stopped"][0]["confirmed"], true);
}

#[test]
fn a_quiesce_that_fails_stops_the_run_before_the_capture_and_force_reports_the_rpo_unknown() {
    let (primary, dr) = clusters();
    primary.sql("shop", "INSERT INTO orders VALUES (1), (2)");
    let hook = Peer::start(|_| (200, vec![], b"ok".to_vec()));
    let w = Workplace::new();
    // The application does not stop.
    let failing = r#"["sh", "-c", "echo 'ioportal did not stop' >&2; exit 1"]"#;
    write(
        &w.path("lifeboat.toml"),
        plan(&primary, &dr, failing, &hook).as_bytes(),
    );
    w.init();

    let out = lifeboat_out(&w, &["switchover", "--to", "dr", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("quiesce:primary")
            && stderr.contains("could not be confirmed quiesced")
            && stderr.contains("ioportal did not stop")
            && stderr.contains("Nothing was captured or restored")
            && stderr.contains("--force"),
        "{stderr}"
    );
    // Nothing captured, nothing restored, traffic where it was.
    assert_eq!(
        json_of(&w, &["points"], 0).as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(
        dr.sql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname = 'shop'"
        ),
        "0"
    );
    assert!(!w.path("traffic").exists());
    let alerts = stop_alerts(&hook);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["step"], "quiesce:primary");
    assert_eq!(alerts[0]["site"], "primary");
    let status = json_of(&w, &["status"], 0);
    assert_eq!(status["last_run"]["remaining"][0], "quiesce:primary");

    // Moving anyway: the capture cannot be said to hold every write, so the RPO is unknown
    // and not "met".
    let report = json_of(&w, &["resume", "--force"], 0);
    assert_eq!(report["quiesce"]["confirmed"], false, "{report:#}");
    assert!(report["achieved_rpo_ms"].is_null(), "{report:#}");
    assert!(report["rpo_met"].is_null(), "{report:#}");
    assert!(
        report["rpo_basis"].as_str().unwrap().contains("unknown"),
        "{report:#}"
    );
    assert_eq!(dr.sql("shop", "SELECT count(*) FROM orders"), "2");
    assert_eq!(stop_alerts(&hook).len(), 1, "no failure, no new alert");
}

#[test]
fn a_planned_move_with_no_way_to_quiesce_is_refused_before_anything_changes() {
    let hook = Peer::start(|_| (200, vec![], b"ok".to_vec()));
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

[resources.docs]
kind = "files"
at.primary = {{ path = "primary/docs" }}
at.dr = {{ path = "dr/docs" }}

[[notify]]
webhook = "{hook}"
"#,
            hook = hook.url("/alerts")
        )
        .as_bytes(),
    );
    write(&w.path("primary/docs/a.txt"), b"a");
    w.init();
    let out = lifeboat_out(&w, &["switchover", "--to", "dr", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no way to") && stderr.contains("quiesce") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(!w.path("dr").exists());
    assert_eq!(json_of(&w, &["status"], 0)["state"], "ActiveNoDR");

    // With --force it moves, and says the RPO is unknown.
    let out = lifeboat_out(&w, &["switchover", "--to", "dr", "--yes", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("RPO UNKNOWN"), "{stdout}");
    assert!(!stdout.contains("RPO achieved"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(w.path("dr/docs/a.txt")).unwrap(),
        "a"
    );
}

#[test]
fn a_failed_restore_alerts_once_and_status_says_the_fenced_primary_does_not_serve() {
    let hook = Peer::start(|_| (200, vec![], b"ok".to_vec()));
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

[resources.docs]
kind = "files"
at.primary = {{ path = "primary/docs" }}
at.dr = {{ path = "dr/blocked/docs" }}

[traffic]
kind = "command"
at.primary = {{ run = [["sh", "-c", "echo primary > traffic"]] }}
at.dr = {{ run = [["sh", "-c", "echo dr > traffic"]] }}

[fence]
run = [["sh", "-c", "echo fenced > fence-mark"]]

[[notify]]
webhook = "{hook}"
"#,
            hook = hook.url("/alerts")
        )
        .as_bytes(),
    );
    write(&w.path("primary/docs/a.txt"), b"a");
    // A file where the DR folder's parent should be: the restore cannot make its target.
    write(&w.path("dr/blocked"), b"not a folder");
    w.init();
    w.run(&["backup"], 0);

    let out = w
        .process()
        .args(["failover", "--to", "dr", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("restore:docs"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(w.path("fence-mark"))
            .unwrap()
            .trim(),
        "fenced"
    );

    // Exactly one alert: the step, the site, the command that resumes the run.
    let alerts = stop_alerts(&hook);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert["step"], "restore:docs");
    assert_eq!(alert["site"], "dr");
    assert_eq!(alert["kind"], "failover");
    let plan_file = std::fs::canonicalize(w.path("lifeboat.toml")).unwrap();
    // The repository was given (here by LIFEBOAT_REPOSITORY): the command carries it too.
    let resume = format!(
        "lifeboat --plan {} --repo {} resume",
        plan_file.display(),
        w.repo().display()
    );
    assert_eq!(alert["resume"], resume.as_str(), "{alert:#}");
    let text = alert["text"].as_str().unwrap();
    assert!(
        text.contains("restore:docs") && text.contains("`dr`") && text.contains(&resume),
        "{text}"
    );

    // Nobody serves: the primary is fenced, the DR site not up yet.
    let status = w.json(&["status"], 0);
    assert!(status["serving"].is_null(), "{status:#}");
    assert_eq!(status["active"], "primary");
    assert_eq!(status["stopped"][0]["site"], "primary");
    assert_eq!(status["stopped"][0]["how"], "fenced");
    assert_eq!(status["stopped"][0]["confirmed"], true);
    let human = w.run(&["status"], 0);
    let first = human.lines().next().unwrap();
    assert!(
        first.contains("no site serves") && !first.contains("`primary` is active"),
        "{human}"
    );
    assert!(
        human.contains("`primary`: fence") && human.contains("confirmed"),
        "{human}"
    );
    assert!(human.contains("`dr` does not serve yet"), "{human}");

    // Failing again is another failure: one more alert. Fixed, the run finishes quietly.
    let out = w.process().arg("resume").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(stop_alerts(&hook).len(), 2);
    std::fs::remove_file(w.path("dr/blocked")).unwrap();
    // The alert's command, as an operator pastes it anywhere.
    let argv: Vec<&str> = resume.split(' ').skip(1).collect();
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
        .args(&argv)
        .current_dir("/")
        .env("LIFEBOAT_PASSWORD", PASSWORD)
        .env("LIFEBOAT_CACHE_DIR", w.path("cache"))
        .env_remove("LIFEBOAT_REPOSITORY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stop_alerts(&hook).len(), 2);
    let status = w.json(&["status"], 0);
    assert_eq!(status["serving"], "dr", "{status:#}");
    assert_eq!(status["stopped"][0]["site"], "primary");
}

#[test]
fn a_failover_the_witness_started_that_stops_on_a_step_is_alerted_once() {
    let hook = Peer::start(|_| (200, vec![], b"ok".to_vec()));
    let app = Peer::start(|_| (200, vec![], b"up".to_vec()));
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

[resources.docs]
kind = "files"
at.primary = {{ path = "primary/docs" }}
at.dr = {{ path = "dr/blocked/docs" }}

[fence]
run = [["true"]]

[watch]
decision = "automatic"
interval = "200ms"
timeout = "150ms"
failure_threshold = "1s"
probes = [{{ http = "{app}" }}]
control = [{{ tcp = "127.0.0.1:{control}" }}]

[[notify]]
webhook = "{hook}"
"#,
            app = app.url("/"),
            control = hook.port,
            hook = hook.url("/alerts"),
        )
        .as_bytes(),
    );
    write(&w.path("primary/docs/a.txt"), b"a");
    write(&w.path("dr/blocked"), b"not a folder");
    w.init();
    w.run(&["backup"], 0);

    let mut witness = w
        .process()
        .args(["--json", "watch"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lifeboat watch starts");
    let log = Arc::new(Mutex::new(String::new()));
    {
        let (stderr, log) = (witness.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                log.lock().unwrap().push_str(&line);
                log.lock().unwrap().push('\n');
            }
        });
    }
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the witness said:\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("the first round", &|| w.path("state/watch.json").exists());
    drop(app);
    wait_for("the run's alert", &|| !stop_alerts(&hook).is_empty());
    // The witness's own word on how the failover ended.
    let finished = || -> Vec<String> {
        hook.seen()
            .iter()
            .filter_map(|seen| serde_json::from_slice::<serde_json::Value>(&seen.body).ok())
            .filter_map(|alert| alert["text"].as_str().map(str::to_string))
            .filter(|text| text.contains("the failover"))
            .collect()
    };
    wait_for("the witness to see the run end", &|| {
        log.lock().unwrap().contains("alerted by the run") || !finished().is_empty()
    });
    let _ = witness.kill();
    let _ = witness.wait();

    let alerts = stop_alerts(&hook);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    assert_eq!(alerts[0]["step"], "restore:docs");
    assert!(finished().is_empty(), "a second alert: {:?}", finished());
}

#[test]
fn a_failed_drill_alerts_once_with_the_step_the_site_and_the_command_to_run_it_again() {
    let hook = Peer::start(|_| (200, vec![], b"ok".to_vec()));
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

[resources.conf]
kind = "command"
at.primary = {{ capture = ["cat", "primary/conf.json"] }}
verify = [{{ command = ["sh", "-c", "grep -q replicas \"$LIFEBOAT_AT_CONF\"/document"] }}]

[[notify]]
webhook = "{hook}"
"#,
            hook = hook.url("/alerts")
        )
        .as_bytes(),
    );
    write(&w.path("primary/conf.json"), br#"{"queues": 2}"#);
    std::fs::create_dir_all(w.path("sandboxes")).unwrap();
    w.init();
    w.run(&["backup"], 0);
    let report = w.json(&["drill", "--sandbox", "sandboxes"], 3);
    assert_eq!(report["passed"], false);

    let alerts: Vec<serde_json::Value> = hook
        .seen()
        .iter()
        .filter_map(|seen| serde_json::from_slice::<serde_json::Value>(&seen.body).ok())
        .collect();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert["event"], "drill_failed");
    assert_eq!(alert["step"], "verify:conf", "{alert:#}");
    assert_eq!(alert["site"], report["site"]);
    let again = alert["again"].as_str().unwrap();
    let plan_file = std::fs::canonicalize(w.path("lifeboat.toml")).unwrap();
    assert!(
        again.starts_with(&format!("lifeboat --plan {} ", plan_file.display()))
            && again.ends_with(" drill"),
        "{again}"
    );
    let text = alert["text"].as_str().unwrap();
    assert!(
        text.contains("verify:conf") && text.contains(again),
        "{text}"
    );
}
