//! Peer discovery: independent ways for a node to find its first peers, behind one trait.
//!
//! A new node knows nobody; a censor blocks whatever way in is most popular. This crate holds
//! the ways in that do not go through Samizdat's own overlay, each a [`Discovery`] method the
//! node runs concurrently with per-method timeouts ([`run_all`]), so one blocked or slow method
//! never holds up the others and "everything failed" comes with a list of what was tried and
//! why each one failed ([`Report`]).
//!
//! Every method carries only [`PeerRecord`]s: self-certifying statements signed by the peer's
//! own identity key. A poisoned source can hide peers or repeat old ones (bounded by the
//! record's age), but it cannot inject identities: the [`samizdat_identity::NodeId`] a caller
//! dials is derived from the key that signed the addresses, and a session with any other key is
//! refused.
//!
//! Unlike the protocol crates (`samizdat-dht`, `samizdat-session`), this crate is a runtime
//! layer: methods own sockets and tokio tasks. Time is still a parameter wherever a caller
//! can supply it (`*_at(now)` methods); the trait methods read the wall clock in one place,
//! [`unix_now`].
//!
//! # Methods
//!
//! | method | status |
//! |---|---|
//! | [`MainlineRendezvous`]: BEP 44 mutable items in the BitTorrent Mainline DHT under keys derived from a network secret and the hour | here |
//! | [`LanDiscovery`] (`"mdns"`): DNS-SD over multicast DNS on the local network, for internet shutdowns; signed records in TXT strings | here (IPv4, one interface per instance) |
//! | bootstrap peers and invite lines | in `samizdat-node` (to move behind this trait) |
//! | peer exchange (signed [`PeerRecord`]s, `engine/pex.rs`) and the overlay DHT with its rendezvous points | in `samizdat-engine` / `samizdat-dht` |
//! | DNS-over-HTTPS seeds, domain-fronted HTTPS rendezvous | later, with the HTTPS client of the traffic-obfuscation work |
//!
//! ```
//! use samizdat_discovery::{BoxFuture, Discovery, DiscoveryError, PeerRecord};
//!
//! /// A method that knows a fixed list (e.g. invite lines given on the command line).
//! struct Fixed(Vec<PeerRecord>);
//!
//! impl Discovery for Fixed {
//!     fn name(&self) -> &'static str {
//!         "fixed"
//!     }
//!     fn announce<'a>(&'a self, _: &'a PeerRecord) -> BoxFuture<'a, Result<(), DiscoveryError>> {
//!         Box::pin(async { Err(DiscoveryError::Unsupported { method: "fixed" }) })
//!     }
//!     fn discover(&self) -> BoxFuture<'_, Result<Vec<PeerRecord>, DiscoveryError>> {
//!         Box::pin(async { Ok(self.0.clone()) })
//!     }
//! }
//! ```
#![forbid(unsafe_code)]

pub mod lan;
pub mod mainline_dht;
mod report;

/// Self-certifying peer records (defined in `samizdat-identity`, so the sans-IO engine can
/// check them without this runtime crate).
pub use samizdat_identity::record;

pub use lan::{LanConfig, LanDiscovery};
pub use mainline_dht::{MainlineConfig, MainlineRendezvous, NetworkSecret};
pub use record::{PeerRecord, RecordError};
pub use report::{MethodReport, Report, run_all, run_all_each};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed, sendable future: what [`Discovery`] methods return, so the trait stays object
/// safe (`Box<dyn Discovery>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One way of finding peers (and of being found).
pub trait Discovery: Send + Sync {
    /// A short stable name for reports and logs ("mainline", "mdns", …).
    fn name(&self) -> &'static str;

    /// Makes this node findable through the method. `record` must be this node's own, signed
    /// and current; methods refuse records that do not verify.
    fn announce<'a>(&'a self, record: &'a PeerRecord) -> BoxFuture<'a, Result<(), DiscoveryError>>;

    /// Looks for peers. Every returned record has been verified (signature and age) and there
    /// is at most one record per node.
    fn discover(&self) -> BoxFuture<'_, Result<Vec<PeerRecord>, DiscoveryError>>;

    /// Like [`Discovery::discover`], also handing each verified record to `found` as soon as
    /// the method has it, so that a caller can dial the first peers while slow lookups still
    /// run (a record may be handed over more than once). The default hands them over when
    /// `discover` returns.
    fn discover_each<'a>(
        &'a self,
        found: &'a Found,
    ) -> BoxFuture<'a, Result<Vec<PeerRecord>, DiscoveryError>> {
        Box::pin(async move {
            let records = self.discover().await?;
            records.iter().for_each(found);
            Ok(records)
        })
    }
}

/// What [`Discovery::discover_each`] hands each record to.
pub type Found = dyn Fn(&PeerRecord) + Send + Sync;

/// Why a discovery method failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The method did not finish within its time budget.
    #[error("{method}: no answer within {after:?}")]
    Timeout {
        /// The method's name.
        method: &'static str,
        /// The budget that ran out.
        after: Duration,
    },
    /// Nobody answered: the network the method relies on is unreachable or blocked.
    #[error("{method}: unreachable ({detail})")]
    Unreachable {
        /// The method's name.
        method: &'static str,
        /// What was tried.
        detail: String,
    },
    /// Publishing our record failed.
    #[error("{method}: announce failed ({detail})")]
    Announce {
        /// The method's name.
        method: &'static str,
        /// The underlying failure.
        detail: String,
    },
    /// The method does not support this operation (e.g. announcing into a read-only list).
    #[error("{method}: not supported")]
    Unsupported {
        /// The method's name.
        method: &'static str,
    },
    /// The record given to announce is invalid.
    #[error("invalid peer record: {0}")]
    Record(#[from] RecordError),
    /// A local I/O failure (binding a socket).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The wall clock in Unix seconds: the one place this crate reads it (for the trait methods,
/// which take no `now`).
#[allow(clippy::disallowed_methods)] // reason: runtime layer; trait methods need the wall clock
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
