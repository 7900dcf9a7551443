//! The fully-encrypted-traffic rules against today's bare session: its first client payload
//! (a cleartext length and a raw X25519 key) is what the firewall blocks.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use std::time::Instant;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use samizdat_identity::Identity;
use samizdat_session::{Session, SessionConfig};
use samizdat_sim::{FetVerdict, classify_first_payload};

#[test]
fn the_bare_sessions_first_payload_looks_fully_encrypted() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let id = Identity::generate(&mut rng);
    let mut blocked = 0;
    for _ in 0..1000 {
        let mut seed = [0u8; 32];
        rng.fill_bytes(&mut seed);
        let mut s =
            Session::initiator(SessionConfig::new(id.clone()), seed, 0, Instant::now()).unwrap();
        let first = s.poll_transmit().unwrap();
        if classify_first_payload(&first) == FetVerdict::FullyEncrypted {
            blocked += 1;
        }
    }
    // The cleartext length (`00 20`, three bits set in two bytes) pulls the average popcount
    // of the 34 bytes down to about 3.8, so about 1 in 10 first payloads falls under 3.4 and
    // is exempt; every other one has no exemption (measured: 902 of 1000 with this seed).
    assert!(blocked >= 850, "only {blocked} of 1000 looked fully encrypted");
}
