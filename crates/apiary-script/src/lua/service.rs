//! Lua service scripts: one sandboxed state per TCP session driven as a coroutine, and one
//! state per UDP service with a bounded table of per-peer tables.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mlua::chunk::ChunkMode;
use mlua::thread::ThreadStatus;
use mlua::{Function, Lua, MultiValue, RegistryKey, Table, Thread, Value as LuaValue};

use super::sandbox::{Effect, Mode, Outbox, Sandbox, Trip, compile, new_sandbox, short_message};
use crate::{DatagramOutcome, Limits, Output, ScriptError, SessionEnd, SessionInfo, SessionIo};

/// A compiled, validated Lua service script.
#[derive(Debug)]
pub(crate) struct LuaCode {
    path: PathBuf,
    /// Bytecode we compiled ourselves; scripts can never load bytecode.
    bytecode: Vec<u8>,
    pub(crate) has_handle: bool,
    pub(crate) has_datagram: bool,
}

impl LuaCode {
    /// Compiles `source` and runs its top level once in a throw-away sandbox to learn which
    /// entry points it defines.
    pub(crate) fn compile(path: &Path, source: &[u8]) -> Result<Self, ScriptError> {
        let limits = Limits::default();
        let sb = new_sandbox(
            &limits,
            limits.memory,
            limits.instructions,
            Mode::Session,
            Output::Tracing,
        )?;
        let chunk = compile(&sb.lua, path, source)?;
        let invalid = |message: String| ScriptError::Invalid { path: path.to_path_buf(), message };
        let thread = sb.lua.create_thread(chunk.clone()).map_err(|e| invalid(short_message(&e)))?;
        if let Err(e) = thread.resume::<MultiValue>(()) {
            return Err(invalid(format!("top-level code failed: {}", sb.budget.classify(&e))));
        }
        if thread.status() == ThreadStatus::Resumable {
            return Err(invalid(
                "top-level code must not wait (rx, sleep, close); put it in handle()".into(),
            ));
        }
        let g = sb.lua.globals();
        let is_fn = |name: &str| matches!(g.raw_get::<LuaValue>(name), Ok(LuaValue::Function(_)));
        let (has_handle, has_datagram) = (is_fn("handle"), is_fn("datagram"));
        if !has_handle && !has_datagram {
            return Err(invalid(
                "defines neither a handle() function (TCP) nor a datagram(data) function (UDP)"
                    .into(),
            ));
        }
        Ok(Self { path: path.to_path_buf(), bytecode: chunk.dump(false), has_handle, has_datagram })
    }

    fn load_into(&self, lua: &Lua) -> mlua::Result<Function> {
        lua.load(&self.bytecode[..])
            .set_name(format!("@{}", self.path.display()))
            .set_mode(ChunkMode::Binary)
            .into_function()
    }
}

fn set_info(lua: &Lua, info: &SessionInfo, session: &Table) -> mlua::Result<()> {
    let g = lua.globals();
    g.raw_set("remote_host", info.remote_host.as_str())?;
    g.raw_set("remote_port", info.remote_port)?;
    g.raw_set("local_port", info.local_port)?;
    g.raw_set("session_id", info.session_id.as_str())?;
    g.raw_set("service", info.service.as_str())?;
    g.raw_set("session", session)?;
    Ok(())
}

fn take_effects(lua: &Lua) -> Vec<Effect> {
    match lua.app_data_mut::<Outbox>() {
        Some(mut out) => {
            out.pending_bytes = 0;
            std::mem::take(&mut out.effects)
        }
        None => Vec::new(),
    }
}

/// What the coroutine asked for when it yielded.
enum Request {
    Rx,
    Sleep(f64),
    Close,
}

fn parse_yield(sb: &Sandbox, vals: MultiValue) -> Result<Request, ScriptError> {
    let mut it = vals.into_iter();
    let is_ours =
        matches!(it.next(), Some(LuaValue::Table(t)) if t.to_pointer() == sb.token.to_pointer());
    if !is_ours {
        return Err(ScriptError::Runtime(
            "coroutine.yield called outside a coroutine of the script".into(),
        ));
    }
    let op = match it.next() {
        Some(LuaValue::String(s)) => s.to_string_lossy(),
        _ => String::new(),
    };
    match op.as_str() {
        "rx" => Ok(Request::Rx),
        "close" => Ok(Request::Close),
        "sleep" => {
            let secs = match it.next() {
                Some(LuaValue::Integer(i)) => i as f64,
                Some(LuaValue::Number(f)) => f,
                _ => 0.0,
            };
            Ok(Request::Sleep(secs))
        }
        _ => Err(ScriptError::Runtime(format!("unknown request {op:?}"))),
    }
}

/// Sends and logs queued effects; `false` when the peer is gone.
async fn flush(effects: Vec<Effect>, io: &mut dyn SessionIo) -> bool {
    for effect in effects {
        match effect {
            Effect::Tx(data) => {
                if io.tx(&data).await.is_err() {
                    return false;
                }
            }
            Effect::Log(kind, fields) => io.log(&kind, fields),
        }
    }
    true
}

/// One TCP session's state, built before the session: the sandbox with the script's chunk
/// loaded and the coroutine that will run it. It serves one session and is then dropped.
pub(crate) struct Prepared {
    sb: Sandbox,
    thread: Thread,
    chunk: Function,
}

impl Prepared {
    /// The state's Lua (tests look at its memory).
    #[cfg(test)]
    pub(crate) fn lua(&self) -> &Lua {
        &self.sb.lua
    }
}

/// Builds a session state for `code`.
pub(crate) fn prepare(
    code: &LuaCode,
    limits: &Limits,
    output: Output,
) -> Result<Prepared, ScriptError> {
    let sb = new_sandbox(limits, limits.memory, limits.instructions, Mode::Session, output)?;
    let built = (|| -> mlua::Result<(Thread, Function)> {
        let chunk = code.load_into(&sb.lua)?;
        let runner: Function = sb.lua.named_registry_value("apiary.runner")?;
        let thread = sb.lua.create_thread(runner)?;
        Ok((thread, chunk))
    })();
    let (thread, chunk) = built.map_err(|e| ScriptError::Runtime(short_message(&e)))?;
    Ok(Prepared { sb, thread, chunk })
}

/// Runs one TCP session in `state` to its end.
pub(crate) async fn run_session(
    state: &Prepared,
    limits: &Limits,
    io: &mut dyn SessionIo,
) -> Result<SessionEnd, ScriptError> {
    let Prepared { sb, thread, chunk } = state;
    {
        let session = sb.lua.create_table().map_err(|e| sb.budget.classify(&e))?;
        set_info(&sb.lua, io.info(), &session).map_err(|e| sb.budget.classify(&e))?;
    }
    let mut args = MultiValue::from_vec(vec![LuaValue::Function(chunk.clone())]);
    let mut eof = false;
    loop {
        sb.budget.new_slice();
        let res = thread.resume::<MultiValue>(std::mem::take(&mut args));
        let effects = take_effects(&sb.lua);
        let alive = flush(effects, io).await;
        let vals = res.map_err(|e| sb.budget.classify(&e))?;
        if sb.budget.trip() != Trip::None {
            return Err(sb.budget.classify(&mlua::Error::RuntimeError(String::new())));
        }
        if !alive {
            return Ok(SessionEnd::PeerGone);
        }
        if thread.status() != ThreadStatus::Resumable {
            return Ok(SessionEnd::Returned);
        }
        match parse_yield(sb, vals)? {
            Request::Close => return Ok(SessionEnd::Closed),
            Request::Sleep(secs) => {
                let d = std::time::Duration::try_from_secs_f64(secs.max(0.0))
                    .unwrap_or(limits.max_sleep)
                    .min(limits.max_sleep);
                tokio::time::sleep(d).await;
            }
            Request::Rx => {
                if eof {
                    return Ok(SessionEnd::PeerGone);
                }
                match io.rx().await {
                    Some(data) => {
                        let s = sb.lua.create_string(&data).map_err(|e| sb.budget.classify(&e))?;
                        args = MultiValue::from_vec(vec![LuaValue::String(s)]);
                    }
                    None => eof = true,
                }
            }
        }
    }
}

/// A UDP service: one state, the script's `datagram(data)` called per datagram, and a bounded
/// least-recently-used table of per-peer `session` tables.
pub(crate) struct LuaUdp {
    sb: Sandbox,
    datagram: Function,
    peers: HashMap<String, (RegistryKey, u64)>,
    clock: u64,
    max_peers: usize,
}

impl LuaUdp {
    pub(crate) fn new(
        code: &LuaCode,
        limits: &Limits,
        output: Output,
    ) -> Result<Self, ScriptError> {
        let sb = new_sandbox(limits, limits.memory, u64::MAX, Mode::Call, output)?;
        let err = |e: mlua::Error| ScriptError::Runtime(short_message(&e));
        let chunk = code.load_into(&sb.lua).map_err(err)?;
        sb.budget.new_slice();
        chunk.call::<()>(()).map_err(|e| sb.budget.classify(&e))?;
        let datagram = match sb.lua.globals().raw_get::<LuaValue>("datagram").map_err(err)? {
            LuaValue::Function(f) => f,
            _ => {
                return Err(ScriptError::Invalid {
                    path: code.path.clone(),
                    message: "the plugin defines no datagram(data) function".into(),
                });
            }
        };
        Ok(Self {
            sb,
            datagram,
            peers: HashMap::new(),
            clock: 0,
            max_peers: limits.max_peers.max(1),
        })
    }

    fn peer_table(&mut self, key: &str) -> mlua::Result<Table> {
        self.clock += 1;
        if let Some((reg, used)) = self.peers.get_mut(key) {
            *used = self.clock;
            return self.sb.lua.registry_value(reg);
        }
        if self.peers.len() >= self.max_peers {
            let oldest =
                self.peers.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone());
            if let Some((reg, _)) = oldest.and_then(|k| self.peers.remove(&k)) {
                self.sb.lua.remove_registry_value(reg)?;
            }
        }
        let t = self.sb.lua.create_table()?;
        let reg = self.sb.lua.create_registry_value(&t)?;
        self.peers.insert(key.to_string(), (reg, self.clock));
        Ok(t)
    }

    /// Calls `datagram(data)`; the state survives script errors, and is reset by the caller
    /// after a memory overrun ([`ScriptError::MemoryLimit`]).
    pub(crate) fn call(
        &mut self,
        info: &SessionInfo,
        data: &[u8],
    ) -> Result<DatagramOutcome, ScriptError> {
        self.sb.budget.reset();
        let key = format!("{}|{}", info.remote_host, info.remote_port);
        let prepared = (|| -> mlua::Result<mlua::LuaString> {
            let session = self.peer_table(&key)?;
            set_info(&self.sb.lua, info, &session)?;
            self.sb.lua.create_string(data)
        })();
        let arg = prepared.map_err(|e| self.sb.budget.classify(&e))?;
        let res = self.datagram.call::<()>(arg);
        let effects = take_effects(&self.sb.lua);
        res.map_err(|e| self.sb.budget.classify(&e))?;
        if self.sb.budget.trip() != Trip::None {
            return Err(self.sb.budget.classify(&mlua::Error::RuntimeError(String::new())));
        }
        let mut out = DatagramOutcome::default();
        for effect in effects {
            match effect {
                Effect::Tx(b) => out.replies.push(b),
                Effect::Log(kind, fields) => out.logs.push((kind, fields)),
            }
        }
        Ok(out)
    }
}
