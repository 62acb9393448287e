//! The `Host` header of an HTTP/1 request head.

use super::Extract;

/// Longest request head inspected.
pub const MAX_HEAD: usize = 8192;

/// The Host header (without port) of the request at the start of `stream`.
pub fn request_host(stream: &[u8]) -> Extract {
    // Phase one: does this look like a request line at all?
    let mut method_len = 0;
    for b in stream.iter().take(17) {
        match b {
            b'A'..=b'Z' | b'-' | b'_' => method_len += 1,
            b' ' if method_len > 0 => break,
            _ => return Extract::NoName,
        }
    }
    if method_len == stream.len() {
        return Extract::NeedMore;
    }
    if method_len > 16 {
        return Extract::NoName;
    }
    // Phase two: walk complete header lines.
    let head = stream.get(..stream.len().min(MAX_HEAD)).unwrap_or_default();
    let mut lines = head.split(|b| *b == b'\n');
    let mut complete = head.iter().filter(|b| **b == b'\n').count();
    if lines.next().is_none() || complete == 0 {
        return need_or_none(stream);
    }
    complete -= 1;
    for line in lines.take(complete) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Extract::NoName;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (name, value) = line.split_at(colon);
        if !name.eq_ignore_ascii_case(b"host") {
            continue;
        }
        let value = value.get(1..).unwrap_or_default();
        let Ok(v) = std::str::from_utf8(value) else { return Extract::NoName };
        let v = v.trim();
        let host = strip_port(v);
        return if host.is_empty() { Extract::NoName } else { Extract::Name(host.to_owned()) };
    }
    need_or_none(stream)
}

fn need_or_none(stream: &[u8]) -> Extract {
    if stream.len() < MAX_HEAD { Extract::NeedMore } else { Extract::NoName }
}

fn strip_port(v: &str) -> &str {
    if v.starts_with('[') {
        return v.find(']').and_then(|end| v.get(..=end)).unwrap_or(v);
    }
    match v.split_once(':') {
        Some((h, p)) if !p.contains(':') => h,
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_found_and_port_stripped() {
        let r = b"GET /x HTTP/1.1\r\nUser-Agent: a\r\nhOsT:  Www.Example.org:8080 \r\n\r\n";
        assert_eq!(request_host(r), Extract::Name("Www.Example.org".into()));
        assert_eq!(
            request_host(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"),
            Extract::Name("[::1]".into())
        );
        for n in 0..40 {
            assert_eq!(request_host(&r[..n]), Extract::NeedMore, "{n}");
        }
    }

    #[test]
    fn no_host_or_not_http() {
        assert_eq!(request_host(b"GET / HTTP/1.0\r\n\r\nHost: late\r\n"), Extract::NoName);
        assert_eq!(request_host(b"\x16\x03\x01"), Extract::NoName);
        assert_eq!(request_host(b"get / HTTP/1.1\r\n"), Extract::NoName);
        assert_eq!(request_host(b"GET / HTTP/1.1\r\nHost: \r\n"), Extract::NoName);
    }
}
