//! Keys of `type = "syslog"` loggers.

use std::path::PathBuf;

use serde::Deserialize;

use super::SyslogSink;
use crate::{Encoder, SinkError};

/// How messages travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogTransport {
    /// One datagram per message (RFC 5426); may be lost silently.
    #[default]
    Udp,
    /// TCP with octet counting (RFC 6587).
    Tcp,
    /// TLS with octet counting (RFC 5425).
    Tls,
}

/// `type = "syslog"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Collector host.
    pub host: String,
    /// Collector port (514 UDP/TCP, 6514 TLS usually).
    pub port: u16,
    /// Transport.
    #[serde(default)]
    pub transport: SyslogTransport,
    /// Facility name (`local0` .. `local7`, `user`, `daemon`, `auth`, `security`...).
    #[serde(default = "default_facility")]
    pub facility: String,
    /// APP-NAME field.
    #[serde(default = "default_app")]
    pub app_name: String,
    /// HOSTNAME field; default the event's node.
    #[serde(default)]
    pub hostname: Option<String>,
    /// CA certificates (PEM) for TLS; default the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Longest UDP message in bytes; longer MSG parts are cut.
    #[serde(default = "default_max")]
    pub max_udp: usize,
}

fn default_facility() -> String {
    "local0".into()
}
fn default_app() -> String {
    "apiary".into()
}
fn default_max() -> usize {
    8192
}

/// The facility number of a name.
pub(crate) fn facility_code(name: &str) -> Option<u8> {
    Some(match name {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" | "security" => 4,
        "syslog" => 5,
        "authpriv" => 10,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

impl SyslogConfig {
    /// Checks the keys.
    pub fn validate(&self) -> Result<(), SinkError> {
        if facility_code(&self.facility).is_none() {
            return Err(SinkError::Config(format!("unknown facility {:?}", self.facility)));
        }
        let printable =
            |s: &str| !s.is_empty() && s.len() <= 48 && s.bytes().all(|b| (33..=126).contains(&b));
        if !printable(&self.app_name) {
            return Err(SinkError::Config(
                "app_name must be 1-48 printable ASCII characters".into(),
            ));
        }
        if self.hostname.as_deref().is_some_and(|h| !printable(h)) {
            return Err(SinkError::Config(
                "hostname must be printable ASCII without spaces".into(),
            ));
        }
        if self.max_udp < 480 {
            return Err(SinkError::Config("max_udp must be at least 480".into()));
        }
        Ok(())
    }

    /// The sink; it connects on first use.
    pub fn build(&self, encoder: Encoder) -> Result<SyslogSink, SinkError> {
        self.validate()?;
        let tls = if self.transport == SyslogTransport::Tls {
            Some(crate::net::tls_connector(self.ca_file.as_deref())?)
        } else {
            None
        };
        Ok(SyslogSink::new(self.clone(), tls, encoder))
    }
}
