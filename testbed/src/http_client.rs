//! A small HTTP/1.1 client for the testbed's own plain-HTTP endpoints (the stub model, OpenCode
//! servers on loopback or pod addresses): one connection per request, a deadline on every call,
//! and a server-sent-events reader. Not for the internet: no TLS, no redirects, no proxies.

use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, header};
use futures::StreamExt as _;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// A parsed `http://host:port/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port` (the port defaults to 80).
    pub authority: String,
    /// `/path?query` (at least `/`).
    pub path_and_query: String,
}

impl Url {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("only http:// URLs are supported, not {url:?}"))?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            bail!("URL {url:?} has no host");
        }
        let has_port = match authority.rfind(':') {
            // `[::1]` has colons but no port.
            Some(i) => !authority[i..].contains(']'),
            None => false,
        };
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let path_and_query = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Ok(Self {
            authority,
            path_and_query,
        })
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "response (status {}) is not the JSON expected: {}",
                self.status,
                self.text()
            )
        })
    }
}

/// Sends one request and reads the whole response, all within `timeout`.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> anyhow::Result<Response> {
    let what = format!("{method} {url}");
    tokio::time::timeout(timeout, async {
        let (response, conn) = send(method, url, headers, body).await?;
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .context("reading the response body")?;
        drop(conn);
        Ok::<_, anyhow::Error>(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    })
    .await
    .with_context(|| format!("{what}: no complete answer within {timeout:?}"))?
    .with_context(|| what.clone())
}

/// `GET` with a deadline.
pub async fn get(
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<Response> {
    request(Method::GET, url, headers, None, timeout).await
}

/// `POST` of a JSON body with a deadline.
pub async fn post_json(
    url: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
    timeout: Duration,
) -> anyhow::Result<Response> {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request(
        Method::POST,
        url,
        &all,
        Some(body.to_string().into_bytes()),
        timeout,
    )
    .await
}

async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> anyhow::Result<(axum::http::Response<Body>, Connection)> {
    let parsed = Url::parse(url)?;
    let stream = TcpStream::connect(&parsed.authority)
        .await
        .with_context(|| format!("connecting to {}", parsed.authority))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
    let conn = Connection(tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(%err, "HTTP connection ended with an error");
        }
    }));
    let mut builder = Request::builder()
        .method(method)
        .uri(&parsed.path_and_query)
        .header(header::HOST, &parsed.authority);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(body.map_or_else(Body::empty, Body::from))
        .context("building the request")?;
    let response = match sender.send_request(request).await {
        Ok(response) => response,
        Err(err) => return Err(err).context("sending the request"),
    };
    Ok((response.map(Body::new), conn))
}

/// The task that drives one connection; dropping it closes the connection, so a request that
/// times out leaves nothing behind.
struct Connection(JoinHandle<()>);

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An open server-sent-events stream (dropping it closes the connection).
pub struct EventStream {
    body: axum::body::BodyDataStream,
    buffer: Vec<u8>,
    _conn: Connection,
}

/// Opens a server-sent-events stream: the response headers must arrive within `timeout` with
/// status 200; events are then read one at a time with [`EventStream::next_data`].
pub async fn events(
    url: &str,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<EventStream> {
    let mut all = vec![("accept", "text/event-stream")];
    all.extend_from_slice(headers);
    let (response, conn) = tokio::time::timeout(timeout, send(Method::GET, url, &all, None))
        .await
        .with_context(|| format!("GET {url}: no response headers within {timeout:?}"))?
        .with_context(|| format!("GET {url}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = tokio::time::timeout(
            timeout,
            axum::body::to_bytes(response.into_body(), 64 * 1024),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
        drop(conn);
        bail!(
            "GET {url}: status {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(EventStream {
        body: response.into_body().into_data_stream(),
        buffer: Vec::new(),
        _conn: conn,
    })
}

impl EventStream {
    /// The `data` of the next event (multi-line data joined by `\n`; events without data, like
    /// comments, are skipped). `Ok(None)` when the server ends the stream.
    pub async fn next_data(&mut self) -> anyhow::Result<Option<String>> {
        loop {
            if let Some((event, rest)) = split_event(&self.buffer) {
                let data = event_data(&String::from_utf8_lossy(event));
                self.buffer = rest.to_vec();
                if let Some(data) = data {
                    return Ok(Some(data));
                }
                continue;
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(err)) => return Err(err).context("reading the event stream"),
                None => return Ok(None),
            }
        }
    }
}

/// Splits off the first complete event (terminated by a blank line, `\n\n` or `\r\n\r\n`).
fn split_event(buffer: &[u8]) -> Option<(&[u8], &[u8])> {
    let lf = find(buffer, b"\n\n").map(|i| (i, 2));
    let crlf = find(buffer, b"\r\n\r\n").map(|i| (i, 4));
    let (at, len) = match (lf, crlf) {
        (Some(a), Some(b)) => {
            if a.0 <= b.0 {
                a
            } else {
                b
            }
        }
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => return None,
    };
    Some((&buffer[..at], &buffer[at + len..]))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The joined `data:` lines of one event, if it has any.
fn event_data(event: &str) -> Option<String> {
    let lines: Vec<&str> = event
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.strip_prefix(' ').unwrap_or(data))
        .collect();
    if lines.is_empty() {
        None
    } else {
        Some(lines.join("\n"))
    }
}

/// `Basic <base64(user:password)>`, the value of an `Authorization` header.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for query values.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let url = Url::parse("http://127.0.0.1:4096/session?directory=%2Ftmp").expect("url");
        assert_eq!(url.authority, "127.0.0.1:4096");
        assert_eq!(url.path_and_query, "/session?directory=%2Ftmp");
        let bare = Url::parse("http://localhost").expect("url");
        assert_eq!(bare.authority, "localhost:80");
        assert_eq!(bare.path_and_query, "/");
        assert_eq!(
            Url::parse("http://h:1?x=1").expect("url").path_and_query,
            "/?x=1"
        );
        assert_eq!(
            Url::parse("http://[::1]/").expect("url").authority,
            "[::1]:80"
        );
        assert!(Url::parse("https://example.com").is_err());
        assert!(Url::parse("http:///x").is_err());
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"opencode:secret"), "b3BlbmNvZGU6c2VjcmV0");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
        assert_eq!(basic_auth("a", "b"), "Basic YTpi");
    }

    #[test]
    fn url_encoding_escapes_reserved_bytes() {
        assert_eq!(url_encode("a+b/c=d"), "a%2Bb%2Fc%3Dd");
        assert_eq!(url_encode("/tmp/x y"), "%2Ftmp%2Fx%20y");
        assert_eq!(url_encode("Az09-_.~"), "Az09-_.~");
    }

    #[test]
    fn events_split_on_blank_lines() {
        let buffer = b"data: {\"a\":1}\n\n: comment\n\ndata: x\r\ndata: y\r\n\r\npartial";
        let (first, rest) = split_event(buffer).expect("first event");
        assert_eq!(
            event_data(&String::from_utf8_lossy(first)).as_deref(),
            Some("{\"a\":1}")
        );
        let (second, rest) = split_event(rest).expect("comment");
        assert_eq!(event_data(&String::from_utf8_lossy(second)), None);
        let (third, rest) = split_event(rest).expect("third event");
        assert_eq!(
            event_data(&String::from_utf8_lossy(third)).as_deref(),
            Some("x\ny")
        );
        assert_eq!(rest, b"partial");
        assert!(split_event(rest).is_none());
    }
}
