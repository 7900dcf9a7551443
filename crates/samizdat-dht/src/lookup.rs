//! The iterative lookup state machine, over disjoint paths (S/Kademlia).
//!
//! A [`Lookup`] never sends anything: [`Lookup::next_request`] names the next contact to ask
//! and what to ask, and the owner reports each answer ([`Lookup::on_response`]) or failure
//! ([`Lookup::on_failure`]) — over whatever route it used (a direct stream, later an onion
//! circuit). Answers are keyed by the contact asked: a lookup asks each node at most once.
//!
//! **Disjoint paths.** The initial closest contacts are dealt round-robin over `d` paths. Each
//! path runs its own Kademlia lookup (at most `alpha` requests in flight, finished when the `k`
//! closest contacts it knows have all answered or failed), but a node is queried by at most one
//! path: the first path to query a node claims it and the others skip it. An adversary whose
//! nodes answer only with each other can capture the paths that meet one of its nodes, but
//! not the others, so the chance that *every* path is captured falls quickly with `d`.
//! `d = 1` is plain Kademlia.
//!
//! **Forged answers.** A response of the wrong kind, one carrying a contact that fails the
//! proof of work, or a record that fails its signature, key or expiry check is rejected as a
//! whole: its sender counts as failed and [`Lookup::on_response`] returns the error so the
//! owner can rank the sender down. At most `k` contacts of a response are considered.

use crate::DhtError;
use crate::codec::{DhtRequest, DhtResponse};
use crate::contact::Contact;
use crate::key::{Distance, distance};
use crate::record::{ProviderRecord, SignedRecord};
use samizdat_identity::NodeId;
use std::collections::HashMap;

/// Parameters of a lookup.
#[derive(Clone, Debug)]
pub struct LookupConfig {
    /// How many closest nodes a lookup converges on (Kademlia's k).
    pub k: usize,
    /// Requests in flight per path.
    pub alpha: usize,
    /// Disjoint paths (1 = plain Kademlia).
    pub disjoint_paths: usize,
    /// The most requests one lookup may send, over all paths.
    pub max_requests: usize,
    /// The proof-of-work difficulty contacts must meet.
    pub difficulty: u8,
    /// The most provider records a provider lookup collects.
    pub max_providers: usize,
}

impl Default for LookupConfig {
    fn default() -> Self {
        LookupConfig {
            k: 20,
            alpha: 3,
            disjoint_paths: 4,
            max_requests: 400,
            difficulty: 16,
            max_providers: 20,
        }
    }
}

/// What a lookup looks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LookupKind {
    /// The `k` nodes closest to the target.
    FindNode,
    /// The mutable record under the key (finishes at the first valid one).
    FindValue,
    /// Provider records for the key.
    GetProviders,
}

/// Counters of one lookup (for cost reports).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct LookupStats {
    /// Requests sent.
    pub requests: usize,
    /// Valid responses received.
    pub responses: usize,
    /// Requests that failed or timed out.
    pub failures: usize,
    /// Responses rejected as forged or malformed.
    pub rejected: usize,
}

/// The outcome of a finished lookup.
#[derive(Clone, Debug)]
pub struct LookupResult {
    /// What was looked for.
    pub kind: LookupKind,
    /// The target ID or key.
    pub target: NodeId,
    /// Up to `k` nodes that answered, closest to the target first (all paths merged).
    pub closest: Vec<Contact>,
    /// The record found (for [`LookupKind::FindValue`]).
    pub record: Option<SignedRecord>,
    /// The providers found (for [`LookupKind::GetProviders`]).
    pub providers: Vec<ProviderRecord>,
    /// Hops to the answer: the length of the request chain that reached the value, or the
    /// closest node for node lookups.
    pub hops: u32,
    /// The number of disjoint paths used.
    pub paths: usize,
    /// Counters.
    pub stats: LookupStats,
}

/// Most new providers taken from one response.
pub const MAX_PROVIDERS_PER_RESPONSE: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Waiting,
    InFlight,
    Responded,
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    contact: Contact,
    distance: Distance,
    state: State,
    hops: u32,
}

#[derive(Clone, Debug, Default)]
struct Path {
    /// Sorted by distance to the target.
    candidates: Vec<Candidate>,
    in_flight: usize,
}

/// One iterative lookup (see the module docs).
#[derive(Clone, Debug)]
pub struct Lookup {
    kind: LookupKind,
    target: NodeId,
    local: NodeId,
    config: LookupConfig,
    paths: Vec<Path>,
    /// Which path queried each node.
    claimed: HashMap<NodeId, usize>,
    cursor: usize,
    record: Option<(SignedRecord, u32)>,
    providers: Vec<ProviderRecord>,
    stats: LookupStats,
    found: bool,
}

impl Lookup {
    /// Starts a lookup from `seeds` (usually the local table's closest contacts to `target`);
    /// `local` is never queried.
    pub fn new(
        kind: LookupKind,
        target: NodeId,
        local: NodeId,
        seeds: Vec<Contact>,
        config: LookupConfig,
    ) -> Self {
        let d = config.disjoint_paths.max(1);
        let mut seeds: Vec<Candidate> = seeds
            .into_iter()
            .filter(|c| c.id() != local)
            .map(|c| Candidate {
                distance: distance(&c.id(), &target),
                contact: c,
                state: State::Waiting,
                hops: 1,
            })
            .collect();
        seeds.sort_by_key(|a| a.distance);
        seeds.dedup_by(|a, b| a.contact.id() == b.contact.id());
        let mut paths = vec![Path::default(); d];
        for (i, c) in seeds.into_iter().enumerate() {
            paths[i % d].candidates.push(c);
        }
        Lookup {
            kind,
            target,
            local,
            config,
            paths,
            claimed: HashMap::new(),
            cursor: 0,
            record: None,
            providers: Vec::new(),
            stats: LookupStats::default(),
            found: false,
        }
    }

    /// What this lookup looks for.
    pub fn kind(&self) -> LookupKind {
        self.kind
    }

    /// The target ID or key.
    pub fn target(&self) -> NodeId {
        self.target
    }

    /// The counters so far.
    pub fn stats(&self) -> LookupStats {
        self.stats
    }

    fn request(&self) -> DhtRequest {
        match self.kind {
            LookupKind::FindNode => DhtRequest::FindNode { target: self.target },
            LookupKind::FindValue => DhtRequest::FindValue { key: self.target },
            LookupKind::GetProviders => DhtRequest::GetProviders { key: self.target },
        }
    }

    /// The next request to send, if a path may send one now. Call until `None` after every
    /// start, response and failure.
    pub fn next_request(&mut self) -> Option<(Contact, DhtRequest)> {
        if self.found {
            return None;
        }
        let d = self.paths.len();
        for step in 0..d {
            if self.stats.requests >= self.config.max_requests {
                return None;
            }
            let p = (self.cursor + step) % d;
            if self.paths[p].in_flight >= self.config.alpha {
                continue;
            }
            if let Some(contact) = self.pick(p) {
                self.cursor = (p + 1) % d;
                self.stats.requests += 1;
                return Some((contact, self.request()));
            }
        }
        None
    }

    /// Picks and claims the closest waiting candidate among path `p`'s `k` closest live ones.
    fn pick(&mut self, p: usize) -> Option<Contact> {
        let k = self.config.k;
        let claimed = &self.claimed;
        // Candidates another path has queried are not this path's to use.
        self.paths[p].candidates.retain(|c| {
            c.state != State::Waiting || claimed.get(&c.contact.id()).is_none_or(|&q| q == p)
        });
        let path = &mut self.paths[p];
        let mut live = 0;
        for c in path.candidates.iter_mut() {
            if c.state == State::Failed {
                continue;
            }
            if live >= k {
                break;
            }
            live += 1;
            if c.state == State::Waiting {
                c.state = State::InFlight;
                path.in_flight += 1;
                self.claimed.insert(c.contact.id(), p);
                return Some(c.contact.clone());
            }
        }
        None
    }

    fn in_flight(&mut self, peer: &NodeId) -> Option<(usize, usize)> {
        let p = *self.claimed.get(peer)?;
        let i = self.paths[p]
            .candidates
            .iter()
            .position(|c| c.contact.id() == *peer && c.state == State::InFlight)?;
        Some((p, i))
    }

    /// Reports that `peer` failed to answer (timeout, broken route). Unknown peers are ignored.
    pub fn on_failure(&mut self, peer: &NodeId) {
        if let Some((p, i)) = self.in_flight(peer) {
            self.paths[p].candidates[i].state = State::Failed;
            self.paths[p].in_flight -= 1;
            self.stats.failures += 1;
        }
    }

    /// Reports `peer`'s answer. `now_unix` is the wall clock for record expiry checks.
    ///
    /// Returns an error (and counts `peer` as failed) if the answer is of the wrong kind or
    /// carries anything forged or malformed; the caller should rank `peer` down. An answer
    /// from a peer this lookup is not waiting for is ignored with
    /// [`DhtError::UnexpectedResponse`] and changes nothing.
    pub fn on_response(
        &mut self,
        peer: &NodeId,
        response: DhtResponse,
        now_unix: u64,
    ) -> Result<(), DhtError> {
        let Some((p, i)) = self.in_flight(peer) else {
            return Err(DhtError::UnexpectedResponse);
        };
        self.paths[p].in_flight -= 1;
        match self.validate(response, now_unix) {
            Err(e) => {
                self.paths[p].candidates[i].state = State::Failed;
                self.stats.rejected += 1;
                Err(e)
            }
            Ok((closer, record, providers)) => {
                self.stats.responses += 1;
                let hops = self.paths[p].candidates[i].hops;
                self.paths[p].candidates[i].state = State::Responded;
                if let Some(r) = record {
                    if self.record.as_ref().is_none_or(|(old, _)| r.seq > old.seq) {
                        self.record = Some((r, hops));
                    }
                    self.found = true;
                }
                // One responder adds at most a few providers, so the first (or fastest) to
                // answer cannot crowd out the ones other nodes know.
                let mut taken = 0;
                for pr in providers {
                    if self.providers.len() >= self.config.max_providers
                        || taken >= MAX_PROVIDERS_PER_RESPONSE
                    {
                        break;
                    }
                    if !self.providers.iter().any(|q| q.provider.id() == pr.provider.id()) {
                        self.providers.push(pr);
                        taken += 1;
                    }
                }
                self.learn(p, closer, hops + 1);
                Ok(())
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn validate(
        &self,
        response: DhtResponse,
        now_unix: u64,
    ) -> Result<(Vec<Contact>, Option<SignedRecord>, Vec<ProviderRecord>), DhtError> {
        let (mut closer, record, providers) = match (self.kind, response) {
            (LookupKind::FindNode, DhtResponse::Nodes { closer }) => (closer, None, Vec::new()),
            (LookupKind::FindValue, DhtResponse::Value { record, closer }) => {
                (closer, record, Vec::new())
            }
            (LookupKind::GetProviders, DhtResponse::Providers { providers, closer }) => {
                (closer, None, providers)
            }
            _ => return Err(DhtError::UnexpectedResponse),
        };
        closer.truncate(self.config.k);
        for c in &closer {
            c.verify_pow(self.config.difficulty)?;
        }
        if let Some(r) = &record {
            if r.key() != self.target {
                return Err(DhtError::KeyMismatch("record under another key"));
            }
            r.verify(now_unix)?;
        }
        for pr in &providers {
            if pr.key != self.target {
                return Err(DhtError::KeyMismatch("provider for another key"));
            }
            pr.verify(now_unix, self.config.difficulty)?;
        }
        Ok((closer, record, providers))
    }

    fn learn(&mut self, p: usize, closer: Vec<Contact>, hops: u32) {
        for c in closer {
            let id = c.id();
            if id == self.local || self.claimed.get(&id).is_some_and(|&q| q != p) {
                continue;
            }
            let path = &mut self.paths[p];
            if path.candidates.iter().any(|x| x.contact.id() == id) {
                continue;
            }
            let dist = distance(&id, &self.target);
            let at = path.candidates.partition_point(|x| x.distance < dist);
            path.candidates
                .insert(at, Candidate { contact: c, distance: dist, state: State::Waiting, hops });
        }
        // Bound the path: drop the farthest waiting candidates beyond 3k.
        let cap = 3 * self.config.k;
        let path = &mut self.paths[p];
        while path.candidates.len() > cap {
            match path.candidates.iter().rposition(|c| c.state == State::Waiting) {
                Some(i) => {
                    path.candidates.remove(i);
                }
                None => break,
            }
        }
    }

    /// Whether the lookup is over: the value was found, or every path has converged (its `k`
    /// closest live contacts all answered) or run out of contacts or requests.
    pub fn is_finished(&self) -> bool {
        if self.found {
            return true;
        }
        let budget = self.stats.requests >= self.config.max_requests;
        self.paths.iter().enumerate().all(|(p, path)| {
            if path.in_flight > 0 {
                return false;
            }
            if budget {
                return true;
            }
            let mut live = 0;
            for c in &path.candidates {
                if c.state == State::Failed {
                    continue;
                }
                if live >= self.config.k {
                    break;
                }
                live += 1;
                let usable = self.claimed.get(&c.contact.id()).is_none_or(|&q| q == p);
                if c.state == State::Waiting && usable {
                    return false;
                }
            }
            true
        })
    }

    /// The result so far (final once [`Lookup::is_finished`]).
    pub fn result(&self) -> LookupResult {
        let mut responded: Vec<&Candidate> = self
            .paths
            .iter()
            .flat_map(|p| p.candidates.iter())
            .filter(|c| c.state == State::Responded)
            .collect();
        responded.sort_by_key(|a| a.distance);
        responded.dedup_by(|a, b| a.contact.id() == b.contact.id());
        let hops = match &self.record {
            Some((_, h)) => *h,
            None => responded.first().map(|c| c.hops).unwrap_or(0),
        };
        LookupResult {
            kind: self.kind,
            target: self.target,
            closest: responded.iter().take(self.config.k).map(|c| c.contact.clone()).collect(),
            record: self.record.as_ref().map(|(r, _)| r.clone()),
            providers: self.providers.clone(),
            hops,
            paths: self.paths.len(),
            stats: self.stats,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use samizdat_identity::{Identity, pow};

    fn node(n: u16) -> (Identity, Contact) {
        let mut secret = [0u8; 32];
        secret[..2].copy_from_slice(&n.to_le_bytes());
        let id = Identity::from_secret_bytes(&secret).unwrap();
        let c =
            Contact::for_identity(&id, 2, format!("tcp/10.{}.{}.1:1", n / 256, n % 256)).unwrap();
        (id, c)
    }

    fn cfg(d: usize) -> LookupConfig {
        LookupConfig { k: 4, alpha: 2, disjoint_paths: d, difficulty: 2, ..Default::default() }
    }

    fn drain(l: &mut Lookup) -> Vec<Contact> {
        std::iter::from_fn(|| l.next_request().map(|(c, _)| c)).collect()
    }

    #[test]
    fn seeds_split_over_paths_and_alpha_bounds() {
        let contacts: Vec<Contact> = (0..8).map(|n| node(n).1).collect();
        let mut l = Lookup::new(
            LookupKind::FindNode,
            NodeId([0; 32]),
            NodeId([9; 32]),
            contacts.clone(),
            cfg(2),
        );
        let first = drain(&mut l);
        assert_eq!(first.len(), 4, "2 paths x alpha 2");
        assert!(!l.is_finished());
        for c in &first {
            l.on_response(&c.id(), DhtResponse::Nodes { closer: vec![] }, 0).unwrap();
        }
        let second = drain(&mut l);
        assert_eq!(second.len(), 4);
        for c in &second {
            l.on_failure(&c.id());
        }
        assert!(l.is_finished());
        let r = l.result();
        assert_eq!(r.closest.len(), 4);
        assert_eq!(r.stats.requests, 8);
        assert_eq!(r.stats.failures, 4);
        assert_eq!(r.paths, 2);
    }

    #[test]
    fn converges_on_closest_and_each_node_is_asked_once() {
        // A tiny network: every node knows everyone; answers with the 4 closest to the target.
        let all: Vec<Contact> = (0..40).map(|n| node(n).1).collect();
        let target = all[17].id();
        let mut sorted = all.clone();
        sorted.sort_by_key(|c| distance(&c.id(), &target));
        for d in [1, 3] {
            let mut l = Lookup::new(
                LookupKind::FindNode,
                target,
                NodeId([0xee; 32]),
                sorted[30..].to_vec(),
                cfg(d),
            );
            let mut asked = std::collections::HashSet::new();
            while !l.is_finished() {
                let batch = drain(&mut l);
                assert!(!batch.is_empty());
                for c in batch {
                    assert!(asked.insert(c.id()), "asked twice: {c:?}");
                    let mut closer = all.clone();
                    closer.sort_by_key(|x| distance(&x.id(), &target));
                    closer.truncate(4);
                    l.on_response(&c.id(), DhtResponse::Nodes { closer }, 0).unwrap();
                }
            }
            let r = l.result();
            assert_eq!(r.closest[0].id(), target, "d={d}");
            assert!(r.hops >= 2);
        }
    }

    #[test]
    fn forged_and_unexpected_responses_are_rejected() {
        let contacts: Vec<Contact> = (0..4).map(|n| node(n).1).collect();
        let mut l =
            Lookup::new(LookupKind::FindNode, NodeId([0; 32]), NodeId([9; 32]), contacts, cfg(1));
        let batch = drain(&mut l);
        // Unknown peer: ignored.
        assert_eq!(
            l.on_response(&NodeId([1; 32]), DhtResponse::Pong, 0),
            Err(DhtError::UnexpectedResponse)
        );
        // Wrong kind.
        assert_eq!(
            l.on_response(&batch[0].id(), DhtResponse::Pong, 0),
            Err(DhtError::UnexpectedResponse)
        );
        // A contact without proof of work.
        let weak = (0u64..)
            .map(|n| Contact::new([7; 32], n, "x").unwrap())
            .find(|c| !pow::verify(c.public_key(), c.pow_nonce(), 2))
            .unwrap();
        assert_eq!(
            l.on_response(&batch[1].id(), DhtResponse::Nodes { closer: vec![weak] }, 0),
            Err(DhtError::BadProofOfWork(2))
        );
        // The same peer again: no longer in flight.
        assert_eq!(
            l.on_response(&batch[1].id(), DhtResponse::Nodes { closer: vec![] }, 0),
            Err(DhtError::UnexpectedResponse)
        );
        assert_eq!(l.stats().rejected, 2);
    }

    #[test]
    fn at_most_k_contacts_per_response() {
        let seeds = vec![node(0).1];
        let mut l =
            Lookup::new(LookupKind::FindNode, NodeId([0; 32]), NodeId([9; 32]), seeds, cfg(1));
        let (c, _) = l.next_request().unwrap();
        let many: Vec<Contact> = (1..30).map(|n| node(n).1).collect();
        l.on_response(&c.id(), DhtResponse::Nodes { closer: many.clone() }, 0).unwrap();
        let mut asked = Vec::new();
        while !l.is_finished() {
            for c in drain(&mut l) {
                asked.push(c.id());
                l.on_failure(&c.id());
            }
        }
        assert!(asked.iter().all(|id| many[..4].iter().any(|c| c.id() == *id)));
    }

    #[test]
    fn find_value_checks_and_stops() {
        let (owner, _) = node(100);
        let rec = SignedRecord::sign(&owner, b"s", 5, 1000, b"v").unwrap();
        let key = rec.key();
        let seeds: Vec<Contact> = (0..6).map(|n| node(n).1).collect();
        let mut l = Lookup::new(LookupKind::FindValue, key, NodeId([9; 32]), seeds, cfg(2));
        let batch = drain(&mut l);
        assert!(matches!(batch.len(), 4));
        // Expired, forged and misplaced records are rejected.
        assert!(matches!(
            l.on_response(
                &batch[0].id(),
                DhtResponse::Value { record: Some(rec.clone()), closer: vec![] },
                2000
            ),
            Err(DhtError::Expired { .. })
        ));
        let mut forged = rec.clone();
        forged.seq = 6;
        assert_eq!(
            l.on_response(
                &batch[1].id(),
                DhtResponse::Value { record: Some(forged), closer: vec![] },
                0
            ),
            Err(DhtError::BadSignature)
        );
        let other = SignedRecord::sign(&owner, b"t", 5, 1000, b"v").unwrap();
        assert!(matches!(
            l.on_response(
                &batch[2].id(),
                DhtResponse::Value { record: Some(other), closer: vec![] },
                0
            ),
            Err(DhtError::KeyMismatch(_))
        ));
        l.on_response(
            &batch[3].id(),
            DhtResponse::Value { record: Some(rec.clone()), closer: vec![] },
            0,
        )
        .unwrap();
        assert!(l.is_finished());
        assert_eq!(l.next_request(), None);
        assert_eq!(l.result().record, Some(rec));
        assert_eq!(l.result().hops, 1);
    }

    #[test]
    fn providers_collected_and_checked() {
        let key = NodeId([3; 32]);
        let seeds: Vec<Contact> = (0..2).map(|n| node(n).1).collect();
        let mut l = Lookup::new(LookupKind::GetProviders, key, NodeId([9; 32]), seeds, cfg(1));
        let batch = drain(&mut l);
        let (pid, pc) = node(50);
        let good = ProviderRecord::sign(&pid, key, pc.clone(), 100).unwrap();
        let wrong = ProviderRecord::sign(&pid, NodeId([4; 32]), pc, 100).unwrap();
        l.on_response(
            &batch[0].id(),
            DhtResponse::Providers { providers: vec![good.clone(), good.clone()], closer: vec![] },
            0,
        )
        .unwrap();
        assert!(
            l.on_response(
                &batch[1].id(),
                DhtResponse::Providers { providers: vec![wrong], closer: vec![] },
                0
            )
            .is_err()
        );
        assert!(l.is_finished());
        assert_eq!(l.result().providers, vec![good]);
    }

    #[test]
    fn request_budget_and_empty_seeds() {
        let l = Lookup::new(LookupKind::FindNode, NodeId([0; 32]), NodeId([9; 32]), vec![], cfg(3));
        assert!(l.is_finished());
        let seeds: Vec<Contact> = (0..10).map(|n| node(n).1).collect();
        let mut c = cfg(1);
        c.max_requests = 3;
        c.alpha = 10;
        let mut l = Lookup::new(LookupKind::FindNode, NodeId([0; 32]), NodeId([9; 32]), seeds, c);
        let batch = drain(&mut l);
        assert_eq!(batch.len(), 3);
        for c in &batch {
            l.on_failure(&c.id());
        }
        assert!(l.is_finished());
    }
}
