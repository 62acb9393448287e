//! A small SMTP client: one connection per message (alerts are rare by design).

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

/// Reads one (possibly multi-line) reply and returns its code.
async fn reply(r: &mut BufReader<Box<dyn Io>>) -> Result<u16, SinkError> {
    let mut line = String::new();
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
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(code);
        }
    }
    Err(SinkError::Rejected("SMTP reply has too many lines".into()))
}

async fn command(r: &mut BufReader<Box<dyn Io>>, line: &str, expect: u16) -> Result<(), SinkError> {
    r.get_mut().write_all(line.as_bytes()).await?;
    r.get_mut().write_all(b"\r\n").await?;
    let code = reply(r).await?;
    if code != expect {
        let what = line.split(' ').next().unwrap_or(line);
        let err = format!("SMTP server answered {code} to {what}");
        return Err(if code >= 500 { SinkError::Refused(err) } else { SinkError::Rejected(err) });
    }
    Ok(())
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
        let conn = net::connect(&self.cfg.host, self.cfg.port, self.tls.as_ref(), TIMEOUT).await?;
        let mut r = BufReader::new(conn);
        let greeting = reply(&mut r).await?;
        if greeting != 220 {
            return Err(SinkError::Rejected(format!("SMTP greeting {greeting}")));
        }
        command(&mut r, "EHLO apiary", 250).await?;
        if let (Some(u), Some(p)) = (&self.cfg.username, &self.cfg.password) {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{u}\0{p}"));
            command(&mut r, &format!("AUTH PLAIN {token}"), 235).await?;
        }
        command(&mut r, &format!("MAIL FROM:<{}>", self.cfg.from), 250).await?;
        for to in &self.cfg.to {
            command(&mut r, &format!("RCPT TO:<{to}>"), 250).await?;
        }
        command(&mut r, "DATA", 354).await?;
        let msg = body(&self.cfg, alert);
        r.get_mut().write_all(msg.as_bytes()).await?;
        let code = reply(&mut r).await?;
        if code != 250 {
            return Err(SinkError::Rejected(format!("SMTP server answered {code} to the message")));
        }
        let _ = command(&mut r, "QUIT", 221).await;
        Ok(())
    }
}
