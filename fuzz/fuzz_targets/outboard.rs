//! `Outboard::from_bytes` on arbitrary bytes, then `check_root` and `verify_group` against a
//! fixed root: never panics, and an accepted outboard serialises back to the same bytes.
//!
//! Input layout: `u16 outboard length || u32 group index || outboard bytes || group data`; the
//! length is taken modulo what is left, so every input is usable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_content::{ContentRoot, Outboard, group_count, group_range};

const ROOT: ContentRoot = ContentRoot([0x5a; 32]);

fuzz_target!(|data: &[u8]| {
    let [l0, l1, i0, i1, i2, i3, rest @ ..] = data else { return };
    let split = usize::from(u16::from_be_bytes([*l0, *l1])) % (rest.len() + 1);
    let index = u32::from_be_bytes([*i0, *i1, *i2, *i3]);
    let (bytes, group) = rest.split_at(split);

    let Ok(outboard) = Outboard::from_bytes(bytes) else { return };
    assert_eq!(outboard.to_bytes(), bytes, "to_bytes(from_bytes(b)) == b");
    assert_eq!(outboard.leaves.len() as u64, group_count(outboard.blob_len));
    let range = group_range(outboard.blob_len, index);
    assert!(range.start <= range.end && range.end <= outboard.blob_len);

    let _ = outboard.check_root(&ROOT);
    let _ = outboard.verify_group(&ROOT, index, group);
    // Also the group the index points into, modulo the group count, so valid indices are hit.
    let _ = outboard.verify_group(&ROOT, index % outboard.groups().max(1), group);
});
