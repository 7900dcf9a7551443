//! `Message::decode` on arbitrary bytes: never panics, and whatever it accepts re-encodes to the
//! same bytes and decodes to the same message (the encoding is canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_wire::{MAX_MESSAGE_LEN, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::decode(data) else { return };
    let bytes = msg.encode_to_vec();
    assert!(bytes.len() <= MAX_MESSAGE_LEN, "an accepted message re-encodes within the limit");
    let again = Message::decode(&bytes).expect("a re-encoded message decodes");
    assert_eq!(again, msg, "decode(encode(m)) == m");
    assert_eq!(bytes, data, "the encoding is canonical");
});
