//! The web server every stranger sees: HTTP/1.1 with keep-alive, answering like nginx 1.22
//! serving a static directory (the decoy site, see [`super::decoy`]), and handing over the
//! raw stream to the tunnel after a WebSocket-style upgrade on the secret path.
//!
//! It runs over TLS (the node terminates it) or over plain TCP behind a reverse proxy that
//! terminated TLS in front of the node. Everything a prober can provoke — malformed requests
//! (parsed as nginx parses them, see [`super::parse`]), random paths, a wrong or replayed
//! token, huge headers, bodies, slow clients, plain HTTP sent to the TLS port — gets what
//! nginx would give, within nginx's limits of bytes and time.

use super::decoy::{self, Decoy};
use super::parse::{self, Head, Parsed, Refusal, Version};
use super::token::TokenCheck;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

pub use parse::MAX_HEAD;

/// The largest request body accepted (nginx: `client_max_body_size 1m`); it is read and
/// dropped.
pub const MAX_BODY: u64 = 1024 * 1024;
/// How long a client may take from opening the connection (or starting a later request) to
/// the end of a request head (nginx: `client_header_timeout 60s`).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an idle keep-alive connection stays open (nginx: `keepalive_timeout 75s`).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// Requests served on one connection before it is closed (nginx: `keepalive_requests 1000`).
pub const MAX_REQUESTS: usize = 1000;
/// How long a closing connection waits for more client bytes (nginx: `lingering_timeout`).
pub const LINGERING_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing connection reads at most (nginx: `lingering_time`).
pub const LINGERING_TIME: Duration = Duration::from_secs(30);

const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC11B85";

/// Headers nginx refuses to see twice.
const UNIQUE: [&str; 10] = [
    "if-modified-since",
    "if-unmodified-since",
    "if-match",
    "if-none-match",
    "content-length",
    "content-range",
    "if-range",
    "transfer-encoding",
    "expect",
    "authorization",
];

/// What [`serve`] needs from the listener: the decoy, the token checker its connections share
/// (clones share them) and the address clients reached.
#[derive(Debug, Clone)]
pub struct ServeCtx {
    pub(crate) decoy: Arc<Decoy>,
    pub(crate) tokens: Arc<Mutex<TokenCheck>>,
    boundary: Arc<AtomicU64>,
    local: Option<SocketAddr>,
    pub(crate) meek: Option<Arc<super::meek::Sessions>>,
    /// The client's address, when the TCP peer is the client (no proxy in front).
    pub(crate) peer: Option<std::net::IpAddr>,
}

impl ServeCtx {
    /// The web server of a node whose transport secret is `secret`.
    pub fn new(secret: [u8; 32], decoy: Decoy) -> Self {
        ServeCtx {
            decoy: Arc::new(decoy),
            tokens: Arc::new(Mutex::new(TokenCheck::new(secret))),
            boundary: Arc::new(AtomicU64::new(0)),
            local: None,
            meek: None,
            peer: None,
        }
    }

    /// The same server reached at `local` (redirects name its address and port, as nginx's
    /// do).
    pub fn at(mut self, local: SocketAddr) -> Self {
        self.local = Some(local);
        self
    }

    /// The same server, also serving request/response tunnels ([`crate::meek`]) whose far
    /// ends go to `tx`.
    pub(crate) fn with_meek(mut self, tx: tokio::sync::mpsc::Sender<crate::Incoming>) -> Self {
        self.meek = Some(Arc::new(super::meek::Sessions::new(tx)));
        self
    }
}

/// How a connection reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// HTTP as expected: inside TLS, or from the reverse proxy in front.
    Http,
    /// Plain HTTP sent to the TLS port.
    PlainOnTlsPort,
}

/// A response: its head and what follows it.
#[derive(Debug)]
pub(crate) struct Response {
    pub code: u16,
    pub content_type: Option<String>,
    pub length: Option<u64>,
    pub last_modified: Option<u64>,
    pub location: Option<String>,
    /// Headers after `Connection`, in order.
    pub after: Vec<(&'static str, String)>,
    pub body: Body,
    /// Whether nginx closes the connection after it even though it says keep-alive (412).
    pub close_after: bool,
}

/// What follows a response head.
#[derive(Debug)]
pub(crate) enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// Pieces of a file, each after its own bytes (a multipart header, or nothing), then a
    /// tail.
    File {
        file: tokio::fs::File,
        parts: Vec<(Vec<u8>, u64, u64)>,
        tail: Vec<u8>,
    },
}

fn reason(code: u16) -> &'static str {
    match code {
        101 => "Switching Protocols",
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Not Allowed",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Large",
        416 => "Requested Range Not Satisfiable",
        501 => "Not Implemented",
        505 => "HTTP Version Not Supported",
        _ => "Internal Server Error",
    }
}

fn page(title: &str, heading: &str, detail: Option<&str>) -> Vec<u8> {
    let detail = detail.map(|d| format!("<center>{d}</center>\r\n")).unwrap_or_default();
    format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{heading}</h1></center>\r\n{detail}<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    .into_bytes()
}

impl Response {
    /// nginx's error page for `code` (with `server_tokens off`).
    pub(crate) fn error(code: u16) -> Response {
        let title = format!("{code} {}", reason(code));
        Response::page(code, page(&title, &title, None))
    }

    fn page(code: u16, body: Vec<u8>) -> Response {
        Response {
            code,
            content_type: Some("text/html".into()),
            length: Some(body.len() as u64),
            last_modified: None,
            location: None,
            after: Vec::new(),
            body: Body::Bytes(body),
            close_after: false,
        }
    }

    /// nginx's answer to a request head over its buffers.
    fn too_large_head() -> Response {
        let title = "400 Request Header Or Cookie Too Large";
        Response::page(
            400,
            page(title, "400 Bad Request", Some("Request Header Or Cookie Too Large")),
        )
    }

    /// nginx's answer to plain HTTP on its TLS port.
    fn plain_http() -> Response {
        let detail = "The plain HTTP request was sent to HTTPS port";
        Response::page(400, page(&format!("400 {detail}"), "400 Bad Request", Some(detail)))
    }
}

/// The UTC calendar date `(year, month 1-12, day 1-31)` of a UNIX time (Howard Hinnant's
/// days-to-civil algorithm).
pub fn civil_date(unix: u64) -> (i64, u32, u32) {
    let z = (unix / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `Thu, 03 Dec 2026 15:00:00 GMT` for a UNIX time.
pub fn http_date(unix: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (year, month, day) = civil_date(unix);
    let secs = unix % 86_400;
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(unix / 86_400 % 7) as usize],
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[allow(clippy::disallowed_methods)] // the web server's Date header and the token hour
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: Response,
    head_only: bool,
    keep_alive: bool,
    version: Version,
) -> io::Result<()> {
    // HTTP/0.9 answers have no head.
    if version != Version::V09 {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nServer: nginx\r\nDate: {}\r\n",
            response.code,
            reason(response.code),
            http_date(unix_now())
        );
        if let Some(t) = &response.content_type {
            head.push_str(&format!("Content-Type: {t}\r\n"));
        }
        if let Some(n) = response.length {
            head.push_str(&format!("Content-Length: {n}\r\n"));
        }
        if let Some(m) = response.last_modified {
            head.push_str(&format!("Last-Modified: {}\r\n", http_date(m)));
        }
        if let Some(l) = &response.location {
            head.push_str(&format!("Location: {l}\r\n"));
        }
        head.push_str(if keep_alive {
            "Connection: keep-alive\r\n"
        } else {
            "Connection: close\r\n"
        });
        for (k, v) in &response.after {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
    }
    if !head_only {
        match response.body {
            Body::Empty => {}
            Body::Bytes(b) => stream.write_all(&b).await?,
            Body::File { mut file, parts, tail } => {
                for (before, start, len) in parts {
                    stream.write_all(&before).await?;
                    file.seek(io::SeekFrom::Start(start)).await?;
                    let copied = tokio::io::copy(&mut (&mut file).take(len), stream).await?;
                    if copied != len {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
                    }
                }
                stream.write_all(&tail).await?;
            }
        }
    }
    stream.flush().await
}

/// Reads more bytes into `buf`; `false` when the client closed or the stream failed.
async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Reads a body of `n` bytes (the first of them perhaps already in `buf`) by `deadline`;
/// `None` when the client closes or is too slow.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    n: usize,
    deadline: Instant,
) -> Option<Vec<u8>> {
    while buf.len() < n {
        if !read_more_by(stream, buf, deadline).await {
            return None;
        }
    }
    Some(buf.drain(..n).collect())
}

/// Reads a chunked body of at most `limit` bytes (its first bytes perhaps already in `buf`)
/// by `deadline`; `None` when it is malformed, too long, or the client closes or is too slow.
async fn read_chunked_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limit: usize,
    deadline: Instant,
) -> Option<Vec<u8>> {
    let mut chunked = Chunked::default();
    let mut body = Vec::new();
    loop {
        let ended = chunked.feed_into(buf, Some(&mut body)).ok()?;
        if body.len() > limit {
            return None;
        }
        if let Some(n) = ended {
            buf.drain(..n);
            return Some(body);
        }
        buf.clear();
        if !read_more_by(stream, buf, deadline).await {
            return None;
        }
    }
}

/// [`read_more`] by `deadline`; `false` also when it passes.
async fn read_more_by<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> bool {
    matches!(tokio::time::timeout_at(deadline, read_more(stream, buf)).await, Ok(true))
}

/// Reads (and drops) what the client still sends, as a closing nginx does: until it stops
/// for [`LINGERING_TIMEOUT`], closes, or [`LINGERING_TIME`] has passed.
async fn linger<S: AsyncRead + Unpin>(stream: &mut S) {
    let end = Instant::now() + LINGERING_TIME;
    let mut chunk = [0u8; 4096];
    loop {
        let wait = (Instant::now() + LINGERING_TIMEOUT).min(end);
        match tokio::time::timeout_at(wait, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

/// Sends `response` and closes like nginx: close_notify / FIN, then the lingering close, so
/// the kernel does not answer unread data with a reset that destroys the response in flight.
async fn respond_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    response: Response,
    head_only: bool,
    version: Version,
) -> io::Result<Option<Prefixed<S>>> {
    write_response(stream, response, head_only, false, version).await?;
    let _ = stream.shutdown().await;
    linger(stream).await;
    Ok(None)
}

/// A request body's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyLen {
    None,
    Length(u64),
    Chunked,
}

/// What the headers of a head mean to nginx.
#[derive(Debug, PartialEq, Eq)]
struct Meaning {
    /// The normalized path.
    path: Vec<u8>,
    /// The server name: the target's host, or the Host header's.
    host: Option<String>,
    keep_alive: bool,
    body: BodyLen,
}

/// `ngx_http_validate_host`: the host lowercased, without port or trailing dot.
fn validate_host(raw: &[u8]) -> Option<String> {
    #[derive(PartialEq)]
    enum State {
        Usual,
        Literal,
        Rest,
    }
    let mut state = State::Usual;
    let mut dot_pos = raw.len();
    let mut host_len = raw.len();
    for (i, &ch) in raw.iter().enumerate() {
        match ch {
            b'.' => {
                if dot_pos + 1 == i {
                    return None;
                }
                dot_pos = i;
            }
            b':' if state == State::Usual => {
                host_len = i;
                state = State::Rest;
            }
            b'[' if i == 0 => state = State::Literal,
            b']' if state == State::Literal => {
                host_len = i + 1;
                state = State::Rest;
            }
            b':' | b'[' | b']' => {}
            b'/' => return None,
            _ if ch <= 0x20 || ch == 0x7f => return None,
            _ => {}
        }
    }
    if host_len > 0 && dot_pos + 1 == host_len {
        host_len -= 1;
    }
    if host_len == 0 {
        return None;
    }
    Some(String::from_utf8_lossy(&raw[..host_len]).to_ascii_lowercase())
}

fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// What nginx makes of a parsed head before any module sees it: the status it refuses it
/// with, or its meaning.
fn meaning(head: &Head) -> Result<Meaning, u16> {
    let path = decoy::normalize(&head.path).ok_or(400u16)?;
    let mut host = match &head.uri_host {
        Some(h) => Some(validate_host(h).ok_or(400u16)?),
        None => None,
    };
    let mut host_header = false;
    let mut connection = None;
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &head.headers {
        let name = name.as_str();
        if name == "host" {
            if host_header {
                return Err(400);
            }
            host_header = true;
            let valid = validate_host(value).ok_or(400u16)?;
            host.get_or_insert(valid);
        } else if name == "connection" {
            if contains_ignore_case(value, b"close") {
                connection = Some(false);
            } else if contains_ignore_case(value, b"keep-alive") {
                connection = Some(true);
            }
        } else if UNIQUE.contains(&name) {
            if seen.contains(&name) {
                return Err(400);
            }
            seen.push(name);
        }
    }
    let first = |n: &str| head.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_slice());
    if !host_header && head.version >= Version::V11 {
        return Err(400);
    }
    let mut body = BodyLen::None;
    if let Some(v) = first("content-length") {
        let text = std::str::from_utf8(v).map_err(|_| 400u16)?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(400);
        }
        body = BodyLen::Length(text.parse().map_err(|_| 400u16)?);
    }
    if let Some(v) = first("transfer-encoding") {
        if head.version < Version::V11 {
            return Err(400);
        }
        if !v.eq_ignore_ascii_case(b"chunked") {
            return Err(501);
        }
        if body != BodyLen::None {
            return Err(400);
        }
        body = BodyLen::Chunked;
    }
    if head.method == b"CONNECT" || head.method == b"TRACE" {
        return Err(405);
    }
    let keep_alive = connection.unwrap_or(head.version >= Version::V11);
    Ok(Meaning { path, host, keep_alive, body })
}

fn has_token(head: &Head, name: &str, token: &[u8]) -> bool {
    head.headers
        .iter()
        .filter(|(k, _)| k == name)
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

fn is_upgrade(head: &Head) -> bool {
    let first = |n: &str| head.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_slice());
    head.method == b"GET"
        && head.version >= Version::V11
        && has_token(head, "connection", b"upgrade")
        && first("upgrade").is_some_and(|u| u.eq_ignore_ascii_case(b"websocket"))
        && first("sec-websocket-version") == Some(b"13")
        && first("sec-websocket-key").is_some_and(|k| k.len() == 24)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn websocket_accept(key: &str) -> String {
    let digest = btls::sha::sha1(format!("{key}{WEBSOCKET_GUID}").as_bytes());
    data_encoding::BASE64.encode(&digest)
}

/// Skips a chunked body (`ngx_http_parse_chunked`).
#[derive(Debug, Default)]
struct Chunked {
    state: ChunkState,
    size: u64,
    total: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Start,
    Size,
    Extension,
    SizeLf,
    Data,
    AfterData,
    AfterDataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    EndLf,
}

impl Chunked {
    /// Feeds bytes; `Ok(Some(n))` when the body ended after `data[..n]`, `Err` for a body
    /// nginx refuses (malformed, or more than [`MAX_BODY`]).
    fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, ()> {
        self.feed_into(data, None)
    }

    /// [`Chunked::feed`], appending the body's data to `out` if given.
    fn feed_into(
        &mut self,
        data: &[u8],
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<Option<usize>, ()> {
        use ChunkState as S;
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            i += 1;
            self.state = match (self.state, b) {
                (S::Start, _) => {
                    self.size = u64::from((b as char).to_digit(16).ok_or(())?);
                    S::Size
                }
                (S::Size, b'\r') | (S::Extension, b'\r') => S::SizeLf,
                (S::Size, b'\n') | (S::Extension, b'\n') | (S::SizeLf, b'\n') => {
                    if self.size == 0 {
                        S::TrailerStart
                    } else {
                        self.total += self.size;
                        if self.total > MAX_BODY {
                            return Err(());
                        }
                        S::Data
                    }
                }
                (S::Size, b';' | b' ' | b'\t') => S::Extension,
                (S::Size, _) => {
                    let d = u64::from((b as char).to_digit(16).ok_or(())?);
                    if self.size > (u64::MAX >> 4) {
                        return Err(());
                    }
                    self.size = self.size * 16 + d;
                    S::Size
                }
                (S::Extension, _) => S::Extension,
                (S::Data, _) => {
                    let take =
                        usize::try_from(self.size).unwrap_or(usize::MAX).min(data.len() - i + 1);
                    if let Some(out) = out.as_deref_mut() {
                        out.extend_from_slice(&data[i - 1..i - 1 + take]);
                    }
                    i += take - 1;
                    self.size -= take as u64;
                    if self.size == 0 { S::AfterData } else { S::Data }
                }
                (S::AfterData, b'\r') => S::AfterDataLf,
                (S::AfterData, b'\n') | (S::AfterDataLf, b'\n') => S::Start,
                (S::TrailerStart, b'\r') => S::EndLf,
                (S::TrailerStart, b'\n') | (S::EndLf, b'\n') => return Ok(Some(i)),
                (S::TrailerStart, _) | (S::Trailer, _) if b != b'\r' && b != b'\n' => S::Trailer,
                (S::Trailer, b'\r') => S::TrailerLf,
                (S::Trailer, b'\n') | (S::TrailerLf, b'\n') => S::TrailerStart,
                _ => return Err(()),
            };
        }
        Ok(None)
    }
}

/// A request body being read and dropped.
enum Discard {
    Length(u64),
    Chunked(Chunked),
    Done,
}

impl Discard {
    fn new(body: BodyLen) -> Self {
        match body {
            BodyLen::None | BodyLen::Length(0) => Discard::Done,
            BodyLen::Length(n) => Discard::Length(n),
            BodyLen::Chunked => Discard::Chunked(Chunked::default()),
        }
    }

    /// Drops what of the body `buf` holds (leaving what follows it); `false` for a body
    /// nginx refuses.
    fn take_buffered(&mut self, buf: &mut Vec<u8>) -> bool {
        match self {
            Discard::Done => true,
            Discard::Length(n) => {
                let k = usize::try_from(*n).unwrap_or(usize::MAX).min(buf.len());
                buf.drain(..k);
                *n -= k as u64;
                if *n == 0 {
                    *self = Discard::Done;
                }
                true
            }
            Discard::Chunked(c) => match c.feed(buf) {
                Ok(Some(k)) => {
                    buf.drain(..k);
                    *self = Discard::Done;
                    true
                }
                Ok(None) => {
                    buf.clear();
                    true
                }
                Err(()) => false,
            },
        }
    }

    /// Reads the rest of the body with nginx's lingering timeouts; `false` when the
    /// connection must close instead.
    async fn finish<S: AsyncRead + Unpin>(&mut self, stream: &mut S, buf: &mut Vec<u8>) -> bool {
        let end = Instant::now() + LINGERING_TIME;
        while !matches!(self, Discard::Done) {
            let wait = (Instant::now() + LINGERING_TIMEOUT).min(end);
            if !read_more_by(stream, buf, wait).await {
                return false;
            }
            if !self.take_buffered(buf) {
                return false;
            }
        }
        true
    }
}

/// Serves one connection: decoy responses until the client closes, misbehaves or upgrades on
/// the secret path. Returns the raw tunnel stream after a valid upgrade, `None` otherwise.
pub async fn serve<S>(stream: S, ctx: &ServeCtx) -> io::Result<Option<Prefixed<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    serve_conn(stream, ctx, Mode::Http, Instant::now()).await
}

/// [`serve`] for a connection that opened at `opened` and came in as `mode` says.
pub(crate) async fn serve_conn<S>(
    mut stream: S,
    ctx: &ServeCtx,
    mode: Mode,
    opened: Instant,
) -> io::Result<Option<Prefixed<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    let mut deadline = opened + HEAD_TIMEOUT;
    for served in 0..MAX_REQUESTS {
        if served > 0 {
            if buf.is_empty() {
                let idle =
                    tokio::time::timeout(KEEPALIVE_TIMEOUT, read_more(&mut stream, &mut buf));
                if !matches!(idle.await, Ok(true)) {
                    return Ok(None);
                }
            }
            deadline = Instant::now() + HEAD_TIMEOUT;
        }
        let (head, len) = loop {
            match parse::parse(&buf) {
                Parsed::Partial => {
                    // Empty lines before a request are skipped, so a client sending nothing
                    // else must not grow the buffer: drop them (nginx reuses its buffer too).
                    if buf.iter().all(|&b| b == b'\r' || b == b'\n') {
                        buf.clear();
                    }
                    // The parser refuses heads past MAX_HEAD; never hold more whatever it says.
                    if buf.len() > MAX_HEAD + 4096 {
                        return Ok(None);
                    }
                    let more = tokio::time::timeout_at(deadline, read_more(&mut stream, &mut buf));
                    if !matches!(more.await, Ok(true)) {
                        return Ok(None);
                    }
                }
                Parsed::Done(head, len) => break (head, len),
                Parsed::Refused(refusal, http09) => {
                    let response = match refusal {
                        Refusal::Bad => Response::error(400),
                        Refusal::UriTooLarge => Response::error(414),
                        Refusal::HeaderTooLarge => Response::too_large_head(),
                        Refusal::Version => Response::error(505),
                    };
                    let version = if http09 { Version::V09 } else { Version::V11 };
                    return respond_and_close(&mut stream, response, false, version).await;
                }
            }
        };
        buf.drain(..len);
        let head_only = head.method == b"HEAD";
        let mut meaning = match meaning(&head) {
            Ok(m) => m,
            Err(code) => {
                return respond_and_close(
                    &mut stream,
                    Response::error(code),
                    head_only,
                    head.version,
                )
                .await;
            }
        };
        if mode == Mode::PlainOnTlsPort {
            // nginx reads a body it was promised before it closes.
            let answer = Response::plain_http();
            write_response(&mut stream, answer, head_only, false, head.version).await?;
            let mut body = Discard::new(meaning.body);
            if body.take_buffered(&mut buf) && body.finish(&mut stream, &mut buf).await {
                let _ = stream.shutdown().await;
                linger(&mut stream).await;
            }
            return Ok(None);
        }
        if is_upgrade(&head) {
            let path = String::from_utf8_lossy(&head.path);
            let hour = unix_now() / 3600;
            let ok = ctx.tokens.lock().unwrap_or_else(|e| e.into_inner()).accept(&path, hour);
            if ok {
                let key = head.headers.iter().find(|(k, _)| k == "sec-websocket-key");
                let key = key.map(|(_, v)| String::from_utf8_lossy(v)).unwrap_or_default();
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nServer: nginx\r\nDate: {}\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    http_date(unix_now()),
                    websocket_accept(&key)
                );
                stream.write_all(answer.as_bytes()).await?;
                stream.flush().await?;
                return Ok(Some(Prefixed::new(buf, stream)));
            }
        }
        if head.method == b"POST" {
            if let Some(sessions) = &ctx.meek {
                let path = String::from_utf8_lossy(&head.path).into_owned();
                if let Some(entry) = sessions.find_or_open(&path, &ctx.tokens, ctx.peer) {
                    let body = match meaning.body {
                        BodyLen::Length(n) if n <= super::meek::MAX_REQUEST_BODY => {
                            let end = Instant::now() + HEAD_TIMEOUT;
                            let Some(body) =
                                read_body(&mut stream, &mut buf, n as usize, end).await
                            else {
                                return Ok(None);
                            };
                            Some(body)
                        }
                        BodyLen::Chunked => {
                            let end = Instant::now() + HEAD_TIMEOUT;
                            let limit = super::meek::MAX_REQUEST_BODY as usize;
                            let read = read_chunked_body(&mut stream, &mut buf, limit, end);
                            let Some(body) = read.await else { return Ok(None) };
                            // Read whatever it holds: nothing of it is left for the decoy.
                            meaning.body = BodyLen::None;
                            Some(body)
                        }
                        _ => None,
                    };
                    // A body the session's key did not make: a stranger who saw the path (a
                    // proxy, its logs) gets what any POST there gets, and the session is
                    // untouched.
                    match body {
                        Some(body) if entry.authentic(&body) => {
                            let keep_alive = meaning.keep_alive && served + 1 < MAX_REQUESTS;
                            match meek_answer(&mut stream, &entry, &body, keep_alive, head.version)
                                .await?
                            {
                                MeekServed::KeepAlive => continue,
                                MeekServed::Closed => return Ok(None),
                                MeekServed::Refused => {
                                    sessions.close(&path);
                                    return Ok(None);
                                }
                            }
                        }
                        // Left for the decoy below, as it came (a chunked one is gone already).
                        Some(body) if meaning.body != BodyLen::None => {
                            drop(buf.splice(0..0, body));
                        }
                        Some(_) => {}
                        None => {}
                    }
                }
            }
        }
        let response = match meaning.body {
            BodyLen::Length(n) if n > MAX_BODY => Response::error(413),
            _ => {
                let local = ctx.local.map(|a| a.ip().to_string());
                let host = match (&meaning.host, &ctx.local) {
                    (Some(h), _) => h.clone(),
                    (None, Some(a)) if a.is_ipv6() => format!("[{}]", a.ip()),
                    (None, _) => local.unwrap_or_else(|| "localhost".into()),
                };
                let request = decoy::Request {
                    method: &head.method,
                    version: head.version,
                    host: &host,
                    port: ctx.local.map_or(443, |a| a.port()),
                    args: head.args.as_deref(),
                    headers: &head.headers,
                };
                decoy::respond(&ctx.decoy, &ctx.boundary, &request, &meaning.path).await
            }
        };
        // Like nginx, look at the body bytes already here before answering: a malformed
        // chunked body makes the answer close the connection.
        let mut body = Discard::new(meaning.body);
        let body_ok = body.take_buffered(&mut buf);
        let keep_alive = meaning.keep_alive
            && body_ok
            && head.version != Version::V09
            && served + 1 < MAX_REQUESTS
            && !matches!(response.code, 400 | 413 | 414 | 500 | 501);
        let close_after = response.close_after;
        write_response(&mut stream, response, head_only, keep_alive, head.version).await?;
        if !body_ok {
            let _ = stream.shutdown().await;
            linger(&mut stream).await;
            return Ok(None);
        }
        if !body.finish(&mut stream, &mut buf).await {
            return Ok(None);
        }
        if !keep_alive || close_after {
            let _ = stream.shutdown().await;
            linger(&mut stream).await;
            return Ok(None);
        }
    }
    Ok(None)
}

/// What became of a request of a request/response tunnel.
enum MeekServed {
    /// Answered; the connection stays open.
    KeepAlive,
    /// Answered; the connection is closed.
    Closed,
    /// The request broke the protocol: refused (400), the connection closed.
    Refused,
}

/// Answers one authentic request of a tunnel session.
async fn meek_answer<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    entry: &super::meek::Entry,
    body: &[u8],
    keep_alive: bool,
    version: Version,
) -> io::Result<MeekServed> {
    let Some(answer) = super::meek::exchange(entry, body).await else {
        respond_and_close(stream, Response::error(400), false, version).await?;
        return Ok(MeekServed::Refused);
    };
    let response = Response {
        code: 200,
        content_type: Some("application/octet-stream".into()),
        length: Some(answer.len() as u64),
        last_modified: None,
        location: None,
        after: vec![("Cache-Control", "no-store".into())],
        body: Body::Bytes(answer),
        close_after: false,
    };
    write_response(stream, response, false, keep_alive, version).await?;
    if keep_alive {
        return Ok(MeekServed::KeepAlive);
    }
    let _ = stream.shutdown().await;
    linger(stream).await;
    Ok(MeekServed::Closed)
}

/// A stream that first yields bytes already read past a request head.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `prefix`, then `inner`.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed { prefix, pos: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(out.remaining());
            out.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dates_are_formatted_like_http_servers_do() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(1_796_311_725), "Thu, 03 Dec 2026 15:28:45 GMT");
        assert_eq!(civil_date(4_102_444_800), (2100, 1, 1));
    }

    #[test]
    fn hosts_are_validated_like_nginx() {
        let v = |h: &str| validate_host(h.as_bytes());
        assert_eq!(v("WWW.Example.org.").as_deref(), Some("www.example.org"));
        assert_eq!(v("example.org:8443").as_deref(), Some("example.org"));
        assert_eq!(v("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(v(".lead").as_deref(), Some(".lead"));
        for bad in ["", "a..b", "a/b", "a b", "a\x01", ":80", ".", "x:1..2"] {
            assert_eq!(v(bad), None, "{bad:?}");
        }
    }

    fn head(text: &str) -> Head {
        match parse::parse(text.as_bytes()) {
            Parsed::Done(h, _) => h,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn heads_mean_what_they_mean_to_nginx() {
        let m =
            meaning(&head("GET /a/../b HTTP/1.1\r\nHost: H\r\nConnection: close\r\n\r\n")).unwrap();
        assert_eq!(
            (m.path.as_slice(), m.host.as_deref(), m.keep_alive),
            (&b"/b"[..], Some("h"), false)
        );
        let m = meaning(&head("GET http://U/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"))
            .unwrap();
        assert_eq!(
            (m.host.as_deref(), m.keep_alive, m.body),
            (Some("u"), true, BodyLen::Length(5))
        );
        let m = meaning(&head("POST / HTTP/1.0\r\nConnection: x-keep-alive\r\n\r\n")).unwrap();
        assert!(m.keep_alive && m.host.is_none());
        let m = meaning(&head("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n"))
            .unwrap();
        assert_eq!(m.body, BodyLen::Chunked);
        for (text, code) in [
            ("GET /../x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: h\r\nHost: h\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a..b\r\n\r\n", 400),
            ("GET http://a..b/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: h\r\nIf-Match: a\r\nIf-Match: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            ("GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
                400,
            ),
            ("TRACE / HTTP/1.1\r\nHost: h\r\n\r\n", 405),
        ] {
            assert_eq!(meaning(&head(text)), Err(code), "{text:?}");
        }
    }

    #[test]
    fn chunked_bodies_are_skipped_exactly() {
        let body = b"3\r\nabc\r\n10;ext=1\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        assert_eq!(Chunked::default().feed(body), Ok(Some(body.len() - 4)));
        // Byte by byte gives the same end.
        let mut c = Chunked::default();
        let end = body.iter().position(|b| c.feed(std::slice::from_ref(b)).unwrap().is_some());
        assert_eq!(end, Some(body.len() - 5));
        assert_eq!(Chunked::default().feed(b"0\n\n"), Ok(Some(3)));
        for bad in [&b"x\r\n"[..], b"3\r\nabcX", b"3\rX", b"0\r\n\rX", b"fffffffffffffffff\r\n"] {
            assert_eq!(Chunked::default().feed(bad), Err(()), "{bad:?}");
        }
        let big = format!("{:x}\r\n", MAX_BODY + 1);
        assert_eq!(Chunked::default().feed(big.as_bytes()), Err(()));
    }

    /// A client that sends only empty lines keeps the server's buffer empty, and a request
    /// after them is still answered.
    #[tokio::test]
    async fn endless_empty_lines_do_not_grow_the_buffer() {
        let ctx = ServeCtx::new([1; 32], Decoy::Welcome);
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let serving = tokio::spawn(async move { serve(server, &ctx).await });
        let lines = vec![b'\n'; 1 << 16];
        // Far more than the largest head: nginx would wait, and so do we.
        for _ in 0..(4 * MAX_HEAD * 16 / lines.len()) {
            client.write_all(&lines).await.unwrap();
        }
        client.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\n"), "{:?}", String::from_utf8_lossy(&out));
        client.shutdown().await.unwrap();
        assert!(serving.await.unwrap().unwrap().is_none());
    }

    #[tokio::test]
    async fn a_prefixed_stream_yields_its_prefix_first() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut p = Prefixed::new(b"head".to_vec(), a);
        b.write_all(b"tail").await.unwrap();
        let mut out = [0u8; 8];
        p.read_exact(&mut out).await.unwrap();
        assert_eq!(&out, b"headtail");
        p.write_all(b"up").await.unwrap();
        p.flush().await.unwrap();
        p.shutdown().await.unwrap();
        let mut back = Vec::new();
        b.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"up");
    }
}
