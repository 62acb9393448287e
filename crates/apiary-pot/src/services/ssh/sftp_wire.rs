//! SFTP version 3 wire format (draft-ietf-secsh-filexfer-02, as OpenSSH speaks it): a
//! two-phase parser for client requests (`check_packet` frames, `parse_packet` decodes) and
//! the encoders for the server's replies.
#![deny(clippy::indexing_slicing)]

/// Largest packet accepted, as OpenSSH's sftp-server (`SFTP_MAX_MSG_LENGTH`).
pub(crate) const MAX_PACKET: usize = 256 * 1024;

/// Why a packet was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SftpError {
    /// More bytes are needed.
    #[error("incomplete packet")]
    Incomplete,
    /// The length field is zero or over [`MAX_PACKET`].
    #[error("bad packet length {0}")]
    BadLength(u32),
    /// A field runs past the packet's end.
    #[error("malformed packet")]
    Malformed,
}

/// File attributes (`ATTRS`); absent fields are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Size in bytes.
    pub size: Option<u64>,
    /// Owner and group.
    pub uid_gid: Option<(u32, u32)>,
    /// Mode bits, file type included.
    pub perms: Option<u32>,
    /// Access and modification times.
    pub times: Option<(u32, u32)>,
}

const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// Open for writing (`pflags`; reading is 0x1, the default here).
pub(crate) const OPEN_WRITE: u32 = 0x2;
/// Append.
pub(crate) const OPEN_APPEND: u32 = 0x4;
/// Create if missing.
pub(crate) const OPEN_CREAT: u32 = 0x8;
/// Truncate.
pub(crate) const OPEN_TRUNC: u32 = 0x10;
/// Fail if it exists.
pub(crate) const OPEN_EXCL: u32 = 0x20;

/// A client request; byte strings borrow from the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// `SSH_FXP_INIT`.
    Init {
        /// The client's protocol version.
        version: u32,
    },
    /// `SSH_FXP_OPEN`.
    Open {
        /// Request id.
        id: u32,
        /// Path.
        path: &'a [u8],
        /// `OPEN_*` flags.
        pflags: u32,
        /// Attributes for a created file.
        attrs: Attrs,
    },
    /// `SSH_FXP_CLOSE`.
    Close {
        /// Request id.
        id: u32,
        /// Handle.
        handle: &'a [u8],
    },
    /// `SSH_FXP_READ`.
    Read {
        /// Request id.
        id: u32,
        /// Handle.
        handle: &'a [u8],
        /// Offset.
        offset: u64,
        /// Bytes wanted.
        len: u32,
    },
    /// `SSH_FXP_WRITE`.
    Write {
        /// Request id.
        id: u32,
        /// Handle.
        handle: &'a [u8],
        /// Offset.
        offset: u64,
        /// The bytes.
        data: &'a [u8],
    },
    /// `SSH_FXP_LSTAT` (`follow` false), `SSH_FXP_STAT` (`follow` true).
    Stat {
        /// Request id.
        id: u32,
        /// Path.
        path: &'a [u8],
        /// Whether a final symbolic link is followed.
        follow: bool,
    },
    /// `SSH_FXP_FSTAT`.
    Fstat {
        /// Request id.
        id: u32,
        /// Handle.
        handle: &'a [u8],
    },
    /// `SSH_FXP_SETSTAT`.
    Setstat {
        /// Request id.
        id: u32,
        /// Path.
        path: &'a [u8],
        /// New attributes.
        attrs: Attrs,
    },
    /// `SSH_FXP_FSETSTAT`.
    Fsetstat {
        /// Request id.
        id: u32,
        /// Handle.
        handle: &'a [u8],
        /// New attributes.
        attrs: Attrs,
    },
    /// `SSH_FXP_OPENDIR`.
    Opendir {
        /// Request id.
        id: u32,
        /// Path.
        path: &'a [u8],
    },
    /// `SSH_FXP_READDIR`.
    Readdir {
        /// Request id.
        id: u32,
        /// Handle.
        handle: &'a [u8],
    },
    /// `SSH_FXP_REMOVE`.
    Remove {
        /// Request id.
        id: u32,
        /// Path.
        path: &'a [u8],
    },
    /// `SSH_FXP_MKDIR`.
    Mkdir {
        /// Request id.
        id: u32,
        /// Path.
        path: &'a [u8],
        /// Attributes.
        attrs: Attrs,
    },
    /// `SSH_FXP_RMDIR`.
    Rmdir {
        /// Request id.
        id: u32,
        /// Path.
        path: &'a [u8],
    },
    /// `SSH_FXP_REALPATH`.
    Realpath {
        /// Request id.
        id: u32,
        /// Path.
        path: &'a [u8],
    },
    /// `SSH_FXP_RENAME`.
    Rename {
        /// Request id.
        id: u32,
        /// Old path.
        from: &'a [u8],
        /// New path.
        to: &'a [u8],
    },
    /// `SSH_FXP_READLINK`.
    Readlink {
        /// Request id.
        id: u32,
        /// Path.
        path: &'a [u8],
    },
    /// `SSH_FXP_SYMLINK`, in OpenSSH's argument order (target first, then the link).
    Symlink {
        /// Request id.
        id: u32,
        /// What the link points to.
        target: &'a [u8],
        /// The link's path.
        link: &'a [u8],
    },
    /// `SSH_FXP_EXTENDED`.
    Extended {
        /// Request id.
        id: u32,
        /// Extension name (`limits@openssh.com`).
        name: &'a [u8],
        /// The rest of the packet.
        data: &'a [u8],
    },
    /// Any other type; answered `SSH_FX_OP_UNSUPPORTED` when it carries an id.
    Unknown {
        /// Packet type.
        kind: u8,
        /// Request id, when there are four bytes for one.
        id: Option<u32>,
    },
}

/// Phase one: the length of the first whole packet in `buf` (length field included).
pub fn check_packet(buf: &[u8]) -> Result<usize, SftpError> {
    let Some(head) = buf.get(..4) else { return Err(SftpError::Incomplete) };
    let len = u32::from_be_bytes(head.try_into().map_err(|_| SftpError::Incomplete)?);
    if len == 0 || len as usize > MAX_PACKET {
        return Err(SftpError::BadLength(len));
    }
    let total = 4 + len as usize;
    if buf.len() < total { Err(SftpError::Incomplete) } else { Ok(total) }
}

/// A cursor over a packet's fields.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], SftpError> {
        let (a, b) = (self.0.get(..n), self.0.get(n..));
        match (a, b) {
            (Some(a), Some(b)) => {
                self.0 = b;
                Ok(a)
            }
            _ => Err(SftpError::Malformed),
        }
    }
    pub(crate) fn u8(&mut self) -> Result<u8, SftpError> {
        self.take(1).map(|b| b.first().copied().unwrap_or_default())
    }
    pub(crate) fn u32(&mut self) -> Result<u32, SftpError> {
        let b = self.take(4)?;
        Ok(b.iter().fold(0u32, |a, x| (a << 8) | u32::from(*x)))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, SftpError> {
        let b = self.take(8)?;
        Ok(b.iter().fold(0u64, |a, x| (a << 8) | u64::from(*x)))
    }
    pub(crate) fn string(&mut self) -> Result<&'a [u8], SftpError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn attrs(&mut self) -> Result<Attrs, SftpError> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid_gid = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.perms = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.times = Some((self.u32()?, self.u32()?));
        }
        if flags & ATTR_EXTENDED != 0 {
            let n = self.u32()?;
            for _ in 0..n {
                // Each pair is at least 8 bytes, so a huge count runs out of packet quickly.
                self.string()?;
                self.string()?;
            }
        }
        Ok(a)
    }
}

/// Phase two: decodes one whole packet as framed by [`check_packet`]; the packet's type and
/// fields, each checked against the packet's end.
pub fn parse_packet(packet: &[u8]) -> Result<Request<'_>, SftpError> {
    let total = check_packet(packet)?;
    let mut r = Reader(packet.get(4..total).ok_or(SftpError::Malformed)?);
    let kind = r.u8()?;
    if kind == 1 {
        return Ok(Request::Init { version: r.u32()? });
    }
    let id = match kind {
        3..=20 | 200 => r.u32()?,
        _ => return Ok(Request::Unknown { kind, id: r.u32().ok() }),
    };
    Ok(match kind {
        3 => Request::Open { id, path: r.string()?, pflags: r.u32()?, attrs: r.attrs()? },
        4 => Request::Close { id, handle: r.string()? },
        5 => Request::Read { id, handle: r.string()?, offset: r.u64()?, len: r.u32()? },
        6 => Request::Write { id, handle: r.string()?, offset: r.u64()?, data: r.string()? },
        7 => Request::Stat { id, path: r.string()?, follow: false },
        8 => Request::Fstat { id, handle: r.string()? },
        9 => Request::Setstat { id, path: r.string()?, attrs: r.attrs()? },
        10 => Request::Fsetstat { id, handle: r.string()?, attrs: r.attrs()? },
        11 => Request::Opendir { id, path: r.string()? },
        12 => Request::Readdir { id, handle: r.string()? },
        13 => Request::Remove { id, path: r.string()? },
        14 => Request::Mkdir { id, path: r.string()?, attrs: r.attrs()? },
        15 => Request::Rmdir { id, path: r.string()? },
        16 => Request::Realpath { id, path: r.string()? },
        17 => Request::Stat { id, path: r.string()?, follow: true },
        18 => Request::Rename { id, from: r.string()?, to: r.string()? },
        19 => Request::Readlink { id, path: r.string()? },
        20 => Request::Symlink { id, target: r.string()?, link: r.string()? },
        _ => Request::Extended { id, name: r.string()?, data: r.0 },
    })
}

/// Status codes.
pub(crate) const FX_OK: u32 = 0;
pub(crate) const FX_EOF: u32 = 1;
pub(crate) const FX_NO_SUCH_FILE: u32 = 2;
pub(crate) const FX_PERMISSION_DENIED: u32 = 3;
pub(crate) const FX_FAILURE: u32 = 4;
pub(crate) const FX_BAD_MESSAGE: u32 = 5;
pub(crate) const FX_OP_UNSUPPORTED: u32 = 8;

/// Builds one reply packet.
pub(crate) struct Packet(Vec<u8>);

impl Packet {
    pub(crate) fn new(kind: u8) -> Self {
        Self(vec![0, 0, 0, 0, kind])
    }
    pub(crate) fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub(crate) fn string(mut self, s: &[u8]) -> Self {
        self = self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(s);
        self
    }
    pub(crate) fn attrs(mut self, a: &Attrs) -> Self {
        let mut flags = 0;
        if a.size.is_some() {
            flags |= ATTR_SIZE;
        }
        if a.uid_gid.is_some() {
            flags |= ATTR_UIDGID;
        }
        if a.perms.is_some() {
            flags |= ATTR_PERMISSIONS;
        }
        if a.times.is_some() {
            flags |= ATTR_ACMODTIME;
        }
        self = self.u32(flags);
        if let Some(s) = a.size {
            self = self.u64(s);
        }
        if let Some((u, g)) = a.uid_gid {
            self = self.u32(u).u32(g);
        }
        if let Some(p) = a.perms {
            self = self.u32(p);
        }
        if let Some((at, mt)) = a.times {
            self = self.u32(at).u32(mt);
        }
        self
    }
    /// The finished packet, its length field filled in.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        let len = u32::try_from(self.0.len() - 4).unwrap_or(u32::MAX);
        if let Some(h) = self.0.get_mut(..4) {
            h.copy_from_slice(&len.to_be_bytes());
        }
        self.0
    }
}

/// An `SSH_FXP_STATUS` reply with sftp-server's message for the code.
pub(crate) fn status(id: u32, code: u32) -> Vec<u8> {
    let msg: &[u8] = match code {
        FX_OK => b"Success",
        FX_EOF => b"End of file",
        FX_NO_SUCH_FILE => b"No such file",
        FX_PERMISSION_DENIED => b"Permission denied",
        FX_BAD_MESSAGE => b"Bad message",
        FX_OP_UNSUPPORTED => b"Operation unsupported",
        _ => b"Failure",
    };
    Packet::new(101).u32(id).u32(code).string(msg).string(b"").finish()
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn pkt(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn frames_and_decodes() {
        let mut body = vec![3, 0, 0, 0, 7, 0, 0, 0, 4];
        body.extend_from_slice(b"/tmp");
        body.extend_from_slice(&(OPEN_WRITE | OPEN_CREAT).to_be_bytes());
        body.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0o1, 0o355]);
        let p = pkt(&body);
        for cut in 0..p.len() {
            assert_eq!(check_packet(&p[..cut]), Err(SftpError::Incomplete), "cut {cut}");
        }
        assert_eq!(check_packet(&p), Ok(p.len()));
        let Request::Open { id, path, pflags, attrs } = parse_packet(&p).unwrap() else {
            panic!("not open")
        };
        assert_eq!((id, path, pflags), (7, &b"/tmp"[..], OPEN_WRITE | OPEN_CREAT));
        assert_eq!(attrs.perms, Some(0o755));
        // A string longer than its packet, a zero length, a huge length.
        assert_eq!(
            parse_packet(&pkt(&[16, 0, 0, 0, 1, 0, 0, 0, 9, b'a'])),
            Err(SftpError::Malformed)
        );
        assert_eq!(check_packet(&[0, 0, 0, 0]), Err(SftpError::BadLength(0)));
        assert_eq!(check_packet(&[0, 0x10, 0, 1, 1]), Err(SftpError::BadLength(0x10_0001)));
        assert_eq!(parse_packet(&pkt(&[99])), Ok(Request::Unknown { kind: 99, id: None }));
    }

    #[test]
    fn replies_are_framed() {
        let s = status(9, FX_EOF);
        assert_eq!(check_packet(&s), Ok(s.len()));
        assert_eq!(&s[4..14], &[101, 0, 0, 0, 9, 0, 0, 0, 1, 0]);
        let a = Attrs { size: Some(5), perms: Some(0o100644), ..Attrs::default() };
        let p = Packet::new(105).u32(1).attrs(&a).finish();
        assert_eq!(p.len(), 4 + 1 + 4 + 4 + 8 + 4);
    }
}
