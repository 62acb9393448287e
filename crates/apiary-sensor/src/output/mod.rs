//! The default output without a plugin: PokieStream's `plain` lines, `packet_log` JSON lines or
//! apiary's native JSON lines, written by the consumer thread (never by capture).

pub mod plain;
pub mod rdns;

use std::io::{self, Write};

use apiary_event::{Event, encode};

use crate::config::{OutputConfig, OutputFormat};
use rdns::Rdns;

/// Formats records in the configured format into a writer.
pub struct Output {
    format: OutputFormat,
    color: bool,
    rdns: Box<dyn Rdns>,
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
}

impl Output {
    /// An output for `cfg` writing to `out`, resolving names with `rdns`.
    pub fn new(cfg: &OutputConfig, rdns: Box<dyn Rdns>, out: Box<dyn Write + Send>) -> Self {
        Self { format: cfg.format, color: cfg.color, rdns, out, buf: Vec::with_capacity(1 << 16) }
    }

    /// Whether the format shows the flow summary's history and Community ID (only apiary's
    /// native JSON does).
    pub fn wants_details(cfg: &OutputConfig) -> bool {
        matches!(cfg.format, OutputFormat::Json)
    }

    /// Formats one record into the internal buffer (flushed by [`Output::flush`] or when large).
    pub fn write(&mut self, e: &Event) -> io::Result<()> {
        match self.format {
            OutputFormat::Plain => plain::line(e, self.rdns.as_mut(), self.color, &mut self.buf),
            OutputFormat::PacketLog => encode::packet_log::json_line(e, &mut self.buf),
            OutputFormat::Json => encode::json_line(e, &mut self.buf),
        }
        if self.buf.len() >= 1 << 16 {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes out buffered lines.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}
