//! Rendezvous in the BitTorrent Mainline DHT (BEP 44 mutable items).
//!
//! Millions of BitTorrent clients run the Mainline DHT; a censor cannot block it without
//! blocking BitTorrent. Nodes of one Samizdat network share a [`NetworkSecret`] (it travels
//! with invites, out of band). For each time period `p` (an hour by default) the secret
//! yields an Ed25519 *rendezvous key*:
//!
//! ```text
//! seed(p) = BLAKE3-derive_key("samizdat 2026 mainline rendezvous v1", secret || p as u64 BE)
//! ```
//!
//! and under that key there are [`MainlineConfig::slots`] BEP 44 mutable items, one per salt
//! (the slot index as 2 big-endian bytes). Each item's value is one encoded [`PeerRecord`],
//! sealed ([`NetworkSecret::seal_value`]: ChaCha20-Poly1305 under a key derived from the
//! secret and the period, the slot as associated data, padded to a random length), and its
//! sequence number is the record's timestamp. The Mainline nodes that store an item, and
//! anyone who reads it, see random keys that change every hour carrying random bytes of
//! varying length: no address, no identity, nothing that says Samizdat.
//!
//! - **Announce** puts the node's record into its *own* slot (chosen by its [`NodeId`]) and
//!   into one random *second* slot, taken only if that slot is empty or holds nothing valid,
//!   so announcers do not push each other out more than needed.
//! - **Discover** reads every slot of the current and the previous period concurrently, decodes
//!   every value any DHT node returned, verifies each record (signature, age), and
//!   deduplicates by node.
//!
//! # What the shared key does and does not protect
//!
//! Everybody who knows the network secret can sign for every slot, so any of them (or anyone
//! the secret leaks to) can overwrite a slot, or pin it with a huge sequence number until the
//! period rotates. Values are self-certifying, so such an attacker can only *hide* peers or
//! replay old records of real peers (bounded by [`MainlineConfig::max_age`]); it cannot make a
//! node dial an identity that did not sign the record. Rotating the key every period bounds
//! how long a pinned slot lasts. This method finds *some* peers (up to two per slot per
//! period, a few dozen), enough to enter the overlay, where the Samizdat DHT takes over.
//! Nodes should announce again every quarter period, since BEP 44 storage expires (about
//! two hours on most nodes) and periods rotate.
//!
//! Every operation is bounded by [`MainlineConfig::timeout`]: an unreachable or blocked DHT
//! gives a typed error within it, never a hang.

use crate::report::merge;
use crate::{BoxFuture, Discovery, DiscoveryError, Found, PeerRecord, unix_now};
use mainline::async_dht::AsyncDht;
use mainline::{Dht, MutableItem, SigningKey};
use rand_core::{OsRng, RngCore};
use ring::aead;
use samizdat_identity::NodeId;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// The BLAKE3 key-derivation context of rendezvous keys.
pub const RENDEZVOUS_CONTEXT: &str = "samizdat 2026 mainline rendezvous v1";
/// The public Mainline bootstrap routers, for [`MainlineConfig::new`] in a real deployment.
pub const PUBLIC_BOOTSTRAP: [&str; 4] = mainline::DEFAULT_BOOTSTRAP_NODES;
/// The most values kept from one slot lookup (DHT nodes may return different versions).
pub const MAX_VALUES_PER_SLOT: usize = 8;
/// The method's name in reports.
pub const NAME: &str = "mainline";

/// The BLAKE3 key-derivation context of the key that seals slot values.
pub const VALUE_CONTEXT: &str = "samizdat 2026 mainline slot value v1";
/// The longest sealed slot value (BEP 44 allows 1000 bytes).
pub const MAX_SEALED_LEN: usize = 1000;
/// Nonce and tag.
const SEAL_OVERHEAD: usize = 12 + 16;

fn seal_aad(period: u64, slot: u16) -> [u8; 10] {
    let mut aad = [0u8; 10];
    aad[..8].copy_from_slice(&period.to_be_bytes());
    aad[8..].copy_from_slice(&slot.to_be_bytes());
    aad
}

/// How a [`NetworkSecret`]'s text form starts.
pub const NETWORK_SECRET_PREFIX: &str = "szn1";
const HEX: &[u8; 16] = b"0123456789abcdef";

/// The secret shared by the nodes of one network; never printed.
#[derive(Clone)]
pub struct NetworkSecret(Zeroizing<[u8; 32]>);

impl NetworkSecret {
    /// Wraps 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        NetworkSecret(Zeroizing::new(bytes))
    }

    /// A fresh random secret (for founding a new network).
    pub fn generate() -> Self {
        let mut b = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut b[..]);
        NetworkSecret(b)
    }

    /// The secret as one line of text: `szn1` and 64 hex digits (for a file handed to the
    /// network's members; never for argv or logs).
    pub fn danger_to_text(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::with_capacity(NETWORK_SECRET_PREFIX.len() + 64));
        out.push_str(NETWORK_SECRET_PREFIX);
        for b in self.0.iter() {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }

    /// Parses [`NetworkSecret::danger_to_text`]'s line (surrounding whitespace and the case of
    /// the digits do not matter). `None` if it is anything else.
    pub fn from_text(text: &str) -> Option<Self> {
        let text = text.trim();
        let hex = text
            .get(..NETWORK_SECRET_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(NETWORK_SECRET_PREFIX))
            .and_then(|_| text.get(NETWORK_SECRET_PREFIX.len()..))?
            .as_bytes();
        if hex.len() != 64 {
            return None;
        }
        let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
        let mut b = Zeroizing::new([0u8; 32]);
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            b[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(NetworkSecret(b))
    }

    /// Seals an encoded peer record for `slot` of `period`: `nonce (12) || ChaCha20-Poly1305(
    /// len (2 BE) || record || zero padding)`, the padding making the sealed value a random
    /// length up to [`MAX_SEALED_LEN`], with `period || slot` as associated data (a value
    /// copied to another slot or period does not open). The key is derived from the secret
    /// and the period, so only the network's members can read a slot.
    pub fn seal_value(&self, period: u64, slot: u16, record: &[u8]) -> Vec<u8> {
        let len = u16::try_from(record.len()).unwrap_or(u16::MAX);
        let min = SEAL_OVERHEAD + 2 + usize::from(len);
        let total = if min >= MAX_SEALED_LEN {
            min
        } else {
            min + OsRng.next_u32() as usize % (MAX_SEALED_LEN - min + 1)
        };
        let mut plain = Vec::with_capacity(total);
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(&record[..usize::from(len)]);
        plain.resize(total - SEAL_OVERHEAD, 0);
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let key = self.value_key(period);
        let tag = key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(seal_aad(period, slot)),
                &mut plain,
            )
            .expect("ChaCha20-Poly1305 seals any input under 256 GiB");
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&plain);
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Opens what [`NetworkSecret::seal_value`] sealed for `slot` of `period`: the encoded
    /// record, or `None` if the value was not sealed with this secret for this slot and
    /// period, or was changed.
    pub fn open_value(&self, period: u64, slot: u16, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < SEAL_OVERHEAD + 2 || sealed.len() > MAX_SEALED_LEN {
            return None;
        }
        let (nonce, rest) = sealed.split_at(12);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let key = self.value_key(period);
        let plain =
            key.open_in_place(nonce, aead::Aad::from(seal_aad(period, slot)), &mut buf).ok()?;
        let len = usize::from(u16::from_be_bytes([plain[0], plain[1]]));
        let record = plain.get(2..2 + len)?;
        plain[2 + len..].iter().all(|&b| b == 0).then(|| record.to_vec())
    }

    fn value_key(&self, period: u64) -> aead::LessSafeKey {
        let mut input = Zeroizing::new([0u8; 40]);
        input[..32].copy_from_slice(&self.0[..]);
        input[32..].copy_from_slice(&period.to_be_bytes());
        let key = Zeroizing::new(blake3::derive_key(VALUE_CONTEXT, &input[..]));
        let unbound = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &key[..])
            .expect("a 32-byte key is a valid ChaCha20-Poly1305 key");
        aead::LessSafeKey::new(unbound)
    }

    /// The Ed25519 seed of the rendezvous key for `period`. Whoever holds it can write every
    /// slot of that period.
    pub fn danger_rendezvous_seed(&self, period: u64) -> Zeroizing<[u8; 32]> {
        let mut input = Zeroizing::new([0u8; 40]);
        input[..32].copy_from_slice(&self.0[..]);
        input[32..].copy_from_slice(&period.to_be_bytes());
        Zeroizing::new(blake3::derive_key(RENDEZVOUS_CONTEXT, &input[..]))
    }

    /// The public rendezvous key for `period` (what DHT nodes see).
    pub fn rendezvous_public_key(&self, period: u64) -> [u8; 32] {
        SigningKey::from_bytes(&self.danger_rendezvous_seed(period)).verifying_key().to_bytes()
    }
}

impl std::fmt::Debug for NetworkSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetworkSecret(…)")
    }
}

/// The BEP 44 salt of a slot.
pub fn slot_salt(slot: u16) -> [u8; 2] {
    slot.to_be_bytes()
}

/// The slot a node always announces into.
pub fn home_slot(node: &NodeId, slots: u16) -> u16 {
    u16::from_be_bytes([node.0[0], node.0[1]]) % slots.max(1)
}

/// Settings of a [`MainlineRendezvous`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MainlineConfig {
    /// DHT nodes to start from (`host:port`). There is no implicit default: pass
    /// [`PUBLIC_BOOTSTRAP`] for the real Mainline DHT, a testnet's addresses in tests.
    pub bootstrap: Vec<String>,
    /// The local address of the DHT's UDP socket (default: all interfaces).
    pub bind_address: Ipv4Addr,
    /// The local UDP port (default: any).
    pub port: Option<u16>,
    /// Slots per period (default 16).
    pub slots: u16,
    /// Length of a rendezvous period (default one hour).
    pub period: Duration,
    /// Budget of one announce or discover, end to end (default 20 s).
    pub timeout: Duration,
    /// Budget of one UDP request inside the DHT (default 2 s).
    pub request_timeout: Duration,
    /// Oldest record accepted (default two hours: two periods).
    pub max_age: Duration,
    /// Slot lookups run at once (default 4). The `mainline` client handles one packet per
    /// tick, so dozens of concurrent lookups lose answers to its request timeout.
    pub parallel_lookups: usize,
}

impl MainlineConfig {
    /// Defaults, with the given bootstrap nodes.
    pub fn new(bootstrap: Vec<String>) -> Self {
        MainlineConfig {
            bootstrap,
            bind_address: Ipv4Addr::UNSPECIFIED,
            port: None,
            slots: 16,
            period: Duration::from_secs(3600),
            timeout: Duration::from_secs(20),
            request_timeout: mainline::DEFAULT_REQUEST_TIMEOUT,
            max_age: Duration::from_secs(2 * 3600),
            parallel_lookups: 4,
        }
    }

    /// The period that `now` (Unix seconds) falls in.
    pub fn period_of(&self, now: u64) -> u64 {
        now / self.period.as_secs().max(1)
    }
}

/// What a [`MainlineRendezvous::discover_at`] found.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Discovered {
    /// Verified records, one per node.
    pub records: Vec<PeerRecord>,
    /// Values that did not decode or verify (poisoned or stale slots).
    pub rejected: usize,
    /// DHT nodes that answered, summed over all slot lookups.
    pub responded: u64,
    /// Slot lookups that did not finish within the timeout.
    pub timed_out: usize,
}

/// The Mainline DHT rendezvous method (see the [module docs](self)).
#[derive(Debug)]
pub struct MainlineRendezvous {
    dht: AsyncDht,
    secret: NetworkSecret,
    config: MainlineConfig,
}

impl MainlineRendezvous {
    /// Starts a Mainline DHT client (a UDP socket and the `mainline` crate's actor thread).
    /// Resolving host names in `config.bootstrap` may block briefly.
    pub fn new(secret: NetworkSecret, config: MainlineConfig) -> Result<Self, DiscoveryError> {
        let mut builder = Dht::builder();
        builder
            .bootstrap(&config.bootstrap)
            .bind_address(config.bind_address)
            .request_timeout(config.request_timeout);
        if let Some(port) = config.port {
            builder.port(port);
        }
        let dht = builder.build()?.as_async();
        Ok(MainlineRendezvous { dht, secret, config })
    }

    /// Why nobody answered, without naming the bootstrap nodes (errors end up in logs).
    fn nobody_answered(&self) -> String {
        let n = self.config.bootstrap.len();
        format!(
            "no Mainline DHT node answered ({n} bootstrap node{} tried)",
            if n == 1 { "" } else { "s" }
        )
    }

    /// The settings in use.
    pub fn config(&self) -> &MainlineConfig {
        &self.config
    }

    /// The local UDP address of the DHT client.
    pub async fn local_addr(&self) -> std::net::SocketAddrV4 {
        self.dht.info().await.local_addr()
    }

    /// Announces `record` (this node's own) as of `now`: into its home slot and one free
    /// second slot of the current period. Returns how many slots stored it.
    pub async fn announce_at(
        &self,
        record: &PeerRecord,
        now: u64,
    ) -> Result<usize, DiscoveryError> {
        record.verify(now, self.config.max_age)?;
        let budget = self.config.timeout;
        tokio::time::timeout(budget, self.announce_inner(record, now))
            .await
            .map_err(|_| DiscoveryError::Timeout { method: NAME, after: budget })?
    }

    /// Waits until the DHT client has found its neighbourhood; fails if nobody answered.
    async fn bootstrapped(&self) -> Result<(), DiscoveryError> {
        if self.dht.bootstrapped().await {
            return Ok(());
        }
        Err(DiscoveryError::Unreachable { method: NAME, detail: self.nobody_answered() })
    }

    async fn announce_inner(&self, record: &PeerRecord, now: u64) -> Result<usize, DiscoveryError> {
        self.bootstrapped().await?;
        let period = self.config.period_of(now);
        let seed = self.secret.danger_rendezvous_seed(period);
        let public = self.secret.rendezvous_public_key(period);
        let encoded = record.encode();
        let seq = i64::try_from(record.timestamp()).unwrap_or(i64::MAX);
        let slots = self.config.slots.max(1);
        let home = home_slot(&record.node_id(), slots);

        let mut stored = 0;
        let mut failures = Vec::new();
        let sealed = |slot| self.secret.seal_value(period, slot, &encoded);
        match self.put(&seed, home, &sealed(home), seq).await {
            Ok(()) => stored += 1,
            Err(e) => failures.push(format!("slot {home}: {e}")),
        }
        // A second slot, only if nobody valid holds it (up to two tries).
        for _ in 0..2 {
            if slots < 2 {
                break;
            }
            let slot = (home + 1 + (OsRng.next_u32() % u32::from(slots - 1)) as u16) % slots;
            let current = self.dht.get_mutable_most_recent(&public, Some(&slot_salt(slot))).await;
            let taken = current.is_some_and(|item| {
                let opened = self.secret.open_value(period, slot, item.value());
                opened.and_then(|v| PeerRecord::decode(&v).ok()).is_some_and(|r| {
                    r.node_id() != record.node_id() && r.verify(now, self.config.max_age).is_ok()
                })
            });
            if taken {
                continue;
            }
            match self.put(&seed, slot, &sealed(slot), seq).await {
                Ok(()) => stored += 1,
                Err(e) => failures.push(format!("slot {slot}: {e}")),
            }
            break;
        }
        if stored == 0 {
            return Err(DiscoveryError::Announce { method: NAME, detail: failures.join("; ") });
        }
        Ok(stored)
    }

    async fn put(&self, seed: &[u8; 32], slot: u16, value: &[u8], seq: i64) -> Result<(), String> {
        let item =
            MutableItem::new(SigningKey::from_bytes(seed), value, seq, Some(&slot_salt(slot)));
        self.dht.put_mutable(item, None).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Reads every slot of the period of `now` and the one before, and returns the verified
    /// records (one per node). Fails with [`DiscoveryError::Unreachable`] if no DHT node
    /// answered, [`DiscoveryError::Timeout`] if no lookup finished in time.
    pub async fn discover_at(&self, now: u64) -> Result<Discovered, DiscoveryError> {
        self.discover_at_each(now, &|_| {}).await
    }

    /// Like [`MainlineRendezvous::discover_at`], handing each verified record to `found` as
    /// soon as its slot lookup ends.
    pub async fn discover_at_each(
        &self,
        now: u64,
        found: &Found,
    ) -> Result<Discovered, DiscoveryError> {
        let budget = self.config.timeout;
        let start = tokio::time::Instant::now();
        tokio::time::timeout(budget, self.bootstrapped())
            .await
            .map_err(|_| DiscoveryError::Timeout { method: NAME, after: budget })??;
        let deadline = start + budget;
        let period = self.config.period_of(now);
        let permits = Arc::new(Semaphore::new(self.config.parallel_lookups.max(1)));
        let mut lookups = tokio::task::JoinSet::new();
        for p in [period, period.saturating_sub(1)] {
            let public = self.secret.rendezvous_public_key(p);
            for slot in 0..self.config.slots.max(1) {
                let dht = self.dht.clone();
                let permits = permits.clone();
                let secret = self.secret.clone();
                lookups.spawn(tokio::time::timeout_at(deadline, async move {
                    use futures_lite::StreamExt;
                    let _permit = permits.acquire_owned().await;
                    let salt = slot_salt(slot);
                    let mut found = dht.get_mutable_detailed(&public, Some(&salt), None);
                    let mut values = Vec::new();
                    while let Some(item) = found.items.next().await {
                        // A value that does not open is kept as `None`, to be counted.
                        let opened = secret.open_value(p, slot, item.value());
                        if values.len() < MAX_VALUES_PER_SLOT && !values.contains(&opened) {
                            values.push(opened);
                        }
                    }
                    let outcome = found.outcome.recv().await;
                    (values, outcome.responded())
                }));
            }
        }
        let mut out = Discovered::default();
        let mut index = HashMap::new();
        let mut finished = 0usize;
        while let Some(joined) = lookups.join_next().await {
            let Ok(result) = joined else { continue }; // a lookup task panicked inside mainline
            let Ok((values, responded)) = result else {
                out.timed_out += 1;
                continue;
            };
            finished += 1;
            out.responded += u64::from(responded);
            let mut good = Vec::new();
            for item in values {
                let Some(value) = item else {
                    tracing::debug!("mainline rendezvous: a slot value did not open");
                    out.rejected += 1;
                    continue;
                };
                match PeerRecord::decode(&value)
                    .and_then(|r| r.verify(now, self.config.max_age).map(|_| r))
                {
                    Ok(r) => good.push(r),
                    Err(e) => {
                        tracing::debug!(error = %e, "mainline rendezvous: rejected a slot value");
                        out.rejected += 1;
                    }
                }
            }
            good.iter().for_each(found);
            merge(&mut out.records, &mut index, good);
        }
        if out.records.is_empty() {
            if finished == 0 {
                return Err(DiscoveryError::Timeout { method: NAME, after: budget });
            }
            if out.responded == 0 {
                return Err(DiscoveryError::Unreachable {
                    method: NAME,
                    detail: self.nobody_answered(),
                });
            }
        }
        Ok(out)
    }
}

impl Discovery for MainlineRendezvous {
    fn name(&self) -> &'static str {
        NAME
    }

    fn announce<'a>(&'a self, record: &'a PeerRecord) -> BoxFuture<'a, Result<(), DiscoveryError>> {
        Box::pin(async move { self.announce_at(record, unix_now()).await.map(|_| ()) })
    }

    fn discover(&self) -> BoxFuture<'_, Result<Vec<PeerRecord>, DiscoveryError>> {
        Box::pin(async move { self.discover_at(unix_now()).await.map(|d| d.records) })
    }

    fn discover_each<'a>(
        &'a self,
        found: &'a Found,
    ) -> BoxFuture<'a, Result<Vec<PeerRecord>, DiscoveryError>> {
        Box::pin(async move { self.discover_at_each(unix_now(), found).await.map(|d| d.records) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_secret_text_round_trips_and_refuses_anything_else() {
        let secret = NetworkSecret::generate();
        let text = secret.danger_to_text();
        assert!(text.starts_with("szn1") && text.len() == 68);
        let back = NetworkSecret::from_text(&format!("  {}\n", text.to_uppercase())).unwrap();
        assert_eq!(back.rendezvous_public_key(5), secret.rendezvous_public_key(5));
        assert_eq!(
            NetworkSecret::from_bytes([0xab; 32]).danger_to_text().as_str(),
            format!("szn1{}", "ab".repeat(32))
        );
        for bad in [
            String::new(),
            "szn1".to_owned(),
            format!("szn2{}", "0".repeat(64)),
            format!("szn1{}", "0".repeat(63)),
            format!("szn1{}", "0".repeat(65)),
            format!("szn1{}g", "0".repeat(63)),
            format!("szn1{}é", "0".repeat(62)),
            "é".repeat(40),
        ] {
            assert!(NetworkSecret::from_text(&bad).is_none(), "{bad:?}");
        }
        assert!(!format!("{secret:?}").contains(&text[4..12]), "never printed");
    }

    #[test]
    fn sealed_values_open_only_for_their_secret_slot_and_period() {
        let secret = NetworkSecret::from_bytes([1; 32]);
        let record = b"an encoded peer record".to_vec();
        let sealed = secret.seal_value(9, 3, &record);
        assert_eq!(secret.open_value(9, 3, &sealed), Some(record.clone()));
        assert!(!sealed.windows(record.len()).any(|w| w == record), "sealed, not in clear");
        assert_eq!(secret.open_value(9, 4, &sealed), None, "another slot");
        assert_eq!(secret.open_value(10, 3, &sealed), None, "another period");
        assert_eq!(NetworkSecret::from_bytes([2; 32]).open_value(9, 3, &sealed), None);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x20;
            assert_eq!(secret.open_value(9, 3, &bad), None, "byte {i}");
        }
        assert_eq!(secret.open_value(9, 3, &sealed[..sealed.len() - 1]), None);
        assert_eq!(secret.open_value(9, 3, &[0; 29]), None);
        assert_eq!(secret.open_value(9, 3, &vec![0; MAX_SEALED_LEN + 1]), None);
        // Lengths vary (no fixed-size fingerprint) and never exceed BEP 44's limit, even for
        // the largest record.
        let lens: std::collections::BTreeSet<usize> =
            (0..32).map(|_| secret.seal_value(9, 3, &record).len()).collect();
        assert!(lens.len() > 8, "{lens:?}");
        let largest = vec![7u8; crate::record::MAX_RECORD_LEN];
        for _ in 0..32 {
            let sealed = secret.seal_value(1, 0, &largest);
            assert!(sealed.len() <= MAX_SEALED_LEN);
            assert_eq!(secret.open_value(1, 0, &sealed), Some(largest.clone()));
        }
    }
}
