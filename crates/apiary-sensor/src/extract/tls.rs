//! The server name (SNI) of a TLS ClientHello, from a stream prefix that may hold the hello
//! split over several TCP segments and several TLS records.

use super::Extract;
use super::dns::be16;

/// Largest ClientHello accepted (post-quantum key shares make them a few KiB).
pub const MAX_HELLO: usize = 16_384;

/// The SNI host name in the ClientHello at the start of `stream`.
pub fn client_hello_sni(stream: &[u8]) -> Extract {
    // Fast path: the whole hello in the first record (the usual case), no copy.
    let Some(&ct) = stream.first() else { return Extract::NeedMore };
    if ct != 22 {
        return Extract::NoName;
    }
    if stream.get(1).is_some_and(|v| *v != 3) {
        return Extract::NoName;
    }
    let Some(rec_len) = be16(stream, 3).map(usize::from) else { return Extract::NeedMore };
    if rec_len == 0 || rec_len > 16_384 + 2048 {
        return Extract::NoName;
    }
    let first = stream.get(5..5 + rec_len.min(stream.len().saturating_sub(5))).unwrap_or_default();
    let Some(hs_len) = hello_len(first) else {
        return if first.len() < 4 && first.len() < rec_len {
            Extract::NeedMore
        } else {
            Extract::NoName
        };
    };
    if hs_len > MAX_HELLO {
        return Extract::NoName;
    }
    if first.len() >= 4 + hs_len {
        return parse_hello(first.get(4..4 + hs_len).unwrap_or_default());
    }
    if first.len() < rec_len {
        return Extract::NeedMore;
    }
    // The hello spans several records: join their fragments (capped).
    let mut hs = Vec::with_capacity(4 + hs_len);
    let mut at = 0usize;
    while hs.len() < 4 + hs_len {
        let Some(hdr) = stream.get(at..at + 5) else { return Extract::NeedMore };
        if hdr.first() != Some(&22) {
            return Extract::NoName;
        }
        let Some(len) = be16(hdr, 3).map(usize::from) else { return Extract::NeedMore };
        if len == 0 {
            return Extract::NoName;
        }
        let Some(frag) = stream.get(at + 5..at + 5 + len) else {
            // A partial last record is enough when it completes the hello.
            let part = stream.get(at + 5..).unwrap_or_default();
            hs.extend_from_slice(part);
            if hs.len() >= 4 + hs_len {
                break;
            }
            return Extract::NeedMore;
        };
        hs.extend_from_slice(frag);
        at += 5 + len;
    }
    parse_hello(hs.get(4..4 + hs_len).unwrap_or_default())
}

/// The handshake body length when `hs` starts with a ClientHello header.
fn hello_len(hs: &[u8]) -> Option<usize> {
    if *hs.first()? != 1 {
        return Some(usize::MAX);
    }
    let b: [u8; 3] = hs.get(1..4)?.try_into().ok()?;
    Some((usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
}

/// Walks a complete ClientHello body to the server_name extension.
fn parse_hello(body: &[u8]) -> Extract {
    fn walk(body: &[u8]) -> Option<Option<&[u8]>> {
        // version (2) + random (32)
        let mut at = 34usize;
        let sid = usize::from(*body.get(at)?);
        at += 1 + sid;
        let suites = usize::from(be16(body, at)?);
        at += 2 + suites;
        let comp = usize::from(*body.get(at)?);
        at += 1 + comp;
        let Some(ext_len) = be16(body, at) else { return Some(None) };
        at += 2;
        let exts = body.get(at..at + usize::from(ext_len))?;
        let mut e = 0usize;
        while e + 4 <= exts.len() {
            let ty = be16(exts, e)?;
            let len = usize::from(be16(exts, e + 2)?);
            let data = exts.get(e + 4..e + 4 + len)?;
            if ty == 0 {
                // server_name_list: length (2), then entries of type (1), length (2), name.
                let mut s = 2usize;
                while s + 3 <= data.len() {
                    let kind = *data.get(s)?;
                    let nlen = usize::from(be16(data, s + 1)?);
                    let name = data.get(s + 3..s + 3 + nlen)?;
                    if kind == 0 {
                        return Some(Some(name));
                    }
                    s += 3 + nlen;
                }
                return Some(None);
            }
            e += 4 + len;
        }
        Some(None)
    }
    match walk(body) {
        Some(Some(name)) => match std::str::from_utf8(name) {
            Ok(n) if !n.is_empty() => Extract::Name(n.to_owned()),
            _ => Extract::NoName,
        },
        _ => Extract::NoName,
    }
}

/// Builds a TLS 1.2-style ClientHello record carrying `sni` and `pad` bytes of padding
/// extension (tests, benches and fuzz seeds).
pub fn build_client_hello(sni: &str, pad: usize) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.push(0);
    body.extend_from_slice(&[0, 2, 0x13, 0x01]);
    body.extend_from_slice(&[1, 0]);
    let mut exts = Vec::new();
    let name = sni.as_bytes();
    let list_len = name.len() + 3;
    exts.extend_from_slice(&[0, 0]);
    exts.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
    exts.extend_from_slice(&(list_len as u16).to_be_bytes());
    exts.push(0);
    exts.extend_from_slice(&(name.len() as u16).to_be_bytes());
    exts.extend_from_slice(name);
    if pad > 0 {
        exts.extend_from_slice(&[0, 21]);
        exts.extend_from_slice(&(pad as u16).to_be_bytes());
        exts.resize(exts.len() + pad, 0);
    }
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![22, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_in_one_record_and_every_prefix_needs_more() {
        let ch = build_client_hello("Secure.Example.net", 0);
        assert_eq!(client_hello_sni(&ch), Extract::Name("Secure.Example.net".into()));
        for n in 0..ch.len() {
            assert_eq!(client_hello_sni(&ch[..n]), Extract::NeedMore, "{n}");
        }
    }

    #[test]
    fn sni_over_two_records() {
        let ch = build_client_hello("split.example", 600);
        let hs = &ch[5..];
        let (a, b) = hs.split_at(100);
        let mut two = vec![22, 3, 1];
        two.extend_from_slice(&(a.len() as u16).to_be_bytes());
        two.extend_from_slice(a);
        two.extend_from_slice(&[22, 3, 1]);
        two.extend_from_slice(&(b.len() as u16).to_be_bytes());
        two.extend_from_slice(b);
        assert_eq!(client_hello_sni(&two), Extract::Name("split.example".into()));
        assert_eq!(client_hello_sni(&two[..200]), Extract::NeedMore);
    }

    #[test]
    fn not_tls() {
        assert_eq!(client_hello_sni(b"GET / HTTP/1.1\r\n"), Extract::NoName);
        assert_eq!(client_hello_sni(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Extract::NoName);
        assert_eq!(client_hello_sni(&[22, 3, 1, 0, 0]), Extract::NoName);
        let no_sni = build_client_hello("", 0);
        assert_eq!(client_hello_sni(&no_sni), Extract::NoName);
    }
}
