//! Finding peers through the discovery methods of `samizdat-discovery` (the Mainline DHT
//! rendezvous, the LAN): the node announces its own signed [`PeerRecord`] through every
//! method, and while it has fewer than [`WANT_PEERS`] peers it runs them all at once and dials
//! every peer found, pinned to the identity that signed the record (a poisoned method can hide
//! peers but never make the node talk to an identity it did not find).
//!
//! The last [`Report`] is kept for [`crate::Node::discovery_report`], so "no peer reachable"
//! comes with what each method did.

use crate::driver::Command;
use samizdat_discovery::{Discovery, PeerRecord, Report, run_all_each, unix_now};
use samizdat_identity::Identity;
use samizdat_identity::NodeId;
use samizdat_wire::PeerAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Established peers below which the methods are run.
pub(crate) const WANT_PEERS: usize = 8;
/// Budget of one round of every method.
const ROUND: Duration = Duration::from_secs(25);
/// First wait between rounds that left the node short of peers; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// How often the record is signed afresh and announced again (well inside the methods'
/// accepted age, and at least once per rendezvous period).
const ANNOUNCE_EVERY: Duration = Duration::from_secs(20 * 60);
/// Most peers dialled from one round.
const MAX_DIALS: usize = 16;

/// The last round's report, shared with the node.
pub(crate) type LastReport = Arc<Mutex<Option<Report>>>;

/// Runs the methods for as long as the node does (it holds only a weak sender).
pub(crate) async fn run(
    methods: Vec<Box<dyn Discovery>>,
    identity: Identity,
    advertised: Vec<PeerAddr>,
    cmd: mpsc::WeakSender<Command>,
    last: LastReport,
) {
    let me = identity.node_id();
    let addrs: Vec<String> = advertised.iter().map(ToString::to_string).collect();
    let mut backoff = FIRST_BACKOFF;
    let mut announced: Option<tokio::time::Instant> = None;
    loop {
        let due = announced.is_none_or(|t| t.elapsed() >= ANNOUNCE_EVERY);
        // A node without a reachable address only looks: it cannot be dialled.
        let announcing = due && !addrs.is_empty();
        if announcing {
            announced = Some(tokio::time::Instant::now());
        }
        let Some(up) = established(&cmd).await else { return };
        let looking = up < WANT_PEERS;
        let (found_tx, found_rx) = mpsc::unbounded_channel();
        let round = async {
            if !looking {
                drop(found_tx); // lets `dial_found` end
                return None;
            }
            let found = move |r: &PeerRecord| {
                let _ = found_tx.send(r.clone());
            };
            Some(run_all_each(&methods, ROUND, &found).await)
        };
        let ((), report, stopped) = tokio::join!(
            async {
                if announcing {
                    announce(&methods, &identity, &addrs).await;
                }
            },
            round,
            dial_found(found_rx, me, &cmd),
        );
        if stopped {
            return;
        }
        let wait = match report {
            Some(report) => {
                tracing::debug!(target: "samizdat::discovery", "{report}");
                *last.lock().unwrap_or_else(PoisonError::into_inner) = Some(report);
                let wait = backoff;
                backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
                wait
            }
            None => {
                backoff = FIRST_BACKOFF;
                ANNOUNCE_EVERY
            }
        };
        tokio::time::sleep(wait.min(ANNOUNCE_EVERY)).await;
    }
}

/// Dials every peer handed over (once per node, at most [`MAX_DIALS`] addresses a round) as
/// soon as a method finds it. Returns whether the node has stopped.
async fn dial_found(
    mut found: mpsc::UnboundedReceiver<PeerRecord>,
    me: NodeId,
    cmd: &mpsc::WeakSender<Command>,
) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    let mut dialled = 0;
    while let Some(record) = found.recv().await {
        let node = record.node_id();
        if node == me || !seen.insert(node) {
            continue;
        }
        for addr in record.addrs().iter().filter_map(|a| PeerAddr::new(a).ok()) {
            if dialled >= MAX_DIALS {
                break;
            }
            let Some(tx) = cmd.upgrade() else { return true };
            if tx.send(Command::Dial { addr, node }).await.is_err() {
                return true;
            }
            dialled += 1;
        }
    }
    false
}

/// Signs this node's record as of now and announces it through every method at once.
async fn announce(methods: &[Box<dyn Discovery>], identity: &Identity, addrs: &[String]) {
    let record = match PeerRecord::sign(identity, addrs, unix_now()) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(target: "samizdat::discovery", "cannot sign the peer record: {e}");
            return;
        }
    };
    let all = methods.iter().map(|m| {
        let record = &record;
        async move {
            match tokio::time::timeout(ROUND, m.announce(record)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(target: "samizdat::discovery", "{e}"),
                Err(_) => tracing::debug!(target: "samizdat::discovery", "{}: announce timed out", m.name()),
            }
        }
    });
    join_all(all).await;
}

/// Established peers now, or `None` once the node has stopped.
async fn established(cmd: &mpsc::WeakSender<Command>) -> Option<usize> {
    let (reply, rx) = oneshot::channel();
    cmd.upgrade()?.send(Command::Peers { reply }).await.ok()?;
    Some(rx.await.ok()?.iter().filter(|p| p.established).count())
}

/// Polls every future to completion, concurrently.
async fn join_all<F: std::future::Future<Output = ()>>(futures: impl IntoIterator<Item = F>) {
    let mut set: Vec<_> = futures.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
}
