//! Hostile and unlucky input at the target and the source: links planted where a restore
//! writes (as root too), staging names planted beside a database, discovered names that try to
//! escape or inject, a corrupt pack mid-restore with old files in place, files a capture cannot
//! read, names that are not UTF-8, a umask that would expose secrets.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::support::*;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Everything about a folder's entries that a restore could change: name, kind, content,
/// mode, owner.
fn fingerprint(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walk(dir) {
        let m = std::fs::symlink_metadata(&e).unwrap();
        let content = if m.is_file() {
            format!("{:?}", std::fs::read(&e).unwrap())
        } else {
            String::new()
        };
        out.push(format!(
            "{} {:o} {}:{} {content}",
            e.strip_prefix(dir).unwrap().display(),
            m.mode(),
            m.uid(),
            m.gid()
        ));
    }
    let m = std::fs::metadata(dir).unwrap();
    out.push(format!(". {:o} {}:{}", m.mode(), m.uid(), m.gid()));
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        out.push(path.clone());
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&path));
        }
    }
    out
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn a_restore_never_writes_through_a_link_in_its_target() {
    let w = Workplace::new();
    w.init();
    // What nobody may touch: a folder outside the target, owned and moded as it is.
    let elsewhere = w.path("elsewhere");
    write(&elsewhere.join("victim"), b"keep me");
    write(&elsewhere.join("sub/other"), b"keep me too");
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        elsewhere.join("victim"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let before = fingerprint(&elsewhere);

    // The first point has `link -> elsewhere` and `file -> elsewhere/victim`.
    let first = w.path("first");
    std::fs::create_dir_all(&first).unwrap();
    std::os::unix::fs::symlink(&elsewhere, first.join("link")).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("victim"), first.join("file")).unwrap();
    let first_id = w.backup(&first);
    // The second has a folder `link/` with `victim` and `sub/other` in it, and a file `file`:
    // restored over the first, each would write, chmod and chown through the links.
    let second = w.path("second");
    write(&second.join("link/victim"), b"overwritten");
    write(&second.join("link/sub/other"), b"overwritten");
    write(&second.join("file"), b"a file now");
    for p in ["link", "link/sub", "link/victim", "file"] {
        std::fs::set_permissions(second.join(p), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    if is_root() {
        for p in ["link", "link/sub", "link/victim", "link/sub/other", "file"] {
            std::os::unix::fs::lchown(second.join(p), Some(4242), Some(4242)).unwrap();
        }
    }
    let second_id = w.backup(&second);

    let target = w.path("target");
    w.run(&["restore", &first_id, "--target", s(&target)], 0);
    let first_restored = std::fs::read_link(target.join("link")).unwrap();
    assert_eq!(first_restored, elsewhere);
    w.run(
        &["restore", &second_id, "--target", s(&target), "--replace"],
        0,
    );

    assert_eq!(
        fingerprint(&elsewhere),
        before,
        "nothing outside the target changed"
    );
    let link = std::fs::symlink_metadata(target.join("link")).unwrap();
    assert!(link.is_dir(), "the link was replaced by the point's folder");
    assert_eq!(
        std::fs::read(target.join("link/sub/other")).unwrap(),
        b"overwritten"
    );
    assert!(
        std::fs::symlink_metadata(target.join("file"))
            .unwrap()
            .is_file()
    );
    assert_eq!(std::fs::read(target.join("file")).unwrap(), b"a file now");
    if is_root() {
        assert_eq!(
            std::fs::metadata(target.join("link/victim")).unwrap().uid(),
            4242
        );
    }
    let verified = w.run(
        &["restore", &second_id, "--target", s(&target), "--verify"],
        0,
    );
    assert!(verified.contains("matches"), "{verified}");
    assert_no_staging(&target);
}

/// No staging file is left anywhere below `dir`.
fn assert_no_staging(dir: &Path) {
    for e in walk(dir) {
        let name = e.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".lifeboat-"),
            "left behind: {}",
            e.display()
        );
    }
}

#[test]
fn a_corrupt_pack_mid_restore_leaves_every_old_file_as_it_was() {
    let w = Workplace::new();
    w.init();
    let src = w.path("src");
    // Incompressible files of several frames each, and small ones.
    for i in 0..4 {
        write(
            &src.join(format!("big-{i}.bin")),
            &noise(3 * 1024 * 1024, 10 + i),
        );
        write(
            &src.join(format!("small-{i}.txt")),
            format!("new small {i}\n").as_bytes(),
        );
    }
    w.backup(&src);
    // The target holds an older version of every file.
    let target = w.path("target");
    for i in 0..4 {
        write(
            &target.join(format!("big-{i}.bin")),
            format!("old big {i}").as_bytes(),
        );
        write(
            &target.join(format!("small-{i}.txt")),
            format!("old small {i}").as_bytes(),
        );
    }
    // Damage the middle of the largest pack.
    let pack = w
        .objects("data")
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut data = std::fs::read(&pack).unwrap();
    let middle = data.len() / 2;
    for b in &mut data[middle..middle + 64] {
        *b ^= 0x55;
    }
    std::fs::write(&pack, data).unwrap();

    let err = w.fail(
        &["restore", "latest", "--target", s(&target), "--replace"],
        1,
    );
    assert!(err.contains("could not be restored"), "{err}");
    assert!(err.contains("unchanged"), "{err}");
    let mut failed = 0;
    for i in 0..4 {
        for (name, old, new) in [
            (
                format!("big-{i}.bin"),
                format!("old big {i}").into_bytes(),
                noise(3 * 1024 * 1024, 10 + i),
            ),
            (
                format!("small-{i}.txt"),
                format!("old small {i}").into_bytes(),
                format!("new small {i}\n").into_bytes(),
            ),
        ] {
            let now = std::fs::read(target.join(&name)).unwrap();
            if err.contains(&name) {
                failed += 1;
                assert_eq!(now, old, "{name} failed and must be as it was");
            } else {
                assert_eq!(now, new, "{name} did not fail and must be restored");
            }
        }
    }
    assert!(failed >= 1, "the damaged frame belongs to some file: {err}");
    assert!(failed < 8, "the other files were restored: {err}");
    assert_no_staging(&target);
}

#[test]
fn a_capture_that_skips_files_is_incomplete_and_exits_4() {
    let w = Workplace::new();
    let src = w.path("src");
    write(&src.join("readable.txt"), b"fine");
    write(&src.join("secret.txt"), b"not for you");
    std::fs::create_dir_all(src.join("closed")).unwrap();
    write(&src.join("closed/inside.txt"), b"hidden");
    std::fs::set_permissions(
        src.join("secret.txt"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::set_permissions(src.join("closed"), std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads everything: run lifeboat as an unprivileged user then.
    let run = |args: &[&str], code: i32| -> String {
        let mut c = w.process();
        if is_root() {
            c.uid(65534).gid(65534);
        }
        let out = c.args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        stdout
    };
    if is_root() {
        std::fs::set_permissions(w.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        for p in [
            w.dir.path().to_path_buf(),
            src.clone(),
            src.join("readable.txt"),
        ] {
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        }
    }
    run(&["repo", "init"], 0);
    let text = run(&["backup", "--path", s(&src)], 4);
    assert!(text.contains("(incomplete)"), "{text}");
    assert!(
        text.contains("INCOMPLETE") && text.contains("2 skipped"),
        "{text}"
    );
    let out = run(&["--json", "points"], 0);
    let points: serde_json::Value = serde_json::from_str(&out).unwrap();
    let point = &points[0];
    assert_eq!(point["complete"], false, "{point}");
    let resource = &point["point"]["resources"][0];
    assert_eq!(resource["status"], "partial", "{resource}");
    let skipped = resource["skipped"].to_string();
    assert!(
        skipped.contains("secret.txt") && skipped.contains("closed"),
        "{skipped}"
    );
    std::fs::set_permissions(src.join("closed"), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Restored with --replace, a capture that skipped entries is an overlay: the files it
    // could not read (and anything else) stay at the target, never removed as "lacking".
    let out_dir = w.path("out");
    write(&out_dir.join("secret.txt"), b"the only copy");
    write(&out_dir.join("other.txt"), b"kept");
    let restored = w
        .cmd()
        .args(["restore", "latest", "--target", s(&out_dir), "--replace"])
        .output()
        .unwrap();
    assert!(restored.status.success(), "{restored:?}");
    let note = String::from_utf8_lossy(&restored.stderr);
    assert!(note.contains("skipped entries"), "{note}");
    assert_eq!(
        std::fs::read(out_dir.join("secret.txt")).unwrap(),
        b"the only copy"
    );
    assert!(out_dir.join("other.txt").exists());
    assert_eq!(
        std::fs::read(out_dir.join("readable.txt")).unwrap(),
        b"fine"
    );
}

#[test]
fn sqlite_staging_never_goes_through_a_planted_link() {
    let w = Workplace::new();
    write(
        &w.path("lifeboat.toml"),
        br#"[repository]
url = "./repo"
password = { env = "LIFEBOAT_PASSWORD" }

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.app]
kind = "sqlite"
at.primary = { path = "app.db" }
at.dr = { path = "dr/app.db" }
"#,
    );
    let made = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3; c=sqlite3.connect('app.db'); c.execute('create table t(v)'); \
             c.execute(\"insert into t values ('primary')\"); c.commit()",
        ])
        .current_dir(w.dir.path())
        .status()
        .expect("python3 (Debian package python3) makes the SQLite file");
    assert!(made.success());
    w.init();
    w.run(&["backup"], 0);
    // Every name the old code staged at, and a few more, point at a file outside.
    write(&w.path("dr/app.db"), b"the old DR database");
    std::fs::set_permissions(w.path("dr/app.db"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let outside = w.path("outside.txt");
    write(&outside, b"keep me");
    for staging in [
        "dr/app.db.lifeboat-restore",
        "dr/app.db.tmp",
        "dr/.app.db.tmp",
        "dr/app.db-journal",
    ] {
        std::os::unix::fs::symlink(&outside, w.path(staging)).unwrap();
    }
    w.run(&["restore", "latest", "--site", "dr", "--replace"], 0);
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    let restored = std::fs::read(w.path("dr/app.db")).unwrap();
    assert!(restored.starts_with(b"SQLite format 3"));
    let mode = std::fs::metadata(w.path("dr/app.db")).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o640, "the replaced file's mode is kept");
    assert_no_staging(&w.path("dr"));
}

#[test]
fn discovered_names_never_escape_a_folder_or_become_options() {
    let w = Workplace::new();
    // The discovery prints one bad name among good ones: the resource fails, naming it.
    write(
        &w.path("lifeboat.toml"),
        br#"[repository]
url = "./repo"
password = { env = "LIFEBOAT_PASSWORD" }

[sites.primary]
role = "primary"

[resources.flows]
kind = "command"
discover = ["cat", "items.txt"]
at.primary = { capture = ["echo", "{item}"] }
"#,
    );
    w.init();
    for bad in ["..", "-n", "tab\there", "."] {
        write(&w.path("items.txt"), format!("good\n{bad}\n").as_bytes());
        let out = w.json(&["backup"], 4);
        let text = out.to_string();
        assert!(text.contains("will not use"), "{bad:?}: {text}");
    }
    // Shell metacharacters are plain text to a program run without a shell.
    write(&w.path("items.txt"), b"$(touch pwned)\n; touch pwned2\n");
    w.run(&["backup"], 0);
    assert!(!w.path("pwned").exists() && !w.path("pwned2").exists());
    let out = w.path("out");
    w.run(
        &[
            "restore",
            "latest",
            "--resource",
            "flows",
            "--target",
            s(&out),
        ],
        0,
    );
    assert!(
        walk(&out).iter().all(|p| p.starts_with(&out)),
        "everything restored is inside the target"
    );
}

#[test]
fn names_that_are_not_utf8_print_losslessly_and_never_panic() {
    let w = Workplace::new();
    w.init();
    let src = w.path("src");
    let odd = OsStr::from_bytes(b"caf\xe9-\x1b[31m.txt");
    write(&src.join(odd), b"latin-1 name");
    let id = w.backup(&src);
    let target = w.dir.path().join(OsStr::from_bytes(b"target-\xff"));
    let out = w
        .cmd()
        .args(["--json", "restore", &id, "--target"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["resources"][0]["target"],
        format!("{}/target-\\xff", w.dir.path().display())
    );
    assert_eq!(std::fs::read(target.join(odd)).unwrap(), b"latin-1 name");
    let human = w
        .cmd()
        .args(["restore", &id, "--target"])
        .arg(&target)
        .arg("--verify")
        .output()
        .unwrap();
    assert!(human.status.success(), "{human:?}");
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("target-\\xff"),
        "{human:?}"
    );
    let backup = w
        .cmd()
        .args(["--json", "backup", "--path"])
        .arg(&target)
        .output()
        .unwrap();
    assert!(backup.status.success(), "{backup:?}");
    let v: serde_json::Value = serde_json::from_slice(&backup.stdout).unwrap();
    assert!(
        v["point"]["resources"][0]["source"]
            .as_str()
            .unwrap()
            .ends_with("target-\\xff"),
        "{v}"
    );
}

#[test]
fn the_repository_is_private_whatever_the_umask() {
    let w = Workplace::new();
    let out = std::process::Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" repo init"])
        .arg(assert_cmd::cargo::cargo_bin("lifeboat"))
        .current_dir(w.dir.path())
        .env("LIFEBOAT_REPOSITORY", w.repo())
        .env("LIFEBOAT_PASSWORD", PASSWORD)
        .env("LIFEBOAT_CACHE_DIR", w.path("cache"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mode = std::fs::metadata(w.repo()).unwrap().mode() & 0o777;
    assert_eq!(
        mode, 0o700,
        "the repository folder (its key files within) is private"
    );
}

#[test]
fn a_failover_from_a_pinned_partial_capture_says_so_and_calls_no_rpo_met() {
    let w = Workplace::new();
    let primary = w.path("primary");
    write(&primary.join("readable.csv"), b"a,b\n");
    write(&primary.join("locked.csv"), b"only here\n");
    std::fs::set_permissions(
        primary.join("locked.csv"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::fs::create_dir_all(w.path("dr/data")).unwrap();
    write(&w.path("dr/data/locked.csv"), b"an older copy\n");
    std::fs::write(
        w.path("lifeboat.toml"),
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

[resources.data]
kind = "files"
at.primary = {{ path = "{}" }}
at.dr = {{ path = "{}" }}

[fence]
run = [["true"]]
"#,
            primary.display(),
            w.path("dr/data").display()
        ),
    )
    .unwrap();
    // Root reads everything: the backup runs as an unprivileged user then.
    let as_user = |args: &[&str], code: i32| {
        let mut c = w.process();
        c.env_remove("LIFEBOAT_REPOSITORY");
        if is_root() {
            c.uid(65534).gid(65534);
        }
        let out = c.args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    if is_root() {
        std::fs::set_permissions(w.dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        for p in [primary.clone(), primary.join("readable.csv")] {
            std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        }
    }
    as_user(&["repo", "init"], 0);
    as_user(&["backup"], 4);
    let points: serde_json::Value =
        serde_json::from_str(&as_user(&["--json", "points"], 0)).unwrap();
    let id = points[0]["id"].as_str().unwrap().to_string();
    // Nothing complete: the failover refuses, and says how to go on.
    let refused = as_user(&["--json", "failover", "--to", "dr", "--dry-run"], 1);
    assert!(refused.contains("--point"), "{refused}");
    // Pinned, it goes on, says the capture is partial, and calls no RPO met.
    let dry = as_user(&["failover", "--to", "dr", "--point", &id, "--dry-run"], 0);
    assert!(dry.contains("PARTIAL"), "{dry}");
    // The DR site's folder is root's: the failover itself runs as the test does.
    let out = w
        .process()
        .env_remove("LIFEBOAT_REPOSITORY")
        .args(["--json", "failover", "--to", "dr", "--point", &id, "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["partial"], serde_json::json!(["data"]), "{report}");
    assert!(report["rpo_met"].is_null(), "{report}");
    assert!(
        report["rpo_basis"]
            .as_str()
            .unwrap()
            .contains("skipped entries"),
        "{report}"
    );
    // The DR site's copy of what the capture could not read is not removed.
    assert_eq!(
        std::fs::read(w.path("dr/data/locked.csv")).unwrap(),
        b"an older copy\n"
    );
    assert_eq!(
        std::fs::read(w.path("dr/data/readable.csv")).unwrap(),
        b"a,b\n"
    );
}
