//! HTTP request/response tunnelling (`meek/IP:PORT?name=…&pin=…&key=…&front=FRONT`), for
//! CDNs and proxies that pass ordinary requests but not upgrades, with domain fronting.
//!
//! - The client speaks Chromium-shaped TLS (as [`crate::https`]) to `IP:PORT` with the SNI
//!   `front` — the front domain a censor sees — and sends `Host: name` inside, the name the
//!   CDN routes to the node's web server. `pin` is the certificate the client sees there (the
//!   CDN's or front proxy's); the client checks it on every answer.
//! - The stream rides on POSTs to one secret path (a fresh upgrade token of the node's secret,
//!   [`crate::https::upgrade_path`]): each request carries up to [`MAX_UP`] bytes the client
//!   wrote and its answer up to [`MAX_DOWN`] bytes the node wrote. A request body is
//!   `seq (u64, big-endian) ‖ flags ‖ data`, an answer body `flags ‖ data`, flag [`FIN`]
//!   meaning "this side has finished writing". Requests go one at a time, in order; one whose
//!   answer was lost is sent again with the same `seq` and the server repeats its answer.
//! - The client polls when it has nothing to send, waiting longer after each empty exchange
//!   (from [`MIN_POLL`] up to [`MAX_POLL`]); the server holds an empty request up to
//!   [`crate::https::meek::HOLD`] for data, so the node can speak first.
//! - Any `https` node serves these tunnels on its listener; strangers get the decoy site.

use crate::https::client::OneConnection;
use crate::https::{HttpsAddr, upgrade_path};
use crate::{BoxFuture, BoxStream, Listener, Transport};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use wreq::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderValue};

/// Flag: the sender has finished writing.
pub const FIN: u8 = 1;
/// Bytes of a request's MAC.
const MAC_LEN: usize = 16;
/// Bytes before the data in a request body (`seq ‖ flags ‖ mac`).
pub const REQUEST_HEAD: usize = 9 + MAC_LEN;
/// The most data one request carries upstream.
pub const MAX_UP: usize = 64 * 1024;
/// The most data one answer carries downstream.
pub const MAX_DOWN: usize = 256 * 1024;
/// The first wait for data to send after an exchange that carried none.
pub const MIN_POLL: Duration = Duration::from_millis(50);
/// The longest wait between polls of an idle tunnel.
pub const MAX_POLL: Duration = Duration::from_secs(2);
/// Times a request whose answer did not come is sent again before the tunnel is given up.
pub const RETRIES: usize = 3;
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a request that needs a new connection waits for its old one to come back to the
/// pool before the tunnel checks a new connection.
const RECONNECT_WAIT: Duration = Duration::from_secs(1);
/// Bytes buffered each way between the user of the stream and the polling task.
const WINDOW: usize = 256 * 1024;

/// A request body, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request<'a> {
    pub seq: u64,
    pub fin: bool,
    pub data: &'a [u8],
}

/// The MAC over a request's `seq ‖ flags ‖ data` under the tunnel's request key.
fn request_mac(key: &[u8; 32], head: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(head);
    h.update(data);
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&h.finalize().as_bytes()[..MAC_LEN]);
    out
}

impl<'a> Request<'a> {
    /// Parses `seq ‖ flags ‖ mac ‖ data`; `None` for a body too short or too long, unknown
    /// flags, or a MAC that `key` did not make.
    pub(crate) fn parse(body: &'a [u8], key: &[u8; 32]) -> Option<Self> {
        if body.len() < REQUEST_HEAD || body.len() > REQUEST_HEAD + MAX_UP {
            return None;
        }
        let (head, rest) = body.split_at(9);
        let (mac, data) = rest.split_at(MAC_LEN);
        if !crate::https::token::constant_time_eq(&request_mac(key, head, data), mac) {
            return None;
        }
        let seq = u64::from_be_bytes(head[..8].try_into().ok()?);
        let flags = head[8];
        if flags & !FIN != 0 {
            return None;
        }
        Some(Request { seq, fin: flags & FIN != 0, data })
    }

    pub(crate) fn encode(&self, key: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(REQUEST_HEAD + self.data.len());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.push(if self.fin { FIN } else { 0 });
        let mac = request_mac(key, &out, self.data);
        out.extend_from_slice(&mac);
        out.extend_from_slice(self.data);
        out
    }
}

/// A request body as the client sends it: `seq`, the [`FIN`] flag, the MAC under the
/// tunnel's request key ([`crate::https::request_key`] of the secret and the session's path),
/// and the data (at most [`MAX_UP`] bytes).
pub fn request_body(key: &[u8; 32], seq: u64, fin: bool, data: &[u8]) -> Vec<u8> {
    Request { seq, fin, data: &data[..data.len().min(MAX_UP)] }.encode(key)
}

/// A parsed meek address (the part after `meek/`): an [`HttpsAddr`] whose `socket` and `pin`
/// are the front's (the CDN edge or proxy), whose `name` is sent as `Host`, plus the `front`
/// domain sent as SNI.
#[derive(Clone, PartialEq, Eq)]
pub struct MeekAddr {
    /// Where to connect, the Host name, the pin of the certificate seen there, the secret.
    pub https: HttpsAddr,
    /// The TLS SNI: the front domain.
    pub front: String,
}

impl fmt::Debug for MeekAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MeekAddr(..)")
    }
}

impl MeekAddr {
    /// Parses `IP:PORT?name=N&pin=P&key=K&front=F` (parameters in any order, each once).
    pub fn parse(addr: &str) -> io::Result<MeekAddr> {
        let invalid = |what: &str| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("meek address: {what}"))
        };
        let (host, query) = addr.split_once('?').ok_or_else(|| invalid("missing ?name=…"))?;
        let mut front = None;
        let mut rest = Vec::new();
        for pair in query.split('&') {
            match pair.strip_prefix("front=") {
                Some(f) if front.is_none() => front = Some(f.to_ascii_lowercase()),
                Some(_) => return Err(invalid("repeated parameter")),
                None => rest.push(pair),
            }
        }
        let front = front.ok_or_else(|| invalid("missing front"))?;
        if !crate::https::valid_tls_name(&front) {
            return Err(invalid("front must be a DNS host name"));
        }
        let https = HttpsAddr::parse(&format!("{host}?{}", rest.join("&")))?;
        Ok(MeekAddr { https, front })
    }
}

impl fmt::Display for MeekAddr {
    /// The address without the `meek/` prefix, as [`MeekAddr::parse`] reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}&front={}", self.https, self.front)
    }
}

/// The request/response tunnel transport (`meek`). It only dials: `https` listeners serve it.
#[derive(Debug, Clone, Copy, Default)]
pub struct MeekTransport;

impl Transport for MeekTransport {
    fn name(&self) -> &'static str {
        "meek"
    }

    fn dial(&self, addr: &str) -> BoxFuture<'_, io::Result<BoxStream>> {
        let parsed = MeekAddr::parse(addr);
        Box::pin(async move {
            let addr = parsed?;
            tokio::time::timeout(crate::https::DIAL_TIMEOUT, dial(&addr))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "meek: dial timed out"))?
        })
    }

    fn listen(&self, _addr: &str) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "meek: listen with https (an https listener serves meek too)",
            ))
        })
    }
}

fn refused(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionRefused, format!("meek: {what}"))
}

/// Where a tunnel's requests go and how: enough to build a client for a new connection.
struct Target {
    front: String,
    socket: std::net::SocketAddr,
    /// Fronted tunnels speak HTTP/1.1 (see [`dial`]).
    fronted: bool,
}

impl Target {
    /// A fresh client whose one permitted connection is the next one it opens: nothing pooled
    /// or remembered links two tunnels, and no connection but the checked one can join the
    /// pool the tunnel's requests use.
    fn client(&self) -> io::Result<(wreq::Client, OneConnection)> {
        let gate = OneConnection::closed(RECONNECT_WAIT);
        gate.permit(true);
        let client = crate::https::client::pinned_client(
            &self.front,
            self.socket,
            gate.clone(),
            self.fronted,
        )?;
        Ok((client, gate))
    }
}

/// A failed request: whether sending it again may help.
fn transient(e: &io::Error) -> bool {
    !matches!(e.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::ConnectionRefused)
}

/// One tunnel's HTTP side: the client, where its requests go and how they are checked.
struct Poster {
    target: Target,
    /// The client whose connection was checked last, and its gate.
    client: std::sync::Mutex<(wreq::Client, OneConnection)>,
    origin: String,
    url: String,
    /// The Host header, when it differs from the SNI (a fronted tunnel).
    host: Option<HeaderValue>,
    pin: [u8; 32],
    /// The key requests are authenticated with.
    key: [u8; 32],
    /// The server said it closes the connection after its last answer: check a new one
    /// before the next request rather than wait for the refusal.
    closing: std::sync::atomic::AtomicBool,
}

impl Poster {
    fn with_host(&self, request: wreq::RequestBuilder) -> wreq::RequestBuilder {
        match &self.host {
            Some(host) => request.header(HOST, host.clone()),
            None => request,
        }
    }

    fn current(&self) -> (wreq::Client, OneConnection) {
        self.client.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Opens a new connection with a new client, loads the page on it and checks the pin
    /// there; later requests use that client (and so that connection).
    async fn check_connection(&self) -> io::Result<()> {
        let (client, gate) = self.target.client()?;
        let page = self.with_host(client.get(format!("{}/", self.origin)));
        let page = tokio::time::timeout(REQUEST_TIMEOUT, page.send()).await;
        gate.permit(false);
        let page = page
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "meek: request timed out"))?
            .map_err(crate::https::client::wreq_err)?;
        crate::https::client::check_pin(&page, &self.pin)?;
        let mut read = 0usize;
        crate::https::client::drain(page, &mut read, false).await?;
        *self.client.lock().unwrap_or_else(|e| e.into_inner()) = (client, gate);
        Ok(())
    }

    /// Sends one request, checks the pin and the status, and returns the answer's body.
    async fn post(&self, client: &wreq::Client, request: &Request<'_>) -> io::Result<Vec<u8>> {
        let send = self
            .with_host(client.post(&self.url))
            .header(CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))
            .body(request.encode(&self.key))
            .send();
        let response = tokio::time::timeout(REQUEST_TIMEOUT, send)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "meek: request timed out"))?
            .map_err(crate::https::client::wreq_err)?;
        crate::https::client::check_pin(&response, &self.pin)?;
        let close = response.headers().get(CONNECTION).and_then(|v| v.to_str().ok());
        if close.is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            self.closing.store(true, Ordering::SeqCst);
        }
        match response.status().as_u16() {
            200 => {}
            // The edge's own trouble (a CDN's 502, 503, 504): worth sending again.
            500..=599 => return Err(io::Error::other("meek: the server failed the request")),
            _ => return Err(refused("the server did not take the request")),
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        let read = async {
            while let Some(chunk) = futures_lite::StreamExt::next(&mut chunks).await {
                let chunk = chunk.map_err(crate::https::client::wreq_err)?;
                if body.len() + chunk.len() > 1 + MAX_DOWN {
                    return Err(refused("answer too large"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(())
        };
        tokio::time::timeout(REQUEST_TIMEOUT, read)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "meek: answer timed out"))??;
        if body.is_empty() || body[0] & !FIN != 0 {
            return Err(refused("malformed answer"));
        }
        Ok(body)
    }

    /// [`Poster::post`], sent again up to [`RETRIES`] times while it fails for the network's
    /// sake (never on a wrong pin or a refusal); a request that would need a new connection
    /// first gets one, checked.
    async fn post_retrying(&self, request: &Request<'_>) -> io::Result<Vec<u8>> {
        let mut tries = 0;
        loop {
            if self.closing.swap(false, Ordering::SeqCst) {
                if let Err(e) = self.check_connection().await {
                    if tries >= RETRIES || !transient(&e) {
                        return Err(e);
                    }
                    tries += 1;
                    continue;
                }
            }
            let (client, gate) = self.current();
            let result = self.post(&client, request).await;
            let unchecked = gate.take_refused();
            match result {
                Ok(answer) => return Ok(answer),
                // The connection was gone: check a new one, then send again on it.
                Err(_) if unchecked && tries < RETRIES => {
                    tries += 1;
                    self.closing.store(true, Ordering::SeqCst);
                }
                Err(e) if tries < RETRIES && transient(&e) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200 * tries as u64)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

async fn dial(addr: &MeekAddr) -> io::Result<BoxStream> {
    let https = &addr.https;
    // Fronting needs a Host other than the SNI, which only HTTP/1.1 can carry here (`wreq`
    // gives an HTTP/2 request the authority it connects to): a fronted tunnel offers only
    // http/1.1, an unfronted one Chromium's h2 and http/1.1, and sends no Host of its own.
    let fronted = addr.front != https.name;
    let target = Target { front: addr.front.clone(), socket: https.socket, fronted };
    let first_client = target.client()?;
    let origin = match https.socket.port() {
        443 => format!("https://{}", addr.front),
        port => format!("https://{}:{port}", addr.front),
    };
    let host = match fronted {
        true => Some(HeaderValue::from_str(&https.name).map_err(|_| refused("bad name"))?),
        false => None,
    };
    let mut nonce = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
    let path = upgrade_path(&https.key, crate::https::client::hour_now(), nonce);
    let poster = Poster {
        target,
        client: std::sync::Mutex::new(first_client),
        origin: origin.clone(),
        url: format!("{origin}{path}"),
        host,
        pin: https.pin,
        key: crate::https::request_key(&https.key, &path),
        closing: Default::default(),
    };
    // First the page, as a browser would, and the pin: nothing secret goes out before it holds.
    poster.check_connection().await?;
    // The first, empty request opens the session; a stranger's path would get the decoy's 404.
    let first = poster.post_retrying(&Request { seq: 0, fin: false, data: &[] }).await?;
    let (user, mine) = tokio::io::duplex(WINDOW);
    let failed = Arc::new(AtomicBool::new(false));
    let mut tunnel =
        Tunnel { poster, mine, seq: 1, sent_fin: false, got_fin: false, up: Vec::new() };
    let flag = failed.clone();
    tokio::spawn(async move {
        if tunnel.deliver(&first).await.is_ok() && tunnel.run().await.is_err() {
            // The user reads an error, not a clean end, after what did arrive.
            flag.store(true, Ordering::SeqCst);
            let _ = tunnel.mine.shutdown().await;
        }
    });
    Ok(Box::new(MeekStream { inner: user, failed }))
}

/// The user's end of a tunnel: a clean end of stream only when the node finished writing; a
/// tunnel that broke ends in an error.
struct MeekStream {
    inner: DuplexStream,
    failed: Arc<AtomicBool>,
}

impl tokio::io::AsyncRead for MeekStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(())))
            && buf.filled().len() == before
            && buf.remaining() > 0
            && self.failed.load(Ordering::SeqCst)
        {
            return std::task::Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "meek: the tunnel broke",
            )));
        }
        polled
    }
}

impl tokio::io::AsyncWrite for MeekStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The polling task of one tunnel.
struct Tunnel {
    poster: Poster,
    mine: DuplexStream,
    seq: u64,
    sent_fin: bool,
    got_fin: bool,
    /// Where what the user writes is gathered (kept across polls).
    up: Vec<u8>,
}

impl Tunnel {
    /// Writes an answer's data to the user; `Err` when the user is gone.
    async fn deliver(&mut self, answer: &[u8]) -> io::Result<bool> {
        let data = &answer[1..];
        if !data.is_empty() {
            self.mine.write_all(data).await?;
        }
        if answer[0] & FIN != 0 && !self.got_fin {
            self.got_fin = true;
            self.mine.shutdown().await?;
        }
        Ok(!data.is_empty())
    }

    /// Takes what the user wrote: waits up to `wait` for the first bytes, then what is there.
    /// Sets `fin` when the user finished writing.
    async fn gather(&mut self, wait: Duration, fin: &mut bool) -> Vec<u8> {
        let mut up = std::mem::take(&mut self.up);
        up.resize(MAX_UP, 0);
        let mut n = 0;
        if self.sent_fin {
            tokio::time::sleep(wait).await;
            return Vec::new();
        }
        let first = tokio::time::timeout(wait, self.mine.read(&mut up));
        match first.await {
            Ok(Ok(0)) | Ok(Err(_)) => *fin = true,
            Ok(Ok(k)) => n = k,
            Err(_) => {}
        }
        while n > 0 && n < MAX_UP && !*fin {
            match futures_lite::future::poll_once(self.mine.read(&mut up[n..])).await {
                Some(Ok(0)) | Some(Err(_)) => *fin = true,
                Some(Ok(k)) => n += k,
                None => break,
            }
        }
        up.truncate(n);
        up
    }

    /// Polls until both sides have finished (`Ok`), or the tunnel breaks (`Err`); a user who
    /// went away is `Ok` too.
    async fn run(&mut self) -> io::Result<()> {
        let mut wait = Duration::ZERO;
        loop {
            if self.sent_fin && self.got_fin {
                return Ok(());
            }
            let mut fin = false;
            let up = self.gather(wait, &mut fin).await;
            let request = Request { seq: self.seq, fin: fin && !self.sent_fin, data: &up };
            let answer = self.poster.post_retrying(&request).await?;
            let sent_data = !up.is_empty();
            self.up = up;
            self.seq += 1;
            self.sent_fin |= fin;
            let Ok(got_data) = self.deliver(&answer).await else { return Ok(()) };
            wait = if got_data || sent_data {
                Duration::ZERO
            } else if wait.is_zero() {
                MIN_POLL
            } else {
                (wait * 3 / 2).min(MAX_POLL)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_bodies_round_trip_and_bad_ones_are_refused() {
        let key = [5u8; 32];
        let r = Request { seq: 7, fin: true, data: b"abc" };
        let enc = r.encode(&key);
        assert_eq!(Request::parse(&enc, &key), Some(r));
        assert_eq!(Request::parse(&enc, &[6; 32]), None, "another key");
        assert_eq!(Request::parse(&enc[..8], &key), None);
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 1;
            assert_eq!(Request::parse(&bad, &key), None, "byte {i} altered");
        }
        let big = vec![1u8; MAX_UP];
        let full = Request { seq: 1, fin: false, data: &big }.encode(&key);
        assert!(Request::parse(&full, &key).is_some());
        let mut over = full.clone();
        over.push(0);
        assert_eq!(Request::parse(&over, &key), None);
    }

    #[test]
    fn addresses_round_trip_and_need_a_front() {
        let https = HttpsAddr {
            socket: "127.0.0.1:443".parse().unwrap(),
            name: "hidden.example.org".into(),
            pin: [1; 32],
            key: [2; 32],
        };
        let a = MeekAddr { https: https.clone(), front: "front.example.net".into() };
        assert_eq!(MeekAddr::parse(&a.to_string()).unwrap(), a);
        assert_eq!(format!("{a:?}"), "MeekAddr(..)");
        let plain = https.to_string();
        for bad in [
            plain.clone(),
            format!("{plain}&front=1.2.3.4"),
            format!("{plain}&front=a.example&front=b.example"),
            "127.0.0.1:443".to_string(),
            format!("{plain}&front=a.example&extra=1"),
        ] {
            assert_eq!(
                MeekAddr::parse(&bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad}"
            );
        }
        // The front may come anywhere in the query.
        let (host, query) = plain.split_once('?').unwrap();
        let moved = MeekAddr::parse(&format!("{host}?front=FRONT.example.net&{query}")).unwrap();
        assert_eq!(moved, a);
    }
}
