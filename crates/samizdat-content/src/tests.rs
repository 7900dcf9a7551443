#![allow(clippy::unwrap_used)]
use super::*;
use proptest::prelude::*;
use samizdat_identity::NodeId;

fn manifest(size: usize) -> Manifest {
    Manifest { name: "report.pdf".into(), size: size as u64, mime: "application/pdf".into() }
}

fn blob_of(data: &[u8]) -> (ContentKey, Vec<u8>, Encoded) {
    let key = ContentKey::from_bytes([42; 32]);
    let mut blob = Vec::new();
    let enc = encode(&key, &manifest(data.len()), data, &mut blob).unwrap();
    (key, blob, enc)
}

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn root_is_the_standard_blake3_hash_and_groups_verify() {
    for len in [0, 1, GROUP_SIZE - HEADER_LEN, GROUP_SIZE, 3 * GROUP_SIZE + 17, 9 * GROUP_SIZE] {
        let data = file(len);
        let (key, blob, enc) = blob_of(&data);
        assert_eq!(enc.root.0, *blake3::hash(&blob).as_bytes(), "len {len}");
        enc.outboard.check_root(&enc.root).unwrap();
        for g in 0..enc.outboard.groups() {
            let r = group_range(blob.len() as u64, g);
            let group = &blob[r.start as usize..r.end as usize];
            enc.outboard.verify_group(&enc.root, g, group).unwrap();
            let mut bad = group.to_vec();
            let mid = bad.len() / 2;
            bad[mid] ^= 0x40;
            assert!(enc.outboard.verify_group(&enc.root, g, &bad).is_err());
            assert!(enc.outboard.verify_group(&enc.root, g, &group[1..]).is_err());
        }
        // Decrypt and read back.
        let mut plain = blob.clone();
        key.apply_at(0, &mut plain);
        assert_eq!(Manifest::from_header(&plain[..HEADER_LEN]).unwrap(), manifest(len));
        assert_eq!(&plain[HEADER_LEN..], &data[..]);
    }
}

#[test]
fn forged_leaf_is_caught_by_the_root() {
    let (_, _, enc) = blob_of(&file(5 * GROUP_SIZE));
    let mut forged = enc.outboard.clone();
    forged.leaves[2][0] ^= 1;
    assert!(matches!(forged.check_root(&enc.root), Err(ContentError::OutboardMismatch)));
    let mut short = enc.outboard.clone();
    short.leaves.pop();
    assert!(short.check_root(&enc.root).is_err());
    let bytes = enc.outboard.to_bytes();
    assert_eq!(Outboard::from_bytes(&bytes).unwrap(), enc.outboard);
    assert!(Outboard::from_bytes(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn nothing_in_plaintext() {
    let data = b"very secret words ".repeat(1000);
    let (_, blob, _) = blob_of(&data);
    assert!(!blob.windows(6).any(|w| w == b"secret" || w == b"report"));
}

#[test]
fn wrong_key_gives_bad_manifest() {
    let (_, blob, _) = blob_of(&file(100));
    let mut plain = blob[..HEADER_LEN].to_vec();
    ContentKey::from_bytes([1; 32]).apply_at(0, &mut plain);
    assert!(Manifest::from_header(&plain).is_err());
}

#[test]
fn size_mismatch_is_an_error() {
    let key = ContentKey::from_bytes([1; 32]);
    let r = encode(&key, &manifest(10), &[0u8; 5][..], Vec::new());
    assert!(matches!(r, Err(ContentError::SizeChanged { expected: 10, got: 5 })));
    let r = encode(&key, &manifest(10), &[0u8; 50][..], Vec::new());
    assert!(matches!(r, Err(ContentError::SizeChanged { .. })));
}

#[test]
fn safe_names() {
    let mut m = manifest(0);
    m.name = "../../etc/passwd".into();
    assert_eq!(m.safe_name(), "passwd");
    m.name = "..".into();
    assert_eq!(m.safe_name(), "download");
}

fn link() -> ShareLink {
    ShareLink {
        root: ContentRoot([3; 32]),
        key: ContentKey::from_bytes([4; 32]),
        blob_len: 5000,
        peers: vec![
            PeerHint { node: NodeId([1; 32]), addr: "tcp/127.0.0.1:4000".parse().unwrap() },
            PeerHint { node: NodeId([2; 32]), addr: "tcp/[::1]:9".parse().unwrap() },
        ],
    }
}

#[test]
fn links_pin_length_and_identities_and_refuse_old_formats() {
    let l = link();
    let back: ShareLink = l.to_string().parse().unwrap();
    assert_eq!(back.blob_len, 5000);
    assert_eq!(back.peers[1].node, NodeId([2; 32]));
    // The locator depends on the key: the root alone does not give it.
    let other = ShareLink { key: ContentKey::from_bytes([5; 32]), ..l.clone() };
    assert_ne!(l.locator(), other.locator());
    assert_ne!(l.locator().0, l.root.0);
    // A version-1 link (no pins) is refused with its own error.
    let mut raw = vec![1u8];
    raw.extend([3; 32]);
    raw.extend([4; 32]);
    raw.push(0);
    let sum = blake3::hash(&raw);
    raw.extend_from_slice(&sum.as_bytes()[..4]);
    let v1 = format!("sz1{}", data_encoding::BASE32_NOPAD.encode(&raw).to_lowercase());
    assert_eq!(v1.parse::<ShareLink>(), Err(LinkError::Obsolete(1)));
    assert!(LinkError::Obsolete(1).to_string().contains("new link"));
}

#[test]
fn link_roundtrip_and_errors() {
    let text = link().to_string();
    assert!(text.starts_with("sz1"));
    assert_eq!(text.parse::<ShareLink>().unwrap(), link());
    assert_eq!(text.to_uppercase().replacen("SZ1", "sz1", 1).parse::<ShareLink>().unwrap(), link());
    assert_eq!("http://x".parse::<ShareLink>(), Err(LinkError::Prefix));
    assert_eq!(format!("{text}!").parse::<ShareLink>(), Err(LinkError::Encoding));
    assert!(!format!("{:?}", link()).contains(&text[5..20]));
}

proptest! {
    #[test]
    fn any_single_typo_is_detected(pos in 3usize..150, ch in "[a-z2-7]") {
        let text = link().to_string();
        let pos = pos.min(text.len() - 1);
        let mut chars: Vec<char> = text.chars().collect();
        let c = ch.chars().next().unwrap();
        prop_assume!(chars[pos] != c);
        chars[pos] = c;
        let typo: String = chars.into_iter().collect();
        prop_assert!(typo.parse::<ShareLink>().is_err());
    }

    #[test]
    fn garbage_links_never_panic(s in "sz1[a-z2-7]{0,200}") {
        let _ = s.parse::<ShareLink>();
    }
}

/// The keystream `apply_at` XORs in at `offset` (applied to zeros).
fn keystream(key: &ContentKey, offset: u64, len: usize) -> Vec<u8> {
    let mut z = vec![0u8; len];
    key.apply_at(offset, &mut z);
    z
}

#[test]
fn the_content_cipher_is_a_seekable_keystream() {
    let key = ContentKey::from_bytes([9; 32]);
    let seg = crate::cipher::SEGMENT;
    let whole = keystream(&key, 0, 3 * seg + 100);
    // Any offset, any length, aligned or not, gives the same bytes as the whole stream.
    for (off, len) in
        [(0, 1), (5, 10), (seg - 3, 7), (seg, seg), (17, 2 * seg + 50), (3 * seg, 100)]
    {
        assert_eq!(keystream(&key, off as u64, len), whole[off..off + len], "{off}+{len}");
    }
    // Data is XORed with it, so applying twice gives the data back.
    let data: Vec<u8> = (0..whole.len()).map(|i| (i * 31) as u8).collect();
    let mut enc = data.clone();
    key.apply_at(0, &mut enc);
    let xored: Vec<u8> = data.iter().zip(&whole).map(|(a, b)| a ^ b).collect();
    assert_eq!(enc, xored);
    key.apply(0, &mut enc);
    assert_eq!(enc, data);
    // No segment repeats another's keystream, and another key gives another stream.
    assert_ne!(whole[..seg], whole[seg..2 * seg]);
    assert_ne!(keystream(&ContentKey::from_bytes([8; 32]), 0, 64), whole[..64]);
    // Group `i` starts at segment `i`.
    assert_eq!(keystream(&key, u64::from(2u32) * GROUP_SIZE as u64, 32), {
        let mut g = vec![0u8; 32];
        key.apply(2, &mut g);
        g
    });
}

#[test]
fn the_content_cipher_keeps_its_format() {
    // Pinned: blobs already shared and stores already written depend on these bytes. The
    // values are AES-256-CTR (counter block: 4 zero bytes, the segment as 8 bytes, then a
    // 4-byte counter from 2) under BLAKE3-derive-key("samizdat 2026 content cipher v3", key),
    // computed independently with Python's `cryptography` and `blake3` packages.
    let ks = keystream(&ContentKey::from_bytes([1; 32]), 0, 16);
    let later = keystream(&ContentKey::from_bytes([1; 32]), 1 << 40, 16);
    assert_eq!(data_encoding::HEXLOWER.encode(&ks), "1ccfad0189dc0b3e720da551cb3bdf26");
    assert_eq!(data_encoding::HEXLOWER.encode(&later), "3ddb798e0f3371545b9889c5f6722dc4");
}

#[test]
fn provider_keys_need_the_link_and_rotate_per_period() {
    let l = link();
    let k = l.provider_key(20_000);
    assert_eq!(k, l.provider_key(20_000), "stable within a period");
    assert_ne!(k, l.provider_key(20_001), "a new key each period");
    let other_key = ShareLink { key: ContentKey::from_bytes([6; 32]), ..l.clone() };
    assert_ne!(k, other_key.provider_key(20_000), "the same file under another link");
    let base = l.provider_base();
    assert_eq!(crate::provider_key(&base, 20_001), l.provider_key(20_001), "from the base");
    assert_ne!(base, k, "the base is not a period's key");
    assert_ne!(base, *l.key.as_bytes(), "nor the content key");
    assert_ne!(&k, &l.root.0, "not the public root");
}
