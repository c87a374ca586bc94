//! `lifeboat demo`: the whole cycle on sample data, with nothing to set up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use lifeboat_files::{BackupOptions, RestoreOptions};
use lifeboat_format::keys::KdfParams;
use lifeboat_format::manifest::{ResourcePoint, ResourceStatus, RestorePoint};
use lifeboat_format::{FORMAT_VERSION, Id};
use lifeboat_repository::Repository;
use lifeboat_storage::ObjectStoreBackend;

use crate::cli::{DemoArgs, Global};
use crate::output::{self, Exit};

const PASSWORD: &str = "demo password: use LIFEBOAT_PASSWORD for real repositories";

pub fn run(global: &Global, args: DemoArgs) -> Result<Exit> {
    let (dir, _temp) = match args.dir {
        Some(d) => {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            (d, None)
        }
        None => {
            let t = tempfile_dir()?;
            (t.clone(), Some(t))
        }
    };
    let source = dir.join("site-primary/srv/app");
    let repo_dir = dir.join("offsite-repository");
    let restored = dir.join("site-dr/srv/app");
    if repo_dir.exists() {
        bail!("{} already exists; give an empty --dir", repo_dir.display());
    }
    say(global, &format!("lifeboat demo in {}", dir.display()));

    make_sample(&source)?;
    say(
        global,
        &format!("1. sample service data written to {}", source.display()),
    );

    let backend = Arc::new(ObjectStoreBackend::local(&repo_dir, true)?);
    Repository::init(
        backend.clone(),
        PASSWORD.as_bytes(),
        KdfParams::OWASP_MINIMUM,
    )?;
    let cache = dir.join("cache");
    let repo = Repository::open(backend.clone(), PASSWORD.as_bytes(), Some(&cache))?;
    say(
        global,
        &format!("2. encrypted repository created at {}", repo_dir.display()),
    );

    let (first, first_point) = capture(&repo, &source, None)?;
    let s = &first_point.resources[0].stats;
    say(
        global,
        &format!(
            "3. restore point {} : {} files, {} captured, {} stored after dedup+compression",
            first.short(),
            s.files,
            output::bytes(s.bytes),
            output::bytes(s.bytes_stored)
        ),
    );

    std::fs::write(
        source.join("config/app.toml"),
        "listen = \"0.0.0.0:8080\"\nworkers = 16\n",
    )?;
    let repo = Repository::open(backend.clone(), PASSWORD.as_bytes(), Some(&cache))?;
    let (second, second_point) = capture(&repo, &source, first_point.resources[0].root)?;
    let s = &second_point.resources[0].stats;
    say(
        global,
        &format!(
            "4. one file changed; restore point {} read {} of {} files and stored {}",
            second.short(),
            s.files_read,
            s.files,
            output::bytes(s.bytes_stored)
        ),
    );

    // A new session sees the index as it now is, like a recovery at the DR site would.
    let repo = Repository::open(backend.clone(), PASSWORD.as_bytes(), Some(&cache))?;
    let started = Instant::now();
    let root = second_point.resources[0]
        .root
        .context("the capture has a root")?;
    let stats = lifeboat_files::restore(&repo, root, &restored, &RestoreOptions::default(), None)?;
    say(
        global,
        &format!(
            "5. restored {} files ({}) to the DR site {} in {}",
            stats.files,
            output::bytes(stats.bytes),
            restored.display(),
            output::millis(started.elapsed().as_millis() as u64)
        ),
    );

    let diffs = lifeboat_files::verify(&repo, root, None, &restored)?;
    let report = lifeboat_repository::check::check(&repo, true, &|_, _, _| {})?;
    say(
        global,
        &format!(
            "6. verified: {} differences between the restore and the restore point; repository check: {}",
            diffs.len(),
            if report.is_ok() {
                "no problems".to_string()
            } else {
                format!("{} problems", report.problems.len())
            }
        ),
    );
    let drill = demo_drill(&dir, &source, &restored)?;
    say(
        global,
        &format!(
            "7. drill: the newest restore point restored into a sandbox, verified and torn down: {}; \
             achieved RTO {}, RPO {}; report {}",
            if drill["passed"] == true {
                "passed"
            } else {
                "FAILED"
            },
            drill["achieved_rto_ms"]
                .as_u64()
                .map_or_else(|| "not achieved".into(), output::millis),
            drill["achieved_rpo_ms"]
                .as_u64()
                .map_or_else(|| "?".into(), output::millis),
            dir.join("state/drills")
                .join(drill["drill"].as_str().unwrap_or("?"))
                .join("report.html")
                .display()
        ),
    );
    if global.json {
        output::json(&serde_json::json!({
            "dir": dir, "points": [first, second], "restored": restored,
            "differences": diffs, "check": report, "drill": drill,
        }));
    } else {
        println!(
            "Everything is kept in {} (delete it when done). Try it yourself:\n  export LIFEBOAT_REPOSITORY={} LIFEBOAT_PASSWORD='{PASSWORD}'\n  {exe} points\n  {exe} --plan {} drill --history",
            dir.display(),
            repo_dir.display(),
            dir.join("lifeboat.toml").display(),
            exe = std::env::current_exe()
                .map_or_else(|_| "lifeboat".into(), |p| p.display().to_string())
        );
    }
    if !diffs.is_empty() || !report.is_ok() || drill["passed"] != true {
        return Ok(Exit::Problems);
    }
    Ok(Exit::Success)
}

/// A plan for the demo's data, and `lifeboat drill` on it (a process of its own, with none of
/// the caller's repository settings): the report as JSON.
fn demo_drill(dir: &Path, source: &Path, restored: &Path) -> Result<serde_json::Value> {
    std::fs::write(dir.join("demo-password"), PASSWORD)?;
    let plan = dir.join("lifeboat.toml");
    std::fs::write(
        &plan,
        format!(
            "# The demo's plan: try `lifeboat --plan {plan} drill --history`.\n\
             [repository]\nurl = \"offsite-repository\"\npassword = {{ file = \"demo-password\" }}\n\n\
             [objectives]\nrpo = \"1h\"\nrto = \"5m\"\n\n[state]\ndir = \"state\"\n\n\
             [sites.primary]\nrole = \"primary\"\n\n[sites.dr]\nrole = \"standby\"\n\n\
             [resources.app]\nkind = \"files\"\nat.primary = {{ path = {source:?} }}\n\
             at.dr = {{ path = {restored:?} }}\n",
            plan = plan.display(),
        ),
    )?;
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["--json", "--quiet", "--plan"])
        .arg(&plan)
        .args(["drill", "--sandbox"])
        .arg(dir)
        .env_remove("LIFEBOAT_REPOSITORY")
        .env_remove("LIFEBOAT_PASSWORD")
        .env_remove("LIFEBOAT_PASSWORD_FILE")
        .env("LIFEBOAT_CACHE_DIR", dir.join("cache"))
        .output()
        .context("running `lifeboat drill`")?;
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "`lifeboat drill` printed no report: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

fn say(global: &Global, line: &str) {
    if !global.json {
        println!("{line}");
    }
}

fn tempfile_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir().join(format!("lifeboat-demo-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    Ok(base)
}

fn capture(repo: &Repository, source: &Path, parent: Option<Id>) -> Result<(Id, RestorePoint)> {
    let started = jiff::Timestamp::now();
    let writer = repo.writer();
    let capture = lifeboat_files::backup(&writer, source, parent, &BackupOptions::default(), None)?;
    writer.finish()?;
    let point = RestorePoint {
        version: FORMAT_VERSION,
        time: started,
        finished: jiff::Timestamp::now(),
        hostname: "demo".into(),
        plan: None,
        site: Some("primary".into()),
        tags: vec!["demo".into()],
        resources: vec![ResourcePoint {
            name: "app".into(),
            kind: "files".into(),
            source: source.display().to_string(),
            status: ResourceStatus::Complete,
            root: Some(capture.root),
            parent,
            stats: capture.stats,
            database: None,
            // Everything was captured: a mirror restore may remove whatever the point lacks.
            scope: Some(Default::default()),
        }],
        discovered: Default::default(),
    };
    let id = repo.save_point(&point)?;
    Ok((id, point))
}

/// A small service's data: configuration, templates, logs, uploads (some duplicated), an
/// empty directory and a symlink.
fn make_sample(root: &Path) -> Result<()> {
    let write = |rel: &str, data: &[u8]| -> Result<()> {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("has a parent"))?;
        std::fs::write(&p, data).with_context(|| format!("writing {}", p.display()))
    };
    write(
        "config/app.toml",
        b"listen = \"0.0.0.0:8080\"\nworkers = 8\n",
    )?;
    for i in 0..200 {
        let body = format!(
            "<html><body><h1>Template {i}</h1>{}</body></html>\n",
            "<p>lorem ipsum dolor sit amet</p>".repeat(20 + i % 7)
        );
        write(&format!("templates/page-{i:03}.html"), body.as_bytes())?;
    }
    let mut log = String::new();
    for i in 0..40_000 {
        log.push_str(&format!(
            "2026-11-22T00:{:02}:{:02}Z INFO request id={i} path=/api/orders status=200\n",
            (i / 60) % 60,
            i % 60
        ));
    }
    write("logs/app.log", log.as_bytes())?;
    let mut state = 0x9e3779b97f4a7c15u64;
    let blob: Vec<u8> = (0..3 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    write("uploads/2026/scan.bin", &blob)?;
    write("uploads/2026/scan-copy.bin", &blob)?;
    std::fs::create_dir_all(root.join("spool/empty"))?;
    let link = root.join("current-config");
    if !link.exists() {
        std::os::unix::fs::symlink("config/app.toml", link)?;
    }
    Ok(())
}
