//! Output: logs on stderr, results on stdout (human or `--json`), progress bars only on a
//! terminal, and errors printed once with their chain.

use lifeboat_services::{Newlines, escape_untrusted};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lifeboat_files::Progress;

use crate::cli::{Global, LogFormat};
use crate::context::PlanFailed;

/// Exit codes, documented in `--help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Failure = 1,
    Invalid = 2,
    Problems = 3,
    Incomplete = 4,
    /// Standard output was closed before everything was written (128 + SIGPIPE, as a
    /// program killed by the signal would end); the work itself went on to its end.
    OutputClosed = 141,
}

/// A mistake in how lifeboat was called (an unknown site or resource, flags that do not go
/// together): exit 2, like a command line clap refuses.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error as an `anyhow` error, for `return Err(usage(...))`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(message.into()))
}

/// Set once writing to stdout failed because its reader went away: later output is dropped
/// rather than panicking, and the run still ends its work (a failover piped into `head`
/// must not stop half-way).
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// Set when writing to stdout failed for another reason (a full disk behind a redirect).
static STDOUT_FAILED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Writes to stdout; a closed pipe or a failed write is remembered, never a panic.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
        } else if let Ok(mut failed) = STDOUT_FAILED.lock() {
            failed.get_or_insert_with(|| e.to_string());
        }
    }
}

/// Writes to stderr, ignoring failure: there is nowhere left to say it.
pub fn write_stderr(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// The exit status once the command is done: a closed stdout turns success into
/// [`Exit::OutputClosed`]; a failed write of the results turns it into a failure, said.
pub fn finish(code: Exit) -> Exit {
    if code != Exit::Success {
        return code;
    }
    if let Some(error) = STDOUT_FAILED.lock().ok().and_then(|mut f| f.take()) {
        write_stderr(format_args!(
            "error: the results could not be written to standard output: {error}\n"
        ));
        return Exit::Failure;
    }
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return Exit::OutputClosed;
    }
    code
}

// These shadow the standard macros in the whole crate (`#[macro_use] mod output` comes
// first in main.rs): the std ones panic when the reader of a pipe goes away
// (`lifeboat points | head -1`), these remember it and go on.

/// `print!` that never panics on a closed pipe.
macro_rules! print {
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!($($arg)*)) };
}

/// `println!` that never panics on a closed pipe.
macro_rules! println {
    () => { $crate::output::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` that never panics when stderr is gone.
macro_rules! eprint {
    ($($arg:tt)*) => { $crate::output::write_stderr(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics when stderr is gone.
macro_rules! eprintln {
    () => { $crate::output::write_stderr(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

pub fn init_logging(global: &Global) {
    let level = match global.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIFEBOAT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match global.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.without_time().init(),
    }
}

/// Prints an error once, with its chain; plan errors as diagnostics. With `--json`, stdout
/// also gets `{"error", "causes", "exit"}` so automation always has JSON to read.
pub fn report_error(error: &anyhow::Error, json: bool) -> Exit {
    if let Some(PlanFailed(errors)) = error.downcast_ref::<PlanFailed>() {
        print_plan_errors(errors, json);
        return Exit::Invalid;
    }
    let exit = if error.downcast_ref::<UsageError>().is_some() {
        Exit::Invalid
    } else {
        Exit::Failure
    };
    let headline = error.to_string();
    let causes: Vec<String> = error
        .chain()
        .skip(1)
        .map(|c| c.to_string())
        .filter(|c| !headline.contains(c.as_str()))
        .collect();
    // Errors quote servers and programs: nothing in them may drive the terminal.
    let shown = |text: &str| escape_untrusted(text.as_bytes(), Newlines::Keep);
    eprintln!("error: {}", shown(&headline));
    for cause in &causes {
        eprintln!("  caused by: {}", shown(cause));
    }
    if json {
        self::json(&serde_json::json!({ "error": headline, "causes": causes, "exit": exit as u8 }));
    }
    exit
}

/// An error with its causes on one line, each said once: a message that already quotes its
/// cause does not repeat it (`{:#}` would).
pub fn chain(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    escape_untrusted(text.as_bytes(), Newlines::Keep)
}

pub fn print_plan_errors(errors: &lifeboat_plan::PlanErrors, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&errors.to_json()).unwrap_or_default()
        );
    } else if std::io::stderr().is_terminal() {
        eprintln!("{:?}", miette::Report::new(errors.clone()));
    } else {
        eprint!("{}", errors.render_plain());
    }
}

pub fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: the results could not be put in JSON: {e}"),
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A duration for people, the same everywhere (terminal, JSON-free summaries, HTML reports).
pub fn millis(ms: u64) -> String {
    lifeboat_drill::report::duration_text(ms)
}

/// A moment for people: in this system's time zone, with the zone named.
pub fn zoned_time(t: jiff::Timestamp) -> String {
    t.to_zoned(jiff::tz::TimeZone::system())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// A progress bar fed from [`Progress`] counters, drawn only on a terminal.
pub struct Bar {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bar {
    pub fn start(global: &Global, label: &str, progress: Arc<Progress>) -> Bar {
        let stop = Arc::new(AtomicBool::new(false));
        if global.quiet || global.json || !std::io::stderr().is_terminal() {
            return Bar { stop, thread: None };
        }
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:10} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut streaming = false;
            while !flag.load(Ordering::Relaxed) {
                let total = progress.bytes_total.load(Ordering::Relaxed);
                // A stream (a database dump) has no known size: bytes and rate only.
                if total == 0 && !streaming && progress.bytes_done.load(Ordering::Relaxed) > 0 {
                    streaming = true;
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "{msg:10} {spinner} {binary_bytes} {binary_bytes_per_sec}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                }
                bar.set_length(total);
                bar.set_position(progress.bytes_done.load(Ordering::Relaxed));
                std::thread::sleep(Duration::from_millis(100));
            }
            bar.finish_and_clear();
        });
        Bar {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
