//! The Redis writer.

use std::sync::Arc;
use std::time::Duration;

use apiary_event::Event;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::resp::{Reply, ReplyError, check_reply, command};
use super::{RedisConfig, RedisMode};
use crate::net::{self, Io};
use crate::{Encoder, Sink, SinkError};

/// Most bytes of replies buffered at once.
const MAX_REPLY_BUF: usize = 32 << 20;

/// Appends batches to one stream or list.
pub struct RedisSink {
    cfg: RedisConfig,
    encoder: Encoder,
    conn: Option<Box<dyn Io>>,
    out: Vec<u8>,
    inbuf: Vec<u8>,
}

impl std::fmt::Debug for RedisSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSink").field("key", &self.cfg.key).finish()
    }
}

impl RedisSink {
    /// A sink for `cfg` (not connected yet).
    pub fn new(cfg: RedisConfig, encoder: Encoder) -> Self {
        Self { cfg, encoder, conn: None, out: Vec::new(), inbuf: Vec::new() }
    }

    /// Reads `n` replies; the first error reply fails the batch.
    async fn replies(&mut self, conn: &mut Box<dyn Io>, n: usize) -> Result<(), SinkError> {
        self.inbuf.clear();
        let mut got = 0;
        let mut start = 0;
        let mut first_error = None;
        while got < n {
            match check_reply(self.inbuf.get(start..).unwrap_or_default()) {
                Ok(len) => {
                    let slice = self.inbuf.get(start..start + len).unwrap_or_default();
                    if let Ok((Reply::Error(e), _)) = Reply::parse(slice) {
                        first_error.get_or_insert(e);
                    }
                    start += len;
                    got += 1;
                }
                Err(ReplyError::Invalid) => {
                    return Err(SinkError::Rejected("redis sent a malformed reply".into()));
                }
                Err(ReplyError::Incomplete) => {
                    if self.inbuf.len() > MAX_REPLY_BUF {
                        return Err(SinkError::Rejected("redis reply too large".into()));
                    }
                    let mut chunk = [0u8; 16 << 10];
                    let r = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk))
                        .await
                        .map_err(|_| SinkError::Timeout(Duration::from_secs(10)))??;
                    if r == 0 {
                        return Err(SinkError::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                    self.inbuf.extend_from_slice(chunk.get(..r).unwrap_or_default());
                }
            }
        }
        match first_error {
            Some(e) => Err(SinkError::Rejected(e)),
            None => Ok(()),
        }
    }

    async fn connect(&mut self) -> Result<Box<dyn Io>, SinkError> {
        let mut conn =
            net::connect(&self.cfg.host, self.cfg.port, None, Duration::from_secs(5)).await?;
        self.out.clear();
        let mut n = 0;
        if let Some(pw) = &self.cfg.password {
            match &self.cfg.username {
                Some(u) => command(&mut self.out, &[b"AUTH", u.as_bytes(), pw.as_bytes()]),
                None => command(&mut self.out, &[b"AUTH", pw.as_bytes()]),
            }
            n += 1;
        }
        if self.cfg.db != 0 {
            command(&mut self.out, &[b"SELECT", self.cfg.db.to_string().as_bytes()]);
            n += 1;
        }
        if n > 0 {
            conn.write_all(&self.out).await?;
            self.replies(&mut conn, n).await?;
        }
        Ok(conn)
    }
}

#[async_trait::async_trait]
impl Sink for RedisSink {
    async fn send(&mut self, batch: &[Arc<Event>]) -> Result<(), SinkError> {
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => self.connect().await?,
        };
        self.out.clear();
        let key = self.cfg.key.as_bytes();
        let max_len = self.cfg.max_len.to_string();
        let mut doc = Vec::with_capacity(1024);
        for e in batch {
            doc.clear();
            self.encoder.write(e, &mut doc);
            match self.cfg.mode {
                RedisMode::List => command(&mut self.out, &[b"RPUSH", key, &doc]),
                RedisMode::Stream => {
                    let id = e.id.to_string();
                    if self.cfg.max_len > 0 {
                        command(
                            &mut self.out,
                            &[
                                b"XADD",
                                key,
                                b"MAXLEN",
                                b"~",
                                max_len.as_bytes(),
                                b"*",
                                b"event",
                                &doc,
                                b"id",
                                id.as_bytes(),
                            ],
                        );
                    } else {
                        command(
                            &mut self.out,
                            &[b"XADD", key, b"*", b"event", &doc, b"id", id.as_bytes()],
                        );
                    }
                }
            }
        }
        conn.write_all(&self.out).await?;
        self.replies(&mut conn, batch.len()).await?;
        self.conn = Some(conn);
        Ok(())
    }
}
