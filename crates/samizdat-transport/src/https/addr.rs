//! The HTTPS camouflage address: `https/IP:PORT?name=NAME&pin=PIN&key=KEY`.
//!
//! - `IP:PORT` is where the TCP connection goes. It must be an IP literal: a host name a peer
//!   hands us is never resolved (the lookup itself would tell the resolver what we fetch).
//! - `name` is the host name sent as TLS SNI and HTTP `Host` — a real-looking name, never an IP.
//! - `pin` is the SHA-256 of the server certificate's SubjectPublicKeyInfo (base64url, no
//!   padding); the client checks it before it sends anything secret.
//! - `key` is the node's transport secret (32 bytes, base64url): knowing it is what lets a
//!   client past the decoy website. Anyone holding the address can reach the tunnel, so it is
//!   shared like an invite line, never logged.

use data_encoding::BASE64URL_NOPAD;
use std::fmt;
use std::io;
use std::net::SocketAddr;

/// A parsed HTTPS camouflage address (the part after `https/`).
#[derive(Clone, PartialEq, Eq)]
pub struct HttpsAddr {
    /// Where to connect.
    pub socket: SocketAddr,
    /// TLS SNI and HTTP Host.
    pub name: String,
    /// SHA-256 of the server certificate's SubjectPublicKeyInfo.
    pub pin: [u8; 32],
    /// The node's transport secret.
    pub key: [u8; 32],
}

impl fmt::Debug for HttpsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Neither the address nor the secret belongs in a log line.
        f.write_str("HttpsAddr(..)")
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("https address: {what}"))
}

fn bytes32(value: &str, what: &str) -> io::Result<[u8; 32]> {
    let raw = BASE64URL_NOPAD.decode(value.as_bytes()).map_err(|_| invalid(what))?;
    raw.try_into().map_err(|_| invalid(what))
}

/// Whether `name` can stand as a TLS server name: a DNS name of letters, digits, `-` and `.`,
/// with at least one dot and not all digits and dots (SNI never carries an IP address).
pub fn valid_tls_name(name: &str) -> bool {
    let labels_ok = name.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    name.len() <= 253
        && name.contains('.')
        && labels_ok
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

impl HttpsAddr {
    /// Parses `IP:PORT?name=N&pin=P&key=K` (parameters in any order, each exactly once).
    pub fn parse(addr: &str) -> io::Result<HttpsAddr> {
        let (host, query) = addr.split_once('?').ok_or_else(|| invalid("missing ?name=…"))?;
        let socket: SocketAddr =
            host.parse().map_err(|_| invalid("the host must be an IP address and a port"))?;
        let (mut name, mut pin, mut key) = (None, None, None);
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').ok_or_else(|| invalid("malformed parameter"))?;
            let slot = match k {
                "name" => &mut name,
                "pin" => &mut pin,
                "key" => &mut key,
                _ => return Err(invalid("unknown parameter")),
            };
            if slot.replace(v).is_some() {
                return Err(invalid("repeated parameter"));
            }
        }
        let name = name.ok_or_else(|| invalid("missing name"))?.to_ascii_lowercase();
        if !valid_tls_name(&name) {
            return Err(invalid("name must be a DNS host name"));
        }
        Ok(HttpsAddr {
            socket,
            name,
            pin: bytes32(pin.ok_or_else(|| invalid("missing pin"))?, "bad pin")?,
            key: bytes32(key.ok_or_else(|| invalid("missing key"))?, "bad key")?,
        })
    }
}

impl fmt::Display for HttpsAddr {
    /// The address without the `https/` prefix, as [`HttpsAddr::parse`] reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}?name={}&pin={}&key={}",
            self.socket,
            self.name,
            BASE64URL_NOPAD.encode(&self.pin),
            BASE64URL_NOPAD.encode(&self.key)
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> HttpsAddr {
        HttpsAddr {
            socket: "127.0.0.1:443".parse().unwrap(),
            name: "www.example.org".into(),
            pin: [7; 32],
            key: [9; 32],
        }
    }

    #[test]
    fn round_trips_and_never_shows_the_secret_in_debug() {
        let a = sample();
        assert_eq!(HttpsAddr::parse(&a.to_string()).unwrap(), a);
        let v6 = HttpsAddr { socket: "[::1]:8443".parse().unwrap(), ..sample() };
        assert_eq!(HttpsAddr::parse(&v6.to_string()).unwrap(), v6);
        assert_eq!(format!("{a:?}"), "HttpsAddr(..)");
    }

    #[test]
    fn rejects_names_ips_and_malformed_parameters() {
        let good = sample().to_string();
        let (host, query) = good.split_once('?').unwrap();
        let pin = BASE64URL_NOPAD.encode(&[7; 32]);
        let key = BASE64URL_NOPAD.encode(&[9; 32]);
        for bad in [
            host.to_string(),
            format!("evil.example:443?{query}"),
            format!("{host}?name=1.2.3.4&pin={pin}&key={key}"),
            format!("{host}?name=localhost&pin={pin}&key={key}"),
            format!("{host}?name=a..b&pin={pin}&key={key}"),
            format!("{host}?name=-a.b&pin={pin}&key={key}"),
            format!("{host}?name=a_b.c&pin={pin}&key={key}"),
            format!("{host}?pin={pin}&key={key}"),
            format!("{host}?name=a.b&key={key}"),
            format!("{host}?name=a.b&pin={pin}"),
            format!("{host}?name=a.b&pin=short&key={key}"),
            format!("{host}?name=a.b&pin={pin}&key=!!"),
            format!("{host}?name=a.b&pin={pin}&key={key}&key={key}"),
            format!("{host}?name=a.b&pin={pin}&key={key}&extra=1"),
            format!("{host}?name=a.b&pin={pin}&key"),
        ] {
            assert_eq!(
                HttpsAddr::parse(&bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad}"
            );
        }
        assert!(!valid_tls_name(&format!("{}.org", "a".repeat(64))));
        assert!(valid_tls_name("cdn-7.example.net"));
    }
}
