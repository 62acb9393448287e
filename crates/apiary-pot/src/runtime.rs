//! Building and running a pot: bind every socket up front, then serve until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use apiary_event::{SharedEmit, Transport};
use socket2::{Domain, Protocol, Socket, Type};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::Admission;
use crate::services::{self, Handler};
use crate::session::{SessionCtx, SessionLimits};
use crate::{Limits, PotConfig, PotError, ServiceConfig};

/// Counters of one pot, for reports and tests.
#[derive(Debug, Default)]
pub struct PotStats {
    /// TCP connections admitted.
    pub accepted: AtomicU64,
    /// TCP connections refused by a limit.
    pub refused: AtomicU64,
    /// UDP datagrams received.
    pub datagrams: AtomicU64,
    /// UDP answers withheld from sources over their reply rate.
    pub udp_suppressed: AtomicU64,
    /// UDP peer sessions evicted because the peer table was full.
    pub udp_evicted: AtomicU64,
    /// Sessions currently open.
    pub open_sessions: AtomicU64,
}

impl PotStats {
    /// Reads a counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

/// What a bound listener serves, for the startup table and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    /// Service name.
    pub service: String,
    /// Plugin name.
    pub plugin: String,
    /// TCP or UDP.
    pub transport: Transport,
    /// The bound address (with the real port when 0 was asked for).
    pub addr: SocketAddr,
}

/// State shared by every listener of a pot.
pub(crate) struct Shared {
    pub(crate) node: Arc<str>,
    pub(crate) pot: Arc<str>,
    pub(crate) emit: SharedEmit,
    pub(crate) limits: Limits,
    pub(crate) session_limits: SessionLimits,
    pub(crate) admission: Admission,
    pub(crate) stats: Arc<PotStats>,
}

impl Shared {
    /// A new session of `service` with `peer` (the TCP and UDP loops' one way to start one).
    pub(crate) fn session(
        &self,
        service: &Service,
        transport: Transport,
        peer: SocketAddr,
        local: SocketAddr,
        started: tokio::time::Instant,
    ) -> SessionCtx {
        SessionCtx {
            id: apiary_event::new_id(),
            peer,
            local,
            transport,
            node: Arc::clone(&self.node),
            pot: Arc::clone(&self.pot),
            service: Arc::clone(&service.name),
            protocol: Arc::clone(&service.protocol),
            emit: Arc::clone(&self.emit),
            started,
        }
    }
}

pub(crate) struct Service {
    pub(crate) name: Arc<str>,
    pub(crate) protocol: Arc<str>,
    pub(crate) handler: Handler,
    /// TLS in front of the emulator (`tls = true`).
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

struct Listener {
    info: ListenerInfo,
    service: Arc<Service>,
    socket: Bound,
}

/// A pot whose sockets are bound but not yet served.
pub struct Pot {
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
}

impl Pot {
    /// Checks every service and binds every port. Nothing is served yet, so the caller can
    /// drop privileges in between.
    ///
    /// The services are the config's profiles merged with `services_cfg`
    /// ([`resolve_services`]). A port that cannot be bound is an error naming the service.
    pub fn bind(
        node: &str,
        config: &PotConfig,
        services_cfg: &[ServiceConfig],
        emit: SharedEmit,
    ) -> Result<Self, PotError> {
        Self::bind_inner(node, config, services_cfg, emit, false).map(|(pot, _)| pot)
    }

    /// Like [`Pot::bind`], but a port that cannot be bound (in use, privileged) is skipped
    /// instead of failing: returns the pot and what was skipped, with reasons
    /// (`apiary pot run --skip-busy`).
    pub fn bind_skip_busy(
        node: &str,
        config: &PotConfig,
        services_cfg: &[ServiceConfig],
        emit: SharedEmit,
    ) -> Result<(Self, Vec<Skipped>), PotError> {
        Self::bind_inner(node, config, services_cfg, emit, true)
    }

    fn bind_inner(
        node: &str,
        config: &PotConfig,
        services_cfg: &[ServiceConfig],
        emit: SharedEmit,
        skip_busy: bool,
    ) -> Result<(Self, Vec<Skipped>), PotError> {
        let resolved = crate::profiles::resolve(config, services_cfg)?;
        let services_cfg = resolved.as_slice();
        if let Some(e) = check_services(services_cfg).into_iter().next() {
            return Err(e);
        }
        raise_fd_limit();
        let mut skipped = Vec::new();
        let mut listeners = Vec::new();
        for svc in services_cfg.iter().filter(|s| s.enabled) {
            let err = |message: String| PotError::Service { service: svc.name.clone(), message };
            // `tls*` keys are the runtime's; the emulator gets the rest.
            let options = crate::tls::emulator_options(&svc.options);
            // A script is loaded once per service, so its ports share one worker.
            let script = if crate::script::is_script(&svc.plugin) {
                Some(crate::script::load(&svc.plugin, &options).map_err(err)?)
            } else {
                None
            };
            let info = match &script {
                Some(_) => None,
                None => Some(
                    services::find(&svc.plugin)
                        .ok_or_else(|| err(format!("unknown plugin `{}`", svc.plugin)))?,
                ),
            };
            let plugin_name: String = info.map_or_else(|| svc.plugin.clone(), |i| i.name.into());
            let tls = crate::tls::from_options(&svc.options).map_err(err)?;
            let explicit = svc.bind.is_some();
            let addrs = svc.bind.as_ref().unwrap_or(&config.bind);
            for port in &svc.ports {
                let (handler, protocol) = match (&script, info) {
                    (Some(plugin), _) => {
                        (crate::script::handler(plugin, port.transport).map_err(err)?, "script")
                    }
                    (None, Some(info)) => {
                        if !info.transports.contains(&port.transport) {
                            return Err(err(format!(
                                "plugin `{}` does not serve {}",
                                info.name,
                                port.transport.as_str()
                            )));
                        }
                        ((info.build)(port.transport, &options).map_err(err)?, info.protocol)
                    }
                    (None, None) => return Err(err("no plugin".into())),
                };
                let service = Arc::new(Service {
                    name: Arc::from(svc.name.as_str()),
                    protocol: Arc::from(protocol),
                    handler,
                    tls: tls.clone(),
                });
                for ip in addrs {
                    let addr = SocketAddr::new(*ip, port.port);
                    let socket = match bind(addr, port.transport) {
                        Ok(s) => s,
                        Err(e) if !explicit && ip.is_ipv6() && ipv6_unavailable(&e) => {
                            tracing::warn!(%addr, error = %e, "IPv6 unavailable, listening on IPv4 only");
                            continue;
                        }
                        Err(source) if skip_busy => {
                            let hint = bind_hint(&source, port.port);
                            tracing::warn!(service = %svc.name, %addr, error = %source, "skipped: cannot bind");
                            skipped.push(Skipped {
                                service: svc.name.clone(),
                                transport: port.transport,
                                addr,
                                reason: format!("{source}{hint}"),
                            });
                            continue;
                        }
                        Err(source) => {
                            let hint = bind_hint(&source, port.port);
                            return Err(PotError::Bind {
                                service: svc.name.clone(),
                                transport: port.transport.as_str(),
                                addr,
                                source,
                                hint,
                            });
                        }
                    };
                    let local = match &socket {
                        Bound::Tcp(l) => l.local_addr(),
                        Bound::Udp(u) => u.local_addr(),
                    }
                    .unwrap_or(addr);
                    listeners.push(Listener {
                        info: ListenerInfo {
                            service: svc.name.clone(),
                            plugin: plugin_name.clone(),
                            transport: port.transport,
                            addr: local,
                        },
                        service: Arc::clone(&service),
                        socket,
                    });
                }
            }
        }
        let limits = config.limits.clone();
        let session_limits = SessionLimits {
            read_timeout: limits.read_timeout,
            idle_timeout: limits.idle_timeout,
            max_session: limits.max_session,
            max_recorded: limits.max_recorded_bytes,
        };
        let shared = Arc::new(Shared {
            node: Arc::from(node),
            pot: Arc::from(config.name.as_str()),
            emit,
            admission: Admission::new(&limits),
            limits,
            session_limits,
            stats: Arc::new(PotStats::default()),
        });
        Ok((Self { shared, listeners }, skipped))
    }

    /// Every bound listener.
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        self.listeners.iter().map(|l| l.info.clone()).collect()
    }

    /// Starts serving on the current tokio runtime.
    pub fn start(self) -> std::io::Result<PotHandle> {
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let infos = self.listeners();
        for l in self.listeners {
            let shared = Arc::clone(&self.shared);
            match l.socket {
                Bound::Tcp(std) => {
                    let listener = tokio::net::TcpListener::from_std(std)?;
                    tracker.spawn(crate::tcp::serve(
                        listener,
                        l.service,
                        shared,
                        cancel.clone(),
                        tracker.clone(),
                    ));
                }
                Bound::Udp(std) => {
                    let socket = tokio::net::UdpSocket::from_std(std)?;
                    tracker.spawn(crate::udp::serve(socket, l.service, shared, cancel.clone()));
                }
            }
        }
        Ok(PotHandle { cancel, tracker, stats: Arc::clone(&self.shared.stats), listeners: infos })
    }
}

/// A port `--skip-busy` left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The service.
    pub service: String,
    /// TCP or UDP.
    pub transport: Transport,
    /// The address that could not be bound.
    pub addr: SocketAddr,
    /// Why, with advice.
    pub reason: String,
}

/// Checks a whole pot configuration without binding (`apiary config check`): the profiles
/// exist, overrides name a service, then everything [`check_services`] checks on the merged
/// list.
pub fn check_config(config: &PotConfig, services_cfg: &[ServiceConfig]) -> Vec<PotError> {
    match crate::profiles::resolve(config, services_cfg) {
        Ok(all) => check_services(&all),
        Err(e) => vec![e],
    }
}

/// The services a pot runs: its profiles merged with its own `[[service]]` tables, ports
/// mapped (see [`crate::profiles::resolve`]).
pub fn resolve_services(
    config: &PotConfig,
    services_cfg: &[ServiceConfig],
) -> Result<Vec<ServiceConfig>, PotError> {
    crate::profiles::resolve(config, services_cfg)
}

/// Checks every enabled service without binding anything (`apiary config check`): unique
/// names, known plugins, transports the plugin serves, and options the plugin accepts.
pub fn check_services(services_cfg: &[ServiceConfig]) -> Vec<PotError> {
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for svc in services_cfg.iter().filter(|s| s.enabled) {
        let err = |message: String| PotError::Service { service: svc.name.clone(), message };
        if !seen.insert(svc.name.as_str()) {
            errors.push(err("duplicate service name".into()));
            continue;
        }
        if svc.plugin.is_empty() {
            errors.push(err("no `plugin`".into()));
            continue;
        }
        if svc.ports.is_empty() {
            errors.push(err("no ports".into()));
        }
        match crate::tls::from_options(&svc.options) {
            Ok(Some(_)) if svc.ports.iter().any(|p| p.transport != Transport::Tcp) => {
                errors.push(err("tls needs TCP ports only".into()));
            }
            Ok(_) => {}
            Err(e) => errors.push(err(e)),
        }
        let options = crate::tls::emulator_options(&svc.options);
        if crate::script::is_script(&svc.plugin) {
            let transports: Vec<_> = svc.ports.iter().map(|p| p.transport).collect();
            if let Err(e) = crate::script::check(&svc.plugin, &transports) {
                errors.push(err(e));
            } else if let Err(e) = crate::script::service_options(&options) {
                errors.push(err(e));
            }
            continue;
        }
        let Some(info) = services::find(&svc.plugin) else {
            errors.push(err(format!("unknown plugin `{}`", svc.plugin)));
            continue;
        };
        for port in &svc.ports {
            if !info.transports.contains(&port.transport) {
                errors.push(err(format!(
                    "plugin `{}` does not serve {}",
                    info.name,
                    port.transport.as_str()
                )));
            } else if let Err(e) = (info.build)(port.transport, &options) {
                errors.push(err(e));
            }
        }
    }
    errors
}

/// A running pot.
pub struct PotHandle {
    cancel: CancellationToken,
    tracker: TaskTracker,
    stats: Arc<PotStats>,
    listeners: Vec<ListenerInfo>,
}

impl PotHandle {
    /// Counters.
    pub fn stats(&self) -> &PotStats {
        &self.stats
    }

    /// Every listener.
    pub fn listeners(&self) -> &[ListenerInfo] {
        &self.listeners
    }

    /// The address of the first listener of `service` on `transport` (tests).
    pub fn addr(&self, service: &str, transport: Transport) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.service == service && l.transport == transport)
            .map(|l| l.addr)
    }

    /// Closes the listeners, ends every session (each records `session.close` with reason
    /// `shutdown`) and waits up to `grace` for them.
    pub async fn shutdown(self, grace: Duration) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!("sessions did not end within {grace:?}");
        }
    }
}

fn bind(addr: SocketAddr, transport: Transport) -> std::io::Result<Bound> {
    let domain = Domain::for_address(addr);
    let (ty, proto) = match transport {
        Transport::Udp => (Type::DGRAM, Protocol::UDP),
        _ => (Type::STREAM, Protocol::TCP),
    };
    let socket = Socket::new(domain, ty, Some(proto))?;
    if addr.is_ipv6() {
        // Lets `0.0.0.0` and `::` be bound side by side on the same port.
        socket.set_only_v6(true)?;
    }
    if transport == Transport::Tcp {
        // Restarting must not wait for TIME_WAIT sockets of the last run's attackers.
        socket.set_reuse_address(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(match transport {
        Transport::Udp => Bound::Udp(socket.into()),
        _ => {
            socket.listen(1024)?;
            Bound::Tcp(socket.into())
        }
    })
}

fn ipv6_unavailable(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

/// Raises the soft open-files limit to the hard one. A profile such as `tcp_malware` plus
/// `udp_malware` is over a thousand listeners, twice that with IPv6, past the usual soft limit
/// of 1024, while the hard limit is far higher; attackers' connections need descriptors too.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct; failure leaves the limit
    // as it was, and a bind that then runs out says so (`bind_hint`).
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::debug!("could not raise the open-files limit");
            }
        }
    }
}

fn bind_hint(e: &std::io::Error, port: u16) -> String {
    if e.raw_os_error() == Some(libc::EMFILE) {
        return " (out of file descriptors: raise `ulimit -n` or bind fewer ports)".into();
    }
    match e.kind() {
        std::io::ErrorKind::PermissionDenied if port < 1024 => format!(
            " (port {port} is privileged: run as root with `user = ...` in [pot], grant \
             CAP_NET_BIND_SERVICE with `setcap cap_net_bind_service=+ep $(which apiary)`, \
             or use a port above 1023)"
        ),
        std::io::ErrorKind::AddrInUse => {
            " (another program already listens there: pick another port or stop it)".into()
        }
        _ => String::new(),
    }
}
