//! Health checks: is a site (or a restored resource) serving? HTTP status and body, a TCP
//! connect, an SQL query's answer, a command's exit and output; each attempt bounded by a
//! timeout, retried a number of times.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::mysql::MyServer;
use crate::postgres::PgServer;
use crate::process::start_argv_env;

/// Where an SQL check runs.
#[derive(Debug, Clone)]
pub enum SqlTarget {
    Postgres(PgServer),
    Mysql(MyServer),
    Sqlite(PathBuf),
}

#[derive(Debug, Clone)]
pub enum Probe {
    /// A GET that must answer `status` (any 2xx when `None`) and contain `body` when given.
    Http {
        url: String,
        status: Option<u16>,
        body: Option<String>,
    },
    /// The address accepts a TCP connection.
    Tcp(String),
    /// The query's first column of the first row, as text, equals `expect` when given;
    /// otherwise the query succeeds.
    Sql {
        target: Box<SqlTarget>,
        database: Option<String>,
        query: String,
        expect: Option<String>,
    },
    /// Exits 0, and its trimmed stdout equals `expect` when given.
    Command {
        argv: Vec<String>,
        cwd: PathBuf,
        /// Extra environment (a site's facts, where a drill restored things).
        env: Vec<(String, String)>,
        expect: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct CheckSpec {
    pub name: String,
    pub probe: Probe,
    pub timeout: Duration,
    pub retries: u32,
    pub retry_interval: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckOutcome {
    pub name: String,
    pub ok: bool,
    pub attempts: u32,
    /// What the last attempt saw: the success, or why it failed.
    pub detail: String,
    pub duration_ms: u64,
}

/// Runs a check until it passes or its retries are spent.
pub fn run_check(spec: &CheckSpec) -> CheckOutcome {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = attempt(&spec.probe, spec.timeout);
        let done = result.is_ok() || attempts > spec.retries;
        if done {
            let (ok, detail) = match result {
                Ok(detail) => (true, detail),
                Err(detail) => (false, detail),
            };
            return CheckOutcome {
                name: spec.name.clone(),
                ok,
                attempts,
                detail,
                duration_ms: started.elapsed().as_millis() as u64,
            };
        }
        std::thread::sleep(spec.retry_interval);
    }
}

fn attempt(probe: &Probe, timeout: Duration) -> Result<String, String> {
    match probe {
        Probe::Http { url, status, body } => http(url, *status, body.as_deref(), timeout),
        Probe::Tcp(address) => tcp(address, timeout),
        Probe::Sql {
            target,
            database,
            query,
            expect,
        } => {
            let value = match target.as_ref() {
                SqlTarget::Postgres(server) => server
                    .first_value(database.as_deref(), query)
                    .map_err(|e| e.to_string())?,
                SqlTarget::Mysql(server) => server
                    .first_value(database.as_deref(), query)
                    .map_err(|e| e.to_string())?,
                SqlTarget::Sqlite(path) => sqlite_value(path, query)?,
            };
            compare(value.as_deref().unwrap_or("NULL"), expect.as_deref())
        }
        Probe::Command {
            argv,
            cwd,
            env,
            expect,
        } => command(argv, cwd, env, expect.as_deref(), timeout),
    }
}

fn compare(got: &str, expect: Option<&str>) -> Result<String, String> {
    // What a server or a command answered may hold anything.
    let shown = crate::escape_untrusted(got.as_bytes(), crate::Newlines::Escape);
    match expect {
        Some(want) if got != want => Err(format!(
            "answered `{shown}`, expected `{}`",
            crate::escape_untrusted(want.as_bytes(), crate::Newlines::Escape)
        )),
        _ => Ok(format!("answered `{shown}`")),
    }
}

fn http(
    url: &str,
    status: Option<u16>,
    body: Option<&str>,
    timeout: Duration,
) -> Result<String, String> {
    let shown = crate::http::show_url(url, crate::http::Shown::WithoutQuery);
    // A check that expects a redirect looks at the redirect itself.
    let follow = !status.is_some_and(|s| (300..400).contains(&s));
    let mut response = crate::http::send(
        &crate::http::agent(timeout),
        "GET",
        url,
        &[],
        &crate::http::Body::Empty,
        follow,
        crate::http::Shown::WithoutQuery,
    )
    .map_err(|e| format!("GET {shown}: {e}"))?;
    let got = response.status().as_u16();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let status_ok = match status {
        Some(want) => got == want,
        None => (200..300).contains(&got),
    };
    let excerpt = crate::escape_untrusted(
        bytes[..bytes.len().min(200)].trim_ascii(),
        crate::Newlines::Escape,
    );
    if !status_ok {
        return Err(format!(
            "GET {shown} answered {got}{}: {excerpt}",
            status.map_or(String::from(" (expected 2xx)"), |s| format!(
                " (expected {s})"
            ))
        ));
    }
    if let Some(needle) = body
        && !text.contains(needle)
    {
        return Err(format!(
            "GET {shown} answered {got} without `{needle}`: {excerpt}"
        ));
    }
    Ok(format!("GET {shown} answered {got}"))
}

fn tcp(address: &str, timeout: Duration) -> Result<String, String> {
    let addrs: Vec<_> = address
        .to_socket_addrs()
        .map_err(|e| format!("{address}: {e}"))?
        .collect();
    let mut last = format!("{address}: no address");
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Ok(format!("{address} accepts connections")),
            Err(e) => last = format!("{address}: {e}"),
        }
    }
    Err(last)
}

fn sqlite_value(path: &std::path::Path, query: &str) -> Result<Option<String>, String> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut statement = conn
        .prepare(query)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut rows = statement
        .query([])
        .map_err(|e| format!("{}: {e}", path.display()))?;
    match rows
        .next()
        .map_err(|e| format!("{}: {e}", path.display()))?
    {
        None => Ok(None),
        Some(row) => {
            let value: rusqlite::types::Value = row.get(0).map_err(|e| e.to_string())?;
            Ok(match value {
                rusqlite::types::Value::Null => None,
                rusqlite::types::Value::Integer(i) => Some(i.to_string()),
                rusqlite::types::Value::Real(f) => Some(f.to_string()),
                rusqlite::types::Value::Text(t) => Some(t),
                rusqlite::types::Value::Blob(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            })
        }
    }
}

fn command(
    argv: &[String],
    cwd: &std::path::Path,
    env: &[(String, String)],
    expect: Option<&str>,
    timeout: Duration,
) -> Result<String, String> {
    let mut child = start_argv_env(argv, cwd, env, Stdio::null()).map_err(|e| e.to_string())?;
    let mut stdout = child.stdout();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        out
    });
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_finished() {
            Some(result) => {
                let out = reader.join().unwrap_or_default();
                result.map_err(|e| e.to_string())?;
                return match expect {
                    None => Ok(format!("`{}` exited 0", argv.join(" "))),
                    Some(_) => compare(out.trim(), expect),
                };
            }
            None if Instant::now() >= deadline => {
                // Dropping the child kills it.
                drop(child);
                let _ = reader.join();
                return Err(format!(
                    "`{}` did not finish within {timeout:?}",
                    argv.join(" ")
                ));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(probe: Probe, retries: u32) -> CheckSpec {
        CheckSpec {
            name: "t".into(),
            probe,
            timeout: Duration::from_secs(2),
            retries,
            retry_interval: Duration::from_millis(10),
        }
    }

    #[test]
    fn commands_pass_fail_compare_and_time_out() {
        let cwd = std::env::temp_dir();
        let ok = run_check(&spec(
            Probe::Command {
                argv: vec!["sh".into(), "-c".into(), "echo $STATE".into()],
                cwd: cwd.clone(),
                env: vec![("STATE".into(), "ready".into())],
                expect: Some("ready".into()),
            },
            0,
        ));
        assert!(ok.ok, "{ok:?}");
        let wrong = run_check(&spec(
            Probe::Command {
                argv: vec!["echo".into(), "starting".into()],
                cwd: cwd.clone(),
                env: vec![],
                expect: Some("ready".into()),
            },
            2,
        ));
        assert!(!wrong.ok);
        assert_eq!(wrong.attempts, 3);
        assert!(wrong.detail.contains("`starting`"), "{}", wrong.detail);
        let slow = CheckSpec {
            timeout: Duration::from_millis(200),
            ..spec(
                Probe::Command {
                    argv: vec!["sleep".into(), "5".into()],
                    cwd,
                    env: vec![],
                    expect: None,
                },
                0,
            )
        };
        let started = Instant::now();
        let slow = run_check(&slow);
        assert!(
            !slow.ok && slow.detail.contains("did not finish"),
            "{slow:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn http_checks_status_and_body_against_a_real_server() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("health"), "status: ok\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 (Debian package python3) serves HTTP");
        let url = |path: &str| format!("http://127.0.0.1:{port}/{path}");
        let http = |path: &str, status, body: Option<&str>, retries| {
            run_check(&spec(
                Probe::Http {
                    url: url(path),
                    status,
                    body: body.map(str::to_string),
                },
                retries,
            ))
        };
        // Retries cover the server's start.
        let ok = http("health", None, Some("ok"), 500);
        let missing = http("nope", None, None, 0);
        let expected_404 = http("nope", Some(404), None, 0);
        let wrong_body = http("health", Some(200), Some("degraded"), 0);
        let _ = server.kill();
        let _ = server.wait();
        assert!(ok.ok, "{ok:?}");
        assert!(!missing.ok && missing.detail.contains("404"), "{missing:?}");
        assert!(expected_404.ok, "{expected_404:?}");
        assert!(
            !wrong_body.ok && wrong_body.detail.contains("degraded"),
            "{wrong_body:?}"
        );
    }

    #[test]
    fn http_checks_follow_only_same_origin_redirects() {
        use crate::testpeer::Peer;
        let elsewhere = Peer::start(|_| (200, vec![], b"healthy".to_vec()));
        let away = elsewhere.url("/health");
        let site = Peer::start(move |seen| match seen.target.as_str() {
            "/old" => (301, vec![("Location".into(), "/health".into())], vec![]),
            "/away" => (302, vec![("Location".into(), away.clone())], vec![]),
            _ => (200, vec![], b"healthy \x1b[5m".to_vec()),
        });
        let check = |path: &str, status: Option<u16>| {
            run_check(&spec(
                Probe::Http {
                    url: site.url(path),
                    status,
                    body: Some("healthy".into()),
                },
                0,
            ))
        };
        let moved = check("/old", None);
        assert!(moved.ok, "{moved:?}");
        let away = check("/away", None);
        assert!(
            !away.ok && away.detail.contains("another origin"),
            "{away:?}"
        );
        assert!(elsewhere.seen().is_empty());
        // A check that expects the redirect sees it.
        let redirect = run_check(&spec(
            Probe::Http {
                url: site.url("/away"),
                status: Some(302),
                body: None,
            },
            0,
        ));
        assert!(redirect.ok, "{redirect:?}");
        let wrong = run_check(&spec(
            Probe::Http {
                url: site.url("/health"),
                status: Some(503),
                body: None,
            },
            0,
        ));
        assert!(
            !wrong.ok && wrong.detail.contains("healthy \\x1b[5m"),
            "{wrong:?}"
        );
    }

    #[test]
    fn tcp_sees_a_listener_and_its_absence() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        assert!(run_check(&spec(Probe::Tcp(addr.clone()), 0)).ok);
        drop(listener);
        let closed = run_check(&spec(Probe::Tcp(addr), 1));
        assert!(!closed.ok && closed.attempts == 2, "{closed:?}");
    }
}
