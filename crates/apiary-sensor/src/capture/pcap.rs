//! pcap and pcapng files: a two-phase reader (check a header, then read its body into one
//! reused buffer, or for classic pcap lend it straight from the read buffer when the whole
//! record is there) and small writers for tests, benches and fixtures.
//!
//! Every length read from the file is checked against a cap before anything is read or
//! allocated, so a hostile file costs at most one capped buffer.

use std::io::{self, BufRead, BufReader, Read, Write};

use apiary_event::Timestamp;

use crate::decode::LinkType;

/// Largest packet (captured length) accepted; libpcap's own maximum snap length.
pub const MAX_PACKET: usize = 262_144;
/// Largest pcapng block accepted (a packet plus generous options).
const MAX_BLOCK: usize = MAX_PACKET + 65_536;
/// Most interfaces one pcapng section may describe.
const MAX_INTERFACES: usize = 1024;

/// Why a capture file could not be read further.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PcapError {
    /// An I/O error of the underlying reader.
    #[error("reading capture file: {0}")]
    Io(#[from] io::Error),
    /// Not a pcap or pcapng file.
    #[error("not a pcap or pcapng file (magic {0:#010x})")]
    BadMagic(u32),
    /// A header field is out of range; the rest of the file cannot be trusted.
    #[error("corrupt capture file: {0}")]
    Corrupt(&'static str),
    /// The file ended in the middle of a record.
    #[error("capture file truncated in the middle of a record")]
    Truncated,
}

/// One packet as read from a file; `data` borrows the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct RawPacket<'a> {
    /// Capture time.
    pub ts: Timestamp,
    /// The pcap `LINKTYPE_*` of the packet's interface.
    pub linktype: u32,
    /// Captured bytes.
    pub data: &'a [u8],
    /// Length on the wire.
    pub orig_len: u32,
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_secs: i64,
}

#[derive(Debug)]
enum Format {
    Pcap { big_endian: bool, nanos: bool, linktype: u32 },
    PcapNg { big_endian: bool, interfaces: Vec<Interface> },
}

/// Reads packets from a pcap or pcapng stream.
pub struct PcapReader<R> {
    inner: BufReader<R>,
    format: Format,
    buf: Vec<u8>,
    /// Bytes of the read buffer lent out as the last packet, consumed on the next call.
    lent: usize,
    /// Timestamp of the last packet, for pcapng simple packet blocks that carry none.
    last_ts: Timestamp,
}

impl<R: Read> PcapReader<R> {
    /// Opens a stream and reads its file (or first section) header.
    pub fn new(reader: R) -> Result<Self, PcapError> {
        let mut inner = BufReader::with_capacity(1 << 20, reader);
        let mut head = [0u8; 4];
        read_exact_or(&mut inner, &mut head, PcapError::Corrupt("empty file"))?;
        let magic = u32::from_le_bytes(head);
        let format = match magic {
            0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1 => {
                let big_endian = matches!(magic, 0xd4c3_b2a1 | 0x4d3c_b2a1);
                let nanos = matches!(magic, 0xa1b2_3c4d | 0x4d3c_b2a1);
                let mut rest = [0u8; 20];
                read_exact_or(&mut inner, &mut rest, PcapError::Truncated)?;
                // The link type is the low 28 bits; the top bits may carry FCS information.
                let linktype = u32_at(&rest, 16, big_endian).unwrap_or(0) & 0x0fff_ffff;
                Format::Pcap { big_endian, nanos, linktype }
            }
            0x0a0d_0d0a => {
                let big_endian = read_shb_body(&mut inner)?;
                Format::PcapNg { big_endian, interfaces: Vec::new() }
            }
            other => return Err(PcapError::BadMagic(other)),
        };
        Ok(Self {
            inner,
            format,
            buf: Vec::with_capacity(65_536),
            lent: 0,
            last_ts: Timestamp::EPOCH,
        })
    }

    /// The link type of a classic pcap file, or of the first pcapng interface seen so far.
    pub fn linktype(&self) -> Option<u32> {
        match &self.format {
            Format::Pcap { linktype, .. } => Some(*linktype),
            Format::PcapNg { interfaces, .. } => interfaces.first().map(|i| i.linktype),
        }
    }

    /// The next packet, or `None` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, PcapError> {
        self.inner.consume(std::mem::take(&mut self.lent));
        match self.format {
            Format::Pcap { big_endian, nanos, linktype } => {
                self.next_pcap(big_endian, nanos, linktype)
            }
            Format::PcapNg { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(
        &mut self,
        be: bool,
        nanos: bool,
        linktype: u32,
    ) -> Result<Option<RawPacket<'_>>, PcapError> {
        // Phase one: check the record header before reading its body.
        let record = |hdr: &[u8]| -> Result<(Timestamp, usize, u32), PcapError> {
            let secs = u32_at(hdr, 0, be).unwrap_or(0);
            let frac = u32_at(hdr, 4, be).unwrap_or(0);
            let incl = u32_at(hdr, 8, be).unwrap_or(0) as usize;
            let orig_len = u32_at(hdr, 12, be).unwrap_or(0);
            if incl > MAX_PACKET {
                return Err(PcapError::Corrupt("packet length above 256 KiB"));
            }
            let micros = if nanos { frac / 1000 } else { frac };
            Ok((Timestamp::from_secs_micros(i64::from(secs), micros.min(999_999)), incl, orig_len))
        };
        // Phase two, usual case: the whole record is in the read buffer; lend its body from
        // there (consumed on the next call) instead of copying it.
        let whole = match self.inner.buffer().get(..16) {
            Some(hdr) => Some(record(hdr)?).filter(|r| self.inner.buffer().len() >= 16 + r.1),
            None => None,
        };
        if let Some((ts, incl, orig_len)) = whole {
            self.lent = 16 + incl;
            self.last_ts = ts;
            let data = self.inner.buffer().get(16..16 + incl).unwrap_or_default();
            return Ok(Some(RawPacket { ts, linktype, data, orig_len }));
        }
        // Phase two at the end of the read buffer: read exactly the body into our own buffer.
        let mut hdr = [0u8; 16];
        if !read_record_start(&mut self.inner, &mut hdr)? {
            return Ok(None);
        }
        let (ts, incl, orig_len) = record(&hdr)?;
        self.buf.resize(incl, 0);
        read_exact_or(&mut self.inner, &mut self.buf, PcapError::Truncated)?;
        self.last_ts = ts;
        Ok(Some(RawPacket { ts, linktype, data: &self.buf, orig_len }))
    }

    fn next_pcapng(&mut self) -> Result<Option<RawPacket<'_>>, PcapError> {
        loop {
            let Format::PcapNg { big_endian: be, .. } = self.format else {
                return Ok(None);
            };
            let mut hdr = [0u8; 8];
            if !read_record_start(&mut self.inner, &mut hdr)? {
                return Ok(None);
            }
            let block_type = u32_at(&hdr, 0, be).unwrap_or(0);
            if block_type == 0x0a0d_0d0a {
                // A new section: byte order and interfaces start over. The length is read in
                // the new section's byte order, which read_shb_rest takes care of.
                let be = read_shb_after_type(&mut self.inner, &hdr)?;
                self.format = Format::PcapNg { big_endian: be, interfaces: Vec::new() };
                continue;
            }
            let total = u32_at(&hdr, 4, be).unwrap_or(0) as usize;
            if total < 12 || !total.is_multiple_of(4) || total > MAX_BLOCK {
                return Err(PcapError::Corrupt("bad pcapng block length"));
            }
            let body_len = total - 12;
            self.buf.resize(body_len + 4, 0);
            read_exact_or(&mut self.inner, &mut self.buf, PcapError::Truncated)?;
            if u32_at(&self.buf, body_len, be) != Some(total as u32) {
                return Err(PcapError::Corrupt("pcapng block lengths differ"));
            }
            match block_type {
                1 => self.add_interface(body_len, be)?,
                6 | 2 => {
                    let enhanced = block_type == 6;
                    let (iface, hi, lo, cap, orig) = if enhanced {
                        (
                            u32_at(&self.buf, 0, be),
                            u32_at(&self.buf, 4, be),
                            u32_at(&self.buf, 8, be),
                            u32_at(&self.buf, 12, be),
                            u32_at(&self.buf, 16, be),
                        )
                    } else {
                        // Obsolete packet block: 16-bit interface id and drop count.
                        (
                            u16_at(&self.buf, 0, be).map(u32::from),
                            u32_at(&self.buf, 4, be),
                            u32_at(&self.buf, 8, be),
                            u32_at(&self.buf, 12, be),
                            u32_at(&self.buf, 16, be),
                        )
                    };
                    let (Some(iface), Some(hi), Some(lo), Some(cap), Some(orig)) =
                        (iface, hi, lo, cap, orig)
                    else {
                        return Err(PcapError::Corrupt("short packet block"));
                    };
                    let Some(ifc) = self.interface(iface) else {
                        return Err(PcapError::Corrupt("packet names an unknown interface"));
                    };
                    let cap = cap as usize;
                    if cap > body_len.saturating_sub(20) {
                        return Err(PcapError::Corrupt("packet longer than its block"));
                    }
                    let ts = ng_time(ifc, (u64::from(hi) << 32) | u64::from(lo));
                    self.last_ts = ts;
                    let data = self.buf.get(20..20 + cap).unwrap_or_default();
                    return Ok(Some(RawPacket {
                        ts,
                        linktype: ifc.linktype,
                        data,
                        orig_len: orig,
                    }));
                }
                3 => {
                    let Some(orig) = u32_at(&self.buf, 0, be) else {
                        return Err(PcapError::Corrupt("short simple packet block"));
                    };
                    let Some(ifc) = self.interface(0) else {
                        return Err(PcapError::Corrupt("simple packet before any interface"));
                    };
                    let cap = (orig as usize).min(body_len.saturating_sub(4));
                    let data = self.buf.get(4..4 + cap).unwrap_or_default();
                    return Ok(Some(RawPacket {
                        ts: self.last_ts,
                        linktype: ifc.linktype,
                        data,
                        orig_len: orig,
                    }));
                }
                // Name resolution, statistics, custom and unknown blocks carry no packets.
                _ => {}
            }
        }
    }

    fn interface(&self, id: u32) -> Option<Interface> {
        match &self.format {
            Format::PcapNg { interfaces, .. } => interfaces.get(id as usize).copied(),
            Format::Pcap { .. } => None,
        }
    }

    fn add_interface(&mut self, body_len: usize, be: bool) -> Result<(), PcapError> {
        let linktype = u16_at(&self.buf, 0, be)
            .map(u32::from)
            .ok_or(PcapError::Corrupt("short interface block"))?;
        let mut ifc = Interface { linktype, units_per_sec: 1_000_000, offset_secs: 0 };
        // Options start after link type (2), reserved (2) and snap length (4).
        let mut at = 8usize;
        while at + 4 <= body_len {
            let code = u16_at(&self.buf, at, be).unwrap_or(0);
            let len = usize::from(u16_at(&self.buf, at + 2, be).unwrap_or(0));
            let val = self.buf.get(at + 4..at + 4 + len).unwrap_or_default();
            match (code, val) {
                (0, _) => break,
                (9, [r]) => {
                    let exp = u32::from(r & 0x7f);
                    let units =
                        if r & 0x80 != 0 { 2u64.checked_pow(exp) } else { 10u64.checked_pow(exp) };
                    ifc.units_per_sec = units.filter(|u| *u > 0).unwrap_or(1_000_000);
                }
                (14, v) if v.len() == 8 => {
                    let b: [u8; 8] = v.try_into().unwrap_or_default();
                    ifc.offset_secs =
                        if be { i64::from_be_bytes(b) } else { i64::from_le_bytes(b) };
                }
                _ => {}
            }
            at += 4 + len.div_ceil(4) * 4;
        }
        if let Format::PcapNg { interfaces, .. } = &mut self.format {
            if interfaces.len() >= MAX_INTERFACES {
                return Err(PcapError::Corrupt("too many interfaces"));
            }
            interfaces.push(ifc);
        }
        Ok(())
    }
}

fn ng_time(ifc: Interface, raw: u64) -> Timestamp {
    let units = ifc.units_per_sec.max(1);
    let secs = raw / units;
    let frac = raw % units;
    let micros = (u128::from(frac) * 1_000_000 / u128::from(units)) as u32;
    let secs = i64::try_from(secs).unwrap_or(i64::MAX).saturating_add(ifc.offset_secs);
    Timestamp::from_secs_micros(secs, micros)
}

/// Reads the section header body after its 4-byte type; returns the byte order.
fn read_shb_body<R: Read>(r: &mut R) -> Result<bool, PcapError> {
    let mut len_bom = [0u8; 8];
    read_exact_or(r, &mut len_bom, PcapError::Truncated)?;
    finish_shb(r, len_bom)
}

fn read_shb_after_type<R: Read>(r: &mut R, hdr: &[u8; 8]) -> Result<bool, PcapError> {
    let mut bom = [0u8; 4];
    read_exact_or(r, &mut bom, PcapError::Truncated)?;
    let mut len_bom = [0u8; 8];
    len_bom[..4].copy_from_slice(&hdr[4..8]);
    len_bom[4..].copy_from_slice(&bom);
    finish_shb(r, len_bom)
}

fn finish_shb<R: Read>(r: &mut R, len_bom: [u8; 8]) -> Result<bool, PcapError> {
    let be = match u32_at(&len_bom, 4, false) {
        Some(0x1a2b_3c4d) => false,
        Some(0x4d3c_2b1a) => true,
        _ => return Err(PcapError::Corrupt("bad pcapng byte-order magic")),
    };
    let total = u32_at(&len_bom, 0, be).unwrap_or(0) as usize;
    if total < 28 || !total.is_multiple_of(4) || total > MAX_BLOCK {
        return Err(PcapError::Corrupt("bad section header length"));
    }
    // Skip version, section length, options and the trailing length: 12 bytes consumed so far.
    skip(r, total - 12)?;
    Ok(be)
}

fn skip<R: Read>(r: &mut R, n: usize) -> Result<(), PcapError> {
    let copied = io::copy(&mut r.take(n as u64), &mut io::sink())?;
    if copied as usize != n {
        return Err(PcapError::Truncated);
    }
    Ok(())
}

/// Reads a record header; `false` on a clean end of file before its first byte.
fn read_record_start<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<bool, PcapError> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else { break };
        match r.read(rest) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(PcapError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8], eof: PcapError) -> Result<(), PcapError> {
    match r.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(eof),
        Err(e) => Err(e.into()),
    }
}

fn u32_at(b: &[u8], at: usize, be: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if be { u32::from_be_bytes(s) } else { u32::from_le_bytes(s) })
}

fn u16_at(b: &[u8], at: usize, be: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if be { u16::from_be_bytes(s) } else { u16::from_le_bytes(s) })
}

/// Writes a classic little-endian microsecond pcap file.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header for `link`.
    pub fn new(mut out: W, link: LinkType) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&(MAX_PACKET as u32).to_le_bytes());
        h.extend_from_slice(&link.to_pcap().to_le_bytes());
        out.write_all(&h)?;
        Ok(Self { out })
    }

    /// Appends one packet captured at `ts`.
    pub fn write_packet(&mut self, ts: Timestamp, data: &[u8]) -> io::Result<()> {
        let len = u32::try_from(data.len()).map_err(io::Error::other)?;
        let mut h = [0u8; 16];
        let secs = u32::try_from(ts.as_secs()).unwrap_or(0);
        let micros = ts.as_micros().rem_euclid(1_000_000) as u32;
        h[..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&micros.to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes a little-endian pcapng file with one interface and enhanced packet blocks
/// (microsecond resolution).
pub struct PcapNgWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapNgWriter<W> {
    /// Writes the section header and one interface description for `link`.
    pub fn new(mut out: W, link: LinkType) -> io::Result<Self> {
        let mut shb = Vec::new();
        shb.extend_from_slice(&0x0a0d_0d0au32.to_le_bytes());
        shb.extend_from_slice(&28u32.to_le_bytes());
        shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        shb.extend_from_slice(&28u32.to_le_bytes());
        out.write_all(&shb)?;
        let mut idb = Vec::new();
        idb.extend_from_slice(&1u32.to_le_bytes());
        idb.extend_from_slice(&20u32.to_le_bytes());
        idb.extend_from_slice(&(link.to_pcap() as u16).to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&(MAX_PACKET as u32).to_le_bytes());
        idb.extend_from_slice(&20u32.to_le_bytes());
        out.write_all(&idb)?;
        Ok(Self { out })
    }

    /// Appends one enhanced packet block captured at `ts`.
    pub fn write_packet(&mut self, ts: Timestamp, data: &[u8]) -> io::Result<()> {
        let cap = u32::try_from(data.len()).map_err(io::Error::other)?;
        let padded = data.len().div_ceil(4) * 4;
        let total = u32::try_from(32 + padded).map_err(io::Error::other)?;
        let t = u64::try_from(ts.as_micros()).unwrap_or(0);
        let mut b = Vec::with_capacity(32 + padded);
        b.extend_from_slice(&6u32.to_le_bytes());
        b.extend_from_slice(&total.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&((t >> 32) as u32).to_le_bytes());
        b.extend_from_slice(&(t as u32).to_le_bytes());
        b.extend_from_slice(&cap.to_le_bytes());
        b.extend_from_slice(&cap.to_le_bytes());
        b.extend_from_slice(data);
        b.resize(28 + padded, 0);
        b.extend_from_slice(&total.to_le_bytes());
        self.out.write_all(&b)
    }

    /// Flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets() -> Vec<(Timestamp, Vec<u8>)> {
        (0..5u8)
            .map(|i| {
                (
                    Timestamp::from_secs_micros(1_700_000_000 + i64::from(i), 1000 * u32::from(i)),
                    vec![i; usize::from(i) * 3 + 1],
                )
            })
            .collect()
    }

    fn read_all(bytes: &[u8]) -> Result<Vec<(Timestamp, u32, Vec<u8>)>, PcapError> {
        let mut r = PcapReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(p) = r.next_packet()? {
            out.push((p.ts, p.linktype, p.data.to_vec()));
        }
        Ok(out)
    }

    #[test]
    fn pcap_and_pcapng_round_trip() {
        let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet).unwrap();
        let mut ng = PcapNgWriter::new(Vec::new(), LinkType::LinuxSll2).unwrap();
        for (ts, d) in packets() {
            w.write_packet(ts, &d).unwrap();
            ng.write_packet(ts, &d).unwrap();
        }
        let pcap = w.finish().unwrap();
        let pcapng = ng.finish().unwrap();
        let a = read_all(&pcap).unwrap();
        let b = read_all(&pcapng).unwrap();
        assert_eq!(a.len(), 5);
        for (((ts, lt, d), (ts2, lt2, d2)), (ets, ed)) in a.iter().zip(&b).zip(packets()) {
            assert_eq!((*ts, d), (ets, &ed));
            assert_eq!((*ts2, d2), (ets, &ed));
            assert_eq!((*lt, *lt2), (1, 276));
        }
    }

    /// Records lent from the read buffer and records that straddle its end (the file is
    /// several buffers long, the sizes vary) come back exactly as written.
    #[test]
    fn records_across_read_buffer_ends_round_trip() {
        let packets: Vec<(Timestamp, Vec<u8>)> = (0..12_000u32)
            .map(|i| {
                let len = (i * 7919 % 1500) as usize;
                (Timestamp::from_secs_micros(i64::from(i), i % 1_000_000), vec![i as u8; len])
            })
            .collect();
        let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet).unwrap();
        for (ts, d) in &packets {
            w.write_packet(*ts, d).unwrap();
        }
        let file = w.finish().unwrap();
        assert!(file.len() > 4 << 20, "{}", file.len());
        let got = read_all(&file).unwrap();
        assert_eq!(got.len(), packets.len());
        for ((ts, _, data), (want_ts, want)) in got.iter().zip(&packets) {
            assert_eq!((ts, data), (want_ts, want));
        }
    }

    #[test]
    fn truncated_files_error_without_panic() {
        let mut w = PcapNgWriter::new(Vec::new(), LinkType::Ethernet).unwrap();
        for (ts, d) in packets() {
            w.write_packet(ts, &d).unwrap();
        }
        let full = w.finish().unwrap();
        for n in 0..full.len() {
            let _ = read_all(&full[..n]);
        }
        assert!(matches!(read_all(b"nope"), Err(PcapError::BadMagic(_))));
    }

    #[test]
    fn huge_length_is_rejected_before_allocation() {
        let mut f = PcapWriter::new(Vec::new(), LinkType::Ethernet).unwrap().finish().unwrap();
        f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
        assert!(matches!(read_all(&f), Err(PcapError::Corrupt(_))));
    }
}
