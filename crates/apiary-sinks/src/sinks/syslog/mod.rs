//! Syslog RFC 5424 messages over UDP (RFC 5426, one datagram each), TCP with octet counting
//! (RFC 6587) or TLS (RFC 5425). The MSG part is the event document in the logger's format.

mod config;
mod format;
mod sink;

pub use config::{SyslogConfig, SyslogTransport};
pub use format::rfc5424;
pub use sink::SyslogSink;
