//! Real traffic against the censor's classifiers: the first bytes our HTTPS transport sends
//! on a real socket, judged by the fully-encrypted rules, and its TLS fingerprint (JA4)
//! against the one Debian's Chromium sends, captured the same way.
//!
//! How Chromium's ClientHello is captured: a TCP listener on loopback reads the first TLS
//! record of a connection from `chromium --headless` told (by `--host-resolver-rules`) that
//! the test's host name lives at that listener. No certificate is ever presented: the hello
//! is complete before the server says anything.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use samizdat_sim::{ClientHello, FetVerdict, classify_first_payload};
use samizdat_transport::Transport;
use samizdat_transport::https::HttpsAddr;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const NAME: &str = "www.example.org";

/// Reads the first TLS record a client sends to `listener`. Connections closed before a
/// whole record (a browser's speculative preconnect, say) are skipped.
async fn first_record(listener: &TcpListener) -> Vec<u8> {
    loop {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 5];
        if tcp.read_exact(&mut head).await.is_err() {
            continue;
        }
        let len = usize::from(u16::from_be_bytes([head[3], head[4]]));
        let mut rec = head.to_vec();
        rec.resize(5 + len, 0);
        if tcp.read_exact(&mut rec[5..]).await.is_ok() {
            return rec;
        }
    }
}

/// The first record our transport's dial sends.
async fn our_hello() -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = HttpsAddr {
        socket: listener.local_addr().unwrap(),
        name: NAME.into(),
        pin: [1; 32],
        key: [2; 32],
    };
    let client = samizdat_transport::HttpsTransport::client();
    let dial = client.dial(&addr.to_string());
    let (rec, dialled) = tokio::join!(first_record(&listener), dial);
    assert!(dialled.is_err(), "nothing answered, so the dial fails");
    rec
}

/// The first record Debian's Chromium sends, or `None` when no `chromium` is installed.
async fn chromium_hello() -> Option<Vec<u8>> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--host-resolver-rules=MAP {NAME} 127.0.0.1:{port}"),
            &format!("https://{NAME}/"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let rec = tokio::time::timeout(Duration::from_secs(60), first_record(&listener)).await;
    let _ = child.kill();
    let _ = child.wait();
    Some(rec.expect("chromium connected within 60 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_transport_is_exempt_from_the_fully_encrypted_rules() {
    for _ in 0..20 {
        let hello = our_hello().await;
        assert_eq!(classify_first_payload(&hello), FetVerdict::KnownProtocol);
        let parsed = ClientHello::parse(&hello).unwrap();
        assert_eq!(parsed.server_name.as_deref(), Some(NAME), "SNI is the host name");
        assert_eq!(parsed.alpn, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }
}

fn sorted_without_grease(v: &[u16]) -> Vec<u16> {
    let mut v: Vec<u16> = v.iter().copied().filter(|x| !samizdat_sim::is_grease(*x)).collect();
    v.sort_unstable();
    v
}

/// Our hello against Chromium's. The profile we use (`wreq-util`'s newest, Chrome 149) and
/// Debian's Chromium 156 share the cipher suites (the second JA4 part) and all but one
/// extension; Chromium 156 adds `trust_anchors` (0xca34) and, in `signature_algorithms`, a
/// GREASE value and ML-DSA-44/65/87 (0x0904-0x0906), which the vendored BoringSSL cannot
/// send. This test pins exactly that difference, so it fails when either side changes —
/// and the day the profile catches up, the equal JA4s end it early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_hello_against_debians_chromium() {
    let ours = our_hello().await;
    let again = our_hello().await;
    let (a, b) = (ClientHello::parse(&ours).unwrap(), ClientHello::parse(&again).unwrap());
    assert_eq!(a.ja4(), b.ja4());
    // GREASE values and extension order change per connection, as Chromium's do.
    assert!(a.extensions.iter().any(|e| samizdat_sim::is_grease(*e)));
    assert_ne!(a.extensions, b.extensions, "extension order is permuted per connection");
    let Some(chrome) = chromium_hello().await else {
        panic!("chromium is not installed (scripts/test-all.sh installs it)");
    };
    let c = ClientHello::parse(&chrome).unwrap();
    println!("ja4 chromium {}, ours {}", c.ja4(), a.ja4());
    if a.ja4() == c.ja4() {
        return;
    }
    let (ours_ja4, chrome_ja4) = (a.ja4(), c.ja4());
    assert_eq!(ours_ja4.split('_').nth(1), chrome_ja4.split('_').nth(1), "the cipher suites");
    assert_eq!(sorted_without_grease(&a.ciphers), sorted_without_grease(&c.ciphers));
    let mut ours_exts = sorted_without_grease(&a.extensions);
    ours_exts.push(0xca34);
    ours_exts.sort_unstable();
    assert_eq!(ours_exts, sorted_without_grease(&c.extensions), "all but trust_anchors");
    let chrome_sigs: Vec<u16> = c
        .signature_algorithms
        .iter()
        .copied()
        .filter(|s| !samizdat_sim::is_grease(*s) && !(0x0904..=0x0906).contains(s))
        .collect();
    assert_eq!(a.signature_algorithms, chrome_sigs, "all but GREASE and ML-DSA");
    assert_eq!(a.alpn, c.alpn);
    assert_eq!(a.server_name, c.server_name);
}
