//! Secrets: never in clear in the plan, resolved only on request, never printed.

use lifeboat_plan::{Severity, check_secrets};

use crate::{MINIMAL, parse_err, parse_ok};

#[test]
fn a_plain_string_where_a_secret_is_expected_explains_how_to_write_it() {
    let source = MINIMAL.replace(
        "password = { env = \"LIFEBOAT_PASSWORD\" }",
        "password = \"hunter2\"",
    );
    let errors = parse_err(&source);
    let [diagnostic] = errors.diagnostics() else {
        panic!("one diagnostic expected: {}", errors.render_plain());
    };
    assert_eq!(diagnostic.path, "repository.password");
    assert_eq!(errors.line_column(diagnostic.span.start), (4, 12));
    assert!(
        diagnostic.message.contains("must be a secret reference"),
        "{}",
        diagnostic.message
    );
    let help = diagnostic.help.as_deref().unwrap_or_default();
    assert!(
        help.contains("password = { env = \"PASSWORD\" }") && help.contains("{ file = \"PATH\" }"),
        "{help}"
    );
    assert!(!errors.render_plain().contains("help: hunter2"));
}

#[test]
fn a_secret_needs_exactly_env_or_file() {
    let source = MINIMAL.replace(
        "password = { env = \"LIFEBOAT_PASSWORD\" }",
        "password = { env = \"A\", file = \"b\" }",
    );
    let errors = parse_err(&source);
    assert!(
        errors
            .errors()
            .any(|d| d.message.contains("either `env` or `file`, not both"))
    );
}

#[test]
fn credential_headers_must_be_secrets_but_others_may_be_plain() {
    let source = format!(
        "{MINIMAL}\n[resources.api]\nkind = \"http\"\nat.primary = {{ url = \"https://a/config\", headers = {{ Authorization = \"Bearer abc\", Content-Type = \"application/json\" }} }}\nat.dr = {{ url = \"https://b/config\" }}\n"
    );
    let errors = parse_err(&source);
    let paths: Vec<String> = errors.errors().map(|d| d.path.clone()).collect();
    assert_eq!(paths, ["resources.api.at.primary.headers.Authorization"]);
}

#[test]
fn passwords_in_urls_are_rejected_without_echoing_them() {
    let source = format!(
        "{MINIMAL}\n[resources.db]\nkind = \"postgres\"\nat.primary = {{ url = \"postgres://u:s3cr3t@h/db\" }}\nat.dr = {{ url = \"postgres://u@h2/db\" }}\n"
    );
    let errors = parse_err(&source);
    let all: Vec<String> = errors
        .errors()
        .map(|d| format!("{} {:?}", d.message, d.help))
        .collect();
    assert!(
        all.iter().any(|m| m.contains("password in clear")),
        "{all:?}"
    );
    assert!(all.iter().all(|m| !m.contains("s3cr3t")));
}

#[test]
fn check_secrets_reports_missing_variables_and_files_by_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let present = dir.path().join("present.secret");
    std::fs::write(&present, "value-that-must-not-leak\n").expect("write");
    // SAFETY: the variables are unique to this test; no other thread reads them.
    unsafe {
        std::env::set_var("LIFEBOAT_PLAN_TEST_SET", "another-value-that-must-not-leak");
        std::env::remove_var("LIFEBOAT_PLAN_TEST_UNSET");
    }
    let source = r#"
[repository]
url = "./repo"
password = { env = "LIFEBOAT_PLAN_TEST_SET" }

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

[resources.db]
kind = "postgres"
at.primary = { url = "postgres://u@h/db", password = { env = "LIFEBOAT_PLAN_TEST_UNSET" } }
at.dr = { url = "postgres://u@h2/db", password = { file = "missing.secret" } }

[traffic]
kind = "dns"
server = "ns"
zone = "example.net."
name = "app.example.net."
tsig = { name = "k", secret = { file = "present.secret" } }
at.primary = { address = "192.0.2.1" }
at.dr = { address = "192.0.2.2" }
"#;
    let plan = lifeboat_plan::parse(source, &dir.path().join("lifeboat.toml")).expect("parses");
    let diagnostics = check_secrets(&plan);
    let found: Vec<(&str, Severity)> = diagnostics
        .iter()
        .map(|d| (d.path.as_str(), d.severity))
        .collect();
    assert_eq!(
        found,
        [
            ("resources.db.at.primary.password", Severity::Error),
            ("resources.db.at.dr.password", Severity::Error)
        ]
    );
    assert!(diagnostics[0].message.contains("LIFEBOAT_PLAN_TEST_UNSET"));
    assert!(diagnostics[1].message.contains("missing.secret"));
    let report = plan.report(diagnostics);
    let (line, _) = report.line_column(report.diagnostics()[0].span.start);
    assert_eq!(line, 14);
    let rendered = format!("{}{:?}", report.render_plain(), report);
    assert!(!rendered.contains("must-not-leak"), "{rendered}");
}

#[test]
fn passwords_in_url_queries_are_rejected_like_those_in_userinfo() {
    let refused = [
        ("postgres", "postgres://u@h/db?password=s3cr3t", "password"),
        (
            "postgres",
            "postgres://u@h/db?sslmode=verify-full&sslpassword=s3cr3t",
            "sslpassword",
        ),
        ("mysql", "mysql://u@h/db?pass%77ord=s3cr3t", "pass%77ord"),
        (
            "http",
            "https://api.example.net/cfg?access_token=s3cr3t",
            "access_token",
        ),
        (
            "http",
            "https://api.example.net/cfg?x=1&API-Key=s3cr3t#top",
            "API-Key",
        ),
    ];
    for (kind, url, key) in refused {
        let elsewhere = match kind {
            "http" => "https://h2/cfg",
            "mysql" => "mysql://u@h2/db",
            _ => "postgres://u@h2/db",
        };
        let source = format!(
            "{MINIMAL}\n[resources.r]\nkind = \"{kind}\"\nat.primary = {{ url = \"{url}\" }}\nat.dr = {{ url = \"{elsewhere}\" }}\n"
        );
        let errors = parse_err(&source);
        let found: Vec<(String, String, String)> = errors
            .errors()
            .map(|d| {
                (
                    d.path.clone(),
                    d.message.clone(),
                    d.help.clone().unwrap_or_default(),
                )
            })
            .collect();
        let [(path, message, help)] = found.as_slice() else {
            panic!("one error expected for {url}: {found:?}");
        };
        assert_eq!(path, "resources.r.at.primary.url", "{url}");
        assert_eq!(message, "the URL contains a password in clear", "{url}");
        assert!(
            help.contains(&format!("remove `{key}=...` from the URL")),
            "{url}: {help}"
        );
        assert!(
            !message.contains("s3cr3t") && !help.contains("s3cr3t"),
            "{url} echoed"
        );
    }

    // Query parameters that are not credentials, and an empty one, pass.
    parse_ok(&format!(
        "{MINIMAL}\n[resources.r]\nkind = \"postgres\"\nat.primary = {{ url = \"postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem&password=\" }}\nat.dr = {{ url = \"postgres://u@h2/db?sslkey=/k.pem\" }}\n"
    ));
}
