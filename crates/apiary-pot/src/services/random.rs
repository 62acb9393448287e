//! Random (HoneyPy's Random): 99 random bytes and a newline on connect, then close.

use std::sync::Arc;

use apiary_event::Transport;

use super::{Handler, ServiceInfo, TcpService, no_options, random_bytes};
use crate::{Conn, SessionError};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "random",
    aliases: &["Random"],
    protocol: "random",
    description: "sends 99 random bytes and a newline, then closes",
    transports: &[Transport::Tcp],
    build,
};

struct Random;

fn build(_transport: Transport, options: &toml::Table) -> Result<Handler, String> {
    no_options(options)?;
    Ok(Handler::Tcp(Arc::new(Random)))
}

#[async_trait::async_trait]
impl TcpService for Random {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        let mut out = random_bytes(99);
        out.push(b'\n');
        conn.tx(&out).await
    }
}
