//! Arbitrary first bytes of a flow at the censor lab's TLS fingerprinting (`ClientHello::parse`
//! and JA4) and the fully-encrypted rules: nothing panics, and a parsed hello always has a
//! fingerprint of JA4's shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_sim::{ClientHello, classify_first_payload};

fuzz_target!(|data: &[u8]| {
    let _ = classify_first_payload(data);
    if let Some(hello) = ClientHello::parse(data) {
        let ja4 = hello.ja4();
        let parts: Vec<&str> = ja4.split('_').collect();
        assert_eq!(parts.len(), 3, "{ja4}");
        assert_eq!(parts[0].len(), 10, "{ja4}");
        assert!(parts[1].len() == 12 && parts[2].len() == 12, "{ja4}");
    }
});
