//! hpfeeds frames, two-phase: [`check`] says whether a whole frame is buffered (and how long
//! it is) without allocating, then [`Frame::parse`] reads it. Lengths are capped; hostile bytes
//! cannot panic it (fuzzed by `sinks_hpfeeds_frame`).
//!
//! Wire: `u32` big-endian total length including the 5-byte header, `u8` opcode, payload.

/// Largest frame accepted (hpfeeds' `MAXBUF` plus the header).
pub const MAX_FRAME: u32 = (1 << 20) + 5;

/// Opcodes.
pub const OP_ERROR: u8 = 0;
/// Broker name and nonce.
pub const OP_INFO: u8 = 1;
/// Client credentials.
pub const OP_AUTH: u8 = 2;
/// A message on a channel.
pub const OP_PUBLISH: u8 = 3;
/// Channel subscription.
pub const OP_SUBSCRIBE: u8 = 4;

/// Why a buffer does not hold a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes are needed.
    Incomplete,
    /// Not a valid frame.
    Invalid(&'static str),
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Broker error text.
    Error(String),
    /// Broker name and the nonce to sign.
    Info {
        /// Broker name.
        name: String,
        /// Nonce bytes.
        nonce: Vec<u8>,
    },
    /// Ident and SHA-1 proof.
    Auth {
        /// Client ident.
        ident: String,
        /// SHA-1(nonce ‖ secret).
        hash: Vec<u8>,
    },
    /// A published message.
    Publish {
        /// Publisher ident.
        ident: String,
        /// Channel.
        channel: String,
        /// Opaque payload.
        payload: Vec<u8>,
    },
    /// A subscription.
    Subscribe {
        /// Subscriber ident.
        ident: String,
        /// Channel (rest of frame).
        channel: String,
    },
}

/// The total length of the frame at the start of `buf`.
pub fn check(buf: &[u8]) -> Result<usize, FrameError> {
    let Some(header) = buf.get(..5) else { return Err(FrameError::Incomplete) };
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if len < 5 {
        return Err(FrameError::Invalid("length shorter than the header"));
    }
    if len > MAX_FRAME {
        return Err(FrameError::Invalid("frame too long"));
    }
    if header[4] > 5 {
        return Err(FrameError::Invalid("unknown opcode"));
    }
    let len = len as usize;
    if buf.len() < len { Err(FrameError::Incomplete) } else { Ok(len) }
}

/// Reads a strpack8 (length byte, bytes) at `at`; returns it and the next offset.
fn str8(p: &[u8], at: usize) -> Result<(&[u8], usize), FrameError> {
    let n = *p.get(at).ok_or(FrameError::Invalid("missing string length"))? as usize;
    let s = p.get(at + 1..at + 1 + n).ok_or(FrameError::Invalid("string past frame end"))?;
    Ok((s, at + 1 + n))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Frame {
    /// Parses the frame at the start of `buf`; returns it and its length.
    pub fn parse(buf: &[u8]) -> Result<(Self, usize), FrameError> {
        let len = check(buf)?;
        let op = *buf.get(4).ok_or(FrameError::Incomplete)?;
        let p = buf.get(5..len).ok_or(FrameError::Incomplete)?;
        let frame = match op {
            OP_ERROR => Self::Error(text(p)),
            OP_INFO => {
                let (name, at) = str8(p, 0)?;
                Self::Info { name: text(name), nonce: p.get(at..).unwrap_or_default().to_vec() }
            }
            OP_AUTH => {
                let (ident, at) = str8(p, 0)?;
                Self::Auth { ident: text(ident), hash: p.get(at..).unwrap_or_default().to_vec() }
            }
            OP_PUBLISH => {
                let (ident, at) = str8(p, 0)?;
                let (channel, at) = str8(p, at)?;
                Self::Publish {
                    ident: text(ident),
                    channel: text(channel),
                    payload: p.get(at..).unwrap_or_default().to_vec(),
                }
            }
            OP_SUBSCRIBE => {
                let (ident, at) = str8(p, 0)?;
                Self::Subscribe {
                    ident: text(ident),
                    channel: text(p.get(at..).unwrap_or_default()),
                }
            }
            _ => return Err(FrameError::Invalid("unsupported opcode")),
        };
        Ok((frame, len))
    }
}

fn header(out: &mut Vec<u8>, op: u8, payload_len: usize) {
    let total = u32::try_from(payload_len + 5).unwrap_or(u32::MAX);
    out.extend_from_slice(&total.to_be_bytes());
    out.push(op);
}

fn put_str8(out: &mut Vec<u8>, s: &[u8]) {
    let s = s.get(..s.len().min(255)).unwrap_or_default();
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// Appends an AUTH frame.
pub fn auth(out: &mut Vec<u8>, ident: &str, hash: &[u8]) {
    let ident = &ident.as_bytes()[..ident.len().min(255)];
    header(out, OP_AUTH, 1 + ident.len() + hash.len());
    put_str8(out, ident);
    out.extend_from_slice(hash);
}

/// Appends a PUBLISH frame.
pub fn publish(out: &mut Vec<u8>, ident: &str, channel: &str, payload: &[u8]) {
    let ident = &ident.as_bytes()[..ident.len().min(255)];
    let channel = &channel.as_bytes()[..channel.len().min(255)];
    header(out, OP_PUBLISH, 2 + ident.len() + channel.len() + payload.len());
    put_str8(out, ident);
    put_str8(out, channel);
    out.extend_from_slice(payload);
}

/// Appends a SUBSCRIBE frame (tests and tools).
pub fn subscribe(out: &mut Vec<u8>, ident: &str, channel: &str) {
    let ident = &ident.as_bytes()[..ident.len().min(255)];
    header(out, OP_SUBSCRIBE, 1 + ident.len() + channel.len());
    put_str8(out, ident);
    out.extend_from_slice(channel.as_bytes());
}

/// SHA-1(nonce ‖ secret), the AUTH proof.
pub fn proof(nonce: &[u8], secret: &str) -> [u8; 20] {
    use sha1::{Digest as _, Sha1};
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(secret.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let mut buf = Vec::new();
        publish(&mut buf, "apiary", "events", b"{\"a\":1}");
        auth(&mut buf, "apiary", &proof(b"\x01\x02\x03\x04", "s3cret"));
        let (f, n) = Frame::parse(&buf).unwrap();
        assert_eq!(
            f,
            Frame::Publish {
                ident: "apiary".into(),
                channel: "events".into(),
                payload: b"{\"a\":1}".to_vec()
            }
        );
        let (f, m) = Frame::parse(&buf[n..]).unwrap();
        assert!(matches!(f, Frame::Auth { ref hash, .. } if hash.len() == 20));
        assert_eq!(n + m, buf.len());
        for cut in 0..n {
            assert_eq!(check(&buf[..cut]), Err(FrameError::Incomplete));
        }
        assert!(matches!(check(&[0, 0, 0, 2, 1]), Err(FrameError::Invalid(_))));
        assert!(matches!(check(&[0xff, 0, 0, 0, 1]), Err(FrameError::Invalid(_))));
        // A string length pointing past the frame.
        assert!(matches!(Frame::parse(&[0, 0, 0, 7, 3, 9, b'x']), Err(FrameError::Invalid(_))));
    }
}
