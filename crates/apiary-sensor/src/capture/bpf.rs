//! BPF capture filters in tcpdump syntax (PokieStream's `filter.scapy`), compiled by libpcap
//! loaded at run time, so the default build needs no libpcap development package and a
//! missing libpcap only matters when an expression is configured.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};

use libloading::Library;

/// Why a filter expression could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BpfError {
    /// libpcap is not installed.
    #[error(
        "the capture filter {expr:?} needs libpcap at run time, but none could be loaded ({detail}); install the libpcap0.8 package or remove filter.scapy"
    )]
    NoLibpcap {
        /// The expression.
        expr: String,
        /// The loader's messages.
        detail: String,
    },
    /// libpcap rejected the expression.
    #[error("invalid capture filter {expr:?}: {message}")]
    Compile {
        /// The expression.
        expr: String,
        /// libpcap's message.
        message: String,
    },
}

/// One classic BPF instruction (`struct sock_filter` / `struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u16,
    /// Jump if true.
    pub jt: u8,
    /// Jump if false.
    pub jf: u8,
    /// Operand.
    pub k: u32,
}

#[repr(C)]
struct BpfProgram {
    len: c_uint,
    insns: *mut Insn,
}

#[repr(C)]
struct PcapPkthdr {
    ts: libc::timeval,
    caplen: u32,
    len: u32,
}

type OpenDead = unsafe extern "C" fn(c_int, c_int) -> *mut c_void;
type Compile =
    unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, u32) -> c_int;
type GetErr = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type FreeCode = unsafe extern "C" fn(*mut BpfProgram);
type Close = unsafe extern "C" fn(*mut c_void);
type OfflineFilter = unsafe extern "C" fn(*const BpfProgram, *const PcapPkthdr, *const u8) -> c_int;

/// Library names tried in order (Debian ships `libpcap.so.0.8`).
const NAMES: [&str; 4] = ["libpcap.so.0.8", "libpcap.so.1", "libpcap.so", "libpcap.dylib"];

/// A compiled filter: the instructions (for `SO_ATTACH_FILTER`) and a way to run them in user
/// space on replayed packets (libpcap's `pcap_offline_filter`).
pub struct Filter {
    insns: Vec<Insn>,
    offline: OfflineFilter,
    // Keeps the library mapped while `offline` may be called.
    _lib: Library,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter").field("insns", &self.insns.len()).finish()
    }
}

impl Filter {
    /// Compiles `expr` for link type `linktype` (a pcap `LINKTYPE_*`) and snap length.
    pub fn compile(expr: &str, linktype: u32, snaplen: u32) -> Result<Self, BpfError> {
        let lib = load(expr)?;
        let cexpr = CString::new(expr).map_err(|_| BpfError::Compile {
            expr: expr.into(),
            message: "expression contains a NUL byte".into(),
        })?;
        // SAFETY: the symbol types match libpcap's documented prototypes.
        let syms = unsafe {
            (
                lib.get::<OpenDead>(b"pcap_open_dead\0").map(|s| *s),
                lib.get::<Compile>(b"pcap_compile\0").map(|s| *s),
                lib.get::<GetErr>(b"pcap_geterr\0").map(|s| *s),
                lib.get::<FreeCode>(b"pcap_freecode\0").map(|s| *s),
                lib.get::<Close>(b"pcap_close\0").map(|s| *s),
                lib.get::<OfflineFilter>(b"pcap_offline_filter\0").map(|s| *s),
            )
        };
        let (Ok(open_dead), Ok(compile), Ok(geterr), Ok(freecode), Ok(close), Ok(offline)) = syms
        else {
            return Err(BpfError::NoLibpcap {
                expr: expr.into(),
                detail: "libpcap lacks pcap_compile or pcap_offline_filter".into(),
            });
        };
        let linktype = c_int::try_from(linktype).unwrap_or(1);
        let snaplen = c_int::try_from(snaplen).unwrap_or(65_535);
        // SAFETY: pcap_open_dead allocates a handle we close below; pcap_compile fills `prog`,
        // whose instructions we copy before pcap_freecode releases them.
        unsafe {
            let handle = open_dead(linktype, snaplen);
            if handle.is_null() {
                return Err(BpfError::Compile {
                    expr: expr.into(),
                    message: "pcap_open_dead failed".into(),
                });
            }
            let mut prog = BpfProgram { len: 0, insns: std::ptr::null_mut() };
            // PCAP_NETMASK_UNKNOWN: broadcast tests are rejected rather than guessed.
            let rc = compile(handle, &mut prog, cexpr.as_ptr(), 1, 0xffff_ffff);
            if rc != 0 {
                let msg = geterr(handle);
                let message = if msg.is_null() {
                    "syntax error".to_owned()
                } else {
                    CStr::from_ptr(msg).to_string_lossy().into_owned()
                };
                close(handle);
                return Err(BpfError::Compile { expr: expr.into(), message });
            }
            let insns = if prog.insns.is_null() {
                Vec::new()
            } else {
                std::slice::from_raw_parts(prog.insns, prog.len as usize).to_vec()
            };
            freecode(&mut prog);
            close(handle);
            Ok(Self { insns, offline, _lib: lib })
        }
    }

    /// The instructions.
    pub fn instructions(&self) -> &[Insn] {
        &self.insns
    }

    /// Whether the filter accepts a packet (`data` captured, `wire_len` on the wire).
    pub fn matches(&self, data: &[u8], wire_len: u32) -> bool {
        let prog =
            BpfProgram { len: self.insns.len() as c_uint, insns: self.insns.as_ptr().cast_mut() };
        let hdr = PcapPkthdr {
            ts: libc::timeval { tv_sec: 0, tv_usec: 0 },
            caplen: data.len() as u32,
            len: wire_len.max(data.len() as u32),
        };
        // SAFETY: `prog` points at our own instructions (libpcap only reads them) and the
        // header's caplen matches `data`, so the interpreter stays inside the buffer.
        unsafe { (self.offline)(&prog, &hdr, data.as_ptr()) != 0 }
    }

    /// Attaches the filter to a socket (`SO_ATTACH_FILTER`).
    pub fn attach(&self, fd: c_int) -> std::io::Result<()> {
        #[repr(C)]
        struct SockFprog {
            len: u16,
            filter: *const Insn,
        }
        let len = u16::try_from(self.insns.len()).map_err(std::io::Error::other)?;
        let prog = SockFprog { len, filter: self.insns.as_ptr() };
        // SAFETY: the kernel copies the program during the call.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&raw const prog).cast(),
                std::mem::size_of::<SockFprog>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

fn load(expr: &str) -> Result<Library, BpfError> {
    let mut detail = Vec::new();
    for name in NAMES {
        // SAFETY: loading libpcap runs only its (trusted, system) initialisers.
        match unsafe { Library::new(name) } {
            Ok(lib) => return Ok(lib),
            Err(e) => detail.push(e.to_string()),
        }
    }
    Err(BpfError::NoLibpcap { expr: expr.into(), detail: detail.join("; ") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_and_filters_or_reports_missing_libpcap() {
        match Filter::compile("udp and port 53", 1, 65_535) {
            Ok(f) => {
                assert!(!f.instructions().is_empty());
                let mut dns = Vec::new();
                etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
                    .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                    .udp(5000, 53)
                    .write(&mut dns, b"q")
                    .unwrap();
                let mut other = Vec::new();
                etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
                    .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                    .tcp(5000, 80, 1, 100)
                    .write(&mut other, b"")
                    .unwrap();
                assert!(f.matches(&dns, dns.len() as u32));
                assert!(!f.matches(&other, other.len() as u32));
                let err = Filter::compile("port banana", 1, 65_535).unwrap_err().to_string();
                assert!(err.contains("invalid capture filter"), "{err}");
            }
            Err(BpfError::NoLibpcap { .. }) => {
                eprintln!("libpcap not installed: BPF compilation not exercised");
            }
            Err(e) => panic!("{e}"),
        }
    }
}
