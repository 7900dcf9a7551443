//! Arbitrary bytes as the first bytes a veil server reads (a prober's, a replayer's, a
//! client's), and as a veil address: the server's handshake never panics and writes no reply
//! unless it accepts; a real hello with any byte changed is refused; what parses as an
//! address prints back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_transport::veil::wire::{HELLO_HEAD, client_hello, server_read_all};
use samizdat_transport::veil::{ServerKey, VeilAddr};

/// A seeded RNG: the fuzzer's runs replay.
struct Counter(u64);

impl rand_core::RngCore for Counter {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = (self.next_u64() >> 33) as u8;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for Counter {}

const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let key = ServerKey::from_secret([7; 32]);
    let mut rng = Counter(u64::from(data.first().copied().unwrap_or(0)));
    let mut reply = Vec::new();
    // The bytes as they come: a reply only to what is accepted. (The fuzzer does find
    // accepted inputs: it copies the real hellos below out of the comparisons it watches.)
    match server_read_all(&mut rng, &key, data, NOW, &mut reply) {
        Ok(_) => assert!(reply.len() > HELLO_HEAD, "accepted without a reply"),
        Err(_) => assert!(reply.is_empty(), "a reply to bytes that were refused"),
    }
    reply.clear();
    // A real hello with the fuzzer's bytes patched over it: accepted only unchanged.
    let mut hello = Vec::new();
    let pad = data.len() % 64;
    if client_hello(&mut rng, &key.public(), NOW, pad, &mut hello).is_ok() {
        let mut patched = hello.clone();
        for (i, b) in data.iter().enumerate().skip(1) {
            if let Some(p) = patched.get_mut(i % hello.len().max(1)) {
                *p ^= *b;
            }
        }
        let ok = server_read_all(&mut rng, &key, &patched, NOW, &mut reply).is_ok();
        // Every byte counts, the spare bits of the representative included.
        assert_eq!(ok, patched == hello, "an altered hello was accepted, or a good one refused");
        assert!(hello.len() > HELLO_HEAD);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(addr) = VeilAddr::parse(text) {
            assert!(VeilAddr::parse(&addr.to_string()).ok() == Some(addr), "round trip");
        }
    }
});
