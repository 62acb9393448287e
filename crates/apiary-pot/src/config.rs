//! Pot and service configuration: the `[pot]` table, its `[pot.limits]`, and `[[service]]`
//! tables. Invalid values fail at parse time so the error carries file, line and key.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use apiary_event::Transport;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// The `[pot]` table: what every service shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PotConfig {
    /// The pot's id in events.
    #[serde(default = "default_pot_name")]
    pub name: String,
    /// Addresses services bind unless they name their own. `::` is bound IPv6-only so that
    /// `0.0.0.0` and `::` can both be listed.
    #[serde(default = "default_bind")]
    pub bind: Vec<IpAddr>,
    /// Source networks whose events stay out of external loggers (HoneyPy's whitelist).
    #[serde(default)]
    pub ignore: Vec<IpNet>,
    /// When started as root, switch to this user after binding.
    #[serde(default)]
    pub user: Option<String>,
    /// Connection and session limits.
    #[serde(default)]
    pub limits: Limits,
    /// Built-in profiles whose services are merged, in order (`["windows_iis", "databases"]`);
    /// `[[service]]` tables then override or disable their services by name.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Bind profile services on their real ports even below 1024 (needs root or
    /// `CAP_NET_BIND_SERVICE`). When false, a real port P below 1024 is bound on 10000 + P,
    /// HoneyPy's unprivileged scheme.
    #[serde(default)]
    pub real_ports: bool,
}

fn default_pot_name() -> String {
    "default".into()
}

fn default_bind() -> Vec<IpAddr> {
    vec![IpAddr::from([0, 0, 0, 0]), IpAddr::from([0u16; 8])]
}

impl Default for PotConfig {
    fn default() -> Self {
        Self {
            name: default_pot_name(),
            bind: default_bind(),
            ignore: Vec::new(),
            user: None,
            limits: Limits::default(),
            profiles: Vec::new(),
            real_ports: false,
        }
    }
}

/// Limits that keep a flood from exhausting the host. Every one of them is enforced by the
/// runtime before service code runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Concurrent TCP sessions across all services.
    pub max_connections: usize,
    /// Concurrent TCP sessions from one source address.
    pub max_connections_per_ip: u32,
    /// New TCP connections per second from one source (token bucket rate).
    pub new_connections_per_sec: f64,
    /// Burst allowance of that bucket.
    pub new_connections_burst: f64,
    /// Longest wait for data in one read.
    #[serde(with = "apiary_event::duration")]
    pub read_timeout: Duration,
    /// A session with no traffic either way for this long is closed.
    #[serde(with = "apiary_event::duration")]
    pub idle_timeout: Duration,
    /// Longest session.
    #[serde(with = "apiary_event::duration")]
    pub max_session: Duration,
    /// Payload bytes recorded per session in each direction; beyond it only lengths and hashes.
    pub max_recorded_bytes: usize,
    /// UDP peers tracked per listener; the least recently active is evicted beyond it.
    pub udp_peers: usize,
    /// A UDP peer silent this long ends its session.
    #[serde(with = "apiary_event::duration")]
    pub udp_idle_timeout: Duration,
    /// Datagrams per second a source may get answers to; above it the honeypot stays silent,
    /// so it can never be used as a reflector.
    pub udp_replies_per_sec: f64,
    /// Burst allowance for UDP answers.
    pub udp_replies_burst: f64,
    /// Sources tracked by the rate limiters; idle entries are evicted beyond it.
    pub rate_table_size: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 64,
            new_connections_per_sec: 50.0,
            new_connections_burst: 100.0,
            read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(180),
            max_session: Duration::from_secs(3600),
            max_recorded_bytes: 64 * 1024,
            udp_peers: 4096,
            udp_idle_timeout: Duration::from_secs(60),
            udp_replies_per_sec: 10.0,
            udp_replies_burst: 20.0,
            rate_table_size: 65_536,
        }
    }
}

/// A `[[service]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// The name in events (`Telnet`, `Echo.udp`, ...). Unique.
    pub name: String,
    /// Which emulator runs it (`echo`, `motd`, ...; HoneyPy's plugin names work too), or a
    /// script (`plugins/hashcount.lua`, `.py`). Empty in a table that only overrides a
    /// profile's service of the same name.
    #[serde(default)]
    pub plugin: String,
    /// Where it listens: `"tcp:2323"`, `"udp:5353"`. Empty keeps a profile service's ports.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// Addresses to bind instead of the pot's.
    #[serde(default)]
    pub bind: Option<Vec<IpAddr>>,
    /// Whether it runs.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Free text for `apiary list services`.
    #[serde(default)]
    pub description: Option<String>,
    /// Emulator-specific settings.
    #[serde(default)]
    pub options: toml::Table,
}

fn yes() -> bool {
    true
}

/// A transport and port, written `tcp:2323` or `udp:53` (HoneyPy's syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSpec {
    /// TCP or UDP.
    pub transport: Transport,
    /// The port; 0 asks the OS for a free one (tests).
    pub port: u16,
}

impl FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (proto, port) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid port {s:?}: expected \"tcp:PORT\" or \"udp:PORT\""))?;
        let transport = match proto.trim().to_ascii_lowercase().as_str() {
            "tcp" => Transport::Tcp,
            "udp" => Transport::Udp,
            other => return Err(format!("invalid port {s:?}: unknown transport {other:?}")),
        };
        let port = port
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("invalid port {s:?}: port must be a number from 0 to 65535"))?;
        Ok(Self { transport, port })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport.as_str(), self.port)
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!("tcp:23".parse(), Ok(PortSpec { transport: Transport::Tcp, port: 23 }));
        assert_eq!("UDP: 53".parse(), Ok(PortSpec { transport: Transport::Udp, port: 53 }));
        assert!("tcp:70000".parse::<PortSpec>().unwrap_err().contains("0 to 65535"));
        assert!("sctp:1".parse::<PortSpec>().unwrap_err().contains("unknown transport"));
        assert!("23".parse::<PortSpec>().is_err());
    }
}
