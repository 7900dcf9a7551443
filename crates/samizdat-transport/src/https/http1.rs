//! The web server every stranger sees: HTTP/1.1 with keep-alive, answering like nginx serving
//! a static directory (the decoy site), and handing over the raw stream to the tunnel after a
//! WebSocket-style upgrade on the secret path.
//!
//! It runs over TLS (the node terminates it) or over plain TCP behind a reverse proxy that
//! terminated TLS in front of the node. Everything a prober can provoke — malformed requests,
//! random paths, a wrong or replayed token, huge headers, slow clients — gets what nginx would
//! give, within fixed limits of bytes and time.

use super::token::TokenCheck;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The largest request head taken (nginx: `large_client_header_buffers 4 8k`).
pub const MAX_HEAD: usize = 8 * 1024;
/// The largest request body read and discarded (nginx: `client_max_body_size 1m`).
pub const MAX_BODY: u64 = 1024 * 1024;
/// How long a client may take to send a request head once the connection is open.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(20);
/// How long an idle keep-alive connection stays open (nginx: `keepalive_timeout 75s`).
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// Requests served on one connection before it is closed (nginx: `keepalive_requests 1000`).
pub const MAX_REQUESTS: usize = 1000;
/// The largest decoy file served (larger files are not part of a plausible small site).
pub const MAX_FILE: u64 = 64 * 1024 * 1024;

const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC11B85";

/// nginx's default page, served when no decoy directory is given.
const WELCOME: &str = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n<style>\nhtml { color-scheme: light dark; }\nbody { width: 35em; margin: 0 auto;\nfont-family: Tahoma, Verdana, Arial, sans-serif; }\n</style>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n<p>If you see this page, the nginx web server is successfully installed and\nworking. Further configuration is required.</p>\n\n<p>For online documentation and support please refer to\n<a href=\"http://nginx.org/\">nginx.org</a>.<br/>\nCommercial support is available at\n<a href=\"http://nginx.com/\">nginx.com</a>.</p>\n\n<p><em>Thank you for using nginx.</em></p>\n</body>\n</html>\n";

/// What strangers are served.
#[derive(Debug, Clone, Default)]
pub enum Decoy {
    /// nginx's default welcome page at `/`, 404 elsewhere.
    #[default]
    Welcome,
    /// A static directory (index.html for directories), like nginx's `root`.
    Dir(PathBuf),
}

impl Decoy {
    /// A static directory decoy; the directory must exist.
    pub fn dir(path: impl AsRef<Path>) -> io::Result<Decoy> {
        let root = std::fs::canonicalize(path)?;
        if !root.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "decoy must be a directory"));
        }
        Ok(Decoy::Dir(root))
    }
}

/// What [`serve`] needs from the listener: the decoy and the token checker its connections
/// share (clones share them).
#[derive(Debug, Clone)]
pub struct ServeCtx {
    pub(crate) decoy: Arc<Decoy>,
    pub(crate) tokens: Arc<Mutex<TokenCheck>>,
}

impl ServeCtx {
    /// The web server of a node whose transport secret is `secret`.
    pub fn new(secret: [u8; 32], decoy: Decoy) -> Self {
        ServeCtx { decoy: Arc::new(decoy), tokens: Arc::new(Mutex::new(TokenCheck::new(secret))) }
    }
}

/// A request head.
#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    http10: bool,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn keep_alive(&self) -> bool {
        if self.header_has_token("connection", "close") {
            return false;
        }
        !self.http10 || self.header_has_token("connection", "keep-alive")
    }
}

fn parse_head(head: &[u8]) -> Option<Request> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut parts = lines.next()?.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || target.is_empty()
        || !target.bytes().all(|b| b.is_ascii_graphic())
    {
        return None;
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return None,
    };
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let (k, v) = line.split_once(':')?;
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return None;
        }
        // A bare CR or LF (or any control byte) in a value would be reflected into answers
        // such as a redirect's Location: refused.
        if v.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return None;
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    let request = Request { method: method.into(), target: target.into(), http10, headers };
    if !http10 && request.header("host").is_none() {
        return None;
    }
    Some(request)
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
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn reason(code: u16) -> &'static str {
    match code {
        101 => "Switching Protocols",
        200 => "OK",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Not Allowed",
        413 => "Request Entity Too Large",
        _ => "Internal Server Error",
    }
}

fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "application/javascript",
        "json" => "application/json",
        "txt" => "text/plain",
        "xml" => "text/xml",
        "svg" | "svgz" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// One response: its head and what follows it.
struct Response {
    code: u16,
    headers: Vec<(&'static str, String)>,
    body: Body,
}

enum Body {
    Bytes(Vec<u8>),
    File(tokio::fs::File, u64),
}

impl Response {
    fn error(code: u16) -> Response {
        let title = format!("{code} {}", reason(code));
        let body = format!(
            "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
        );
        Response {
            code,
            headers: vec![("Content-Type", "text/html".into())],
            body: Body::Bytes(body.into_bytes()),
        }
    }

    /// nginx's answer to a request head over its buffers.
    fn too_large_head() -> Response {
        let body = "<html>\r\n<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>Request Header Or Cookie Too Large</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
        Response { body: Body::Bytes(body.as_bytes().to_vec()), ..Response::error(400) }
    }

    fn len(&self) -> u64 {
        match &self.body {
            Body::Bytes(b) => b.len() as u64,
            Body::File(_, n) => *n,
        }
    }
}

/// The decoy's answer to `request`.
async fn decoy_response(decoy: &Decoy, request: &Request) -> Response {
    let get_or_head = request.method == "GET" || request.method == "HEAD";
    let Some(path) = normalize(&request.target) else { return Response::error(400) };
    let root = match decoy {
        Decoy::Welcome => {
            if path != "/" && path != "/index.html" {
                return Response::error(404);
            }
            if !get_or_head {
                return Response::error(405);
            }
            return Response {
                code: 200,
                headers: vec![
                    ("Content-Type", "text/html".into()),
                    ("Last-Modified", "Tue, 11 Apr 2023 01:45:34 GMT".into()),
                    ("ETag", "\"6434bbbe-267\"".into()),
                    ("Accept-Ranges", "bytes".into()),
                ],
                body: Body::Bytes(WELCOME.as_bytes().to_vec()),
            };
        }
        Decoy::Dir(root) => root,
    };
    let mut file = root.clone();
    file.extend(path.split('/').filter(|s| !s.is_empty()));
    // Symbolic links must not lead out of the decoy directory: resolved and checked before
    // anything about the target (even whether it is a directory) shows in the answer.
    let Ok(real) = tokio::fs::canonicalize(&file).await else { return Response::error(404) };
    if !real.starts_with(root) {
        return Response::error(404);
    }
    let Ok(meta) = tokio::fs::metadata(&real).await else { return Response::error(404) };
    if meta.is_dir() {
        if !path.ends_with('/') {
            let host = request.header("host").unwrap_or("localhost");
            return Response {
                code: 301,
                headers: vec![
                    ("Content-Type", "text/html".into()),
                    ("Location", format!("https://{host}{path}/")),
                ],
                ..Response::error(301)
            };
        }
        file.push("index.html");
    }
    let Ok(real) = tokio::fs::canonicalize(&file).await else { return Response::error(404) };
    if !real.starts_with(root) {
        return Response::error(404);
    }
    let Ok(meta) = tokio::fs::metadata(&real).await else { return Response::error(404) };
    if !meta.is_file() {
        return Response::error(if meta.is_dir() { 403 } else { 404 });
    }
    if meta.len() > MAX_FILE {
        return Response::error(403);
    }
    if !get_or_head {
        return Response::error(405);
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let etag = format!("\"{mtime:x}-{:x}\"", meta.len());
    let mut headers = vec![
        ("Content-Type", content_type(&real).into()),
        ("Last-Modified", http_date(mtime)),
        ("ETag", etag.clone()),
        ("Accept-Ranges", "bytes".into()),
    ];
    if request.header("if-none-match") == Some(etag.as_str()) {
        headers.retain(|(k, _)| *k != "Accept-Ranges" && *k != "Content-Type");
        return Response { code: 304, headers, body: Body::Bytes(Vec::new()) };
    }
    match tokio::fs::File::open(&real).await {
        Ok(f) => Response { code: 200, headers, body: Body::File(f, meta.len()) },
        Err(_) => Response::error(403),
    }
}

/// The request target's path, percent-decoded and with `.`/`..` resolved, or `None` for a
/// target nginx would answer with 400.
fn normalize(target: &str) -> Option<String> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return None;
    }
    let mut raw = Vec::with_capacity(path.len());
    let mut bytes = path.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            raw.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            raw.push(b);
        }
    }
    let decoded = String::from_utf8(raw).ok()?;
    if decoded.contains('\0') || decoded.contains('\\') {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match Path::new(segment).components().next() {
            _ if segment.is_empty() || segment == "." => {}
            _ if segment == ".." => {
                out.pop()?;
            }
            Some(Component::Normal(_)) => out.push(segment),
            _ => return None,
        }
    }
    let mut normal = format!("/{}", out.join("/"));
    if (decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/.."))
        && normal.len() > 1
    {
        normal.push('/');
    }
    Some(normal)
}

async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    response: Response,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nServer: nginx\r\nDate: {}\r\n",
        response.code,
        reason(response.code),
        http_date(unix_now())
    );
    let len = response.len();
    let mut after_length = Vec::new();
    for (k, v) in &response.headers {
        if *k == "Content-Type" {
            head.push_str(&format!("{k}: {v}\r\n"));
        } else {
            after_length.push((k, v));
        }
    }
    if response.code != 304 {
        head.push_str(&format!("Content-Length: {len}\r\n"));
    }
    // nginx's order: Last-Modified before Connection, Location/ETag/Accept-Ranges after it.
    if let Some(pos) = after_length.iter().position(|(k, _)| **k == "Last-Modified") {
        let (k, v) = after_length.remove(pos);
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(if keep_alive { "Connection: keep-alive\r\n" } else { "Connection: close\r\n" });
    for (k, v) in after_length {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        match response.body {
            Body::Bytes(b) => stream.write_all(&b).await?,
            Body::File(f, n) => {
                let copied = tokio::io::copy(&mut f.take(n), stream).await?;
                if copied != n {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
                }
            }
        }
    }
    stream.flush().await
}

/// Why no request head came.
#[derive(Debug)]
enum HeadError {
    /// The client closed (or sent a partial head and closed).
    Closed,
    /// Bytes no HTTP request starts with (nginx answers these at once, not at a timeout).
    Bad,
    /// More than [`MAX_HEAD`] bytes.
    TooLarge,
    /// The stream failed.
    Io(io::Error),
}

/// Whether `buf` can still become a request line: a method of capital letters, then a space.
fn plausible_start(buf: &[u8]) -> bool {
    let method_len = buf.iter().position(|&b| b == b' ').unwrap_or(buf.len());
    buf[..method_len].iter().all(u8::is_ascii_uppercase) && method_len <= 16
}

/// Reads bytes into `buf` until it holds a full request head; returns its length (including
/// the blank line).
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<usize, HeadError> {
    let mut scanned = 0;
    loop {
        if !plausible_start(buf) {
            return Err(HeadError::Bad);
        }
        if let Some(i) = buf[scanned..].windows(4).position(|w| w == b"\r\n\r\n") {
            let len = scanned + i + 4;
            return if len > MAX_HEAD { Err(HeadError::TooLarge) } else { Ok(len) };
        }
        scanned = buf.len().saturating_sub(3);
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let mut chunk = [0u8; 2048];
        let n = stream.read(&mut chunk).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn is_upgrade(request: &Request) -> bool {
    request.method == "GET"
        && !request.http10
        && request.header_has_token("connection", "upgrade")
        && request.header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        && request.header("sec-websocket-version") == Some("13")
        && request.header("sec-websocket-key").is_some_and(|k| k.len() == 24)
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn websocket_accept(key: &str) -> String {
    let digest = btls::sha::sha1(format!("{key}{WEBSOCKET_GUID}").as_bytes());
    data_encoding::BASE64.encode(&digest)
}

/// How long a closing connection keeps reading what the client still sends (nginx's
/// lingering close), so the kernel does not answer unread data with a reset that destroys the
/// response in flight.
pub const LINGER: Duration = Duration::from_secs(2);

/// Sends `response` and closes like nginx: close_notify / FIN, then drain for [`LINGER`].
async fn respond_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    response: Response,
    head_only: bool,
) -> io::Result<Option<Prefixed<S>>> {
    write_response(stream, response, head_only, false).await?;
    let _ = stream.shutdown().await;
    let (mut rest, mut sink) = (stream.take(MAX_BODY), tokio::io::sink());
    let _ = tokio::time::timeout(LINGER, tokio::io::copy(&mut rest, &mut sink)).await;
    Ok(None)
}

/// Serves one connection: decoy responses until the client closes, misbehaves or upgrades on
/// the secret path. Returns the raw tunnel stream after a valid upgrade, `None` otherwise.
pub async fn serve<S>(mut stream: S, ctx: &ServeCtx) -> io::Result<Option<Prefixed<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    for served in 0..MAX_REQUESTS {
        let wait = if served == 0 { HEAD_TIMEOUT } else { KEEPALIVE_TIMEOUT };
        let head_len = match tokio::time::timeout(wait, read_head(&mut stream, &mut buf)).await {
            Err(_) | Ok(Err(HeadError::Closed)) => return Ok(None),
            Ok(Err(HeadError::Bad)) => {
                return respond_and_close(&mut stream, Response::error(400), false).await;
            }
            Ok(Err(HeadError::TooLarge)) => {
                return respond_and_close(&mut stream, Response::too_large_head(), false).await;
            }
            Ok(Err(HeadError::Io(e))) => return Err(e),
            Ok(Ok(n)) => n,
        };
        let Some(request) = parse_head(&buf[..head_len - 2]) else {
            return respond_and_close(&mut stream, Response::error(400), false).await;
        };
        buf.drain(..head_len);
        if is_upgrade(&request) {
            let path = request.target.split('?').next().unwrap_or("");
            let hour = unix_now() / 3600;
            let ok = ctx.tokens.lock().unwrap_or_else(|e| e.into_inner()).accept(path, hour);
            if ok {
                let key = request.header("sec-websocket-key").unwrap_or("");
                let head = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nServer: nginx\r\nDate: {}\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                    http_date(unix_now()),
                    websocket_accept(key)
                );
                stream.write_all(head.as_bytes()).await?;
                stream.flush().await?;
                return Ok(Some(Prefixed::new(buf, stream)));
            }
        }
        let mut keep_alive = request.keep_alive() && served + 1 < MAX_REQUESTS;
        let response = if request.header("transfer-encoding").is_some() {
            // Bodies of unknown length are not read: answer and close.
            keep_alive = false;
            decoy_response(&ctx.decoy, &request).await
        } else {
            let len = request.header("content-length").map(|v| v.parse::<u64>());
            match len {
                Some(Err(_)) => {
                    return respond_and_close(&mut stream, Response::error(400), false).await;
                }
                Some(Ok(n)) if n > MAX_BODY => {
                    keep_alive = false;
                    Response::error(413)
                }
                Some(Ok(n)) => {
                    let r = tokio::time::timeout(HEAD_TIMEOUT, discard(&mut stream, &mut buf, n));
                    if !matches!(r.await, Ok(Ok(()))) {
                        return Ok(None);
                    }
                    decoy_response(&ctx.decoy, &request).await
                }
                None => decoy_response(&ctx.decoy, &request).await,
            }
        };
        let head_only = request.method == "HEAD";
        if !keep_alive {
            return respond_and_close(&mut stream, response, head_only).await;
        }
        write_response(&mut stream, response, head_only, true).await?;
    }
    Ok(None)
}

/// Drops `n` body bytes: first from what is buffered, then from the stream.
async fn discard<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    n: u64,
) -> io::Result<()> {
    let from_buf = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
    buf.drain(..from_buf);
    let rest = n - from_buf as u64;
    let copied = tokio::io::copy(&mut stream.take(rest), &mut tokio::io::sink()).await?;
    if copied == rest {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated body"))
    }
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
    fn paths_are_decoded_and_resolved_or_refused() {
        assert_eq!(normalize("/").as_deref(), Some("/"));
        assert_eq!(normalize("/a/./b/../c?x=1#f").as_deref(), Some("/a/c"));
        assert_eq!(normalize("/a/b/").as_deref(), Some("/a/b/"));
        assert_eq!(normalize("/a/b/..").as_deref(), Some("/a/"));
        assert_eq!(normalize("/%61%2Fb").as_deref(), Some("/a/b"));
        for bad in ["a", "/..", "/%", "/%4", "/%zz", "/%00", "/a\\b", "/%ff", "http://x/"] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }

    #[test]
    fn request_heads_parse_strictly() {
        let r =
            parse_head(b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade").unwrap();
        assert!(r.keep_alive() && r.header_has_token("connection", "upgrade"));
        assert_eq!(r.header("HOST"), Some("a"));
        let old = parse_head(b"GET / HTTP/1.0").unwrap();
        assert!(!old.keep_alive());
        assert!(parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive").unwrap().keep_alive());
        for bad in [
            &b"GET / HTTP/1.1"[..],
            b"get / HTTP/1.1\r\nHost: a",
            b"GET / HTTP/2\r\nHost: a",
            b"GET  / HTTP/1.1\r\nHost: a",
            b"GET / HTTP/1.1 x\r\nHost: a",
            b"GET / HTTP/1.1\r\nno colon",
            b"GET / HTTP/1.1\r\n: empty",
            b"GET / HTTP/1.1\r\nHo st: a",
            b"GET /\xff HTTP/1.1\r\nHost: a",
        ] {
            assert!(parse_head(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(plausible_start(b"GE") && plausible_start(b"GET /") && plausible_start(b""));
        assert!(!plausible_start(b"\x16\x03") && !plausible_start(b"get "));
        assert!(!plausible_start(&[b'A'; 17]));
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
