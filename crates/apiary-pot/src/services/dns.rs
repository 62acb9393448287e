//! DNS over UDP and TCP (HoneyPy's DnsUdp, made safe): answers like a plausible authoritative
//! resolver, but never amplifies: `ANY` gets the one-record RFC 8482 answer, EDNS is not
//! echoed, and every answer fits in 512 bytes.
//!
//! Two-phase: [`check_query`] walks the message and returns where the question ends without
//! allocating; [`parse_query`] builds the owned [`Query`].

use std::net::Ipv4Addr;
use std::sync::Arc;

use apiary_event::{Dns, Kind, Transport};
use bytes::{BufMut, Bytes, BytesMut};

use super::{Handler, ServiceInfo, TcpService, UdpService, no_options};
use crate::{Conn, SessionCtx, SessionError, UdpPeer};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "dns",
    aliases: &["DnsUdp", "DNS"],
    protocol: "dns",
    description: "DNS server over UDP and TCP that answers A/MX/CNAME/TXT/NS without amplifying",
    transports: &[Transport::Udp, Transport::Tcp],
    build,
};

/// Answer TTL.
const TTL: u32 = 300;
/// Longest DNS message accepted over TCP.
const MAX_TCP_MESSAGE: usize = 4096;

/// Record types we answer, by number.
mod rtype {
    pub(super) const A: u16 = 1;
    pub(super) const NS: u16 = 2;
    pub(super) const CNAME: u16 = 5;
    pub(super) const SOA: u16 = 6;
    pub(super) const PTR: u16 = 12;
    pub(super) const HINFO: u16 = 13;
    pub(super) const MX: u16 = 15;
    pub(super) const TXT: u16 = 16;
    pub(super) const AAAA: u16 = 28;
    pub(super) const ANY: u16 = 255;
}

/// A DNS question, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Message id.
    pub id: u16,
    /// Flags word of the query (opcode and RD matter).
    pub flags: u16,
    /// The name, lower-cased, labels joined with dots, no trailing dot.
    pub name: String,
    /// The question's wire bytes (name, type, class), echoed in the answer.
    pub question: Vec<u8>,
    /// Query type.
    pub qtype: u16,
    /// Query class.
    pub qclass: u16,
}

/// Why a message is not a query worth answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsError {
    /// Shorter than its header or question.
    Truncated,
    /// A response, or a query without exactly one question.
    NotAQuery,
    /// A label longer than 63, a name longer than 255, or a compression pointer.
    BadName,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Phase one: checks that `msg` is a one-question query and returns the offset just past
/// the question.
pub fn check_query(msg: &[u8]) -> Result<usize, DnsError> {
    let flags = u16_at(msg, 2).ok_or(DnsError::Truncated)?;
    let qdcount = u16_at(msg, 4).ok_or(DnsError::Truncated)?;
    if msg.len() < 12 {
        return Err(DnsError::Truncated);
    }
    if flags & 0x8000 != 0 || qdcount != 1 {
        return Err(DnsError::NotAQuery);
    }
    let mut pos = 12usize;
    let mut name_len = 0usize;
    loop {
        let len = usize::from(*msg.get(pos).ok_or(DnsError::Truncated)?);
        if len == 0 {
            pos += 1;
            break;
        }
        // Queries carry no compression pointers; refusing them removes loops.
        if len > 63 {
            return Err(DnsError::BadName);
        }
        name_len += len + 1;
        if name_len > 255 {
            return Err(DnsError::BadName);
        }
        pos += 1 + len;
    }
    if msg.len() < pos + 4 {
        return Err(DnsError::Truncated);
    }
    Ok(pos + 4)
}

/// Phase two: the owned query of a message [`check_query`] accepted.
pub fn parse_query(msg: &[u8]) -> Result<Query, DnsError> {
    let end = check_query(msg)?;
    let question = msg.get(12..end).ok_or(DnsError::Truncated)?;
    // The labels, lower-cased and joined with dots, built in place (no string per label).
    let mut name = String::with_capacity(question.len());
    let mut pos = 0usize;
    while let Some(&len) = question.get(pos) {
        if len == 0 {
            break;
        }
        let label = question.get(pos + 1..pos + 1 + usize::from(len)).ok_or(DnsError::Truncated)?;
        if pos > 0 {
            name.push('.');
        }
        match std::str::from_utf8(label) {
            Ok(text) => name.extend(text.chars().map(|c| c.to_ascii_lowercase())),
            Err(_) => name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase()),
        }
        pos += 1 + usize::from(len);
    }
    let tail = end - 4;
    Ok(Query {
        id: u16_at(msg, 0).ok_or(DnsError::Truncated)?,
        flags: u16_at(msg, 2).ok_or(DnsError::Truncated)?,
        name,
        question: question.to_vec(),
        qtype: u16_at(msg, tail).ok_or(DnsError::Truncated)?,
        qclass: u16_at(msg, tail + 2).ok_or(DnsError::Truncated)?,
    })
}

/// A mnemonic for a query type.
pub(crate) fn type_name(t: u16) -> String {
    match t {
        rtype::A => "A".into(),
        rtype::NS => "NS".into(),
        rtype::CNAME => "CNAME".into(),
        rtype::SOA => "SOA".into(),
        rtype::PTR => "PTR".into(),
        rtype::HINFO => "HINFO".into(),
        rtype::MX => "MX".into(),
        rtype::TXT => "TXT".into(),
        rtype::AAAA => "AAAA".into(),
        rtype::ANY => "ANY".into(),
        33 => "SRV".into(),
        other => format!("TYPE{other}"),
    }
}

/// A stable, public-looking IPv4 address for `name`, so repeated queries agree (HoneyPy
/// answered a fresh random address each time, which no real resolver does).
fn address_for(name: &str, salt: u64) -> Ipv4Addr {
    // FNV-1a over the salt and the name.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let [a, b, c, d, ..] = h.to_be_bytes();
    // First octet in 1..=223 and not private, loopback or link-local.
    let mut first = 1 + a % 223;
    if matches!(first, 10 | 127 | 169 | 172 | 192 | 100) {
        first = 45;
    }
    Ipv4Addr::new(first, b, c, d.max(1))
}

/// Appends one resource record whose owner is the question name (pointer to offset 12).
fn record(out: &mut BytesMut, rtype: u16, class: u16, rdata: &[u8]) {
    out.put_u16(0xC00C);
    out.put_u16(rtype);
    out.put_u16(class);
    out.put_u32(TTL);
    out.put_u16(u16::try_from(rdata.len()).unwrap_or(0));
    out.put_slice(rdata);
}

fn text_rdata(parts: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for p in parts {
        let b = p.as_bytes();
        let b = b.get(..255).unwrap_or(b);
        v.push(u8::try_from(b.len()).unwrap_or(255));
        v.extend_from_slice(b);
    }
    v
}

/// The answer to `q`: the question echoed and at most one record, well under 512 bytes.
pub fn answer(q: &Query, salt: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(12 + q.question.len() + 64);
    let opcode = q.flags & 0x7800;
    // QR, opcode copied, AA, RD copied, RA.
    let mut flags = 0x8000 | opcode | 0x0400 | (q.flags & 0x0100) | 0x0080;
    out.put_u16(q.id);
    let mut answers = BytesMut::new();
    let mut count = 0u16;
    // `version.bind` however its dots are placed, as HoneyPy matched it.
    let version_bind = q.name.bytes().filter(|b| *b != b'.').eq(b"versionbind".iter().copied());
    if opcode != 0 {
        flags = (flags & !0x0400) | 4; // NOTIMP
    } else if version_bind {
        record(&mut answers, rtype::TXT, q.qclass, &text_rdata(&["8.2.2-P5"]));
        count = 1;
    } else {
        match q.qtype {
            rtype::A => {
                record(&mut answers, rtype::A, 1, &address_for(&q.name, salt).octets());
                count = 1;
            }
            rtype::MX => {
                // 10 mail.<qname>, the name compressed against the question.
                let mut rd = vec![0, 10, 4];
                rd.extend_from_slice(b"mail");
                rd.extend_from_slice(&[0xC0, 0x0C]);
                record(&mut answers, rtype::MX, 1, &rd);
                count = 1;
            }
            rtype::NS => {
                let mut rd = vec![3];
                rd.extend_from_slice(b"ns1");
                rd.extend_from_slice(&[0xC0, 0x0C]);
                record(&mut answers, rtype::NS, 1, &rd);
                count = 1;
            }
            rtype::CNAME => {
                // HoneyPy's answer, kept for anyone who looks for it.
                let mut rd = vec![4];
                rd.extend_from_slice(b"taco");
                rd.push(7);
                rd.extend_from_slice(b"burrito");
                rd.push(0);
                record(&mut answers, rtype::CNAME, 1, &rd);
                count = 1;
            }
            rtype::TXT => {
                record(&mut answers, rtype::TXT, 1, &text_rdata(&["v=spf1 mx -all"]));
                count = 1;
            }
            rtype::ANY => {
                // RFC 8482: one small synthesised HINFO instead of everything.
                record(&mut answers, rtype::HINFO, 1, &text_rdata(&["RFC8482", ""]));
                count = 1;
            }
            // AAAA, PTR and the rest: an empty NOERROR answer (no data of that type).
            _ => {}
        }
    }
    out.put_u16(flags);
    out.put_u16(1);
    out.put_u16(count);
    out.put_u16(0);
    out.put_u16(0);
    out.put_slice(&q.question);
    out.put_slice(&answers);
    out.freeze()
}

struct DnsServer {
    salt: u64,
}

fn build(transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    no_options(table)?;
    // One salt per process, so a name resolves to the same address over UDP and TCP.
    static SALT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let salt = *SALT
        .get_or_init(|| u64::from_be_bytes(super::random_bytes(8).try_into().unwrap_or([7; 8])));
    let svc = Arc::new(DnsServer { salt });
    Ok(match transport {
        Transport::Udp => Handler::Udp(svc),
        _ => Handler::Tcp(svc),
    })
}

impl DnsServer {
    /// Answers one message, recording the query; `None` for messages that get no answer.
    fn handle_message(&self, ctx: &SessionCtx, msg: &[u8]) -> Option<Bytes> {
        match parse_query(msg) {
            Ok(q) => {
                let mut e = ctx.event(Kind::DNS_QUERY);
                e.dns = Some(Box::new(Dns {
                    qname: q.name.clone(),
                    qtype: type_name(q.qtype),
                    id: Some(q.id),
                }));
                ctx.emit(e);
                Some(answer(&q, self.salt))
            }
            Err(err) => {
                let mut e = ctx.event(Kind::PROTOCOL_ERROR);
                e.message = Some(format!("dns: {err:?}"));
                ctx.emit(e);
                None
            }
        }
    }
}

#[async_trait::async_trait]
impl UdpService for DnsServer {
    async fn datagram(&self, peer: &mut UdpPeer, data: &[u8]) -> Vec<Bytes> {
        self.handle_message(&peer.ctx, data).into_iter().collect()
    }
}

#[async_trait::async_trait]
impl TcpService for DnsServer {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        loop {
            let Some(len) = conn.read_exact(2).await? else { return Ok(()) };
            let len = usize::from(u16::from_be_bytes([
                len.first().copied().unwrap_or(0),
                len.get(1).copied().unwrap_or(0),
            ]));
            if len > MAX_TCP_MESSAGE {
                return Err(SessionError::TooLong);
            }
            let Some(msg) = conn.read_exact(len).await? else { return Ok(()) };
            let Some(answer) = self.handle_message(conn.ctx(), &msg) else { return Ok(()) };
            let mut framed = Vec::with_capacity(answer.len() + 2);
            framed.extend_from_slice(&u16::try_from(answer.len()).unwrap_or(0).to_be_bytes());
            framed.extend_from_slice(&answer);
            conn.tx(&framed).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    #[test]
    fn a_query_gets_a_stable_public_address() {
        let q = parse_query(&query("Example.COM", 1)).unwrap();
        assert_eq!(q.name, "example.com");
        let a = answer(&q, 1);
        assert_eq!(&a[..2], &[0x12, 0x34]);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1);
        assert_eq!(a, answer(&q, 1));
        let ip = Ipv4Addr::new(a[a.len() - 4], a[a.len() - 3], a[a.len() - 2], a[a.len() - 1]);
        assert!(!ip.is_private() && !ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    }

    #[test]
    fn names_are_lower_cased_dotted_and_lossy_for_non_utf8_labels() {
        let mut msg = query("WWW.x", 1);
        msg[13] = 0xff; // the first label's first byte
        let q = parse_query(&msg).unwrap();
        assert_eq!(q.name, "\u{fffd}ww.x");
        assert_eq!(parse_query(&query("A.b.C", 1)).unwrap().name, "a.b.c");
        let version = parse_query(&query("VERSION.BIND", 16)).unwrap();
        assert!(answer(&version, 0).windows(8).any(|w| w == b"8.2.2-P5"));
    }

    #[test]
    fn any_is_one_small_record_and_never_amplifies_much() {
        let msg = query("example.com", 255);
        let a = answer(&parse_query(&msg).unwrap(), 1);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1);
        assert!(a.len() <= msg.len() + 24, "{} vs {}", a.len(), msg.len());
    }

    #[test]
    fn rejects_responses_pointers_and_truncation() {
        let mut resp = query("a.b", 1);
        resp[2] |= 0x80;
        assert_eq!(check_query(&resp), Err(DnsError::NotAQuery));
        let mut ptr = query("a.b", 1);
        ptr[12] = 0xC0;
        assert_eq!(check_query(&ptr), Err(DnsError::BadName));
        let full = query("a.b", 1);
        for n in 0..full.len() {
            assert!(check_query(&full[..n]).is_err());
        }
        let version = parse_query(&query("version.bind", 16)).unwrap();
        assert!(answer(&version, 0).windows(8).any(|w| w == b"8.2.2-P5"));
    }
}
