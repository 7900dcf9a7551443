//! Invite-line parsing of arbitrary text: never panics, and an accepted line prints to a line
//! that parses back to the same invite.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_content::Invite;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(invite) = text.parse::<Invite>() else { return };
    let printed = invite.to_string();
    let again: Invite = printed.parse().expect("a printed invite parses");
    assert!(again == invite, "parse(to_string(invite)) == invite");
});
