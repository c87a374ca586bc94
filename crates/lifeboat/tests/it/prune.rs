//! Forget and prune: data no restore point needs goes, nothing needed is lost, and a prune
//! while a backup runs leaves both valid.

use crate::support::*;

#[test]
fn forget_then_prune_frees_space_and_keeps_what_is_needed() {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    w.init();
    w.backup(&src);
    // Replace the big blobs: the first restore point alone needs them.
    write(&src.join("data/blob.bin"), &noise(3_000_000, 99));
    std::fs::remove_dir_all(src.join("data/copy")).unwrap();
    w.backup(&src);
    let before: u64 = w
        .objects("data")
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();

    let v = w.json(&["forget", "--keep-last", "1"], 0);
    assert_eq!(v["removed"], 1);
    assert_eq!(w.json(&["points"], 0).as_array().unwrap().len(), 1);

    // With the default grace period the data is only condemned.
    let first = w.json(&["prune"], 0);
    assert!(first["condemned_packs"].as_u64().unwrap() >= 1, "{first}");
    assert_eq!(first["deleted_packs"], 0);
    w.run(&["check", "--read-data"], 0);

    let second = w.json(&["prune", "--grace", "0s"], 0);
    assert!(second["deleted_packs"].as_u64().unwrap() >= 1, "{second}");
    let after: u64 = w
        .objects("data")
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(after + 2_500_000 < before, "{before} -> {after}");
    w.run(&["check", "--read-data"], 0);
    let out = w.path("out");
    w.run(&["restore", "latest", "--target", out.to_str().unwrap()], 0);
    assert_eq!(describe(&src), describe(&out));
}

#[test]
fn forget_needs_a_policy_and_dry_run_changes_nothing() {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    w.init();
    w.backup(&src);
    w.backup(&src);
    let err = w.fail(&["forget"], 1);
    assert!(err.contains("no retention policy"), "{err}");
    let v = w.json(&["forget", "--keep-last", "1", "--dry-run"], 0);
    assert_eq!(v["removed"], 1);
    assert_eq!(w.json(&["points"], 0).as_array().unwrap().len(), 2);
}

#[test]
fn prune_during_a_backup_loses_nothing() {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    w.init();
    w.backup(&src);
    w.json(&["forget", "--keep-last", "1"], 0);
    let big = w.path("big");
    for i in 0..12 {
        write(&big.join(format!("f{i}.bin")), &noise(4_000_000, 1000 + i));
    }
    let mut backup = w
        .process()
        .args(["backup", "--path", big.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Prunes with the default grace period while the backup writes.
    for _ in 0..3 {
        w.json(&["prune"], 0);
    }
    assert!(backup.wait().unwrap().success());
    w.run(&["check", "--read-data"], 0);
    let out = w.path("out");
    w.run(&["restore", "latest", "--target", out.to_str().unwrap()], 0);
    assert_eq!(describe(&big), describe(&out));
}
