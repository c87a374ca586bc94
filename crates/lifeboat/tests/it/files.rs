//! Backing up and restoring file trees.

use crate::support::*;

#[test]
fn a_tree_round_trips_with_its_metadata() {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    w.init();
    let id = w.backup(&src);
    assert_eq!(id.len(), 64);

    let out = w.path("out");
    w.run(&["restore", "latest", "--target", out.to_str().unwrap()], 0);
    assert_eq!(describe(&src), describe(&out));

    let by_prefix = w.path("out2");
    w.run(
        &[
            "restore",
            &id[..10],
            "--target",
            by_prefix.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(describe(&src), describe(&by_prefix));

    let verified = w.run(
        &[
            "restore",
            "latest",
            "--target",
            out.to_str().unwrap(),
            "--verify",
        ],
        0,
    );
    assert!(verified.contains("matches restore point"), "{verified}");
    w.run(&["check", "--read-data"], 0);
}

#[test]
fn an_unchanged_rerun_reads_nothing_and_keeps_tree_ids() {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    w.init();
    w.backup(&src);
    let second = w.json(&["backup", "--path", src.to_str().unwrap()], 0);
    let r = &second["point"]["resources"][0];
    assert_eq!(r["stats"]["files_read"], 0, "{r}");
    assert_eq!(r["stats"]["chunks_new"], 0, "{r}");
    assert!(r["parent"].is_string());
    assert_eq!(r["parent"], r["root"], "an unchanged tree keeps its id");

    // One changed file: only it is read, and the restore point has the new content.
    write(&src.join("docs/chapter-07.md"), b"rewritten\n");
    let third = w.json(&["backup", "--path", src.to_str().unwrap()], 0);
    let r = &third["point"]["resources"][0];
    assert_eq!(r["stats"]["files_read"], 1, "{r}");
    let out = w.path("out");
    w.run(&["restore", "latest", "--target", out.to_str().unwrap()], 0);
    assert_eq!(describe(&src), describe(&out));
}

#[test]
fn a_sub_path_restores_into_the_target() {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    w.init();
    w.backup(&src);
    let out = w.path("out");
    w.run(
        &[
            "restore",
            "latest",
            "--path",
            "deep/a/b",
            "--target",
            out.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(std::fs::read(out.join("c/d/e/leaf.txt")).unwrap(), b"deep");
    assert!(!out.join("README.txt").exists());

    let one = w.path("one");
    w.run(
        &[
            "restore",
            "latest",
            "--path",
            "README.txt",
            "--target",
            one.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(
        std::fs::read(one.join("README.txt")).unwrap(),
        b"hello lifeboat\n"
    );

    let err = w.fail(
        &[
            "restore",
            "latest",
            "--path",
            "no/such",
            "--target",
            one.to_str().unwrap(),
        ],
        1,
    );
    assert!(
        err.contains("`no/such` is not in the restore point"),
        "{err}"
    );
}

#[test]
fn include_and_exclude_globs() {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    write(&src.join("tmp/scratch.csv"), b"x");
    write(&src.join("reports/q1.csv"), b"a,b\n");
    w.init();
    let v = w.json(
        &[
            "backup",
            "--path",
            src.to_str().unwrap(),
            "--include",
            "**/*.csv",
            "--exclude",
            "tmp/**",
        ],
        0,
    );
    assert_eq!(v["point"]["resources"][0]["stats"]["files"], 1);
    let out = w.path("out");
    w.run(&["restore", "latest", "--target", out.to_str().unwrap()], 0);
    assert!(out.join("reports/q1.csv").is_file());
    assert!(!out.join("tmp").exists());
    assert!(!out.join("README.txt").exists());
}

#[test]
fn verify_names_every_difference() {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    w.init();
    w.backup(&src);
    // Same size, different content; a missing file; an extra file.
    let chapter = src.join("docs/chapter-03.md");
    let mut data = std::fs::read(&chapter).unwrap();
    data[0] ^= 1;
    std::fs::write(&chapter, data).unwrap();
    std::fs::remove_file(src.join("deep/a/b/c/d/e/leaf.txt")).unwrap();
    write(&src.join("new.txt"), b"new");
    let out = w.run(
        &[
            "restore",
            "latest",
            "--target",
            src.to_str().unwrap(),
            "--verify",
        ],
        3,
    );
    assert!(out.contains("docs/chapter-03.md: content differs"), "{out}");
    assert!(out.contains("deep/a/b/c/d/e/leaf.txt: missing"), "{out}");
    assert!(out.contains("new.txt: not in the restore point"), "{out}");
}

#[test]
fn an_unwritable_target_is_a_clear_error() {
    let w = Workplace::new();
    let src = w.path("src");
    sample_tree(&src);
    w.init();
    w.backup(&src);
    // A regular file where a directory is needed fails even for root.
    write(&w.path("blocker"), b"");
    let err = w.fail(
        &[
            "restore",
            "latest",
            "--target",
            w.path("blocker/out").to_str().unwrap(),
        ],
        1,
    );
    assert!(err.contains("blocker/out"), "{err}");
}

#[test]
fn concurrent_backups_into_one_repository() {
    let w = Workplace::new();
    w.init();
    let dirs: Vec<_> = (0..3)
        .map(|i| {
            let d = w.path(&format!("src{i}"));
            sample_tree(&d);
            write(&d.join("own.bin"), &noise(2_000_000, i + 10));
            d
        })
        .collect();
    let children: Vec<_> = dirs
        .iter()
        .map(|d| {
            let mut c = w.process();
            c.args(["backup", "--path", d.to_str().unwrap()]);
            c.stdout(std::process::Stdio::null()).spawn().unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let points = w.json(&["points"], 0);
    assert_eq!(points.as_array().unwrap().len(), 3);
    w.run(&["check", "--read-data"], 0);
    for (i, d) in dirs.iter().enumerate() {
        let out = w.path(&format!("out{i}"));
        w.run(
            &[
                "restore",
                "latest",
                "--resource",
                d.to_str().unwrap(),
                "--target",
                out.to_str().unwrap(),
            ],
            0,
        );
        assert_eq!(describe(d), describe(&out));
    }
}

#[test]
fn demo_runs_the_whole_cycle() {
    let w = Workplace::new();
    let v = w.json(&["demo", "--dir", w.path("demo").to_str().unwrap()], 0);
    assert_eq!(v["differences"].as_array().unwrap().len(), 0);
    assert_eq!(v["check"]["problems"].as_array().unwrap().len(), 0);
    assert_eq!(v["drill"]["passed"], true, "{v:#}");
    assert!(w.path("demo/state/drills").is_dir());
}
