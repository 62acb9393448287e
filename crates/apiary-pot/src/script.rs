//! Scripted services: a `[[service]]` whose `plugin` is a `.lua` or `.py` file runs that
//! script (through `apiary-script`) for each TCP connection or UDP datagram, HoneyPy's
//! `rx()`/`tx()` model without recompiling. The script is validated at config check and
//! reloaded when its file changes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use apiary_event::{Auth, AuthMethod, Kind, Transport};
use apiary_script::{Hook, ServiceOptions, ServicePlugin, SessionInfo, SessionIo};
use bytes::Bytes;
use serde_json::{Map, Value};

use crate::services::{Handler, TcpService, UdpService};
use crate::{Conn, SessionCtx, SessionError, UdpPeer};

/// Whether `plugin` names a script rather than a built-in emulator.
pub(crate) fn is_script(plugin: &str) -> bool {
    plugin.ends_with(".lua") || plugin.ends_with(".py")
}

/// Checks a script for `apiary config check`: it compiles and defines the entry point the
/// service's transports need.
pub(crate) fn check(plugin: &str, transports: &[Transport]) -> Result<(), String> {
    apiary_script::check_plugin(plugin, Hook::Service).map_err(|e| e.to_string())?;
    if plugin.ends_with(".lua") {
        let source = std::fs::read_to_string(plugin).map_err(|e| format!("{plugin}: {e}"))?;
        for t in transports {
            let entry = if *t == Transport::Udp { "datagram" } else { "handle" };
            if !defines(&source, entry) {
                return Err(format!(
                    "{plugin}: serves {} but defines no `{entry}` function",
                    t.as_str()
                ));
            }
        }
    }
    Ok(())
}

/// A cheap textual look for `function NAME(` (the script is compiled separately).
fn defines(source: &str, name: &str) -> bool {
    let plain = format!("function {name}(");
    let spaced = format!("function {name} (");
    let assigned = format!("{name} = function");
    source.contains(&plain) || source.contains(&spaced) || source.contains(&assigned)
}

/// A scripted service's `[service.options]`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptOptions {
    /// Lua: TCP session states kept built ahead of time (see [`ServiceOptions::lua_pool`]).
    lua_pool: Option<usize>,
}

/// The plugin host's options from a scripted service's `[service.options]`, range-checked
/// (config check and load use the same).
pub(crate) fn service_options(options: &toml::Table) -> Result<ServiceOptions, String> {
    let opts: ScriptOptions = crate::services::options(options)?;
    let mut service = ServiceOptions::default();
    if let Some(n) = opts.lua_pool {
        if n > apiary_script::MAX_LUA_POOL {
            return Err(format!(
                "options: lua_pool = {n} is more than {}",
                apiary_script::MAX_LUA_POOL
            ));
        }
        service.lua_pool = n;
    }
    Ok(service)
}

/// Loads the script once per service; every port shares it (and its Python worker).
pub(crate) fn load(plugin: &str, options: &toml::Table) -> Result<ServicePlugin, String> {
    ServicePlugin::load(Path::new(plugin), service_options(options)?).map_err(|e| e.to_string())
}

/// The handler of `plugin` for one transport.
pub(crate) fn handler(plugin: &ServicePlugin, transport: Transport) -> Result<Handler, String> {
    let svc = Arc::new(Script { plugin: plugin.clone() });
    match transport {
        Transport::Udp if plugin.handles_udp() => Ok(Handler::Udp(svc)),
        Transport::Tcp if plugin.handles_tcp() => Ok(Handler::Tcp(svc)),
        t => Err(format!(
            "{}: the script defines no {} for {}",
            plugin.path().display(),
            if t == Transport::Udp { "datagram" } else { "handle" },
            t.as_str()
        )),
    }
}

struct Script {
    plugin: ServicePlugin,
}

fn info(ctx: &SessionCtx) -> SessionInfo {
    SessionInfo {
        remote_host: ctx.peer.ip().to_canonical().to_string(),
        remote_port: ctx.peer.port(),
        local_port: ctx.local.port(),
        session_id: ctx.id.to_string(),
        service: ctx.service.to_string(),
    }
}

/// An event from a script's `log(kind, fields)`. `auth.attempt` with `username`/`password`
/// fields gets the typed credentials block every other service writes.
fn script_event(
    ctx: &SessionCtx,
    kind: &str,
    mut fields: Map<String, Value>,
) -> apiary_event::Event {
    let mut e = ctx.event(Kind::new(kind.to_owned()));
    if e.kind == Kind::AUTH_ATTEMPT {
        let text = |v: Option<Value>| match v {
            Some(Value::String(s)) => Some(s),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        let username = text(fields.remove("username"));
        let password = text(fields.remove("password"));
        let success = matches!(fields.remove("success"), Some(Value::Bool(true)));
        e.auth = Some(Box::new(Auth {
            method: AuthMethod::Password,
            username,
            password,
            success,
            extra: BTreeMap::new(),
        }));
    }
    e.fields = fields;
    e
}

/// [`Conn`] as the script host sees it.
struct ConnIo<'a> {
    conn: &'a mut Conn,
    info: SessionInfo,
    /// The session error that ended `rx`/`tx`, reported as the close reason.
    error: Option<SessionError>,
}

#[async_trait::async_trait]
impl SessionIo for ConnIo<'_> {
    async fn rx(&mut self) -> Option<Bytes> {
        match self.conn.rx().await {
            Ok(b) => b,
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }

    async fn tx(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.conn.tx(data).await.map_err(|e| std::io::Error::other(e.to_string()))
    }

    fn log(&mut self, kind: &str, fields: Map<String, Value>) {
        self.conn.emit(script_event(self.conn.ctx(), kind, fields));
    }

    fn info(&self) -> &SessionInfo {
        &self.info
    }
}

#[async_trait::async_trait]
impl TcpService for Script {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        let info = info(conn.ctx());
        let mut io = ConnIo { conn, info, error: None };
        let result = self.plugin.run_session(&mut io).await;
        if let Some(e) = io.error {
            return Err(e);
        }
        // The plugin host already logged and emitted `plugin.error` for a failed script.
        result.map(|_| ()).map_err(|e| SessionError::Protocol(format!("plugin: {}", e.class())))
    }
}

#[async_trait::async_trait]
impl UdpService for Script {
    async fn datagram(&self, peer: &mut UdpPeer, data: &[u8]) -> Vec<Bytes> {
        match self.plugin.datagram(&info(&peer.ctx), data).await {
            Ok(outcome) => {
                for (kind, fields) in outcome.logs {
                    peer.ctx.emit(script_event(&peer.ctx, &kind, fields));
                }
                outcome.replies
            }
            Err(e) => {
                let mut ev = peer.ctx.event(Kind::new("plugin.error"));
                ev.fields.insert("plugin".into(), self.plugin.path().display().to_string().into());
                ev.fields.insert("error".into(), e.class().into());
                ev.fields.insert("message".into(), e.to_string().into());
                peer.ctx.emit(ev);
                Vec::new()
            }
        }
    }
}
