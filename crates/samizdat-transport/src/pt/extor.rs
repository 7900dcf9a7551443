//! The extended ORPort (Tor's ext-orport-spec): how a pluggable-transport server hands each
//! stream over together with the client's address, after proving with the SAFE_COOKIE
//! handshake that it holds a cookie only it and the node can read. Without it the node
//! would see every obfs4 client as the proxy's loopback address (so no per-prefix limit
//! could apply), and any local process could reach the node's port past obfs4.

use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

/// The cookie file's fixed header.
pub(crate) const COOKIE_HEADER: &[u8; 32] = b"! Extended ORPort Auth Cookie !\x0a";
/// The cookie file's name in the proxy's state directory.
pub(crate) const COOKIE_FILE: &str = "extended_orport_auth_cookie";
const SAFE_COOKIE: u8 = 1;
const SERVER_TO_CLIENT: &[u8] = b"ExtORPort authentication server-to-client hash";
const CLIENT_TO_SERVER: &[u8] = b"ExtORPort authentication client-to-server hash";
const CMD_DONE: u16 = 0x0000;
const CMD_USERADDR: u16 = 0x0001;
/// `TRANSPORT`: the method's name; ignored (the listener knows it).
#[cfg(test)]
const CMD_TRANSPORT: u16 = 0x0002;
const REPLY_OKAY: u16 = 0x1000;
/// Most commands a proxy may send before `DONE`.
const MAX_COMMANDS: usize = 16;

/// A fresh cookie and the file holding it (header, then the cookie).
pub(crate) fn new_cookie() -> (Zeroizing<[u8; 32]>, Zeroizing<Vec<u8>>) {
    let mut cookie = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut cookie[..]);
    let mut file = Zeroizing::new(COOKIE_HEADER.to_vec());
    file.extend_from_slice(&cookie[..]);
    (cookie, file)
}

fn mac(cookie: &[u8; 32], label: &[u8], client: &[u8; 32], server: &[u8; 32]) -> [u8; 32] {
    // HMAC takes keys of any length; this cannot fail.
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(cookie) else { return [0; 32] };
    m.update(label);
    m.update(client);
    m.update(server);
    m.finalize().into_bytes().into()
}

fn refused(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, what)
}

/// The node's side: authenticates the proxy and reads its commands up to `DONE`, returning
/// the client address it reported (`USERADDR`), if any.
///
/// # Errors
/// `PermissionDenied` for a proxy without the cookie, `InvalidData` for anything that is not
/// the protocol.
pub(crate) async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    cookie: &[u8; 32],
) -> io::Result<Option<SocketAddr>> {
    let malformed =
        || io::Error::new(io::ErrorKind::InvalidData, "not the extended ORPort protocol");
    stream.write_all(&[SAFE_COOKIE, 0]).await?;
    if stream.read_u8().await? != SAFE_COOKIE {
        return Err(malformed());
    }
    let mut client_nonce = [0u8; 32];
    stream.read_exact(&mut client_nonce).await?;
    let mut server_nonce = [0u8; 32];
    OsRng.fill_bytes(&mut server_nonce);
    let mut answer = mac(cookie, SERVER_TO_CLIENT, &client_nonce, &server_nonce).to_vec();
    answer.extend_from_slice(&server_nonce);
    stream.write_all(&answer).await?;
    let mut client_hash = [0u8; 32];
    stream.read_exact(&mut client_hash).await?;
    let ok = match Hmac::<Sha256>::new_from_slice(cookie) {
        Ok(mut m) => {
            m.update(CLIENT_TO_SERVER);
            m.update(&client_nonce);
            m.update(&server_nonce);
            // Constant-time comparison.
            m.verify_slice(&client_hash).is_ok()
        }
        Err(_) => false,
    };
    stream.write_u8(u8::from(ok)).await?;
    if !ok {
        return Err(refused("the proxy does not hold the extended ORPort cookie"));
    }
    let mut user = None;
    for _ in 0..MAX_COMMANDS {
        let kind = stream.read_u16().await?;
        let len = usize::from(stream.read_u16().await?);
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).await?;
        match kind {
            CMD_DONE => {
                stream.write_all(&REPLY_OKAY.to_be_bytes()).await?;
                stream.write_all(&[0, 0]).await?;
                return Ok(user);
            }
            CMD_USERADDR => {
                let text = std::str::from_utf8(&body).map_err(|_| malformed())?;
                user = Some(text.parse().map_err(|_| malformed())?);
            }
            // TRANSPORT and commands this node does not know are ignored, as the spec says.
            _ => {}
        }
    }
    Err(malformed())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The proxy's side of the exchange, as goptlib does it.
    async fn proxy<S: AsyncRead + AsyncWrite + Unpin>(
        s: &mut S,
        cookie: &[u8; 32],
        commands: &[(u16, &[u8])],
    ) -> io::Result<u8> {
        let mut offer = [0u8; 2];
        s.read_exact(&mut offer).await?;
        assert_eq!(offer, [SAFE_COOKIE, 0]);
        let client_nonce = [7u8; 32];
        s.write_u8(SAFE_COOKIE).await?;
        s.write_all(&client_nonce).await?;
        let (mut server_hash, mut server_nonce) = ([0u8; 32], [0u8; 32]);
        s.read_exact(&mut server_hash).await?;
        s.read_exact(&mut server_nonce).await?;
        let status = if server_hash == mac(cookie, SERVER_TO_CLIENT, &client_nonce, &server_nonce) {
            s.write_all(&mac(cookie, CLIENT_TO_SERVER, &client_nonce, &server_nonce)).await?;
            s.read_u8().await?
        } else {
            // A proxy holding another cookie sees the node's hash is wrong; it answers anyway.
            s.write_all(&[0u8; 32]).await?;
            return Ok(s.read_u8().await? + 100);
        };
        for (kind, body) in commands {
            s.write_u16(*kind).await?;
            s.write_u16(body.len() as u16).await?;
            s.write_all(body).await?;
        }
        if commands.last().is_some_and(|(kind, _)| *kind == CMD_DONE) {
            let mut reply = [0u8; 4];
            s.read_exact(&mut reply).await?;
            assert_eq!(reply, [0x10, 0, 0, 0], "OKAY");
        }
        Ok(status)
    }

    async fn run(
        node_cookie: [u8; 32],
        proxy_cookie: [u8; 32],
        commands: Vec<(u16, &'static [u8])>,
    ) -> (io::Result<Option<SocketAddr>>, io::Result<u8>) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let node = async move { accept(&mut a, &node_cookie).await };
        let other = async move { proxy(&mut b, &proxy_cookie, &commands).await };
        tokio::join!(node, other)
    }

    #[tokio::test]
    async fn a_proxy_with_the_cookie_hands_over_the_client_address() {
        let (cookie, file) = new_cookie();
        assert_eq!(&file[..32], COOKIE_HEADER);
        assert_eq!(&file[32..], &cookie[..]);
        let commands: Vec<(u16, &[u8])> = vec![
            (CMD_USERADDR, b"198.51.100.7:40000"),
            (CMD_TRANSPORT, b"obfs4"),
            (0x00ff, b"unknown"),
            (CMD_DONE, b""),
        ];
        let (node, proxy) = run(*cookie, *cookie, commands).await;
        assert_eq!(node.unwrap(), Some("198.51.100.7:40000".parse().unwrap()));
        assert_eq!(proxy.unwrap(), 1);
        let (node, _) = run(*cookie, *cookie, vec![(CMD_DONE, b"")]).await;
        assert_eq!(node.unwrap(), None);
    }

    #[tokio::test]
    async fn a_proxy_without_the_cookie_or_off_protocol_is_refused() {
        let (node_cookie, _) = new_cookie();
        let (other_cookie, _) = new_cookie();
        let (node, proxy) = run(*node_cookie, *other_cookie, vec![]).await;
        assert_eq!(node.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(proxy.unwrap(), 100, "told it failed");
        let (node, _) = run(*node_cookie, *node_cookie, vec![(CMD_USERADDR, b"nowhere")]).await;
        assert_eq!(node.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let (node, _) = run(*node_cookie, *node_cookie, vec![(CMD_USERADDR, b"\xff")]).await;
        assert_eq!(node.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let endless: Vec<(u16, &[u8])> = vec![(CMD_TRANSPORT, b"obfs4"); 17];
        let (node, _) = run(*node_cookie, *node_cookie, endless).await;
        assert_eq!(node.unwrap_err().kind(), io::ErrorKind::InvalidData);
        // Another auth type.
        let (mut a, mut b) = tokio::io::duplex(64);
        let other = async move {
            let mut offer = [0u8; 2];
            b.read_exact(&mut offer).await.unwrap();
            b.write_u8(2).await.unwrap();
            b
        };
        let (node, _b) = tokio::join!(accept(&mut a, &node_cookie), other);
        assert_eq!(node.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
