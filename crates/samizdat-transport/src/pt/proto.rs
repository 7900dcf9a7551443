//! The wire formats of Tor's pluggable-transport protocol (pt-spec, version 1) that a
//! managed-proxy parent needs: the addresses peers publish (`IP:PORT?cert=…&iat-mode=0`), the
//! per-connection arguments sent in the SOCKS5 user name and password, the server options
//! environment variable, the lines a managed proxy prints on its standard output, and the
//! SOCKS5 CONNECT exchange with username/password authentication (RFC 1928, RFC 1929).

use std::io;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Most arguments an address may carry.
pub const MAX_ARGS: usize = 8;
/// Longest argument key.
const MAX_KEY: usize = 32;
/// Longest argument value.
const MAX_VALUE: usize = 160;

fn bad(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn key_ok(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_KEY
        && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Values are limited to what base64, hex and numbers need, so nothing in an address ever
/// has to be escaped and no peer can smuggle a separator into the proxy's arguments.
fn value_ok(v: &str) -> bool {
    v.len() <= MAX_VALUE
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'.' | b'-'))
}

/// A pluggable-transport peer address: where the proxy's server listens and the arguments a
/// client needs to reach it (for obfs4: `cert` and `iat-mode`). Its `Debug` form names
/// neither the peer nor the arguments' values.
#[derive(Clone, PartialEq, Eq)]
pub struct PtAddr {
    /// The server's IP address and port (never a host name).
    pub endpoint: SocketAddr,
    /// The arguments, in order.
    pub args: Vec<(String, String)>,
}

impl PtAddr {
    /// Parses `IP:PORT` or `IP:PORT?key=value&key=value`.
    ///
    /// # Errors
    /// `InvalidInput` for a host name, a bad port, more than [`MAX_ARGS`] arguments, or keys and
    /// values outside their alphabets.
    pub fn parse(s: &str) -> io::Result<Self> {
        let (endpoint, query) = s.split_once('?').unwrap_or((s, ""));
        let endpoint: SocketAddr =
            endpoint.parse().map_err(|_| bad("a pluggable-transport address is IP:PORT"))?;
        if endpoint.port() == 0 {
            return Err(bad("port 0"));
        }
        let mut args = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            if args.len() == MAX_ARGS {
                return Err(bad("too many arguments"));
            }
            let (k, v) = pair.split_once('=').ok_or_else(|| bad("argument without '='"))?;
            if !key_ok(k) || !value_ok(v) {
                return Err(bad("argument outside the allowed alphabet"));
            }
            if args.iter().any(|(seen, _)| seen == k) {
                return Err(bad("argument given twice"));
            }
            args.push((k.to_owned(), v.to_owned()));
        }
        Ok(PtAddr { endpoint, args })
    }
}

impl std::fmt::Debug for PtAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.args.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("PtAddr").field("args", &keys).finish_non_exhaustive()
    }
}

impl std::fmt::Display for PtAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.endpoint)?;
        for (i, (k, v)) in self.args.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// Escapes `\`, `=`, `;` (and `,`) with a backslash, as pt-spec's argument lists require.
fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        if matches!(c, '\\' | '=' | ';' | ',') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// `k=v;k=v`, escaped: the client arguments of one connection.
pub fn client_args(args: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in args.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        escape(k, &mut out);
        out.push('=');
        escape(v, &mut out);
    }
    out
}

/// `method:k=v;method:k=v`, escaped: `TOR_PT_SERVER_TRANSPORT_OPTIONS`.
pub fn server_options(method: &str, options: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in options.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(method);
        out.push(':');
        escape(k, &mut out);
        out.push('=');
        escape(v, &mut out);
    }
    out
}

/// Splits `k=v,k=v` (an `SMETHOD` line's `ARGS:`), honouring backslash escapes.
fn split_args(s: &str) -> io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let (mut key, mut cur, mut in_value, mut escaped) =
        (String::new(), String::new(), false, false);
    let mut finish = |key: &mut String, cur: &mut String, in_value: bool| {
        if !in_value {
            return Err(bad("proxy argument without '='"));
        }
        out.push((std::mem::take(key), std::mem::take(cur)));
        Ok(())
    };
    for c in s.chars() {
        match (escaped, c) {
            (true, c) => {
                cur.push(c);
                escaped = false;
            }
            (false, '\\') => escaped = true,
            (false, '=') if !in_value => {
                key = std::mem::take(&mut cur);
                in_value = true;
            }
            (false, ',') => {
                finish(&mut key, &mut cur, in_value)?;
                in_value = false;
            }
            (false, c) => cur.push(c),
        }
    }
    if escaped {
        return Err(bad("proxy argument ends in an escape"));
    }
    if !cur.is_empty() || in_value {
        finish(&mut key, &mut cur, in_value)?;
    }
    Ok(out)
}

/// A line a managed proxy prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PtLine {
    /// `VERSION 1`.
    Version(String),
    /// `ENV-ERROR`, `VERSION-ERROR`, `PROXY-ERROR`, `CMETHOD-ERROR` or `SMETHOD-ERROR`, with
    /// its message.
    Error(String),
    /// `CMETHOD name socks5 IP:PORT`.
    CMethod {
        /// The transport's name.
        name: String,
        /// Where its SOCKS5 proxy listens.
        socks: SocketAddr,
    },
    /// `SMETHOD name IP:PORT [ARGS:k=v,…]`.
    SMethod {
        /// The transport's name.
        name: String,
        /// Where its server listens.
        addr: SocketAddr,
        /// What clients need.
        args: Vec<(String, String)>,
    },
    /// `CMETHODS DONE` or `SMETHODS DONE`.
    Done,
    /// Anything else (`LOG`, `STATUS`, unknown keywords): ignored.
    Other,
}

impl PtLine {
    /// Parses one line (without its newline).
    ///
    /// # Errors
    /// `InvalidData` for a `CMETHOD` or `SMETHOD` line that does not parse.
    pub fn parse(line: &str) -> io::Result<PtLine> {
        let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed proxy line");
        let mut words = line.split(' ');
        let keyword = words.next().unwrap_or_default();
        Ok(match keyword {
            "VERSION" => PtLine::Version(words.next().unwrap_or_default().to_owned()),
            "ENV-ERROR" | "VERSION-ERROR" | "PROXY-ERROR" | "CMETHOD-ERROR" | "SMETHOD-ERROR" => {
                PtLine::Error(line.to_owned())
            }
            "CMETHOD" => {
                let (name, proto, addr) = (words.next(), words.next(), words.next());
                match (name, proto, addr.and_then(|a| a.parse().ok())) {
                    (Some(name), Some("socks5"), Some(socks)) => {
                        PtLine::CMethod { name: name.to_owned(), socks }
                    }
                    _ => return Err(malformed()),
                }
            }
            "SMETHOD" => {
                let (name, addr) = (words.next(), words.next().and_then(|a| a.parse().ok()));
                let (Some(name), Some(addr)) = (name, addr) else { return Err(malformed()) };
                let mut args = Vec::new();
                for w in words {
                    if let Some(list) = w.strip_prefix("ARGS:") {
                        args = split_args(list).map_err(|_| malformed())?;
                    }
                }
                PtLine::SMethod { name: name.to_owned(), addr, args }
            }
            "CMETHODS" | "SMETHODS" if words.next() == Some("DONE") => PtLine::Done,
            _ => PtLine::Other,
        })
    }
}

/// Maps a SOCKS5 reply code to an error a caller can act on.
fn socks_error(code: u8) -> io::Error {
    let (kind, what) = match code {
        3 => (io::ErrorKind::HostUnreachable, "network unreachable"),
        4 => (io::ErrorKind::HostUnreachable, "host unreachable"),
        5 => (io::ErrorKind::ConnectionRefused, "connection refused"),
        6 => (io::ErrorKind::TimedOut, "TTL expired"),
        7 | 8 => (io::ErrorKind::Unsupported, "not supported by the proxy"),
        // What obfs4proxy answers when the transport's handshake fails (a wrong cert, a
        // server that drops it): the transport refused the peer.
        _ => (io::ErrorKind::PermissionDenied, "the transport's handshake failed"),
    };
    io::Error::new(kind, format!("pluggable transport: {what}"))
}

/// Asks a SOCKS5 proxy (the managed proxy's client side) to connect to `target`, passing
/// `args` in the user name and password as pt-spec says, and reads its reply.
///
/// # Errors
/// `InvalidInput` when the arguments exceed the 510 bytes SOCKS5 can carry; the reply's
/// failure (refused, unreachable, …) when the proxy could not reach the server; `InvalidData`
/// when the proxy's answers are not SOCKS5.
pub async fn socks5_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    target: SocketAddr,
    args: &str,
) -> io::Result<()> {
    let not_socks = || io::Error::new(io::ErrorKind::InvalidData, "the proxy is not SOCKS5");
    let raw = args.as_bytes();
    if raw.len() > 2 * 255 {
        return Err(bad("pluggable-transport arguments longer than SOCKS5 can carry"));
    }
    if raw.is_empty() {
        // Nothing to pass: no authentication.
        stream.write_all(&[5, 1, 0]).await?;
        let mut choice = [0u8; 2];
        stream.read_exact(&mut choice).await?;
        if choice != [5, 0] {
            return Err(not_socks());
        }
        return connect(stream, target).await;
    }
    // pt-spec: the arguments fill the user name, then the password; a single NUL byte stands
    // for an empty password.
    let (user, pass): (&[u8], &[u8]) =
        if raw.len() > 255 { raw.split_at(255) } else { (raw, &[0]) };
    stream.write_all(&[5, 1, 2]).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice != [5, 2] {
        return Err(not_socks());
    }
    let mut auth = Vec::with_capacity(3 + user.len() + pass.len());
    auth.extend([1, user.len() as u8]);
    auth.extend_from_slice(user);
    auth.push(pass.len() as u8);
    auth.extend_from_slice(pass);
    stream.write_all(&auth).await?;
    let mut status = [0u8; 2];
    stream.read_exact(&mut status).await?;
    if status[0] != 1 {
        return Err(not_socks());
    }
    if status[1] != 0 {
        return Err(io::Error::new(io::ErrorKind::PermissionDenied, "proxy refused the arguments"));
    }
    connect(stream, target).await
}

async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    target: SocketAddr,
) -> io::Result<()> {
    let not_socks = || io::Error::new(io::ErrorKind::InvalidData, "the proxy is not SOCKS5");
    let mut request = vec![5, 1, 0];
    match target.ip() {
        IpAddr::V4(ip) => {
            request.push(1);
            request.extend(ip.octets());
        }
        IpAddr::V6(ip) => {
            request.push(4);
            request.extend(ip.octets());
        }
    }
    request.extend(target.port().to_be_bytes());
    stream.write_all(&request).await?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    if head[0] != 5 || head[2] != 0 {
        return Err(not_socks());
    }
    if head[1] != 0 {
        return Err(socks_error(head[1]));
    }
    let bound = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => usize::from(stream.read_u8().await?) + 2,
        _ => return Err(not_socks()),
    };
    let mut rest = vec![0u8; bound];
    stream.read_exact(&mut rest).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_round_trip_and_refuse_names_separators_and_excess() {
        let s = "192.0.2.7:443?cert=ASNFZ4mrze8B+/x&iat-mode=0";
        let a = PtAddr::parse(s).unwrap();
        assert_eq!(a.args[1], ("iat-mode".into(), "0".into()));
        assert_eq!(a.to_string(), s);
        let debug = format!("{a:?}");
        assert!(!debug.contains("192.0.2.7") && !debug.contains("ASNF"), "{debug}");
        assert_eq!(PtAddr::parse("[2001:db8::1]:9").unwrap().to_string(), "[2001:db8::1]:9");
        let many: Vec<String> = (0..9).map(|i| format!("k{i}=v")).collect();
        let many = format!("192.0.2.7:1?{}", many.join("&"));
        let long = format!("192.0.2.7:1?cert={}", "A".repeat(161));
        for bad in [
            "example.org:443",
            "192.0.2.7:0",
            "192.0.2.7",
            "192.0.2.7:1?cert",
            "192.0.2.7:1?cert=a;b",
            "192.0.2.7:1?cert=a,b",
            "192.0.2.7:1?Cert=a",
            "192.0.2.7:1?cert=a&cert=b",
            "192.0.2.7:1?cert=a=",
            &many,
            &long,
        ] {
            assert_eq!(
                PtAddr::parse(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }

    #[test]
    fn arguments_and_options_are_escaped_as_pt_spec_says() {
        let args = vec![("cert".into(), "a=b;c\\d,e".into()), ("iat-mode".into(), "0".into())];
        assert_eq!(client_args(&args), "cert=a\\=b\\;c\\\\d\\,e;iat-mode=0");
        assert_eq!(client_args(&[]), "");
        assert_eq!(
            server_options("obfs4", &args),
            "obfs4:cert=a\\=b\\;c\\\\d\\,e;obfs4:iat-mode=0"
        );
        assert_eq!(split_args("cert=x\\,y,iat-mode=0").unwrap()[0].1, "x,y");
        for bad in ["novalue", "a=b,c", "a=b\\"] {
            assert!(split_args(bad).is_err(), "{bad}");
        }
        assert_eq!(split_args("").unwrap(), vec![]);
    }

    #[test]
    fn proxy_lines_parse_and_malformed_methods_are_refused() {
        let p = |l: &str| PtLine::parse(l).unwrap();
        assert_eq!(p("VERSION 1"), PtLine::Version("1".into()));
        assert_eq!(
            p("CMETHOD obfs4 socks5 127.0.0.1:4321"),
            PtLine::CMethod { name: "obfs4".into(), socks: "127.0.0.1:4321".parse().unwrap() }
        );
        assert_eq!(
            p("SMETHOD obfs4 127.0.0.1:17001 ARGS:cert=AS+/x,iat-mode=0"),
            PtLine::SMethod {
                name: "obfs4".into(),
                addr: "127.0.0.1:17001".parse().unwrap(),
                args: vec![("cert".into(), "AS+/x".into()), ("iat-mode".into(), "0".into())],
            }
        );
        assert!(
            matches!(p("SMETHOD obfs4 127.0.0.1:1"), PtLine::SMethod { args, .. } if args.is_empty())
        );
        assert_eq!(p("CMETHODS DONE"), PtLine::Done);
        assert_eq!(p("SMETHODS DONE"), PtLine::Done);
        assert_eq!(p("SMETHODS"), PtLine::Other);
        assert_eq!(p("LOG SEVERITY=notice MESSAGE=\"hi\""), PtLine::Other);
        assert_eq!(p("ENV-ERROR no state"), PtLine::Error("ENV-ERROR no state".into()));
        assert_eq!(
            p("CMETHOD-ERROR obfs4 broken"),
            PtLine::Error("CMETHOD-ERROR obfs4 broken".into())
        );
        for bad in [
            "CMETHOD obfs4 socks4 127.0.0.1:1",
            "CMETHOD obfs4 socks5 nowhere",
            "CMETHOD obfs4",
            "SMETHOD obfs4 nowhere",
            "SMETHOD obfs4 127.0.0.1:1 ARGS:broken",
        ] {
            assert_eq!(PtLine::parse(bad).unwrap_err().kind(), io::ErrorKind::InvalidData, "{bad}");
        }
    }

    /// Plays a SOCKS5 proxy's side from a script: what it must receive and what it sends.
    async fn proxy(
        script: Vec<(Vec<u8>, Vec<u8>)>,
        target: SocketAddr,
        args: &str,
    ) -> io::Result<()> {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let serve = async move {
            for (expect, answer) in script {
                let mut got = vec![0u8; expect.len()];
                server.read_exact(&mut got).await.unwrap();
                assert_eq!(got, expect);
                server.write_all(&answer).await.unwrap();
            }
            server
        };
        let (result, _server) = tokio::join!(socks5_connect(&mut client, target, args), serve);
        result
    }

    fn greeting() -> (Vec<u8>, Vec<u8>) {
        (vec![5, 1, 2], vec![5, 2])
    }

    #[tokio::test]
    async fn socks5_sends_arguments_as_credentials_and_maps_failures() {
        let v4: SocketAddr = "192.0.2.7:443".parse().unwrap();
        let auth = |user: &[u8], pass: &[u8]| {
            let mut a = vec![1, user.len() as u8];
            a.extend_from_slice(user);
            a.push(pass.len() as u8);
            a.extend_from_slice(pass);
            (a, vec![1, 0])
        };
        let connect = |reply: u8| {
            (vec![5, 1, 0, 1, 192, 0, 2, 7, 1, 187], vec![5, reply, 0, 1, 0, 0, 0, 0, 0, 0])
        };
        proxy(vec![greeting(), auth(b"cert=x", &[0]), connect(0)], v4, "cert=x").await.unwrap();
        proxy(vec![(vec![5, 1, 0], vec![5, 0]), connect(0)], v4, "").await.unwrap();
        let e = proxy(vec![(vec![5, 1, 0], vec![5, 2])], v4, "").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // Long arguments continue in the password.
        let long = "a".repeat(300);
        proxy(vec![greeting(), auth(&[b'a'; 255], &[b'a'; 45]), connect(0)], v4, &long)
            .await
            .unwrap();
        let e = proxy(vec![], v4, &"a".repeat(511)).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        for (code, kind) in [
            (1, io::ErrorKind::PermissionDenied),
            (4, io::ErrorKind::HostUnreachable),
            (5, io::ErrorKind::ConnectionRefused),
            (6, io::ErrorKind::TimedOut),
            (7, io::ErrorKind::Unsupported),
        ] {
            let e = proxy(vec![greeting(), auth(b"k=v", &[0]), connect(code)], v4, "k=v")
                .await
                .unwrap_err();
            assert_eq!(e.kind(), kind, "code {code}");
        }
        // IPv6 targets, and a reply naming a domain.
        let v6: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let mut req = vec![5, 1, 0, 4];
        req.extend("2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        req.extend([0, 9]);
        let reply = vec![5, 0, 0, 3, 3, b'a', b'b', b'c', 0, 1];
        proxy(vec![greeting(), auth(b"k=v", &[0]), (req, reply)], v6, "k=v").await.unwrap();
        // Not a SOCKS5 proxy, or one refusing the credentials.
        let e = proxy(vec![(vec![5, 1, 2], vec![5, 0])], v4, "k=v").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let refused = (auth(b"k=v", &[0]).0, vec![1, 1]);
        let e = proxy(vec![greeting(), refused], v4, "k=v").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let e = proxy(vec![greeting(), (auth(b"k=v", &[0]).0, vec![5, 0])], v4, "k=v")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let odd = (connect(0).0, vec![5, 0, 0, 9]);
        let e = proxy(vec![greeting(), auth(b"k=v", &[0]), odd], v4, "k=v").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let wrong = (connect(0).0, vec![4, 0, 0, 1]);
        let e = proxy(vec![greeting(), auth(b"k=v", &[0]), wrong], v4, "k=v").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
