//! Bad input: wrong password, not a repository, damaged objects. Each gets a clear error that
//! names what is wrong, and `check` finds every damage.

use crate::support::*;

fn repo_with_backup() -> Workplace {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    w.init();
    w.backup(&src);
    w
}

#[test]
fn wrong_password() {
    let w = repo_with_backup();
    let out = w
        .cmd()
        .args(["points"])
        .env("LIFEBOAT_PASSWORD", "nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wrong password for the repository at"),
        "{err}"
    ); // Automation gets JSON on stdout for a failure too.
    let out = w
        .cmd()
        .args(["--json", "points"])
        .env("LIFEBOAT_PASSWORD", "nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("wrong password"),
        "{v}"
    );
}

#[test]
fn password_from_a_file() {
    let w = repo_with_backup();
    write(&w.path("pw"), format!("{PASSWORD}\n").as_bytes());
    let out = w
        .cmd()
        .args(["points"])
        .env_remove("LIFEBOAT_PASSWORD")
        .env("LIFEBOAT_PASSWORD_FILE", w.path("pw"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn not_a_repository() {
    let w = Workplace::new();
    std::fs::create_dir_all(w.repo()).unwrap();
    let err = w.fail(&["points"], 1);
    assert!(err.contains("is not a lifeboat repository"), "{err}");
    let err = w
        .cmd()
        .args(["points"])
        .env("LIFEBOAT_REPOSITORY", w.path("missing"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&err.stderr).contains("missing"));
    // Initialising twice is refused.
    w.init();
    let err = w.fail(&["repo", "init"], 1);
    assert!(err.contains("already holds a repository"), "{err}");
}

fn flip(path: &std::path::Path, at: usize) {
    let mut data = std::fs::read(path).unwrap();
    let i = at.min(data.len() - 1);
    data[i] ^= 0x20;
    std::fs::write(path, data).unwrap();
}

fn truncate(path: &std::path::Path) {
    let data = std::fs::read(path).unwrap();
    std::fs::write(path, &data[..data.len() / 2]).unwrap();
}

#[test]
fn a_flipped_bit_in_a_pack_is_found_by_read_data() {
    let w = repo_with_backup();
    let pack = w
        .objects("data")
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    flip(&pack, 1000);
    // Structure is intact; only reading the data finds it.
    w.run(&["check"], 0);
    let out = w.run(&["check", "--read-data"], 3);
    let name = pack.file_name().unwrap().to_str().unwrap();
    assert!(
        out.contains(name) && out.contains("does not match its name"),
        "{out}"
    );
    // A restore that needs the damaged frame fails and says which object.
    let err = w.fail(
        &[
            "restore",
            "latest",
            "--target",
            w.path("out").to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains(name), "{err}");
}

#[test]
fn a_truncated_or_deleted_pack_is_found() {
    let w = repo_with_backup();
    let packs = w.objects("data");
    assert!(packs.len() >= 2, "{packs:?}");
    truncate(&packs[0]);
    std::fs::remove_file(&packs[1]).unwrap();
    let out = w.run(&["check"], 3);
    let a = packs[0].file_name().unwrap().to_str().unwrap();
    let b = packs[1].file_name().unwrap().to_str().unwrap();
    assert!(out.contains(a) && out.contains("truncated"), "{out}");
    assert!(out.contains(b) && out.contains("missing"), "{out}");
}

#[test]
fn damaged_index_and_manifest_are_named() {
    let w = repo_with_backup();
    let index = &w.objects("index")[0];
    flip(index, 40);
    let point = &w.objects("points")[0];
    truncate(point);
    let out = w.run(&["check"], 3);
    let i = index.file_name().unwrap().to_str().unwrap();
    let p = point.file_name().unwrap().to_str().unwrap();
    assert!(out.contains(&format!("index/{i}")), "{out}");
    assert!(out.contains(&format!("points/{p}")), "{out}");
    // Listing skips the damaged manifest, naming it.
    let out = w.cmd().args(["points"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains(p), "{out:?}");
}

#[test]
fn a_deleted_index_leaves_chunks_unfindable_and_check_says_so() {
    let w = repo_with_backup();
    for f in w.objects("index") {
        std::fs::remove_file(f).unwrap();
    }
    let out = w.run(&["check"], 3);
    assert!(out.contains("is not in any index"), "{out}");
    assert!(out.contains("is not indexed"), "{out}");
}

/// Every kind of object, every kind of damage: `check` (with `--read-data` for packs) names
/// the damaged object, and no command panics.
#[test]
fn every_damage_to_every_object_kind_is_named() {
    type Damage = fn(&std::path::Path);
    let damages: [(&str, Damage); 3] = [
        ("flipped", |p| flip(p, 60)),
        ("truncated", truncate),
        ("deleted", |p| std::fs::remove_file(p).unwrap()),
    ];
    for kind in ["data", "index", "points"] {
        for (how, damage) in damages {
            let w = repo_with_backup();
            let victim = w.objects(kind).into_iter().next().unwrap();
            let name = victim.file_name().unwrap().to_str().unwrap().to_string();
            damage(&victim);
            let out = w.cmd().args(["check", "--read-data"]).output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!stderr.contains("panicked"), "{kind} {how}: {stderr}");
            if kind == "points" && how == "deleted" {
                // A deleted manifest is a forgotten restore point: nothing refers to it.
                assert_eq!(out.status.code(), Some(0), "{kind} {how}: {stdout}");
                continue;
            }
            assert_eq!(out.status.code(), Some(3), "{kind} {how}: {stdout}{stderr}");
            if how == "deleted" && kind == "index" {
                assert!(
                    stdout.contains("is not in any index"),
                    "{kind} {how}: {stdout}"
                );
            } else {
                assert!(
                    stdout.contains(&name),
                    "{kind} {how}: {name} not named in {stdout}"
                );
            }
        }
    }
}
