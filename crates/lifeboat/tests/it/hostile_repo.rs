//! A repository nobody can trust: stray, foreign and garbage files in every folder, a huge
//! sparse object, and prunes that race. Damage is listed by `check` and skipped everywhere
//! else; recovery keeps working with everything sound; one prune at a time deletes.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

/// A valid-looking id no object of this repository has.
fn fake_id(seed: u8) -> String {
    format!("{seed:02x}").repeat(32)
}

/// Plants a file (creating its folder) and returns its path relative to the repository.
fn plant(w: &Workplace, rel: &str, data: &[u8]) -> String {
    write(&w.repo().join(rel), data);
    rel.to_string()
}

fn stderr_of(w: &Workplace, args: &[&str], code: i32) -> (String, String) {
    let out = w.cmd().args(args).output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "lifeboat {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    (stdout, stderr)
}

#[test]
fn stray_and_garbage_files_in_every_folder_never_block_recovery() {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    w.init();
    let first = w.backup(&src);
    write(&src.join("docs/new.md"), b"written after the first point\n");
    let second = w.backup(&src);

    let manifest = std::fs::read(w.repo().join("points").join(&second)).unwrap();
    let index_bytes = std::fs::read(&w.objects("index")[0]).unwrap();
    let a_pack = w.objects("data").remove(0);
    let a_pack_name = a_pack.file_name().unwrap().to_str().unwrap().to_string();
    let wrong_fan = if a_pack_name.starts_with("00") {
        "ff"
    } else {
        "00"
    };

    // Every planted object, and what `check` must say about it.
    let planted: Vec<(String, &str)> = vec![
        (
            plant(&w, "NOTES.txt", b"someone's notes"),
            "repository root",
        ),
        (
            plant(&w, "lost+found/x", b"fsck leftovers"),
            "not part of a repository",
        ),
        (plant(&w, "keys/notes.txt", b"not a key"), "not a key file"),
        (
            plant(&w, &format!("keys/{}", fake_id(1)), b"{\"garbage\": 1}"),
            "content does not match its name",
        ),
        (plant(&w, "keys/old/key", b"nested"), "sub-folder of keys/"),
        (plant(&w, "data/stray.bin", b"loose"), "directly in data/"),
        (plant(&w, "data/ga/garbage", b"not a pack"), "not a pack"),
        (
            plant(
                &w,
                &format!("data/{wrong_fan}/{a_pack_name}"),
                b"a pack in the wrong place",
            ),
            "fan-out folder",
        ),
        (
            plant(&w, &format!("data/22/{}", fake_id(0x22)), &noise(5000, 1)),
            "does not match its name",
        ),
        (
            plant(&w, "index/readme", b"not an index"),
            "not an index file",
        ),
        (
            plant(&w, &format!("index/{}", fake_id(3)), &noise(3000, 3)),
            "index",
        ),
        (
            plant(&w, &format!("index/{}", fake_id(4)), &index_bytes),
            "does not match its name",
        ),
        (
            plant(&w, "points/.DS_Store", b"finder"),
            "not a 64-digit hex id",
        ),
        (
            plant(&w, &format!("points/{}", fake_id(5)), &noise(700, 5)),
            "failed authentication",
        ),
        // The newest manifest copied under another name: not a restore point.
        (
            plant(&w, &format!("points/{}", fake_id(6)), &manifest),
            "does not match its name",
        ),
        (
            plant(&w, "points/2024/old", b"nested"),
            "sub-folder of points/",
        ),
        (plant(&w, "condemned/junk", b"[]"), "condemned-packs marker"),
        (
            plant(&w, &format!("condemned/{}", fake_id(7)), b"{\"time\": 1}"),
            "does not match its name",
        ),
        (plant(&w, "leases/junk", b"{}"), "lease"),
    ]
    .into_iter()
    .collect();
    // A name that is not UTF-8 cannot even be listed as an object: a finding at the root.
    let mut planted = planted;
    let not_utf8 = std::ffi::OsStr::from_bytes(b"bad\xff");
    write(&w.repo().join("points").join(not_utf8), b"?");
    planted.push((".".to_string(), "cannot be listed"));

    // `points` lists the two sound points and warns once about each damaged manifest.
    let (out, err) = stderr_of(&w, &["--json", "points"], 0);
    let points: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = points
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str(), second.as_str()], "{err}");
    for bad in [fake_id(5), fake_id(6)] {
        assert_eq!(
            err.matches(&bad).count(),
            1,
            "warned once about {bad}:\n{err}"
        );
    }
    assert!(
        err.contains(&fake_id(3)),
        "the damaged index file is named:\n{err}"
    );

    // Recovery works with everything sound.
    let out_dir = w.path("out");
    stderr_of(
        &w,
        &["restore", "latest", "--target", out_dir.to_str().unwrap()],
        0,
    );
    assert_eq!(describe(&src), describe(&out_dir));
    let (out, _) = stderr_of(
        &w,
        &["--json", "backup", "--path", src.to_str().unwrap()],
        0,
    );
    let third: serde_json::Value = serde_json::from_str(&out).unwrap();
    let third = third["id"].as_str().unwrap().to_string();
    assert_eq!(w.json(&["points"], 0).as_array().unwrap().len(), 3);

    // `check` lists every planted object as a finding, with what is wrong with it, and
    // nothing else.
    let findings_are_the_planted = |out: &str| {
        for (rel, what) in &planted {
            let line = out
                .lines()
                .find(|l| l.starts_with(&format!("error: {rel}:")))
                .unwrap_or_else(|| panic!("{rel} is not a finding:\n{out}"));
            assert!(line.contains(what), "{rel}: expected `{what}` in `{line}`");
        }
        for line in out.lines().filter(|l| l.starts_with("error: ")) {
            assert!(
                planted
                    .iter()
                    .any(|(rel, _)| line.starts_with(&format!("error: {rel}:"))),
                "a finding about a sound object: {line}\n{out}"
            );
        }
    };
    let (out, _) = stderr_of(&w, &["check", "--read-data"], 3);
    findings_are_the_planted(&out);

    // Prune works around the damage and deletes nothing it does not understand.
    stderr_of(&w, &["forget", "--keep-last", "1"], 0);
    let (out, err) = stderr_of(&w, &["--json", "prune", "--grace", "0s"], 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    // A manifest that does not open may need any pack: nothing is condemned or deleted.
    assert!(
        !report["held_back_by"].as_array().unwrap().is_empty(),
        "{report}\n{err}"
    );
    assert_eq!(report["condemned_packs"], 0, "{report}");
    assert_eq!(report["deleted_packs"], 0, "{report}");
    assert!(err.contains("deleting nothing"), "{err}");
    for (rel, _) in &planted {
        assert!(w.repo().join(rel).exists(), "prune removed {rel}");
    }
    assert!(w.repo().join("points").join(not_utf8).exists());
    let out_dir = w.path("out-after-prune");
    stderr_of(
        &w,
        &["restore", &third, "--target", out_dir.to_str().unwrap()],
        0,
    );
    assert_eq!(describe(&src), describe(&out_dir));
    let (out, _) = stderr_of(&w, &["check", "--read-data"], 3);
    findings_are_the_planted(&out);
}

#[test]
fn a_sparse_terabyte_object_in_data_is_a_finding_not_an_abort() {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    w.init();
    w.backup(&src);
    let name = fake_id(0xab);
    let huge = w.repo().join("data/ab").join(&name);
    std::fs::create_dir_all(huge.parent().unwrap()).unwrap();
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(1 << 40).unwrap();
    drop(file);

    // Under a 2 GiB address-space limit: reading the object whole could not even be tried.
    let out = Command::new("prlimit")
        .arg(format!("--as={}", 2u64 << 30))
        .arg("--")
        .arg(assert_cmd::cargo::cargo_bin("lifeboat"))
        .args(["check", "--read-data"])
        .current_dir(w.dir.path())
        .env("LIFEBOAT_REPOSITORY", w.repo())
        .env("LIFEBOAT_PASSWORD", PASSWORD)
        .env("LIFEBOAT_CACHE_DIR", w.path("cache"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.contains(&name))
        .unwrap_or_else(|| panic!("not named:\n{stdout}"));
    assert!(
        line.starts_with("error: ") && line.contains("1099511627776 bytes"),
        "{line}"
    );
    // Everything else was read and is sound.
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("error: ")).count(),
        1,
        "{stdout}"
    );

    // An indexed pack replaced by one: the size the index expects is compared first.
    let pack = w.objects("data").into_iter().find(|p| p != &huge).unwrap();
    let pack_name = pack.file_name().unwrap().to_str().unwrap().to_string();
    std::fs::File::create(&pack)
        .unwrap()
        .set_len(1 << 40)
        .unwrap();
    let (out, _) = stderr_of(&w, &["check", "--read-data"], 3);
    assert!(
        out.lines().any(|l| l.starts_with(&format!(
            "error: data/{}/{pack_name}: is 1099511627776 bytes, the index says",
            &pack_name[..2]
        ))),
        "{out}"
    );
}

/// The lease object holding the prune lease now, if any: (file, its JSON).
fn held_lease(w: &Workplace) -> Option<(PathBuf, serde_json::Value)> {
    let mut leases = w.objects("leases");
    leases.sort();
    let last = leases.pop()?;
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(&last).ok()?).ok()?;
    (record["released"] == false).then_some((last, record))
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Repository with restore points worth pruning.
fn repo_to_prune() -> Workplace {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    w.init();
    w.backup(&src);
    // Replace the big blobs: the first restore point alone needs them.
    write(&src.join("data/blob.bin"), &noise(2_000_000, 7));
    std::fs::remove_dir_all(src.join("data/copy")).unwrap();
    w.backup(&src);
    w.json(&["forget", "--keep-last", "1"], 0);
    w
}

/// Starts prunes until one is caught inside its lease, and returns it stopped (SIGSTOP) there.
fn stopped_inside_its_lease(w: &Workplace, args: &[&str]) -> Child {
    for _ in 0..50 {
        let mut child = w
            .process()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let mine = |w: &Workplace| held_lease(w).is_some_and(|(_, r)| r["holder"]["pid"] == pid);
        while child.try_wait().unwrap().is_none() {
            if mine(w) {
                signal(&child, "-STOP");
                // Still inside (not released between the look and the stop)?
                if mine(w) {
                    return child;
                }
                signal(&child, "-CONT");
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    panic!("no prune was caught inside its lease in 50 tries");
}

#[test]
fn a_second_prune_refuses_while_the_first_holds_the_lease() {
    let w = repo_to_prune();
    let first = stopped_inside_its_lease(&w, &["--json", "prune", "--grace", "0s"]);
    let (_, record) = held_lease(&w).unwrap();

    let err = w.fail(&["prune", "--grace", "0s"], 1);
    let host = record["holder"]["host"].as_str().unwrap();
    let started: jiff::Timestamp = record["started"].as_str().unwrap().parse().unwrap();
    assert!(err.contains("another prune holds"), "{err}");
    assert!(err.contains(host), "{err}");
    assert!(err.contains(&started.to_string()), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");

    signal(&first, "-CONT");
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(held_lease(&w).is_none(), "released at the end");
    assert_eq!(w.objects("leases").len(), 1, "older generations are gone");
    // Now the second may run, and the repository is whole.
    w.json(&["prune", "--grace", "0s"], 0);
    w.run(&["check", "--read-data"], 0);
}

#[test]
fn a_killed_prune_leaves_an_expiring_lease_that_is_taken_over_once_expired() {
    let w = repo_to_prune();
    let now = jiff::Timestamp::now();
    let lease = |expires: jiff::Timestamp| {
        serde_json::json!({
            "generation": 7,
            "holder": { "host": "backup-host-2", "pid": 4242 },
            "started": now - jiff::SignedDuration::from_secs(3600),
            "expires": expires,
            "released": false,
        })
        .to_string()
    };
    let name = format!("leases/prune-{:020}", 7);
    // Still running somewhere else: refused, naming it.
    plant(
        &w,
        &name,
        lease(now + jiff::SignedDuration::from_secs(600)).as_bytes(),
    );
    let err = w.fail(&["prune"], 1);
    assert!(
        err.contains("backup-host-2") && err.contains("pid 4242"),
        "{err}"
    );
    let started = (now - jiff::SignedDuration::from_secs(3600)).to_string();
    assert!(err.contains(&started), "{err}");
    // A dry run changes nothing and needs no lease.
    w.json(&["prune", "--dry-run"], 0);

    // Expired (its holder was killed): the next prune takes it over, then releases.
    plant(
        &w,
        &name,
        lease(now - jiff::SignedDuration::from_secs(1)).as_bytes(),
    );
    let v = w.json(&["prune", "--grace", "0s"], 0);
    assert!(v["deleted_packs"].as_u64().unwrap() >= 1, "{v}");
    let leases = w.objects("leases");
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert!(
        leases[0].ends_with(format!("prune-{:020}", 9)),
        "{leases:?}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&leases[0]).unwrap()).unwrap();
    assert_eq!(record["released"], true);

    // A prune killed inside its lease leaves it held, with an expiry.
    let mut killed = stopped_inside_its_lease(&w, &["prune"]);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let (_, record) = held_lease(&w).expect("the killed prune's lease stays");
    assert_eq!(record["holder"]["pid"], killed.id());
    let expires: jiff::Timestamp = record["expires"].as_str().unwrap().parse().unwrap();
    assert!(expires > jiff::Timestamp::now());
    let err = w.fail(&["prune"], 1);
    assert!(err.contains("another prune holds"), "{err}");
}
