//! Lua packet receivers (PokieStream's `receiver(packet_log[, config])` and the bulk
//! `receiver_bulk(list[, config])`), one sandboxed state per worker thread.

use std::path::Path;

use std::ffi::c_int;

use apiary_event::encode::packet_log::Field;
use apiary_event::{FlowState, Transport};
use mlua::{Function, Lua, Table, Value as LuaValue, ffi};

use super::convert::json_to_lua;
use super::sandbox::{Mode, Sandbox, compile, new_sandbox, short_message};
use crate::ScriptError;
use crate::packet::{BatchReport, PacketOptions, RECORD_KEYS, Record};

/// A loaded Lua packet plugin bound to one state.
pub(crate) struct LuaReceiver {
    sb: Sandbox,
    receiver: Option<Function>,
    bulk: Option<Function>,
    /// The config handed as second argument, or nil when `pass_config` is off (as PokieStream).
    config: LuaValue,
}

impl LuaReceiver {
    /// Loads the plugin and checks that it defines `receiver` (or `receiver_bulk`).
    pub(crate) fn load(
        path: &Path,
        source: &[u8],
        opts: &PacketOptions,
    ) -> Result<Self, ScriptError> {
        let sb = new_sandbox(&opts.limits, opts.memory, u64::MAX, Mode::Call, opts.output.clone())?;
        let chunk = compile(&sb.lua, path, source)?;
        let invalid = |message: String| ScriptError::Invalid { path: path.to_path_buf(), message };
        sb.budget.new_slice();
        chunk
            .call::<()>(())
            .map_err(|e| invalid(format!("top-level code failed: {}", sb.budget.classify(&e))))?;
        let g = sb.lua.globals();
        let func = |name: &str| match g.raw_get::<LuaValue>(name) {
            Ok(LuaValue::Function(f)) => Some(f),
            _ => None,
        };
        let (receiver, bulk) = (func("receiver"), func("receiver_bulk"));
        if receiver.is_none() && bulk.is_none() {
            return Err(invalid("the plugin defines no receiver(packet_log) function".into()));
        }
        let err = |e: mlua::Error| invalid(short_message(&e));
        // Records are short-lived garbage: the generational collector handles them cheaply.
        sb.lua.gc_set_mode(mlua::state::GcMode::Generational(mlua::state::GcGenParams::default()));
        let config = if opts.pass_config {
            json_to_lua(&sb.lua, &opts.config).map_err(err)?
        } else {
            LuaValue::Nil
        };
        Ok(Self { sb, receiver, bulk, config })
    }

    /// Whether the plugin takes whole batches.
    pub(crate) fn is_bulk(&self) -> bool {
        self.bulk.is_some()
    }

    /// Hands a batch to the plugin; failures are counted, never fatal.
    pub(crate) fn deliver(&mut self, batch: &[Record]) -> BatchReport {
        let mut report = BatchReport::default();
        let lua = &self.sb.lua;
        if let Some(bulk) = &self.bulk {
            self.sb.budget.reset();
            let res = build_list(lua, batch)
                .and_then(|list| bulk.call::<()>((list, self.config.clone())));
            match res {
                Ok(()) => report.delivered = batch.len() as u64,
                Err(e) => report.fail(batch.len() as u64, self.sb.budget.classify(&e).to_string()),
            }
            return report;
        }
        let Some(receiver) = &self.receiver else { return report };
        for rec in batch {
            self.sb.budget.reset();
            let res =
                build_record(lua, rec).and_then(|t| receiver.call::<()>((t, self.config.clone())));
            match res {
                Ok(()) => report.delivered += 1,
                Err(e) => report.fail(1, self.sb.budget.classify(&e).to_string()),
            }
        }
        report
    }
}

/// Records are built through the raw Lua API inside one protected call per batch: through
/// mlua's safe API every field store was its own protected call (the memory limit makes each
/// one fallible), which made building records, not the plugin, the bottleneck. Running inside
/// `exec_raw` keeps the memory limit in force: running out fails the batch, not the process.
fn build_list(lua: &Lua, batch: &[Record]) -> mlua::Result<Table> {
    // SAFETY: the closure only pushes values it creates and leaves one table on the stack; it
    // owns nothing that needs dropping, so a Lua error unwinding through it leaks nothing.
    unsafe {
        lua.exec_raw((), |state| {
            ffi::luaL_checkstack(state, STACK_NEEDED, std::ptr::null());
            // Collect the previous batch (garbage once its call returned) now, while nothing
            // of this one exists, then give the collector credit for this batch: otherwise its
            // steps run while the list is being built and traverse every record built so far,
            // records that are all still alive. The memory limit still holds (an allocation
            // over it runs an emergency collection first), and the plugin's own allocations
            // are collected as before.
            ffi::lua_gc(state, ffi::LUA_GCSTEP, 0);
            ffi::lua_gc(state, ffi::LUA_GCSTEP, -batch_credit_kib(batch.len()));
            let keys = push_keys(state);
            let mut recent = Recent::default();
            ffi::lua_createtable(state, c_int::try_from(batch.len()).unwrap_or(0), 0);
            for (i, rec) in batch.iter().enumerate() {
                push_record(state, rec, keys, &mut recent);
                ffi::lua_rawseti(state, -2, i as ffi::lua_Integer + 1);
            }
            // Leave only the list: it replaces the first key, the other keys are dropped.
            ffi::lua_replace(state, keys);
            ffi::lua_settop(state, keys);
        })
    }
}

/// Collector credit for building `records` records, in KiB: a record's table with its
/// hash part and its timestamp string take about 600 bytes.
fn batch_credit_kib(records: usize) -> c_int {
    c_int::try_from(records.saturating_mul(600) / 1024 + 1).unwrap_or(c_int::MAX)
}

fn build_record(lua: &Lua, rec: &Record) -> mlua::Result<Table> {
    // SAFETY: as in `build_list`.
    unsafe {
        lua.exec_raw((), |state| {
            ffi::luaL_checkstack(state, STACK_NEEDED, std::ptr::null());
            let keys = push_keys(state);
            push_record(state, rec, keys, &mut Recent::default());
            ffi::lua_replace(state, keys);
            ffi::lua_settop(state, keys);
        })
    }
}

/// Stack slots used at most: the record keys and common values, a record, its payload table
/// and a key-value pair, and a margin.
const STACK_NEEDED: c_int = (RECORD_KEYS.len() + COMMON_VALUES.len() + RECENT_SLOTS) as c_int + 16;

/// Values that recur in almost every record, pushed once per call like the keys: the
/// protocol names in [`Transport`] order, then the states in [`FlowState`] order.
const COMMON_VALUES: [&str; 9] =
    ["TCP", "UDP", "ICMP", "ICMPv6", "NEW", "ESTABLISHED", "CLOSE", "ABORT", "EXPIRED"];

/// Stack slots after the common values that hold the strings of recent text fields (see
/// [`Recent`]).
const RECENT_SLOTS: usize = 4;

/// Pushes PokieStream's keys and the common values once per call, then the empty slots of
/// [`Recent`]; returns the stack index of the first key. Copying a stack slot is much cheaper
/// than interning the same string again for every record.
unsafe fn push_keys(state: *mut ffi::lua_State) -> c_int {
    unsafe {
        let first = ffi::lua_gettop(state) + 1;
        for k in RECORD_KEYS.iter().chain(COMMON_VALUES.iter()) {
            ffi::lua_pushlstring(state, k.as_ptr().cast(), k.len());
        }
        for _ in 0..RECENT_SLOTS {
            ffi::lua_pushnil(state);
        }
        first
    }
}

/// The text fields last turned into Lua strings in this call, whose strings wait in the
/// [`RECENT_SLOTS`] stack slots: slot 0 and 1 the two addresses, 2 the timestamp, 3 the session
/// id. Records of one flow, or of one client or server, repeat them, and formatting and
/// interning a string again costs more than comparing the typed value and copying a slot.
#[derive(Default)]
struct Recent {
    values: [Option<Field>; RECENT_SLOTS],
}

impl Recent {
    /// Pushes the string of text field `field` (record field `i`), reusing a recent one.
    unsafe fn push(&mut self, state: *mut ffi::lua_State, slots: c_int, i: usize, field: Field) {
        // Either address may match either slot: a reply swaps source and destination.
        let (candidates, own): (&[usize], usize) = match i {
            0 => (&[0, 1], 0),
            1 => (&[1, 0], 1),
            7 => (&[2], 2),
            _ => (&[3], 3),
        };
        unsafe {
            for &c in candidates {
                if self.values[c] == Some(field) {
                    ffi::lua_pushvalue(state, slots + c as c_int);
                    return;
                }
            }
            let t = field.text();
            let b = t.as_bytes();
            ffi::lua_pushlstring(state, b.as_ptr().cast(), b.len());
            ffi::lua_copy(state, -1, slots + own as c_int);
        }
        self.values[own] = Some(field);
    }
}

/// Stack offset (from the first key) of a protocol name or state among the common values.
fn common_offset(rec: &Record, field: usize) -> Option<c_int> {
    let i = match field {
        5 => match rec.transport? {
            Transport::Tcp => 0,
            Transport::Udp => 1,
            Transport::Icmp => 2,
            Transport::Icmpv6 => 3,
        },
        6 => match rec.state? {
            FlowState::New => 4,
            FlowState::Established => 5,
            FlowState::Close => 6,
            FlowState::Abort => 7,
            FlowState::Expired => 8,
        },
        _ => return None,
    };
    Some(RECORD_KEYS.len() as c_int + i)
}

/// Pushes one record as a table, using the pre-pushed keys at `keys`; `None` fields are left
/// out (read as nil, as PokieStream's wrapped dict gives them).
unsafe fn push_record(state: *mut ffi::lua_State, rec: &Record, keys: c_int, recent: &mut Recent) {
    let slots = keys + (RECORD_KEYS.len() + COMMON_VALUES.len()) as c_int;
    let fields: [Field; 9] = std::array::from_fn(|i| rec.field(i));
    unsafe {
        let count = fields.iter().filter(|&&f| f != Field::Null).count()
            + usize::from(!rec.payload.is_empty());
        // Sized for exactly its fields, so the table never grows.
        ffi::lua_createtable(state, 0, count as c_int);
        for (i, &field) in fields.iter().enumerate() {
            if field == Field::Null {
                continue;
            }
            ffi::lua_pushvalue(state, keys + i as c_int);
            match (field, common_offset(rec, i)) {
                (_, Some(at)) => ffi::lua_pushvalue(state, keys + at),
                (Field::Int(n), None) => ffi::lua_pushinteger(state, ffi::lua_Integer::from(n)),
                (f, None) => recent.push(state, slots, i, f),
            }
            ffi::lua_rawset(state, -3);
        }
        if !rec.payload.is_empty() {
            ffi::lua_pushvalue(state, keys + 9);
            ffi::lua_createtable(state, 0, rec.payload.len().min(64) as c_int);
            for (k, v) in &rec.payload {
                ffi::lua_pushlstring(state, k.as_ptr().cast(), k.len());
                ffi::lua_pushlstring(state, v.as_ptr().cast(), v.len());
                ffi::lua_rawset(state, -3);
            }
            ffi::lua_rawset(state, -3);
        }
    }
}
