//! The libraries Redis bundles with its Lua: `bit` (LuaBitOp), `cjson` (lua-cjson), `cmsgpack`
//! (lua-cmsgpack) and `struct` (Roberto Ierusalimschy's struct), written here in Rust with the
//! same functions, output formats and error texts where scripts can see them.

use mlua::{LightUserData, Lua, MultiValue, Table, Value, Variadic};

/// Registers the bundled libraries as globals.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let globals = lua.globals();
    globals.raw_set("bit", bit(lua)?)?;
    globals.raw_set("cjson", cjson(lua)?)?;
    globals.raw_set("cmsgpack", cmsgpack(lua)?)?;
    globals.raw_set("struct", structlib(lua)?)?;
    Ok(())
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(n) => Some(*n as f64),
        Value::Number(n) => Some(*n),
        Value::String(s) => std::str::from_utf8(&s.as_bytes())
            .ok()
            .and_then(|t| t.trim().parse::<f64>().ok()),
        _ => None,
    }
}

fn arg_error(position: usize, name: &str, expected: &str, got: &Value) -> mlua::Error {
    let got = if matches!(got, Value::Nil) {
        "no value"
    } else {
        got.type_name()
    };
    mlua::Error::RuntimeError(format!(
        "bad argument #{position} to '{name}' ({expected} expected, got {got})"
    ))
}

// ---------------------------------------------------------------------------------------------
// bit

/// LuaBitOp's conversion of a number to a 32-bit integer: add 2^52 + 2^51 and keep the low 32
/// bits of the double's representation (rounds to nearest, wraps modulo 2^32).
fn tobit(n: f64) -> i32 {
    let shifted = n + 6_755_399_441_055_744.0;
    shifted.to_bits() as u32 as i32
}

fn bit_arg(args: &[Value], idx: usize, name: &str) -> mlua::Result<i32> {
    let value = args.get(idx).unwrap_or(&Value::Nil);
    number(value)
        .map(tobit)
        .ok_or_else(|| arg_error(idx + 1, name, "number", value))
}

fn bit(lua: &Lua) -> mlua::Result<Table> {
    let bit = lua.create_table()?;
    bit.raw_set(
        "tobit",
        lua.create_function(|_, args: Variadic<Value>| Ok(f64::from(bit_arg(&args, 0, "tobit")?)))?,
    )?;
    bit.raw_set(
        "bnot",
        lua.create_function(|_, args: Variadic<Value>| Ok(f64::from(!bit_arg(&args, 0, "bnot")?)))?,
    )?;
    for (name, op) in [
        ("band", (|a, b| a & b) as fn(i32, i32) -> i32),
        ("bor", |a, b| a | b),
        ("bxor", |a, b| a ^ b),
    ] {
        bit.raw_set(
            name,
            lua.create_function(move |_, args: Variadic<Value>| {
                let mut acc = bit_arg(&args, 0, name)?;
                for idx in 1..args.len() {
                    acc = op(acc, bit_arg(&args, idx, name)?);
                }
                Ok(f64::from(acc))
            })?,
        )?;
    }
    for (name, op) in [
        (
            "lshift",
            (|a: i32, n: u32| ((a as u32) << n) as i32) as fn(i32, u32) -> i32,
        ),
        ("rshift", |a, n| ((a as u32) >> n) as i32),
        ("arshift", |a, n| a >> n),
        ("rol", |a, n| (a as u32).rotate_left(n) as i32),
        ("ror", |a, n| (a as u32).rotate_right(n) as i32),
    ] {
        bit.raw_set(
            name,
            lua.create_function(move |_, args: Variadic<Value>| {
                let a = bit_arg(&args, 0, name)?;
                let n = (bit_arg(&args, 1, name)? & 31) as u32;
                Ok(f64::from(op(a, n)))
            })?,
        )?;
    }
    bit.raw_set(
        "bswap",
        lua.create_function(|_, args: Variadic<Value>| {
            Ok(f64::from(bit_arg(&args, 0, "bswap")?.swap_bytes()))
        })?,
    )?;
    bit.raw_set(
        "tohex",
        lua.create_function(|_, args: Variadic<Value>| {
            let mut b = bit_arg(&args, 0, "tohex")? as u32;
            let mut n = if args.len() < 2 {
                8
            } else {
                i64::from(bit_arg(&args, 1, "tohex")?)
            };
            let digits: &[u8; 16] = if n < 0 {
                n = -n;
                b"0123456789ABCDEF"
            } else {
                b"0123456789abcdef"
            };
            let n = usize::try_from(n.min(8)).unwrap_or(8);
            let mut buf = vec![b'0'; n];
            for slot in buf.iter_mut().rev() {
                *slot = digits[(b & 15) as usize];
                b >>= 4;
            }
            Ok(String::from_utf8_lossy(&buf).into_owned())
        })?,
    )?;
    Ok(bit)
}

// ---------------------------------------------------------------------------------------------
// cjson

/// lua-cjson's settings, shared by the functions of one `cjson` table.
struct JsonConfig {
    encode_max_depth: usize,
    decode_max_depth: usize,
    encode_invalid_numbers: bool,
    decode_invalid_numbers: bool,
    sparse_convert: bool,
    sparse_ratio: usize,
    sparse_safe: usize,
    precision: usize,
}

impl Default for JsonConfig {
    fn default() -> Self {
        JsonConfig {
            encode_max_depth: 1000,
            decode_max_depth: 1000,
            encode_invalid_numbers: false,
            decode_invalid_numbers: true,
            sparse_convert: false,
            sparse_ratio: 2,
            sparse_safe: 10,
            precision: 14,
        }
    }
}

type SharedConfig = std::sync::Arc<std::sync::Mutex<JsonConfig>>;

fn cfg(config: &SharedConfig) -> std::sync::MutexGuard<'_, JsonConfig> {
    crate::server::lock(config)
}

fn cjson(lua: &Lua) -> mlua::Result<Table> {
    let cjson = lua.create_table()?;
    let config: SharedConfig = SharedConfig::default();
    let null = Value::LightUserData(LightUserData(std::ptr::null_mut()));
    cjson.raw_set("null", null)?;
    let encode_config = SharedConfig::clone(&config);
    cjson.raw_set(
        "encode",
        lua.create_function(move |_, value: Value| {
            let config = cfg(&encode_config);
            let mut out = Vec::new();
            json_encode(&config, &value, 0, &mut out).map_err(mlua::Error::RuntimeError)?;
            Ok(mlua::BString::from(out))
        })?,
    )?;
    let decode_config = SharedConfig::clone(&config);
    cjson.raw_set(
        "decode",
        lua.create_function(move |lua, text: mlua::String| {
            let max_depth = cfg(&decode_config).decode_max_depth;
            let bytes = text.as_bytes();
            let mut parser = JsonParser {
                lua,
                input: &bytes,
                pos: 0,
                depth: 0,
                max_depth,
            };
            parser.skip_ws();
            let value = parser.value().map_err(mlua::Error::RuntimeError)?;
            parser.skip_ws();
            if parser.pos < bytes.len() {
                return Err(mlua::Error::RuntimeError(format!(
                    "Expected the end but found invalid token at character {}",
                    parser.pos + 1
                )));
            }
            Ok(value)
        })?,
    )?;
    macro_rules! int_option {
        ($name:literal, $field:ident) => {{
            let config = SharedConfig::clone(&config);
            cjson.raw_set(
                $name,
                lua.create_function(move |_, value: Option<f64>| {
                    let mut config = cfg(&config);
                    if let Some(value) = value {
                        if value < 1.0 {
                            return Err(mlua::Error::RuntimeError(format!(
                                "bad argument #1 to '{}' (expected integer between 1 and {})",
                                $name,
                                i32::MAX
                            )));
                        }
                        config.$field = value as usize;
                    }
                    Ok(config.$field as f64)
                })?,
            )?;
        }};
    }
    int_option!("encode_max_depth", encode_max_depth);
    int_option!("decode_max_depth", decode_max_depth);
    int_option!("encode_number_precision", precision);
    macro_rules! bool_option {
        ($name:literal, $field:ident) => {{
            let config = SharedConfig::clone(&config);
            cjson.raw_set(
                $name,
                lua.create_function(move |_, value: Option<Value>| {
                    let mut config = cfg(&config);
                    if let Some(value) = value {
                        config.$field = match value {
                            Value::Boolean(b) => b,
                            Value::String(s) => s.as_bytes().eq_ignore_ascii_case(b"on"),
                            _ => config.$field,
                        };
                    }
                    Ok(config.$field)
                })?,
            )?;
        }};
    }
    bool_option!("encode_invalid_numbers", encode_invalid_numbers);
    bool_option!("decode_invalid_numbers", decode_invalid_numbers);
    cjson.raw_set(
        "encode_keep_buffer",
        lua.create_function(|_, value: Option<bool>| Ok(value.unwrap_or(true)))?,
    )?;
    let sparse = SharedConfig::clone(&config);
    cjson.raw_set(
        "encode_sparse_array",
        lua.create_function(
            move |_, (convert, ratio, safe): (Option<bool>, Option<f64>, Option<f64>)| {
                let mut config = cfg(&sparse);
                if let Some(convert) = convert {
                    config.sparse_convert = convert;
                }
                if let Some(ratio) = ratio {
                    config.sparse_ratio = ratio as usize;
                }
                if let Some(safe) = safe {
                    config.sparse_safe = safe as usize;
                }
                Ok((
                    config.sparse_convert,
                    config.sparse_ratio as f64,
                    config.sparse_safe as f64,
                ))
            },
        )?,
    )?;
    cjson.raw_set("_NAME", "cjson")?;
    cjson.raw_set("_VERSION", "2.1.0")?;
    Ok(cjson)
}

/// lua-cjson's `%.14g` (the precision is configurable).
fn format_g(n: f64, precision: usize) -> String {
    if n == n.trunc() && n.abs() < 1e15 {
        return format!("{}", n as i64);
    }
    let precision = precision.clamp(1, 17);
    let exp = if n == 0.0 {
        0
    } else {
        n.abs().log10().floor() as i32
    };
    if exp < -4 || exp >= precision as i32 {
        let text = format!("{:.*e}", precision - 1, n);
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.trim_end_matches('0').trim_end_matches('.')
        } else {
            mantissa
        };
        let exponent: i32 = exponent.parse().unwrap_or(0);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    } else {
        let decimals = usize::try_from(precision as i32 - 1 - exp).unwrap_or(0);
        let text = format!("{n:.decimals$}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    }
}

fn json_string(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0C => out.extend_from_slice(b"\\f"),
            b if b < 0x20 || b == 0x7F => {
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
            }
            b => out.push(b),
        }
    }
    out.push(b'"');
}

fn json_encode(
    config: &JsonConfig,
    value: &Value,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    match value {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(ud) if ud.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::Number(n) => {
            if !n.is_finite() {
                if !config.encode_invalid_numbers {
                    return Err("Cannot serialise number: must not be NaN or Inf".into());
                }
                out.extend_from_slice(if n.is_nan() {
                    b"nan"
                } else if *n > 0.0 {
                    b"inf"
                } else {
                    b"-inf"
                });
            } else {
                out.extend_from_slice(format_g(*n, config.precision).as_bytes());
            }
        }
        Value::String(s) => json_string(&s.as_bytes(), out),
        Value::Table(table) => {
            let depth = depth + 1;
            if depth > config.encode_max_depth {
                return Err(format!("Cannot serialise, excessive nesting ({depth})"));
            }
            let mut max = 0usize;
            let mut count = 0usize;
            let mut array = true;
            for pair in table.clone().pairs::<Value, Value>() {
                let (key, _) = pair.map_err(|e| e.to_string())?;
                count += 1;
                let index = match key {
                    Value::Integer(n) if n >= 1 => usize::try_from(n).ok(),
                    Value::Number(n) if n >= 1.0 && n == n.floor() => Some(n as usize),
                    _ => None,
                };
                match index {
                    Some(index) => max = max.max(index),
                    None => array = false,
                }
            }
            if array && count > 0 && max > count * config.sparse_ratio && max > config.sparse_safe {
                if !config.sparse_convert {
                    return Err("Cannot serialise table: excessively sparse array".into());
                }
                array = false;
            }
            if array && count > 0 {
                out.push(b'[');
                for idx in 1..=max {
                    if idx > 1 {
                        out.push(b',');
                    }
                    let item: Value = table.raw_get(idx).map_err(|e| e.to_string())?;
                    json_encode(config, &item, depth, out)?;
                }
                out.push(b']');
            } else {
                out.push(b'{');
                let mut first = true;
                for pair in table.clone().pairs::<Value, Value>() {
                    let (key, item) = pair.map_err(|e| e.to_string())?;
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    match &key {
                        Value::String(s) => json_string(&s.as_bytes(), out),
                        Value::Integer(n) => json_string(n.to_string().as_bytes(), out),
                        Value::Number(n) => {
                            json_string(format_g(*n, config.precision).as_bytes(), out);
                        }
                        _ => {
                            return Err(
                                "Cannot serialise table: table key must be a number or string"
                                    .into(),
                            );
                        }
                    }
                    out.push(b':');
                    json_encode(config, &item, depth, out)?;
                }
                out.push(b'}');
            }
        }
        other => {
            return Err(format!(
                "Cannot serialise {}: type not supported",
                other.type_name()
            ));
        }
    }
    Ok(())
}

struct JsonParser<'a> {
    lua: &'a Lua,
    input: &'a [u8],
    pos: usize,
    depth: usize,
    max_depth: usize,
}

impl JsonParser<'_> {
    fn skip_ws(&mut self) {
        while matches!(self.input.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn error(&self, expected: &str) -> String {
        let found = if self.pos >= self.input.len() {
            "the end"
        } else {
            "invalid token"
        };
        format!(
            "Expected {expected} but found {found} at character {}",
            self.pos + 1
        )
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_ws();
        match self.input.get(self.pos) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => {
                let s = self.string()?;
                self.lua
                    .create_string(&s)
                    .map(Value::String)
                    .map_err(|e| e.to_string())
            }
            Some(b't') if self.input[self.pos..].starts_with(b"true") => {
                self.pos += 4;
                Ok(Value::Boolean(true))
            }
            Some(b'f') if self.input[self.pos..].starts_with(b"false") => {
                self.pos += 5;
                Ok(Value::Boolean(false))
            }
            Some(b'n') if self.input[self.pos..].starts_with(b"null") => {
                self.pos += 4;
                Ok(Value::LightUserData(LightUserData(std::ptr::null_mut())))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("value")),
        }
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(format!(
                "Found too many nested data structures ({}) at character {}",
                self.depth,
                self.pos + 1
            ));
        }
        Ok(())
    }

    fn object(&mut self) -> Result<Value, String> {
        self.enter()?;
        self.pos += 1;
        let table = self.lua.create_table().map_err(|e| e.to_string())?;
        self.skip_ws();
        if self.input.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Table(table));
        }
        loop {
            self.skip_ws();
            if self.input.get(self.pos) != Some(&b'"') {
                return Err(self.error("object key string"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.input.get(self.pos) != Some(&b':') {
                return Err(self.error("colon"));
            }
            self.pos += 1;
            let value = self.value()?;
            let key = self.lua.create_string(&key).map_err(|e| e.to_string())?;
            table.raw_set(key, value).map_err(|e| e.to_string())?;
            self.skip_ws();
            match self.input.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.error("comma or object end")),
            }
        }
        self.depth -= 1;
        Ok(Value::Table(table))
    }

    fn array(&mut self) -> Result<Value, String> {
        self.enter()?;
        self.pos += 1;
        let table = self.lua.create_table().map_err(|e| e.to_string())?;
        self.skip_ws();
        if self.input.get(self.pos) == Some(&b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Table(table));
        }
        let mut idx = 1;
        loop {
            let value = self.value()?;
            table.raw_set(idx, value).map_err(|e| e.to_string())?;
            idx += 1;
            self.skip_ws();
            match self.input.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.error("comma or array end")),
            }
        }
        self.depth -= 1;
        Ok(Value::Table(table))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .input
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("unicode escape"))?;
        let text = std::str::from_utf8(digits).map_err(|_| self.error("unicode escape"))?;
        let code = u32::from_str_radix(text, 16).map_err(|_| self.error("unicode escape"))?;
        self.pos += 4;
        Ok(code)
    }

    fn string(&mut self) -> Result<Vec<u8>, String> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.input.get(self.pos) else {
                self.pos = start;
                return Err(format!(
                    "Expected string but found invalid token at character {}",
                    start + 1
                ));
            };
            self.pos += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&esc) = self.input.get(self.pos) else {
                        return Err(self.error("escape"));
                    };
                    self.pos += 1;
                    match esc {
                        b'"' | b'\\' | b'/' => out.push(esc),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0C),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut code = self.hex4()?;
                            if (0xD800..0xDC00).contains(&code)
                                && self.input.get(self.pos..self.pos + 2) == Some(b"\\u")
                            {
                                self.pos += 2;
                                let low = self.hex4()?;
                                code = 0x10000
                                    + ((code - 0xD800) << 10)
                                    + (low.wrapping_sub(0xDC00) & 0x3FF);
                            }
                            let ch = char::from_u32(code).unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(self.error("valid escape")),
                    }
                }
                b => out.push(b),
            }
        }
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while matches!(
            self.input.get(self.pos),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.input[start..self.pos]).unwrap_or("");
        match text.parse::<f64>() {
            Ok(n) => Ok(Value::Number(n)),
            Err(_) => {
                self.pos = start;
                Err(self.error("value"))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cmsgpack

/// lua-cmsgpack encodes tables to this depth; deeper ones become nil.
const MSGPACK_MAX_NESTING: usize = 16;

fn msgpack_int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xFF {
            out.extend_from_slice(&[0xCC, n as u8]);
        } else if n <= 0xFFFF {
            out.push(0xCD);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xFFFF_FFFF {
            out.push(0xCE);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xCF);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xD0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xD1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xD2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xD3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn msgpack_len(len: usize, small: u8, small_max: usize, codes: [u8; 2], out: &mut Vec<u8>) {
    if len <= small_max {
        out.push(small | len as u8);
    } else if len <= 0xFFFF {
        out.push(codes[0]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(codes[1]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn msgpack_encode(value: &Value, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match value {
        Value::Boolean(b) => out.push(if *b { 0xC3 } else { 0xC2 }),
        Value::Integer(n) => msgpack_int(*n, out),
        Value::Number(n) => {
            if n.is_finite() && *n == n.trunc() && n.abs() < 9.2e18 {
                msgpack_int(*n as i64, out);
            } else if f64::from(*n as f32) == *n {
                out.push(0xCA);
                out.extend_from_slice(&(*n as f32).to_be_bytes());
            } else {
                out.push(0xCB);
                out.extend_from_slice(&n.to_be_bytes());
            }
        }
        Value::String(s) => {
            let bytes = s.as_bytes();
            let len = bytes.len();
            if len < 32 {
                out.push(0xA0 | len as u8);
            } else if len <= 0xFF {
                out.extend_from_slice(&[0xD9, len as u8]);
            } else if len <= 0xFFFF {
                out.push(0xDA);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            } else {
                out.push(0xDB);
                out.extend_from_slice(&(len as u32).to_be_bytes());
            }
            out.extend_from_slice(&bytes);
        }
        Value::Table(table) if level < MSGPACK_MAX_NESTING => {
            let mut max = 0usize;
            let mut count = 0usize;
            let mut array = true;
            for pair in table.clone().pairs::<Value, Value>() {
                let (key, _) = pair?;
                count += 1;
                match key {
                    Value::Integer(n) if n >= 1 => max = max.max(n as usize),
                    Value::Number(n) if n >= 1.0 && n == n.floor() => max = max.max(n as usize),
                    _ => array = false,
                }
            }
            if array && max == count {
                msgpack_len(count, 0x90, 15, [0xDC, 0xDD], out);
                for idx in 1..=count {
                    let item: Value = table.raw_get(idx)?;
                    msgpack_encode(&item, level + 1, out)?;
                }
            } else {
                msgpack_len(count, 0x80, 15, [0xDE, 0xDF], out);
                for pair in table.clone().pairs::<Value, Value>() {
                    let (key, item) = pair?;
                    msgpack_encode(&key, level + 1, out)?;
                    msgpack_encode(&item, level + 1, out)?;
                }
            }
        }
        _ => out.push(0xC0),
    }
    Ok(())
}

struct MsgpackReader<'a> {
    lua: &'a Lua,
    input: &'a [u8],
    pos: usize,
}

const MISSING: &str = "Missing bytes in input.";
const BAD: &str = "Bad data format in input.";

impl<'a> MsgpackReader<'a> {
    fn take(&mut self, n: usize) -> mlua::Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| mlua::Error::RuntimeError(MISSING.into()))?;
        let slice = self
            .input
            .get(self.pos..end)
            .ok_or_else(|| mlua::Error::RuntimeError(MISSING.into()))?;
        self.pos = end;
        Ok(slice)
    }

    fn uint(&mut self, n: usize) -> mlua::Result<u64> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn value(&mut self, depth: usize) -> mlua::Result<Value> {
        if depth > 1000 {
            return Err(mlua::Error::RuntimeError(BAD.into()));
        }
        let code = self.take(1)?[0];
        Ok(match code {
            0x00..=0x7F => Value::Number(f64::from(code)),
            0x80..=0x8F => self.map(usize::from(code & 0x0F), depth)?,
            0x90..=0x9F => self.array(usize::from(code & 0x0F), depth)?,
            0xA0..=0xBF => self.string(usize::from(code & 0x1F))?,
            0xC0 => Value::Nil,
            0xC2 => Value::Boolean(false),
            0xC3 => Value::Boolean(true),
            0xC4 | 0xD9 => {
                let len = self.uint(1)? as usize;
                self.string(len)?
            }
            0xC5 | 0xDA => {
                let len = self.uint(2)? as usize;
                self.string(len)?
            }
            0xC6 | 0xDB => {
                let len = self.uint(4)? as usize;
                self.string(len)?
            }
            0xCA => {
                let bits = self.uint(4)? as u32;
                Value::Number(f64::from(f32::from_bits(bits)))
            }
            0xCB => Value::Number(f64::from_bits(self.uint(8)?)),
            0xCC => Value::Number(self.uint(1)? as f64),
            0xCD => Value::Number(self.uint(2)? as f64),
            0xCE => Value::Number(self.uint(4)? as f64),
            0xCF => Value::Number(self.uint(8)? as f64),
            0xD0 => Value::Number(f64::from(self.uint(1)? as u8 as i8)),
            0xD1 => Value::Number(f64::from(self.uint(2)? as u16 as i16)),
            0xD2 => Value::Number(f64::from(self.uint(4)? as u32 as i32)),
            0xD3 => Value::Number(self.uint(8)? as i64 as f64),
            0xDC => {
                let len = self.uint(2)? as usize;
                self.array(len, depth)?
            }
            0xDD => {
                let len = self.uint(4)? as usize;
                self.array(len, depth)?
            }
            0xDE => {
                let len = self.uint(2)? as usize;
                self.map(len, depth)?
            }
            0xDF => {
                let len = self.uint(4)? as usize;
                self.map(len, depth)?
            }
            0xE0..=0xFF => Value::Number(f64::from(code as i8)),
            _ => return Err(mlua::Error::RuntimeError(BAD.into())),
        })
    }

    fn string(&mut self, len: usize) -> mlua::Result<Value> {
        let lua = self.lua;
        let bytes = self.take(len)?;
        Ok(Value::String(lua.create_string(bytes)?))
    }

    fn array(&mut self, len: usize, depth: usize) -> mlua::Result<Value> {
        let table = self.lua.create_table()?;
        for idx in 1..=len {
            let item = self.value(depth + 1)?;
            table.raw_set(idx, item)?;
        }
        Ok(Value::Table(table))
    }

    fn map(&mut self, len: usize, depth: usize) -> mlua::Result<Value> {
        let table = self.lua.create_table()?;
        for _ in 0..len {
            let key = self.value(depth + 1)?;
            let item = self.value(depth + 1)?;
            if !matches!(key, Value::Nil) {
                table.raw_set(key, item)?;
            }
        }
        Ok(Value::Table(table))
    }
}

/// Decodes up to `limit` objects (0: all) from `offset`. Returns the objects and the offset
/// after them (-1 at the end).
fn msgpack_unpack(
    lua: &Lua,
    input: &[u8],
    limit: usize,
    offset: usize,
) -> mlua::Result<(Vec<Value>, i64)> {
    if offset > input.len() {
        return Err(mlua::Error::RuntimeError(
            "Start offset greater than input length.".into(),
        ));
    }
    let mut reader = MsgpackReader {
        lua,
        input,
        pos: offset,
    };
    let mut values = Vec::new();
    while reader.pos < input.len() && (limit == 0 || values.len() < limit) {
        values.push(reader.value(0)?);
    }
    let next = if reader.pos >= input.len() {
        -1
    } else {
        i64::try_from(reader.pos).unwrap_or(-1)
    };
    Ok((values, next))
}

fn cmsgpack(lua: &Lua) -> mlua::Result<Table> {
    let cmsgpack = lua.create_table()?;
    cmsgpack.raw_set(
        "pack",
        lua.create_function(|_, values: MultiValue| {
            if values.is_empty() {
                return Err(mlua::Error::RuntimeError(
                    "MessagePack pack needs input.".into(),
                ));
            }
            let mut out = Vec::new();
            for value in &values {
                msgpack_encode(value, 0, &mut out)?;
            }
            Ok(mlua::BString::from(out))
        })?,
    )?;
    cmsgpack.raw_set(
        "unpack",
        lua.create_function(|lua, input: mlua::String| {
            let bytes = input.as_bytes();
            let (values, _) = msgpack_unpack(lua, &bytes, 0, 0)?;
            Ok(MultiValue::from_iter(values))
        })?,
    )?;
    cmsgpack.raw_set(
        "unpack_one",
        lua.create_function(|lua, (input, offset): (mlua::String, Option<f64>)| {
            let bytes = input.as_bytes();
            let offset = offset.unwrap_or(0.0).max(0.0) as usize;
            let (values, next) = msgpack_unpack(lua, &bytes, 1, offset)?;
            let mut result = vec![Value::Number(next as f64)];
            result.extend(values);
            Ok(MultiValue::from_iter(result))
        })?,
    )?;
    cmsgpack.raw_set(
        "unpack_limit",
        lua.create_function(
            |lua, (input, limit, offset): (mlua::String, Option<f64>, Option<f64>)| {
                let bytes = input.as_bytes();
                let limit = limit.unwrap_or(0.0).max(0.0) as usize;
                let offset = offset.unwrap_or(0.0).max(0.0) as usize;
                let (values, next) = msgpack_unpack(lua, &bytes, limit, offset)?;
                let mut result = vec![Value::Number(next as f64)];
                result.extend(values);
                Ok(MultiValue::from_iter(result))
            },
        )?,
    )?;
    cmsgpack.raw_set("_NAME", "cmsgpack")?;
    cmsgpack.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    Ok(cmsgpack)
}

// ---------------------------------------------------------------------------------------------
// struct

/// One item of a struct format.
enum Item {
    Int {
        size: usize,
        signed: bool,
    },
    Float,
    Double,
    /// A zero-terminated string.
    ZString,
    /// A fixed-size string (`c<n>`; 0: the length comes from the previous number).
    Chars(usize),
    Pad,
    Endian(bool),
    Align(usize),
    Skip,
}

fn parse_format(fmt: &[u8]) -> mlua::Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut pos = 0;
    let digits = |pos: &mut usize| -> Option<usize> {
        let start = *pos;
        while fmt.get(*pos).is_some_and(u8::is_ascii_digit) {
            *pos += 1;
        }
        std::str::from_utf8(fmt.get(start..*pos)?)
            .ok()?
            .parse()
            .ok()
    };
    while let Some(&c) = fmt.get(pos) {
        pos += 1;
        let item = match c {
            b'b' => Item::Int {
                size: 1,
                signed: true,
            },
            b'B' => Item::Int {
                size: 1,
                signed: false,
            },
            b'h' => Item::Int {
                size: 2,
                signed: true,
            },
            b'H' => Item::Int {
                size: 2,
                signed: false,
            },
            b'l' => Item::Int {
                size: 8,
                signed: true,
            },
            b'L' | b'T' => Item::Int {
                size: 8,
                signed: false,
            },
            b'i' | b'I' => {
                let size = digits(&mut pos).unwrap_or(4);
                if !(1..=8).contains(&size) {
                    return Err(mlua::Error::RuntimeError(format!(
                        "integral size {size} is larger than limit of 8"
                    )));
                }
                Item::Int {
                    size,
                    signed: c == b'i',
                }
            }
            b'f' => Item::Float,
            b'd' => Item::Double,
            b's' => Item::ZString,
            b'c' => Item::Chars(digits(&mut pos).unwrap_or(1)),
            b'x' => Item::Pad,
            b'<' => Item::Endian(true),
            b'>' => Item::Endian(false),
            b'=' => Item::Endian(cfg!(target_endian = "little")),
            b'!' => Item::Align(digits(&mut pos).unwrap_or(8)),
            b' ' => Item::Skip,
            other => {
                return Err(mlua::Error::RuntimeError(format!(
                    "invalid format option '{}'",
                    char::from(other)
                )));
            }
        };
        items.push(item);
    }
    Ok(items)
}

fn item_size(item: &Item) -> usize {
    match item {
        Item::Int { size, .. } => *size,
        Item::Float => 4,
        Item::Double => 8,
        Item::Chars(n) => *n,
        Item::Pad => 1,
        _ => 0,
    }
}

fn align_pad(offset: usize, size: usize, max_align: usize) -> usize {
    let align = size.min(max_align);
    if align <= 1 || !align.is_power_of_two() {
        return 0;
    }
    (align - (offset & (align - 1))) & (align - 1)
}

fn structlib(lua: &Lua) -> mlua::Result<Table> {
    let lib = lua.create_table()?;
    lib.raw_set(
        "pack",
        lua.create_function(|_, args: MultiValue| {
            let mut args = args.into_iter();
            let Some(Value::String(fmt)) = args.next() else {
                return Err(mlua::Error::RuntimeError(
                    "bad argument #1 to 'pack' (string expected)".into(),
                ));
            };
            let items = parse_format(&fmt.as_bytes())?;
            let mut out = Vec::new();
            let mut little = cfg!(target_endian = "little");
            let mut max_align = 1;
            let mut position = 2;
            for item in &items {
                let pad = match item {
                    Item::Int { .. } | Item::Float | Item::Double => {
                        align_pad(out.len(), item_size(item), max_align)
                    }
                    _ => 0,
                };
                out.extend(std::iter::repeat_n(0u8, pad));
                match item {
                    Item::Endian(l) => little = *l,
                    Item::Align(a) => max_align = *a,
                    Item::Skip => {}
                    Item::Pad => out.push(0),
                    Item::Int { size, .. } => {
                        let value = args.next().unwrap_or(Value::Nil);
                        let n = number(&value)
                            .ok_or_else(|| arg_error(position, "pack", "number", &value))?;
                        position += 1;
                        let n = if n < 0.0 { n as i64 as u64 } else { n as u64 };
                        let bytes = n.to_le_bytes();
                        let mut chunk: Vec<u8> = bytes.get(..*size).unwrap_or(&bytes).to_vec();
                        if !little {
                            chunk.reverse();
                        }
                        out.extend_from_slice(&chunk);
                    }
                    Item::Float | Item::Double => {
                        let value = args.next().unwrap_or(Value::Nil);
                        let n = number(&value)
                            .ok_or_else(|| arg_error(position, "pack", "number", &value))?;
                        position += 1;
                        let mut chunk = if matches!(item, Item::Float) {
                            (n as f32).to_le_bytes().to_vec()
                        } else {
                            n.to_le_bytes().to_vec()
                        };
                        if !little {
                            chunk.reverse();
                        }
                        out.extend_from_slice(&chunk);
                    }
                    Item::ZString | Item::Chars(_) => {
                        let value = args.next().unwrap_or(Value::Nil);
                        let Value::String(s) = &value else {
                            return Err(arg_error(position, "pack", "string", &value));
                        };
                        position += 1;
                        let bytes = s.as_bytes();
                        match item {
                            Item::ZString => {
                                out.extend_from_slice(&bytes);
                                out.push(0);
                            }
                            Item::Chars(n) => {
                                let n = if *n == 0 { bytes.len() } else { *n };
                                if bytes.len() < n {
                                    return Err(mlua::Error::RuntimeError(format!(
                                        "bad argument #{} to 'pack' (string too short)",
                                        position - 1
                                    )));
                                }
                                out.extend_from_slice(bytes.get(..n).unwrap_or(&bytes));
                            }
                            _ => {}
                        }
                    }
                }
            }
            Ok(mlua::BString::from(out))
        })?,
    )?;
    lib.raw_set(
        "unpack",
        lua.create_function(
            |lua, (fmt, data, start): (mlua::String, mlua::String, Option<f64>)| {
                let items = parse_format(&fmt.as_bytes())?;
                let data = data.as_bytes();
                let mut pos = start.map_or(0, |s| (s as usize).saturating_sub(1));
                let mut little = cfg!(target_endian = "little");
                let mut max_align = 1;
                let mut values = Vec::new();
                let mut last_number: Option<usize> = None;
                let short = || {
                    mlua::Error::RuntimeError(
                        "bad argument #2 to 'unpack' (data string too short)".into(),
                    )
                };
                for item in &items {
                    if matches!(item, Item::Int { .. } | Item::Float | Item::Double) {
                        pos += align_pad(pos, item_size(item), max_align);
                    }
                    match item {
                        Item::Endian(l) => little = *l,
                        Item::Align(a) => max_align = *a,
                        Item::Skip => {}
                        Item::Pad => pos += 1,
                        Item::Int { size, signed } => {
                            let mut chunk = data.get(pos..pos + size).ok_or_else(short)?.to_vec();
                            pos += size;
                            if !little {
                                chunk.reverse();
                            }
                            let mut n: u64 = 0;
                            for (i, b) in chunk.iter().enumerate() {
                                n |= u64::from(*b) << (8 * i);
                            }
                            let value = if *signed && *size < 8 {
                                let shift = 64 - 8 * size;
                                ((n << shift) as i64 >> shift) as f64
                            } else if *signed {
                                n as i64 as f64
                            } else {
                                n as f64
                            };
                            last_number = Some(value as usize);
                            values.push(Value::Number(value));
                        }
                        Item::Float => {
                            let mut chunk = data.get(pos..pos + 4).ok_or_else(short)?.to_vec();
                            pos += 4;
                            if !little {
                                chunk.reverse();
                            }
                            let bits = u32::from_le_bytes(chunk.try_into().unwrap_or([0; 4]));
                            values.push(Value::Number(f64::from(f32::from_bits(bits))));
                        }
                        Item::Double => {
                            let mut chunk = data.get(pos..pos + 8).ok_or_else(short)?.to_vec();
                            pos += 8;
                            if !little {
                                chunk.reverse();
                            }
                            let bits = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
                            values.push(Value::Number(f64::from_bits(bits)));
                        }
                        Item::ZString => {
                            let rest = data.get(pos..).ok_or_else(short)?;
                            let end = rest.iter().position(|&b| b == 0).ok_or_else(|| {
                                mlua::Error::RuntimeError("unfinished string in data".into())
                            })?;
                            values.push(Value::String(lua.create_string(&rest[..end])?));
                            pos += end + 1;
                        }
                        Item::Chars(n) => {
                            let n = if *n == 0 {
                                last_number.take().unwrap_or(0)
                            } else {
                                *n
                            };
                            let chunk = data.get(pos..pos + n).ok_or_else(short)?;
                            values.push(Value::String(lua.create_string(chunk)?));
                            pos += n;
                        }
                    }
                }
                values.push(Value::Number((pos + 1) as f64));
                Ok(MultiValue::from_iter(values))
            },
        )?,
    )?;
    lib.raw_set(
        "size",
        lua.create_function(|_, fmt: mlua::String| {
            let items = parse_format(&fmt.as_bytes())?;
            let mut size = 0;
            let mut max_align = 1;
            for item in &items {
                match item {
                    Item::Align(a) => max_align = *a,
                    Item::ZString => {
                        return Err(mlua::Error::RuntimeError(
                            "options 's' has no fixed size".into(),
                        ));
                    }
                    _ => {
                        if matches!(item, Item::Int { .. } | Item::Float | Item::Double) {
                            size += align_pad(size, item_size(item), max_align);
                        }
                        size += item_size(item);
                    }
                }
            }
            Ok(size as f64)
        })?,
    )?;
    Ok(lib)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(code: &str) -> String {
        let lua = Lua::new();
        register(&lua).unwrap();
        lua.load(code).eval::<String>().unwrap()
    }

    #[test]
    fn bit_matches_luabitop() {
        assert_eq!(eval("return bit.tohex(65535, -2147483648)"), "0000FFFF");
        assert_eq!(
            eval("return tostring(bit.bor(1,2,4,8,16,32,64,128))"),
            "255"
        );
        assert_eq!(eval("return tostring(bit.tobit(0xffffffff))"), "-1");
        assert_eq!(eval("return tostring(bit.lshift(1, 31))"), "-2147483648");
        assert_eq!(eval("return tostring(bit.rshift(-1, 28))"), "15");
        assert_eq!(eval("return bit.tohex(-1)"), "ffffffff");
    }

    #[test]
    fn cjson_formats_as_lua_cjson() {
        assert_eq!(
            eval("return table.concat(cjson.decode('[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]'), ' ')"),
            "0 -5000 -1 0.0003 1023.2 0"
        );
        assert_eq!(
            eval("return cjson.encode({1, 'a/b', true, 0.1})"),
            "[1,\"a\\/b\",true,0.1]"
        );
        assert_eq!(eval("return cjson.encode({})"), "{}");
        assert_eq!(
            eval("return cjson.encode(cjson.decode('{\"a\":null}').a)"),
            "null"
        );
    }

    #[test]
    fn cmsgpack_formats_as_lua_cmsgpack() {
        let hex = "local e = cmsgpack.pack(...) local h = '' for i = 1, #e do h = h .. \
                   string.format('%02x', string.byte(e, i)) end return h";
        let lua = Lua::new();
        register(&lua).unwrap();
        let f = lua.load(hex).into_function().unwrap();
        assert_eq!(f.call::<String>(0.1).unwrap(), "cb3fb999999999999a");
        assert_eq!(
            f.call::<String>(-1_099_511_627_776.0).unwrap(),
            "d3ffffff0000000000"
        );
        assert_eq!(
            eval("local t = cmsgpack.unpack(cmsgpack.pack({1, 2, {a='x'}})) return t[3].a"),
            "x"
        );
    }

    #[test]
    fn struct_round_trips() {
        assert_eq!(
            eval(
                "local a, b, c = struct.unpack('>i2 s', struct.pack('>i2 s', -2, 'hi')) \
                  return a .. ' ' .. b .. ' ' .. c"
            ),
            "-2 hi 6"
        );
        assert_eq!(eval("return tostring(struct.size('<i4 d'))"), "12");
    }
}
