//! A restore or backup stopped by SIGINT, SIGTERM or SIGHUP leaves no staging file or
//! temporary copy behind: its child programs are stopped, the staging files and temporary
//! folders under way removed (`services::remove_staged`), and the process ends with 130. (A
//! drill has its own handler, which tears the drill down and calls the same clean-up.)

use anyhow::{Context as _, Result};

/// Installs the handler, on a thread of its own (a signal handler itself may do almost
/// nothing).
pub fn remove_staging_on_signal() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing the signal handler")?;
    std::thread::spawn(move || {
        let Some(signal) = signals.forever().next() else {
            return;
        };
        lifeboat_services::stop_children();
        let removed = lifeboat_services::remove_staged();
        eprintln!(
            "lifeboat: signal {signal}: stopped{}",
            if removed.is_empty() {
                String::new()
            } else {
                format!(
                    "; removed {}",
                    removed
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        std::process::exit(130);
    });
    Ok(())
}
