//! FTP (vsftpd 3.0.x look-alike): USER/PASS captured, passive (PASV, EPSV) and active (PORT,
//! EPRT) data connections, listings of a small fake tree, downloads of its files, and uploads
//! (STOR, APPE, STOU) captured with a size cap and SHA-256.
//!
//! Events: `auth.attempt` (each USER/PASS pair), `command.input` (interpreter `ftp`, every
//! command but PASS), `file.upload` (each stored file).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use apiary_event::{Auth, AuthMethod, Command, Download, Kind, Payload, Transport};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Handler, ServiceInfo, TcpService, options};
use crate::{Conn, SessionError};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "ftp",
    aliases: &["FTP", "vsftpd"],
    protocol: "ftp",
    description: "vsftpd 3.0.3 look-alike: login capture, PASV/EPSV/PORT/EPRT listings, uploads",
    transports: &[Transport::Tcp],
    build,
};

/// vsftpd's command line limit is 4 KiB (`VSFTP_MAX_COMMAND_LINE`).
const MAX_LINE: usize = 4096;
/// How long a data connection may take to arrive or to be made.
const DATA_CONNECT: Duration = Duration::from_secs(20);
/// How long a transfer may stall.
const DATA_IDLE: Duration = Duration::from_secs(30);
/// Paths a session's tree may hold (uploads and MKD add to it).
const MAX_ENTRIES: usize = 512;
/// Bytes of an uploaded file kept so that a RETR of it returns it.
const KEEP_FOR_RETR: usize = 64 * 1024;

/// Who gets in.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Accept {
    /// Every login succeeds (bots go on to upload).
    #[default]
    Any,
    /// Only `anonymous`/`ftp`.
    Anonymous,
    /// Only `credentials` (`user:password`, `*` matches anything), plus anonymous.
    List,
    /// Every login fails.
    Never,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The banner after `220 `.
    #[serde(default = "default_banner")]
    banner: String,
    #[serde(default)]
    accept: Accept,
    #[serde(default)]
    credentials: Vec<String>,
    /// vsftpd's `max_login_fails`: the connection closes after this many.
    #[serde(default = "default_fails")]
    max_login_fails: u32,
    /// vsftpd's `delay_failed_login` (1 s by default; short keeps brute-forcers busy).
    #[serde(default = "default_delay", with = "apiary_event::duration")]
    fail_delay: Duration,
    /// Largest upload; the rest is read, hashed and refused with 552.
    #[serde(default = "default_max_upload")]
    max_upload_bytes: u64,
    /// Bytes of each upload kept in its event (the hash covers everything).
    #[serde(default = "default_keep")]
    keep_upload_bytes: usize,
    /// The tree: paths, directories end in `/`, files may give `=content`.
    #[serde(default = "default_tree")]
    tree: Vec<String>,
}

fn default_banner() -> String {
    "(vsFTPd 3.0.3)".into()
}
fn default_fails() -> u32 {
    3
}
fn default_delay() -> Duration {
    Duration::from_millis(300)
}
fn default_max_upload() -> u64 {
    32 * 1024 * 1024
}
fn default_keep() -> usize {
    64 * 1024
}
fn default_tree() -> Vec<String> {
    [
        "pub/",
        "pub/README=Welcome to the FTP archive. Please use the upload directory for submissions.\n",
        "pub/backup/",
        "pub/backup/db-2023-11.sql.gz=\x1f\u{8b}\x08\x00",
        "upload/",
        "www/",
        "www/index.html=<html><body><h1>It works!</h1></body></html>\n",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// A path in the fake tree.
#[derive(Debug, Clone)]
struct Node {
    dir: bool,
    data: Arc<[u8]>,
    /// Shown size (an upload larger than what is kept still lists its real size).
    size: u64,
    mtime: u64,
}

struct Ftp {
    banner: String,
    accept: Accept,
    credentials: Vec<(String, String)>,
    max_fails: u32,
    fail_delay: Duration,
    max_upload: u64,
    keep: usize,
    tree: BTreeMap<String, Node>,
}

fn build(_transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    let o: Options = options(table)?;
    if o.banner.contains(['\r', '\n']) || o.banner.len() > 200 {
        return Err("ftp: banner must be one short line".into());
    }
    let credentials = o
        .credentials
        .iter()
        .map(|c| {
            c.split_once(':')
                .map(|(u, p)| (u.to_owned(), p.to_owned()))
                .ok_or_else(|| format!("ftp: credential `{c}` is not user:password"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A fixed past time per install would be a tell shared by every install; take the
    // start time less some weeks instead.
    let base = now().saturating_sub(86_400 * 40);
    let mut tree = BTreeMap::new();
    tree.insert(
        "/".to_owned(),
        Node { dir: true, data: Arc::from(&[][..]), size: 4096, mtime: base },
    );
    for (i, spec) in o.tree.iter().enumerate() {
        let (path, content) = match spec.split_once('=') {
            Some((p, c)) => (p, Some(c)),
            None => (spec.as_str(), None),
        };
        let dir = path.ends_with('/') && content.is_none();
        let full = normalize("/", path);
        if full == "/" {
            continue;
        }
        let data: Arc<[u8]> = Arc::from(content.unwrap_or("").as_bytes());
        let size = if dir { 4096 } else { data.len() as u64 };
        let mtime = base.saturating_sub(86_400 * 3 * i as u64 + 3_600 * i as u64);
        tree.insert(full, Node { dir, data, size, mtime });
    }
    Ok(Handler::Tcp(Arc::new(Ftp {
        banner: o.banner,
        accept: o.accept,
        credentials,
        max_fails: o.max_login_fails.max(1),
        fail_delay: o.fail_delay,
        max_upload: o.max_upload_bytes,
        keep: o.keep_upload_bytes,
        tree,
    })))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Joins `path` onto `cwd` and removes `.`, `..` and repeated slashes.
fn normalize(cwd: &str, path: &str) -> String {
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

/// One FTP command line: the verb in upper case and its argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtpCommand {
    /// The verb, upper-cased (at most 8 characters are significant, as in vsftpd).
    pub verb: String,
    /// Everything after the first space, as sent.
    pub arg: String,
}

/// Parses a command line without its CRLF. Total: any bytes give a command.
pub fn parse_command(line: &[u8]) -> FtpCommand {
    let text = String::from_utf8_lossy(line);
    // Telnet IAC sequences (ABOR is sent as IAC IP IAC DM ABOR) are not part of the verb.
    let text = text.trim_start_matches(|c: char| !c.is_ascii_alphabetic() && c != ' ');
    let (verb, arg) = match text.split_once(' ') {
        Some((v, a)) => (v, a),
        None => (text, ""),
    };
    let verb: String = verb.chars().take(8).collect::<String>().to_ascii_uppercase();
    FtpCommand { verb, arg: arg.to_owned() }
}

/// Parses a `PORT h1,h2,h3,h4,p1,p2` argument.
pub fn parse_port(arg: &str) -> Option<SocketAddr> {
    let nums: Vec<u8> =
        arg.trim().split(',').map(|n| n.trim().parse::<u8>().ok()).collect::<Option<_>>()?;
    let [a, b, c, d, p1, p2] = <[u8; 6]>::try_from(nums).ok()?;
    let ip = IpAddr::from([a, b, c, d]);
    Some(SocketAddr::new(ip, u16::from(p1) << 8 | u16::from(p2)))
}

/// Parses an `EPRT |proto|address|port|` argument (RFC 2428); any delimiter character.
pub fn parse_eprt(arg: &str) -> Option<SocketAddr> {
    let arg = arg.trim();
    let delim = arg.chars().next()?;
    let mut parts = arg.split(delim);
    let (_, proto, addr, port) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let ip: IpAddr = addr.parse().ok()?;
    match (proto, ip) {
        ("1", IpAddr::V4(_)) | ("2", IpAddr::V6(_)) => {}
        _ => return None,
    }
    Some(SocketAddr::new(ip, port.parse().ok()?))
}

/// A data connection to be made.
enum Data {
    None,
    /// PASV/EPSV: the listener the client connects to.
    Passive(TcpListener),
    /// PORT/EPRT: where to connect.
    Active(SocketAddr),
}

struct State {
    user: Option<String>,
    logged_in: Option<String>,
    fails: u32,
    cwd: String,
    data: Data,
    tree: BTreeMap<String, Node>,
    rename_from: Option<String>,
    restart: u64,
    ascii: bool,
}

/// One `LIST` line the way vsftpd writes it (numeric ids, as with anonymous logins).
fn list_line(name: &str, n: &Node, now: u64) -> String {
    let c = super::clock::Civil::from_secs(n.mtime);
    let (y, d, hh, mm, month) = (c.year, c.day, c.hour, c.minute, c.month_name());
    // `ls` shows the time for files younger than six months, the year otherwise.
    let when = if now.saturating_sub(n.mtime) < 86_400 * 182 {
        format!("{month} {d:02} {hh:02}:{mm:02}")
    } else {
        format!("{month} {d:02}  {y}")
    };
    let (perm, links) = if n.dir { ("drwxr-xr-x", 2) } else { ("-rw-r--r--", 1) };
    format!("{perm} {links:4} {:<8} {:<8} {:8} {when} {name}\r\n", 0, 0, n.size)
}

impl State {
    fn children(&self, dir: &str) -> Vec<(String, Node)> {
        let prefix = if dir == "/" { "/".to_owned() } else { format!("{dir}/") };
        self.tree
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, v)| {
                let name = k.get(prefix.len()..)?;
                (!name.is_empty() && !name.contains('/')).then(|| (name.to_owned(), v.clone()))
            })
            .collect()
    }

    fn path(&self, arg: &str) -> String {
        normalize(&self.cwd, arg.trim())
    }
}

/// Strips `ls`-style options (`LIST -la /pub`) that clients send.
fn list_target(arg: &str) -> &str {
    let mut rest = arg.trim();
    while let Some(r) = rest.strip_prefix('-') {
        rest = r.split_once(' ').map(|(_, t)| t.trim_start()).unwrap_or("");
    }
    rest
}

impl Ftp {
    fn allow(&self, user: &str, pass: &str) -> bool {
        let anon = matches!(user.to_ascii_lowercase().as_str(), "anonymous" | "ftp");
        match self.accept {
            Accept::Any => true,
            Accept::Never => false,
            Accept::Anonymous => anon,
            Accept::List => {
                anon || self
                    .credentials
                    .iter()
                    .any(|(u, p)| (u == "*" || u == user) && (p == "*" || p == pass))
            }
        }
    }

    async fn reply(conn: &mut Conn, text: &str) -> Result<(), SessionError> {
        conn.tx(format!("{text}\r\n").as_bytes()).await
    }

    /// Opens the pending data connection (accepting on the passive listener or connecting
    /// back to the client), or `None` after answering 425.
    async fn open_data(conn: &mut Conn, st: &mut State) -> Result<Option<TcpStream>, SessionError> {
        let data = std::mem::replace(&mut st.data, Data::None);
        let stream = match data {
            Data::None => {
                Self::reply(conn, "425 Use PORT or PASV first.").await?;
                return Ok(None);
            }
            Data::Passive(l) => {
                let peer = conn.peer().ip().to_canonical();
                match tokio::time::timeout(DATA_CONNECT, l.accept()).await {
                    // vsftpd's pasv_promiscuous=NO: the data peer must be the control peer.
                    Ok(Ok((s, a))) if a.ip().to_canonical() == peer => Some(s),
                    _ => None,
                }
            }
            Data::Active(addr) => {
                match tokio::time::timeout(DATA_CONNECT, TcpStream::connect(addr)).await {
                    Ok(Ok(s)) => Some(s),
                    _ => None,
                }
            }
        };
        if stream.is_none() {
            Self::reply(conn, "425 Failed to establish connection.").await?;
        }
        Ok(stream)
    }

    async fn send_data(
        conn: &mut Conn,
        st: &mut State,
        opening: &str,
        done: &str,
        body: &[u8],
    ) -> Result<(), SessionError> {
        let Some(mut s) = Self::open_data(conn, st).await? else { return Ok(()) };
        Self::reply(conn, opening).await?;
        let sent = tokio::time::timeout(DATA_IDLE, async {
            s.write_all(body).await?;
            s.shutdown().await
        })
        .await;
        match sent {
            Ok(Ok(())) => Self::reply(conn, done).await,
            _ => Self::reply(conn, "426 Failure writing network stream.").await,
        }
    }

    async fn list(
        &self,
        conn: &mut Conn,
        st: &mut State,
        arg: &str,
        names_only: bool,
    ) -> Result<(), SessionError> {
        let target = st.path(list_target(arg));
        let now = now();
        let mut body = String::new();
        match st.tree.get(&target) {
            Some(n) if n.dir => {
                for (name, node) in st.children(&target) {
                    if names_only {
                        body.push_str(&name);
                        body.push_str("\r\n");
                    } else {
                        body.push_str(&list_line(&name, &node, now));
                    }
                }
            }
            Some(n) => {
                let name = target.rsplit('/').next().unwrap_or("");
                if names_only {
                    body = format!("{name}\r\n");
                } else {
                    body = list_line(name, n, now);
                }
            }
            // vsftpd sends an empty listing for a missing path.
            None => {}
        }
        let open = "150 Here comes the directory listing.";
        Self::send_data(conn, st, open, "226 Directory send OK.", body.as_bytes()).await
    }

    async fn store(
        &self,
        conn: &mut Conn,
        st: &mut State,
        path: String,
        append: bool,
    ) -> Result<(), SessionError> {
        let parent_ok = st.tree.get(&normalize(&path, "..")).is_some_and(|n| n.dir);
        if !parent_ok || st.tree.get(&path).is_some_and(|n| n.dir) {
            return Self::reply(conn, "553 Could not create file.").await;
        }
        let Some(mut s) = Self::open_data(conn, st).await? else { return Ok(()) };
        Self::reply(conn, "150 Ok to send data.").await?;
        let mut hasher = Sha256::new();
        let mut head = Vec::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 16 * 1024];
        let mut failed = false;
        loop {
            match tokio::time::timeout(DATA_IDLE, s.read(&mut buf)).await {
                Ok(Ok(0)) => break,
                Ok(Ok(n)) => {
                    let chunk = buf.get(..n).unwrap_or_default();
                    size += n as u64;
                    if size > self.max_upload {
                        failed = true;
                        break;
                    }
                    hasher.update(chunk);
                    let room = self.keep.max(KEEP_FOR_RETR).saturating_sub(head.len());
                    head.extend_from_slice(chunk.get(..room.min(n)).unwrap_or_default());
                }
                _ => {
                    failed = true;
                    break;
                }
            }
        }
        drop(s);
        let sha: [u8; 32] = hasher.finalize().into();
        let sha_hex: String = sha.iter().map(|b| format!("{b:02x}")).collect();
        let mut e = conn.event(Kind::FILE_UPLOAD);
        e.download =
            Some(Box::new(Download { url: path.clone(), sha256: Some(sha_hex), size: Some(size) }));
        let mut p = Payload::new(&head, self.keep);
        p.len = size;
        p.sha256 = sha;
        e.payload = Some(p);
        e.message = Some(if append { "APPE" } else { "STOR" }.into());
        if failed {
            e.fields.insert("complete".into(), false.into());
        }
        conn.emit(e);
        if failed {
            return Self::reply(conn, "552 Requested file action aborted.").await;
        }
        if st.tree.len() < MAX_ENTRIES || st.tree.contains_key(&path) {
            head.truncate(KEEP_FOR_RETR);
            st.tree.insert(path, Node { dir: false, data: Arc::from(head), size, mtime: now() });
        }
        Self::reply(conn, "226 Transfer complete.").await
    }

    async fn passive(
        &self,
        conn: &mut Conn,
        st: &mut State,
        extended: bool,
    ) -> Result<(), SessionError> {
        let local = conn.ctx().local.ip();
        let listener = match TcpListener::bind(SocketAddr::new(local, 0)).await {
            Ok(l) => l,
            Err(_) => return Self::reply(conn, "425 Could not listen on passive port.").await,
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        st.data = Data::Passive(listener);
        if extended {
            return Self::reply(conn, &format!("229 Entering Extended Passive Mode (|||{port}|)"))
                .await;
        }
        let IpAddr::V4(v4) = local.to_canonical() else {
            st.data = Data::None;
            return Self::reply(conn, "500 Illegal PORT command.").await;
        };
        let [a, b, c, d] = v4.octets();
        Self::reply(
            conn,
            &format!("227 Entering Passive Mode ({a},{b},{c},{d},{},{}).", port >> 8, port & 0xff),
        )
        .await
    }

    async fn login(
        &self,
        conn: &mut Conn,
        st: &mut State,
        pass: &str,
    ) -> Result<bool, SessionError> {
        let Some(user) = st.user.take() else {
            Self::reply(conn, "503 Login with USER first.").await?;
            return Ok(true);
        };
        let ok = self.allow(&user, pass);
        let mut e = conn.event(Kind::AUTH_ATTEMPT);
        e.auth = Some(Box::new(Auth {
            method: AuthMethod::Password,
            username: Some(user.clone()),
            password: Some(pass.to_owned()),
            success: ok,
            extra: BTreeMap::new(),
        }));
        conn.emit(e);
        if ok {
            st.logged_in = Some(user);
            Self::reply(conn, "230 Login successful.").await?;
            return Ok(true);
        }
        conn.sleep(self.fail_delay).await?;
        Self::reply(conn, "530 Login incorrect.").await?;
        st.fails += 1;
        Ok(st.fails < self.max_fails)
    }

    /// Answers one command; false ends the session.
    async fn command(
        &self,
        conn: &mut Conn,
        st: &mut State,
        cmd: FtpCommand,
    ) -> Result<bool, SessionError> {
        let arg = cmd.arg.trim_end_matches(['\r', '\n']);
        if cmd.verb != "PASS" {
            let mut e = conn.event(Kind::COMMAND_INPUT);
            let input =
                if arg.is_empty() { cmd.verb.clone() } else { format!("{} {arg}", cmd.verb) };
            let known = KNOWN.contains(&cmd.verb.as_str());
            e.command = Some(Box::new(Command {
                input,
                interpreter: Some("ftp".into()),
                known: Some(known),
            }));
            conn.emit(e);
        }
        // Commands allowed before login, then the "please login" wall.
        match cmd.verb.as_str() {
            "USER" => {
                if st.logged_in.is_some() {
                    Self::reply(conn, "530 Can't change to another user.").await?;
                } else {
                    st.user = Some(crate::shell::truncate(arg, 256).to_owned());
                    Self::reply(conn, "331 Please specify the password.").await?;
                }
                return Ok(true);
            }
            "PASS" => {
                if st.logged_in.is_some() {
                    Self::reply(conn, "230 Already logged in.").await?;
                    return Ok(true);
                }
                return self.login(conn, st, crate::shell::truncate(arg, 256)).await;
            }
            "QUIT" => {
                Self::reply(conn, "221 Goodbye.").await?;
                return Ok(false);
            }
            "FEAT" => {
                Self::reply(
                    conn,
                    "211-Features:\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n211 End",
                )
                .await?;
                return Ok(true);
            }
            "SYST" if st.logged_in.is_some() => {
                Self::reply(conn, "215 UNIX Type: L8").await?;
                return Ok(true);
            }
            "OPTS" => {
                let r = if arg.eq_ignore_ascii_case("UTF8 ON") {
                    "200 Always in UTF8 mode."
                } else {
                    "501 Option not understood."
                };
                Self::reply(conn, r).await?;
                return Ok(true);
            }
            "NOOP" => {
                Self::reply(conn, "200 NOOP ok.").await?;
                return Ok(true);
            }
            _ if st.logged_in.is_none() => {
                Self::reply(conn, "530 Please login with USER and PASS.").await?;
                return Ok(true);
            }
            _ => {}
        }
        match cmd.verb.as_str() {
            "SYST" => Self::reply(conn, "215 UNIX Type: L8").await?,
            "PWD" | "XPWD" => {
                let r = format!("257 \"{}\" is the current directory", st.cwd);
                Self::reply(conn, &r).await?;
            }
            "CWD" | "XCWD" | "CDUP" | "XCUP" => {
                let target = if cmd.verb.ends_with("UP") { st.path("..") } else { st.path(arg) };
                if st.tree.get(&target).is_some_and(|n| n.dir) {
                    st.cwd = target;
                    Self::reply(conn, "250 Directory successfully changed.").await?;
                } else {
                    Self::reply(conn, "550 Failed to change directory.").await?;
                }
            }
            "TYPE" => {
                let r = match arg.to_ascii_uppercase().as_str() {
                    "I" | "L 8" => {
                        st.ascii = false;
                        "200 Switching to Binary mode."
                    }
                    "A" | "A N" => {
                        st.ascii = true;
                        "200 Switching to ASCII mode."
                    }
                    _ => "500 Unrecognised TYPE command.",
                };
                Self::reply(conn, r).await?;
            }
            "MODE" => {
                let r = if arg.eq_ignore_ascii_case("S") { "200 Mode set to S." } else { "504 Bad MODE command." };
                Self::reply(conn, r).await?;
            }
            "STRU" => {
                let r = if arg.eq_ignore_ascii_case("F") { "200 Structure set to F." } else { "504 Bad STRU command." };
                Self::reply(conn, r).await?;
            }
            "PASV" => self.passive(conn, st, false).await?,
            "EPSV" => {
                if arg.eq_ignore_ascii_case("ALL") {
                    Self::reply(conn, "200 EPSV ALL ok.").await?;
                } else {
                    self.passive(conn, st, true).await?;
                }
            }
            "PORT" | "EPRT" => {
                let addr = if cmd.verb == "PORT" { parse_port(arg) } else { parse_eprt(arg) };
                let peer = conn.peer().ip().to_canonical();
                match addr {
                    // vsftpd's port_promiscuous=NO: never connect anywhere but back to the
                    // client (no FTP bounce through the honeypot), and never to low ports.
                    Some(a) if a.ip().to_canonical() == peer && a.port() >= 1024 => {
                        st.data = Data::Active(a);
                        let r = format!("200 {} command successful. Consider using PASV.", cmd.verb);
                        Self::reply(conn, &r).await?;
                    }
                    _ => {
                        st.data = Data::None;
                        Self::reply(conn, &format!("500 Illegal {} command.", cmd.verb)).await?;
                    }
                }
            }
            "LIST" | "NLST" => self.list(conn, st, arg, cmd.verb == "NLST").await?,
            "RETR" => {
                let path = st.path(arg);
                match st.tree.get(&path).filter(|n| !n.dir).cloned() {
                    None => Self::reply(conn, "550 Failed to open file.").await?,
                    Some(n) => {
                        let skip = usize::try_from(std::mem::take(&mut st.restart)).unwrap_or(usize::MAX);
                        let data = n.data.get(skip.min(n.data.len())..).unwrap_or_default().to_vec();
                        let mode = if st.ascii { "ASCII" } else { "BINARY" };
                        let name = path.rsplit('/').next().unwrap_or("");
                        let open = format!(
                            "150 Opening {mode} mode data connection for {name} ({} bytes).",
                            n.size
                        );
                        Self::send_data(conn, st, &open, "226 Transfer complete.", &data).await?;
                    }
                }
            }
            "STOR" | "APPE" | "STOU" => {
                let path = if cmd.verb == "STOU" {
                    let mut p = st.path(if arg.is_empty() { "ftp.tmp" } else { arg });
                    let mut n = 1;
                    while st.tree.contains_key(&p) && n < 1000 {
                        p = format!("{}.{n}", st.path(if arg.is_empty() { "ftp.tmp" } else { arg }));
                        n += 1;
                    }
                    p
                } else {
                    st.path(arg)
                };
                st.restart = 0;
                self.store(conn, st, path, cmd.verb == "APPE").await?;
            }
            "SIZE" => {
                let path = st.path(arg);
                match st.tree.get(&path).filter(|n| !n.dir) {
                    Some(n) => {
                        let r = format!("213 {}", n.size);
                        Self::reply(conn, &r).await?;
                    }
                    None => Self::reply(conn, "550 Could not get file size.").await?,
                }
            }
            "MDTM" => {
                let path = st.path(arg);
                match st.tree.get(&path).filter(|n| !n.dir) {
                    Some(n) => {
                        let c = super::clock::Civil::from_secs(n.mtime);
                        let r = format!(
                            "213 {:04}{:02}{:02}{:02}{:02}{:02}",
                            c.year, c.month, c.day, c.hour, c.minute, c.second
                        );
                        Self::reply(conn, &r).await?;
                    }
                    None => Self::reply(conn, "550 Could not get file modification time.").await?,
                }
            }
            "REST" => {
                st.restart = arg.trim().parse().unwrap_or(0);
                let r = format!("350 Restart position accepted ({}).", st.restart);
                Self::reply(conn, &r).await?;
            }
            "MKD" | "XMKD" => {
                let path = st.path(arg);
                let parent_ok = st.tree.get(&normalize(&path, "..")).is_some_and(|n| n.dir);
                if parent_ok && !st.tree.contains_key(&path) && st.tree.len() < MAX_ENTRIES {
                    let r = format!("257 \"{path}\" created");
                    st.tree.insert(path, Node { dir: true, data: Arc::from(&[][..]), size: 4096, mtime: now() });
                    Self::reply(conn, &r).await?;
                } else {
                    Self::reply(conn, "550 Create directory operation failed.").await?;
                }
            }
            "RMD" | "XRMD" => {
                let path = st.path(arg);
                if path != "/" && st.tree.get(&path).is_some_and(|n| n.dir) && st.children(&path).is_empty() {
                    st.tree.remove(&path);
                    Self::reply(conn, "250 Remove directory operation successful.").await?;
                } else {
                    Self::reply(conn, "550 Remove directory operation failed.").await?;
                }
            }
            "DELE" => {
                let path = st.path(arg);
                if st.tree.get(&path).is_some_and(|n| !n.dir) {
                    st.tree.remove(&path);
                    Self::reply(conn, "250 Delete operation successful.").await?;
                } else {
                    Self::reply(conn, "550 Delete operation failed.").await?;
                }
            }
            "RNFR" => {
                let path = st.path(arg);
                if st.tree.contains_key(&path) {
                    st.rename_from = Some(path);
                    Self::reply(conn, "350 Ready for RNTO.").await?;
                } else {
                    Self::reply(conn, "550 RNFR command failed.").await?;
                }
            }
            "RNTO" => match st.rename_from.take() {
                None => Self::reply(conn, "503 RNFR required first.").await?,
                Some(from) => {
                    let to = st.path(arg);
                    match st.tree.remove(&from) {
                        Some(n) if !n.dir => {
                            st.tree.insert(to, n);
                            Self::reply(conn, "250 Rename successful.").await?;
                        }
                        Some(n) => {
                            st.tree.insert(from, n);
                            Self::reply(conn, "550 Rename failed.").await?;
                        }
                        None => Self::reply(conn, "550 Rename failed.").await?,
                    }
                }
            },
            "SITE" => {
                let r = if arg.to_ascii_uppercase().starts_with("CHMOD") {
                    "200 SITE CHMOD command ok."
                } else if arg.to_ascii_uppercase().starts_with("HELP") {
                    "214 CHMOD UMASK HELP"
                } else {
                    "500 Unknown SITE command."
                };
                Self::reply(conn, r).await?;
            }
            "STAT" if arg.is_empty() => {
                let peer = conn.peer().ip();
                let user = st.logged_in.clone().unwrap_or_default();
                let r = format!(
                    "211-FTP server status:\r\n     Connected to {peer}\r\n     Logged in as {user}\r\n     TYPE: {}\r\n     No session bandwidth limit\r\n     Session timeout in seconds is 300\r\n     Control connection is plain text\r\n     Data connections will be plain text\r\n     At session startup, client count was 1\r\n     vsFTPd 3.0.3 - secure, fast, stable\r\n211 End of status",
                    if st.ascii { "ASCII" } else { "BINARY" }
                );
                Self::reply(conn, &r).await?;
            }
            "HELP" => {
                Self::reply(
                    conn,
                    "214-The following commands are recognized.\r\n ABOR ACCT ALLO APPE CDUP CWD  DELE EPRT EPSV FEAT HELP LIST MDTM MKD\r\n MODE NLST NOOP OPTS PASS PASV PORT PWD  QUIT REIN REST RETR RMD  RNFR\r\n RNTO SITE SIZE SMNT STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD\r\n XPWD XRMD\r\n214 Help OK.",
                )
                .await?
            }
            "ABOR" => {
                st.data = Data::None;
                Self::reply(conn, "225 No transfer to ABOR.").await?;
            }
            "ALLO" => Self::reply(conn, "202 ALLO command ignored.").await?,
            "AUTH" | "PBSZ" | "PROT" | "CCC" => Self::reply(conn, "530 Please login with USER and PASS.").await?,
            _ => Self::reply(conn, "500 Unknown command.").await?,
        }
        Ok(true)
    }
}

/// Verbs vsftpd implements.
const KNOWN: &[&str] = &[
    "ABOR", "ACCT", "ALLO", "APPE", "CDUP", "CWD", "DELE", "EPRT", "EPSV", "FEAT", "HELP", "LIST",
    "MDTM", "MKD", "MODE", "NLST", "NOOP", "OPTS", "PASS", "PASV", "PORT", "PWD", "QUIT", "REIN",
    "REST", "RETR", "RMD", "RNFR", "RNTO", "SITE", "SIZE", "SMNT", "STAT", "STOR", "STOU", "STRU",
    "SYST", "TYPE", "USER", "XCUP", "XCWD", "XMKD", "XPWD", "XRMD", "AUTH", "PBSZ", "PROT",
];

#[async_trait::async_trait]
impl TcpService for Ftp {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        Self::reply(conn, &format!("220 {}", self.banner)).await?;
        let mut st = State {
            user: None,
            logged_in: None,
            fails: 0,
            cwd: "/".into(),
            data: Data::None,
            tree: self.tree.clone(),
            rename_from: None,
            restart: 0,
            ascii: false,
        };
        loop {
            let line = match conn.read_line(MAX_LINE).await {
                Ok(Some(l)) => l,
                Ok(None) => return Ok(()),
                Err(SessionError::Idle) => {
                    let _ = Self::reply(conn, "421 Timeout.").await;
                    return Err(SessionError::Idle);
                }
                Err(e) => return Err(e),
            };
            let cmd = parse_command(&line);
            if cmd.verb.is_empty() {
                Self::reply(conn, "500 Unknown command.").await?;
                continue;
            }
            if !self.command(conn, &mut st, cmd).await? {
                conn.shutdown().await;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_and_eprt_arguments() {
        assert_eq!(
            parse_port("127,0,0,1,4,1"),
            Some("127.0.0.1:1025".parse().unwrap_or_else(|_| unreachable!()))
        );
        assert_eq!(parse_port("127,0,0,1,4"), None);
        assert_eq!(parse_port("300,0,0,1,4,1"), None);
        assert_eq!(parse_eprt("|1|10.0.0.2|6446|"), "10.0.0.2:6446".parse().ok());
        assert_eq!(parse_eprt("|2|::1|6446|"), "[::1]:6446".parse().ok());
        assert_eq!(parse_eprt("|1|::1|6446|"), None);
        assert_eq!(parse_eprt(""), None);
    }

    #[test]
    fn commands_and_listing_lines() {
        let c = parse_command(b"retr /pub/README");
        assert_eq!((c.verb.as_str(), c.arg.as_str()), ("RETR", "/pub/README"));
        assert_eq!(parse_command(b"\xff\xf4\xff\xf2ABOR").verb, "ABOR");
        assert_eq!(list_target("-la /pub"), "/pub");
        assert_eq!(list_target("-a"), "");
        let n = Node { dir: true, data: Arc::from(&[][..]), size: 4096, mtime: 1_700_000_000 };
        assert_eq!(
            list_line("pub", &n, 1_800_000_000),
            "drwxr-xr-x    2 0        0            4096 Nov 14  2023 pub\r\n"
        );
    }
}
