//! Configuration documents captured from a command's standard output and applied back on its
//! standard input (`kind = "command"`), and discovery of items by a command.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

use lifeboat_repository::{RepoWriter, Repository};

use crate::document::{Document, document_chunks, store};
use crate::{Result, ServiceError};

fn describe(argv: &[String]) -> String {
    argv.join(" ")
}

fn spawn(argv: &[String], cwd: &Path, stdin: Stdio) -> Result<std::process::Child> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| ServiceError::Io("empty command".into()))?;
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ServiceError::Spawn {
            program: program.clone(),
            source,
        })
}

/// Collects the last 8 KiB of a child's stderr on a thread, so a chatty child never blocks.
fn collect_stderr(child: &mut std::process::Child) -> JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if all.len() > 16 * 1024 {
                all.drain(..all.len() - 8 * 1024);
            }
        }
        String::from_utf8_lossy(&all).into_owned()
    })
}

fn finish(
    argv: &[String],
    mut child: std::process::Child,
    stderr: JoinHandle<String>,
) -> Result<()> {
    let status = child.wait().map_err(|e| ServiceError::Io(e.to_string()))?;
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(ServiceError::CommandFailed {
            command: describe(argv),
            status: status.to_string(),
            stderr,
        });
    }
    Ok(())
}

/// Runs `argv` and stores its standard output as a document.
/// `cwd` is the plan's folder, which relative paths in commands are relative to.
pub fn capture_command(writer: &RepoWriter<'_>, argv: &[String], cwd: &Path) -> Result<Document> {
    let mut child = spawn(argv, cwd, Stdio::null())?;
    let stderr = collect_stderr(&mut child);
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let stored = store(writer, "document", &mut stdout);
    drop(stdout);
    // The command's own failure explains a broken stream better than the stream error.
    finish(argv, child, stderr)?;
    stored
}

/// Runs `argv` with the document on its standard input.
pub fn apply_command(
    repo: &Repository,
    root: &lifeboat_format::Id,
    argv: &[String],
    cwd: &Path,
) -> Result<u64> {
    let chunks = document_chunks(repo, root)?;
    let mut child = spawn(argv, cwd, Stdio::piped())?;
    let stderr = collect_stderr(&mut child);
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let drain = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let written = lifeboat_files::read_stream(&mut repo.reader(), &chunks, &mut stdin);
    drop(stdin);
    let _ = drain.join();
    finish(argv, child, stderr)?;
    Ok(written?)
}

/// Runs a discovery command: one item per non-empty output line.
pub fn discover(argv: &[String], cwd: &Path) -> Result<Vec<String>> {
    let mut child = spawn(argv, cwd, Stdio::null())?;
    let stderr = collect_stderr(&mut child);
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_string(&mut out)
        .map_err(|e| {
            ServiceError::Io(format!("reading the output of `{}`: {e}", describe(argv)))
        })?;
    finish(argv, child, stderr)?;
    let mut items: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    items.sort();
    items.dedup();
    Ok(items)
}
