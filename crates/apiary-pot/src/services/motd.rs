//! MOTD (HoneyPy's MOTD and MOTD_udp): a banner line; TCP closes after it, UDP answers every
//! datagram with it.

use std::sync::Arc;

use apiary_event::Transport;
use bytes::Bytes;
use serde::Deserialize;

use super::{Handler, ServiceInfo, TcpService, UdpService, options};
use crate::{Conn, SessionError, UdpPeer};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "motd",
    aliases: &["MOTD", "MOTD_udp"],
    protocol: "motd",
    description: "sends a banner line (TCP: then closes; UDP: to every datagram)",
    transports: &[Transport::Tcp, Transport::Udp],
    build,
};

/// HoneyPy's banner, kept so existing detections of it keep working.
const DEFAULT_MESSAGE: &str = "Prototype unit 0001 is ready to accept programming\r\n";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The banner, sent as is.
    #[serde(default = "default_message")]
    message: String,
}

fn default_message() -> String {
    DEFAULT_MESSAGE.into()
}

struct Motd {
    message: Bytes,
}

fn build(transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    let o: Options = options(table)?;
    let svc = Arc::new(Motd { message: Bytes::from(o.message) });
    Ok(match transport {
        Transport::Udp => Handler::Udp(svc),
        _ => Handler::Tcp(svc),
    })
}

#[async_trait::async_trait]
impl TcpService for Motd {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        conn.tx(&self.message).await
    }
}

#[async_trait::async_trait]
impl UdpService for Motd {
    async fn datagram(&self, _peer: &mut UdpPeer, _data: &[u8]) -> Vec<Bytes> {
        vec![self.message.clone()]
    }
}
