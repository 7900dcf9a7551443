//! The local control socket: how the `samizdat` CLI talks to a running node daemon.
//!
//! A Unix socket at `DATA/control.sock` (mode 0600, so only the node's user can use it) takes
//! one JSON request per connection, one line long, and answers with JSON lines:
//!
//! * `{"op":"share","path":"/abs/file"}` → `{"ok":true,"link":"sz1…","bytes":N}`
//! * `{"op":"fetch","link":"sz1…","out":"/abs/out"}` (or `"dir":"/abs/dir"` to save inside a
//!   directory under the sender's sanitised name, see [`crate::FetchTarget::Dir`]) →
//!   `{"progress":{…}}` lines, then
//!   `{"ok":true,"bytes":N,"resumed_bytes":N,"path":"…","name":"…"}`. Closing the connection
//!   cancels the download; what was verified stays on disk for a later resume.
//! * `{"op":"peers"}` → `{"ok":true,"peers":[…]}`
//!
//! Failures answer `{"ok":false,"error":"…"}`.

use crate::{Node, NodeError, Progress, ShareLink};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

const MAX_REQUEST: usize = 64 * 1024;

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

fn error_json(e: &dyn std::fmt::Display) -> Value {
    json!({ "ok": false, "error": e.to_string() })
}

async fn handle(node: Arc<Node>, stream: UnixStream) -> std::io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    let Some(line) = read_line(&mut rd).await? else { return Ok(()) };
    let req: Value = match serde_json::from_str(&line) {
        Ok(v) => v,
        Err(e) => return send(&mut wr, &error_json(&e)).await,
    };
    match req.get("op").and_then(Value::as_str) {
        Some("share") => {
            let Some(path) = req.get("path").and_then(Value::as_str) else {
                return send(&mut wr, &error_json(&"missing path")).await;
            };
            let reply = match node.share(Path::new(path)).await {
                Ok(link) => json!({ "ok": true, "link": link.to_string(),
                    "bytes": std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) }),
                Err(e) => error_json(&e),
            };
            send(&mut wr, &reply).await
        }
        Some("fetch") => {
            let path = |k| req.get(k).and_then(Value::as_str).map(PathBuf::from);
            let target = match (path("out"), path("dir")) {
                (Some(out), None) => crate::FetchTarget::File(out),
                (None, Some(dir)) => crate::FetchTarget::Dir(dir),
                _ => return send(&mut wr, &error_json(&"give one of out or dir")).await,
            };
            let Some(link) = req.get("link").and_then(Value::as_str) else {
                return send(&mut wr, &error_json(&"missing link")).await;
            };
            let link: ShareLink = match link.parse() {
                Ok(l) => l,
                Err(e) => return send(&mut wr, &error_json(&NodeError::Link(e))).await,
            };
            let mut fetch = match node.fetch_into(&link, target).await {
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
        _ => send(&mut wr, &error_json(&"unknown op")).await,
    }
}

/// Errors of the control client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No node is running with this data directory.
    #[error("no node is running with data directory {0} (start one with `samizdat node`)")]
    NoNode(PathBuf),
    /// Talking to the node failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The node answered with an error.
    #[error("{0}")]
    Node(String),
    /// The node's answer was not understood.
    #[error("unexpected answer from the node")]
    Protocol,
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
            let msg = v.get("error").and_then(Value::as_str).unwrap_or("unknown error");
            return Err(ControlError::Node(msg.to_owned()));
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
