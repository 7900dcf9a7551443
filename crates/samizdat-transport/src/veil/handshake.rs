//! The veil handshake and record layer as pure functions: keys, the client's hello, the
//! server's reply, sealing and opening records. No I/O, no clock (time comes in as an
//! argument), randomness from the caller: the fuzz target and the tests drive it directly.

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::montgomery::MontgomeryPoint;
use rand_core::{CryptoRng, RngCore};
use ring::aead::quic::{AES_256, HeaderProtectionKey};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use std::io;
use zeroize::Zeroizing;

/// Length of keys, points and representatives.
pub const KEY_LEN: usize = 32;
/// The AEAD tag closing every record.
pub const TAG_LEN: usize = 16;
/// Most data bytes in one record.
pub const MAX_DATA: usize = 16 * 1024;
/// Most padding bytes in one data record.
pub const MAX_RECORD_PAD: usize = 255;
/// Longest record body (everything after its 2-byte masked length).
pub const MAX_RECORD: usize = 2 + MAX_DATA + MAX_RECORD_PAD + TAG_LEN;
/// Most padding in the hello and in the reply.
pub const MAX_HANDSHAKE_PAD: usize = 1400;
/// Longest body of the hello's or the reply's record.
pub const MAX_HANDSHAKE_RECORD: usize = 2 + 8 + MAX_HANDSHAKE_PAD + TAG_LEN;
/// The hello's timestamp may differ from the server's clock by this many seconds.
pub const CLOCK_WINDOW: u64 = 1200;
/// The hello's fixed part: the representative and the masked length.
pub const HELLO_HEAD: usize = KEY_LEN + 2;

const HELLO_SALT: &[u8] = b"samizdat veil v1 hello";
const SESSION_SALT: &[u8] = b"samizdat veil v1";

/// Why a handshake was refused. The server never tells the peer: it goes silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A length outside what the protocol sends.
    #[error("impossible length")]
    Length,
    /// The record does not authenticate: not made with this server's key, or altered.
    #[error("record does not authenticate")]
    Auth,
    /// The hello's time is outside the window.
    #[error("hello outside the clock window")]
    Clock,
    /// A key that gives no shared secret (a low-order point).
    #[error("degenerate key")]
    Degenerate,
    /// This hello was seen before (a replay).
    #[error("replayed hello")]
    Replay,
}

impl From<Refusal> for io::Error {
    fn from(r: Refusal) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, format!("veil: {r}"))
    }
}

/// A server's long-term X25519 key.
#[derive(Clone)]
pub struct ServerKey {
    secret: Zeroizing<[u8; KEY_LEN]>,
    public: [u8; KEY_LEN],
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey").finish_non_exhaustive()
    }
}

impl ServerKey {
    /// A fresh key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut secret = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(&mut secret[..]);
        Self::from_secret(*secret)
    }

    /// The key with this secret (any 32 bytes; clamped when used).
    pub fn from_secret(secret: [u8; KEY_LEN]) -> Self {
        let public = MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        ServerKey { secret: Zeroizing::new(secret), public }
    }

    /// The secret, to keep it sealed.
    pub fn secret(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }

    /// The public key peers dial with (the `k` of the address).
    pub fn public(&self) -> [u8; KEY_LEN] {
        self.public
    }

    /// Bytes derived from the secret for `info`: per-server values such as how long a
    /// refused connection is held.
    pub(crate) fn derive(&self, info: &[u8]) -> [u8; 8] {
        let mut out = [0u8; 8];
        expand(b"samizdat veil v1 server", &self.secret[..], info, &mut out);
        out
    }
}

/// An ephemeral key whose public point travels as a uniform Elligator2 representative.
pub struct Ephemeral {
    secret: Zeroizing<[u8; KEY_LEN]>,
    point: [u8; KEY_LEN],
    representative: [u8; KEY_LEN],
}

impl Ephemeral {
    /// A key that is representable, its point torsion-dirty (a random low-order component
    /// added, which the clamped scalar of any Diffie-Hellman removes) and the
    /// representative's two unused high bits random: without either, representatives are
    /// told from random strings.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> io::Result<Self> {
        for _ in 0..128 {
            let mut secret = Zeroizing::new([0u8; KEY_LEN]);
            rng.fill_bytes(&mut secret[..]);
            let mut tweak = [0u8; 1];
            rng.fill_bytes(&mut tweak);
            // Clamping clears the low 3 bits: they pick the torsion point for free.
            let torsion = EIGHT_TORSION[usize::from(secret[0] & 7)];
            let dirty = EdwardsPoint::mul_base_clamped(*secret) + torsion;
            let point = dirty.to_montgomery().to_bytes();
            if let Some(representative) = elligator2::to_representative(&point, tweak[0]) {
                return Ok(Ephemeral { secret, point, representative });
            }
        }
        // Half the keys qualify: 128 misses in a row means a broken RNG.
        Err(io::Error::other("veil: no representable key (broken RNG?)"))
    }
}

/// X25519 of `secret` (clamped) and `point`; a degenerate (all-zero) result is refused.
fn dh(secret: &[u8; KEY_LEN], point: &[u8; KEY_LEN]) -> Result<Zeroizing<[u8; KEY_LEN]>, Refusal> {
    let shared = Zeroizing::new(MontgomeryPoint(*point).mul_clamped(*secret).to_bytes());
    if shared.iter().all(|&b| b == 0) {
        return Err(Refusal::Degenerate);
    }
    Ok(shared)
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 of `ikm` into `out`.
fn expand(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    // Only fails for outputs longer than 255 hashes; ours are at most 128 bytes.
    if let Ok(okm) = prk.expand(&[info], Len(out.len())) {
        let _ = okm.fill(out);
    }
}

/// One direction of records: an AES-256-GCM key, the key that masks each record's length,
/// and the record counter (the nonce).
pub struct Direction {
    aead: LessSafeKey,
    mask: HeaderProtectionKey,
    counter: u64,
}

impl Direction {
    fn new(keys: &[u8]) -> Self {
        // Both keys are 32 bytes: neither constructor can fail.
        let aead = UnboundKey::new(&AES_256_GCM, &keys[..32]).map(LessSafeKey::new);
        let mask = HeaderProtectionKey::new(&AES_256, &keys[32..64]);
        match (aead, mask) {
            (Ok(aead), Ok(mask)) => Direction { aead, mask, counter: 0 },
            _ => unreachable!("32-byte keys"),
        }
    }

    /// The next record's length mask (`None` only if ring refused a 16-byte sample, which
    /// it does not: then nothing is sent or read rather than a length in clear).
    fn length_mask(&self) -> Option<[u8; 2]> {
        let mut sample = [0u8; 16];
        sample[8..].copy_from_slice(&self.counter.to_be_bytes());
        let m = self.mask.new_mask(&sample).ok()?;
        Some([m[0], m[1]])
    }

    fn nonce(&mut self) -> io::Result<Nonce> {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter = self
            .counter
            .checked_add(1)
            .ok_or_else(|| io::Error::other("veil: record counter exhausted"))?;
        Ok(Nonce::assume_unique_for_key(n))
    }

    /// Appends one record carrying `data` and `pad` zero bytes of padding to `out`:
    /// `mask ^ len (2) || AES-GCM(data_len (2) || data || zeros)`.
    pub fn seal(
        &mut self,
        data: &[u8],
        pad: usize,
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let body = 2 + data.len() + pad + TAG_LEN;
        let len = u16::try_from(body).map_err(|_| io::Error::other("veil: record too long"))?;
        let mask = self.length_mask().ok_or_else(|| io::Error::other("veil: length mask"))?;
        let len = len.to_be_bytes();
        out.extend_from_slice(&[len[0] ^ mask[0], len[1] ^ mask[1]]);
        let start = out.len();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out.resize(start + 2 + data.len() + pad, 0);
        let nonce = self.nonce()?;
        let tag = self
            .aead
            .seal_in_place_separate_tag(nonce, Aad::from(aad), &mut out[start..])
            .map_err(|_| io::Error::other("veil: seal"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// The body length the next record's masked length `head` announces, if it is one this
    /// layer sends (at least an empty record, at most `max`).
    pub fn body_len(&self, head: [u8; 2], max: usize) -> Result<usize, Refusal> {
        let mask = self.length_mask().ok_or(Refusal::Length)?;
        let len = usize::from(u16::from_be_bytes([head[0] ^ mask[0], head[1] ^ mask[1]]));
        if !(2 + TAG_LEN..=max).contains(&len) {
            return Err(Refusal::Length);
        }
        Ok(len)
    }

    /// Opens the next record's body in place; returns where its data lies in `body`.
    pub fn open(&mut self, body: &mut [u8], aad: &[u8]) -> Result<std::ops::Range<usize>, Refusal> {
        let nonce = self.nonce().map_err(|_| Refusal::Length)?;
        let plain =
            self.aead.open_in_place(nonce, Aad::from(aad), body).map_err(|_| Refusal::Auth)?;
        let [a, b, rest @ ..] = plain else { return Err(Refusal::Length) };
        let n = usize::from(u16::from_be_bytes([*a, *b]));
        if n > rest.len() || rest[n..].iter().any(|&z| z != 0) {
            return Err(Refusal::Auth);
        }
        Ok(2..2 + n)
    }
}

/// The two directions of an established veil.
pub struct Keys {
    /// What we send.
    pub send: Direction,
    /// What we receive.
    pub recv: Direction,
}

fn session_keys(
    es: &[u8; KEY_LEN],
    ee: &[u8; KEY_LEN],
    x: &[u8; KEY_LEN],
    y: &[u8; KEY_LEN],
    server: &[u8; KEY_LEN],
) -> (Direction, Direction) {
    let mut ikm = Zeroizing::new([0u8; 64]);
    ikm[..32].copy_from_slice(es);
    ikm[32..].copy_from_slice(ee);
    let mut info = [0u8; 96];
    info[..32].copy_from_slice(x);
    info[32..64].copy_from_slice(y);
    info[64..].copy_from_slice(server);
    let mut okm = Zeroizing::new([0u8; 128]);
    expand(SESSION_SALT, &ikm[..], &info, &mut okm[..]);
    (Direction::new(&okm[..64]), Direction::new(&okm[64..]))
}

fn hello_direction(es: &[u8; KEY_LEN], x: &[u8; KEY_LEN], server: &[u8; KEY_LEN]) -> Direction {
    let mut info = [0u8; 64];
    info[..32].copy_from_slice(x);
    info[32..].copy_from_slice(server);
    let mut okm = Zeroizing::new([0u8; 64]);
    expand(HELLO_SALT, &es[..], &info, &mut okm[..]);
    Direction::new(&okm[..])
}

/// A client waiting for the server's reply.
pub struct ClientHello {
    eph: Ephemeral,
    es: Zeroizing<[u8; KEY_LEN]>,
    server: [u8; KEY_LEN],
}

/// Writes the client's hello to the server with public key `server` into `out`: the
/// ephemeral key's representative, then one record (under a key only the server can
/// derive) holding the time and `pad` bytes of padding.
pub fn client_hello<R: RngCore + CryptoRng>(
    rng: &mut R,
    server: &[u8; KEY_LEN],
    now: u64,
    pad: usize,
    out: &mut Vec<u8>,
) -> io::Result<ClientHello> {
    let eph = Ephemeral::generate(rng)?;
    let es = dh(&eph.secret, server)?;
    let mut dir = hello_direction(&es, &eph.point, server);
    out.extend_from_slice(&eph.representative);
    dir.seal(&now.to_be_bytes(), pad.min(MAX_HANDSHAKE_PAD), &eph.representative, out)?;
    Ok(ClientHello { eph, es, server: *server })
}

/// What the server learnt from the hello's fixed part.
pub struct HelloHead {
    representative: [u8; KEY_LEN],
    point: [u8; KEY_LEN],
    es: Zeroizing<[u8; KEY_LEN]>,
    dir: Direction,
    /// The length of the record that follows.
    pub body_len: usize,
}

/// Reads the hello's first [`HELLO_HEAD`] bytes.
pub fn server_hello_head(key: &ServerKey, head: &[u8; HELLO_HEAD]) -> Result<HelloHead, Refusal> {
    let mut representative = [0u8; KEY_LEN];
    representative.copy_from_slice(&head[..KEY_LEN]);
    let point = elligator2::from_representative(&representative);
    let es = dh(&key.secret, &point)?;
    let dir = hello_direction(&es, &point, &key.public);
    let body_len = dir.body_len([head[KEY_LEN], head[KEY_LEN + 1]], MAX_HANDSHAKE_RECORD)?;
    Ok(HelloHead { representative, point, es, dir, body_len })
}

/// A hello whose record opened and whose time is in the window: made with the server key,
/// unless it is a replay, which is the caller's to refuse (by [`HelloHead::representative`]).
pub struct GoodHello(HelloHead);

impl GoodHello {
    /// The representative the client sent (what a replay repeats).
    pub fn representative(&self) -> &[u8; KEY_LEN] {
        &self.0.representative
    }
}

/// Checks the hello's record (`body`, [`HelloHead::body_len`] bytes) and its time.
pub fn server_open(mut head: HelloHead, body: &mut [u8], now: u64) -> Result<GoodHello, Refusal> {
    let data = head.dir.open(body, &head.representative)?;
    let time: [u8; 8] = body[data].try_into().map_err(|_| Refusal::Length)?;
    if u64::from_be_bytes(time).abs_diff(now) > CLOCK_WINDOW {
        return Err(Refusal::Clock);
    }
    Ok(GoodHello(head))
}

/// Writes the reply to a good hello into `out` (the server's representative and a record of
/// `pad` bytes of padding) and returns the established keys.
pub fn server_reply<R: RngCore + CryptoRng>(
    rng: &mut R,
    key: &ServerKey,
    hello: GoodHello,
    pad: usize,
    out: &mut Vec<u8>,
) -> Result<Keys, io::Error> {
    let head = hello.0;
    let eph = Ephemeral::generate(rng)?;
    let ee = dh(&eph.secret, &head.point)?;
    let (c2s, mut s2c) = session_keys(&head.es, &ee, &head.point, &eph.point, &key.public);
    out.extend_from_slice(&eph.representative);
    let mut aad = [0u8; 64];
    aad[..32].copy_from_slice(&head.representative);
    aad[32..].copy_from_slice(&eph.representative);
    s2c.seal(&[], pad.min(MAX_HANDSHAKE_PAD), &aad, out)?;
    Ok(Keys { send: s2c, recv: c2s })
}

/// The client's view of the reply's first bytes (the server's representative and the
/// record's masked length).
pub struct ReplyHead {
    s2c: Direction,
    c2s: Direction,
    aad: [u8; 64],
    /// The length of the record that follows.
    pub body_len: usize,
}

impl ClientHello {
    /// Reads the reply's first [`HELLO_HEAD`] bytes.
    pub fn reply_head(&self, head: &[u8; HELLO_HEAD]) -> Result<ReplyHead, Refusal> {
        let mut representative = [0u8; KEY_LEN];
        representative.copy_from_slice(&head[..KEY_LEN]);
        let point = elligator2::from_representative(&representative);
        let ee = dh(&self.eph.secret, &point)?;
        let (c2s, s2c) = session_keys(&self.es, &ee, &self.eph.point, &point, &self.server);
        let body_len = s2c.body_len([head[KEY_LEN], head[KEY_LEN + 1]], MAX_HANDSHAKE_RECORD)?;
        let mut aad = [0u8; 64];
        aad[..32].copy_from_slice(&self.eph.representative);
        aad[32..].copy_from_slice(&representative);
        Ok(ReplyHead { s2c, c2s, aad, body_len })
    }
}

impl ReplyHead {
    /// Checks the reply's record: only the holder of the server key could have made it.
    pub fn finish(mut self, body: &mut [u8]) -> Result<Keys, Refusal> {
        let data = self.s2c.open(body, &self.aad)?;
        if !data.is_empty() {
            return Err(Refusal::Length);
        }
        Ok(Keys { send: self.c2s, recv: self.s2c })
    }
}

/// A whole hello as the server reads it, for the fuzzer and tests: `Ok` with the keys and
/// the reply if `bytes` begins with a good hello.
pub fn server_read_all<R: RngCore + CryptoRng>(
    rng: &mut R,
    key: &ServerKey,
    bytes: &[u8],
    now: u64,
    out: &mut Vec<u8>,
) -> io::Result<Keys> {
    let head: &[u8; HELLO_HEAD] =
        bytes.get(..HELLO_HEAD).and_then(|h| h.try_into().ok()).ok_or(Refusal::Length)?;
    let head = server_hello_head(key, head)?;
    let mut body =
        bytes.get(HELLO_HEAD..HELLO_HEAD + head.body_len).ok_or(Refusal::Length)?.to_vec();
    let hello = server_open(head, &mut body, now)?;
    server_reply(rng, key, hello, 0, out)
}
