//! Telnet (HoneyPy's TelnetUnix, done properly): Linux telnetd's option negotiation sent at
//! once (no Enter needed, HoneyPy issue #2), a `login:` prompt, credentials captured as
//! `auth.attempt`, then the shared fake shell ([`crate::shell`]); `wget`/`curl` URLs become
//! `download.attempt` events, fetched only if the operator sets `fetch = true`
//! ([`crate::fetch`]); nothing typed is evaluated.
//!
//! The IAC layer ([`IacParser`]) is a total state machine: any bytes give data and commands,
//! subnegotiations are capped. It is shared with the Windows telnet emulator.

use std::collections::BTreeMap;
use std::sync::Arc;

use apiary_event::{Auth, AuthMethod, Kind, Transport};
use serde::Deserialize;

use super::{Handler, ServiceInfo, TcpService, options};
use crate::fetch::{self, Fetcher};
use crate::shell::{EditorEvent, LineEditor, Machine, Shell, ShellConfig, to_crlf};
use crate::{Conn, SessionError};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "telnet",
    aliases: &["TelnetUnix", "Telnet"],
    protocol: "telnet",
    description: "Linux telnetd login with a fake Debian shell (credentials and commands captured)",
    transports: &[Transport::Tcp],
    build,
};

/// Telnet command bytes (RFC 854).
pub(crate) mod cmd {
    pub(crate) const SE: u8 = 240;
    pub(crate) const SB: u8 = 250;
    pub(crate) const WILL: u8 = 251;
    pub(crate) const WONT: u8 = 252;
    pub(crate) const DO: u8 = 253;
    pub(crate) const DONT: u8 = 254;
    pub(crate) const IAC: u8 = 255;
}

/// Option codes we negotiate.
pub(crate) mod opt {
    pub(crate) const BINARY: u8 = 0;
    pub(crate) const ECHO: u8 = 1;
    pub(crate) const SGA: u8 = 3;
    pub(crate) const TTYPE: u8 = 24;
    pub(crate) const NAWS: u8 = 31;
    pub(crate) const TSPEED: u8 = 32;
    pub(crate) const XDISPLOC: u8 = 35;
    pub(crate) const AUTHENTICATION: u8 = 37;
    pub(crate) const NEW_ENVIRON: u8 = 39;
}

/// Longest subnegotiation kept.
const MAX_SB: usize = 512;
/// Longest user name or password line.
const MAX_LOGIN_LINE: usize = 256;

/// A telnet command seen in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelnetCmd {
    /// `IAC WILL/WONT/DO/DONT option`.
    Negotiate(u8, u8),
    /// `IAC SB option ... IAC SE`, the parameters unescaped (capped).
    Sub(u8, Vec<u8>),
    /// Any other two-byte command (NOP, AYT, IP, ...).
    Other(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    Iac,
    Option(u8),
    SbOption,
    Sb(u8),
    SbIac(u8),
}

/// The IAC state machine: strips commands out of the byte stream.
#[derive(Debug)]
pub struct IacParser {
    state: State,
    sb: Vec<u8>,
}

impl Default for IacParser {
    fn default() -> Self {
        Self { state: State::Data, sb: Vec::new() }
    }
}

impl IacParser {
    /// Feeds bytes: plain data goes to `data`, commands to `cmds`.
    pub fn feed(&mut self, input: &[u8], data: &mut Vec<u8>, cmds: &mut Vec<TelnetCmd>) {
        for &b in input {
            self.state = match self.state {
                State::Data if b == cmd::IAC => State::Iac,
                State::Data => {
                    data.push(b);
                    State::Data
                }
                State::Iac => match b {
                    cmd::IAC => {
                        data.push(cmd::IAC);
                        State::Data
                    }
                    cmd::WILL | cmd::WONT | cmd::DO | cmd::DONT => State::Option(b),
                    cmd::SB => State::SbOption,
                    other => {
                        cmds.push(TelnetCmd::Other(other));
                        State::Data
                    }
                },
                State::Option(verb) => {
                    cmds.push(TelnetCmd::Negotiate(verb, b));
                    State::Data
                }
                State::SbOption => {
                    self.sb.clear();
                    State::Sb(b)
                }
                State::Sb(o) if b == cmd::IAC => State::SbIac(o),
                State::Sb(o) => {
                    if self.sb.len() < MAX_SB {
                        self.sb.push(b);
                    }
                    State::Sb(o)
                }
                State::SbIac(o) => match b {
                    cmd::SE => {
                        cmds.push(TelnetCmd::Sub(o, std::mem::take(&mut self.sb)));
                        State::Data
                    }
                    cmd::IAC => {
                        if self.sb.len() < MAX_SB {
                            self.sb.push(cmd::IAC);
                        }
                        State::Sb(o)
                    }
                    // A broken subnegotiation: drop it and read on as data.
                    _ => State::Data,
                },
            };
        }
    }
}

/// A telnet line reader over [`Conn`]: answers negotiation, echoes when asked, edits lines.
pub(crate) struct TelnetIo {
    parser: IacParser,
    editor: LineEditor,
    /// Options whose request we already answered, so a peer cannot make us loop.
    answered: Vec<(u8, u8)>,
    /// Options we asked for with DO, and will accept.
    wanted: &'static [u8],
    /// Terminal type the client reported.
    pub(crate) terminal: Option<String>,
    /// Window size the client reported.
    pub(crate) window: Option<(u16, u16)>,
    pending: Vec<EditorEvent>,
}

impl TelnetIo {
    pub(crate) fn new(wanted: &'static [u8], max_line: usize) -> Self {
        Self {
            parser: IacParser::default(),
            editor: LineEditor::new(max_line),
            answered: Vec::new(),
            wanted,
            terminal: None,
            window: None,
            pending: Vec::new(),
        }
    }

    fn replies(&mut self, cmds: Vec<TelnetCmd>) -> Vec<u8> {
        let mut out = Vec::new();
        for c in cmds {
            match c {
                TelnetCmd::Negotiate(verb, o) => {
                    if self.answered.contains(&(verb, o)) || self.answered.len() > 64 {
                        continue;
                    }
                    self.answered.push((verb, o));
                    match verb {
                        cmd::DO if o == opt::ECHO || o == opt::SGA || o == opt::BINARY => {}
                        cmd::DO => out.extend_from_slice(&[cmd::IAC, cmd::WONT, o]),
                        cmd::WILL if o == opt::TTYPE => out.extend_from_slice(&[
                            cmd::IAC,
                            cmd::SB,
                            opt::TTYPE,
                            1,
                            cmd::IAC,
                            cmd::SE,
                        ]),
                        cmd::WILL if self.wanted.contains(&o) => {}
                        cmd::WILL => out.extend_from_slice(&[cmd::IAC, cmd::DONT, o]),
                        _ => {}
                    }
                }
                TelnetCmd::Sub(opt::TTYPE, data) => {
                    // IS (0) then the name.
                    if let Some(name) = data.strip_prefix(&[0]) {
                        self.terminal = Some(String::from_utf8_lossy(name).into_owned());
                    }
                }
                TelnetCmd::Sub(opt::NAWS, d) => {
                    if let [a, b, c, e] = d[..] {
                        self.window =
                            Some((u16::from_be_bytes([a, b]), u16::from_be_bytes([c, e])));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The next editor event (a line, Ctrl-C or Ctrl-D), echoing keystrokes when `echo`.
    /// `None` when the peer closed.
    pub(crate) async fn next(
        &mut self,
        conn: &mut Conn,
        echo: bool,
    ) -> Result<Option<EditorEvent>, SessionError> {
        loop {
            if !self.pending.is_empty() {
                return Ok(Some(self.pending.remove(0)));
            }
            let Some(chunk) = conn.rx().await? else { return Ok(None) };
            let mut data = Vec::new();
            let mut cmds = Vec::new();
            self.parser.feed(&chunk, &mut data, &mut cmds);
            let mut out = self.replies(cmds);
            let mut echoed = Vec::new();
            self.editor.feed(&data, &mut echoed, &mut self.pending);
            if echo {
                out.extend_from_slice(&echoed);
            } else if !self.pending.is_empty() {
                out.extend_from_slice(b"\r\n");
            }
            conn.tx(&out).await?;
        }
    }

    /// The next line; Ctrl-C gives an empty line, Ctrl-D or EOF `None`.
    pub(crate) async fn line(
        &mut self,
        conn: &mut Conn,
        echo: bool,
    ) -> Result<Option<String>, SessionError> {
        match self.next(conn, echo).await? {
            Some(EditorEvent::Line(l)) => Ok(Some(l)),
            Some(EditorEvent::Interrupt) => Ok(Some(String::new())),
            Some(EditorEvent::Eof) | None => Ok(None),
        }
    }
}

/// Emits an `auth.attempt` for a telnet login.
pub(crate) fn record_login(conn: &Conn, user: &str, pass: &str, success: bool, io: &TelnetIo) {
    let mut extra = BTreeMap::new();
    if let Some(t) = &io.terminal {
        extra.insert("terminal".into(), t.clone());
    }
    let mut e = conn.event(Kind::AUTH_ATTEMPT);
    e.auth = Some(Box::new(Auth {
        method: AuthMethod::Password,
        username: Some(user.to_owned()),
        password: Some(pass.to_owned()),
        success,
        extra,
    }));
    conn.emit(e);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Passwords that let any user in (HoneyPy's list by default). Empty: nobody gets in.
    #[serde(default = "default_accept")]
    accept_passwords: Vec<String>,
    /// Failed logins before the connection is closed (login(1) allows three).
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    /// The fake machine (host name, distribution, users, files).
    #[serde(default)]
    shell: ShellConfig,
}

fn default_accept() -> Vec<String> {
    ["admin", "password", "root", "12345", "123456"].iter().map(|s| (*s).to_owned()).collect()
}

fn default_attempts() -> u32 {
    3
}

struct Telnet {
    accept: Vec<String>,
    max_attempts: u32,
    machine: Arc<Machine>,
    /// The opt-in download fetcher (`fetch = true`).
    fetcher: Option<Arc<Fetcher>>,
}

fn build(_transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    let (table, fetcher) = fetch::split(table)?;
    let o: Options = options(&table)?;
    let machine = Machine::new(&o.shell).map_err(|e| format!("options.shell: {e}"))?;
    Ok(Handler::Tcp(Arc::new(Telnet {
        accept: o.accept_passwords,
        max_attempts: o.max_attempts.max(1),
        machine,
        fetcher,
    })))
}

/// What Linux telnetd (netkit, inetutils) sends first; nmap's fingerprint for it.
const GREETING: &[u8] = &[
    cmd::IAC,
    cmd::DO,
    opt::TTYPE,
    cmd::IAC,
    cmd::DO,
    opt::TSPEED,
    cmd::IAC,
    cmd::DO,
    opt::XDISPLOC,
    cmd::IAC,
    cmd::DO,
    opt::NEW_ENVIRON,
];
/// How long a silent client is given to answer the negotiation before the prompt is sent
/// anyway (longer than nmap's 6 s wait, so nmap sees exactly telnetd's greeting).
const NEGOTIATION_WAIT: std::time::Duration = std::time::Duration::from_secs(8);
const WANTED: &[u8] = &[opt::TTYPE, opt::TSPEED, opt::XDISPLOC, opt::NEW_ENVIRON, opt::NAWS];

impl Telnet {
    /// `/etc/issue.net`, which telnetd prints before the login prompt.
    fn issue(&self) -> String {
        self.machine.distro.issue.to_owned()
    }
}

#[async_trait::async_trait]
impl TcpService for Telnet {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        let mut io = TelnetIo::new(WANTED, MAX_LOGIN_LINE);
        // Like telnetd, ask for the terminal options first and wait for the client's answer
        // (a telnet client answers at once, no Enter needed); a client that says nothing
        // still gets the prompt after a while.
        conn.tx(GREETING).await?;
        match tokio::time::timeout(NEGOTIATION_WAIT, conn.rx()).await {
            Ok(Ok(Some(first))) => conn.unread(&first),
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => {}
        }
        let mut hello = vec![cmd::IAC, cmd::WILL, opt::SGA, cmd::IAC, cmd::WILL, opt::ECHO];
        let host = self.machine.hostname.clone();
        hello.extend_from_slice(format!("{}\r\n{host} login: ", self.issue()).as_bytes());
        conn.tx(&hello).await?;
        let mut failures = 0u32;
        let user = loop {
            let Some(user) = io.line(conn, true).await? else { return Ok(()) };
            let user = user.trim().to_owned();
            if user.is_empty() {
                conn.tx(format!("{host} login: ").as_bytes()).await?;
                continue;
            }
            conn.tx(b"Password: ").await?;
            let Some(pass) = io.line(conn, false).await? else { return Ok(()) };
            let ok = self.accept.contains(&pass);
            record_login(conn, &user, &pass, ok, &io);
            if ok {
                break user;
            }
            failures += 1;
            // login(1) pauses about three seconds after a failure.
            conn.sleep(std::time::Duration::from_secs(2)).await?;
            if failures >= self.max_attempts {
                conn.tx(b"\r\nLogin incorrect\r\n").await?;
                return Ok(());
            }
            conn.tx(format!("\r\nLogin incorrect\r\n{host} login: ").as_bytes()).await?;
        };
        let mut sh = Shell::new(&self.machine, &user);
        sh.set_client(Some(conn.peer().ip().to_canonical()));
        let d = &self.machine.distro;
        let motd = if d.ubuntu {
            format!(
                "Welcome to {} (GNU/Linux {} x86_64)\r\n\r\n * Documentation:  https://help.ubuntu.com\r\n * Management:     https://landscape.canonical.com\r\n * Support:        https://ubuntu.com/pro\r\n\r\n",
                self.issue(),
                d.kernel_release
            )
        } else {
            format!(
                "Linux {host} {} {} x86_64\r\n\r\nThe programs included with the Debian GNU/Linux system are free software;\r\nthe exact distribution terms for each program are described in the\r\nindividual files in /usr/share/doc/*/copyright.\r\n\r\nDebian GNU/Linux comes with ABSOLUTELY NO WARRANTY, to the extent\r\npermitted by applicable law.\r\n",
                d.kernel_release, d.kernel_version
            )
        };
        conn.tx(motd.as_bytes()).await?;
        conn.tx(sh.prompt().as_bytes()).await?;
        let mut io = TelnetIo { editor: LineEditor::new(crate::shell::MAX_LINE), ..io };
        let result = loop {
            let event = match io.next(conn, true).await {
                Ok(Some(e)) => e,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let line = match event {
                EditorEvent::Line(l) => l,
                EditorEvent::Interrupt => String::new(),
                EditorEvent::Eof => {
                    let _ = conn.tx(b"logout\r\n").await;
                    break Ok(());
                }
            };
            let out = sh.run_line(&line);
            fetch::shell_events(self.fetcher.as_ref(), &out.events, conn.ctx());
            for ev in &out.events {
                conn.emit(ev.to_event(conn.ctx()));
            }
            if let Err(e) = conn.tx(&to_crlf(&out.output)).await {
                break Err(e);
            }
            if out.exit {
                break Ok(());
            }
            if let Err(e) = conn.tx(sh.prompt().as_bytes()).await {
                break Err(e);
            }
        };
        for ev in sh.finish() {
            conn.emit(ev.to_event(conn.ctx()));
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Vec<u8>, Vec<TelnetCmd>) {
        let mut p = IacParser::default();
        let (mut d, mut c) = (Vec::new(), Vec::new());
        p.feed(input, &mut d, &mut c);
        (d, c)
    }

    #[test]
    fn iac_sequences_are_stripped_in_any_split() {
        let input = b"ab\xff\xfb\x18\xff\xff\xff\xfa\x18\x00xterm\xff\xf0cd\xff\xf1";
        let (d, c) = run(input);
        assert_eq!(d, b"ab\xffcd");
        assert_eq!(
            c,
            [
                TelnetCmd::Negotiate(cmd::WILL, 24),
                TelnetCmd::Sub(24, b"\x00xterm".to_vec()),
                TelnetCmd::Other(241)
            ]
        );
        for split in 0..input.len() {
            let mut p = IacParser::default();
            let (mut d2, mut c2) = (Vec::new(), Vec::new());
            p.feed(&input[..split], &mut d2, &mut c2);
            p.feed(&input[split..], &mut d2, &mut c2);
            assert_eq!((d2, c2), (d.clone(), c.clone()), "split at {split}");
        }
    }

    #[test]
    fn subnegotiation_is_capped() {
        let mut input = vec![cmd::IAC, cmd::SB, 24];
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(&[cmd::IAC, cmd::SE, b'z']);
        let (d, c) = run(&input);
        assert_eq!(d, b"z");
        assert!(matches!(&c[0], TelnetCmd::Sub(24, v) if v.len() == MAX_SB));
    }
}
