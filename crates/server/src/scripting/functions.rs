//! FUNCTION libraries: loading a library's code, its registered functions, and what FUNCTION
//! LIST/DUMP/RESTORE and the RDB see of them.
//!
//! Libraries run in their own interpreter (as in Redis, SCRIPT FLUSH leaves them alone). A
//! library's code runs once at FUNCTION LOAD with only `redis.register_function`, `redis.log`
//! and the version in its globals; the functions it registers are Lua closures kept by name.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use mlua::{Function, MultiValue, Table, Value};

use super::RunState;
use super::engine::{CallError, Engine, ScriptFlags, mlua_error_text};

/// One registered function.
#[derive(Clone)]
pub(crate) struct FunctionInfo {
    pub(crate) name: String,
    pub(crate) description: Option<Bytes>,
    pub(crate) flags: ScriptFlags,
    pub(crate) callback: Function,
}

/// One library.
pub(crate) struct Library {
    pub(crate) name: String,
    /// The whole payload FUNCTION LOAD got, shebang line included (what DUMP and the RDB keep).
    pub(crate) code: Bytes,
    pub(crate) functions: BTreeMap<String, FunctionInfo>,
}

/// The loaded libraries and their interpreter.
pub(crate) struct Functions {
    pub(crate) engine: Engine,
    pub(crate) libraries: BTreeMap<String, Library>,
}

/// Returns true if and only if `name` is a valid library or function name.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

const BAD_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and \
                        must be at least one character long";

/// Parses `#!<engine> name=<name>` off a library payload: (engine, name, code after the
/// shebang line, starting with its line feed).
fn parse_metadata(payload: &[u8]) -> Result<(String, String, &[u8]), String> {
    if !payload.starts_with(b"#!") {
        return Err("ERR Missing library metadata".into());
    }
    let Some(end) = payload.iter().position(|&b| b == b'\n') else {
        return Err("ERR Invalid library metadata".into());
    };
    let line = String::from_utf8_lossy(payload.get(..end).unwrap_or_default()).into_owned();
    let parts = split_args(&line);
    let mut parts = parts.iter().map(String::as_str);
    let Some(first) = parts.next() else {
        return Err("ERR Invalid library metadata".into());
    };
    let engine = first.get(2..).unwrap_or("").to_string();
    let mut name = None;
    for part in parts {
        if part.len() >= 5
            && part
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case("name="))
        {
            if name.is_some() {
                return Err(
                    "ERR Invalid metadata value, name argument was given multiple times".into(),
                );
            }
            name = Some(part.get(5..).unwrap_or("").to_string());
            continue;
        }
        return Err(format!("ERR Invalid metadata value given: {part}"));
    }
    let Some(name) = name else {
        return Err("ERR Library name was not given".into());
    };
    Ok((engine, name, payload.get(end..).unwrap_or_default()))
}

/// Splits a line into words as Redis's `sdssplitargs` does for plain and quoted words (quotes
/// may open inside a word: `name="foo"` is `name=foo`).
fn split_args(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(char::is_ascii_whitespace) {
            chars.next();
        }
        if chars.peek().is_none() {
            return words;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match quote {
                Some(q) if c == q => quote = None,
                Some('"') if c == '\\' => {
                    if let Some(next) = chars.next() {
                        word.push(match next {
                            'n' => '\n',
                            'r' => '\r',
                            't' => '\t',
                            other => other,
                        });
                    }
                }
                Some(_) => word.push(c),
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c.is_ascii_whitespace() => break,
                None => word.push(c),
            }
        }
        words.push(word);
    }
}

impl Functions {
    pub(crate) fn new(
        run_state: Arc<RunState>,
        server: std::sync::Weak<crate::server::Server>,
    ) -> mlua::Result<Functions> {
        Ok(Functions {
            engine: Engine::new(run_state, server)?,
            libraries: BTreeMap::new(),
        })
    }

    /// Finds a function by name (names compare without case, as in Redis).
    pub(crate) fn function(&self, name: &[u8]) -> Option<&FunctionInfo> {
        let name = String::from_utf8_lossy(name);
        self.libraries
            .values()
            .flat_map(|lib| lib.functions.values())
            .find(|f| f.name.eq_ignore_ascii_case(&name))
    }

    /// Number of libraries and of functions, for FUNCTION STATS.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (
            self.libraries.len(),
            self.libraries.values().map(|l| l.functions.len()).sum(),
        )
    }

    /// FUNCTION LOAD: compiles and runs `payload`, and links its library. Returns the library
    /// name; Err is the error reply.
    pub(crate) fn load(&mut self, payload: &Bytes, replace: bool) -> Result<String, String> {
        let library = self.create(payload)?;
        if self.libraries.contains_key(&library.name) && !replace {
            return Err(format!("ERR Library '{}' already exists", library.name));
        }
        for function in library.functions.values() {
            let clash = self.libraries.values().any(|other| {
                other.name != library.name
                    && other
                        .functions
                        .values()
                        .any(|f| f.name.eq_ignore_ascii_case(&function.name))
            });
            if clash {
                return Err(format!("ERR Function {} already exists", function.name));
            }
        }
        let name = library.name.clone();
        self.libraries.insert(name.clone(), library);
        Ok(name)
    }

    /// Compiles `payload` and runs it to collect its functions, without linking it.
    pub(crate) fn create(&mut self, payload: &Bytes) -> Result<Library, String> {
        let (engine, name, code) = parse_metadata(payload)?;
        if !valid_name(&name) {
            return Err(format!("ERR {BAD_NAME}"));
        }
        if !engine.eq_ignore_ascii_case("lua") {
            return Err(format!("ERR Engine '{engine}' not found"));
        }
        let lua = self.engine.lua();
        let module = self.engine.sandbox_module();
        let env: Table = module
            .raw_get("function_env")
            .map_err(|e| format!("ERR {}", mlua_error_text(&e)))?;
        let load_library: Function = module
            .raw_get("load_library")
            .map_err(|e| format!("ERR {}", mlua_error_text(&e)))?;
        let chunk = lua
            .load(code)
            .set_name("@user_function")
            .set_mode(mlua::ChunkMode::Text)
            .set_environment(env)
            .into_function()
            .map_err(|err| format!("ERR Error compiling function: {}", mlua_error_text(&err)))?;
        let registered: RefCell<BTreeMap<String, FunctionInfo>> = RefCell::new(BTreeMap::new());
        let raw: Table = self
            .engine
            .raw_table()
            .map_err(|e| format!("ERR {}", mlua_error_text(&e)))?;
        let _deadline = self.engine.run_state().load_deadline();
        let outcome = lua.scope(|scope| {
            raw.raw_set(
                "register_function",
                scope.create_function(|_, args: MultiValue| {
                    let function = read_register_args(args).map_err(|text| {
                        mlua::Error::external(CallError(format!("ERR {text}"), false))
                    })?;
                    if !valid_name(&function.name) {
                        return Err(mlua::Error::external(CallError(
                            format!("ERR {BAD_NAME}"),
                            false,
                        )));
                    }
                    let mut registered = registered.borrow_mut();
                    if registered.contains_key(&function.name) {
                        return Err(mlua::Error::external(CallError(
                            "ERR Function already exists in the library".into(),
                            false,
                        )));
                    }
                    registered.insert(function.name.clone(), function);
                    Ok(())
                })?,
            )?;
            let (ok, err): (bool, Value) = load_library.call(chunk)?;
            Ok((ok, err))
        });
        match outcome {
            Ok((true, _)) => {}
            Ok((false, err)) => {
                let msg = match &err {
                    Value::Table(t) => t
                        .raw_get::<Option<mlua::String>>("err")
                        .ok()
                        .flatten()
                        .map(|s| String::from_utf8_lossy(&s.as_bytes()).into_owned())
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                return Err(format!("ERR Error registering functions: {msg}"));
            }
            Err(err) => {
                return Err(format!(
                    "ERR Error registering functions: {}",
                    mlua_error_text(&err)
                ));
            }
        }
        let functions = registered.into_inner();
        if functions.is_empty() {
            return Err("ERR No functions registered".into());
        }
        Ok(Library {
            name,
            code: payload.clone(),
            functions,
        })
    }
}

/// Reads `redis.register_function`'s arguments: `(name, callback)` or a table of named
/// arguments. Err is Redis's message (without the `ERR` code).
fn read_register_args(args: MultiValue) -> Result<FunctionInfo, &'static str> {
    let args: Vec<Value> = args.into_iter().collect();
    match args.as_slice() {
        [Value::Table(named)] => read_named_args(named),
        [_] => Err(
            "calling redis.register_function with a single argument is only applicable to \
                    Lua table (representing named arguments).",
        ),
        [name, callback] => {
            let Some(name) = string_arg(name) else {
                return Err("first argument to redis.register_function must be a string");
            };
            let Value::Function(callback) = callback else {
                return Err("second argument to redis.register_function must be a function");
            };
            Ok(FunctionInfo {
                name,
                description: None,
                flags: ScriptFlags::default(),
                callback: callback.clone(),
            })
        }
        _ => Err("wrong number of arguments to redis.register_function"),
    }
}

/// A Lua string or number as text (`lua_isstring`).
fn string_arg(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(String::from_utf8_lossy(&s.as_bytes()).into_owned()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Number(n) => Some(forkless_protocol::format_double(*n)),
        _ => None,
    }
}

fn read_named_args(named: &Table) -> Result<FunctionInfo, &'static str> {
    let mut name = None;
    let mut description = None;
    let mut callback = None;
    let mut flags = ScriptFlags::default();
    for pair in named.pairs::<Value, Value>() {
        let Ok((key, value)) = pair else {
            return Err("named argument key given to redis.register_function is not a string");
        };
        let Some(key) = string_arg(&key) else {
            return Err("named argument key given to redis.register_function is not a string");
        };
        if key.eq_ignore_ascii_case("function_name") {
            name = Some(string_arg(&value).ok_or(
                "function_name argument given to redis.register_function must be a string",
            )?);
        } else if key.eq_ignore_ascii_case("description") {
            description = Some(Bytes::from(string_arg(&value).ok_or(
                "description argument given to redis.register_function must be a string",
            )?));
        } else if key.eq_ignore_ascii_case("callback") {
            let Value::Function(f) = value else {
                return Err(
                    "callback argument given to redis.register_function must be a function",
                );
            };
            callback = Some(f);
        } else if key.eq_ignore_ascii_case("flags") {
            let Value::Table(list) = value else {
                return Err("flags argument to redis.register_function must be a table \
                            representing function flags");
            };
            for item in list.sequence_values::<Value>() {
                let Some(flag) = item.ok().as_ref().and_then(string_arg) else {
                    return Err("unknown flag given");
                };
                if !flags.set(&flag.to_ascii_lowercase()) {
                    return Err("unknown flag given");
                }
            }
        } else {
            return Err("unknown argument given to redis.register_function");
        }
    }
    let Some(name) = name else {
        return Err("redis.register_function must get a function name argument");
    };
    let Some(callback) = callback else {
        return Err("redis.register_function must get a callback argument");
    };
    Ok(FunctionInfo {
        name,
        description,
        flags,
        callback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata() {
        let (engine, name, code) = parse_metadata(b"#!lua name=mylib\nreturn 1").unwrap();
        assert_eq!(
            (engine.as_str(), name.as_str(), code),
            ("lua", "mylib", &b"\nreturn 1"[..])
        );
        assert_eq!(
            parse_metadata(b"return 1").unwrap_err(),
            "ERR Missing library metadata"
        );
        assert_eq!(
            parse_metadata(b"#!lua\n").unwrap_err(),
            "ERR Library name was not given"
        );
        assert_eq!(
            parse_metadata(b"#!lua name=a name=b\n").unwrap_err(),
            "ERR Invalid metadata value, name argument was given multiple times"
        );
        assert_eq!(
            parse_metadata(b"#!lua foo=bar\n").unwrap_err(),
            "ERR Invalid metadata value given: foo=bar"
        );
        let (_, name, _) = parse_metadata(b"#!lua name=\"foo\"\n").unwrap();
        assert_eq!(name, "foo");
        assert!(valid_name("my_lib1") && !valid_name("my-lib") && !valid_name(""));
    }
}
