//! An in-process transport: named endpoints connected by in-memory pipes.

use crate::{BoxFuture, BoxStream, Incoming, Listener, Transport};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

const PIPE_BUFFER: usize = 256 * 1024;
const BACKLOG: usize = 64;

type Registry = Arc<Mutex<BTreeMap<String, mpsc::Sender<DuplexStream>>>>;

/// In-memory streams between endpoints of the same process (`mem/NAME`). Clones share one
/// namespace; use one per test network.
#[derive(Debug, Clone, Default)]
pub struct MemoryTransport {
    registry: Registry,
}

impl MemoryTransport {
    /// A fresh, empty namespace.
    pub fn new() -> Self {
        Self::default()
    }
}

struct MemoryListener {
    name: String,
    incoming: mpsc::Receiver<DuplexStream>,
    registry: Registry,
}

impl Drop for MemoryListener {
    fn drop(&mut self) {
        let mut reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        reg.remove(&self.name);
    }
}

impl Listener for MemoryListener {
    fn local_addr(&self) -> String {
        format!("mem/{}", self.name)
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<Incoming>> {
        Box::pin(async move {
            match self.incoming.recv().await {
                Some(s) => Ok(Incoming { stream: Box::new(s), remote: None }),
                None => Err(io::ErrorKind::ConnectionAborted.into()),
            }
        })
    }
}

impl Transport for MemoryTransport {
    fn name(&self) -> &'static str {
        "mem"
    }

    fn dial(&self, addr: &str) -> BoxFuture<'_, io::Result<BoxStream>> {
        let sender = {
            let reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
            reg.get(addr).cloned()
        };
        Box::pin(async move {
            let sender = sender.ok_or(io::ErrorKind::ConnectionRefused)?;
            let (a, b) = tokio::io::duplex(PIPE_BUFFER);
            sender.send(b).await.map_err(|_| io::Error::from(io::ErrorKind::ConnectionRefused))?;
            Ok(Box::new(a) as BoxStream)
        })
    }

    fn listen(&self, addr: &str) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        let addr = addr.to_owned();
        Box::pin(async move {
            let mut reg = self.registry.lock().unwrap_or_else(|e| e.into_inner());
            if reg.contains_key(&addr) {
                return Err(io::ErrorKind::AddrInUse.into());
            }
            let (tx, rx) = mpsc::channel(BACKLOG);
            reg.insert(addr.clone(), tx);
            Ok(Box::new(MemoryListener {
                name: addr,
                incoming: rx,
                registry: self.registry.clone(),
            }) as Box<dyn Listener>)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::{TcpTransport, Transports};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn memory_and_tcp_carry_bytes_and_report_errors() {
        let mut t = Transports::new();
        t.register(super::MemoryTransport::new());
        t.register(TcpTransport);
        for listen in ["mem/a", "tcp/127.0.0.1:0"] {
            let mut l = t.listen(listen).await.unwrap();
            let addr = l.local_addr();
            let (c, s) = tokio::join!(t.dial(&addr), l.accept());
            let (mut c, s) = (c.unwrap(), s.unwrap());
            assert_eq!(s.remote.is_some(), listen.starts_with("tcp"));
            assert!(format!("{s:?}").starts_with("Incoming"));
            let mut s = s.stream;
            c.write_all(&[7; 100_000]).await.unwrap();
            drop(c);
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, vec![7; 100_000]);
        }
        assert!(t.dial("mem/nobody").await.is_err());
        assert!(t.dial("udp/1.2.3.4:5").await.is_err());
        assert!(t.dial("garbage").await.is_err());
        assert!(t.listen("mem/a").await.is_ok(), "name freed when the listener dropped");
    }
}
