//! Helpers shared by the node integration tests.

/// `len` pseudo-random bytes (xorshift seeded by `seed`): incompressible test content.
pub fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u64::from(seed) + 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
