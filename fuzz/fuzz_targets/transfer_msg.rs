//! `TransferMsg::decode` on arbitrary bytes (the payload of a relayed stream): never panics, and
//! whatever it accepts re-encodes to the same bytes and decodes to the same message (the
//! encoding is canonical). An accepted transfer message is also a valid `Message::Transfer`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_wire::{MAX_MESSAGE_LEN, MAX_RELAY_PAYLOAD, Message, TransferMsg};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = TransferMsg::decode(data) else { return };
    let bytes = msg.encode_to_vec();
    assert!(bytes.len() <= MAX_MESSAGE_LEN, "an accepted message re-encodes within the limit");
    assert!(bytes.len() <= MAX_RELAY_PAYLOAD, "an accepted message fits a relay payload");
    let again = TransferMsg::decode(&bytes).expect("a re-encoded message decodes");
    assert_eq!(again, msg, "decode(encode(m)) == m");
    assert_eq!(bytes, data, "the encoding is canonical");

    // The same bytes on the direct stream are the same message, wrapped.
    let wrapped = Message::Transfer(msg);
    assert_eq!(Message::decode(data).expect("a transfer message is a message"), wrapped);
    assert_eq!(wrapped.encode_to_vec(), bytes, "Message::Transfer encodes like TransferMsg");
});
