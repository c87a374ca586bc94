//! Valid plans decode into the expected values.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_plan::*;

use crate::{MINIMAL, fixture, parse_ok};

#[test]
fn the_full_example_of_the_format_parses() {
    let plan =
        load(&fixture("plan-format-full.toml")).unwrap_or_else(|e| panic!("{}", e.render_plain()));
    assert!(plan.warnings().is_empty(), "{:?}", plan.warnings());

    assert_eq!(plan.primary_site().0, "primary");
    assert_eq!(
        plan.standby_sites()
            .map(|(name, _)| name)
            .collect::<Vec<_>>(),
        ["dr"]
    );
    assert_eq!(
        plan.resource_names().collect::<Vec<_>>(),
        [
            "orders-db",
            "billing-db",
            "sessions",
            "csv",
            "exports",
            "broker",
            "workflows"
        ],
        "file order is kept"
    );
    assert_eq!(plan.rpo_of("orders-db"), Some(Duration::from_secs(300)));
    assert_eq!(
        plan.rpo_of("csv"),
        Some(Duration::from_secs(900)),
        "objectives default"
    );
    assert_eq!(plan.objectives.rto, Duration::from_secs(1800));

    let dr = plan.site("dr").expect("dr site");
    assert!(dr.on_demand);
    assert_eq!(dr.provision[0].program(), "ansible-playbook");
    assert_eq!(dr.env["DR_REGION"], "eu-west");
    assert_eq!(dr.checks.len(), 2);
    assert_eq!(
        dr.checks[0].probe,
        CheckProbe::Http("http://10.1.0.8:8080/health".into())
    );
    assert_eq!(dr.checks[0].retries, 30);
    assert_eq!(dr.checks[1].timeout, Check::DEFAULT_TIMEOUT);
    assert_eq!(
        dr.quiesce[0].argv(),
        ["systemctl", "stop", "ioportal.target"]
    );
    assert_eq!(dr.quiesce_checks[0].name, "app-stopped");
    assert!(matches!(dr.quiesce_checks[0].probe, CheckProbe::Command(_)));
    let primary = plan.site("primary").expect("primary site");
    assert!(primary.quiesce.is_empty() && primary.quiesce_checks.is_empty());

    let orders = plan.resource("orders-db").expect("orders-db");
    let Some(Binding::Database(binding)) = orders.binding("dr") else {
        panic!("postgres binding expected");
    };
    assert_eq!(binding.password, Some(Secret::Env("PG_DR_PASSWORD".into())));
    let ResourceKind::Postgres(server) = &orders.kind else {
        panic!("postgres expected")
    };
    assert!(server.protects("orders") && !server.protects("scratch"));
    assert_eq!(orders.verify.len(), 1);

    let ResourceKind::Files(exports) = &plan.resource("exports").expect("exports").kind else {
        panic!("files expected")
    };
    assert_eq!(exports.sync, SyncMode::Both);
    assert_eq!(exports.include, ["**"]);

    let Some(Binding::Http(broker)) = plan.resource("broker").expect("broker").binding("dr") else {
        panic!("http binding expected")
    };
    assert_eq!(broker.apply_method(), HttpMethod::Post);
    // The apply's POST is never how the document is captured there (a failback).
    assert_eq!(broker.capture_method(), HttpMethod::Get);
    assert_eq!(
        broker.headers["Authorization"],
        StringOrSecret::Secret(Secret::Env("BROKER_AUTH".into()))
    );

    let order = plan.restore_order();
    let position = |name: &str| order.iter().position(|r| *r == name);
    assert!(position("broker") < position("workflows"), "{order:?}");

    let Some(Traffic::Dns(dns)) = &plan.traffic else {
        panic!("dns traffic expected")
    };
    assert_eq!(dns.record_type, RecordType::A);
    assert_eq!(dns.at["dr"].addresses, ["198.51.100.10"]);
    assert_eq!(
        dns.tsig.as_ref().map(|tsig| tsig.algorithm),
        Some(TsigAlgorithm::HmacSha256)
    );

    let watch = plan.watch.as_ref().expect("watch");
    assert_eq!(watch.decision, Decision::Manual);
    assert_eq!(watch.probes.len(), 2);
    assert_eq!(watch.max_restore_point_age, Some(Duration::from_secs(1800)));

    assert_eq!(plan.inventory.len(), 2);
    assert_eq!(plan.notify.len(), 3);
    assert_eq!(plan.schedule.backup, Timing::EveryRpo);
    assert_eq!(
        plan.schedule.drill,
        Some(Timing::Cron("0 3 * * SUN".into()))
    );
    assert_eq!(plan.schedule.retention.and_then(|r| r.keep_daily), Some(14));

    // Every secret reference is indexed with its path, for `check --resolve`.
    let paths: Vec<&str> = plan.secrets().iter().map(|s| s.path.as_str()).collect();
    assert!(paths.contains(&"repository.password"));
    assert!(paths.contains(&"resources.orders-db.at.dr.password"));
    assert!(paths.contains(&"traffic.tsig.secret"));
    assert!(paths.contains(&"notify[2].smtp.password"));
    let source = std::fs::read_to_string(fixture("plan-format-full.toml")).expect("fixture");
    let written: usize = source
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(|line| line.matches("{ env =").count() + line.matches("{ file =").count())
        .sum();
    assert_eq!(plan.secrets().len(), written);
}

#[test]
fn the_minimal_plan_parses_and_resolves_relative_paths() {
    let plan = load(&fixture("plan-format-minimal.toml"))
        .unwrap_or_else(|e| panic!("{}", e.render_plain()));
    let fixtures = std::path::absolute(fixture("")).expect("absolute");
    assert_eq!(
        plan.repository.location,
        RepositoryLocation::Local(fixtures.join("./repo"))
    );
    assert_eq!(plan.objectives, Objectives::default());
    assert_eq!(plan.schedule, Schedule::default());
    assert!(plan.traffic.is_none() && plan.watch.is_none());
}

#[test]
fn the_commented_example_parses_without_warnings() {
    let plan = parse(example(), Path::new("/etc/lifeboat/lifeboat.toml"))
        .unwrap_or_else(|e| panic!("{}", e.render_plain()));
    assert!(plan.warnings().is_empty(), "{:?}", plan.warnings());
    assert_eq!(plan.name(), "lifeboat");
    assert_eq!(plan.resources.len(), 7);
    let dr = plan.site("dr").expect("dr");
    assert!(
        matches!(&dr.checks[2].probe, CheckProbe::Sql { resource, .. } if resource == "orders-db")
    );
}

#[test]
fn relative_paths_hang_off_the_plan_folder() {
    let source = format!(
        "{MINIMAL}\n[state]\ndir = \"state\"\n[resources.sessions]\nkind = \"sqlite\"\nat.primary = {{ path = \"data/sessions.db\" }}\nat.dr = {{ path = \"/abs/sessions.db\" }}\n[traffic]\nkind = \"dns\"\nserver = \"10.0.0.53\"\nzone = \"example.net\"\nname = \"app.example.net\"\ntsig = {{ name = \"k\", secret = {{ file = \"tsig.key\" }} }}\nat.primary = {{ address = \"192.0.2.1\" }}\nat.dr = {{ address = \"192.0.2.2\" }}\n"
    );
    let plan = parse_ok(&source);
    assert_eq!(plan.state.dir, Some(PathBuf::from("/plans/state")));
    assert_eq!(plan.state_dir(), PathBuf::from("/plans/state"));
    let Some(Binding::Path(primary)) = plan.resource("sessions").and_then(|r| r.binding("primary"))
    else {
        panic!("path binding expected")
    };
    assert_eq!(primary.path, PathBuf::from("/plans/data/sessions.db"));
    let Some(Traffic::Dns(dns)) = &plan.traffic else {
        panic!("dns expected")
    };
    assert_eq!(
        dns.tsig.as_ref().map(|t| t.secret.clone()),
        Some(Secret::File("/plans/tsig.key".into()))
    );
    assert_eq!(dns.server, "10.0.0.53:53");
    assert_eq!(
        (dns.zone.as_str(), dns.name.as_str()),
        ("example.net.", "app.example.net.")
    );
    assert_eq!(plan.resolve_path("x"), PathBuf::from("/plans/x"));
    assert_eq!(plan.name(), "plans");
}

#[test]
fn object_store_urls_and_options() {
    let source = MINIMAL.replace(
        "url = \"./repo\"",
        "url = \"s3://backups/lifeboat/prod/\"\nendpoint = \"http://127.0.0.1:9000\"\nregion = \"us-east-1\"\naccess_key = { env = \"AK\" }\nsecret_key = { env = \"SK\" }",
    );
    let plan = parse_ok(&source);
    assert_eq!(
        plan.repository.location,
        RepositoryLocation::S3 {
            bucket: "backups".into(),
            prefix: "lifeboat/prod".into()
        }
    );
    assert!(plan.repository.store.allows_http());
    assert_eq!(
        plan.repository.store.secret_key,
        Some(Secret::Env("SK".into()))
    );
}

#[test]
fn alternative_spellings_are_accepted() {
    let source = format!(
        "{MINIMAL}\n[fence]\nrun = [\"ssh\", \"bastion\", \"poweroff\"]\n[schedule]\nbackup = \"every 30m\"\n[[notify]]\nwebhook = {{ env = \"SLACK_URL\" }}\nformat = \"slack\"\n[[notify]]\nsmtp = {{ server = \"smtp.example.net\", from = \"a@x\", to = \"b@x\" }}\n"
    );
    let plan = parse_ok(&source);
    assert_eq!(
        plan.fence.as_ref().map(|f| f.run.len()),
        Some(1),
        "a single argv is one command"
    );
    assert_eq!(
        plan.schedule.backup,
        Timing::Every(Duration::from_secs(1800))
    );
    let Notifier::Smtp(smtp) = &plan.notify[1] else {
        panic!("smtp expected")
    };
    assert_eq!(
        (smtp.server.as_str(), smtp.starttls, smtp.to.len()),
        ("smtp.example.net:587", true, 1)
    );
}

#[test]
fn a_missing_standby_is_only_a_warning() {
    let source = MINIMAL.replace("role = \"standby\"", "role = \"drill\"");
    let plan = parse_ok(&source);
    let messages: Vec<&str> = plan.warnings().iter().map(|w| w.message.as_str()).collect();
    assert!(
        messages.iter().any(|m| m.starts_with("no standby site")),
        "{messages:?}"
    );
}

#[test]
fn timings_that_cannot_work_together_are_warned_about() {
    let source = format!(
        "{MINIMAL}\n[objectives]\nrpo = \"1h\"\nrto = \"1m\"\n\
         [[sites.dr.checks]]\nname = \"slow\"\ntcp = \"x:1\"\ntimeout = \"10s\"\nretries = 5\n\
         [watch]\nprobes = [{{ tcp = \"x:1\" }}]\ninterval = \"10s\"\nfailure_threshold = \"15s\"\n\
         max_restore_point_age = \"30m\"\n"
    );
    let plan = parse_ok(&source);
    let warnings: Vec<String> = plan
        .warnings()
        .iter()
        .map(|w| format!("{}: {}", w.path, w.message))
        .collect();
    let has = |needle: &str| warnings.iter().any(|w| w.contains(needle));
    assert!(
        has("watch.failure_threshold: `failure_threshold` spans fewer than three"),
        "{warnings:?}"
    );
    assert!(has("watch.max_restore_point_age:"), "{warnings:?}");
    assert!(
        has("sites.dr.checks[0]: check `slow` may take 65s"),
        "{warnings:?}"
    );
}

#[test]
fn a_huge_retry_count_is_a_warning_not_an_overflow() {
    let source = format!(
        "{MINIMAL}\n[[sites.dr.checks]]\nname = \"forever\"\ntcp = \"x:1\"\n\
         timeout = \"9999999999s\"\nretries = 4294967295\nretry_interval = \"9999999999s\"\n"
    );
    let plan = parse_ok(&source);
    assert!(
        plan.warnings()
            .iter()
            .any(|w| w.message.starts_with("check `forever` may take")),
        "{:?}",
        plan.warnings()
    );
}
