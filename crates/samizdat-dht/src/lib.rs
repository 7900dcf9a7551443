//! Samizdat's distributed hash table: a sans-IO S/Kademlia.
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
