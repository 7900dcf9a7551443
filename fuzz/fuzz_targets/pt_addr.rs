//! Arbitrary text as a pluggable-transport address (`IP:PORT?cert=…&iat-mode=0`, from peers'
//! records and links): parsing never panics, what parses prints back to the same value, and
//! its SOCKS5 arguments never carry an unescaped separator.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_transport::pt::{PtAddr, client_args};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Inputs starting with '?' get a valid endpoint, so the fuzzer reaches the arguments
    // without having to guess an IP address first.
    let text = match text.strip_prefix('?') {
        Some(query) => format!("192.0.2.1:443?{query}"),
        None => text.to_owned(),
    };
    if let Ok(addr) = PtAddr::parse(&text) {
        let again = PtAddr::parse(&addr.to_string()).expect("a printed address parses");
        assert!(again == addr, "round trip changed the address");
        let args = client_args(&addr.args);
        assert_eq!(args.matches(';').count(), addr.args.len().saturating_sub(1));
    }
});
