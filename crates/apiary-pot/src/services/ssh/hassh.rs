//! Client fingerprinting: a stream wrapper that watches the first cleartext bytes of an SSH
//! connection for the client's identification line and KEXINIT, and the two-phase parser of
//! that KEXINIT from which the HASSH (MD5 of the client's kex;cipher;mac;compression lists) is
//! computed.
#![deny(clippy::indexing_slicing)]

use std::pin::Pin;
use std::task::{Context, Poll};

use md5::Digest as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::session::Stream;

/// Bytes watched before giving up (identification plus one KEXINIT is a few KiB).
const WATCH_CAP: usize = 32 * 1024;
/// SSH_MSG_KEXINIT.
const KEXINIT: u8 = 20;

/// What the client offered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ClientHello {
    /// The identification line without CR LF.
    pub(crate) version: String,
    pub(crate) kex: String,
    pub(crate) host_keys: String,
    pub(crate) ciphers: String,
    pub(crate) macs: String,
    pub(crate) compression: String,
}

impl ClientHello {
    /// The HASSH input string, `kex;ciphers;macs;compression` (client to server lists).
    pub(crate) fn hassh_algorithms(&self) -> String {
        format!("{};{};{};{}", self.kex, self.ciphers, self.macs, self.compression)
    }

    /// HASSH: lower-case hex MD5 of [`Self::hassh_algorithms`].
    pub(crate) fn hassh(&self) -> String {
        md5::Md5::digest(self.hassh_algorithms().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Why a buffer does not hold a client hello (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HelloError {
    /// More bytes are needed.
    Incomplete,
    /// The bytes are not an SSH client hello.
    Invalid,
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        let (a, b) =
            (self.0.get(..n).ok_or(HelloError::Incomplete)?, self.0.get(n..).unwrap_or_default());
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, HelloError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(b.try_into().map_err(|_| HelloError::Incomplete)?))
    }
}

/// Phase one: whether `buf` holds the identification line and a whole first packet; returns
/// the offsets of the line end and the packet payload.
pub(crate) fn check(buf: &[u8]) -> Result<(usize, usize, usize), HelloError> {
    // The client sends exactly one line starting "SSH-" (RFC 4253 lets only servers send
    // other lines first); cap it at 255 bytes as the RFC does.
    let nl = buf.iter().take(256).position(|b| *b == b'\n');
    let Some(nl) = nl else {
        return Err(if buf.len() >= 256 { HelloError::Invalid } else { HelloError::Incomplete });
    };
    if !buf.starts_with(b"SSH-") {
        return Err(HelloError::Invalid);
    }
    let mut c = Cursor(buf.get(nl + 1..).unwrap_or_default());
    let len = c.u32()? as usize;
    if !(5..=WATCH_CAP).contains(&len) {
        return Err(HelloError::Invalid);
    }
    let pad = usize::from(*c.take(1)?.first().ok_or(HelloError::Incomplete)?);
    let payload_len = len.checked_sub(pad + 1).ok_or(HelloError::Invalid)?;
    let start = nl + 1 + 5;
    if buf.len() < start + payload_len {
        return Err(HelloError::Incomplete);
    }
    Ok((nl, start, payload_len))
}

/// Phase two: parses what [`check`] accepted.
pub(crate) fn parse(buf: &[u8]) -> Result<ClientHello, HelloError> {
    let (nl, start, len) = check(buf)?;
    let line = buf.get(..nl).ok_or(HelloError::Invalid)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut c = Cursor(buf.get(start..start + len).ok_or(HelloError::Invalid)?);
    if c.take(1)? != [KEXINIT] {
        return Err(HelloError::Invalid);
    }
    c.take(16)?;
    let mut lists = Vec::with_capacity(10);
    for _ in 0..10 {
        let n = c.u32()? as usize;
        let s = c.take(n).map_err(|_| HelloError::Invalid)?;
        lists.push(String::from_utf8_lossy(s).into_owned());
    }
    let mut it = lists.into_iter();
    let mut next = || it.next().unwrap_or_default();
    let kex = next();
    let host_keys = next();
    let ciphers = next();
    let _ = next();
    let macs = next();
    let _ = next();
    let compression = next();
    Ok(ClientHello {
        version: String::from_utf8_lossy(line).into_owned(),
        kex,
        host_keys,
        ciphers,
        macs,
        compression,
    })
}

/// Wraps the connection: copies the first inbound bytes aside until the client hello is
/// parsed (then calls `done` once and stops watching), and counts bytes both ways.
pub(crate) struct Tap<F: FnMut(Option<ClientHello>) + Send + Unpin> {
    inner: Box<dyn Stream>,
    seen: Option<Vec<u8>>,
    done: Option<F>,
}

impl<F: FnMut(Option<ClientHello>) + Send + Unpin> Tap<F> {
    pub(crate) fn new(inner: Box<dyn Stream>, done: F) -> Self {
        Self { inner, seen: Some(Vec::new()), done: Some(done) }
    }

    fn watch(&mut self, data: &[u8]) {
        let Some(seen) = self.seen.as_mut() else { return };
        seen.extend_from_slice(data);
        let result = match parse(seen) {
            Ok(h) => Some(h),
            Err(HelloError::Incomplete) if seen.len() < WATCH_CAP => return,
            Err(_) => None,
        };
        self.seen = None;
        if let Some(mut f) = self.done.take() {
            f(result);
        }
    }
}

impl<F: FnMut(Option<ClientHello>) + Send + Unpin> AsyncRead for Tap<F> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && self.seen.is_some() {
            let new = buf.filled().get(before..).unwrap_or_default().to_vec();
            self.watch(&new);
        }
        r
    }
}

impl<F: FnMut(Option<ClientHello>) + Send + Unpin> AsyncWrite for Tap<F> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    pub(crate) fn hello(lists: [&str; 10]) -> Vec<u8> {
        let mut payload = vec![KEXINIT];
        payload.extend_from_slice(&[7; 16]);
        for l in lists {
            payload.extend_from_slice(&(l.len() as u32).to_be_bytes());
            payload.extend_from_slice(l.as_bytes());
        }
        payload.extend_from_slice(&[0, 0, 0, 0, 0]);
        let pad = 4u8;
        let mut out = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n".to_vec();
        out.extend_from_slice(&((payload.len() + 1 + usize::from(pad)) as u32).to_be_bytes());
        out.push(pad);
        out.extend_from_slice(&payload);
        out.extend_from_slice(&[0; 4]);
        out
    }

    #[test]
    fn hassh_of_a_kexinit() {
        let buf = hello([
            "curve25519-sha256",
            "ssh-ed25519",
            "aes128-ctr",
            "aes128-ctr",
            "hmac-sha1",
            "hmac-sha1",
            "none",
            "none",
            "",
            "",
        ]);
        for cut in 0..buf.len() - 4 {
            assert_eq!(parse(&buf[..cut]), Err(HelloError::Incomplete), "cut {cut}");
        }
        let h = parse(&buf).unwrap();
        assert_eq!(h.version, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3");
        assert_eq!(h.hassh_algorithms(), "curve25519-sha256;aes128-ctr;hmac-sha1;none");
        assert_eq!(
            h.hassh(),
            format!("{:x}", md5::Md5::digest(b"curve25519-sha256;aes128-ctr;hmac-sha1;none"))
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Err(HelloError::Invalid));
        assert_eq!(parse(&[b'x'; 300]), Err(HelloError::Invalid));
    }
}
