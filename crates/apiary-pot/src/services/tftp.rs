//! TFTP (HoneyPy's TFTP plugin, fixed): RRQ serves decoy files, WRQ uploads are captured
//! (size-capped, SHA-256) as `file.upload`. As RFC 1350 requires, each transfer runs from a
//! fresh port (its own TID) in its own task, so concurrent peers never share state; the first
//! reply of a transfer passes the listener's reply rate guard, and every later packet is an
//! answer to the peer's ACK or DATA, so a spoofed request yields at most one packet.
//!
//! Two-phase: [`check_packet`] validates the opcode and the NUL-terminated strings without
//! allocating, [`parse_packet`] builds the owned [`Packet`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use apiary_event::{Download, Kind, Payload, Transport};
use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use super::{Handler, ServiceInfo, UdpService, options};
use crate::{SessionCtx, UdpPeer};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "tftp",
    aliases: &["TFTP"],
    protocol: "tftp",
    description: "TFTP server: decoy files for RRQ, WRQ uploads captured with SHA-256",
    transports: &[Transport::Udp],
    build,
};

const BLOCK: usize = 512;
/// How long a transfer waits for the peer's next packet before resending.
const RETRANSMIT: Duration = Duration::from_secs(2);
/// Resends before a transfer is abandoned.
const RETRIES: u32 = 3;
/// Upload bytes copied into the `file.upload` event.
const RECORDED: usize = 64 * 1024;

/// A TFTP packet, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Read request: file name and mode.
    Rrq(String, String),
    /// Write request: file name and mode.
    Wrq(String, String),
    /// Data block.
    Data(u16, Bytes),
    /// Acknowledgement of a block.
    Ack(u16),
    /// Error code and message.
    Error(u16, String),
}

/// Why a datagram is not a TFTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TftpError {
    /// Shorter than its opcode and fields.
    Truncated,
    /// An opcode outside 1 to 5 (option acknowledgements are never sent to a server).
    Opcode,
    /// A request without its NUL-terminated file name and mode.
    Request,
}

fn nul_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|c| *c == 0)?;
    Some((b.get(..i)?, b.get(i + 1..)?))
}

/// Phase one: checks the packet's shape.
pub fn check_packet(data: &[u8]) -> Result<(), TftpError> {
    let op = u16::from_be_bytes([
        *data.first().ok_or(TftpError::Truncated)?,
        *data.get(1).ok_or(TftpError::Truncated)?,
    ]);
    let rest = data.get(2..).unwrap_or_default();
    match op {
        1 | 2 => {
            let (name, rest) = nul_string(rest).ok_or(TftpError::Request)?;
            let (mode, _) = nul_string(rest).ok_or(TftpError::Request)?;
            if name.is_empty() || mode.is_empty() || name.len() > 255 || mode.len() > 16 {
                return Err(TftpError::Request);
            }
            Ok(())
        }
        3..=5 if rest.len() >= 2 => Ok(()),
        3..=5 => Err(TftpError::Truncated),
        _ => Err(TftpError::Opcode),
    }
}

/// Phase two: the owned packet of a datagram [`check_packet`] accepted.
pub fn parse_packet(data: &[u8]) -> Result<Packet, TftpError> {
    check_packet(data)?;
    let op = data.get(1).copied().unwrap_or(0);
    let rest = data.get(2..).unwrap_or_default();
    let num =
        u16::from_be_bytes([rest.first().copied().unwrap_or(0), rest.get(1).copied().unwrap_or(0)]);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Ok(match op {
        1 | 2 => {
            let (name, rest) = nul_string(rest).ok_or(TftpError::Request)?;
            let (mode, _) = nul_string(rest).ok_or(TftpError::Request)?;
            let (name, mode) = (text(name), text(mode).to_ascii_lowercase());
            if op == 1 { Packet::Rrq(name, mode) } else { Packet::Wrq(name, mode) }
        }
        3 => Packet::Data(num, Bytes::copy_from_slice(rest.get(2..).unwrap_or_default())),
        4 => Packet::Ack(num),
        _ => Packet::Error(
            num,
            text(nul_string(rest.get(2..).unwrap_or_default()).map_or(&[][..], |(m, _)| m)),
        ),
    })
}

fn data_packet(block: u16, chunk: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + chunk.len());
    b.put_u16(3);
    b.put_u16(block);
    b.put_slice(chunk);
    b.freeze()
}

fn ack_packet(block: u16) -> Bytes {
    Bytes::copy_from_slice(&[0, 4, (block >> 8) as u8, block as u8])
}

fn error_packet(code: u16, msg: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.put_u16(5);
    b.put_u16(code);
    b.put_slice(msg.as_bytes());
    b.put_u8(0);
    b.freeze()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Size of the binary decoy served for octet-mode reads.
    #[serde(default = "default_decoy_size")]
    decoy_size: usize,
    /// Largest upload kept; beyond it the transfer ends with "Disk full".
    #[serde(default = "default_max_upload")]
    max_upload: usize,
    /// Transfers running at once.
    #[serde(default = "default_max_transfers")]
    max_transfers: usize,
}

fn default_decoy_size() -> usize {
    // HoneyPy's file.bin.
    2_342_912
}

fn default_max_upload() -> usize {
    16 * 1024 * 1024
}

fn default_max_transfers() -> usize {
    64
}

struct Tftp {
    decoy_size: usize,
    max_upload: usize,
    transfers: Arc<Semaphore>,
}

fn build(_transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    let o: Options = options(table)?;
    if o.max_transfers == 0 {
        return Err("options: `max_transfers` must be at least 1".into());
    }
    Ok(Handler::Udp(Arc::new(Tftp {
        decoy_size: o.decoy_size.min(64 * 1024 * 1024),
        max_upload: o.max_upload,
        transfers: Arc::new(Semaphore::new(o.max_transfers)),
    })))
}

/// HoneyPy's netascii bait: credentials that look like an AWS key pair.
const NETASCII_DECOY: &[u8] = b"[default]\r\naws_access_key_id = AKIAJ5QKD4F7RS3XWQ2A\r\naws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY\r\n";

/// The decoy's bytes `from..to`: a stable pseudo-random stream, never held whole in memory.
fn decoy_bytes(from: usize, to: usize) -> Vec<u8> {
    (from..to)
        .map(|i| {
            let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (x >> 56) as u8 ^ (x >> 23) as u8
        })
        .collect()
}

/// One transfer's socket, talking to one peer.
struct Transfer {
    socket: UdpSocket,
    peer: SocketAddr,
    ctx: SessionCtx,
    recorded_in: usize,
    recorded_out: usize,
    /// Whether the peer has answered us once (it really is at that address).
    answered: bool,
}

impl Transfer {
    async fn send(&mut self, pkt: &[u8]) -> bool {
        if self.socket.send_to(pkt, self.peer).await.is_err() {
            return false;
        }
        let keep = RECORDED.saturating_sub(self.recorded_out);
        self.recorded_out += keep.min(pkt.len());
        let mut e = self.ctx.event(Kind::SESSION_TX);
        e.payload = Some(Payload::new(pkt, keep));
        self.ctx.emit(e);
        true
    }

    /// The next packet from the peer within `RETRANSMIT`; packets from other addresses are
    /// dropped (RFC 1350 says to answer them with an error; that would make us a reflector).
    async fn recv(&mut self) -> Option<Packet> {
        let mut buf = [0u8; 4 + BLOCK + 64];
        let deadline = tokio::time::Instant::now() + RETRANSMIT;
        loop {
            let (n, from) = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            if from != self.peer {
                continue;
            }
            let data = buf.get(..n).unwrap_or_default();
            let keep = RECORDED.saturating_sub(self.recorded_in);
            self.recorded_in += keep.min(n);
            let mut e = self.ctx.event(Kind::SESSION_RX);
            e.payload = Some(Payload::new(data, keep));
            self.ctx.emit(e);
            return parse_packet(data).ok();
        }
    }

    /// Sends `pkt` and waits for the packet that answers it, resending on silence; the first
    /// packet of a transfer is never resent, so a spoofed request costs its victim one packet.
    async fn exchange(&mut self, pkt: &[u8], want: impl Fn(&Packet) -> bool) -> Option<Packet> {
        let tries = if self.answered { RETRIES } else { 0 };
        for _ in 0..=tries {
            if !self.send(pkt).await {
                return None;
            }
            while let Some(p) = self.recv().await {
                if matches!(p, Packet::Error(..)) {
                    return None;
                }
                if want(&p) {
                    self.answered = true;
                    return Some(p);
                }
            }
        }
        None
    }

    async fn read(mut self, name: String, mode: String, decoy_size: usize) {
        let netascii = mode == "netascii";
        let size = if netascii { NETASCII_DECOY.len() } else { decoy_size };
        let mut block: u16 = 1;
        let mut offset = 0usize;
        let mut sent = 0usize;
        loop {
            let end = (offset + BLOCK).min(size);
            let chunk = if netascii {
                NETASCII_DECOY.get(offset..end).unwrap_or_default().to_vec()
            } else {
                decoy_bytes(offset, end)
            };
            let pkt = data_packet(block, &chunk);
            let b = block;
            if self.exchange(&pkt, |p| matches!(p, Packet::Ack(n) if *n == b)).await.is_none() {
                break;
            }
            sent += chunk.len();
            offset = end;
            if chunk.len() < BLOCK {
                break;
            }
            block = block.wrapping_add(1);
        }
        let mut e = self.ctx.event(Kind::new("tftp.read"));
        e.fields.insert("filename".into(), name.into());
        e.fields.insert("mode".into(), mode.into());
        e.fields.insert("bytes_sent".into(), sent.into());
        e.fields.insert("complete".into(), (sent == size).into());
        self.ctx.emit(e);
    }

    async fn write(mut self, name: String, mode: String, max_upload: usize) {
        let mut hasher = Sha256::new();
        let mut kept = Vec::new();
        let mut size = 0usize;
        let mut expect: u16 = 1;
        let mut reply = ack_packet(0);
        let mut complete = false;
        let mut full = false;
        loop {
            let e = expect;
            let Some(Packet::Data(_, data)) =
                self.exchange(&reply, |p| matches!(p, Packet::Data(n, _) if *n == e)).await
            else {
                break;
            };
            if size + data.len() > max_upload {
                full = true;
                let _ = self.send(&error_packet(3, "Disk full or allocation exceeded.")).await;
                break;
            }
            size += data.len();
            hasher.update(&data);
            if kept.len() < RECORDED {
                kept.extend_from_slice(
                    data.get(..(RECORDED - kept.len()).min(data.len())).unwrap_or_default(),
                );
            }
            reply = ack_packet(expect);
            expect = expect.wrapping_add(1);
            if data.len() < BLOCK {
                // The last ACK; the peer sends nothing more, so no waiting for an answer.
                let _ = self.send(&reply).await;
                complete = true;
                break;
            }
        }
        let sha: [u8; 32] = hasher.finalize().into();
        let mut payload = Payload::new(&kept, RECORDED);
        payload.len = size as u64;
        payload.sha256 = sha;
        let mut e = self.ctx.event(Kind::FILE_UPLOAD);
        e.download = Some(Box::new(Download {
            url: name,
            sha256: Some(payload.sha256_hex()),
            size: Some(size as u64),
        }));
        e.fields.insert("mode".into(), mode.into());
        e.fields.insert("complete".into(), complete.into());
        if full {
            e.fields.insert("truncated".into(), true.into());
        }
        e.payload = Some(payload);
        self.ctx.emit(e);
    }
}

#[async_trait::async_trait]
impl UdpService for Tftp {
    async fn datagram(&self, peer: &mut UdpPeer, data: &[u8]) -> Vec<Bytes> {
        let packet = match parse_packet(data) {
            Ok(p) => p,
            Err(err) => {
                let mut e = peer.ctx.event(Kind::PROTOCOL_ERROR);
                e.message = Some(format!("tftp: {err:?}"));
                peer.ctx.emit(e);
                return vec![error_packet(4, "Illegal TFTP operation")];
            }
        };
        let (name, mode, write) = match packet {
            Packet::Rrq(n, m) => (n, m, false),
            Packet::Wrq(n, m) => (n, m, true),
            // DATA or ACK to the listening port: the peer lost its transfer.
            Packet::Data(..) | Packet::Ack(_) => {
                return vec![error_packet(5, "Unknown transfer ID")];
            }
            Packet::Error(..) => return Vec::new(),
        };
        let mut e = peer.ctx.event(Kind::new("tftp.request"));
        e.fields.insert("op".into(), if write { "WRQ" } else { "RRQ" }.into());
        e.fields.insert("filename".into(), name.clone().into());
        e.fields.insert("mode".into(), mode.clone().into());
        peer.ctx.emit(e);
        if !matches!(mode.as_str(), "netascii" | "octet") {
            return vec![error_packet(0, "Unknown mode")];
        }
        // The transfer answers from its own port, so it asks the listener's guard itself.
        if let Some(guard) = crate::udp::reply_guard()
            && !guard.allow(peer.ctx.peer.ip())
        {
            return Vec::new();
        }
        let Ok(permit) = Arc::clone(&self.transfers).try_acquire_owned() else {
            return vec![error_packet(0, "Too many transfers")];
        };
        let local = SocketAddr::new(peer.ctx.local.ip(), 0);
        let socket = match std::net::UdpSocket::bind(local)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(UdpSocket::from_std)
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "tftp: cannot bind a transfer port");
                return vec![error_packet(0, "Server busy")];
            }
        };
        let transfer = Transfer {
            socket,
            peer: peer.ctx.peer,
            ctx: peer.ctx.clone(),
            recorded_in: 0,
            recorded_out: 0,
            answered: false,
        };
        let (decoy, max_upload) = (self.decoy_size, self.max_upload);
        tokio::spawn(async move {
            let _permit = permit;
            if write {
                transfer.write(name, mode, max_upload).await;
            } else {
                transfer.read(name, mode, decoy).await;
            }
        });
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets() {
        assert_eq!(
            parse_packet(b"\x00\x01boot.cfg\x00octet\x00"),
            Ok(Packet::Rrq("boot.cfg".into(), "octet".into()))
        );
        assert_eq!(
            parse_packet(b"\x00\x02x\x00NETASCII\x00blksize\x001428\x00"),
            Ok(Packet::Wrq("x".into(), "netascii".into()))
        );
        assert_eq!(
            parse_packet(b"\x00\x03\x00\x07abc"),
            Ok(Packet::Data(7, Bytes::from_static(b"abc")))
        );
        assert_eq!(parse_packet(b"\x00\x04\x01\x00"), Ok(Packet::Ack(256)));
        assert_eq!(parse_packet(b"\x00\x05\x00\x01nope\x00"), Ok(Packet::Error(1, "nope".into())));
        assert_eq!(parse_packet(b"\x00\x01name-without-nul"), Err(TftpError::Request));
        assert_eq!(parse_packet(b"\x00\x09"), Err(TftpError::Opcode));
        assert_eq!(parse_packet(b"\x00"), Err(TftpError::Truncated));
        assert_eq!(parse_packet(b"\x00\x04\x01"), Err(TftpError::Truncated));
    }

    #[test]
    fn decoy_is_stable_per_offset() {
        assert_eq!(decoy_bytes(500, 520)[12..], decoy_bytes(512, 520)[..]);
    }
}
