//! TLS client fingerprints as a censor computes them: the JA4 fingerprint (FoxIO, the
//! successor of JA3 that ignores extension order, so Chromium's extension permutation does not
//! change it) of a ClientHello seen as the first bytes of a TCP flow.
//!
//! `t13d1516h2_8daaf6152771_d8a2da3f94cd`: protocol (`t` TCP), the highest TLS version offered
//! (`supported_versions`, else the hello's own), `d` when SNI names a domain (`i` otherwise),
//! the number of cipher suites and of extensions (GREASE left out), the first and last
//! character of the first ALPN value; then the first 12 hex digits of SHA-256 over the sorted
//! cipher suites, and over the sorted extensions (without SNI and ALPN) followed by the
//! signature algorithms in their order.
//!
//! Debian's `tshark` (bookworm) has no JA4 field, so the lab computes it here, from the same
//! bytes for our client and for a real Chromium.

use sha2::{Digest, Sha256};

/// The parts of a ClientHello a fingerprint uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// The legacy version field of the hello.
    pub legacy_version: u16,
    /// Cipher suites in order.
    pub ciphers: Vec<u16>,
    /// Extension types in order.
    pub extensions: Vec<u16>,
    /// The server name, when the SNI extension names a host.
    pub server_name: Option<String>,
    /// ALPN values in order.
    pub alpn: Vec<Vec<u8>>,
    /// `supported_versions` in order.
    pub versions: Vec<u16>,
    /// `signature_algorithms` in order.
    pub signature_algorithms: Vec<u16>,
}

/// Whether a 16-bit code point is a GREASE value (RFC 8701).
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
    fn vec8(&mut self) -> Option<Reader<'a>> {
        let n = self.u8()?;
        self.take(usize::from(n)).map(Reader)
    }
    fn vec16(&mut self) -> Option<Reader<'a>> {
        let n = self.u16()?;
        self.take(usize::from(n)).map(Reader)
    }
    fn u16s(mut self) -> Option<Vec<u16>> {
        let mut out = Vec::new();
        while !self.0.is_empty() {
            out.push(self.u16()?);
        }
        Some(out)
    }
}

impl ClientHello {
    /// Parses the ClientHello at the start of a flow (a TLS handshake record, which must hold
    /// the whole hello); `None` for anything else.
    pub fn parse(first_payload: &[u8]) -> Option<ClientHello> {
        let mut rec = Reader(first_payload);
        if rec.u8()? != 0x16 {
            return None;
        }
        rec.u16()?;
        let mut body = Reader(rec.vec16()?.0);
        if body.u8()? != 1 {
            return None;
        }
        let len = body.u24()?;
        let mut hello = Reader(body.take(len)?);
        let legacy_version = hello.u16()?;
        hello.take(32)?;
        hello.vec8()?;
        let ciphers = hello.vec16()?.u16s()?;
        hello.vec8()?;
        let mut out = ClientHello {
            legacy_version,
            ciphers,
            extensions: Vec::new(),
            server_name: None,
            alpn: Vec::new(),
            versions: Vec::new(),
            signature_algorithms: Vec::new(),
        };
        if hello.0.is_empty() {
            return Some(out);
        }
        let mut exts = hello.vec16()?;
        while !exts.0.is_empty() {
            let kind = exts.u16()?;
            let mut data = exts.vec16()?;
            out.extensions.push(kind);
            match kind {
                0x0000 => {
                    let mut list = data.vec16()?;
                    while !list.0.is_empty() {
                        let name_type = list.u8()?;
                        let name = list.vec16()?.0;
                        if name_type == 0 {
                            out.server_name = Some(String::from_utf8_lossy(name).into_owned());
                        }
                    }
                }
                0x0010 => {
                    let mut list = data.vec16()?;
                    while !list.0.is_empty() {
                        out.alpn.push(list.vec8()?.0.to_vec());
                    }
                }
                0x002b => out.versions = data.vec8()?.u16s()?,
                0x000d => out.signature_algorithms = data.vec16()?.u16s()?,
                _ => {}
            }
        }
        Some(out)
    }

    /// The JA4 fingerprint.
    pub fn ja4(&self) -> String {
        let version = self
            .versions
            .iter()
            .copied()
            .filter(|v| !is_grease(*v))
            .max()
            .unwrap_or(self.legacy_version);
        let version = match version {
            0x0304 => "13",
            0x0303 => "12",
            0x0302 => "11",
            0x0301 => "10",
            0x0300 => "s3",
            _ => "00",
        };
        // An IP address in SNI counts as no domain.
        let sni = match &self.server_name {
            Some(n) if n.parse::<std::net::IpAddr>().is_err() => 'd',
            _ => 'i',
        };
        let ciphers: Vec<u16> = self.ciphers.iter().copied().filter(|c| !is_grease(*c)).collect();
        let exts: Vec<u16> = self.extensions.iter().copied().filter(|e| !is_grease(*e)).collect();
        let alpn = match self.alpn.first() {
            Some(v) if !v.is_empty() => {
                let (first, last) = (v[0], v[v.len() - 1]);
                if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
                    format!("{}{}", first as char, last as char)
                } else {
                    let hex = format!("{first:02x}{last:02x}");
                    format!("{}{}", &hex[..1], &hex[3..])
                }
            }
            _ => "00".into(),
        };
        let a =
            format!("t{version}{sni}{:02}{:02}{alpn}", ciphers.len().min(99), exts.len().min(99));
        let hex = |v: &[u16]| v.iter().map(|x| format!("{x:04x}")).collect::<Vec<_>>().join(",");
        let hash12 = |s: &str| {
            if s.is_empty() {
                return "000000000000".to_string();
            }
            let d = Sha256::digest(s.as_bytes());
            d.iter().take(6).map(|b| format!("{b:02x}")).collect::<String>()
        };
        let mut sorted_ciphers = ciphers;
        sorted_ciphers.sort_unstable();
        let mut sorted_exts: Vec<u16> =
            exts.into_iter().filter(|e| *e != 0x0000 && *e != 0x0010).collect();
        sorted_exts.sort_unstable();
        let mut c = hex(&sorted_exts);
        let sigs: Vec<u16> =
            self.signature_algorithms.iter().copied().filter(|s| !is_grease(*s)).collect();
        if !sigs.is_empty() {
            c = format!("{c}_{}", hex(&sigs));
        }
        format!("{a}_{}_{}", hash12(&hex(&sorted_ciphers)), hash12(&c))
    }
}

/// The JA4 fingerprint of a flow's first client payload, when it is a ClientHello.
pub fn ja4(first_payload: &[u8]) -> Option<String> {
    ClientHello::parse(first_payload).map(|h| h.ja4())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn record(exts: &[(u16, Vec<u8>)], ciphers: &[u16]) -> Vec<u8> {
        let mut hello = vec![0x03, 0x03];
        hello.extend_from_slice(&[0u8; 32]);
        hello.push(0);
        hello.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
        for c in ciphers {
            hello.extend_from_slice(&c.to_be_bytes());
        }
        hello.extend_from_slice(&[1, 0]);
        let mut e = Vec::new();
        for (kind, data) in exts {
            e.extend_from_slice(&kind.to_be_bytes());
            e.extend_from_slice(&(data.len() as u16).to_be_bytes());
            e.extend_from_slice(data);
        }
        hello.extend_from_slice(&(e.len() as u16).to_be_bytes());
        hello.extend_from_slice(&e);
        let mut hs = vec![1, 0, (hello.len() >> 8) as u8, hello.len() as u8];
        hs.extend_from_slice(&hello);
        let mut rec = vec![0x16, 0x03, 0x01];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    fn sni(name: &str) -> Vec<u8> {
        let mut entry = vec![0];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name.as_bytes());
        let mut out = (entry.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&entry);
        out
    }

    #[test]
    fn the_fingerprint_follows_the_ja4_rules() {
        let alpn = vec![0, 12, 2, b'h', b'2', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1'];
        let exts = vec![
            (0x2a2a, vec![]),
            (0x0000, sni("www.example.org")),
            (0x0010, alpn),
            (0x002b, vec![4, 0x3a, 0x3a, 0x03, 0x04]),
            (0x000d, vec![0, 4, 0x04, 0x03, 0x08, 0x04]),
            (0x000a, vec![0, 2, 0, 0x1d]),
        ];
        let rec = record(&exts, &[0x1a1a, 0x1301, 0x1302]);
        let h = ClientHello::parse(&rec).unwrap();
        assert_eq!(h.server_name.as_deref(), Some("www.example.org"));
        assert_eq!(h.alpn[0], b"h2");
        let fp = h.ja4();
        let hash = |s: &str| {
            Sha256::digest(s.as_bytes())
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(
            fp,
            format!("t13d0205h2_{}_{}", hash("1301,1302"), hash("000a,000d,002b_0403,0804"))
        );
        // Extension order does not matter; an IP in SNI or no ALPN does.
        let mut shuffled = exts.clone();
        shuffled.swap(3, 5);
        assert_eq!(ja4(&record(&shuffled, &[0x1302, 0x1301])).unwrap(), fp);
        let mut ip = exts.clone();
        ip[1].1 = sni("10.0.0.1");
        assert!(ja4(&record(&ip, &[0x1301])).unwrap().starts_with("t13i0105h2_"));
        assert!(ja4(&record(&exts[3..], &[0x1301])).unwrap().starts_with("t13i0103"));
        let bare = record(&[], &[]);
        assert_eq!(ja4(&bare).unwrap(), "t12i000000_000000000000_000000000000");
    }

    #[test]
    fn anything_but_a_client_hello_has_no_fingerprint() {
        let good = record(&[(0x0000, sni("a.example"))], &[0x1301]);
        assert!(ja4(&good).is_some());
        for n in 0..good.len() {
            assert_eq!(ja4(&good[..n]), None, "truncated at {n}");
        }
        let mut not_hs = good.clone();
        not_hs[0] = 0x17;
        assert_eq!(ja4(&not_hs), None);
        let mut server_hello = good.clone();
        server_hello[5] = 2;
        assert_eq!(ja4(&server_hello), None);
        assert_eq!(ja4(b"GET / HTTP/1.1\r\n"), None);
        assert!(is_grease(0xfafa) && is_grease(0x0a0a) && !is_grease(0x0a1a) && !is_grease(0x1301));
    }
}
