//! `ShareLink` parsing of arbitrary text: never panics, and an accepted link prints to a link
//! that parses back to the same capability.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_content::ShareLink;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(link) = text.parse::<ShareLink>() else { return };
    let printed = link.to_string();
    let again: ShareLink = printed.parse().expect("a printed link parses");
    assert!(again == link, "parse(to_string(link)) == link");
    assert_eq!(again.to_string(), printed, "printing is stable");
});
