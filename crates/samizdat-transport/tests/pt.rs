//! The pluggable-transport protocol against the real `obfs4proxy` (Debian's package; the test
//! script installs it): streams through obfs4 both ways, the published address, a wrong
//! certificate, a prober, a missing program, and the state the program leaves on disk.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use samizdat_transport::pt::{PtAddr, PtTransport, obfs4_keys};
use samizdat_transport::{Listener, Transport};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROGRAM: &str = "/usr/bin/obfs4proxy";

fn obfs4_present() -> bool {
    let there = std::path::Path::new(PROGRAM).exists();
    if !there {
        // The test script installs it; a bare `cargo test` elsewhere says why it did not run.
        eprintln!("SKIPPED: {PROGRAM} is not installed (apt-get install obfs4proxy)");
    }
    there
}

async fn server(keys: Vec<(String, String)>) -> (PtTransport, Box<dyn Listener>) {
    let t = PtTransport::with_server("obfs4", PROGRAM, keys);
    let l = t.listen("127.0.0.1:0").await.unwrap();
    (t, l)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mebibyte_each_way_through_obfs4proxy_and_the_address_carries_the_cert() {
    if !obfs4_present() {
        return;
    }
    let keys = obfs4_keys();
    let (_server, mut listener) = server(keys.clone()).await;
    let local = listener.local_addr();
    let addr = PtAddr::parse(local.strip_prefix("obfs4/").unwrap()).unwrap();
    assert_ne!(addr.endpoint.port(), 0, "{local}");
    let keys_of = |a: &PtAddr| a.args.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys_of(&addr), ["cert", "iat-mode"], "{local}");
    // The same keys give the same address after a restart.
    drop(listener);
    let (_again, relisten) = server(keys).await;
    let again = PtAddr::parse(relisten.local_addr().strip_prefix("obfs4/").unwrap()).unwrap();
    assert_eq!(again.args, addr.args);
    listener = relisten;
    let dial_addr = listener.local_addr();

    let client = PtTransport::client("obfs4", PROGRAM);
    let payload: Vec<u8> =
        (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let (dialled, accepted) =
        tokio::join!(client.dial(dial_addr.strip_prefix("obfs4/").unwrap()), listener.accept());
    let (mut a, incoming) = (dialled.unwrap(), accepted.unwrap());
    // Handed over on the extended ORPort with the client's address.
    assert_eq!(incoming.remote, Some(std::net::Ipv4Addr::LOCALHOST.into()));
    let mut b = incoming.stream;
    let expected = payload.clone();
    let there = tokio::spawn(async move {
        let mut got = vec![0u8; expected.len()];
        b.read_exact(&mut got).await.unwrap();
        assert!(got == expected);
        b.write_all(&got).await.unwrap();
        b.flush().await.unwrap();
        b
    });
    a.write_all(&payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    a.read_exact(&mut back).await.unwrap();
    assert!(back == payload);
    let _b = there.await.unwrap();

    // A second stream through the same client proxy.
    let (second, accepted) =
        tokio::join!(client.dial(dial_addr.strip_prefix("obfs4/").unwrap()), listener.accept());
    let (mut c, mut d) = (second.unwrap(), accepted.unwrap().stream);
    c.write_all(b"again").await.unwrap();
    let mut five = [0u8; 5];
    d.read_exact(&mut five).await.unwrap();
    assert_eq!(&five, b"again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_cert_or_a_prober_gets_nothing_and_the_node_sees_nothing() {
    if !obfs4_present() {
        return;
    }
    let (_server, mut listener) = server(obfs4_keys()).await;
    let mut addr = PtAddr::parse(listener.local_addr().strip_prefix("obfs4/").unwrap()).unwrap();
    // Another server's certificate: the handshake never completes.
    let (_other, other_listener) = server(obfs4_keys()).await;
    let other = PtAddr::parse(other_listener.local_addr().strip_prefix("obfs4/").unwrap()).unwrap();
    addr.args = other.args.clone();
    let client = PtTransport::client("obfs4", PROGRAM);
    let dial = tokio::time::timeout(Duration::from_secs(40), client.dial(&addr.to_string()));
    let accept = tokio::time::timeout(Duration::from_secs(3), listener.accept());
    let (dialled, accepted) = tokio::join!(dial, accept);
    assert!(dialled.unwrap().is_err(), "a dial with the wrong cert succeeded");
    assert!(accepted.is_err(), "the node was handed a stream");

    // A prober sending bytes gets none back, and the node is handed nothing.
    let mut probe = tokio::net::TcpStream::connect(addr.endpoint).await.unwrap();
    probe.write_all(&[0x42; 512]).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), probe.read(&mut buf)).await;
    assert!(!matches!(read, Ok(Ok(n)) if n > 0), "the server answered a prober");
    let accept = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await;
    assert!(accept.is_err());
}

#[tokio::test]
async fn bad_programs_addresses_and_dial_only_transports_give_typed_errors() {
    let missing = PtTransport::with_server("obfs4", "/nonexistent/obfs4proxy", obfs4_keys());
    let e = missing.dial("192.0.2.1:9?cert=x").await.err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    let e = missing.listen("127.0.0.1:0").await.err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    let e = missing.dial("example.org:9?cert=x").await.err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let e = missing.listen("example.org:9").await.err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let dial_only = PtTransport::client("obfs4", PROGRAM);
    assert_eq!(
        dial_only.listen("127.0.0.1:0").await.err().unwrap().kind(),
        io::ErrorKind::Unsupported
    );
    // A program that exits at once, and one that prints an error.
    let e = PtTransport::client("obfs4", "/bin/true").dial("192.0.2.1:9").await.err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    if obfs4_present() {
        // obfs4proxy refuses a method it does not have.
        let e = PtTransport::client("nosuch", PROGRAM).dial("192.0.2.1:9").await.err().unwrap();
        assert!(e.to_string().contains("CMETHOD-ERROR nosuch"), "{e}");
        let (_t, _l) = server(obfs4_keys()).await;
        // Nothing of the program's state stays behind in memory or on disk.
        let left: Vec<_> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("samizdat-pt-"))
            .flat_map(|e| std::fs::read_dir(e.path()).unwrap().filter_map(Result::ok))
            .collect();
        let names: Vec<_> = left.iter().map(|e| e.file_name()).collect();
        assert!(
            names.iter().all(|n| n == "extended_orport_auth_cookie"),
            "files left in the state directory: {names:?}"
        );
    }
}
