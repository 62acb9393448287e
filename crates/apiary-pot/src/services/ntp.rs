//! NTP (HoneyPy's NtpUdp, made safe): a stratum-2 server answering client (mode 3) requests of
//! versions 1 to 4 with a 48-byte reply. Control (mode 6) and private (mode 7, `monlist`)
//! requests are recorded and never answered, so the pot cannot serve as an NTP amplifier;
//! malformed packets get no answer either.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use apiary_event::{Kind, Transport};
use bytes::{BufMut, Bytes, BytesMut};

use super::{Handler, ServiceInfo, UdpService, no_options};
use crate::UdpPeer;

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "ntp",
    aliases: &["NtpUdp", "NTP"],
    protocol: "ntp",
    description: "NTP v1-v4 stratum-2 server; mode 6/7 (monlist) never answered",
    transports: &[Transport::Udp],
    build,
};

/// Seconds from 1900-01-01 (NTP era 0) to the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
/// The upstream we claim to follow (a public pool-looking address), as the reference id.
const REFERENCE_ID: [u8; 4] = [193, 79, 237, 14];

/// What an NTP datagram asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NtpRequest {
    /// A client request: version, poll, and the client's transmit timestamp.
    Client {
        /// Version 1 to 4.
        version: u8,
        /// Poll exponent.
        poll: u8,
        /// Transmit timestamp, echoed as the reply's origin.
        transmit: u64,
    },
    /// Mode 6 (control) or 7 (private, `monlist`): never answered.
    Control(u8),
    /// Any other mode (symmetric, server, broadcast): ignored.
    Other(u8),
}

/// Two-phase in one: the 48-byte header is checked for length and version before any field
/// is read.
pub fn parse(data: &[u8]) -> Option<NtpRequest> {
    let first = *data.first()?;
    let version = (first >> 3) & 7;
    let mode = first & 7;
    if mode == 6 || mode == 7 {
        return Some(NtpRequest::Control(mode));
    }
    if data.len() < 48 || !(1..=4).contains(&version) {
        return None;
    }
    if mode != 3 {
        return Some(NtpRequest::Other(mode));
    }
    let ts = data.get(40..48)?;
    let transmit = u64::from_be_bytes(ts.try_into().ok()?);
    Some(NtpRequest::Client { version, poll: *data.get(2)?, transmit })
}

fn ntp_now(back: f64) -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs_f64() - back;
    let whole = secs.trunc() as u64 + NTP_UNIX_OFFSET;
    let frac = (secs.fract() * 4_294_967_296.0) as u64;
    (whole << 32) | (frac & 0xFFFF_FFFF)
}

/// The 48-byte server reply to a client request.
pub(crate) fn reply(version: u8, poll: u8, origin: u64, receive: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(48);
    out.put_u8((version << 3) | 4); // LI 0, mode 4 (server)
    out.put_u8(2); // stratum
    out.put_u8(poll.clamp(4, 17));
    out.put_i8(-23); // precision, about 119 ns
    out.put_u32(0x0000_0a4b); // root delay, about 40 ms
    out.put_u32(0x0000_0c2f); // root dispersion
    out.put_slice(&REFERENCE_ID);
    out.put_u64(ntp_now(5.0 + 0.25));
    out.put_u64(origin);
    out.put_u64(receive);
    out.put_u64(ntp_now(0.0));
    out.freeze()
}

struct Ntp;

fn build(_transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    no_options(table)?;
    Ok(Handler::Udp(Arc::new(Ntp)))
}

#[async_trait::async_trait]
impl UdpService for Ntp {
    async fn datagram(&self, peer: &mut UdpPeer, data: &[u8]) -> Vec<Bytes> {
        let receive = ntp_now(0.0);
        match parse(data) {
            Some(NtpRequest::Client { version, poll, transmit }) => {
                vec![reply(version, poll, transmit, receive)]
            }
            other => {
                let mut e = peer.ctx.event(Kind::PROTOCOL_ERROR);
                e.message = Some(match other {
                    Some(NtpRequest::Control(7)) => "ntp: mode 7 (monlist) request ignored".into(),
                    Some(NtpRequest::Control(m) | NtpRequest::Other(m)) => {
                        format!("ntp: mode {m} request ignored")
                    }
                    _ => "ntp: malformed packet".into(),
                });
                peer.ctx.emit(e);
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_requests_get_48_bytes_with_origin_echoed() {
        let mut req = [0u8; 48];
        req[0] = (4 << 3) | 3;
        req[2] = 6;
        req[40..48].copy_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
        let Some(NtpRequest::Client { version, poll, transmit }) = parse(&req) else {
            panic!("not a client request")
        };
        let r = reply(version, poll, transmit, 42);
        assert_eq!(r.len(), 48);
        assert_eq!(r[0], (4 << 3) | 4);
        assert_eq!(&r[24..32], &0x1122_3344_5566_7788u64.to_be_bytes());
        assert_eq!(&r[32..40], &42u64.to_be_bytes());
    }

    #[test]
    fn monlist_and_junk_are_not_answered() {
        // ntpdc's MON_GETLIST_1: version 2, mode 7.
        let monlist = [0x17, 0x00, 0x03, 0x2a, 0, 0, 0, 0];
        assert_eq!(parse(&monlist), Some(NtpRequest::Control(7)));
        assert_eq!(parse(&[0x1b; 10]), None);
        assert_eq!(parse(&[]), None);
    }
}
