//! The secret upgrade path: `/<prefix>/<token>`.
//!
//! The prefix is derived from the node's transport secret, so a reverse proxy in front of the
//! node can route the tunnel by path (`location /<prefix>/`). The token proves knowledge of the
//! secret for this hour: `base64url(nonce ‖ mac)` with a 16-byte random nonce and
//! `mac = BLAKE3-keyed(secret-derived key, hour ‖ nonce)[..16]`. The server accepts the
//! current hour and its neighbours (clock skew) and each nonce once, so a recorded request
//! replayed by a prober gets the decoy like any other stranger.

use data_encoding::BASE64URL_NOPAD;
use std::collections::{BTreeMap, HashSet};

const NONCE: usize = 16;
const MAC: usize = 16;
/// Accepted nonces remembered at most (past that, new tokens are refused until the hour turns;
/// only someone holding the secret can fill it).
pub const MAX_REMEMBERED: usize = 1 << 16;

/// The secret path prefix (16 base64url characters) for `secret`.
pub fn path_prefix(secret: &[u8; 32]) -> String {
    let k = blake3::derive_key("samizdat 2026 https tunnel path v1", secret);
    BASE64URL_NOPAD.encode(&k[..12])
}

fn mac(secret: &[u8; 32], hour: u64, nonce: &[u8; NONCE]) -> [u8; MAC] {
    let key = blake3::derive_key("samizdat 2026 https tunnel token v1", secret);
    let mut h = blake3::Hasher::new_keyed(&key);
    h.update(&hour.to_be_bytes());
    h.update(nonce);
    let mut out = [0u8; MAC];
    out.copy_from_slice(&h.finalize().as_bytes()[..MAC]);
    out
}

/// The full upgrade path for `secret` at `hour` with a fresh `nonce`.
pub fn upgrade_path(secret: &[u8; 32], hour: u64, nonce: [u8; NONCE]) -> String {
    let mut token = nonce.to_vec();
    token.extend_from_slice(&mac(secret, hour, &nonce));
    format!("/{}/{}", path_prefix(secret), BASE64URL_NOPAD.encode(&token))
}

/// The key that authenticates the requests of a request/response tunnel opened on `path`
/// ([`crate::meek`]): only holders of the secret can make it, so whoever merely sees the path
/// (a CDN, its logs) cannot speak in the session or tell it from a missing page.
pub fn request_key(secret: &[u8; 32], path: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("samizdat 2026 meek request key v1");
    h.update(secret);
    h.update(path.as_bytes());
    *h.finalize().as_bytes()
}

/// Checks upgrade paths for one secret and remembers the nonces it has accepted.
pub struct TokenCheck {
    secret: [u8; 32],
    prefix: String,
    seen: BTreeMap<u64, HashSet<[u8; NONCE]>>,
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never goes into a log line.
        f.write_str("TokenCheck(..)")
    }
}

impl TokenCheck {
    /// The request key of a tunnel on `path` ([`request_key`]).
    pub fn request_key(&self, path: &str) -> [u8; 32] {
        request_key(&self.secret, path)
    }

    /// A checker for `secret`.
    pub fn new(secret: [u8; 32]) -> Self {
        TokenCheck { prefix: path_prefix(&secret), secret, seen: BTreeMap::new() }
    }

    /// Whether `path` is a valid, unreplayed upgrade path at `hour` (the wall clock in hours
    /// since the UNIX epoch). An accepted nonce is never accepted again.
    pub fn accept(&mut self, path: &str, hour: u64) -> bool {
        // Forget nonces of hours that can no longer be accepted.
        self.seen.retain(|&h, _| h.saturating_add(2) >= hour);
        let Some(token) = path
            .strip_prefix('/')
            .and_then(|p| p.strip_prefix(self.prefix.as_str()))
            .and_then(|p| p.strip_prefix('/'))
        else {
            return false;
        };
        let Ok(raw) = BASE64URL_NOPAD.decode(token.as_bytes()) else { return false };
        if raw.len() != NONCE + MAC {
            return false;
        }
        let mut nonce = [0u8; NONCE];
        nonce.copy_from_slice(&raw[..NONCE]);
        let given = &raw[NONCE..];
        let Some(at) = [hour, hour.saturating_sub(1), hour.saturating_add(1)]
            .into_iter()
            .find(|&h| constant_time_eq(&mac(&self.secret, h, &nonce), given))
        else {
            return false;
        };
        if self.seen.values().any(|s| s.contains(&nonce)) {
            return false;
        }
        if self.seen.values().map(HashSet::len).sum::<usize>() >= MAX_REMEMBERED {
            return false;
        }
        self.seen.entry(at).or_default().insert(nonce);
        true
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn accepts_a_fresh_token_once_within_an_hour_of_skew() {
        let secret = [3u8; 32];
        let mut check = TokenCheck::new(secret);
        let path = upgrade_path(&secret, 1000, [1; 16]);
        assert!(path.starts_with(&format!("/{}/", path_prefix(&secret))));
        assert!(check.accept(&path, 1000));
        assert!(!check.accept(&path, 1000), "a replayed token is refused");
        assert!(check.accept(&upgrade_path(&secret, 999, [2; 16]), 1000));
        assert!(check.accept(&upgrade_path(&secret, 1001, [3; 16]), 1000));
        assert!(!check.accept(&upgrade_path(&secret, 998, [4; 16]), 1000), "too old");
        assert!(!check.accept(&upgrade_path(&secret, 1002, [5; 16]), 1000), "too new");
        // The replay memory of old hours is dropped, but their tokens are too old anyway.
        assert!(!check.accept(&path, 1003));
        assert!(check.seen.keys().all(|&h| h + 2 >= 1003));
    }

    #[test]
    fn refuses_other_secrets_and_mangled_paths() {
        let secret = [3u8; 32];
        let mut check = TokenCheck::new(secret);
        let other = upgrade_path(&[4u8; 32], 10, [1; 16]);
        assert!(!check.accept(&other, 10));
        let good = upgrade_path(&secret, 10, [1; 16]);
        let prefix = path_prefix(&secret);
        for bad in [
            "/".to_string(),
            format!("/{prefix}"),
            format!("/{prefix}/"),
            format!("/{prefix}/!!!"),
            format!("/{prefix}/{}", BASE64URL_NOPAD.encode(&[0; 31])),
            format!("{good}x"),
            good.replacen('/', "//", 1),
            good[1..].to_string(),
        ] {
            assert!(!check.accept(&bad, 10), "{bad}");
        }
        // A flipped bit of the mac.
        let mut raw = BASE64URL_NOPAD.decode(good.rsplit('/').next().unwrap().as_bytes()).unwrap();
        raw[31] ^= 1;
        assert!(!check.accept(&format!("/{prefix}/{}", BASE64URL_NOPAD.encode(&raw)), 10));
        assert!(check.accept(&good, 10));
    }

    #[test]
    fn the_replay_memory_is_bounded() {
        let secret = [5u8; 32];
        let mut check = TokenCheck::new(secret);
        for i in 0..MAX_REMEMBERED as u32 {
            let mut nonce = [0u8; 16];
            nonce[..4].copy_from_slice(&i.to_be_bytes());
            check.seen.entry(7).or_default().insert(nonce);
        }
        assert!(!check.accept(&upgrade_path(&secret, 7, [0xff; 16]), 7), "full: refused");
        // Hours later the old nonces are forgotten and tokens are taken again.
        assert!(check.accept(&upgrade_path(&secret, 10, [0xff; 16]), 10));
    }
}
