//! Plans: validation with diagnostics, the example, and backups driven by a plan.

use crate::support::*;

#[test]
fn the_example_plan_is_valid() {
    let w = Workplace::new();
    let example = w.run(&["plan", "example"], 0);
    write(&w.path("lifeboat.toml"), example.as_bytes());
    let out = w.run(&["plan", "check"], 0);
    assert!(out.contains("valid"), "{out}");
}

#[test]
fn every_plan_error_is_reported_with_its_line() {
    let w = Workplace::new();
    let plan = r#"[repository]
url = "./repo"
password = "hunter2"

[objectives]
rpo = "fifteen minutes"

[sites.dr]
role = "standby"

[resources.docs]
kind = "files"
colour = "blue"
at.primary = { path = "/srv/docs" }
at.mars = { path = "/srv/docs" }
"#;
    write(&w.path("bad.toml"), plan.as_bytes());
    let out = w
        .cmd()
        .args(["--plan", "bad.toml", "plan", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "bad.toml:3",
        "bad.toml:6",
        "bad.toml:13",
        "bad.toml:15",
        "repository.password",
        "objectives.rpo",
        "colour",
        "mars",
    ] {
        assert!(err.contains(expected), "missing {expected} in:\n{err}");
    }
    assert!(err.contains("primary"), "no-primary error missing:\n{err}");
    let json = w.json(&["--plan", "bad.toml", "plan", "check"], 2);
    assert!(json.as_array().unwrap().len() >= 5, "{json}");
}

#[test]
fn secrets_resolve_only_when_asked() {
    let w = Workplace::new();
    let plan = r#"[repository]
url = "./repo"
password = { env = "LIFEBOAT_TEST_UNSET_PASSWORD" }

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.docs]
kind = "files"
at.primary = { path = "src" }
at.dr = { path = "dr/src" }
"#;
    write(&w.path("lifeboat.toml"), plan.as_bytes());
    w.run(&["plan", "check"], 0);
    let out = w
        .cmd()
        .args(["plan", "check", "--resolve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LIFEBOAT_TEST_UNSET_PASSWORD"));
}

#[test]
fn a_plan_drives_backup_and_restore() {
    let w = Workplace::new();
    sample_tree(&w.path("src"));
    write(&w.path("src2/notes.txt"), b"notes");
    let plan = r#"[repository]
url = "./repo"
password = { env = "LIFEBOAT_PASSWORD" }

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.docs]
kind = "files"
exclude = ["data/**"]
at.primary = { path = "src" }
at.dr = { path = "dr/src" }

[resources.notes]
kind = "files"
at.primary = { path = "src2" }
at.dr = { path = "dr/src2" }

[resources.db]
kind = "sqlite"
at.primary = { path = "app.db" }
at.dr = { path = "dr/app.db" }
"#;
    write(&w.path("lifeboat.toml"), plan.as_bytes());
    let run = |args: &[&str], code: i32| {
        let out = w
            .cmd()
            .env_remove("LIFEBOAT_REPOSITORY")
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(&["repo", "init"], 0);
    assert!(w.path("repo/config").is_file());
    // Only the file trees: complete.
    run(&["backup", "docs", "notes"], 0);
    // Everything: the sqlite resource cannot be captured yet, so the point is incomplete.
    let out = run(&["backup"], 4);
    assert!(out.contains("db: FAILED"), "{out}");
    let err = w
        .cmd()
        .env_remove("LIFEBOAT_REPOSITORY")
        .args(["backup", "nope"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&err.stderr).contains("no resource `nope`"));

    // A restore point in which nothing was captured is never `latest`.
    run(&["backup", "db"], 4);
    let out = w.path("out");
    run(
        &[
            "restore",
            "latest",
            "--resource",
            "docs",
            "--target",
            out.to_str().unwrap(),
        ],
        0,
    );
    assert!(out.join("README.txt").is_file());
    assert!(!out.join("data").exists());
    let all = w.path("all");
    run(&["restore", "latest", "--target", all.to_str().unwrap()], 0);
    assert_eq!(
        std::fs::read(all.join("notes/notes.txt")).unwrap(),
        b"notes"
    );
    assert!(all.join("docs/README.txt").is_file());
}

#[test]
fn plan_check_reports_an_unknown_key_next_to_a_missing_kind_and_undeclared_sites() {
    let w = Workplace::new();
    let plan = r#"[repository]
url = "./repo"
password = { env = "LIFEBOAT_PASSWORD" }

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.docs]
kinds = "files"
at.primary = { path = "/srv/docs" }
at.mars = { path = "/srv/docs" }

[traffic]
kind = "command"
at.primary = { run = ["true"] }
at.dr = { run = ["true"] }
at.venus = { run = ["true"] }
"#;
    write(&w.path("bad.toml"), plan.as_bytes());
    let json = w.json(&["--plan", "bad.toml", "plan", "check"], 2);
    let found: Vec<String> = json
        .as_array()
        .expect("an array of diagnostics")
        .iter()
        .map(|d| {
            format!(
                "{} {} {}: {} ({})",
                d["severity"].as_str().unwrap_or_default(),
                d["line"],
                d["path"].as_str().unwrap_or_default(),
                d["message"].as_str().unwrap_or_default(),
                d["help"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            "error 11 resources.docs: missing field `kind` in `resources.docs` (every resource has a `kind`: \"files\", \"postgres\", \"mysql\", \"sqlite\", \"command\" or \"http\")",
            "error 12 resources.docs.kinds: unknown field `kinds` (did you mean `kind`?)",
            "error 14 resources.docs.at.mars: unknown site `mars` (declared sites: `primary`, `dr`)",
            "error 20 traffic.at.venus: unknown site `venus` (declared sites: `primary`, `dr`)",
        ],
        "{json:#}"
    );
}

#[test]
fn a_discovered_item_never_runs_as_shell_text() {
    let w = Workplace::new();
    let plan = r#"[repository]
url = "./repo"
password = { env = "LIFEBOAT_PASSWORD" }

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.flows]
kind = "command"
discover = ["ls", "flows"]
at.primary = { shell = ["sh", "-c"], capture = ["cat flows/{item}"] }
at.dr = { apply = ["sh", "-c", "mkdir -p dr && cat > dr/{item}"] }
"#;
    write(&w.path("lifeboat.toml"), plan.as_bytes());
    let hostile = "a b;touch pwned;$(touch pwned2)";
    write(&w.path(&format!("flows/{hostile}")), b"flow: hostile\n");
    write(&w.path("flows/plain"), b"flow: plain\n");

    let check = w.cmd().args(["plan", "check"]).output().expect("runs");
    assert_eq!(check.status.code(), Some(0), "{check:?}");
    assert!(String::from_utf8_lossy(&check.stdout).contains("valid"));
    let stderr = String::from_utf8_lossy(&check.stderr);
    for expected in [
        "resources.flows.at.primary.capture",
        "resources.flows.at.dr.apply",
        "puts `{item}` into shell text",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected} in:\n{stderr}"
        );
    }

    for args in [&["repo", "init"][..], &["backup"]] {
        w.cmd()
            .env_remove("LIFEBOAT_REPOSITORY")
            .args(args)
            .assert()
            .success();
    }
    w.cmd()
        .env_remove("LIFEBOAT_REPOSITORY")
        .args(["restore", "latest", "--site", "dr", "--resource", "flows"])
        .assert()
        .success();
    assert_eq!(
        std::fs::read(w.path(&format!("dr/{hostile}"))).expect("restored under its own name"),
        b"flow: hostile\n"
    );
    assert_eq!(std::fs::read(w.path("dr/plain")).unwrap(), b"flow: plain\n");
    for planted in ["pwned", "pwned2", "dr/pwned", "dr/pwned2"] {
        assert!(
            !w.path(planted).exists(),
            "the item ran as shell text: {planted}"
        );
    }
}
