//! A line reader with a length cap that survives over-long lines: the rest of such a line is
//! discarded and reading goes on (tokio-util's `FramedRead` ends the stream after the first
//! decode error).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// One item read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A complete line without its `\n` (and `\r`), lossily decoded.
    Text(String),
    /// A line longer than the cap was skipped.
    TooLong,
}

pub(crate) struct CappedLines<R> {
    rd: R,
    buf: BytesMut,
    max: usize,
    /// Inside an over-long line: drop bytes up to the next newline.
    discarding: bool,
}

impl<R: AsyncRead + Unpin> CappedLines<R> {
    pub(crate) fn new(rd: R, max: usize) -> Self {
        Self { rd, buf: BytesMut::with_capacity(4096), max, discarding: false }
    }

    /// The next line; `None` at end of stream or on a read error. A partial last line at end of
    /// stream is dropped: a pot that dies mid-line did not finish its event.
    pub(crate) async fn next(&mut self) -> Option<Line> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(pos + 1);
                if self.discarding || pos > self.max {
                    self.discarding = false;
                    return Some(Line::TooLong);
                }
                let body = line.get(..pos).unwrap_or_default();
                let body = body.strip_suffix(b"\r").unwrap_or(body);
                return Some(Line::Text(String::from_utf8_lossy(body).into_owned()));
            }
            if self.buf.len() > self.max {
                self.discarding = true;
                self.buf.clear();
            }
            self.buf.reserve(4096);
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn long_lines_are_skipped_and_reading_goes_on() {
        let input = format!("ok\r\n{}\nnext\npartial", "x".repeat(100));
        let mut l = CappedLines::new(input.as_bytes(), 10);
        assert_eq!(l.next().await, Some(Line::Text("ok".into())));
        assert_eq!(l.next().await, Some(Line::TooLong));
        assert_eq!(l.next().await, Some(Line::Text("next".into())));
        assert_eq!(l.next().await, None);
    }
}
