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

/// A misbehaving pluggable-transport program: a shell script printing `lines`, then doing
/// `then` (for example waiting on its standard input).
fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn programs_that_break_the_protocol_give_typed_errors_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dial = |program: std::path::PathBuf| async move {
        PtTransport::client("obfs4", program).dial("192.0.2.1:9?cert=x").await.err().unwrap()
    };
    let v2 = script(tmp.path(), "v2", "echo 'VERSION 2'; /bin/cat");
    assert_eq!(dial(v2).await.kind(), io::ErrorKind::Unsupported);
    let none = script(tmp.path(), "none", "echo 'VERSION 1'; echo 'CMETHODS DONE'; /bin/cat");
    assert_eq!(dial(none.clone()).await.kind(), io::ErrorKind::Unsupported);
    let e =
        PtTransport::with_server("obfs4", none, vec![]).listen("127.0.0.1:0").await.err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    let env_error = script(tmp.path(), "enverr", "echo 'ENV-ERROR no state location'");
    let e = dial(env_error).await;
    assert!(e.to_string().contains("ENV-ERROR no state location"), "{e}");
    // A program that fails to start is not started again for a while: dials fail at once.
    let counted = script(tmp.path(), "counted", "echo started >> \"$0.count\"; echo 'VERSION 3'");
    let t = PtTransport::client("obfs4", counted.clone());
    for _ in 0..3 {
        let e = t.dial("192.0.2.1:9?cert=x").await.err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    }
    let starts = std::fs::read_to_string(counted.with_extension("count")).unwrap();
    assert_eq!(starts.lines().count(), 1, "started once in the back-off");
    let garbled =
        script(tmp.path(), "garbled", "echo 'VERSION 1'; echo 'CMETHOD obfs4 socks5 nowhere'");
    assert_eq!(dial(garbled).await.kind(), io::ErrorKind::InvalidData);
    // A server publishing arguments peers could not parse back is refused.
    let odd = script(
        tmp.path(),
        "odd",
        "echo 'VERSION 1'; echo 'SMETHOD obfs4 127.0.0.1:9 ARGS:cert=a\\;b'; echo 'SMETHODS DONE'; /bin/cat",
    );
    let e =
        PtTransport::with_server("obfs4", odd, vec![]).listen("127.0.0.1:0").await.err().unwrap();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    // What a server writes in its state directory (files, directories) goes once it is up;
    // only the extended ORPort cookie stays, and it goes with the listener.
    let writes = script(
        tmp.path(),
        "writes",
        "/bin/mkdir \"$TOR_PT_STATE_LOCATION/sub\"; echo key > \"$TOR_PT_STATE_LOCATION/sub/k\"; \
         echo state > \"$TOR_PT_STATE_LOCATION/s.json\"; echo \"$TOR_PT_STATE_LOCATION\" > \"$0.dir\"; \
         echo 'VERSION 1'; echo 'SMETHOD obfs4 127.0.0.1:9 ARGS:cert=abc,iat-mode=0'; echo 'SMETHODS DONE'; /bin/cat",
    );
    let t = PtTransport::with_server("obfs4", writes.clone(), vec![("k".into(), "v".into())]);
    let listener = t.listen("127.0.0.1:0").await.unwrap();
    assert_eq!(listener.local_addr(), "obfs4/127.0.0.1:9?cert=abc&iat-mode=0");
    let dir = std::fs::read_to_string(writes.with_extension("dir")).unwrap();
    let dir = std::path::PathBuf::from(dir.trim());
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["extended_orport_auth_cookie"]);
    drop(listener);
    assert!(!dir.exists(), "the state directory outlived the listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_proxy_that_died_is_started_again() {
    if !obfs4_present() {
        return;
    }
    let (_server, mut listener) = server(obfs4_keys()).await;
    let addr = listener.local_addr().strip_prefix("obfs4/").unwrap().to_owned();
    let client = PtTransport::client("obfs4", PROGRAM);
    let (a, b) = tokio::join!(client.dial(&addr), listener.accept());
    drop((a.unwrap(), b.unwrap()));
    let pid = client.client_pid().await.unwrap();
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (a, b) = tokio::join!(client.dial(&addr), listener.accept());
    assert_ne!(client.client_pid().await, Some(pid), "a new proxy");
    let (mut a, mut b) = (a.unwrap(), b.unwrap().stream);
    a.write_all(b"back").await.unwrap();
    let mut four = [0u8; 4];
    b.read_exact(&mut four).await.unwrap();
    assert_eq!(&four, b"back");
}

#[tokio::test]
async fn lookup_debug_output_and_a_server_program_that_exits() {
    let sh = samizdat_transport::pt::find_program("sh");
    assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
    let none = samizdat_transport::pt::find_program("no-such-program-here");
    assert_eq!(none, std::path::Path::new("/usr/bin/no-such-program-here"));
    let keys = obfs4_keys();
    let t = PtTransport::with_server("obfs4", PROGRAM, keys.clone());
    let debug = format!("{t:?}");
    assert!(keys.iter().all(|(_, v)| v == "0" || !debug.contains(v.as_str())), "{debug}");
    // A server program that names its method and exits is started again by accept, at most
    // every 5 s; once it can no longer start, accept says why instead of waiting.
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let quits = script(
        tmp.path(),
        "quits",
        &format!(
            "echo run >> {}; echo 'VERSION 1'; echo 'SMETHOD obfs4 127.0.0.1:9 ARGS:cert=abc'; \
             echo 'SMETHODS DONE'",
            runs.display()
        ),
    );
    let t = PtTransport::with_server("obfs4", &quits, vec![]);
    let mut listener = t.listen("127.0.0.1:0").await.unwrap();
    assert!(t.server_pid().is_some());
    let started = tokio::time::Instant::now();
    let waited = tokio::time::timeout(Duration::from_secs(7), listener.accept()).await;
    assert!(waited.is_err(), "no stream, and no error while the program restarts");
    let count = || std::fs::read_to_string(&runs).unwrap().lines().count();
    assert_eq!(count(), 2, "started once more in 7 s, not more often");
    std::fs::remove_file(&quits).unwrap();
    let e = tokio::time::timeout(Duration::from_secs(15), listener.accept()).await.unwrap();
    let e = e.err().unwrap().to_string();
    assert!(e.contains("exited") && e.contains("cannot start"), "{e}");
    assert!(started.elapsed() >= Duration::from_secs(10), "restarts are spaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_proxy_that_dies_is_started_again_with_the_same_address() {
    if !obfs4_present() {
        return;
    }
    let (server, mut listener) = server(obfs4_keys()).await;
    let local = listener.local_addr();
    let first = server.server_pid().unwrap();
    // The node's accept loop: echo what each stream sends.
    let accepting = tokio::spawn(async move {
        loop {
            let Ok(incoming) = listener.accept().await else { continue };
            let mut s = incoming.stream;
            tokio::spawn(async move {
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).await.is_ok() {
                    let _ = s.write_all(&buf).await;
                }
            });
        }
    });
    let client = PtTransport::client("obfs4", PROGRAM);
    let round_trip = || async {
        let mut s = client.dial(local.strip_prefix("obfs4/").unwrap()).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");
        Ok::<_, io::Error>(())
    };
    round_trip().await.unwrap();
    let killed = std::process::Command::new("kill").args(["-KILL", &first.to_string()]).status();
    assert!(killed.unwrap().success());
    // Within the restart spacing and a start, the same address (port and cert) works again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = tokio::time::timeout(Duration::from_secs(5), round_trip()).await;
        if matches!(attempt, Ok(Ok(()))) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never back: {attempt:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_ne!(server.server_pid(), Some(first), "a new process");
    accepting.abort();
}
