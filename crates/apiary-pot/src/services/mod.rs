//! The service emulators, one module each, and the catalogue that maps plugin names to them.
//!
//! A module exposes `pub(crate) const INFO: ServiceInfo` whose `build` turns the service's
//! `[service.options]` into a [`Handler`]. Add a module and list its `INFO` in [`CATALOG`].

use std::sync::Arc;

use apiary_event::Transport;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::{Conn, SessionError, UdpPeer};

pub(crate) mod clock;
pub(crate) mod dns;
mod echo;
mod elasticsearch;
mod ftp;
mod hashcount;
pub(crate) mod http;
mod motd;
mod mysql;
pub(crate) mod ntp;
mod postgres;
mod random;
mod redis;
pub(crate) mod sip;
pub(crate) mod smtp;
mod ssh;
pub(crate) mod telnet;
mod telnet_windows;
pub(crate) mod tftp;
mod web;

/// A TCP emulator: handles one connection through [`Conn`].
#[async_trait::async_trait]
pub trait TcpService: Send + Sync + 'static {
    /// Speaks the protocol until either side is done. Returning ends the session.
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError>;
}

/// A UDP emulator: answers one datagram of a peer session.
#[async_trait::async_trait]
pub trait UdpService: Send + Sync + 'static {
    /// Returns the datagrams to send back (none is fine). The runtime records them and
    /// suppresses them for sources over their reply rate.
    async fn datagram(&self, peer: &mut UdpPeer, data: &[u8]) -> Vec<Bytes>;
}

/// A built emulator for one transport.
#[derive(Clone)]
pub enum Handler {
    /// Serves TCP connections.
    Tcp(Arc<dyn TcpService>),
    /// Serves UDP datagrams.
    Udp(Arc<dyn UdpService>),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp(_) => "Handler::Tcp",
            Self::Udp(_) => "Handler::Udp",
        })
    }
}

/// What the catalogue knows about an emulator.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInfo {
    /// The plugin name in configs (`echo`).
    pub name: &'static str,
    /// Other accepted names, such as HoneyPy's plugin folders (`Echo`, `Echo_udp`).
    pub aliases: &'static [&'static str],
    /// Application protocol written in events.
    pub protocol: &'static str,
    /// One line for `apiary list services`.
    pub description: &'static str,
    /// Transports it can serve.
    pub transports: &'static [Transport],
    /// Builds the handler for a transport from the service's options.
    pub build: fn(Transport, &toml::Table) -> Result<Handler, String>,
}

/// The emulators' wire parsers, public for the fuzz targets (`fuzz/fuzz_targets/pot_*.rs`)
/// and for tools. Each is total: any bytes give a value or an error, never a panic.
pub mod parsers {
    pub use super::dns::{
        DnsError, Query as DnsQuery, answer as dns_answer, check_query as dns_check,
        parse_query as dns_parse,
    };
    pub use super::ftp::{
        FtpCommand, parse_command as ftp_parse_command, parse_eprt as ftp_parse_eprt,
        parse_port as ftp_parse_port,
    };
    pub use super::http::{
        HeadParts as HttpHeadParts, ReadError as HttpError, check_chunked as http_check_chunked,
        check_head as http_check_head, decode_chunked as http_decode_chunked,
        parse_head_owned as http_parse_head,
    };
    pub use super::mysql::{
        HandshakeResponse as MysqlHandshake, MysqlError, check_packet as mysql_check,
        parse_handshake as mysql_parse_handshake, parse_packet as mysql_parse,
    };
    pub use super::ntp::{NtpRequest, parse as ntp_parse};
    pub use super::postgres::{
        PgError, Startup as PgStartup, check_message as pg_check_message,
        check_startup as pg_check_startup, parse_message as pg_parse_message,
        parse_sasl_initial as pg_parse_sasl_initial, parse_startup as pg_parse_startup,
    };
    pub use super::redis::{
        RespError, check_request as resp_check, parse_request as resp_parse,
        split_inline as resp_split_inline,
    };
    pub use super::sip::{
        SipError, SipRequest, check_message as sip_check, digest_params as sip_digest_params,
        parse_message as sip_parse,
    };
    pub use super::smtp::{SmtpCommand, parse_command as smtp_parse_command};
    pub use super::ssh::sftp_wire::{
        Attrs as SftpAttrs, Request as SftpRequest, SftpError, check_packet as sftp_check,
        parse_packet as sftp_parse,
    };
    pub use super::telnet::{IacParser as TelnetIacParser, TelnetCmd};
    pub use super::tftp::{
        Packet as TftpPacket, TftpError, check_packet as tftp_check, parse_packet as tftp_parse,
    };
}

/// Every emulator, in the order `apiary list services` shows them.
pub const CATALOG: &[ServiceInfo] = &[
    echo::INFO,
    motd::INFO,
    random::INFO,
    hashcount::INFO,
    web::INFO,
    elasticsearch::INFO,
    smtp::INFO,
    dns::INFO,
    ntp::INFO,
    sip::INFO,
    tftp::INFO,
    telnet::INFO,
    telnet_windows::INFO,
    ssh::INFO,
    ftp::INFO,
    redis::INFO,
    mysql::INFO,
    postgres::INFO,
];

/// Every emulator.
pub fn catalog() -> &'static [ServiceInfo] {
    CATALOG
}

/// Looks a plugin up by name or alias, ignoring case.
pub fn find(plugin: &str) -> Option<&'static ServiceInfo> {
    CATALOG.iter().find(|i| {
        i.name.eq_ignore_ascii_case(plugin)
            || i.aliases.iter().any(|a| a.eq_ignore_ascii_case(plugin))
    })
}

/// Reads a service's `[service.options]` into its own struct (which should deny unknown keys).
pub(crate) fn options<T: DeserializeOwned>(table: &toml::Table) -> Result<T, String> {
    T::deserialize(toml::Value::Table(table.clone()))
        .map_err(|e| format!("options: {}", e.message()))
}

/// Rejects options for emulators that take none.
pub(crate) fn no_options(table: &toml::Table) -> Result<(), String> {
    match table.keys().next() {
        Some(key) => Err(format!("options: unknown key `{key}` (this service takes no options)")),
        None => Ok(()),
    }
}

/// `count` bytes from the OS-seeded generator.
pub(crate) fn random_bytes(count: usize) -> Vec<u8> {
    let mut v = vec![0u8; count];
    rand::fill(&mut v[..]);
    v
}
