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

fn wreq_err(e: wreq::Error) -> io::Error {
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

fn check_pin(response: &wreq::Response, pin: &[u8; 32]) -> io::Result<()> {
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
fn hour_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
        / 3600
}

/// A connector layer that lets a client open one connection only. The pin is checked on the
/// cover page's connection before anything secret is sent; if the server (or whoever is on the
/// path) closed it, the upgrade would go out on a new, not yet checked connection, and an
/// on-path attacker terminating that one could harvest the token and replay it to the node.
/// With this layer the dial fails instead.
#[derive(Clone, Default)]
struct OneConnection(Arc<AtomicBool>);

impl<S> tower_layer::Layer<S> for OneConnection {
    type Service = OneConnectionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OneConnectionService { inner, used: self.0.clone() }
    }
}

#[derive(Clone)]
struct OneConnectionService<S> {
    inner: S,
    used: Arc<AtomicBool>,
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
        if self.used.swap(true, Ordering::SeqCst) {
            // The client asks for a connection while it also waits for its pooled one to come
            // back (whichever is first wins): wait, and fail only if the first never returns.
            return Box::pin(async {
                tokio::time::sleep(SECOND_CONNECTION_WAIT).await;
                Err(refused("the server closed the connection").into())
            });
        }
        Box::pin(self.inner.call(request))
    }
}

/// Opens a tunnel to `addr`.
pub async fn dial(addr: &HttpsAddr) -> io::Result<BoxStream> {
    tokio::time::timeout(DIAL_TIMEOUT, dial_inner(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "https: dial timed out"))?
}

async fn dial_inner(addr: &HttpsAddr) -> io::Result<BoxStream> {
    // A fresh client per dial: no session ticket, cookie or pooled connection links two
    // dials of this node together.
    let client = wreq::Client::builder()
        .emulation(emulation())
        .resolve(addr.name.clone(), addr.socket)
        .tls_cert_verification(false)
        .tls_verify_hostname(false)
        .tls_info(true)
        .no_proxy()
        .pool_max_idle_per_host(1)
        .connector_layer(OneConnection::default())
        .build()
        .map_err(wreq_err)?;
    let origin = match addr.socket.port() {
        443 => format!("https://{}", addr.name),
        port => format!("https://{}:{port}", addr.name),
    };
    // First what a browser does: load the page. Nothing secret is sent before the pin holds.
    let page = client.get(format!("{origin}/")).send().await.map_err(wreq_err)?;
    check_pin(&page, &addr.pin)?;
    let mut body = page.bytes_stream();
    let mut read = 0usize;
    while let Some(chunk) = body.next().await {
        read += chunk.map_err(wreq_err)?.len();
        if read > MAX_COVER_PAGE {
            return Err(refused("cover page too large"));
        }
    }
    drop(body);
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
