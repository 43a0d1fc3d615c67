//! A deterministic shared segment for N virtual routers: virtual time,
//! a seeded RNG for loss and delay, partitions. Adverts go through the real
//! encoder and decoder, as on a wire.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vrrp::{decode, Action, Config, Instance, State};

/// One state change seen on the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub at: Duration,
    pub node: usize,
    pub from: State,
    pub to: State,
    pub reason: String,
}

struct Node {
    config: Config,
    /// `None` while the node is dead (killed or stopped).
    vr: Option<Instance>,
    group: u32,
}

/// A datagram in flight: (arrival, sequence for a stable order, receiver,
/// sender, bytes).
type Delivery = Reverse<(Instant, u64, usize, usize, Vec<u8>)>;

pub struct Segment {
    nodes: Vec<Node>,
    t0: Instant,
    now: Instant,
    rng: StdRng,
    loss: f64,
    delay: Duration,
    jitter: Duration,
    queue: BinaryHeap<Delivery>,
    seq: u64,
    pub changes: Vec<Change>,
    split_brain_since: Option<Instant>,
    longest_split_brain: Duration,
}

impl Segment {
    pub fn new(seed: u64) -> Segment {
        // Only differences from t0 matter, so the run does not depend on
        // when it happens.
        let t0 = Instant::now();
        Segment {
            nodes: Vec::new(),
            t0,
            now: t0,
            rng: StdRng::seed_from_u64(seed),
            loss: 0.0,
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            changes: Vec::new(),
            split_brain_since: None,
            longest_split_brain: Duration::ZERO,
        }
    }

    /// Add a node (not started).
    pub fn add(&mut self, config: Config) -> usize {
        self.nodes.push(Node {
            vr: None,
            config,
            group: 0,
        });
        self.nodes.len() - 1
    }

    pub fn set_loss(&mut self, loss: f64) {
        self.loss = loss;
    }

    /// Every datagram takes `delay` plus a uniform share of `jitter`.
    pub fn set_delay(&mut self, delay: Duration, jitter: Duration) {
        self.delay = delay;
        self.jitter = jitter;
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    pub fn start(&mut self, i: usize) {
        let mut vr = Instance::new(self.nodes[i].config.clone()).expect("valid config");
        vr.start(self.now);
        self.nodes[i].vr = Some(vr);
        self.flush(i);
    }

    /// The process dies: nothing more is sent, nothing received.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].vr = None;
    }

    /// Graceful stop: Shutdown event (priority 0 from a master), then dead.
    pub fn stop(&mut self, i: usize) {
        if let Some(vr) = self.nodes[i].vr.as_mut() {
            vr.shutdown(self.now);
        }
        self.flush(i);
        self.nodes[i].vr = None;
    }

    /// Split the segment: nodes in different groups no longer hear each
    /// other (datagrams in flight across the cut are lost too).
    pub fn partition(&mut self, groups: &[&[usize]]) {
        for (g, members) in groups.iter().enumerate() {
            for &i in *members {
                self.nodes[i].group = g as u32;
            }
        }
    }

    pub fn heal(&mut self) {
        for n in &mut self.nodes {
            n.group = 0;
        }
    }

    pub fn instance(&self, i: usize) -> Option<&Instance> {
        self.nodes[i].vr.as_ref()
    }

    pub fn state(&self, i: usize) -> State {
        self.instance(i).map_or(State::Initialize, Instance::state)
    }

    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.state(i) == State::Master)
            .collect()
    }

    /// Longest time two masters that could hear each other coexisted.
    pub fn longest_split_brain(&self) -> Duration {
        let ongoing = self
            .split_brain_since
            .map_or(Duration::ZERO, |s| self.now - s);
        self.longest_split_brain.max(ongoing)
    }

    /// When node `i` last became master, as time since t0.
    pub fn last_became_master(&self, i: usize) -> Option<Duration> {
        self.changes
            .iter()
            .rev()
            .find(|c| c.node == i && c.to == State::Master)
            .map(|c| c.at)
    }

    pub fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        loop {
            let next_delivery = self.queue.peek().map(|Reverse(d)| d.0);
            let next_timer = self
                .nodes
                .iter()
                .filter_map(|n| n.vr.as_ref().and_then(Instance::poll_timeout))
                .min();
            let next = match (next_delivery, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            self.now = next.max(self.now);
            while self.queue.peek().is_some_and(|Reverse(d)| d.0 <= self.now) {
                let Reverse((_, _, to, from, bytes)) = self.queue.pop().expect("peeked");
                self.deliver(to, from, &bytes);
            }
            for i in 0..self.nodes.len() {
                let due = self.nodes[i]
                    .vr
                    .as_ref()
                    .and_then(Instance::poll_timeout)
                    .is_some_and(|t| t <= self.now);
                if due {
                    if let Some(vr) = self.nodes[i].vr.as_mut() {
                        vr.handle_timeout(self.now);
                    }
                    self.flush(i);
                }
            }
            self.observe();
        }
        self.now = end;
        self.observe();
    }

    fn deliver(&mut self, to: usize, from: usize, bytes: &[u8]) {
        if self.nodes[to].group != self.nodes[from].group {
            return;
        }
        let src = self.nodes[from].config.primary_address;
        let dst = self.nodes[from].config.family().multicast_group();
        let Some(vr) = self.nodes[to].vr.as_mut() else {
            return;
        };
        let decoded = decode(bytes, src, dst).expect("our own encoder's output decodes");
        // A refused advert is what a real node would count and drop.
        let _ = vr.handle_advert(self.now, src, &decoded.packet);
        self.flush(to);
    }

    /// Carry out node `i`'s actions: record transitions, multicast adverts.
    fn flush(&mut self, i: usize) {
        let Some(vr) = self.nodes[i].vr.as_mut() else {
            return;
        };
        let actions: Vec<Action> = vr.drain_actions().collect();
        for action in actions {
            match action {
                Action::StateChanged { from, to, reason } => self.changes.push(Change {
                    at: self.now - self.t0,
                    node: i,
                    from,
                    to,
                    reason: reason.to_string(),
                }),
                Action::SendAdvert(packet) => {
                    let vr = self.nodes[i].vr.as_ref().expect("flushing a live node");
                    let dst = packet.family().multicast_group();
                    let bytes = vr.encode_advert(&packet, dst).expect("valid advert");
                    self.multicast(i, bytes);
                }
                Action::AddAddresses(_) | Action::RemoveAddresses(_) | Action::Announce(_) => {}
            }
        }
    }

    fn multicast(&mut self, from: usize, bytes: Vec<u8>) {
        for to in 0..self.nodes.len() {
            if to == from || self.nodes[to].group != self.nodes[from].group {
                continue;
            }
            if self.loss > 0.0 && self.rng.gen_bool(self.loss) {
                continue;
            }
            let jitter = if self.jitter.is_zero() {
                Duration::ZERO
            } else {
                self.jitter.mul_f64(self.rng.gen_range(0.0..1.0))
            };
            self.seq += 1;
            self.queue.push(Reverse((
                self.now + self.delay + jitter,
                self.seq,
                to,
                from,
                bytes.clone(),
            )));
        }
    }

    /// Track the longest time two masters shared a partition.
    fn observe(&mut self) {
        let mut per_group = std::collections::BTreeMap::<u32, usize>::new();
        for i in self.masters() {
            *per_group.entry(self.nodes[i].group).or_default() += 1;
        }
        let split = per_group.values().any(|&n| n > 1);
        match (split, self.split_brain_since) {
            (true, None) => self.split_brain_since = Some(self.now),
            (false, Some(since)) => {
                self.longest_split_brain = self.longest_split_brain.max(self.now - since);
                self.split_brain_since = None;
            }
            _ => {}
        }
    }

    pub fn address(&self, i: usize) -> IpAddr {
        self.nodes[i].config.primary_address
    }
}
