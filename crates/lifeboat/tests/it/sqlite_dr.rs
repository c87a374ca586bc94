//! SQLite databases restored at the DR site as the application left them: WAL mode, header
//! fields, owner, group and mode kept; never replaced under a process that holds them open
//! (unless forced); no staging file left by an interrupted restore; a capture that names the
//! temporary folder it lacks room in.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const PLAN: &str = r#"[repository]
url = "./repo"
password = { env = "LIFEBOAT_PASSWORD" }

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.sessions]
kind = "sqlite"
at.primary = { path = "app.db" }
at.dr = { path = "dr/app.db" }
"#;

/// Runs `lifeboat` with the plan's own repository; stdout and stderr together.
fn run(w: &Workplace, args: &[&str], code: i32) -> String {
    let out = w
        .cmd()
        .env_remove("LIFEBOAT_REPOSITORY")
        .args(args)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "lifeboat {args:?}\n{said}");
    said
}

/// Python's sqlite3 module, a real SQLite client in another process; its stdout.
fn python(dir: &Path, script: &str) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .expect("python3 (Debian package python3)");
    assert!(out.status.success(), "{script}\n{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A workplace with the plan and a primary database made by `setup` (Python, `c` connected
/// to `app.db`).
fn workplace(setup: &str) -> Workplace {
    let w = Workplace::new();
    write(&w.path("lifeboat.toml"), PLAN.as_bytes());
    std::fs::create_dir_all(w.path("dr")).unwrap();
    python(
        w.dir.path(),
        &format!("import sqlite3\nc = sqlite3.connect('app.db')\n{setup}\nc.commit()\nc.close()"),
    );
    run(&w, &["repo", "init"], 0);
    run(&w, &["backup"], 0);
    w
}

const HEADER: &str = "print(*[c.execute('pragma ' + p).fetchone()[0] for p in \
     ['journal_mode', 'page_size', 'user_version', 'application_id', 'auto_vacuum', \
     'encoding', 'integrity_check']], c.execute('select count(*) from t').fetchone()[0])";

#[test]
fn a_wal_database_comes_back_wal_with_its_header_owner_group_and_mode() {
    let w = workplace(
        "c.execute('pragma page_size=8192'); c.execute('pragma auto_vacuum=incremental')\n\
         c.execute('pragma encoding=\"UTF-16le\"'); c.execute('pragma journal_mode=wal')\n\
         c.execute('pragma user_version=42'); c.execute('pragma application_id=1234567')\n\
         c.execute('create table t(v text)')\n\
         c.executemany('insert into t values (?)', [('x' * 300,)] * 3000)",
    );
    let source = python(
        w.dir.path(),
        &format!("import sqlite3\nc = sqlite3.connect('app.db')\n{HEADER}"),
    );
    assert_eq!(source, "wal 8192 42 1234567 2 UTF-16le ok 3000");
    // The DR file belongs to the application's account, not to whoever restores.
    let dr = w.path("dr/app.db");
    python(
        w.dir.path(),
        "import sqlite3\nc = sqlite3.connect('dr/app.db'); c.execute('create table old(x)'); c.commit()",
    );
    std::os::unix::fs::chown(&dr, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&dr, std::fs::Permissions::from_mode(0o640)).unwrap();

    run(&w, &["restore", "latest", "--site", "dr", "--replace"], 0);
    let restored = python(
        w.dir.path(),
        &format!("import sqlite3\nc = sqlite3.connect('dr/app.db')\n{HEADER}"),
    );
    assert_eq!(restored, source);
    let meta = std::fs::metadata(&dr).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (65534, 65534, 0o640),
        "owner, group and mode of the replaced file"
    );

    // Where nothing was, the file is private (0600) and belongs to the folder's owner.
    let fresh = w.path("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    std::os::unix::fs::chown(&fresh, Some(65534), Some(65534)).unwrap();
    let plan = PLAN.replace("dr/app.db", "fresh/app.db");
    write(&w.path("lifeboat.toml"), plan.as_bytes());
    run(&w, &["restore", "latest", "--site", "dr"], 0);
    let meta = std::fs::metadata(fresh.join("app.db")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (65534, 65534, 0o600)
    );
    // Nothing of the restores is left beside the files.
    for dir in ["dr", "fresh"] {
        let names: Vec<String> = std::fs::read_dir(w.path(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n == "app.db" || n == "app.db-wal" || n == "app.db-shm"),
            "{names:?}"
        );
    }
}

/// A process holding the database at `path` open with an SQLite connection until dropped.
struct Holder(Child);

impl Holder {
    fn start(dir: &Path, path: &str) -> Holder {
        let mut child = Command::new("python3")
            .args([
                "-c",
                "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\n\
                 c.execute('select count(*) from sqlite_schema').fetchone()\n\
                 print('ready', flush=True)\nsys.stdin.read()",
                path,
            ])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_dr_database_held_open_is_refused_naming_the_process_and_force_goes_on() {
    let w = workplace(
        "c.execute('create table t(v text)'); c.executemany('insert into t values (?)', [('new',)] * 10)",
    );
    python(
        w.dir.path(),
        "import sqlite3\nc = sqlite3.connect('dr/app.db'); c.execute('pragma journal_mode=wal')\n\
         c.execute('create table t(v text)'); c.execute(\"insert into t values ('old')\"); c.commit()",
    );
    // Opened through another path to the same file: found by device and inode.
    std::os::unix::fs::symlink(w.path("dr"), w.path("alias")).unwrap();
    let holder = Holder::start(w.dir.path(), "alias/app.db");
    let pid = holder.0.id();

    let said = run(&w, &["restore", "latest", "--site", "dr", "--replace"], 1);
    assert!(said.contains(&format!("pid {pid} (python")), "{said}");
    assert!(said.contains("--force"), "{said}");
    let count = "import sqlite3\nc = sqlite3.connect('dr/app.db')\n\
                 print(c.execute('select count(*) from t').fetchone()[0])";
    assert_eq!(python(w.dir.path(), count), "1", "the DR file is untouched");

    // --force replaces it, and says who still has the old one.
    let out = w
        .cmd()
        .env_remove("LIFEBOAT_REPOSITORY")
        .args([
            "--json",
            "restore",
            "latest",
            "--site",
            "dr",
            "--replace",
            "--force",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let done = &said["resources"][0];
    assert_eq!(done["held_open"][0]["pid"], pid, "{said}");
    assert!(
        done["done"]
            .as_str()
            .unwrap()
            .contains(&format!("still open in pid {pid} (python")),
        "{said}"
    );
    assert_eq!(python(w.dir.path(), count), "10");
    drop(holder);
    // Once it is gone, a plain --replace goes through.
    run(&w, &["restore", "latest", "--site", "dr", "--replace"], 0);
}

/// The staging files beside `dir/app.db` (lifeboat's pattern for it).
fn staging_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".lifeboat-") && n.ends_with("-app.db.tmp"))
        .collect()
}

#[test]
fn a_restore_stopped_by_sigterm_leaves_no_staging_file() {
    // Random rows (they do not compress): large enough that the restore takes a while.
    let w = workplace(
        "c.execute('create table t(v blob)')\n\
         for i in range(160): c.execute('insert into t select randomblob(65536) from (select 1 union all select 2 union all select 3 union all select 4 union all select 5 union all select 6 union all select 7 union all select 8 union all select 9 union all select 10)')",
    );
    python(
        w.dir.path(),
        "import sqlite3\nc = sqlite3.connect('dr/app.db'); c.execute('create table t(v blob)'); c.commit()",
    );
    let before = std::fs::read(w.path("dr/app.db")).unwrap();
    let mut child = w
        .process()
        .env_remove("LIFEBOAT_REPOSITORY")
        .args(["restore", "latest", "--site", "dr", "--replace"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while staging_files(&w.path("dr")).is_empty() {
        assert!(Instant::now() < deadline, "no staging file appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore ended first"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("; removed ") && stderr.contains("-app.db.tmp"),
        "{stderr}"
    );
    assert_eq!(staging_files(&w.path("dr")), Vec::<String>::new());
    assert_eq!(std::fs::read(w.path("dr/app.db")).unwrap(), before);
}

#[test]
fn stale_staging_files_of_the_target_are_removed_by_its_next_restore_and_nothing_else() {
    let w = workplace("c.execute('create table t(v text)')");
    let hex = "0123456789abcdef0123456789abcdef";
    // What a SIGKILLed restore of dr/app.db leaves; and what is not that.
    let stale = format!(".lifeboat-{hex}-app.db.tmp");
    let others = [
        format!(".lifeboat-{hex}-other.db.tmp"),
        format!(".lifeboat-{hex}.tmp"),
        ".lifeboat-0123456789abcdef0123456789abcdeZ-app.db.tmp".to_string(),
        format!(".lifeboat-{hex}-app.db.tmp.keep"),
        format!("lifeboat-{hex}-app.db.tmp"),
    ];
    // One under way in another process (it holds its lock) is left alone too.
    let busy = format!(".lifeboat-{}-app.db.tmp", "f".repeat(32));
    for name in others.iter().chain([&stale, &busy]) {
        write(&w.path("dr").join(name), b"half a database");
    }
    let mut locker = Command::new("python3")
        .args([
            "-c",
            "import fcntl, sys\nf = open(sys.argv[1], 'rb')\nfcntl.flock(f, fcntl.LOCK_EX)\n\
             print('ready', flush=True)\nsys.stdin.read()",
            &format!("dr/{busy}"),
        ])
        .current_dir(w.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(locker.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");

    let said = run(&w, &["restore", "latest", "--site", "dr"], 0);
    assert!(
        said.contains("removed 1 staging file(s) an interrupted restore left"),
        "{said}"
    );
    let _ = locker.kill();
    let _ = locker.wait();
    let mut left: Vec<String> = std::fs::read_dir(w.path("dr"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut expected: Vec<String> = others.to_vec();
    expected.push(busy);
    expected.push("app.db".to_string());
    expected.sort();
    assert_eq!(left, expected);
}

#[test]
fn a_capture_without_room_in_tmpdir_names_the_folder_and_the_room_needed() {
    // About 12 MiB of rows that do not compress, against a 6 MiB TMPDIR.
    let w = workplace(
        "c.execute('create table t(v blob)')\n\
         c.executemany('insert into t values (randomblob(65536))', [()] * 190)",
    );
    let small = w.path("small");
    std::fs::create_dir_all(&small).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&small)
        .status()
        .expect("the `mount` command (Debian package mount)");
    assert!(
        status.success(),
        "mounting a 6 MiB tmpfs needs root (CAP_SYS_ADMIN); the test runs as root in CI"
    );
    struct Mount(std::path::PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _mount = Mount(small.clone());
    let out = w
        .cmd()
        .env_remove("LIFEBOAT_REPOSITORY")
        .env("TMPDIR", &small)
        .args(["backup"])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "the temporary folder {} (TMPDIR) has",
            small.display()
        )),
        "{said}"
    );
    assert!(said.contains("MiB free; the copy of"), "{said}");
    assert!(
        said.contains(" MiB: free some room there or set TMPDIR"),
        "{said}"
    );
    // Nothing was left in it.
    assert_eq!(std::fs::read_dir(&small).unwrap().count(), 0);
}

/// The capture folders in `tmp` (`lifeboat-sqlite-<hex>`).
fn capture_folders(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("lifeboat-sqlite-"))
        .collect()
}

#[test]
fn a_backup_stopped_by_sigterm_leaves_no_copy_in_tmpdir() {
    let w = workplace(
        "c.execute('create table t(v blob)')\n\
         c.executemany('insert into t values (randomblob(65536))', [()] * 1200)",
    );
    let tmp = w.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut child = w
        .process()
        .env_remove("LIFEBOAT_REPOSITORY")
        .env("TMPDIR", &tmp)
        .args(["backup"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while capture_folders(&tmp).is_empty() {
        assert!(Instant::now() < deadline, "no capture folder appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended first"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert_eq!(capture_folders(&tmp), Vec::<String>::new(), "{stderr}");
}

#[test]
fn a_copy_a_killed_capture_left_in_tmpdir_is_removed_by_the_next_and_nothing_else() {
    let w = workplace("c.execute('create table t(v text)')");
    let tmp = w.path("tmp");
    let stale = "lifeboat-sqlite-0123456789abcdef0123456789abcdef";
    let busy = format!("lifeboat-sqlite-{}", "e".repeat(32));
    let others = [
        "lifeboat-sqlite-abc123",
        "lifeboat-sqlite-0123456789ABCDEF0123456789ABCDEF",
    ];
    for name in others.iter().chain([&stale, &busy.as_str()]) {
        write(&tmp.join(name).join("copy.sqlite"), b"half a database");
    }
    // A capture under way in another process holds its folder's lock.
    let mut locker = Command::new("python3")
        .args([
            "-c",
            "import fcntl, os, sys\nf = os.open(sys.argv[1], os.O_RDONLY)\n\
             fcntl.flock(f, fcntl.LOCK_EX)\nprint('ready', flush=True)\nsys.stdin.read()",
            tmp.join(&busy).to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(locker.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let out = w
        .cmd()
        .env_remove("LIFEBOAT_REPOSITORY")
        .env("TMPDIR", &tmp)
        .args(["backup"])
        .output()
        .unwrap();
    let _ = locker.kill();
    let _ = locker.wait();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut left = capture_folders(&tmp);
    left.sort();
    let mut expected: Vec<String> = others.iter().map(|s| s.to_string()).collect();
    expected.push(busy);
    expected.sort();
    assert_eq!(left, expected);
}
