//! Child processes that services are captured and applied with: argv only (never a shell
//! unless the argv names one), stderr kept for the error message, stdout streamed.

use std::io::Read;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use crate::{Result, ServiceError};

const PIPE_SIZE: usize = 1 << 20;

/// The children running now, so that a process tearing down on a signal can stop them.
static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<u32>> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends SIGTERM to every child started through this module that has not ended: dumps,
/// restores, clients, commands. For a process that is stopping (a drill on a signal).
pub fn stop_children() {
    for &pid in running().iter() {
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
}

/// A started child whose stderr is collected on a thread, so a chatty child never blocks.
pub(crate) struct Running {
    child: Child,
    stderr: Option<JoinHandle<String>>,
    what: String,
}

/// Starts `command` with piped stdout and stderr. `what` names it in errors.
pub(crate) fn start(mut command: Command, what: String, stdin: Stdio) -> Result<Running> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ServiceError::Spawn { program, source })?;
    running().push(child.id());
    let stderr = child.stderr.take().map(collect_tail);
    // Dumps and restores stream hundreds of MB through these pipes: larger buffers mean
    // fewer wake-ups of both sides. Best effort (the system may cap the size).
    if let Some(stdin) = &child.stdin {
        let _ = rustix::pipe::fcntl_setpipe_size(stdin, PIPE_SIZE);
    }
    if let Some(stdout) = &child.stdout {
        let _ = rustix::pipe::fcntl_setpipe_size(stdout, PIPE_SIZE);
    }
    Ok(Running {
        child,
        stderr,
        what,
    })
}

/// Starts `argv` in `cwd`.
pub(crate) fn start_argv(argv: &[String], cwd: &std::path::Path, stdin: Stdio) -> Result<Running> {
    start_argv_env(argv, cwd, &[], stdin)
}

/// Starts `argv` in `cwd` with extra environment.
pub(crate) fn start_argv_env(
    argv: &[String],
    cwd: &std::path::Path,
    env: &[(String, String)],
    stdin: Stdio,
) -> Result<Running> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| ServiceError::Io("empty command".into()))?;
    let mut command = Command::new(program);
    command.args(args).current_dir(cwd);
    for (key, value) in env {
        command.env(key, value);
    }
    start(command, argv.join(" "), stdin)
}

impl Running {
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stdout(&mut self) -> ChildStdout {
        self.child.stdout.take().expect("stdout is piped once")
    }

    pub(crate) fn stdin(&mut self) -> ChildStdin {
        self.child.stdin.take().expect("stdin is piped once")
    }

    /// Waits for the child; an unsuccessful exit is an error carrying its stderr. On
    /// success, returns the stderr (some tools report problems there and still exit 0).
    pub(crate) fn finish(mut self) -> Result<String> {
        // Nobody reads stdout any more: drop it so a child still writing sees EPIPE.
        drop(self.child.stdout.take());
        let status = self
            .child
            .wait()
            .map_err(|e| ServiceError::Io(format!("waiting for `{}`: {e}", self.what)));
        self.conclude(status)
    }

    /// `None` while the child runs; once it has exited, what [`Running::finish`] says.
    pub(crate) fn try_finished(&mut self) -> Option<Result<String>> {
        let status = match self.child.try_wait() {
            Ok(None) => return None,
            Ok(Some(status)) => Ok(status),
            Err(e) => Err(ServiceError::Io(format!(
                "waiting for `{}`: {e}",
                self.what
            ))),
        };
        Some(self.conclude(status))
    }

    fn conclude(&mut self, status: Result<std::process::ExitStatus>) -> Result<String> {
        let pid = self.child.id();
        running().retain(|&p| p != pid);
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let status = status?;
        if !status.success() {
            return Err(ServiceError::CommandFailed {
                command: std::mem::take(&mut self.what),
                status: status.to_string(),
                stderr,
            });
        }
        Ok(stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Abandoned (an error elsewhere): never leave the child running or a zombie.
        if self.stderr.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let pid = self.child.id();
            running().retain(|&p| p != pid);
        }
    }
}

/// The last 8 KiB (at least) of a stream, read to its end, its control characters escaped
/// (lines kept): it ends up in messages on a terminal.
fn collect_tail(mut stream: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
            if all.len() > 16 * 1024 {
                all.drain(..all.len() - 8 * 1024);
            }
        }
        crate::escape_untrusted(&all, crate::Newlines::Keep)
    })
}
