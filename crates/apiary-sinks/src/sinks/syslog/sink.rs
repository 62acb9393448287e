//! The syslog writer.

use std::sync::Arc;
use std::time::Duration;

use apiary_event::Event;
use tokio::io::AsyncWriteExt as _;
use tokio::net::UdpSocket;
use tokio_rustls::TlsConnector;

use super::config::facility_code;
use super::{SyslogConfig, SyslogTransport, rfc5424};
use crate::net::{self, Io};
use crate::{Encoder, Sink, SinkError};

enum Conn {
    Udp(UdpSocket),
    Stream(Box<dyn Io>),
}

/// Sends batches to one collector.
pub struct SyslogSink {
    cfg: SyslogConfig,
    facility: u8,
    tls: Option<TlsConnector>,
    encoder: Encoder,
    conn: Option<Conn>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for SyslogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslogSink")
            .field("host", &self.cfg.host)
            .field("port", &self.cfg.port)
            .finish()
    }
}

impl SyslogSink {
    /// A sink for `cfg` (not connected yet).
    pub fn new(cfg: SyslogConfig, tls: Option<TlsConnector>, encoder: Encoder) -> Self {
        let facility = facility_code(&cfg.facility).unwrap_or(16);
        Self { cfg, facility, tls, encoder, conn: None, buf: Vec::new() }
    }

    async fn connect(&self) -> Result<Conn, SinkError> {
        Ok(match self.cfg.transport {
            SyslogTransport::Udp => {
                let bind = if self.cfg.host.contains(':') { "[::]:0" } else { "0.0.0.0:0" };
                let sock = UdpSocket::bind(bind).await?;
                sock.connect((self.cfg.host.as_str(), self.cfg.port)).await?;
                Conn::Udp(sock)
            }
            SyslogTransport::Tcp | SyslogTransport::Tls => Conn::Stream(
                net::connect(
                    &self.cfg.host,
                    self.cfg.port,
                    self.tls.as_ref(),
                    Duration::from_secs(5),
                )
                .await?,
            ),
        })
    }
}

#[async_trait::async_trait]
impl Sink for SyslogSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        let mut current = self.conn.take();
        if let Some(Conn::Stream(s)) = current.as_mut()
            && !net::still_open(s).await
        {
            current = None;
        }
        let mut conn = match current {
            Some(c) => c,
            None => self.connect().await?,
        };
        let mut msg = Vec::with_capacity(2048);
        let mut doc = Vec::with_capacity(1024);
        self.buf.clear();
        for e in batch {
            doc.clear();
            self.encoder.write(e, &mut doc);
            msg.clear();
            rfc5424(
                &mut msg,
                e,
                self.facility,
                self.cfg.hostname.as_deref(),
                &self.cfg.app_name,
                &doc,
            );
            match &conn {
                Conn::Udp(sock) => {
                    msg.truncate(self.cfg.max_udp);
                    sock.send(&msg).await?;
                }
                Conn::Stream(_) => {
                    self.buf.extend_from_slice(format!("{} ", msg.len()).as_bytes());
                    self.buf.extend_from_slice(&msg);
                }
            }
        }
        if let Conn::Stream(s) = &mut conn {
            s.write_all(&self.buf).await?;
            s.flush().await?;
        }
        self.conn = Some(conn);
        Ok(())
    }
}
