//! `lifeboat watch`: the witness. Every `interval` it probes the primary and the control
//! targets, reads the plan's state, and feeds the round to the pure decision in
//! `lifeboat-watch`; it delivers the alerts that come out (on their own thread, retried, so
//! a slow destination never delays probing) and starts the failover runbook as a separate
//! `lifeboat failover` process when asked. `lifeboat approve` leaves a mark in the state
//! folder that the witness reads as a person's approval.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use lifeboat_plan::{Plan, Role};
use lifeboat_services::checks::{CheckSpec, Probe, run_check};
use lifeboat_watch::{Action, Alert, Config, Decision, Event, SiteView, State, step};

use crate::context::Context;
use crate::output::Exit;
use crate::sitestate::StateStore;

const APPROVAL: &str = "approve";

pub fn approve(ctx: &Context) -> Result<Exit> {
    let plan = ctx.require_plan()?;
    let store = StateStore::of(plan);
    crate::sitestate::private_dir(store.dir())?;
    std::fs::write(
        store.dir().join(APPROVAL),
        jiff::Timestamp::now().to_string(),
    )?;
    println!("approved: a running `lifeboat watch` starts the failover at its next round");
    Ok(Exit::Success)
}

/// One probe of the witness.
enum WatchProbe {
    Check(CheckSpec),
    /// The name resolves: through `server` (asked directly) or the system resolver.
    Dns {
        name: String,
        server: Option<String>,
        record_type: lifeboat_traffic::RecordType,
        timeout: Duration,
    },
}

impl WatchProbe {
    fn of(probe: &lifeboat_plan::Probe, plan: &Plan, timeout: Duration) -> Self {
        let check = |name: String, probe| {
            WatchProbe::Check(CheckSpec {
                name,
                probe,
                timeout,
                retries: 0,
                retry_interval: Duration::ZERO,
            })
        };
        match probe {
            lifeboat_plan::Probe::Http { url, expect_status } => check(
                url.clone(),
                Probe::Http {
                    url: url.clone(),
                    status: *expect_status,
                    body: None,
                },
            ),
            lifeboat_plan::Probe::Tcp { address } => {
                check(address.clone(), Probe::Tcp(address.clone()))
            }
            lifeboat_plan::Probe::Dns {
                name,
                server,
                record_type,
            } => WatchProbe::Dns {
                name: name.clone(),
                server: server.clone(),
                record_type: match record_type {
                    lifeboat_plan::RecordType::A => lifeboat_traffic::RecordType::A,
                    lifeboat_plan::RecordType::Aaaa => lifeboat_traffic::RecordType::Aaaa,
                    lifeboat_plan::RecordType::Cname => lifeboat_traffic::RecordType::Cname,
                    lifeboat_plan::RecordType::Ns => lifeboat_traffic::RecordType::Ns,
                },
                timeout,
            },
            lifeboat_plan::Probe::Command(command) => check(
                command.argv().join(" "),
                Probe::Command {
                    argv: command.argv().to_vec(),
                    cwd: plan.plan_dir().to_path_buf(),
                    env: vec![],
                    expect: None,
                },
            ),
        }
    }

    fn name(&self) -> String {
        match self {
            WatchProbe::Check(spec) => spec.name.clone(),
            WatchProbe::Dns { name, .. } => format!("dns {name}"),
        }
    }

    fn passes(&self) -> (bool, String) {
        match self {
            WatchProbe::Check(spec) => {
                let outcome = run_check(spec);
                (outcome.ok, outcome.detail)
            }
            dns => {
                let ok = dns.resolves();
                (
                    ok,
                    if ok {
                        "resolves".into()
                    } else {
                        "does not resolve".into()
                    },
                )
            }
        }
    }

    fn resolves(&self) -> bool {
        match self {
            WatchProbe::Check(_) => unreachable!("not a DNS probe"),
            WatchProbe::Dns {
                name,
                server: Some(server),
                record_type,
                timeout,
            } => {
                use std::net::ToSocketAddrs;
                let Some(addr) = server.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
                    return false;
                };
                lifeboat_traffic::query_records(addr, name, *record_type, *timeout)
                    .is_ok_and(|values| !values.is_empty())
            }
            WatchProbe::Dns {
                name, server: None, ..
            } => {
                use std::net::ToSocketAddrs;
                (name.trim_end_matches('.'), 0)
                    .to_socket_addrs()
                    .is_ok_and(|mut a| a.next().is_some())
            }
        }
    }
}

/// Runs every probe at once, recording each result in its history; how many passed.
fn round_of(probes: &[WatchProbe], history: &mut [ProbeHistory], at: u64) -> usize {
    let results: Vec<(bool, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = probes.iter().map(|p| s.spawn(|| p.passes())).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((false, "the probe panicked".into())))
            .collect()
    });
    for (h, (ok, detail)) in history.iter_mut().zip(&results) {
        if h.ok != Some(*ok) {
            tracing::info!(
                "probe {}: {} ({detail})",
                h.name,
                if *ok { "passes" } else { "FAILS" }
            );
            h.since_ms = at;
        }
        h.ok = Some(*ok);
        h.detail = detail.clone();
        if *ok {
            h.passes += 1;
        } else {
            h.failures += 1;
        }
    }
    results.iter().filter(|(ok, _)| *ok).count()
}

/// One probe's pass/fail history, kept in the state folder (`watch.json`) for `status`.
#[derive(Debug, Clone, serde::Serialize)]
struct ProbeHistory {
    name: String,
    control: bool,
    ok: Option<bool>,
    /// Since when (ms after the watch started) it has been passing or failing.
    since_ms: u64,
    passes: u64,
    failures: u64,
    detail: String,
}

fn histories(probes: &[WatchProbe], control: bool) -> Vec<ProbeHistory> {
    probes
        .iter()
        .map(|p| ProbeHistory {
            name: p.name(),
            control,
            ok: None,
            since_ms: 0,
            passes: 0,
            failures: 0,
            detail: String::new(),
        })
        .collect()
}

pub fn watch(ctx: &Context) -> Result<Exit> {
    let plan = ctx.require_plan()?;
    let Some(config) = &plan.watch else {
        bail!("the plan has no [watch] section");
    };
    let Some(to) = plan
        .sites
        .iter()
        .find(|(_, s)| s.role == Role::Standby)
        .map(|(name, _)| name.clone())
    else {
        bail!("the plan has no standby site to fail over to");
    };
    let decision = Config {
        decision: match config.decision {
            lifeboat_plan::Decision::Automatic => Decision::Automatic,
            lifeboat_plan::Decision::Manual => Decision::Manual,
        },
        threshold: config.failure_threshold.as_millis() as u64,
        grace: config.grace.as_millis() as u64,
        cooldown: config.cooldown.as_millis() as u64,
        max_point_age: config.max_restore_point_age.map(|d| d.as_millis() as u64),
    };
    let probes: Vec<WatchProbe> = config
        .probes
        .iter()
        .map(|p| WatchProbe::of(p, plan, config.timeout))
        .collect();
    let controls: Vec<WatchProbe> = config
        .control
        .iter()
        .map(|p| WatchProbe::of(p, plan, config.timeout))
        .collect();
    let store = StateStore::of(plan);
    let alerts = alert_sender(plan.clone(), ctx.global.json);
    let started = Instant::now();
    let mut state = State::new();
    // The failover the witness started, and the last run before it.
    let mut failover: Option<(std::process::Child, Option<String>)> = None;
    let rpo_ms = plan.objectives.rpo.as_millis() as u64;
    let mut stale = false;
    let mut points_checked: Option<Instant> = None;
    let mut repository = None;
    let mut probe_history = histories(&probes, false);
    let mut control_history = histories(&controls, true);
    tracing::info!(
        "watching {} probe(s) of the primary every {:?}; failover to `{to}` is {}",
        probes.len(),
        config.interval,
        if decision.decision == Decision::Automatic {
            "automatic"
        } else {
            "manual"
        }
    );
    loop {
        let round_started = Instant::now();
        let at = started.elapsed().as_millis() as u64;
        if store.dir().join(APPROVAL).exists() {
            let _ = std::fs::remove_file(store.dir().join(APPROVAL));
            state = step(&state, &decision, &Event::Approved { at }).0;
        }
        // The run the witness started has ended: say how it went.
        if let Some((child, before)) = &mut failover
            && let Ok(Some(status)) = child.try_wait()
        {
            if !status.success() && stopped_on_a_step(&store, before.as_deref()) {
                // The run alerted when its step failed: one alert per failure.
                tracing::warn!("the failover stopped on a failed step (alerted by the run)");
            } else {
                let report = last_report(&store);
                let field = |k: &str| report.as_ref().and_then(|r| r[k].as_u64());
                let _ = alerts.send(Alert::FailoverFinished {
                    ok: status.success(),
                    achieved_rto_ms: field("achieved_rto_ms"),
                    achieved_rpo_ms: field("achieved_rpo_ms"),
                });
            }
            failover = None;
        }
        // Restore points older than the rpo: checked each minute, alerted on each change.
        if points_checked.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            points_checked = Some(Instant::now());
            if let Some(age) = newest_point_age(ctx, &mut repository) {
                if age > rpo_ms && !stale {
                    let _ = alerts.send(Alert::PointsStale {
                        age_ms: age,
                        rpo_ms,
                    });
                }
                stale = age > rpo_ms;
            }
        }
        let primary_ok = round_of(&probes, &mut probe_history, at) > 0;
        let control_ok = round_of(&controls, &mut control_history, at) == controls.len();
        let site_state = store.load(plan)?;
        let site = SiteView {
            epoch: site_state.epoch,
            primary_active: site_state.active == site_state.primary,
            run_in_progress: site_state.run.is_some()
                || failover
                    .as_mut()
                    .is_some_and(|(c, _)| matches!(c.try_wait(), Ok(None))),
        };
        let point_age = if matches!(
            state.health,
            lifeboat_watch::Health::Suspect { .. } | lifeboat_watch::Health::Down { .. }
        ) {
            newest_point_age(ctx, &mut repository)
        } else {
            None
        };
        let event = Event::Round {
            at,
            primary_ok,
            control_ok,
            site,
            point_age,
        };
        let (next, actions) = step(&state, &decision, &event);
        state = next;
        let snapshot = serde_json::json!({
            "updated": jiff::Timestamp::now(), "decision": state,
            "probes": probe_history, "control": control_history,
        });
        let _ = store.write_file("watch.json", &serde_json::to_vec_pretty(&snapshot)?);
        for action in actions {
            match action {
                Action::Alert(alert) => {
                    let _ = alerts.send(alert);
                }
                Action::StartFailover { epoch } => {
                    tracing::warn!("starting the failover to `{to}` under epoch {epoch}");
                    let mut command = std::process::Command::new(std::env::current_exe()?);
                    command
                        .arg("--plan")
                        .arg(plan.file())
                        .args(["failover", "--to", &to, "--yes"]);
                    if let Some(repo) = &ctx.global.repository {
                        command.arg("--repo").arg(repo);
                    }
                    let before = store.runs().pop();
                    failover = Some((command.spawn()?, before));
                }
            }
        }
        let spent = round_started.elapsed();
        std::thread::sleep(config.interval.saturating_sub(spent));
    }
}

/// A run began after `before` and a step of it stopped failed (which the run alerted): its
/// last record is a failure, even when a step beside it in the same wave finished later.
fn stopped_on_a_step(store: &StateStore, before: Option<&str>) -> bool {
    let Some(id) = store.runs().pop().filter(|id| Some(id.as_str()) != before) else {
        return false;
    };
    store.journal(&id).is_ok_and(|journal| {
        let mut last = std::collections::HashMap::new();
        for record in &journal {
            last.insert(record.step.as_str(), record.event);
        }
        last.values()
            .any(|event| *event == lifeboat_runbook::journal::Event::Failed)
    })
}

/// The report of the newest run, when it wrote one.
fn last_report(store: &StateStore) -> Option<serde_json::Value> {
    let id = store.runs().pop()?;
    serde_json::from_slice(&store.read_run_file(&id, "report.json").ok()?).ok()
}

/// The repository is opened once (its key derivation is deliberately slow), then reused.
fn newest_point_age(
    ctx: &Context,
    repository: &mut Option<lifeboat_repository::Repository>,
) -> Option<u64> {
    if repository.is_none() {
        *repository = ctx.open_repository().ok();
    }
    let points = repository.as_ref()?.points().ok()?;
    // What a failover now would restore: each resource's newest complete capture; the
    // oldest of them is how old the restored data would be.
    let names: Vec<String> = ctx.plan()?.resources.keys().cloned().collect();
    // A resource never captured complete makes the restorable data as old as can be: the
    // stale alert fires and an automatic failover waits for approval.
    let Ok(chosen) = lifeboat_repository::choice::choose(&points, &names) else {
        return Some(u64::MAX);
    };
    let oldest = lifeboat_repository::choice::oldest(&chosen)?;
    let age = jiff::Timestamp::now().duration_since(oldest.time);
    Some(age.as_millis().max(0) as u64)
}

/// Delivers alerts in order on their own thread, each retried a few times.
fn alert_sender(plan: Plan, json: bool) -> mpsc::Sender<Alert> {
    let (tx, rx) = mpsc::channel::<Alert>();
    std::thread::spawn(move || {
        for alert in rx {
            let text = format!("lifeboat watch ({}): {}", plan.name(), describe(&alert));
            let body = serde_json::json!({ "event": "watch", "alert": alert, "text": text, "plan": plan.name() });
            if json {
                println!("{body}");
            } else {
                println!("{} {text}", jiff::Timestamp::now());
            }
            tracing::warn!("{text}");
            for attempt in 1..=3 {
                let said = super::runbook::deliver(&plan, &body, &text);
                if !said.contains("NOT sent") {
                    break;
                }
                tracing::warn!("alert delivery, attempt {attempt}: {said}");
                std::thread::sleep(Duration::from_secs(attempt));
            }
        }
    });
    tx
}

fn describe(alert: &Alert) -> String {
    match alert {
        Alert::Suspect => "the primary's probes are failing".into(),
        Alert::Down { for_ms } => format!("the primary is DOWN (failing for {} s)", for_ms / 1000),
        Alert::Recovered => "the primary's probes pass again".into(),
        Alert::Isolated => {
            "the control probes fail too: this witness may be cut off; nothing is decided".into()
        }
        Alert::AwaitingApproval => "waiting for `lifeboat approve` or `lifeboat failover`".into(),
        Alert::PointTooOld { age_ms, max_ms } => format!(
            "automatic failover refused: the newest restore point is {} s old (limit {} s)",
            age_ms / 1000,
            max_ms / 1000
        ),
        Alert::FailoverFinished {
            ok,
            achieved_rto_ms,
            achieved_rpo_ms,
        } => format!(
            "the failover {}; achieved RTO {}, RPO {}",
            if *ok {
                "finished"
            } else {
                "FAILED (see `lifeboat status`, then `lifeboat resume`)"
            },
            achieved_rto_ms.map_or("-".into(), |ms| format!("{} s", ms / 1000)),
            achieved_rpo_ms.map_or("-".into(), |ms| format!("{} s", ms / 1000)),
        ),
        Alert::PointsStale { age_ms, rpo_ms } if *age_ms == u64::MAX => format!(
            "a resource has no complete capture in any restore point (`lifeboat audit` names \
             it), beyond the rpo of {} s",
            rpo_ms / 1000
        ),
        Alert::PointsStale { age_ms, rpo_ms } => format!(
            "the newest restore point is {} s old, beyond the rpo of {} s",
            age_ms / 1000,
            rpo_ms / 1000
        ),
        Alert::DecisionTaken { epoch, automatic } => format!(
            "failover decided ({}, epoch {epoch})",
            if *automatic {
                "automatically"
            } else {
                "approved"
            }
        ),
    }
}
