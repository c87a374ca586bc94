//! Output that does not break: a reader that goes away (`| head -1`) never makes lifeboat
//! panic, usage mistakes exit 2 with JSON under `--json`, and plan check masks credentials
//! and says which settings nothing performs yet.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::*;

/// Two sites and a file tree; traffic and fencing by command, so nothing needs a server.
fn plan(w: &Workplace) {
    std::fs::create_dir_all(w.path("primary/data")).unwrap();
    std::fs::create_dir_all(w.path("dr")).unwrap();
    for n in 0..40 {
        write(
            &w.path(&format!("primary/data/file-{n:02}.csv")),
            b"a,b\n1,2\n",
        );
    }
    std::fs::write(
        w.path("lifeboat.toml"),
        r#"[repository]
url = "./repo"
password = { env = "LIFEBOAT_PASSWORD" }

[state]
dir = "state"

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.data]
kind = "files"
at.primary = { path = "primary/data" }
at.dr = { path = "dr/data" }

[fence]
run = [["true"]]

[traffic]
kind = "command"
at.primary = { run = [["true"]] }
at.dr = { run = [["true"]] }
"#,
    )
    .unwrap();
}

/// Runs lifeboat with stdout on a pipe, reads one line and closes the pipe; returns the
/// exit code and stderr.
fn first_line_then_close(w: &Workplace, args: &[&str]) -> (Option<i32>, String) {
    let mut child = w
        .process()
        .env_remove("LIFEBOAT_REPOSITORY")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    {
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        // Dropped here: the pipe closes with output still to come.
    }
    let output = child.wait_with_output().expect("ends");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let w = Workplace::new();
    plan(&w);
    w.cmd()
        .env_remove("LIFEBOAT_REPOSITORY")
        .args(["repo", "init"])
        .assert()
        .success();
    w.cmd()
        .env_remove("LIFEBOAT_REPOSITORY")
        .args(["backup"])
        .assert()
        .success();
    for args in [
        &["status"][..],
        &["failover", "--to", "dr", "--dry-run"],
        &["points"],
    ] {
        for _ in 0..100 {
            let (code, stderr) = first_line_then_close(&w, args);
            assert!(
                !stderr.contains("panicked") && code != Some(101),
                "lifeboat {args:?} after its reader left: exit {code:?}\n{stderr}"
            );
            // Either everything fitted in the pipe before it closed, or the closed pipe is
            // reported by the SIGPIPE convention.
            assert!(
                matches!(code, Some(0) | Some(141)),
                "lifeboat {args:?}: exit {code:?}\n{stderr}"
            );
        }
    }
}

#[test]
fn unknown_sites_and_resources_are_usage_errors() {
    let w = Workplace::new();
    plan(&w);
    w.cmd()
        .env_remove("LIFEBOAT_REPOSITORY")
        .args(["repo", "init"])
        .assert()
        .success();
    for args in [
        &["failover", "--to", "elsewhere", "--dry-run"][..],
        &["backup", "nothing-like-it"],
        &["failover", "--to", "dr", "--only", "nothing", "--dry-run"],
    ] {
        let out = w
            .cmd()
            .env_remove("LIFEBOAT_REPOSITORY")
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "lifeboat {args:?}: {out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("lifeboat {args:?}: not JSON ({e}): {out:?}"));
        assert_eq!(v["exit"], 2, "{v}");
        assert!(
            v["error"].as_str().unwrap().contains("the plan has no"),
            "{v}"
        );
        assert!(v["causes"].is_array(), "{v}");
    }
    // A refused command line says the same under --json.
    let out = w
        .cmd()
        .args(["--json", "restore", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["exit"], 2);
    assert!(
        v["error"].as_str().unwrap().contains("--no-such-flag"),
        "{v}"
    );
    // And --help still prints help, exit 0.
    w.cmd().args(["--json", "--help"]).assert().success();
}

#[test]
fn plan_check_masks_credentials_and_reports_every_error() {
    let w = Workplace::new();
    std::fs::write(
        w.path("lifeboat.toml"),
        r#"[repository]
url = "./repo"
password = { env = "LIFEBOAT_PASSWORD" }

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.db]
kind = "postgres"
at.primary = { url = "postgres://app:hunter2-very-secret@127.0.0.1:5432/postgres" }
at.dr = { url = "postgres://app@127.0.0.1:5433/postgres", password = { env = "PW" } }
depends_on = ["missing"]

[resources.api]
kind = "http"
at.primary = { url = "https://api.example.net/export?user=x&access_token=tok-abcdef123", method = "GET" }
colour = "red"
"#,
    )
    .unwrap();
    let out = w.cmd().args(["plan", "check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!stderr.contains("tok-abcdef123"), "{stderr}");
    assert!(stderr.contains("postgres://app:****@127.0.0.1"), "{stderr}");
    assert!(stderr.contains("access_token=****"), "{stderr}");
    // The password error comes with the others, not instead of them.
    assert!(stderr.contains("password in clear"), "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
    assert!(stderr.contains("colour"), "{stderr}");
    let json = w.cmd().args(["--json", "plan", "check"]).output().unwrap();
    let text = String::from_utf8_lossy(&json.stdout);
    assert!(
        !text.contains("hunter2") && !text.contains("tok-abcdef123"),
        "{text}"
    );
}

#[test]
fn plan_check_notes_settings_no_command_performs_yet() {
    let w = Workplace::new();
    plan(&w);
    let text = std::fs::read_to_string(w.path("lifeboat.toml")).unwrap();
    let text = text.replace(
        "at.dr = { path = \"dr/data\" }",
        "at.dr = { path = \"dr/data\" }\nsync = \"both\"",
    ) + "\n[schedule]\nbackup = \"every 30m\"\nretention = { keep_last = 3 }\n";
    std::fs::write(w.path("lifeboat.toml"), text).unwrap();
    let v = w.json(&["plan", "check"], 0);
    assert_eq!(v["valid"], true, "{v}");
    let notes: Vec<&serde_json::Value> = v["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "note")
        .collect();
    let paths: Vec<&str> = notes.iter().map(|d| d["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["resources.data.sync", "schedule.backup"], "{v}");
    assert!(
        notes[1]["message"]
            .as_str()
            .unwrap()
            .contains("lifeboat serve"),
        "{v}"
    );
    // A note is no finding of the audit's lint, and no reason to fail.
    let out = w.run(&["plan", "check"], 0);
    assert!(out.contains("valid"), "{out}");
}

#[test]
fn a_capture_time_covers_the_wait_for_the_server() {
    // The server thinks for 1.2 s before its headers: the capture took that long.
    let peer = crate::peer::Peer::start(|_| {
        std::thread::sleep(std::time::Duration::from_millis(1200));
        (200, vec![], b"{\"queues\": []}".to_vec())
    });
    let w = Workplace::new();
    std::fs::write(
        w.path("lifeboat.toml"),
        format!(
            r#"[repository]
url = "./repo"
password = {{ env = "LIFEBOAT_PASSWORD" }}

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.broker]
kind = "http"
at.primary = {{ url = "{}" }}
"#,
            peer.url("/definitions")
        ),
    )
    .unwrap();
    let plain = |args: &[&str]| {
        let out = w
            .cmd()
            .env_remove("LIFEBOAT_REPOSITORY")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "lifeboat {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    plain(&["repo", "init"]);
    let v: serde_json::Value = serde_json::from_str(&plain(&["--json", "backup"])).unwrap();
    let points: serde_json::Value = serde_json::from_str(&plain(&["--json", "points"])).unwrap();
    let stats = &points[0]["point"]["resources"][0]["stats"];
    let ms = stats["duration_ms"].as_u64().unwrap_or(0);
    assert!(ms >= 1200, "captured in {ms} ms: {points}\n{v}");
}
