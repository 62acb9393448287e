//! Lua packet receivers (PokieStream's `receiver(packet_log[, config])` and the bulk
//! `receiver_bulk(list[, config])`), one sandboxed state per worker thread.

use std::ffi::c_int;
use std::net::IpAddr;
use std::path::Path;

use apiary_event::encode::packet_log::Field;
use apiary_event::{FlowState, Timestamp, Transport};
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
            // are collected as before. Small batches (a quiet live capture) are left to the
            // usual pace, so that a trickle of records does not cost a collection each.
            if batch.len() >= STEP_BATCH {
                ffi::lua_gc(state, ffi::LUA_GCSTEP, 0);
                ffi::lua_gc(state, ffi::LUA_GCSTEP, -batch_credit_kib(batch.len()));
            }
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

/// Smallest batch built with the collector stepped first and credited (see `build_list`).
const STEP_BATCH: usize = 64;

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
/// [`RECENT_SLOTS`] stack slots from `slots`: 0 and 1 the two addresses, 2 the timestamp, 3 the
/// session id. Records of one flow, or of one client or server, repeat them, and formatting
/// and interning a string again costs more than comparing the typed value and copying a slot.
#[derive(Default)]
struct Recent {
    addrs: [Option<IpAddr>; 2],
    time: Option<Timestamp>,
    /// The session id as a number.
    session: Option<u128>,
}

impl Recent {
    /// Pushes the text of address `a`, field `own` (0 source, 1 destination); either slot may
    /// match, since a reply swaps source and destination.
    unsafe fn push_addr(
        &mut self,
        state: *mut ffi::lua_State,
        slots: c_int,
        own: usize,
        a: IpAddr,
    ) {
        unsafe {
            for c in [own, 1 - own] {
                if self.addrs.get(c) == Some(&Some(a)) {
                    ffi::lua_pushvalue(state, slots + c as c_int);
                    return;
                }
            }
            push_text(state, Field::Ip(a), slots + own as c_int);
        }
        if let Some(slot) = self.addrs.get_mut(own) {
            *slot = Some(a);
        }
    }
}

/// Pushes the string of `field`, whose typed value is `value`: a copy of stack slot `slot`
/// when `cache` says that slot holds it, else a new string, kept in `slot` for the next record.
unsafe fn push_cached<T: PartialEq>(
    state: *mut ffi::lua_State,
    cache: &mut Option<T>,
    value: T,
    slot: c_int,
    field: Field,
) {
    unsafe {
        if cache.as_ref() == Some(&value) {
            ffi::lua_pushvalue(state, slot);
            return;
        }
        push_text(state, field, slot);
    }
    *cache = Some(value);
}

/// Pushes the text of `field` as a new string and keeps a copy in stack slot `keep`.
unsafe fn push_text(state: *mut ffi::lua_State, field: Field, keep: c_int) {
    let t = field.text();
    let b = t.as_bytes();
    unsafe {
        ffi::lua_pushlstring(state, b.as_ptr().cast(), b.len());
        ffi::lua_copy(state, -1, keep);
    }
}

/// Stack offset (from the first key) of a protocol name among the common values.
fn transport_offset(t: Transport) -> c_int {
    RECORD_KEYS.len() as c_int
        + match t {
            Transport::Tcp => 0,
            Transport::Udp => 1,
            Transport::Icmp => 2,
            Transport::Icmpv6 => 3,
        }
}

/// Stack offset (from the first key) of a state among the common values.
fn state_offset(s: FlowState) -> c_int {
    RECORD_KEYS.len() as c_int
        + match s {
            FlowState::New => 4,
            FlowState::Established => 5,
            FlowState::Close => 6,
            FlowState::Abort => 7,
            FlowState::Expired => 8,
        }
}

/// Pushes one record as a table, using the pre-pushed keys at `keys`; `None` fields are left
/// out (read as nil, as PokieStream's wrapped dict gives them). Field by field in
/// [`RECORD_KEYS`] order, without going through [`Field`] for the untextual ones.
unsafe fn push_record(state: *mut ffi::lua_State, rec: &Record, keys: c_int, recent: &mut Recent) {
    let slots = keys + (RECORD_KEYS.len() + COMMON_VALUES.len()) as c_int;
    // protocol_num and timestamp are always there.
    let count = 2
        + usize::from(rec.src_ip.is_some())
        + usize::from(rec.dst_ip.is_some())
        + usize::from(rec.src_port.is_some())
        + usize::from(rec.dst_port.is_some())
        + usize::from(rec.transport.is_some())
        + usize::from(rec.state.is_some())
        + usize::from(rec.session_id.is_some())
        + usize::from(!rec.payload.is_empty());
    unsafe {
        // Sized for exactly its fields, so the table never grows.
        ffi::lua_createtable(state, 0, count as c_int);
        // Key `i` of RECORD_KEYS, then the value `$push` leaves on the stack.
        macro_rules! set {
            ($i:expr, $push:expr) => {{
                ffi::lua_pushvalue(state, keys + $i);
                $push;
                ffi::lua_rawset(state, -3);
            }};
        }
        if let Some(a) = rec.src_ip {
            set!(0, recent.push_addr(state, slots, 0, a));
        }
        if let Some(a) = rec.dst_ip {
            set!(1, recent.push_addr(state, slots, 1, a));
        }
        if let Some(p) = rec.src_port {
            set!(2, ffi::lua_pushinteger(state, ffi::lua_Integer::from(p)));
        }
        if let Some(p) = rec.dst_port {
            set!(3, ffi::lua_pushinteger(state, ffi::lua_Integer::from(p)));
        }
        set!(4, ffi::lua_pushinteger(state, ffi::lua_Integer::from(rec.protocol_num)));
        if let Some(t) = rec.transport {
            set!(5, ffi::lua_pushvalue(state, keys + transport_offset(t)));
        }
        if let Some(s) = rec.state {
            set!(6, ffi::lua_pushvalue(state, keys + state_offset(s)));
        }
        set!(7, push_cached(state, &mut recent.time, rec.time, slots + 2, Field::Time(rec.time)));
        if let Some(id) = rec.session_id {
            let (cache, slot) = (&mut recent.session, slots + 3);
            set!(8, push_cached(state, cache, id.as_u128(), slot, Field::Uuid(id)));
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
