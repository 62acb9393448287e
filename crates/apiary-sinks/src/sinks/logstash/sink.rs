//! The Logstash writer.

use std::sync::Arc;
use std::time::Duration;

use apiary_event::Event;
use tokio::io::AsyncWriteExt as _;
use tokio_rustls::TlsConnector;

use crate::net::{self, Io};
use crate::{Encoder, Sink, SinkError};

/// Writes JSON lines to one Logstash input.
pub struct LogstashSink {
    host: String,
    port: u16,
    tls: Option<TlsConnector>,
    encoder: Encoder,
    conn: Option<Box<dyn Io>>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for LogstashSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogstashSink").field("host", &self.host).field("port", &self.port).finish()
    }
}

impl LogstashSink {
    /// A sink for `host:port` (not connected yet).
    pub fn new(host: String, port: u16, tls: Option<TlsConnector>, encoder: Encoder) -> Self {
        Self { host, port, tls, encoder, conn: None, buf: Vec::new() }
    }
}

#[async_trait::async_trait]
impl Sink for LogstashSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        let mut current = self.conn.take();
        if let Some(c) = current.as_mut()
            && !net::still_open(c).await
        {
            current = None;
        }
        let mut conn = match current {
            Some(c) => c,
            None => {
                net::connect(&self.host, self.port, self.tls.as_ref(), Duration::from_secs(5))
                    .await?
            }
        };
        self.buf.clear();
        for e in batch {
            self.encoder.write_line(e, &mut self.buf);
        }
        conn.write_all(&self.buf).await?;
        conn.flush().await?;
        self.conn = Some(conn);
        Ok(())
    }
}
