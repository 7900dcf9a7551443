//! The local control socket: how the `samizdat` CLI talks to a running node daemon.
//!
//! A Unix socket at `DATA/control.sock` (mode 0600, so only the node's user can use it) takes
//! one JSON request per connection, one line long, and answers with JSON lines:
//!
//! * `{"op":"share","path":"/abs/file","again":false,"no_hints":false}` → `{"progress":{…}}` lines (bytes of
//!   the file read), then `{"ok":true,"link":"sz1…","bytes":N,"id":"…","name":"…",
//!   "existing":B}` (`existing`: the same content was already shared, and this is its link)
//! * `{"op":"fetch","link":"sz1…","out":"/abs/out"}` (or `"dir":"/abs/dir"` to save inside a
//!   directory under the sender's sanitised name, see [`crate::FetchTarget::Dir`]; optional
//!   `"peers":["tcp/…"]` adds unpinned sources, see [`crate::Node::fetch_with`]) →
//!   `{"progress":{…}}` lines, then
//!   `{"ok":true,"bytes":N,"resumed_bytes":N,"path":"…","name":"…"}`. Closing the connection
//!   cancels the download; what was verified stays on disk for a later resume.
//! * `{"op":"peers"}` → `{"ok":true,"peers":[…]}`
//! * `{"op":"invite"}` → `{"ok":true,"invite":"szi1…","node_id":"…","addrs":[…]}`
//! * `{"op":"shares"}` → `{"ok":true,"shares":[{"id","name","size","shared_at","link"}…]}`
//! * `{"op":"unshare","target":"ID-OR-LINK"}` → `{"ok":true,"id":"…","name":"…"}`
//!
//! Failures answer `{"ok":false,"error":"…","kind":"…"}`, `kind` being a stable snake_case
//! name of the error class ([`NodeError::kind`], or `bad_request`).

use crate::{Node, NodeError, PeerAddr, Progress, ShareLink, ShareOptions};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

const MAX_REQUEST: usize = 64 * 1024;
/// How often a share reports how much of the file it has read.
const SHARE_PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// The `transports` list of the `peers` answer: per dialled address, whether it works now
/// and what it last did (seconds ago).
fn transports_json(health: &[(PeerAddr, samizdat_engine::health::Health)]) -> Value {
    let now = std::time::Instant::now();
    let ago = |t: std::time::Instant| now.saturating_duration_since(t).as_secs();
    Value::Array(
        health
            .iter()
            .map(|(addr, h)| {
                json!({
                    "addr": addr.to_string(),
                    "transport": addr.transport(),
                    "working": !h.failing(now) && h.last_ok.is_some(),
                    "failing": h.failing(now),
                    "failures": h.fails,
                    "last_ok_secs_ago": h.last_ok.map(ago),
                    "last_failure": h.last_fail.map(|(_, why)| why.as_str()),
                    "last_failure_secs_ago": h.last_fail.map(|(t, _)| ago(t)),
                })
            })
            .collect(),
    )
}

/// The control socket path inside a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Serves the control socket until the listener fails.
pub async fn serve(node: Arc<Node>, data_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    if path.exists() {
        if UnixStream::connect(&path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "another node is already running with this data directory",
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let node = node.clone();
        tokio::spawn(async move {
            let _ = handle(node, stream).await;
        });
    }
}

async fn read_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut limited = (&mut *r).take(MAX_REQUEST as u64);
    let n = limited.read_until(b'\n', &mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    String::from_utf8(line).map(Some).map_err(|_| std::io::ErrorKind::InvalidData.into())
}

use tokio::io::AsyncReadExt as _;

async fn send(w: &mut (impl AsyncWriteExt + Unpin), v: &Value) -> std::io::Result<()> {
    let mut line = v.to_string();
    line.push('\n');
    w.write_all(line.as_bytes()).await
}

fn progress_json(p: &Progress) -> Value {
    json!({ "progress": { "verified": p.verified_bytes, "total": p.total_bytes, "resumed": p.resumed_bytes } })
}

fn error_json(e: &NodeError) -> Value {
    json!({ "ok": false, "error": e.to_string(), "kind": e.kind() })
}

fn bad_request(what: &str) -> Value {
    json!({ "ok": false, "error": format!("bad control request: {what}"), "kind": "bad_request" })
}

async fn handle(node: Arc<Node>, stream: UnixStream) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let Some(line) = read_line(&mut rd).await? else { return Ok(()) };
    let req: Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(_) => return send(&mut wr, &bad_request("not JSON")).await,
    };
    let str_field = |k: &str| req.get(k).and_then(Value::as_str);
    match str_field("op") {
        Some("share") => {
            let Some(path) = str_field("path") else {
                return send(&mut wr, &bad_request("missing path")).await;
            };
            let flag = |k: &str| req.get(k).and_then(Value::as_bool).unwrap_or(false);
            let opts = ShareOptions {
                again: flag("again"),
                no_hints: flag("no_hints"),
                ..ShareOptions::default()
            };
            share(&node, Path::new(path), opts, &mut wr).await
        }
        Some("fetch") => {
            let path = |k| str_field(k).map(PathBuf::from);
            let target = match (path("out"), path("dir")) {
                (Some(out), None) => crate::FetchTarget::File(out),
                (None, Some(dir)) => crate::FetchTarget::Dir(dir),
                _ => return send(&mut wr, &bad_request("give one of out or dir")).await,
            };
            let Some(link) = str_field("link") else {
                return send(&mut wr, &bad_request("missing link")).await;
            };
            let link: ShareLink = match link.parse() {
                Ok(l) => l,
                Err(e) => return send(&mut wr, &error_json(&NodeError::Link(e))).await,
            };
            // Addresses the user added (`fetch --peer`): sources beside the link's, unpinned.
            let mut extra = Vec::new();
            for p in req.get("peers").and_then(Value::as_array).into_iter().flatten() {
                match p.as_str().map(PeerAddr::new) {
                    Some(Ok(addr)) => extra.push(addr),
                    _ => return send(&mut wr, &bad_request("bad peer address")).await,
                }
            }
            let mut fetch = match node.fetch_with(&link, target, extra).await {
                Ok(f) => f,
                Err(e) => return send(&mut wr, &error_json(&e)).await,
            };
            // Watch the client: if it goes away, drop the fetch (which cancels it).
            let mut probe = [0u8; 1];
            loop {
                tokio::select! {
                    p = fetch.progress() => match p {
                        Some(p) => send(&mut wr, &progress_json(&p)).await?,
                        None => break,
                    },
                    _ = rd.read(&mut probe) => return Ok(()),
                }
            }
            let reply = match fetch.outcome().await {
                Ok(o) => json!({ "ok": true, "bytes": o.bytes, "resumed_bytes": o.resumed_bytes,
                    "path": o.path.display().to_string(), "name": o.manifest.safe_name() }),
                Err(e) => error_json(&e),
            };
            send(&mut wr, &reply).await
        }
        Some("peers") => {
            let reply = match (node.peers().await, node.link_health().await) {
                (Ok(peers), Ok(health)) => {
                    json!({ "ok": true, "peers": peers.iter().map(|p| json!({
                    "node_id": p.node_id.map(|n| n.to_string()),
                    "addr": p.addr.as_ref().map(|a| a.to_string()),
                    "outbound": p.outbound,
                    "established": p.established,
                    "user_agent": p.user_agent,
                    "anonymous": p.anonymous,
                })).collect::<Vec<_>>(), "transports": transports_json(&health) })
                }
                (Err(e), _) | (_, Err(e)) => error_json(&e),
            };
            send(&mut wr, &reply).await
        }
        Some("invite") => {
            let reply = match node.invite() {
                Some(inv) => json!({ "ok": true, "invite": inv.to_string(),
                    "node_id": inv.node.to_string(),
                    "addrs": inv.addrs.iter().map(ToString::to_string).collect::<Vec<_>>() }),
                None => json!({ "ok": false, "kind": "no_address",
                    "error": "this node advertises no address to invite others to (start it with --listen or --announce)" }),
            };
            send(&mut wr, &reply).await
        }
        Some("shares") => {
            let list: Vec<Value> = node
                .shares()
                .iter()
                .map(|(r, link)| {
                    json!({ "id": r.id, "name": r.name, "size": r.size,
                            "shared_at": r.shared_at, "link": link.to_string() })
                })
                .collect();
            send(&mut wr, &json!({ "ok": true, "shares": list })).await
        }
        Some("unshare") => {
            let Some(target) = str_field("target") else {
                return send(&mut wr, &bad_request("missing target")).await;
            };
            let reply = match node.unshare(target).await {
                Ok(r) => json!({ "ok": true, "id": r.id, "name": r.name }),
                Err(e) => error_json(&e),
            };
            send(&mut wr, &reply).await
        }
        Some(_) => send(&mut wr, &bad_request("unknown op")).await,
        None => send(&mut wr, &bad_request("missing op")).await,
    }
}

/// Shares `path`, sending how much of it was read every [`SHARE_PROGRESS_EVERY`].
async fn share(
    node: &Node,
    path: &Path,
    mut opts: ShareOptions,
    wr: &mut (impl AsyncWriteExt + Unpin),
) -> std::io::Result<()> {
    let total = std::fs::metadata(path).map(|m| m.len()).ok();
    let read = Arc::new(AtomicU64::new(0));
    opts.progress = Some(read.clone());
    let job = node.share_with(path, opts);
    tokio::pin!(job);
    let mut tick = tokio::time::interval(SHARE_PROGRESS_EVERY);
    tick.tick().await;
    let mut last = 0;
    let result = loop {
        tokio::select! {
            r = &mut job => break r,
            _ = tick.tick() => {
                let now = read.load(Ordering::Relaxed);
                if now != last {
                    last = now;
                    let p = Progress { verified_bytes: now, total_bytes: total, resumed_bytes: 0 };
                    send(wr, &progress_json(&p)).await?;
                }
            }
        }
    };
    let reply = match result {
        Ok(s) => json!({ "ok": true, "link": s.link.to_string(), "bytes": s.record.size,
            "id": s.record.id, "name": s.record.name, "existing": s.existing }),
        Err(e) => error_json(&e),
    };
    send(wr, &reply).await
}

/// Errors of the control client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No node is running with this data directory.
    #[error(
        "no node is running with data directory {dir}; start one with `samizdat node --data {dir}`",
        dir = .0.display()
    )]
    NoNode(PathBuf),
    /// Talking to the node failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The node answered with an error.
    #[error("{message}")]
    Node {
        /// The node's one-line message.
        message: String,
        /// Its error class ([`NodeError::kind`]).
        kind: String,
    },
    /// The node's answer was not understood.
    #[error("unexpected answer from the node")]
    Protocol,
}

impl ControlError {
    /// A stable snake_case name of this error's class.
    pub fn kind(&self) -> &str {
        match self {
            ControlError::NoNode(_) => "node_not_running",
            ControlError::Io(_) => "io",
            ControlError::Node { kind, .. } => kind,
            ControlError::Protocol => "protocol",
        }
    }
}

/// A connection to a running node's control socket.
#[derive(Debug)]
pub struct ControlClient {
    rd: BufReader<tokio::net::unix::OwnedReadHalf>,
    wr: tokio::net::unix::OwnedWriteHalf,
}

impl ControlClient {
    /// Connects to the node running with `data_dir`.
    pub async fn connect(data_dir: &Path) -> Result<Self, ControlError> {
        let stream = UnixStream::connect(socket_path(data_dir))
            .await
            .map_err(|_| ControlError::NoNode(data_dir.to_owned()))?;
        let (rd, wr) = stream.into_split();
        Ok(ControlClient { rd: BufReader::new(rd), wr })
    }

    async fn next(&mut self) -> Result<Value, ControlError> {
        let line = read_line(&mut self.rd).await?.ok_or(ControlError::Protocol)?;
        let v: Value = serde_json::from_str(&line).map_err(|_| ControlError::Protocol)?;
        if v.get("ok") == Some(&Value::Bool(false)) {
            let field =
                |k, default: &str| v.get(k).and_then(Value::as_str).unwrap_or(default).to_owned();
            return Err(ControlError::Node {
                message: field("error", "unknown error"),
                kind: field("kind", "node"),
            });
        }
        Ok(v)
    }

    /// Sends a request and returns the final answer, passing progress lines to `on_progress`.
    pub async fn request(
        mut self,
        req: Value,
        mut on_progress: impl FnMut(Progress),
    ) -> Result<Value, ControlError> {
        send(&mut self.wr, &req).await?;
        loop {
            let v = self.next().await?;
            match v.get("progress") {
                Some(p) => on_progress(Progress {
                    verified_bytes: p.get("verified").and_then(Value::as_u64).unwrap_or(0),
                    total_bytes: p.get("total").and_then(Value::as_u64),
                    resumed_bytes: p.get("resumed").and_then(Value::as_u64).unwrap_or(0),
                }),
                None => return Ok(v),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::NodeBuilder;

    /// A node with a data directory, its control socket served.
    async fn served(dir: &Path) -> (Arc<Node>, tokio::task::JoinHandle<std::io::Result<()>>) {
        let node = Arc::new(
            NodeBuilder::new().data_dir(dir).listen("tcp/127.0.0.1:0").build().await.unwrap(),
        );
        let task = tokio::spawn({
            let (node, dir) = (node.clone(), dir.to_owned());
            async move { serve(node, &dir).await }
        });
        for _ in 0..500 {
            if UnixStream::connect(socket_path(dir)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (node, task)
    }

    /// Sends raw bytes, returns every answer line.
    async fn raw(dir: &Path, bytes: &[u8]) -> Vec<Value> {
        let s = UnixStream::connect(socket_path(dir)).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            // The server may close before reading all of an over-long request (a reset).
            let _ = rd.read_to_end(&mut out).await;
            out
        });
        let _ = wr.write_all(bytes).await;
        let _ = wr.shutdown().await;
        let out = String::from_utf8(reader.await.unwrap()).unwrap();
        out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    async fn ask(dir: &Path, req: Value) -> Result<Value, ControlError> {
        ControlClient::connect(dir).await?.request(req, |_| {}).await
    }

    fn kind(e: ControlError) -> String {
        e.kind().to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn malformed_and_unknown_requests_get_typed_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let (_node, _task) = served(tmp.path()).await;
        let dir = tmp.path();
        for (bytes, want) in [
            (&b"not json\n"[..], "not JSON"),
            (b"{\"op\":\"launch\"}\n", "unknown op"),
            (b"{\"nop\":1}\n", "missing op"),
            (b"{\"op\":7}\n", "missing op"),
            (b"{\"op\":\"share\"}\n", "missing path"),
            (b"{\"op\":\"fetch\",\"link\":\"sz1x\"}\n", "give one of out or dir"),
            (b"{\"op\":\"fetch\",\"out\":\"/tmp/x\"}\n", "missing link"),
            (b"{\"op\":\"unshare\"}\n", "missing target"),
        ] {
            let answers = raw(dir, bytes).await;
            assert_eq!(answers.len(), 1, "{answers:?}");
            assert_eq!(answers[0]["ok"], false);
            assert_eq!(answers[0]["kind"], "bad_request", "{answers:?}");
            assert!(answers[0]["error"].as_str().unwrap().contains(want), "{answers:?}");
        }
        // Invalid UTF-8, an empty connection and an over-long line: no answer, no crash.
        assert!(raw(dir, b"\xff\xfe\n").await.is_empty());
        assert!(raw(dir, b"").await.is_empty());
        let long = vec![b'x'; MAX_REQUEST + 10];
        let answers = raw(dir, &long).await;
        assert_eq!(answers[0]["kind"], "bad_request");
        // The server still answers afterwards.
        assert_eq!(ask(dir, json!({ "op": "peers" })).await.unwrap()["ok"], true);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_command_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir_a, dir_b) = (tmp.path().join("a"), tmp.path().join("b"));
        let (a, _ta) = served(&dir_a).await;
        let (_b, _tb) = served(&dir_b).await;
        let file = tmp.path().join("report.txt");
        let content: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&file, &content).unwrap();

        let mut progress = Vec::new();
        let v = ControlClient::connect(&dir_a)
            .await
            .unwrap()
            .request(json!({ "op": "share", "path": file }), |p| progress.push(p))
            .await
            .unwrap();
        assert_eq!(v["existing"], false);
        assert_eq!(v["bytes"], 300_000);
        assert_eq!(v["name"], "report.txt");
        let link = v["link"].as_str().unwrap().to_owned();
        let id = v["id"].as_str().unwrap().to_owned();
        assert!(progress.iter().all(|p| p.total_bytes == Some(300_000)));
        let again = ask(&dir_a, json!({ "op": "share", "path": file })).await.unwrap();
        assert_eq!((again["existing"].clone(), again["id"].clone()), (json!(true), json!(id)));
        let list = ask(&dir_a, json!({ "op": "shares" })).await.unwrap();
        let list = list["shares"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["link"], link);
        assert_eq!(list[0]["size"], 300_000);
        assert!(list[0]["shared_at"].as_u64().unwrap() > 1_700_000_000);
        let e = ask(&dir_a, json!({ "op": "share", "path": "/nonexistent" })).await.unwrap_err();
        assert_eq!(kind(e), "io");

        // Fetch through node B.
        let out = tmp.path().join("copy.txt");
        let mut seen = 0;
        let v = ControlClient::connect(&dir_b)
            .await
            .unwrap()
            .request(json!({ "op": "fetch", "link": link, "out": out }), |_| seen += 1)
            .await
            .unwrap();
        assert_eq!(v["bytes"], 300_000);
        assert!(seen > 0);
        assert_eq!(std::fs::read(&out).unwrap(), content);
        let e = ask(&dir_b, json!({ "op": "fetch", "link": link, "out": out })).await.unwrap_err();
        assert_eq!(kind(e), "output_exists");
        let e = ask(&dir_b, json!({ "op": "fetch", "link": "sz1nope", "out": "/tmp/x" }))
            .await
            .unwrap_err();
        assert_eq!(kind(e), "link_invalid");

        // The download's link (anonymous) ended with it; what it dialled is remembered.
        let peers = ask(&dir_b, json!({ "op": "peers" })).await.unwrap();
        assert!(peers["peers"].as_array().unwrap().iter().all(|p| p["anonymous"] == true));
        assert!(!peers["transports"].as_array().unwrap().is_empty(), "{peers}");

        // Unshare by link: A stops serving, so a new fetch finds no source.
        let v = ask(&dir_a, json!({ "op": "unshare", "target": link })).await.unwrap();
        assert_eq!(v["id"], id);
        let e = ask(&dir_a, json!({ "op": "unshare", "target": id })).await.unwrap_err();
        assert_eq!(kind(e), "unknown_share");
        assert!(a.shares().is_empty());
        // No longer in the engine's content source (a fetch from it would wait for sources
        // until its timeout): removing it again finds nothing.
        let root = link.parse::<ShareLink>().unwrap().root;
        let served =
            a.call(|reply| crate::driver::Command::Unregister { root, reply }).await.unwrap();
        assert!(!served);
        assert!(std::fs::read_dir(dir_a.join("blobs")).unwrap().next().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_server_is_refused_and_a_stale_socket_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let (node, _task) = served(tmp.path()).await;
        let e = serve(node.clone(), tmp.path()).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        // A socket file nobody listens on is replaced.
        let other = tempfile::tempdir().unwrap();
        drop(std::os::unix::net::UnixListener::bind(socket_path(other.path())).unwrap());
        let task = tokio::spawn({
            let dir = other.path().to_owned();
            async move { serve(node, &dir).await }
        });
        let mut ok = false;
        for _ in 0..500 {
            if ask(other.path(), json!({ "op": "peers" })).await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ok);
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn client_errors_are_typed() {
        let tmp = tempfile::tempdir().unwrap();
        let e = ControlClient::connect(tmp.path()).await.unwrap_err();
        assert_eq!(e.kind(), "node_not_running");
        assert!(e.to_string().contains("start one with `samizdat node --data"), "{e}");
        // A server that answers garbage, or nothing.
        let listener = UnixListener::bind(socket_path(tmp.path())).unwrap();
        let server = tokio::spawn(async move {
            for answer in [&b"garbage\n"[..], b"", b"{\"ok\":false}\n"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf).await;
                s.write_all(answer).await.unwrap();
            }
        });
        for want in ["protocol", "protocol", "node"] {
            let e = ask(tmp.path(), json!({ "op": "peers" })).await.unwrap_err();
            assert_eq!(e.kind(), want, "{e}");
        }
        server.await.unwrap();
        let io = ControlError::Io(std::io::ErrorKind::BrokenPipe.into());
        assert_eq!(io.kind(), "io");
    }
}
