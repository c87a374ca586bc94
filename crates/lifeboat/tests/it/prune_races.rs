//! Prunes at a zero grace period racing backups, prunes killed at each step, and read-only
//! commands without a writable cache: nothing a restore point needs is ever lost, and what an
//! interrupted prune leaves is reclaimed by the next one.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use crate::support::*;

fn data_tree(root: &Path, seed: u64, files: u64, size: usize) {
    for f in 0..files {
        write(
            &root.join(format!("f{f:02}.bin")),
            &noise(size, seed * 1000 + f),
        );
    }
}

#[test]
fn prune_at_zero_grace_racing_a_backup_never_loses_what_the_backup_needs() {
    let w = Workplace::new();
    w.init();
    // One tree whose content switches between X and Y: after `forget`, the point holding X is
    // gone, so a prune condemns X's data while the racing backup of X deduplicates against it.
    let x = w.path("x");
    data_tree(&x, 1, 10, 700_000);
    let src = w.path("src");
    let set = |from: &Path| {
        if src.exists() {
            std::fs::remove_dir_all(&src).unwrap();
        }
        std::fs::create_dir_all(&src).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), src.join(e.file_name())).unwrap();
        }
    };
    let y = w.path("y");
    let repo = w.repo();
    for round in 0..20u64 {
        set(&x);
        w.backup(&src);
        data_tree(&y, 100 + round, 1, 10_000);
        set(&y);
        w.backup(&src);
        w.json(&["forget", "--keep-last", "1"], 0);
        set(&x);

        let spawn = |args: &[&str]| -> Child {
            w.process()
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (prune, backup) = if round.is_multiple_of(2) {
            let p = spawn(&["--json", "prune", "--grace", "0s"]);
            (
                p,
                spawn(&["--json", "backup", "--path", src.to_str().unwrap()]),
            )
        } else {
            let b = spawn(&["--json", "backup", "--path", src.to_str().unwrap()]);
            (spawn(&["--json", "prune", "--grace", "0s"]), b)
        };
        let backup = backup.wait_with_output().unwrap();
        let prune = prune.wait_with_output().unwrap();
        assert!(
            backup.status.success(),
            "round {round}: backup: {}",
            String::from_utf8_lossy(&backup.stderr)
        );
        assert!(
            prune.status.success(),
            "round {round}: prune: {}",
            String::from_utf8_lossy(&prune.stderr)
        );
        let check = w.cmd().args(["check"]).output().unwrap();
        assert!(
            check.status.success(),
            "round {round}: check after a racing prune:\n{}\nprune: {}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&prune.stdout)
        );
        let out = w.path(&format!("out{round}"));
        w.run(&["restore", "latest", "--target", out.to_str().unwrap()], 0);
        assert_eq!(describe(&src), describe(&out), "round {round}");
        std::fs::remove_dir_all(&out).unwrap();
        // No backup marker is left behind by a backup that ended.
        let markers: Vec<_> = w
            .objects("leases")
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("backup-")
            })
            .collect();
        assert!(markers.is_empty(), "round {round}: {markers:?}");
    }
    assert!(repo.exists());
    // Everything waiting is deleted once no backup runs.
    w.json(&["prune", "--grace", "0s"], 0);
    w.run(&["check", "--read-data"], 0);
}

/// A repository where a prune has everything to do: packs to repack, to condemn, index files
/// to rewrite, packs and markers to delete.
fn repo_with_work() -> (Workplace, std::path::PathBuf) {
    let w = Workplace::new();
    w.init();
    let src = w.path("src");
    data_tree(&src.join("a"), 1, 6, 300_000);
    data_tree(&src.join("b"), 2, 6, 300_000);
    data_tree(&src.join("z"), 3, 8, 600_000);
    w.backup(&src);
    std::fs::remove_dir_all(src.join("b")).unwrap();
    std::fs::remove_dir_all(src.join("z")).unwrap();
    data_tree(&src.join("c"), 4, 4, 200_000);
    w.backup(&src);
    data_tree(&src.join("d"), 5, 4, 200_000);
    w.backup(&src);
    w.json(&["forget", "--keep-last", "2"], 0);
    (w, src)
}

/// The steps a prune logs at debug level as it begins them.
const STEPS: [&str; 9] = [
    "reading restore points",
    "repacking",
    "repacked and indexed",
    "writing the condemned marker",
    "reading restore points again",
    "rewriting index files",
    "deleting packs",
    "deleting due markers",
    "reclaiming leftovers",
];

/// Runs `prune --grace 0s` and kills it (SIGKILL) as soon as it logs that it begins `step`;
/// returns whether it was killed (rather than finished first).
fn prune_killed_at(w: &Workplace, step: &str) -> bool {
    let mut child = w
        .process()
        .args(["prune", "--grace", "0s"])
        .env("LIFEBOAT_LOG", "lifeboat_repository=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let wanted = format!("prune step: {step}");
    let mut killed = false;
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if line.contains(&wanted) {
            child.kill().unwrap();
            killed = true;
            break;
        }
    }
    child.wait().unwrap();
    killed
}

/// The killed prune's lease, made to have expired (as it does after its duration).
fn expire_leases(w: &Workplace) {
    for path in w.objects("leases") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("prune-") {
            continue;
        }
        let mut record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if record["released"] == false {
            record["expires"] =
                serde_json::json!(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1));
            std::fs::write(&path, record.to_string()).unwrap();
        }
    }
}

#[test]
fn a_prune_killed_at_each_step_leaves_nothing_the_next_prune_does_not_reclaim() {
    for step in STEPS {
        let (w, src) = repo_with_work();
        let killed = prune_killed_at(&w, step);
        assert!(killed, "the prune never reached `{step}`");
        // Valid at every instant: leftovers are at most warnings.
        let v = w.json(&["check"], 0);
        assert!(v["problems"].as_array().unwrap().is_empty(), "{step}: {v}");

        expire_leases(&w);
        w.json(&["prune", "--grace", "0s"], 0);
        let v = w.json(&["check", "--read-data"], 0);
        assert!(v["problems"].as_array().unwrap().is_empty(), "{step}: {v}");
        assert!(v["warnings"].as_array().unwrap().is_empty(), "{step}: {v}");
        assert!(v["notes"].as_array().unwrap().is_empty(), "{step}: {v}");
        assert!(w.objects("condemned").is_empty(), "{step}");
        // Nothing is left for a later prune: no pack to condemn or repack.
        let dry = w.json(&["prune", "--grace", "0s", "--dry-run"], 0);
        assert_eq!(dry["condemned_packs"], 0, "{step}: {dry}");
        assert_eq!(dry["deleted_packs"], 0, "{step}: {dry}");
        let out = w.path("out");
        w.run(&["restore", "latest", "--target", out.to_str().unwrap()], 0);
        assert_eq!(describe(&src), describe(&out), "{step}");
    }
}

#[test]
fn temporary_files_of_interrupted_writes_are_warned_about_and_reclaimed() {
    let (w, _src) = repo_with_work();
    // What a write killed before its rename leaves (the store writes `<object>#<n>` first).
    let pack = &w.objects("data")[0];
    let temp = pack.with_file_name(format!("{}#1", pack.file_name().unwrap().to_string_lossy()));
    std::fs::write(&temp, b"half a pack").unwrap();
    let index_temp = w
        .repo()
        .join("index")
        .join(format!("{}#2", "ab".repeat(32)));
    std::fs::write(&index_temp, b"half an index file").unwrap();
    let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    filetime::set_file_mtime(&temp, old).unwrap();
    filetime::set_file_mtime(&index_temp, old).unwrap();

    let v = w.json(&["check"], 0);
    let warnings = v["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{v}");
    assert!(
        warnings
            .iter()
            .all(|w| w["message"].as_str().unwrap().contains("never finished")),
        "{v}"
    );
    let human = w.run(&["check"], 0);
    assert!(human.contains("warning: index/"), "{human}");

    // Younger than the grace period: kept; older: removed.
    let p = w.json(&["prune"], 0);
    assert_eq!(p["temporaries_removed"], 2, "{p}");
    assert!(!temp.exists() && !index_temp.exists());
    let v = w.json(&["check"], 0);
    assert!(v["warnings"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn a_killed_backup_holds_deletions_back_and_its_marker_is_reported() {
    let (w, src) = repo_with_work();
    // A backup killed after it wrote its marker: prune condemns, but deletes nothing that
    // was condemned after the backup began, until the marker is no longer honoured.
    let marker = w
        .repo()
        .join("leases")
        .join(format!("backup-{}", "cd".repeat(16)));
    std::fs::create_dir_all(marker.parent().unwrap()).unwrap();
    std::fs::write(
        &marker,
        serde_json::json!({"holder": {"host": "elsewhere", "pid": 7}, "started": jiff::Timestamp::now()})
            .to_string(),
    )
    .unwrap();
    let v = w.json(&["check"], 0);
    let warnings = v["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{v}");
    assert!(
        warnings[0]["message"]
            .as_str()
            .unwrap()
            .contains("elsewhere"),
        "{v}"
    );
    let p = w.json(&["prune", "--grace", "0s"], 0);
    assert!(p["condemned_packs"].as_u64().unwrap() >= 1, "{p}");
    assert_eq!(p["deleted_packs"], 0, "{p}");
    assert!(p["waiting_for_backups"].as_u64().unwrap() >= 1, "{p}");
    w.run(&["check", "--read-data"], 0);

    // A day later the marker is stale: the next prune removes it and deletes.
    let old = filetime::FileTime::from_unix_time(jiff::Timestamp::now().as_second() - 25 * 3600, 0);
    filetime::set_file_mtime(&marker, old).unwrap();
    let p = w.json(&["prune", "--grace", "0s"], 0);
    assert!(p["deleted_packs"].as_u64().unwrap() >= 1, "{p}");
    assert_eq!(p["stale_backup_markers_removed"], 1, "{p}");
    assert!(!marker.exists());
    let v = w.json(&["check", "--read-data"], 0);
    assert!(v["warnings"].as_array().unwrap().is_empty(), "{v}");
    let out = w.path("out");
    w.run(&["restore", "latest", "--target", out.to_str().unwrap()], 0);
    assert_eq!(describe(&src), describe(&out));
}

#[test]
fn read_only_commands_work_when_no_cache_can_be_written() {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    w.init();
    let id = w.backup(&src);
    // A cache location that cannot be created, even by root: its parent is a file.
    let blocker = w.path("not-a-folder");
    std::fs::write(&blocker, b"").unwrap();
    let unwritable = blocker.join("cache");
    for env in [
        vec![("LIFEBOAT_CACHE_DIR", unwritable.to_str().unwrap())],
        vec![("XDG_CACHE_HOME", blocker.to_str().unwrap())],
        vec![("HOME", blocker.to_str().unwrap())],
    ] {
        let run = |args: &[&str]| {
            let mut cmd = w.cmd();
            if env[0].0 != "LIFEBOAT_CACHE_DIR" {
                cmd.env_remove("LIFEBOAT_CACHE_DIR")
                    .env_remove("XDG_CACHE_HOME");
            }
            for (k, v) in &env {
                cmd.env(k, v);
            }
            let out = cmd.args(args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(out.status.code(), Some(0), "{env:?} {args:?}: {stderr}");
            assert!(
                stderr.contains("temporary one"),
                "{env:?} {args:?}: {stderr}"
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let points = run(&["--json", "points"]);
        assert!(points.contains(&id), "{points}");
        run(&["check"]);
        let out = w.path("out");
        run(&["restore", &id, "--target", out.to_str().unwrap()]);
        assert_eq!(describe(&src), describe(&out));
        std::fs::remove_dir_all(&out).unwrap();
    }
    assert!(!unwritable.exists());
}
