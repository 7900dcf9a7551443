#![allow(clippy::unwrap_used)]
use super::handshake::*;
use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

const NOW: u64 = 1_800_000_000;

fn key() -> ServerKey {
    ServerKey::generate(&mut OsRng)
}

/// A hello and the server's view of it, without I/O.
fn hello(server: &ServerKey, now: u64, pad: usize) -> (ClientHello, Vec<u8>) {
    let mut out = Vec::new();
    let c = client_hello(&mut OsRng, &server.public(), now, pad, &mut out).unwrap();
    (c, out)
}

fn refusal(e: io::Error) -> String {
    e.to_string()
}

#[test]
fn a_handshake_gives_both_sides_matching_keys() {
    let k = key();
    let (c, bytes) = hello(&k, NOW, 100);
    let mut reply = Vec::new();
    let mut server = server_read_all(&mut OsRng, &k, &bytes, NOW + 30, &mut reply).unwrap();
    let head: [u8; HELLO_HEAD] = reply[..HELLO_HEAD].try_into().unwrap();
    let r = c.reply_head(&head).unwrap();
    assert_eq!(reply.len(), HELLO_HEAD + r.body_len);
    let mut client = r.finish(&mut reply[HELLO_HEAD..].to_vec()).unwrap();
    // A record each way opens on the other side, and only in order.
    let mut rec = Vec::new();
    client.send.seal(b"from the client", 7, &[], &mut rec).unwrap();
    let len = server.recv.body_len([rec[0], rec[1]], MAX_RECORD).unwrap();
    assert_eq!(len, rec.len() - 2);
    let data = server.recv.open(&mut rec[2..], &[]).unwrap();
    assert_eq!(&rec[2..][data], b"from the client");
    let mut back = Vec::new();
    server.send.seal(b"and back", 0, &[], &mut back).unwrap();
    let first = 2 + client.recv.body_len([back[0], back[1]], MAX_RECORD).unwrap();
    let data = client.recv.open(&mut back[2..first], &[]).unwrap();
    assert_eq!(&back[2..][data], b"and back");
    // Out of order: a second record does not open as the first (its nonce differs).
    let (mut c, mut srv) = pair(&k);
    let mut b = Vec::new();
    c.send.seal(b"one", 0, &[], &mut b).unwrap();
    let one = b.len();
    c.send.seal(b"two", 0, &[], &mut b).unwrap();
    assert_eq!(srv.recv.open(&mut b[one + 2..], &[]), Err(Refusal::Auth));
}

/// The client's and the server's keys of a fresh handshake with `k`.
fn pair(k: &ServerKey) -> (Keys, Keys) {
    let (c, bytes) = hello(k, NOW, 0);
    let mut reply = Vec::new();
    let server = server_read_all(&mut OsRng, k, &bytes, NOW, &mut reply).unwrap();
    let head: [u8; HELLO_HEAD] = reply[..HELLO_HEAD].try_into().unwrap();
    let client = c.reply_head(&head).unwrap().finish(&mut reply[HELLO_HEAD..].to_vec()).unwrap();
    (client, server)
}

#[test]
fn hellos_for_another_key_late_or_altered_are_refused() {
    let k = key();
    let mut out = Vec::new();
    // Another server's key: the record does not open (or its length is impossible).
    let (_, other) = hello(&key(), NOW, 50);
    let e = refusal(server_read_all(&mut OsRng, &k, &other, NOW, &mut out).err().unwrap());
    assert!(e.contains("length") || e.contains("authenticate"), "{e}");
    // Off the clock by more than the window, either way.
    let (_, bytes) = hello(&k, NOW, 50);
    let late = server_read_all(&mut OsRng, &k, &bytes, NOW + CLOCK_WINDOW + 1, &mut out);
    assert!(refusal(late.err().unwrap()).contains("clock"));
    let early = server_read_all(&mut OsRng, &k, &bytes, NOW - CLOCK_WINDOW - 1, &mut out);
    assert!(refusal(early.err().unwrap()).contains("clock"));
    // Any byte altered.
    for i in [0, 31, 32, 33, 40, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[i] ^= 0x01;
        assert!(server_read_all(&mut OsRng, &k, &bad, NOW, &mut out).is_err(), "byte {i}");
    }
    // Cut short.
    assert!(server_read_all(&mut OsRng, &k, &bytes[..bytes.len() - 1], NOW, &mut out).is_err());
    assert!(server_read_all(&mut OsRng, &k, &bytes[..10], NOW, &mut out).is_err());
    assert!(out.is_empty(), "no reply was written");
    // A low-order point gives no shared secret.
    let mut zero = vec![0u8; 200];
    zero[..32].copy_from_slice(&[0; 32]);
    let e = server_read_all(&mut OsRng, &k, &zero, NOW, &mut out).err().unwrap();
    assert!(refusal(e).contains("degenerate"));
}

#[test]
fn the_wire_has_no_fixed_lengths_and_its_keys_look_random() {
    let k = key();
    // The hello's and the reply's lengths vary with their padding.
    let lens: std::collections::BTreeSet<usize> =
        (0..20).map(|_| hello(&k, NOW, random_pad(MAX_HANDSHAKE_PAD)).1.len()).collect();
    assert!(lens.len() >= 15, "{lens:?}");
    // Representatives pass the Legendre-symbol test about half the time, as random strings
    // do; raw public keys pass it always.
    let mut passes = 0;
    let mut high = [false; 4];
    for _ in 0..400 {
        let (_, bytes) = hello(&k, NOW, 0);
        let r: [u8; 32] = bytes[..32].try_into().unwrap();
        passes += usize::from(elligator2::is_montgomery_u(&r));
        high[usize::from(r[31] >> 6)] = true;
    }
    assert!((140..=260).contains(&passes), "{passes} of 400");
    assert!(high.iter().all(|h| *h), "the spare high bits vary");
    assert!(elligator2::is_montgomery_u(&k.public()), "a raw key is a curve point");
}

#[test]
fn replays_are_remembered_for_at_least_an_hour_and_memory_is_bounded() {
    let mut r = Replays::default();
    let x = [7u8; 32];
    r.check(&x, NOW).unwrap();
    assert_eq!(r.check(&x, NOW + 10), Err(Refusal::Replay));
    // Across one turn-over it is still known; two turns later it is forgotten.
    let next = (NOW / REPLAY_PERIOD + 1) * REPLAY_PERIOD;
    assert_eq!(r.check(&x, next + 1), Err(Refusal::Replay));
    r.check(&x, next + 2 * REPLAY_PERIOD).unwrap();
    // A clock jump forward forgets everything (the clock window refuses the old hellos
    // anyway); one backward forgets nothing.
    r.check(&[8; 32], NOW + 100 * REPLAY_PERIOD).unwrap();
    assert!(r.previous.is_empty());
    assert_eq!(r.check(&[8; 32], NOW), Err(Refusal::Replay));
    // Full: the memory turns over early, and what was just seen is still known.
    let current = (0..REPLAY_GENERATION as u32)
        .map(|i| {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[15] = 1;
            id
        })
        .collect();
    let mut r = Replays { period: NOW / REPLAY_PERIOD, current, previous: HashSet::new() };
    r.check(&[9; 32], NOW).unwrap();
    assert_eq!(r.current.len(), 1);
    assert_eq!(r.previous.len(), REPLAY_GENERATION);
    assert_eq!(r.check(&[9; 32], NOW), Err(Refusal::Replay));
    let mut old = [0u8; 32];
    old[15] = 1;
    assert_eq!(r.check(&old, NOW), Err(Refusal::Replay));
}

#[test]
fn addresses_parse_print_and_keep_their_key_out_of_debug() {
    let k = key();
    let a = Server::new(k.clone()).addr("192.0.2.1:443".parse().unwrap());
    let s = a.to_string();
    assert!(s.starts_with("192.0.2.1:443?k="), "{s}");
    assert_eq!(VeilAddr::parse(&s).unwrap(), a);
    assert!(!format!("{a:?}").contains(&s[16..]), "key in Debug");
    assert!(!format!("{k:?}").contains(&format!("{:?}", k.secret())));
    for bad in [
        "192.0.2.1:443",
        "host.example:443?k=AA",
        "192.0.2.1:443?k=!!",
        "192.0.2.1:443?k=AAAA",
        "192.0.2.1:443?x=1",
        &format!("{s}&k=AA"),
        "192.0.2.1:443?",
    ] {
        assert_eq!(VeilAddr::parse(bad).unwrap_err().kind(), io::ErrorKind::InvalidInput, "{bad}");
    }
    let t = VeilTransport::client();
    assert_eq!(format!("{t:?}"), "VeilTransport { server: false }");
    assert_eq!(t.name(), "veil");
}

#[tokio::test]
async fn streams_carry_bytes_both_ways_and_records_are_padded_at_first() {
    let server = Arc::new(Server::new(key()));
    let public = server.key.public();
    let (a, b) = duplex(1 << 16);
    let s2 = Arc::clone(&server);
    let accepting = tokio::spawn(async move {
        let mut s = s2.accept(b, tokio::time::Instant::now(), None).await.unwrap();
        let mut got = vec![0u8; 300_000];
        s.read_exact(&mut got).await.unwrap();
        s.write_all(&got).await.unwrap();
        s.shutdown().await.unwrap();
        got
    });
    let mut c = client(a, &public).await.unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    c.write_all(&data).await.unwrap();
    c.flush().await.unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).await.unwrap();
    assert!(back == data);
    assert!(accepting.await.unwrap() == data);
}

#[tokio::test]
async fn the_first_records_of_equal_writes_differ_in_length() {
    // The same 34-byte write (a session's first handshake message) each time: the record
    // carrying it is padded at random.
    let mut lens = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let keys = pair(&key()).0;
        let (a, mut b) = duplex(1 << 16);
        let mut s = VeilStream::new(a, keys, Vec::new());
        s.write_all(&[0x5a; 34]).await.unwrap();
        s.flush().await.unwrap();
        drop(s);
        let mut raw = Vec::new();
        b.read_to_end(&mut raw).await.unwrap();
        lens.insert(raw.len());
    }
    assert!(lens.len() >= 7, "{lens:?}");
}

#[tokio::test(start_paused = true)]
async fn a_prober_gets_silence_until_its_hold_time() {
    let server = Server::new(key());
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let hold = server.hold_time(Some(ip), unix_now());
    assert!((20..60).contains(&hold.as_secs()), "{hold:?}");
    // Drawn per client address (and hour): not one value a censor can recognise the server by.
    let holds: std::collections::BTreeSet<u128> = (0..20u8)
        .map(|i| server.hold_time(Some(IpAddr::from([192, 0, 2, i])), NOW).as_millis())
        .collect();
    assert!(holds.len() >= 18, "{holds:?}");
    assert_ne!(server.hold_time(Some(ip), NOW), server.hold_time(Some(ip), NOW + 3600));
    for probe in [vec![0u8; 0], vec![0x16, 0x03, 0x01, 0x00, 0x10], vec![0xab; 3000]] {
        let (a, mut b) = duplex(1 << 16);
        let arrived = tokio::time::Instant::now();
        let s = async { server.accept(a, arrived, Some(ip)).await };
        let p = async {
            b.write_all(&probe).await.unwrap();
            let mut buf = [0u8; 64];
            // Nothing comes back; the end comes at the hold time, whatever was sent.
            let n = b.read(&mut buf).await.unwrap();
            (n, arrived.elapsed())
        };
        let (accepted, (n, after)) = tokio::join!(s, p);
        assert!(accepted.is_err());
        assert_eq!(n, 0, "the server said something");
        assert_eq!(after.as_secs(), hold.as_secs(), "{after:?}");
    }
}

#[tokio::test]
async fn a_replayed_hello_is_refused_like_a_probe() {
    let server = Server::new(key());
    let (c, bytes) = hello(&server.key, unix_now(), 30);
    drop(c);
    let first = async {
        let (a, mut b) = duplex(1 << 16);
        b.write_all(&bytes).await.unwrap();
        let s = server.accept(a, tokio::time::Instant::now(), None).await;
        (s.is_ok(), b)
    };
    let (ok, _b) = first.await;
    assert!(ok, "the first hello is accepted");
    let (a, mut b) = duplex(1 << 16);
    b.write_all(&bytes).await.unwrap();
    let arrived = tokio::time::Instant::now() - Duration::from_secs(60);
    let e = server.accept(a, arrived, None).await.err().unwrap();
    assert!(e.to_string().contains("replayed"), "{e}");
    let mut buf = [0u8; 8];
    assert_eq!(b.read(&mut buf).await.unwrap(), 0, "not a byte back");
}

#[tokio::test]
async fn only_hellos_that_open_are_remembered() {
    // Random bytes pass the length check now and then; none of them takes a place in the
    // replay memory, so a prober without the key cannot fill it.
    let server = Server::new(key());
    for _ in 0..200 {
        let (mut a, mut b) = duplex(1 << 16);
        let mut junk = vec![0u8; 1460];
        OsRng.fill_bytes(&mut junk);
        b.write_all(&junk).await.unwrap();
        drop(b);
        assert!(server.handshake(&mut a).await.is_err());
    }
    assert!(server.replays.lock().unwrap().current.is_empty());
    let (c, bytes) = hello(&server.key, unix_now(), 0);
    drop(c);
    let (mut a, mut b) = duplex(1 << 16);
    b.write_all(&bytes).await.unwrap();
    assert!(server.handshake(&mut a).await.is_ok());
    assert_eq!(server.replays.lock().unwrap().current.len(), 1);
}
