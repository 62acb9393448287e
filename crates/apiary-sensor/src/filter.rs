//! PokieStream's built-in filters, compiled once: address (strict or not), protocol and
//! destination port, applied to each packet in its own direction (reference section 4).

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{FilterConfig, NameFilterConfig, parse_net};
use crate::decode::{L4, Packet};
use crate::extract::glob::GlobSet;

/// A set of ports as a 65,536-bit map: one load per lookup.
#[derive(Clone)]
pub struct PortSet {
    bits: Box<[u64; 1024]>,
    any: bool,
}

impl std::fmt::Debug for PortSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortSet").field("any", &self.any).finish_non_exhaustive()
    }
}

impl PortSet {
    /// The set of `ports`.
    pub fn new(ports: &[u16]) -> Self {
        let mut bits = Box::new([0u64; 1024]);
        for p in ports {
            if let Some(w) = bits.get_mut(usize::from(*p) / 64) {
                *w |= 1 << (p % 64);
            }
        }
        Self { bits, any: !ports.is_empty() }
    }

    /// Whether `port` is in the set.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.bits.get(usize::from(port) / 64).is_some_and(|w| w & (1 << (port % 64)) != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        !self.any
    }
}

const P_TCP: u8 = 1;
const P_UDP: u8 = 2;
const P_ICMP: u8 = 4;

/// The compiled address, protocol and port filters.
#[derive(Debug, Clone)]
pub struct PacketFilter {
    strict: bool,
    source: Option<Vec<IpNet>>,
    destination: Option<Vec<IpNet>>,
    protocols: Option<u8>,
    ports: Option<PortSet>,
}

impl PacketFilter {
    /// Compiles the `filter` section (already validated).
    pub fn new(cfg: &FilterConfig) -> Self {
        let nets = |l: &Option<Vec<String>>| {
            l.as_ref()
                .filter(|l| !l.is_empty())
                .map(|l| l.iter().filter_map(|s| parse_net(s)).collect())
        };
        let protocols = cfg.protocol.as_ref().map(|l| {
            l.iter().fold(0u8, |m, p| {
                m | match p.as_str() {
                    "tcp" => P_TCP,
                    "udp" => P_UDP,
                    "icmp" => P_ICMP,
                    // `ip`, `arp` and `all` pass PokieStream's validation and match nothing.
                    _ => 0,
                }
            })
        });
        Self {
            strict: cfg.strict,
            source: nets(&cfg.source),
            destination: nets(&cfg.destination),
            protocols,
            ports: cfg.port.as_ref().map(|p| PortSet::new(p)),
        }
    }

    /// Whether PokieStream would report this packet (steps 4 to 6 of its filter order).
    #[inline]
    pub fn accept(&self, p: &Packet<'_>) -> bool {
        if self.source.is_some() || self.destination.is_some() {
            let in_list = |l: &Option<Vec<IpNet>>, ip: IpAddr| {
                l.as_ref().is_some_and(|l| l.iter().any(|n| n.contains(&ip)))
            };
            let s = in_list(&self.source, p.src);
            let d = in_list(&self.destination, p.dst);
            if !(if self.strict { s && d } else { s || d }) {
                return false;
            }
        }
        if let Some(mask) = self.protocols {
            let bit = match p.l4 {
                L4::Tcp { .. } => P_TCP,
                L4::Udp { .. } => P_UDP,
                L4::Icmp { .. } => P_ICMP,
            };
            if mask & bit == 0 {
                return false;
            }
        }
        if let Some(ports) = &self.ports {
            match p.l4 {
                L4::Tcp { dport, .. } | L4::Udp { dport, .. } => return ports.contains(dport),
                L4::Icmp { .. } => {}
            }
        }
        true
    }
}

/// One compiled payload name filter.
#[derive(Debug, Clone)]
pub struct NameFilter {
    /// Destination ports carrying the protocol.
    pub ports: PortSet,
    /// Patterns; empty matches every name.
    pub patterns: GlobSet,
}

impl NameFilter {
    fn new(cfg: &NameFilterConfig) -> Option<Self> {
        cfg.enabled.then(|| Self {
            ports: PortSet::new(&cfg.ports),
            patterns: GlobSet::new(&cfg.patterns),
        })
    }
}

/// The compiled payload filters.
#[derive(Debug, Clone)]
pub struct PayloadFilters {
    /// DNS question names (UDP and TCP).
    pub dns: Option<NameFilter>,
    /// TLS SNI.
    pub tls: Option<NameFilter>,
    /// HTTP Host.
    pub http: Option<NameFilter>,
    /// Drop flows on a filter's ports whose name does not match.
    pub drop_unmatched: bool,
}

impl PayloadFilters {
    /// Compiles `filter.payload`.
    pub fn new(cfg: &FilterConfig) -> Self {
        Self {
            dns: NameFilter::new(&cfg.payload.dns),
            tls: NameFilter::new(&cfg.payload.tls),
            http: NameFilter::new(&cfg.payload.http),
            drop_unmatched: cfg.payload.drop_unmatched,
        }
    }

    /// Whether any TCP payload filter watches destination port `port`.
    #[inline]
    pub fn tcp_watches(&self, port: u16) -> bool {
        [&self.dns, &self.tls, &self.http]
            .iter()
            .any(|f| f.as_ref().is_some_and(|f| f.ports.contains(port)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn pkt(src: [u8; 4], dst: [u8; 4], l4: L4<'static>) -> Packet<'static> {
        Packet {
            src: IpAddr::V4(Ipv4Addr::from(src)),
            dst: IpAddr::V4(Ipv4Addr::from(dst)),
            ip_proto: 6,
            ip_len: 40,
            l4,
        }
    }
    const TCP80: L4<'static> = L4::Tcp { sport: 4000, dport: 80, flags: 2, seq: 0, payload: b"" };

    #[test]
    fn address_or_and_strict() {
        let mut cfg =
            FilterConfig { source: Some(vec!["10.0.0.0/8".into()]), ..FilterConfig::default() };
        let f = PacketFilter::new(&cfg);
        assert!(f.accept(&pkt([10, 1, 1, 1], [8, 8, 8, 8], TCP80)));
        assert!(!f.accept(&pkt([8, 8, 8, 8], [10, 1, 1, 1], TCP80)));
        // strict with one list set rejects everything, as in PokieStream.
        cfg.strict = true;
        assert!(!PacketFilter::new(&cfg).accept(&pkt([10, 1, 1, 1], [8, 8, 8, 8], TCP80)));
        cfg.destination = Some(vec!["8.8.8.8".into()]);
        assert!(PacketFilter::new(&cfg).accept(&pkt([10, 1, 1, 1], [8, 8, 8, 8], TCP80)));
    }

    #[test]
    fn protocol_and_port() {
        let cfg = FilterConfig { protocol: Some(vec!["all".into()]), ..FilterConfig::default() };
        assert!(!PacketFilter::new(&cfg).accept(&pkt([1; 4], [2; 4], TCP80)));
        let cfg = FilterConfig {
            protocol: Some(vec!["udp".into(), "icmp".into()]),
            port: Some(vec![53]),
            ..FilterConfig::default()
        };
        let f = PacketFilter::new(&cfg);
        assert!(!f.accept(&pkt([1; 4], [2; 4], TCP80)));
        assert!(f.accept(&pkt([1; 4], [2; 4], L4::Udp { sport: 9, dport: 53, payload: b"" })));
        assert!(!f.accept(&pkt([1; 4], [2; 4], L4::Udp { sport: 53, dport: 9, payload: b"" })));
        assert!(f.accept(&pkt([1; 4], [2; 4], L4::Icmp { v6: false, ty: 8, code: 0 })));
    }
}
