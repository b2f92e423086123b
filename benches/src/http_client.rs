//! The HTTP client of the benchmark drivers (reqwest): one blocking client per process for
//! requests, and async clients for the many live streams of `bench-subscribers`.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use reqwest::blocking::Client;

/// The process's blocking client (keeps connections alive between requests).
pub fn client() -> anyhow::Result<&'static Client> {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let built = Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")?;
    Ok(CLIENT.get_or_init(|| built))
}

/// `method` on `http://{addr}{path}`, with a JSON body when given: the status and the body.
pub fn send(
    addr: &str,
    method: reqwest::Method,
    path: &str,
    json_body: Option<String>,
) -> anyhow::Result<(u16, String)> {
    let url = format!("http://{addr}{path}");
    let mut request = client()?.request(method.clone(), &url);
    if let Some(body) = json_body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
    }
    let response = request
        .send()
        .with_context(|| format!("{method} {url} failed"))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .with_context(|| format!("cannot read the answer of {method} {url}"))?;
    Ok((status, body))
}

/// `GET http://{addr}{path}`: the body of a 2xx answer, else an error naming the status.
pub fn get(addr: &str, path: &str) -> anyhow::Result<String> {
    let (status, body) = send(addr, reqwest::Method::GET, path, None)?;
    if !(200..300).contains(&status) {
        anyhow::bail!("GET {path} answered {status}: {body}");
    }
    Ok(body)
}
