//! Packet decoding: link layer (Ethernet with VLAN/QinQ, Linux SLL and SLL2, raw IP, BSD
//! loopback) down to TCP, UDP, ICMP and ICMPv6, without allocating.
//!
//! etherparse's lax slicing does the IP and transport work: a packet cut short by the snap
//! length still yields whatever headers are complete. Anything else is classified, counted by
//! the caller and dropped; a malformed packet is data, never an error.

use std::net::IpAddr;

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
