//! Server-side TLS (BoringSSL): the certificate, its pin and the acceptor.

use btls::asn1::Asn1Time;
use btls::bn::{BigNum, MsbOption};
use btls::ec::{EcGroup, EcKey};
use btls::hash::MessageDigest;
use btls::nid::Nid;
use btls::pkey::{PKey, Private};
use btls::ssl::{AlpnError, SslAcceptor, SslMethod};
use btls::x509::extension::{BasicConstraints, ExtendedKeyUsage, SubjectAlternativeName};
use btls::x509::{X509, X509NameBuilder};
use std::io;

fn tls_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("tls: {e}"))
}

/// A server certificate with its private key (PEM).
#[derive(Clone)]
pub struct ServerCert {
    /// The certificate chain, leaf first (PEM).
    pub cert_pem: Vec<u8>,
    /// The leaf's private key (PEM).
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerCert(..)")
    }
}

impl ServerCert {
    /// A fresh self-signed certificate for `name`: EC P-256, valid from yesterday for 398
    /// days (the longest public CAs issue), with `name` as its subject and only SAN — the shape
    /// of an ordinary web server's certificate rather than a tell-tale one.
    pub fn generate(name: &str) -> io::Result<ServerCert> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(tls_err)?;
        let key = PKey::from_ec_key(EcKey::generate(&group).map_err(tls_err)?).map_err(tls_err)?;
        let mut subject = X509NameBuilder::new().map_err(tls_err)?;
        subject.append_entry_by_nid(Nid::COMMONNAME, name).map_err(tls_err)?;
        let subject = subject.build();
        let mut b = X509::builder().map_err(tls_err)?;
        b.set_version(2).map_err(tls_err)?;
        let mut serial = BigNum::new().map_err(tls_err)?;
        serial.rand(127, MsbOption::MAYBE_ZERO, false).map_err(tls_err)?;
        let serial = serial.to_asn1_integer().map_err(tls_err)?;
        b.set_serial_number(&serial).map_err(tls_err)?;
        b.set_subject_name(&subject).map_err(tls_err)?;
        b.set_issuer_name(&subject).map_err(tls_err)?;
        b.set_pubkey(&key).map_err(tls_err)?;
        #[allow(clippy::disallowed_methods)] // a certificate's validity is wall-clock time
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(tls_err)?
            .as_secs();
        let start = i64::try_from(now.saturating_sub(86_400)).map_err(tls_err)?;
        let not_before = Asn1Time::from_unix(start).map_err(tls_err)?;
        let not_after = Asn1Time::from_unix(start + 398 * 86_400).map_err(tls_err)?;
        b.set_not_before(&not_before).map_err(tls_err)?;
        b.set_not_after(&not_after).map_err(tls_err)?;
        let bc = BasicConstraints::new().build().map_err(tls_err)?;
        b.append_extension(&bc).map_err(tls_err)?;
        let eku = ExtendedKeyUsage::new().server_auth().build().map_err(tls_err)?;
        b.append_extension(&eku).map_err(tls_err)?;
        let san = SubjectAlternativeName::new()
            .dns(name)
            .build(&b.x509v3_context(None, None))
            .map_err(tls_err)?;
        b.append_extension(&san).map_err(tls_err)?;
        b.sign(&key, MessageDigest::sha256()).map_err(tls_err)?;
        let cert = b.build();
        Ok(ServerCert {
            cert_pem: cert.to_pem().map_err(tls_err)?,
            key_pem: key.private_key_to_pem_pkcs8().map_err(tls_err)?,
        })
    }

    /// The pin clients check: SHA-256 of the leaf's SubjectPublicKeyInfo.
    pub fn pin(&self) -> io::Result<[u8; 32]> {
        let chain = X509::stack_from_pem(&self.cert_pem).map_err(tls_err)?;
        let leaf = chain.first().ok_or_else(|| tls_err("no certificate"))?;
        spki_pin(leaf)
    }

    /// A TLS acceptor serving this certificate, TLS 1.2 and 1.3 with an ordinary web server's
    /// cipher choice, and ALPN `http/1.1` (a client offering ALPN without `http/1.1` gets a
    /// fatal `no_application_protocol` alert, as from nginx 1.21.4 on).
    pub fn acceptor(&self) -> io::Result<SslAcceptor> {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(tls_err)?;
        let chain = X509::stack_from_pem(&self.cert_pem).map_err(tls_err)?;
        let mut chain = chain.into_iter();
        let leaf = chain.next().ok_or_else(|| tls_err("no certificate"))?;
        b.set_certificate(&leaf).map_err(tls_err)?;
        for extra in chain {
            b.add_extra_chain_cert(extra).map_err(tls_err)?;
        }
        let key: PKey<Private> = PKey::private_key_from_pem(&self.key_pem).map_err(tls_err)?;
        b.set_private_key(&key).map_err(tls_err)?;
        b.check_private_key().map_err(|_| tls_err("the key does not match the certificate"))?;
        b.set_alpn_select_callback(|_, offered| {
            btls::ssl::select_next_proto(b"\x08http/1.1", offered).ok_or(AlpnError::ALERT_FATAL)
        });
        Ok(b.build())
    }
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo.
pub fn spki_pin(cert: &btls::x509::X509Ref) -> io::Result<[u8; 32]> {
    let spki = cert.public_key().map_err(tls_err)?.public_key_to_der().map_err(tls_err)?;
    Ok(btls::sha::sha256(&spki))
}

/// The pin of a DER certificate (as a client sees it).
pub fn der_pin(der: &[u8]) -> io::Result<[u8; 32]> {
    let cert = X509::from_der(der).map_err(tls_err)?;
    spki_pin(&cert)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_generated_certificate_names_the_host_and_pins_its_key() {
        let a = ServerCert::generate("www.example.org").unwrap();
        let b = ServerCert::generate("www.example.org").unwrap();
        assert_ne!(a.pin().unwrap(), b.pin().unwrap(), "fresh keys");
        let cert = X509::from_pem(&a.cert_pem).unwrap();
        let der = cert.to_der().unwrap();
        assert_eq!(der_pin(&der).unwrap(), a.pin().unwrap());
        let sans: Vec<String> = cert
            .subject_alt_names()
            .unwrap()
            .iter()
            .filter_map(|n| n.dnsname().map(str::to_string))
            .collect();
        assert_eq!(sans, ["www.example.org"]);
        a.acceptor().unwrap();
        assert_eq!(format!("{a:?}"), "ServerCert(..)");
    }

    #[test]
    fn mismatched_or_garbage_pem_is_a_typed_error() {
        let a = ServerCert::generate("a.example.org").unwrap();
        let b = ServerCert::generate("b.example.org").unwrap();
        let mixed = ServerCert { cert_pem: a.cert_pem.clone(), key_pem: b.key_pem };
        assert_eq!(mixed.acceptor().err().unwrap().kind(), io::ErrorKind::InvalidData);
        let junk = ServerCert { cert_pem: b"junk".to_vec(), key_pem: a.key_pem };
        assert!(junk.pin().is_err());
        assert!(junk.acceptor().is_err());
        assert!(der_pin(b"junk").is_err());
    }
}
