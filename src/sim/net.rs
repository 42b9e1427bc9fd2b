//! The virtual network: nodes, routes, links with latency and seeded loss, and the clock.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::director::Out;
use super::{
    flow_hash, Client, DestConfig, DirectorConfig, Duration, Flow, Instant, Ipv4Packet, NodeId,
    Reach, RealServer, Rng, ServiceKey, ServiceSet, SimDirector,
};

/// A node of the network.
#[derive(Debug)]
pub(crate) enum Node {
    /// A prefix of client addresses.
    Client(Client),
    /// A director.
    Director(Box<SimDirector>),
    /// A real server.
    Server(RealServer),
    /// A node taken off the network (a stopped director): what reaches it is lost.
    Down,
}

/// What the network did with the packets it carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct NetStats {
    /// Packets put on a link.
    pub(crate) sent: u64,
    /// Packets delivered to a node.
    pub(crate) delivered: u64,
    /// Packets lost to the links' seeded loss.
    pub(crate) lost: u64,
    /// Packets no route (or, for a frame, no MAC) led anywhere, or that reached a node that
    /// was down.
    pub(crate) unroutable: u64,
}

/// A packet or frame on its way.
#[derive(Debug)]
enum Frame {
    Ip(Vec<u8>),
    Ether(Vec<u8>),
}

#[derive(Debug)]
struct Event {
    at: Instant,
    to: NodeId,
    /// The node that made the packet (kept across directors' rewrites and tunnels).
    origin: NodeId,
    frame: Frame,
}

/// A route: packets to `net` go to one of `via` (by flow hash when several: ECMP).
#[derive(Debug)]
struct Route {
    net: Ipv4Net,
    via: Vec<NodeId>,
}

impl Route {
    fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & u32::from(self.net.netmask()) == u32::from(self.net.network())
    }
}

/// Directors' timers are coalesced over idle stretches: at most this long before the next
/// event they run every sweep interval again (long enough for a whole sweep cycle).
const TIMER_LEAD: Duration = Duration::from_secs(3);

/// The virtual network. See the module documentation of `sim` for a walk-through.
#[derive(Debug)]
pub(crate) struct Net {
    now: Instant,
    nodes: Vec<Node>,
    routes: Vec<Route>,
    macs: HashMap<[u8; 6], NodeId>,
    /// Packets in flight. Every hop takes the same time and the clock never goes back, so
    /// they are queued in the order they arrive.
    queue: VecDeque<Event>,
    /// One hop's delay (the same for every link).
    latency: Duration,
    /// The directors (whose timers the clock runs).
    directors: Vec<NodeId>,
    /// The earliest director timer, and whose (a packet never moves a timer, only
    /// `handle_timeout` does).
    next_timer: Option<(Instant, NodeId)>,
    loss: HashMap<(NodeId, NodeId), f64>,
    rng: Rng,
    /// What happened to the packets.
    pub(crate) stats: NetStats,
    /// Directors accept tunnel-agent traffic from this prefix (every agent's allow-list).
    pub(crate) director_net: Ipv4Net,
}

impl Net {
    /// An empty network whose losses follow `seed`, starting at 1 s on the virtual clock.
    pub(crate) fn new(seed: u64) -> Net {
        Net {
            now: Instant::from_secs(1),
            nodes: Vec::new(),
            routes: Vec::new(),
            macs: HashMap::new(),
            queue: VecDeque::new(),
            directors: Vec::new(),
            next_timer: None,
            latency: Duration::from_millis(1),
            loss: HashMap::new(),
            rng: Rng::new(seed),
            stats: NetStats::default(),
            director_net: "10.0.0.0/24".parse().expect("a prefix"),
        }
    }

    fn add(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        NodeId(self.nodes.len() - 1)
    }

    /// Adds a route to `net` through `via` (appended to an existing route for the same
    /// prefix: ECMP).
    pub(crate) fn add_route(&mut self, net: Ipv4Net, via: NodeId) {
        let net = net.trunc();
        match self.routes.iter_mut().find(|r| r.net == net) {
            Some(r) if !r.via.contains(&via) => r.via.push(via),
            Some(_) => {}
            None => self.routes.push(Route {
                net,
                via: vec![via],
            }),
        }
        self.sort_routes();
    }

    /// Longest prefixes first, so the first match is the longest.
    fn sort_routes(&mut self) {
        self.routes
            .sort_by_key(|r| core::cmp::Reverse(r.net.prefix_len()));
    }

    /// The route a packet to `dst` takes.
    fn route(&self, dst: Ipv4Addr) -> Option<&Route> {
        self.routes.iter().find(|r| r.contains(dst))
    }

    /// Replaces every route's next hops for `net` by `via` (e.g. a VIP moved to other directors).
    pub(crate) fn set_route(&mut self, net: Ipv4Net, via: &[NodeId]) {
        let net = net.trunc();
        self.routes.retain(|r| r.net != net);
        self.routes.push(Route {
            net,
            via: via.to_vec(),
        });
        self.sort_routes();
    }

    /// A client node owning `prefix`.
    pub(crate) fn add_client(&mut self, prefix: Ipv4Net) -> NodeId {
        let id = self.add(Node::Client(Client::new(prefix)));
        self.add_route(prefix, id);
        id
    }

    /// A director at `addr` serving `set` with `workers` cores; the VIPs of `set` are routed
    /// to it (ECMP with directors that already have them). The agents accept its tunnels when
    /// `addr` is inside [`Net::director_net`].
    pub(crate) fn add_director(
        &mut self,
        addr: Ipv4Addr,
        set: &ServiceSet,
        config: DirectorConfig,
        workers: usize,
    ) -> NodeId {
        let d = SimDirector::new(addr, 1, set, config, workers);
        let id = self.add(Node::Director(Box::new(d)));
        self.directors.push(id);
        self.refresh_timer();
        self.add_route(Ipv4Net::from(addr), id);
        for svc in &set.services {
            self.add_route(Ipv4Net::from(svc.key.vip), id);
        }
        self.resolve(id);
        id
    }

    /// The virtual clock's current time.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// Stops director `old` and starts a fresh one (new process: empty connection table, new
    /// registry) with the same address, config, workers and table; every route through `old`
    /// now goes through the new one.
    pub(crate) fn replace_director(&mut self, old: NodeId) -> NodeId {
        let d = self.director(old);
        let fresh = SimDirector::new(d.addr, d.ifindex, &d.set, d.config.clone(), d.workers.len());
        let id = self.add(Node::Director(Box::new(fresh)));
        self.directors.push(id);
        for r in &mut self.routes {
            for v in &mut r.via {
                if *v == old {
                    *v = id;
                }
            }
        }
        self.remove_node(old);
        self.resolve(id);
        self.refresh_timer();
        id
    }

    /// Takes `node` off the network: its routes go, what still reaches it is lost.
    pub(crate) fn remove_node(&mut self, node: NodeId) {
        self.nodes[node.0] = Node::Down;
        self.directors.retain(|&d| d != node);
        self.refresh_timer();
        for r in &mut self.routes {
            r.via.retain(|&v| v != node);
        }
        self.routes.retain(|r| !r.via.is_empty());
        self.macs.retain(|_, n| *n != node);
    }

    /// A real server at `addr` for `vips`, reached as `reach`. Its MAC is on the directors'
    /// LAN; a tunnel agent allows [`Net::director_net`].
    pub(crate) fn add_server(&mut self, addr: Ipv4Addr, vips: &[Ipv4Addr], reach: Reach) -> NodeId {
        let n = self.nodes.len() as u16;
        let [hi, lo] = n.to_be_bytes();
        let mac = [0x02, 0x53, 0x49, 0x4d, hi, lo];
        let rs = RealServer::new(addr, mac, vips, reach, self.director_net);
        let id = self.add(Node::Server(rs));
        self.add_route(Ipv4Net::from(addr), id);
        self.macs.insert(mac, id);
        // DR servers may be in a table already: let the directors resolve them.
        for d in self.directors.clone() {
            self.resolve(d);
        }
        id
    }

    /// Publishes `set` on director `dir` (as the control plane after an edit).
    pub(crate) fn publish(&mut self, dir: NodeId, set: &ServiceSet) {
        self.publish_held(dir, set, &[]);
    }

    /// Publishes `set` on director `dir` with the servers in `held` out of the table but their
    /// flows kept (a failed health check with `expire_nodest_conn = false`).
    pub(crate) fn publish_held(
        &mut self,
        dir: NodeId,
        set: &ServiceSet,
        held: &[(ServiceKey, DestConfig)],
    ) {
        self.director_mut(dir).publish(set, held);
        self.resolve(dir);
    }

    /// The driver's neighbour resolver: DR servers' MACs into the director's table.
    fn resolve(&mut self, dir: NodeId) {
        let Node::Director(d) = &self.nodes[dir.0] else {
            return;
        };
        d.resolve_neighbours(|addr| {
            self.nodes.iter().find_map(|n| match n {
                Node::Server(s) if s.addr == addr => Some(s.mac),
                _ => None,
            })
        });
    }

    /// Loses packets on the link `from -> to` with probability `p`, drawn from the seed.
    pub(crate) fn set_loss(&mut self, from: NodeId, to: NodeId, p: f64) {
        self.loss.insert((from, to), p);
    }

    /// Client `client` opens TCP `flow` (sends its SYN).
    pub(crate) fn tcp_connect(&mut self, client: NodeId, flow: Flow) {
        let pkt = self.client_mut(client).connect(flow);
        self.emit(client, client, pkt);
    }

    /// Client `client` sends the next data segment (TCP) or datagram (UDP) of `flow`.
    pub(crate) fn send_data(&mut self, client: NodeId, flow: Flow) {
        let pkt = self.client_mut(client).data(flow);
        self.emit(client, client, pkt);
    }

    /// Client `client` closes TCP `flow` (sends its FIN).
    pub(crate) fn tcp_close(&mut self, client: NodeId, flow: Flow) {
        let pkt = self.client_mut(client).close(flow);
        self.emit(client, client, pkt);
    }

    /// Sends `pkt` from `from` to where the routes lead its destination.
    pub(crate) fn emit(&mut self, from: NodeId, origin: NodeId, pkt: Vec<u8>) {
        match self.next_hop(&pkt) {
            Some(to) => self.transmit(from, to, origin, Frame::Ip(pkt)),
            None => self.stats.unroutable += 1,
        }
    }

    /// The node a packet to its destination goes to: the longest matching prefix, one of its
    /// next hops by flow hash.
    fn next_hop(&self, pkt: &[u8]) -> Option<NodeId> {
        let dst = Ipv4Packet::new_checked(pkt).ok()?.dst_addr();
        let route = self.route(dst)?;
        let i = flow_hash(pkt, 0xec3f) % route.via.len() as u64;
        Some(route.via[i as usize])
    }

    fn transmit(&mut self, from: NodeId, to: NodeId, origin: NodeId, frame: Frame) {
        self.stats.sent += 1;
        let p = self.loss.get(&(from, to)).copied().unwrap_or(0.0);
        if self.rng.chance(p) {
            self.stats.lost += 1;
            return;
        }
        self.queue.push_back(Event {
            at: self.now + self.latency,
            to,
            origin,
            frame,
        });
    }

    /// Delivers the next packet in flight (running the directors' timers due before it);
    /// `false` when nothing is in flight.
    pub(crate) fn step(&mut self) -> bool {
        let Some(at) = self.queue.front().map(|e| e.at) else {
            return false;
        };
        self.run_timers_until(at);
        let ev = self.queue.pop_front().expect("peeked");
        self.now = self.now.max(ev.at);
        self.deliver(ev);
        true
    }

    /// Runs until `t`: every packet due by then, the directors' timers on the way; the clock
    /// ends at `t`.
    pub(crate) fn run_until(&mut self, t: Instant) {
        while self.queue.front().is_some_and(|e| e.at <= t) {
            self.step();
        }
        self.run_timers_until(t);
        self.now = self.now.max(t);
    }

    /// Runs for `d` of virtual time.
    pub(crate) fn advance(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until nothing is in flight.
    pub(crate) fn settle(&mut self) {
        while self.step() {}
    }

    /// Fires the directors' timers due by `t`, each at its deadline, except that a long idle
    /// stretch is skipped: timers due more than [`TIMER_LEAD`] before `t` fire at `t -
    /// TIMER_LEAD` (once), then every sweep interval up to `t`.
    fn run_timers_until(&mut self, t: Instant) {
        let floor = Instant::from_millis(
            t.total_millis()
                .saturating_sub(TIMER_LEAD.as_millis() as u64),
        );
        while let Some((at, id)) = self.next_timer.filter(|&(at, _)| at <= t) {
            let at = at.max(floor).max(self.now);
            self.now = at;
            self.director_mut(id).handle_timeout(at);
            self.refresh_timer();
        }
    }

    /// Finds the earliest director timer again (after one fired, or directors changed).
    fn refresh_timer(&mut self) {
        self.next_timer = self
            .directors
            .iter()
            .filter_map(|&id| match &self.nodes[id.0] {
                Node::Director(d) => Some((d.poll_timeout(), id)),
                _ => None,
            })
            .min();
    }

    fn deliver(&mut self, ev: Event) {
        self.stats.delivered += 1;
        let now = self.now;
        let (to, origin) = (ev.to, ev.origin);
        match (&mut self.nodes[to.0], ev.frame) {
            (Node::Client(c), Frame::Ip(pkt)) => {
                if let Some(answer) = c.handle(origin, &pkt) {
                    self.emit(to, to, answer);
                }
            }
            (Node::Director(d), Frame::Ip(pkt)) => {
                let lan = d.ifindex;
                match d.handle(now, pkt) {
                    Some(Out::Ip(pkt)) => self.emit(to, origin, pkt),
                    Some(Out::Ether { ifindex, mac, pkt }) => match self.macs.get(&mac) {
                        Some(&rs) if ifindex == lan => {
                            self.transmit(to, rs, origin, Frame::Ether(pkt))
                        }
                        _ => self.stats.unroutable += 1,
                    },
                    None => {}
                }
            }
            (Node::Server(s), frame) => {
                let reply = match frame {
                    Frame::Ip(pkt) => s.handle_ip(&pkt),
                    Frame::Ether(pkt) => s.handle_frame(&pkt),
                };
                let gateway = match s.reach {
                    Reach::Nat { gateway } => Some(gateway),
                    _ => None,
                };
                if let Some(reply) = reply {
                    self.reply_from_server(to, gateway, reply);
                }
            }
            (Node::Down, _) | (_, Frame::Ether(_)) => {
                self.stats.delivered -= 1;
                self.stats.unroutable += 1;
            }
        }
    }

    /// A server's reply: straight to the client (TUN, DR), or to its gateway (NAT).
    fn reply_from_server(&mut self, from: NodeId, gateway: Option<Ipv4Addr>, pkt: Vec<u8>) {
        let Some(gw) = gateway else {
            return self.emit(from, from, pkt);
        };
        let hop = self.route(gw).map(|r| r.via[0]);
        match hop {
            Some(to) => self.transmit(from, to, from, Frame::Ip(pkt)),
            None => self.stats.unroutable += 1,
        }
    }

    /// Client `id`; panics if it is another kind of node.
    pub(crate) fn client(&self, id: NodeId) -> &Client {
        match &self.nodes[id.0] {
            Node::Client(c) => c,
            other => panic!("{id:?} is no client: {other:?}"),
        }
    }

    fn client_mut(&mut self, id: NodeId) -> &mut Client {
        match &mut self.nodes[id.0] {
            Node::Client(c) => c,
            _ => panic!("{id:?} is no client"),
        }
    }

    /// Director `id`; panics if it is another kind of node.
    pub(crate) fn director(&self, id: NodeId) -> &SimDirector {
        match &self.nodes[id.0] {
            Node::Director(d) => d,
            _ => panic!("{id:?} is no director"),
        }
    }

    /// Director `id`, to edit; panics if it is another kind of node.
    pub(crate) fn director_mut(&mut self, id: NodeId) -> &mut SimDirector {
        match &mut self.nodes[id.0] {
            Node::Director(d) => d,
            _ => panic!("{id:?} is no director"),
        }
    }

    /// Real server `id`; panics if it is another kind of node.
    pub(crate) fn server(&self, id: NodeId) -> &RealServer {
        match &self.nodes[id.0] {
            Node::Server(s) => s,
            _ => panic!("{id:?} is no real server"),
        }
    }
}
