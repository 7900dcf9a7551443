//! The dialling side: a Chromium-shaped TLS connection (BoringSSL through `wreq`, with a
//! maintained Chrome emulation profile), a browser-like page load, the pin check, then the
//! authenticated upgrade on the secret path.

use super::addr::HttpsAddr;
use super::tls::der_pin;
use super::token::upgrade_path;
use crate::BoxStream;
use futures_lite::StreamExt;
use rand_core::{OsRng, RngCore};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use wreq::header::{CONNECTION, HeaderValue, UPGRADE};

/// How long a whole dial (TCP, TLS, page load and upgrade) may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(20);
/// The most of the cover page read before the upgrade (the rest is dropped with the
/// connection's pool slot).
pub const MAX_COVER_PAGE: usize = 4 * 1024 * 1024;
/// How long a dial waits for its one connection to come back to the pool before it gives up
/// (see [`OneConnection`]).
const SECOND_CONNECTION_WAIT: Duration = Duration::from_secs(5);
/// The Chromium profile the client imitates (the newest `wreq-util` maintains).
pub const PROFILE: wreq_util::Profile = wreq_util::Profile::Chrome149;

/// The full emulation: [`PROFILE`] on Linux (the platform of Debian's Chromium).
pub fn emulation() -> wreq_util::Emulation {
    wreq_util::Emulation::builder().profile(PROFILE).platform(wreq_util::Platform::Linux).build()
}

fn refused(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, format!("https: {what}"))
}

pub(crate) fn wreq_err(e: wreq::Error) -> io::Error {
    // The error's text can carry the URL (the host name): keep only its kind.
    io::Error::new(failure_kind(&e), "https: connection failed")
}

/// What a failed dial ran into, as an I/O error kind: the socket's own (a reset, a refused or
/// timed-out connect), `InvalidData` for a TLS failure (an alert, a handshake the server broke
/// off), `TimedOut`, `ConnectionRefused` for other connect failures, `Other` for the rest.
fn failure_kind(e: &wreq::Error) -> io::ErrorKind {
    if e.is_timeout() {
        return io::ErrorKind::TimedOut;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io.kind() != io::ErrorKind::Other {
                return io.kind();
            }
        }
        if let Some(tls) = err.downcast_ref::<btls::ssl::Error>() {
            // A socket failure under the handshake is the socket's.
            return tls.io_error().map_or(io::ErrorKind::InvalidData, io::Error::kind);
        }
        if err.is::<btls::error::ErrorStack>() {
            return io::ErrorKind::InvalidData;
        }
        source = err.source();
    }
    if e.is_tls() {
        io::ErrorKind::InvalidData
    } else if e.is_connection_reset() {
        io::ErrorKind::ConnectionReset
    } else if e.is_connect() {
        io::ErrorKind::ConnectionRefused
    } else {
        io::ErrorKind::Other
    }
}

pub(crate) fn check_pin(response: &wreq::Response, pin: &[u8; 32]) -> io::Result<()> {
    let info = response.extensions().get::<wreq::tls::TlsInfo>();
    let der = info.and_then(|i| i.peer_certificate()).ok_or_else(|| refused("no certificate"))?;
    if der_pin(der)? != *pin {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "https: the server's certificate does not match the pin",
        ));
    }
    Ok(())
}

#[allow(clippy::disallowed_methods)] // the token is bound to the wall-clock hour
pub(crate) fn hour_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
        / 3600
}

/// A connector layer that lets a client open a connection only with a permit, one per
/// permit. The pin can only be checked on an answer, after its request went out, so nothing
/// secret may be the first request on a connection: a dial gets one permit, for the cover
/// page's connection. If the server (or whoever is on the path) closed it, the upgrade would
/// go out on a new, not yet checked connection, and an on-path attacker terminating that one
/// could harvest the token and replay it to the node; with this layer the request fails
/// instead (and [`OneConnection::take_refused`] says so, for a caller that then checks a new
/// connection under a new permit).
#[derive(Clone)]
pub(crate) struct OneConnection {
    permit: Arc<AtomicBool>,
    refused: Arc<AtomicBool>,
    wait: Duration,
}

impl Default for OneConnection {
    /// One permit, and the wait of [`SECOND_CONNECTION_WAIT`].
    fn default() -> Self {
        OneConnection {
            permit: Arc::new(AtomicBool::new(true)),
            refused: Arc::new(AtomicBool::new(false)),
            wait: SECOND_CONNECTION_WAIT,
        }
    }
}

impl OneConnection {
    /// No permit yet; a refused connection fails after `wait`.
    pub(crate) fn closed(wait: Duration) -> Self {
        let gate = OneConnection { wait, ..Self::default() };
        gate.permit.store(false, Ordering::SeqCst);
        gate
    }

    /// Lets the next connection open (or, with `false`, takes an unused permit back).
    pub(crate) fn permit(&self, yes: bool) {
        self.permit.store(yes, Ordering::SeqCst);
    }

    /// Whether a connection was refused since the last call.
    pub(crate) fn take_refused(&self) -> bool {
        self.refused.swap(false, Ordering::SeqCst)
    }
}

impl<S> tower_layer::Layer<S> for OneConnection {
    type Service = OneConnectionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OneConnectionService { inner, gate: self.clone() }
    }
}

#[derive(Clone)]
pub(crate) struct OneConnectionService<S> {
    inner: S,
    gate: OneConnection,
}

type Connecting<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, R> tower_service::Service<R> for OneConnectionService<S>
where
    S: tower_service::Service<R>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: From<io::Error> + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Connecting<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        if !self.gate.permit.swap(false, Ordering::SeqCst) {
            self.gate.refused.store(true, Ordering::SeqCst);
            // The client asks for a connection while it also waits for its pooled one to come
            // back (whichever is first wins): wait, and fail only if the first never returns.
            let wait = self.gate.wait;
            return Box::pin(async move {
                tokio::time::sleep(wait).await;
                Err(refused("the server closed the connection").into())
            });
        }
        Box::pin(self.inner.call(request))
    }
}

/// Reads a response's body to its end (`read` counts what the dial read in all, at most
/// [`MAX_COVER_PAGE`]); keeps it if `keep`.
pub(crate) async fn drain(
    response: wreq::Response,
    read: &mut usize,
    keep: bool,
) -> io::Result<Vec<u8>> {
    let mut body = response.bytes_stream();
    let mut kept = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(wreq_err)?;
        *read += chunk.len();
        if *read > MAX_COVER_PAGE {
            return Err(refused("cover page too large"));
        }
        if keep {
            kept.extend_from_slice(&chunk);
        }
    }
    Ok(kept)
}

/// Most subresources a dial loads with the page.
pub const MAX_SUBRESOURCES: usize = 12;

/// What a page refers to, and how Chromium asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    Style,
    Script,
    Image,
}

impl Resource {
    fn headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Resource::Style => &[
                ("accept", "text/css,*/*;q=0.1"),
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "style"),
            ],
            Resource::Script => &[
                ("accept", "*/*"),
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "script"),
            ],
            Resource::Image => &[
                ("accept", "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"),
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-mode", "no-cors"),
                ("sec-fetch-dest", "image"),
            ],
        }
    }
}

/// The same-origin style sheets (`<link … href>`), scripts and images (`src`) a page names
/// by absolute path, in order, each once, at most [`MAX_SUBRESOURCES`].
pub(crate) fn subresources(page: &[u8]) -> Vec<(String, Resource)> {
    let text = String::from_utf8_lossy(page);
    let lower = text.to_ascii_lowercase();
    let mut found: Vec<(String, Resource)> = Vec::new();
    let mut at = 0;
    while let Some(open) = lower[at..].find('<') {
        let start = at + open + 1;
        let end = lower[start..].find('>').map_or(lower.len(), |e| start + e);
        let tag = &lower[start..end];
        let original = &text[start..end];
        let name: String = tag.chars().take_while(char::is_ascii_alphanumeric).collect();
        let (attr, kind) = match name.as_str() {
            "link" if tag.contains("stylesheet") => ("href", Resource::Style),
            "script" => ("src", Resource::Script),
            "img" => ("src", Resource::Image),
            _ => ("", Resource::Image),
        };
        if !attr.is_empty() {
            if let Some(path) = attribute(tag, original, attr) {
                let same_origin = path.starts_with('/') && !path.starts_with("//");
                let plain = path.bytes().all(|b| b.is_ascii_graphic());
                if same_origin && plain && !found.iter().any(|(p, _)| *p == path) {
                    found.push((path, kind));
                }
            }
        }
        if found.len() >= MAX_SUBRESOURCES || end >= lower.len() {
            break;
        }
        at = end;
    }
    found
}

/// The value of attribute `name` in a tag (`tag` lowercased, `original` as written).
fn attribute(tag: &str, original: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(i) = tag[from..].find(name) {
        let i = from + i;
        from = i + name.len();
        let before = tag[..i].chars().next_back();
        if !before.is_some_and(char::is_whitespace) {
            continue;
        }
        let rest = tag[from..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else { continue };
        let offset = tag.len() - rest.len();
        let value = original[offset..].trim_start();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or(""),
            _ => value.split(|c: char| c.is_whitespace() || c == '>').next().unwrap_or(""),
        };
        return Some(value.to_owned());
    }
    None
}

/// Opens a tunnel to `addr`.
pub async fn dial(addr: &HttpsAddr) -> io::Result<BoxStream> {
    tokio::time::timeout(DIAL_TIMEOUT, dial_inner(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "https: dial timed out"))?
}

/// A Chromium-shaped client that connects to `socket` for `name` (the SNI), checks no
/// certificate itself (the caller checks the pin on each answer), keeps one pooled connection
/// and opens connections only as `gate` permits; `http1_only` for one that offers only
/// http/1.1.
pub(crate) fn pinned_client(
    name: &str,
    socket: std::net::SocketAddr,
    gate: OneConnection,
    http1_only: bool,
) -> io::Result<wreq::Client> {
    let mut builder = wreq::Client::builder();
    if http1_only {
        builder = builder.http1_only();
    }
    builder
        .emulation(emulation())
        .resolve(name.to_owned(), socket)
        .tls_cert_verification(false)
        .tls_verify_hostname(false)
        .tls_info(true)
        .no_proxy()
        .pool_max_idle_per_host(1)
        .connector_layer(gate)
        .build()
        .map_err(wreq_err)
}

async fn dial_inner(addr: &HttpsAddr) -> io::Result<BoxStream> {
    // A fresh client per dial: no session ticket, cookie or pooled connection links two
    // dials of this node together.
    let client = pinned_client(&addr.name, addr.socket, OneConnection::default(), false)?;
    let origin = match addr.socket.port() {
        443 => format!("https://{}", addr.name),
        port => format!("https://{}:{port}", addr.name),
    };
    // First what a browser does: load the page. Nothing secret is sent before the pin holds.
    let page = client.get(format!("{origin}/")).send().await.map_err(wreq_err)?;
    check_pin(&page, &addr.pin)?;
    let mut read = 0usize;
    let page = drain(page, &mut read, true).await?;
    // Then the page's own style sheets, scripts and images, on the same connection, as a
    // browser would before anything else: the connection's first packets are a page load.
    for (path, kind) in subresources(&page) {
        let mut request = client.get(format!("{origin}{path}"));
        for (name, value) in kind.headers() {
            request = request.header(*name, HeaderValue::from_static(value));
        }
        let referer = HeaderValue::from_str(&format!("{origin}/")).map_err(|_| refused("name"))?;
        let response = request.header("referer", referer).send().await.map_err(wreq_err)?;
        drain(response, &mut read, false).await?;
    }
    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    let mut ws_key = [0u8; 16];
    OsRng.fill_bytes(&mut ws_key);
    let ws_key = data_encoding::BASE64.encode(&ws_key);
    let path = upgrade_path(&addr.key, hour_now(), nonce);
    let response = client
        .get(format!("{origin}{path}"))
        .header(CONNECTION, HeaderValue::from_static("Upgrade"))
        .header(UPGRADE, HeaderValue::from_static("websocket"))
        .header("pragma", HeaderValue::from_static("no-cache"))
        .header("cache-control", HeaderValue::from_static("no-cache"))
        .header("origin", HeaderValue::from_str(&origin).map_err(|_| refused("bad name"))?)
        .header("sec-websocket-version", HeaderValue::from_static("13"))
        .header("sec-websocket-key", HeaderValue::from_str(&ws_key).map_err(|_| refused("key"))?)
        .header(
            "sec-websocket-extensions",
            HeaderValue::from_static("permessage-deflate; client_max_window_bits"),
        )
        .send()
        .await
        .map_err(wreq_err)?;
    // The upgrade goes over the same connection ([`OneConnection`]); check the pin again all
    // the same.
    check_pin(&response, &addr.pin)?;
    if response.status().as_u16() != 101 {
        return Err(refused("the server did not open the tunnel"));
    }
    let accept = response.headers().get("sec-websocket-accept").and_then(|v| v.to_str().ok());
    if accept != Some(super::http1::websocket_accept(&ws_key).as_str()) {
        return Err(refused("bad upgrade answer"));
    }
    let upgraded = response.upgrade().await.map_err(wreq_err)?;
    Ok(Box::new(upgraded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pages_same_origin_subresources_are_found_in_order_once() {
        let page = br#"<!doctype html><html><head>
            <LINK rel="stylesheet" href="/style.css"><link rel=icon href=/favicon.ico>
            <script src='/app.js' defer></script><script>var x = "<img src=/no>";</script>
            <link rel=stylesheet href=//cdn.example/x.css><img alt="a" src="/logo.png">
            <img src="https://elsewhere.example/a.png"><img data-src="/lazy.png">
            <img src=/logo.png><img src="/has space.png"><img src=relative.png></head>"#;
        let found = subresources(page);
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        // (The image inside the script's string is taken too, as a preload scanner might.)
        assert_eq!(paths, ["/style.css", "/app.js", "/no", "/logo.png"]);
        assert_eq!(found[0].1, Resource::Style);
        assert_eq!(found[1].1, Resource::Script);
        assert_eq!(found[3].1, Resource::Image);
        assert!(Resource::Image.headers().iter().any(|(_, v)| v.contains("image/avif")));
        let many: String = (0..40).map(|i| format!("<img src=/{i}.png>")).collect();
        assert_eq!(subresources(many.as_bytes()).len(), MAX_SUBRESOURCES);
        assert!(subresources(b"<img src=").is_empty());
        assert!(subresources(b"no tags at all").is_empty());
        assert!(subresources(&[0xff, b'<', 0xfe, b'>']).is_empty());
    }
}
