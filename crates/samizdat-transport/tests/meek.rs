//! Request/response tunnels (`meek`) over real loopback sockets: straight to a node's HTTPS
//! listener, and domain-fronted through a real nginx acting as the CDN (TLS and SNI for the
//! front domain, routing by the Host header to the node's web server behind it).
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

mod common;

use samizdat_transport::https::{
    Decoy, HttpsAddr, HttpsServerConfig, ServerCert, request_key, upgrade_path,
};
use samizdat_transport::meek::{MeekAddr, request_body};
use samizdat_transport::{HttpsTransport, Listener, MeekTransport, Transport, Transports};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NAME: &str = "hidden.example.org";
const FRONT: &str = "www.front-cdn.example";
const SECRET: [u8; 32] = [42; 32];

async fn node(config: HttpsServerConfig) -> (Box<dyn Listener>, HttpsAddr) {
    let transport = HttpsTransport::with_server(config).unwrap();
    let listener = transport.listen("127.0.0.1:0").await.unwrap();
    let addr = HttpsAddr::parse(listener.local_addr().strip_prefix("https/").unwrap()).unwrap();
    (listener, addr)
}

async fn direct_node() -> (Box<dyn Listener>, HttpsAddr) {
    let cert = ServerCert::generate(NAME).unwrap();
    node(HttpsServerConfig::new(SECRET, NAME, cert, Decoy::Welcome).unwrap()).await
}

/// Both ways at once: 1 MiB up, 1 MiB down, then the ends close in turn.
async fn carries_both_ways(
    full: &str,
    listener: &mut Box<dyn Listener>,
    remote: Option<std::net::IpAddr>,
) {
    let mut transports = Transports::new();
    transports.register(MeekTransport);
    let (client, incoming) = tokio::join!(transports.dial(full), listener.accept());
    let (mut client, incoming) = (client.unwrap(), incoming.unwrap());
    // Straight to the node the client's address is known; behind a proxy it is not.
    assert_eq!(incoming.remote, remote);
    let mut server = incoming.stream;
    // The node can speak first.
    server.write_all(b"hello").await.unwrap();
    let mut hello = [0u8; 5];
    client.read_exact(&mut hello).await.unwrap();
    assert_eq!(&hello, b"hello");
    let up: Vec<u8> = (0..1 << 20).map(|i| (i * 7 % 251) as u8).collect();
    let down: Vec<u8> = (0..1 << 20).map(|i| (i * 13 % 241) as u8).collect();
    let (u, d) = (up.clone(), down.clone());
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = tokio::io::split(server);
    let uploader = tokio::spawn(async move {
        cw.write_all(&u).await.unwrap();
        cw.shutdown().await.unwrap();
    });
    let downloader = tokio::spawn(async move {
        sw.write_all(&d).await.unwrap();
        sw.shutdown().await.unwrap();
    });
    let mut got_up = Vec::new();
    let mut got_down = Vec::new();
    let (a, b) = tokio::join!(sr.read_to_end(&mut got_up), cr.read_to_end(&mut got_down));
    a.unwrap();
    b.unwrap();
    uploader.await.unwrap();
    downloader.await.unwrap();
    assert!(got_up == up, "upstream bytes differ ({} of {})", got_up.len(), up.len());
    assert!(got_down == down, "downstream bytes differ ({} of {})", got_down.len(), down.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tunnel_carries_bytes_both_ways_straight_to_the_node() {
    let (mut listener, addr) = direct_node().await;
    let meek = MeekAddr { https: addr, front: NAME.into() };
    carries_both_ways(&format!("meek/{meek}"), &mut listener, Some([127, 0, 0, 1].into())).await;
    // A second tunnel is another session.
    let full = format!("meek/{meek}");
    let (c, i) =
        tokio::join!(MeekTransport.dial(full.strip_prefix("meek/").unwrap()), listener.accept());
    let (mut c, mut s) = (c.unwrap(), i.unwrap().stream);
    c.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    s.read_exact(&mut one).await.unwrap();
    assert_eq!(&one, b"x");
    // The node closing its end is a clean end of the tunnel for the client.
    drop(s);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest)).await;
    assert!(read.unwrap().is_ok() && rest.is_empty());

    // The server going away mid-tunnel is an error, not a clean end that could pass for a
    // whole stream.
    let (c, i) =
        tokio::join!(MeekTransport.dial(full.strip_prefix("meek/").unwrap()), listener.accept());
    let (mut c, _s) = (c.unwrap(), i.unwrap().stream);
    drop(listener);
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut rest)).await;
    let err = read.expect("the client notices").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_or_secret_opens_nothing_and_strangers_get_the_decoy() {
    let (mut listener, addr) = direct_node().await;
    let good = MeekAddr { https: addr.clone(), front: NAME.into() };
    let wrong_pin = MeekAddr { https: HttpsAddr { pin: [0; 32], ..addr.clone() }, ..good.clone() };
    let err = MeekTransport.dial(&wrong_pin.to_string()).await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
    let wrong_key = MeekAddr { https: HttpsAddr { key: [1; 32], ..addr.clone() }, ..good.clone() };
    let err = MeekTransport.dial(&wrong_key.to_string()).await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    assert!(MeekTransport.dial("127.0.0.1:1").await.is_err());
    assert!(MeekTransport.listen("127.0.0.1:0").await.is_err());

    // A POST on a forged or replayed session path gets what any POST to a missing page gets.
    let post = |path: &str, body: &[u8]| {
        let mut r = format!(
            "POST {path} HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let body = [0u8; 40];
    let missing = exchange(&addr, &post("/nothing/here", &body)).await;
    assert!(missing.starts_with("HTTP/1.1 404 Not Found\r\n"), "{missing}");
    let forged = upgrade_path(&[7; 32], hour(), [3; 16]);
    let prefix = upgrade_path(&SECRET, hour(), [0; 16]).rsplit_once('/').unwrap().0.to_owned();
    let forged = format!("{prefix}/{}", forged.rsplit('/').next().unwrap());
    assert_eq!(exchange(&addr, &post(&forged, &body)).await, missing);
    // A valid path opens a session once (the node gets it); its requests need the MAC of the
    // session's key, and whoever sees only the path gets the missing page.
    let valid = upgrade_path(&SECRET, hour(), [5; 16]);
    let key = request_key(&SECRET, &valid);
    assert_eq!(exchange(&addr, &post(&valid, &body)).await, missing);
    let mut stream = listener.accept().await.unwrap().stream;
    let opened = exchange(&addr, &post(&valid, &request_body(&key, 0, false, b""))).await;
    assert!(opened.starts_with("HTTP/1.1 200 OK\r\n"), "{opened}");
    // A proxy may pass the body chunked: the same request, read the same way; a chunked
    // body without the session's MAC is a stranger's.
    let chunked = |body: &[u8]| {
        let (a, b) = body.split_at(body.len() / 2);
        let mut r = format!(
            "POST {valid} HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            a.len()
        )
        .into_bytes();
        r.extend_from_slice(a);
        r.extend_from_slice(format!("\r\n{:x};ext=1\r\n", b.len()).as_bytes());
        r.extend_from_slice(b);
        r.extend_from_slice(b"\r\n0\r\n\r\n");
        r
    };
    let in_chunks = exchange(&addr, &chunked(&request_body(&key, 1, false, b"up"))).await;
    assert!(in_chunks.starts_with("HTTP/1.1 200 OK\r\n"), "{in_chunks}");
    assert_eq!(exchange(&addr, &chunked(&[9u8; 40])).await, missing);
    let mut up = [0u8; 2];
    stream.read_exact(&mut up).await.unwrap();
    assert_eq!(&up, b"up");
    assert_eq!(
        exchange(&addr, &post(&valid, &request_body(&[1; 32], 1, false, b""))).await,
        missing
    );
    // A request out of order ends the session (400), and the path is then a stranger's.
    let gap = exchange(&addr, &post(&valid, &request_body(&key, 5, false, b""))).await;
    assert!(gap.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{gap}");
    assert_eq!(exchange(&addr, &post(&valid, &request_body(&key, 1, false, b""))).await, missing);
    drop(stream);
    let nothing = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(nothing.is_err(), "nothing else reached the node");
}

fn hour() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 3600
}

/// Sends `request` on a fresh TLS connection and reads the whole answer (the date blanked).
async fn exchange(addr: &HttpsAddr, request: &[u8]) -> String {
    let mut tls = common::raw_tls(addr.socket, NAME).await;
    tls.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out)
        .split("\r\n")
        .map(|l| if l.starts_with("Date: ") { "Date: -" } else { l })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Domain fronting through a real nginx acting as the CDN: it holds the front domain's
/// certificate and site, and routes requests whose Host is the hidden name to the node's
/// plain-HTTP web server. The client's TLS names only the front (its pin is the front's
/// certificate, which nginx presents only for that SNI), its Host header the node. The CDN
/// closes its connections every four requests, so tunnels must move to new connections (each
/// checked before the secret path goes out on it).
async fn fronted(http2: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let front = ServerCert::generate(FRONT).unwrap();
    let hidden = ServerCert::generate(NAME).unwrap();
    std::fs::write(d.join("front.pem"), &front.cert_pem).unwrap();
    std::fs::write(d.join("front.key"), &front.key_pem).unwrap();
    std::fs::write(d.join("hidden.pem"), &hidden.cert_pem).unwrap();
    std::fs::write(d.join("hidden.key"), &hidden.key_pem).unwrap();
    std::fs::create_dir(d.join("site")).unwrap();
    std::fs::write(d.join("site/index.html"), "<h1>Front CDN</h1>").unwrap();
    let config =
        HttpsServerConfig::behind_proxy(SECRET, NAME, front.pin().unwrap(), Decoy::Welcome)
            .unwrap();
    let (mut listener, node_addr) = node(config).await;
    let h2 = if http2 { " http2" } else { "" };
    let server = format!(
        "  listen 127.0.0.1:{{port}} ssl{h2} default_server;\n  server_name {FRONT};\n\
         keepalive_requests 4;\n\
         ssl_certificate {d}/front.pem;\n  ssl_certificate_key {d}/front.key;\n\
         root {d}/site;\n }}\n server {{\n  listen 127.0.0.1:{{port}} ssl{h2};\n\
         server_name {NAME};\n  keepalive_requests 4;\n  ssl_certificate {d}/hidden.pem;\n\
         ssl_certificate_key {d}/hidden.key;\n  location / {{\n\
         proxy_pass http://{upstream};\n   proxy_http_version 1.1;\n\
         proxy_set_header Connection \"\";\n   proxy_set_header Host $host;\n  }}",
        d = d.display(),
        upstream = node_addr.socket,
    );
    let nginx = common::nginx(d, &server).await;
    let edge: std::net::SocketAddr = format!("127.0.0.1:{}", nginx.port).parse().unwrap();
    let meek =
        MeekAddr { https: HttpsAddr { socket: edge, ..node_addr.clone() }, front: FRONT.into() };
    carries_both_ways(&format!("meek/{meek}"), &mut listener, None).await;

    // Unfronted, the tunnel names the node in its SNI too (then the pin is the certificate
    // the CDN shows for that name), and speaks HTTP/2 where the CDN does.
    let unfronted = MeekAddr {
        https: HttpsAddr { socket: edge, pin: hidden.pin().unwrap(), ..node_addr.clone() },
        front: NAME.into(),
    };
    carries_both_ways(&format!("meek/{unfronted}"), &mut listener, None).await;
    // With the wrong pin for the name it is sent, nginx's other certificate fails the dial:
    // the front's SNI really is what the client sends.
    let crossed = MeekAddr { front: NAME.into(), ..meek.clone() };
    let err = MeekTransport.dial(&crossed.to_string()).await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");

    // Without fronting the same edge shows the front's own site.
    if http2 {
        return;
    }
    let mut tls = common::raw_tls(edge, FRONT).await;
    let get = format!("GET / HTTP/1.1\r\nHost: {FRONT}\r\nConnection: close\r\n\r\n");
    tls.write_all(get.as_bytes()).await.unwrap();
    let mut page = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut page)).await;
    assert!(String::from_utf8_lossy(&page).ends_with("<h1>Front CDN</h1>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_fronted_tunnel_works_through_a_real_nginx_cdn() {
    fronted(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_fronted_tunnel_works_through_a_real_nginx_cdn_over_http2() {
    fronted(true).await;
}
