//! Backups of a tree that changes under them: a file renamed or replaced during the backup is
//! captured under one of its names, a file rewritten in place is captured whole.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::*;

const LOGS: usize = 40;
const INPLACE_LEN: usize = 200_000;

fn log_content(i: usize) -> Vec<u8> {
    noise(20_000 + i * 97, 7000 + i as u64)
}

/// Renames every `logs/NN.a` to `logs/NN.b` and back, over and over (as log rotation does),
/// and rewrites `inplace.bin` in place (same length, never truncated), until stopped.
fn churn(root: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut rounds = 0u64;
        let versions = [noise(INPLACE_LEN, 1), noise(INPLACE_LEN, 2)];
        let inplace = std::fs::OpenOptions::new()
            .write(true)
            .open(root.join("inplace.bin"))
            .unwrap();
        while !stop.load(Ordering::Relaxed) {
            let (from, to) = if rounds.is_multiple_of(2) {
                ("a", "b")
            } else {
                ("b", "a")
            };
            // A whole folder renamed too.
            std::fs::rename(
                root.join(format!("rot/d.{from}")),
                root.join(format!("rot/d.{to}")),
            )
            .unwrap();
            for i in 0..LOGS {
                let logs = root.join("logs");
                std::fs::rename(
                    logs.join(format!("{i:02}.{from}")),
                    logs.join(format!("{i:02}.{to}")),
                )
                .unwrap();
                if i % 8 == 0 {
                    inplace
                        .write_all_at(&versions[(rounds as usize + i) % 2], 0)
                        .unwrap();
                }
            }
            rounds += 1;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        rounds
    })
}

fn one_of(dir: &Path, i: usize) -> Option<Vec<u8>> {
    let a = std::fs::read(dir.join(format!("logs/{i:02}.a"))).ok();
    let b = std::fs::read(dir.join(format!("logs/{i:02}.b"))).ok();
    assert!(
        a.is_none() || b.is_none(),
        "log {i} restored under both names in {}",
        dir.display()
    );
    a.or(b)
}

#[test]
fn files_renamed_during_a_backup_are_captured_under_one_of_their_names() {
    let w = Workplace::new();
    let src = w.path("src");
    for i in 0..LOGS {
        write(&src.join(format!("logs/{i:02}.a")), &log_content(i));
    }
    write(&src.join("inplace.bin"), &noise(INPLACE_LEN, 1));
    for f in 0..3 {
        write(&src.join(format!("rot/d.a/{f}.txt")), &log_content(100 + f));
    }
    w.init();

    let stop = Arc::new(AtomicBool::new(false));
    let churner = churn(src.clone(), stop.clone());
    let mut points = Vec::new();
    for run in 0..6u64 {
        // Files to read first (they sort before `logs/`), changed every run, so each backup
        // spends its time while the logs rotate.
        for f in 0..6u64 {
            write(
                &src.join(format!("data/{f}.bin")),
                &noise(1_500_000, 100 * run + f),
            );
        }
        let out = w
            .cmd()
            .args(["--json", "backup", "--path", src.to_str().unwrap()])
            .output()
            .unwrap();
        let code = out.status.code();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        // Complete (0), or honestly incomplete (4) if something could not be captured.
        assert!(
            (code == Some(0) && v["complete"] == true)
                || (code == Some(4) && v["complete"] == false),
            "{code:?} {v}"
        );
        assert!(
            v["files_skipped"].is_u64() && v["files_changed"].is_u64(),
            "{v}"
        );
        eprintln!(
            "backup {run}: exit {code:?}, {} files skipped, {} changed while read",
            v["files_skipped"], v["files_changed"]
        );
        points.push(v["id"].as_str().unwrap().to_string());
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = churner.join().unwrap();
    assert!(rounds > 10, "the logs were renamed {rounds} times only");

    for (n, id) in points.iter().enumerate() {
        let out = w.path(&format!("out{n}"));
        w.run(&["restore", id, "--target", out.to_str().unwrap()], 0);
        for i in 0..LOGS {
            let got = one_of(&out, i)
                .unwrap_or_else(|| panic!("point {n}: log {i} is missing under both names"));
            assert!(
                got == log_content(i),
                "point {n}: log {i} has other content"
            );
        }
        let a = out.join("rot/d.a").exists();
        let b = out.join("rot/d.b").exists();
        assert!(a != b, "point {n}: the renamed folder: d.a {a}, d.b {b}");
        let folder = out.join(if a { "rot/d.a" } else { "rot/d.b" });
        for f in 0..3 {
            let got = std::fs::read(folder.join(format!("{f}.txt")))
                .unwrap_or_else(|e| panic!("point {n}: {} {f}.txt: {e}", folder.display()));
            assert!(got == log_content(100 + f), "point {n}: {f}.txt");
        }
        let inplace = std::fs::read(out.join("inplace.bin")).unwrap();
        assert_eq!(inplace.len(), INPLACE_LEN, "point {n}: inplace.bin");
        assert!(
            inplace.iter().any(|b| *b != 0),
            "point {n}: inplace.bin is zeros"
        );
    }
}

#[test]
fn a_file_that_keeps_changing_while_it_is_read_is_reported_as_changed() {
    let w = Workplace::new();
    let src = w.path("src");
    const LEN: u64 = 8_000_000;
    let content = noise(LEN as usize, 11);
    write(&src.join("busy.bin"), &content);
    w.init();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (path, stop) = (src.join("busy.bin"), stop.clone());
        std::thread::spawn(move || {
            let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            // Its size flips between two lengths all the time: every read sees a change.
            while !stop.load(Ordering::Relaxed) {
                file.set_len(LEN + 1).unwrap();
                std::thread::sleep(std::time::Duration::from_micros(300));
                file.set_len(LEN).unwrap();
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
        })
    };
    let out = w
        .cmd()
        .args(["--json", "backup", "--path", src.to_str().unwrap()])
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["files_changed"], 1, "{v}");
    let changed = v["changed"].as_array().unwrap();
    assert!(changed[0].as_str().unwrap().ends_with("busy.bin"), "{v}");
    // Human output counts it too.
    let human = w.run(&["backup", "--path", src.to_str().unwrap()], 0);
    assert!(!human.contains("changed while read"), "steady now: {human}");
    let restored = w.path("out");
    w.run(
        &[
            "restore",
            v["id"].as_str().unwrap(),
            "--target",
            restored.to_str().unwrap(),
        ],
        0,
    );
    let got = std::fs::read(restored.join("busy.bin")).unwrap();
    assert!(got.len() as u64 == LEN || got.len() as u64 == LEN + 1);
    assert_eq!(got[..LEN as usize - 1], content[..LEN as usize - 1]);
}
