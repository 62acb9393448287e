//! SMTP (HoneyPy's SmtpExim, done properly): an Exim 4.80 receiver that speaks RFC 5321 with
//! CRLF, accepts `MAIL FROM:<a>` in its standard forms, takes messages (size-capped, hashed)
//! and captures `AUTH PLAIN` and `AUTH LOGIN` credentials.

use std::collections::BTreeMap;
use std::sync::Arc;

use apiary_event::{Auth, AuthMethod, Command, Kind, Payload, Transport};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Handler, ServiceInfo, TcpService, options};
use crate::{Conn, SessionError};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "smtp",
    aliases: &["SmtpExim", "exim"],
    protocol: "smtp",
    description: "Exim 4.80 SMTP receiver: EHLO, MAIL, RCPT, DATA (hashed), AUTH PLAIN/LOGIN",
    transports: &[Transport::Tcp],
    build,
};

/// Longest command line (RFC 5321 allows 512; Exim tolerates more).
const MAX_LINE: usize = 4096;
/// Recipients per message, as Exim's default `recipients_max` would refuse beyond.
const MAX_RCPT: usize = 100;
/// Message bytes copied into the `smtp.message` event.
const RECORDED: usize = 64 * 1024;
/// Exim's `smtp_max_unknown_commands`.
const MAX_UNKNOWN: u32 = 3;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The host name in the banner and replies.
    #[serde(default = "default_hostname")]
    hostname: String,
    /// Largest message accepted (advertised as SIZE); longer ones are read, hashed, refused.
    #[serde(default = "default_max_message")]
    max_message_size: u64,
}

fn default_hostname() -> String {
    "localhost".into()
}

fn default_max_message() -> u64 {
    10 * 1024 * 1024
}

struct Smtp {
    hostname: String,
    max_message: u64,
}

fn build(_transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    let o: Options = options(table)?;
    if o.hostname.is_empty() || o.hostname.contains(char::is_whitespace) {
        return Err("options: `hostname` must be one word".into());
    }
    Ok(Handler::Tcp(Arc::new(Smtp { hostname: o.hostname, max_message: o.max_message_size })))
}

/// One SMTP command line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpCommand {
    /// `HELO domain` (`None` without an argument).
    Helo(Option<String>),
    /// `EHLO domain`.
    Ehlo(Option<String>),
    /// `MAIL FROM:<path>`; `Err` carries Exim's complaint.
    Mail(Result<String, &'static str>),
    /// `RCPT TO:<path>`.
    Rcpt(Result<String, &'static str>),
    /// `DATA`.
    Data,
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `HELP`.
    Help,
    /// `VRFY`.
    Vrfy,
    /// `QUIT`.
    Quit,
    /// `AUTH mechanism [initial-response]`.
    Auth(String, Option<String>),
    /// `STARTTLS`.
    StartTls,
    /// Anything else.
    Unknown,
}

/// Parses one command line (without its CRLF). Pure and total: any bytes give a command.
pub fn parse_command(line: &[u8]) -> SmtpCommand {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    let (verb, rest) = match text.find(char::is_whitespace) {
        Some(i) => (text.get(..i).unwrap_or(""), text.get(i..).unwrap_or("").trim()),
        None => (text, ""),
    };
    let arg = (!rest.is_empty()).then(|| rest.to_owned());
    match verb.to_ascii_uppercase().as_str() {
        "HELO" => SmtpCommand::Helo(arg.map(|a| first_word(&a))),
        "EHLO" => SmtpCommand::Ehlo(arg.map(|a| first_word(&a))),
        "MAIL" => SmtpCommand::Mail(path_arg(rest, "FROM:", "MAIL must have an address operand")),
        "RCPT" => SmtpCommand::Rcpt(path_arg(rest, "TO:", "RCPT must have an address operand")),
        "DATA" => SmtpCommand::Data,
        "RSET" => SmtpCommand::Rset,
        "NOOP" => SmtpCommand::Noop,
        "HELP" => SmtpCommand::Help,
        "VRFY" | "EXPN" => SmtpCommand::Vrfy,
        "QUIT" => SmtpCommand::Quit,
        "STARTTLS" => SmtpCommand::StartTls,
        "AUTH" => {
            let mut words = rest.split_whitespace();
            let mech = words.next().unwrap_or("").to_ascii_uppercase();
            SmtpCommand::Auth(mech, words.next().map(str::to_owned))
        }
        _ => SmtpCommand::Unknown,
    }
}

fn first_word(s: &str) -> String {
    s.split_whitespace().next().unwrap_or("").to_owned()
}

/// `FROM:<a>`, `FROM: <a>`, `from:a SIZE=10`: the address, `<>` allowed (bounces).
fn path_arg(rest: &str, keyword: &str, missing: &'static str) -> Result<String, &'static str> {
    let head = rest.get(..keyword.len()).unwrap_or("");
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(missing);
    }
    let after = rest.get(keyword.len()..).unwrap_or("").trim_start();
    if after.is_empty() {
        return Err(missing);
    }
    if let Some(inner) = after.strip_prefix('<') {
        return match inner.split_once('>') {
            Some((addr, _)) => Ok(addr.to_owned()),
            None => Err("malformed address: missing >"),
        };
    }
    Ok(first_word(after))
}

/// A random message id in Exim's `XXXXXX-XXXXXX-XX` base-62 shape.
fn message_id() -> String {
    const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let r = super::random_bytes(14);
    let c = |i: usize| {
        char::from(
            B62.get(usize::from(r.get(i).copied().unwrap_or(0)) % 62).copied().unwrap_or(b'0'),
        )
    };
    let mut id = String::with_capacity(16);
    for i in 0..6 {
        id.push(c(i));
    }
    id.push('-');
    for i in 6..12 {
        id.push(c(i));
    }
    id.push('-');
    id.push(c(12));
    id.push(c(13));
    id
}

#[derive(Default)]
struct Envelope {
    helo: Option<String>,
    from: Option<String>,
    rcpt: Vec<String>,
}

impl Smtp {
    async fn reply(&self, conn: &mut Conn, text: &str) -> Result<(), SessionError> {
        conn.tx(format!("{text}\r\n").as_bytes()).await
    }

    /// Reads the message after `354` up to the lone dot, hashing all of it and keeping the
    /// first [`RECORDED`] bytes.
    async fn data(&self, conn: &mut Conn, env: &Envelope) -> Result<(), SessionError> {
        self.reply(conn, "354 Enter message, ending with \".\" on a line by itself").await?;
        let mut hasher = Sha256::new();
        let mut kept = Vec::new();
        let mut size = 0u64;
        loop {
            let Some(line) = conn.read_line(MAX_LINE * 256).await? else { return Ok(()) };
            if &line[..] == b"." {
                break;
            }
            // Dot-stuffing (RFC 5321 section 4.5.2).
            let line = line.strip_prefix(b".").unwrap_or(&line);
            size += line.len() as u64 + 2;
            if size <= self.max_message {
                hasher.update(line);
                hasher.update(b"\r\n");
                if kept.len() < RECORDED {
                    kept.extend_from_slice(line);
                    kept.extend_from_slice(b"\r\n");
                }
            }
        }
        let id = message_id();
        let mut e = conn.event(Kind::new("smtp.message"));
        let sha: [u8; 32] = hasher.finalize().into();
        let mut payload = Payload::new(&kept, RECORDED);
        payload.len = size.min(self.max_message);
        payload.sha256 = sha;
        e.fields.insert("mail_from".into(), env.from.clone().unwrap_or_default().into());
        e.fields.insert(
            "rcpt_to".into(),
            serde_json::Value::Array(env.rcpt.iter().map(|r| r.clone().into()).collect()),
        );
        e.fields.insert("size".into(), size.into());
        e.fields.insert("sha256".into(), payload.sha256_hex().into());
        e.fields.insert("id".into(), id.clone().into());
        if let Some(h) = &env.helo {
            e.fields.insert("helo".into(), h.clone().into());
        }
        let too_big = size > self.max_message;
        e.fields.insert("accepted".into(), (!too_big).into());
        e.payload = Some(payload);
        conn.emit(e);
        if too_big {
            self.reply(conn, "552 Message size exceeds maximum permitted").await
        } else {
            self.reply(conn, &format!("250 OK id={id}")).await
        }
    }

    /// `AUTH PLAIN` and `AUTH LOGIN`: ask for what is missing, record it, refuse it.
    async fn auth(
        &self,
        conn: &mut Conn,
        mech: &str,
        initial: Option<String>,
    ) -> Result<bool, SessionError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let decode =
            |s: &str| b64.decode(s.trim()).ok().map(|v| String::from_utf8_lossy(&v).into_owned());
        let (method, user, pass) = match mech {
            "PLAIN" => {
                let resp = match initial {
                    Some(i) => i,
                    None => {
                        self.reply(conn, "334 ").await?;
                        match conn.read_line(MAX_LINE).await? {
                            Some(l) => String::from_utf8_lossy(&l).into_owned(),
                            None => return Ok(false),
                        }
                    }
                };
                if resp.trim() == "*" {
                    self.reply(conn, "501 Authentication cancelled").await?;
                    return Ok(true);
                }
                let Some(text) = decode(&resp) else {
                    self.reply(conn, "501 Invalid base64 data").await?;
                    return Ok(true);
                };
                // authzid NUL authcid NUL password
                let mut parts = text.split('\0');
                let _authz = parts.next();
                (
                    AuthMethod::Plain,
                    parts.next().map(str::to_owned),
                    parts.next().map(str::to_owned),
                )
            }
            "LOGIN" => {
                let user = match initial {
                    Some(i) => decode(&i),
                    None => {
                        self.reply(conn, "334 VXNlcm5hbWU6").await?;
                        match conn.read_line(MAX_LINE).await? {
                            Some(l) => decode(&String::from_utf8_lossy(&l)),
                            None => return Ok(false),
                        }
                    }
                };
                self.reply(conn, "334 UGFzc3dvcmQ6").await?;
                let pass = match conn.read_line(MAX_LINE).await? {
                    Some(l) => decode(&String::from_utf8_lossy(&l)),
                    None => return Ok(false),
                };
                (AuthMethod::Login, user, pass)
            }
            _ => {
                self.reply(conn, "504 Unrecognized authentication type").await?;
                return Ok(true);
            }
        };
        let mut e = conn.event(Kind::AUTH_ATTEMPT);
        e.auth = Some(Box::new(Auth {
            method,
            username: user,
            password: pass,
            success: false,
            extra: BTreeMap::new(),
        }));
        conn.emit(e);
        self.reply(conn, "535 Incorrect authentication data").await?;
        Ok(true)
    }
}

#[async_trait::async_trait]
impl TcpService for Smtp {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        let host = &self.hostname;
        let peer_ip = conn.peer().ip().to_canonical();
        let banner = format!("220 {host} ESMTP Exim 4.80 {}", super::clock::Civil::now().rfc5322());
        self.reply(conn, &banner).await?;
        let mut env = Envelope::default();
        let mut unknown = 0u32;
        loop {
            let Some(line) = conn.read_line(MAX_LINE).await? else { return Ok(()) };
            if line.is_empty() {
                continue;
            }
            let cmd = parse_command(&line);
            let mut e = conn.event(Kind::COMMAND_INPUT);
            e.command = Some(Box::new(Command {
                input: String::from_utf8_lossy(&line).into_owned(),
                interpreter: Some("smtp".into()),
                known: Some(cmd != SmtpCommand::Unknown),
            }));
            conn.emit(e);
            match cmd {
                SmtpCommand::Helo(Some(d)) => {
                    env = Envelope { helo: Some(d.clone()), ..Envelope::default() };
                    self.reply(conn, &format!("250 {host} Hello {d} [{peer_ip}]")).await?;
                }
                SmtpCommand::Ehlo(Some(d)) => {
                    env = Envelope { helo: Some(d.clone()), ..Envelope::default() };
                    let text = format!(
                        "250-{host} Hello {d} [{peer_ip}]\r\n250-SIZE {}\r\n250-8BITMIME\r\n\
                         250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 HELP",
                        self.max_message
                    );
                    self.reply(conn, &text).await?;
                }
                SmtpCommand::Helo(None) => {
                    self.reply(conn, "501 Syntactically invalid HELO argument(s)").await?;
                }
                SmtpCommand::Ehlo(None) => {
                    self.reply(conn, "501 Syntactically invalid EHLO argument(s)").await?;
                }
                SmtpCommand::Mail(Ok(addr)) => {
                    if env.from.is_some() {
                        self.reply(conn, "503 sender already given").await?;
                    } else {
                        env.from = Some(addr);
                        self.reply(conn, "250 OK").await?;
                    }
                }
                SmtpCommand::Rcpt(Ok(addr)) => {
                    if env.from.is_none() {
                        self.reply(conn, "503 sender not yet given").await?;
                    } else if env.rcpt.len() >= MAX_RCPT {
                        self.reply(conn, "452 too many recipients").await?;
                    } else {
                        env.rcpt.push(addr);
                        self.reply(conn, "250 Accepted").await?;
                    }
                }
                SmtpCommand::Mail(Err(msg)) | SmtpCommand::Rcpt(Err(msg)) => {
                    self.reply(conn, &format!("501 {msg}")).await?;
                }
                SmtpCommand::Data => {
                    if env.rcpt.is_empty() {
                        self.reply(conn, "503-All RCPT commands were rejected with this error:\r\n503-valid RCPT command must precede DATA\r\n503 Valid RCPT command must precede DATA").await?;
                    } else {
                        self.data(conn, &env).await?;
                        env = Envelope { helo: env.helo.take(), ..Envelope::default() };
                    }
                }
                SmtpCommand::Rset => {
                    env = Envelope { helo: env.helo.take(), ..Envelope::default() };
                    self.reply(conn, "250 Reset OK").await?;
                }
                SmtpCommand::Noop => self.reply(conn, "250 OK").await?,
                SmtpCommand::Help => {
                    self.reply(
                        conn,
                        "214-Commands supported:\r\n214 AUTH HELO EHLO MAIL RCPT DATA NOOP QUIT RSET HELP",
                    )
                    .await?;
                }
                SmtpCommand::Vrfy => {
                    self.reply(conn, "252 Administrative prohibition").await?;
                }
                SmtpCommand::Quit => {
                    self.reply(conn, &format!("221 {host} closing connection")).await?;
                    return Ok(());
                }
                SmtpCommand::Auth(mech, initial) => {
                    if mech.is_empty() {
                        self.reply(conn, "501 Syntax error in parameters or arguments").await?;
                    } else if !self.auth(conn, &mech, initial).await? {
                        return Ok(());
                    }
                }
                SmtpCommand::StartTls | SmtpCommand::Unknown => {
                    unknown += 1;
                    if unknown > MAX_UNKNOWN {
                        self.reply(conn, "500 Too many unrecognized commands").await?;
                        return Ok(());
                    }
                    self.reply(conn, "500 unrecognized command").await?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{SmtpCommand as C, parse_command as p};

    #[test]
    fn commands_in_their_usual_forms() {
        assert_eq!(p(b"EHLO  example.org"), C::Ehlo(Some("example.org".into())));
        assert_eq!(p(b"helo"), C::Helo(None));
        for form in [
            "MAIL FROM:<a@b.c>",
            "mail from: <a@b.c>",
            "MAIL FROM:<a@b.c> SIZE=12",
            "MAIL From:a@b.c",
        ] {
            assert_eq!(p(form.as_bytes()), C::Mail(Ok("a@b.c".into())), "{form}");
        }
        assert_eq!(p(b"MAIL FROM:<>"), C::Mail(Ok(String::new())));
        assert!(matches!(p(b"MAIL"), C::Mail(Err(_))));
        assert!(matches!(p(b"MAIL FROM:<x"), C::Mail(Err(_))));
        assert_eq!(p(b"RCPT TO:<r@x>"), C::Rcpt(Ok("r@x".into())));
        assert_eq!(p(b"AUTH plain AGEAYg=="), C::Auth("PLAIN".into(), Some("AGEAYg==".into())));
        assert_eq!(p(b"\xff\xfe"), C::Unknown);
        assert_eq!(p(b""), C::Unknown);
    }

    #[test]
    fn message_ids_look_like_exim() {
        let id = super::message_id();
        assert_eq!(id.len(), 16);
        assert_eq!(id.as_bytes()[6], b'-');
        assert_eq!(id.as_bytes()[13], b'-');
    }
}
