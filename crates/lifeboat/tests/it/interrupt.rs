//! A backup killed halfway, and a disk that fills up: the repository stays valid and the next
//! backup reuses what was already stored.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::support::*;

fn random_files(dir: &std::path::Path, count: usize, size: usize) {
    let mut urandom = std::fs::File::open("/dev/urandom").unwrap();
    let mut buf = vec![0u8; size];
    for i in 0..count {
        urandom.read_exact(&mut buf).unwrap();
        write(&dir.join(format!("part-{i:03}.bin")), &buf);
    }
}

#[test]
fn a_backup_killed_halfway_leaves_a_valid_repository_and_is_reused() {
    let w = Workplace::new();
    let src = w.path("src");
    random_files(&src, 48, 8 * 1024 * 1024);
    w.init();
    let mut child = w
        .process()
        .args(["backup", "--path", src.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some of its work is indexed, long before the end.
    let deadline = Instant::now() + Duration::from_secs(60);
    while w.objects("index").is_empty() {
        assert!(Instant::now() < deadline, "no index file appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(w.objects("points").is_empty(), "killed before its manifest");

    let check = w.json(&["check", "--read-data"], 0);
    assert_eq!(check["problems"].as_array().unwrap().len(), 0, "{check}");

    let v = w.json(&["backup", "--path", src.to_str().unwrap()], 0);
    let stats = &v["point"]["resources"][0]["stats"];
    let total = 48 * 8 * 1024 * 1024u64;
    let stored = stats["bytes_stored"].as_u64().unwrap();
    assert!(stored < total - 32 * 1024 * 1024, "reused nothing: {stats}");
    let out = w.path("out");
    w.run(&["restore", "latest", "--target", out.to_str().unwrap()], 0);
    assert_eq!(describe(&src), describe(&out));
}

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_backup_cleanly() {
    let w = Workplace::new();
    let small = w.path("small");
    std::fs::create_dir_all(&small).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&small)
        .status()
        .expect("the `mount` command (Debian package mount)");
    assert!(
        status.success(),
        "mounting a 6 MiB tmpfs needs root (CAP_SYS_ADMIN); the test runs as root in CI"
    );
    let _mount = Mount(small.clone());
    let repo = small.join("repo");

    let src = w.path("src");
    random_files(&src, 3, 4 * 1024 * 1024);
    let run = |args: &[&str]| {
        w.cmd()
            .env("LIFEBOAT_REPOSITORY", &repo)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(run(&["repo", "init"]).status.success());
    let out = run(&["backup", "--path", src.to_str().unwrap()]);
    // The resource fails with the reason; what was stored stays valid (the manifest records
    // the failure when there is room for it, otherwise the whole backup fails).
    assert!(matches!(out.status.code(), Some(1) | Some(4)), "{out:?}");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("No space left on device"), "{said}");

    let check = run(&["check", "--read-data"]);
    assert!(check.status.success(), "{check:?}");
    // Once the space is back (here: a smaller tree, after pruning the leftovers), backups work.
    assert!(run(&["prune", "--grace", "0s"]).status.success());
    std::fs::remove_file(src.join("part-002.bin")).unwrap();
    std::fs::remove_file(src.join("part-001.bin")).unwrap();
    let out = run(&["backup", "--path", src.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(run(&["check", "--read-data"]).status.success());
}
