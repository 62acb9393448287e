//! Packet decoding: link layer (Ethernet with VLAN/QinQ, Linux SLL and SLL2, raw IP, BSD
//! loopback) down to TCP, UDP, ICMP and ICMPv6, without allocating.
//!
//! Two paths, one behaviour: a hand-written fast path reads the common frames (Ethernet with at
//! most one VLAN tag, Linux cooked or raw IP; IPv4 or IPv6 without extension headers, complete
//! as the IP length says; TCP, UDP, ICMP, ICMPv6) with bounds-checked reads, and gives up on
//! anything else, which etherparse's lax slicing then decodes: a packet cut short by the snap
//! length still yields whatever headers are complete. The fast path accepts only frames on which
//! etherparse gives the same answer (a differential test and the `sensor_decode` fuzz target
//! check it); it exists because building etherparse's full slice was a quarter of the replay's
//! instructions. Anything else is classified, counted by the caller and dropped; a malformed
//! packet is data, never an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};

/// Link-layer header types (the pcap `LINKTYPE_*` numbers) the decoder understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// Ethernet II, with optional 802.1Q / 802.1ad tags (`LINKTYPE_ETHERNET` = 1).
    Ethernet,
    /// Raw IPv4 or IPv6, version taken from the first nibble (`LINKTYPE_RAW` = 101, also 12, 14).
    RawIp,
    /// Raw IPv4 only (`LINKTYPE_IPV4` = 228).
    Ipv4,
    /// Raw IPv6 only (`LINKTYPE_IPV6` = 229).
    Ipv6,
    /// Linux cooked capture v1 (`LINKTYPE_LINUX_SLL` = 113).
    LinuxSll,
    /// Linux cooked capture v2 (`LINKTYPE_LINUX_SLL2` = 276).
    LinuxSll2,
    /// BSD loopback: a 4-byte address family in host order (`LINKTYPE_NULL` = 0, `LOOP` = 108).
    Null,
}

impl LinkType {
    /// The link type of a pcap `LINKTYPE_*` / DLT number, if supported.
    pub fn from_pcap(linktype: u32) -> Option<Self> {
        Some(match linktype {
            1 => Self::Ethernet,
            12 | 14 | 101 => Self::RawIp,
            228 => Self::Ipv4,
            229 => Self::Ipv6,
            113 => Self::LinuxSll,
            276 => Self::LinuxSll2,
            0 | 108 => Self::Null,
            _ => return None,
        })
    }

    /// The pcap `LINKTYPE_*` number written when saving packets of this type.
    pub fn to_pcap(self) -> u32 {
        match self {
            Self::Ethernet => 1,
            Self::RawIp => 101,
            Self::Ipv4 => 228,
            Self::Ipv6 => 229,
            Self::LinuxSll => 113,
            Self::LinuxSll2 => 276,
            Self::Null => 0,
        }
    }
}

/// TCP flag bits as on the wire (byte 13 of the header).
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// The transport part of a decoded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4<'a> {
    /// A TCP segment.
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Flag bits ([`tcp_flags`]).
        flags: u8,
        /// Sequence number, for payload reassembly.
        seq: u32,
        /// Captured payload (may be shorter than sent when the snap length cut it).
        payload: &'a [u8],
    },
    /// A UDP datagram.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Captured payload.
        payload: &'a [u8],
    },
    /// An ICMP (v4) or ICMPv6 message.
    Icmp {
        /// ICMPv6 rather than ICMP.
        v6: bool,
        /// Message type.
        ty: u8,
        /// Message code.
        code: u8,
    },
}

/// A decoded IP packet with a transport header the sensor tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The IPv4 protocol field or the IPv6 header's first next-header (PokieStream's
    /// `protocol_num`, which for IPv6 may name an extension header).
    pub ip_proto: u8,
    /// IP-level length claimed by the header (IPv4 total length, IPv6 payload length + 40).
    pub ip_len: u32,
    /// The transport header and payload.
    pub l4: L4<'a>,
}

/// Why a frame did not yield a [`Packet`]; each maps to a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skip {
    /// No IPv4 or IPv6 header (ARP, LLDP, ...): ignored like PokieStream does.
    NotIp,
    /// Headers cut short.
    Truncated,
    /// Headers present but invalid.
    Malformed,
    /// An IP fragment (its transport header, if any, is not reassembled).
    Fragment,
    /// IP with a transport the sensor does not track (GRE, ESP, IGMP, ...).
    OtherTransport,
}

/// Decodes one captured frame of link type `link`.
pub fn decode(link: LinkType, frame: &[u8]) -> Result<Packet<'_>, Skip> {
    match fast_path(link, frame) {
        Some(p) => Ok(p),
        None => decode_reference(link, frame),
    }
}

/// Decodes one frame with etherparse only, without the fast path: the reference that
/// [`decode`] must agree with (the differential test and the fuzz target compare the two).
pub fn decode_reference(link: LinkType, frame: &[u8]) -> Result<Packet<'_>, Skip> {
    let sliced = match link {
        LinkType::Ethernet => LaxSlicedPacket::from_ethernet(frame).map_err(|_| Skip::Truncated)?,
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => from_ip(frame)?,
        LinkType::LinuxSll => {
            // packet type (2), ARPHRD (2), address length (2), address (8), protocol (2)
            let proto = be16(frame, 14).ok_or(Skip::Truncated)?;
            let rest = frame.get(16..).ok_or(Skip::Truncated)?;
            from_ether_type(proto, rest)?
        }
        LinkType::LinuxSll2 => {
            // protocol (2), reserved (2), ifindex (4), ARPHRD (2), packet type (1),
            // address length (1), address (8)
            let proto = be16(frame, 0).ok_or(Skip::Truncated)?;
            let rest = frame.get(20..).ok_or(Skip::Truncated)?;
            from_ether_type(proto, rest)?
        }
        LinkType::Null => {
            let fam: [u8; 4] =
                frame.get(..4).and_then(|s| s.try_into().ok()).ok_or(Skip::Truncated)?;
            let rest = frame.get(4..).ok_or(Skip::Truncated)?;
            // The family is in the capturing host's byte order; the small value is the right one.
            let fam = u32::from_le_bytes(fam).min(u32::from_be_bytes(fam));
            match fam {
                2 => from_ip(rest)?,
                // AF_INET6 differs between BSDs: 24, 28, 30.
                24 | 28 | 30 => from_ip(rest)?,
                _ => return Err(Skip::NotIp),
            }
        }
    };
    classify(&sliced)
}

/// The common case without etherparse: `None` whenever the frame is anything but a complete,
/// unfragmented IPv4 or IPv6 packet (no extension headers) carrying a well-formed TCP, UDP,
/// ICMP or ICMPv6 header, so that etherparse decides every unusual frame.
fn fast_path(link: LinkType, frame: &[u8]) -> Option<Packet<'_>> {
    let ip = match link {
        LinkType::Ethernet => {
            let (mut ether_type, mut at) = (be16(frame, 12)?, 14);
            // One 802.1Q / 802.1ad tag; a second one is left to etherparse.
            if matches!(ether_type, 0x8100 | 0x88a8 | 0x9100) {
                (ether_type, at) = (be16(frame, 16)?, 18);
            }
            ip_after(ether_type, frame, at)?
        }
        LinkType::LinuxSll => ip_after(be16(frame, 14)?, frame, 16)?,
        LinkType::LinuxSll2 => ip_after(be16(frame, 0)?, frame, 20)?,
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => frame,
        LinkType::Null => return None,
    };
    let first = *ip.first()?;
    match first >> 4 {
        4 => {
            let header_len = usize::from(first & 0x0f) * 4;
            let total = usize::from(be16(ip, 2)?);
            // etherparse reads a short or overlong total length laxly; leave those to it.
            if header_len < 20 || total < header_len || total > ip.len() {
                return None;
            }
            // More-fragments flag or a fragment offset.
            if be16(ip, 6)? & 0x3fff != 0 {
                return None;
            }
            let proto = *ip.get(9)?;
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            let l4 = fast_l4(proto, ip.get(header_len..total)?)?;
            Some(Packet {
                src: IpAddr::V4(Ipv4Addr::from(src)),
                dst: IpAddr::V4(Ipv4Addr::from(dst)),
                ip_proto: proto,
                ip_len: total as u32,
                l4,
            })
        }
        6 => {
            let payload_len = usize::from(be16(ip, 4)?);
            // Zero is a jumbogram or a lax length, which etherparse reads from the slice.
            if payload_len == 0 || 40 + payload_len > ip.len() {
                return None;
            }
            let next = *ip.get(6)?;
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            // Extension headers (and fragments) are not among the numbers `fast_l4` accepts.
            let l4 = fast_l4(next, ip.get(40..40 + payload_len)?)?;
            Some(Packet {
                src: IpAddr::V6(Ipv6Addr::from(src)),
                dst: IpAddr::V6(Ipv6Addr::from(dst)),
                ip_proto: next,
                ip_len: payload_len as u32 + 40,
                l4,
            })
        }
        _ => None,
    }
}

/// The IP packet after a link header whose EtherType is `ether_type`, if it is IPv4 or IPv6.
fn ip_after(ether_type: u16, frame: &[u8], at: usize) -> Option<&[u8]> {
    match ether_type {
        0x0800 | 0x86dd => frame.get(at..),
        _ => None,
    }
}

/// The transport header of the fast path, with etherparse's length rules: TCP by its data
/// offset, UDP by its length field when that fits (else the whole IP payload), ICMP whole.
fn fast_l4(proto: u8, p: &[u8]) -> Option<L4<'_>> {
    match proto {
        6 => {
            let header_len = usize::from(*p.get(12)? & 0xf0) >> 2;
            if header_len < 20 {
                return None;
            }
            Some(L4::Tcp {
                sport: be16(p, 0)?,
                dport: be16(p, 2)?,
                flags: *p.get(13)?,
                seq: u32::from_be_bytes(p.get(4..8)?.try_into().ok()?),
                payload: p.get(header_len..)?,
            })
        }
        17 => {
            let len = usize::from(be16(p, 4)?);
            let datagram = if len < 8 || len > p.len() { p } else { p.get(..len)? };
            Some(L4::Udp { sport: be16(p, 0)?, dport: be16(p, 2)?, payload: datagram.get(8..)? })
        }
        // ICMP timestamp (13) and its reply (14) have a fixed length etherparse checks.
        1 | 58 if p.len() >= 8 && !(proto == 1 && matches!(p.first(), Some(13 | 14))) => {
            Some(L4::Icmp { v6: proto == 58, ty: *p.first()?, code: *p.get(1)? })
        }
        _ => None,
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

fn from_ip(frame: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    match frame.first().map(|b| b >> 4) {
        Some(4 | 6) => LaxSlicedPacket::from_ip(frame).map_err(|e| {
            use etherparse::err::ip::LaxHeaderSliceError;
            match e {
                LaxHeaderSliceError::Len(_) => Skip::Truncated,
                LaxHeaderSliceError::Content(_) => Skip::Malformed,
            }
        }),
        Some(_) => Err(Skip::NotIp),
        None => Err(Skip::Truncated),
    }
}

fn from_ether_type(proto: u16, rest: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    Ok(LaxSlicedPacket::from_ether_type(EtherType(proto), rest))
}

fn classify<'a>(p: &LaxSlicedPacket<'a>) -> Result<Packet<'a>, Skip> {
    let (src, dst, ip_proto, ip_len, payload) = match &p.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                h.protocol().0,
                u32::from(h.total_len()),
                v4.payload(),
            )
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                h.next_header().0,
                u32::from(h.payload_length()) + 40,
                v6.payload(),
            )
        }
        Some(LaxNetSlice::Arp(_)) => return Err(Skip::NotIp),
        None => {
            return Err(match &p.stop_err {
                Some((e, _)) => slice_error_skip(e),
                None => Skip::NotIp,
            });
        }
    };
    if payload.fragmented {
        return Err(Skip::Fragment);
    }
    let l4 = match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let flags = t.header_slice().get(13).copied().unwrap_or(0);
            L4::Tcp {
                sport: t.source_port(),
                dport: t.destination_port(),
                flags,
                seq: t.sequence_number(),
                payload: t.payload(),
            }
        }
        Some(TransportSlice::Udp(u)) => {
            L4::Udp { sport: u.source_port(), dport: u.destination_port(), payload: u.payload() }
        }
        Some(TransportSlice::Icmpv4(i)) => {
            L4::Icmp { v6: false, ty: i.type_u8(), code: i.code_u8() }
        }
        Some(TransportSlice::Icmpv6(i)) => {
            L4::Icmp { v6: true, ty: i.type_u8(), code: i.code_u8() }
        }
        Some(TransportSlice::Igmp(_)) => return Err(Skip::OtherTransport),
        None => {
            let n = payload.ip_number.0;
            // Transport numbers we would have decoded: their absence means a short or bad header.
            return Err(if matches!(n, 1 | 6 | 17 | 58) {
                match &p.stop_err {
                    Some((e, _)) => slice_error_skip(e),
                    None => Skip::Truncated,
                }
            } else {
                match &p.stop_err {
                    Some((e, _)) => slice_error_skip(e),
                    None => Skip::OtherTransport,
                }
            });
        }
    };
    Ok(Packet { src, dst, ip_proto, ip_len, l4 })
}

fn slice_error_skip(e: &etherparse::err::packet::SliceError) -> Skip {
    use etherparse::err::packet::SliceError;
    match e {
        SliceError::Len(_) => Skip::Truncated,
        _ => Skip::Malformed,
    }
}

/// Packed bytes of an address for hashing and Community ID (4 or 16 bytes used).
pub(crate) fn addr_bytes(ip: IpAddr) -> ([u8; 16], usize) {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(a) => {
            out[..4].copy_from_slice(&a.octets());
            (out, 4)
        }
        IpAddr::V6(a) => {
            out.copy_from_slice(&a.octets());
            (out, 16)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use std::net::Ipv4Addr;

    fn tcp_frame(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1234, 80, 7, 1000)
            .syn();
        let mut out = Vec::new();
        b.write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn ethernet_tcp_syn() {
        let f = tcp_frame(b"");
        let p = decode(LinkType::Ethernet, &f).unwrap();
        assert_eq!(p.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(p.ip_proto, 6);
        assert_eq!(p.ip_len, 40);
        match p.l4 {
            L4::Tcp { sport, dport, flags, seq, payload } => {
                assert_eq!(
                    (sport, dport, flags, seq, payload.len()),
                    (1234, 80, tcp_flags::SYN, 7, 0)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_truncation_is_classified_not_fatal() {
        let f = tcp_frame(b"hello");
        for n in 0..f.len() {
            let r = decode(LinkType::Ethernet, &f[..n]);
            if n < 14 + 20 + 20 {
                assert!(r.is_err(), "{n}: {r:?}");
            } else {
                assert!(r.is_ok(), "{n}: {r:?}");
            }
        }
    }

    #[test]
    fn sll_and_sll2_and_raw() {
        let mut ip = Vec::new();
        PacketBuilder::ipv6([1; 16], [2; 16], 64).udp(53, 5353).write(&mut ip, b"x").unwrap();
        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x86, 0xdd];
        sll.extend_from_slice(&ip);
        let mut sll2 = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
        sll2.extend_from_slice(&ip);
        for (lt, f) in
            [(LinkType::LinuxSll, &sll), (LinkType::LinuxSll2, &sll2), (LinkType::RawIp, &ip)]
        {
            let p = decode(lt, f).unwrap();
            assert!(matches!(p.l4, L4::Udp { sport: 53, dport: 5353, payload: b"x" }), "{lt:?}");
        }
    }

    /// Frames of every shape the fast path reads, plus a few it must leave to etherparse.
    fn corpus() -> Vec<(LinkType, Vec<u8>)> {
        let mut out = Vec::new();
        let payloads: [&[u8]; 3] = [b"", b"x", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"];
        for payload in payloads {
            let v4 =
                || PacketBuilder::ethernet2([1; 6], [2; 6]).ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
            let v6 = || PacketBuilder::ethernet2([1; 6], [2; 6]).ipv6([1; 16], [2; 16], 64);
            let mut frames: Vec<Vec<u8>> = Vec::new();
            let mut push = |f: &dyn Fn(&mut Vec<u8>)| {
                let mut b = Vec::new();
                f(&mut b);
                frames.push(b);
            };
            push(&|b| v4().tcp(1, 2, 3, 4).syn().ack(9).write(b, payload).unwrap());
            push(&|b| v4().udp(53, 5353).write(b, payload).unwrap());
            push(&|b| v4().icmpv4_echo_request(1, 2).write(b, payload).unwrap());
            push(&|b| v6().tcp(1, 2, 3, 4).fin().write(b, payload).unwrap());
            push(&|b| v6().udp(53, 5353).write(b, payload).unwrap());
            push(&|b| v6().icmpv6_echo_request(1, 2).write(b, payload).unwrap());
            push(&|b| {
                PacketBuilder::ethernet2([1; 6], [2; 6])
                    .single_vlan(7.try_into().unwrap())
                    .ipv4([1, 2, 3, 4], [5, 6, 7, 8], 9)
                    .udp(1, 2)
                    .write(b, payload)
                    .unwrap()
            });
            for f in frames {
                // The IP packet follows the EtherType, after the VLAN tag if there is one.
                let at = if f[12..14] == [0x81, 0x00] { 18 } else { 14 };
                let ip = f[at..].to_vec();
                let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
                sll.extend_from_slice(&f[at - 2..]);
                let mut sll2 = f[at - 2..at].to_vec();
                sll2.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0]);
                sll2.extend_from_slice(&ip);
                out.push((LinkType::Ethernet, f));
                out.push((LinkType::RawIp, ip.clone()));
                out.push((LinkType::Ipv4, ip));
                out.push((LinkType::LinuxSll, sll));
                out.push((LinkType::LinuxSll2, sll2));
            }
        }
        out
    }

    /// The fast path agrees with etherparse on valid frames, on every truncation of them and on
    /// many random corruptions of their headers (fixed seed, so a failure reproduces).
    #[test]
    fn fast_path_agrees_with_etherparse() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut fast, mut total) = (0usize, 0usize);
        let mut check = |link: LinkType, f: &[u8]| {
            total += 1;
            fast += usize::from(fast_path(link, f).is_some());
            assert_eq!(decode(link, f), decode_reference(link, f), "{link:?} {f:02x?}");
        };
        for (link, frame) in corpus() {
            // Frames the builder makes whole and unfragmented are all for the fast path.
            if link != LinkType::Null {
                assert!(fast_path(link, &frame).is_some(), "{link:?} {frame:02x?}");
            }
            for n in 0..=frame.len() {
                check(link, &frame[..n]);
            }
            for _ in 0..3000 {
                let mut f = frame.clone();
                for _ in 0..1 + next() % 3 {
                    // Mostly header bytes, where the decision is made.
                    let at = (next() as usize) % f.len().min(80);
                    f[at] = match next() % 4 {
                        0 => 0,
                        1 => 0xff,
                        _ => next() as u8,
                    };
                }
                let cut = f.len() - (next() as usize) % 4;
                check(link, &f[..cut]);
            }
        }
        for _ in 0..20_000 {
            let len = (next() % 96) as usize;
            let f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let link =
                [LinkType::Ethernet, LinkType::RawIp, LinkType::LinuxSll][next() as usize % 3];
            check(link, &f);
        }
        // The corruptions must exercise both paths, or the comparison proves little.
        assert!(fast > total / 10 && fast < total * 9 / 10, "{fast} of {total}");
    }

    #[test]
    fn arp_and_garbage() {
        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert_eq!(decode(LinkType::Ethernet, &arp), Err(Skip::NotIp));
        assert!(decode(LinkType::RawIp, &[0x45, 0, 0]).is_err());
        assert_eq!(decode(LinkType::RawIp, &[0x15, 0, 0]), Err(Skip::NotIp));
        assert!(decode(LinkType::LinuxSll2, &[0; 3]).is_err());
    }
}
