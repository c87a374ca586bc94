//! The journal of a run: one JSON record per line, appended (and synced) as each step starts
//! and ends. Replaying it tells a resumed run which steps are finished; a run killed while
//! writing leaves at most a torn last line, which is ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::steps::Step;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Started,
    Finished,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The step's id ([`Step::id`]).
    pub step: String,
    pub event: Event,
    /// When, as the binary's clock said (RFC 3339).
    pub at: String,
    /// Milliseconds since the run began.
    pub elapsed_ms: u64,
    /// What happened: a summary when finished, the error when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A fence or quiesce that finished: whether the site was confirmed stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<bool>,
}

impl Record {
    /// One line of the journal, newline included.
    pub fn line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a record always serialises");
        line.push('\n');
        line
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journal line {line}: {message}")]
pub struct JournalError {
    pub line: usize,
    pub message: String,
}

/// Reads a journal. A last line without its newline is a record torn by a kill and is
/// dropped; any other unreadable line is an error (the journal was damaged).
pub fn parse(text: &str) -> Result<Vec<Record>, JournalError> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| JournalError {
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// Where each step stands after replaying the records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    /// The last event of each step.
    pub last: BTreeMap<String, Event>,
}

impl Replay {
    pub fn of(records: &[Record]) -> Self {
        let mut last = BTreeMap::new();
        for r in records {
            last.insert(r.step.clone(), r.event);
        }
        Replay { last }
    }

    pub fn finished(&self, step: &Step) -> bool {
        self.last.get(&step.id()) == Some(&Event::Finished)
    }

    /// The steps still to run, in order: everything not finished (a step that started and
    /// never ended was interrupted and runs again; steps are idempotent). A quiesce runs
    /// again while the capture after it has not finished: the site may have taken writes
    /// since (someone restarted it while the run was stopped).
    pub fn remaining<'a>(&self, steps: &'a [Step]) -> Vec<&'a Step> {
        let captured = |site: &str| {
            steps
                .iter()
                .any(|s| matches!(s, Step::Backup { site: b } if b == site) && self.finished(s))
        };
        steps
            .iter()
            .filter(|s| match s {
                Step::Quiesce { site } => !self.finished(s) || !captured(site),
                _ => !self.finished(s),
            })
            .collect()
    }

    /// The last record of `step`, if any.
    pub fn last_record<'r>(records: &'r [Record], step: &Step) -> Option<&'r Record> {
        let id = step.id();
        records.iter().rfind(|r| r.step == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: &str, event: Event) -> Record {
        Record {
            step: step.into(),
            event,
            at: "2026-11-22T00:00:00Z".into(),
            elapsed_ms: 0,
            detail: None,
            confirmed: None,
        }
    }

    #[test]
    fn a_killed_run_resumes_after_its_last_finished_step() {
        let steps = vec![
            Step::Fence {
                site: "primary".into(),
            },
            Step::Restore {
                resource: "db".into(),
                site: "dr".into(),
                wave: 0,
            },
            Step::Notify,
        ];
        let mut text = String::new();
        text.push_str(&record("fence:primary", Event::Started).line());
        text.push_str(&record("fence:primary", Event::Finished).line());
        text.push_str(&record("restore:db", Event::Started).line());
        // Killed while writing the next record.
        text.push_str("{\"step\":\"restore:db\",\"ev");
        let records = parse(&text).unwrap();
        assert_eq!(records.len(), 3);
        let replay = Replay::of(&records);
        let ids: Vec<String> = replay.remaining(&steps).iter().map(|s| s.id()).collect();
        assert_eq!(ids, ["restore:db", "notify"]);
    }

    #[test]
    fn a_quiesce_runs_again_until_the_capture_after_it_finished() {
        let steps = vec![
            Step::Quiesce {
                site: "primary".into(),
            },
            Step::Backup {
                site: "primary".into(),
            },
            Step::Notify,
        ];
        let remaining = |records: &[Record]| -> Vec<String> {
            Replay::of(records)
                .remaining(&steps)
                .iter()
                .map(|s| s.id())
                .collect()
        };
        let quiesced = [
            record("quiesce:primary", Event::Started),
            record("quiesce:primary", Event::Finished),
            record("backup:primary", Event::Started),
            record("backup:primary", Event::Failed),
        ];
        assert_eq!(
            remaining(&quiesced),
            ["quiesce:primary", "backup:primary", "notify"]
        );
        let mut captured = quiesced.to_vec();
        captured.push(record("backup:primary", Event::Finished));
        assert_eq!(remaining(&captured), ["notify"]);
        // Old journals without `confirmed` still read.
        let old = parse(
            "{\"step\":\"fence:primary\",\"event\":\"finished\",\"at\":\"x\",\"elapsed_ms\":1}\n",
        )
        .unwrap();
        assert_eq!(old[0].confirmed, None);
    }

    #[test]
    fn a_failed_step_runs_again_and_damage_is_an_error() {
        let records = parse(&format!(
            "{}{}",
            record("notify", Event::Started).line(),
            record("notify", Event::Failed).line()
        ))
        .unwrap();
        assert!(!Replay::of(&records).finished(&Step::Notify));
        let e = parse("not json\n{}\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert_eq!(parse("").unwrap(), vec![]);
    }
}
