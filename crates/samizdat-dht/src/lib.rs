//! Samizdat's distributed hash table: a sans-IO S/Kademlia.
//!
//! This crate finds nodes, providers and small signed records without any central point. It
//! contains no networking code and reads no clock: callers pass `now: Instant` in, send the
//! requests it asks for over whatever route they choose (a direct session stream today, an
//! onion circuit later), and feed the answers back. The same state machines run in the
//! runtime (`samizdat-node`, via the engine) and in the deterministic [`scenario`]s.
//!
//! # Layers
//!
//! | module | role |
//! |---|---|
//! | [`codec`] | the compact binary messages ([`codec::DhtRequest`], [`codec::DhtResponse`]) with request ids; strict decoding |
//! | [`contact`] | a node's key, proof of work and address; network groups for admission limits |
//! | [`key`] | XOR distance, bucket indices, [`rotating_key`] for content keys |
//! | [`record`] | BEP 44-style signed mutable records and signed provider records |
//! | [`store`] | the bounded record store (global cap, per-source quota, expiry) |
//! | [`table`] | the k-bucket routing table with pending entries and prefix limits |
//! | [`lookup`] | the iterative lookup over disjoint paths |
//! | [`Dht`] | the behaviour combining them: answers requests, drives lookups, puts, refresh, republish |
//! | [`scenario`] | whole-network simulations (Sybil eclipse, churn) for tests and `samizdat-lab` |
//!
//! # Security choices
//!
//! - **Proof-of-work node IDs** (S/Kademlia's static puzzle, in
//!   [`samizdat_identity::pow`]): an ID is `BLAKE3(public key)` and is admitted only with a
//!   nonce making `BLAKE3(context, key || nonce)` start with `D` zero bits
//!   ([`DhtConfig::pow_difficulty`]). Each identity costs `2^D` hashes to make and one to check,
//!   and nobody can choose where in the key space an ID lands. Contacts failing the check are
//!   never stored, and a response carrying one is rejected as a whole.
//! - **Disjoint lookup paths**: a lookup splits its starting contacts over `d` paths
//!   ([`DhtConfig::disjoint_paths`], default 4) and queries every node on at most one path, so
//!   Sybils that answer only with each other capture the paths that meet them but not the
//!   others. The [`scenario`] tests measure this and fail if it stops working.
//! - **Prefix limits**: at most 2 entries per /24 (IPv4) or /48 (IPv6) per bucket and a cap
//!   per /16 or /32 per table, so one operator with one address block cannot fill a table.
//!   Long-lived entries are preferred (a full bucket only changes when an entry fails a
//!   probe), so a flood of fresh identities cannot displace proven contacts.
//! - **Sibling list** (S/Kademlia §4.2): the 2k live contacts closest to the node's own ID are
//!   kept even where a full bucket only pends them, so it knows its whole neighbourhood;
//!   records are stored only for keys it is responsible for (fewer than 2k known nodes are
//!   closer to the key), so nobody can make it keep records for keys far from it.
//! - **Self-certifying records**: mutable records and provider records are signed; stores and
//!   lookups check signatures, sizes, keys and expiry before keeping or believing them.
//! - **Bounded memory**: every table, list and queue a peer can fill has a limit, and incoming
//!   requests are answered synchronously without queueing anything.
//! - **Rotating keys**: content is published under [`rotating_key`]`(secret, purpose, period)`,
//!   a BLAKE3 derived key of the link's secret and the time period. DHT nodes that store or
//!   route such a lookup see a pseudo-random key that changes every period: they learn nothing
//!   about which file it is, cannot link periods, and cannot enumerate the providers of a file
//!   they know only by its hash.
//!
//! # Example
//!
//! ```
//! use samizdat_dht::{Contact, Dht, DhtConfig, DhtEvent};
//! use samizdat_identity::Identity;
//! let now = std::time::Instant::now(); // the driver's clock; the crate never reads one
//! let config = DhtConfig { pow_difficulty: 4, ..DhtConfig::default() };
//! let mk = |seed: u8, addr: &str| {
//!     let id = Identity::from_secret_bytes(&[seed; 32]).unwrap();
//!     let contact = Contact::for_identity(&id, 4, addr).unwrap();
//!     Dht::new(config.clone(), contact, [seed; 32], now, 1_800_000_000).unwrap()
//! };
//! let (mut alice, mut bob) = (mk(1, "tcp/10.0.0.1:1"), mk(2, "tcp/10.0.1.1:1"));
//! alice.add_contact(bob.local().clone(), now).unwrap();
//! let lookup = alice.find_node(bob.local().id(), now).unwrap();
//! while let Some(t) = alice.poll_transmit(now) {
//!     // Carry the request to `t.to` over any route, and its answer back.
//!     let answer = bob.handle_request(now, Some(alice.local()), t.request);
//!     alice.handle_response(now, t.request_id, answer);
//! }
//! match alice.poll_event() {
//!     Some(DhtEvent::LookupFinished { id, result }) => {
//!         assert_eq!(id, lookup);
//!         assert_eq!(result.closest[0].id(), bob.local().id());
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```
#![forbid(unsafe_code)]

mod behaviour;
pub mod codec;
pub mod contact;
mod error;
pub mod key;
pub mod lookup;
pub mod record;
pub mod scenario;
pub mod store;
pub mod table;

pub use behaviour::{Dht, DhtConfig, DhtEvent, LookupId, Transmit};
pub use contact::Contact;
pub use error::DhtError;
pub use key::rotating_key;
pub use lookup::{LookupKind, LookupResult};
pub use record::{ProviderRecord, SignedRecord};
pub use table::InsertOutcome;
