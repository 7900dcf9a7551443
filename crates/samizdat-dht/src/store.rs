//! The record store: what this node keeps for others, bounded globally and per source.

use crate::DhtError;
use crate::record::{ProviderRecord, SignedRecord};
use samizdat_identity::NodeId;
use std::collections::HashMap;

/// Where a record came from, for quotas.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Source {
    /// A peer whose identity the caller vouches for (a direct, authenticated link).
    Peer(NodeId),
    /// A request over a route that does not reveal the sender (e.g. an onion circuit). All
    /// anonymous sources share one quota.
    Anonymous,
    /// This node itself: exempt from quotas and the global cap (bounded by the owner API).
    Local,
}

/// Limits of a [`RecordStore`].
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The most records (values plus provider records) from remote sources.
    pub max_records: usize,
    /// The most records one source may have stored.
    pub max_per_source: usize,
    /// The most provider records kept per key.
    pub max_providers_per_key: usize,
    /// The most provider records kept per key from one /24 (IPv4) or /48 (IPv6) of provider
    /// addresses, so one operator's many identities cannot take all of a key's places.
    pub max_providers_per_key_group: usize,
    /// The longest lifetime accepted: records expiring later than `now + max_ttl_secs` are
    /// refused, so a flood cannot pin the store forever.
    pub max_ttl_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            max_records: 4096,
            max_per_source: 64,
            max_providers_per_key: 20,
            max_providers_per_key_group: 2,
            max_ttl_secs: 48 * 3600,
        }
    }
}

/// The outcome of a successful put.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PutOutcome {
    /// A new record.
    Inserted,
    /// Replaced an older record (higher sequence number, or a later provider expiry).
    Replaced,
    /// The very same record was already stored.
    Unchanged,
}

struct Stored<T> {
    record: T,
    source: Source,
}

/// A bounded store of mutable records and provider records, checked before storing.
///
/// Bounds: at most [`StoreConfig::max_records`] remote entries, at most
/// [`StoreConfig::max_per_source`] per source, at most
/// [`StoreConfig::max_providers_per_key`] providers per key. When full, new records are
/// refused (not evicted), so a flood cannot push out what is already stored.
pub struct RecordStore {
    config: StoreConfig,
    difficulty: u8,
    values: HashMap<NodeId, Stored<SignedRecord>>,
    providers: HashMap<NodeId, Vec<Stored<ProviderRecord>>>,
    per_source: HashMap<Source, usize>,
    remote: usize,
}

impl RecordStore {
    /// An empty store; provider contacts must pass the proof of work at `difficulty`.
    pub fn new(config: StoreConfig, difficulty: u8) -> Self {
        RecordStore {
            config,
            difficulty,
            values: HashMap::new(),
            providers: HashMap::new(),
            per_source: HashMap::new(),
            remote: 0,
        }
    }

    /// The number of remote entries stored (the quantity [`StoreConfig::max_records`] bounds).
    pub fn remote_len(&self) -> usize {
        self.remote
    }

    /// The number of entries stored, local ones included.
    pub fn len(&self) -> usize {
        self.values.len() + self.providers.values().map(Vec::len).sum::<usize>()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of entries stored for `source`.
    pub fn source_len(&self, source: &Source) -> usize {
        self.per_source.get(source).copied().unwrap_or(0)
    }

    /// Checks the lifetime, and (unless `source` already holds the slot or is local) the
    /// source's quota and, when the entry is new to the remote count, the global cap.
    fn admit(
        &self,
        source: Source,
        now: u64,
        expires_at: u64,
        holder: Option<Source>,
    ) -> Result<(), DhtError> {
        let limit = now.saturating_add(self.config.max_ttl_secs);
        if expires_at > limit {
            return Err(DhtError::ExpiryTooFar { expires_at, limit });
        }
        if source == Source::Local || holder == Some(source) {
            return Ok(());
        }
        if self.source_len(&source) >= self.config.max_per_source {
            return Err(DhtError::QuotaExceeded(self.config.max_per_source));
        }
        let grows = matches!(holder, None | Some(Source::Local));
        if grows && self.remote >= self.config.max_records {
            return Err(DhtError::StoreFull(self.config.max_records));
        }
        Ok(())
    }

    fn count(&mut self, source: Source, add: bool) {
        if source == Source::Local {
            return;
        }
        if add {
            self.remote += 1;
            *self.per_source.entry(source).or_insert(0) += 1;
        } else {
            self.remote = self.remote.saturating_sub(1);
            if let Some(n) = self.per_source.get_mut(&source) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_source.remove(&source);
                }
            }
        }
    }

    /// Stores a mutable record after checking its signature, size, expiry and sequence
    /// number: a record replaces the stored one only with a strictly greater `seq`; the same
    /// record again is [`PutOutcome::Unchanged`]; an equal `seq` with other contents is stale.
    pub fn put_value(
        &mut self,
        record: SignedRecord,
        source: Source,
        now: u64,
    ) -> Result<PutOutcome, DhtError> {
        let key = record.key();
        if let Some(old) = self.values.get(&key) {
            if old.record == record {
                return Ok(PutOutcome::Unchanged);
            }
            if record.seq <= old.record.seq {
                return Err(DhtError::StaleSequence {
                    offered: record.seq,
                    stored: old.record.seq,
                });
            }
        }
        record.verify(now)?;
        let old_source = self.values.get(&key).map(|s| s.source);
        self.admit(source, now, record.expires_at, old_source)?;
        if let Some(old) = old_source {
            self.count(old, false);
        }
        self.count(source, true);
        self.values.insert(key, Stored { record, source });
        Ok(if old_source.is_some() { PutOutcome::Replaced } else { PutOutcome::Inserted })
    }

    /// The live mutable record under `key`.
    pub fn value(&self, key: &NodeId, now: u64) -> Option<&SignedRecord> {
        self.values.get(key).map(|s| &s.record).filter(|r| r.expires_at > now)
    }

    /// Stores a provider record after checking it; a record from the same provider for the
    /// same key replaces the stored one if it expires later.
    pub fn add_provider(
        &mut self,
        record: ProviderRecord,
        source: Source,
        now: u64,
    ) -> Result<PutOutcome, DhtError> {
        record.verify(now, self.difficulty)?;
        let key = record.key;
        let pid = record.provider.id();
        let existing = self
            .providers
            .get(&key)
            .and_then(|v| v.iter().position(|s| s.record.provider.id() == pid));
        if let Some(i) = existing {
            self.admit(Source::Local, now, record.expires_at, None)?;
            let Some(list) = self.providers.get_mut(&key) else {
                return Err(DhtError::KeyMismatch("provider list vanished"));
            };
            let slot = &mut list[i];
            if slot.record == record {
                return Ok(PutOutcome::Unchanged);
            }
            if record.expires_at <= slot.record.expires_at {
                return Err(DhtError::StaleSequence {
                    offered: record.expires_at,
                    stored: slot.record.expires_at,
                });
            }
            slot.record = record;
            return Ok(PutOutcome::Replaced);
        }
        self.admit(source, now, record.expires_at, None)?;
        let max = self.config.max_providers_per_key;
        let per_group = self.config.max_providers_per_key_group;
        let group = record.provider.net_groups().narrow;
        let list = self.providers.entry(key).or_default();
        if list.len() >= max && source != Source::Local {
            return Err(DhtError::StoreFull(max));
        }
        let same_group = list.iter().filter(|s| s.record.provider.net_groups().narrow == group);
        if same_group.count() >= per_group && source != Source::Local {
            return Err(DhtError::StoreFull(per_group));
        }
        list.push(Stored { record, source });
        self.count(source, true);
        Ok(PutOutcome::Inserted)
    }

    /// Up to `limit` live provider records for `key`.
    pub fn providers(&self, key: &NodeId, now: u64, limit: usize) -> Vec<ProviderRecord> {
        self.providers
            .get(key)
            .map(|v| {
                v.iter()
                    .filter(|s| s.record.expires_at > now)
                    .take(limit)
                    .map(|s| s.record.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Removes every expired record; returns how many.
    pub fn sweep(&mut self, now: u64) -> usize {
        let mut removed = Vec::new();
        self.values.retain(|_, s| {
            let keep = s.record.expires_at > now;
            if !keep {
                removed.push(s.source);
            }
            keep
        });
        for list in self.providers.values_mut() {
            list.retain(|s| {
                let keep = s.record.expires_at > now;
                if !keep {
                    removed.push(s.source);
                }
                keep
            });
        }
        self.providers.retain(|_, v| !v.is_empty());
        for s in &removed {
            self.count(*s, false);
        }
        removed.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::contact::Contact;
    use samizdat_identity::Identity;

    fn ident(n: u8) -> Identity {
        Identity::from_secret_bytes(&[n; 32]).unwrap()
    }

    fn small() -> StoreConfig {
        StoreConfig {
            max_records: 5,
            max_per_source: 3,
            max_providers_per_key: 2,
            max_providers_per_key_group: 2,
            max_ttl_secs: 100,
        }
    }

    #[test]
    fn values_sequence_rules() {
        let mut s = RecordStore::new(small(), 0);
        let src = Source::Peer(NodeId([1; 32]));
        let r1 = SignedRecord::sign(&ident(1), b"", 1, 50, b"a").unwrap();
        assert_eq!(s.put_value(r1.clone(), src, 10), Ok(PutOutcome::Inserted));
        assert_eq!(s.put_value(r1.clone(), src, 10), Ok(PutOutcome::Unchanged));
        let r1b = SignedRecord::sign(&ident(1), b"", 1, 50, b"b").unwrap();
        assert_eq!(
            s.put_value(r1b, src, 10),
            Err(DhtError::StaleSequence { offered: 1, stored: 1 })
        );
        let r0 = SignedRecord::sign(&ident(1), b"", 0, 50, b"c").unwrap();
        assert!(matches!(s.put_value(r0, src, 10), Err(DhtError::StaleSequence { .. })));
        let r2 = SignedRecord::sign(&ident(1), b"", 2, 60, b"d").unwrap();
        let other = Source::Peer(NodeId([2; 32]));
        assert_eq!(s.put_value(r2.clone(), other, 10), Ok(PutOutcome::Replaced));
        assert_eq!(s.value(&r2.key(), 10), Some(&r2));
        assert_eq!(s.source_len(&src), 0);
        assert_eq!(s.source_len(&other), 1);
        assert_eq!(s.value(&r2.key(), 60), None);
        assert_eq!(s.remote_len(), 1);
    }

    #[test]
    fn values_checks() {
        let mut s = RecordStore::new(small(), 0);
        let src = Source::Anonymous;
        let expired = SignedRecord::sign(&ident(1), b"", 1, 5, b"a").unwrap();
        assert!(matches!(s.put_value(expired, src, 10), Err(DhtError::Expired { .. })));
        let far = SignedRecord::sign(&ident(1), b"", 1, 500, b"a").unwrap();
        assert!(matches!(s.put_value(far, src, 10), Err(DhtError::ExpiryTooFar { .. })));
        let mut forged = SignedRecord::sign(&ident(1), b"", 1, 50, b"a").unwrap();
        forged.value = b"b".to_vec();
        assert_eq!(s.put_value(forged, src, 10), Err(DhtError::BadSignature));
        assert!(s.is_empty());
    }

    #[test]
    fn quotas_and_cap() {
        let mut s = RecordStore::new(small(), 0);
        let a = Source::Peer(NodeId([1; 32]));
        for i in 0..3u8 {
            let r = SignedRecord::sign(&ident(1), &[i], 1, 50, b"a").unwrap();
            s.put_value(r, a, 10).unwrap();
        }
        let r = SignedRecord::sign(&ident(1), &[9], 1, 50, b"a").unwrap();
        assert_eq!(s.put_value(r.clone(), a, 10), Err(DhtError::QuotaExceeded(3)));
        let b = Source::Peer(NodeId([2; 32]));
        s.put_value(r, b, 10).unwrap();
        let r = SignedRecord::sign(&ident(1), &[10], 1, 50, b"a").unwrap();
        s.put_value(r, b, 10).unwrap();
        let r = SignedRecord::sign(&ident(1), &[11], 1, 50, b"a").unwrap();
        assert_eq!(s.put_value(r.clone(), b, 10), Err(DhtError::StoreFull(5)));
        // Local records are exempt from the cap.
        assert_eq!(s.put_value(r, Source::Local, 10), Ok(PutOutcome::Inserted));
        assert_eq!(s.remote_len(), 5);
        assert_eq!(s.len(), 6);
        // Expiry frees the space.
        assert_eq!(s.sweep(50), 6);
        assert_eq!(s.remote_len(), 0);
        assert_eq!(s.source_len(&a), 0);
    }

    #[test]
    fn providers_rules() {
        let mut s = RecordStore::new(small(), 2);
        let key = NodeId([7; 32]);
        let prov = |n: u8, exp: u64| {
            let id = ident(n);
            let c = Contact::for_identity(&id, 2, "tcp/1.2.3.4:1").unwrap();
            ProviderRecord::sign(&id, key, c, exp).unwrap()
        };
        let src = Source::Anonymous;
        assert_eq!(s.add_provider(prov(1, 50), src, 10), Ok(PutOutcome::Inserted));
        assert_eq!(s.add_provider(prov(1, 50), src, 10), Ok(PutOutcome::Unchanged));
        assert!(matches!(
            s.add_provider(prov(1, 40), src, 10),
            Err(DhtError::StaleSequence { .. })
        ));
        assert_eq!(s.add_provider(prov(1, 60), src, 10), Ok(PutOutcome::Replaced));
        assert_eq!(s.add_provider(prov(2, 50), src, 10), Ok(PutOutcome::Inserted));
        assert_eq!(s.add_provider(prov(3, 50), src, 10), Err(DhtError::StoreFull(2)));
        assert!(matches!(s.add_provider(prov(4, 5), src, 10), Err(DhtError::Expired { .. })));
        let mut forged = prov(4, 50);
        forged.key = NodeId([8; 32]);
        assert_eq!(s.add_provider(forged, src, 10), Err(DhtError::BadSignature));
        assert_eq!(s.providers(&key, 10, 10).len(), 2);
        assert_eq!(s.providers(&key, 10, 1).len(), 1);
        assert_eq!(s.providers(&key, 55, 10).len(), 1);
        assert_eq!(s.sweep(55), 1);
        assert_eq!(s.sweep(60), 1);
        assert!(s.providers(&key, 0, 10).is_empty());
        assert!(s.is_empty());
    }

    #[test]
    fn one_network_group_takes_at_most_two_of_a_keys_provider_places() {
        let mut s = RecordStore::new(StoreConfig::default(), 2);
        let key = NodeId([7; 32]);
        let prov = |n: u8, addr: &str| {
            let id = ident(n);
            let c = Contact::for_identity(&id, 2, addr).unwrap();
            ProviderRecord::sign(&id, key, c, 50).unwrap()
        };
        let src = Source::Anonymous;
        // Many identities from one /24: two places, then no more.
        for n in 1..=2u8 {
            let r = prov(n, &format!("tcp/198.51.100.{n}:1"));
            assert_eq!(s.add_provider(r, src, 10), Ok(PutOutcome::Inserted));
        }
        for n in 3..=30u8 {
            let r = prov(n, &format!("tcp/198.51.100.{n}:1"));
            assert_eq!(s.add_provider(r, src, 10), Err(DhtError::StoreFull(2)), "{n}");
        }
        // Other networks still get in; the local node's own record always does.
        let r = prov(40, "tcp/203.0.113.1:1");
        assert_eq!(s.add_provider(r, src, 10), Ok(PutOutcome::Inserted));
        let own = prov(41, "tcp/198.51.100.99:1");
        assert_eq!(s.add_provider(own, Source::Local, 10), Ok(PutOutcome::Inserted));
        assert_eq!(s.providers(&key, 10, 20).len(), 4);
    }
}
