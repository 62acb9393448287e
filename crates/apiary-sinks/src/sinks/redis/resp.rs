//! RESP2 replies, two-phase: [`check_reply`] finds where a complete reply ends without
//! allocating, then [`Reply::parse`] reads it. Replies are capped; nothing here can panic on
//! hostile bytes (fuzzed by `sinks_redis_reply`).

/// Largest bulk string or array accepted.
const MAX_LEN: i64 = 16 << 20;
const MAX_DEPTH: usize = 8;

/// Why a buffer does not hold a reply yet, or never will.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// More bytes are needed.
    Incomplete,
    /// The bytes are not RESP (or exceed the caps).
    Invalid,
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Simple(String),
    /// `-ERR ...`.
    Error(String),
    /// `:1`.
    Integer(i64),
    /// `$n` (None for `$-1`).
    Bulk(Option<Vec<u8>>),
    /// `*n` (None for `*-1`).
    Array(Option<Vec<Reply>>),
}

fn line(buf: &[u8], at: usize) -> Result<(&[u8], usize), ReplyError> {
    let rest = buf.get(at..).ok_or(ReplyError::Incomplete)?;
    let too_long = if rest.len() > 4096 { ReplyError::Invalid } else { ReplyError::Incomplete };
    let end = rest.windows(2).position(|w| w == b"\r\n").ok_or(too_long)?;
    Ok((rest.get(..end).ok_or(ReplyError::Invalid)?, at + end + 2))
}

fn number(s: &[u8]) -> Result<i64, ReplyError> {
    std::str::from_utf8(s).ok().and_then(|s| s.parse().ok()).ok_or(ReplyError::Invalid)
}

fn check_at(buf: &[u8], at: usize, depth: usize) -> Result<usize, ReplyError> {
    if depth > MAX_DEPTH {
        return Err(ReplyError::Invalid);
    }
    let tag = *buf.get(at).ok_or(ReplyError::Incomplete)?;
    let (body, next) = line(buf, at + 1)?;
    match tag {
        b'+' | b'-' => Ok(next),
        b':' => number(body).map(|_| next),
        b'$' => {
            let n = number(body)?;
            if n == -1 {
                return Ok(next);
            }
            if !(0..=MAX_LEN).contains(&n) {
                return Err(ReplyError::Invalid);
            }
            let end = next + n as usize;
            if buf.len() < end + 2 {
                return Err(ReplyError::Incomplete);
            }
            if buf.get(end..end + 2) != Some(b"\r\n") {
                return Err(ReplyError::Invalid);
            }
            Ok(end + 2)
        }
        b'*' => {
            let n = number(body)?;
            if n == -1 {
                return Ok(next);
            }
            if !(0..=MAX_LEN).contains(&n) {
                return Err(ReplyError::Invalid);
            }
            let mut at = next;
            for _ in 0..n {
                at = check_at(buf, at, depth + 1)?;
            }
            Ok(at)
        }
        _ => Err(ReplyError::Invalid),
    }
}

/// The length of the complete reply at the start of `buf`.
pub fn check_reply(buf: &[u8]) -> Result<usize, ReplyError> {
    check_at(buf, 0, 0)
}

impl Reply {
    /// Parses the reply at the start of `buf`; call after [`check_reply`] succeeded.
    pub fn parse(buf: &[u8]) -> Result<(Self, usize), ReplyError> {
        Self::parse_at(buf, 0, 0)
    }

    fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<(Self, usize), ReplyError> {
        if depth > MAX_DEPTH {
            return Err(ReplyError::Invalid);
        }
        let tag = *buf.get(at).ok_or(ReplyError::Incomplete)?;
        let (body, next) = line(buf, at + 1)?;
        let text = || String::from_utf8_lossy(body).into_owned();
        Ok(match tag {
            b'+' => (Self::Simple(text()), next),
            b'-' => (Self::Error(text()), next),
            b':' => (Self::Integer(number(body)?), next),
            b'$' => {
                let n = number(body)?;
                if n == -1 {
                    return Ok((Self::Bulk(None), next));
                }
                if !(0..=MAX_LEN).contains(&n) {
                    return Err(ReplyError::Invalid);
                }
                let end = next + n as usize;
                let data = buf.get(next..end).ok_or(ReplyError::Incomplete)?.to_vec();
                (Self::Bulk(Some(data)), end + 2)
            }
            b'*' => {
                let n = number(body)?;
                if n == -1 {
                    return Ok((Self::Array(None), next));
                }
                if !(0..=MAX_LEN).contains(&n) {
                    return Err(ReplyError::Invalid);
                }
                let mut items = Vec::new();
                let mut at = next;
                for _ in 0..n {
                    let (item, after) = Self::parse_at(buf, at, depth + 1)?;
                    items.push(item);
                    at = after;
                }
                (Self::Array(Some(items)), at)
            }
            _ => return Err(ReplyError::Invalid),
        })
    }
}

/// Appends a command as a RESP array of bulk strings.
pub(crate) fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_then_parses_every_type() {
        let buf = b"*3\r\n+OK\r\n:42\r\n$5\r\nhello\r\n-ERR x\r\n";
        let n = check_reply(buf).unwrap();
        let (r, m) = Reply::parse(buf).unwrap();
        assert_eq!(n, m);
        assert_eq!(
            r,
            Reply::Array(Some(vec![
                Reply::Simple("OK".into()),
                Reply::Integer(42),
                Reply::Bulk(Some(b"hello".to_vec()))
            ]))
        );
        assert_eq!(Reply::parse(&buf[n..]).unwrap().0, Reply::Error("ERR x".into()));
        for cut in 0..n {
            assert_eq!(check_reply(&buf[..cut]), Err(ReplyError::Incomplete), "{cut}");
        }
        assert_eq!(check_reply(b"$99999999999\r\n"), Err(ReplyError::Invalid));
        assert_eq!(check_reply(b"?x\r\n"), Err(ReplyError::Invalid));
        assert_eq!(check_reply(b"$2\r\nabXY"), Err(ReplyError::Invalid));
    }
}
