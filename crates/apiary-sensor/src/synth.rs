//! Synthetic traffic: builds Ethernet frames with etherparse's `PacketBuilder` and writes them
//! as pcap or pcapng, for golden tests, benches and fuzz seeds (no capture files committed).

use std::net::{IpAddr, SocketAddr};

use apiary_event::Timestamp;
use etherparse::PacketBuilder;

use crate::capture::pcap::{PcapNgWriter, PcapWriter};
use crate::decode::LinkType;
use crate::decode::tcp_flags::{ACK, FIN, PSH, SYN};

/// A timeline of frames under construction.
#[derive(Debug, Clone)]
pub struct Synth {
    now: Timestamp,
    /// The frames so far, with their capture times.
    pub frames: Vec<(Timestamp, Vec<u8>)>,
}

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

impl Synth {
    /// An empty timeline starting at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self { now: start, frames: Vec::new() }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Moves the clock forward.
    pub fn advance_micros(&mut self, micros: i64) {
        self.now = Timestamp::from_micros(self.now.as_micros().saturating_add(micros));
    }

    /// Moves the clock forward by whole seconds.
    pub fn advance_secs(&mut self, secs: i64) {
        self.advance_micros(secs.saturating_mul(1_000_000));
    }

    /// Appends an already built frame at the current time.
    pub fn raw(&mut self, frame: Vec<u8>) {
        self.frames.push((self.now, frame));
    }

    fn ip(src: IpAddr, dst: IpAddr) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            (s, d) => {
                // Mixed families cannot be one packet; map both to IPv6 so callers still get one.
                let s6 = match s {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                let d6 = match d {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                };
                eth.ipv6(s6.octets(), d6.octets(), 64)
            }
        }
    }

    /// Builds one TCP frame (without appending it).
    pub fn tcp_frame(
        src: SocketAddr,
        dst: SocketAddr,
        flags: u8,
        seq: u32,
        ack: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut b = Self::ip(src.ip(), dst.ip()).tcp(src.port(), dst.port(), seq, 64_240);
        if flags & SYN != 0 {
            b = b.syn();
        }
        if flags & ACK != 0 {
            b = b.ack(ack);
        }
        if flags & FIN != 0 {
            b = b.fin();
        }
        if flags & crate::decode::tcp_flags::RST != 0 {
            b = b.rst();
        }
        if flags & PSH != 0 {
            b = b.psh();
        }
        let mut out = Vec::with_capacity(b.size(payload.len()));
        // Writing into a Vec cannot fail for sizes PacketBuilder accepts.
        let _ = b.write(&mut out, payload);
        out
    }

    /// Appends a TCP segment.
    pub fn tcp(&mut self, src: SocketAddr, dst: SocketAddr, flags: u8, seq: u32, payload: &[u8]) {
        let f = Self::tcp_frame(src, dst, flags, seq, 1, payload);
        self.raw(f);
    }

    /// Builds one UDP frame.
    pub fn udp_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
        let b = Self::ip(src.ip(), dst.ip()).udp(src.port(), dst.port());
        let mut out = Vec::with_capacity(b.size(payload.len()));
        let _ = b.write(&mut out, payload);
        out
    }

    /// Appends a UDP datagram.
    pub fn udp(&mut self, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        let f = Self::udp_frame(src, dst, payload);
        self.raw(f);
    }

    /// Appends an ICMP echo request (or reply) between two IPv4 or two IPv6 addresses.
    pub fn echo(&mut self, src: IpAddr, dst: IpAddr, reply: bool) {
        let ip = Self::ip(src, dst);
        let mut out = Vec::new();
        match src {
            IpAddr::V4(_) => {
                let b =
                    if reply { ip.icmpv4_echo_reply(7, 1) } else { ip.icmpv4_echo_request(7, 1) };
                let _ = b.write(&mut out, b"ping");
            }
            IpAddr::V6(_) => {
                let b =
                    if reply { ip.icmpv6_echo_reply(7, 1) } else { ip.icmpv6_echo_request(7, 1) };
                let _ = b.write(&mut out, b"ping");
            }
        }
        self.raw(out);
    }

    /// Appends an ICMP (v4) or ICMPv6 message of any type and code.
    pub fn icmp_raw(&mut self, src: IpAddr, dst: IpAddr, ty: u8, code: u8) {
        let ip = Self::ip(src, dst);
        let mut out = Vec::new();
        match src {
            IpAddr::V4(_) => {
                let _ = ip.icmpv4_raw(ty, code, [0; 4]).write(&mut out, &[0; 8]);
            }
            IpAddr::V6(_) => {
                let _ = ip.icmpv6_raw(ty, code, [0; 4]).write(&mut out, &[0; 8]);
            }
        }
        self.raw(out);
    }

    /// A complete TCP session: handshake, one request and one response, then FIN from the
    /// client; `gap_micros` between packets.
    pub fn tcp_session(
        &mut self,
        client: SocketAddr,
        server: SocketAddr,
        request: &[u8],
        response: &[u8],
        gap_micros: i64,
    ) {
        let (mut cs, mut ss) = (1000u32, 5000u32);
        self.tcp(client, server, SYN, cs, b"");
        self.advance_micros(gap_micros);
        self.raw(Self::tcp_frame(server, client, SYN | ACK, ss, cs + 1, b""));
        cs += 1;
        ss += 1;
        self.advance_micros(gap_micros);
        self.raw(Self::tcp_frame(client, server, ACK, cs, ss, b""));
        self.advance_micros(gap_micros);
        if !request.is_empty() {
            self.raw(Self::tcp_frame(client, server, ACK | PSH, cs, ss, request));
            cs += request.len() as u32;
            self.advance_micros(gap_micros);
        }
        if !response.is_empty() {
            self.raw(Self::tcp_frame(server, client, ACK | PSH, ss, cs, response));
            ss += response.len() as u32;
            self.advance_micros(gap_micros);
        }
        self.raw(Self::tcp_frame(client, server, FIN | ACK, cs, ss, b""));
        self.advance_micros(gap_micros);
        self.raw(Self::tcp_frame(server, client, FIN | ACK, ss, cs + 1, b""));
        self.advance_micros(gap_micros);
        self.raw(Self::tcp_frame(client, server, ACK, cs + 1, ss + 1, b""));
    }

    /// The frames as a classic pcap file (Ethernet).
    pub fn to_pcap(&self) -> Vec<u8> {
        let mut w = match PcapWriter::new(Vec::new(), LinkType::Ethernet) {
            Ok(w) => w,
            Err(_) => return Vec::new(),
        };
        for (ts, f) in &self.frames {
            let _ = w.write_packet(*ts, f);
        }
        w.finish().unwrap_or_default()
    }

    /// The frames as a pcapng file (Ethernet).
    pub fn to_pcapng(&self) -> Vec<u8> {
        let mut w = match PcapNgWriter::new(Vec::new(), LinkType::Ethernet) {
            Ok(w) => w,
            Err(_) => return Vec::new(),
        };
        for (ts, f) in &self.frames {
            let _ = w.write_packet(*ts, f);
        }
        w.finish().unwrap_or_default()
    }
}

/// A benchmark mix of about `packets` frames: 8-packet TCP sessions with small requests, DNS
/// queries to port 53 and pings, from many clients, 20 µs apart.
pub fn mixed_traffic(packets: usize) -> Synth {
    let mut s = Synth::new(Timestamp::from_secs_micros(1_700_000_000, 0));
    let server: SocketAddr = SocketAddr::from(([198, 51, 100, 10], 80));
    let dns: SocketAddr = SocketAddr::from(([198, 51, 100, 53], 53));
    let mut i: u32 = 0;
    while s.frames.len() < packets {
        i = i.wrapping_add(1);
        let client_ip = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        let client = SocketAddr::from((client_ip, 20_000 + (i % 40_000) as u16));
        match i % 10 {
            0..=6 => s.tcp_session(
                client,
                server,
                b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
                b"HTTP/1.1 200 OK\r\n\r\n",
                20,
            ),
            7 | 8 => {
                s.udp(client, dns, &crate::extract::dns::build_query(i as u16, "www.example.com"));
                s.advance_micros(20);
            }
            _ => {
                s.echo(IpAddr::from(client_ip), server.ip(), false);
                s.advance_micros(20);
            }
        }
    }
    s.frames.truncate(packets);
    s
}
