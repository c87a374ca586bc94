//! The witness's decision: `(state, event) -> (state, actions)`, with no clock, network or
//! process of its own (the `lifeboat watch` command probes, keeps time and acts).
//!
//! The primary is declared down only when every probe of it has failed, round after round,
//! for `threshold`, while the control probes (what the witness must reach when its own
//! network is fine) pass: a round where the control fails says nothing about the primary, so
//! the count starts again. One passing round returns to healthy. A manual decision alerts and
//! waits for approval; an automatic one waits `grace`, refuses when the newest restore point
//! is too old, and asks for exactly one failover, under the epoch it observed, so two
//! witnesses (or one restarted) cannot start two. The witness never fails back, follows a run
//! already under way instead of deciding again, and stays quiet for `cooldown` after a
//! failover.

use serde::Serialize;

/// Milliseconds on the watch's monotonic clock.
pub type Millis = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Manual,
    Automatic,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub decision: Decision,
    pub threshold: Millis,
    pub grace: Millis,
    pub cooldown: Millis,
    /// Automatic failover is refused when the newest restore point is older than this.
    pub max_point_age: Option<Millis>,
}

/// Where the plan stands, as read from its state before each round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteView {
    pub epoch: u64,
    /// The primary serves (`ActiveNoDR`).
    pub primary_active: bool,
    /// A failover, failback or switchover is under way.
    pub run_in_progress: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One round of probes at `at`.
    Round {
        at: Millis,
        /// At least one probe of the primary passed.
        primary_ok: bool,
        /// Every control probe passed (true when there are none).
        control_ok: bool,
        site: SiteView,
        /// Age of the newest complete restore point, when known.
        point_age: Option<Millis>,
    },
    /// A person approved the failover (`lifeboat approve`).
    Approved { at: Millis },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "alert", rename_all = "snake_case")]
pub enum Alert {
    /// The primary's probes started failing.
    Suspect,
    /// Failing for the whole threshold with the control passing.
    Down { for_ms: Millis },
    /// The probes pass again.
    Recovered,
    /// The control failed too: the witness may be the one cut off; nothing is decided.
    Isolated,
    /// Manual decision (or a refused automatic one): waiting for `lifeboat approve` or
    /// `lifeboat failover`.
    AwaitingApproval,
    /// Automatic failover refused: the newest restore point is too old.
    PointTooOld { age_ms: Millis, max_ms: Millis },
    /// The failover was asked for.
    DecisionTaken { epoch: u64, automatic: bool },
    /// The failover run ended (reported by the watch, not decided here).
    FailoverFinished {
        ok: bool,
        achieved_rto_ms: Option<Millis>,
        achieved_rpo_ms: Option<Millis>,
    },
    /// The newest complete restore point is older than the plan's rpo (reported by the
    /// watch on each change, not decided here).
    PointsStale { age_ms: Millis, rpo_ms: Millis },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Alert(Alert),
    /// Begin the failover runbook, valid only while the plan is still at `epoch`.
    StartFailover {
        epoch: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Health {
    Healthy,
    /// Failing since `since`.
    Suspect {
        since: Millis,
    },
    /// Declared down at `at` (failing since `since`); waiting for grace or approval.
    Down {
        since: Millis,
        at: Millis,
        /// A person must decide (manual mode, or an automatic decision refused).
        awaiting: bool,
        /// A person decided: no grace, no restore-point age check.
        approved: bool,
    },
    /// The control failed: observations say nothing.
    Isolated,
    /// A run is under way (ours or anyone's); we follow it.
    Following,
    /// A DR site serves: the witness never fails back.
    ActiveDr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct State {
    pub health: Health,
    /// When a failover was last seen under way: the cooldown counts from its end.
    pub last_failover: Option<Millis>,
    /// The epoch a failover was asked for under: never asked twice for one epoch.
    pub asked_at_epoch: Option<u64>,
}

impl State {
    pub fn new() -> Self {
        State {
            health: Health::Healthy,
            last_failover: None,
            asked_at_epoch: None,
        }
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

/// Advances the decision by one event.
pub fn step(state: &State, config: &Config, event: &Event) -> (State, Vec<Action>) {
    let mut next = state.clone();
    let mut actions = Vec::new();
    match *event {
        Event::Approved { .. } => {
            // Acted on at the next round, where the epoch is known.
            if let Health::Down { since, at, .. } = state.health {
                next.health = Health::Down {
                    since,
                    at,
                    awaiting: false,
                    approved: true,
                };
            }
            return (next, actions);
        }
        Event::Round {
            at,
            primary_ok,
            control_ok,
            site,
            point_age,
        } => {
            if site.run_in_progress {
                next.health = Health::Following;
                next.last_failover = Some(at);
                return (next, actions);
            }
            if !site.primary_active {
                next.health = Health::ActiveDr;
                if state.health == Health::Following {
                    next.last_failover = Some(at);
                }
                return (next, actions);
            }
            if matches!(state.health, Health::Following | Health::ActiveDr) {
                // A run ended with the primary serving (a failback): start afresh.
                next.health = Health::Healthy;
                next.last_failover = Some(at);
            }
            if !control_ok {
                if next.health != Health::Isolated {
                    actions.push(Action::Alert(Alert::Isolated));
                }
                next.health = Health::Isolated;
                return (next, actions);
            }
            if primary_ok {
                if matches!(next.health, Health::Suspect { .. } | Health::Down { .. }) {
                    actions.push(Action::Alert(Alert::Recovered));
                }
                next.health = Health::Healthy;
                return (next, actions);
            }
            let since = match next.health {
                Health::Suspect { since } | Health::Down { since, .. } => since,
                _ => {
                    actions.push(Action::Alert(Alert::Suspect));
                    at
                }
            };
            next.health = match next.health {
                Health::Down { .. } => next.health.clone(),
                _ if at.saturating_sub(since) >= config.threshold => {
                    actions.push(Action::Alert(Alert::Down { for_ms: at - since }));
                    let awaiting = config.decision == Decision::Manual;
                    if awaiting {
                        actions.push(Action::Alert(Alert::AwaitingApproval));
                    }
                    Health::Down {
                        since,
                        at,
                        awaiting,
                        approved: false,
                    }
                }
                _ => Health::Suspect { since },
            };
            if let Health::Down {
                at: down_at,
                awaiting: false,
                approved,
                ..
            } = next.health
            {
                let now = Moment {
                    now: at,
                    down_at,
                    approved,
                };
                decide(&mut next, config, &mut actions, now, site, point_age);
            }
        }
    }
    (next, actions)
}

/// When a decision is considered.
struct Moment {
    now: Millis,
    down_at: Millis,
    approved: bool,
}

fn decide(
    next: &mut State,
    config: &Config,
    actions: &mut Vec<Action>,
    moment: Moment,
    site: SiteView,
    point_age: Option<Millis>,
) {
    if next.asked_at_epoch == Some(site.epoch) {
        return;
    }
    if let Some(last) = next.last_failover
        && moment.now.saturating_sub(last) < config.cooldown
    {
        return;
    }
    if !moment.approved {
        if moment.now.saturating_sub(moment.down_at) < config.grace {
            return;
        }
        if let (Some(max), Some(age)) = (config.max_point_age, point_age)
            && age > max
        {
            actions.push(Action::Alert(Alert::PointTooOld {
                age_ms: age,
                max_ms: max,
            }));
            actions.push(Action::Alert(Alert::AwaitingApproval));
            if let Health::Down { since, at, .. } = next.health {
                next.health = Health::Down {
                    since,
                    at,
                    awaiting: true,
                    approved: false,
                };
            }
            return;
        }
    }
    next.asked_at_epoch = Some(site.epoch);
    actions.push(Action::Alert(Alert::DecisionTaken {
        epoch: site.epoch,
        automatic: !moment.approved,
    }));
    actions.push(Action::StartFailover { epoch: site.epoch });
}

#[cfg(test)]
mod tests;
