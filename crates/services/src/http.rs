//! Configuration documents over HTTP (`kind = "http"`): `GET` (or the binding's method) to
//! capture, `PUT`/`POST`/`PATCH` the document back to apply. Header values may carry
//! credentials: they are never logged or put in an error.

use std::time::Duration;

use lifeboat_repository::{RepoWriter, Repository};

use crate::document::{Document, document_chunks, store};
use crate::{Result, ServiceError};

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub url: String,
    /// `GET`, `POST`, `PUT` or `PATCH`.
    pub method: String,
    pub headers: Vec<(String, String)>,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn failed(req: &HttpRequest, message: impl std::fmt::Display) -> ServiceError {
    ServiceError::Io(format!("{} {}: {message}", req.method, req.url))
}

/// A non-2xx answer as an error, with the start of its body (servers explain there).
fn check_status(req: &HttpRequest, response: &mut ureq::http::Response<ureq::Body>) -> Result<()> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(2048)
        .read_to_string()
        .unwrap_or_default();
    Err(failed(req, format!("HTTP {status} {}", body.trim())))
}

fn with_headers<B>(
    mut builder: ureq::RequestBuilder<B>,
    req: &HttpRequest,
) -> ureq::RequestBuilder<B> {
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder
}

pub fn capture_http(writer: &RepoWriter<'_>, req: &HttpRequest) -> Result<Document> {
    let agent = agent();
    // Some export APIs answer a POST; everything else is read with GET.
    let mut response = match req.method.as_str() {
        "POST" => with_headers(agent.post(&req.url), req).send_empty(),
        _ => with_headers(agent.get(&req.url), req).call(),
    }
    .map_err(|e| failed(req, e))?;
    check_status(req, &mut response)?;
    let mut body = response.into_body().into_reader();
    store(writer, "document", &mut body)
}

pub fn apply_http(repo: &Repository, root: &lifeboat_format::Id, req: &HttpRequest) -> Result<u64> {
    let chunks = document_chunks(repo, root)?;
    let mut document = Vec::new();
    let n = lifeboat_files::read_stream(&mut repo.reader(), &chunks, &mut document)?;
    let agent = agent();
    let builder = match req.method.as_str() {
        "POST" => agent.post(&req.url),
        "PATCH" => agent.patch(&req.url),
        _ => agent.put(&req.url),
    };
    let mut response = with_headers(builder, req)
        .send(&document[..])
        .map_err(|e| failed(req, e))?;
    check_status(req, &mut response)?;
    Ok(n)
}

/// POSTs a JSON body (a notification). The URL may embed a token: errors name only its host.
pub fn post_json(url: &str, body: &[u8]) -> Result<()> {
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or("the webhook")
        .to_string();
    let req = HttpRequest {
        url: format!("https://{host}/…"),
        method: "POST".into(),
        headers: vec![],
    };
    let mut response = agent()
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .map_err(|e| failed(&req, e.to_string().replace(url, "<webhook>")))?;
    check_status(&req, &mut response)
}

/// The body of a GET, trimmed (a version endpoint). Non-2xx is an error.
pub fn get_text(url: &str, timeout: Duration) -> Result<String> {
    let req = HttpRequest {
        url: url.to_string(),
        method: "GET".into(),
        headers: vec![],
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| failed(&req, e))?;
    check_status(&req, &mut response)?;
    let text = response
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| failed(&req, e))?;
    Ok(text.trim().to_string())
}
