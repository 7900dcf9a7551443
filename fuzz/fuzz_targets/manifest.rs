//! `Manifest::from_header` on an arbitrary decrypted header: never panics; an accepted manifest
//! re-encodes into a header that parses to the same manifest, and its safe name is a plain base
//! name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_content::{HEADER_LEN, Manifest};

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = Manifest::from_header(data) else { return };
    let header = manifest.to_header().expect("a parsed manifest fits a header");
    assert_eq!(header.len(), HEADER_LEN);
    let again = Manifest::from_header(&header).expect("an encoded manifest parses");
    assert_eq!(again, manifest);

    let name = manifest.safe_name();
    assert!(!name.is_empty() && name != "." && name != "..", "safe name {name:?}");
    assert!(!name.contains(['/', '\\']), "safe name {name:?} has a separator");
    assert!(!name.chars().any(char::is_control), "safe name {name:?} has a control character");
});
