//! The SFTP subsystem as OpenSSH's sftp-server answers it (version 3 and its openssh.com
//! extensions), over the session's copy-on-write fake filesystem: `sftp` lists, changes
//! directory, fetches and uploads, and OpenSSH 9's default `scp` (which speaks SFTP) works.
//! Uploads are hashed in full and capped like legacy scp; every operation is recorded, reads
//! and writes summed into the close.
#![deny(clippy::indexing_slicing)]

use std::collections::HashMap;
use std::sync::Arc;

use sha2::Digest as _;

use super::scp::Upload;
use super::sftp_wire::{
    Attrs, FX_BAD_MESSAGE, FX_EOF, FX_FAILURE, FX_NO_SUCH_FILE, FX_OK, FX_OP_UNSUPPORTED,
    FX_PERMISSION_DENIED, MAX_PACKET, OPEN_APPEND, OPEN_CREAT, OPEN_EXCL, OPEN_TRUNC, OPEN_WRITE,
    Packet, Reader, Request, SftpError, check_packet, parse_packet, status,
};
use crate::shell::fs::{Entry, FsError, Node, normalize, parent};
use crate::shell::{Shell, mode_string, text};

/// Open handles per session (sftp-server allows more; clients use a few).
const MAX_HANDLES: usize = 32;
/// Largest read or write payload, as sftp-server's limits reply says.
const MAX_IO: usize = MAX_PACKET - 1024;
/// Entries per `SSH_FXP_NAME` of a directory listing (sftp-server's batch).
const READDIR_BATCH: usize = 100;
/// Operations recorded per session; later ones are counted.
const MAX_OPS: usize = 512;

/// The extensions OpenSSH 9.2's sftp-server announces that this server implements.
const EXTENSIONS: &[(&str, &str)] = &[
    ("posix-rename@openssh.com", "1"),
    ("statvfs@openssh.com", "2"),
    ("fstatvfs@openssh.com", "2"),
    ("hardlink@openssh.com", "1"),
    ("fsync@openssh.com", "1"),
    ("lsetstat@openssh.com", "1"),
    ("limits@openssh.com", "1"),
    ("expand-path@openssh.com", "1"),
];

/// One recorded operation (`ssh.sftp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Op {
    /// `open`, `close`, `stat`, `opendir`, `remove`, `mkdir`, `rename`, ...
    pub(crate) op: &'static str,
    pub(crate) path: String,
    /// Second path (rename, link) or the open mode.
    pub(crate) target: Option<String>,
    /// `ok` or the status the client got (`No such file`).
    pub(crate) result: &'static str,
    /// Bytes read or written through a handle (on `close`).
    pub(crate) bytes: Option<u64>,
}

/// A file being written.
struct WriteFile {
    path: String,
    hash: sha2::Sha256,
    /// Bytes hashed so far (the sequential prefix).
    hashed: u64,
    head: Vec<u8>,
    /// The whole content while it fits the session's filesystem budget.
    content: Option<Vec<u8>>,
    /// A write landed out of order: hash `content` at the end instead.
    rehash: bool,
    /// A write went over the upload cap and was refused.
    over_cap: bool,
    size: u64,
}

enum Handle {
    Read { path: String, data: Vec<u8>, sent: u64 },
    Write(Box<WriteFile>),
    Dir { path: String, entries: Vec<(String, Entry)>, next: usize },
}

/// One `sftp` subsystem channel.
pub(crate) struct SftpSession {
    shell: Box<Shell>,
    buf: Vec<u8>,
    handles: HashMap<u32, Handle>,
    next_handle: u32,
    keep: usize,
    max: u64,
    ready: bool,
    done: bool,
    ops: usize,
    suppressed: usize,
}

/// What a batch of client bytes produced.
#[derive(Default)]
pub(crate) struct Output {
    pub(crate) reply: Vec<u8>,
    pub(crate) ops: Vec<Op>,
    pub(crate) uploads: Vec<Upload>,
}

fn code(e: FsError) -> u32 {
    match e {
        FsError::NotFound => FX_NO_SUCH_FILE,
        FsError::Denied => FX_PERMISSION_DENIED,
        _ => FX_FAILURE,
    }
}

fn code_text(c: u32) -> &'static str {
    match c {
        FX_OK => "ok",
        FX_EOF => "End of file",
        FX_NO_SUCH_FILE => "No such file",
        FX_PERMISSION_DENIED => "Permission denied",
        FX_BAD_MESSAGE => "Bad message",
        FX_OP_UNSUPPORTED => "Operation unsupported",
        _ => "Failure",
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn attrs_of(e: &Entry) -> Attrs {
    let kind = match e.node {
        Node::Dir => 0o040_000,
        Node::Link(_) => 0o120_000,
        Node::Dev => 0o020_000,
        Node::File(_) => 0o100_000,
    };
    let t = u32::try_from(e.mtime).unwrap_or(u32::MAX);
    Attrs {
        size: Some(e.size),
        uid_gid: Some((e.uid, e.uid)),
        perms: Some(kind | u32::from(e.mode)),
        times: Some((t, t)),
    }
}

fn lossy(b: &[u8]) -> String {
    crate::shell::truncate(&String::from_utf8_lossy(b), 4096).to_owned()
}

impl SftpSession {
    /// A session logged in as `shell`'s user, keeping `keep` bytes of each upload and
    /// refusing writes past `max` bytes.
    pub(crate) fn new(shell: Box<Shell>, keep: usize, max: u64) -> Self {
        Self {
            shell,
            buf: Vec::new(),
            handles: HashMap::new(),
            next_handle: 0,
            keep,
            max,
            ready: false,
            done: false,
            ops: 0,
            suppressed: 0,
        }
    }

    /// Whether the client broke the protocol (the channel is closed, as sftp-server exits).
    pub(crate) fn done(&self) -> bool {
        self.done
    }

    /// Feeds channel bytes; answers every whole packet.
    pub(crate) fn feed(&mut self, data: &[u8], out: &mut Output) {
        if self.done {
            return;
        }
        self.buf.extend_from_slice(data);
        let mut used = 0;
        loop {
            let rest = self.buf.get(used..).unwrap_or_default();
            match check_packet(rest) {
                Ok(n) => {
                    let packet = rest.get(..n).unwrap_or_default().to_vec();
                    used += n;
                    match parse_packet(&packet) {
                        Ok(req) => self.request(req, out),
                        Err(_) => {
                            // sftp-server answers a short packet with BAD_MESSAGE when it
                            // has an id; a broken frame ends the session either way.
                            self.done = true;
                            break;
                        }
                    }
                }
                Err(SftpError::Incomplete) => break,
                Err(_) => {
                    self.done = true;
                    break;
                }
            }
        }
        self.buf.drain(..used.min(self.buf.len()));
    }

    /// The session ended: uploads still open are reported, plus the count of operations
    /// past the record cap.
    pub(crate) fn finish(&mut self, out: &mut Output) {
        let ids: Vec<u32> = self.handles.keys().copied().collect();
        for id in ids {
            if let Some(Handle::Write(w)) = self.handles.remove(&id) {
                let (up, op) = self.close_write(*w);
                out.uploads.push(up);
                self.record(out, op);
            }
        }
        if self.suppressed > 0 {
            out.ops.push(Op {
                op: "suppressed",
                path: String::new(),
                target: None,
                result: "ok",
                bytes: Some(self.suppressed as u64),
            });
            self.suppressed = 0;
        }
    }

    fn record(&mut self, out: &mut Output, op: Op) {
        if self.ops >= MAX_OPS {
            self.suppressed += 1;
        } else {
            self.ops += 1;
            out.ops.push(op);
        }
    }

    fn op(&mut self, out: &mut Output, op: &'static str, path: &str, c: u32) {
        let op = Op { op, path: path.to_owned(), target: None, result: code_text(c), bytes: None };
        self.record(out, op);
    }

    fn path(&self, p: &[u8]) -> String {
        normalize(self.shell.home(), &lossy(p))
    }

    fn handle_id(h: &[u8]) -> Option<u32> {
        <[u8; 4]>::try_from(h).ok().map(u32::from_be_bytes)
    }

    fn new_handle(&mut self, h: Handle) -> Option<Vec<u8>> {
        if self.handles.len() >= MAX_HANDLES {
            return None;
        }
        let id = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1);
        self.handles.insert(id, h);
        Some(id.to_be_bytes().to_vec())
    }

    /// `ls -l` line as sftp-server's `ls_file` writes it.
    fn longname(&self, name: &str, e: &Entry) -> String {
        let owner = self.shell.owner(e.uid);
        let links = if e.is_dir() { 2 } else { 1 };
        format!(
            "{}  {links:>3} {owner:<8} {owner:<8} {:>8} {} {name}",
            mode_string(e),
            e.size,
            text::ls_time(e.mtime, text::now())
        )
    }

    fn names(id: u32, items: &[(String, String, Attrs)]) -> Vec<u8> {
        let mut p = Packet::new(104).u32(id).u32(u32::try_from(items.len()).unwrap_or(0));
        for (n, l, a) in items {
            p = p.string(n.as_bytes()).string(l.as_bytes()).attrs(a);
        }
        p.finish()
    }

    fn request(&mut self, req: Request<'_>, out: &mut Output) {
        if !self.ready {
            if let Request::Init { version } = req {
                self.ready = true;
                let mut p = Packet::new(2).u32(3);
                for (n, v) in EXTENSIONS {
                    p = p.string(n.as_bytes()).string(v.as_bytes());
                }
                out.reply.extend_from_slice(&p.finish());
                self.op(out, "init", &format!("version {version}"), FX_OK);
            } else {
                self.done = true;
            }
            return;
        }
        let now = text::now();
        match req {
            Request::Init { .. } => self.done = true,
            Request::Open { id, path, pflags, attrs } => {
                let path = self.path(path);
                let (reply, c) = self.open(id, &path, pflags, &attrs, now);
                out.reply.extend_from_slice(&reply);
                let mode = if pflags & OPEN_WRITE != 0 { "write" } else { "read" };
                let op = Op {
                    op: "open",
                    path,
                    target: Some(mode.into()),
                    result: code_text(c),
                    bytes: None,
                };
                self.record(out, op);
            }
            Request::Close { id, handle } => {
                let h = Self::handle_id(handle).and_then(|h| self.handles.remove(&h));
                let op = match h {
                    None => {
                        out.reply.extend_from_slice(&status(id, FX_FAILURE));
                        return;
                    }
                    Some(Handle::Read { path, sent, .. }) => Op {
                        op: "close",
                        path,
                        target: Some("read".into()),
                        result: "ok",
                        bytes: Some(sent),
                    },
                    Some(Handle::Dir { .. }) => {
                        out.reply.extend_from_slice(&status(id, FX_OK));
                        return;
                    }
                    Some(Handle::Write(w)) => {
                        let (up, op) = self.close_write(*w);
                        out.uploads.push(up);
                        op
                    }
                };
                out.reply.extend_from_slice(&status(id, FX_OK));
                self.record(out, op);
            }
            Request::Read { id, handle, offset, len } => {
                let reply = match Self::handle_id(handle).and_then(|h| self.handles.get_mut(&h)) {
                    Some(Handle::Read { data, sent, .. }) => {
                        let start = usize::try_from(offset).unwrap_or(usize::MAX);
                        match data.get(start..) {
                            Some(rest) if !rest.is_empty() => {
                                let n = rest.len().min(len as usize).min(MAX_IO);
                                let chunk = rest.get(..n).unwrap_or_default();
                                *sent += n as u64;
                                Packet::new(103).u32(id).string(chunk).finish()
                            }
                            _ => status(id, FX_EOF),
                        }
                    }
                    _ => status(id, FX_FAILURE),
                };
                out.reply.extend_from_slice(&reply);
            }
            Request::Write { id, handle, offset, data } => {
                let limits = (self.keep, self.max, self.shell.machine().max_written);
                let c = match Self::handle_id(handle).and_then(|h| self.handles.get_mut(&h)) {
                    Some(Handle::Write(w)) => Self::write(w, offset, data, limits),
                    _ => FX_FAILURE,
                };
                out.reply.extend_from_slice(&status(id, c));
            }
            Request::Stat { id, path, follow } => {
                let path = self.path(path);
                let fs = self.shell.fs();
                let e = if follow { fs.stat(&path).ok() } else { fs.lstat(&path) };
                let reply = match e {
                    Some(e) => Packet::new(105).u32(id).attrs(&attrs_of(e)).finish(),
                    None => status(id, FX_NO_SUCH_FILE),
                };
                let c = if e.is_some() { FX_OK } else { FX_NO_SUCH_FILE };
                out.reply.extend_from_slice(&reply);
                self.op(out, if follow { "stat" } else { "lstat" }, &path, c);
            }
            Request::Fstat { id, handle } => {
                let path = match Self::handle_id(handle).and_then(|h| self.handles.get(&h)) {
                    Some(Handle::Read { path, .. } | Handle::Dir { path, .. }) => path.clone(),
                    Some(Handle::Write(w)) => w.path.clone(),
                    None => {
                        out.reply.extend_from_slice(&status(id, FX_FAILURE));
                        return;
                    }
                };
                let reply = match self.shell.fs().stat(&path) {
                    Ok(e) => {
                        let mut a = attrs_of(e);
                        if let Some(Handle::Write(w)) =
                            Self::handle_id(handle).and_then(|h| self.handles.get(&h))
                        {
                            a.size = Some(w.size);
                        }
                        Packet::new(105).u32(id).attrs(&a).finish()
                    }
                    Err(e) => status(id, code(e)),
                };
                out.reply.extend_from_slice(&reply);
            }
            Request::Setstat { id, path, attrs } => {
                let path = self.path(path);
                let c = self.setstat(&path, &attrs);
                out.reply.extend_from_slice(&status(id, c));
                self.op(out, "setstat", &path, c);
            }
            Request::Fsetstat { id, handle, attrs } => {
                let path = match Self::handle_id(handle).and_then(|h| self.handles.get(&h)) {
                    Some(Handle::Read { path, .. } | Handle::Dir { path, .. }) => path.clone(),
                    Some(Handle::Write(w)) => w.path.clone(),
                    None => {
                        out.reply.extend_from_slice(&status(id, FX_FAILURE));
                        return;
                    }
                };
                let c = self.setstat(&path, &Attrs { size: None, ..attrs });
                out.reply.extend_from_slice(&status(id, c));
                self.op(out, "fsetstat", &path, c);
            }
            Request::Opendir { id, path } => {
                let path = self.path(path);
                let c = match self.shell.fs().list(&path) {
                    Ok(mut entries) => {
                        let fs = self.shell.fs();
                        let real = fs.resolve(&path);
                        let here = fs.stat(&real).cloned();
                        let up = fs.stat(parent(&real)).cloned();
                        if let (Ok(here), Ok(up)) = (here, up) {
                            entries.insert(0, ("..".into(), up));
                            entries.insert(0, (".".into(), here));
                        }
                        let h = Handle::Dir { path: path.clone(), entries, next: 0 };
                        match self.new_handle(h) {
                            Some(h) => {
                                out.reply.extend_from_slice(
                                    &Packet::new(102).u32(id).string(&h).finish(),
                                );
                                FX_OK
                            }
                            None => FX_FAILURE,
                        }
                    }
                    Err(e) => code(e),
                };
                if c != FX_OK {
                    out.reply.extend_from_slice(&status(id, c));
                }
                self.op(out, "opendir", &path, c);
            }
            Request::Readdir { id, handle } => {
                let h = Self::handle_id(handle);
                let batch = match h.and_then(|h| self.handles.get_mut(&h)) {
                    Some(Handle::Dir { entries, next, .. }) => {
                        let end = (*next + READDIR_BATCH).min(entries.len());
                        let b = entries.get(*next..end).unwrap_or_default().to_vec();
                        *next = end;
                        Some(b)
                    }
                    _ => None,
                };
                let reply = match batch {
                    None => status(id, FX_FAILURE),
                    Some(b) if b.is_empty() => status(id, FX_EOF),
                    Some(b) => {
                        let items: Vec<(String, String, Attrs)> = b
                            .iter()
                            .map(|(n, e)| (n.clone(), self.longname(n, e), attrs_of(e)))
                            .collect();
                        Self::names(id, &items)
                    }
                };
                out.reply.extend_from_slice(&reply);
            }
            Request::Remove { id, path } => {
                let path = self.path(path);
                let c = match self.shell.fs().lstat(&path) {
                    None => FX_NO_SUCH_FILE,
                    Some(e) if e.is_dir() => FX_FAILURE,
                    Some(_) => {
                        self.shell.fs_mut().remove(&path, false).map_or_else(code, |()| FX_OK)
                    }
                };
                out.reply.extend_from_slice(&status(id, c));
                self.op(out, "remove", &path, c);
            }
            Request::Mkdir { id, path, attrs } => {
                let path = self.path(path);
                let mut c = self.shell.fs_mut().mkdir(&path, now).map_or_else(code, |()| FX_OK);
                if c == FX_OK && attrs.perms.is_some() {
                    c = self.setstat(&path, &Attrs { perms: attrs.perms, ..Attrs::default() });
                }
                out.reply.extend_from_slice(&status(id, c));
                self.op(out, "mkdir", &path, c);
            }
            Request::Rmdir { id, path } => {
                let path = self.path(path);
                let c = match self.shell.fs().lstat(&path) {
                    None => FX_NO_SUCH_FILE,
                    Some(e) if !e.is_dir() => FX_FAILURE,
                    Some(_) => {
                        self.shell.fs_mut().remove(&path, false).map_or_else(code, |()| FX_OK)
                    }
                };
                out.reply.extend_from_slice(&status(id, c));
                self.op(out, "rmdir", &path, c);
            }
            Request::Realpath { id, path } => {
                let path = self.path(path);
                let (reply, c) = self.realpath(id, &path);
                out.reply.extend_from_slice(&reply);
                self.op(out, "realpath", &path, c);
            }
            Request::Rename { id, from, to } => {
                let (from, to) = (self.path(from), self.path(to));
                let c = self.rename(&from, &to, false, now);
                out.reply.extend_from_slice(&status(id, c));
                self.record(
                    out,
                    Op {
                        op: "rename",
                        path: from,
                        target: Some(to),
                        result: code_text(c),
                        bytes: None,
                    },
                );
            }
            Request::Readlink { id, path } => {
                let path = self.path(path);
                let (reply, c) = match self.shell.fs().lstat(&path) {
                    Some(Entry { node: Node::Link(t), .. }) => {
                        let t = t.to_string();
                        (Self::names(id, &[(t.clone(), t, Attrs::default())]), FX_OK)
                    }
                    Some(_) => (status(id, FX_FAILURE), FX_FAILURE),
                    None => (status(id, FX_NO_SUCH_FILE), FX_NO_SUCH_FILE),
                };
                out.reply.extend_from_slice(&reply);
                self.op(out, "readlink", &path, c);
            }
            Request::Symlink { id, target, link } => {
                let (target, link) = (lossy(target), self.path(link));
                let c = if self.shell.fs().lstat(&link).is_some() {
                    FX_FAILURE
                } else {
                    let e = Entry {
                        node: Node::Link(Arc::from(target.as_str())),
                        mode: 0o777,
                        uid: self.shell.fs().uid,
                        size: target.len() as u64,
                        mtime: now,
                    };
                    self.shell.fs_mut().put(&link, e).map_or_else(code, |()| FX_OK)
                };
                out.reply.extend_from_slice(&status(id, c));
                self.record(
                    out,
                    Op {
                        op: "symlink",
                        path: link,
                        target: Some(target),
                        result: code_text(c),
                        bytes: None,
                    },
                );
            }
            Request::Extended { id, name, data } => self.extended(id, name, data, now, out),
            Request::Unknown { id, kind } => {
                if let Some(id) = id {
                    out.reply.extend_from_slice(&status(id, FX_OP_UNSUPPORTED));
                }
                self.op(out, "unknown", &format!("type {kind}"), FX_OP_UNSUPPORTED);
            }
        }
    }

    fn open(
        &mut self,
        id: u32,
        path: &str,
        pflags: u32,
        attrs: &Attrs,
        now: u64,
    ) -> (Vec<u8>, u32) {
        let fail = |c| (status(id, c), c);
        if self.handles.len() >= MAX_HANDLES {
            return fail(FX_FAILURE);
        }
        let existing = self.shell.fs().stat(path).ok().cloned();
        let h = if pflags & OPEN_WRITE != 0 {
            match &existing {
                Some(e) if e.is_dir() => return fail(FX_FAILURE),
                Some(_) if pflags & OPEN_EXCL != 0 && pflags & OPEN_CREAT != 0 => {
                    return fail(FX_FAILURE);
                }
                None if pflags & OPEN_CREAT == 0 => return fail(FX_NO_SUCH_FILE),
                _ => {}
            }
            let keep_old = pflags & (OPEN_TRUNC) == 0 && existing.is_some();
            let old = if keep_old { existing.as_ref().map(|e| e.data().to_vec()) } else { None };
            let append = pflags & OPEN_APPEND != 0 || keep_old;
            // Creating (or truncating) now makes the file visible to `ls` while it uploads,
            // and checks permissions as open(2) would.
            if let Err(e) = self.shell.fs_mut().write(path, b"", append, now) {
                return fail(code(e));
            }
            if existing.is_none()
                && let Some(p) = attrs.perms
            {
                let _ = self.setstat(path, &Attrs { perms: Some(p), ..Attrs::default() });
            }
            let mut w = WriteFile {
                path: path.to_owned(),
                hash: sha2::Sha256::new(),
                hashed: 0,
                head: Vec::new(),
                content: Some(Vec::new()),
                rehash: false,
                over_cap: false,
                size: 0,
            };
            if let Some(old) = old.filter(|o| !o.is_empty()) {
                w.size = old.len() as u64;
                w.content = Some(old);
                w.rehash = true;
            }
            Handle::Write(Box::new(w))
        } else {
            match self.shell.read(path) {
                Ok(data) => Handle::Read { path: path.to_owned(), data, sent: 0 },
                Err(e) => return fail(code(e)),
            }
        };
        match self.new_handle(h) {
            Some(h) => (Packet::new(102).u32(id).string(&h).finish(), FX_OK),
            None => fail(FX_FAILURE),
        }
    }

    /// One `WRITE`: hashed as it streams when in order; kept whole while it fits the
    /// session's filesystem budget, so out-of-order writes and later reads still work.
    fn write(w: &mut WriteFile, offset: u64, data: &[u8], limits: (usize, u64, usize)) -> u32 {
        let (keep, max, budget) = limits;
        let end = offset.saturating_add(data.len() as u64);
        if end > max || w.over_cap {
            w.over_cap = true;
            return FX_FAILURE;
        }
        let in_order = offset == w.hashed && !w.rehash;
        if in_order {
            w.hash.update(data);
            w.hashed = end;
            let room = keep.saturating_sub(w.head.len());
            w.head.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
        }
        match &mut w.content {
            Some(c) if end <= budget as u64 => {
                let (start, end) = (offset as usize, end as usize);
                if c.len() < end {
                    c.resize(end, 0);
                }
                if let Some(dst) = c.get_mut(start..end) {
                    dst.copy_from_slice(data);
                }
                if !in_order {
                    w.rehash = true;
                }
            }
            _ if in_order => w.content = None,
            _ => return FX_FAILURE,
        }
        w.size = w.size.max(end);
        FX_OK
    }

    fn close_write(&mut self, w: WriteFile) -> (Upload, Op) {
        let now = text::now();
        let (sha256, head) = match (&w.content, w.rehash) {
            (Some(c), true) => {
                let keep = c.get(..self.keep.min(c.len())).unwrap_or_default().to_vec();
                (hex(&sha2::Sha256::digest(c)), keep)
            }
            _ => (hex(&w.hash.finalize()), w.head),
        };
        // The fake filesystem keeps what fits its budget; a bigger file keeps its first bytes
        // under its real size, so `ls -l` still agrees with the upload.
        let fs = self.shell.fs_mut();
        let stored = w.content.as_ref().is_some_and(|c| fs.write(&w.path, c, false, now).is_ok());
        if !stored && let Ok(mut e) = fs.stat(&w.path).cloned() {
            e.node = Node::File(Arc::from(head.as_slice()));
            e.size = w.size;
            e.mtime = now;
            let _ = fs.put(&w.path, e);
        }
        let up = Upload { name: w.path.clone(), size: w.size, sha256, head };
        let op = Op {
            op: "close",
            path: w.path,
            target: Some(if w.over_cap { "write, over the size cap" } else { "write" }.into()),
            result: "ok",
            bytes: Some(w.size),
        };
        (up, op)
    }

    fn setstat(&mut self, path: &str, a: &Attrs) -> u32 {
        if a.perms.is_none() && a.times.is_none() {
            return if self.shell.fs().stat(path).is_ok() { FX_OK } else { FX_NO_SUCH_FILE };
        }
        let r = self.shell.fs_mut().update(path, |e| {
            if let Some(p) = a.perms {
                e.mode = (p & 0o7777) as u16;
            }
            if let Some((_, m)) = a.times {
                e.mtime = u64::from(m);
            }
        });
        r.map_or_else(code, |()| FX_OK)
    }

    fn realpath(&self, id: u32, path: &str) -> (Vec<u8>, u32) {
        let fs = self.shell.fs();
        let real = fs.resolve(path);
        // Like OpenSSH's realpath, the last component may be missing, its parent may not.
        if fs.stat(&real).is_err() && !fs.stat(parent(&real)).is_ok_and(Entry::is_dir) {
            return (status(id, FX_NO_SUCH_FILE), FX_NO_SUCH_FILE);
        }
        (Self::names(id, &[(real.clone(), real, Attrs::default())]), FX_OK)
    }

    fn rename(&mut self, from: &str, to: &str, overwrite: bool, now: u64) -> u32 {
        let Some(mut e) = self.shell.fs().lstat(from).cloned() else { return FX_NO_SUCH_FILE };
        if e.is_dir() {
            // Moving a subtree is not modelled; sftp-server fails it on cross-device moves too.
            return FX_FAILURE;
        }
        if self.shell.fs().lstat(to).is_some() && !overwrite {
            return FX_FAILURE;
        }
        e.mtime = now.max(e.mtime);
        let fs = self.shell.fs_mut();
        if let Err(err) = fs.put(to, e) {
            return code(err);
        }
        fs.remove(from, false).map_or_else(code, |()| FX_OK)
    }

    fn extended(&mut self, id: u32, name: &[u8], data: &[u8], now: u64, out: &mut Output) {
        let name = lossy(name);
        let mut r = Reader(data);
        let (reply, path, c) = match name.as_str() {
            "limits@openssh.com" => {
                let p = Packet::new(201)
                    .u32(id)
                    .u64(MAX_PACKET as u64)
                    .u64(MAX_IO as u64)
                    .u64(MAX_IO as u64)
                    .u64(MAX_HANDLES as u64);
                (p.finish(), String::new(), FX_OK)
            }
            "posix-rename@openssh.com" | "hardlink@openssh.com" => match (r.string(), r.string()) {
                (Ok(a), Ok(b)) => {
                    let (a, b) = (self.path(a), self.path(b));
                    let (op, c) = if name.starts_with("posix") {
                        ("rename", self.rename(&a, &b, true, now))
                    } else {
                        ("hardlink", self.hardlink(&a, &b))
                    };
                    // Recorded as the operation it is, whichever request carried it.
                    out.reply.extend_from_slice(&status(id, c));
                    let result = code_text(c);
                    self.record(out, Op { op, path: a, target: Some(b), result, bytes: None });
                    return;
                }
                _ => (status(id, FX_BAD_MESSAGE), String::new(), FX_BAD_MESSAGE),
            },
            "statvfs@openssh.com" | "fstatvfs@openssh.com" => {
                // A 30 GiB root filesystem, about a fifth used, like the shell's `df`.
                let m = self.shell.machine();
                let blocks = 7_864_320u64;
                let free = blocks - 1_500_000 - m.noise(41, 200_000);
                let mut p = Packet::new(201).u32(id);
                for v in [
                    4096,
                    4096,
                    blocks,
                    free,
                    free - 393_216,
                    1_966_080,
                    1_850_000,
                    1_850_000,
                    0x2a1b_3c4d,
                    0,
                    255,
                ] {
                    p = p.u64(v);
                }
                let path = r.string().map(lossy).unwrap_or_default();
                (p.finish(), path, FX_OK)
            }
            "fsync@openssh.com" => (status(id, FX_OK), String::new(), FX_OK),
            "lsetstat@openssh.com" => {
                let path = r.string().map(|p| self.path(p)).unwrap_or_default();
                (status(id, FX_OK), path, FX_OK)
            }
            "expand-path@openssh.com" => match r.string() {
                Ok(p) => {
                    let p = lossy(p);
                    let home = self.shell.home().to_owned();
                    let expanded = if p == "~" || p.starts_with("~/") {
                        format!("{home}{}", p.get(1..).unwrap_or_default())
                    } else if let Some(rest) = p.strip_prefix('~') {
                        let (user, tail) = rest.split_once('/').unwrap_or((rest, ""));
                        let h = if user == "root" {
                            "/root".to_owned()
                        } else {
                            format!("/home/{user}")
                        };
                        format!("{h}/{tail}")
                    } else {
                        p
                    };
                    let path = normalize(&home, &expanded);
                    let (reply, c) = self.realpath(id, &path);
                    (reply, path, c)
                }
                Err(_) => (status(id, FX_BAD_MESSAGE), String::new(), FX_BAD_MESSAGE),
            },
            _ => (status(id, FX_OP_UNSUPPORTED), String::new(), FX_OP_UNSUPPORTED),
        };
        out.reply.extend_from_slice(&reply);
        self.record(
            out,
            Op { op: "extended", path, target: Some(name), result: code_text(c), bytes: None },
        );
    }

    fn hardlink(&mut self, from: &str, to: &str) -> u32 {
        let Some(e) = self.shell.fs().lstat(from).cloned() else { return FX_NO_SUCH_FILE };
        if e.is_dir() || self.shell.fs().lstat(to).is_some() {
            return FX_FAILURE;
        }
        self.shell.fs_mut().put(to, e).map_or_else(code, |()| FX_OK)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::shell::{Machine, ShellConfig};

    fn session(max: u64) -> SftpSession {
        let m = Machine::new(&ShellConfig { seed: Some(7), ..Default::default() }).unwrap();
        SftpSession::new(Box::new(Shell::new(&m, "root")), 4, max)
    }

    fn send(s: &mut SftpSession, body: Packet) -> Output {
        let mut out = Output::default();
        let p = body.finish();
        // Fed a byte at a time: framing must not depend on how the channel splits data.
        for b in &p {
            s.feed(std::slice::from_ref(b), &mut out);
        }
        out
    }

    fn status_code(reply: &[u8]) -> u32 {
        assert_eq!(reply[4], 101, "{reply:?}");
        u32::from_be_bytes(reply[9..13].try_into().unwrap())
    }

    fn open_write(s: &mut SftpSession, path: &[u8]) -> Vec<u8> {
        let out = send(s, Packet::new(3).u32(1).string(path).u32(OPEN_WRITE | OPEN_CREAT).u32(0));
        assert_eq!(out.reply[4], 102, "handle");
        out.reply[13..].to_vec()
    }

    #[test]
    fn out_of_order_writes_and_the_cap() {
        let mut s = session(10);
        let out = send(&mut s, Packet::new(1).u32(3));
        assert_eq!(out.reply[4], 2, "version");
        let h = open_write(&mut s, b"/tmp/a");
        // Second half first, then the first: the hash covers the file as assembled.
        let w = |off, data: &[u8]| Packet::new(6).u32(2).string(&h).u64(off).string(data);
        assert_eq!(status_code(&send(&mut s, w(3, b"def")).reply), FX_OK);
        assert_eq!(status_code(&send(&mut s, w(0, b"abc")).reply), FX_OK);
        assert_eq!(status_code(&send(&mut s, w(8, b"xyz")).reply), FX_FAILURE, "over the cap");
        let out = send(&mut s, Packet::new(4).u32(3).string(&h));
        assert_eq!(status_code(&out.reply), FX_OK);
        let up = &out.uploads[0];
        assert_eq!((up.name.as_str(), up.size), ("/tmp/a", 6));
        assert_eq!(up.sha256, hex(&sha2::Sha256::digest(b"abcdef")));
        assert_eq!(up.head, b"abcd");
        assert_eq!(out.ops[0].target.as_deref(), Some("write, over the size cap"));
        assert_eq!(s.shell.read("/tmp/a").unwrap(), b"abcdef");
        // Denied and missing paths answer as sftp-server does.
        let out = send(&mut s, Packet::new(17).u32(4).string(b"/nonexistent/x"));
        assert_eq!(status_code(&out.reply), FX_NO_SUCH_FILE);
        // An upload left open is still reported when the channel ends.
        let h2 = open_write(&mut s, b"/tmp/b");
        send(&mut s, Packet::new(6).u32(5).string(&h2).u64(0).string(b"zz"));
        let mut out = Output::default();
        s.finish(&mut out);
        assert_eq!(out.uploads[0].name, "/tmp/b");
        // A frame over the cap ends the session.
        let mut out = Output::default();
        s.feed(&[0, 0x10, 0, 0, 3], &mut out);
        assert!(s.done());
    }
}
