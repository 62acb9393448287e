//! The first question name of a DNS message, over UDP or TCP (two-byte length prefix).

use super::Extract;

/// Longest name accepted (RFC 1035 limit on the wire form).
const MAX_NAME: usize = 255;
/// Compression pointers followed before giving up (a loop or a hostile chain).
const MAX_POINTERS: usize = 16;

#[derive(Debug, PartialEq, Eq)]
enum Fail {
    Short,
    Bad,
}

/// The first question name of a DNS message carried in one UDP datagram.
pub fn udp_question(msg: &[u8]) -> Extract {
    match first_question(msg) {
        Ok(name) => Extract::Name(name),
        Err(_) => Extract::NoName,
    }
}

/// The first question name of a DNS-over-TCP stream prefix (length-prefixed message).
pub fn tcp_question(stream: &[u8]) -> Extract {
    let Some(len) = be16(stream, 0).map(usize::from) else {
        return Extract::NeedMore;
    };
    let body = stream.get(2..).unwrap_or_default();
    let body = body.get(..len.min(body.len())).unwrap_or_default();
    match first_question(body) {
        Ok(name) => Extract::Name(name),
        Err(Fail::Short) if body.len() < len => Extract::NeedMore,
        Err(_) => Extract::NoName,
    }
}

pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_be_bytes(s))
}

/// Phase one walks the name checking every length and pointer; phase two builds the string
/// only once the whole question (name, type, class) is known to be present.
fn first_question(msg: &[u8]) -> Result<String, Fail> {
    msg.get(..12).ok_or(Fail::Short)?;
    let qdcount = be16(msg, 4).ok_or(Fail::Short)?;
    if qdcount == 0 {
        return Err(Fail::Bad);
    }
    let end = check_name(msg, 12)?;
    msg.get(end..end + 4).ok_or(Fail::Short)?;
    let mut out = Vec::with_capacity(64);
    build_name(msg, 12, &mut out)?;
    String::from_utf8(out).map_err(|_| Fail::Bad)
}

/// Returns the offset just after the name in the question (not following pointers' targets).
fn check_name(msg: &[u8], start: usize) -> Result<usize, Fail> {
    let mut at = start;
    let mut end = None;
    let mut total = 0usize;
    let mut jumps = 0;
    loop {
        let len = *msg.get(at).ok_or(Fail::Short)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                return Ok(end.unwrap_or(at + 1));
            }
            0x00 => {
                let l = usize::from(len);
                total += l + 1;
                if total > MAX_NAME {
                    return Err(Fail::Bad);
                }
                msg.get(at + 1..at + 1 + l).ok_or(Fail::Short)?;
                at += 1 + l;
            }
            0xc0 => {
                let lo = *msg.get(at + 1).ok_or(Fail::Short)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3f, lo]));
                jumps += 1;
                if jumps > MAX_POINTERS || target >= msg.len() {
                    return Err(Fail::Bad);
                }
                if end.is_none() {
                    end = Some(at + 2);
                }
                at = target;
            }
            _ => return Err(Fail::Bad),
        }
    }
}

fn build_name(msg: &[u8], start: usize, out: &mut Vec<u8>) -> Result<(), Fail> {
    let mut at = start;
    let mut jumps = 0;
    loop {
        let len = *msg.get(at).ok_or(Fail::Bad)?;
        if len == 0 {
            return Ok(());
        }
        if len & 0xc0 == 0xc0 {
            let lo = *msg.get(at + 1).ok_or(Fail::Bad)?;
            jumps += 1;
            if jumps > MAX_POINTERS {
                return Err(Fail::Bad);
            }
            at = usize::from(u16::from_be_bytes([len & 0x3f, lo]));
            continue;
        }
        let l = usize::from(len);
        let label = msg.get(at + 1..at + 1 + l).ok_or(Fail::Bad)?;
        if out.len() + l + 1 > MAX_NAME {
            return Err(Fail::Bad);
        }
        out.extend_from_slice(label);
        out.push(b'.');
        at += 1 + l;
    }
}

/// Builds a DNS query for `name` (tests, benches and fuzz seeds).
pub fn build_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(name.len() + 18);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        m.push(label.len().min(63) as u8);
        m.extend_from_slice(label.as_bytes().get(..label.len().min(63)).unwrap_or_default());
    }
    m.push(0);
    m.extend_from_slice(&[0, 1, 0, 1]);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_and_tcp_questions() {
        let q = build_query(7, "www.Example.com");
        assert_eq!(udp_question(&q), Extract::Name("www.Example.com.".into()));
        let mut t = (q.len() as u16).to_be_bytes().to_vec();
        t.extend_from_slice(&q);
        assert_eq!(tcp_question(&t), Extract::Name("www.Example.com.".into()));
        for n in 0..t.len() {
            assert_eq!(tcp_question(&t[..n]), Extract::NeedMore, "{n}");
        }
        for n in 0..q.len() {
            assert_eq!(udp_question(&q[..n]), Extract::NoName, "{n}");
        }
    }

    #[test]
    fn pointers_loops_and_garbage() {
        let mut q = build_query(1, "a.b");
        // Point the question name at itself: a loop.
        q.splice(12..12, [0xc0, 12]);
        assert_eq!(udp_question(&q), Extract::NoName);
        let mut bad = build_query(1, "x");
        bad[12] = 0x80;
        assert_eq!(udp_question(&bad), Extract::NoName);
        let mut zero = build_query(1, "x");
        zero[5] = 0;
        assert_eq!(udp_question(&zero), Extract::NoName);
        assert_eq!(udp_question(&[0xff; 40]), Extract::NoName);
    }

    #[test]
    fn non_utf8_is_no_name() {
        let mut q = build_query(1, "ab");
        q[13] = 0xff;
        assert_eq!(udp_question(&q), Extract::NoName);
    }
}
