//! The witness with real processes and short real time: a real HTTP service as the primary,
//! a real BIND 9 for the traffic switch; automatic failover on a sustained outage, none when
//! the witness itself is cut off, and a manual decision that waits for approval.

use std::io::BufRead;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::servers::{Named, TSIG_SECRET, free_port};
use crate::support::*;

/// A real HTTP server (Python's) standing in for the primary's service.
fn http_service(dir: &std::path::Path, port: u16) -> Child {
    std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 (Debian package python3) serves HTTP")
}

/// Waits until the service accepts connections, so a slow start is not an outage.
fn listening(port: u16) {
    wait_for("the service to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn plan(decision: &str, http_port: u16, control: &str, traffic: &str) -> String {
    plan_with(decision, http_port, control, traffic, "1s", "")
}

fn plan_with(
    decision: &str,
    http_port: u16,
    control: &str,
    traffic: &str,
    threshold: &str,
    extra: &str,
) -> String {
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

{traffic}

[fence]
run = [["true"]]

[watch]
decision = "{decision}"
interval = "200ms"
timeout = "150ms"
failure_threshold = "{threshold}"
probes = [{{ http = "http://127.0.0.1:{http_port}/" }}]
control = [{control}]

[[notify]]
command = ["sh", "-c", "cat >> alerts; echo >> alerts"]
{extra}
"#
    )
}

/// `lifeboat --json watch`, its alert lines collected with the moment each arrived.
struct Witness {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Witness {
    fn start(w: &Workplace) -> Self {
        let mut child = w
            .process()
            .args(["--json", "watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("lifeboat watch starts");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        Witness { child, lines }
    }

    fn alerts(&self, kind: &str) -> Vec<Instant> {
        let needle = format!("\"alert\":\"{kind}\"");
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| l.contains(&needle))
            .map(|(at, _)| *at)
            .collect()
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn setup(w: &Workplace, plan: &str) {
    write(&w.path("lifeboat.toml"), plan.as_bytes());
    write(&w.path("primary/docs/a.txt"), b"a");
    write(&w.path("tsig.secret"), TSIG_SECRET.as_bytes());
    w.init();
    w.run(&["backup"], 0);
}

#[test]
fn a_sustained_outage_fails_over_automatically_and_dns_follows() {
    let named = Named::start();
    let w = Workplace::new();
    let http_port = free_port();
    let traffic = format!(
        r#"[traffic]
kind = "dns"
server = "127.0.0.1:{}"
zone = "example.test."
name = "app.example.test."
tsig = {{ name = "lifeboat", secret = {{ file = "tsig.secret" }} }}
at.primary = {{ address = "192.0.2.10" }}
at.dr = {{ address = "198.51.100.10" }}"#,
        named.port
    );
    setup(
        &w,
        &plan(
            "automatic",
            http_port,
            &format!(r#"{{ tcp = "127.0.0.1:{}" }}"#, named.port),
            &traffic,
        ),
    );
    let mut service = http_service(w.dir.path(), http_port);
    listening(http_port);
    let witness = Witness::start(&w);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        witness.alerts("decision_taken").is_empty(),
        "healthy: nothing decided"
    );

    let _ = service.kill();
    let _ = service.wait();
    let outage = Instant::now();
    wait_for("the DR address in DNS", Duration::from_secs(60), || {
        named.dig("app.example.test") == ["198.51.100.10"]
    });
    let decided = witness.alerts("decision_taken");
    assert_eq!(decided.len(), 1, "exactly one failover");
    // The threshold, one interval, a probe's timeout, and slack for a loaded CI machine.
    let took = decided[0].duration_since(outage);
    assert!(
        took <= Duration::from_millis(1000 + 200 + 150 + 1500),
        "decided after {took:?}"
    );
    wait_for("ActiveDR", Duration::from_secs(30), || {
        w.json(&["status"], 0)["state"] == "ActiveDR"
    });
    // Down for good, but it never decides again (and never fails back).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(witness.alerts("decision_taken").len(), 1);
    assert!(
        std::fs::read_to_string(w.path("alerts"))
            .unwrap()
            .contains("\"down\"")
    );
}

#[test]
fn a_cut_off_witness_decides_nothing_and_says_it_may_be_isolated() {
    let w = Workplace::new();
    let http_port = free_port();
    let closed = free_port();
    let traffic = r#"[traffic]
kind = "command"
at.primary = { run = [["sh", "-c", "echo primary > traffic"]] }
at.dr = { run = [["sh", "-c", "echo dr > traffic"]] }"#;
    setup(
        &w,
        &plan(
            "automatic",
            http_port,
            &format!(r#"{{ tcp = "127.0.0.1:{closed}" }}"#),
            traffic,
        ),
    );
    // No service at all, and the control unreachable too.
    let witness = Witness::start(&w);
    std::thread::sleep(Duration::from_millis(3000));
    assert!(witness.alerts("decision_taken").is_empty());
    assert!(witness.alerts("down").is_empty());
    assert_eq!(witness.alerts("isolated").len(), 1, "alerted once");
    assert!(!w.path("traffic").exists());
    // Each probe's own history is kept for `status`.
    let status = w.json(&["status"], 0);
    let watch = &status["watch"];
    assert_eq!(
        watch["decision"]["health"]["state"], "isolated",
        "{watch:#}"
    );
    assert_eq!(watch["probes"][0]["ok"], false);
    assert!(
        watch["probes"][0]["failures"].as_u64().unwrap() >= 5,
        "{watch:#}"
    );
    assert_eq!(watch["control"][0]["control"], true);
    assert_eq!(watch["control"][0]["passes"], 0);
    assert!(w.run(&["status"], 0).contains("(control)"));
}

/// A real SMTP server (aiosmtpd) that prints every message it receives to `smtp.log`.
fn smtp_server(dir: &std::path::Path, port: u16) -> Child {
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .args(["-c", "import aiosmtpd"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .expect("Python with aiosmtpd (Debian package python3-aiosmtpd)");
    let log = std::fs::File::create(dir.join("smtp.log")).unwrap();
    std::process::Command::new(python)
        .args([
            "-u",
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .expect("aiosmtpd starts")
}

#[test]
fn a_manual_witness_alerts_down_once_and_waits_for_approval() {
    let w = Workplace::new();
    let http_port = free_port();
    let control = free_port();
    let _control_listener = std::net::TcpListener::bind(("127.0.0.1", control)).unwrap();
    let traffic = r#"[traffic]
kind = "command"
at.primary = { run = [["sh", "-c", "echo primary > traffic"]] }
at.dr = { run = [["sh", "-c", "echo dr > traffic"]] }"#;
    let smtp_port = free_port();
    let mut smtp = smtp_server(w.dir.path(), smtp_port);
    let mail = format!(
        r#"[[notify]]
smtp = {{ server = "127.0.0.1:{smtp_port}", starttls = false, from = "lifeboat@example.test", to = ["oncall@example.test"] }}
"#
    );
    setup(
        &w,
        &plan_with(
            "manual",
            http_port,
            &format!(r#"{{ tcp = "127.0.0.1:{control}" }}"#),
            traffic,
            "1s",
            &mail,
        ),
    );
    let witness = Witness::start(&w);
    std::thread::sleep(Duration::from_millis(3000));
    assert_eq!(witness.alerts("down").len(), 1);
    assert!(witness.alerts("decision_taken").is_empty());
    assert!(!w.path("traffic").exists(), "no action until approved");

    w.run(&["approve"], 0);
    wait_for("the failover", Duration::from_secs(30), || {
        std::fs::read_to_string(w.path("traffic")).is_ok_and(|t| t.trim() == "dr")
    });
    assert_eq!(witness.alerts("decision_taken").len(), 1);
    let alerts = std::fs::read_to_string(w.path("alerts")).unwrap();
    assert_eq!(alerts.matches("\"alert\":\"down\"").count(), 1, "{alerts}");
    wait_for("the alert by mail", Duration::from_secs(10), || {
        std::fs::read_to_string(w.path("smtp.log"))
            .is_ok_and(|m| m.contains("the primary is DOWN") && m.contains("oncall@example.test"))
    });
    let _ = smtp.kill();
    let _ = smtp.wait();
}

/// A real HTTP server whose root fails 30% of requests at random, and which records every
/// POST body (a webhook receiver) in `webhook.log`.
const FLAKY: &str = r#"
import http.server, random, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500 if random.random() < 0.3 else 200)
        self.end_headers()
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open("webhook.log", "ab") as f:
            f.write(body + b"\n")
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

#[test]
fn a_primary_failing_a_third_of_its_probes_is_never_failed_over() {
    let w = Workplace::new();
    let http_port = free_port();
    let control = free_port();
    let _control_listener = std::net::TcpListener::bind(("127.0.0.1", control)).unwrap();
    let traffic = r#"[traffic]
kind = "command"
at.primary = { run = [["sh", "-c", "echo primary > traffic"]] }
at.dr = { run = [["sh", "-c", "echo dr > traffic"]] }"#;
    // Alerts also go to a webhook: the same flaky server receives them.
    let webhook = format!(
        r#"[[notify]]
webhook = "http://127.0.0.1:{http_port}/hook"
"#
    );
    setup(
        &w,
        &plan_with(
            "automatic",
            http_port,
            &format!(r#"{{ tcp = "127.0.0.1:{control}" }}"#),
            traffic,
            "3s",
            &webhook,
        ),
    );
    let mut service = std::process::Command::new("python3")
        .args(["-c", FLAKY, &http_port.to_string()])
        .current_dir(w.dir.path())
        .spawn()
        .expect("python3 runs the flaky service");
    listening(http_port);
    let witness = Witness::start(&w);
    std::thread::sleep(Duration::from_secs(8));
    let _ = service.kill();
    let _ = service.wait();
    assert!(witness.alerts("decision_taken").is_empty());
    assert!(witness.alerts("down").is_empty());
    assert!(!w.path("traffic").exists());
    assert!(!witness.alerts("suspect").is_empty(), "the noise was seen");
    let received = std::fs::read_to_string(w.path("webhook.log")).unwrap_or_default();
    assert!(
        received.contains("\"alert\":\"suspect\"") && received.contains("\"alert\":\"recovered\""),
        "the webhook received the alerts: {received}"
    );
}
