//! A temporary workplace per test: a repository location, an isolated cache, and helpers to
//! make trees and run the command.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Workplace {
    pub dir: tempfile::TempDir,
}

impl Workplace {
    pub fn new() -> Self {
        Workplace {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// The command, pointed at this workplace's repository and cache, run from inside it.
    pub fn cmd(&self) -> Command {
        Command::from_std(self.process())
    }

    /// The same, as a plain process (to spawn and kill).
    pub fn process(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"));
        c.current_dir(self.dir.path())
            .env("LIFEBOAT_REPOSITORY", self.repo())
            .env("LIFEBOAT_PASSWORD", PASSWORD)
            .env("LIFEBOAT_CACHE_DIR", self.path("cache"))
            .env_remove("LIFEBOAT_PASSWORD_FILE")
            .env_remove("LIFEBOAT_LOG");
        c
    }

    /// Runs and returns stdout, asserting the exit code.
    pub fn run(&self, args: &[&str], code: i32) -> String {
        self.run_env(&[], args, code)
    }

    /// The same with extra environment (a database password, a client folder).
    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str], code: i32) -> String {
        let mut cmd = self.cmd();
        for (key, value) in env {
            cmd.env(key, value);
        }
        let out = cmd.args(args).output().expect("runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "lifeboat {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        stdout
    }

    /// Runs and returns stderr, asserting the exit code.
    pub fn fail(&self, args: &[&str], code: i32) -> String {
        let out = self.cmd().args(args).output().expect("runs");
        assert_eq!(out.status.code(), Some(code), "lifeboat {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn json(&self, args: &[&str], code: i32) -> serde_json::Value {
        self.json_env(&[], args, code)
    }

    /// `--json` with extra environment; the JSON it printed.
    pub fn json_env(&self, env: &[(&str, &str)], args: &[&str], code: i32) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run_env(env, &all, code);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    pub fn init(&self) {
        self.run(&["repo", "init"], 0);
    }

    /// Backs up a directory; returns the restore point id.
    pub fn backup(&self, dir: &Path) -> String {
        let v = self.json(&["backup", "--path", dir.to_str().expect("utf-8 path")], 0);
        v["id"].as_str().expect("an id").to_string()
    }

    pub fn objects(&self, kind: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.repo().join(kind)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().is_dir() {
                    stack.push(e.path());
                } else if !name.starts_with('.') && !name.contains('#') {
                    // Not the temporary file of a write still in progress.
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }
}

pub fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, data).expect("write");
}

/// Deterministic pseudo-random bytes (incompressible).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A tree with text, binary, a duplicate, an empty directory, a symlink, modes and mtimes.
pub fn sample_tree(root: &Path) {
    write(&root.join("README.txt"), b"hello lifeboat\n");
    for i in 0..50 {
        let text = format!("line {i}\n").repeat(100 + i);
        write(
            &root.join(format!("docs/chapter-{i:02}.md")),
            text.as_bytes(),
        );
    }
    let blob = noise(3 * 1024 * 1024 + 17, 5);
    write(&root.join("data/blob.bin"), &blob);
    write(&root.join("data/copy/blob.bin"), &blob);
    write(&root.join("deep/a/b/c/d/e/leaf.txt"), b"deep");
    std::fs::create_dir_all(root.join("empty/inner")).expect("mkdir");
    std::os::unix::fs::symlink("README.txt", root.join("link-to-readme")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).expect("symlink");
    write(&root.join("script.sh"), b"#!/bin/sh\necho hi\n");
    std::fs::set_permissions(
        root.join("script.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .expect("chmod");
    std::fs::set_permissions(
        root.join("docs/chapter-01.md"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let old = filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789);
    filetime::set_file_mtime(root.join("README.txt"), old).expect("mtime");
    filetime::set_file_mtime(root.join("empty/inner"), old).expect("mtime");
}

/// Every entry under `root` with its type, mode, mtime (files, dirs), size and content hash.
pub fn describe(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d).expect("read_dir").flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            let m = std::fs::symlink_metadata(&p).expect("metadata");
            if m.file_type().is_symlink() {
                out.push(format!(
                    "{rel} -> {}",
                    std::fs::read_link(&p).expect("link").display()
                ));
            } else if m.is_dir() {
                out.push(format!("{rel}/ {:o} {}", m.mode() & 0o7777, m.mtime()));
                stack.push(p);
            } else {
                let data = std::fs::read(&p).expect("read");
                out.push(format!(
                    "{rel} {:o} {}.{} {} {}",
                    m.mode() & 0o7777,
                    m.mtime(),
                    m.mtime_nsec(),
                    data.len(),
                    blake3::hash(&data).to_hex()
                ));
            }
        }
    }
    out.sort();
    out
}

/// The command for plans whose PostgreSQL bindings use the test clusters: their password in
/// `PG_PASSWORD`, their client programs in `LIFEBOAT_PG_BIN`.
pub mod with_pg {
    use super::Workplace;
    use crate::servers::{PG_PASSWORD, pg_bin};

    pub fn lifeboat(w: &Workplace) -> std::process::Command {
        let mut c = w.process();
        c.env("PG_PASSWORD", PG_PASSWORD)
            .env("LIFEBOAT_PG_BIN", pg_bin());
        c
    }

    /// Runs and returns stdout, asserting the exit code.
    pub fn run(w: &Workplace, args: &[&str], code: i32) -> String {
        let out = lifeboat(w).args(args).output().expect("runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "lifeboat {args:?}\nstdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `--json`: the JSON it printed.
    pub fn json(w: &Workplace, args: &[&str], code: i32) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = run(w, &all, code);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}
