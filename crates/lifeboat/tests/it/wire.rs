//! The wire: HTTP redirects that stay on their origin (headers never reach another server,
//! a PUT is never turned into a GET), server text shown escaped, PostgreSQL over TLS with a
//! CA of the test's own.

use crate::peer::{Answer, Peer};
use crate::support::*;

const SECRET: &str = "Bearer wire-s3cret";

fn answer(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    (
        status,
        headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body.to_vec(),
    )
}

fn http_plan(resources: &str) -> String {
    format!(
        r#"[repository]
url = "./repo"
password = {{ env = "LIFEBOAT_PASSWORD" }}

[sites.primary]
role = "primary"

[sites.dr]
role = "standby"

{resources}"#
    )
}

/// Runs lifeboat with the secret header's value in the environment; stdout and stderr
/// together, which must never hold the secret.
fn run(w: &Workplace, args: &[&str], code: i32) -> String {
    let out = w
        .cmd()
        .env("API_AUTH", SECRET)
        .args(args)
        .output()
        .expect("runs");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "{args:?}\n{all}");
    assert!(!all.contains("wire-s3cret"), "a secret leaked: {all}");
    all
}

#[test]
fn redirects_stay_on_their_origin_and_an_apply_is_never_turned_into_a_get() {
    // Another origin: the same host on another port. It must never hear from lifeboat.
    let elsewhere = Peer::start(|_| answer(200, &[], b"{\"stolen\": true}"));
    let away = elsewhere.url("/collect?token=abc");
    let home = Peer::start(move |seen| {
        let authorized = seen.header("authorization") == Some(SECRET);
        match (seen.method.as_str(), seen.target.as_str()) {
            _ if !authorized => answer(401, &[], b"who are you"),
            ("GET", "/moved") => answer(301, &[("Location", "/api/doc?v=2")], b""),
            ("GET", "/api/doc?v=2") => answer(200, &[], b"{\"doc\": 2}"),
            ("GET", "/away") => answer(302, &[("Location", &away)], b""),
            ("PUT", "/dr/put") => answer(302, &[("Location", "/dr/landing")], b""),
            ("PUT", "/dr/temporary") => answer(307, &[("Location", "final")], b""),
            ("PUT", "/dr/final") => answer(204, &[], b""),
            _ => answer(200, &[], b"whatever"),
        }
    });
    let w = Workplace::new();
    let auth = r#"headers = { Authorization = { env = "API_AUTH" } }"#;
    let resources = format!(
        r#"[resources.doc]
kind = "http"
at.primary = {{ url = "{moved}", {auth} }}
at.dr = {{ url = "{put}", {auth} }}

[resources.kept]
kind = "http"
at.primary = {{ url = "{moved}", {auth} }}
at.dr = {{ url = "{temporary}", {auth} }}

[resources.away]
kind = "http"
at.primary = {{ url = "{away}", {auth} }}
at.dr = {{ url = "{put}", {auth} }}
"#,
        moved = home.url("/moved"),
        put = home.url("/dr/put"),
        temporary = home.url("/dr/temporary"),
        away = home.url("/away"),
    );
    write(&w.path("lifeboat.toml"), http_plan(&resources).as_bytes());
    run(&w, &["repo", "init"], 0);

    // A same-origin redirect is followed with the headers; another origin is an error that
    // names it without its query string.
    let out = run(&w, &["backup"], 4);
    let other = format!("http://127.0.0.1:{}/collect", elsewhere.port);
    assert!(
        out.contains("away: FAILED")
            && out.contains("another origin")
            && out.contains(&other)
            && !out.contains("token=abc"),
        "{out}"
    );
    assert!(
        elsewhere.seen().is_empty(),
        "the other origin was asked: {:?}",
        elsewhere.seen()
    );
    let followed: Vec<_> = home
        .seen()
        .into_iter()
        .filter(|s| s.target == "/api/doc?v=2")
        .collect();
    assert_eq!(followed.len(), 2, "doc and kept followed the 301");
    assert!(
        followed
            .iter()
            .all(|s| s.header("authorization") == Some(SECRET))
    );

    // A PUT answered by a 302 is not re-sent as a GET, and not reported as sent.
    let out = run(
        &w,
        &["restore", "latest", "--site", "dr", "--resource", "doc"],
        1,
    );
    assert!(
        out.contains("302") && out.contains("/dr/landing") && !out.contains("sent "),
        "{out}"
    );
    let after_put: Vec<_> = home
        .seen()
        .into_iter()
        .filter(|s| s.target.starts_with("/dr/"))
        .map(|s| (s.method, s.target))
        .collect();
    assert_eq!(after_put, [("PUT".to_string(), "/dr/put".to_string())]);

    // A 307 re-sends the same PUT, body and headers, to the same origin.
    let out = run(
        &w,
        &["restore", "latest", "--site", "dr", "--resource", "kept"],
        0,
    );
    assert!(out.contains("sent"), "{out}");
    let finals: Vec<_> = home
        .seen()
        .into_iter()
        .filter(|s| s.target == "/dr/final")
        .collect();
    assert_eq!(finals.len(), 1, "{:?}", home.seen());
    assert_eq!(finals[0].method, "PUT");
    assert_eq!(finals[0].body, b"{\"doc\": 2}");
    assert_eq!(finals[0].header("authorization"), Some(SECRET));
    assert!(elsewhere.seen().is_empty());
}

#[test]
fn text_from_a_server_is_shown_with_control_characters_escaped() {
    let server = Peer::start(|_| {
        answer(
            500,
            &[],
            b"\x1b[31mboom\x1b[0m\r\n\x1b]0;owned\x07 and \xff bytes",
        )
    });
    let w = Workplace::new();
    let resources = format!(
        "[resources.noisy]\nkind = \"http\"\nat.primary = {{ url = \"{}\" }}\n",
        server.url("/doc")
    );
    write(&w.path("lifeboat.toml"), http_plan(&resources).as_bytes());
    run(&w, &["repo", "init"], 0);
    let out = w.cmd().args(["backup"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let all = [out.stdout, out.stderr].concat();
    assert!(
        !all.iter().any(|&b| b == 0x1b || b == 0x07 || b == b'\r'),
        "control characters reached the terminal: {:?}",
        String::from_utf8_lossy(&all)
    );
    let all = String::from_utf8(all).expect("UTF-8 output");
    assert!(
        all.contains(
            r"HTTP 500 Internal Server Error \x1b[31mboom\x1b[0m\r\n\x1b]0;owned\x07 and \xff bytes"
        ),
        "{all}"
    );
}

/// Runs lifeboat with the PostgreSQL password and client folder; exit code and all output.
fn pg_run(w: &Workplace, args: &[&str]) -> (i32, String) {
    let bin = crate::servers::pg_bin();
    let out = w
        .cmd()
        .env("PG_PASSWORD", crate::servers::PG_PASSWORD)
        .env("LIFEBOAT_PG_BIN", &bin)
        .args(args)
        .output()
        .expect("runs");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), all)
}

fn pg_plan(primary: &str, dr: &str) -> String {
    http_plan(&format!(
        r#"[resources.db]
kind = "postgres"
at.primary = {{ url = "{primary}", password = {{ env = "PG_PASSWORD" }} }}
at.dr = {{ url = "{dr}", password = {{ env = "PG_PASSWORD" }} }}
"#
    ))
}

#[test]
fn postgres_over_tls_verifies_the_servers_certificate() {
    use crate::servers::{PgCluster, TestCa};
    let ca = TestCa::new();
    let stranger = TestCa::new();
    let primary = PgCluster::start_tls(&ca);
    let dr = PgCluster::start_tls(&ca);
    primary.sql(
        "postgres",
        "CREATE DATABASE shop; \\c shop\nCREATE TABLE orders(id int); \
         INSERT INTO orders SELECT generate_series(1, 250)",
    );
    let url = |cluster: &PgCluster, host: &str, query: &str| {
        format!(
            "postgres://postgres@{host}:{}/postgres?{query}",
            cluster.port
        )
    };
    let full =
        |root: &std::path::Path| format!("sslmode=verify-full&sslrootcert={}", root.display());
    let w = Workplace::new();
    write(
        &w.path("lifeboat.toml"),
        pg_plan(
            &url(&primary, "127.0.0.1", &full(&ca.ca)),
            &url(&dr, "127.0.0.1", &full(&ca.ca)),
        )
        .as_bytes(),
    );
    let (code, out) = pg_run(&w, &["repo", "init"]);
    assert_eq!(code, 0, "{out}");

    // lifeboat's own queries and pg_dump/pg_restore/psql all over verified TLS: the
    // servers take nothing else.
    let (code, out) = pg_run(&w, &["backup"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = pg_run(
        &w,
        &["restore", "latest", "--site", "dr", "--resource", "db/shop"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(dr.sql("shop", "SELECT count(*) FROM orders"), "250");
    assert_eq!(
        dr.sql(
            "postgres",
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.pid = pg_backend_pid() AND s.ssl"
        ),
        "1",
        "the test's own session is TLS too"
    );

    // A certificate from a CA the plan does not trust: refused, saying why.
    let plan = |primary_url: String| {
        write(
            &w.path("lifeboat.toml"),
            pg_plan(&primary_url, &url(&dr, "127.0.0.1", &full(&ca.ca))).as_bytes(),
        );
    };
    plan(url(&primary, "127.0.0.1", &full(&stranger.ca)));
    let (code, out) = pg_run(&w, &["backup"]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "not signed by a CA in sslrootcert {}",
            stranger.ca.display()
        )),
        "{out}"
    );

    // verify-full checks the name: the certificate is for 127.0.0.1, not `localhost`.
    plan(url(&primary, "localhost", &full(&ca.ca)));
    let (code, out) = pg_run(&w, &["backup"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("does not name the host"), "{out}");
    // verify-ca checks the CA only, as libpq does (pg_dump too).
    plan(url(
        &primary,
        "localhost",
        &format!("sslmode=verify-ca&sslrootcert={}", ca.ca.display()),
    ));
    let (code, out) = pg_run(&w, &["backup"]);
    assert_eq!(code, 0, "{out}");

    // Without TLS the server refuses: what passed above went over TLS.
    plan(url(&primary, "127.0.0.1", "sslmode=disable"));
    let (code, out) = pg_run(&w, &["backup"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("no encryption"), "{out}");
}

#[test]
fn mariadb_over_tls_verifies_the_servers_certificate() {
    use crate::servers::{MARIADB_PASSWORD, MariaDb, TestCa};
    let ca = TestCa::new();
    let stranger = TestCa::new();
    let primary = MariaDb::start_tls(&ca);
    let dr = MariaDb::start_tls(&ca);
    primary.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.orders(id int); \
         INSERT INTO shop.orders VALUES (1), (2), (3)",
    );
    let url =
        |server: &MariaDb, query: &str| format!("mysql://root@127.0.0.1:{}?{query}", server.port);
    let full =
        |root: &std::path::Path| format!("sslmode=verify-full&sslrootcert={}", root.display());
    let plan = |primary_url: String| {
        let resources = format!(
            r#"[resources.db]
kind = "mysql"
at.primary = {{ url = "{primary_url}", password = {{ env = "MY_PASSWORD" }} }}
at.dr = {{ url = "{}", password = {{ env = "MY_PASSWORD" }} }}
"#,
            url(&dr, &full(&ca.ca))
        );
        http_plan(&resources)
    };
    let w = Workplace::new();
    let run = |args: &[&str]| {
        let out = w
            .cmd()
            .env("MY_PASSWORD", MARIADB_PASSWORD)
            .args(args)
            .output()
            .expect("runs");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), all)
    };
    write(
        &w.path("lifeboat.toml"),
        plan(url(&primary, &full(&ca.ca))).as_bytes(),
    );
    assert_eq!(run(&["repo", "init"]).0, 0);

    // Every client program over verified TLS: the servers take nothing else.
    let (code, out) = run(&["backup"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&["restore", "latest", "--site", "dr", "--resource", "db/shop"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(dr.sql("SELECT count(*) FROM shop.orders"), "3");

    // A certificate from a CA the plan does not trust is refused.
    write(
        &w.path("lifeboat.toml"),
        plan(url(&primary, &full(&stranger.ca))).as_bytes(),
    );
    let (code, out) = run(&["backup"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("TLS/SSL error"), "{out}");

    // Without TLS the server refuses: what passed above went over TLS.
    write(
        &w.path("lifeboat.toml"),
        plan(url(&primary, "sslmode=disable")).as_bytes(),
    );
    let (code, out) = run(&["backup"]);
    assert_ne!(code, 0, "{out}");
    // MariaDB 10.11 says so as a refused login (the same password passed over TLS above).
    assert!(out.contains("Access denied"), "{out}");
}
