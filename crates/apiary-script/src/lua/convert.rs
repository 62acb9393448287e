//! Conversions between JSON values and Lua values, capped in depth and size.

use mlua::{Lua, Table, Value as LuaValue};
use serde_json::{Map, Number, Value};

/// Deepest nesting converted; deeper values become `null`/`nil` rather than recursing further.
const MAX_DEPTH: usize = 16;
/// Most table entries converted to JSON per table, so a script cannot build a huge event.
const MAX_ENTRIES: usize = 1024;

/// Converts JSON into a Lua value: objects and arrays become tables, `null` becomes `nil`.
pub(crate) fn json_to_lua(lua: &Lua, v: &Value) -> mlua::Result<LuaValue> {
    json_to_lua_depth(lua, v, 0)
}

fn json_to_lua_depth(lua: &Lua, v: &Value, depth: usize) -> mlua::Result<LuaValue> {
    Ok(match v {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => number_to_lua(n),
        Value::String(s) => LuaValue::String(lua.create_string(s)?),
        Value::Array(a) if depth < MAX_DEPTH => {
            let t = lua.create_table_with_capacity(a.len(), 0)?;
            for (i, item) in a.iter().enumerate() {
                t.raw_set(i + 1, json_to_lua_depth(lua, item, depth + 1)?)?;
            }
            LuaValue::Table(t)
        }
        Value::Object(o) if depth < MAX_DEPTH => {
            LuaValue::Table(object_to_table(lua, o, depth + 1)?)
        }
        Value::Array(_) | Value::Object(_) => LuaValue::Nil,
    })
}

/// A JSON object as a Lua table; `null` members are simply absent (read as `nil`).
pub(crate) fn object_to_table(
    lua: &Lua,
    o: &Map<String, Value>,
    depth: usize,
) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, o.len())?;
    for (k, item) in o {
        if !item.is_null() {
            t.raw_set(k.as_str(), json_to_lua_depth(lua, item, depth)?)?;
        }
    }
    Ok(t)
}

fn number_to_lua(n: &Number) -> LuaValue {
    match n.as_i64() {
        Some(i) => LuaValue::Integer(i),
        None => LuaValue::Number(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// Converts a Lua value into JSON for events: strings that are not UTF-8 are converted lossily,
/// tables with only keys 1..n become arrays, functions and userdata become their type name.
fn lua_to_json_depth(v: &LuaValue, depth: usize) -> Value {
    match v {
        LuaValue::Nil => Value::Null,
        LuaValue::Boolean(b) => Value::Bool(*b),
        LuaValue::Integer(i) => Value::from(*i),
        LuaValue::Number(f) => Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
        LuaValue::String(s) => Value::String(s.to_string_lossy()),
        LuaValue::Table(t) if depth < MAX_DEPTH => table_to_json(t, depth + 1),
        other => Value::String(other.type_name().to_string()),
    }
}

fn table_to_json(t: &Table, depth: usize) -> Value {
    let len = t.raw_len();
    let mut count = 0usize;
    let mut is_array = true;
    for pair in t.pairs::<LuaValue, LuaValue>() {
        count += 1;
        match pair {
            Ok((LuaValue::Integer(i), _)) if i >= 1 && (i as usize) <= len => {}
            _ => is_array = false,
        }
        if count > MAX_ENTRIES {
            break;
        }
    }
    if is_array && count == len && len > 0 {
        let items = (1..=len.min(MAX_ENTRIES))
            .map(|i| t.raw_get::<LuaValue>(i).map(|v| lua_to_json_depth(&v, depth)))
            .filter_map(Result::ok)
            .collect();
        return Value::Array(items);
    }
    Value::Object(table_to_map(t, depth))
}

/// A Lua table as a JSON object; non-string keys are converted to text.
pub(crate) fn table_to_map(t: &Table, depth: usize) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in t.pairs::<LuaValue, LuaValue>().flatten().take(MAX_ENTRIES) {
        let key = match &k {
            LuaValue::String(s) => s.to_string_lossy(),
            LuaValue::Integer(i) => i.to_string(),
            LuaValue::Number(f) => f.to_string(),
            LuaValue::Boolean(b) => b.to_string(),
            other => other.type_name().to_string(),
        };
        m.insert(key, lua_to_json_depth(&v, depth));
    }
    m
}
