//! HoneyPy's service profiles, shipped inside the binary, and how a pot's configuration merges
//! them with its own `[[service]]` tables.
//!
//! A profile names each service's *real* port. Unless `real_ports = true`, a real port P below
//! 1024 is bound on 10000 + P (HoneyPy's unprivileged scheme). HoneyPy's duplicate section
//! names (`[BitTorrent]` 119 times, which ConfigParser collapsed to one) are fixed: one
//! service, several ports.

use std::collections::HashSet;

use apiary_event::Transport;
use serde::Deserialize;

use crate::{PortSpec, PotConfig, PotError, ServiceConfig};

/// A built-in profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Its name (`linux`).
    pub name: &'static str,
    /// One line saying what it imitates.
    pub description: String,
    /// Its services, with their real ports.
    pub services: Vec<ServiceConfig>,
    /// The profile file as shipped (for `apiary profile show`).
    pub source: &'static str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    description: String,
    #[serde(default)]
    service: Vec<ServiceConfig>,
}

macro_rules! profiles {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../profiles/", $name, ".toml")))),*]
    };
}

/// Every profile file, by name.
const FILES: &[(&str, &str)] = profiles!(
    "common",
    "databases",
    "default",
    "iot",
    "kali",
    "kubernetes",
    "linux",
    "peer_to_peer",
    "streaming",
    "tcp_malware",
    "udp_malware",
    "windows_active_directory",
    "windows_iis",
);

/// The names of every built-in profile, sorted.
pub fn list() -> Vec<&'static str> {
    FILES.iter().map(|(n, _)| *n).collect()
}

/// A built-in profile by name, parsed. `None` for an unknown name.
pub fn get(name: &str) -> Option<Profile> {
    let (name, source) = FILES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?;
    // The files are part of the binary and covered by a test, so a parse failure here is a
    // build defect; report it as an empty profile rather than panicking a daemon.
    match toml::from_str::<ProfileFile>(source) {
        Ok(f) => Some(Profile { name, description: f.description, services: f.service, source }),
        Err(e) => {
            tracing::error!(profile = name, error = %e, "built-in profile does not parse");
            None
        }
    }
}

/// The port a profile's real port is bound on.
pub fn bound_port(real: PortSpec, real_ports: bool) -> PortSpec {
    if real_ports || real.port >= 1024 || real.port == 0 {
        real
    } else {
        PortSpec { transport: real.transport, port: 10_000 + real.port }
    }
}

/// The services a pot runs: its profiles merged in order (a name already taken by an earlier
/// profile is skipped, as HoneyPy did), ports mapped by [`bound_port`], then its own
/// `[[service]]` tables applied: a table naming a profile service overrides the fields it
/// sets (`enabled = false` disables it; `ports` given there are bound as written), any other
/// table adds a service. A profile service loses a port another service already uses.
pub fn resolve(config: &PotConfig, own: &[ServiceConfig]) -> Result<Vec<ServiceConfig>, PotError> {
    let mut merged: Vec<(ServiceConfig, bool)> = Vec::new();
    for name in &config.profiles {
        let profile = get(name).ok_or_else(|| PotError::Service {
            service: format!("profile:{name}"),
            message: format!("unknown profile `{name}` (known: {})", list().join(", ")),
        })?;
        for mut svc in profile.services {
            if merged.iter().any(|(m, _)| m.name == svc.name) {
                tracing::debug!(profile = %name, service = %svc.name, "service already defined by an earlier profile");
                continue;
            }
            svc.ports = svc.ports.into_iter().map(|p| bound_port(p, config.real_ports)).collect();
            merged.push((svc, true));
        }
    }
    // Which merged entries came from a profile and have not been overridden yet: a second
    // table of the same name is a duplicate, reported by `check_services`.
    let mut overridable: Vec<bool> = vec![true; merged.len()];
    for svc in own {
        let found =
            merged.iter().zip(&overridable).position(|((m, _), open)| *open && m.name == svc.name);
        match found.and_then(|i| Some((i, merged.get_mut(i)?))) {
            Some((i, (base, from_profile))) => {
                if let Some(open) = overridable.get_mut(i) {
                    *open = false;
                }
                if !svc.plugin.is_empty() {
                    base.plugin.clone_from(&svc.plugin);
                }
                if !svc.ports.is_empty() {
                    base.ports.clone_from(&svc.ports);
                    *from_profile = false;
                }
                if svc.bind.is_some() {
                    base.bind.clone_from(&svc.bind);
                }
                if svc.description.is_some() {
                    base.description.clone_from(&svc.description);
                }
                if !svc.options.is_empty() {
                    base.options.clone_from(&svc.options);
                }
                base.enabled = svc.enabled;
            }
            None => {
                if svc.plugin.is_empty() {
                    return Err(PotError::Service {
                        service: svc.name.clone(),
                        message: "no `plugin`, and no profile service of that name to override"
                            .into(),
                    });
                }
                merged.push((svc.clone(), false));
                overridable.push(false);
            }
        }
    }
    // Ports written by the operator win; profile services give way.
    let mut used: HashSet<(Transport, u16)> = HashSet::new();
    for (svc, from_profile) in merged.iter().filter(|(s, _)| s.enabled) {
        if !from_profile {
            used.extend(svc.ports.iter().filter(|p| p.port != 0).map(|p| (p.transport, p.port)));
        }
    }
    let mut out = Vec::with_capacity(merged.len());
    for (mut svc, from_profile) in merged {
        if from_profile && svc.enabled {
            svc.ports.retain(|p| {
                let free = p.port == 0 || used.insert((p.transport, p.port));
                if !free {
                    tracing::warn!(service = %svc.name, port = %p, "port already used by another service; skipped");
                }
                free
            });
            if svc.ports.is_empty() {
                svc.enabled = false;
            }
        }
        out.push(svc);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_parses_with_known_plugins_and_unique_names() {
        assert_eq!(list().len(), FILES.len());
        for name in list() {
            let p = get(name).unwrap_or_else(|| panic!("{name} does not parse"));
            assert!(!p.services.is_empty(), "{name}");
            let mut names = HashSet::new();
            for s in &p.services {
                assert!(names.insert(s.name.clone()), "{name}: duplicate {}", s.name);
                let info = crate::services::find(&s.plugin)
                    .unwrap_or_else(|| panic!("{name}/{}: plugin {}", s.name, s.plugin));
                for port in &s.ports {
                    assert!(info.transports.contains(&port.transport), "{name}/{}", s.name);
                }
            }
            assert!(crate::check_services(&p.services).is_empty(), "{name}");
        }
    }

    #[test]
    fn all_thirteen_honeypy_profiles_ship_with_every_port() {
        let honeypy = [
            "common",
            "databases",
            "default",
            "iot",
            "kali",
            "kubernetes",
            "linux",
            "peer_to_peer",
            "streaming",
            "tcp_malware",
            "udp_malware",
            "windows_active_directory",
            "windows_iis",
        ];
        assert_eq!(list(), honeypy);
        let ports = |name: &str| -> Vec<PortSpec> {
            get(name).unwrap().services.into_iter().flat_map(|s| s.ports).collect()
        };
        // HoneyPy's 355 common sections name 340 distinct ports; the malware lists name 552
        // of their 554 sections' ports (4899 and 6129 appear twice).
        let common = ports("common");
        assert_eq!(common.len(), 340);
        assert_eq!(common.iter().collect::<HashSet<_>>().len(), 340, "no port twice");
        let bittorrent =
            get("common").unwrap().services.into_iter().find(|s| s.name == "BitTorrent");
        assert_eq!(bittorrent.map(|s| s.ports.len()), Some(119), "one service, 119 ports");
        // The UDP names end in `.udp`, so both malware profiles can be used together.
        let malware = [
            ("tcp_malware", Transport::Tcp, "CoolRemoteControl"),
            ("udp_malware", Transport::Udp, "CoolRemoteControl.udp"),
        ];
        for (name, transport, crc) in malware {
            let all = ports(name);
            assert_eq!(all.len(), 552, "{name}");
            assert_eq!(all.iter().collect::<HashSet<_>>().len(), 552, "{name}: no port twice");
            assert!(all.iter().all(|p| p.transport == transport && p.port >= 1028), "{name}");
            let crc = get(name).unwrap().services.into_iter().find(|s| s.name == crc);
            assert_eq!(crc.map(|s| s.ports.len()), Some(3), "{name}: duplicate names merged");
        }
    }

    #[test]
    fn ports_below_1024_move_up_unless_real_ports() {
        let tcp23 = PortSpec { transport: Transport::Tcp, port: 23 };
        assert_eq!(bound_port(tcp23, false).port, 10_023);
        assert_eq!(bound_port(tcp23, true).port, 23);
        assert_eq!(
            bound_port(PortSpec { transport: Transport::Tcp, port: 2323 }, false).port,
            2323
        );
    }

    fn svc(name: &str, plugin: &str, ports: &[&str]) -> ServiceConfig {
        ServiceConfig {
            name: name.into(),
            plugin: plugin.into(),
            ports: ports.iter().map(|p| p.parse().unwrap()).collect(),
            bind: None,
            enabled: true,
            description: None,
            options: toml::Table::new(),
        }
    }

    #[test]
    fn profiles_merge_then_services_override_disable_and_add() {
        let config = PotConfig {
            profiles: vec!["windows_iis".into(), "databases".into()],
            ..PotConfig::default()
        };
        let mut off = svc("Telnet", "", &[]);
        off.enabled = false;
        let own = [off, svc("HTTP", "web", &[]), svc("Extra", "echo", &["tcp:4444"])];
        let all = resolve(&config, &own).unwrap();
        let find = |n: &str| all.iter().find(|s| s.name == n).unwrap();
        assert!(!find("Telnet").enabled);
        assert_eq!(find("HTTP").plugin, "web");
        assert_eq!(find("HTTP").ports, vec!["tcp:10080".parse().unwrap()]);
        assert_eq!(find("MSSQL").ports.len(), 2, "one service, several ports");
        assert!(find("Extra").enabled);
        assert!(resolve(&config, &[svc("Nameless", "", &[])]).is_err());
        let bad = PotConfig { profiles: vec!["nope".into()], ..PotConfig::default() };
        assert!(resolve(&bad, &[]).unwrap_err().to_string().contains("unknown profile"));
    }

    #[test]
    fn an_operator_port_wins_over_a_profile_port() {
        let config = PotConfig { profiles: vec!["linux".into()], ..PotConfig::default() };
        let all = resolve(&config, &[svc("Mine", "echo", &["tcp:10007"])]).unwrap();
        let echo = all.iter().find(|s| s.name == "Echo").unwrap();
        assert!(echo.ports.is_empty() && !echo.enabled);
        let echo_udp = all.iter().find(|s| s.name == "Echo.udp").unwrap();
        assert!(echo_udp.enabled && echo_udp.ports == vec!["udp:10007".parse().unwrap()]);
    }
}
