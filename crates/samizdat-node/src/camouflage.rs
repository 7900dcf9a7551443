//! The HTTPS camouflage transport's keys, kept across restarts so the addresses in links and
//! invite lines stay valid: the transport secret (what lets a client past the decoy site) and,
//! when the node makes its own certificate, that certificate and key (whose pin the addresses
//! carry). Kept as a sealed document ([`crate::sealed`]): inside the vault with `--vault`, else
//! encrypted under a key derived from the identity in `DATA/https.rec`. An ephemeral node makes
//! fresh ones every run.

use crate::NodeError;
use crate::sealed::{DocKind, SealedDoc};
use crate::state::Store;
use rand_core::{OsRng, RngCore};
use samizdat_identity::Identity;
use samizdat_transport::https::{Decoy, HttpsServerConfig, ServerCert};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

static KIND: DocKind = DocKind {
    vault_file: "node/https",
    dir_file: "https.rec",
    key_context: "samizdat 2026 https transport keys v1",
    aad: b"samizdat https transport keys v1",
    max_len: 64 * 1024,
    what: "HTTPS transport keys (not written by this node's identity, or damaged)",
};

/// How a node serves the HTTPS camouflage transport (`--listen https/IP:PORT`).
#[derive(Debug, Clone)]
pub struct HttpsOptions {
    /// The host name clients send as SNI and Host (`--tls-name`).
    pub tls_name: String,
    /// The certificate to serve (`--tls-cert`, `--tls-key`); without one the node makes a
    /// self-signed one for `tls_name`, keeps it, and its addresses pin it.
    pub cert: Option<ServerCert>,
    /// What visitors without the secret get (`--decoy-dir`).
    pub decoy: Decoy,
    /// With a reverse proxy or CDN in front that terminates TLS (`--tls-front-pin`): the pin
    /// of the certificate it shows. The node then serves plain HTTP, and its addresses carry
    /// this pin.
    pub front_pin: Option<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    /// The transport secret, hex.
    secret: String,
    /// The name the saved certificate was made for.
    name: String,
    /// The node's own certificate and key (PEM), when it made one.
    cert_pem: Option<String>,
    key_pem: Option<String>,
}

fn bad(what: &'static str) -> NodeError {
    NodeError::Corrupt(what)
}

fn https_err(source: std::io::Error) -> NodeError {
    NodeError::Io { context: "https transport", source }
}

/// The server configuration for `options`, reusing the secret and certificate saved last
/// time (and saving what is new). Blocking.
pub(crate) fn server_config(
    store: &Store,
    identity: &Identity,
    options: &HttpsOptions,
) -> Result<HttpsServerConfig, NodeError> {
    let doc = SealedDoc::new(store, identity, &KIND);
    let saved = match &doc {
        Some(d) => d.load_json::<Saved>()?,
        None => None,
    };
    let secret: Zeroizing<[u8; 32]> = match &saved {
        Some(s) => {
            let raw = data_encoding::HEXLOWER
                .decode(s.secret.as_bytes())
                .map_err(|_| bad("https transport secret"))?;
            Zeroizing::new(raw.try_into().map_err(|_| bad("https transport secret"))?)
        }
        None => {
            let mut s = Zeroizing::new([0u8; 32]);
            OsRng.fill_bytes(&mut s[..]);
            s
        }
    };
    let own = saved.as_ref().filter(|s| s.name == options.tls_name).and_then(|s| {
        Some(ServerCert {
            cert_pem: s.cert_pem.clone()?.into_bytes(),
            key_pem: s.key_pem.clone()?.into_bytes(),
        })
    });
    let (cert, made) = match (&options.cert, own) {
        (Some(given), _) => (given.clone(), false),
        (None, Some(kept)) => (kept, false),
        (None, None) => (ServerCert::generate(&options.tls_name).map_err(https_err)?, true),
    };
    if let Some(doc) = &doc {
        if saved.is_none() || made {
            let keep_own = options.cert.is_none();
            let (name, cert_pem, key_pem) = match (&saved, keep_own) {
                (_, true) => (
                    options.tls_name.clone(),
                    Some(String::from_utf8_lossy(&cert.cert_pem).into_owned()),
                    Some(String::from_utf8_lossy(&cert.key_pem).into_owned()),
                ),
                (Some(s), false) => (s.name.clone(), s.cert_pem.clone(), s.key_pem.clone()),
                (None, false) => (options.tls_name.clone(), None, None),
            };
            let record = Saved {
                secret: data_encoding::HEXLOWER.encode(&secret[..]),
                name,
                cert_pem,
                key_pem,
            };
            doc.save_json(&record)?;
        }
    }
    match options.front_pin {
        Some(pin) => {
            HttpsServerConfig::behind_proxy(*secret, &options.tls_name, pin, options.decoy.clone())
        }
        None => HttpsServerConfig::new(*secret, &options.tls_name, cert, options.decoy.clone()),
    }
    .map_err(https_err)
}

static OBFS4: DocKind = DocKind {
    vault_file: "node/obfs4",
    dir_file: "obfs4.rec",
    key_context: "samizdat 2026 obfs4 server keys v1",
    aad: b"samizdat obfs4 server keys v1",
    max_len: 4 * 1024,
    what: "obfs4 server keys (not written by this node's identity, or damaged)",
};

/// What the store keeps under `kind`, or `make()`'s value, saved for next time (an ephemeral
/// store keeps nothing: a fresh value every run). Blocking.
fn kept<T: Serialize + serde::de::DeserializeOwned>(
    store: &Store,
    identity: &Identity,
    kind: &'static DocKind,
    make: impl FnOnce() -> T,
) -> Result<T, NodeError> {
    let doc = SealedDoc::new(store, identity, kind);
    if let Some(value) = doc.as_ref().map(SealedDoc::load_json::<T>).transpose()?.flatten() {
        return Ok(value);
    }
    let value = make();
    if let Some(doc) = &doc {
        doc.save_json(&value)?;
    }
    Ok(value)
}

/// The obfs4 server keys the node listens with (`--listen obfs4/IP:PORT`), made once and kept
/// sealed like the HTTPS keys, so the `cert` in its obfs4 address stays valid. Blocking.
pub(crate) fn obfs4_keys(
    store: &Store,
    identity: &Identity,
) -> Result<Vec<(String, String)>, NodeError> {
    kept(store, identity, &OBFS4, samizdat_transport::pt::obfs4_keys)
}

static VEIL: DocKind = DocKind {
    vault_file: "node/veil",
    dir_file: "veil.rec",
    key_context: "samizdat 2026 veil server key v1",
    aad: b"samizdat veil server key v1",
    max_len: 1024,
    what: "veil server key (not written by this node's identity, or damaged)",
};

/// The veil server key the node listens with (`--listen veil/IP:PORT`), made once and kept
/// sealed, so the `k` in its veil address stays valid. Blocking.
pub(crate) fn veil_key(
    store: &Store,
    identity: &Identity,
) -> Result<samizdat_transport::veil::ServerKey, NodeError> {
    use samizdat_transport::veil::ServerKey;
    let make = || {
        let key = ServerKey::generate(&mut OsRng);
        data_encoding::HEXLOWER.encode(key.secret())
    };
    let hex = Zeroizing::new(kept(store, identity, &VEIL, make)?);
    let secret = data_encoding::HEXLOWER
        .decode(hex.as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or(bad("veil server key"))?;
    Ok(ServerKey::from_secret(secret))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn options(name: &str) -> HttpsOptions {
        HttpsOptions { tls_name: name.into(), cert: None, decoy: Decoy::Welcome, front_pin: None }
    }

    #[test]
    fn keys_survive_a_restart_and_a_given_certificate_is_used_as_is() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::generate(&mut OsRng);
        let open = || crate::state::Store::open_dir(dir.path()).unwrap().store;
        let a = server_config(&open(), &identity, &options("www.example.org")).unwrap();
        let b = server_config(&open(), &identity, &options("www.example.org")).unwrap();
        assert_eq!(a.secret, b.secret);
        assert_eq!(a.pin, b.pin, "the same certificate after a restart");
        // No plaintext on disk.
        let raw = std::fs::read(dir.path().join("https.rec")).unwrap();
        assert!(!raw.windows(10).any(|w| w == b"-----BEGIN"));
        // A new name makes a new certificate but keeps the secret.
        let c = server_config(&open(), &identity, &options("cdn.example.net")).unwrap();
        assert_eq!(c.secret, a.secret);
        assert_ne!(c.pin, a.pin);
        // A given certificate is served, and the node's own one is kept for later.
        let given = ServerCert::generate("www.example.org").unwrap();
        let with = HttpsOptions { cert: Some(given.clone()), ..options("www.example.org") };
        let d = server_config(&open(), &identity, &with).unwrap();
        assert_eq!(d.pin, given.pin().unwrap());
        assert_eq!(d.secret, a.secret);
        let e = server_config(&open(), &identity, &options("cdn.example.net")).unwrap();
        assert_eq!(e.pin, c.pin);
        // Another identity cannot read the record: a typed error, nothing overwritten.
        let before = std::fs::read(dir.path().join("https.rec")).unwrap();
        let other = Identity::generate(&mut OsRng);
        assert!(server_config(&open(), &other, &options("cdn.example.net")).is_err());
        assert_eq!(std::fs::read(dir.path().join("https.rec")).unwrap(), before);
    }

    #[test]
    fn an_ephemeral_node_makes_fresh_keys_and_bad_names_are_refused() {
        let identity = Identity::generate(&mut OsRng);
        let store = crate::state::Store::ephemeral().store;
        let a = server_config(&store, &identity, &options("www.example.org")).unwrap();
        let b = server_config(&store, &identity, &options("www.example.org")).unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(server_config(&store, &identity, &options("192.0.2.1")).is_err());
    }

    #[test]
    fn the_veil_key_is_kept_sealed_and_unreadable_by_another_identity() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::generate(&mut OsRng);
        let open = || crate::state::Store::open_dir(dir.path()).unwrap().store;
        let a = veil_key(&open(), &identity).unwrap();
        let again = veil_key(&open(), &identity).unwrap();
        assert_eq!(a.public(), again.public(), "the same key after a restart");
        let raw = std::fs::read(dir.path().join("veil.rec")).unwrap();
        let hex = data_encoding::HEXLOWER.encode(a.secret());
        assert!(!raw.windows(16).any(|w| w == &hex.as_bytes()[..16]), "no plaintext on disk");
        let other = Identity::generate(&mut OsRng);
        assert!(veil_key(&open(), &other).is_err());
        assert_eq!(std::fs::read(dir.path().join("veil.rec")).unwrap(), raw, "left alone");
        let store = crate::state::Store::ephemeral().store;
        assert_ne!(veil_key(&store, &identity).unwrap().public(), a.public());
    }

    #[test]
    fn obfs4_keys_are_kept_sealed_and_unreadable_by_another_identity() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::generate(&mut OsRng);
        let open = || crate::state::Store::open_dir(dir.path()).unwrap().store;
        let a = obfs4_keys(&open(), &identity).unwrap();
        assert_eq!(a, obfs4_keys(&open(), &identity).unwrap(), "the same keys after a restart");
        let names: Vec<&str> = a.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["node-id", "private-key", "drbg-seed", "iat-mode"]);
        let raw = std::fs::read(dir.path().join("obfs4.rec")).unwrap();
        assert!(!raw.windows(11).any(|w| w == b"private-key"), "no plaintext on disk");
        let other = Identity::generate(&mut OsRng);
        assert!(obfs4_keys(&open(), &other).is_err());
        assert_eq!(std::fs::read(dir.path().join("obfs4.rec")).unwrap(), raw);
        // An ephemeral node makes fresh ones every run.
        let store = crate::state::Store::ephemeral().store;
        assert_ne!(obfs4_keys(&store, &identity).unwrap(), obfs4_keys(&store, &identity).unwrap());
    }
}
