//! The hpfeeds publisher.

use std::sync::Arc;
use std::time::Duration;

use apiary_event::Event;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::HpfeedsConfig;
use super::frame::{self, Frame, FrameError};
use crate::net::{self, Io};
use crate::{Encoder, Sink, SinkError};

/// Publishes batches to one channel over one authenticated connection.
pub struct HpfeedsSink {
    cfg: HpfeedsConfig,
    encoder: Encoder,
    conn: Option<Box<dyn Io>>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for HpfeedsSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HpfeedsSink").field("channel", &self.cfg.channel).finish()
    }
}

/// Reads one whole frame (capped, timed out).
async fn read_frame(conn: &mut Box<dyn Io>, timeout: Duration) -> Result<Frame, SinkError> {
    let mut buf = Vec::with_capacity(512);
    loop {
        match Frame::parse(&buf) {
            Ok((f, _)) => return Ok(f),
            Err(FrameError::Invalid(why)) => return Err(SinkError::Rejected(why.into())),
            Err(FrameError::Incomplete) => {}
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(timeout, conn.read(&mut chunk))
            .await
            .map_err(|_| SinkError::Timeout(timeout))??;
        if n == 0 {
            return Err(SinkError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}

impl HpfeedsSink {
    /// A sink for `cfg` (not connected yet).
    pub fn new(cfg: HpfeedsConfig, encoder: Encoder) -> Self {
        Self { cfg, encoder, conn: None, buf: Vec::new() }
    }

    async fn connect(&self) -> Result<Box<dyn Io>, SinkError> {
        let t = Duration::from_secs(5);
        let mut conn = net::connect(&self.cfg.server, self.cfg.port, None, t).await?;
        let Frame::Info { nonce, .. } = read_frame(&mut conn, t).await? else {
            return Err(SinkError::Rejected("broker did not start with INFO".into()));
        };
        let mut out = Vec::new();
        frame::auth(&mut out, &self.cfg.ident, &frame::proof(&nonce, &self.cfg.secret));
        conn.write_all(&out).await?;
        Ok(conn)
    }

    /// Fails if the broker has said something (only ERROR is expected) or closed.
    async fn broker_quiet(conn: &mut Box<dyn Io>) -> Result<(), SinkError> {
        if net::still_open(conn).await {
            return Ok(());
        }
        match read_frame(conn, Duration::from_millis(200)).await {
            Ok(Frame::Error(e)) => Err(SinkError::Rejected(format!("hpfeeds broker: {e}"))),
            Ok(_) => Err(SinkError::Rejected("unexpected frame from the broker".into())),
            Err(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl Sink for HpfeedsSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        let (mut conn, fresh) = match self.conn.take() {
            Some(mut c) => match Self::broker_quiet(&mut c).await {
                Ok(()) => (c, false),
                Err(e) => {
                    tracing::debug!(error = %e, "hpfeeds connection lost, reconnecting");
                    (self.connect().await?, true)
                }
            },
            None => (self.connect().await?, true),
        };
        self.buf.clear();
        let mut doc = Vec::with_capacity(1024);
        for e in batch {
            doc.clear();
            self.encoder.write(e, &mut doc);
            frame::publish(&mut self.buf, &self.cfg.ident, &self.cfg.channel, &doc);
        }
        conn.write_all(&self.buf).await?;
        conn.flush().await?;
        // A refused AUTH or PUBLISH comes back as ERROR and a close; give it a moment to
        // arrive so the batch is retried rather than lost.
        if fresh {
            // hpfeeds never acknowledges AUTH: a refusal is an ERROR and a close. On a new
            // connection wait for one long enough that a busy broker's answer is seen, so a
            // bad secret fails the batch instead of losing it. Only reconnects pay this.
            match read_frame(&mut conn, Duration::from_millis(250)).await {
                Err(SinkError::Timeout(_)) => {}
                Ok(Frame::Error(e)) => {
                    return Err(SinkError::Rejected(format!("hpfeeds broker: {e}")));
                }
                Ok(_) => {
                    return Err(SinkError::Rejected("unexpected frame from the broker".into()));
                }
                Err(e) => return Err(e),
            }
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Self::broker_quiet(&mut conn).await?;
        }
        self.conn = Some(conn);
        Ok(())
    }
}
