//! Frames of the worker protocol: a 4-byte big-endian length, then that many bytes of JSON.
//! Parsing is two-phase (check, then parse) and capped, as for every wire format in apiary.

use std::io::{Read, Write};

use serde_json::Value;

/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 64 << 20;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// More bytes are needed.
    #[error("incomplete frame")]
    Incomplete,
    /// The length prefix is over [`MAX_FRAME`].
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    /// The body is not JSON.
    #[error("bad frame body: {0}")]
    Json(#[from] serde_json::Error),
    /// The stream failed or ended.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks whether `buf` starts with a whole frame; returns its total length (prefix included).
pub fn check(buf: &[u8]) -> Result<usize, FrameError> {
    let Some(head) = buf.get(..4) else { return Err(FrameError::Incomplete) };
    let mut len = [0u8; 4];
    len.copy_from_slice(head);
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME {
        return Err(FrameError::TooLarge(n));
    }
    if buf.len() - 4 < n {
        return Err(FrameError::Incomplete);
    }
    Ok(n + 4)
}

/// Parses the frame at the start of `buf`; returns the value and the bytes consumed.
pub fn parse(buf: &[u8]) -> Result<(Value, usize), FrameError> {
    let total = check(buf)?;
    let body = buf.get(4..total).ok_or(FrameError::Incomplete)?;
    Ok((serde_json::from_slice(body)?, total))
}

/// Encodes a value as one frame.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    // Writing JSON into a Vec cannot fail for serde_json::Value.
    let _ = serde_json::to_writer(&mut out, v);
    let n = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&n.to_be_bytes());
    out
}

/// Reads one frame from a blocking stream.
pub fn read_from(r: &mut impl Read) -> Result<Value, FrameError> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head)?;
    let n = u32::from_be_bytes(head) as usize;
    if n > MAX_FRAME {
        return Err(FrameError::TooLarge(n));
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)?;
    Ok(serde_json::from_slice(&body)?)
}

/// Writes encoded frame bytes to a blocking stream.
pub(crate) fn write_to(w: &mut impl Write, frame: &[u8]) -> std::io::Result<()> {
    w.write_all(frame)?;
    w.flush()
}
