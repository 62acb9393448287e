//! A small SMTP client: one connection per message (alerts are rare by design), in clear,
//! with implicit TLS, or upgraded with STARTTLS (RFC 3207), and AUTH PLAIN or LOGIN.

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio_rustls::TlsConnector;

use super::EmailConfig;
use crate::SinkError;
use crate::alert::{Alert, AlertChannel};
use crate::net::{self, Io};

const TIMEOUT: Duration = Duration::from_secs(30);
/// Longest reply line and most lines of one reply.
const MAX_LINE: usize = 1024;
const MAX_LINES: usize = 64;

/// Sends alerts as mail.
pub struct SmtpChannel {
    cfg: EmailConfig,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for SmtpChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpChannel").field("host", &self.cfg.host).finish()
    }
}

/// One (possibly multi-line) reply: its code and the text of each line.
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    /// Whether an EHLO reply lists `keyword` (`STARTTLS`), or with `arg` an `AUTH` mechanism.
    fn offers(&self, keyword: &str, arg: Option<&str>) -> bool {
        self.lines.iter().any(|l| {
            let mut words = l.split_ascii_whitespace();
            words.next().is_some_and(|w| w.eq_ignore_ascii_case(keyword))
                && arg.is_none_or(|a| words.any(|w| w.eq_ignore_ascii_case(a)))
        })
    }
}

/// Reads one reply.
async fn reply(r: &mut BufReader<Box<dyn Io>>) -> Result<Reply, SinkError> {
    let mut line = String::new();
    let mut lines = Vec::new();
    for _ in 0..MAX_LINES {
        line.clear();
        let n = tokio::time::timeout(TIMEOUT, r.read_line(&mut line))
            .await
            .map_err(|_| SinkError::Timeout(TIMEOUT))??;
        if n == 0 {
            return Err(SinkError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if line.len() > MAX_LINE {
            return Err(SinkError::Rejected("SMTP reply line too long".into()));
        }
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| SinkError::Rejected(format!("bad SMTP reply {:?}", line.trim_end())))?;
        lines.push(line.get(4..).unwrap_or_default().trim_end().to_owned());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(Reply { code, lines });
        }
    }
    Err(SinkError::Rejected("SMTP reply has too many lines".into()))
}

/// Sends `line` and checks the reply code. `what` names the command in errors, so secrets in
/// the line (AUTH) never reach a log.
async fn command(
    r: &mut BufReader<Box<dyn Io>>,
    line: &str,
    what: &str,
    expect: u16,
) -> Result<Reply, SinkError> {
    r.get_mut().write_all(line.as_bytes()).await?;
    r.get_mut().write_all(b"\r\n").await?;
    let reply = reply(r).await?;
    if reply.code != expect {
        let code = reply.code;
        let err = format!("SMTP server answered {code} to {what}");
        return Err(if code >= 500 { SinkError::Refused(err) } else { SinkError::Rejected(err) });
    }
    Ok(reply)
}

/// The message text with CRLF line ends and dot-stuffing.
fn body(cfg: &EmailConfig, alert: &Alert) -> String {
    let mut subject = format!("{} {}", cfg.subject, alert.text.lines().next().unwrap_or_default());
    subject.retain(|c| c != '\r' && c != '\n');
    let subject: String = subject.chars().take(200).collect();
    let mut date = String::new();
    apiary_event::Timestamp::now().write_rfc3339(&mut date, "Z");
    let mut out = String::new();
    let _ = write!(
        out,
        "From: <{}>\r\nTo: {}\r\nSubject: {}\r\nX-Apiary-Date: {}\r\nMessage-ID: <{}@apiary>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        cfg.from,
        cfg.to.iter().map(|t| format!("<{t}>")).collect::<Vec<_>>().join(", "),
        subject,
        date,
        apiary_event::new_id().simple()
    );
    for line in alert.text.lines() {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

impl SmtpChannel {
    pub(crate) fn new(cfg: EmailConfig, tls: Option<TlsConnector>) -> Self {
        Self { cfg, tls }
    }
}

#[async_trait::async_trait]
impl AlertChannel for SmtpChannel {
    async fn post(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let cfg = &self.cfg;
        let implicit = if cfg.tls { self.tls.as_ref() } else { None };
        let conn = net::connect(&cfg.host, cfg.port, implicit, TIMEOUT).await?;
        let mut r = BufReader::new(conn);
        let greeting = reply(&mut r).await?;
        if greeting.code != 220 {
            return Err(SinkError::Rejected(format!("SMTP greeting {}", greeting.code)));
        }
        let mut ehlo = command(&mut r, "EHLO apiary", "EHLO", 250).await?;
        if cfg.starttls {
            if !ehlo.offers("STARTTLS", None) {
                // Going on in clear would hand the password and the alert to anyone on path.
                return Err(SinkError::Rejected("SMTP server does not offer STARTTLS".into()));
            }
            command(&mut r, "STARTTLS", "STARTTLS", 220).await?;
            if !r.buffer().is_empty() {
                // Bytes sent before the handshake would be read as if they came over TLS
                // (the STARTTLS injection flaw, CVE-2011-0411 and kin).
                return Err(SinkError::Rejected("SMTP server sent data after STARTTLS".into()));
            }
            let tls =
                self.tls.as_ref().ok_or_else(|| SinkError::Config("no TLS settings".into()))?;
            let upgraded =
                tokio::time::timeout(TIMEOUT, net::handshake(tls, &cfg.host, r.into_inner()))
                    .await
                    .map_err(|_| SinkError::Timeout(TIMEOUT))??;
            r = BufReader::new(upgraded);
            // RFC 3207: forget everything learnt before the handshake and ask again.
            ehlo = command(&mut r, "EHLO apiary", "EHLO", 250).await?;
        }
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            if ehlo.offers("AUTH", Some("PLAIN")) || !ehlo.offers("AUTH", Some("LOGIN")) {
                let token = b64(&format!("\0{u}\0{p}"));
                command(&mut r, &format!("AUTH PLAIN {token}"), "AUTH PLAIN", 235).await?;
            } else {
                command(&mut r, "AUTH LOGIN", "AUTH LOGIN", 334).await?;
                command(&mut r, &b64(u), "the AUTH LOGIN user", 334).await?;
                command(&mut r, &b64(p), "the AUTH LOGIN password", 235).await?;
            }
        }
        command(&mut r, &format!("MAIL FROM:<{}>", cfg.from), "MAIL FROM", 250).await?;
        for to in &cfg.to {
            command(&mut r, &format!("RCPT TO:<{to}>"), "RCPT TO", 250).await?;
        }
        command(&mut r, "DATA", "DATA", 354).await?;
        let msg = body(cfg, alert);
        r.get_mut().write_all(msg.as_bytes()).await?;
        let code = reply(&mut r).await?.code;
        if code != 250 {
            return Err(SinkError::Rejected(format!("SMTP server answered {code} to the message")));
        }
        let _ = command(&mut r, "QUIT", "QUIT", 221).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ehlo_keywords_and_auth_mechanisms_are_found_case_blind() {
        let r = Reply {
            code: 250,
            lines: vec!["mail.example.org".into(), "starttls".into(), "AUTH LOGIN PLAIN".into()],
        };
        assert!(r.offers("STARTTLS", None));
        assert!(r.offers("AUTH", Some("plain")));
        assert!(r.offers("AUTH", Some("LOGIN")));
        assert!(!r.offers("AUTH", Some("CRAM-MD5")));
        assert!(!r.offers("SIZE", None));
    }
}
