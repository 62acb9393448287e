//! Echo (RFC 862, HoneyPy's Echo and Echo_udp): every chunk or datagram is sent back unchanged.

use apiary_event::Transport;
use bytes::Bytes;

use super::{Handler, ServiceInfo, TcpService, UdpService, no_options};
use crate::{Conn, SessionError, UdpPeer};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "echo",
    aliases: &["Echo", "Echo_udp"],
    protocol: "echo",
    description: "sends back every chunk or datagram unchanged (RFC 862)",
    transports: &[Transport::Tcp, Transport::Udp],
    build,
};

struct Echo;

fn build(transport: Transport, options: &toml::Table) -> Result<Handler, String> {
    no_options(options)?;
    Ok(match transport {
        Transport::Udp => Handler::Udp(std::sync::Arc::new(Echo)),
        _ => Handler::Tcp(std::sync::Arc::new(Echo)),
    })
}

#[async_trait::async_trait]
impl TcpService for Echo {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        while let Some(chunk) = conn.rx().await? {
            conn.tx(&chunk).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl UdpService for Echo {
    async fn datagram(&self, _peer: &mut UdpPeer, data: &[u8]) -> Vec<Bytes> {
        vec![Bytes::copy_from_slice(data)]
    }
}
