//! The commands of the fake shell. Each is a function of the session state and its
//! arguments; none touches the host. Output formats follow Debian's coreutils, procps and
//! bash closely, because bots compare them.

use std::fmt::Write as _;

use md5::Digest as _;

use super::fs::{Entry, FsError, Node, basename, normalize, parent};
use super::text::{self, human};
use super::{Io, Shell, ShellEvent};

/// Applets of Debian's busybox that bots call through `busybox <applet>`.
const BUSYBOX_APPLETS: &[&str] = &[
    "ash", "awk", "cat", "chmod", "cp", "cut", "date", "dd", "df", "echo", "free", "ftpget",
    "grep", "head", "hostname", "id", "kill", "ls", "mkdir", "mv", "nproc", "ps", "pwd", "rm",
    "sh", "sleep", "tail", "tftp", "touch", "uname", "uptime", "wc", "wget", "which", "whoami",
];

const BASH_BUILTINS: &[&str] = &[
    ".",
    ":",
    "[",
    "alias",
    "bg",
    "bind",
    "break",
    "builtin",
    "caller",
    "cd",
    "command",
    "compgen",
    "complete",
    "compopt",
    "continue",
    "declare",
    "dirs",
    "disown",
    "echo",
    "enable",
    "eval",
    "exec",
    "exit",
    "export",
    "false",
    "fc",
    "fg",
    "getopts",
    "hash",
    "help",
    "history",
    "jobs",
    "kill",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "printf",
    "pushd",
    "pwd",
    "read",
    "readarray",
    "readonly",
    "return",
    "set",
    "shift",
    "shopt",
    "source",
    "suspend",
    "test",
    "times",
    "trap",
    "true",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "wait",
];

/// Installed programs that print nothing when bots use them the usual way.
const QUIET: &[&str] = &[
    "chattr",
    "ulimit",
    "sync",
    "ln",
    "alias",
    "unalias",
    "set",
    "umask",
    "trap",
    "wait",
    "chown",
    "chgrp",
    "renice",
    "disown",
    "shopt",
    "systemctl",
    "service",
    "iptables",
    "ufw",
    "python3",
    "perl",
    "pkill",
    "killall",
    "mount",
    "umount",
    "source",
    ".",
    "clear",
    "reset",
    "stty",
    "sed",
    "tee",
    "xargs",
    "find",
    "tar",
    "gzip",
    "gunzip",
    "base64",
    "su",
    "setsid",
    "useradd",
    "usermod",
    "rmdir",
    "readlink",
    "mktemp",
    "sleep",
    "true",
    ":",
    "[",
    "test",
];

fn flags(args: &[String]) -> (String, Vec<&str>) {
    let mut f = String::new();
    let mut rest = Vec::new();
    let mut done = false;
    for a in args {
        if !done && a == "--" {
            done = true;
        } else if !done && a.len() > 1 && a.starts_with('-') && !a.starts_with("--") {
            f.push_str(a.get(1..).unwrap_or_default());
        } else if !done && a.starts_with("--") {
            // Long options are accepted and ignored unless a command looks at them.
        } else {
            rest.push(a.as_str());
        }
    }
    (f, rest)
}

pub(crate) fn mode_string(e: &Entry) -> String {
    let t = match e.node {
        Node::Dir => 'd',
        Node::Link(_) => 'l',
        Node::Dev => 'c',
        Node::File(_) => '-',
    };
    let mut s = String::from(t);
    for shift in [6u16, 3, 0] {
        let bits = (e.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    if e.mode & 0o1000 != 0 {
        s.pop();
        s.push('t');
    }
    s
}

impl Shell {
    pub(crate) fn owner(&self, uid: u32) -> String {
        if uid == self.user.uid {
            return self.user.name.clone();
        }
        self.machine
            .users
            .iter()
            .find(|u| u.uid == uid)
            .map(|u| u.name.clone())
            .unwrap_or_else(|| uid.to_string())
    }

    fn abs(&self, p: &str) -> String {
        normalize(&self.cwd, p)
    }

    /// A file's content, with `/proc` generated on read.
    pub(crate) fn read(&self, path: &str) -> Result<Vec<u8>, FsError> {
        let real = self.fs.resolve(path);
        if let Some(p) = self.proc_file(&real) {
            return Ok(p.into_bytes());
        }
        let e = self.fs.stat(&real)?;
        match &e.node {
            Node::Dir => Err(FsError::IsDir),
            Node::Dev => Ok(Vec::new()),
            _ if self.user.uid != 0 && e.mode & 0o004 == 0 && e.uid != self.user.uid => {
                Err(FsError::Denied)
            }
            _ => Ok(e.data().to_vec()),
        }
    }

    fn uptime_secs(&self) -> u64 {
        text::now().saturating_sub(self.machine.boot)
    }

    fn load(&self) -> [f64; 3] {
        let n = |s| self.machine.noise(s ^ (text::now() / 300), 30) as f64 / 100.0;
        [n(11), n(12), n(13)]
    }

    /// Memory figures in KiB: total, used, free, shared, buff/cache, available.
    fn mem(&self) -> [u64; 6] {
        let total = self.machine.mem_kib;
        let used = total * (12 + self.machine.noise(21, 20)) / 100;
        let cache = total * (15 + self.machine.noise(22, 25)) / 100;
        let shared = total / 200 + self.machine.noise(23, 4000);
        let free = total.saturating_sub(used + cache);
        let avail = free + cache * 8 / 10;
        [total, used, free, shared, cache, avail]
    }

    fn proc_file(&self, path: &str) -> Option<String> {
        let m = &self.machine;
        Some(match path {
            "/proc/cpuinfo" => {
                let (vendor, family, model, mhz) = m.cpu_row();
                let amd = vendor == "AuthenticAMD";
                let flags = if amd {
                    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm rep_good nopl cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext invpcid_single ssbd ibrs ibpb stibp vmmcall fsgsbase bmi1 avx2 smep bmi2 rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 clzero xsaveerptr wbnoinvd arat umip rdpid"
                } else {
                    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch cpuid_fault invpcid_single ssbd ibrs ibpb stibp fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid mpx avx512f avx512dq rdseed adx smap clflushopt clwb avx512cd avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves arat pku ospke md_clear arch_capabilities"
                };
                let mut s = String::new();
                for i in 0..m.cpus {
                    let _ = write!(
                        s,
                        "processor\t: {i}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\nmodel name\t: {}\nstepping\t: {}\nmicrocode\t: 0x{:x}\ncpu MHz\t\t: {mhz}\ncache size\t: {} KB\nphysical id\t: 0\nsiblings\t: {}\ncore id\t\t: {i}\ncpu cores\t: {}\napicid\t\t: {i}\ninitial apicid\t: {i}\nfpu\t\t: yes\nfpu_exception\t: yes\ncpuid level\t: 13\nwp\t\t: yes\nflags\t\t: {flags}\nbogomips\t: {:.2}\nclflush size\t: 64\ncache_alignment\t: 64\naddress sizes\t: {} bits physical, 48 bits virtual\npower management:\n\n",
                        m.cpu_model,
                        if amd { 1 } else { 7 },
                        if amd { 0x1000065 } else { 0x5003604 },
                        if amd { 512 } else { 16384 },
                        m.cpus,
                        m.cpus,
                        mhz.parse::<f64>().unwrap_or(2400.0) * 2.0,
                        if amd { 40 } else { 46 },
                    );
                }
                s
            }
            "/proc/meminfo" => {
                let [total, _, free, shared, cache, avail] = self.mem();
                format!(
                    "MemTotal:       {total:8} kB\nMemFree:        {free:8} kB\nMemAvailable:   {avail:8} kB\nBuffers:        {:8} kB\nCached:         {:8} kB\nSwapCached:            0 kB\nActive:         {:8} kB\nInactive:       {:8} kB\nShmem:          {shared:8} kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\nDirty:               {:3} kB\nWriteback:             0 kB\nSlab:           {:8} kB\nVmallocTotal:   34359738367 kB\nHugePages_Total:       0\nHugePages_Free:        0\nHugepagesize:       2048 kB\n",
                    cache / 12,
                    cache * 9 / 10,
                    total / 4,
                    total / 3,
                    m.noise(31, 900),
                    total / 30
                )
            }
            "/proc/version" => format!(
                "Linux version {} {} {}\n",
                m.distro.kernel_release, m.distro.kernel_builder, m.distro.kernel_version
            ),
            "/proc/uptime" => {
                let up = self.uptime_secs();
                format!("{up}.{:02} {}.{:02}\n", m.noise(41, 100), up * u64::from(m.cpus) * 9 / 10, m.noise(42, 100))
            }
            "/proc/loadavg" => {
                let [a, b, c] = self.load();
                format!("{a:.2} {b:.2} {c:.2} 1/{} {}\n", 90 + m.noise(43, 60), self.pid + 40)
            }
            "/proc/mounts" => "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\nproc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\nudev /dev devtmpfs rw,nosuid,relatime,mode=755,inode64 0 0\ndevpts /dev/pts devpts rw,nosuid,noexec,relatime,gid=5,mode=620,ptmxmode=000 0 0\ntmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,mode=755,inode64 0 0\n/dev/vda1 / ext4 rw,relatime,errors=remount-ro 0 0\ntmpfs /dev/shm tmpfs rw,nosuid,nodev,inode64 0 0\n".into(),
            _ => return None,
        })
    }

    /// Runs one expanded command.
    pub(crate) fn command(&mut self, words: &[String], io: &mut Io) -> i32 {
        let Some(first) = words.first() else { return 0 };
        let args = words.get(1..).unwrap_or_default();
        if first.contains('/') {
            let path = self.abs(first);
            let real = self.fs.resolve(&path);
            let entry = match self.fs.stat(&real) {
                Ok(e) => e.clone(),
                Err(e) => {
                    io.err(format!("-bash: {first}: {}\n", e.text()));
                    return if e == FsError::NotFound { 127 } else { 126 };
                }
            };
            if entry.is_dir() {
                io.err(format!("-bash: {first}: Is a directory\n"));
                return 126;
            }
            let name = basename(&real).to_owned();
            if matches!(parent(&real), "/usr/bin" | "/usr/sbin")
                && entry.data().starts_with(b"\x7fELF")
            {
                return self.dispatch(&name, first, args, io);
            }
            if entry.mode & 0o111 == 0 {
                io.err(format!("-bash: {first}: Permission denied\n"));
                return 126;
            }
            let data = entry.data();
            let text = !data.is_empty()
                && data
                    .iter()
                    .all(|b| *b >= 0x20 && *b != 0x7f || matches!(b, b'\t' | b'\n' | b'\r'));
            if data.starts_with(b"#!") || text {
                let src = String::from_utf8_lossy(data).into_owned();
                return self.nested(&src, io);
            }
            // A binary the attacker wrote: it "runs" and prints nothing.
            return 0;
        }
        self.dispatch(first, first, args, io)
    }

    fn not_found(&mut self, name: &str, io: &mut Io) -> i32 {
        self.unknown = true;
        io.err(format!("-bash: {name}: command not found\n"));
        127
    }

    fn dispatch(&mut self, name: &str, shown: &str, args: &[String], io: &mut Io) -> i32 {
        let (f, rest) = flags(args);
        match name {
            "exit" | "logout" => {
                self.exit = true;
                rest.first().and_then(|s| s.parse().ok()).unwrap_or(self.status)
            }
            "echo" => self.echo(args, io),
            "printf" => printf(args, io),
            "uname" => self.uname(&f, args, io),
            "cat" => self.cat(&rest, io),
            "free" => self.free(&f, io),
            "w" => self.w(true, io),
            "uptime" => self.w(false, io),
            "who" => {
                let t = text::tm(self.login);
                io.out(format!(
                    "{:<8} pts/0        {}-{:02}-{:02} {:02}:{:02} ({})\n",
                    self.user.name,
                    t.year,
                    t.month,
                    t.day,
                    t.hour,
                    t.minute,
                    self.client.map(|c| c.to_string()).unwrap_or_default()
                ));
                0
            }
            "id" => {
                let u = &self.user;
                if u.uid == 0 {
                    io.out("uid=0(root) gid=0(root) groups=0(root)\n");
                } else {
                    io.out(format!("uid={0}({1}) gid={0}({1}) groups={0}({1}),24(cdrom),25(floppy),27(sudo),29(audio),30(dip),44(video),46(plugdev),100(users)\n", u.uid, u.name));
                }
                0
            }
            "whoami" => {
                io.out(format!("{}\n", self.user.name));
                0
            }
            "groups" => {
                io.out(if self.user.uid == 0 {
                    "root\n".to_owned()
                } else {
                    format!("{} cdrom floppy sudo audio dip video plugdev users\n", self.user.name)
                });
                0
            }
            "ls" | "dir" | "ll" => {
                let f = if name == "ll" { format!("{f}l") } else { f };
                self.ls(&f, &rest, io)
            }
            "cd" => self.cd(&rest, io),
            "pwd" => {
                io.out(format!("{}\n", self.cwd));
                0
            }
            "busybox" => self.busybox(args, io),
            "chmod" => self.chmod(&rest, io),
            "rm" => self.rm(&f, &rest, io),
            "mkdir" => {
                let mut st = 0;
                for d in &rest {
                    let p = self.abs(d);
                    match self.fs.mkdir(&p, text::now()) {
                        Ok(()) => {}
                        Err(FsError::Exists) if f.contains('p') => {}
                        Err(FsError::NotFound) if f.contains('p') => {
                            let mut acc = String::new();
                            for c in p.split('/').filter(|c| !c.is_empty()) {
                                acc.push('/');
                                acc.push_str(c);
                                let _ = self.fs.mkdir(&acc, text::now());
                            }
                        }
                        Err(e) => {
                            io.err(format!("mkdir: cannot create directory ‘{d}’: {}\n", e.text()));
                            st = 1;
                        }
                    }
                }
                st
            }
            "touch" => {
                let mut st = 0;
                for p in &rest {
                    let path = self.abs(p);
                    let r = if self.fs.stat(&path).is_ok() {
                        self.fs.update(&path, |e| e.mtime = text::now())
                    } else {
                        self.fs.write(&path, b"", false, text::now()).map(|_| ())
                    };
                    if let Err(e) = r {
                        io.err(format!("touch: cannot touch '{p}': {}\n", e.text()));
                        st = 1;
                    }
                }
                st
            }
            "cp" | "mv" => self.cp_mv(name, &rest, io),
            "ps" => self.ps(&f, args, io),
            "hostname" => {
                if rest.is_empty() || f.contains('s') {
                    io.out(format!("{}\n", self.machine.hostname));
                } else if self.user.uid != 0 {
                    io.err("hostname: you must be root to change the host name\n");
                    return 1;
                }
                0
            }
            "which" => {
                let mut st = 0;
                for a in &rest {
                    match self.which(a) {
                        Some(p) => io.out(format!("{p}\n")),
                        None => st = 1,
                    }
                }
                st
            }
            "command" | "type" if !rest.is_empty() => {
                let mut st = 0;
                for a in rest.iter().filter(|a| !a.starts_with('-')) {
                    if BASH_BUILTINS.contains(a) {
                        io.out(if name == "type" {
                            format!("{a} is a shell builtin\n")
                        } else {
                            format!("{a}\n")
                        });
                    } else if let Some(p) = self.which(a) {
                        io.out(if name == "type" {
                            format!("{a} is {p}\n")
                        } else {
                            format!("{p}\n")
                        });
                    } else {
                        if name == "type" {
                            io.err(format!("-bash: type: {a}: not found\n"));
                        }
                        st = 1;
                    }
                }
                st
            }
            "wget" => self.wget(args, io),
            "curl" => self.curl(args, io),
            "tftp" | "ftpget" => {
                self.download_tool(name, args);
                self.not_found(shown, io)
            }
            "nproc" => {
                io.out(format!("{}\n", self.machine.cpus));
                0
            }
            "lscpu" => self.lscpu(io),
            "df" => self.df(&f, io),
            "date" => {
                io.out(format!("{}\n", text::date(text::now())));
                0
            }
            "env" | "printenv" if rest.is_empty() || name == "printenv" => {
                if let Some(v) = rest.first() {
                    let val = self.var(v);
                    if val.is_empty() {
                        return 1;
                    }
                    io.out(format!("{val}\n"));
                    return 0;
                }
                let mut s = String::new();
                for k in
                    ["SHELL", "PWD", "LOGNAME", "HOME", "LANG", "TERM", "USER", "SHLVL", "PATH"]
                {
                    let _ = writeln!(s, "{k}={}", self.var(k));
                }
                if let Some(c) = self.client {
                    let _ = writeln!(
                        s,
                        "SSH_CLIENT={c} {} 22",
                        30_000 + self.machine.noise(51, 30_000)
                    );
                }
                for (k, v) in &self.env {
                    let _ = writeln!(s, "{k}={v}");
                }
                io.out(s);
                0
            }
            "env" | "sudo" | "nohup" | "timeout" | "exec" | "nice" | "time" => {
                let mut rest: Vec<String> = args.to_vec();
                // Skip the wrapper's own options and (env) assignments, (timeout) duration.
                while rest
                    .first()
                    .is_some_and(|a| a.starts_with('-') || (name == "env" && a.contains('=')))
                {
                    rest.remove(0);
                }
                if name == "timeout" && !rest.is_empty() {
                    rest.remove(0);
                }
                if rest.is_empty() {
                    return 0;
                }
                if name == "nohup" {
                    io.err("nohup: ignoring input and appending output to 'nohup.out'\n");
                }
                self.command(&rest, io)
            }
            "export" | "declare" | "local" | "readonly" | "typeset" => {
                for a in &rest {
                    if let Some((k, v)) = a.split_once('=') {
                        self.setenv(k, v);
                    }
                }
                0
            }
            "unset" => {
                for a in &rest {
                    self.env.remove(*a);
                }
                0
            }
            "history" => {
                if f.contains('c') {
                    self.history.clear();
                    return 0;
                }
                let mut s = String::new();
                for (i, h) in self.history.iter().enumerate() {
                    let _ = writeln!(s, "{:5}  {h}", i + 1);
                }
                io.out(s);
                0
            }
            "grep" | "egrep" | "fgrep" => self.grep(args, io),
            "wc" => self.wc(&f, &rest, io),
            "head" | "tail" => self.head_tail(name == "head", args, io),
            "awk" | "gawk" | "mawk" => self.awk(args, io),
            "cut" => self.cut(args, io),
            "sort" | "uniq" => {
                let input = self.inputs(&rest, io);
                let mut lines: Vec<&str> =
                    std::str::from_utf8(&input).unwrap_or_default().lines().collect();
                if name == "sort" {
                    lines.sort_unstable();
                    if f.contains('r') {
                        lines.reverse();
                    }
                    if f.contains('u') {
                        lines.dedup();
                    }
                } else {
                    lines.dedup();
                }
                for l in lines {
                    io.out(format!("{l}\n"));
                }
                0
            }
            "sh" | "bash" | "dash" | "ash" => {
                if name == "bash" && args.iter().any(|a| a == "--version") {
                    io.out(format!("{}\nCopyright (C) 2022 Free Software Foundation, Inc.\nLicense GPLv3+: GNU GPL version 3 or later <http://gnu.org/licenses/gpl.html>\n\nThis is free software; you are free to change and redistribute it.\nThere is NO WARRANTY, to the extent permitted by law.\n", self.machine.distro.bash));
                    return 0;
                }
                if let Some(pos) = args.iter().position(|a| a == "-c") {
                    let src = args.get(pos + 1).cloned().unwrap_or_default();
                    return self.nested(&src, io);
                }
                if let Some(file) = rest.first() {
                    let path = self.abs(file);
                    return match self.read(&path) {
                        Ok(d) => {
                            let src = String::from_utf8_lossy(&d).into_owned();
                            self.nested(&src, io)
                        }
                        Err(e) => {
                            io.err(format!("{name}: {file}: {}\n", e.text()));
                            127
                        }
                    };
                }
                if !io.stdin.is_empty() {
                    let src = String::from_utf8_lossy(&std::mem::take(&mut io.stdin)).into_owned();
                    return self.nested(&src, io);
                }
                0
            }
            "crontab" => {
                if f.contains('l') {
                    io.err(format!("no crontab for {}\n", self.user.name));
                    return 1;
                }
                0
            }
            "passwd" => {
                io.out("New password: \nRetype new password: \n");
                io.err(
                    "passwd: Authentication token manipulation error\npasswd: password unchanged\n",
                );
                10
            }
            "chpasswd" => 0,
            "apt" | "apt-get" | "yum" | "dnf" if name.starts_with("apt") => self.apt(&rest, io),
            "ip" => self.ip(&rest, io),
            "kill" => {
                for p in rest.iter().filter(|p| p.parse::<u32>().is_ok()) {
                    io.err(format!("-bash: kill: ({p}) - No such process\n"));
                }
                i32::from(!rest.is_empty())
            }
            "top" => {
                self.w(false, io);
                let [total, used, free, _, cache, avail] = self.mem();
                io.out(format!(
                    "Tasks: {} total,   1 running, {} sleeping,   0 stopped,   0 zombie\n%Cpu(s):  0.3 us,  0.2 sy,  0.0 ni, 99.5 id,  0.0 wa,  0.0 hi,  0.0 si,  0.0 st\nMiB Mem : {:8.1} total, {:8.1} free, {:8.1} used, {:8.1} buff/cache\nMiB Swap:      0.0 total,      0.0 free,      0.0 used. {:8.1} avail Mem\n",
                    96 + self.machine.noise(61, 40),
                    95 + self.machine.noise(61, 40),
                    total as f64 / 1024.0,
                    free as f64 / 1024.0,
                    used as f64 / 1024.0,
                    cache as f64 / 1024.0,
                    avail as f64 / 1024.0
                ));
                0
            }
            "last" => {
                let from = self.client.map(|c| c.to_string()).unwrap_or_default();
                io.out(format!(
                    "{:<8} pts/0        {:<16} {} - {}  (00:0{})\n\nwtmp begins {}\n",
                    self.user.name,
                    from,
                    &text::ctime(self.login).get(..16).unwrap_or_default(),
                    "still logged in",
                    self.machine.noise(71, 9),
                    text::ctime(self.machine.boot)
                ));
                0
            }
            "md5sum" | "sha256sum" => {
                let mut st = 0;
                for p in &rest {
                    let path = self.abs(p);
                    match self.read(&path) {
                        Ok(d) => {
                            let h = if name == "md5sum" {
                                hexs(&md5::Md5::digest(&d))
                            } else {
                                hexs(&sha2::Sha256::digest(&d))
                            };
                            io.out(format!("{h}  {p}\n"));
                        }
                        Err(e) => {
                            io.err(format!("{name}: {p}: {}\n", e.text()));
                            st = 1;
                        }
                    }
                }
                st
            }
            "dd" => self.dd(args, io),
            "enable" => {
                let mut s = String::new();
                for b in BASH_BUILTINS {
                    let _ = writeln!(s, "enable {b}");
                }
                io.out(s);
                0
            }
            "false" => 1,
            n if QUIET.contains(&n) => 0,
            _ => {
                if matches!(name, "tftp" | "ftpget") {
                    self.download_tool(name, args);
                }
                self.not_found(shown, io)
            }
        }
    }

    fn which(&self, cmd: &str) -> Option<String> {
        if cmd.contains('/') {
            return self.fs.stat(&self.abs(cmd)).ok().map(|_| cmd.to_owned());
        }
        let dirs: &[&str] = if self.user.uid == 0 {
            &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"]
        } else {
            &["/usr/local/bin", "/usr/bin"]
        };
        dirs.iter()
            .map(|d| format!("{d}/{cmd}"))
            .find(|p| self.fs.stat(p).is_ok_and(|e| !e.is_dir() && e.mode & 0o111 != 0))
    }

    fn echo(&mut self, args: &[String], io: &mut Io) -> i32 {
        let mut newline = true;
        let mut escapes = false;
        let mut i = 0;
        while let Some(a) = args.get(i) {
            if a.len() > 1
                && a.starts_with('-')
                && a.chars().skip(1).all(|c| matches!(c, 'n' | 'e' | 'E'))
            {
                for c in a.chars().skip(1) {
                    match c {
                        'n' => newline = false,
                        'e' => escapes = true,
                        _ => escapes = false,
                    }
                }
                i += 1;
            } else {
                break;
            }
        }
        let text = args.get(i..).unwrap_or_default().join(" ");
        let mut out = if escapes { unescape(&text).0 } else { text.into_bytes() };
        if newline {
            out.push(b'\n');
        }
        io.out(out);
        0
    }

    fn uname(&self, f: &str, args: &[String], io: &mut Io) -> i32 {
        let m = &self.machine;
        let all = f.contains('a') || args.iter().any(|a| a == "--all");
        if let Some(bad) = f.chars().find(|c| !"asnrvmpio".contains(*c)) {
            io.err(format!(
                "uname: invalid option -- '{bad}'\nTry 'uname --help' for more information.\n"
            ));
            return 1;
        }
        if all {
            io.out(format!("{}\n", m.uname_a()));
            return 0;
        }
        let mut parts = Vec::new();
        for (c, v) in [
            ('s', "Linux"),
            ('n', m.hostname.as_str()),
            ('r', m.distro.kernel_release.as_str()),
            ('v', m.distro.kernel_version.as_str()),
            ('m', "x86_64"),
            ('p', "unknown"),
            ('i', "unknown"),
            ('o', "GNU/Linux"),
        ] {
            if f.contains(c) {
                parts.push(v);
            }
        }
        if parts.is_empty() {
            parts.push("Linux");
        }
        io.out(format!("{}\n", parts.join(" ")));
        0
    }

    /// Reads the named files, or stdin when there are none (`-` is stdin too).
    fn inputs(&self, files: &[&str], io: &mut Io) -> Vec<u8> {
        if files.is_empty() {
            return std::mem::take(&mut io.stdin);
        }
        let mut all = Vec::new();
        for f in files {
            if *f == "-" {
                all.append(&mut io.stdin);
                continue;
            }
            match self.read(&self.abs(f)) {
                Ok(d) => all.extend_from_slice(&d),
                Err(e) => io.err(format!("{f}: {}\n", e.text())),
            }
        }
        all
    }

    fn cat(&self, files: &[&str], io: &mut Io) -> i32 {
        if files.is_empty() {
            let d = std::mem::take(&mut io.stdin);
            io.out(d);
            return 0;
        }
        let mut st = 0;
        for f in files {
            if *f == "-" {
                let d = std::mem::take(&mut io.stdin);
                io.out(d);
                continue;
            }
            match self.read(&self.abs(f)) {
                Ok(d) => io.out(d),
                Err(e) => {
                    io.err(format!("cat: {f}: {}\n", e.text()));
                    st = 1;
                }
            }
        }
        st
    }

    fn free(&self, f: &str, io: &mut Io) -> i32 {
        let mem = self.mem();
        let fmt = |k: u64| -> String {
            if f.contains('h') {
                human(k * 1024, true)
            } else if f.contains('g') {
                (k / 1024 / 1024).to_string()
            } else if f.contains('m') {
                (k / 1024).to_string()
            } else if f.contains('b') {
                (k * 1024).to_string()
            } else {
                k.to_string()
            }
        };
        let [t, u, fr, sh, c, a] = mem.map(fmt);
        let z = fmt(0);
        io.out(format!(
            "               total        used        free      shared  buff/cache   available\nMem:     {t:>11} {u:>11} {fr:>11} {sh:>11} {c:>11} {a:>11}\nSwap:    {z:>11} {z:>11} {z:>11}\n"
        ));
        0
    }

    fn w(&self, table: bool, io: &mut Io) -> i32 {
        let now = text::now();
        let t = text::tm(now);
        let [a, b, c] = self.load();
        io.out(format!(
            " {:02}:{:02}:{:02} {},  1 user,  load average: {a:.2}, {b:.2}, {c:.2}\n",
            t.hour,
            t.minute,
            t.second,
            text::up(self.uptime_secs())
        ));
        if table {
            let l = text::tm(self.login);
            io.out(format!(
                "USER     TTY      FROM             LOGIN@   IDLE   JCPU   PCPU WHAT\n{:<8} pts/0    {:<16} {:02}:{:02}    0.00s  0.0{}s  0.00s w\n",
                self.user.name,
                self.client.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                l.hour,
                l.minute,
                self.machine.noise(81, 9)
            ));
        }
        0
    }

    fn ls(&self, f: &str, rest: &[&str], io: &mut Io) -> i32 {
        let long = f.contains('l');
        let all = f.contains('a');
        let almost = f.contains('A');
        let one = f.contains('1') || io.piped;
        let targets: Vec<&str> = if rest.is_empty() { vec!["."] } else { rest.to_vec() };
        let mut st = 0;
        let now = text::now();
        let multi = targets.len() > 1;
        let mut first = true;
        for t in &targets {
            let path = self.abs(t);
            let entry = match self.fs.stat(&path) {
                Ok(e) => e.clone(),
                Err(e) => {
                    io.err(format!("ls: cannot access '{t}': {}\n", e.text()));
                    st = 2;
                    continue;
                }
            };
            let mut items: Vec<(String, Entry)> = if entry.is_dir() && !f.contains('d') {
                let mut v = self.fs.list(&path).unwrap_or_default();
                if all {
                    let up = self
                        .fs
                        .stat(parent(&self.fs.resolve(&path)))
                        .cloned()
                        .unwrap_or_else(|_| entry.clone());
                    v.insert(0, ("..".into(), up));
                    v.insert(0, (".".into(), entry.clone()));
                } else if !almost {
                    v.retain(|(n, _)| !n.starts_with('.'));
                } else {
                    v.retain(|(n, _)| n != "." && n != "..");
                }
                v
            } else {
                vec![((*t).to_owned(), self.fs.lstat(&path).cloned().unwrap_or(entry.clone()))]
            };
            items.sort_by(|a, b| {
                let k = |s: &str| s.trim_start_matches('.').to_lowercase();
                k(&a.0).cmp(&k(&b.0)).then(a.0.cmp(&b.0))
            });
            if multi && entry.is_dir() {
                if !first {
                    io.out("\n");
                }
                io.out(format!("{t}:\n"));
            }
            first = false;
            if long {
                if entry.is_dir() && !f.contains('d') {
                    let blocks: u64 = items.iter().map(|(_, e)| e.size.div_ceil(4096) * 4).sum();
                    io.out(format!(
                        "total {}\n",
                        if f.contains('h') {
                            human(blocks * 1024, false)
                        } else {
                            blocks.to_string()
                        }
                    ));
                }
                let w = items
                    .iter()
                    .map(|(_, e)| {
                        if f.contains('h') {
                            human(e.size, false).len()
                        } else {
                            e.size.to_string().len()
                        }
                    })
                    .max()
                    .unwrap_or(1);
                for (n, e) in &items {
                    let size =
                        if f.contains('h') { human(e.size, false) } else { e.size.to_string() };
                    let owner = self.owner(e.uid);
                    let links = if e.is_dir() { 2 } else { 1 };
                    let target = match &e.node {
                        Node::Link(t) => format!(" -> {t}"),
                        _ => String::new(),
                    };
                    io.out(format!(
                        "{} {links} {owner} {owner} {size:>w$} {} {n}{target}\n",
                        mode_string(e),
                        text::ls_time(e.mtime, now)
                    ));
                }
            } else if one {
                for (n, _) in &items {
                    io.out(format!("{n}\n"));
                }
            } else if !items.is_empty() {
                io.out(columns(&items.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()));
            }
        }
        st
    }

    fn cd(&mut self, rest: &[&str], io: &mut Io) -> i32 {
        let target = match rest.first() {
            None => self.user.home.clone(),
            Some(&"-") => {
                io.out(format!("{}\n", self.oldpwd));
                self.oldpwd.clone()
            }
            Some(t) => self.abs(t),
        };
        match self.fs.stat(&target) {
            Ok(e) if e.is_dir() => {
                if self.user.uid != 0 && e.mode & 0o001 == 0 && e.uid != self.user.uid {
                    io.err(format!(
                        "-bash: cd: {}: Permission denied\n",
                        rest.first().unwrap_or(&"")
                    ));
                    return 1;
                }
                self.oldpwd = std::mem::replace(&mut self.cwd, target);
                0
            }
            Ok(_) => {
                io.err(format!("-bash: cd: {}: Not a directory\n", rest.first().unwrap_or(&"")));
                1
            }
            Err(e) => {
                io.err(format!("-bash: cd: {}: {}\n", rest.first().unwrap_or(&""), e.text()));
                1
            }
        }
    }

    fn busybox(&mut self, args: &[String], io: &mut Io) -> i32 {
        let Some(applet) = args.first() else {
            io.out("BusyBox v1.35.0 (Debian 1:1.35.0-4+b3) multi-call binary.\nBusyBox is copyrighted by many authors between 1998-2015.\nLicensed under GPLv2. See source distribution for detailed\ncopyright notices.\n\nUsage: busybox [function [arguments]...]\n   or: busybox --list[-full]\n   or: busybox --show SCRIPT\n   or: busybox --install [-s] [DIR]\n   or: function [arguments]...\n\n\tBusyBox is a multi-call binary that combines many common Unix\n\tutilities into a single executable.  Most people will create a\n\tlink to busybox for each function they wish to use and BusyBox\n\twill act like whatever it was invoked as.\n");
            return 0;
        };
        let name = basename(applet);
        if !BUSYBOX_APPLETS.contains(&name) {
            io.err(format!("{applet}: applet not found\n"));
            return 127;
        }
        let rest = args.get(1..).unwrap_or_default();
        match name {
            "tftp" | "ftpget" => {
                self.download_tool(name, rest);
                io.err(format!("{name}: timeout\n"));
                1
            }
            _ => self.dispatch(name, name, rest, io),
        }
    }

    fn chmod(&mut self, rest: &[&str], io: &mut Io) -> i32 {
        let Some((mode, files)) = rest.split_first() else {
            io.err("chmod: missing operand\nTry 'chmod --help' for more information.\n");
            return 1;
        };
        if files.is_empty() {
            io.err(format!(
                "chmod: missing operand after ‘{mode}’\nTry 'chmod --help' for more information.\n"
            ));
            return 1;
        }
        let mut st = 0;
        for f in files {
            let path = self.abs(f);
            let m = mode.to_string();
            let r = self.fs.update(&path, |e| e.mode = apply_mode(e.mode, &m));
            if let Err(e) = r {
                io.err(format!("chmod: cannot access '{f}': {}\n", e.text()));
                st = 1;
            }
        }
        st
    }

    fn rm(&mut self, f: &str, rest: &[&str], io: &mut Io) -> i32 {
        let recursive = f.contains('r') || f.contains('R');
        let force = f.contains('f');
        let mut st = 0;
        for p in rest {
            let path = self.abs(p);
            if path == "/" {
                io.err("rm: it is dangerous to operate recursively on '/'\nrm: use --no-preserve-root to override this failsafe\n");
                st = 1;
                continue;
            }
            let is_dir = self.fs.lstat(&path).is_some_and(Entry::is_dir);
            if is_dir && !recursive {
                io.err(format!("rm: cannot remove '{p}': Is a directory\n"));
                st = 1;
                continue;
            }
            match self.fs.remove(&path, recursive) {
                Ok(()) => {}
                Err(FsError::NotFound) if force => {}
                Err(e) => {
                    io.err(format!("rm: cannot remove '{p}': {}\n", e.text()));
                    st = 1;
                }
            }
        }
        st
    }

    fn cp_mv(&mut self, name: &str, rest: &[&str], io: &mut Io) -> i32 {
        let [srcs @ .., dst] = rest else { return 1 };
        if srcs.is_empty() {
            io.err(format!("{name}: missing destination file operand after '{dst}'\n"));
            return 1;
        }
        let dpath = self.abs(dst);
        let dst_dir = self.fs.stat(&dpath).is_ok_and(Entry::is_dir);
        let mut st = 0;
        for s in srcs {
            let spath = self.abs(s);
            let entry = match self.fs.stat(&spath) {
                Ok(e) if e.is_dir() && name == "cp" => {
                    io.err(format!("cp: -r not specified; omitting directory '{s}'\n"));
                    st = 1;
                    continue;
                }
                Ok(e) => e.clone(),
                Err(e) => {
                    io.err(format!("{name}: cannot stat '{s}': {}\n", e.text()));
                    st = 1;
                    continue;
                }
            };
            let target =
                if dst_dir { format!("{dpath}/{}", basename(&spath)) } else { dpath.clone() };
            let mut e = entry;
            e.uid = self.user.uid;
            e.mtime = text::now();
            if let Err(err) = self.fs.put(&target, e) {
                io.err(format!("{name}: cannot create regular file '{dst}': {}\n", err.text()));
                st = 1;
                continue;
            }
            if name == "mv" {
                let _ = self.fs.remove(&spath, true);
            }
        }
        st
    }

    fn ps(&self, f: &str, args: &[String], io: &mut Io) -> i32 {
        let m = &self.machine;
        let full = f.contains('e')
            || f.contains('f')
            || args.iter().any(|a| a.contains("aux") || a == "ax");
        let base = 300 + m.noise(91, 400) as u32;
        let procs: Vec<(&str, u32, String)> = vec![
            ("root", 1, "/sbin/init".into()),
            ("root", 2, "[kthreadd]".into()),
            ("root", 3, "[rcu_gp]".into()),
            ("root", 13, "[ksoftirqd/0]".into()),
            ("root", 14, "[rcu_preempt]".into()),
            ("root", base, "/lib/systemd/systemd-journald".into()),
            ("root", base + 31, "/lib/systemd/systemd-udevd".into()),
            ("systemd-network", base + 210, "/lib/systemd/systemd-networkd".into()),
            ("root", base + 302, "/usr/sbin/cron -f".into()),
            ("messagebus", base + 303, "/usr/bin/dbus-daemon --system --address=systemd: --nofork --nopidfile --systemd-activation --syslog-only".into()),
            ("root", base + 306, "/lib/systemd/systemd-logind".into()),
            ("root", base + 350, "/sbin/agetty -o -p -- \\u --noclear - linux".into()),
            ("root", base + 371, "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups".into()),
            ("root", self.pid - 12, format!("sshd: {} [priv]", self.user.name)),
            (self.user.name.as_str(), self.pid - 4, format!("sshd: {}@pts/0", self.user.name)),
            (self.user.name.as_str(), self.pid, "-bash".into()),
            (self.user.name.as_str(), self.pid + 37, if full { "ps aux".into() } else { "ps".into() }),
        ];
        if !full {
            io.out(format!("    PID TTY          TIME CMD\n{:7} pts/0    00:00:00 bash\n{:7} pts/0    00:00:00 ps\n", self.pid, self.pid + 37));
            return 0;
        }
        if f.contains('e') || f.contains('f') {
            io.out("UID          PID    PPID  C STIME TTY          TIME CMD\n");
            for (u, pid, cmd) in &procs {
                let tty = if cmd.starts_with('-') || cmd.starts_with("ps") { "pts/0" } else { "?" };
                io.out(format!(
                    "{:<8} {pid:7} {:7}  0 {}  {tty:<8} 00:00:00 {cmd}\n",
                    text::truncate(u, 8),
                    if *pid == 1 { 0 } else { 1 },
                    "Jan01"
                ));
            }
        } else {
            io.out("USER         PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND\n");
            for (u, pid, cmd) in &procs {
                let (vsz, rss) = (
                    4000 + m.noise(u64::from(*pid), 160_000),
                    1000 + m.noise(u64::from(*pid) + 1, 12_000),
                );
                let tty = if cmd.starts_with('-') || cmd.starts_with("ps") { "pts/0" } else { "?" };
                let user = if u.len() > 8 {
                    format!("{}+", text::truncate(u, 7))
                } else {
                    (*u).to_owned()
                };
                io.out(format!("{user:<8} {pid:7}  0.0  0.{} {vsz:6} {rss:5} {tty:<8} Ss   Jan01   0:00 {cmd}\n", m.noise(u64::from(*pid) + 2, 9)));
            }
        }
        0
    }

    fn download_tool(&mut self, tool: &str, args: &[String]) -> Vec<String> {
        let tool: &'static str = match tool {
            "wget" => "wget",
            "curl" => "curl",
            "tftp" => "tftp",
            _ => "ftpget",
        };
        let mut urls: Vec<String> = args.iter().filter(|a| a.contains("://")).cloned().collect();
        if urls.is_empty() && matches!(tool, "tftp" | "ftpget") {
            // busybox tftp -g -r FILE HOST [PORT]; ftpget HOST LOCAL REMOTE.
            let (f, rest) = flags(args);
            let remote = args.iter().position(|a| a == "-r").and_then(|i| args.get(i + 1)).cloned();
            let positional: Vec<&str> =
                rest.into_iter().filter(|a| Some(*a) != remote.as_deref()).collect();
            let _ = f;
            if let Some(host) = positional.first() {
                let file = match (tool, &remote) {
                    ("tftp", Some(r)) => r.clone(),
                    // tftp-hpa: `tftp HOST -c get FILE`.
                    ("tftp", None) => positional
                        .last()
                        .filter(|l| **l != *host)
                        .map(|s| (*s).to_owned())
                        .unwrap_or_default(),
                    _ => positional.get(2).map(|s| (*s).to_owned()).unwrap_or_default(),
                };
                let scheme = if tool == "tftp" { "tftp" } else { "ftp" };
                urls.push(format!("{scheme}://{host}/{}", file.trim_start_matches('/')));
            }
        }
        if urls.is_empty() {
            // `wget host/path` without a scheme.
            let bare =
                args.iter().find(|a| !a.starts_with('-') && (a.contains('/') || a.contains('.')));
            if let Some(a) = bare.filter(|_| matches!(tool, "wget" | "curl")) {
                urls.push(format!("http://{a}"));
            }
        }
        for u in urls.iter().take(16) {
            self.events
                .push(ShellEvent::Download { url: text::truncate(u, 2048).to_owned(), tool });
        }
        urls
    }

    fn wget(&mut self, args: &[String], io: &mut Io) -> i32 {
        let urls = self.download_tool("wget", args);
        let (f, _) = flags(args);
        if urls.is_empty() {
            io.err("wget: missing URL\nUsage: wget [OPTION]... [URL]...\n\nTry `wget --help' for more options.\n");
            return 1;
        }
        let quiet = f.contains('q');
        for u in &urls {
            let (host, port) = host_port(u);
            if quiet {
                continue;
            }
            io.err(format!("--{}--  {u}\n", text::iso(text::now())));
            if host.parse::<std::net::IpAddr>().is_ok() {
                io.err(format!("Connecting to {host}:{port}... failed: Connection refused.\n"));
            } else {
                io.err(format!("Resolving {host} ({host})... failed: Temporary failure in name resolution.\nwget: unable to resolve host address ‘{host}’\n"));
            }
        }
        4
    }

    fn curl(&mut self, args: &[String], io: &mut Io) -> i32 {
        let urls = self.download_tool("curl", args);
        let (f, _) = flags(args);
        let Some(u) = urls.first() else {
            io.err("curl: try 'curl --help' or 'curl --manual' for more information\n");
            return 2;
        };
        let (host, port) = host_port(u);
        let silent = f.contains('s') && !f.contains('S');
        if host.parse::<std::net::IpAddr>().is_ok() {
            if !silent {
                io.err(format!("curl: (7) Failed to connect to {host} port {port} after 0 ms: Couldn't connect to server\n"));
            }
            7
        } else {
            if !silent {
                io.err(format!("curl: (6) Could not resolve host: {host}\n"));
            }
            6
        }
    }

    fn lscpu(&self, io: &mut Io) -> i32 {
        let m = &self.machine;
        let (vendor, family, model, mhz) = m.cpu_row();
        io.out(format!(
            "Architecture:            x86_64\n  CPU op-mode(s):        32-bit, 64-bit\n  Address sizes:         46 bits physical, 48 bits virtual\n  Byte Order:            Little Endian\nCPU(s):                  {n}\n  On-line CPU(s) list:   0-{last}\nVendor ID:               {vendor}\n  Model name:            {model_name}\n    CPU family:          {family}\n    Model:               {model}\n    Thread(s) per core:  1\n    Core(s) per socket:  {n}\n    Socket(s):           1\n    BogoMIPS:            {bogo:.2}\nVirtualization features: \n  Hypervisor vendor:     KVM\n  Virtualization type:   full\n",
            n = m.cpus,
            last = m.cpus.saturating_sub(1),
            model_name = m.cpu_model,
            bogo = mhz.parse::<f64>().unwrap_or(2400.0) * 2.0,
        ));
        0
    }

    fn df(&self, f: &str, io: &mut Io) -> i32 {
        let total = (20 + self.machine.noise(101, 8) * 10) * 1024 * 1024;
        let used = total * (10 + self.machine.noise(102, 50)) / 100;
        let ram = self.machine.mem_kib / 2;
        let rows = [
            ("udev", ram - 1000, 0u64, "/dev"),
            ("tmpfs", self.machine.mem_kib / 10, 600, "/run"),
            ("/dev/vda1", total, used, "/"),
            ("tmpfs", ram, 0, "/dev/shm"),
            ("tmpfs", 5120, 0, "/run/lock"),
        ];
        let h = f.contains('h');
        io.out(if h {
            "Filesystem      Size  Used Avail Use% Mounted on\n"
        } else {
            "Filesystem     1K-blocks    Used Available Use% Mounted on\n"
        });
        for (fs, size, used, mnt) in rows {
            let avail = size.saturating_sub(used);
            let pct = if size == 0 { 0 } else { (used * 100).div_ceil(size) };
            if h {
                io.out(format!(
                    "{fs:<15} {:>4}  {:>4} {:>5} {pct:>3}% {mnt}\n",
                    human(size * 1024, false),
                    human(used * 1024, false).replace(".0", ""),
                    human(avail * 1024, false)
                ));
            } else {
                io.out(format!("{fs:<14} {size:>10} {used:>7} {avail:>9} {pct:>3}% {mnt}\n"));
            }
        }
        0
    }

    fn grep(&self, args: &[String], io: &mut Io) -> i32 {
        let (f, rest) = flags(args);
        let Some((pat, files)) = rest.split_first() else {
            io.err("Usage: grep [OPTION]... PATTERNS [FILE]...\nTry 'grep --help' for more information.\n");
            return 2;
        };
        let ci = f.contains('i');
        let input = self.inputs(files, io);
        let text = String::from_utf8_lossy(&input);
        // Plain substrings, with `a|b` alternatives as egrep would take them.
        let alts: Vec<String> = pat
            .split(['|'])
            .map(|p| p.replace("\\", ""))
            .map(|p| if ci { p.to_lowercase() } else { p })
            .collect();
        let mut count = 0;
        for line in text.lines() {
            let l = if ci { line.to_lowercase() } else { line.to_owned() };
            let hit =
                alts.iter().any(|a| l.contains(a.trim_start_matches('^').trim_end_matches('$')));
            if hit != f.contains('v') {
                count += 1;
                if !f.contains('c') && !f.contains('q') {
                    io.out(format!("{line}\n"));
                }
            }
        }
        if f.contains('c') {
            io.out(format!("{count}\n"));
        }
        i32::from(count == 0)
    }

    fn wc(&self, f: &str, rest: &[&str], io: &mut Io) -> i32 {
        let input = self.inputs(rest, io);
        let lines = input.iter().filter(|b| **b == b'\n').count();
        let words = String::from_utf8_lossy(&input).split_whitespace().count();
        let bytes = input.len();
        let mut v = Vec::new();
        if f.contains('l') {
            v.push(lines);
        }
        if f.contains('w') {
            v.push(words);
        }
        if f.contains('c') || f.contains('m') {
            v.push(bytes);
        }
        if v.is_empty() {
            io.out(format!("{lines:7} {words:7} {bytes:7}\n"));
        } else if v.len() == 1 && rest.is_empty() {
            io.out(format!("{}\n", v.first().copied().unwrap_or(0)));
        } else {
            let s: Vec<String> = v.iter().map(|n| format!("{n:7}")).collect();
            io.out(format!("{}\n", s.join(" ")));
        }
        0
    }

    fn head_tail(&self, head: bool, args: &[String], io: &mut Io) -> i32 {
        let mut n: usize = 10;
        let mut bytes: Option<usize> = None;
        let mut files = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "-n" {
                n = it.next().and_then(|v| v.trim_start_matches('+').parse().ok()).unwrap_or(10);
            } else if a == "-c" {
                bytes = it.next().and_then(|v| v.parse().ok());
            } else if let Some(v) =
                a.strip_prefix("-n").or_else(|| a.strip_prefix('-')).and_then(|v| v.parse().ok())
            {
                n = v;
            } else if let Some(v) = a.strip_prefix("-c").and_then(|v| v.parse().ok()) {
                bytes = Some(v);
            } else if !a.starts_with('-') {
                files.push(a.as_str());
            }
        }
        let input = self.inputs(&files, io);
        if let Some(c) = bytes {
            let s = if head {
                input.get(..c.min(input.len()))
            } else {
                input.get(input.len().saturating_sub(c)..)
            };
            io.out(s.unwrap_or_default());
            return 0;
        }
        let text = String::from_utf8_lossy(&input);
        let lines: Vec<&str> = text.lines().collect();
        let sel = if head {
            lines.get(..n.min(lines.len()))
        } else {
            lines.get(lines.len().saturating_sub(n)..)
        };
        for l in sel.unwrap_or_default() {
            io.out(format!("{l}\n"));
        }
        0
    }

    /// The awk programs bots use: `{print $2, $3}` with an optional `NR == n` guard and `-F`.
    fn awk(&self, args: &[String], io: &mut Io) -> i32 {
        let mut sep: Option<String> = None;
        let mut prog: Option<&str> = None;
        let mut files = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "-F" {
                sep = it.next().cloned();
            } else if let Some(s) = a.strip_prefix("-F") {
                sep = Some(s.to_owned());
            } else if prog.is_none() {
                prog = Some(a);
            } else {
                files.push(a.as_str());
            }
        }
        let Some(prog) = prog else {
            io.err("usage: awk [-F fs][-v var=value][prog | -f progfile][file ...]\n");
            return 2;
        };
        let (guard, body) = match prog.find('{') {
            Some(i) => {
                (prog.get(..i).unwrap_or_default().trim(), prog.get(i + 1..).unwrap_or_default())
            }
            None => (prog.trim(), ""),
        };
        let body = body.trim_end().trim_end_matches('}').trim().trim_end_matches(';').trim();
        let want_nr: Option<usize> = guard
            .split_once("==")
            .filter(|(l, _)| l.trim().ends_with("NR"))
            .and_then(|(_, r)| r.trim().parse().ok());
        let items: Vec<&str> = body
            .strip_prefix("print")
            .map(|s| s.trim())
            .unwrap_or("$0")
            .split(',')
            .map(str::trim)
            .collect();
        let input = self.inputs(&files, io);
        let text = String::from_utf8_lossy(&input);
        for (i, line) in text.lines().enumerate() {
            if want_nr.is_some_and(|n| n != i + 1) {
                continue;
            }
            let fields: Vec<&str> = match &sep {
                Some(s) if !s.is_empty() && s != " " => line.split(s.as_str()).collect(),
                _ => line.split_whitespace().collect(),
            };
            let mut out = Vec::new();
            for item in &items {
                let mut s = String::new();
                for tok in item.split_whitespace() {
                    if let Some(n) = tok.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                        s.push_str(if n == 0 {
                            line
                        } else {
                            fields.get(n - 1).copied().unwrap_or("")
                        });
                    } else if tok == "NF" {
                        s.push_str(&fields.len().to_string());
                    } else {
                        s.push_str(tok.trim_matches('"'));
                    }
                }
                out.push(s);
            }
            io.out(format!("{}\n", out.join(" ")));
        }
        0
    }

    fn cut(&self, args: &[String], io: &mut Io) -> i32 {
        let mut delim = "\t".to_owned();
        let mut fields: Vec<usize> = Vec::new();
        let mut files = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let (opt, val) = if a.len() > 2 && a.starts_with('-') {
                (a.get(..2).unwrap_or(""), Some(a.get(2..).unwrap_or("").to_owned()))
            } else {
                (a.as_str(), None)
            };
            match opt {
                "-d" => delim = val.or_else(|| it.next().cloned()).unwrap_or_default(),
                "-f" => {
                    fields = val
                        .or_else(|| it.next().cloned())
                        .unwrap_or_default()
                        .split(',')
                        .filter_map(|f| f.parse().ok())
                        .collect();
                }
                _ => files.push(a.as_str()),
            }
        }
        let input = self.inputs(&files, io);
        for line in String::from_utf8_lossy(&input).lines() {
            let parts: Vec<&str> = line.split(delim.as_str()).collect();
            let sel: Vec<&str> =
                fields.iter().filter_map(|f| parts.get(f.saturating_sub(1)).copied()).collect();
            io.out(format!("{}\n", sel.join(&delim)));
        }
        0
    }

    fn apt(&self, rest: &[&str], io: &mut Io) -> i32 {
        if self.user.uid != 0 {
            io.err("E: Could not open lock file /var/lib/dpkg/lock-frontend - open (13: Permission denied)\nE: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), are you root?\n");
            return 100;
        }
        io.out("Reading package lists... Done\nBuilding dependency tree... Done\nReading state information... Done\n");
        if rest.first() == Some(&"install") {
            for p in rest.iter().skip(1) {
                io.err(format!("E: Unable to locate package {p}\n"));
            }
            return 100;
        }
        0
    }

    fn ip(&self, rest: &[&str], io: &mut Io) -> i32 {
        let m = &self.machine;
        let mac: Vec<String> = m.mac.iter().map(|b| format!("{b:02x}")).collect();
        match rest.first().copied() {
            Some("a" | "addr" | "address") => {
                io.out(format!(
                    "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n    inet 127.0.0.1/8 scope host lo\n       valid_lft forever preferred_lft forever\n2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP group default qlen 1000\n    link/ether {} brd ff:ff:ff:ff:ff:ff\n    altname enp0s3\n    inet {}/24 brd {}.{}.{}.255 scope global dynamic eth0\n       valid_lft {} sec preferred_lft {} sec\n",
                    mac.join(":"),
                    m.ip,
                    m.ip.octets()[0],
                    m.ip.octets()[1],
                    m.ip.octets()[2],
                    80_000 + m.noise(111, 6000),
                    80_000 + m.noise(111, 6000)
                ));
                0
            }
            Some("r" | "route") => {
                let o = m.ip.octets();
                io.out(format!("default via {}.{}.{}.1 dev eth0 proto dhcp src {} metric 100\n{}.{}.{}.0/24 dev eth0 proto kernel scope link src {}\n", o[0], o[1], o[2], m.ip, o[0], o[1], o[2], m.ip));
                0
            }
            _ => {
                io.err("Usage: ip [ OPTIONS ] OBJECT { COMMAND | help }\n       ip [ -force ] -batch filename\n");
                255
            }
        }
    }

    fn dd(&self, args: &[String], io: &mut Io) -> i32 {
        let mut input: Option<String> = None;
        let mut bs: usize = 512;
        let mut count: Option<usize> = None;
        for a in args {
            if let Some(v) = a.strip_prefix("if=") {
                input = Some(v.to_owned());
            } else if let Some(v) = a.strip_prefix("bs=") {
                bs = v.parse().unwrap_or(512).clamp(1, 1 << 20);
            } else if let Some(v) = a.strip_prefix("count=") {
                count = v.parse().ok();
            }
        }
        let data = match &input {
            Some(p) => match self.read(&self.abs(p)) {
                Ok(d) => d,
                Err(e) => {
                    io.err(format!("dd: failed to open '{p}': {}\n", e.text()));
                    return 1;
                }
            },
            None => std::mem::take(&mut io.stdin),
        };
        let n = count.map(|c| c.saturating_mul(bs)).unwrap_or(data.len()).min(data.len());
        io.out(data.get(..n).unwrap_or_default());
        let recs = n.div_ceil(bs);
        io.err(format!(
            "{recs}+0 records in\n{recs}+0 records out\n{n} bytes copied, 4.3e-05 s, {:.1} MB/s\n",
            n as f64 / 43.0
        ));
        0
    }
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn host_port(url: &str) -> (String, u16) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let hostport = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let default = match scheme {
        "https" => 443,
        "ftp" => 21,
        "tftp" => 69,
        _ => 80,
    };
    match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            (h.to_owned(), p.parse().unwrap_or(default))
        }
        _ => (hostport.to_owned(), default),
    }
}

/// `chmod` modes: octal or symbolic (`+x`, `u+rwx`, `go=`, `a-w`).
fn apply_mode(old: u16, spec: &str) -> u16 {
    if let Ok(v) = u16::from_str_radix(spec, 8) {
        return v & 0o7777;
    }
    let mut mode = old;
    for clause in spec.split(',') {
        let Some(op_at) = clause.find(['+', '-', '=']) else { continue };
        let who = clause.get(..op_at).unwrap_or("");
        let op = clause.get(op_at..=op_at).unwrap_or("+");
        let perms = clause.get(op_at + 1..).unwrap_or("");
        let mut mask = 0u16;
        let who = if who.is_empty() { "a" } else { who };
        for w in who.chars() {
            mask |= match w {
                'u' => 0o700,
                'g' => 0o070,
                'o' => 0o007,
                _ => 0o777,
            };
        }
        let mut bits = 0u16;
        for p in perms.chars() {
            bits |= match p {
                'r' => 0o444,
                'w' => 0o222,
                'x' => 0o111,
                _ => 0,
            };
        }
        let bits = bits & mask;
        mode = match op {
            "+" => mode | bits,
            "-" => mode & !bits,
            _ => (mode & !mask) | bits,
        };
    }
    mode
}

/// Backslash escapes of `echo -e` and `printf`; the bool is `\c` (stop output).
fn unescape(s: &str) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = b.get(i) else {
            out.push(b'\\');
            break;
        };
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'e' => out.push(0x1b),
            b'f' => out.push(0x0c),
            b'v' => out.push(0x0b),
            b'\\' => out.push(b'\\'),
            b'c' => return (out, true),
            b'x' => {
                let mut v = 0u8;
                let mut n = 0;
                while n < 2 {
                    match b.get(i).and_then(|c| (*c as char).to_digit(16)) {
                        Some(d) => {
                            v = v.wrapping_mul(16).wrapping_add(d as u8);
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                if n == 0 {
                    out.extend_from_slice(b"\\x");
                } else {
                    out.push(v);
                }
            }
            b'0'..=b'7' => {
                // `\0NNN` (echo) and `\NNN` (printf): up to three octal digits.
                let mut v: u32 = 0;
                let mut n = 0;
                if e != b'0' {
                    v = u32::from(e - b'0');
                    n = 1;
                }
                while n < 3 {
                    match b.get(i).filter(|c| (b'0'..=b'7').contains(*c)) {
                        Some(d) => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                            n += 1;
                        }
                        None => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    (out, false)
}

fn printf(args: &[String], io: &mut Io) -> i32 {
    let Some((fmt, rest)) = args.split_first() else {
        io.err("printf: usage: printf [-v var] format [arguments]\n");
        return 2;
    };
    let mut args = rest.iter();
    let mut out = Vec::new();
    for _ in 0..64 {
        let b = fmt.as_bytes();
        let mut i = 0;
        let mut lit = String::new();
        let mut used = false;
        while let Some(&c) = b.get(i) {
            i += 1;
            if c != b'%' {
                lit.push(c as char);
                continue;
            }
            out.extend(unescape(&std::mem::take(&mut lit)).0);
            // Skip flags and width.
            while b.get(i).is_some_and(|c| b"-+ #0123456789.".contains(c)) {
                i += 1;
            }
            let conv = b.get(i).copied().unwrap_or(b'%');
            i += 1;
            match conv {
                b'%' => out.push(b'%'),
                b's' => {
                    used = true;
                    out.extend_from_slice(args.next().map(String::as_bytes).unwrap_or_default());
                }
                b'b' => {
                    used = true;
                    out.extend(unescape(args.next().map(String::as_str).unwrap_or_default()).0);
                }
                b'd' | b'i' | b'u' => {
                    used = true;
                    let v: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
                    out.extend_from_slice(v.to_string().as_bytes());
                }
                b'x' => {
                    used = true;
                    let v: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
                    out.extend_from_slice(format!("{v:x}").as_bytes());
                }
                other => {
                    out.push(b'%');
                    out.push(other);
                }
            }
        }
        out.extend(unescape(&lit).0);
        if !used || args.len() == 0 {
            break;
        }
    }
    io.out(out);
    0
}

/// `ls` without `-l` on a terminal: names in columns, top to bottom, 80 characters wide.
fn columns(names: &[&str]) -> String {
    let width = 80;
    let n = names.len();
    let mut best_rows = n;
    for rows in 1..=n {
        let cols = n.div_ceil(rows);
        let mut total = 0;
        for c in 0..cols {
            let w = (0..rows)
                .filter_map(|r| names.get(c * rows + r))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0);
            total += w + if c + 1 < cols { 2 } else { 0 };
        }
        if total <= width {
            best_rows = rows;
            break;
        }
    }
    let rows = best_rows.max(1);
    let cols = n.div_ceil(rows);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            (0..rows)
                .filter_map(|r| names.get(c * rows + r))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for r in 0..rows {
        let mut line = String::new();
        for c in 0..cols {
            if let Some(name) = names.get(c * rows + r) {
                line.push_str(name);
                if c + 1 < cols && names.get((c + 1) * rows + r).is_some() {
                    let pad = widths.get(c).copied().unwrap_or(0) + 2 - name.chars().count();
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_escapes() {
        assert_eq!(apply_mode(0o644, "+x"), 0o755);
        assert_eq!(apply_mode(0o755, "go="), 0o700);
        assert_eq!(apply_mode(0o600, "777"), 0o777);
        assert_eq!(unescape(r"\x7fELF\n\0101\c!"), (b"\x7fELF\nA".to_vec(), true));
        assert_eq!(host_port("http://1.2.3.4:8080/x"), ("1.2.3.4".into(), 8080));
        assert_eq!(host_port("https://evil.example/x"), ("evil.example".into(), 443));
        assert_eq!(columns(&["a", "bb", "c"]), "a  bb  c\n");
    }
}
