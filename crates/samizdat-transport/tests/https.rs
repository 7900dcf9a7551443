//! The HTTPS camouflage transport over real loopback sockets: a tunnel opens for holders of
//! the secret and the pin, and everybody else — wrong secret, replayed token, random paths,
//! random bytes, a browser — gets exactly the decoy web server's answers.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

mod common;

use btls::ssl::{SslConnector, SslMethod, SslVerifyMode};

use samizdat_transport::https::{
    Decoy, HANDOVER_TIMEOUT, HttpsAddr, HttpsServerConfig, MAX_PER_SOURCE, ServerCert, path_prefix,
    upgrade_path,
};
use samizdat_transport::{HttpsTransport, Transport, Transports};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const NAME: &str = "www.example.org";
const SECRET: [u8; 32] = [42; 32];

fn hour() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 3600
}

async fn server(decoy: Decoy) -> (Box<dyn samizdat_transport::Listener>, HttpsAddr) {
    let cert = ServerCert::generate(NAME).unwrap();
    let config = HttpsServerConfig::new(SECRET, NAME, cert, decoy).unwrap();
    let transport = HttpsTransport::with_server(config).unwrap();
    let listener = transport.listen("127.0.0.1:0").await.unwrap();
    let full = listener.local_addr();
    let addr = HttpsAddr::parse(full.strip_prefix("https/").unwrap()).unwrap();
    assert_eq!(addr.name, NAME);
    assert_eq!(addr.key, SECRET);
    (listener, addr)
}

/// A TLS connection that checks nothing, as a prober's would be.
async fn raw_tls(addr: &HttpsAddr) -> tokio_btls::SslStream<TcpStream> {
    common::raw_tls(addr.socket, NAME).await
}

/// Sends `request` and reads until the server closes, or (for a single request) one whole
/// response has come on a kept-alive connection, or 5 s pass; the `Date:` line is blanked so answers at different
/// seconds compare equal.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &[u8]) -> String {
    s.write_all(request).await.unwrap();
    let single = String::from_utf8_lossy(request).matches(" HTTP/1.").count() == 1;
    let mut out = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            out.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&out);
            if let Some(end) = text.find("\r\n\r\n") {
                let head = &text[..end];
                if head.contains("Connection: keep-alive") {
                    let len: usize = head
                        .split("\r\n")
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .map_or(0, |v| v.parse().unwrap());
                    if single && out.len() >= end + 4 + len {
                        return;
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.split("\r\n")
        .map(|l| if l.starts_with("Date: ") { "Date: -" } else { l })
        .collect::<Vec<_>>()
        .join("\r\n")
}

fn get(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n{extra}\r\n").into_bytes()
}

fn upgrade(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {NAME}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_carries_bytes_both_ways_for_holders_of_the_secret_and_pin() {
    let (mut listener, addr) = server(Decoy::Welcome).await;
    let mut transports = Transports::new();
    transports.register(HttpsTransport::client());
    let full = format!("https/{addr}");
    let (client, incoming) = tokio::join!(transports.dial(&full), listener.accept());
    let (mut client, incoming) = (client.unwrap(), incoming.unwrap());
    assert_eq!(incoming.remote, Some("127.0.0.1".parse().unwrap()));
    let mut server_side = incoming.stream;
    let data: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        client.write_all(&sent).await.unwrap();
        client.flush().await.unwrap();
        let mut back = vec![0u8; 5];
        client.read_exact(&mut back).await.unwrap();
        back
    });
    let mut got = vec![0u8; data.len()];
    server_side.read_exact(&mut got).await.unwrap();
    assert!(got == data);
    server_side.write_all(b"thank").await.unwrap();
    server_side.flush().await.unwrap();
    assert_eq!(writer.await.unwrap(), b"thank");

    // A second dial is a second, independent tunnel.
    let (c2, i2) = tokio::join!(transports.dial(&full), listener.accept());
    let (mut c2, mut s2) = (c2.unwrap(), i2.unwrap().stream);
    c2.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    s2.read_exact(&mut one).await.unwrap();
    assert_eq!(&one, b"x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_or_secret_opens_nothing() {
    let (mut listener, addr) = server(Decoy::Welcome).await;
    let client = HttpsTransport::client();
    let wrong_pin = HttpsAddr { pin: [0; 32], ..addr.clone() };
    let err = client.dial(&wrong_pin.to_string()).await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    let wrong_key = HttpsAddr { key: [1; 32], ..addr.clone() };
    let err = client.dial(&wrong_key.to_string()).await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    let nobody = HttpsAddr { socket: "127.0.0.1:1".parse().unwrap(), ..addr.clone() };
    assert!(client.dial(&nobody.to_string()).await.is_err());
    assert!(client.dial("127.0.0.1:1").await.is_err(), "no parameters");
    assert!(client.listen("127.0.0.1:0").await.is_err(), "a client-only transport cannot serve");
    // Nothing reached the node.
    let nothing = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(nothing.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probers_get_exactly_what_the_decoy_site_gives() {
    let (mut listener, addr) = server(Decoy::Welcome).await;
    let random_path = exchange(raw_tls(&addr).await, &get("/a8f3c2/e91b", "")).await;
    assert!(
        random_path.starts_with("HTTP/1.1 404 Not Found\r\nServer: nginx\r\n"),
        "{random_path}"
    );
    assert!(random_path.ends_with("<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"));

    // The secret prefix with a wrong token, or as a plain page, is just another missing page.
    let prefix = path_prefix(&SECRET);
    let wrong = upgrade_path(&[7; 32], hour(), [1; 16]);
    let wrong_token = format!("/{prefix}/{}", wrong.rsplit('/').next().unwrap());
    let random_upgrade = exchange(raw_tls(&addr).await, &upgrade("/a8f3c2/e91b")).await;
    assert!(random_upgrade.starts_with("HTTP/1.1 404 Not Found\r\n"), "{random_upgrade}");
    for path in [wrong_token.as_str(), &format!("/{prefix}/"), &format!("/{prefix}")] {
        let a = exchange(raw_tls(&addr).await, &upgrade(path)).await;
        let b = exchange(raw_tls(&addr).await, &get(path, "")).await;
        assert_eq!(a, random_upgrade, "{path}");
        assert_eq!(b, random_path, "{path}");
    }

    // A valid token opens the tunnel once; replayed, it gets the 404 like any stranger.
    let valid = upgrade_path(&SECRET, hour(), [9; 16]);
    let mut tls = raw_tls(&addr).await;
    tls.write_all(&upgrade(&valid)).await.unwrap();
    let mut head = vec![0u8; 12];
    tls.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    let incoming = listener.accept().await.unwrap();
    drop(incoming);
    let replayed = exchange(raw_tls(&addr).await, &upgrade(&valid)).await;
    assert_eq!(replayed, random_upgrade);

    // A browser-like request gets the page; garbage inside TLS gets nginx's 400; an HTTP/1.1
    // request without Host too.
    let page = exchange(raw_tls(&addr).await, &get("/", "User-Agent: Mozilla/5.0\r\n")).await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: -\r\nContent-Type: text/html\r\nContent-Length: 615\r\nLast-Modified: "), "{page}");
    assert!(page.contains("<title>Welcome to nginx!</title>"));
    let garbage = exchange(raw_tls(&addr).await, &[0x8e; 300]).await;
    assert!(garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{garbage}");
    let no_host = exchange(raw_tls(&addr).await, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(no_host, garbage);

    // Random bytes instead of a ClientHello: the TLS library's alert and close, no HTTP.
    let mut tcp = TcpStream::connect(addr.socket).await.unwrap();
    tcp.write_all(&[0x55; 517]).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    assert!(out.len() < 16 && (out.is_empty() || out[0] == 0x15), "{out:?}");

    // A client offering ALPN without http/1.1 gets a fatal alert, as from nginx.
    let mut b = SslConnector::builder(SslMethod::tls()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.set_alpn_protos(b"\x02h2").unwrap();
    let ssl = b.build().configure().unwrap().verify_hostname(false).into_ssl(NAME).unwrap();
    let tcp = TcpStream::connect(addr.socket).await.unwrap();
    let mut tls = tokio_btls::SslStream::new(ssl, tcp).unwrap();
    assert!(Pin::new(&mut tls).connect().await.is_err(), "h2 only: no handshake");

    // None of it reached the node.
    let nothing = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(nothing.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_decoy_directory_is_served_like_nginx_serves_a_root() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>Recipes</h1>").unwrap();
    std::fs::create_dir(dir.path().join("soup")).unwrap();
    std::fs::write(dir.path().join("soup/index.html"), "<p>Borscht</p>").unwrap();
    std::fs::write(dir.path().join("style.css"), "body{}").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "nope").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("leak.txt"))
        .unwrap();
    let (_listener, addr) = server(Decoy::dir(dir.path()).unwrap()).await;
    let ask = |req: Vec<u8>| {
        let addr = addr.clone();
        async move { exchange(raw_tls(&addr).await, &req).await }
    };
    let index = ask(get("/", "")).await;
    assert!(index.starts_with("HTTP/1.1 200 OK\r\n"), "{index}");
    assert!(index.ends_with("\r\n\r\n<h1>Recipes</h1>"));
    let css = ask(get("/style.css", "")).await;
    assert!(css.contains("Content-Type: text/css\r\n") && css.contains("Accept-Ranges: bytes"));
    let etag = css.split("\r\n").find_map(|l| l.strip_prefix("ETag: ")).unwrap().to_string();
    let cached = ask(get("/style.css", &format!("If-None-Match: {etag}\r\n"))).await;
    assert!(cached.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{cached}");
    assert!(cached.ends_with("\r\n\r\n"));
    let head =
        ask(b"HEAD /soup/ HTTP/1.1\r\nHost: x.example\r\nConnection: close\r\n\r\n".to_vec()).await;
    assert!(head.contains("Content-Length: 14\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    let redirect = ask(get("/soup", "")).await;
    assert!(redirect.starts_with("HTTP/1.1 301 Moved Permanently\r\n"), "{redirect}");
    let port = addr.socket.port();
    assert!(redirect.contains(&format!("Location: https://{NAME}:{port}/soup/\r\n")));
    assert!(ask(get("/soup/../soup/%69ndex.html", "")).await.ends_with("<p>Borscht</p>"));
    assert!(ask(get("/../../etc/passwd", "")).await.starts_with("HTTP/1.1 400 "));
    assert!(ask(get("/%zz", "")).await.starts_with("HTTP/1.1 400 "));
    assert!(ask(get("/leak.txt", "")).await.starts_with("HTTP/1.1 404 "), "symlink out");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("elsewhere")).unwrap();
    let out_dir = ask(get("/elsewhere", "")).await;
    assert!(
        out_dir.starts_with("HTTP/1.1 404 "),
        "a directory link out is not redirected: {out_dir}"
    );
    // A bare LF ends a header line (as in nginx), so nothing after it reaches Location.
    let split =
        ask(b"GET /soup HTTP/1.1\r\nHost: a\nX-Evil: 1\r\nConnection: close\r\n\r\n".to_vec())
            .await;
    assert!(split.contains(&format!("Location: https://a:{port}/soup/\r\n")), "{split}");
    assert!(!split.contains("X-Evil"), "{split}");
    assert!(ask(get("/missing.png", "")).await.starts_with("HTTP/1.1 404 "));
    let post = b"POST /style.css HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
    assert!(ask(post.to_vec()).await.starts_with("HTTP/1.1 405 Not Allowed\r\n"));
    let big = b"POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 99999999\r\n\r\n";
    assert!(ask(big.to_vec()).await.starts_with("HTTP/1.1 413 "));
    let huge_head = get("/", &format!("X-Pad: {}\r\n", "a".repeat(9000)));
    let too_large = ask(huge_head).await;
    assert!(too_large.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{too_large}");
    assert!(too_large.contains("<center>Request Header Or Cookie Too Large</center>"));

    // Keep-alive: two requests on one connection, answered in order.
    let two = format!(
        "GET /style.css HTTP/1.1\r\nHost: {NAME}\r\n\r\nGET /soup/ HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n"
    );
    let both = ask(two.into_bytes()).await;
    assert_eq!(both.matches("HTTP/1.1 200 OK").count(), 2, "{both}");
    assert!(both.contains("Connection: keep-alive") && both.ends_with("<p>Borscht</p>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_proxy_the_node_speaks_plain_http() {
    let front = ServerCert::generate(NAME).unwrap();
    let config =
        HttpsServerConfig::behind_proxy(SECRET, NAME, front.pin().unwrap(), Decoy::Welcome)
            .unwrap();
    let transport = HttpsTransport::with_server(config).unwrap();
    let mut listener = transport.listen("127.0.0.1:0").await.unwrap();
    let addr = HttpsAddr::parse(listener.local_addr().strip_prefix("https/").unwrap()).unwrap();
    assert_eq!(addr.pin, front.pin().unwrap(), "the front's pin is advertised");
    let page = exchange(TcpStream::connect(addr.socket).await.unwrap(), &get("/", "")).await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"));
    let mut tcp = TcpStream::connect(addr.socket).await.unwrap();
    tcp.write_all(&upgrade(&upgrade_path(&SECRET, hour(), [3; 16]))).await.unwrap();
    let incoming = listener.accept().await.unwrap();
    assert_eq!(incoming.remote, None, "the TCP peer is the proxy, not the client");
    assert!(HttpsServerConfig::behind_proxy(SECRET, "10.0.0.1", [0; 32], Decoy::Welcome).is_err());
}

/// A real nginx in front, terminating TLS with its own certificate, serving its own static
/// site and passing only the secret path (with upgrades) to the node's plain-HTTP listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tunnel_works_through_a_real_nginx_in_front() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let front = ServerCert::generate(NAME).unwrap();
    std::fs::write(d.join("cert.pem"), &front.cert_pem).unwrap();
    std::fs::write(d.join("key.pem"), &front.key_pem).unwrap();
    std::fs::create_dir(d.join("site")).unwrap();
    std::fs::write(d.join("site/index.html"), "<h1>Bakery</h1>").unwrap();
    let config =
        HttpsServerConfig::behind_proxy(SECRET, NAME, front.pin().unwrap(), Decoy::Welcome)
            .unwrap();
    let transport = HttpsTransport::with_server(config).unwrap();
    let mut listener = transport.listen("127.0.0.1:0").await.unwrap();
    let node = HttpsAddr::parse(listener.local_addr().strip_prefix("https/").unwrap()).unwrap();
    let server = format!(
        "  listen 127.0.0.1:{{port}} ssl;\n  server_name {NAME};\n\
         ssl_certificate {d}/cert.pem;\n  ssl_certificate_key {d}/key.pem;\n  root {d}/site;\n\
         location /{prefix}/ {{\n   proxy_pass http://{upstream};\n   proxy_http_version 1.1;\n\
         proxy_set_header Upgrade $http_upgrade;\n   proxy_set_header Connection \"upgrade\";\n\
         proxy_set_header Host $host;\n   proxy_read_timeout 1h;\n  }}",
        d = d.display(),
        prefix = path_prefix(&SECRET),
        upstream = node.socket,
    );
    let nginx = common::nginx(d, &server).await;
    let front_addr =
        HttpsAddr { socket: format!("127.0.0.1:{}", nginx.port).parse().unwrap(), ..node };

    let client = HttpsTransport::client();
    let (dialled, incoming) = tokio::join!(client.dial(&front_addr.to_string()), listener.accept());
    let (mut c, mut s) = (dialled.unwrap(), incoming.unwrap().stream);
    c.write_all(b"through nginx").await.unwrap();
    let mut got = [0u8; 13];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"through nginx");
    s.write_all(b"back").await.unwrap();
    let mut back = [0u8; 4];
    c.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"back");

    // Through the front, the site is nginx's own, and a wrong token on the secret path is a
    // 404 like any missing page (the node's error pages are nginx's with `server_tokens off`,
    // the setting the front must use too).
    let page = exchange(raw_tls(&front_addr).await, &get("/", "")).await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n") && page.ends_with("<h1>Bakery</h1>"));
    let missing = exchange(raw_tls(&front_addr).await, &get("/nothing/here", "")).await;
    let wrong = format!("/{}/{}", path_prefix(&SECRET), "A".repeat(43));
    let refused = exchange(raw_tls(&front_addr).await, &get(&wrong, "")).await;
    assert!(missing.starts_with("HTTP/1.1 404 Not Found\r\n"), "{missing}");
    assert_eq!(refused, missing);
}

/// A hostile "node": real TLS with the pinned certificate, then whatever `answer` says to
/// each request head.
async fn fake_server(answer: fn(usize) -> Vec<u8>) -> HttpsAddr {
    let cert = ServerCert::generate(NAME).unwrap();
    let pin = cert.pin().unwrap();
    let acceptor = cert.acceptor().unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socket = tcp.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else { return };
            let ssl = btls::ssl::Ssl::new(acceptor.context()).unwrap();
            let mut tls = tokio_btls::SslStream::new(ssl, stream).unwrap();
            tokio::spawn(async move {
                if Pin::new(&mut tls).accept().await.is_err() {
                    return;
                }
                let mut buf = Vec::new();
                for n in 0.. {
                    let mut chunk = [0u8; 4096];
                    loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..i + 4);
                            break;
                        }
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                    if tls.write_all(&answer(n)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    HttpsAddr { socket, name: NAME.into(), pin, key: SECRET }
}

/// A pinned server that closes each connection after answering its first request, and keeps
/// every request head it was sent.
async fn closing_server() -> (HttpsAddr, Arc<Mutex<Vec<String>>>) {
    let cert = ServerCert::generate(NAME).unwrap();
    let pin = cert.pin().unwrap();
    let acceptor = cert.acceptor().unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let socket = tcp.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let log = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = tcp.accept().await else { return };
            let ssl = btls::ssl::Ssl::new(acceptor.context()).unwrap();
            let mut tls = tokio_btls::SslStream::new(ssl, stream).unwrap();
            let log = log.clone();
            tokio::spawn(async move {
                if Pin::new(&mut tls).accept().await.is_err() {
                    return;
                }
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                log.lock().unwrap().push(String::from_utf8_lossy(&buf).into_owned());
                let answer = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
                let _ = tls.write_all(answer).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (HttpsAddr { socket, name: NAME.into(), pin, key: SECRET }, heads)
}

/// The token never goes out on a connection whose pin was not checked first: when the cover
/// page's connection is closed, the dial gives up rather than send the upgrade on a new one
/// (which an on-path attacker could be terminating, to harvest the token and replay it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upgrade_never_goes_out_on_a_second_connection() {
    let (addr, heads) = closing_server().await;
    let err = HttpsTransport::client().dial(&addr.to_string()).await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(heads[0].starts_with("GET / HTTP/1.1\r\n"), "{heads:?}");
}

fn page(n: usize) -> Vec<u8> {
    let _ = n;
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_or_hostile_server_answers_fail_the_dial_cleanly() {
    let client = HttpsTransport::client();
    // A 101 whose Sec-WebSocket-Accept does not answer our key.
    let bad_accept = fake_server(|n| match n {
        0 => page(n),
        _ => b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n".to_vec(),
    })
    .await;
    let err = client.dial(&bad_accept.to_string()).await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    // A cover page that never ends (chunked, far over the limit): refused, memory bounded.
    let endless = fake_server(|n| match n {
        0 => {
            let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, "a".repeat(1 << 20));
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..6 {
                out.extend_from_slice(chunk.as_bytes());
            }
            out
        }
        _ => page(n),
    })
    .await;
    let err = client.dial(&endless.to_string()).await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    // Not HTTP at all after the handshake.
    let garbage = fake_server(|_| vec![0xff; 64]).await;
    assert!(client.dial(&garbage.to_string()).await.is_err());
    // Errors never carry the name or the secret.
    let msg = err.to_string();
    assert!(!msg.contains(NAME) && !msg.contains("127.0.0.1"), "{msg}");
}

#[tokio::test]
async fn the_registry_refuses_what_it_cannot_route() {
    let mut transports = Transports::new();
    transports.register(HttpsTransport::client());
    assert_eq!(
        transports.dial("no-slash").await.err().unwrap().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        transports.dial("carrier/pigeon").await.err().unwrap().kind(),
        io::ErrorKind::Unsupported
    );
    assert_eq!(transports.listen("nope").await.err().unwrap().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(transports.listen("udp/1").await.err().unwrap().kind(), io::ErrorKind::Unsupported);
    assert!(format!("{transports:?}").contains("https"));
    let server = HttpsTransport::with_server(
        HttpsServerConfig::new(SECRET, NAME, ServerCert::generate(NAME).unwrap(), Decoy::Welcome)
            .unwrap(),
    )
    .unwrap();
    assert!(format!("{server:?}").contains("serves: true"));
    assert_eq!(
        server.listen("localhost:1").await.err().unwrap().kind(),
        io::ErrorKind::InvalidInput
    );
    assert!(server.listen("192.0.2.1:1").await.is_err(), "an address not on this host");
}

/// One host holding idle connections cannot starve others: past [`MAX_PER_SOURCE`] its new
/// connections are closed at once, while another address is still served, and the slots come
/// back when the host lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_cannot_take_every_connection_slot() {
    let (_listener, addr) = server(Decoy::Welcome).await;
    let mut held = Vec::new();
    for _ in 0..MAX_PER_SOURCE {
        held.push(TcpStream::connect(addr.socket).await.unwrap());
    }
    let closed_at_once = |mut s: TcpStream| async move {
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await;
        matches!(r, Ok(Ok(0) | Err(_)))
    };
    let extra = TcpStream::connect(addr.socket).await.unwrap();
    assert!(closed_at_once(extra).await, "the source's next connection is refused");
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let other = other.connect(addr.socket).await.unwrap();
    let page = exchange(common::raw_tls_over(other, NAME).await, &get("/", "")).await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    drop(held);
    let t0 = std::time::Instant::now();
    loop {
        let tcp = TcpStream::connect(addr.socket).await.unwrap();
        if common::try_raw_tls_over(tcp, NAME).await.is_some() {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "slots are never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node that stops taking tunnels does not make the listener hold them forever: one past
/// the backlog is dropped after [`HANDOVER_TIMEOUT`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_the_node_does_not_take_are_dropped() {
    let (_listener, addr) = server(Decoy::Welcome).await;
    let client = HttpsTransport::client();
    let mut tunnels = Vec::new();
    for i in 0..65 {
        let t = client.dial(&addr.to_string()).await;
        tunnels.push(t.unwrap_or_else(|e| panic!("dial {i}: {e}")));
    }
    let mut last = tunnels.pop().unwrap();
    let mut b = [0u8; 1];
    let wait = HANDOVER_TIMEOUT + Duration::from_secs(5);
    let r = tokio::time::timeout(wait, last.read(&mut b)).await;
    assert!(matches!(r, Ok(Ok(0) | Err(_))), "{r:?}");
}

/// A dial's error says what it ran into, so the node can tell a blocked transport's way of
/// failing: a TLS alert, a reset, a closed port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_failures_carry_their_reason() {
    let client = HttpsTransport::client();
    let addr = |socket| HttpsAddr { socket, name: NAME.into(), pin: [1; 32], key: SECRET };
    // A server that answers the ClientHello with a handshake_failure alert.
    let alerting = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = alerting.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = alerting.accept().await {
            let mut b = [0u8; 512];
            let _ = s.read(&mut b).await;
            let _ = s.write_all(b"\x15\x03\x03\x00\x02\x02\x28").await;
        }
    });
    let err = client.dial(&addr(at).to_string()).await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    // A server (or a censor) that resets the connection once the ClientHello is seen.
    let resetting = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = resetting.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = resetting.accept().await {
            let mut b = [0u8; 512];
            let _ = s.read(&mut b).await;
            s.set_zero_linger().unwrap();
            drop(s);
        }
    });
    let err = client.dial(&addr(at).to_string()).await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
    // Nobody listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = client.dial(&addr(closed).to_string()).await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    assert!(!err.to_string().contains(NAME));
}
