//! Live capture with an AF_PACKET socket and a TPACKET_V3 memory-mapped ring: the kernel
//! fills whole blocks of packets and hands them over, so one poll wakes us for thousands of
//! packets and nothing is copied. Several sockets can share an interface through
//! `PACKET_FANOUT_HASH`, which sends both directions of a flow to the same socket.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use apiary_event::Timestamp;

use crate::capture::bpf::Filter;
use crate::decode::LinkType;

const TPACKET_V3: libc::c_int = 2;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;
const PACKET_MR_PROMISC: u16 = 1;
const PACKET_OUTGOING: u8 = 4;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_KERNEL: u32 = 0;
const ETH_P_ALL: u16 = 0x0003;
/// `TPACKET_ALIGN(sizeof(struct tpacket3_hdr))`: where the `sockaddr_ll` follows a packet header.
const TPACKET3_HDRLEN: usize = 48;

#[repr(C)]
struct TpacketReq3 {
    block_size: u32,
    block_nr: u32,
    frame_size: u32,
    frame_nr: u32,
    retire_blk_tov: u32,
    sizeof_priv: u32,
    feature_req_word: u32,
}

#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    packets: u32,
    drops: u32,
    freeze_q_cnt: u32,
}

#[repr(C)]
struct PacketMreq {
    ifindex: libc::c_int,
    kind: u16,
    alen: u16,
    address: [u8; 8],
}

/// Ring geometry and socket options.
#[derive(Debug, Clone)]
pub struct RingOptions {
    /// Block size (power of two, multiple of the page size).
    pub block_size: usize,
    /// Number of blocks.
    pub block_count: usize,
    /// Milliseconds before the kernel retires a partly filled block.
    pub block_timeout_ms: u32,
    /// Promiscuous mode.
    pub promiscuous: bool,
    /// Join this fanout group (hash mode) when set.
    pub fanout_group: Option<u16>,
}

/// One packet in the ring, borrowed until the block is released.
#[derive(Debug, Clone, Copy)]
pub struct RingPacket<'a> {
    /// Kernel receive time.
    pub ts: Timestamp,
    /// Captured bytes from the link-layer header on.
    pub data: &'a [u8],
    /// Length on the wire.
    pub wire_len: u32,
}

/// An AF_PACKET socket bound to one interface with a TPACKET_V3 receive ring.
pub struct Ring {
    fd: OwnedFd,
    map: NonNull<u8>,
    map_len: usize,
    block_size: usize,
    block_count: usize,
    next_block: usize,
    link: LinkType,
    skip_outgoing: bool,
}

// SAFETY: the mapping is owned by this value and only touched through &mut self.
unsafe impl Send for Ring {}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("fd", &self.fd.as_raw_fd()).field("link", &self.link).finish()
    }
}

fn setopt<T>(fd: libc::c_int, level: libc::c_int, name: libc::c_int, val: &T) -> io::Result<()> {
    // SAFETY: `val` is a live value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The decoder link type of interface `iface`, from its ARPHRD type in sysfs.
pub fn link_type_of(iface: &str) -> io::Result<LinkType> {
    if iface.contains('/') || iface.contains("..") {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"));
    }
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/type"))?;
    let hatype: u32 = text.trim().parse().map_err(io::Error::other)?;
    match hatype {
        // Ethernet, loopback (which carries an all-zero Ethernet header), IEEE 802.
        1 | 6 | 772 => Ok(LinkType::Ethernet),
        // No link header: tun, GRE, SIT, IPIP, raw IP.
        65534 | 778 | 776 | 768 | 519 => Ok(LinkType::RawIp),
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("interface {iface} has unsupported hardware type {other}"),
        )),
    }
}

/// Whether `iface` exists.
pub fn interface_index(iface: &str) -> io::Result<u32> {
    let c = CString::new(iface).map_err(io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("Interface {iface} does not exist."),
        ));
    }
    Ok(idx)
}

impl Ring {
    /// Opens a ring on `iface`; `filter` is attached before any packet can arrive.
    pub fn open(iface: &str, opts: &RingOptions, filter: Option<&Filter>) -> io::Result<Self> {
        let ifindex = interface_index(iface)?;
        let link = link_type_of(iface)?;
        // Protocol 0: no packet is queued until bind, so the filter and ring are in place first.
        // SAFETY: plain socket call.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = fd.as_raw_fd();
        setopt(s, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V3)?;
        if let Some(f) = filter {
            f.attach(s)?;
        }
        let page = 4096usize;
        let block_size = opts.block_size.max(page).next_power_of_two();
        let block_count = opts.block_count.clamp(2, 4096);
        let frame_size = 2048u32;
        let req = TpacketReq3 {
            block_size: u32::try_from(block_size).map_err(io::Error::other)?,
            block_nr: block_count as u32,
            frame_size,
            frame_nr: (block_size / frame_size as usize * block_count) as u32,
            retire_blk_tov: opts.block_timeout_ms.max(1),
            sizeof_priv: 0,
            feature_req_word: 0,
        };
        setopt(s, libc::SOL_PACKET, PACKET_RX_RING, &req)?;
        let map_len = block_size * block_count;
        // SAFETY: maps the ring the kernel just allocated for this socket.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                s,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let Some(map) = NonNull::new(map.cast::<u8>()) else {
            return Err(io::Error::other("mmap returned null"));
        };
        let ring = Self {
            fd,
            map,
            map_len,
            block_size,
            block_count,
            next_block: 0,
            link,
            // Loopback shows every packet twice (sent and received); keep the received copy,
            // as libpcap does.
            skip_outgoing: iface == "lo" || link_is_loopback(iface),
        };
        // SAFETY: sockaddr_ll is plain old data.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                s,
                (&raw const sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if opts.promiscuous {
            let mreq = PacketMreq {
                ifindex: ifindex as i32,
                kind: PACKET_MR_PROMISC,
                alen: 0,
                address: [0; 8],
            };
            setopt(s, libc::SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq)?;
        }
        if let Some(group) = opts.fanout_group {
            let arg: u32 =
                u32::from(group) | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16);
            setopt(s, libc::SOL_PACKET, PACKET_FANOUT, &arg)?;
        }
        Ok(ring)
    }

    /// The link type of the interface.
    pub fn link(&self) -> LinkType {
        self.link
    }

    /// Packets dropped by the kernel since the last call (the counters reset when read).
    pub fn kernel_drops(&self) -> u64 {
        let mut st = TpacketStatsV3::default();
        let mut len = std::mem::size_of::<TpacketStatsV3>() as libc::socklen_t;
        // SAFETY: `st` and `len` describe a buffer of the right size.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                (&raw mut st).cast(),
                &mut len,
            )
        };
        if rc != 0 { 0 } else { u64::from(st.drops) }
    }

    fn block_status(&self, block: usize) -> &AtomicU32 {
        // SAFETY: block < block_count, so the offset is inside the mapping; block_status is
        // the 4-byte aligned word at offset 8 of tpacket_block_desc, shared with the kernel.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(block * self.block_size + 8).cast()) }
    }

    /// Waits up to `timeout_ms` for a filled block and calls `f` for each of its packets,
    /// then gives the block back. Returns the number of packets seen.
    pub fn poll_block(
        &mut self,
        timeout_ms: i32,
        mut f: impl FnMut(RingPacket<'_>),
    ) -> io::Result<usize> {
        let block = self.next_block;
        if self.block_status(block).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                return if e.kind() == io::ErrorKind::Interrupted { Ok(0) } else { Err(e) };
            }
            if self.block_status(block).load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                return Ok(0);
            }
        }
        // SAFETY: the block belongs to us until we store TP_STATUS_KERNEL; its bytes lie in
        // the mapping. Offsets from the kernel are still checked against the block size.
        let base = unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(block * self.block_size),
                self.block_size,
            )
        };
        let rd = |at: usize| -> Option<u32> {
            let b: [u8; 4] = base.get(at..at + 4)?.try_into().ok()?;
            Some(u32::from_ne_bytes(b))
        };
        let rd16 = |at: usize| -> Option<u16> {
            let b: [u8; 2] = base.get(at..at + 2)?.try_into().ok()?;
            Some(u16::from_ne_bytes(b))
        };
        let num = rd(12).unwrap_or(0) as usize;
        let mut at = rd(16).unwrap_or(0) as usize;
        let mut seen = 0;
        for _ in 0..num {
            let (Some(next), Some(sec), Some(nsec), Some(snap), Some(len), Some(mac)) =
                (rd(at), rd(at + 4), rd(at + 8), rd(at + 12), rd(at + 16), rd16(at + 24))
            else {
                break;
            };
            let pkttype = base.get(at + TPACKET3_HDRLEN + 10).copied().unwrap_or(0);
            let start = at + usize::from(mac);
            if let Some(data) = base.get(start..start + snap as usize)
                && !(self.skip_outgoing && pkttype == PACKET_OUTGOING)
            {
                let ts = Timestamp::from_secs_micros(i64::from(sec), nsec / 1000);
                f(RingPacket { ts, data, wire_len: len });
                seen += 1;
            }
            if next == 0 {
                break;
            }
            at += next as usize;
        }
        self.block_status(block).store(TP_STATUS_KERNEL, Ordering::Release);
        self.next_block = (block + 1) % self.block_count;
        Ok(seen)
    }
}

fn link_is_loopback(iface: &str) -> bool {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/type")).is_ok_and(|t| t.trim() == "772")
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping once; the fd closes after.
        unsafe {
            libc::munmap(self.map.as_ptr().cast(), self.map_len);
        }
    }
}
