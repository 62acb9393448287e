//! Lua packet receivers (PokieStream's `receiver(packet_log[, config])` and the bulk
//! `receiver_bulk(list[, config])`), one sandboxed state per worker thread.

use std::path::Path;

use mlua::{Function, Lua, Table, Value as LuaValue};
use serde_json::Value;

use super::convert::{json_to_lua, number_to_lua};
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
    /// PokieStream's ten keys as Lua strings, interned once: building records is the hot path.
    keys: Vec<mlua::LuaString>,
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
        let config = if opts.pass_config {
            json_to_lua(&sb.lua, &opts.config).map_err(err)?
        } else {
            LuaValue::Nil
        };
        let keys = RECORD_KEYS
            .iter()
            .map(|k| sb.lua.create_string(k))
            .collect::<mlua::Result<Vec<_>>>()
            .map_err(err)?;
        Ok(Self { sb, receiver, bulk, config, keys })
    }

    /// Whether the plugin takes whole batches.
    pub(crate) fn is_bulk(&self) -> bool {
        self.bulk.is_some()
    }

    fn record_table(&self, lua: &Lua, rec: &Record) -> mlua::Result<Table> {
        let t = lua.create_table_with_capacity(0, rec.len())?;
        for (k, v) in rec {
            let value = match v {
                Value::Null => continue,
                Value::String(s) => LuaValue::String(lua.create_string(s)?),
                Value::Number(n) => number_to_lua(n),
                Value::Bool(b) => LuaValue::Boolean(*b),
                other => json_to_lua(lua, other)?,
            };
            match RECORD_KEYS.iter().position(|known| *known == k.as_str()) {
                Some(i) => match self.keys.get(i) {
                    Some(key) => t.raw_set(key, value)?,
                    None => t.raw_set(k.as_str(), value)?,
                },
                None => t.raw_set(k.as_str(), value)?,
            }
        }
        Ok(t)
    }

    /// Hands a batch to the plugin; failures are counted, never fatal.
    pub(crate) fn deliver(&mut self, batch: &[Record]) -> BatchReport {
        let mut report = BatchReport::default();
        let lua = self.sb.lua.clone();
        if let Some(bulk) = &self.bulk {
            self.sb.budget.reset();
            let res = (|| -> mlua::Result<()> {
                let list = lua.create_table_with_capacity(batch.len(), 0)?;
                for (i, rec) in batch.iter().enumerate() {
                    list.raw_set(i + 1, self.record_table(&lua, rec)?)?;
                }
                bulk.call::<()>((list, self.config.clone()))
            })();
            match res {
                Ok(()) => report.delivered = batch.len() as u64,
                Err(e) => report.fail(batch.len() as u64, self.sb.budget.classify(&e).to_string()),
            }
            return report;
        }
        let Some(receiver) = &self.receiver else { return report };
        for rec in batch {
            self.sb.budget.reset();
            let res = self
                .record_table(&lua, rec)
                .and_then(|t| receiver.call::<()>((t, self.config.clone())));
            match res {
                Ok(()) => report.delivered += 1,
                Err(e) => report.fail(1, self.sb.budget.classify(&e).to_string()),
            }
        }
        report
    }
}
