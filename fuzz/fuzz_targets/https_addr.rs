//! Arbitrary text as an HTTPS camouflage address (`IP:PORT?name=…&pin=…&key=…`, from peers'
//! records and links): parsing never panics, and what parses prints back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_transport::https::HttpsAddr;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(addr) = HttpsAddr::parse(text) {
        let again = HttpsAddr::parse(&addr.to_string()).expect("a printed address parses");
        assert!(again == addr, "round trip changed the address");
    }
});
