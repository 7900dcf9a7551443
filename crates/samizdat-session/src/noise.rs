//! A snow crypto resolver whose randomness comes from a seed, so that sessions driven by the
//! simulator replay exactly. Each RNG it hands out gets a distinct sub-seed.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use snow::resolvers::{CryptoResolver, DefaultResolver, RingResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use std::sync::Mutex;

pub(crate) struct SeededResolver {
    master: Mutex<ChaCha20Rng>,
}

impl SeededResolver {
    pub(crate) fn new(seed: [u8; 32]) -> Self {
        SeededResolver { master: Mutex::new(ChaCha20Rng::from_seed(seed)) }
    }
}

struct SeededRandom(ChaCha20Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let mut sub = [0u8; 32];
        // A poisoned lock only means another thread panicked mid-draw; the RNG state is still a
        // valid ChaCha state, so keep using it.
        let mut master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        master.fill_bytes(&mut sub);
        Some(Box::new(SeededRandom(ChaCha20Rng::from_seed(sub))))
    }

    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    // Symmetric primitives come from ring (AES-NI / assembly), with the pure-Rust ones as a
    // fallback; only key generation needs our seeded RNG.
    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        RingResolver.resolve_hash(choice).or_else(|| DefaultResolver.resolve_hash(choice))
    }

    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        RingResolver.resolve_cipher(choice).or_else(|| DefaultResolver.resolve_cipher(choice))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use snow::params::{DHChoice, HashChoice};

    #[test]
    fn the_resolver_falls_back_to_snows_primitives_and_survives_a_poisoned_lock() {
        let r = SeededResolver::new([7; 32]);
        // ring has no BLAKE2: snow's own implementation is used.
        assert!(r.resolve_hash(&HashChoice::Blake2s).is_some());
        assert!(r.resolve_hash(&HashChoice::SHA256).is_some());
        assert!(r.resolve_dh(&DHChoice::Curve25519).is_some());
        // Two RNGs from one resolver draw different bytes.
        let (mut a, mut b) = (r.resolve_rng().unwrap(), r.resolve_rng().unwrap());
        let (mut x, mut y) = ([0u8; 16], [0u8; 16]);
        a.try_fill_bytes(&mut x).unwrap();
        b.try_fill_bytes(&mut y).unwrap();
        assert_ne!(x, y);
        // A thread that panicked while drawing leaves a usable RNG behind.
        let poisoned = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = r.master.lock().unwrap();
                panic!("poison the lock");
            })
            .join()
        });
        assert!(poisoned.is_err() && r.master.is_poisoned());
        assert!(r.resolve_rng().is_some());
    }
}
