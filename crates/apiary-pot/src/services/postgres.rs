//! PostgreSQL 15 look-alike: SSLRequest and GSSENCRequest answered `N`, the StartupMessage
//! parsed (user, database, application_name, every parameter), a password asked for in clear
//! text (so clients send it and it is captured), or MD5 / SCRAM-SHA-256 exchanges recorded
//! for offline cracking, then `FATAL 28P01 password authentication failed for user "x"` as a
//! real server words it.
//!
//! Events: `auth.attempt` (method `password` for clear text, `hashed` for MD5 and SCRAM; the
//! startup parameters and exchange details in `extra`).

use std::collections::BTreeMap;
use std::sync::Arc;

use apiary_event::{Auth, AuthMethod, Kind, Transport};
use base64::Engine as _;
use serde::Deserialize;

use super::{Handler, ServiceInfo, TcpService, options};
use crate::{Conn, SessionError};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "postgres",
    aliases: &["PostgreSQL", "postgresql", "pgsql"],
    protocol: "postgresql",
    description: "PostgreSQL 15 look-alike: startup parsed, cleartext/MD5/SCRAM password capture",
    transports: &[Transport::Tcp],
    build,
};

/// PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`.
const MAX_STARTUP: usize = 10_000;
/// PostgreSQL's `PG_MAX_AUTH_TOKEN_LENGTH`.
const MAX_MESSAGE: usize = 65_535;
/// Startup parameters kept.
const MAX_PARAMS: usize = 32;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Method {
    /// AuthenticationCleartextPassword: the client sends the password itself.
    #[default]
    Cleartext,
    /// AuthenticationMD5Password with a random salt.
    Md5,
    /// SASL with SCRAM-SHA-256.
    Scram,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default)]
    auth: Method,
}

struct Postgres {
    method: Method,
}

fn build(_transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    let o: Options = options(table)?;
    Ok(Handler::Tcp(Arc::new(Postgres { method: o.auth })))
}

/// Why a frontend message could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgError {
    /// More bytes are needed.
    #[error("incomplete message")]
    Incomplete,
    /// The length word is out of range (`invalid length of startup packet`).
    #[error("invalid length")]
    InvalidLength,
    /// Malformed contents.
    #[error("malformed message")]
    Malformed,
}

/// The first message of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Startup {
    /// SSLRequest.
    Ssl,
    /// GSSENCRequest.
    GssEnc,
    /// CancelRequest.
    Cancel,
    /// A protocol version the server does not speak (`major.minor`).
    Unsupported(u16, u16),
    /// A version 3 StartupMessage: its parameters, in order.
    V3(Vec<(String, String)>),
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// Phase one: the length of the startup packet at the start of `buf`.
pub fn check_startup(buf: &[u8]) -> Result<usize, PgError> {
    let len = be32(buf).ok_or(PgError::Incomplete)? as usize;
    if !(8..=MAX_STARTUP).contains(&len) {
        return Err(PgError::InvalidLength);
    }
    if buf.len() < len { Err(PgError::Incomplete) } else { Ok(len) }
}

/// Phase two: the startup packet at the start of `buf`.
pub fn parse_startup(buf: &[u8]) -> Result<Startup, PgError> {
    let len = check_startup(buf)?;
    let body = buf.get(4..len).ok_or(PgError::Incomplete)?;
    let code = be32(body).ok_or(PgError::Malformed)?;
    match code {
        SSL_REQUEST => return Ok(Startup::Ssl),
        GSSENC_REQUEST => return Ok(Startup::GssEnc),
        CANCEL_REQUEST => return Ok(Startup::Cancel),
        _ => {}
    }
    let (major, minor) = ((code >> 16) as u16, (code & 0xffff) as u16);
    if major != 3 {
        return Ok(Startup::Unsupported(major, minor));
    }
    let mut params = Vec::new();
    let mut rest = body.get(4..).unwrap_or_default();
    loop {
        let end = rest.iter().position(|b| *b == 0).ok_or(PgError::Malformed)?;
        if end == 0 {
            break;
        }
        let key = rest.get(..end).unwrap_or_default();
        rest = rest.get(end + 1..).unwrap_or_default();
        let vend = rest.iter().position(|b| *b == 0).ok_or(PgError::Malformed)?;
        let val = rest.get(..vend).unwrap_or_default();
        rest = rest.get(vend + 1..).unwrap_or_default();
        if params.len() < MAX_PARAMS {
            params.push((lossy(key), lossy(val)));
        }
    }
    Ok(Startup::V3(params))
}

/// Phase one for typed messages (`p` password and SASL messages): the whole length.
pub fn check_message(buf: &[u8]) -> Result<usize, PgError> {
    let len = be32(buf.get(1..).ok_or(PgError::Incomplete)?).ok_or(PgError::Incomplete)? as usize;
    if !(4..=MAX_MESSAGE).contains(&len) {
        return Err(PgError::InvalidLength);
    }
    if buf.len() < len + 1 { Err(PgError::Incomplete) } else { Ok(len + 1) }
}

/// Phase two: the message type and body.
pub fn parse_message(buf: &[u8]) -> Result<(u8, &[u8]), PgError> {
    let total = check_message(buf)?;
    let kind = buf.first().copied().ok_or(PgError::Incomplete)?;
    Ok((kind, buf.get(5..total).ok_or(PgError::Incomplete)?))
}

/// A SASLInitialResponse body: mechanism and the client-first message.
pub fn parse_sasl_initial(body: &[u8]) -> Result<(String, Vec<u8>), PgError> {
    let end = body.iter().position(|b| *b == 0).ok_or(PgError::Malformed)?;
    let mech = lossy(body.get(..end).unwrap_or_default());
    let rest = body.get(end + 1..).unwrap_or_default();
    let n = be32(rest).ok_or(PgError::Malformed)?;
    let data = if n == u32::MAX {
        Vec::new()
    } else {
        rest.get(4..4 + n as usize).ok_or(PgError::Malformed)?.to_vec()
    };
    Ok((mech, data))
}

fn lossy(b: &[u8]) -> String {
    crate::shell::truncate(&String::from_utf8_lossy(b), 256).to_owned()
}

/// A backend message: type, length, body.
fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// An ErrorResponse with PostgreSQL 15's fields.
fn error(code: &str, msg: &str, file: &str, line: u32, routine: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (tag, val) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', msg),
        (b'F', file),
        (b'L', &line.to_string()),
        (b'R', routine),
    ] {
        b.push(tag);
        b.extend_from_slice(val.as_bytes());
        b.push(0);
    }
    b.push(0);
    message(b'E', &b)
}

fn auth_request(code: u32, extra: &[u8]) -> Vec<u8> {
    let mut b = code.to_be_bytes().to_vec();
    b.extend_from_slice(extra);
    message(b'R', &b)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads one typed message, `None` at EOF.
async fn read_message(conn: &mut Conn) -> Result<Option<(u8, Vec<u8>)>, SessionError> {
    let Some(head) = conn.read_exact(5).await? else { return Ok(None) };
    let len = match check_message(&head) {
        Ok(n) => n,
        Err(PgError::Incomplete) => {
            be32(head.get(1..).unwrap_or_default()).unwrap_or(0) as usize + 1
        }
        Err(_) => return Err(SessionError::Protocol("invalid message length".into())),
    };
    let Some(body) = conn.read_exact(len.saturating_sub(5)).await? else { return Ok(None) };
    let mut whole = head.to_vec();
    whole.extend_from_slice(&body);
    let (kind, body) = parse_message(&whole).map_err(|e| SessionError::Protocol(e.to_string()))?;
    Ok(Some((kind, body.to_vec())))
}

impl Postgres {
    /// Runs the password exchange; the captured secret, its method and details.
    async fn exchange(
        &self,
        conn: &mut Conn,
        user: &str,
        extra: &mut BTreeMap<String, String>,
    ) -> Result<Option<(AuthMethod, Option<String>)>, SessionError> {
        match self.method {
            Method::Cleartext => {
                conn.tx(&auth_request(3, &[])).await?;
                let Some((b'p', body)) = read_message(conn).await? else { return Ok(None) };
                let pw = body.strip_suffix(b"\0").unwrap_or(&body);
                Ok(Some((AuthMethod::Password, Some(lossy(pw)))))
            }
            Method::Md5 => {
                let salt = super::random_bytes(4);
                conn.tx(&auth_request(5, &salt)).await?;
                let Some((b'p', body)) = read_message(conn).await? else { return Ok(None) };
                let resp = body.strip_suffix(b"\0").unwrap_or(&body);
                extra.insert("salt".into(), hex(&salt));
                extra.insert("response".into(), lossy(resp));
                extra.insert("mechanism".into(), "md5".into());
                let _ = user;
                Ok(Some((AuthMethod::Hashed, None)))
            }
            Method::Scram => {
                conn.tx(&auth_request(10, b"SCRAM-SHA-256\0\0")).await?;
                let Some((b'p', body)) = read_message(conn).await? else { return Ok(None) };
                let Ok((mech, first)) = parse_sasl_initial(&body) else {
                    return Err(SessionError::Protocol("bad SASLInitialResponse".into()));
                };
                let first = lossy(&first);
                let client_nonce = first
                    .split(',')
                    .find_map(|f| f.strip_prefix("r="))
                    .unwrap_or_default()
                    .to_owned();
                let b64 = base64::engine::general_purpose::STANDARD;
                let server_first = format!(
                    "r={client_nonce}{},s={},i=4096",
                    b64.encode(super::random_bytes(18)),
                    b64.encode(super::random_bytes(16))
                );
                extra.insert("mechanism".into(), mech);
                extra.insert("client_first".into(), first);
                extra.insert("server_first".into(), server_first.clone());
                conn.tx(&auth_request(11, server_first.as_bytes())).await?;
                if let Some((b'p', fin)) = read_message(conn).await? {
                    extra.insert("client_final".into(), lossy(&fin));
                }
                Ok(Some((AuthMethod::Hashed, None)))
            }
        }
    }
}

#[async_trait::async_trait]
impl TcpService for Postgres {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        // At most one SSLRequest and one GSSENCRequest come before the startup packet.
        for _ in 0..3 {
            let Some(head) = conn.read_exact(4).await? else { return Ok(()) };
            let len = match check_startup(&head) {
                // The server logs "invalid length of startup packet" and closes silently.
                Err(PgError::InvalidLength) => {
                    return Err(SessionError::Protocol("invalid length of startup packet".into()));
                }
                _ => be32(&head).unwrap_or(0) as usize,
            };
            let Some(body) = conn.read_exact(len.saturating_sub(4)).await? else { return Ok(()) };
            let mut whole = head.to_vec();
            whole.extend_from_slice(&body);
            let startup = match parse_startup(&whole) {
                Ok(s) => s,
                Err(_) => {
                    let msg = "invalid startup packet layout: expected terminator as last byte";
                    conn.tx(&error("08P01", msg, "postmaster.c", 2268, "ProcessStartupPacket"))
                        .await?;
                    return Err(SessionError::Protocol(msg.into()));
                }
            };
            let params = match startup {
                Startup::Ssl | Startup::GssEnc => {
                    conn.tx(b"N").await?;
                    continue;
                }
                Startup::Cancel => return Ok(()),
                Startup::Unsupported(major, minor) => {
                    let msg = format!(
                        "unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0"
                    );
                    conn.tx(&error("0A000", &msg, "postmaster.c", 2194, "ProcessStartupPacket"))
                        .await?;
                    return Ok(());
                }
                Startup::V3(p) => p,
            };
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let Some(user) = get("user").filter(|u| !u.is_empty()) else {
                let msg = "no PostgreSQL user name specified in startup packet";
                conn.tx(&error("28000", msg, "postmaster.c", 2309, "ProcessStartupPacket")).await?;
                return Ok(());
            };
            let mut extra = BTreeMap::new();
            extra.insert("database".into(), get("database").unwrap_or_else(|| user.clone()));
            for (k, v) in &params {
                if k != "user" && k != "database" {
                    extra.insert(format!("param.{k}"), v.clone());
                }
            }
            let Some((method, password)) = self.exchange(conn, &user, &mut extra).await? else {
                // psql hangs up after the request when it has no password to give, then
                // reconnects with one.
                return Ok(());
            };
            let mut e = conn.event(Kind::AUTH_ATTEMPT);
            e.auth = Some(Box::new(Auth {
                method,
                username: Some(user.clone()),
                password,
                success: false,
                extra,
            }));
            conn.emit(e);
            let msg = format!("password authentication failed for user \"{user}\"");
            conn.tx(&error("28P01", &msg, "auth.c", 323, "auth_failed")).await?;
            conn.shutdown().await;
            return Ok(());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup(params: &[(&str, &str)]) -> Vec<u8> {
        let mut b = 196_608u32.to_be_bytes().to_vec();
        for (k, v) in params {
            b.extend_from_slice(k.as_bytes());
            b.push(0);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
        let mut p = (b.len() as u32 + 4).to_be_bytes().to_vec();
        p.extend_from_slice(&b);
        p
    }

    #[test]
    fn startup_packets() {
        let s =
            startup(&[("user", "postgres"), ("database", "prod"), ("application_name", "psql")]);
        assert_eq!(check_startup(&s), Ok(s.len()));
        let Ok(Startup::V3(p)) = parse_startup(&s) else { unreachable!("v3") };
        assert_eq!(p[0], ("user".into(), "postgres".into()));
        assert_eq!(p.len(), 3);
        assert_eq!(parse_startup(&[0, 0, 0, 8, 4, 210, 22, 47]), Ok(Startup::Ssl));
        assert_eq!(check_startup(b"GET / HTTP/1.0\r\n"), Err(PgError::InvalidLength));
        let smb = [0, 0, 0, 12, 0xff, 0x53, 0x4d, 0x42, 0x72, 0, 0, 0];
        assert_eq!(parse_startup(&smb), Ok(Startup::Unsupported(65363, 19778)));
        let mut bad = s.clone();
        bad.pop();
        bad.push(b'x');
        assert_eq!(parse_startup(&bad), Err(PgError::Malformed));
    }

    #[test]
    fn typed_messages() {
        let m = message(b'p', b"hunter2\0");
        assert_eq!(parse_message(&m), Ok((b'p', &b"hunter2\0"[..])));
        assert_eq!(check_message(&m[..6]), Err(PgError::Incomplete));
        assert_eq!(check_message(b"p\xff\xff\xff\xff"), Err(PgError::InvalidLength));
        let mut sasl = b"SCRAM-SHA-256\0".to_vec();
        sasl.extend_from_slice(&9u32.to_be_bytes());
        sasl.extend_from_slice(b"n,,n=,r=x");
        assert_eq!(parse_sasl_initial(&sasl), Ok(("SCRAM-SHA-256".into(), b"n,,n=,r=x".to_vec())));
        let e = error(
            "28P01",
            "password authentication failed for user \"x\"",
            "auth.c",
            323,
            "auth_failed",
        );
        assert!(e.starts_with(b"E\0\0\0"));
    }
}
