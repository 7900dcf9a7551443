//! The veil transport over real TCP sockets on loopback.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use samizdat_transport::veil::{ServerKey, VeilAddr, VeilTransport};
use samizdat_transport::{Listener, Transport};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn server() -> (VeilTransport, Box<dyn Listener>, VeilAddr) {
    let t = VeilTransport::with_server(ServerKey::generate(&mut rand_core::OsRng));
    let l = t.listen("127.0.0.1:0").await.unwrap();
    let addr = VeilAddr::parse(l.local_addr().strip_prefix("veil/").unwrap()).unwrap();
    (t, l, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mebibyte_each_way_and_the_address_carries_the_key() {
    let (_t, mut listener, addr) = server().await;
    assert_ne!(addr.endpoint.port(), 0);
    let client = VeilTransport::client();
    assert!(client.listen("127.0.0.1:0").await.is_err(), "a client-only transport listens");
    let payload: Vec<u8> =
        (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    let (dialled, accepted) = tokio::join!(client.dial(&addr.to_string()), listener.accept());
    let (mut a, incoming) = (dialled.unwrap(), accepted.unwrap());
    assert_eq!(incoming.remote, Some(std::net::Ipv4Addr::LOCALHOST.into()));
    let mut b = incoming.stream;
    let expected = payload.clone();
    let there = tokio::spawn(async move {
        let mut got = vec![0u8; expected.len()];
        b.read_exact(&mut got).await.unwrap();
        assert!(got == expected);
        b.write_all(&got).await.unwrap();
        b.shutdown().await.unwrap();
    });
    a.write_all(&payload).await.unwrap();
    a.flush().await.unwrap();
    let mut back = Vec::new();
    a.read_to_end(&mut back).await.unwrap();
    assert!(back == payload);
    there.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prober_or_a_wrong_key_gets_nothing_and_the_node_is_handed_nothing() {
    let (_t, mut listener, addr) = server().await;
    // Raw bytes: a TLS ClientHello's start, then junk.
    let mut probe = tokio::net::TcpStream::connect(addr.endpoint).await.unwrap();
    probe.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.unwrap();
    probe.write_all(&[0xa5; 2000]).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(3), probe.read(&mut buf)).await;
    assert!(read.is_err(), "the server answered or closed: {read:?}");
    // Another server's key: the dial does not complete, and the node sees nothing.
    let (_other, _ol, other) = server().await;
    let wrong = VeilAddr { endpoint: addr.endpoint, key: other.key };
    let client = VeilTransport::client();
    let dial = tokio::time::timeout(Duration::from_secs(3), client.dial(&wrong.to_string()));
    let accept = tokio::time::timeout(Duration::from_secs(3), listener.accept());
    let (dialled, accepted) = tokio::join!(dial, accept);
    assert!(dialled.is_err(), "a dial with the wrong key completed");
    assert!(accepted.is_err(), "the node was handed a stream");
    // Malformed addresses are refused before any connection.
    for bad in ["127.0.0.1:9", "127.0.0.1:9?k=short", "name:9?k=AAAA"] {
        let e = client.dial(bad).await.err().unwrap();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_from_one_host_do_not_lock_out_another() {
    let (_t, mut listener, addr) = server().await;
    // A host that opens connections and sends nothing takes its own share of the handshake
    // slots, no more: past it, its connections are closed at once.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(tokio::net::TcpStream::connect(addr.endpoint).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(addr.endpoint).await.unwrap();
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    // Another host still gets in.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(addr.endpoint).await.unwrap();
    let (dialled, accepted) =
        tokio::join!(samizdat_transport::veil::client(stream, &addr.key), listener.accept());
    let (mut a, incoming) = (dialled.unwrap(), accepted.unwrap());
    assert_eq!(incoming.remote, Some("127.0.0.2".parse().unwrap()));
    a.write_all(b"in").await.unwrap();
    a.flush().await.unwrap();
    let mut two = [0u8; 2];
    let mut b = incoming.stream;
    b.read_exact(&mut two).await.unwrap();
    assert_eq!(&two, b"in");
    drop(idle);
}
