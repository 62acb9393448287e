//! The shared fake shell: a pure library (no I/O, no processes) that answers command lines
//! the way a bash login shell on a Debian or Ubuntu server would, for the SSH and Telnet
//! emulators.
//!
//! Nothing an attacker types is ever evaluated or executed: lines are split by
//! [`parse`](self) into words, operators and redirections as text, and every command is a Rust
//! function that produces plausible output from the fake machine. Downloads (`wget`, `curl`,
//! `tftp`, `ftpget`) are recorded as URLs and never fetched.
//!
//! # API
//!
//! ```
//! use apiary_pot::shell::{Machine, Shell, ShellConfig};
//!
//! // Once per service: resolve the machine (random host name, users, kernel, ... unless the
//! // config names them; `seed` makes the choice repeatable).
//! let machine = Machine::new(&ShellConfig { seed: Some(7), ..Default::default() }).unwrap();
//! // Once per login: a session with its own copy-on-write view of the filesystem.
//! let mut sh = Shell::new(&machine, "root");
//! sh.set_client("203.0.113.9".parse().ok());
//! let prompt = sh.prompt(); // "root@<host>:~# "
//! let out = sh.run_line("uname -a; wget http://198.51.100.7/x.sh");
//! // out.output: bytes for the terminal, lines end in "\n" (terminals want `to_crlf`).
//! // out.events: one `Command` per line, one `Download` per URL; turn each into an apiary
//! // event with `ShellEvent::to_event(&conn.ctx())` and emit it.
//! // out.exit: the user typed `exit`/`logout`: close the channel (status in `out.status`).
//! assert!(!out.exit);
//! // At session end: files the attacker wrote (echo-loaders), as `file.upload` events.
//! let files = sh.finish();
//! # let _ = (prompt, files);
//! ```
//!
//! [`LineEditor`] turns raw terminal bytes (SSH pty, Telnet) into lines with echo, backspace,
//! Ctrl-C and Ctrl-D handling.

mod commands;
pub(crate) mod fs;
mod machine;
mod parse;
mod term;
pub(crate) mod text;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use apiary_event::{Command, Download, Event, Kind, Payload};

use crate::SessionCtx;
pub(crate) use commands::mode_string;
use fs::{Fs, normalize};
use machine::User;
pub use machine::{Machine, ShellConfig};
use parse::{Join, Part, RedirKind, Simple, SyntaxError, Word};
pub use term::{EditorEvent, LineEditor, to_crlf};
pub(crate) use text::truncate;

/// Longest line the shell interprets; longer input is cut (bash would take it, bots rarely
/// send more, and it bounds the work per line).
pub const MAX_LINE: usize = 64 * 1024;
/// Bytes of output one line may produce (`cat` of a big file, `yes`).
const MAX_OUTPUT: usize = 256 * 1024;
/// Nesting of `$(...)`, `sh -c` and scripts.
const MAX_DEPTH: u8 = 4;
/// Bytes of a written file kept in its `file.upload` event.
const MAX_CAPTURE: usize = 64 * 1024;

/// Something the session should record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShellEvent {
    /// A line as typed (`command.input`).
    Command {
        /// The line.
        input: String,
        /// Whether every command on it was one the shell knows.
        known: bool,
    },
    /// A URL a download tool was pointed at (`download.attempt`); never fetched.
    Download {
        /// The URL (`tftp://host/file` for TFTP).
        url: String,
        /// `wget`, `curl`, `tftp` or `ftpget`.
        tool: &'static str,
    },
    /// A file the attacker created or changed (`file.upload`), reported by [`Shell::finish`].
    File {
        /// Absolute path in the fake filesystem.
        path: String,
        /// Its content.
        data: Vec<u8>,
    },
}

impl ShellEvent {
    /// The apiary event for this record, stamped with the session's fields.
    pub fn to_event(&self, ctx: &SessionCtx) -> Event {
        match self {
            Self::Command { input, known } => {
                let mut e = ctx.event(Kind::COMMAND_INPUT);
                e.command = Some(Box::new(Command {
                    input: input.clone(),
                    interpreter: Some("shell".into()),
                    known: Some(*known),
                }));
                e
            }
            Self::Download { url, tool } => {
                let mut e = ctx.event(Kind::DOWNLOAD_ATTEMPT);
                e.download =
                    Some(Box::new(Download { url: url.clone(), sha256: None, size: None }));
                e.message = Some((*tool).into());
                e
            }
            Self::File { path, data } => {
                let mut e = ctx.event(Kind::FILE_UPLOAD);
                let p = Payload::new(data, MAX_CAPTURE);
                e.download = Some(Box::new(Download {
                    url: path.clone(),
                    sha256: Some(p.sha256_hex()),
                    size: Some(p.len),
                }));
                e.payload = Some(p);
                e.message = Some("shell".into());
                e
            }
        }
    }
}

/// What one line produced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShellOutput {
    /// Bytes for the terminal (stdout and stderr as a terminal interleaves them), `\n` line
    /// ends.
    pub output: Vec<u8>,
    /// Standard output alone (SSH `exec` sends it on the data stream).
    pub stdout: Vec<u8>,
    /// Standard error alone (SSH `exec` sends it as extended data).
    pub stderr: Vec<u8>,
    /// Records for the session.
    pub events: Vec<ShellEvent>,
    /// The shell ended (`exit`, `logout`).
    pub exit: bool,
    /// Exit status of the last command (`$?`, SSH `exit-status`).
    pub status: i32,
}

impl ShellOutput {
    fn flush(&mut self, io: &mut Io) {
        self.output.extend_from_slice(&io.err);
        self.output.extend_from_slice(&io.out);
        self.stderr.append(&mut io.err);
        self.stdout.append(&mut io.out);
    }
}

/// Streams of one command.
#[derive(Debug, Default)]
pub(crate) struct Io {
    pub(crate) stdin: Vec<u8>,
    pub(crate) out: Vec<u8>,
    pub(crate) err: Vec<u8>,
    /// Stdout is not the terminal (piped or redirected): `ls` prints one name per line.
    pub(crate) piped: bool,
}

impl Io {
    pub(crate) fn out(&mut self, s: impl AsRef<[u8]>) {
        if self.out.len() < MAX_OUTPUT {
            self.out.extend_from_slice(s.as_ref());
        }
    }
    pub(crate) fn err(&mut self, s: impl AsRef<[u8]>) {
        if self.err.len() < MAX_OUTPUT {
            self.err.extend_from_slice(s.as_ref());
        }
    }
}

/// One login session on the fake machine.
#[derive(Debug)]
pub struct Shell {
    machine: Arc<Machine>,
    fs: Fs,
    user: User,
    cwd: String,
    oldpwd: String,
    /// Variables set by the attacker (`export`, `X=y`), bounded.
    env: BTreeMap<String, String>,
    status: i32,
    history: Vec<String>,
    client: Option<IpAddr>,
    login: u64,
    pid: u32,
    depth: u8,
    unknown: bool,
    events: Vec<ShellEvent>,
    exit: bool,
}

const MAX_ENV: usize = 64;
const MAX_HISTORY: usize = 500;

impl Shell {
    /// A login of `user` (created on the fly, with a home directory, when the machine does
    /// not have it: an accept-any policy lets bots in under any name).
    pub fn new(machine: &Arc<Machine>, user: &str) -> Self {
        let user_name: String = user
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(32)
            .collect();
        let user_name = if user_name.is_empty() { "user".to_owned() } else { user_name };
        let now = text::now();
        let (user, fresh) = match machine.users.iter().find(|u| u.name == user_name) {
            Some(u) => (u.clone(), false),
            None => {
                let uid = 999 + machine.users.len() as u32;
                (User { home: format!("/home/{user_name}"), name: user_name, uid }, true)
            }
        };
        let mut fs = Fs::new(Arc::clone(machine), 0);
        if fresh {
            let line =
                format!("{0}:x:{1}:{1}:{0},,,:{2}:/bin/bash\n", user.name, user.uid, user.home);
            let _ = fs.write("/etc/passwd", line.as_bytes(), true, now);
            let _ = fs.write(
                "/etc/group",
                format!("{}:x:{}:\n", user.name, user.uid).as_bytes(),
                true,
                now,
            );
            let _ = fs.mkdir(&user.home, now);
            let _ = fs.update(&user.home, |e| e.uid = user.uid);
        }
        fs.uid = user.uid;
        let pid = 1000 + machine.noise(u64::from(user.uid) ^ now, 30_000) as u32;
        Self {
            cwd: user.home.clone(),
            oldpwd: user.home.clone(),
            machine: Arc::clone(machine),
            fs,
            user,
            env: BTreeMap::new(),
            status: 0,
            history: Vec::new(),
            client: None,
            login: now,
            pid,
            depth: 0,
            unknown: false,
            events: Vec::new(),
            exit: false,
        }
    }

    /// The attacker's address, shown by `w` and `who`.
    pub fn set_client(&mut self, ip: Option<IpAddr>) {
        self.client = ip;
    }

    /// The machine this shell runs on.
    pub fn machine(&self) -> &Arc<Machine> {
        &self.machine
    }

    /// The session's filesystem view (the SFTP server works on it too).
    pub(crate) fn fs(&self) -> &Fs {
        &self.fs
    }

    /// The same view, to change.
    pub(crate) fn fs_mut(&mut self) -> &mut Fs {
        &mut self.fs
    }

    /// The login's home directory (where an SFTP session starts).
    pub(crate) fn home(&self) -> &str {
        &self.user.home
    }

    /// The bash prompt: `root@host:~# `, `alex@host:/tmp$ `.
    pub fn prompt(&self) -> String {
        let sign = if self.user.uid == 0 { '#' } else { '$' };
        format!("{}@{}:{}{sign} ", self.user.name, self.machine.hostname, self.tilde(&self.cwd))
    }

    /// The login banner an SSH or Telnet login prints before the first prompt.
    pub fn motd(&self) -> String {
        let d = &self.machine.distro;
        let mut s = format!(
            "Linux {} {} {} x86_64\n",
            self.machine.hostname, d.kernel_release, d.kernel_version
        );
        if d.ubuntu {
            s = format!(
                "Welcome to {} (GNU/Linux {} x86_64)\n\n * Documentation:  https://help.ubuntu.com\n * Management:     https://landscape.canonical.com\n * Support:        https://ubuntu.com/pro\n",
                d.pretty, d.kernel_release
            );
        } else {
            s.push_str(fs::MOTD_DEBIAN);
        }
        let last = self.login.saturating_sub(self.machine.noise(3, 86_400 * 3) + 600);
        let from = self.client.map(|c| c.to_string()).unwrap_or_else(|| "10.0.0.2".into());
        s.push_str(&format!("Last login: {} from {from}\n", text::ctime(last)));
        s
    }

    fn tilde(&self, p: &str) -> String {
        if p == self.user.home {
            "~".into()
        } else if let Some(rest) = p.strip_prefix(&format!("{}/", self.user.home)) {
            format!("~/{rest}")
        } else {
            p.into()
        }
    }

    /// Interprets one line.
    pub fn run_line(&mut self, line: &str) -> ShellOutput {
        let line = text::truncate(line.trim_end_matches(['\r', '\n']), MAX_LINE);
        let mut out = ShellOutput::default();
        if line.trim().is_empty() {
            out.status = self.status;
            return out;
        }
        if self.history.len() >= MAX_HISTORY {
            self.history.remove(0);
        }
        self.history.push(line.to_owned());
        self.unknown = false;
        let mut io = Io::default();
        self.exec(line, &mut io, Some(&mut out));
        let mut events = vec![ShellEvent::Command { input: line.to_owned(), known: !self.unknown }];
        events.append(&mut self.events);
        out.events = events;
        out.exit = self.exit;
        out.status = self.status;
        out
    }

    /// Whether the shell has ended.
    pub fn exited(&self) -> bool {
        self.exit
    }

    /// Ends the session: every file the attacker created or changed, for `file.upload`.
    pub fn finish(&mut self) -> Vec<ShellEvent> {
        self.fs
            .written_files()
            .filter(|(p, _)| !matches!(*p, "/etc/passwd" | "/etc/group"))
            .map(|(p, d)| ShellEvent::File { path: p.to_owned(), data: d.to_vec() })
            .collect()
    }

    /// Runs a line (or a nested `sh -c`, script line, substitution); output goes into `io`.
    /// At the top level (`top`), each pipeline's output is moved there as it completes, so
    /// the terminal sees stdout and stderr in the order a real shell would produce them.
    fn exec(&mut self, line: &str, io: &mut Io, mut top: Option<&mut ShellOutput>) {
        let list = match parse::parse(line) {
            Ok(l) => l,
            Err(e) => {
                let msg = match e {
                    SyntaxError::Unterminated(c) => {
                        let c = if c == '(' {
                            ')'
                        } else if c == '{' {
                            '}'
                        } else {
                            c
                        };
                        format!("-bash: unexpected EOF while looking for matching `{c}'\n")
                    }
                    SyntaxError::Unexpected(t) => {
                        format!("-bash: syntax error near unexpected token `{t}'\n")
                    }
                    SyntaxError::TooComplex => "-bash: xmalloc: cannot allocate memory\n".into(),
                };
                io.err(msg);
                self.status = 2;
                self.unknown = true;
                if let Some(t) = top {
                    t.flush(io);
                }
                return;
            }
        };
        let mut join = Join::Seq;
        for (pipeline, next) in list {
            if self.exit {
                break;
            }
            let run = match join {
                Join::Seq => true,
                Join::And => self.status == 0,
                Join::Or => self.status != 0,
            };
            join = next;
            if run {
                self.status = self.pipeline(&pipeline, io);
                if let Some(t) = top.as_deref_mut() {
                    t.flush(io);
                }
            }
        }
    }

    fn pipeline(&mut self, cmds: &[Simple], io: &mut Io) -> i32 {
        let mut stdin = Vec::new();
        let mut status = 0;
        let n = cmds.len();
        for (i, cmd) in cmds.iter().enumerate() {
            let mut cio = Io {
                stdin: std::mem::take(&mut stdin),
                piped: i + 1 < n || io.piped,
                ..Io::default()
            };
            status = self.simple(cmd, &mut cio);
            io.err(&cio.err);
            if i + 1 < n {
                stdin = cio.out;
            } else {
                io.out(&cio.out);
            }
        }
        status
    }

    fn simple(&mut self, cmd: &Simple, io: &mut Io) -> i32 {
        let mut words = Vec::with_capacity(cmd.words.len());
        for w in &cmd.words {
            words.push(self.expand(w));
        }
        // Leading NAME=value words are assignments.
        let mut start = 0;
        for w in &words {
            match w.split_once('=') {
                Some((k, v))
                    if !k.is_empty()
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    self.setenv(k, v);
                    start += 1;
                }
                _ => break,
            }
        }
        let words = words.get(start..).unwrap_or_default().to_vec();
        // Redirections: input first, outputs applied after the command ran.
        let mut outs: Vec<(u8, String, bool)> = Vec::new();
        let mut err_to_out = false;
        for r in &cmd.redirs {
            match &r.kind {
                RedirKind::In => {
                    let target = self.expand(&r.target);
                    let path = normalize(&self.cwd, &target);
                    match self.fs.stat(&path) {
                        Ok(e) if e.is_dir() => {
                            io.err(format!("-bash: {target}: Is a directory\n"));
                            return 1;
                        }
                        Ok(e) => io.stdin = e.data().to_vec(),
                        Err(e) => {
                            io.err(format!("-bash: {target}: {}\n", e.text()));
                            return 1;
                        }
                    }
                }
                RedirKind::Dup(1) if r.fd == 2 => err_to_out = true,
                RedirKind::Dup(_) => {}
                RedirKind::Out { append } => outs.push((r.fd, self.expand(&r.target), *append)),
            }
        }
        let redirected = outs.iter().any(|(fd, _, _)| *fd == 1);
        let mut cio = Io {
            stdin: std::mem::take(&mut io.stdin),
            piped: io.piped || redirected,
            ..Io::default()
        };
        let status = if words.is_empty() { 0 } else { self.command(&words, &mut cio) };
        if err_to_out {
            let e = std::mem::take(&mut cio.err);
            cio.out.extend_from_slice(&e);
        }
        for (fd, target, append) in outs {
            let data =
                if fd == 2 { std::mem::take(&mut cio.err) } else { std::mem::take(&mut cio.out) };
            let path = normalize(&self.cwd, &target);
            if let Err(e) = self.fs.write(&path, &data, append, text::now()) {
                io.err(format!("-bash: {target}: {}\n", e.text()));
                return 1;
            }
        }
        io.out(&cio.out);
        io.err(&cio.err);
        status
    }

    fn setenv(&mut self, k: &str, v: &str) {
        if self.env.len() < MAX_ENV || self.env.contains_key(k) {
            self.env.insert(k.to_owned(), text::truncate(v, 4096).to_owned());
        }
    }

    fn var(&self, name: &str) -> String {
        if let Some(v) = self.env.get(name) {
            return v.clone();
        }
        match name {
            "HOME" => self.user.home.clone(),
            "USER" | "LOGNAME" => self.user.name.clone(),
            "PWD" => self.cwd.clone(),
            "OLDPWD" => self.oldpwd.clone(),
            "SHELL" => "/bin/bash".into(),
            "HOSTNAME" => self.machine.hostname.clone(),
            "PATH" => self.path_var().into(),
            "TERM" => "xterm-256color".into(),
            "LANG" => "C.UTF-8".into(),
            "SHLVL" => "1".into(),
            "?" => self.status.to_string(),
            "$" => self.pid.to_string(),
            "#" => "0".into(),
            "0" => "-bash".into(),
            "RANDOM" => (self.machine.noise(text::now_nanos(), 32_768)).to_string(),
            "UID" => self.user.uid.to_string(),
            _ => String::new(),
        }
    }

    fn path_var(&self) -> &'static str {
        if self.user.uid == 0 {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        } else {
            "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
        }
    }

    fn expand(&mut self, w: &Word) -> String {
        let mut s = String::new();
        for p in &w.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Var(v) => s.push_str(&self.var(v)),
                Part::Subst(src) => s.push_str(&self.substitute(src)),
            }
        }
        // `~` and `~/x` at the start of a word.
        if s == "~" {
            return self.user.home.clone();
        }
        if let Some(rest) = s.strip_prefix("~/") {
            return format!("{}/{rest}", self.user.home);
        }
        s
    }

    /// `$(...)`: answered by this same fake shell, output captured.
    fn substitute(&mut self, src: &str) -> String {
        if self.depth >= MAX_DEPTH {
            return String::new();
        }
        self.depth += 1;
        let mut io = Io { piped: true, ..Io::default() };
        let exit = self.exit;
        self.exec(src, &mut io, None);
        // `exit` inside a substitution ends only its subshell.
        self.exit = exit;
        self.depth -= 1;
        let mut s = String::from_utf8_lossy(&io.out).into_owned();
        while s.ends_with('\n') {
            s.pop();
        }
        s
    }

    /// Runs `src` as a nested script (`sh -c`, `sh file`, `./script`).
    pub(crate) fn nested(&mut self, src: &str, io: &mut Io) -> i32 {
        if self.depth >= MAX_DEPTH {
            return 0;
        }
        self.depth += 1;
        let exit = self.exit;
        for line in src.lines().take(1000) {
            if self.exit {
                break;
            }
            self.exec(line, io, None);
        }
        // `exit` in a script or `sh -c` ends that child shell, not the login.
        self.exit = exit;
        self.depth -= 1;
        self.status
    }
}

#[cfg(test)]
mod tests;
