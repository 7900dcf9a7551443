//! `Message::decode` and `DhtQuery::decode` on arbitrary bytes: never panic, and whatever they
//! accept re-encodes to the same bytes and decodes to the same value (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_wire::{DhtQuery, MAX_MESSAGE_LEN, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(q) = DhtQuery::decode(data) {
        let bytes = q.encode_to_vec();
        assert_eq!(DhtQuery::decode(&bytes).expect("a re-encoded query decodes"), q);
        assert_eq!(bytes, data, "the query encoding is canonical");
    }
    let Ok(msg) = Message::decode(data) else { return };
    let bytes = msg.encode_to_vec();
    assert!(bytes.len() <= MAX_MESSAGE_LEN, "an accepted message re-encodes within the limit");
    let again = Message::decode(&bytes).expect("a re-encoded message decodes");
    assert_eq!(again, msg, "decode(encode(m)) == m");
    assert_eq!(bytes, data, "the encoding is canonical");
});
