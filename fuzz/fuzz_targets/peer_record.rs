//! Peer records and sealed Mainline slot values from arbitrary bytes: never a panic; a record
//! that decodes encodes back to the same bytes (the codec is strict), verifying it never
//! panics, and no value opens without the secret that sealed it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_discovery::{NetworkSecret, PeerRecord};
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = PeerRecord::decode(data) {
        assert!(record.encode() == data, "encode(decode(b)) == b");
        let _ = record.verify(record.timestamp(), Duration::from_secs(3600));
        let _ = record.verify(0, Duration::ZERO);
    }
    let secret = NetworkSecret::from_bytes([7; 32]);
    let (period, slot) = (u64::from(data.first().copied().unwrap_or(0)), 3);
    assert!(secret.open_value(period, slot, data).is_none(), "forged a sealed value");
    let sealed = secret.seal_value(period, slot, &data[..data.len().min(700)]);
    assert!(
        secret.open_value(period, slot, &sealed).as_deref() == Some(&data[..data.len().min(700)])
    );
});
