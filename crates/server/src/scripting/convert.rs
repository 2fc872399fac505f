//! Replies both ways, as Redis's `script_lua.c` converts them.
//!
//! A command's reply (RESP2 or RESP3, as the script chose with `redis.setresp`) becomes a Lua
//! value: bulk → string, integer → number, status → `{ok=...}`, error → `{err=...}`, RESP2 null
//! → false, RESP3 null → nil, array → table, map → `{map={...}}`, set → `{set={...}}`, double →
//! `{double=n}`, big number → `{big_number=...}`, verbatim → `{verbatim_string={format=,
//! string=}}`. A script's result becomes the reply: string → bulk, number → integer (truncated),
//! boolean → 1/null (RESP2) or a boolean (RESP3), a table → `{err}`/`{ok}`/`{double}`/... or an
//! array of its elements up to the first nil, anything else → null.

use forkless_protocol::{Frame, Out};
use mlua::{Lua, Table, Value};

/// How deep a script's result may nest before the reply is cut with Redis's "reached lua stack
/// limit" (a table that contains itself would otherwise recurse for ever). Redis's bound is
/// Lua's C stack; this one keeps the conversion well inside a worker thread's stack and the
/// reply within what RESP decoders (ours included, `MAX_FRAME_DEPTH`) accept.
pub(crate) const MAX_REPLY_DEPTH: usize = 100;

/// Converts a parsed command reply into a Lua value.
pub(crate) fn frame_to_lua(lua: &Lua, frame: &Frame) -> mlua::Result<Value> {
    Ok(match frame {
        Frame::Simple(text) => single_field(lua, "ok", Value::String(lua.create_string(text)?))?,
        Frame::Error(text) => {
            let table = lua.create_table()?;
            table.raw_set("err", lua.create_string(text)?)?;
            table.raw_set("ignore_error_stats_update", true)?;
            Value::Table(table)
        }
        Frame::Integer(n) => Value::Number(*n as f64),
        Frame::Bulk(bytes) => Value::String(lua.create_string(bytes)?),
        Frame::Null | Frame::NullArray => {
            // RESP2's nulls are false; a RESP3 reply's null is nil. The frame does not say which
            // protocol wrote it, so RESP3 nulls are told apart by the caller's version.
            Value::Boolean(false)
        }
        Frame::Array(items) | Frame::Push(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (idx, item) in items.iter().enumerate() {
                table.raw_set(idx + 1, frame_to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
        Frame::Map(pairs) => {
            let inner = lua.create_table()?;
            for (key, value) in pairs {
                inner.raw_set(frame_to_lua(lua, key)?, frame_to_lua(lua, value)?)?;
            }
            single_field(lua, "map", Value::Table(inner))?
        }
        Frame::Set(items) => {
            let inner = lua.create_table()?;
            for item in items {
                inner.raw_set(frame_to_lua(lua, item)?, true)?;
            }
            single_field(lua, "set", Value::Table(inner))?
        }
        Frame::Double(d) => single_field(lua, "double", Value::Number(*d))?,
        Frame::Boolean(b) => Value::Boolean(*b),
        Frame::BigNumber(digits) => {
            single_field(lua, "big_number", Value::String(lua.create_string(digits)?))?
        }
        Frame::Verbatim { format, data } => {
            let inner = lua.create_table()?;
            inner.raw_set("string", lua.create_string(data)?)?;
            inner.raw_set("format", lua.create_string(format)?)?;
            single_field(lua, "verbatim_string", Value::Table(inner))?
        }
        #[allow(unreachable_patterns, reason = "Frame may grow variants")]
        _ => Value::Nil,
    })
}

/// Like [`frame_to_lua`], for a reply written in RESP3, where a null is nil.
pub(crate) fn frame_to_lua_resp3(lua: &Lua, frame: &Frame) -> mlua::Result<Value> {
    match frame {
        Frame::Null | Frame::NullArray => Ok(Value::Nil),
        Frame::Array(items) | Frame::Push(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (idx, item) in items.iter().enumerate() {
                table.raw_set(idx + 1, frame_to_lua_resp3(lua, item)?)?;
            }
            Ok(Value::Table(table))
        }
        Frame::Map(pairs) => {
            let inner = lua.create_table()?;
            for (key, value) in pairs {
                inner.raw_set(
                    frame_to_lua_resp3(lua, key)?,
                    frame_to_lua_resp3(lua, value)?,
                )?;
            }
            single_field(lua, "map", Value::Table(inner))
        }
        Frame::Set(items) => {
            let inner = lua.create_table()?;
            for item in items {
                inner.raw_set(frame_to_lua_resp3(lua, item)?, true)?;
            }
            single_field(lua, "set", Value::Table(inner))
        }
        other => frame_to_lua(lua, other),
    }
}

fn single_field(lua: &Lua, name: &str, value: Value) -> mlua::Result<Value> {
    let table = lua.create_table()?;
    table.raw_set(name, value)?;
    Ok(Value::Table(table))
}

/// Where a script's result goes, and how the script asked for it.
pub(crate) struct ReplyTarget<'a> {
    pub(crate) out: &'a mut Out,
    /// The protocol the script's own `redis.call`s spoke (`redis.setresp`): booleans are
    /// written as RESP3 booleans only when it is 3, as in Redis.
    pub(crate) script_resp3: bool,
}

/// Writes a script's result as the reply, as Redis's `luaReplyToRedisReply`.
pub(crate) fn lua_to_reply(target: &mut ReplyTarget<'_>, value: &Value, depth: usize) {
    if depth > MAX_REPLY_DEPTH {
        target.out.error("ERR reached lua stack limit");
        return;
    }
    match value {
        Value::String(s) => target.out.bulk(&s.as_bytes()),
        Value::Boolean(b) => {
            if target.script_resp3 {
                target.out.boolean(*b);
            } else if *b {
                target.out.int(1);
            } else {
                target.out.null();
            }
        }
        Value::Integer(n) => target.out.int(*n),
        Value::Number(n) => target.out.int(truncate(*n)),
        Value::Table(table) => table_to_reply(target, table, depth),
        _ => target.out.null(),
    }
}

/// `(long long)` of a double, as C converts it (saturating where C's is undefined).
pub(crate) fn truncate(n: f64) -> i64 {
    if n.is_nan() { i64::MIN } else { n as i64 }
}

fn table_to_reply(target: &mut ReplyTarget<'_>, table: &Table, depth: usize) {
    if let Ok(Value::String(err)) = table.raw_get::<Value>("err") {
        let text = String::from_utf8_lossy(&err.as_bytes()).into_owned();
        target.out.error(&sanitize(&text));
        return;
    }
    if let Ok(Value::String(ok)) = table.raw_get::<Value>("ok") {
        let text = String::from_utf8_lossy(&ok.as_bytes()).into_owned();
        target.out.simple(sanitize(&text).as_bytes());
        return;
    }
    match table.raw_get::<Value>("double") {
        Ok(Value::Number(d)) => {
            target.out.double(d);
            return;
        }
        Ok(Value::Integer(n)) => {
            target.out.double(n as f64);
            return;
        }
        _ => {}
    }
    if let Ok(Value::String(digits)) = table.raw_get::<Value>("big_number") {
        let digits: Vec<u8> = digits
            .as_bytes()
            .iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
            .collect();
        target.out.big_number(&digits);
        return;
    }
    if let Ok(Value::Table(verbatim)) = table.raw_get::<Value>("verbatim_string") {
        if let (Ok(Value::String(format)), Ok(Value::String(text))) = (
            verbatim.raw_get::<Value>("format"),
            verbatim.raw_get::<Value>("string"),
        ) {
            let format = format.as_bytes();
            let mut tag = *b"txt";
            for (dst, src) in tag.iter_mut().zip(format.iter()) {
                *dst = *src;
            }
            target.out.verbatim(&tag, &text.as_bytes());
            return;
        }
    }
    if let Ok(Value::Table(map)) = table.raw_get::<Value>("map") {
        let pairs: Vec<(Value, Value)> = map.pairs::<Value, Value>().flatten().collect();
        target.out.map_len(pairs.len());
        for (key, value) in &pairs {
            lua_to_reply(target, key, depth + 1);
            lua_to_reply(target, value, depth + 1);
        }
        return;
    }
    if let Ok(Value::Table(set)) = table.raw_get::<Value>("set") {
        let members: Vec<Value> = set
            .pairs::<Value, Value>()
            .flatten()
            .map(|(key, _)| key)
            .collect();
        target.out.set_len(members.len());
        for member in &members {
            lua_to_reply(target, member, depth + 1);
        }
        return;
    }
    let mut items = Vec::new();
    loop {
        match table.raw_get::<Value>(items.len() + 1) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(value) => items.push(value),
        }
    }
    target.out.array_len(items.len());
    for item in &items {
        lua_to_reply(target, item, depth + 1);
    }
}

/// An error or status text on one line, as Redis's `addReplyErrorFormat` and
/// `addReplyStatusSafe` make it.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}
