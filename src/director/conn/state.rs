//! IPVS connection states, the TCP state machine and per-state timeouts.
//!
//! The TCP machine is the one IPVS runs (`tcp_states` in the kernel's `ip_vs_proto_tcp.c`,
//! without the `secure_tcp` variant): the director sees only TCP flags, not sequence numbers,
//! and moves a flow between states by the direction the packet travelled and its most important
//! flag (RST, then SYN, then FIN, then ACK).

use crate::time::Duration;
use crate::wire::TcpFlags;

/// IPVS connection states. [`ConnState::as_str`] gives the names `ipvsadm -lnc` prints.
///
/// The TCP states carry IPVS's numbers (`IP_VS_TCP_S_*`); UDP and ICMP flows have one state each.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnState {
    /// TCP, no packet seen yet (`NONE`).
    None = 0,
    /// TCP, handshake completed (`ESTABLISHED`).
    Established = 1,
    /// TCP, SYN seen from the real server's side (`SYN_SENT`).
    SynSent = 2,
    /// TCP, SYN seen from the client (`SYN_RECV`).
    SynRecv = 3,
    /// TCP, a FIN seen (`FIN_WAIT`).
    FinWait = 4,
    /// TCP, FINs seen (`TIME_WAIT`).
    TimeWait = 5,
    /// TCP, reset or closed (`CLOSE`).
    Close = 6,
    /// TCP, the client sent FIN first while both directions are seen (`CLOSE_WAIT`).
    CloseWait = 7,
    /// TCP, waiting for the last ACK (`LAST_ACK`).
    LastAck = 8,
    /// TCP, listening (`LISTEN`; only for FTP-style helper flows in IPVS).
    Listen = 9,
    /// TCP, SYN+ACK state of the `secure_tcp` table (`SYNACK`).
    SynAck = 10,
    /// A UDP flow (`UDP`).
    Udp = 11,
    /// An ICMP flow (`ICMP`).
    Icmp = 12,
}

/// Number of [`ConnState`] values.
const N_STATES: usize = 13;
/// Number of TCP states (the first ones of [`ConnState`]).
const N_TCP_STATES: usize = 11;

impl ConnState {
    /// Every state, in discriminant order.
    pub const ALL: [ConnState; N_STATES] = [
        ConnState::None,
        ConnState::Established,
        ConnState::SynSent,
        ConnState::SynRecv,
        ConnState::FinWait,
        ConnState::TimeWait,
        ConnState::Close,
        ConnState::CloseWait,
        ConnState::LastAck,
        ConnState::Listen,
        ConnState::SynAck,
        ConnState::Udp,
        ConnState::Icmp,
    ];

    /// The name `ipvsadm -lnc` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::None => "NONE",
            ConnState::Established => "ESTABLISHED",
            ConnState::SynSent => "SYN_SENT",
            ConnState::SynRecv => "SYN_RECV",
            ConnState::FinWait => "FIN_WAIT",
            ConnState::TimeWait => "TIME_WAIT",
            ConnState::Close => "CLOSE",
            ConnState::CloseWait => "CLOSE_WAIT",
            ConnState::LastAck => "LAST_ACK",
            ConnState::Listen => "LISTEN",
            ConnState::SynAck => "SYNACK",
            ConnState::Udp => "UDP",
            ConnState::Icmp => "ICMP",
        }
    }

    /// Whether a flow in this state counts in the real server's active connections (`ActiveConn`
    /// in `ipvsadm -ln`); the others count as inactive (`InActConn`).
    ///
    /// As current IPVS (`tcp_state_active_table`): ESTABLISHED and the handshake states
    /// SYN_SENT, SYN_RECV and SYNACK are active; every other TCP state, and UDP and ICMP flows,
    /// are inactive.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            ConnState::Established | ConnState::SynSent | ConnState::SynRecv | ConnState::SynAck
        )
    }

    /// Whether this is one of the closing TCP states, where a new SYN starts a new flow
    /// (IPVS `conn_reuse_mode`).
    pub fn is_closing(self) -> bool {
        matches!(
            self,
            ConnState::TimeWait
                | ConnState::Close
                | ConnState::CloseWait
                | ConnState::LastAck
                | ConnState::FinWait
        )
    }

    /// The state after a TCP segment with `flags` travelling in `dir` ([`tcp_transition`]).
    pub fn after(self, flags: TcpFlags, dir: Direction) -> ConnState {
        tcp_transition(
            self,
            flags.contains(TcpFlags::SYN),
            flags.contains(TcpFlags::FIN),
            flags.contains(TcpFlags::ACK),
            flags.contains(TcpFlags::RST),
            dir,
        )
    }

    /// Whether this is one of the TCP states.
    pub fn is_tcp(self) -> bool {
        (self as usize) < N_TCP_STATES
    }

    /// The state's number on the wire (connection sync): IPVS's `IP_VS_TCP_S_*` for the TCP
    /// states, then 11 for UDP and 12 for ICMP (the discriminant).
    pub const fn to_u8(self) -> u8 {
        self as u8
    }

    /// The state numbered `v` by [`ConnState::to_u8`], or `None` for a number no state has
    /// (a peer's record is untrusted input).
    pub const fn from_u8(v: u8) -> Option<ConnState> {
        if (v as usize) < N_STATES {
            Some(ConnState::ALL[v as usize])
        } else {
            None
        }
    }
}

/// Which direction(s) the director sees. TUN/DR see only the client's direction (IPVS's
/// `IP_VS_CONN_F_NOOUTPUT` -> the INPUT-ONLY transition table); NAT sees both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to real server, on a flow whose replies also pass the director (NAT).
    Input,
    /// Real server to client (NAT replies).
    Output,
    /// Client to real server, on a flow whose replies bypass the director (TUN, DR).
    InputOnly,
}

/// IPVS TCP state transition: the state a flow in `state` moves to when a packet with these
/// flags travels in `dir`.
///
/// RST takes precedence, then SYN, then FIN, then ACK. A packet with none of the four moves the
/// flow to CLOSE, as in IPVS. UDP and ICMP states are returned unchanged.
///
/// IPVS switches a flow from [`Direction::InputOnly`] to [`Direction::Input`] for good once it
/// sees an output packet; that bookkeeping is the caller's.
pub fn tcp_transition(
    state: ConnState,
    syn: bool,
    fin: bool,
    ack: bool,
    rst: bool,
    dir: Direction,
) -> ConnState {
    if !state.is_tcp() {
        return state;
    }
    let event = if rst {
        Event::Rst
    } else if syn {
        Event::Syn
    } else if fin {
        Event::Fin
    } else if ack {
        Event::Ack
    } else {
        return ConnState::Close;
    };
    let table = match dir {
        Direction::Input => &INPUT,
        Direction::Output => &OUTPUT,
        Direction::InputOnly => &INPUT_ONLY,
    };
    table[state as usize][event as usize]
}

/// The TCP flag that decides a transition.
#[derive(Clone, Copy)]
enum Event {
    Syn = 0,
    Fin = 1,
    Ack = 2,
    Rst = 3,
}

use ConnState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynRecv as SR, SynSent as SS, TimeWait as TW,
};

/// One row per current state (in [`ConnState`] order): the next state on `[SYN, FIN, ACK, RST]`.
type Transitions = [[ConnState; 4]; N_TCP_STATES];

/// Client-to-server packets of a flow whose replies the director also sees.
#[rustfmt::skip]
const INPUT: Transitions = [
    //            SYN  FIN  ACK  RST
    /* NONE */   [SR,  CL,  ES,  CL],
    /* ESTAB */  [ES,  CW,  ES,  CL],
    /* SYN_S */  [ES,  SS,  SS,  CL],
    /* SYN_R */  [SR,  TW,  ES,  SR],
    /* FIN_W */  [SR,  TW,  FW,  CL],
    /* TIME_W */ [SR,  TW,  TW,  CL],
    /* CLOSE */  [SR,  CL,  CL,  CL],
    /* CLOSE_W */[SR,  CW,  CW,  CL],
    /* LAST_A */ [SR,  LA,  CL,  LA],
    /* LISTEN */ [SR,  LI,  LI,  LI],
    /* SYNACK */ [SR,  TW,  ES,  SR],
];

/// Server-to-client packets (NAT replies).
#[rustfmt::skip]
const OUTPUT: Transitions = [
    //            SYN  FIN  ACK  RST
    /* NONE */   [SS,  TW,  ES,  CL],
    /* ESTAB */  [ES,  FW,  ES,  CL],
    /* SYN_S */  [SS,  SS,  SS,  SS],
    /* SYN_R */  [SR,  TW,  ES,  CL],
    /* FIN_W */  [SS,  FW,  FW,  CL],
    /* TIME_W */ [SS,  TW,  TW,  TW],
    /* CLOSE */  [SS,  CL,  CL,  CL],
    /* CLOSE_W */[SS,  TW,  CW,  CL],
    /* LAST_A */ [SS,  LA,  LA,  CL],
    /* LISTEN */ [LI,  LI,  ES,  CL],
    /* SYNACK */ [SR,  TW,  ES,  CL],
];

/// Client-to-server packets of a flow whose replies bypass the director (TUN, DR).
#[rustfmt::skip]
const INPUT_ONLY: Transitions = [
    //            SYN  FIN  ACK  RST
    /* NONE */   [SR,  CL,  ES,  CL],
    /* ESTAB */  [ES,  FW,  ES,  CL],
    /* SYN_S */  [ES,  SS,  SS,  CL],
    /* SYN_R */  [SR,  TW,  ES,  SR],
    /* FIN_W */  [SR,  FW,  FW,  CL],
    /* TIME_W */ [SR,  TW,  TW,  CL],
    /* CLOSE */  [SR,  CL,  CL,  CL],
    /* CLOSE_W */[SR,  CW,  CW,  CL],
    /* LAST_A */ [SR,  LA,  CL,  LA],
    /* LISTEN */ [SR,  LI,  LI,  LI],
    /* SYNACK */ [SR,  TW,  ES,  CL],
];

/// Per-state timeouts: how long a flow lives after its last packet in a state.
///
/// Defaults as IPVS (`tcp_timeouts` in `ip_vs_proto_tcp.c`, UDP 5 min, ICMP 60 s).
/// `ipvsadm --set tcp tcpfin udp` sets ESTABLISHED, FIN_WAIT and UDP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    by_state: [Duration; N_STATES],
}

impl Default for Timeouts {
    fn default() -> Self {
        let secs = Duration::from_secs;
        let mut by_state = [Duration::ZERO; N_STATES];
        for s in ConnState::ALL {
            by_state[s as usize] = match s {
                // 2*HZ in IPVS: a flow whose first packet carried no decisive flag.
                ConnState::None => secs(2),
                ConnState::Established => secs(15 * 60),
                ConnState::SynSent => secs(2 * 60),
                ConnState::SynRecv => secs(60),
                ConnState::FinWait => secs(2 * 60),
                ConnState::TimeWait => secs(2 * 60),
                ConnState::Close => secs(10),
                ConnState::CloseWait => secs(60),
                ConnState::LastAck => secs(30),
                ConnState::Listen => secs(2 * 60),
                ConnState::SynAck => secs(2 * 60),
                ConnState::Udp => secs(5 * 60),
                ConnState::Icmp => secs(60),
            };
        }
        Timeouts { by_state }
    }
}

impl Timeouts {
    /// The timeout of a flow in state `s`.
    pub fn get(&self, s: ConnState) -> Duration {
        self.by_state[s as usize]
    }

    /// Sets the timeout of state `s`.
    pub fn set(&mut self, s: ConnState, d: Duration) {
        self.by_state[s as usize] = d;
    }

    /// Sets the ESTABLISHED timeout (`ipvsadm --set` first value).
    pub fn set_tcp(&mut self, d: Duration) {
        self.set(ConnState::Established, d);
    }

    /// Sets the FIN_WAIT timeout (`ipvsadm --set` second value).
    pub fn set_tcp_fin(&mut self, d: Duration) {
        self.set(ConnState::FinWait, d);
    }

    /// Sets the UDP timeout (`ipvsadm --set` third value).
    pub fn set_udp(&mut self, d: Duration) {
        self.set(ConnState::Udp, d);
    }

    /// The ESTABLISHED timeout (`ipvsadm -L --timeout`, "tcp").
    pub fn tcp(&self) -> Duration {
        self.get(ConnState::Established)
    }

    /// The FIN_WAIT timeout ("tcpfin").
    pub fn tcp_fin(&self) -> Duration {
        self.get(ConnState::FinWait)
    }

    /// The UDP timeout ("udp").
    pub fn udp(&self) -> Duration {
        self.get(ConnState::Udp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnState::*;

    /// Kernel layout (one row per event, one column per current state NONE..SYNACK), typed out
    /// independently of the per-state tables above so the two spellings check each other.
    #[rustfmt::skip]
    const KERNEL_INPUT: [[ConnState; 11]; 4] = [
        /* syn */ [SynRecv, Established, Established, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv],
        /* fin */ [Close, CloseWait, SynSent, TimeWait, TimeWait, TimeWait, Close, CloseWait, LastAck, Listen, TimeWait],
        /* ack */ [Established, Established, SynSent, Established, FinWait, TimeWait, Close, CloseWait, Close, Listen, Established],
        /* rst */ [Close, Close, Close, SynRecv, Close, Close, Close, Close, LastAck, Listen, SynRecv],
    ];
    #[rustfmt::skip]
    const KERNEL_OUTPUT: [[ConnState; 11]; 4] = [
        /* syn */ [SynSent, Established, SynSent, SynRecv, SynSent, SynSent, SynSent, SynSent, SynSent, Listen, SynRecv],
        /* fin */ [TimeWait, FinWait, SynSent, TimeWait, FinWait, TimeWait, Close, TimeWait, LastAck, Listen, TimeWait],
        /* ack */ [Established, Established, SynSent, Established, FinWait, TimeWait, Close, CloseWait, LastAck, Established, Established],
        /* rst */ [Close, Close, SynSent, Close, Close, TimeWait, Close, Close, Close, Close, Close],
    ];
    #[rustfmt::skip]
    const KERNEL_INPUT_ONLY: [[ConnState; 11]; 4] = [
        /* syn */ [SynRecv, Established, Established, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv],
        /* fin */ [Close, FinWait, SynSent, TimeWait, FinWait, TimeWait, Close, CloseWait, LastAck, Listen, TimeWait],
        /* ack */ [Established, Established, SynSent, Established, FinWait, TimeWait, Close, CloseWait, Close, Listen, Established],
        /* rst */ [Close, Close, Close, SynRecv, Close, Close, Close, Close, LastAck, Listen, Close],
    ];

    fn step(s: ConnState, flags: &str, dir: Direction) -> ConnState {
        tcp_transition(
            s,
            flags.contains('S'),
            flags.contains('F'),
            flags.contains('A'),
            flags.contains('R'),
            dir,
        )
    }

    #[test]
    fn full_tables_match_the_kernel_layout() {
        for (dir, table) in [
            (Direction::Input, &KERNEL_INPUT),
            (Direction::Output, &KERNEL_OUTPUT),
            (Direction::InputOnly, &KERNEL_INPUT_ONLY),
        ] {
            for (event, row) in ["S", "F", "A", "R"].iter().zip(table.iter()) {
                for (from, want) in ConnState::ALL.iter().zip(row.iter()) {
                    assert_eq!(
                        step(*from, event, dir),
                        *want,
                        "{dir:?} {event} from {}",
                        from.as_str()
                    );
                }
            }
        }
    }

    #[test]
    fn flag_precedence_is_rst_syn_fin_ack() {
        let d = Direction::InputOnly;
        // RST beats everything.
        assert_eq!(step(Established, "SFAR", d), Close);
        // SYN beats FIN and ACK.
        assert_eq!(step(None, "SFA", d), SynRecv);
        assert_eq!(step(None, "SA", d), SynRecv);
        // FIN beats ACK.
        assert_eq!(step(Established, "FA", d), FinWait);
        // No decisive flag: CLOSE, as IPVS.
        assert_eq!(step(Established, "", d), Close);
    }

    #[test]
    fn input_only_lifecycle_tun_and_dr() {
        let d = Direction::InputOnly;
        let mut s = None;
        s = step(s, "S", d);
        assert_eq!(s, SynRecv);
        s = step(s, "S", d); // retransmitted SYN
        assert_eq!(s, SynRecv);
        s = step(s, "A", d);
        assert_eq!(s, Established);
        s = step(s, "A", d);
        assert_eq!(s, Established);
        s = step(s, "FA", d);
        assert_eq!(s, FinWait);
        s = step(s, "A", d); // the client's last ACK
        assert_eq!(s, FinWait);
        s = step(s, "R", d);
        assert_eq!(s, Close);
        // A SYN on a closed flow reopens it (port reuse).
        assert_eq!(step(Close, "S", d), SynRecv);
        // RST during the handshake keeps SYN_RECV.
        assert_eq!(step(SynRecv, "R", d), SynRecv);
    }

    #[test]
    fn nat_lifecycle_client_closes_first() {
        use Direction::{Input, Output};
        let mut s = None;
        for (flags, dir, want) in [
            ("S", Input, SynRecv),
            ("SA", Output, SynRecv),
            ("A", Input, Established),
            ("FA", Input, CloseWait),
            ("A", Output, CloseWait),
            ("FA", Output, TimeWait),
            ("A", Input, TimeWait),
        ] {
            s = step(s, flags, dir);
            assert_eq!(s, want, "{flags} {dir:?}");
        }
    }

    #[test]
    fn udp_and_icmp_states_do_not_move() {
        for dir in [Direction::Input, Direction::Output, Direction::InputOnly] {
            assert_eq!(tcp_transition(Udp, true, false, false, true, dir), Udp);
            assert_eq!(tcp_transition(Icmp, false, true, true, false, dir), Icmp);
        }
    }

    #[test]
    fn names_as_ipvsadm_prints_them() {
        let names: Vec<&str> = ConnState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "NONE",
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "SYNACK",
                "UDP",
                "ICMP"
            ]
        );
        for (i, s) in ConnState::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
    }

    #[test]
    fn state_numbers_round_trip_and_unknown_numbers_are_refused() {
        for s in ConnState::ALL {
            assert_eq!(ConnState::from_u8(s.to_u8()), Some(s));
        }
        // IPVS's numbers for the TCP states.
        assert_eq!(Established.to_u8(), 1);
        assert_eq!(SynRecv.to_u8(), 3);
        assert_eq!(TimeWait.to_u8(), 5);
        assert_eq!(Udp.to_u8(), 11);
        assert_eq!(Icmp.to_u8(), 12);
        for v in 13..=u8::MAX {
            assert_eq!(ConnState::from_u8(v), Option::None, "{v}");
        }
    }

    #[test]
    fn active_states_as_current_ipvs() {
        let active: Vec<ConnState> = ConnState::ALL
            .into_iter()
            .filter(|s| s.is_active())
            .collect();
        assert_eq!(active, [Established, SynSent, SynRecv, SynAck]);
    }

    #[test]
    fn default_timeouts_per_state() {
        let t = Timeouts::default();
        let secs = Duration::from_secs;
        for (s, want) in [
            (None, secs(2)),
            (Established, secs(900)),
            (SynSent, secs(120)),
            (SynRecv, secs(60)),
            (FinWait, secs(120)),
            (TimeWait, secs(120)),
            (Close, secs(10)),
            (CloseWait, secs(60)),
            (LastAck, secs(30)),
            (Listen, secs(120)),
            (SynAck, secs(120)),
            (Udp, secs(300)),
            (Icmp, secs(60)),
        ] {
            assert_eq!(t.get(s), want, "{}", s.as_str());
        }
        assert_eq!(
            (t.tcp(), t.tcp_fin(), t.udp()),
            (secs(900), secs(120), secs(300))
        );
    }

    #[test]
    fn ipvsadm_set_changes_three_timeouts() {
        let mut t = Timeouts::default();
        t.set_tcp(Duration::from_secs(7200));
        t.set_tcp_fin(Duration::from_secs(30));
        t.set_udp(Duration::from_secs(10));
        assert_eq!(t.get(Established), Duration::from_secs(7200));
        assert_eq!(t.get(FinWait), Duration::from_secs(30));
        assert_eq!(t.get(Udp), Duration::from_secs(10));
        assert_eq!(t.get(TimeWait), Duration::from_secs(120));
        assert_ne!(t, Timeouts::default());
    }
}
