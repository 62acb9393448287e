//! The fake filesystem: one shared read-only tree per machine and a small per-session overlay
//! (copy on write), so a thousand sessions share one tree and each sees only its own changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;
use rand::rngs::StdRng;

use super::machine::Machine;

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Dir,
    /// Content (for binaries only a header; `Entry::size` is the size `ls` shows).
    File(Arc<[u8]>),
    Link(Arc<str>),
    /// A character device (`/dev/null`).
    Dev,
}

/// A path's metadata and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) node: Node,
    pub(crate) mode: u16,
    pub(crate) uid: u32,
    pub(crate) size: u64,
    pub(crate) mtime: u64,
}

impl Entry {
    pub(crate) fn is_dir(&self) -> bool {
        self.node == Node::Dir
    }
    pub(crate) fn data(&self) -> &[u8] {
        match &self.node {
            Node::File(d) => d,
            _ => &[],
        }
    }
}

/// Absolute normalised path to entry.
pub(crate) type Tree = BTreeMap<String, Entry>;

/// Why a filesystem operation failed, worded as coreutils words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FsError {
    NotFound,
    NotDir,
    IsDir,
    Denied,
    Exists,
    NoSpace,
    NotEmpty,
}

impl FsError {
    pub(crate) fn text(self) -> &'static str {
        match self {
            Self::NotFound => "No such file or directory",
            Self::NotDir => "Not a directory",
            Self::IsDir => "Is a directory",
            Self::Denied => "Permission denied",
            Self::Exists => "File exists",
            Self::NoSpace => "No space left on device",
            Self::NotEmpty => "Directory not empty",
        }
    }
}

/// Joins `path` onto `cwd` and removes `.`, `..` and repeated slashes (no link resolution).
pub(crate) fn normalize(cwd: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let full = if path.starts_with('/') { path.to_owned() } else { format!("{cwd}/{path}") };
    for p in full.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() { "/".into() } else { format!("/{}", parts.join("/")) }
}

pub(crate) fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => path.get(..i).unwrap_or("/"),
    }
}

pub(crate) fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A session's view: the machine's tree plus its own changes.
#[derive(Debug)]
pub(crate) struct Fs {
    machine: Arc<Machine>,
    /// Changed paths; `None` marks a deletion.
    overlay: BTreeMap<String, Option<Entry>>,
    written: usize,
    pub(crate) uid: u32,
}

impl Fs {
    pub(crate) fn new(machine: Arc<Machine>, uid: u32) -> Self {
        Self { machine, overlay: BTreeMap::new(), written: 0, uid }
    }

    fn raw(&self, path: &str) -> Option<&Entry> {
        match self.overlay.get(path) {
            Some(e) => e.as_ref(),
            None => self.machine.tree.get(path),
        }
    }

    /// Follows symbolic links in every component (at most 16 hops).
    pub(crate) fn resolve(&self, path: &str) -> String {
        let mut cur = path.to_owned();
        for _ in 0..16 {
            let mut out = String::from("/");
            let mut changed = false;
            let comps: Vec<&str> = cur.split('/').filter(|c| !c.is_empty()).collect();
            for (i, c) in comps.iter().enumerate() {
                let next = if out == "/" { format!("/{c}") } else { format!("{out}/{c}") };
                if let Some(Entry { node: Node::Link(t), .. }) = self.raw(&next) {
                    let rest = comps.get(i + 1..).unwrap_or_default().join("/");
                    let base = normalize(&out, t);
                    cur = if rest.is_empty() { base } else { format!("{base}/{rest}") };
                    changed = true;
                    break;
                }
                out = next;
            }
            if !changed {
                return out;
            }
        }
        cur
    }

    /// The entry at `path` (absolute), links followed.
    pub(crate) fn stat(&self, path: &str) -> Result<&Entry, FsError> {
        let real = self.resolve(path);
        // A missing or non-directory parent decides the error, as the kernel does.
        let p = parent(&real);
        if real != "/" && !self.raw(p).is_some_and(Entry::is_dir) {
            return Err(if self.raw(p).is_some() { FsError::NotDir } else { FsError::NotFound });
        }
        self.raw(&real).ok_or(FsError::NotFound)
    }

    /// The entry at `path` without following a final link (`ls -l`).
    pub(crate) fn lstat(&self, path: &str) -> Option<&Entry> {
        let real = format!("{}/{}", self.resolve(parent(path)), basename(path));
        self.raw(&normalize("/", &real))
    }

    /// A directory's entries sorted by name.
    pub(crate) fn list(&self, dir: &str) -> Result<Vec<(String, Entry)>, FsError> {
        let real = self.resolve(dir);
        let e = self.stat(&real)?;
        if !e.is_dir() {
            return Err(FsError::NotDir);
        }
        let prefix = if real == "/" { "/".to_owned() } else { format!("{real}/") };
        let child = |k: &str| {
            k.get(prefix.len()..).filter(|n| !n.is_empty() && !n.contains('/')).map(str::to_owned)
        };
        let mut out: BTreeMap<String, Entry> = BTreeMap::new();
        for (k, v) in self.machine.tree.range(prefix.clone()..) {
            if !k.starts_with(&prefix) {
                break;
            }
            if let Some(n) = child(k) {
                out.insert(n, v.clone());
            }
        }
        for (k, v) in self.overlay.range(prefix.clone()..) {
            if !k.starts_with(&prefix) {
                break;
            }
            if let Some(n) = child(k) {
                match v {
                    Some(v) => out.insert(n, v.clone()),
                    None => out.remove(&n),
                };
            }
        }
        Ok(out.into_iter().collect())
    }

    fn may_write(&self, dir: &str) -> bool {
        if dir.starts_with("/proc") || dir.starts_with("/sys") {
            return false;
        }
        if self.uid == 0 {
            return true;
        }
        self.raw(dir).is_some_and(|e| e.uid == self.uid || e.mode & 0o002 != 0)
    }

    fn writable_parent(&self, real: &str) -> Result<(), FsError> {
        let p = parent(real);
        match self.raw(p) {
            Some(e) if e.is_dir() => {}
            Some(_) => return Err(FsError::NotDir),
            None => return Err(FsError::NotFound),
        }
        if self.may_write(p) { Ok(()) } else { Err(FsError::Denied) }
    }

    fn charge(&mut self, n: usize) -> Result<(), FsError> {
        if self.written + n > self.machine.max_written || self.overlay.len() >= 4096 {
            return Err(FsError::NoSpace);
        }
        self.written += n;
        Ok(())
    }

    /// Writes or appends a file; returns its resolved path.
    pub(crate) fn write(
        &mut self,
        path: &str,
        data: &[u8],
        append: bool,
        now: u64,
    ) -> Result<String, FsError> {
        let real = self.resolve(path);
        if real == "/dev/null" {
            return Ok(real);
        }
        let old = self.raw(&real).cloned();
        match &old {
            Some(e) if e.is_dir() => return Err(FsError::IsDir),
            Some(e) if e.node == Node::Dev => return Ok(real),
            Some(e) if self.uid != 0 && e.uid != self.uid => return Err(FsError::Denied),
            Some(_) => {}
            None => self.writable_parent(&real)?,
        }
        let mut content = match (&old, append) {
            (Some(e), true) => e.data().to_vec(),
            _ => Vec::new(),
        };
        self.charge(data.len() + if append { 0 } else { 64 })?;
        content.extend_from_slice(data);
        let mode = old.as_ref().map(|e| e.mode).unwrap_or(0o644);
        let uid = old.as_ref().map(|e| e.uid).unwrap_or(self.uid);
        let size = content.len() as u64;
        self.overlay.insert(
            real.clone(),
            Some(Entry { node: Node::File(content.into()), mode, uid, size, mtime: now }),
        );
        Ok(real)
    }

    pub(crate) fn mkdir(&mut self, path: &str, now: u64) -> Result<(), FsError> {
        let real = self.resolve(path);
        if self.raw(&real).is_some() {
            return Err(FsError::Exists);
        }
        self.writable_parent(&real)?;
        self.charge(64)?;
        self.overlay.insert(
            real,
            Some(Entry { node: Node::Dir, mode: 0o755, uid: self.uid, size: 4096, mtime: now }),
        );
        Ok(())
    }

    pub(crate) fn remove(&mut self, path: &str, recursive: bool) -> Result<(), FsError> {
        let real = format!("{}/{}", self.resolve(parent(path)), basename(path));
        let real = normalize("/", &real);
        let e = self.raw(&real).ok_or(FsError::NotFound)?;
        if !self.may_write(parent(&real)) {
            return Err(FsError::Denied);
        }
        if e.is_dir() {
            let children = self.list(&real)?;
            if !children.is_empty() && !recursive {
                return Err(FsError::NotEmpty);
            }
            for (n, _) in children {
                self.remove(&format!("{real}/{n}"), true)?;
            }
        }
        self.charge(32)?;
        self.overlay.insert(real, None);
        Ok(())
    }

    /// Replaces an entry's metadata (chmod, touch).
    pub(crate) fn update(&mut self, path: &str, f: impl FnOnce(&mut Entry)) -> Result<(), FsError> {
        let real = self.resolve(path);
        let mut e = self.stat(&real)?.clone();
        if self.uid != 0 && e.uid != self.uid {
            return Err(FsError::Denied);
        }
        self.charge(32)?;
        f(&mut e);
        self.overlay.insert(real, Some(e));
        Ok(())
    }

    /// Puts an entry in place (cp, mv, a new login user's home).
    pub(crate) fn put(&mut self, path: &str, e: Entry) -> Result<(), FsError> {
        let real = self.resolve(path);
        self.writable_parent(&real)?;
        self.charge(e.data().len() + 64)?;
        self.overlay.insert(real, Some(e));
        Ok(())
    }

    /// Files this session created or changed, with content (capture at session end).
    pub(crate) fn written_files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.overlay.iter().filter_map(|(k, v)| match v {
            Some(Entry { node: Node::File(d), .. }) if !d.is_empty() => Some((k.as_str(), &d[..])),
            _ => None,
        })
    }
}

/// A minimal x86-64 ELF header, so `cat /bin/echo | head -c 20` (Mirai's architecture
/// probe) sees what it expects.
const ELF_HEAD: &[u8] = &[
    0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0x3e, 0, 1, 0, 0, 0, 0x30,
    0x6d, 0, 0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x58, 0x3c, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0x40, 0, 0x38, 0, 0x0d, 0, 0x40, 0, 0x1e, 0, 0x1d, 0,
];

/// Commands present in /usr/bin with their sizes (bytes, as `ls -l` shows them).
pub(crate) const BINARIES: &[(&str, u64)] = &[
    ("apt", 18_824),
    ("apt-get", 51_272),
    ("awk", 162_712),
    ("base64", 39_200),
    ("bash", 1_265_648),
    ("busybox", 2_012_536),
    ("cat", 44_016),
    ("chattr", 14_568),
    ("chmod", 64_448),
    ("chown", 72_672),
    ("cp", 151_152),
    ("crontab", 47_576),
    ("curl", 276_000),
    ("cut", 48_128),
    ("dash", 125_560),
    ("date", 126_424),
    ("dd", 89_352),
    ("df", 97_432),
    ("dmesg", 88_664),
    ("du", 109_784),
    ("echo", 39_120),
    ("env", 48_344),
    ("file", 31_320),
    ("find", 224_848),
    ("free", 22_936),
    ("grep", 203_152),
    ("groups", 39_264),
    ("gzip", 98_136),
    ("head", 47_480),
    ("hostname", 22_664),
    ("id", 48_152),
    ("ip", 731_552),
    ("kill", 31_224),
    ("last", 35_440),
    ("less", 183_448),
    ("ln", 72_152),
    ("ls", 151_344),
    ("lscpu", 104_976),
    ("md5sum", 47_632),
    ("mkdir", 72_008),
    ("mktemp", 43_128),
    ("more", 47_480),
    ("mount", 59_704),
    ("mv", 142_968),
    ("nano", 282_952),
    ("nohup", 39_256),
    ("nproc", 39_232),
    ("passwd", 72_072),
    ("perl", 3_963_888),
    ("pgrep", 27_144),
    ("pkill", 27_144),
    ("printf", 55_384),
    ("ps", 146_856),
    ("pwd", 43_192),
    ("python3", 6_831_736),
    ("readlink", 47_608),
    ("rm", 72_224),
    ("rmdir", 43_184),
    ("sed", 113_224),
    ("sh", 125_560),
    ("sha256sum", 47_640),
    ("sleep", 39_224),
    ("sort", 109_760),
    ("ss", 161_120),
    ("ssh", 1_097_504),
    ("su", 72_000),
    ("sudo", 281_624),
    ("tail", 64_016),
    ("tar", 531_384),
    ("tee", 43_192),
    ("top", 121_080),
    ("touch", 97_152),
    ("tr", 47_544),
    ("uname", 39_184),
    ("uniq", 47_592),
    ("uptime", 14_568),
    ("vi", 3_779_480),
    ("w", 23_056),
    ("wc", 47_584),
    ("wget", 518_856),
    ("which", 1_301),
    ("whoami", 39_232),
    ("xargs", 72_072),
    ("yes", 39_200),
    ("systemctl", 1_210_472),
];

const SBIN: &[(&str, u64)] = &[
    ("chpasswd", 59_464),
    ("fdisk", 130_576),
    ("init", 96_040),
    ("ip", 731_552),
    ("iptables", 99_344),
    ("ldconfig", 1_030_720),
    ("reboot", 1_210_472),
    ("shutdown", 1_210_472),
    ("sshd", 1_245_832),
    ("useradd", 153_848),
    ("usermod", 125_048),
];

fn hashish(rng: &mut StdRng, len: usize) -> String {
    const A: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..len).map(|_| char::from(*A.get(rng.random_range(0..A.len())).unwrap_or(&b'x'))).collect()
}

/// Builds the shared tree of a machine.
pub(crate) fn base_tree(
    m: &Machine,
    rng: &mut StdRng,
    extra: &BTreeMap<String, String>,
) -> Result<Tree, String> {
    let mut t = Tree::new();
    // Install time: a while before boot; package files older still.
    let install = m.boot.saturating_sub(86_400 * rng.random_range(30..400));
    let pkg = install.saturating_sub(86_400 * rng.random_range(20..200));
    let dir =
        |mode: u16, uid: u32, mtime: u64| Entry { node: Node::Dir, mode, uid, size: 4096, mtime };
    let file = |s: &str, mode: u16, uid: u32, mtime: u64| {
        let data: Arc<[u8]> = Arc::from(s.as_bytes());
        Entry { size: data.len() as u64, node: Node::File(data), mode, uid, mtime }
    };
    let link = |to: &str, mtime: u64| Entry {
        node: Node::Link(Arc::from(to)),
        mode: 0o777,
        uid: 0,
        size: to.len() as u64,
        mtime,
    };
    for d in [
        "/",
        "/boot",
        "/dev",
        "/etc",
        "/etc/ssh",
        "/etc/cron.d",
        "/etc/apt",
        "/home",
        "/media",
        "/mnt",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/srv",
        "/sys",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib",
        "/usr/lib64",
        "/usr/local",
        "/usr/local/bin",
        "/usr/share",
        "/usr/games",
        "/var",
        "/var/log",
        "/var/lib",
        "/var/cache",
        "/var/spool",
        "/var/mail",
        "/var/backups",
        "/var/www",
        "/var/www/html",
        "/root/.ssh",
        "/run/sshd",
    ] {
        let mode = match d {
            "/root" => 0o700,
            "/root/.ssh" => 0o700,
            "/proc" | "/sys" => 0o555,
            _ => 0o755,
        };
        t.insert(d.into(), dir(mode, 0, install));
    }
    for d in ["/tmp", "/var/tmp", "/dev/shm"] {
        t.insert(d.into(), dir(0o1777, 0, m.boot));
    }
    for (name, to) in
        [("/bin", "usr/bin"), ("/sbin", "usr/sbin"), ("/lib", "usr/lib"), ("/lib64", "usr/lib64")]
    {
        t.insert(name.into(), link(to, install));
    }
    t.insert("/var/run".into(), link("/run", install));
    t.insert(
        "/dev/null".into(),
        Entry { node: Node::Dev, mode: 0o666, uid: 0, size: 0, mtime: m.boot },
    );
    t.insert(
        "/dev/zero".into(),
        Entry { node: Node::Dev, mode: 0o666, uid: 0, size: 0, mtime: m.boot },
    );
    let elf: Arc<[u8]> = Arc::from(ELF_HEAD);
    for (dirname, list) in [("/usr/bin", BINARIES), ("/usr/sbin", SBIN)] {
        for (name, size) in list {
            let (node, size) = if *name == "which" {
                let s: Arc<[u8]> = Arc::from(&b"#! /bin/sh\nset -ef\n"[..]);
                (Node::File(s), *size)
            } else {
                (Node::File(Arc::clone(&elf)), *size)
            };
            t.insert(
                format!("{dirname}/{name}"),
                Entry { node, mode: 0o755, uid: 0, size, mtime: pkg },
            );
        }
    }
    // passwd, group, shadow
    let mut passwd = String::from(
        "root:x:0:0:root:/root:/bin/bash\n\
         daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
         bin:x:2:2:bin:/bin:/usr/sbin/nologin\n\
         sys:x:3:3:sys:/dev:/usr/sbin/nologin\n\
         sync:x:4:65534:sync:/bin:/bin/sync\n\
         games:x:5:60:games:/usr/games:/usr/sbin/nologin\n\
         man:x:6:12:man:/var/cache/man:/usr/sbin/nologin\n\
         lp:x:7:7:lp:/var/spool/lpd:/usr/sbin/nologin\n\
         mail:x:8:8:mail:/var/mail:/usr/sbin/nologin\n\
         news:x:9:9:news:/var/spool/news:/usr/sbin/nologin\n\
         uucp:x:10:10:uucp:/var/spool/uucp:/usr/sbin/nologin\n\
         proxy:x:13:13:proxy:/bin:/usr/sbin/nologin\n\
         www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
         backup:x:34:34:backup:/var/backups:/usr/sbin/nologin\n\
         list:x:38:38:Mailing List Manager:/var/list:/usr/sbin/nologin\n\
         irc:x:39:39:ircd:/run/ircd:/usr/sbin/nologin\n\
         _apt:x:42:65534::/nonexistent:/usr/sbin/nologin\n\
         nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
         systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\n\
         messagebus:x:100:107::/nonexistent:/usr/sbin/nologin\n\
         sshd:x:101:65534::/run/sshd:/usr/sbin/nologin\n",
    );
    let mut group = String::from(
        "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\ndisk:x:6:\nlp:x:7:\n\
         mail:x:8:\nnews:x:9:\nuucp:x:10:\nman:x:12:\nproxy:x:13:\nkmem:x:15:\ndialout:x:20:\n\
         cdrom:x:24:\nsudo:x:27:\naudio:x:29:\nwww-data:x:33:\nbackup:x:34:\nstaff:x:50:\n\
         users:x:100:\nnogroup:x:65534:\n",
    );
    let mut shadow = format!(
        "root:$y$j9T${}${}:{}:0:99999:7:::\n",
        hashish(rng, 22),
        hashish(rng, 43),
        install / 86_400
    );
    for sys in [
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "_apt",
        "nobody",
        "systemd-network",
        "messagebus",
        "sshd",
    ] {
        shadow.push_str(&format!("{sys}:*:{}:0:99999:7:::\n", install / 86_400));
    }
    for u in m.users.iter().skip(1) {
        passwd.push_str(&format!("{0}:x:{1}:{1}:{0},,,:{2}:/bin/bash\n", u.name, u.uid, u.home));
        group.push_str(&format!("{0}:x:{1}:\n", u.name, u.uid));
        shadow.push_str(&format!(
            "{}:$y$j9T${}${}:{}:0:99999:7:::\n",
            u.name,
            hashish(rng, 22),
            hashish(rng, 43),
            install / 86_400
        ));
        t.insert(u.home.clone(), dir(0o750, u.uid, install));
        t.insert(format!("{}/.bashrc", u.home), file(BASHRC, 0o644, u.uid, install));
        t.insert(format!("{}/.profile", u.home), file(PROFILE, 0o644, u.uid, install));
        t.insert(format!("{}/.bash_logout", u.home), file(BASH_LOGOUT, 0o644, u.uid, install));
    }
    t.insert("/root/.bashrc".into(), file(BASHRC, 0o644, 0, install));
    t.insert("/root/.profile".into(), file(PROFILE, 0o644, 0, install));
    let hist_cmds = [
        "ls",
        "df -h",
        "apt update",
        "apt upgrade -y",
        "systemctl status nginx",
        "top",
        "free -m",
        "cd /var/log",
        "tail -f syslog",
        "reboot",
        "ip a",
        "nano /etc/hosts",
        "uptime",
    ];
    let hist: String = (0..rng.random_range(4..14))
        .map(|_| {
            format!(
                "{}\n",
                hist_cmds.get(rng.random_range(0..hist_cmds.len())).copied().unwrap_or("ls")
            )
        })
        .collect();
    t.insert("/root/.bash_history".into(), file(&hist, 0o600, 0, m.boot));
    t.insert("/root/.ssh/authorized_keys".into(), file("", 0o600, 0, install));
    t.insert("/etc/passwd".into(), file(&passwd, 0o644, 0, install));
    t.insert("/etc/group".into(), file(&group, 0o644, 0, install));
    t.insert("/etc/shadow".into(), file(&shadow, 0o640, 0, install));
    t.insert("/etc/hostname".into(), file(&format!("{}\n", m.hostname), 0o644, 0, install));
    t.insert(
        "/etc/hosts".into(),
        file(&format!("127.0.0.1\tlocalhost\n127.0.1.1\t{0}\n\n# The following lines are desirable for IPv6 capable hosts\n::1     localhost ip6-localhost ip6-loopback\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n", m.hostname), 0o644, 0, install),
    );
    let d = &m.distro;
    t.insert("/etc/issue".into(), file(&format!("{} \\n \\l\n\n", d.issue), 0o644, 0, pkg));
    t.insert("/etc/issue.net".into(), file(&format!("{}\n", d.issue), 0o644, 0, pkg));
    t.insert("/etc/debian_version".into(), file(&format!("{}\n", d.debian_version), 0o644, 0, pkg));
    let os_release = if d.ubuntu {
        format!(
            "PRETTY_NAME=\"{}\"\nNAME=\"Ubuntu\"\nVERSION_ID=\"{}\"\nVERSION=\"{} ({})\"\nVERSION_CODENAME={}\nID=ubuntu\nID_LIKE=debian\nHOME_URL=\"https://www.ubuntu.com/\"\nSUPPORT_URL=\"https://help.ubuntu.com/\"\nBUG_REPORT_URL=\"https://bugs.launchpad.net/ubuntu/\"\nPRIVACY_POLICY_URL=\"https://www.ubuntu.com/legal/terms-and-policies/privacy-policy\"\nUBUNTU_CODENAME={}\n",
            d.pretty,
            d.version_id,
            d.pretty.trim_start_matches("Ubuntu "),
            if d.codename == "jammy" { "Jammy Jellyfish" } else { "Noble Numbat" },
            d.codename,
            d.codename
        )
    } else {
        format!(
            "PRETTY_NAME=\"{}\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"{}\"\nVERSION=\"{} ({})\"\nVERSION_CODENAME={}\nID=debian\nHOME_URL=\"https://www.debian.org/\"\nSUPPORT_URL=\"https://www.debian.org/support\"\nBUG_REPORT_URL=\"https://bugs.debian.org/\"\n",
            d.pretty, d.version_id, d.version_id, d.codename, d.codename
        )
    };
    t.insert("/usr/lib/os-release".into(), file(&os_release, 0o644, 0, pkg));
    t.insert("/etc/os-release".into(), link("../usr/lib/os-release", pkg));
    if d.ubuntu {
        t.insert(
            "/etc/lsb-release".into(),
            file(&format!("DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE={}\nDISTRIB_CODENAME={}\nDISTRIB_DESCRIPTION=\"{}\"\n", d.version_id, d.codename, d.pretty), 0o644, 0, pkg),
        );
    }
    t.insert("/etc/shells".into(), file("# /etc/shells: valid login shells\n/bin/sh\n/usr/bin/sh\n/bin/bash\n/usr/bin/bash\n/bin/rbash\n/usr/bin/rbash\n/bin/dash\n/usr/bin/dash\n", 0o644, 0, pkg));
    t.insert(
        "/etc/resolv.conf".into(),
        file(
            &format!("nameserver {}.{}.0.2\n", m.ip.octets()[0], m.ip.octets()[1]),
            0o644,
            0,
            m.boot,
        ),
    );
    t.insert("/etc/crontab".into(), file(CRONTAB, 0o644, 0, pkg));
    t.insert("/etc/fstab".into(), file(&format!("# /etc/fstab: static file system information.\nUUID={:08x}-{:04x}-{:04x}-{:04x}-{:012x} /               ext4    errors=remount-ro 0       1\n", rng.random::<u32>(), rng.random::<u16>(), rng.random::<u16>(), rng.random::<u16>(), rng.random::<u64>() & 0xffff_ffff_ffff), 0o644, 0, install));
    t.insert("/etc/ssh/sshd_config".into(), file("Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\nKbdInteractiveAuthentication no\nUsePAM yes\nX11Forwarding yes\nPrintMotd no\nAcceptEnv LANG LC_*\nSubsystem\tsftp\t/usr/lib/openssh/sftp-server\n", 0o644, 0, install));
    t.insert("/etc/motd".into(), file(if d.ubuntu { "" } else { MOTD_DEBIAN }, 0o644, 0, pkg));
    t.insert(
        "/var/www/html/index.html".into(),
        file("<html><body><h1>It works!</h1></body></html>\n", 0o644, 0, install),
    );
    // Generated on read by the shell; present so `ls /proc` and `stat` see them.
    for p in ["cpuinfo", "meminfo", "version", "uptime", "loadavg", "mounts"] {
        t.insert(
            format!("/proc/{p}"),
            Entry {
                node: Node::File(Arc::from(&b""[..])),
                mode: 0o444,
                uid: 0,
                size: 0,
                mtime: m.boot,
            },
        );
    }
    for p in ["/var/log/syslog", "/var/log/auth.log", "/var/log/kern.log", "/var/log/dpkg.log"] {
        t.insert(p.into(), file("", 0o640, 0, m.boot));
    }
    for (path, content) in extra {
        if !path.starts_with('/') {
            return Err(format!("shell: file path `{path}` must be absolute"));
        }
        let path = normalize("/", path);
        let mut p = parent(&path).to_owned();
        let mut missing = Vec::new();
        while !t.contains_key(&p) {
            missing.push(p.clone());
            p = parent(&p).to_owned();
        }
        for d in missing {
            t.insert(d, dir(0o755, 0, install));
        }
        t.insert(path, file(content, 0o644, 0, install));
    }
    Ok(t)
}

const BASHRC: &str = "# ~/.bashrc: executed by bash(1) for non-login shells.\n\n# If not running interactively, don't do anything\ncase $- in\n    *i*) ;;\n      *) return;;\nesac\n\nHISTCONTROL=ignoreboth\nshopt -s histappend\nHISTSIZE=1000\nHISTFILESIZE=2000\nshopt -s checkwinsize\n\nif [ -x /usr/bin/dircolors ]; then\n    test -r ~/.dircolors && eval \"$(dircolors -b ~/.dircolors)\" || eval \"$(dircolors -b)\"\n    alias ls='ls --color=auto'\n    alias grep='grep --color=auto'\nfi\n\nalias ll='ls -l'\nalias la='ls -A'\n";
const PROFILE: &str = "# ~/.profile: executed by the command interpreter for login shells.\n\nif [ -n \"$BASH_VERSION\" ]; then\n    if [ -f \"$HOME/.bashrc\" ]; then\n\t. \"$HOME/.bashrc\"\n    fi\nfi\n\nif [ -d \"$HOME/bin\" ] ; then\n    PATH=\"$HOME/bin:$PATH\"\nfi\n";
const BASH_LOGOUT: &str = "# ~/.bash_logout: executed by bash(1) when login shell exits.\n\nif [ \"$SHLVL\" = 1 ]; then\n    [ -x /usr/bin/clear_console ] && /usr/bin/clear_console -q\nfi\n";
const CRONTAB: &str = "# /etc/crontab: system-wide crontab\nSHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin\n\n# m h dom mon dow user\tcommand\n17 *\t* * *\troot\tcd / && run-parts --report /etc/cron.hourly\n25 6\t* * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }\n47 6\t* * 7\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }\n52 6\t1 * *\troot\ttest -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.monthly; }\n#\n";
pub(crate) const MOTD_DEBIAN: &str = "\nThe programs included with the Debian GNU/Linux system are free software;\nthe exact distribution terms for each program are described in the\nindividual files in /usr/share/doc/*/copyright.\n\nDebian GNU/Linux comes with ABSOLUTELY NO WARRANTY, to the extent\npermitted by applicable law.\n";
