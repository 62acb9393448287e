//! SSH (russh): an OpenSSH look-alike that records every login attempt (password, public key
//! fingerprint, keyboard-interactive), lets bots in by policy, and gives them the shared fake
//! shell, `exec`, scp and SFTP uploads, with asciicast TTY logs and HASSH client
//! fingerprints.
//!
//! Events: `auth.attempt`, `ssh.client` (version, HASSH), `command.input`,
//! `download.attempt` (and, with `fetch = true`, `download.fetched` or `download.failed`
//! from [`crate::fetch`]), `file.upload` (scp, SFTP and files written in the shell), `ssh.sftp`
//! (each SFTP operation), `ssh.direct_tcpip` (forwarding requests, always refused),
//! `ssh.ttylog` (the cast file of a shell).

mod hassh;
mod scp;
mod sftp;
pub(crate) mod sftp_wire;
mod ttylog;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apiary_event::{Auth, AuthMethod, Download, Kind, Payload, Transport};
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey};
use russh::server::{Auth as RAuth, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Preferred, SshId};
use serde::Deserialize;

use super::{Handler, ServiceInfo, TcpService, options};
use crate::fetch::{self, Fetcher};
use crate::shell::{EditorEvent, LineEditor, Machine, Shell, ShellConfig, ShellEvent, to_crlf};
use crate::{Conn, SessionCtx, SessionError};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "ssh",
    aliases: &["SSH", "openssh"],
    protocol: "ssh",
    description: "OpenSSH look-alike: login capture, fake shell, exec, scp/SFTP uploads, TTY logs, HASSH",
    transports: &[Transport::Tcp],
    build,
};

/// Who gets in.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Accept {
    /// Every attempt fails (credential collection only).
    #[default]
    Never,
    /// Every password is right.
    Any,
    /// Only `credentials` (`user:password`, `*` matches anything).
    List,
    /// A source's `nth` password attempt succeeds (and those credentials keep working).
    Nth,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Identification string; default: the OpenSSH build of the shell's distribution.
    #[serde(default)]
    version: Option<String>,
    /// Where host keys are kept (generated on first start).
    #[serde(default = "default_key_dir")]
    host_key_dir: PathBuf,
    /// Host key types: `ed25519`, `ecdsa`, `rsa`.
    #[serde(default = "default_key_types")]
    host_keys: Vec<String>,
    #[serde(default)]
    accept: Accept,
    #[serde(default)]
    credentials: Vec<String>,
    #[serde(default = "default_nth")]
    nth: u32,
    /// Authentication attempts per connection.
    #[serde(default = "default_attempts")]
    max_auth_attempts: usize,
    /// Delay before a rejection (OpenSSH waits too; short keeps brute-forcers busy).
    #[serde(default = "default_delay", with = "apiary_event::duration")]
    auth_delay: Duration,
    /// Algorithm orders (names russh does not implement are skipped).
    #[serde(default)]
    kex: Option<Vec<String>>,
    #[serde(default)]
    ciphers: Option<Vec<String>>,
    #[serde(default)]
    macs: Option<Vec<String>>,
    /// Where asciicast TTY logs go; none: no TTY logs.
    #[serde(default)]
    ttylog_dir: Option<PathBuf>,
    /// Largest accepted upload; bigger ones are refused.
    #[serde(default = "default_max_upload")]
    max_upload_bytes: u64,
    /// Bytes of each upload kept in its event (the hash covers everything).
    #[serde(default = "default_keep")]
    keep_upload_bytes: usize,
    /// The fake machine.
    #[serde(default)]
    shell: ShellConfig,
}

fn default_key_dir() -> PathBuf {
    PathBuf::from("apiary-data/ssh")
}
fn default_key_types() -> Vec<String> {
    vec!["rsa".into(), "ecdsa".into(), "ed25519".into()]
}
fn default_nth() -> u32 {
    3
}
fn default_attempts() -> usize {
    6
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

/// Sources tracked by the `nth` policy.
const POLICY_TABLE: usize = 65_536;
/// Channels per connection.
const MAX_CHANNELS: usize = 8;
/// TTY log bytes per channel.
const TTYLOG_CAP: usize = 4 * 1024 * 1024;

/// Password attempts of one source, and the credentials that let it in.
type SourceState = (u32, Option<(String, String)>);

struct Ssh {
    config: Arc<russh::server::Config>,
    machine: Arc<Machine>,
    accept: Accept,
    credentials: Vec<(String, String)>,
    nth: u32,
    ttylog_dir: Option<PathBuf>,
    max_upload: u64,
    keep: usize,
    /// Methods offered again after each failure (russh would drop `password` otherwise, and
    /// OpenSSH keeps offering it until MaxAuthTries).
    methods: MethodSet,
    /// Per source: password attempts so far, and the credentials that let it in.
    sources: Mutex<HashMap<IpAddr, SourceState>>,
    /// The opt-in download fetcher (`fetch = true`).
    fetcher: Option<Arc<Fetcher>>,
}

/// The OpenSSH build each distribution ships, so version and shell agree.
fn openssh_version(m: &Machine) -> &'static str {
    match m.distro.codename {
        "bullseye" => "SSH-2.0-OpenSSH_8.4p1 Debian-5+deb11u3",
        "jammy" => "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.10",
        "noble" => "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5",
        _ => "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
    }
}

/// OpenSSH 9.x's server orders, minus what russh lacks (sntrup761, umac).
const KEX: &[&str] = &[
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group-exchange-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
    "ext-info-s",
    "kex-strict-s-v00@openssh.com",
];
const CIPHERS: &[&str] = &[
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
];
const MACS: &[&str] = &[
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha1-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
    "hmac-sha1",
];

fn names<T: for<'a> TryFrom<&'a str>>(list: Option<&Vec<String>>, default: &[&str]) -> Vec<T> {
    match list {
        Some(l) => l.iter().filter_map(|s| T::try_from(s.as_str()).ok()).collect(),
        None => default.iter().filter_map(|s| T::try_from(s).ok()).collect(),
    }
}

fn load_or_generate(dir: &std::path::Path, kind: &str) -> Result<PrivateKey, String> {
    let path = dir.join(format!("ssh_host_{kind}_key"));
    if let Ok(text) = std::fs::read_to_string(&path) {
        return PrivateKey::from_openssh(&text)
            .map_err(|e| format!("host key {}: {e}", path.display()));
    }
    let alg = match kind {
        "ed25519" => Algorithm::Ed25519,
        "ecdsa" => Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
        "rsa" => Algorithm::Rsa { hash: None },
        other => return Err(format!("unknown host key type `{other}` (ed25519, ecdsa, rsa)")),
    };
    let mut rng = rand_10::rng();
    let key = if kind == "rsa" {
        let kp = russh::keys::ssh_key::private::RsaKeypair::random(&mut rng, 3072)
            .map_err(|e| format!("generating {kind} host key: {e}"))?;
        PrivateKey::new(kp.into(), "").map_err(|e| format!("generating {kind} host key: {e}"))?
    } else {
        PrivateKey::random(&mut rng, alg).map_err(|e| format!("generating {kind} host key: {e}"))?
    };
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| format!("encoding {kind} host key: {e}"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("host key dir {}: {e}", dir.display()))?;
    write_private(&path, text.as_bytes())
        .map_err(|e| format!("host key {}: {e}", path.display()))?;
    let pubkey = key.public_key().to_openssh().map_err(|e| e.to_string())?;
    let _ = std::fs::write(
        dir.join(format!("ssh_host_{kind}_key.pub")),
        format!("{pubkey} root@localhost\n"),
    );
    Ok(key)
}

fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(data)
}

fn build(_transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    let (table, fetcher) = fetch::split(table)?;
    let o: Options = options(&table)?;
    let mut keys = Vec::new();
    for k in &o.host_keys {
        keys.push(load_or_generate(&o.host_key_dir, k)?);
    }
    if keys.is_empty() {
        return Err("ssh: at least one host key type is needed".into());
    }
    let mut shell_cfg = o.shell.clone();
    if shell_cfg.seed.is_none() {
        // The host key is this install's identity: the machine stays the same across restarts.
        let fp = keys
            .first()
            .map(|k| k.public_key().fingerprint(HashAlg::Sha256).to_string())
            .unwrap_or_default();
        shell_cfg.seed = Some(fp.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }));
    }
    let machine = Machine::new(&shell_cfg)?;
    let version = o.version.clone().unwrap_or_else(|| openssh_version(&machine).to_owned());
    if !version.starts_with("SSH-2.0-") || version.len() > 253 || version.contains(['\r', '\n']) {
        return Err("ssh: version must start with SSH-2.0- and fit on one line".into());
    }
    let credentials = o
        .credentials
        .iter()
        .map(|c| {
            c.split_once(':')
                .map(|(u, p)| (u.to_owned(), p.to_owned()))
                .ok_or_else(|| format!("ssh: credential `{c}` is not user:password"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let preferred = Preferred {
        kex: names::<russh::kex::Name>(o.kex.as_ref(), KEX).into(),
        key: vec![
            Algorithm::Rsa { hash: Some(HashAlg::Sha512) },
            Algorithm::Rsa { hash: Some(HashAlg::Sha256) },
            Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
            Algorithm::Ed25519,
        ]
        .into(),
        cipher: names::<russh::cipher::Name>(o.ciphers.as_ref(), CIPHERS).into(),
        mac: names::<russh::mac::Name>(o.macs.as_ref(), MACS).into(),
        compression: vec![russh::compression::NONE, russh::compression::ZLIB_LEGACY].into(),
        ..Preferred::DEFAULT
    };
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    methods.push(MethodKind::Password);
    methods.push(MethodKind::KeyboardInteractive);
    let config = russh::server::Config {
        server_id: SshId::Standard(version.into()),
        methods: methods.clone(),
        auth_rejection_time: o.auth_delay,
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        keys,
        max_auth_attempts: o.max_auth_attempts.clamp(1, 100),
        inactivity_timeout: Some(Duration::from_secs(600)),
        // Small windows and buffers: a thousand idle sessions must stay cheap.
        window_size: 256 * 1024,
        channel_buffer_size: 8,
        event_buffer_size: 4,
        nodelay: true,
        preferred,
        ..Default::default()
    };
    Ok(Handler::Tcp(Arc::new(SshService(Arc::new(Ssh {
        config: Arc::new(config),
        machine,
        accept: o.accept,
        credentials,
        nth: o.nth.max(1),
        ttylog_dir: o.ttylog_dir,
        max_upload: o.max_upload_bytes,
        keep: o.keep_upload_bytes,
        methods,
        sources: Mutex::new(HashMap::new()),
        fetcher,
    })))))
}

/// The catalogue's handle on the service; sessions hold their own `Arc` of it because russh
/// runs a connection on its own task.
struct SshService(Arc<Ssh>);

impl Ssh {
    fn reject(&self) -> RAuth {
        RAuth::Reject { proceed_with_methods: Some(self.methods.clone()), partial_success: false }
    }

    /// Decides a password attempt from `ip`.
    fn allow(&self, ip: IpAddr, user: &str, password: &str) -> bool {
        match self.accept {
            Accept::Never => false,
            Accept::Any => true,
            Accept::List => self
                .credentials
                .iter()
                .any(|(u, p)| (u == "*" || u == user) && (p == "*" || p == password)),
            Accept::Nth => {
                let Ok(mut t) = self.sources.lock() else { return false };
                if t.len() >= POLICY_TABLE && !t.contains_key(&ip) {
                    // Bounded: forget an arbitrary half rather than grow without end.
                    let drop: Vec<IpAddr> = t.keys().take(POLICY_TABLE / 2).copied().collect();
                    for k in drop {
                        t.remove(&k);
                    }
                }
                let e = t.entry(ip).or_insert((0, None));
                if let Some((u, p)) = &e.1 {
                    return u == user && p == password;
                }
                e.0 += 1;
                if e.0 >= self.nth {
                    e.1 = Some((user.to_owned(), password.to_owned()));
                    return true;
                }
                false
            }
        }
    }
}

#[async_trait::async_trait]
impl TcpService for SshService {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        let ctx = conn.ctx().clone();
        let hello_ctx = ctx.clone();
        let stream =
            hassh::Tap::new(conn.take_stream(), move |hello: Option<hassh::ClientHello>| {
                let mut e = hello_ctx.event(Kind::new("ssh.client"));
                match hello {
                    Some(h) => {
                        e.message = Some(h.version.clone());
                        let f = &mut e.fields;
                        f.insert("version".into(), h.version.clone().into());
                        f.insert("hassh".into(), h.hassh().into());
                        f.insert("hassh_algorithms".into(), h.hassh_algorithms().into());
                        f.insert("kex".into(), h.kex.into());
                        f.insert("host_keys".into(), h.host_keys.into());
                        f.insert("ciphers".into(), h.ciphers.into());
                        f.insert("macs".into(), h.macs.into());
                        f.insert("compression".into(), h.compression.into());
                    }
                    None => e.message = Some("no SSH client hello".into()),
                }
                hello_ctx.emit(e);
            });
        let handler =
            Client { svc: Arc::clone(&self.0), ctx, user: String::new(), channels: HashMap::new() };
        let running = russh::server::run_stream(Arc::clone(&self.0.config), stream, handler)
            .await
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        let handle = running.handle();
        // Ends the russh task if this session is dropped (shutdown, time limit).
        struct Guard(Option<russh::server::Handle>);
        impl Drop for Guard {
            fn drop(&mut self) {
                if let Some(h) = self.0.take() {
                    tokio::spawn(async move {
                        let _ = h
                            .disconnect(
                                russh::Disconnect::ByApplication,
                                String::new(),
                                "en".into(),
                            )
                            .await;
                    });
                }
            }
        }
        let mut guard = Guard(Some(handle));
        let r = running.await;
        guard.0 = None;
        match r {
            Ok(()) => Ok(()),
            Err(russh::Error::Disconnect | russh::Error::HUP | russh::Error::IO(_)) => Ok(()),
            Err(russh::Error::InactivityTimeout) => Err(SessionError::Idle),
            Err(e) => Err(SessionError::Protocol(e.to_string())),
        }
    }
}

/// What a session channel is doing.
enum Mode {
    /// Opened, no shell or command yet.
    Idle,
    /// An interactive shell.
    Shell { shell: Box<Shell>, editor: LineEditor, tty: Option<ttylog::TtyLog> },
    /// Receiving files (`scp -t`).
    Scp(scp::ScpSink),
    /// The `sftp` subsystem.
    Sftp(Box<sftp::SftpSession>),
}

struct Chan {
    /// Terminal type and size from `pty-req`.
    pty: Option<(String, u32, u32)>,
    mode: Mode,
}

/// One SSH connection.
struct Client {
    svc: Arc<Ssh>,
    ctx: SessionCtx,
    /// The user that logged in.
    user: String,
    channels: HashMap<ChannelId, Chan>,
}

fn ip_of(ctx: &SessionCtx) -> IpAddr {
    ctx.peer.ip().to_canonical()
}

impl Client {
    fn auth_event(
        &self,
        method: AuthMethod,
        user: &str,
        password: Option<&str>,
        success: bool,
        extra: Vec<(&str, String)>,
    ) {
        let mut e = self.ctx.event(Kind::AUTH_ATTEMPT);
        e.auth = Some(Box::new(Auth {
            method,
            username: Some(user.to_owned()),
            password: password.map(str::to_owned),
            success,
            extra: extra.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }));
        self.ctx.emit(e);
    }

    fn password(&mut self, method: AuthMethod, user: &str, password: &str) -> RAuth {
        let ok = self.svc.allow(ip_of(&self.ctx), user, password);
        self.auth_event(method, user, Some(password), ok, Vec::new());
        if ok {
            self.user = user.to_owned();
            RAuth::Accept
        } else {
            self.svc.reject()
        }
    }

    fn emit_shell(&self, events: Vec<ShellEvent>) {
        fetch::shell_events(self.svc.fetcher.as_ref(), &events, &self.ctx);
        for ev in events {
            self.ctx.emit(ev.to_event(&self.ctx));
        }
    }

    fn new_shell(&self) -> Box<Shell> {
        let mut sh = Shell::new(&self.svc.machine, &self.user);
        sh.set_client(Some(ip_of(&self.ctx)));
        Box::new(sh)
    }

    fn upload_event(&self, name: &str, via: &str, up: &scp::Upload) {
        let mut e = self.ctx.event(Kind::FILE_UPLOAD);
        e.download = Some(Box::new(Download {
            url: name.to_owned(),
            sha256: Some(up.sha256.clone()),
            size: Some(up.size),
        }));
        let mut p = Payload::new(&up.head, self.svc.keep);
        // The payload describes the whole file, of which `head` is the kept prefix.
        p.len = up.size;
        if let Ok(b) = <[u8; 32]>::try_from(unhex(&up.sha256).as_slice()) {
            p.sha256 = b;
        }
        e.payload = Some(p);
        e.message = Some(via.to_owned());
        self.ctx.emit(e);
    }

    fn sftp_events(&self, out: sftp::Output) {
        for op in out.ops {
            let mut e = self.ctx.event(Kind::new("ssh.sftp"));
            e.message = Some(if op.path.is_empty() {
                op.op.to_owned()
            } else {
                format!("{} {}", op.op, op.path)
            });
            e.fields.insert("op".into(), op.op.into());
            e.fields.insert("path".into(), op.path.into());
            if let Some(t) = op.target {
                e.fields.insert("target".into(), t.into());
            }
            e.fields.insert("result".into(), op.result.into());
            if let Some(b) = op.bytes {
                e.fields.insert("bytes".into(), b.into());
            }
            self.ctx.emit(e);
        }
        for up in &out.uploads {
            self.upload_event(&up.name, "sftp", up);
        }
    }

    /// A channel ended: files the shell saw written, the TTY log, open SFTP uploads.
    fn finish(&mut self, id: ChannelId) {
        let Some(chan) = self.channels.remove(&id) else { return };
        if let Mode::Sftp(mut s) = chan.mode {
            let mut out = sftp::Output::default();
            s.finish(&mut out);
            self.sftp_events(out);
            return;
        }
        if let Mode::Shell { mut shell, tty, .. } = chan.mode {
            let files = shell.finish();
            self.emit_shell(files);
            if let Some(tty) = tty {
                let (path, size, sha, truncated) = tty.finish();
                let mut e = self.ctx.event(Kind::new("ssh.ttylog"));
                e.message = Some(path.display().to_string());
                e.fields.insert("path".into(), path.display().to_string().into());
                e.fields.insert("size".into(), size.into());
                e.fields.insert("sha256".into(), sha.into());
                e.fields.insert("truncated".into(), truncated.into());
                self.ctx.emit(e);
            }
        }
    }

    fn send(session: &mut Session, id: ChannelId, data: &[u8]) -> Result<(), russh::Error> {
        if data.is_empty() {
            return Ok(());
        }
        session.data(id, bytes::Bytes::copy_from_slice(data))
    }
}

fn unhex(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks(2)
        .filter_map(|c| std::str::from_utf8(c).ok().and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

impl russh::server::Handler for Client {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<RAuth, Self::Error> {
        Ok(self.svc.reject())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<RAuth, Self::Error> {
        Ok(self.password(AuthMethod::Password, user, password))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<RAuth, Self::Error> {
        let key = offer.public_key;
        self.auth_event(
            AuthMethod::PublicKey,
            user,
            None,
            false,
            vec![
                ("fingerprint", key.fingerprint(HashAlg::Sha256).to_string()),
                ("key_type", key.algorithm().to_string()),
                ("key", key.to_openssh().unwrap_or_default()),
            ],
        );
        // Keys never open the door: bots that own a key also try passwords.
        Ok(self.svc.reject())
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<RAuth, Self::Error> {
        match response {
            None => Ok(RAuth::Partial {
                name: "".into(),
                instructions: "".into(),
                prompts: vec![("Password: ".into(), false)].into(),
            }),
            Some(mut r) => {
                let pw =
                    r.next().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                Ok(self.password(AuthMethod::KeyboardInteractive, user, &pw))
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.channels.len() >= MAX_CHANNELS {
            reply.reject(russh::ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        }
        // The handler callbacks get every message; the channel object itself is not read.
        self.channels.insert(channel.id(), Chan { pty: None, mode: Mode::Idle });
        drop(channel);
        reply.accept().await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        host: &str,
        port: u32,
        orig: &str,
        orig_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let mut e = self.ctx.event(Kind::new("ssh.direct_tcpip"));
        e.message = Some(format!("{host}:{port}"));
        e.fields.insert("dst_host".into(), host.into());
        e.fields.insert("dst_port".into(), port.into());
        e.fields.insert("originator".into(), orig.into());
        e.fields.insert("originator_port".into(), orig_port.into());
        self.ctx.emit(e);
        reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pw: u32,
        _ph: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(c) = self.channels.get_mut(&channel) {
            c.pty = Some((crate::shell::truncate(term, 64).to_owned(), cols, rows));
        }
        session.channel_success(channel)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // sshd accepts only AcceptEnv names (LANG, LC_*) and ignores the rest silently.
        session.channel_success(channel)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let shell = self.new_shell();
        let Some(c) = self.channels.get_mut(&channel) else {
            return session.channel_failure(channel);
        };
        let mut tty = match (&c.pty, &self.svc.ttylog_dir) {
            (Some((term, cols, rows)), Some(dir)) => Some(ttylog::TtyLog::new(
                dir,
                &format!("{}-{}", self.ctx.id, channel),
                &self.ctx.id.to_string(),
                term,
                (*cols, *rows),
                TTYLOG_CAP,
            )),
            _ => None,
        };
        let mut banner = to_crlf(shell.motd().as_bytes());
        banner.extend_from_slice(shell.prompt().as_bytes());
        if let Some(t) = tty.as_mut() {
            t.record("o", &banner);
        }
        c.mode = Mode::Shell { shell, editor: LineEditor::new(crate::shell::MAX_LINE), tty };
        session.channel_success(channel)?;
        Self::send(session, channel, &banner)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let cmd = String::from_utf8_lossy(data).into_owned();
        let cmd = crate::shell::truncate(&cmd, crate::shell::MAX_LINE).to_owned();
        if !self.channels.contains_key(&channel) {
            return session.channel_failure(channel);
        }
        let words: Vec<&str> = cmd.split_whitespace().collect();
        if words.first() == Some(&"scp") && words.contains(&"-t") {
            self.emit_shell(vec![ShellEvent::Command { input: cmd.clone(), known: true }]);
            if let Some(c) = self.channels.get_mut(&channel) {
                c.mode = Mode::Scp(scp::ScpSink::new(self.svc.keep, self.svc.max_upload));
            }
            session.channel_success(channel)?;
            return Self::send(session, channel, scp::ScpSink::start());
        }
        let mut shell = self.new_shell();
        let out = shell.run_line(&cmd);
        let files = shell.finish();
        self.emit_shell(out.events);
        self.emit_shell(files);
        let pty = self.channels.get(&channel).is_some_and(|c| c.pty.is_some());
        session.channel_success(channel)?;
        if pty {
            // One terminal: both streams arrive interleaved on it.
            Self::send(session, channel, &to_crlf(&out.output))?;
        } else {
            Self::send(session, channel, &out.stdout)?;
            if !out.stderr.is_empty() {
                session.extended_data(channel, 1, bytes::Bytes::from(out.stderr))?;
            }
        }
        session.exit_status_request(channel, u32::try_from(out.status).unwrap_or(1))?;
        session.eof(channel)?;
        session.close(channel)?;
        self.channels.remove(&channel);
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let mut e = self.ctx.event(Kind::new("ssh.subsystem"));
        e.message = Some(crate::shell::truncate(name, 64).to_owned());
        self.ctx.emit(e);
        if name != "sftp" {
            return session.channel_failure(channel);
        }
        let shell = self.new_shell();
        let Some(c) = self.channels.get_mut(&channel) else {
            return session.channel_failure(channel);
        };
        c.mode =
            Mode::Sftp(Box::new(sftp::SftpSession::new(shell, self.svc.keep, self.svc.max_upload)));
        session.channel_success(channel)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        cols: u32,
        rows: u32,
        _pw: u32,
        _ph: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(Chan { mode: Mode::Shell { tty: Some(t), .. }, .. }) =
            self.channels.get_mut(&channel)
        {
            t.record("r", format!("{cols}x{rows}").as_bytes());
        }
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(c) = self.channels.get_mut(&channel) else { return Ok(()) };
        let mut events = Vec::new();
        let mut close = false;
        let mut uploads = Vec::new();
        let mut reply = Vec::new();
        let mut sftp_out = None;
        match &mut c.mode {
            Mode::Idle => {}
            Mode::Sftp(s) => {
                let mut out = sftp::Output::default();
                s.feed(data, &mut out);
                close = s.done();
                reply = std::mem::take(&mut out.reply);
                sftp_out = Some(out);
            }
            Mode::Scp(sink) => {
                sink.feed(data, &mut reply, &mut uploads);
                close = sink.done();
            }
            Mode::Shell { shell, editor, tty } => {
                if let Some(t) = tty.as_mut() {
                    t.record("i", data);
                }
                let mut lines = Vec::new();
                editor.feed(data, &mut reply, &mut lines);
                for ev in lines {
                    match ev {
                        EditorEvent::Line(l) => {
                            let out = shell.run_line(&l);
                            events.extend(out.events);
                            reply.extend_from_slice(&to_crlf(&out.output));
                            if out.exit {
                                reply.extend_from_slice(b"logout\r\n");
                                close = true;
                                break;
                            }
                        }
                        EditorEvent::Interrupt => {}
                        EditorEvent::Eof => {
                            reply.extend_from_slice(b"logout\r\n");
                            close = true;
                            break;
                        }
                    }
                    reply.extend_from_slice(shell.prompt().as_bytes());
                }
                if let Some(t) = tty.as_mut() {
                    t.record("o", &reply);
                }
            }
        }
        self.emit_shell(events);
        if let Some(out) = sftp_out {
            self.sftp_events(out);
        }
        for up in &uploads {
            self.upload_event(&up.name, "scp", up);
        }
        Self::send(session, channel, &reply)?;
        if close {
            session.exit_status_request(channel, 0)?;
            session.eof(channel)?;
            session.close(channel)?;
            self.finish(channel);
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(Chan { mode: Mode::Scp(_) | Mode::Sftp(_), .. }) = self.channels.get(&channel) {
            session.exit_status_request(channel, 0)?;
            session.eof(channel)?;
            session.close(channel)?;
            self.finish(channel);
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.finish(channel);
        Ok(())
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let ids: Vec<ChannelId> = self.channels.keys().copied().collect();
        for id in ids {
            self.finish(id);
        }
    }
}
