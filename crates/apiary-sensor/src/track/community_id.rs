//! Community ID v1: a direction-free flow hash shared by Zeek, Suricata, Arkime and Elastic.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha1::{Digest, Sha1};

use crate::decode::addr_bytes;

/// ICMP type pairs that behave like request and reply ports (Zeek's mapping).
fn icmp_counterpart(v6: bool, ty: u8) -> Option<u8> {
    let pairs: &[(u8, u8)] = if v6 {
        &[(128, 129), (130, 131), (133, 134), (135, 136), (139, 140), (144, 145)]
    } else {
        &[(8, 0), (13, 14), (15, 16), (10, 9), (17, 18)]
    };
    pairs.iter().find_map(|&(a, b)| {
        if ty == a {
            Some(b)
        } else if ty == b {
            Some(a)
        } else {
            None
        }
    })
}

/// The Community ID of a TCP or UDP flow (seed 0).
pub fn ports(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, proto: u8) -> String {
    hash(0, src, sport, dst, dport, proto, true)
}

/// The Community ID of an ICMP (v4) or ICMPv6 message (seed 0).
pub fn icmp(src: IpAddr, dst: IpAddr, v6: bool, ty: u8, code: u8) -> String {
    let proto = if v6 { 58 } else { 1 };
    match icmp_counterpart(v6, ty) {
        Some(other) => hash(0, src, u16::from(ty), dst, u16::from(other), proto, true),
        None => hash(0, src, u16::from(ty), dst, u16::from(code), proto, false),
    }
}

/// Hashes `seed ‖ addr ‖ addr ‖ proto ‖ 0 ‖ port ‖ port` with the smaller endpoint first.
pub fn hash(
    seed: u16,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    proto: u8,
    order: bool,
) -> String {
    let (sa, sl) = addr_bytes(src);
    let (da, dl) = addr_bytes(dst);
    let s = sa.get(..sl).unwrap_or_default();
    let d = da.get(..dl).unwrap_or_default();
    let swap = order && (s > d || (s == d && sport > dport));
    let (a, ap, b, bp) = if swap { (d, dport, s, sport) } else { (s, sport, d, dport) };
    let mut h = Sha1::new();
    h.update(seed.to_be_bytes());
    h.update(a);
    h.update(b);
    h.update([proto, 0]);
    h.update(ap.to_be_bytes());
    h.update(bp.to_be_bytes());
    let mut out = String::with_capacity(30);
    out.push_str("1:");
    B64.encode_string(h.finalize(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specification_vectors() {
        let a: IpAddr = "128.232.110.120".parse().unwrap();
        let b: IpAddr = "66.35.250.204".parse().unwrap();
        assert_eq!(ports(a, 34855, b, 80, 6), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        assert_eq!(ports(b, 80, a, 34855, 6), "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
        assert_eq!(hash(1, a, 34855, b, 80, 6, true), "1:3V71V58M3Ksw/yuFALMcW0LAHvc=");
    }

    #[test]
    fn icmp_echo_is_direction_free() {
        let a: IpAddr = "192.168.0.89".parse().unwrap();
        let b: IpAddr = "192.168.0.1".parse().unwrap();
        assert_eq!(icmp(a, b, false, 8, 0), icmp(b, a, false, 0, 0));
        assert_ne!(icmp(a, b, false, 3, 1), icmp(b, a, false, 3, 1));
    }
}
