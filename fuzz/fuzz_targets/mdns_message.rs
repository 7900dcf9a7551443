//! mDNS message decoding of arbitrary bytes (what a LAN responder and browser read): never
//! panics, and an accepted message re-encodes (unless decompressing its names made it longer
//! than the limit) to bytes that decode to the same message. The TXT strings of every record
//! go through the peer-record reassembly too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_discovery::lan::dns::{DnsError, Message, RData};
use samizdat_discovery::lan::service::record_from_txt;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::decode(data) else { return };
    for record in msg.records() {
        if let RData::Txt(strings) = &record.data {
            let _ = record_from_txt(strings);
        }
    }
    match msg.encode() {
        Ok(bytes) => {
            let again = Message::decode(&bytes).expect("an encoded message decodes");
            assert!(again == msg, "decode(encode(m)) == m");
        }
        // Compression pointers let a short message name long names; without compression the
        // same message may not fit.
        Err(DnsError::TooLong { .. }) => {}
        Err(e) => panic!("a decoded message does not encode: {e}"),
    }
});
