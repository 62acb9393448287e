//! HashCountRandom (HoneyPy's developer-page example): greets with the peer's address, then
//! answers every chunk with the MD5 of a running counter and 99 random bytes.

use std::sync::Arc;

use apiary_event::Transport;
use md5::{Digest, Md5};

use super::{Handler, ServiceInfo, TcpService, no_options, random_bytes};
use crate::{Conn, SessionError};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "hashcount",
    aliases: &["HashCountRandom"],
    protocol: "hashcount",
    description: "greets with the peer address, then answers each chunk with md5(counter):random",
    transports: &[Transport::Tcp],
    build,
};

struct HashCount;

fn build(_transport: Transport, options: &toml::Table) -> Result<Handler, String> {
    no_options(options)?;
    Ok(Handler::Tcp(Arc::new(HashCount)))
}

/// The reply to the `count`th chunk: hex MD5 of the decimal counter, `:`, 99 random bytes, `\n`.
pub(crate) fn reply(count: u64) -> Vec<u8> {
    let digest = Md5::digest(count.to_string().as_bytes());
    let mut out = Vec::with_capacity(32 + 1 + 99 + 1);
    for b in digest {
        out.extend_from_slice(format!("{b:02x}").as_bytes());
    }
    out.push(b':');
    out.extend_from_slice(&random_bytes(99));
    out.push(b'\n');
    out
}

#[async_trait::async_trait]
impl TcpService for HashCount {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        let greeting = format!("ACCEPT_CONN: {}\n", conn.peer().ip().to_canonical());
        conn.tx(greeting.as_bytes()).await?;
        let mut count = 0u64;
        while conn.rx().await?.is_some() {
            count += 1;
            conn.tx(&reply(count)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reply_is_md5_of_counter_then_random() {
        let r = super::reply(1);
        // md5("1")
        assert!(r.starts_with(b"c4ca4238a0b923820dcc509a6f75849b:"));
        assert_eq!(r.len(), 32 + 1 + 99 + 1);
        assert_eq!(r.last(), Some(&b'\n'));
    }
}
