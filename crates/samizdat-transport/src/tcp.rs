//! Plain TCP.

use crate::{BoxFuture, BoxStream, Incoming, Listener, Transport};
use std::io;
use tokio::net::{TcpListener, TcpStream};

/// Plain TCP streams (`tcp/HOST:PORT`). Obfuscating transports wrap or replace this one.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpTransport;

struct TcpAcceptor(TcpListener, String);

impl Listener for TcpAcceptor {
    fn local_addr(&self) -> String {
        self.1.clone()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<Incoming>> {
        Box::pin(async move {
            let (stream, remote) = self.0.accept().await?;
            stream.set_nodelay(true)?;
            Ok(Incoming { stream: Box::new(stream), remote: Some(remote.ip()) })
        })
    }
}

impl Transport for TcpTransport {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn dial(&self, addr: &str) -> BoxFuture<'_, io::Result<BoxStream>> {
        let addr = addr.to_owned();
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxStream)
        })
    }

    fn listen(&self, addr: &str) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        let addr = addr.to_owned();
        Box::pin(async move {
            let listener = TcpListener::bind(addr).await?;
            let local = format!("tcp/{}", listener.local_addr()?);
            Ok(Box::new(TcpAcceptor(listener, local)) as Box<dyn Listener>)
        })
    }
}
