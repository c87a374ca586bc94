//! Configuration documents captured from a command's standard output and applied back on its
//! standard input (`kind = "command"`), and discovery of items by a command.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;

use lifeboat_files::Progress;
use lifeboat_repository::{RepoWriter, Repository};

use crate::document::{Document, compare_document, document_chunks, store};
use crate::process::{Running, start_argv};
use crate::{Result, ServiceError};

/// Runs `argv` and stores its standard output as a document.
/// `cwd` is the plan's folder, which relative paths in commands are relative to.
pub fn capture_command(writer: &RepoWriter<'_>, argv: &[String], cwd: &Path) -> Result<Document> {
    let mut child = start_argv(argv, cwd, Stdio::null())?;
    let stored = store(writer, "document", &mut child.stdout());
    // The command's own failure explains a broken stream better than the stream error.
    child.finish()?;
    stored
}

/// Runs the capture command `argv` and compares its output with the document stored under
/// `root`, storing nothing: `None` when equal, else how it differs.
pub fn compare_command(
    repo: &Repository,
    root: &lifeboat_format::Id,
    argv: &[String],
    cwd: &Path,
) -> Result<Option<String>> {
    let mut child = start_argv(argv, cwd, Stdio::null())?;
    let mut stdout = child.stdout();
    let compared = compare_document(repo, root, &mut stdout);
    // Read to the end, so the command is not stopped by a closed pipe.
    let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    child.finish()?;
    compared
}

/// Runs `argv` with the document on its standard input.
pub fn apply_command(
    repo: &Repository,
    root: &lifeboat_format::Id,
    argv: &[String],
    cwd: &Path,
) -> Result<u64> {
    let chunks = document_chunks(repo, root)?;
    let child = start_argv(argv, cwd, Stdio::piped())?;
    feed(repo, &chunks, child, None)
}

/// Writes the document's chunks to a child's stdin (its stdout is drained and discarded),
/// then waits for it.
pub(crate) fn feed(
    repo: &Repository,
    chunks: &[lifeboat_format::Id],
    mut child: Running,
    progress: Option<&Progress>,
) -> Result<u64> {
    let mut stdout = child.stdout();
    let drain = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let mut stdin = Counted::new(child.stdin(), progress);
    let written = lifeboat_files::read_stream(&mut repo.reader(), chunks, &mut stdin);
    drop(stdin);
    let _ = drain.join();
    child.finish()?;
    Ok(written?)
}

/// Runs a discovery command: one item per non-empty output line.
pub fn discover(argv: &[String], cwd: &Path) -> Result<Vec<String>> {
    let mut child = start_argv(argv, cwd, Stdio::null())?;
    let mut out = String::new();
    let read = child.stdout().read_to_string(&mut out);
    child.finish()?;
    read.map_err(|e| ServiceError::Io(format!("reading the output of `{}`: {e}", argv.join(" "))))?;
    let mut items: Vec<String> = out
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    for item in &items {
        check_item(item).map_err(|why| {
            ServiceError::Io(format!(
                "`{}` listed an item lifeboat will not use: {why}",
                argv.join(" ")
            ))
        })?;
    }
    items.sort();
    items.dedup();
    Ok(items)
}

/// A discovered item as one folder name: `%`, `/`, NUL and a leading `.` percent-encoded,
/// so no item is `.`, `..`, hidden, absolute or nested, and two items never share a folder.
pub fn item_folder_name(item: &str) -> String {
    let mut out = String::with_capacity(item.len());
    for (i, c) in item.chars().enumerate() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '.' if i == 0 => out.push_str("%2E"),
            '\0' => out.push_str("%00"),
            c => out.push(c),
        }
    }
    out
}

/// Whether a name that came from outside the plan (a discovered item) may become part of a
/// resource name, an argument and a folder name: not `.` or `..`, no control characters
/// (NUL included), and no leading `-` that a program would take for an option.
pub fn check_item(item: &str) -> std::result::Result<(), String> {
    let shown: String = item.escape_debug().collect();
    if item == "." || item == ".." {
        return Err(format!("`{shown}` names a folder, not an item"));
    }
    if item.chars().any(char::is_control) {
        return Err(format!("`{shown}` holds control characters"));
    }
    if item.starts_with('-') {
        return Err(format!(
            "`{shown}` starts with `-` and would be read as an option"
        ));
    }
    Ok(())
}

/// Runs a plan's command (a site's `provision`, `start`, a fence, a traffic hook) with extra
/// environment, its stdin empty. Returns the last lines of its stdout; an unsuccessful exit
/// is an error carrying its stderr.
pub fn run_command(argv: &[String], cwd: &Path, env: &[(String, String)]) -> Result<String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| ServiceError::Io("empty command".into()))?;
    let mut command = std::process::Command::new(program);
    command.args(args).current_dir(cwd);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = crate::process::start(command, argv.join(" "), Stdio::null())?;
    let mut out = String::new();
    let _ = child.stdout().read_to_string(&mut out);
    child.finish()?;
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    Ok(lines[lines.len().saturating_sub(3)..].join("; "))
}

/// Stops process group `group` (one [`run_command_in_group`] started): SIGTERM, then SIGKILL
/// for what still runs after `grace`.
pub fn stop_group(group: u32, grace: std::time::Duration) {
    let Some(pid) = rustix::process::Pid::from_raw(group as i32) else {
        return;
    };
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        // Signal 0 asks whether any member is left.
        if rustix::process::test_kill_process_group(pid).is_err() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

/// [`run_command`] in a process group of its own, whose id (the child's pid) `group` hears
/// when it starts and again (`None`) when it has ended: so that a caller tearing down on a
/// signal can stop the whole group, grandchildren included ([`stop_group`]).
pub fn run_command_in_group(
    argv: &[String],
    cwd: &Path,
    env: &[(String, String)],
    group: &mut dyn FnMut(Option<u32>),
) -> Result<String> {
    use std::os::unix::process::CommandExt;
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| ServiceError::Io("empty command".into()))?;
    let mut command = std::process::Command::new(program);
    command.args(args).current_dir(cwd).process_group(0);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = crate::process::start(command, argv.join(" "), Stdio::null())?;
    group(Some(child.id()));
    let mut out = String::new();
    let _ = child.stdout().read_to_string(&mut out);
    let finished = child.finish();
    group(None);
    finished?;
    let lines: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    Ok(lines[lines.len().saturating_sub(3)..].join("; "))
}

/// Runs `argv` with `input` on its stdin (a notification as JSON).
pub fn run_with_input(argv: &[String], cwd: &Path, input: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut child = start_argv(argv, cwd, Stdio::piped())?;
    let mut stdout = child.stdout();
    let drain = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let mut stdin = child.stdin();
    let _ = stdin.write_all(input);
    drop(stdin);
    let _ = drain.join();
    child.finish()?;
    Ok(())
}

/// A writer that adds what passes through to a [`Progress`] (a database restore's bar).
pub(crate) struct Counted<'a, W> {
    inner: W,
    progress: Option<&'a Progress>,
}

impl<'a, W> Counted<'a, W> {
    pub(crate) fn new(inner: W, progress: Option<&'a Progress>) -> Self {
        Counted { inner, progress }
    }
}

impl<W: std::io::Write> std::io::Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(progress) = self.progress {
            progress
                .bytes_done
                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod item_tests {
    use super::*;

    #[test]
    fn items_from_outside_are_checked_and_encoded_as_one_folder() {
        for bad in [".", "..", "-rf", "--help", "a\nb", "nul\0", "esc\x1b[31m"] {
            assert!(check_item(bad).is_err(), "{bad:?}");
        }
        for good in [
            "plain",
            "with space",
            "$(touch x)",
            "/subscriptions/a/b",
            "a/../b",
        ] {
            assert!(check_item(good).is_ok(), "{good:?}");
        }
        assert_eq!(item_folder_name(".."), "%2E.");
        assert_eq!(item_folder_name("/sub/a"), "%2Fsub%2Fa");
        assert_eq!(item_folder_name("a/../b"), "a%2F..%2Fb");
        assert_eq!(item_folder_name("50%"), "50%25");
        assert_eq!(item_folder_name(".hidden"), "%2Ehidden");
        for item in ["..", "/sub/a", "a/../b", ".x", "%2F"] {
            let name = item_folder_name(item);
            assert!(
                !name.contains('/') && name != "." && name != "..",
                "{item:?}"
            );
        }
    }
}
