//! The address book: peer addresses heard of, bounded (interim version; replaced by the
//! bucketed table).
#![allow(missing_docs)]

use rand_core::RngCore;
use samizdat_wire::PeerAddr;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct AddrBookConfig {
    pub capacity: usize,
    pub allow_local: bool,
}

impl Default for AddrBookConfig {
    fn default() -> Self {
        AddrBookConfig { capacity: 1024, allow_local: true }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Full,
}

pub fn group_of(addr: &PeerAddr) -> u64 {
    let h = blake3::hash(addr.as_str().as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

#[derive(Debug)]
pub struct AddrBook {
    config: AddrBookConfig,
    addrs: BTreeMap<PeerAddr, Option<u64>>,
}

impl AddrBook {
    pub fn new(config: AddrBookConfig, _key: [u8; 32]) -> Self {
        AddrBook { config, addrs: BTreeMap::new() }
    }
    pub fn add(&mut self, addr: PeerAddr, source: Option<u64>, _now: Instant) -> Result<(), Rejected> {
        if self.addrs.len() >= self.config.capacity {
            return Err(Rejected::Full);
        }
        self.addrs.insert(addr, source);
        Ok(())
    }
    pub fn add_trusted(&mut self, addr: PeerAddr, now: Instant) {
        let _ = self.add(addr, None, now);
    }
    pub fn mark_good(&mut self, _addr: &PeerAddr, _now: Instant) {}
    pub fn mark_failed(&mut self, _addr: &PeerAddr, _now: Instant) {}
    pub fn sample(&self, rng: &mut impl RngCore, n: usize) -> Vec<PeerAddr> {
        let all: Vec<&PeerAddr> = self.addrs.keys().collect();
        let mut out = Vec::new();
        for _ in 0..n.min(all.len()) {
            out.push(all[(rng.next_u32() as usize) % all.len()].clone());
        }
        out.sort();
        out.dedup();
        out
    }
    pub fn len(&self) -> usize {
        self.addrs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &PeerAddr> {
        self.addrs.keys()
    }
}
