//! The decoy web server against its model: a real nginx serving the same directory with the
//! same certificate gets the same probes, and every answer (status line, headers, body, and
//! whether the connection stays open) must be the same byte for byte, `Date:` aside.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

mod common;

use samizdat_transport::https::{Decoy, HttpsAddr, HttpsServerConfig, ServerCert};
use samizdat_transport::{HttpsTransport, Transport};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const NAME: &str = "www.example.org";

/// How long a connection may stay quiet before the answer is taken as complete.
const QUIET: Duration = Duration::from_millis(2000);

/// Sends `probe` and reads until the server closes or stays quiet for [`QUIET`].
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, probe: &[u8], port: u16) -> String {
    if s.write_all(probe).await.is_err() {
        return "<write failed>".into();
    }
    let mut out = Vec::new();
    let mut chunk = [0u8; 16384];
    let closed = loop {
        match tokio::time::timeout(QUIET, s.read(&mut chunk)).await {
            Err(_) => break "<open>",
            Ok(Ok(0)) => break "<closed>",
            Ok(Err(_)) => break "<reset>",
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
        }
    };
    let mut text = String::from_utf8_lossy(&out).replace(&format!(":{port}/"), ":PORT/");
    // Multipart boundaries count up per server; probes run in no fixed order.
    for n in 1..100 {
        text = text.replace(&format!("{n:020}"), "BOUNDARY");
    }
    let text: Vec<&str> =
        text.split("\r\n").map(|l| if l.starts_with("Date: ") { "Date: -" } else { l }).collect();
    format!("{}{closed}", text.join("\r\n"))
}

async fn over_tls(socket: SocketAddr, probe: Vec<u8>) -> String {
    answer(common::raw_tls(socket, NAME).await, &probe, socket.port()).await
}

async fn over_tcp(socket: SocketAddr, probe: Vec<u8>) -> String {
    answer(TcpStream::connect(socket).await.unwrap(), &probe, socket.port()).await
}

fn probes(date: &str) -> Vec<(&'static str, Vec<u8>)> {
    let h = format!("Host: {NAME}\r\n");
    let long = "a".repeat(9000);
    let mut p: Vec<(&'static str, String)> = vec![
        ("get", format!("GET / HTTP/1.1\r\n{h}\r\n")),
        ("get close", format!("GET / HTTP/1.1\r\n{h}Connection: close\r\n\r\n")),
        ("head", format!("HEAD / HTTP/1.1\r\n{h}\r\n")),
        ("index", format!("GET /index.html HTTP/1.1\r\n{h}\r\n")),
        ("index.htm", format!("GET /index.htm HTTP/1.1\r\n{h}\r\n")),
        ("missing", format!("GET /missing HTTP/1.1\r\n{h}\r\n")),
        ("dir no slash", format!("GET /sub HTTP/1.1\r\n{h}\r\n")),
        ("dir no slash query", format!("GET /sub?x=1 HTTP/1.1\r\n{h}\r\n")),
        ("dir", format!("GET /sub/ HTTP/1.1\r\n{h}\r\n")),
        ("dir without index", format!("GET /empty/ HTTP/1.1\r\n{h}\r\n")),
        ("file in dir", format!("GET /sub/a.css HTTP/1.1\r\n{h}\r\n")),
        ("file slash", format!("GET /index.html/ HTTP/1.1\r\n{h}\r\n")),
        ("query", format!("GET /?a=b HTTP/1.1\r\n{h}\r\n")),
        ("escaped", format!("GET /%69ndex.html HTTP/1.1\r\n{h}\r\n")),
        ("double slash", format!("GET //index.html HTTP/1.1\r\n{h}\r\n")),
        ("dot dot", format!("GET /../index.html HTTP/1.1\r\n{h}\r\n")),
        ("dot segment", format!("GET /sub/../index.html HTTP/1.1\r\n{h}\r\n")),
        ("range", format!("GET / HTTP/1.1\r\n{h}Range: bytes=0-3\r\n\r\n")),
        ("bad range", format!("GET / HTTP/1.1\r\n{h}Range: bytes=900-\r\n\r\n")),
        (
            "ims future",
            format!(
                "GET / HTTP/1.1\r\n{h}If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n\r\n"
            ),
        ),
        (
            "ims past",
            format!(
                "GET / HTTP/1.1\r\n{h}If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n"
            ),
        ),
        ("inm star", format!("GET / HTTP/1.1\r\n{h}If-None-Match: *\r\n\r\n")),
        ("post", format!("POST / HTTP/1.1\r\n{h}Content-Length: 3\r\n\r\nabc")),
        ("post missing", format!("POST /missing HTTP/1.1\r\n{h}Content-Length: 3\r\n\r\nabc")),
        (
            "post chunked",
            format!(
                "POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            ),
        ),
        ("put", format!("PUT / HTTP/1.1\r\n{h}Content-Length: 0\r\n\r\n")),
        ("delete", format!("DELETE / HTTP/1.1\r\n{h}\r\n")),
        ("options", format!("OPTIONS / HTTP/1.1\r\n{h}\r\n")),
        ("options star", format!("OPTIONS * HTTP/1.1\r\n{h}\r\n")),
        ("trace", format!("TRACE / HTTP/1.1\r\n{h}\r\n")),
        ("connect", format!("CONNECT {NAME}:443 HTTP/1.1\r\n{h}\r\n")),
        ("unknown method", format!("FOO / HTTP/1.1\r\n{h}\r\n")),
        ("long method", format!("ABCDEFGHIJKLMNOPQRSTUVWXYZ / HTTP/1.1\r\n{h}\r\n")),
        ("lowercase method", format!("get / HTTP/1.1\r\n{h}\r\n")),
        ("http/1.0", "GET / HTTP/1.0\r\n\r\n".into()),
        ("http/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".into()),
        ("http/0.9", "GET /\r\n".into()),
        ("http/2.0", format!("GET / HTTP/2.0\r\n{h}\r\n")),
        ("http/1.2", format!("GET / HTTP/1.2\r\n{h}\r\n")),
        ("http/9.9", format!("GET / HTTP/9.9\r\n{h}\r\n")),
        ("no host", "GET / HTTP/1.1\r\n\r\n".into()),
        ("two hosts", format!("GET / HTTP/1.1\r\n{h}{h}\r\n")),
        ("bad host", "GET / HTTP/1.1\r\nHost: a..b\r\n\r\n".into()),
        ("other host", "GET / HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n".into()),
        (
            "two lengths",
            format!("POST / HTTP/1.1\r\n{h}Content-Length: 1\r\nContent-Length: 1\r\n\r\nab"),
        ),
        ("bad length", format!("POST / HTTP/1.1\r\n{h}Content-Length: x\r\n\r\n")),
        ("bare lf", format!("GET / HTTP/1.1\n{}\n\n", h.trim_end())),
        ("leading crlf", format!("\r\n\r\nGET / HTTP/1.1\r\n{h}\r\n")),
        ("absolute form", format!("GET https://{NAME}/ HTTP/1.1\r\n{h}\r\n")),
        ("colonless header", format!("GET / HTTP/1.1\r\n{h}Nonsense\r\n\r\n")),
        ("invalid header name", format!("GET / HTTP/1.1\r\n{h}Bad(Name): x\r\n\r\n")),
        ("high bytes in header", format!("GET / HTTP/1.1\r\n{h}X-A: \u{e9}\r\n\r\n")),
        ("high bytes in path", format!("GET /\u{e9} HTTP/1.1\r\n{h}\r\n")),
        ("space in path", format!("GET /a b HTTP/1.1\r\n{h}\r\n")),
        ("long uri", format!("GET /{long} HTTP/1.1\r\n{h}\r\n")),
        ("long header", format!("GET / HTTP/1.1\r\n{h}X-A: {long}\r\n\r\n")),
        ("pipelined", format!("GET / HTTP/1.1\r\n{h}\r\nGET /missing HTTP/1.1\r\n{h}\r\n")),
        (
            "expect",
            format!("POST / HTTP/1.1\r\n{h}Expect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
        ),
        (
            "upgrade elsewhere",
            format!(
                "GET /x HTTP/1.1\r\n{h}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
        ),
        (
            "two te",
            format!(
                "POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            ),
        ),
        (
            "te and length",
            format!(
                "POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
            ),
        ),
        ("te gzip", format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: gzip\r\n\r\n")),
        ("http/1.0 te", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into()),
        (
            "two ims",
            format!("GET / HTTP/1.1\r\n{h}If-Modified-Since: x\r\nIf-Modified-Since: y\r\n\r\n"),
        ),
        (
            "two inm",
            format!("GET / HTTP/1.1\r\n{h}If-None-Match: \"x\"\r\nIf-None-Match: *\r\n\r\n"),
        ),
        (
            "two ranges",
            format!("GET / HTTP/1.1\r\n{h}Range: bytes=0-1\r\nRange: bytes=2-3\r\n\r\n"),
        ),
        ("multi range", format!("GET / HTTP/1.1\r\n{h}Range: bytes=0-1,4-5\r\n\r\n")),
        ("suffix range", format!("GET / HTTP/1.1\r\n{h}Range: bytes=-5\r\n\r\n")),
        ("open range", format!("GET / HTTP/1.1\r\n{h}Range: bytes=30-\r\n\r\n")),
        ("junk range", format!("GET / HTTP/1.1\r\n{h}Range: bytes=x-y\r\n\r\n")),
        ("other unit range", format!("GET / HTTP/1.1\r\n{h}Range: items=0-1\r\n\r\n")),
        ("head range", format!("HEAD / HTTP/1.1\r\n{h}Range: bytes=0-3\r\n\r\n")),
        (
            "if-range stale",
            format!("GET / HTTP/1.1\r\n{h}Range: bytes=0-3\r\nIf-Range: \"nope\"\r\n\r\n"),
        ),
        ("if-match miss", format!("GET / HTTP/1.1\r\n{h}If-Match: \"nope\"\r\n\r\n")),
        ("if-match star", format!("GET / HTTP/1.1\r\n{h}If-Match: *\r\n\r\n")),
        (
            "ius past",
            format!(
                "GET / HTTP/1.1\r\n{h}If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n"
            ),
        ),
        (
            "two connection",
            format!("GET / HTTP/1.1\r\n{h}Connection: close\r\nConnection: keep-alive\r\n\r\n"),
        ),
        ("delete dir", format!("DELETE /sub/ HTTP/1.1\r\n{h}\r\n")),
        ("options dir", format!("OPTIONS /sub/ HTTP/1.1\r\n{h}\r\n")),
        ("delete missing", format!("DELETE /missing HTTP/1.1\r\n{h}\r\n")),
        ("missing dir", format!("GET /missing/ HTTP/1.1\r\n{h}\r\n")),
        ("post dir", format!("POST /sub/ HTTP/1.1\r\n{h}Content-Length: 0\r\n\r\n")),
        ("post empty dir", format!("POST /empty/ HTTP/1.1\r\n{h}Content-Length: 0\r\n\r\n")),
        ("big length", format!("POST / HTTP/1.1\r\n{h}Content-Length: 2000000\r\n\r\n")),
        ("upper ext", format!("GET /sub/A.CSS HTTP/1.1\r\n{h}\r\n")),
        ("folded header", format!("GET / HTTP/1.1\r\n{h}X-A: a\r\n b\r\n\r\n")),
        ("space in header name", format!("GET / HTTP/1.1\r\n{h}X A: a\r\n\r\n")),
        ("underscore header", format!("GET / HTTP/1.1\r\n{h}X_A: a\r\n\r\n")),
        ("tab in path", format!("GET /\t HTTP/1.1\r\n{h}\r\n")),
        ("control in header", format!("GET / HTTP/1.1\r\n{h}X-A: a\x01b\r\n\r\n")),
        ("cr in header", format!("GET / HTTP/1.1\r\n{h}X-A: a\rb\r\n\r\n")),
        ("host port", format!("GET /sub HTTP/1.1\r\nHost: {NAME}:8443\r\n\r\n")),
        ("host upper", "GET /sub HTTP/1.1\r\nHost: WWW.Example.ORG.\r\n\r\n".into()),
        ("http/1.0 dir", "GET /sub HTTP/1.0\r\n\r\n".into()),
        ("absolute dir", format!("GET https://other.example/sub HTTP/1.1\r\n{h}\r\n")),
        ("absolute no path", format!("GET https://{NAME} HTTP/1.1\r\n{h}\r\n")),
        ("http/0.9 missing", "GET /missing\r\n".into()),
        ("http/0.9 post", "POST /\r\n".into()),
        ("http/1.10", format!("GET / HTTP/1.10\r\n{h}\r\n")),
        ("http/1.100", format!("GET / HTTP/1.100\r\n{h}\r\n")),
        ("http/01.1", format!("GET / HTTP/01.1\r\n{h}\r\n")),
        ("trailing space version", format!("GET / HTTP/1.1 \r\n{h}\r\n")),
        ("two spaces", format!("GET  / HTTP/1.1\r\n{h}\r\n")),
        ("lowercase http", format!("GET / http/1.1\r\n{h}\r\n")),
        ("underscore method", format!("GE_T / HTTP/1.1\r\n{h}\r\n")),
        ("fragment", format!("GET /index.html#x HTTP/1.1\r\n{h}\r\n")),
        (
            "many headers",
            format!(
                "GET / HTTP/1.1\r\n{h}{}\r\n",
                (0..6).map(|i| format!("X-{i}: {}\r\n", "b".repeat(2000))).collect::<String>()
            ),
        ),
        (
            "huge headers",
            format!(
                "GET / HTTP/1.1\r\n{h}{}\r\n",
                (0..20).map(|i| format!("X-{i}: {}\r\n", "b".repeat(2000))).collect::<String>()
            ),
        ),
        ("encoded slash", format!("GET /sub%2Findex.html HTTP/1.1\r\n{h}\r\n")),
        ("encoded dots", format!("GET /sub/%2e%2e/index.html HTTP/1.1\r\n{h}\r\n")),
        ("encoded dots above", format!("GET /%2e%2e/index.html HTTP/1.1\r\n{h}\r\n")),
        ("encoded nul", format!("GET /a%00b HTTP/1.1\r\n{h}\r\n")),
        ("bad escape", format!("GET /a%zz HTTP/1.1\r\n{h}\r\n")),
        ("short escape", format!("GET /a% HTTP/1.1\r\n{h}\r\n")),
        ("encoded question", format!("GET /index.html%3Fx HTTP/1.1\r\n{h}\r\n")),
        ("backslash", format!("GET /sub\\a.css HTTP/1.1\r\n{h}\r\n")),
        ("connect path", format!("CONNECT / HTTP/1.1\r\n{h}\r\n")),
        ("two expect", format!("GET / HTTP/1.1\r\n{h}Expect: a\r\nExpect: b\r\n\r\n")),
        (
            "two authorization",
            format!("GET / HTTP/1.1\r\n{h}Authorization: a\r\nAuthorization: b\r\n\r\n"),
        ),
        ("two if-range", format!("GET / HTTP/1.1\r\n{h}If-Range: a\r\nIf-Range: b\r\n\r\n")),
        (
            "two content-range",
            format!("GET / HTTP/1.1\r\n{h}Content-Range: a\r\nContent-Range: b\r\n\r\n"),
        ),
        ("two user-agent", format!("GET / HTTP/1.1\r\n{h}User-Agent: a\r\nUser-Agent: b\r\n\r\n")),
        ("two cookie", format!("GET / HTTP/1.1\r\n{h}Cookie: a\r\nCookie: b\r\n\r\n")),
        ("empty scheme host", format!("GET http:///index.html HTTP/1.1\r\n{h}\r\n")),
        ("upper scheme", format!("GET HTTPS://{NAME}/ HTTP/1.1\r\n{h}\r\n")),
        ("absolute no host header", "GET https://h.example/ HTTP/1.1\r\n\r\n".into()),
        ("http/0.9 head", "HEAD /\r\n".into()),
        ("http/0.9 dir", "GET /sub\r\n".into()),
        ("ims exact", format!("GET / HTTP/1.1\r\n{h}If-Modified-Since: {date}\r\n\r\n")),
        (
            "ims exact inm other",
            format!(
                "GET / HTTP/1.1\r\n{h}If-Modified-Since: {date}\r\nIf-None-Match: \"x\"\r\n\r\n"
            ),
        ),
        (
            "if-range date",
            format!("GET / HTTP/1.1\r\n{h}Range: bytes=0-1\r\nIf-Range: {date}\r\n\r\n"),
        ),
        ("ius exact", format!("GET / HTTP/1.1\r\n{h}If-Unmodified-Since: {date}\r\n\r\n")),
        ("head missing", format!("HEAD /missing HTTP/1.1\r\n{h}\r\n")),
        ("head dir", format!("HEAD /sub HTTP/1.1\r\n{h}\r\n")),
        ("keepalive then bad", format!("GET / HTTP/1.1\r\n{h}\r\nget / HTTP/1.1\r\n\r\n")),
        (
            "post then get",
            format!(
                "POST / HTTP/1.1\r\n{h}Content-Length: 2\r\n\r\nabGET /sub/ HTTP/1.1\r\n{h}\r\n"
            ),
        ),
        (
            "chunked then get",
            format!(
                "POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\nGET /sub/ HTTP/1.1\r\n{h}\r\n"
            ),
        ),
        ("bad chunk", format!("POST / HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nzz\r\n")),
        ("range multi three", format!("GET / HTTP/1.1\r\n{h}Range: bytes=0-0,2-2,-1\r\n\r\n")),
        ("range overlap", format!("GET / HTTP/1.1\r\n{h}Range: bytes=0-20,10-31\r\n\r\n")),
        ("range css", format!("GET /sub/a.css HTTP/1.1\r\n{h}Range: bytes=1-2\r\n\r\n")),
        ("http/1.0 range", "GET / HTTP/1.0\r\nRange: bytes=0-1\r\n\r\n".into()),
        (
            "websocket wrong path",
            format!(
                "GET /sub/ HTTP/1.1\r\n{h}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            ),
        ),
        ("garbage", "\x01\x02\x03\x04 nothing\r\n\r\n".into()),
        ("partial", format!("GET / HTTP/1.1\r\n{h}")),
        ("nothing", String::new()),
    ];
    let mut out: Vec<(&'static str, Vec<u8>)> =
        p.drain(..).map(|(n, s)| (n, s.into_bytes())).collect();
    out.push(("nul in path", format!("GET /a\0b HTTP/1.1\r\n{h}\r\n").into_bytes()));
    out
}

fn site(root: &std::path::Path) {
    std::fs::write(root.join("index.html"), "<!DOCTYPE html>\n<h1>Bakery</h1>\n").unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/index.html"), "<p>sub</p>\n").unwrap();
    std::fs::write(root.join("sub/a.css"), "p { color: red }\n").unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
}

/// Runs every probe against nginx serving `root` and against our server with `decoy` (both
/// with the same certificate); returns the answers that differ.
async fn differences(d: &std::path::Path, decoy: Decoy) -> Vec<String> {
    let root = d.join("site");
    let mtime = std::fs::metadata(root.join("index.html")).unwrap().modified().unwrap();
    let mtime = mtime.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let date = samizdat_transport::https::http_date(mtime);
    let cert = ServerCert::generate(NAME).unwrap();
    std::fs::write(d.join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(d.join("key.pem"), &cert.key_pem).unwrap();
    let server = format!(
        "  listen 127.0.0.1:{{port}} ssl;\n  server_name {NAME};\n  ssl_certificate {d}/cert.pem;\n  ssl_certificate_key {d}/key.pem;\n  root {d}/site;",
        d = d.display()
    );
    let nginx = common::nginx(d, &server).await;
    let model: SocketAddr = format!("127.0.0.1:{}", nginx.port).parse().unwrap();

    let config = HttpsServerConfig::new([7; 32], NAME, cert, decoy).unwrap();
    let transport = HttpsTransport::with_server(config).unwrap();
    let listener = transport.listen("127.0.0.1:0").await.unwrap();
    let ours = HttpsAddr::parse(listener.local_addr().strip_prefix("https/").unwrap()).unwrap();

    let mut runs = tokio::task::JoinSet::new();
    let probes = probes(&date);
    // Not all at once: a loaded machine must not make a quick answer look like silence.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(24));
    for (name, probe) in probes.clone() {
        let (m, p, s) = (probe.clone(), probe.clone(), ours.socket);
        let slot = slots.clone();
        runs.spawn(async move {
            let _slot = slot.acquire().await.unwrap();
            let (a, b) = tokio::join!(over_tls(model, m), over_tls(s, p));
            (format!("tls {name}"), a, b)
        });
        let (p, s) = (probe.clone(), ours.socket);
        let slot = slots.clone();
        runs.spawn(async move {
            let _slot = slot.acquire().await.unwrap();
            let (a, b) = tokio::join!(over_tcp(model, probe), over_tcp(s, p));
            (format!("plain {name}"), a, b)
        });
    }
    let mut differ = Vec::new();
    let mut all = Vec::new();
    while let Some(run) = runs.join_next().await {
        let (name, model, ours) = run.unwrap();
        all.push(format!("== {name}\n{model}\n"));
        if model != ours {
            differ.push(format!("== {name}\n-- nginx:\n{model}\n-- ours:\n{ours}\n"));
        }
    }
    differ.sort();
    if let Ok(path) = std::env::var("NGINX_TWIN_DUMP") {
        all.sort();
        std::fs::write(path, all.join("\n")).unwrap();
    }
    assert!(all.len() > 250, "{}", all.len());
    differ
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decoy_directory_answers_every_probe_as_nginx_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("site")).unwrap();
    site(&dir.path().join("site"));
    let differ = differences(dir.path(), Decoy::dir(dir.path().join("site")).unwrap()).await;
    assert!(differ.is_empty(), "{} answers differ:\n{}", differ.len(), differ.join("\n"));
}

/// The welcome decoy is nginx's own root: its `index.html` with the packaged page and date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_welcome_page_answers_every_probe_as_a_fresh_nginx_does() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("site");
    std::fs::create_dir(&root).unwrap();
    // The page's bytes and date, as our server gives them.
    let cert = ServerCert::generate(NAME).unwrap();
    let config = HttpsServerConfig::new([7; 32], NAME, cert, Decoy::Welcome).unwrap();
    let transport = HttpsTransport::with_server(config).unwrap();
    let listener = transport.listen("127.0.0.1:0").await.unwrap();
    let ours = HttpsAddr::parse(listener.local_addr().strip_prefix("https/").unwrap()).unwrap();
    let mut tls = common::raw_tls(ours.socket, NAME).await;
    let request = format!("GET / HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(body.contains("<title>Welcome to nginx!</title>"), "{body}");
    let modified = head.lines().find_map(|l| l.strip_prefix("Last-Modified: ")).unwrap();
    let mtime = samizdat_transport::https::WELCOME_MTIME;
    assert_eq!(samizdat_transport::https::http_date(mtime), modified);
    let file = std::fs::File::create(root.join("index.html")).unwrap();
    std::io::Write::write_all(&mut &file, body.as_bytes()).unwrap();
    file.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(mtime)).unwrap();
    drop(file);
    let differ = differences(dir.path(), Decoy::Welcome).await;
    assert!(differ.is_empty(), "{} answers differ:\n{}", differ.len(), differ.join("\n"));
}
