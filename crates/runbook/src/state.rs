//! Which site is active, under which epoch, and the run under way.
//!
//! The epoch is a fencing token: it rises when a run that changes roles begins, and every
//! command carries the epoch it was decided under. A primary that comes back after a
//! failover still holds the old epoch, so what it asks for is refused and it never takes
//! traffic back by itself.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// The primary is lost: the DR site takes over.
    Failover,
    /// The primary is back: return to it.
    Failback,
    /// A planned move either way, both sites healthy.
    Switchover,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Failover => "failover",
            RunKind::Failback => "failback",
            RunKind::Switchover => "switchover",
        }
    }
}

/// A run under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    pub kind: RunKind,
    pub from: String,
    pub to: String,
    /// The epoch the run holds; raised when it began.
    pub epoch: u64,
}

/// `ActiveNoDR` (the primary serves), `ActiveDR` (a DR site serves), possibly with a run
/// under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteState {
    pub epoch: u64,
    /// The site serving traffic (until a run under way completes).
    pub active: String,
    pub primary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<Run>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("a {kind} to `{to}` (run {id}) is under way; `lifeboat resume` finishes it")]
    InProgress {
        kind: &'static str,
        to: String,
        id: String,
    },
    #[error("`{0}` is already the active site")]
    AlreadyActive(String),
    #[error(
        "a failover moves traffic away from the primary `{primary}`; to return to it, fail back"
    )]
    FailoverToPrimary { primary: String },
    #[error("a failback returns to the primary, but the primary `{0}` is already active")]
    NothingToFailBack(String),
    #[error("epoch {held} is stale: the current epoch is {current} (roles changed since)")]
    StaleEpoch { held: u64, current: u64 },
    #[error("no run is under way")]
    NoRun,
    #[error("run {given} is not the one under way ({current})")]
    OtherRun { given: String, current: String },
}

impl SiteState {
    /// A plan's first state: the primary serves, epoch 1.
    pub fn initial(primary: &str) -> Self {
        SiteState {
            epoch: 1,
            active: primary.to_string(),
            primary: primary.to_string(),
            run: None,
        }
    }

    /// `ActiveNoDR`, `ActiveDR`, or the run under way, for people.
    pub fn describe(&self) -> String {
        match &self.run {
            Some(run) => format!(
                "{} in progress ({} → {})",
                run.kind.as_str(),
                run.from,
                run.to
            ),
            None if self.active == self.primary => "ActiveNoDR".to_string(),
            None => "ActiveDR".to_string(),
        }
    }

    /// Starts a run towards `to`; the new state holds the raised epoch.
    pub fn begin(&self, kind: RunKind, to: &str, id: &str) -> Result<SiteState, Refusal> {
        if let Some(run) = &self.run {
            return Err(Refusal::InProgress {
                kind: run.kind.as_str(),
                to: run.to.clone(),
                id: run.id.clone(),
            });
        }
        match kind {
            RunKind::Failover if to == self.primary => {
                return Err(Refusal::FailoverToPrimary {
                    primary: self.primary.clone(),
                });
            }
            RunKind::Failback if self.active == self.primary => {
                return Err(Refusal::NothingToFailBack(self.primary.clone()));
            }
            _ => {}
        }
        let to = match kind {
            RunKind::Failback => self.primary.as_str(),
            _ => to,
        };
        if to == self.active {
            return Err(Refusal::AlreadyActive(to.to_string()));
        }
        let epoch = self.epoch + 1;
        Ok(SiteState {
            epoch,
            active: self.active.clone(),
            primary: self.primary.clone(),
            run: Some(Run {
                id: id.to_string(),
                kind,
                from: self.active.clone(),
                to: to.to_string(),
                epoch,
            }),
        })
    }

    /// The run `id` switched traffic: its target is now active.
    pub fn complete(&self, id: &str) -> Result<SiteState, Refusal> {
        let run = self.current(id)?;
        Ok(SiteState {
            epoch: self.epoch,
            active: run.to.clone(),
            primary: self.primary.clone(),
            run: None,
        })
    }

    /// Gives up the run `id` before traffic moved: the old site stays active, the raised
    /// epoch stays too (whatever the abandoned run started is stale).
    pub fn abandon(&self, id: &str) -> Result<SiteState, Refusal> {
        self.current(id)?;
        Ok(SiteState {
            run: None,
            ..self.clone()
        })
    }

    fn current(&self, id: &str) -> Result<&Run, Refusal> {
        let run = self.run.as_ref().ok_or(Refusal::NoRun)?;
        if run.id != id {
            return Err(Refusal::OtherRun {
                given: id.to_string(),
                current: run.id.clone(),
            });
        }
        Ok(run)
    }

    /// Refuses what was decided under an older epoch.
    pub fn admit(&self, epoch: u64) -> Result<(), Refusal> {
        if epoch < self.epoch {
            return Err(Refusal::StaleEpoch {
                held: epoch,
                current: self.epoch,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_then_failback_raise_the_epoch_each_time() {
        let s = SiteState::initial("primary");
        assert_eq!(s.describe(), "ActiveNoDR");
        let s = s.begin(RunKind::Failover, "dr", "r1").unwrap();
        assert_eq!((s.epoch, s.active.as_str()), (2, "primary"));
        assert_eq!(s.describe(), "failover in progress (primary → dr)");
        let s = s.complete("r1").unwrap();
        assert_eq!(
            (s.epoch, s.active.as_str(), s.describe().as_str()),
            (2, "dr", "ActiveDR")
        );
        let s = s.begin(RunKind::Failback, "ignored", "r2").unwrap();
        assert_eq!(s.run.as_ref().unwrap().to, "primary");
        let s = s.complete("r2").unwrap();
        assert_eq!((s.epoch, s.active.as_str()), (3, "primary"));
    }

    #[test]
    fn a_returning_primary_holds_a_stale_epoch() {
        let before = SiteState::initial("primary");
        let held = before.epoch;
        let after = before
            .begin(RunKind::Failover, "dr", "r1")
            .unwrap()
            .complete("r1")
            .unwrap();
        assert_eq!(
            after.admit(held).unwrap_err(),
            Refusal::StaleEpoch {
                held: 1,
                current: 2
            }
        );
        after.admit(after.epoch).unwrap();
    }

    #[test]
    fn one_run_at_a_time_and_only_sensible_moves() {
        let s = SiteState::initial("primary");
        assert!(matches!(
            s.begin(RunKind::Failover, "primary", "x"),
            Err(Refusal::FailoverToPrimary { .. })
        ));
        assert!(matches!(
            s.begin(RunKind::Failback, "primary", "x"),
            Err(Refusal::NothingToFailBack(_))
        ));
        assert!(matches!(
            s.begin(RunKind::Switchover, "primary", "x"),
            Err(Refusal::AlreadyActive(_))
        ));
        let running = s.begin(RunKind::Switchover, "dr", "r1").unwrap();
        assert!(matches!(
            running.begin(RunKind::Failover, "dr", "r2"),
            Err(Refusal::InProgress { .. })
        ));
        assert!(matches!(
            running.complete("r2"),
            Err(Refusal::OtherRun { .. })
        ));
        let abandoned = running.abandon("r1").unwrap();
        assert_eq!((abandoned.active.as_str(), abandoned.epoch), ("primary", 2));
        assert!(abandoned.run.is_none());
    }

    #[test]
    fn the_state_round_trips_as_json() {
        let s = SiteState::initial("primary")
            .begin(RunKind::Failover, "dr", "r1")
            .unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SiteState>(&json).unwrap(), s);
    }
}
