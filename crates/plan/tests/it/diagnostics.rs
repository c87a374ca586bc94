//! Broken plans: every problem reported at once, with file, line, field and help.

use expect_test::expect;

use crate::{MINIMAL, errors_of, fixture, parse_err};

#[test]
fn independent_errors_are_all_reported_with_line_and_field() {
    let errors = lifeboat_plan::load(&fixture("multi-error.toml")).expect_err("broken plan");
    let found = errors_of(&errors);
    let expected: Vec<(usize, &str, &str)> = vec![
        (
            6,
            "objectives.rpo",
            "invalid duration `15 minutes` for `rpo`: durations are written without spaces, e.g. `15m` or `1h30m`",
        ),
        (8, "sites", "no primary site"),
        (16, "resources.docs.colour", "unknown field `colour`"),
        (
            22,
            "resources.db.exclude",
            "`exclude` must be an array, found a string",
        ),
        (24, "resources.db.at.drr", "unknown site `drr`"),
    ];
    let found: Vec<(usize, &str, &str)> = found
        .iter()
        .map(|(l, p, m)| (*l, p.as_str(), m.as_str()))
        .collect();
    assert_eq!(found, expected);

    let unknown_site = errors
        .errors()
        .find(|d| d.path == "resources.db.at.drr")
        .expect("unknown site");
    assert_eq!(unknown_site.help.as_deref(), Some("did you mean `dr`?"));

    let json = serde_json::to_value(errors.to_json()).expect("json");
    assert_eq!(
        json[0]["file"]
            .as_str()
            .map(|f| f.ends_with("multi-error.toml")),
        Some(true)
    );
    assert_eq!(json[0]["line"], 6);
    assert_eq!(json[0]["column"], 7);
    assert_eq!(json[0]["severity"], "error");
    assert_eq!(json[0]["path"], "objectives.rpo");
}

#[test]
fn plain_rendering_shows_every_error_with_a_pointer() {
    let source = std::fs::read_to_string(fixture("multi-error.toml")).expect("fixture");
    let errors = lifeboat_plan::parse(&source, std::path::Path::new("multi-error.toml"))
        .expect_err("broken");
    expect![[r#"
        error: invalid duration `15 minutes` for `rpo`: durations are written without spaces, e.g. `15m` or `1h30m`
         --> multi-error.toml:6:7 (objectives.rpo)
          |
        6 | rpo = "15 minutes"
          |       ^^^^^^^^^^^^
          = help: write durations as strings such as "500ms", "30s", "15m", "1h30m" or "7d"

        error: no primary site
         --> multi-error.toml:8:2 (sites)
          |
        8 | [sites.main]
          |  ^^^^^
          = help: exactly one site has `role = "primary"`, e.g. `[sites.primary]` with `role = "primary"`

        error: unknown field `colour`
          --> multi-error.toml:16:1 (resources.docs.colour)
           |
        16 | colour = "blue"
           | ^^^^^^
           = help: expected one of `kind`, `rpo`, `depends_on`, `verify`, `include`, `exclude`, `sync`, `at`

        error: `exclude` must be an array, found a string
          --> multi-error.toml:22:11 (resources.db.exclude)
           |
        22 | exclude = "scratch"
           |           ^^^^^^^^^

        error: unknown site `drr`
          --> multi-error.toml:24:4 (resources.db.at.drr)
           |
        24 | at.drr = { url = "postgres://lifeboat@10.1.0.5/postgres", password = { env = "PG_PASSWORD" } }
           |    ^^^
           = help: did you mean `dr`?

        multi-error.toml: 5 errors, 0 warnings
    "#]]
    .assert_eq(&errors.render_plain());
}

#[test]
fn the_miette_report_lists_every_error_with_its_location() {
    let source = std::fs::read_to_string(fixture("multi-error.toml")).expect("fixture");
    let errors = lifeboat_plan::parse(&source, std::path::Path::new("multi-error.toml"))
        .expect_err("broken");
    let mut rendered = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(200)
        .render_report(&mut rendered, &errors)
        .expect("renders");
    for location in [
        "multi-error.toml:6:7",
        "multi-error.toml:16:1",
        "multi-error.toml:22:11",
        "multi-error.toml:24:4",
    ] {
        assert!(
            rendered.contains(location),
            "{location} missing from:\n{rendered}"
        );
    }
    assert!(
        rendered.contains("resources.db.at.drr"),
        "labels carry the field path:\n{rendered}"
    );
    assert!(rendered.contains("did you mean `dr`?"));
}

#[test]
fn a_syntax_error_is_one_diagnostic_with_line_and_column() {
    let source = MINIMAL.replace("role = \"standby\"", "role = standby\"");
    let errors = parse_err(&source);
    let [diagnostic] = errors.diagnostics() else {
        panic!("one diagnostic expected: {}", errors.render_plain());
    };
    assert!(
        diagnostic.message.starts_with("TOML syntax error"),
        "{}",
        diagnostic.message
    );
    assert_eq!(errors.line_column(diagnostic.span.start), (10, 8));
}

#[test]
fn two_primaries_and_bad_references() {
    let source = format!(
        "{}\n[resources.a]\nkind = \"files\"\ndepends_on = [\"b\", \"nope\"]\nat.primary = {{ path = \"/a\" }}\n[resources.b]\nkind = \"files\"\ndepends_on = [\"a\"]\nat.primary = {{ path = \"/b\" }}\n",
        MINIMAL.replace("role = \"standby\"", "role = \"primary\"")
    );
    let errors = parse_err(&source);
    let messages: Vec<String> = errors
        .errors()
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect();
    assert_eq!(
        messages,
        [
            "sites.dr.role: two primary sites: `primary` and `dr`",
            "resources.a.depends_on: dependency cycle: a → b → a",
            "resources.a.depends_on[1]: unknown resource `nope`",
        ]
    );
}

#[test]
fn fields_of_another_kind_are_explained() {
    let source = format!(
        "{MINIMAL}\n[resources.db]\nkind = \"postgres\"\ninclude = [\"x\"]\nat.primary = {{ path = \"/var/lib/pg\" }}\nat.dr = {{ url = \"postgres://u@h/db\" }}\n"
    );
    let errors = parse_err(&source);
    let found: Vec<(String, Option<String>)> = errors
        .errors()
        .map(|d| (d.path.clone(), d.help.clone()))
        .collect();
    assert!(
        found.contains(&(
            "resources.db.include".into(),
            Some("`include` is a field of files resources, not of postgres resources".into())
        )),
        "{found:?}"
    );
    assert!(found.contains(&(
        "resources.db.at.primary.path".into(),
        Some("`path` is a field of files and sqlite bindings, not of postgres bindings; a postgres binding takes `url`, `password`".into())
    )), "{found:?}");
    assert!(
        found
            .iter()
            .any(|(path, _)| path == "resources.db.at.primary"),
        "missing url: {found:?}"
    );
}

#[test]
fn checks_probes_and_commands_are_validated() {
    let source = format!(
        "{MINIMAL}\n[[sites.dr.checks]]\nname = \"a\"\nhttp = \"http://x\"\ntcp = \"x:1\"\n[[sites.dr.checks]]\nname = \"a\"\ncommand = []\ntimout = \"1s\"\n[[sites.dr.checks]]\nname = \"b\"\ntcp = \"x:1\"\nexpect_status = 200\n[watch]\nprobes = []\ninterval = \"10s\"\nfailure_threshold = \"5s\"\n[schedule]\ndrill = \"0 25 * * *\"\nretention = {{ keep_last = 0 }}\n"
    );
    let errors = parse_err(&source);
    let found: Vec<String> = errors
        .errors()
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect();
    expect![[r#"
        [
            "sites.dr.checks[0].tcp: a check has both `http` and `tcp`",
            "sites.dr.checks[1].name: duplicate check name \"a\"",
            "sites.dr.checks[1].command: a command cannot be empty",
            "sites.dr.checks[1].timout: unknown field `timout`",
            "sites.dr.checks[2].expect_status: unknown field `expect_status`",
            "watch.probes: `probes` cannot be empty: the witness needs something to watch",
            "watch.failure_threshold: `failure_threshold` is shorter than `interval`: a single failed probe would count as an outage",
            "schedule.drill: invalid schedule for `drill`: hour field `25`: `25` is outside 0-23",
            "schedule.retention: this retention keeps no restore point at all",
        ]
    "#]]
    .assert_debug_eq(&found);
    let timeout_typo = errors
        .errors()
        .find(|d| d.path.ends_with("timout"))
        .expect("typo");
    assert_eq!(
        timeout_typo.help.as_deref(),
        Some("did you mean `timeout`?")
    );
}

#[test]
fn a_missing_file_is_a_diagnostic_too() {
    let errors = lifeboat_plan::load(std::path::Path::new("/nonexistent/lifeboat.toml"))
        .expect_err("missing");
    assert_eq!(errors.diagnostics().len(), 1);
    assert!(errors.render_plain().contains("cannot read the plan"));
}

#[test]
fn a_drill_site_folder_inside_a_live_one_is_an_error() {
    let clash = format!(
        "{MINIMAL}\n[sites.rehearsal]\nrole = \"drill\"\n\n[resources.logs]\nkind = \"files\"\n\
         at.primary = {{ path = \"/srv/logs\" }}\nat.rehearsal = {{ path = \"/srv/docs/../docs/drill\" }}\n"
    );
    let errors = errors_of(&parse_err(&clash));
    assert_eq!(errors.len(), 1, "{errors:?}");
    let (_, path, message) = &errors[0];
    assert_eq!(path, "resources.logs.at.rehearsal");
    assert!(
        message.contains("overlaps `docs` at site `primary` (/srv/docs)")
            && message.contains("a drill would write into live data"),
        "{message}"
    );
    let apart = clash.replace("/srv/docs/../docs/drill", "/srv/rehearsal/logs");
    crate::parse_ok(&apart);

    let server = format!(
        "{MINIMAL}\n[sites.rehearsal]\nrole = \"drill\"\n\n[resources.db]\nkind = \"postgres\"\n\
         at.primary = {{ url = \"postgres://app@127.0.0.1/postgres\" }}\n\
         at.rehearsal = {{ url = \"postgres://admin@LOCALHOST:5432/postgres\" }}\n"
    );
    let errors = errors_of(&parse_err(&server));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .2
            .contains("(127.0.0.1:5432) overlaps `db` at site `primary` (127.0.0.1:5432)"),
        "{errors:?}"
    );
    crate::parse_ok(&server.replace("LOCALHOST:5432", "127.0.0.1:5433"));
}

#[test]
fn an_unknown_key_is_reported_next_to_a_missing_kind() {
    let source = format!(
        "{MINIMAL}\n[resources.logs]\nkinds = \"files\"\ndepends_on = [\"nope\"]\nat.primary = {{ path = \"/srv/logs\", paht = \"x\" }}\nat.mars = {{ path = \"/srv/logs\" }}\n"
    );
    let errors = parse_err(&source);
    let found: Vec<String> = errors
        .errors()
        .map(|d| {
            format!(
                "{}: {} ({})",
                d.path,
                d.message,
                d.help.as_deref().unwrap_or("")
            )
        })
        .collect();
    expect![[r#"
        [
            "resources.logs: missing field `kind` in `resources.logs` (every resource has a `kind`: \"files\", \"postgres\", \"mysql\", \"sqlite\", \"command\" or \"http\")",
            "resources.logs.kinds: unknown field `kinds` (did you mean `kind`?)",
            "resources.logs.depends_on[0]: unknown resource `nope` (name a resource declared under `[resources]`)",
            "resources.logs.at.primary.paht: unknown field `paht` (did you mean `path`?)",
            "resources.logs.at.mars: unknown site `mars` (declared sites: `primary`, `dr`)",
        ]
    "#]]
    .assert_debug_eq(&found);
}

#[test]
fn traffic_without_a_kind_still_reports_its_keys_and_sites() {
    let source = format!(
        "{MINIMAL}\n[traffic]\nknd = \"dns\"\nzone = \"example.net.\"\nat.primary = {{ address = \"192.0.2.1\" }}\nat.drr = {{ address = \"192.0.2.2\" }}\n"
    );
    let errors = parse_err(&source);
    let found: Vec<String> = errors
        .errors()
        .map(|d| {
            format!(
                "{}: {} ({})",
                d.path,
                d.message,
                d.help.as_deref().unwrap_or("")
            )
        })
        .collect();
    expect![[r#"
        [
            "traffic: missing field `kind` in `traffic` ()",
            "traffic.knd: unknown field `knd` (did you mean `kind`?)",
            "traffic.at.drr: unknown site `drr` (did you mean `dr`?)",
        ]
    "#]]
    .assert_debug_eq(&found);
}

#[test]
fn cross_section_rules_run_over_sections_that_failed_to_decode() {
    // `dr` has a bad role and `b` no kind, so neither decodes; the rules across sections
    // (what a check points at, how long it may take, dependency cycles) still run on
    // what could be read of them.
    let source = format!(
        "{}\n[[sites.dr.checks]]\nname = \"orders\"\nsql = \"select 1\"\nresource = \"docs\"\ntimeout = \"1d\"\n\
         [resources.a]\nkind = \"files\"\ndepends_on = [\"b\"]\nat.primary = {{ path = \"/a\" }}\nat.dr = {{ path = \"/dr/a\" }}\n\
         [resources.b]\nkinds = \"files\"\ndepends_on = [\"a\"]\nat.primary = {{ path = \"/b\" }}\n",
        MINIMAL.replace("role = \"standby\"", "role = \"standbye\"")
    );
    let errors = parse_err(&source);
    let found: Vec<String> = errors
        .diagnostics()
        .iter()
        .map(|d| format!("{} {}: {}", d.severity, d.path, d.message))
        .collect();
    expect![[r#"
        [
            "error sites.dr.role: `role` cannot be \"standbye\": expected \"primary\", \"standby\" or \"drill\"",
            "warning sites.dr.checks[0]: check `orders` may take 86400s to give up (timeout × attempts + retry intervals), longer than the rto",
            "error sites.dr.checks[0].resource: an sql check needs a postgres, mysql or sqlite resource; `docs` is a files resource",
            "error resources.a.depends_on: dependency cycle: a → b → a",
            "error resources.b: missing field `kind` in `resources.b`",
            "error resources.b.kinds: unknown field `kinds`",
        ]
    "#]]
    .assert_debug_eq(&found);
}

#[test]
fn quiesce_commands_and_checks_are_validated_like_the_others() {
    let source = MINIMAL.replace(
        "role = \"primary\"\n",
        "role = \"primary\"\nquiesce = [[]]\n[[sites.primary.quiesce_checks]]\nname = \"ro\"\nsql = \"show transaction_read_only\"\nresource = \"docs\"\n[[sites.primary.quiesce_checks]]\nname = \"ro\"\nsql = \"select 1\"\nresource = \"nowhere\"\n",
    );
    let errors = parse_err(&source);
    let found: Vec<String> = errors
        .diagnostics()
        .iter()
        .map(|d| format!("{} {}: {}", d.severity, d.path, d.message))
        .collect();
    expect![[r#"
        [
            "error sites.primary.quiesce[0]: a command cannot be empty",
            "error sites.primary.quiesce_checks[0].resource: an sql check needs a postgres, mysql or sqlite resource; `docs` is a files resource",
            "error sites.primary.quiesce_checks[1].name: duplicate check name \"ro\"",
            "error sites.primary.quiesce_checks[1].resource: unknown resource `nowhere`",
        ]
    "#]]
    .assert_debug_eq(&found);
}

#[test]
fn an_http_capture_method_reads_and_is_apart_from_the_apply_method() {
    let resource = |binding: &str| {
        format!(
            "{MINIMAL}\n[resources.broker]\nkind = \"http\"\nat.primary = {{ url = \"http://h/export\", {binding} }}\n"
        )
    };
    let errors = parse_err(&resource(r#"capture_method = "PUT""#));
    let found = errors_of(&errors);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "resources.broker.at.primary.capture_method");
    assert!(found[0].2.contains("GET or POST, not PUT"), "{found:?}");

    let plan = crate::parse_ok(&resource(r#"method = "PATCH", capture_method = "POST""#));
    let Some(lifeboat_plan::Binding::Http(b)) = plan.resource("broker").unwrap().binding("primary")
    else {
        panic!("http binding expected")
    };
    assert_eq!(b.capture_method(), lifeboat_plan::HttpMethod::Post);
    assert_eq!(b.apply_method(), lifeboat_plan::HttpMethod::Patch);
}

#[test]
fn an_http_method_that_applies_nothing_or_changed_meaning_is_said() {
    let resource = |binding: &str| {
        format!(
            "{MINIMAL}\n[resources.broker]\nkind = \"http\"\nat.primary = {{ url = \"http://h/export\", {binding} }}\n"
        )
    };
    let plan = crate::parse_ok(&resource(r#"method = "GET""#));
    let warnings: Vec<_> = plan.warnings().iter().map(|d| d.message.clone()).collect();
    assert!(
        warnings.iter().any(|m| m.contains("GET applies nothing")),
        "{warnings:?}"
    );
    let plan = crate::parse_ok(&resource(r#"method = "POST""#));
    let notes: Vec<_> = plan.notes().iter().map(|d| d.message.clone()).collect();
    assert!(
        notes
            .iter()
            .any(|m| m.contains("applied with POST and captured with GET")),
        "{notes:?}"
    );
    let plan = crate::parse_ok(&resource(r#"method = "POST", capture_method = "POST""#));
    assert!(
        !plan
            .notes()
            .iter()
            .chain(plan.warnings())
            .any(|d| d.path.ends_with("method")),
        "{:?}",
        plan.warnings()
    );

    let errors = parse_err(&resource(r#"headers = { "Content-Length" = "5" }"#));
    let found = errors_of(&errors);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0].1,
        "resources.broker.at.primary.headers.Content-Length"
    );
}
