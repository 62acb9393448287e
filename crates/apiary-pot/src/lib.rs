//! apiary's honeypot runtime: listeners, sessions and limits, and one module per emulated
//! service under `services/`.
//!
//! A [`Pot`] binds every configured port first (so errors and privilege dropping happen before
//! any attacker connects), then serves. Each TCP connection and each UDP peer is a session with
//! a UUIDv7 id; the runtime records `session.open`, `session.rx`, `session.tx` and
//! `session.close` itself, so a service only speaks its protocol through [`Conn`].

mod config;
mod fetch;
mod limits;
mod mmsg;
mod privilege;
pub mod profiles;
mod runtime;
mod script;
pub mod services;
mod session;
pub mod shell;
mod tcp;
mod tls;
mod udp;

pub use config::{Limits, PortSpec, PotConfig, ServiceConfig};
pub use limits::RefuseReason;
pub use privilege::{PrivilegeError, drop_privileges, is_root, lookup_user};
pub use runtime::{
    ListenerInfo, Pot, PotHandle, PotStats, Skipped, check_config, check_services, resolve_services,
};
pub use services::{Handler, ServiceInfo, TcpService, UdpService, catalog};
pub use session::{Conn, SessionCtx, SessionError, UdpPeer};

/// Why a pot could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PotError {
    /// A port could not be bound.
    #[error("service `{service}`: cannot bind {transport}/{addr}: {source}{hint}")]
    Bind {
        /// The service.
        service: String,
        /// `tcp` or `udp`.
        transport: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
        /// Advice for the operator (privileged ports, ports in use).
        hint: String,
    },
    /// A service is misconfigured.
    #[error("service `{service}`: {message}")]
    Service {
        /// The service.
        service: String,
        /// What is wrong.
        message: String,
    },
}
