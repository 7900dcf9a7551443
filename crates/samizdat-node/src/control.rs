//! The local control socket: how the `samizdat` CLI talks to a running node daemon.
//!
//! A Unix socket at `DATA/control.sock` (mode 0600, so only the node's user can use it) takes
//! one JSON request per connection, one line long, and answers with JSON lines:
//!
//! * `{"op":"share","path":"/abs/file","again":false}` → `{"progress":{…}}` lines (bytes of
//!   the file read), then `{"ok":true,"link":"sz1…","bytes":N,"id":"…","name":"…",
//!   "existing":B}` (`existing`: the same content was already shared, and this is its link)
//! * `{"op":"fetch","link":"sz1…","out":"/abs/out"}` → `{"progress":{…}}` lines, then
//!   `{"ok":true,"bytes":N,"resumed_bytes":N,"path":"…","name":"…"}`. Closing the connection
//!   cancels the download; what was verified stays on disk for a later resume.
//! * `{"op":"peers"}` → `{"ok":true,"peers":[…]}`
//! * `{"op":"shares"}` → `{"ok":true,"shares":[{"id","name","size","shared_at","link"}…]}`
//! * `{"op":"unshare","target":"ID-OR-LINK"}` → `{"ok":true,"id":"…","name":"…"}`
//!
//! Failures answer `{"ok":false,"error":"…","kind":"…"}`, `kind` being a stable snake_case
//! name of the error class ([`NodeError::kind`], or `bad_request`).

use crate::{Node, NodeError, Progress, ShareLink, ShareOptions};
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
            let again = req.get("again").and_then(Value::as_bool).unwrap_or(false);
            share(&node, Path::new(path), again, &mut wr).await
        }
        Some("fetch") => {
            let (Some(link), Some(out)) = (str_field("link"), str_field("out")) else {
                return send(&mut wr, &bad_request("missing link or out")).await;
            };
            let link: ShareLink = match link.parse() {
                Ok(l) => l,
                Err(e) => return send(&mut wr, &error_json(&NodeError::Link(e))).await,
            };
            let mut fetch = match node.fetch(&link, Path::new(out)).await {
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
            let reply = match node.peers().await {
                Ok(peers) => json!({ "ok": true, "peers": peers.iter().map(|p| json!({
                    "node_id": p.node_id.map(|n| n.to_string()),
                    "addr": p.addr.as_ref().map(|a| a.to_string()),
                    "outbound": p.outbound,
                    "established": p.established,
                    "user_agent": p.user_agent,
                })).collect::<Vec<_>>() }),
                Err(e) => error_json(&e),
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
    again: bool,
    wr: &mut (impl AsyncWriteExt + Unpin),
) -> std::io::Result<()> {
    let total = std::fs::metadata(path).map(|m| m.len()).ok();
    let read = Arc::new(AtomicU64::new(0));
    let opts = ShareOptions { again, progress: Some(read.clone()) };
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
