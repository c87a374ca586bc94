use proptest::prelude::*;

use super::*;

const INTERVAL: Millis = 1_000;

fn config(decision: Decision) -> Config {
    Config {
        decision,
        threshold: 10_000,
        grace: 0,
        cooldown: 3_600_000,
        max_point_age: Some(600_000),
    }
}

fn site() -> SiteView {
    SiteView {
        epoch: 1,
        primary_active: true,
        run_in_progress: false,
    }
}

fn round(at: Millis, primary_ok: bool, control_ok: bool) -> Event {
    Event::Round {
        at,
        primary_ok,
        control_ok,
        site: site(),
        point_age: Some(60_000),
    }
}

/// Feeds rounds one interval apart; returns every action.
fn run(config: &Config, rounds: &[(bool, bool)]) -> (State, Vec<Action>) {
    let mut state = State::new();
    let mut all = Vec::new();
    for (i, &(primary_ok, control_ok)) in rounds.iter().enumerate() {
        let (next, actions) = step(
            &state,
            config,
            &round(i as Millis * INTERVAL, primary_ok, control_ok),
        );
        state = next;
        all.extend(actions);
    }
    (state, all)
}

fn failovers(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::StartFailover { .. }))
        .count()
}

fn alerts(actions: &[Action]) -> Vec<&Alert> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Alert(alert) => Some(alert),
            _ => None,
        })
        .collect()
}

#[test]
fn a_sustained_outage_alerts_in_order_and_fails_over_once() {
    let mut rounds = vec![(true, true); 5];
    rounds.extend(vec![(false, true); 30]);
    let (state, actions) = run(&config(Decision::Automatic), &rounds);
    assert_eq!(failovers(&actions), 1);
    assert_eq!(
        alerts(&actions),
        [
            &Alert::Suspect,
            &Alert::Down { for_ms: 10_000 },
            &Alert::DecisionTaken {
                epoch: 1,
                automatic: true
            }
        ]
    );
    assert_eq!(state.asked_at_epoch, Some(1));
}

#[test]
fn recovery_before_the_threshold_says_so_and_does_nothing_else() {
    let mut rounds = vec![(false, true); 5];
    rounds.push((true, true));
    let (state, actions) = run(&config(Decision::Automatic), &rounds);
    assert_eq!(alerts(&actions), [&Alert::Suspect, &Alert::Recovered]);
    assert_eq!(state.health, Health::Healthy);
}

#[test]
fn manual_mode_alerts_down_once_and_waits_for_approval() {
    let c = config(Decision::Manual);
    let (state, actions) = run(&c, &[(false, true); 40]);
    assert_eq!(failovers(&actions), 0);
    let downs = alerts(&actions)
        .iter()
        .filter(|a| matches!(a, Alert::Down { .. }))
        .count();
    assert_eq!(downs, 1);
    assert!(alerts(&actions).contains(&&Alert::AwaitingApproval));
    let (state, none) = step(&state, &c, &Event::Approved { at: 41_000 });
    assert!(none.is_empty());
    let (_, actions) = step(&state, &c, &round(42_000, false, true));
    assert_eq!(failovers(&actions), 1);
}

#[test]
fn an_old_restore_point_turns_an_automatic_decision_over_to_a_person() {
    let c = config(Decision::Automatic);
    let mut state = State::new();
    let mut all = Vec::new();
    for i in 0..30 {
        let event = Event::Round {
            at: i * INTERVAL,
            primary_ok: false,
            control_ok: true,
            site: site(),
            point_age: Some(3_600_000),
        };
        let (next, actions) = step(&state, &c, &event);
        state = next;
        all.extend(actions);
    }
    assert_eq!(failovers(&all), 0);
    let too_old = alerts(&all)
        .iter()
        .filter(|a| matches!(a, Alert::PointTooOld { .. }))
        .count();
    assert_eq!(too_old, 1, "alerted once, not every round");
}

#[test]
fn grace_delays_and_cooldown_blocks_after_a_failover() {
    let c = Config {
        grace: 5_000,
        ..config(Decision::Automatic)
    };
    let (_, actions) = run(&c, &[(false, true); 14]);
    assert_eq!(
        failovers(&actions),
        0,
        "threshold reached at 10 s, grace ends at 15 s"
    );
    let (_, actions) = run(&c, &[(false, true); 16]);
    assert_eq!(failovers(&actions), 1);

    // A failover ran and was failed back an hour-minus later: quiet during the cooldown.
    let mut state = State::new();
    let following = Event::Round {
        at: 0,
        primary_ok: false,
        control_ok: true,
        site: SiteView {
            run_in_progress: true,
            ..site()
        },
        point_age: None,
    };
    state = step(&state, &c, &following).0;
    let mut all = Vec::new();
    for i in 1..60 {
        let (next, actions) = step(&state, &c, &round(i * INTERVAL, false, true));
        state = next;
        all.extend(actions);
    }
    assert_eq!(failovers(&all), 0);
}

#[test]
fn never_fails_back_and_follows_a_run_under_way() {
    let c = config(Decision::Automatic);
    let dr = SiteView {
        epoch: 2,
        primary_active: false,
        run_in_progress: false,
    };
    let mut state = State::new();
    for i in 0..50 {
        let (next, actions) = step(
            &state,
            &c,
            &Event::Round {
                at: i * INTERVAL,
                primary_ok: false,
                control_ok: true,
                site: dr,
                point_age: None,
            },
        );
        assert!(actions.is_empty());
        state = next;
    }
    assert_eq!(state.health, Health::ActiveDr);
}

#[test]
fn a_restarted_witness_does_not_ask_twice_under_one_epoch() {
    let c = config(Decision::Automatic);
    let (state, actions) = run(&c, &[(false, true); 20]);
    assert_eq!(failovers(&actions), 1);
    // The runbook refused (say, another witness began first); the epoch did not move.
    let (_, again) = step(&state, &c, &round(21_000, false, true));
    assert_eq!(failovers(&again), 0);
}

proptest! {
    /// Noise that never stays failing for the threshold never triggers, nor declares down.
    #[test]
    fn noise_shorter_than_the_threshold_never_triggers(
        rounds in proptest::collection::vec(proptest::bool::weighted(0.7), 1..400)
    ) {
        let c = config(Decision::Automatic);
        // Break every failing stretch before it lasts the threshold (10 rounds span 9 s).
        let mut run_len = 0;
        let rounds: Vec<(bool, bool)> = rounds
            .into_iter()
            .map(|ok| {
                run_len = if ok { 0 } else { run_len + 1 };
                if run_len >= 10 {
                    run_len = 0;
                    (true, true)
                } else {
                    (ok, true)
                }
            })
            .collect();
        let (_, actions) = run(&c, &rounds);
        prop_assert_eq!(failovers(&actions), 0);
        let declared_down = alerts(&actions).iter().any(|a| matches!(a, Alert::Down { .. }));
        prop_assert!(!declared_down, "declared down");
    }

    /// One sustained outage, whatever the noise before it, triggers exactly one failover.
    #[test]
    fn one_sustained_outage_triggers_exactly_once(
        before in proptest::collection::vec(proptest::bool::weighted(0.9), 0..100),
        outage in 11usize..200,
    ) {
        let c = config(Decision::Automatic);
        let mut rounds: Vec<(bool, bool)> = before.into_iter().map(|ok| (ok, true)).collect();
        // A passing round first, so the noise before cannot already have reached the threshold.
        rounds.push((true, true));
        rounds.extend(std::iter::repeat_n((false, true), outage));
        let (_, actions) = run(&c, &rounds);
        prop_assert_eq!(failovers(&actions), 1);
    }

    /// A witness whose control fails whenever the primary does is cut off: never triggers.
    #[test]
    fn a_cut_off_witness_never_triggers(
        rounds in proptest::collection::vec(any::<bool>(), 1..400)
    ) {
        let c = config(Decision::Automatic);
        let rounds: Vec<(bool, bool)> = rounds.into_iter().map(|ok| (ok, ok)).collect();
        let (_, actions) = run(&c, &rounds);
        prop_assert_eq!(failovers(&actions), 0);
    }
}
