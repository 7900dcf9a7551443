//! Running every method at once, and saying what happened.

use crate::{Discovery, Found, PeerRecord};
use samizdat_identity::NodeId;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

/// What one method did in a [`run_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodReport {
    /// The method's [`Discovery::name`].
    pub name: &'static str,
    /// How many (verified, distinct) peers it returned.
    pub peers: usize,
    /// How long it ran (up to the timeout).
    pub elapsed: Duration,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// The outcome of a [`run_all`]: per-method results and the merged peers.
#[derive(Debug, Clone)]
pub struct Report {
    /// One entry per method, in the order given.
    pub methods: Vec<MethodReport>,
    /// Every peer found, one record per node (the newest), in first-found order.
    pub peers: Vec<PeerRecord>,
}

impl Report {
    /// Whether any method found a peer.
    pub fn ok(&self) -> bool {
        !self.peers.is_empty()
    }
}

impl fmt::Display for Report {
    /// One line per method, e.g. `mainline: 0 peers in 5.0s: unreachable (…)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} peers found", self.peers.len())?;
        for m in &self.methods {
            write!(f, "  {}: {} peers in {:.1}s", m.name, m.peers, m.elapsed.as_secs_f64())?;
            if let Some(e) = &m.error {
                write!(f, ": {e}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

type Pending<'a> = Pin<Box<dyn Future<Output = (MethodReport, Vec<PeerRecord>)> + Send + 'a>>;

/// Runs [`Discovery::discover`] of every method concurrently, each bounded by `timeout`, and
/// merges what they found (one record per node, the newest timestamp winning).
///
/// Never takes much longer than `timeout`; a method that hangs is reported as timed out.
pub async fn run_all(methods: &[Box<dyn Discovery>], timeout: Duration) -> Report {
    run_all_each(methods, timeout, &|_| {}).await
}

/// Like [`run_all`], also handing every record to `found` as soon as a method has it (see
/// [`Discovery::discover_each`]): records a method found before its timeout are handed over
/// even though its report counts them as lost.
pub async fn run_all_each(
    methods: &[Box<dyn Discovery>],
    timeout: Duration,
    found: &Found,
) -> Report {
    let mut running: Vec<Option<Pending<'_>>> = methods
        .iter()
        .map(|m| {
            let fut: Pending<'_> = Box::pin(async move {
                let name = m.name();
                let start = tokio::time::Instant::now();
                let result = tokio::time::timeout(timeout, m.discover_each(found)).await;
                let elapsed = start.elapsed();
                let (records, error) = match result {
                    Ok(Ok(records)) => (records, None),
                    Ok(Err(e)) => (Vec::new(), Some(e.to_string())),
                    Err(_) => (Vec::new(), Some(format!("no answer within {timeout:?}"))),
                };
                (MethodReport { name, peers: records.len(), elapsed, error }, records)
            });
            Some(fut)
        })
        .collect();
    let mut done: Vec<Option<(MethodReport, Vec<PeerRecord>)>> = vec![None; methods.len()];
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, out) in running.iter_mut().zip(done.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(r) => {
                        *out = Some(r);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;

    let mut report = Report { methods: Vec::new(), peers: Vec::new() };
    let mut index: HashMap<NodeId, usize> = HashMap::new();
    for (method, records) in done.into_iter().flatten() {
        report.methods.push(method);
        merge(&mut report.peers, &mut index, records);
    }
    report
}

/// Adds `records` to `peers`, keeping one record per node (the newest).
pub(crate) fn merge(
    peers: &mut Vec<PeerRecord>,
    index: &mut HashMap<NodeId, usize>,
    records: Vec<PeerRecord>,
) {
    for r in records {
        match index.get(&r.node_id()) {
            Some(&i) => {
                if r.timestamp() > peers[i].timestamp() {
                    peers[i] = r;
                }
            }
            None => {
                index.insert(r.node_id(), peers.len());
                peers.push(r);
            }
        }
    }
}
