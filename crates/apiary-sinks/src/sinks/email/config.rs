//! Keys of `type = "email"` loggers.

use std::path::PathBuf;

use serde::Deserialize;

use super::SmtpChannel;
use crate::SinkError;

/// `type = "email"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server.
    pub host: String,
    /// Port (25, 587 plain; 465 with `tls = true`).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Implicit TLS (SMTPS, usually port 465).
    #[serde(default)]
    pub tls: bool,
    /// Upgrade a plain connection with STARTTLS (usually port 587); a server that does not
    /// offer it is an error, never a reason to go on in clear.
    #[serde(default)]
    pub starttls: bool,
    /// CA certificates (PEM) for TLS; default the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// AUTH user (PLAIN, or LOGIN when the server offers only that).
    #[serde(default)]
    pub username: Option<String>,
    /// AUTH password.
    #[serde(default)]
    pub password: Option<String>,
    /// Envelope and header sender.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject prefix.
    #[serde(default = "default_subject")]
    pub subject: String,
}

fn default_port() -> u16 {
    25
}
fn default_subject() -> String {
    "[apiary]".into()
}

fn address_ok(a: &str) -> bool {
    a.contains('@') && !a.contains(['<', '>', '\r', '\n', ' ', ','])
}

impl EmailConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        if !address_ok(&self.from) {
            return Err(SinkError::Config(format!("bad from address {:?}", self.from)));
        }
        if self.to.is_empty() || !self.to.iter().all(|a| address_ok(a)) {
            return Err(SinkError::Config("to must list valid addresses".into()));
        }
        if self.subject.contains(['\r', '\n']) || self.host.is_empty() {
            return Err(SinkError::Config("bad host or subject".into()));
        }
        if self.password.is_some() != self.username.is_some() {
            return Err(SinkError::Config("username and password go together".into()));
        }
        if self.tls && self.starttls {
            return Err(SinkError::Config(
                "tls (implicit, port 465) and starttls (port 587) exclude each other".into(),
            ));
        }
        if self.username.is_some() && !self.tls && !self.starttls {
            return Err(SinkError::Config(
                "username and password need tls = true or starttls = true, or the password crosses the network in clear".into(),
            ));
        }
        if self.ca_file.is_some() && !self.tls && !self.starttls {
            return Err(SinkError::Config("ca_file needs tls = true or starttls = true".into()));
        }
        Ok(())
    }

    /// The channel.
    pub fn build(&self) -> Result<SmtpChannel, SinkError> {
        self.validate()?;
        let tls = if self.tls || self.starttls {
            Some(crate::net::tls_connector(self.ca_file.as_deref())?)
        } else {
            None
        };
        Ok(SmtpChannel::new(self.clone(), tls))
    }
}
