//! Configuration documents over HTTP (`kind = "http"`): `GET` (or `POST`, the binding's
//! `capture_method`) to capture, `PUT`/`POST`/`PATCH` (its `method`) the document back to
//! apply, streamed both ways. Header values may carry
//! credentials: they are never logged or put in an error.
//!
//! Redirects: every request here (documents, webhooks, health checks, version endpoints)
//! follows a redirect only to the same origin (scheme, host and port), at most
//! [`MAX_REDIRECTS`] times, so configured headers never reach another server. A request
//! with a body is never turned into a `GET`: 307 and 308 re-send the same method and body,
//! 301, 302 and 303 are errors, since the document did not reach the server.

use std::io::Read;
use std::time::Duration;

use lifeboat_repository::{RepoWriter, Repository};
use ureq::http::{HeaderName, HeaderValue, Response, Uri};

use crate::document::{Document, DocumentReader, document_content, store};
use crate::{Newlines, Result, ServiceError, escape_untrusted};

/// How many same-origin redirects one request follows.
pub const MAX_REDIRECTS: usize = 5;

/// One HTTP request of a binding: where, how, and its headers (secrets among them).
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// The URL, as the plan gives it.
    pub url: String,
    /// `GET`, `POST`, `PUT` or `PATCH`.
    pub method: String,
    /// Header names and values; the values are never shown.
    pub headers: Vec<(String, String)>,
}

impl HttpRequest {
    /// The URL as shown in output: without its query string (it may carry a token).
    pub fn shown_url(&self) -> String {
        show_url(&self.url, Shown::WithoutQuery)
    }
}

pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        // Redirects are followed here, by the rules above, not by ureq.
        .max_redirects(0)
        .build()
        .into()
}

/// An agent for documents, which may be large and move slowly: no bound on the whole
/// exchange (reading the repository counts in it), only on each step and each read or write.
fn document_agent() -> ureq::Agent {
    const STALL: Duration = Duration::from_secs(300);
    ureq::Agent::config_builder()
        .timeout_resolve(Some(Duration::from_secs(30)))
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(STALL))
        .timeout_per_write(Some(STALL))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

/// What a request carries.
pub(crate) enum Body<'a> {
    /// Nothing (a `GET`).
    Empty,
    /// Bytes in memory (a webhook's JSON).
    Bytes(&'a [u8]),
    /// `len` bytes read from a fresh reader for every request sent, so a 307/308 re-sends
    /// them without holding the body in memory (a document streamed from the repository).
    Stream {
        len: u64,
        open: &'a dyn Fn() -> std::io::Result<Box<dyn Read + 'a>>,
    },
}

/// Why a request got no answer of its own.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The connection or the exchange failed.
    Transport(ureq::Error),
    /// The body could not be read to be sent (the repository, for a document).
    Body(std::io::Error),
    /// A header's name or value cannot be sent (the value is not shown).
    BadHeader(String),
    /// The URL cannot be sent to.
    BadUrl(String),
    /// A redirect to another origin, not followed.
    OtherOrigin { status: u16, location: String },
    /// A redirect that would turn a request with a body into a `GET`.
    MethodChange {
        status: u16,
        method: String,
        location: String,
    },
    /// More than [`MAX_REDIRECTS`].
    TooMany { location: String },
    /// A redirect without a usable `Location`.
    BadLocation { status: u16, location: String },
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Transport(e) => {
                let text = escape_untrusted(e.to_string().as_bytes(), Newlines::Escape);
                f.write_str(&text)
            }
            SendError::Body(e) => write!(f, "reading the body to send: {e}"),
            SendError::BadHeader(name) => write!(f, "header `{name}` cannot be sent"),
            SendError::BadUrl(why) => write!(f, "not a URL that can be sent to: {why}"),
            SendError::OtherOrigin { status, location } => write!(
                f,
                "answered {status}, a redirect to another origin ({location}): not followed, \
                 so that the request's headers never reach another server; put the final URL \
                 in the plan if it is the right one"
            ),
            SendError::MethodChange {
                status,
                method,
                location,
            } => write!(
                f,
                "answered {status}, a redirect to {location} that would turn the {method} into \
                 a GET: not followed, the server did not receive the body; put the final URL in \
                 the plan"
            ),
            SendError::TooMany { location } => write!(
                f,
                "more than {MAX_REDIRECTS} redirects (the last to {location}): not followed"
            ),
            SendError::BadLocation { status, location } => {
                write!(
                    f,
                    "answered {status}, a redirect to `{location}` that is not a URL"
                )
            }
        }
    }
}

/// How a URL may be shown: a webhook's path can hold its token, a binding's query string a
/// credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    /// Scheme, host, port and path.
    WithoutQuery,
    /// Scheme, host and port only.
    OriginOnly,
}

/// `url` as `shown` allows, never with credentials in it; control characters escaped.
pub(crate) fn show_url(url: &str, shown: Shown) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = match without_query.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, without_query),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let text = match (scheme, shown) {
        (Some(scheme), Shown::WithoutQuery) => format!("{scheme}://{host}{path}"),
        (Some(scheme), Shown::OriginOnly) => format!("{scheme}://{host}"),
        (None, Shown::WithoutQuery) => without_query.to_string(),
        (None, Shown::OriginOnly) => "a relative location".to_string(),
    };
    escape_untrusted(text.as_bytes(), Newlines::Escape)
}

/// Scheme, host and port, lower-cased, the port made explicit.
fn origin(uri: &Uri) -> Option<(String, String, u16)> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = match (uri.port_u16(), scheme.as_str()) {
        (Some(port), _) => port,
        (None, "http") => 80,
        (None, "https") => 443,
        (None, _) => return None,
    };
    Some((scheme, host, port))
}

/// `location` (absolute, scheme-relative, absolute-path or relative) against `base`.
fn resolve(base: &str, location: &str) -> String {
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(base.len(), |i| scheme_end + i);
    let has_scheme = location
        .find(':')
        .is_some_and(|i| !location[..i].contains(['/', '?', '#']) && i > 0);
    if has_scheme {
        location.to_string()
    } else if location.starts_with("//") {
        format!("{}{location}", &base[..scheme_end.saturating_sub(2)])
    } else if location.starts_with('/') {
        format!("{}{location}", &base[..authority_end])
    } else {
        let path_end = base[authority_end..]
            .find(['?', '#'])
            .map_or(base.len(), |i| authority_end + i);
        if location.starts_with('?') || location.is_empty() {
            format!("{}{location}", &base[..path_end])
        } else {
            let dir_end = base[authority_end..path_end]
                .rfind('/')
                .map_or(authority_end, |i| authority_end + i);
            format!("{}/{location}", &base[..dir_end])
        }
    }
}

/// Sends `method` to `url` with `headers` and `body`, following redirects by the module's
/// rules (none when `follow` is false). Returns the answer of the last URL asked.
pub(crate) fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &Body<'_>,
    follow: bool,
    shown: Shown,
) -> std::result::Result<Response<ureq::Body>, SendError> {
    let mut current = url.to_string();
    let start: Uri = current
        .parse()
        .map_err(|e: ureq::http::uri::InvalidUri| SendError::BadUrl(e.to_string()))?;
    let start_origin = origin(&start).ok_or_else(|| {
        SendError::BadUrl(format!(
            "{} needs http:// or https:// and a host",
            show_url(url, shown)
        ))
    })?;
    let mut hops = 0;
    loop {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(current.as_str());
        for (name, value) in headers {
            let name_ok = HeaderName::from_bytes(name.as_bytes()).is_ok();
            let value_ok = HeaderValue::from_str(value).is_ok();
            if !(name_ok && value_ok) {
                return Err(SendError::BadHeader(escape_untrusted(
                    name.as_bytes(),
                    Newlines::Escape,
                )));
            }
            request = request.header(name.as_str(), value.as_str());
        }
        let response = match body {
            Body::Empty => request
                .body(())
                .map_err(|e| SendError::BadUrl(e.to_string()))
                .and_then(|r| agent.run(r).map_err(SendError::Transport)),
            Body::Bytes(bytes) => request
                .body(*bytes)
                .map_err(|e| SendError::BadUrl(e.to_string()))
                .and_then(|r| agent.run(r).map_err(SendError::Transport)),
            Body::Stream { len, open } => {
                // A known length: the server sees a Content-Length, not a chunked body, and
                // a reader that ends early is an error, never a shorter document.
                let mut reader = Exact {
                    inner: open().map_err(SendError::Body)?,
                    left: *len,
                };
                request
                    .header("content-length", len.to_string())
                    .body(ureq::SendBody::from_reader(&mut reader))
                    .map_err(|e| SendError::BadUrl(e.to_string()))
                    .and_then(|r| agent.run(r).map_err(SendError::Transport))
            }
        }?;
        let status = response.status().as_u16();
        if !follow || !matches!(status, 301 | 302 | 303 | 307 | 308) {
            return Ok(response);
        }
        let raw = response
            .headers()
            .get("location")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let Some(raw) = raw else {
            // A redirect that names no target is the server's answer, for the caller to judge.
            return Ok(response);
        };
        let next = resolve(&current, raw.trim());
        let location = show_url(&next, shown);
        let Some(next_origin) = next.parse::<Uri>().ok().as_ref().and_then(origin) else {
            return Err(SendError::BadLocation { status, location });
        };
        if next_origin != start_origin {
            return Err(SendError::OtherOrigin { status, location });
        }
        let keeps_method = matches!(status, 307 | 308) || method == "GET" || method == "HEAD";
        if !keeps_method {
            return Err(SendError::MethodChange {
                status,
                method: method.to_string(),
                location,
            });
        }
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(SendError::TooMany { location });
        }
        current = next;
    }
}

/// A body reader held to its announced length: ending early or going on is an error (the
/// server would otherwise wait for the rest, or take a cut document).
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One byte more than announced is a body that changed length.
            return match self.inner.read(&mut [0u8; 1])? {
                0 => Ok(0),
                _ => Err(std::io::Error::other("the body is longer than its length")),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the body ended {} bytes before its length", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn failed(req: &HttpRequest, message: impl std::fmt::Display) -> ServiceError {
    ServiceError::Io(format!(
        "{} {}: {message}",
        req.method,
        show_url(&req.url, Shown::WithoutQuery)
    ))
}

/// A non-2xx answer as an error, with the start of its body (servers explain there),
/// control characters escaped.
fn check_status(req: &HttpRequest, response: &mut Response<ureq::Body>) -> Result<()> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(2048)
        .read_to_vec()
        .unwrap_or_default();
    let body = escape_untrusted(body.trim_ascii(), Newlines::Escape);
    Err(failed(req, format!("HTTP {status} {body}")))
}

/// Captures the document `req` answers with (any 2xx).
pub fn capture_http(writer: &RepoWriter<'_>, req: &HttpRequest) -> Result<Document> {
    let agent = document_agent();
    // Some export APIs answer a POST; everything else is read with GET.
    let mut response = match req.method.as_str() {
        "POST" => send(
            &agent,
            "POST",
            &req.url,
            &req.headers,
            &Body::Bytes(&[]),
            true,
            Shown::WithoutQuery,
        ),
        _ => send(
            &agent,
            "GET",
            &req.url,
            &req.headers,
            &Body::Empty,
            true,
            Shown::WithoutQuery,
        ),
    }
    .map_err(|e| failed(req, e))?;
    check_status(req, &mut response)?;
    let mut body = response.into_body().into_reader();
    store(writer, "document", &mut body)
}

/// Asks for the document with `GET` and compares the answer with the one stored under
/// `root`, storing nothing: `None` when equal, else how it differs. A binding read with
/// another method is refused (sending it could write at the site).
pub fn compare_http(
    repo: &Repository,
    root: &lifeboat_format::Id,
    req: &HttpRequest,
) -> Result<Option<String>> {
    // A comparison writes nothing: a binding read with another method than GET (an export
    // that answers a POST, or an import endpoint) is not sent anything.
    if req.method != "GET" {
        return Err(failed(
            req,
            format!(
                "not compared: the binding is read with {}, which may change the site; \
                 a comparison sends only GET",
                req.method
            ),
        ));
    }
    let agent = document_agent();
    let mut response = send(
        &agent,
        "GET",
        &req.url,
        &req.headers,
        &Body::Empty,
        true,
        Shown::WithoutQuery,
    )
    .map_err(|e| failed(req, e))?;
    check_status(req, &mut response)?;
    let mut body = response.into_body().into_reader();
    crate::document::compare_document(repo, root, &mut body)
}

/// Sends the document stored under `root` with `req`; succeeds only on a 2xx answer from
/// the URL it was sent to (or a same-origin target of a 307/308). The document streams from
/// the repository with its length (read again for a 307/308), never whole in memory.
/// Returns its size.
pub fn apply_http(repo: &Repository, root: &lifeboat_format::Id, req: &HttpRequest) -> Result<u64> {
    let (chunks, len) = document_content(repo, root)?;
    let method = match req.method.as_str() {
        "POST" => "POST",
        "PATCH" => "PATCH",
        _ => "PUT",
    };
    let open = || -> std::io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(DocumentReader::new(repo, &chunks)))
    };
    let mut response = send(
        &document_agent(),
        method,
        &req.url,
        &req.headers,
        &Body::Stream { len, open: &open },
        true,
        Shown::WithoutQuery,
    )
    .map_err(|e| failed(req, e))?;
    check_status(req, &mut response)?;
    Ok(len)
}

/// POSTs a JSON body (a notification). The URL may embed a token: errors name only its
/// origin.
pub fn post_json(url: &str, body: &[u8]) -> Result<()> {
    let req = HttpRequest {
        url: format!("{}/…", show_url(url, Shown::OriginOnly)),
        method: "POST".into(),
        headers: vec![],
    };
    let headers = [("Content-Type".to_string(), "application/json".to_string())];
    let mut response = send(
        &agent(Duration::from_secs(300)),
        "POST",
        url,
        &headers,
        &Body::Bytes(body),
        true,
        Shown::OriginOnly,
    )
    .map_err(|e| match e {
        SendError::Transport(e) => failed(
            &req,
            escape_untrusted(
                e.to_string().replace(url, "<webhook>").as_bytes(),
                Newlines::Escape,
            ),
        ),
        SendError::BadUrl(_) => failed(&req, "not an http:// or https:// URL"),
        other => failed(&req, other),
    })?;
    check_status(&req, &mut response)
}

/// The body of a GET, trimmed, control characters escaped (a version endpoint). Non-2xx is
/// an error.
pub fn get_text(url: &str, timeout: Duration) -> Result<String> {
    let req = HttpRequest {
        url: url.to_string(),
        method: "GET".into(),
        headers: vec![],
    };
    let mut response = send(
        &agent(timeout),
        "GET",
        url,
        &[],
        &Body::Empty,
        true,
        Shown::WithoutQuery,
    )
    .map_err(|e| failed(&req, e))?;
    check_status(&req, &mut response)?;
    let text = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .map_err(|e| failed(&req, e))?;
    Ok(escape_untrusted(text.trim_ascii(), Newlines::Escape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_url_asked() {
        let base = "http://h:8080/a/b?x=1";
        assert_eq!(resolve(base, "https://o/p"), "https://o/p");
        assert_eq!(resolve(base, "//o:1/p"), "http://o:1/p");
        assert_eq!(resolve(base, "/p?q"), "http://h:8080/p?q");
        assert_eq!(resolve(base, "c"), "http://h:8080/a/c");
        assert_eq!(resolve(base, "?y=2"), "http://h:8080/a/b?y=2");
        assert_eq!(resolve("http://h", "c"), "http://h/c");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let o = |u: &str| origin(&u.parse::<Uri>().unwrap());
        assert_eq!(o("http://H:80/x"), o("http://h/y"));
        assert_ne!(o("http://h/"), o("https://h/"));
        assert_ne!(o("http://h:8080/"), o("http://h:8081/"));
        assert_ne!(o("http://h/"), o("http://h.evil/"));
        assert_eq!(o("ftp://h/"), None);
    }

    #[test]
    fn urls_are_shown_without_query_or_credentials() {
        assert_eq!(
            show_url("https://u:pw@h:1/p/q?token=s#f", Shown::WithoutQuery),
            "https://h:1/p/q"
        );
        assert_eq!(
            show_url("https://h/hooks/T0K3N?x", Shown::OriginOnly),
            "https://h"
        );
        assert_eq!(
            show_url("http://h/\x1b[2J", Shown::WithoutQuery),
            "http://h/\\x1b[2J"
        );
    }

    #[test]
    fn a_webhook_is_not_posted_to_another_origin_nor_turned_into_a_get() {
        use crate::testpeer::Peer;
        let elsewhere = Peer::start(|_| (200, vec![], b"ok".to_vec()));
        let target = elsewhere.url("/hooks/other");
        let hook = Peer::start(move |seen| match seen.target.as_str() {
            "/hooks/T0K3N" => (308, vec![("Location".into(), target.clone())], vec![]),
            "/hooks/see-other" => (303, vec![("Location".into(), "/done".into())], vec![]),
            "/hooks/temporary" => (
                307,
                vec![("Location".into(), "/hooks/final".into())],
                vec![],
            ),
            _ => (204, vec![], vec![]),
        });
        let e = post_json(&hook.url("/hooks/T0K3N"), b"{}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("another origin"), "{e}");
        assert!(!e.contains("T0K3N") && !e.contains("/hooks/other"), "{e}");
        assert!(elsewhere.seen().is_empty());

        let e = post_json(&hook.url("/hooks/see-other"), b"{}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("303") && e.contains("GET"), "{e}");

        post_json(&hook.url("/hooks/temporary"), b"{\"a\": 1}").unwrap();
        let seen = hook.seen();
        let last = seen.last().unwrap();
        assert_eq!(
            (last.method.as_str(), last.target.as_str()),
            ("POST", "/hooks/final")
        );
        assert_eq!(last.body, b"{\"a\": 1}");
        assert_eq!(last.header("content-type"), Some("application/json"));
        assert!(!seen.iter().any(|s| s.target == "/done"), "{seen:?}");
    }

    #[test]
    fn a_streamed_body_is_read_again_for_a_307_and_never_sent_as_a_get() {
        use crate::testpeer::Peer;
        use std::cell::Cell;
        let peer = Peer::start(|seen| match seen.target.as_str() {
            "/moved" => (302, vec![("Location".into(), "/elsewhere".into())], vec![]),
            "/temporary" => (307, vec![("Location".into(), "/final".into())], vec![]),
            _ => (204, vec![], vec![]),
        });
        let document = b"document body".repeat(1000);
        let opened = Cell::new(0);
        let open = || -> std::io::Result<Box<dyn Read + '_>> {
            opened.set(opened.get() + 1);
            Ok(Box::new(&document[..]))
        };
        let body = Body::Stream {
            len: document.len() as u64,
            open: &open,
        };
        let put = |target: &str| {
            send(
                &agent(Duration::from_secs(10)),
                "PUT",
                &peer.url(target),
                &[],
                &body,
                true,
                Shown::WithoutQuery,
            )
        };
        let e = put("/moved").unwrap_err().to_string();
        assert!(e.contains("302") && e.contains("/elsewhere"), "{e}");
        assert_eq!(opened.replace(0), 1);

        let answer = put("/temporary").unwrap();
        assert_eq!(answer.status().as_u16(), 204);
        assert_eq!(opened.get(), 2, "the body is read again for the 307");
        let seen = peer.seen();
        let last = seen.last().unwrap();
        assert_eq!(
            (last.method.as_str(), last.target.as_str()),
            ("PUT", "/final")
        );
        assert_eq!(last.body, document);
        let length = document.len().to_string();
        assert_eq!(last.header("content-length"), Some(length.as_str()));
        assert!(!seen.iter().any(|s| s.target == "/elsewhere"), "{seen:?}");

        // A reader that ends before the length it announced is an error, not a shorter body.
        let short = || -> std::io::Result<Box<dyn Read + '_>> { Ok(Box::new(&document[..10])) };
        let body = Body::Stream {
            len: document.len() as u64,
            open: &short,
        };
        let sent = send(
            &agent(Duration::from_secs(10)),
            "PUT",
            &peer.url("/short"),
            &[],
            &body,
            true,
            Shown::WithoutQuery,
        );
        let e = sent.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("ended 12990 bytes before its length"), "{e}");
    }

    #[test]
    fn redirect_loops_end() {
        use crate::testpeer::Peer;
        let peer = Peer::start(|_| (302, vec![("Location".into(), "/again".into())], vec![]));
        let e = get_text(&peer.url("/start"), Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 5 redirects"), "{e}");
        assert_eq!(peer.seen().len(), MAX_REDIRECTS + 1);
    }
}
