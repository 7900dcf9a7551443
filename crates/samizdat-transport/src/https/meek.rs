//! The web server's side of request/response tunnels ([`crate::meek`]): the sessions POSTs on
//! a secret path feed and drain.
//!
//! A session opens with the first POST on a fresh, valid upgrade path (the same hour-bound,
//! single-use token as an upgrade, so a replayed or forged path is a stranger's and gets the
//! decoy), and the node takes its far end like any accepted stream. Every later POST of the
//! session uses the same path. A request's body is `seq ‖ flags ‖ data`, its answer
//! `flags ‖ data` (see [`crate::meek`]); a request repeating the last `seq` (the client's
//! retry after a lost answer) gets the same answer again, anything else out of order ends
//! the session. Sessions nobody polls for [`SESSION_IDLE`] are dropped.

use super::token::TokenCheck;
use crate::meek::{FIN, MAX_DOWN, REQUEST_HEAD, Request};
use crate::{BoxStream, Incoming};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Sessions open at once (only holders of the secret can open one; each holds up to about
/// 768 KiB of buffers).
pub const MAX_SESSIONS: usize = 64;
/// A session nobody polled for this long is dropped (clients poll at least every
/// [`crate::meek::MAX_POLL`]).
pub const SESSION_IDLE: Duration = Duration::from_secs(90);
/// How long a request without data waits for the node to have something to send.
pub const HOLD: Duration = Duration::from_millis(100);
/// How long a request with data waits for an answer to it.
const HOLD_AFTER_DATA: Duration = Duration::from_millis(20);
/// How long the node may take to read what a request brought before the session is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes buffered each way between the web server and the node.
const WINDOW: usize = 256 * 1024;

struct Session {
    end: DuplexStream,
    next_seq: u64,
    last: Option<Vec<u8>>,
    up_closed: bool,
    down_closed: bool,
}

/// One session: its state, and when it was last used (read by the sweep without waiting for
/// the state).
pub(crate) struct Entry {
    used: Mutex<Instant>,
    /// The key the session's requests are authenticated with.
    key: [u8; 32],
    session: tokio::sync::Mutex<Session>,
}

impl Entry {
    /// Whether `body` is a request of this session (its MAC holds): anything else is a
    /// stranger's, answered by the decoy.
    pub(crate) fn authentic(&self, body: &[u8]) -> bool {
        Request::parse(body, &self.key).is_some()
    }
}

/// The sessions of one listener.
pub(crate) struct Sessions {
    by_path: Mutex<HashMap<String, Arc<Entry>>>,
    tx: mpsc::Sender<Incoming>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sessions(..)")
    }
}

impl Sessions {
    /// Sessions whose far ends go to `tx`.
    pub(crate) fn new(tx: mpsc::Sender<Incoming>) -> Self {
        Sessions { by_path: Mutex::new(HashMap::new()), tx }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.by_path.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sessions open now.
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }

    /// Drops the sessions nobody polled for [`SESSION_IDLE`] (their node ends read EOF).
    pub(crate) fn sweep(&self) {
        let now = Instant::now();
        self.map().retain(|_, e| {
            let used = *e.used.lock().unwrap_or_else(|e| e.into_inner());
            now.saturating_duration_since(used) < SESSION_IDLE
        });
    }

    /// The session at `path`, opened now if `path` is a fresh valid token (by the client at
    /// `remote`, when known); `None` for a stranger's path, or when the sessions or the node's
    /// backlog are full.
    pub(crate) fn find_or_open(
        &self,
        path: &str,
        tokens: &Mutex<TokenCheck>,
        remote: Option<std::net::IpAddr>,
    ) -> Option<Arc<Entry>> {
        if let Some(e) = self.map().get(path) {
            return Some(e.clone());
        }
        self.sweep();
        if self.len() >= MAX_SESSIONS {
            return None;
        }
        // A slot in the node's backlog first, so a full backlog does not use up the token.
        let permit = self.tx.try_reserve().ok()?;
        let hour = super::http1::unix_now() / 3600;
        let key = {
            let mut tokens = tokens.lock().unwrap_or_else(|e| e.into_inner());
            if !tokens.accept(path, hour) {
                return None;
            }
            tokens.request_key(path)
        };
        let (mine, node) = tokio::io::duplex(WINDOW);
        let stream: BoxStream = Box::new(node);
        permit.send(Incoming { stream, remote });
        let session =
            Session { end: mine, next_seq: 0, last: None, up_closed: false, down_closed: false };
        let entry = Arc::new(Entry {
            used: Mutex::new(Instant::now()),
            key,
            session: tokio::sync::Mutex::new(session),
        });
        self.map().insert(path.to_owned(), entry.clone());
        Some(entry)
    }

    /// Forgets the session at `path`.
    pub(crate) fn close(&self, path: &str) {
        self.map().remove(path);
    }
}

/// Serves one request of a session: its answer's body, or `None` when the request breaks the
/// protocol (the caller then closes the session).
pub(crate) async fn exchange(entry: &Entry, body: &[u8]) -> Option<Vec<u8>> {
    let request = Request::parse(body, &entry.key)?;
    let mut s = entry.session.lock().await;
    *entry.used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    if request.seq.checked_add(1) == Some(s.next_seq) {
        // The client did not get the last answer: the same again.
        return s.last.clone();
    }
    if request.seq < s.next_seq {
        // A late duplicate (a proxy's own retry): nobody waits for it; it changes nothing.
        return Some(vec![0]);
    }
    if request.seq != s.next_seq {
        return None;
    }
    if !request.data.is_empty() && !s.up_closed {
        let write = tokio::time::timeout(WRITE_TIMEOUT, s.end.write_all(request.data));
        match write.await {
            Ok(Ok(())) => {}
            // The node is gone (or stuck): its last bytes still go out below, then FIN.
            Ok(Err(_)) | Err(_) => s.up_closed = true,
        }
    }
    if request.fin && !s.up_closed {
        s.up_closed = true;
        let _ = s.end.shutdown().await;
    }
    let mut answer = vec![0u8];
    if !s.down_closed {
        let hold = if request.data.is_empty() { HOLD } else { HOLD_AFTER_DATA };
        let mut chunk = vec![0u8; 64 * 1024];
        // Wait up to `hold` for the first bytes, then take what is there without waiting.
        let mut first = true;
        while answer.len() - 1 < MAX_DOWN {
            let want = chunk.len().min(MAX_DOWN + 1 - answer.len());
            let read = s.end.read(&mut chunk[..want]);
            let got = if first {
                tokio::time::timeout(hold, read).await.ok()
            } else {
                futures_lite::future::poll_once(read).await
            };
            first = false;
            match got {
                Some(Ok(0)) | Some(Err(_)) => {
                    s.down_closed = true;
                    break;
                }
                Some(Ok(n)) => answer.extend_from_slice(&chunk[..n]),
                None => break,
            }
        }
    }
    if s.down_closed {
        answer[0] |= FIN;
    }
    s.next_seq += 1;
    s.last = Some(answer.clone());
    Some(answer)
}

/// The longest request body a session takes.
pub(crate) const MAX_REQUEST_BODY: u64 = (REQUEST_HEAD + crate::meek::MAX_UP) as u64;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::meek::{MAX_UP, Request};

    const SECRET: [u8; 32] = [3; 32];

    fn path(n: u8) -> String {
        super::super::token::upgrade_path(&SECRET, super::super::http1::unix_now() / 3600, [n; 16])
    }

    /// A request of the session opened on `path(n)`.
    fn body_for(n: u8, seq: u64, fin: bool, data: &[u8]) -> Vec<u8> {
        let key = super::super::token::request_key(&SECRET, &path(n));
        let b = Request { seq, fin, data }.encode(&key);
        assert!(Request::parse(&b, &key).is_some());
        b
    }

    fn body(seq: u64, fin: bool, data: &[u8]) -> Vec<u8> {
        body_for(1, seq, fin, data)
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_orders_retries_and_closes_like_the_client_expects() {
        let (tx, mut rx) = mpsc::channel(4);
        let sessions = Sessions::new(tx);
        let tokens = Mutex::new(TokenCheck::new(SECRET));
        assert!(sessions.find_or_open("/not/a/token", &tokens, None).is_none());
        let p = path(1);
        let entry = sessions.find_or_open(&p, &tokens, None).unwrap();
        let mut node = rx.recv().await.unwrap().stream;
        assert!(sessions.find_or_open(&p, &tokens, None).is_some(), "the same session again");
        assert_eq!(sessions.len(), 1);

        // Nothing to send: the request is held, then answered empty.
        let t0 = Instant::now();
        assert_eq!(exchange(&entry, &body(0, false, b"")).await.unwrap(), [0]);
        assert!(t0.elapsed() >= HOLD);
        // Data up reaches the node; its answer comes back in the same exchange.
        let echo = async {
            let mut got = [0u8; 4];
            node.read_exact(&mut got).await.unwrap();
            node.write_all(b"pong").await.unwrap();
            node
        };
        let ping = body(1, false, b"ping");
        let (answer, node) = tokio::join!(exchange(&entry, &ping), echo);
        let answer = answer.unwrap();
        assert!(answer == b"\0pong" || answer == b"\0", "{answer:?}");
        // A retry of the last request gets the same answer, and the data is not sent twice.
        assert_eq!(exchange(&entry, &body(1, false, b"ping")).await.unwrap(), answer);
        if answer == b"\0" {
            assert_eq!(exchange(&entry, &body(2, false, b"")).await.unwrap(), b"\0pong");
        }
        // Out of order, malformed: refused.
        assert!(exchange(&entry, &body(9, false, b"")).await.is_none());
        assert!(exchange(&entry, &[0u8; 3]).await.is_none());
        assert!(exchange(&entry, &vec![0u8; REQUEST_HEAD + MAX_UP + 1]).await.is_none());

        // The client finishing is the node's EOF; the node finishing is the answer's FIN.
        let entry2 = sessions.find_or_open(&path(2), &tokens, None).unwrap();
        let mut node2 = rx.recv().await.unwrap().stream;
        let (much, bye) = (vec![7u8; MAX_DOWN + 10], body_for(2, 0, true, b"bye"));
        let (wrote, big) = tokio::join!(node2.write_all(&much), exchange(&entry2, &bye));
        wrote.unwrap();
        let big = big.unwrap();
        assert_eq!(big.len(), 1 + MAX_DOWN, "an answer carries at most MAX_DOWN");
        let mut rest = Vec::new();
        node2.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"bye");
        // Data after the client's FIN is dropped; the node's bytes still come.
        let more = exchange(&entry2, &body_for(2, 1, false, b"more")).await.unwrap();
        assert_eq!(more, [[0].as_slice(), &[7u8; 10]].concat());
        drop(node2);
        assert_eq!(exchange(&entry2, &body_for(2, 2, false, b"")).await.unwrap(), [FIN]);
        // A late duplicate changes nothing; the session goes on.
        assert_eq!(exchange(&entry2, &body_for(2, 0, false, b"x")).await.unwrap(), [0]);
        assert_eq!(exchange(&entry2, &body_for(2, 3, false, b"")).await.unwrap(), [FIN]);
        // Another session's key makes no request of this one.
        assert!(!entry2.authentic(&body_for(1, 4, false, b"")));
        assert!(entry2.authentic(&body_for(2, 4, false, b"")));
        sessions.close(&path(2));
        assert_eq!(sessions.len(), 1);
        drop(node);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_are_dropped_and_the_table_is_bounded() {
        let (tx, mut rx) = mpsc::channel(MAX_SESSIONS + 8);
        let sessions = Sessions::new(tx);
        let tokens = Mutex::new(TokenCheck::new(SECRET));
        let entry = sessions.find_or_open(&path(0), &tokens, None).unwrap();
        let mut node = rx.recv().await.unwrap().stream;
        tokio::time::advance(SESSION_IDLE / 2).await;
        sessions.sweep();
        assert_eq!(sessions.len(), 1, "not idle long enough");
        tokio::time::advance(SESSION_IDLE).await;
        sessions.sweep();
        assert_eq!(sessions.len(), 0);
        drop(entry);
        let mut rest = Vec::new();
        node.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "a dropped session is the node's EOF");

        for i in 0..MAX_SESSIONS {
            let p = super::super::token::upgrade_path(
                &SECRET,
                super::super::http1::unix_now() / 3600,
                {
                    let mut n = [0u8; 16];
                    n[..8].copy_from_slice(&(i as u64 + 1000).to_be_bytes());
                    n
                },
            );
            assert!(sessions.find_or_open(&p, &tokens, None).is_some());
        }
        assert!(sessions.find_or_open(&path(9), &tokens, None).is_none(), "the table is full");

        // A node that takes no streams: its backlog full, nothing opens.
        let (tx, _rx) = mpsc::channel(1);
        let sessions = Sessions::new(tx);
        assert!(sessions.find_or_open(&path(10), &tokens, None).is_some());
        assert!(sessions.find_or_open(&path(11), &tokens, None).is_none());
        assert_eq!(format!("{sessions:?}"), "Sessions(..)");
    }
}
