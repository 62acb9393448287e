//! Which events a sink accepts: ignore lists of source networks (HoneyPy's whitelist, fixed to
//! take CIDRs and trimmed entries) and kind/service selections.

use apiary_event::Event;
use ipnet::IpNet;

/// A sink's event filter. The default accepts everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Events whose source address falls in one of these networks are kept out.
    pub ignore_sources: Vec<IpNet>,
    /// When non-empty, only events of these kinds (exact, or a prefix ending in `.`) pass.
    pub kinds: Vec<String>,
    /// When non-empty, only events of these services pass.
    pub services: Vec<String>,
}

impl Filter {
    /// Whether `event` should reach the sink. Test events always pass so `loggers test` can
    /// check every sink.
    pub fn accepts(&self, event: &Event) -> bool {
        if event.is_test() {
            return true;
        }
        if let Some(ip) = event.src_ip
            && self.ignore_sources.iter().any(|net| net.contains(&ip))
        {
            return false;
        }
        if !self.kinds.is_empty() {
            let kind = event.kind.as_str();
            let hit = self
                .kinds
                .iter()
                .any(|k| k == kind || (k.ends_with('.') && kind.starts_with(k.as_str())));
            if !hit {
                return false;
            }
        }
        if !self.services.is_empty() {
            let Some(service) = event.service.as_deref() else { return false };
            if !self.services.iter().any(|s| s == service) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use apiary_event::Kind;

    use super::*;

    fn ev(kind: Kind, ip: &str, service: &str) -> Event {
        let mut e = Event::new(kind, Arc::from("n"));
        e.src_ip = Some(ip.parse().unwrap());
        e.service = Some(Arc::from(service));
        e
    }

    #[test]
    fn ignores_cidrs_and_selects_kinds_and_services() {
        let f = Filter {
            ignore_sources: vec!["192.168.0.0/24".parse().unwrap(), "::1/128".parse().unwrap()],
            kinds: vec!["session.".into(), "auth.attempt".into()],
            services: vec!["Telnet".into()],
        };
        assert!(!f.accepts(&ev(Kind::SESSION_OPEN, "192.168.0.21", "Telnet")));
        assert!(!f.accepts(&ev(Kind::SESSION_OPEN, "::1", "Telnet")));
        assert!(f.accepts(&ev(Kind::SESSION_OPEN, "192.168.1.21", "Telnet")));
        assert!(f.accepts(&ev(Kind::AUTH_ATTEMPT, "10.0.0.1", "Telnet")));
        assert!(!f.accepts(&ev(Kind::HTTP_REQUEST, "10.0.0.1", "Telnet")));
        assert!(!f.accepts(&ev(Kind::SESSION_OPEN, "10.0.0.1", "Web")));
        assert!(f.accepts(&ev(Kind::TEST, "192.168.0.21", "Web")));
    }
}
