//! The service hook: a scripted honeypot service (HoneyPy's plugin model) in Lua or Python,
//! reloaded when its file changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};

use crate::lua::pool::SessionPool;
use crate::lua::service::{LuaCode, LuaUdp, prepare, run_session as lua_session};
use crate::python::service::PyService;
use crate::{
    DatagramOutcome, Language, Limits, Output, ScriptError, SessionEnd, SessionInfo, SessionIo,
};

/// How a service plugin is run.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Memory, instruction, sleep and worker limits.
    pub limits: Limits,
    /// Where `print` goes (the daemon log by default).
    pub output: Output,
    /// The Python interpreter (a name looked up on PATH, or a path).
    pub python: String,
    /// How often at most the plugin file's modification time is looked at.
    pub reload_check: Duration,
    /// Lua: how many TCP session states a background thread keeps built ahead of time (0:
    /// each session builds its own on arrival). Each is a fresh sandbox used by one session.
    pub lua_pool: usize,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            output: Output::Tracing,
            python: "python3".into(),
            reload_check: Duration::from_secs(1),
            lua_pool: DEFAULT_LUA_POOL,
        }
    }
}

/// Session states kept ready per Lua script by default: enough to absorb a burst of
/// connections while the pool's thread refills, a few hundred KiB of memory.
pub const DEFAULT_LUA_POOL: usize = 8;

enum Loaded {
    /// `pool` holds states of this `code` only: a reload replaces the whole value, so the
    /// states built from the old code are closed with it.
    Lua {
        code: Arc<LuaCode>,
        udp: Option<Arc<Mutex<LuaUdp>>>,
        pool: Option<SessionPool>,
    },
    Python(Arc<PyService>),
}

struct Inner {
    path: PathBuf,
    language: Language,
    options: ServiceOptions,
    loaded: RwLock<Arc<Loaded>>,
    /// Modification time of the loaded file and when it was last looked at.
    seen: Mutex<(Option<SystemTime>, Instant)>,
}

/// A loaded service plugin. Cheap to clone; every clone shares the loaded code and worker.
#[derive(Clone)]
pub struct ServicePlugin {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ServicePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServicePlugin")
            .field("path", &self.inner.path)
            .field("language", &self.inner.language)
            .finish()
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(path: &Path, language: Language, options: &ServiceOptions) -> Result<Loaded, ScriptError> {
    match language {
        Language::Lua => {
            let source = std::fs::read(path)
                .map_err(|source| ScriptError::Read { path: path.to_path_buf(), source })?;
            let code = Arc::new(LuaCode::compile(path, &source)?);
            let udp = if code.has_datagram {
                Some(Arc::new(Mutex::new(LuaUdp::new(
                    &code,
                    &options.limits,
                    options.output.clone(),
                )?)))
            } else {
                None
            };
            let pool = if code.has_handle && options.lua_pool > 0 {
                let pool = SessionPool::start(
                    code.clone(),
                    &options.limits,
                    options.output.clone(),
                    options.lua_pool,
                )
                .map_err(|e| {
                    ScriptError::Runtime(format!("cannot start the Lua pool thread: {e}"))
                })?;
                Some(pool)
            } else {
                None
            };
            Ok(Loaded::Lua { code, udp, pool })
        }
        Language::Python => Ok(Loaded::Python(Arc::new(PyService::start(
            path,
            &options.python,
            &options.limits,
            options.output.clone(),
        )?))),
    }
}

impl ServicePlugin {
    /// Loads and validates the plugin at `path` (`.lua` or `.py`). For Python this starts the
    /// worker process and waits until the plugin is imported, so call it at startup (or from
    /// `spawn_blocking`), not from a hot async path.
    pub fn load(path: impl AsRef<Path>, options: ServiceOptions) -> Result<Self, ScriptError> {
        let path = path.as_ref().to_path_buf();
        let language = Language::of_path(&path)?;
        let seen = mtime(&path);
        let loaded = load(&path, language, &options)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                language,
                options,
                loaded: RwLock::new(Arc::new(loaded)),
                seen: Mutex::new((seen, Instant::now())),
            }),
        })
    }

    /// The plugin file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The plugin's language.
    pub fn language(&self) -> Language {
        self.inner.language
    }

    fn current(&self) -> Result<Arc<Loaded>, ScriptError> {
        self.inner
            .loaded
            .read()
            .map(|l| l.clone())
            .map_err(|_| ScriptError::Runtime("plugin state poisoned".into()))
    }

    /// Whether the plugin can serve TCP connections (defines `handle`).
    pub fn handles_tcp(&self) -> bool {
        match self.current().as_deref() {
            Ok(Loaded::Lua { code, .. }) => code.has_handle,
            Ok(Loaded::Python(py)) => py.has_handle(),
            Err(_) => false,
        }
    }

    /// Whether the plugin can answer UDP datagrams (defines `datagram`).
    pub fn handles_udp(&self) -> bool {
        match self.current().as_deref() {
            Ok(Loaded::Lua { code, .. }) => code.has_datagram,
            Ok(Loaded::Python(py)) => py.has_datagram(),
            Err(_) => false,
        }
    }

    /// How many Lua session states are built and waiting for a session (0 for Python).
    pub fn lua_states_ready(&self) -> usize {
        match self.current().as_deref() {
            Ok(Loaded::Lua { pool: Some(pool), .. }) => pool.ready(),
            _ => 0,
        }
    }

    /// How many times the Python worker was restarted after it died or hung (0 for Lua).
    pub fn worker_restarts(&self) -> u64 {
        match self.current().as_deref() {
            Ok(Loaded::Python(py)) => py.restarts(),
            _ => 0,
        }
    }

    /// Reloads the plugin if its file changed since it was loaded (looked at most once a
    /// second). A file that no longer compiles keeps the old code running and returns the
    /// error. Returns whether new code was loaded (for Python: handed to the worker).
    pub fn reload_if_changed(&self) -> Result<bool, ScriptError> {
        let now_mtime = {
            let Ok(mut seen) = self.inner.seen.lock() else { return Ok(false) };
            if seen.1.elapsed() < self.inner.options.reload_check {
                return Ok(false);
            }
            seen.1 = Instant::now();
            let m = mtime(&self.inner.path);
            if m == seen.0 {
                return Ok(false);
            }
            seen.0 = m;
            m
        };
        tracing::info!(path = %self.inner.path.display(), ?now_mtime, "plugin file changed; reloading");
        let current = self.current()?;
        if let Loaded::Python(py) = &*current {
            crate::check_plugin_with(
                &self.inner.path,
                crate::Hook::Service,
                &self.inner.options.python,
            )?;
            py.reload()?;
            return Ok(true);
        }
        let fresh = load(&self.inner.path, self.inner.language, &self.inner.options)?;
        if let Ok(mut l) = self.inner.loaded.write() {
            *l = Arc::new(fresh);
        }
        Ok(true)
    }

    /// Runs the script for one TCP connection until it returns, closes, or the peer goes.
    ///
    /// A script error, a budget overrun or a dead worker ends only this session: it is
    /// logged (tracing) and emitted through `io.log("plugin.error", ...)`, then returned.
    pub async fn run_session(&self, io: &mut dyn SessionIo) -> Result<SessionEnd, ScriptError> {
        let _ = self.reload_if_changed().map_err(|e| {
            tracing::error!("plugin reload failed, keeping the old code: {e}");
        });
        let loaded = self.current()?;
        let res = match &*loaded {
            Loaded::Lua { code, pool, .. } => {
                let limits = &self.inner.options.limits;
                let state = match pool {
                    Some(pool) => pool.take(),
                    None => prepare(code, limits, self.inner.options.output.clone()),
                };
                match state {
                    Ok(state) => {
                        let res = lua_session(&state, limits, io).await;
                        match pool {
                            Some(pool) => pool.retire(state),
                            None => drop(state),
                        }
                        res
                    }
                    Err(e) => Err(e),
                }
            }
            Loaded::Python(py) => py.run_session(io).await,
        };
        if let Err(e) = &res {
            let info = io.info();
            tracing::warn!(
                plugin = %self.inner.path.display(),
                session_id = %info.session_id,
                "plugin session ended with an error: {e}"
            );
            io.log("plugin.error", self.error_fields(e));
        }
        res
    }

    fn error_fields(&self, e: &ScriptError) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("plugin".into(), Value::String(self.inner.path.display().to_string()));
        fields.insert("error".into(), Value::String(e.class().into()));
        fields.insert("message".into(), Value::String(e.to_string()));
        fields
    }

    /// Handles one UDP datagram from `peer`: the replies to send and the events to emit.
    /// Errors are logged (tracing) and returned; the caller sends nothing for them.
    pub async fn datagram(
        &self,
        peer: &SessionInfo,
        data: &[u8],
    ) -> Result<DatagramOutcome, ScriptError> {
        let _ = self.reload_if_changed().map_err(|e| {
            tracing::error!("plugin reload failed, keeping the old code: {e}");
        });
        let loaded = self.current()?;
        let res = match &*loaded {
            Loaded::Lua { udp: Some(udp), code, .. } => {
                let mut state =
                    udp.lock().map_err(|_| ScriptError::Runtime("plugin state poisoned".into()))?;
                let res = state.call(peer, data);
                if matches!(res, Err(ScriptError::MemoryLimit)) {
                    // The state may be full of the script's data: start it afresh.
                    match LuaUdp::new(
                        code,
                        &self.inner.options.limits,
                        self.inner.options.output.clone(),
                    ) {
                        Ok(fresh) => *state = fresh,
                        Err(e) => tracing::error!("cannot reset the Lua state: {e}"),
                    }
                }
                res
            }
            Loaded::Lua { udp: None, .. } => Err(ScriptError::Invalid {
                path: self.inner.path.clone(),
                message: "the plugin defines no datagram(data) function".into(),
            }),
            Loaded::Python(py) => py.datagram(peer, data).await,
        };
        if let Err(e) = &res {
            tracing::warn!(
                plugin = %self.inner.path.display(),
                peer = %peer.remote_host,
                "plugin datagram handler failed: {e}"
            );
        }
        res
    }
}
