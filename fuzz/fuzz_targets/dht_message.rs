//! DHT message decoding of arbitrary bytes: never panics, and an accepted message encodes to
//! bytes that decode to the same message (the codec is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_dht::codec::{decode, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = decode(data) else { return };
    let bytes = encode(&msg);
    let again = decode(&bytes).expect("an encoded message decodes");
    assert!(again == msg, "decode(encode(m)) == m");
    assert_eq!(bytes, data, "an accepted message has exactly one encoding");
});
