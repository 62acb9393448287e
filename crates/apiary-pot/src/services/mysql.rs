//! MySQL 8.0 look-alike: the protocol-v10 greeting of a real server version with a fresh
//! random salt, HandshakeResponse41 parsed (user, database, auth plugin, connection
//! attributes), the scramble captured for offline cracking (or the password itself with the
//! `mysql_clear_password` switch), and `ERROR 1045 (28000): Access denied` as a real server
//! words it. TLS requests are refused (TLS is never advertised).
//!
//! Events: `auth.attempt` (method `hashed`, or `password` after a clear-text switch; `extra`
//! holds `salt`, `response`, `plugin`, `database` and the client's attributes).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use apiary_event::{Auth, AuthMethod, Kind, Transport};
use serde::Deserialize;

use super::{Handler, ServiceInfo, TcpService, options};
use crate::{Conn, SessionError};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "mysql",
    aliases: &["MySQL", "mariadb"],
    protocol: "mysql",
    description: "MySQL 8.0 look-alike: v10 greeting, login parsed and captured, access denied",
    transports: &[Transport::Tcp],
    build,
};

/// Largest packet accepted before login (a HandshakeResponse is a few hundred bytes).
const MAX_PACKET: usize = 16 * 1024;
/// Connection attributes kept per login.
const MAX_ATTRS: usize = 32;

const CLIENT_CONNECT_WITH_DB: u32 = 0x0000_0008;
const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
const CLIENT_SSL: u32 = 0x0000_0800;
const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;
const CLIENT_CONNECT_ATTRS: u32 = 0x0010_0000;
const CLIENT_PLUGIN_AUTH_LENENC: u32 = 0x0020_0000;
/// What MySQL 8.0 announces, without CLIENT_SSL.
const SERVER_CAPS: u32 = 0xdfff_ffff & !CLIENT_SSL;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The version in the greeting.
    #[serde(default = "default_version")]
    version: String,
    /// Auth plugin offered: `caching_sha2_password` (MySQL 8's default),
    /// `mysql_native_password`, or `mysql_clear_password` (asks the client to switch to
    /// clear text after its first answer; clients that allow it send the password itself).
    #[serde(default = "default_plugin")]
    plugin: String,
}

fn default_version() -> String {
    "8.0.36".into()
}
fn default_plugin() -> String {
    "caching_sha2_password".into()
}

struct Mysql {
    version: String,
    plugin: String,
    /// Connection ids count up, as a real server's do.
    next_id: AtomicU32,
}

fn build(_transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    let o: Options = options(table)?;
    if o.version.contains('\0') || o.version.len() > 60 || o.version.is_empty() {
        return Err("mysql: `version` must be a short string".into());
    }
    if !matches!(
        o.plugin.as_str(),
        "caching_sha2_password" | "mysql_native_password" | "mysql_clear_password"
    ) {
        return Err(format!("mysql: unknown plugin `{}`", o.plugin));
    }
    let start = 8 + u32::from(super::random_bytes(1).first().copied().unwrap_or(0));
    Ok(Handler::Tcp(Arc::new(Mysql {
        version: o.version,
        plugin: o.plugin,
        next_id: AtomicU32::new(start),
    })))
}

/// Why a MySQL packet could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MysqlError {
    /// More bytes are needed.
    #[error("incomplete packet")]
    Incomplete,
    /// Bigger than the cap.
    #[error("packet too large")]
    TooLarge,
    /// Malformed contents.
    #[error("bad handshake")]
    Malformed,
}

/// Phase one: the length of the whole packet (header included) at the start of `buf`.
pub fn check_packet(buf: &[u8]) -> Result<usize, MysqlError> {
    let [a, b, c, _seq] = <[u8; 4]>::try_from(buf.get(..4).ok_or(MysqlError::Incomplete)?)
        .map_err(|_| MysqlError::Incomplete)?;
    let len = usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16;
    if len > MAX_PACKET {
        return Err(MysqlError::TooLarge);
    }
    if buf.len() < 4 + len { Err(MysqlError::Incomplete) } else { Ok(4 + len) }
}

/// Phase two: sequence id and payload of the packet at the start of `buf`.
pub fn parse_packet(buf: &[u8]) -> Result<(u8, &[u8]), MysqlError> {
    let total = check_packet(buf)?;
    let seq = buf.get(3).copied().ok_or(MysqlError::Incomplete)?;
    Ok((seq, buf.get(4..total).ok_or(MysqlError::Incomplete)?))
}

/// A client's login packet (HandshakeResponse41), or its SSLRequest prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// Client capability flags.
    pub caps: u32,
    /// The request stops after the fixed part: the client wants TLS.
    pub ssl_request: bool,
    /// User name.
    pub user: String,
    /// Auth response (a scramble, or a password for clear-text plugins).
    pub auth: Vec<u8>,
    /// Initial database.
    pub database: Option<String>,
    /// The plugin the client used.
    pub plugin: Option<String>,
    /// Connection attributes (`_client_name`, `program_name`, ...).
    pub attrs: Vec<(String, String)>,
}

/// Reads over a payload without indexing.
struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let head = self.0.get(..n)?;
        self.0 = self.0.get(n..)?;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn cstr(&mut self) -> Option<&'a [u8]> {
        let end = self.0.iter().position(|b| *b == 0)?;
        let s = self.take(end)?;
        self.take(1)?;
        Some(s)
    }
    /// A length-encoded integer.
    fn lenenc(&mut self) -> Option<u64> {
        match self.u8()? {
            n @ 0..=0xfa => Some(u64::from(n)),
            0xfc => Some(u64::from(u16::from_le_bytes(self.take(2)?.try_into().ok()?))),
            0xfd => {
                let b = self.take(3)?;
                Some(b.iter().rev().fold(0u64, |a, x| a << 8 | u64::from(*x)))
            }
            0xfe => Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            _ => None,
        }
    }
    fn lenenc_bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.lenenc()?).ok()?;
        self.take(n)
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

fn lossy(b: &[u8]) -> String {
    crate::shell::truncate(&String::from_utf8_lossy(b), 256).to_owned()
}

/// Parses a HandshakeResponse41 payload. Total: any bytes give a value or an error.
pub fn parse_handshake(payload: &[u8]) -> Result<HandshakeResponse, MysqlError> {
    let mut c = Cur(payload);
    let caps = c.u32().ok_or(MysqlError::Malformed)?;
    if caps & CLIENT_PROTOCOL_41 == 0 {
        return Err(MysqlError::Malformed);
    }
    // max packet size, character set, 23 reserved bytes
    c.take(4 + 1 + 23).ok_or(MysqlError::Malformed)?;
    let mut r = HandshakeResponse { caps, ..Default::default() };
    if c.0.is_empty() {
        r.ssl_request = caps & CLIENT_SSL != 0;
        return if r.ssl_request { Ok(r) } else { Err(MysqlError::Malformed) };
    }
    r.user = lossy(c.cstr().ok_or(MysqlError::Malformed)?);
    let auth = if caps & CLIENT_PLUGIN_AUTH_LENENC != 0 {
        c.lenenc_bytes()
    } else if caps & CLIENT_SECURE_CONNECTION != 0 {
        c.u8().and_then(|n| c.take(usize::from(n)))
    } else {
        c.cstr()
    };
    r.auth = auth.ok_or(MysqlError::Malformed)?.to_vec();
    if caps & CLIENT_CONNECT_WITH_DB != 0 {
        r.database = c.cstr().map(lossy);
    }
    if caps & CLIENT_PLUGIN_AUTH != 0 {
        r.plugin = c.cstr().map(lossy);
    }
    if caps & CLIENT_CONNECT_ATTRS != 0
        && let Some(block) = c.lenenc_bytes()
    {
        let mut a = Cur(block);
        while !a.0.is_empty() && r.attrs.len() < MAX_ATTRS {
            let (Some(k), Some(v)) = (a.lenenc_bytes(), a.lenenc_bytes()) else { break };
            r.attrs.push((lossy(k), lossy(v)));
        }
    }
    let _ = c.rest();
    Ok(r)
}

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(0xff_ffff) as u32;
    let mut v = len.to_le_bytes().to_vec();
    v.truncate(3);
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

/// An ERR packet: `0xff`, code, `#`, SQLSTATE, message.
fn err_packet(seq: u8, code: u16, state: &str, msg: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(state.as_bytes());
    p.extend_from_slice(msg.as_bytes());
    packet(seq, &p)
}

/// A salt as `mysqld` makes one: printable ASCII without `\0` or `$`.
fn salt() -> Vec<u8> {
    super::random_bytes(20)
        .into_iter()
        .map(|b| {
            let c = 0x21 + b % 0x5e;
            if c == b'$' { b'%' } else { c }
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Mysql {
    fn greeting(&self, id: u32, salt: &[u8]) -> Vec<u8> {
        let plugin = if self.plugin == "mysql_clear_password" {
            "caching_sha2_password"
        } else {
            self.plugin.as_str()
        };
        let mut p = vec![10];
        p.extend_from_slice(self.version.as_bytes());
        p.push(0);
        p.extend_from_slice(&id.to_le_bytes());
        p.extend_from_slice(salt.get(..8).unwrap_or_default());
        p.push(0);
        p.extend_from_slice(&(SERVER_CAPS as u16).to_le_bytes());
        // utf8mb4_0900_ai_ci, SERVER_STATUS_AUTOCOMMIT
        p.push(255);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&((SERVER_CAPS >> 16) as u16).to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(salt.get(8..20).unwrap_or_default());
        p.push(0);
        p.extend_from_slice(plugin.as_bytes());
        p.push(0);
        packet(0, &p)
    }

    async fn read_packet(conn: &mut Conn) -> Result<Option<(u8, Vec<u8>)>, SessionError> {
        let Some(head) = conn.read_exact(4).await? else { return Ok(None) };
        match check_packet(&head) {
            Err(MysqlError::TooLarge) => return Err(SessionError::TooLong),
            Err(MysqlError::Incomplete) | Ok(_) => {}
            Err(MysqlError::Malformed) => return Err(SessionError::Protocol("bad packet".into())),
        }
        let Ok([a, b, c, _]) = <[u8; 4]>::try_from(&head[..]) else { return Ok(None) };
        let len = usize::from(a) | usize::from(b) << 8 | usize::from(c) << 16;
        let Some(body) = conn.read_exact(len).await? else { return Ok(None) };
        let mut whole = head.to_vec();
        whole.extend_from_slice(&body);
        let (seq, payload) =
            parse_packet(&whole).map_err(|e| SessionError::Protocol(e.to_string()))?;
        Ok(Some((seq, payload.to_vec())))
    }
}

#[async_trait::async_trait]
impl TcpService for Mysql {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let salt = salt();
        conn.tx(&self.greeting(id, &salt)).await?;
        let Some((seq, payload)) = Self::read_packet(conn).await? else { return Ok(()) };
        let host = conn.peer().ip().to_canonical();
        let bad_handshake = err_packet(seq.wrapping_add(1), 1043, "08S01", "Bad handshake");
        let hs = match parse_handshake(&payload) {
            Ok(h) => h,
            Err(_) => {
                conn.tx(&bad_handshake).await?;
                return Err(SessionError::Protocol("bad handshake".into()));
            }
        };
        if hs.ssl_request {
            // TLS was never offered; a client that asks anyway gets what mysqld gives.
            let mut e = conn.event(Kind::new("mysql.tls_request"));
            e.message = Some("TLS requested but not offered".into());
            conn.emit(e);
            conn.tx(&bad_handshake).await?;
            return Ok(());
        }
        let mut extra = BTreeMap::new();
        extra.insert("salt".to_owned(), hex(&salt));
        extra.insert("response".to_owned(), hex(&hs.auth));
        extra.insert("plugin".to_owned(), hs.plugin.clone().unwrap_or_default());
        if let Some(db) = &hs.database {
            extra.insert("database".to_owned(), db.clone());
        }
        for (k, v) in &hs.attrs {
            extra.insert(format!("attr.{k}"), v.clone());
        }
        let mut method = AuthMethod::Hashed;
        let mut password = None;
        let mut seq = seq.wrapping_add(1);
        if self.plugin == "mysql_clear_password" {
            // AuthSwitchRequest to the clear-text plugin: clients that allow it answer
            // with the password itself.
            let mut p = vec![0xfe];
            p.extend_from_slice(b"mysql_clear_password\0");
            conn.tx(&packet(seq, &p)).await?;
            if let Some((s, pw)) = Self::read_packet(conn).await? {
                seq = s.wrapping_add(1);
                let pw = pw.strip_suffix(b"\0").unwrap_or(&pw);
                method = AuthMethod::Password;
                password = Some(lossy(pw));
            } else {
                // The client refused the switch and hung up; the scramble is what we have.
                seq = 0;
            }
        }
        let used = if hs.auth.is_empty() && password.as_deref().is_none_or(str::is_empty) {
            "NO"
        } else {
            "YES"
        };
        let mut e = conn.event(Kind::AUTH_ATTEMPT);
        e.auth = Some(Box::new(Auth {
            method,
            username: Some(hs.user.clone()),
            password,
            success: false,
            extra,
        }));
        conn.emit(e);
        if seq == 0 {
            return Ok(());
        }
        let msg = format!("Access denied for user '{}'@'{host}' (using password: {used})", hs.user);
        conn.tx(&err_packet(seq, 1045, "28000", &msg)).await?;
        conn.shutdown().await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The login packet of the MariaDB 10.11 client (`mysql -u root -pxx -D shop`).
    fn sample() -> Vec<u8> {
        let caps = CLIENT_PROTOCOL_41
            | CLIENT_SECURE_CONNECTION
            | CLIENT_PLUGIN_AUTH
            | CLIENT_CONNECT_WITH_DB
            | CLIENT_CONNECT_ATTRS
            | CLIENT_PLUGIN_AUTH_LENENC;
        let mut p = caps.to_le_bytes().to_vec();
        p.extend_from_slice(&[0, 0, 0, 1, 33]);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(b"root\0");
        p.push(20);
        p.extend_from_slice(&[7; 20]);
        p.extend_from_slice(b"shop\0mysql_native_password\0");
        let attrs = b"\x0c_client_name\x0alibmariadb\x0cprogram_name\x05mysql";
        p.push(attrs.len() as u8);
        p.extend_from_slice(attrs);
        p
    }

    #[test]
    fn handshake_response_and_packets() {
        let hs = parse_handshake(&sample()).unwrap_or_default();
        assert_eq!(hs.user, "root");
        assert_eq!(hs.auth, vec![7; 20]);
        assert_eq!(hs.database.as_deref(), Some("shop"));
        assert_eq!(hs.plugin.as_deref(), Some("mysql_native_password"));
        assert_eq!(hs.attrs[1], ("program_name".into(), "mysql".into()));
        // Everything up to the end of the auth response is required; later fields are optional.
        for cut in 0..58 {
            let r = parse_handshake(sample().get(..cut).unwrap_or_default());
            assert!(r.is_err() || r.as_ref().is_ok_and(|h| h.ssl_request), "{cut}");
        }
        let p = packet(1, &sample());
        assert_eq!(check_packet(&p), Ok(p.len()));
        assert_eq!(check_packet(p.get(..10).unwrap_or_default()), Err(MysqlError::Incomplete));
        assert_eq!(check_packet(&[0xff, 0xff, 0xff, 0]), Err(MysqlError::TooLarge));
        let e = err_packet(2, 1045, "28000", "Access denied");
        assert_eq!(&e[4..], b"\xff\x15\x04#28000Access denied");
    }

    #[test]
    fn greeting_is_protocol_10_with_a_fresh_salt() {
        let m = Mysql {
            version: "8.0.36".into(),
            plugin: "caching_sha2_password".into(),
            next_id: AtomicU32::new(9),
        };
        let s = salt();
        assert!(s.iter().all(|c| c.is_ascii_graphic() && *c != b'$'));
        let g = m.greeting(9, &s);
        assert_eq!(&g[4..12], b"\x0a8.0.36\0");
        assert!(g.ends_with(b"caching_sha2_password\0"));
        assert_ne!(salt(), s);
    }
}
