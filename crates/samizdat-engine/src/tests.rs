//! Engine tests over a direct in-memory pump (no simulator): every `Send` is delivered at once.
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]
use super::*;
use samizdat_content::{ContentKey, Manifest, encode};
use samizdat_identity::{Identity, PeerRecord};
use samizdat_session::SessionConfig;

const T0: u64 = 1_800_000_000;

/// A content source that corrupts one group of everything it serves.
struct Corrupting(MemorySource, u32);

impl ContentSource for Corrupting {
    fn lookup(&self, locator: &Locator) -> Option<(ContentRoot, std::sync::Arc<Outboard>)> {
        self.0.lookup(locator)
    }
    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>> {
        let mut g = self.0.read_group(root, index)?;
        if index % self.1 == 1 {
            g[0] ^= 0xff;
        }
        Some(g)
    }
}

type Node = Engine<Box<dyn ContentSource>>;

struct Net {
    now: Instant,
    nodes: Vec<Node>,
    /// (node, conn) -> (node, conn)
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    events: Vec<Vec<Event>>,
    /// Chunk-group reads each node was asked for (what it served).
    reads: Vec<usize>,
    /// A node whose messages are dropped once the receiver has authenticated it (a peer that
    /// handshakes and then stays silent).
    mute: Option<usize>,
    /// Most DHT exchanges any node had in flight at once.
    max_exchanges: usize,
    /// Nodes that accept connections but never send a byte or close one (a stalling peer).
    silent: BTreeSet<usize>,
}

impl Net {
    fn new(sources: Vec<Box<dyn ContentSource>>) -> Net {
        Net::with(sources, |_| {})
    }

    fn with(sources: Vec<Box<dyn ContentSource>>, tweak: impl Fn(&mut EngineConfig)) -> Net {
        let now = Instant::now();
        let nodes = sources
            .into_iter()
            .enumerate()
            .map(|(i, src)| {
                // Fixed identities: a run replays exactly (orders keyed by node ID included).
                let mut cfg = SessionConfig::new(fixed_identity(i as u8));
                cfg.listen = vec![PeerAddr::new(&format!("test/{i}")).unwrap()];
                let mut config = EngineConfig::new(cfg);
                tweak(&mut config);
                Engine::new(config, src, [i as u8; 32], now, T0)
            })
            .collect::<Vec<_>>();
        let n = nodes.len();
        Net {
            now,
            nodes,
            links: BTreeMap::new(),
            events: (0..n).map(|_| Vec::new()).collect(),
            reads: vec![0; n],
            mute: None,
            max_exchanges: 0,
            silent: BTreeSet::new(),
        }
    }

    fn run(&mut self) {
        loop {
            let mut progress = false;
            for i in 0..self.nodes.len() {
                let exchanges = self.nodes[i].conns.values().filter(|c| c.exchange.is_some());
                self.max_exchanges = self.max_exchanges.max(exchanges.count());
                while let Some(a) = self.nodes[i].poll_action() {
                    progress = true;
                    match a {
                        Action::Connect { conn, addr } => {
                            let j: usize = addr.address().parse().unwrap();
                            if j >= self.nodes.len() {
                                self.nodes[i].connect_failed(
                                    self.now,
                                    conn,
                                    health::LinkFailure::Refused,
                                );
                                continue;
                            }
                            let remote = self.nodes[j].accept(self.now, None).unwrap();
                            self.links.insert((i, conn), (j, remote));
                            self.links.insert((j, remote), (i, conn));
                            self.nodes[i].connected(self.now, conn);
                        }
                        Action::Send { conn, data } => {
                            self.nodes[i].on_written(conn, data.len());
                            if self.silent.contains(&i) {
                                continue;
                            }
                            if let Some(&(j, rc)) = self.links.get(&(i, conn)) {
                                let up =
                                    self.nodes[j].conns.get(&rc).is_some_and(|c| c.peer.is_some());
                                if self.mute == Some(i) && up {
                                    continue;
                                }
                                self.nodes[j].handle_input_owned(self.now, rc, data);
                            }
                        }
                        Action::ReadGroup { read, root, index } => {
                            self.reads[i] += 1;
                            let data = self.nodes[i].source().read_group(&root, index);
                            self.nodes[i].read_done(read, data);
                        }
                        Action::Close { .. } if self.silent.contains(&i) => {}
                        Action::Close { conn } => {
                            if let Some((j, rc)) = self.links.remove(&(i, conn)) {
                                self.links.remove(&(j, rc));
                                self.nodes[j].closed(self.now, rc);
                            }
                        }
                    }
                }
                while let Some(e) = self.nodes[i].poll_event() {
                    progress = true;
                    if let Event::GroupVerified { root, .. } = &e {
                        let root = *root;
                        self.nodes[i].stored(self.now, &root, 1);
                    }
                    self.events[i].push(e);
                }
            }
            if !progress {
                return;
            }
        }
    }

    fn verified_bytes(&self, node: usize, root: ContentRoot) -> Vec<(u32, Vec<u8>)> {
        self.events[node]
            .iter()
            .filter_map(|e| match e {
                Event::GroupVerified { root: r, index, data, .. } if *r == root => {
                    Some((*index, data.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn completed(&self, node: usize, root: ContentRoot) -> bool {
        self.events[node]
            .iter()
            .any(|e| matches!(e, Event::TransferComplete { root: r } if *r == root))
    }

    fn failed(&self, node: usize) -> Option<TransferError> {
        self.events[node].iter().find_map(|e| match e {
            Event::TransferFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
    }

    /// A source spec pinned to node `i`'s identity.
    fn pinned(&self, i: usize) -> SourceSpec {
        SourceSpec::Direct { node: Some(self.nodes[i].node_id()), addr: addr(i) }
    }

    fn id(&self, i: usize) -> SourceId {
        SourceId::Node(self.nodes[i].node_id())
    }
}

/// A test blob: its spec (root, locator, length), outboard and bytes.
struct TestBlob {
    spec: FetchSpec,
    outboard: Outboard,
    data: Vec<u8>,
}

impl TestBlob {
    fn source(&self) -> MemorySource {
        let mut s = MemorySource::new();
        s.insert(self.spec.locator, self.spec.root, self.outboard.clone(), self.data.clone());
        s
    }
}

fn blob(len: usize) -> TestBlob {
    let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    let m = Manifest { name: "f".into(), size: len as u64, mime: String::new() };
    let mut out = Vec::new();
    let key = ContentKey::from_bytes([5; 32]);
    let enc = encode(&key, &m, &data[..], &mut out).unwrap();
    let spec =
        FetchSpec { root: enc.root, locator: key.locator(&enc.root), blob_len: out.len() as u64 };
    TestBlob { spec, outboard: enc.outboard, data: out }
}

fn reassemble(mut groups: Vec<(u32, Vec<u8>)>) -> Vec<u8> {
    groups.sort_by_key(|g| g.0);
    groups.into_iter().flat_map(|g| g.1).collect()
}

fn addr(i: usize) -> PeerAddr {
    PeerAddr::new(&format!("test/{i}")).unwrap()
}

#[test]
fn downloads_and_verifies_a_blob() {
    let b = blob(3_000_000);
    let mut net = Net::new(vec![Box::new(b.source()), Box::new(MemorySource::new())]);
    let now = net.now;
    let src = net.pinned(0);
    net.nodes[1].fetch(now, b.spec, vec![src], Resume::default());
    net.run();
    assert!(net.completed(1, b.spec.root));
    assert_eq!(reassemble(net.verified_bytes(1, b.spec.root)), b.data);
    assert!(net.nodes[1].peers().iter().all(|p| p.established));
}

#[test]
fn a_download_reaches_its_sources_anonymously_and_answers_them_nothing() {
    let b = blob(600_000);
    // Node 1 fetches from nodes 0 and 2; it also has the file itself, and is an identified
    // peer of node 0 already (an overlay link node 0 must not see the download on).
    let sources: Vec<Box<dyn ContentSource>> =
        vec![Box::new(b.source()), Box::new(b.source()), Box::new(b.source())];
    let mut net = Net::with(sources, |c| {
        c.relay = true;
        local_test_net(c);
        c.target_outbound = 0;
    });
    let now = net.now;
    let overlay = net.nodes[1].connect(now, addr(0)).unwrap();
    net.run();
    let fetcher = net.nodes[1].node_id();
    let (src0, src2) = (net.pinned(0), net.pinned(2));
    net.nodes[1].fetch(now, b.spec, vec![src0, src2], Resume::default());
    net.run();
    assert!(net.completed(1, b.spec.root));
    assert_eq!(reassemble(net.verified_bytes(1, b.spec.root)), b.data);
    // Each source saw a stranger, a different one, never the fetcher's identity (node 0 saw
    // it once: on the overlay link, which the download did not use).
    let ups = |j: usize| -> Vec<NodeId> {
        let events = &net.events[j];
        events
            .iter()
            .filter_map(|e| match e {
                Event::PeerUp { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect()
    };
    let (at0, at2) = (ups(0), ups(2));
    assert_eq!(at0.iter().filter(|n| **n == fetcher).count(), 1, "{at0:?}");
    assert!(!at2.contains(&fetcher), "{at2:?}");
    let stranger0 = *at0.iter().find(|n| **n != fetcher).unwrap();
    assert!(!at2.contains(&stranger0), "two sources can match the fetcher by identity");
    // The download's links ended with it; the overlay link stays. Nothing the sources said
    // about themselves on those links went into the address book.
    let links = net.nodes[1].peers();
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(links[0].conn == overlay && !links[0].anonymous);
    assert!(!net.nodes[1].addrs().contains(&addr(2)), "learnt from an anonymous link");

    // A download from node 2 of a file it does not have keeps its anonymous link open.
    // Nothing of the fetcher comes back on it: not the file it holds (asked directly or on a
    // relayed stream), not a relay to itself, not its peers.
    let other = blob(50_000);
    let other_spec = FetchSpec { root: ContentRoot([9; 32]), ..other.spec };
    let src2 = net.pinned(2);
    net.nodes[1].fetch(now, other_spec, vec![src2], Resume::default());
    net.run();
    let links = net.nodes[1].peers();
    let anon = links.iter().find(|p| p.anonymous).expect("an anonymous link");
    let (_, remote) = net.links[&(1, anon.conn)];
    let reads = net.reads[1];
    let locator = b.spec.locator;
    let s = &mut net.nodes[2].conns.get_mut(&remote).unwrap().session;
    s.send(&Message::Transfer(TransferMsg::GetOutboard { req: 77, locator, first: 0, count: 1 }))
        .unwrap();
    s.send(&Message::Transfer(TransferMsg::GetGroups { req: 78, locator, first: 0, count: 1 }))
        .unwrap();
    s.send(&Message::Relay(RelayMsg::Open { stream: 2, target: fetcher.0 })).unwrap();
    s.send(&Message::Peers(PeersMsg::GetAddr)).unwrap();
    net.nodes[2].flush(remote);
    net.run();
    assert_eq!(net.reads[1], reads, "the fetcher read nothing for the source");
    let c = &net.nodes[1].conns[&anon.conn];
    assert!(!c.answered_getaddr && c.relayed.is_empty() && c.serve.is_empty());
    assert!(net.nodes[2].conns.contains_key(&remote), "refused, not cut off");
    // A relayed stream over that link (one the fetcher opened) is refused the same way.
    let anon_conn = anon.conn;
    let n = {
        let c = net.nodes[1].conns.get_mut(&anon_conn).unwrap();
        let n = c.alloc_stream();
        c.relayed.insert(n, RelayEnd::Local);
        n
    };
    let get = TransferMsg::GetGroups { req: 79, locator, first: 0, count: 1 };
    assert!(net.nodes[1].on_stream_message(now, StreamId::Relayed(anon_conn, n), get));
    net.run();
    assert_eq!(net.reads[1], reads, "served on a relayed stream of an anonymous link");
    // Cancelled, the download's link is closed.
    net.nodes[1].cancel(&other_spec.root);
    net.run();
    assert!(net.nodes[1].peers().iter().all(|p| !p.anonymous));
}

#[test]
fn without_anonymous_downloads_a_download_uses_the_identified_link() {
    let b = blob(200_000);
    let sources: Vec<Box<dyn ContentSource>> =
        vec![Box::new(b.source()), Box::new(MemorySource::new())];
    let mut net = Net::with(sources, |c| c.anonymous_downloads = false);
    let now = net.now;
    net.nodes[1].connect(now, addr(0)).unwrap();
    net.run();
    let src = net.pinned(0);
    net.nodes[1].fetch(now, b.spec, vec![src], Resume::default());
    net.run();
    assert!(net.completed(1, b.spec.root));
    let links = net.nodes[1].peers();
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(!links[0].anonymous);
    assert_eq!(net.nodes[0].peers()[0].node_id, Some(net.nodes[1].node_id()));
}

#[test]
fn a_pinned_hint_with_another_identity_is_refused() {
    let b = blob(200_000);
    // Node 0 serves the file at the address the link names, but the link pins node 2.
    let sources: Vec<Box<dyn ContentSource>> =
        vec![Box::new(b.source()), Box::new(MemorySource::new()), Box::new(b.source())];
    let mut net = Net::new(sources);
    let now = net.now;
    let wrong = SourceSpec::Direct { node: Some(net.nodes[2].node_id()), addr: addr(0) };
    net.nodes[1].fetch(now, b.spec, vec![wrong], Resume::default());
    for _ in 0..10 {
        net.run();
        let t = net.nodes[1].poll_timeout().unwrap_or(net.now);
        net.now = net.now.max(t);
        let now = net.now;
        net.nodes[1].handle_timeout(now);
    }
    net.run();
    assert!(net.events[1].iter().any(|e| matches!(e, Event::IdentityMismatch { .. })));
    assert_eq!(net.failed(1), Some(TransferError::IdentityMismatch));
    assert!(net.verified_bytes(1, b.spec.root).is_empty());
    assert_eq!(net.reads[0], 0, "the impostor was never asked for content");
    assert!(TransferError::IdentityMismatch.to_string().contains("identity mismatch"));
}

#[test]
fn only_sources_are_asked_and_only_by_locator() {
    let b = blob(300_000);
    // Node 1 has the file and is connected, but is not a source of this download.
    let sources: Vec<Box<dyn ContentSource>> =
        vec![Box::new(b.source()), Box::new(b.source()), Box::new(MemorySource::new())];
    let mut net = Net::new(sources);
    let now = net.now;
    net.nodes[2].connect(now, addr(1)).unwrap();
    net.run();
    let src = net.pinned(0);
    net.nodes[2].fetch(now, b.spec, vec![src], Resume::default());
    net.run();
    assert!(net.completed(2, b.spec.root));
    assert_eq!(net.reads[1], 0, "a connected non-source was asked for content");
    assert!(net.reads[0] > 0);

    // A peer that knows only the root cannot probe for the file: asking by root is NotFound.
    let c = net.nodes[2].connect(now, addr(1)).unwrap();
    net.run();
    let probe =
        TransferMsg::GetOutboard { req: 77, locator: Locator(b.spec.root.0), first: 0, count: 1 };
    net.nodes[2].conns.get_mut(&c).unwrap().session.send(&Message::Transfer(probe)).unwrap();
    net.nodes[2].flush(c);
    net.run();
    assert_eq!(net.reads[1], 0);
}

/// A source that serves the real leaves with a forged blob length.
struct LyingLength(MemorySource);

impl ContentSource for LyingLength {
    fn lookup(&self, locator: &Locator) -> Option<(ContentRoot, std::sync::Arc<Outboard>)> {
        let (root, o) = self.0.lookup(locator)?;
        let mut forged = (*o).clone();
        forged.blob_len -= 1;
        Some((root, std::sync::Arc::new(forged)))
    }
    fn read_group(&self, root: &ContentRoot, index: u32) -> Option<Vec<u8>> {
        self.0.read_group(root, index)
    }
}

#[test]
fn a_forged_length_blames_the_liar_and_never_the_honest_seeder() {
    let b = blob(1_000_000);
    let sources: Vec<Box<dyn ContentSource>> = vec![
        Box::new(LyingLength(b.source())),
        Box::new(b.source()),
        Box::new(MemorySource::new()),
    ];
    let mut net = Net::new(sources);
    let now = net.now;
    let srcs = vec![net.pinned(0), net.pinned(1)];
    net.nodes[2].fetch(now, b.spec, srcs, Resume::default());
    net.run();
    assert!(net.completed(2, b.spec.root));
    assert_eq!(reassemble(net.verified_bytes(2, b.spec.root)), b.data);
    let liar = net.id(0);
    let penalised: Vec<SourceId> = net.events[2]
        .iter()
        .filter_map(|e| match e {
            Event::PeerPenalized { source, .. } => Some(*source),
            _ => None,
        })
        .collect();
    assert!(penalised.iter().all(|s| *s == liar), "{penalised:?}");
    assert_eq!(net.nodes[2].reputation(&net.id(1)), 0);
    // A resume outboard whose length differs from the link's is not trusted either.
    let mut short = b.outboard.clone();
    short.blob_len -= 1;
    let t = Transfer::new(now, b.spec, Resume { outboard: Some(short), have: vec![] });
    assert_eq!(t.progress().0, 0);
    assert!(!t.is_complete());
}

#[test]
fn corrupt_peer_is_detected_and_honest_peer_completes() {
    let b = blob(2_000_000);
    let sources: Vec<Box<dyn ContentSource>> = vec![
        Box::new(Corrupting(b.source(), 3)),
        Box::new(b.source()),
        Box::new(MemorySource::new()),
    ];
    let mut net = Net::new(sources);
    let now = net.now;
    let srcs = vec![net.pinned(0), net.pinned(1)];
    net.nodes[2].fetch(now, b.spec, srcs, Resume::default());
    net.run();
    assert!(net.completed(2, b.spec.root));
    assert_eq!(reassemble(net.verified_bytes(2, b.spec.root)), b.data);
    let bad = net.id(0);
    assert!(net.events[2].iter().any(|e| matches!(e,
        Event::PeerPenalized { source, offence: Offence::CorruptGroup } if *source == bad)));
    assert!(net.nodes[2].reputation(&bad) < 0);
    assert_eq!(net.nodes[2].reputation(&net.id(1)), 0);
}

#[test]
fn downloads_from_several_peers_at_once() {
    let b = blob(8_000_000);
    let mut sources: Vec<Box<dyn ContentSource>> = Vec::new();
    for _ in 0..3 {
        sources.push(Box::new(b.source()));
    }
    sources.push(Box::new(MemorySource::new()));
    let mut net = Net::new(sources);
    let now = net.now;
    let srcs = vec![net.pinned(0), net.pinned(1), net.pinned(2)];
    net.nodes[3].fetch(now, b.spec, srcs, Resume::default());
    net.run();
    assert!(net.completed(3, b.spec.root));
    let from: BTreeSet<SourceId> = net.events[3]
        .iter()
        .filter_map(|e| match e {
            Event::GroupVerified { from, .. } => Some(*from),
            _ => None,
        })
        .collect();
    assert_eq!(from.len(), 3, "groups came from every seeder");
}

#[test]
fn a_transfer_runs_unchanged_over_a_relayed_stream() {
    let b = blob(1_500_000);
    let sources: Vec<Box<dyn ContentSource>> =
        vec![Box::new(b.source()), Box::new(MemorySource::new()), Box::new(MemorySource::new())];
    let mut net = Net::with(sources, |c| c.relay = true);
    let now = net.now;
    // Node 1 (the relay) is linked to the seeder; node 2 reaches the seeder only through it.
    net.nodes[1].connect(now, addr(0)).unwrap();
    net.run();
    let spec = SourceSpec::Relayed {
        relay: net.nodes[1].node_id(),
        relay_addr: addr(1),
        target: net.nodes[0].node_id(),
    };
    net.nodes[2].fetch(now, b.spec, vec![spec], Resume::default());
    net.run();
    assert!(net.completed(2, b.spec.root));
    assert_eq!(reassemble(net.verified_bytes(2, b.spec.root)), b.data);
    assert!(net.nodes[2].peers().iter().all(|p| p.addr == Some(addr(1))), "no direct link");
    let relayed =
        SourceId::Relayed { relay: net.nodes[1].node_id(), target: net.nodes[0].node_id() };
    assert!(net.events[2].iter().all(|e| match e {
        Event::GroupVerified { from, .. } => *from == relayed,
        _ => true,
    }));
    assert_eq!(net.reads[1], 0, "the relay served nothing itself");
    // Streams are closed on both sides when the download ends: the relay keeps no slot.
    assert!(net.nodes[1].conns.values().all(|c| c.relayed.is_empty()));
    assert!(net.nodes[2].conns.values().all(|c| c.relayed.is_empty()));
}

#[test]
fn a_relay_that_does_not_relay_refuses_the_stream() {
    let b = blob(100_000);
    let sources: Vec<Box<dyn ContentSource>> =
        vec![Box::new(b.source()), Box::new(MemorySource::new()), Box::new(MemorySource::new())];
    let mut net = Net::new(sources); // relaying is off by default
    let now = net.now;
    net.nodes[1].connect(now, addr(0)).unwrap();
    net.run();
    let spec = SourceSpec::Relayed {
        relay: net.nodes[1].node_id(),
        relay_addr: addr(1),
        target: net.nodes[0].node_id(),
    };
    net.nodes[2].fetch(now, b.spec, vec![spec], Resume::default());
    net.run();
    assert!(!net.completed(2, b.spec.root));
    assert_eq!(net.reads[0], 0);
}

#[test]
fn resume_fetches_only_missing_groups() {
    let b = blob(1_000_000);
    let mut net = Net::new(vec![Box::new(b.source()), Box::new(MemorySource::new())]);
    let now = net.now;
    let ob = b.outboard.clone();
    let have: Vec<bool> = (0..ob.groups()).map(|i| i % 2 == 0).collect();
    let resume = Resume { outboard: Some(ob.clone()), have: have.clone() };
    let src = net.pinned(0);
    net.nodes[1].fetch(now, b.spec, vec![src], resume);
    net.run();
    assert!(net.completed(1, b.spec.root));
    let got: Vec<u32> = net.verified_bytes(1, b.spec.root).iter().map(|g| g.0).collect();
    let expected: Vec<u32> = (0..ob.groups()).filter(|i| !have[*i as usize]).collect();
    assert_eq!(got, expected);
}

#[test]
fn forged_resume_outboard_is_ignored() {
    let b = blob(500_000);
    let mut net = Net::new(vec![Box::new(b.source()), Box::new(MemorySource::new())]);
    let now = net.now;
    let mut forged = b.outboard.clone();
    forged.leaves[0][0] ^= 1;
    let resume = Resume { outboard: Some(forged), have: vec![true; b.outboard.groups() as usize] };
    let src = net.pinned(0);
    net.nodes[1].fetch(now, b.spec, vec![src], resume);
    net.run();
    assert!(net.completed(1, b.spec.root));
    assert_eq!(net.verified_bytes(1, b.spec.root).len(), b.outboard.groups() as usize);
}

#[test]
fn missing_content_fails_after_stall_timeout() {
    let b = blob(10_000);
    let mut net = Net::new(vec![Box::new(MemorySource::new()), Box::new(MemorySource::new())]);
    let now = net.now;
    let src = net.pinned(0);
    net.nodes[1].fetch(now, b.spec, vec![src], Resume::default());
    net.run();
    assert!(!net.completed(1, b.spec.root));
    let deadline = net.nodes[1].poll_timeout().unwrap();
    net.nodes[1].handle_timeout(deadline + Duration::from_secs(61));
    net.run();
    assert_eq!(net.failed(1), Some(TransferError::NoSources));
}

#[test]
fn too_large_a_blob_is_refused() {
    let mut b = blob(10_000);
    let mut net = Net::with(vec![Box::new(MemorySource::new())], |c| c.max_blob_len = 1000);
    b.spec.blob_len = 5000;
    let now = net.now;
    net.nodes[0].fetch(now, b.spec, vec![], Resume::default());
    net.run();
    assert_eq!(net.failed(0), Some(TransferError::TooLarge(5000)));
}

#[test]
fn request_floods_are_cut_off() {
    let b = blob(100_000);
    let mut net = Net::new(vec![Box::new(b.source()), Box::new(MemorySource::new())]);
    let now = net.now;
    let c = net.nodes[1].connect(now, addr(0)).unwrap();
    net.run();
    // Bypass the transfer logic: ask for far more than the queue bound, never reading.
    for req in 0..10 {
        let s = &mut net.nodes[1].conns.get_mut(&c).unwrap().session;
        let m = TransferMsg::GetGroups { req, locator: b.spec.locator, first: 0, count: 3 };
        for _ in 0..40 {
            s.send(&Message::Transfer(m.clone())).unwrap();
        }
    }
    net.nodes[1].flush(c);
    net.run();
    assert!(net.nodes[0].peers().is_empty(), "flooding peer was disconnected");
}

#[test]
fn unreachable_peers_fail_after_redials() {
    let b = blob(10_000);
    let mut net = Net::new(vec![Box::new(MemorySource::new())]);
    let mut now = net.now;
    // "test/7" does not exist: the harness reports the dial as failed.
    let src = SourceSpec::Direct { node: None, addr: addr(7) };
    net.nodes[0].fetch(now, b.spec, vec![src], Resume::default());
    for _ in 0..20 {
        while let Some(a) = net.nodes[0].poll_action() {
            if let Action::Connect { conn, .. } = a {
                net.nodes[0].connect_failed(now, conn, health::LinkFailure::Refused);
            }
        }
        while let Some(e) = net.nodes[0].poll_event() {
            net.events[0].push(e);
        }
        // (The DHT's own timers keep the engine waking up after the download is gone.)
        if net.events[0].iter().any(|e| matches!(e, Event::TransferFailed { .. })) {
            break;
        }
        match net.nodes[0].poll_timeout() {
            Some(t) => now = t,
            None => break,
        }
        net.nodes[0].handle_timeout(now);
    }
    assert!(net.events[0].iter().any(|e| matches!(e, Event::TransferFailed { .. })));
    let waited = now - net.now;
    assert!(waited < Duration::from_secs(20), "gave up after {waited:?}");
    let dials = net.events[0].iter().filter(|e| matches!(e, Event::PeerDown { .. })).count();
    assert_eq!(dials, 1 + MAX_REDIALS as usize);
}

#[test]
fn persistent_peers_are_redialled_forever_with_capped_backoff() {
    let mut net = Net::new(vec![Box::new(MemorySource::new())]);
    let mut now = net.now;
    net.nodes[0].add_persistent(now, addr(9));
    let mut dials = Vec::new();
    for _ in 0..40 {
        while let Some(a) = net.nodes[0].poll_action() {
            if let Action::Connect { conn, .. } = a {
                dials.push(now);
                net.nodes[0].connect_failed(now, conn, health::LinkFailure::Refused);
            }
        }
        match net.nodes[0].poll_timeout() {
            Some(t) => now = t.max(now),
            None => break,
        }
        net.nodes[0].handle_timeout(now);
    }
    assert!(dials.len() >= 30, "still redialling: {} dials", dials.len());
    let gaps: Vec<Duration> = dials.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().all(|g| *g <= Duration::from_secs(15)), "{gaps:?}");
    assert!(gaps.last().unwrap() >= &Duration::from_secs(14));
}

#[test]
fn inbound_slots_evict_unauthenticated_connections_and_spare_outbound_ones() {
    let mut net =
        Net::with(vec![Box::new(MemorySource::new()), Box::new(MemorySource::new())], |c| {
            c.max_inbound = 8;
            c.max_inbound_per_group = 4;
        });
    let now = net.now;
    let attacker: IpAddr = "198.51.100.7".parse().unwrap();
    let first: Vec<ConnId> =
        (0..4).map(|_| net.nodes[0].accept(now, Some(attacker)).unwrap()).collect();
    // The group is full: the next one from it evicts the oldest unauthenticated connection.
    let later = now + Duration::from_secs(1);
    net.nodes[0].accept(later, Some(attacker)).unwrap();
    assert!(!net.nodes[0].conns.contains_key(&first[0]));
    assert_eq!(net.nodes[0].conns.len(), 4);
    // Other groups still get in, up to the inbound limit, and then evict too.
    for i in 0..10u8 {
        let ip = IpAddr::from([203, 0, i, 1]);
        assert!(net.nodes[0].accept(later, Some(ip)).is_some());
    }
    assert_eq!(net.nodes[0].count(false), 8);
    // Outbound dials have their own budget.
    assert!(net.nodes[0].connect(later, addr(1)).is_some());
    // Unauthenticated connections time out within seconds.
    let mut t = later;
    while let Some(d) = net.nodes[0].poll_timeout() {
        if d > later + Duration::from_secs(9) || net.nodes[0].count(false) == 0 {
            break;
        }
        t = d;
        net.nodes[0].handle_timeout(t);
    }
    assert_eq!(net.nodes[0].count(false), 0, "unauthenticated inbound connections linger");
    assert!(t <= later + Duration::from_secs(8));
    assert_eq!(
        inbound_group("10.1.2.3".parse().unwrap()),
        inbound_group("10.1.2.200".parse().unwrap())
    );
    assert_ne!(
        inbound_group("10.1.2.3".parse().unwrap()),
        inbound_group("10.1.3.3".parse().unwrap())
    );
    assert_eq!(
        inbound_group("::ffff:10.1.2.3".parse().unwrap()),
        inbound_group("10.1.2.9".parse().unwrap())
    );
    assert_ne!(
        inbound_group("2001:db8::1".parse().unwrap()),
        inbound_group("2001:db9::1".parse().unwrap())
    );
}

#[test]
fn a_peer_that_sends_requests_but_never_reads_is_cut_off() {
    let mut net = Net::new(vec![Box::new(MemorySource::new()), Box::new(MemorySource::new())]);
    let now = net.now;
    let c = net.nodes[1].connect(now, addr(0)).unwrap();
    net.run();
    // Node 1 sends a flood of cheap requests; node 0's answers are never reported written.
    let mut flood = Vec::new();
    // (GetAddr is answered once per link, so pings make the output.)
    for i in 0..200_000u64 {
        let s = &mut net.nodes[1].conns.get_mut(&c).unwrap().session;
        s.send(&Message::Ping { nonce: i }).unwrap();
        flood.extend(s.poll_transmit().unwrap());
    }
    let remote = net.links[&(1, c)].1;
    let mut cut_off = false;
    for chunk in flood.chunks(64 * 1024) {
        net.nodes[0].handle_input(now, remote, chunk);
        if net.nodes[0].peers().is_empty() {
            cut_off = true;
            break;
        }
    }
    assert!(cut_off, "the flooding peer was not disconnected");
    assert!(net.nodes[0].reputation(&net.id(1)) < 0);
}

#[test]
fn a_bad_relayed_stream_ends_alone_and_the_relay_is_not_blamed() {
    let mut net = Net::new(vec![Box::new(MemorySource::new()), Box::new(MemorySource::new())]);
    let now = net.now;
    let c = net.nodes[1].connect(now, addr(0)).unwrap();
    net.run();
    let me0 = net.nodes[0].node_id().0;
    let s = &mut net.nodes[1].conns.get_mut(&c).unwrap().session;
    // The dialler numbers its streams odd: stream 1 ends at node 0; garbage follows on it.
    s.send(&Message::Relay(RelayMsg::Open { stream: 1, target: me0 })).unwrap();
    s.send(&Message::Relay(RelayMsg::Data { stream: 1, payload: vec![0xee, 1, 2] })).unwrap();
    net.nodes[1].flush(c);
    net.run();
    assert_eq!(net.nodes[0].peers().len(), 1, "the link survived");
    assert_eq!(net.nodes[0].reputation(&net.id(1)), 0, "the relay was not blamed");
    assert!(net.nodes[0].conns.values().all(|c| c.relayed.is_empty()), "the stream ended");
    // A number of the wrong parity (the other side's) is a protocol violation of the link.
    let s = &mut net.nodes[1].conns.get_mut(&c).unwrap().session;
    s.send(&Message::Relay(RelayMsg::Open { stream: 2, target: me0 })).unwrap();
    net.nodes[1].flush(c);
    net.run();
    assert!(net.nodes[0].peers().is_empty());
}

#[test]
fn get_addr_is_answered_once_per_link() {
    let mut net =
        Net::with(vec![Box::new(MemorySource::new()), Box::new(MemorySource::new())], |c| {
            c.addrbook.allow_local = true;
        });
    let now = net.now;
    let c = net.nodes[1].connect(now, addr(0)).unwrap();
    net.run();
    for _ in 0..5 {
        let s = &mut net.nodes[1].conns.get_mut(&c).unwrap().session;
        s.send(&Message::Peers(PeersMsg::GetAddr)).unwrap();
    }
    net.nodes[1].flush(c);
    net.run();
    let remote = net.links[&(1, c)].1;
    assert!(net.nodes[0].conns[&remote].answered_getaddr);
    // One answer came back, and only signed records in it.
    let answers = net.nodes[1].pex.kept().1;
    assert_eq!(answers, 1, "node 0's own record, kept by node 1");
}

/// Sends `records` to the far end of `conn` of node `from`, raw, vouching for those whose bits
/// are set in `vouched`.
fn send_records(net: &mut Net, from: usize, conn: ConnId, records: Vec<Vec<u8>>, vouched: u16) {
    // As if the receiver had asked (it asks once per link, and takes one answer).
    let (to, remote) = net.links[&(from, conn)];
    net.nodes[to].conns.get_mut(&remote).unwrap().asked_getaddr = true;
    let s = &mut net.nodes[from].conns.get_mut(&conn).unwrap().session;
    s.send(&Message::Peers(PeersMsg::Records { records, vouched })).unwrap();
    net.nodes[from].flush(conn);
    net.run();
}

/// `n` nodes on a local network where only peer exchange finds peers (no DHT), and nobody
/// fills outbound slots until a test asks.
fn pex_net(n: usize) -> Net {
    Net::with(memory_sources(n), |c| {
        local_test_net(c);
        c.target_outbound = 0;
        c.dht = None;
    })
}

#[test]
fn peer_exchange_passes_on_signed_records_pinned_to_their_keys_and_the_teller() {
    let mut net = pex_net(3);
    let now = net.now;
    net.nodes[2].connect(now, addr(1));
    net.run();
    net.nodes[0].connect(now, addr(1));
    net.run();
    let (two, one) = (net.nodes[2].node_id(), net.nodes[1].node_id());
    // Node 2's record reached node 0 through the hub: pinned to 2, told by 1, who does not
    // vouch for it (node 2 dialled the hub, not the other way round).
    let pin = addrbook::Pin { node: two, teller: Some(one), vouched: false };
    assert_eq!(net.nodes[0].addrs.pin(&addr(2)), Some(pin));
    // The hub's own record: node 0 dialled the hub at an address it names, so it is confirmed.
    assert_eq!(net.nodes[0].kept_peer_records(), (1, 1));
    // The hub keeps both peers' own records (neither confirmed: they dialled the hub).
    assert_eq!(net.nodes[1].kept_peer_records(), (0, 2));
    // Dialling the gossiped address reaches node 2 and wins the hub nothing (it is at 0).
    net.nodes[0].config.target_outbound = 2;
    net.nodes[0].handle_timeout(now);
    net.run();
    assert!(net.nodes[0].peers().iter().any(|p| p.node_id == Some(two) && p.established));
    assert_eq!(net.nodes[0].reputation(&SourceId::Node(one)), 0);
}

#[test]
fn forged_and_misattributed_records_cost_the_teller_and_reach_nobody() {
    let mut net = pex_net(4);
    let now = net.now;
    // Node 1 is hostile; nodes 2 and 3 are honest nodes neither has met.
    let c = net.nodes[1].connect(now, addr(0)).unwrap();
    net.run();
    let liar_id = net.nodes[1].node_id();
    let liar = SourceId::Node(liar_id);
    // A record of node 2 with one byte changed: refused, and the teller pays.
    let honest = PeerRecord::sign(&net.nodes[2].config.session.identity, &["test/7"], T0).unwrap();
    let mut forged = honest.encode();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    send_records(&mut net, 1, c, vec![forged, vec![1, 2, 3]], 0);
    assert!(!net.nodes[0].addrs.contains(&addr(7)));
    assert_eq!(net.nodes[0].reputation(&liar), -pex::PENALTY_BAD_RECORD);
    assert!(net.events[0].iter().any(|e| matches!(e,
        Event::PeerPenalized { source, offence: Offence::BadPeerRecord } if *source == liar)));
    // An expired record is skipped, but costs nothing (the clocks may differ).
    let old = PeerRecord::sign(&net.nodes[2].config.session.identity, &["test/7"], T0 - 2 * 86_400)
        .unwrap();
    send_records(&mut net, 1, c, vec![old.encode()], 0);
    assert_eq!(net.nodes[0].reputation(&liar), -pex::PENALTY_BAD_RECORD);
    assert!(!net.nodes[0].addrs.contains(&addr(7)));
    net.nodes[0].reputation.insert(liar, 0);
    // A key of the liar's own, signing node 2's address, passed on unchecked: pinned to that
    // key, so the dial meets node 2 and is refused as a mismatch; it costs the liar nothing,
    // and the address now belongs to the identity that answered there.
    let two = net.nodes[2].node_id();
    let unvouched = fixed_identity(0xa1);
    let claim0 = PeerRecord::sign(&unvouched, &["test/2"], T0).unwrap();
    net.nodes[0].config.target_outbound = 2;
    send_records(&mut net, 1, c, vec![claim0.encode()], 0);
    assert!(net.events[0].iter().any(|e| matches!(e,
        Event::IdentityMismatch { expected, got, .. } if *expected == unvouched.node_id() && *got == two)));
    assert!(!net.nodes[0].peers().iter().any(|p| p.node_id == Some(two) && p.established));
    let repinned = addrbook::Pin { node: two, teller: None, vouched: false };
    assert_eq!(net.nodes[0].addrs.pin(&addr(2)), Some(repinned));
    assert_eq!(net.nodes[0].reputation(&liar), 0);
    // Vouched for, the same lie about node 3's address costs the liar, once (node 0 now
    // dials everything it knows).
    net.nodes[0].config.target_outbound = 8;
    let three = net.nodes[3].node_id();
    let sybil = fixed_identity(0xa2);
    let claim = PeerRecord::sign(&sybil, &["test/3", "test/98"], T0).unwrap();
    send_records(&mut net, 1, c, vec![claim.encode()], 1);
    // (One identity is dialled at one address at a time: the other address comes next, once
    // a failed one's retry delay has passed.)
    let met = |net: &Net| {
        net.events[0].iter().any(|e| matches!(e,
            Event::IdentityMismatch { expected, got, .. } if *expected == sybil.node_id() && *got == three))
    };
    for round in 1..=20 {
        net.now = now + Duration::from_secs(30 * round);
        let t = net.now;
        net.nodes[0].handle_timeout(t);
        net.run();
        if met(&net) {
            break;
        }
    }
    assert!(met(&net));
    assert_eq!(net.nodes[0].reputation(&liar), -pex::PENALTY_WRONG_PEER);
    // Only the first address was vouched for: the second one is the liar's word alone.
    let second = net.nodes[0].addrs.pin(&PeerAddr::new("test/98").unwrap());
    assert_eq!(second.map(|p| p.vouched), Some(false));
    // An address that never answers costs a point, on the first dial only.
    let ghost = PeerRecord::sign(&fixed_identity(0xa3), &["test/99"], T0).unwrap();
    send_records(&mut net, 1, c, vec![ghost.encode()], 1);
    assert!(net.nodes[0].addrs.contains(&PeerAddr::new("test/99").unwrap()));
    // (Outbound slots are filled from a random choice of the book: give it a few rounds.)
    for _ in 0..20 {
        net.now += Duration::from_secs(30);
        let t = net.now;
        net.nodes[0].handle_timeout(t);
        net.run();
        if net.nodes[0].reputation(&liar) != -pex::PENALTY_WRONG_PEER {
            break;
        }
    }
    assert_eq!(net.nodes[0].reputation(&liar), -pex::PENALTY_WRONG_PEER - 1);
    // Dead addresses and wrong peers rank a teller down to where it is ignored, never to a
    // ban: gossip alone gets nobody refused.
    for _ in 0..40 {
        net.nodes[0].judge_teller(liar_id, None);
        net.nodes[0].judge_teller(liar_id, Some(false));
    }
    assert!(net.nodes[0].reputation(&liar) > BAN_THRESHOLD);
    assert!(net.nodes[0].reputation(&liar) <= pex::IGNORE_THRESHOLD);
    // Ranked down: at the threshold, even valid records are no longer taken.
    let valid = PeerRecord::sign(&fixed_identity(0xa4), &["test/8"], T0).unwrap();
    send_records(&mut net, 1, c, vec![valid.encode()], 1);
    assert!(!net.nodes[0].addrs.contains(&PeerAddr::new("test/8").unwrap()));
    // None of it was a content offence: the liar may still serve verified content.
    assert!(net.nodes[0].peers().iter().any(|p| p.node_id == Some(liar_id)));
    // Records that lead to the peer they name win points back, up to neutral and no further.
    for _ in 0..40 {
        net.nodes[0].judge_teller(liar_id, Some(true));
    }
    assert_eq!(net.nodes[0].reputation(&liar), 0);
    // Records nobody asked for break the protocol (verifying them costs the receiver).
    let s = &mut net.nodes[1].conns.get_mut(&c).unwrap().session;
    s.send(&Message::Peers(PeersMsg::Records { records: vec![valid.encode()], vouched: 0 }))
        .unwrap();
    net.nodes[1].flush(c);
    net.run();
    assert!(net.nodes[0].reputation(&liar) < 0);
    assert!(!net.nodes[0].addrs.contains(&PeerAddr::new("test/8").unwrap()));
    assert!(!net.nodes[0].peers().iter().any(|p| p.node_id == Some(liar_id)), "link closed");
}

#[test]
fn a_source_that_connects_and_never_delivers_does_not_keep_a_download_alive() {
    // Node 0 holds the blob and completes every handshake, then says nothing more, and hangs
    // up once it is dropped as a source: every redial gets a fresh link, usable for a while. Only verified data resets
    // the redials and the stall clock, so the download fails instead of cycling for ever.
    let b = blob(100_000);
    let mut net = Net::new(vec![Box::new(b.source()), Box::new(MemorySource::new())]);
    net.mute = Some(0);
    let src = net.pinned(0);
    let start = net.now;
    net.nodes[1].fetch(start, b.spec, vec![src], Resume::default());
    let mut links = 0;
    for _ in 0..10_000 {
        net.run();
        if net.failed(1).is_some() {
            break;
        }
        // Once dropped as a source, it hangs up, so the next dial gets a fresh link.
        let dropped = net.nodes[1].downloads.values().any(|d| !d.transfer.has_usable_stream());
        if dropped {
            let cut: Vec<_> = net.links.keys().copied().filter(|(n, _)| *n == 0).collect();
            for (n, conn) in cut {
                if let Some((m, rc)) = net.links.remove(&(n, conn)) {
                    net.links.remove(&(m, rc));
                    let now = net.now;
                    net.nodes[n].closed(now, conn);
                    net.nodes[m].closed(now, rc);
                }
            }
            net.run();
        }
        let Some(t) = [0, 1].iter().filter_map(|&i| net.nodes[i].poll_timeout()).min() else {
            break;
        };
        net.now = t.max(net.now);
        let now = net.now;
        for node in &mut net.nodes {
            node.handle_timeout(now);
        }
        links =
            links.max(net.events[1].iter().filter(|e| matches!(e, Event::PeerUp { .. })).count());
    }
    assert_eq!(net.failed(1), Some(TransferError::NoSources));
    assert!(!net.completed(1, b.spec.root));
    assert!(links >= 1, "the silent source was connected");
    let waited = net.now - start;
    assert!(waited < Duration::from_secs(600), "gave up only after {waited:?}");
}

#[test]
fn junk_requests_and_an_idle_relayed_stream_keep_no_inbound_slot() {
    let sources: Vec<Box<dyn ContentSource>> =
        (0..4).map(|_| Box::new(MemorySource::new()) as _).collect();
    let mut net = Net::with(sources, |c| c.max_inbound = 2);
    let t0 = net.now;
    // A connects first, opens a relayed stream to node 0 itself and keeps sending requests
    // for content node 0 does not have; B connects a second later and stays quiet.
    let a = net.nodes[1].connect(t0, addr(0)).unwrap();
    net.run();
    net.now = t0 + Duration::from_secs(1);
    net.nodes[2].connect(net.now, addr(0)).unwrap();
    net.run();
    let target = net.nodes[0].node_id().0;
    for (i, at) in [3u64, 6, 9].into_iter().enumerate() {
        net.now = t0 + Duration::from_secs(at);
        let c = net.nodes[1].conns.get_mut(&a).unwrap();
        if i == 0 {
            c.session.send(&Message::Relay(RelayMsg::Open { stream: 1, target })).unwrap();
        }
        let junk =
            TransferMsg::GetGroups { req: i as u32, locator: Locator([9; 32]), first: 0, count: 1 };
        c.session.send(&Message::Transfer(junk)).unwrap();
        net.nodes[1].flush(a);
        net.run();
    }
    let inbound = |net: &Net| net.nodes[0].conns.values().filter(|c| !c.outbound).count();
    assert_eq!(inbound(&net), 2);
    // A newcomer takes the slot of the least useful link: A's, whose junk and idle stream
    // count for nothing.
    net.now = t0 + Duration::from_secs(10);
    net.nodes[3].connect(net.now, addr(0)).unwrap();
    net.run();
    let up = |net: &Net, i: usize| {
        let id = net.nodes[i].node_id();
        net.nodes[0].conns.values().any(|c| c.peer_id() == Some(id))
    };
    assert!(!up(&net, 1), "the junk sender kept its slot");
    assert!(up(&net, 2) && up(&net, 3));
}

#[test]
fn inbound_connections_without_an_address_share_one_group_cap() {
    let mut net = Net::with(vec![Box::new(MemorySource::new())], |c| c.max_inbound_per_group = 5);
    let now = net.now;
    for _ in 0..12 {
        let _ = net.nodes[0].accept(now, None);
    }
    assert_eq!(net.nodes[0].count(false), 5);
}

#[test]
fn a_pinned_persistent_peer_is_used_only_if_it_proves_the_invited_identity() {
    let sources = || -> Vec<Box<dyn ContentSource>> {
        vec![Box::new(MemorySource::new()), Box::new(MemorySource::new())]
    };
    // The right identity: the peer comes up.
    let mut net = Net::new(sources());
    let id = net.nodes[1].node_id();
    let now = net.now;
    net.nodes[0].add_persistent_pinned(now, addr(1), id);
    net.run();
    assert!(net.events[0].iter().any(|e| matches!(e, Event::PeerUp { peer, .. } if *peer == id)));
    assert!(!net.events[0].iter().any(|e| matches!(e, Event::IdentityMismatch { .. })));
    // Another identity at the invited address: refused, and never counted as a peer.
    let mut net = Net::new(sources());
    let now = net.now;
    net.nodes[0].add_persistent_pinned(now, addr(1), NodeId([9; 32]));
    net.run();
    assert!(net.events[0].iter().any(|e| matches!(
        e,
        Event::IdentityMismatch { expected, .. } if *expected == NodeId([9; 32])
    )));
    assert!(!net.events[0].iter().any(|e| matches!(e, Event::PeerUp { .. })));
    assert!(net.nodes[0].peers().is_empty());
}

/// Lets the test harness's `test/N` addresses through the address book (as a local network).
fn local_test_net(c: &mut EngineConfig) {
    c.addrbook.allow_local = true;
    c.addrbook.transports.push("test".into());
}

/// The identity numbered `n` (the same in every run).
fn fixed_identity(n: u8) -> Identity {
    let mut secret = [0x5a; 32];
    secret[0] = n;
    Identity::from_secret_bytes(&secret).unwrap()
}

/// `n` nodes with nothing to serve.
fn memory_sources(n: usize) -> Vec<Box<dyn ContentSource>> {
    (0..n).map(|_| Box::new(MemorySource::new()) as Box<dyn ContentSource>).collect()
}

/// A local test net where only the DHT finds anyone: no rendezvous points, no outbound dials
/// but the ones a test makes.
fn dht_only(c: &mut EngineConfig) {
    local_test_net(c);
    c.rendezvous_slots = 0;
    c.target_outbound = 0;
}

/// Puts the DHT contact of node `of`'s identity, at node `at`'s address, straight into node
/// `into`'s table.
fn plant_contact(net: &mut Net, into: usize, of: usize, at: usize) {
    let difficulty = net.nodes[into].dht().unwrap().config().pow_difficulty;
    let id = net.nodes[of].config.session.identity.clone();
    let c = samizdat_dht::contact::Contact::for_identity(&id, difficulty, addr(at).to_string());
    let now = net.now;
    net.nodes[into].dht.as_mut().unwrap().dht.add_contact(c.unwrap(), now).unwrap();
}

#[test]
fn a_download_without_hints_finds_its_provider_through_the_dht() {
    let b = blob(300_000);
    // 0 shares the blob, 1 is a hub both know, 2 fetches knowing only the hub.
    let sources: Vec<Box<dyn ContentSource>> =
        vec![Box::new(b.source()), Box::new(MemorySource::new()), Box::new(MemorySource::new())];
    let mut net = Net::with(sources, local_test_net);
    let now = net.now;
    net.nodes[0].connect(now, addr(1));
    net.nodes[2].connect(now, addr(1));
    net.run();
    // Each side offered itself: the hub knows both, each knows the hub.
    assert_eq!(net.nodes[1].dht().unwrap().table().len(), 2);
    assert!(!net.nodes[0].dht().unwrap().table().is_empty());
    let key = NodeId([42; 32]);
    assert!(net.nodes[0].provide(now, key, T0 + 3600));
    net.run();
    assert_eq!(net.nodes[1].dht().unwrap().store().len(), 1, "the hub stores it");
    // The fetcher knows no source: the lookup finds node 0, pinned to its identity.
    net.nodes[2].fetch(now, b.spec, Vec::new(), Resume::default());
    assert!(net.nodes[2].find_providers(now, b.spec.root, key));
    net.run();
    assert!(net.events[2].iter().any(|e| matches!(e, Event::ProvidersFound { providers: 1, .. })));
    assert!(net.completed(2, b.spec.root), "{:?}", net.failed(2));
    assert_eq!(reassemble(net.verified_bytes(2, b.spec.root)), b.data);
    // A lookup of a key nobody provides finds nothing: the download without sources fails at
    // once, saying why.
    let other = blob(1000);
    net.nodes[2].fetch(now, other.spec, Vec::new(), Resume::default());
    assert!(net.nodes[2].find_providers(now, other.spec.root, NodeId([43; 32])));
    net.run();
    assert!(net.events[2].iter().any(|e| matches!(e, Event::ProvidersFound { providers: 0, .. })));
    assert_eq!(net.failed(2), Some(TransferError::NoProviders));
    assert!(TransferError::NoProviders.to_string().contains("DHT"));
}

#[test]
fn a_lookup_for_a_cancelled_download_does_not_count_for_the_next_one() {
    let b = blob(300_000);
    let sources: Vec<Box<dyn ContentSource>> =
        vec![Box::new(b.source()), Box::new(MemorySource::new()), Box::new(MemorySource::new())];
    let mut net = Net::with(sources, local_test_net);
    let now = net.now;
    net.nodes[0].connect(now, addr(1));
    net.nodes[2].connect(now, addr(1));
    net.run();
    let key = NodeId([42; 32]);
    assert!(net.nodes[0].provide(now, key, T0 + 3600));
    net.run();
    // A first download looks up a key nobody provides and is cancelled before the answer;
    // the second download of the same root looks up the right key. The first lookup ends
    // first and finds nothing: that must not fail the second download.
    net.nodes[2].fetch(now, b.spec, Vec::new(), Resume::default());
    assert!(net.nodes[2].find_providers(now, b.spec.root, NodeId([43; 32])));
    net.nodes[2].cancel(&b.spec.root);
    net.nodes[2].fetch(now, b.spec, Vec::new(), Resume::default());
    assert!(net.nodes[2].find_providers(now, b.spec.root, key));
    net.run();
    assert!(net.completed(2, b.spec.root), "{:?}", net.failed(2));
    assert_eq!(reassemble(net.verified_bytes(2, b.spec.root)), b.data);
    // A lookup for a root nobody downloads starts nothing.
    assert!(!net.nodes[2].find_providers(now, blob(10).spec.root, key));
}

#[test]
fn a_node_without_an_address_uses_the_dht_but_is_never_a_contact() {
    let mut net = Net::with(
        vec![Box::new(MemorySource::new()), Box::new(MemorySource::new())],
        local_test_net,
    );
    // Node 0 listens nowhere (a short-lived fetcher).
    let mut cfg = SessionConfig::new(Identity::generate(&mut rand_core::OsRng));
    cfg.listen = Vec::new();
    let mut config = EngineConfig::new(cfg);
    local_test_net(&mut config);
    net.nodes[0] = Engine::new(config, Box::new(MemorySource::new()), [9; 32], net.now, T0);
    let now = net.now;
    net.nodes[0].connect(now, addr(1));
    net.run();
    assert_eq!(net.nodes[1].dht().unwrap().table().len(), 0, "it offered no contact");
    assert_eq!(net.nodes[0].dht().unwrap().table().len(), 1);
    assert!(!net.nodes[0].provide(now, NodeId([1; 32]), T0 + 60), "nothing to provide as");
}

#[test]
fn a_provider_record_given_before_any_contact_is_stored_once_one_is_known() {
    let mut net = Net::with(
        vec![Box::new(MemorySource::new()), Box::new(MemorySource::new())],
        local_test_net,
    );
    let now = net.now;
    assert!(net.nodes[0].provide(now, NodeId([3; 32]), T0 + 3600), "kept for later");
    net.run();
    assert_eq!(net.nodes[1].dht().unwrap().store().len(), 0);
    net.nodes[0].connect(now, addr(1));
    net.run();
    assert_eq!(net.nodes[1].dht().unwrap().store().len(), 1, "stored at the first contact");
}

#[test]
fn announcements_are_shortened_to_what_stores_take_and_a_dead_one_holds_up_none() {
    let mut net = Net::with(
        vec![Box::new(MemorySource::new()), Box::new(MemorySource::new())],
        local_test_net,
    );
    let now = net.now;
    // Kept for later (no contact yet): one for three days, one for an hour, one that will
    // have expired by the time a contact turns up.
    let (far, near, dying) = (NodeId([4; 32]), NodeId([5; 32]), NodeId([6; 32]));
    assert!(net.nodes[0].provide(now, far, T0 + 3 * 86_400));
    assert!(net.nodes[0].provide(now, near, T0 + 3600));
    assert!(net.nodes[0].provide(now, dying, T0 + 5));
    net.now += Duration::from_secs(10);
    let later = net.now;
    net.nodes[0].connect(later, addr(1));
    net.run();
    let store = net.nodes[1].dht().unwrap().store();
    let wall = T0 + 10;
    assert_eq!(store.providers(&near, wall, 8).len(), 1, "the expired one held up nothing");
    let kept = store.providers(&far, wall, 8);
    assert_eq!(kept.len(), 1, "the long one was shortened, not refused");
    let ttl = net.nodes[0].dht().unwrap().config().store.max_ttl_secs;
    assert!(kept[0].expires_at <= T0 + ttl - 600);
    assert!(store.providers(&dying, wall, 8).is_empty());
}

#[test]
fn a_lookup_that_cannot_start_fails_a_download_without_sources_at_once() {
    let b = blob(1000);
    let mut net = Net::with(vec![Box::new(MemorySource::new())], local_test_net);
    let now = net.now;
    net.nodes[0].fetch(now, b.spec, Vec::new(), Resume::default());
    // The DHT knows nobody yet.
    assert!(!net.nodes[0].find_providers(now, b.spec.root, NodeId([1; 32])));
    net.run();
    assert_eq!(net.failed(0), Some(TransferError::NoProviders));
}

#[test]
fn remembered_dht_contacts_bring_a_restarted_node_back_without_a_bootstrap_peer() {
    let mut net = Net::with(
        vec![Box::new(MemorySource::new()), Box::new(MemorySource::new())],
        local_test_net,
    );
    let now = net.now;
    net.nodes[0].connect(now, addr(1));
    net.run();
    let remembered = net.nodes[0].dht_contacts(64);
    assert_eq!(remembered.len(), 1);
    // "Restart" node 0: a fresh engine with the same identity, no peers given.
    let mut cfg = SessionConfig::new(net.nodes[0].config.session.identity.clone());
    cfg.listen = vec![addr(0)];
    let mut config = EngineConfig::new(cfg);
    local_test_net(&mut config);
    net.nodes[0] = Engine::new(config, Box::new(MemorySource::new()), [7; 32], now, T0);
    net.events[0].clear();
    assert_eq!(net.nodes[0].restore_dht_contacts(now, remembered), 1);
    net.run();
    assert!(net.events[0].iter().any(|e| matches!(e, Event::PeerUp { .. })), "redialled");
    // A contact whose proof of work fails is not admitted.
    let forged = samizdat_dht::contact::Contact::new([3; 32], 0, "test/1").unwrap();
    assert_eq!(net.nodes[0].restore_dht_contacts(now, vec![forged]), 0);
}

#[test]
fn dht_contacts_are_asked_in_exchanges_that_keep_to_their_budget_and_leave_no_session() {
    let n = 24;
    let mut net = Net::with(memory_sources(n), dht_only);
    let now = net.now;
    for i in 2..n {
        net.nodes[i].connect(now, addr(1));
    }
    net.run();
    net.max_exchanges = 0;
    net.nodes[0].connect(now, addr(1));
    net.run();
    // The bootstrap lookup asked contacts it has no session with, one exchange each.
    let table = net.nodes[0].dht().unwrap().table().len();
    // (All test addresses share one address group, which the table's limits cap.)
    assert!(table > 2, "learned {table} contacts");
    assert!(net.max_exchanges > 1, "exchanges ran side by side");
    assert!(net.max_exchanges <= dht::MAX_DHT_EXCHANGES, "{} at once", net.max_exchanges);
    // No session but the one to the hub, on either side; every exchange is closed.
    assert_eq!(net.nodes[0].conns.len(), 1);
    assert!(net.nodes[0].is_connected_to(&addr(1)));
    for j in 2..n {
        assert_eq!(net.nodes[j].conns.len(), 1, "node {j} keeps only its link to the hub");
    }
}

#[test]
fn lookups_are_anonymous_and_a_node_that_offers_itself_is_admitted_where_it_stores() {
    for offers in [true, false] {
        let mut net = Net::with(memory_sources(3), dht_only);
        if !offers {
            // A node with no listen address (a short-lived fetcher) offers nothing.
            let cfg = SessionConfig::new(Identity::generate(&mut rand_core::OsRng));
            let mut config = EngineConfig::new(cfg);
            dht_only(&mut config);
            net.nodes[0] = Engine::new(config, Box::new(MemorySource::new()), [9; 32], net.now, T0);
        }
        let now = net.now;
        net.nodes[2].connect(now, addr(1));
        net.run();
        net.nodes[0].connect(now, addr(1));
        net.run();
        // Node 0 heard of node 2 from the hub and asked it in an exchange, anonymously.
        let two = net.nodes[2].node_id();
        assert!(net.nodes[0].dht().unwrap().table().entry(&two).is_some(), "2 answered");
        assert_eq!(net.nodes[2].conns.len(), 1, "no session between 0 and 2");
        let me = net.nodes[0].node_id();
        assert!(net.nodes[2].dht().unwrap().table().entry(&me).is_none(), "a lookup tells nothing");
        // A store is sent as itself: node 2 takes the record and admits its owner.
        let key = NodeId([0x77; 32]);
        assert_eq!(net.nodes[0].provide(now, key, T0 + 3600), offers);
        net.run();
        let stored = net.nodes[2].dht().unwrap().store().providers(&key, T0, 8).len();
        assert_eq!(stored, usize::from(offers));
        assert_eq!(net.nodes[2].dht().unwrap().table().entry(&me).is_some(), offers);
        assert_eq!(net.nodes[2].conns.len(), 1, "still no session between 0 and 2");
    }
}

#[test]
fn stalling_contacts_hold_only_their_exchange_slots_and_our_congestion_blames_nobody() {
    let n = 30;
    let mut net = Net::with(memory_sources(n), |c| {
        dht_only(c);
        let dht = c.dht.as_mut().unwrap();
        dht.table.max_per_bucket_group = 64; // every test address shares one group
        dht.table.max_per_table_group = 64;
    });
    let now = net.now;
    // Node 0 knows 28 contacts that accept its exchanges and never answer.
    for j in 2..n {
        plant_contact(&mut net, 0, j, j);
        net.silent.insert(j);
    }
    let known = net.nodes[0].dht().unwrap().table().len();
    assert!(known >= 20, "{known} contacts");
    for k in 0..4u8 {
        net.nodes[0].dht.as_mut().unwrap().dht.find_node(NodeId([k; 32]), now).unwrap();
    }
    net.nodes[0].pump_dht(now);
    net.run();
    // (Lookups share contacts, and a contact gets one exchange at a time.)
    let most = net.max_exchanges;
    assert!((8..=dht::MAX_DHT_EXCHANGES).contains(&most), "{most} at once");
    assert!(!net.nodes[0].dht.as_ref().unwrap().queued_is_empty(), "the rest waits");
    // Half the DHT's patience later the waiting requests are given up, unsent and unblamed.
    let blamed = |net: &Net| {
        let table = net.nodes[0].dht().unwrap().table();
        table.entries().map(|e| e.failures).filter(|f| *f > 0).collect::<Vec<u8>>()
    };
    net.now = now + Duration::from_secs(6);
    let t = net.now;
    net.nodes[0].handle_timeout(t);
    net.run();
    // (The lookups moved on: their next requests wait in turn.)
    assert!(blamed(&net).is_empty(), "nobody is blamed for our congestion");
    assert_eq!(net.nodes[0].dht().unwrap().table().len(), known);
    // Then the stalled exchanges time out: only the contacts asked are blamed, once each.
    net.now = now + Duration::from_secs(11);
    let t = net.now;
    net.nodes[0].handle_timeout(t);
    net.run();
    let b = blamed(&net);
    assert!(!b.is_empty() && b.len() <= dht::MAX_DHT_EXCHANGES, "{} blamed", b.len());
    assert!(b.iter().all(|f| *f == 1));
    assert_eq!(net.nodes[0].dht().unwrap().table().len(), known);
}

#[test]
fn a_banned_node_is_neither_answered_nor_admitted_when_it_asks_as_itself() {
    let mut net = Net::with(memory_sources(2), |c| {
        local_test_net(c);
        c.rendezvous_slots = 0;
    });
    let now = net.now;
    let one = net.nodes[1].node_id();
    net.nodes[0].reputation.insert(SourceId::Node(one), BAN_THRESHOLD - 1);
    plant_contact(&mut net, 1, 0, 0);
    net.nodes[1].pump_dht(now);
    net.run();
    // Its (anonymous) lookups are answered like anyone's; what it sends as itself is not.
    let key = NodeId([0x55; 32]);
    assert!(net.nodes[1].provide(now, key, T0 + 3600));
    net.run();
    assert!(net.nodes[0].dht().unwrap().store().providers(&key, T0, 8).is_empty(), "refused");
    assert!(net.nodes[0].dht().unwrap().table().is_empty(), "not admitted");
    // Node 0 does not ask it either.
    plant_contact(&mut net, 0, 1, 1);
    let before = net.events[1].len();
    net.nodes[0].dht.as_mut().unwrap().dht.find_node(NodeId([9; 32]), now).unwrap();
    net.nodes[0].pump_dht(now);
    net.run();
    assert!(net.nodes[1].conns.is_empty() && net.events[1].len() == before, "nothing sent");
}

#[test]
fn an_exchange_with_someone_else_at_a_contacts_address_fails_and_tells_them_nothing() {
    let mut net = Net::with(memory_sources(3), local_test_net);
    let now = net.now;
    // Node 0's table has node 1's identity at node 2's address.
    let one = net.nodes[1].config.session.identity.clone();
    plant_contact(&mut net, 0, 1, 2);
    net.nodes[0].pump_dht(now);
    net.run();
    // Node 2 could not read the request: it answered nothing and learned nothing.
    assert!(net.nodes[2].dht().unwrap().table().is_empty());
    assert!(net.nodes[0].conns.is_empty() && net.nodes[2].conns.is_empty());
    // The failed contact is tried again at the next lookups and dropped.
    for _ in 0..3 {
        net.now += Duration::from_secs(60);
        let t = net.now;
        net.nodes[0].handle_timeout(t);
        let _ = net.nodes[0].dht.as_mut().unwrap().dht.bootstrap(t);
        net.nodes[0].pump_dht(t);
        net.run();
    }
    assert!(net.nodes[0].dht().unwrap().table().entry(&one.node_id()).is_none());
    assert!(net.nodes[2].dht().unwrap().table().is_empty());
}

#[test]
fn an_announced_address_counts_only_if_the_peer_came_from_it() {
    let a = |s: &str| PeerAddr::new(s).unwrap();
    let ip: IpAddr = "203.0.113.9".parse().unwrap();
    assert!(dht::from_where_it_came(&a("tcp/203.0.113.9:7070"), Some(ip)));
    assert!(dht::from_where_it_came(&a("tcp/[::ffff:203.0.113.9]:1"), Some(ip)));
    assert!(!dht::from_where_it_came(&a("tcp/198.51.100.1:7070"), Some(ip)));
    assert!(!dht::from_where_it_came(&a("tcp/example.org:7070"), Some(ip)));
    assert!(dht::from_where_it_came(&a("mem/x"), None), "nothing to compare in memory");
}

#[test]
fn a_node_that_gets_in_through_one_peer_fills_its_outbound_slots_from_peer_exchange() {
    let n = 14;
    let mut net = Net::with(memory_sources(n), |c| {
        local_test_net(c);
        c.target_outbound = 0; // only the newcomer looks for more peers here
    });
    let now = net.now;
    for i in 2..n {
        net.nodes[i].connect(now, addr(1));
    }
    net.run();
    // The newcomer knows only the hub.
    net.nodes[0].config.target_outbound = 8;
    net.nodes[0].connect(now, addr(1));
    net.run();
    let up = net.nodes[0].peers().iter().filter(|p| p.established && p.outbound).count();
    assert!(up >= 8, "{up} outbound peers");
    assert!(up <= 8 + 1, "{up}");
}

#[test]
fn a_node_that_gets_in_through_one_peer_finds_others_at_the_overlay_rendezvous_points() {
    let n = 14;
    let mut net = Net::with(memory_sources(n), |c| {
        local_test_net(c);
        c.rendezvous_slots = 2;
        // Nothing else finds peers here: no peer exchange, no outbound filling.
        c.addrbook.max_per_source_group = 0;
    });
    let now = net.now;
    for i in 2..n {
        net.nodes[i].connect(now, addr(1));
    }
    net.run();
    // Everyone announces itself at the next timer.
    for i in 1..n {
        net.nodes[i].handle_timeout(now);
    }
    net.run();
    let period = T0 / rendezvous::RENDEZVOUS_PERIOD_SECS;
    let stored: usize = (0..2)
        .map(|slot| {
            let key = rendezvous::rendezvous_key(period, slot);
            (1..n)
                .map(|i| net.nodes[i].dht().unwrap().store().providers(&key, T0, 64).len())
                .max()
                .unwrap()
        })
        .sum();
    assert!(stored >= 10, "announced: {stored}");
    // The newcomer knows only the hub, and no peer exchange: its walks find the others.
    net.nodes[0].connect(now, addr(1));
    net.run();
    // Ten simulated minutes in steps of 5 s (pings keep the links up).
    let mut t = now;
    for _ in 0..120 {
        t += Duration::from_secs(5);
        net.now = t;
        for node in &mut net.nodes {
            node.handle_timeout(t);
        }
        net.run();
    }
    let pinned = net.nodes[0]
        .conns
        .values()
        .filter(|c| c.outbound && c.expect.is_some() && c.session.is_established())
        .count();
    assert!(pinned >= 4, "{pinned} peers from the rendezvous points");
    assert!(net.nodes[0].count(true) <= 8);
}

#[test]
fn a_memory_source_serves_what_it_holds_and_forgets_what_it_removes() {
    let b = blob(100_000);
    let mut s = b.source();
    let (root, outboard) = s.lookup(&b.spec.locator).unwrap();
    assert_eq!(root, b.spec.root);
    let groups = outboard.groups();
    let whole: Vec<u8> = (0..groups).flat_map(|i| s.read_group(&root, i).unwrap()).collect();
    assert_eq!(whole, b.data);
    assert_eq!(s.read_group(&root, groups), None, "past the end");
    let boxed: Box<dyn ContentSource> = Box::new(s.clone());
    assert_eq!(boxed.read_group(&root, 0), s.read_group(&root, 0));
    s.remove(&root);
    assert!(s.lookup(&b.spec.locator).is_none());
    assert_eq!(s.read_group(&root, 0), None);
    assert!(boxed.lookup(&b.spec.locator).is_some(), "a clone keeps its own copy");
}

/// The Connect actions queued now, as (connection, address).
fn connects<S: ContentSource>(e: &mut Engine<S>) -> Vec<(ConnId, PeerAddr)> {
    let mut out = Vec::new();
    while let Some(a) = e.poll_action() {
        if let Action::Connect { conn, addr } = a {
            out.push((conn, addr));
        }
    }
    out
}

#[test]
fn a_peers_transports_are_dialled_one_at_a_time_best_first_and_raced_when_slow() {
    let b = blob(10_000);
    let mut net = Net::new(vec![Box::new(MemorySource::new()), Box::new(MemorySource::new())]);
    let now = net.now;
    let node = Some(net.nodes[1].node_id());
    let (first, second) = (addr(7), addr(8));
    let sources = vec![
        SourceSpec::Direct { node, addr: first.clone() },
        SourceSpec::Direct { node, addr: second.clone() },
    ];
    net.nodes[0].fetch(now, b.spec, sources.clone(), Resume::default());
    // One dial, to the first address given.
    let dials = connects(&mut net.nodes[0]);
    assert_eq!(dials.iter().map(|d| &d.1).collect::<Vec<_>>(), [&first], "{dials:?}");
    // Still not up after the race delay: the next address is dialled beside it.
    net.nodes[0].handle_timeout(now + Duration::from_millis(500));
    assert!(connects(&mut net.nodes[0]).is_empty(), "no race before the delay");
    let later = now + health::RACE_AFTER;
    assert!(net.nodes[0].poll_timeout().is_some_and(|t| t <= later));
    net.nodes[0].handle_timeout(later);
    let raced = connects(&mut net.nodes[0]);
    assert_eq!(raced.iter().map(|d| &d.1).collect::<Vec<_>>(), [&second], "{raced:?}");
    // Both fail: they are remembered, the one that failed first is tried first next round.
    net.nodes[0].connect_failed(later, dials[0].0, health::LinkFailure::Timeout);
    net.nodes[0].connect_failed(later, raced[0].0, health::LinkFailure::Refused);
    let health = net.nodes[0].link_health();
    assert_eq!(health.len(), 2);
    assert!(health.iter().all(|(_, h)| h.failing(later) && h.fails == 1));
    let mut t = later;
    let next = loop {
        t = net.nodes[0].poll_timeout().unwrap().max(t);
        net.nodes[0].handle_timeout(t);
        let c = connects(&mut net.nodes[0]);
        if !c.is_empty() {
            break c;
        }
    };
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].1, first);
}

#[test]
fn rotation_sends_each_new_link_through_the_transport_used_longest_ago() {
    let mut net = Net::with(vec![Box::new(MemorySource::new())], |c| c.rotate_transports = true);
    let now = net.now;
    let node = Some(net.nodes[0].node_id());
    let (first, second) = (addr(7), addr(8));
    // Both addresses worked before, the first most recently.
    net.nodes[0].health.ok(&second, now);
    net.nodes[0].health.ok(&first, now + Duration::from_secs(1));
    let b = blob(10_000);
    let sources = vec![
        SourceSpec::Direct { node, addr: first.clone() },
        SourceSpec::Direct { node, addr: second.clone() },
    ];
    net.nodes[0].fetch(now, b.spec, sources, Resume::default());
    let dials = connects(&mut net.nodes[0]);
    assert_eq!(dials.iter().map(|d| &d.1).collect::<Vec<_>>(), [&second], "{dials:?}");
}
