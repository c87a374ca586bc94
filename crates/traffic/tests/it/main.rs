//! The DNS switch against a real BIND 9 server (Debian's `bind9`), one server per test.

mod named;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lifeboat_traffic::{
    DnsError, DnsSwitch, RecordSetAnswer, RecordType, SwitchOutcome, TsigKey, confirm,
    query_record_set, query_records, switch_dns, ttl_warning,
};
use named::{Named, ZONE, free_port, key_sha256, key_sha512};

const TIMEOUT: Duration = Duration::from_secs(5);

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| (*value).to_owned()).collect()
}

fn a_switch(server: SocketAddr, key: Option<TsigKey>, old: &[&str], new: &[&str]) -> DnsSwitch {
    DnsSwitch {
        server,
        zone: ZONE.to_owned(),
        name: "app.example.test".to_owned(),
        record_type: RecordType::A,
        ttl: 60,
        tsig: key,
        old: strings(old),
        new: strings(new),
        timeout: TIMEOUT,
    }
}

fn app_records(named: &Named) -> Vec<String> {
    query_records(named.addr, "app.example.test", RecordType::A, TIMEOUT).expect("query")
}

#[test]
fn switches_an_a_record_and_back_and_a_second_switch_is_already_done() {
    let named = Named::start();
    let forward = a_switch(
        named.addr,
        Some(key_sha256()),
        &["192.0.2.10"],
        &["198.51.100.10"],
    );

    let outcome = switch_dns(&forward).expect("switch");
    let SwitchOutcome::Switched { before, after } = &outcome else {
        panic!("expected a switch, got {outcome:?}")
    };
    assert_eq!(
        before,
        &RecordSetAnswer {
            values: strings(&["192.0.2.10"]),
            ttl: Some(60)
        }
    );
    assert_eq!(after.values, ["198.51.100.10"]);
    assert_eq!(app_records(&named), ["198.51.100.10"]);
    assert_eq!(named.dig("app.example.test", "A"), ["198.51.100.10"]);
    let confirmed = confirm(
        named.addr,
        "app.example.test",
        RecordType::A,
        &strings(&["198.51.100.10"]),
        TIMEOUT,
        Duration::from_secs(10),
    )
    .expect("confirmed");
    assert_eq!(confirmed.values, ["198.51.100.10"]);

    // A resumed runbook runs the step again: nothing to do, nothing sent.
    let again = switch_dns(&forward).expect("second switch");
    assert_eq!(
        again,
        SwitchOutcome::AlreadySwitched {
            current: RecordSetAnswer {
                values: strings(&["198.51.100.10"]),
                ttl: Some(60)
            }
        }
    );
    assert!(
        named.log().matches("adding an RR").count() == 1,
        "the second switch sent an update:\n{}",
        named.log()
    );

    // Failback.
    let back = a_switch(
        named.addr,
        Some(key_sha256()),
        &["198.51.100.10"],
        &["192.0.2.10"],
    );
    assert!(matches!(
        switch_dns(&back).expect("switch back"),
        SwitchOutcome::Switched { .. }
    ));
    assert_eq!(app_records(&named), ["192.0.2.10"]);
    assert_eq!(named.dig("app.example.test", "A"), ["192.0.2.10"]);
}

#[test]
fn a_wrong_tsig_secret_is_refused_and_changes_nothing() {
    let named = Named::start();
    let mut key = key_sha256();
    key.secret_base64 = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=".to_owned();
    let error = switch_dns(&a_switch(
        named.addr,
        Some(key),
        &["192.0.2.10"],
        &["198.51.100.10"],
    ))
    .expect_err("a wrong secret must fail");

    let text = error.to_string();
    assert!(matches!(error, DnsError::TsigRefused { .. }), "{error:?}");
    assert!(
        text.contains("refused the TSIG signature: check the key name, algorithm and secret"),
        "{text}"
    );
    assert!(
        text.contains("BADSIG") && text.contains(&named.addr.to_string()),
        "{text}"
    );
    assert!(!text.contains("d3Jvbmc"), "the secret leaked: {text}");
    assert_eq!(app_records(&named), ["192.0.2.10"]);
}

#[test]
fn an_unknown_tsig_key_name_is_refused_and_changes_nothing() {
    let named = Named::start();
    let mut key = key_sha256();
    key.name = "nobody".to_owned();
    let error = switch_dns(&a_switch(
        named.addr,
        Some(key),
        &["192.0.2.10"],
        &["198.51.100.10"],
    ))
    .expect_err("an unknown key must fail");
    let text = error.to_string();
    assert!(text.contains("refused the TSIG signature"), "{text}");
    assert!(
        text.contains("BADKEY") && text.contains("`nobody.`"),
        "{text}"
    );
    assert_eq!(app_records(&named), ["192.0.2.10"]);
}

#[test]
fn an_unsigned_update_is_refused_by_the_update_policy() {
    let named = Named::start();
    let error = switch_dns(&a_switch(
        named.addr,
        None,
        &["192.0.2.10"],
        &["198.51.100.10"],
    ))
    .expect_err("no key, no update");
    assert!(matches!(error, DnsError::UpdateRefused { .. }), "{error:?}");
    assert!(error.to_string().contains("allow-update"), "{error}");
    assert_eq!(app_records(&named), ["192.0.2.10"]);
}

#[test]
fn a_wrong_expected_old_value_fails_the_prerequisite_naming_what_the_server_holds() {
    let named = Named::start();
    let error = switch_dns(&a_switch(
        named.addr,
        Some(key_sha256()),
        &["192.0.2.99"],
        &["198.51.100.10"],
    ))
    .expect_err("a wrong old value must fail");

    let DnsError::PrerequisiteFailed {
        expected,
        holds_now,
        ..
    } = &error
    else {
        panic!("expected a prerequisite failure, got {error:?}")
    };
    assert_eq!(expected, &["192.0.2.99"]);
    assert_eq!(holds_now.as_deref(), Some(&strings(&["192.0.2.10"])[..]));
    let text = error.to_string();
    assert!(
        text.contains("the server holds [192.0.2.10], expected [192.0.2.99]"),
        "{text}"
    );
    assert!(text.contains("app.example.test. A"), "{text}");
    assert_eq!(app_records(&named), ["192.0.2.10"]);

    // An old value that is only part of the record set is wrong too: the prerequisite is the
    // whole set.
    let error = switch_dns(&DnsSwitch {
        name: "pair.example.test".to_owned(),
        ..a_switch(
            named.addr,
            Some(key_sha256()),
            &["192.0.2.21"],
            &["198.51.100.21"],
        )
    })
    .expect_err("a partial old set must fail");
    assert!(
        error
            .to_string()
            .contains("the server holds [192.0.2.21, 192.0.2.22], expected [192.0.2.21]"),
        "{error}"
    );
}

#[test]
fn an_hmac_sha512_key_works() {
    let named = Named::start();
    let outcome = switch_dns(&a_switch(
        named.addr,
        Some(key_sha512()),
        &["192.0.2.10"],
        &["198.51.100.10"],
    ))
    .expect("switch with hmac-sha512");
    assert!(
        matches!(outcome, SwitchOutcome::Switched { .. }),
        "{outcome:?}"
    );
    assert_eq!(app_records(&named), ["198.51.100.10"]);
    assert!(
        named.log().contains("signer \"lifeboat-512\" approved"),
        "{}",
        named.log()
    );
}

#[test]
fn a_record_set_of_two_addresses_is_switched_as_a_whole() {
    let named = Named::start();
    let pair = |old: &[&str], new: &[&str]| DnsSwitch {
        name: "pair.example.test".to_owned(),
        ttl: 30,
        ..a_switch(named.addr, Some(key_sha256()), old, new)
    };
    // In any order; one address stays, one changes.
    let outcome = switch_dns(&pair(
        &["192.0.2.22", "192.0.2.21"],
        &["198.51.100.22", "192.0.2.21"],
    ))
    .expect("switch of two addresses");
    assert_eq!(
        outcome.current(),
        &RecordSetAnswer {
            values: strings(&["192.0.2.21", "198.51.100.22"]),
            ttl: Some(30)
        }
    );
    assert_eq!(
        named.dig("pair.example.test", "A"),
        ["192.0.2.21", "198.51.100.22"]
    );
    // Then two entirely new ones.
    switch_dns(&pair(
        &["192.0.2.21", "198.51.100.22"],
        &["198.51.100.31", "198.51.100.32"],
    ))
    .expect("second switch");
    assert_eq!(
        query_records(named.addr, "pair.example.test", RecordType::A, TIMEOUT).unwrap(),
        ["198.51.100.31", "198.51.100.32"]
    );
}

#[test]
fn aaaa_and_cname_record_sets_switch_too() {
    let named = Named::start();
    let outcome = switch_dns(&DnsSwitch {
        name: "v6.example.test".to_owned(),
        record_type: RecordType::Aaaa,
        ..a_switch(
            named.addr,
            Some(key_sha256()),
            &["2001:DB8:0::10"],
            &["2001:db8:1::10"],
        )
    })
    .expect("AAAA switch");
    assert_eq!(outcome.current().values, ["2001:db8:1::10"]);
    assert_eq!(named.dig("v6.example.test", "AAAA"), ["2001:db8:1::10"]);

    let outcome = switch_dns(&DnsSwitch {
        name: "www.example.test".to_owned(),
        record_type: RecordType::Cname,
        ..a_switch(
            named.addr,
            Some(key_sha256()),
            &["App-Blue.example.net"],
            &["app-green.example.net"],
        )
    })
    .expect("CNAME switch");
    assert_eq!(outcome.current().values, ["app-green.example.net."]);
    assert_eq!(
        named.dig("www.example.test", "CNAME"),
        ["app-green.example.net."]
    );
}

#[test]
fn a_record_set_that_must_not_exist_yet_is_created() {
    let named = Named::start();
    let create = DnsSwitch {
        name: "new.example.test".to_owned(),
        ..a_switch(named.addr, Some(key_sha256()), &[], &["198.51.100.40"])
    };
    switch_dns(&create).expect("created");
    assert_eq!(
        query_records(named.addr, "new.example.test", RecordType::A, TIMEOUT).unwrap(),
        ["198.51.100.40"]
    );
    // Creating it over an existing record set fails the prerequisite.
    let error = switch_dns(&DnsSwitch {
        new: strings(&["198.51.100.41"]),
        ..create
    })
    .expect_err("the record set exists");
    assert!(
        error
            .to_string()
            .contains("the server holds [198.51.100.40], expected no record"),
        "{error}"
    );
}

#[test]
fn the_ttl_seen_is_exposed_and_checked_against_the_rto_budget() {
    let named = Named::start();
    let answer = query_record_set(named.addr, "app.example.test", RecordType::A, TIMEOUT).unwrap();
    assert_eq!(answer.ttl, Some(60));
    assert_eq!(ttl_warning(answer.ttl.unwrap(), 300), None);
    assert!(ttl_warning(answer.ttl.unwrap(), 30).is_some());

    let missing =
        query_record_set(named.addr, "absent.example.test", RecordType::A, TIMEOUT).unwrap();
    assert_eq!(
        missing,
        RecordSetAnswer {
            values: vec![],
            ttl: None
        }
    );
}

#[test]
fn confirm_fails_at_the_deadline_with_the_last_answer() {
    let named = Named::start();
    let started = Instant::now();
    let error = confirm(
        named.addr,
        "app.example.test",
        RecordType::A,
        &strings(&["198.51.100.10"]),
        TIMEOUT,
        Duration::from_millis(1200),
    )
    .expect_err("the server never answers that");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1200) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    let text = error.to_string();
    assert!(text.contains("did not answer [198.51.100.10]"), "{text}");
    assert!(text.contains("its last answer: [192.0.2.10]"), "{text}");
}

#[test]
fn a_name_outside_the_servers_zones_is_not_authoritative() {
    let named = Named::start();
    let error = query_records(named.addr, "app.example.org", RecordType::A, TIMEOUT)
        .expect_err("not this server's zone");
    assert!(
        matches!(error, DnsError::NotAuthoritative { .. }),
        "{error:?}"
    );
}

#[test]
fn an_unreachable_server_fails_quickly_naming_it() {
    let server: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let started = Instant::now();
    let error = switch_dns(&a_switch(
        server,
        Some(key_sha256()),
        &["192.0.2.10"],
        &["198.51.100.10"],
    ))
    .expect_err("nothing listens there");
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    let text = error.to_string();
    assert!(matches!(error, DnsError::Unreachable { .. }), "{error:?}");
    assert!(
        text.contains(&format!("cannot reach the DNS server {server}")),
        "{text}"
    );
}

#[test]
fn a_server_that_never_answers_times_out_within_the_timeout() {
    // Accepts connections (the kernel does, from the backlog) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = silent.local_addr().unwrap();
    let timeout = Duration::from_millis(800);
    let started = Instant::now();
    let error = switch_dns(&DnsSwitch {
        timeout,
        ..a_switch(
            server,
            Some(key_sha256()),
            &["192.0.2.10"],
            &["198.51.100.10"],
        )
    })
    .expect_err("no answer");
    let waited = started.elapsed();
    assert!(waited < timeout + Duration::from_millis(500), "{waited:?}");
    assert!(matches!(error, DnsError::TimedOut { .. }), "{error:?}");
    assert!(error.to_string().contains(&server.to_string()), "{error}");
}
