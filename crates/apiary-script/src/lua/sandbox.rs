//! A sandboxed Lua 5.4 state: safe libraries only, text chunks only, a memory limit and an
//! instruction budget that scripts cannot catch and ignore.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use bytes::Bytes;
use md5::Digest as _;
use mlua::chunk::ChunkMode;
use mlua::{
    Error as LuaError, Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table,
    Value as LuaValue, VmState,
};
use serde_json::{Map, Value};

use super::convert::table_to_map;
use crate::{Limits, Output, ScriptError};

/// The hook fires every this many VM instructions; budgets are counted in these steps.
const HOOK_EVERY: u32 = 1000;
/// Largest `random_bytes(n)` a script may ask for.
const MAX_RANDOM: usize = 1 << 16;

/// What a sandbox is for: sessions get the yielding `rx`/`sleep`/`close`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A TCP session run as a coroutine.
    Session,
    /// A UDP datagram handler or a packet receiver: plain calls.
    Call,
}

/// Why a budget tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trip {
    None = 0,
    Instructions = 1,
    Memory = 2,
}

/// Instruction counters shared between the hook and the driver.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicU64,
    slice: AtomicU64,
    limit: u64,
    slice_limit: u64,
    tripped: AtomicU8,
}

impl Budget {
    fn new(limit: u64, slice_limit: u64) -> Self {
        Self {
            used: AtomicU64::new(0),
            slice: AtomicU64::new(0),
            limit,
            slice_limit,
            tripped: AtomicU8::new(Trip::None as u8),
        }
    }

    fn tick(&self) -> mlua::Result<VmState> {
        let step = u64::from(HOOK_EVERY);
        let used = self.used.fetch_add(step, Ordering::Relaxed) + step;
        let slice = self.slice.fetch_add(step, Ordering::Relaxed) + step;
        if used > self.limit || slice > self.slice_limit || self.trip() != Trip::None {
            self.set_trip(Trip::Instructions);
            return Err(LuaError::RuntimeError("instruction budget exceeded".into()));
        }
        Ok(VmState::Continue)
    }

    fn set_trip(&self, t: Trip) {
        let _ = self.tripped.compare_exchange(
            Trip::None as u8,
            t as u8,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Why the budget tripped, if it did.
    pub(crate) fn trip(&self) -> Trip {
        match self.tripped.load(Ordering::Relaxed) {
            1 => Trip::Instructions,
            2 => Trip::Memory,
            _ => Trip::None,
        }
    }

    /// Starts a new slice (after a wait, or before a packet call).
    pub(crate) fn new_slice(&self) {
        self.slice.store(0, Ordering::Relaxed);
    }

    /// Clears a trip so a long-lived state (packet plugins, UDP) can take the next call.
    pub(crate) fn reset(&self) {
        self.slice.store(0, Ordering::Relaxed);
        self.used.store(0, Ordering::Relaxed);
        self.tripped.store(Trip::None as u8, Ordering::Relaxed);
    }

    /// Maps an error out of Lua to a [`ScriptError`], preferring the budget's verdict.
    pub(crate) fn classify(&self, e: &LuaError) -> ScriptError {
        match self.trip() {
            Trip::Instructions => return ScriptError::InstructionBudget,
            Trip::Memory => return ScriptError::MemoryLimit,
            Trip::None => {}
        }
        if is_memory_error(e) {
            return ScriptError::MemoryLimit;
        }
        ScriptError::Runtime(short_message(e))
    }
}

fn is_memory_error(e: &LuaError) -> bool {
    match e {
        LuaError::MemoryError(_) => true,
        LuaError::CallbackError { cause, .. } => is_memory_error(cause),
        LuaError::WithContext { cause, .. } => is_memory_error(cause),
        LuaError::RuntimeError(m) => m.starts_with("not enough memory"),
        _ => false,
    }
}

/// The first line of an error, without mlua's traceback.
pub(crate) fn short_message(e: &LuaError) -> String {
    let full = match e {
        LuaError::CallbackError { cause, .. } => return short_message(cause),
        LuaError::RuntimeError(m) => m.clone(),
        other => other.to_string(),
    };
    match full.find("\nstack traceback:") {
        Some(i) => full[..i].to_string(),
        None => full,
    }
}

/// One queued effect of a script: sent bytes or a logged event.
#[derive(Debug)]
pub(crate) enum Effect {
    Tx(Bytes),
    Log(String, Map<String, Value>),
}

/// Effects queued by `tx` and `log` until the driver flushes them at the next wait.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) effects: Vec<Effect>,
    pub(crate) pending_bytes: usize,
    pub(crate) cap: usize,
}

/// A ready sandbox and its budget.
pub(crate) struct Sandbox {
    pub(crate) lua: Lua,
    pub(crate) budget: Arc<Budget>,
    /// The private value our yields carry first, so a script's own `coroutine.yield` is told apart.
    pub(crate) token: Table,
}

fn prelude_bytecode() -> &'static [u8] {
    static CODE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    CODE.get_or_init(|| {
        let lua = Lua::new_with(StdLib::NONE, LuaOptions::new()).ok();
        lua.and_then(|l| {
            l.load(include_str!("prelude.lua"))
                .set_name("=apiary-prelude")
                .into_function()
                .ok()
                .map(|f| f.dump(true))
        })
        .unwrap_or_default()
    })
}

fn lua_err(e: LuaError) -> ScriptError {
    ScriptError::Runtime(short_message(&e))
}

/// A bare state whose drop does not run a full collection first. mlua's `Lua` collects all
/// garbage when the handle that created the state is dropped, just before `lua_close` frees
/// every object anyway (profiled: 4 % of a short Lua session); a handle upgraded from a weak
/// reference shares the state without that flag, so the creating handle is dropped here,
/// while the state is nearly empty, and the state is closed by the upgraded one.
fn new_lua() -> Result<Lua, ScriptError> {
    let owner = Lua::new_with(StdLib::NONE, LuaOptions::new()).map_err(lua_err)?;
    let lua = owner.weak().upgrade();
    drop(owner);
    Ok(lua)
}

/// Builds a sandboxed state; `instructions` is the total budget, `slice` the budget per wait.
pub(crate) fn new_sandbox(
    limits: &Limits,
    memory: usize,
    instructions: u64,
    mode: Mode,
    output: Output,
) -> Result<Sandbox, ScriptError> {
    let libs = StdLib::COROUTINE | StdLib::TABLE | StdLib::STRING | StdLib::UTF8 | StdLib::MATH;
    let lua = new_lua()?;
    // A session's state lives for one connection and is freed whole at its end: collecting
    // while the libraries and the sandbox are built only walks objects that are all alive
    // (profiled: the collector was about a third of a short session's Lua time).
    lua.gc_stop();
    lua.load_std_libs(libs | StdLib::OS).map_err(lua_err)?;
    // mlua's load_std_libs restarts the collector when it is done, whatever its state before.
    lua.gc_stop();
    let budget = Arc::new(Budget::new(instructions, limits.instructions_per_slice));
    let token = setup(&lua, &budget, mode, output, limits.max_tx_pending).map_err(lua_err)?;
    // A restart alone leaves the collector with no credit, so the first allocations of the
    // script would start a cycle that walks the whole freshly built state (profiled: more
    // than the collection itself costs). A full collection now sets the next cycle to start
    // only once the heap has grown by the collector's pause.
    lua.gc_restart();
    lua.gc_collect().map_err(lua_err)?;
    let hook_budget = budget.clone();
    lua.set_global_hook(HookTriggers::new().every_nth_instruction(HOOK_EVERY), move |_, _| {
        hook_budget.tick()
    })
    .map_err(lua_err)?;
    let base = lua.used_memory();
    lua.set_memory_limit(base.saturating_add(memory)).map_err(lua_err)?;
    Ok(Sandbox { lua, budget, token })
}

fn setup(
    lua: &Lua,
    budget: &Arc<Budget>,
    mode: Mode,
    output: Output,
    tx_cap: usize,
) -> mlua::Result<Table> {
    let g = lua.globals();
    // Only the harmless clock functions of `os`: no execute, getenv, remove, exit.
    let os: Table = g.get("os")?;
    let safe_os = lua.create_table()?;
    for name in ["time", "clock", "date", "difftime"] {
        safe_os.raw_set(name, os.get::<LuaValue>(name)?)?;
    }
    g.raw_set("os", safe_os)?;
    for name in ["dofile", "loadfile", "collectgarbage"] {
        g.raw_set(name, LuaValue::Nil)?;
    }
    let string: Table = g.get("string")?;
    string.raw_set("dump", LuaValue::Nil)?;

    lua.set_named_registry_value("apiary.tostring", g.get::<Function>("tostring")?)?;
    g.raw_set(
        "print",
        lua.create_function(move |lua, args: MultiValue| print(lua, &output, args))?,
    )?;

    g.raw_set(
        "md5",
        lua.create_function(|_, s: mlua::LuaString| Ok(hex(&md5::Md5::digest(&*s.as_bytes()))))?,
    )?;
    g.raw_set(
        "sha256",
        lua.create_function(|_, s: mlua::LuaString| {
            Ok(hex(&sha2::Sha256::digest(&*s.as_bytes())))
        })?,
    )?;
    g.raw_set("hex", lua.create_function(|_, s: mlua::LuaString| Ok(hex(&s.as_bytes())))?)?;
    g.raw_set(
        "random_bytes",
        lua.create_function(|lua, n: usize| {
            let mut buf = vec![0u8; n.min(MAX_RANDOM)];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut buf);
            lua.create_string(&buf)
        })?,
    )?;

    lua.set_app_data(Outbox { cap: tx_cap, ..Outbox::default() });
    g.raw_set(
        "tx",
        lua.create_function(|lua, data: LuaValue| {
            let bytes = match &data {
                LuaValue::String(s) => Bytes::copy_from_slice(&s.as_bytes()),
                LuaValue::Integer(_) | LuaValue::Number(_) => {
                    Bytes::from(data.to_string().unwrap_or_default().into_bytes())
                }
                other => {
                    return Err(LuaError::RuntimeError(format!(
                        "tx expects a string, got {}",
                        other.type_name()
                    )));
                }
            };
            let mut out = lua
                .app_data_mut::<Outbox>()
                .ok_or_else(|| LuaError::RuntimeError("tx is not available here".into()))?;
            if out.pending_bytes.saturating_add(bytes.len()) > out.cap {
                return Err(LuaError::RuntimeError("too much data queued by tx".into()));
            }
            out.pending_bytes += bytes.len();
            out.effects.push(Effect::Tx(bytes));
            Ok(())
        })?,
    )?;
    g.raw_set(
        "log",
        lua.create_function(|lua, (kind, fields): (mlua::LuaString, Option<Table>)| {
            let map = fields.map(|t| table_to_map(&t, 1)).unwrap_or_default();
            let mut out = lua
                .app_data_mut::<Outbox>()
                .ok_or_else(|| LuaError::RuntimeError("log is not available here".into()))?;
            out.effects.push(Effect::Log(kind.to_string_lossy(), map));
            Ok(())
        })?,
    )?;

    let guard_budget = budget.clone();
    let guard = lua.create_function(move |_, (ok, err): (bool, LuaValue)| {
        if !ok {
            let mem = match &err {
                LuaValue::Error(e) => is_memory_error(e),
                LuaValue::String(s) => s.as_bytes().starts_with(b"not enough memory"),
                _ => false,
            };
            if mem {
                guard_budget.set_trip(Trip::Memory);
            }
        }
        Ok(guard_budget.trip() != Trip::None)
    })?;
    let co: Table = g.get("coroutine")?;
    let token = lua.create_table()?;
    let prelude = lua.load(prelude_bytecode()).set_mode(ChunkMode::Binary).into_function()?;
    let runner: Function = prelude.call((
        guard,
        g.get::<Function>("pcall")?,
        g.get::<Function>("xpcall")?,
        co.get::<Function>("resume")?,
        co.get::<Function>("close")?,
        g.get::<Function>("load")?,
        co.get::<Function>("yield")?,
        token.clone(),
        match mode {
            Mode::Session => "session",
            Mode::Call => "call",
        },
    ))?;
    lua.set_named_registry_value("apiary.runner", runner)?;
    Ok(token)
}

fn print(lua: &Lua, output: &Output, args: MultiValue) -> mlua::Result<()> {
    let mut line = Vec::new();
    for (i, v) in args.into_iter().enumerate() {
        if i > 0 {
            line.push(b'\t');
        }
        match v {
            LuaValue::String(s) => line.extend_from_slice(&s.as_bytes()),
            other => {
                let tostring: Function = lua.named_registry_value("apiary.tostring")?;
                let s: mlua::LuaString = tostring.call(other)?;
                line.extend_from_slice(&s.as_bytes());
            }
        }
    }
    line.push(b'\n');
    output.write(&line);
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Compiles `source` as a text chunk named after `path`, mapping syntax errors to file and line.
pub(crate) fn compile(
    lua: &Lua,
    path: &std::path::Path,
    source: &[u8],
) -> Result<Function, ScriptError> {
    let name = format!("@{}", path.display());
    lua.load(source).set_name(name).set_mode(ChunkMode::Text).into_function().map_err(|e| match e {
        LuaError::SyntaxError { message, .. } => syntax_error(path, &message),
        other => ScriptError::Syntax {
            path: path.to_path_buf(),
            line: None,
            message: short_message(&other),
        },
    })
}

fn syntax_error(path: &std::path::Path, message: &str) -> ScriptError {
    // Lua formats it as "<chunkname>:<line>: <message>".
    let shown = path.display().to_string();
    let rest = message.strip_prefix(shown.as_str()).and_then(|r| r.strip_prefix(':'));
    if let Some((num, msg)) = rest.and_then(|r| r.split_once(':'))
        && let Ok(line) = num.parse::<u32>()
    {
        return ScriptError::Syntax {
            path: path.to_path_buf(),
            line: Some(line),
            message: msg.trim().to_string(),
        };
    }
    ScriptError::Syntax { path: path.to_path_buf(), line: None, message: message.to_string() }
}
