-- The environment Redis 7.0 gives scripts, built once when the interpreter starts.
--
-- Redis patches its Lua to mark tables read-only; forkless embeds an unpatched Lua 5.1, so the
-- same protection is made of proxies: scripts see the globals through `env`, an empty table
-- whose metatable reads the real globals (an unknown name is an error) and refuses every
-- write; the library tables are read-only proxies too. `setmetatable` and `rawset` refuse the
-- proxies, and chunks made by `loadstring`/`load` get `env` as well, so no script can change
-- what the next one sees.
--
-- Called with the real globals table and `raw`, the Rust half of the API; returns what the
-- engine keeps (the environment, the runners, the library makers).

local G, raw = ...

local error_, type_, tostring_, select_, unpack_ = error, type, tostring, select, unpack
local rawget_, rawset_, setmetatable_, getmetatable_ = rawget, rawset, setmetatable, getmetatable
local pcall_, xpcall_, setfenv_, loadstring_, load_ = pcall, xpcall, setfenv, loadstring, load
local tonumber_, floor = tonumber, math.floor

-- Lua 5.1's `unpack` computes the size of its range in C ints, which overflow for ranges such
-- as (-2, 2^31 - 1): undefined behaviour that crashed the server in an optimised build (Redis
-- patches its Lua for the same reason). The range is checked here first, in Lua numbers, which
-- do not overflow; more results than the C stack takes (LUAI_MAXCSTACK) is Lua's own error.
-- The arguments are passed on as given: each one the C function receives takes a slot of that
-- same stack, so `unpack(t)` of 7999 values must reach it as one argument, not three.
local MAX_UNPACK = 8000
G.unpack = function(t, ...)
  local n = select_("#", ...)
  if n == 0 then
    return unpack_(t)
  end
  local i, j = ...
  local first = i == nil and 1 or i
  if type_(first) == "number" and type_(j) == "number" and j - first >= MAX_UNPACK then
    error_("too many results to unpack", 2)
  end
  if n == 1 then
    return unpack_(t, i)
  end
  return unpack_(t, i, j)
end

local READONLY = "Attempt to modify a readonly table"
local protected = setmetatable_({}, { __mode = "k" })

local function deny()
  error_(READONLY, 2)
end

-- What `getmetatable` gives for the protected table `proxy` whose metatable is `mt`: a
-- read-only view of `mt` in which `__index` reads as `proxy` itself, so the table `proxy` reads
-- through (the real globals, a library's real table) is never handed to a script.
local function metatable_view(proxy, mt)
  local view = setmetatable_({}, {
    __index = function(_, key)
      if key == "__index" then
        return proxy
      end
      return mt[key]
    end,
    __newindex = deny,
    __metatable = false,
  })
  protected[view] = true
  return view
end

-- A read-only view of `t`: reads go through, writes (and changes to its metatable) fail.
local function readonly(t)
  local proxy, mt = {}, { __index = t, __newindex = deny }
  mt.__metatable = metatable_view(proxy, mt)
  setmetatable_(proxy, mt)
  protected[proxy] = true
  return proxy
end

-- What scripts see as their globals.
local function make_env(lookup)
  local env, env_mt = {}, {}
  env_mt.__index = function(_, name)
    local value = lookup(name)
    if value == nil then
      error_("Script attempted to access nonexistent global variable '" .. tostring_(name) .. "'", 2)
    end
    return value
  end
  env_mt.__newindex = deny
  env_mt.__metatable = metatable_view(env, env_mt)
  setmetatable_(env, env_mt)
  protected[env] = true
  return env
end

-- Scripts' globals: `env` reads the real globals through a table `__index` (no Lua call per
-- global read, where `make_env`'s lookup function costs two), and the real globals raise the
-- error for a name they lack, as Redis's luaSetErrorMetatable makes its globals do. The real
-- globals are read only with `rawget` or through `env` (none of the bundled libraries looks a
-- global up).
local env
do
  local env_mt = { __index = G, __newindex = deny }
  env = {}
  env_mt.__metatable = metatable_view(env, env_mt)
  setmetatable_(env, env_mt)
  protected[env] = true
  setmetatable_(G, {
    __index = function(_, name)
      error_("Script attempted to access nonexistent global variable '" .. tostring_(name) .. "'", 2)
    end,
    __metatable = false,
  })
end

-- Redis's luaPushErrorBuff: "-CODE msg" keeps its code, anything else gets ERR.
local function error_table(text)
  local code, msg = "ERR", text
  if text:sub(1, 1) == "-" then
    local space = text:find(" ", 1, true)
    if space then
      code, msg = text:sub(2, space - 1), text:sub(space + 1)
    else
      msg = text:sub(2)
    end
  end
  msg = msg:gsub("[\r\n]+$", "")
  return { err = code .. " " .. msg }
end

local function raise(text)
  error_(error_table(text), 0)
end

-- redis.*
local redis = {}
-- redis.call and redis.pcall are set by the engine for each run (Rust functions, so a
-- `return redis.call(...)` keeps the script's frame for error positions).
redis.sha1hex = function(...)
  if select_("#", ...) ~= 1 then
    raise("wrong number of arguments")
  end
  return raw.sha1hex(...)
end
redis.error_reply = function(...)
  local text = ...
  if select_("#", ...) ~= 1 or type_(text) ~= "string" then
    return error_table("wrong number or type of arguments")
  end
  if text:sub(1, 1) ~= "-" then
    text = "-" .. text
  end
  return error_table(text)
end
redis.status_reply = function(...)
  local text = ...
  if select_("#", ...) ~= 1 or type_(text) ~= "string" then
    return error_table("wrong number or type of arguments")
  end
  return { ok = text }
end
redis.log = function(...)
  local n = select_("#", ...)
  if n < 2 then
    raise("redis.log() requires two arguments or more.")
  end
  local level = ...
  if tonumber_(level) == nil then
    raise("First argument must be a number (log level).")
  end
  level = tonumber_(level)
  if level < 0 or level > 3 then
    raise("Invalid debug level.")
  end
  local parts = {}
  for i = 2, n do
    local part = select_(i, ...)
    if type_(part) == "string" or type_(part) == "number" then
      parts[#parts + 1] = tostring_(part)
    end
  end
  raw.log(floor(level), table.concat(parts, " "))
end
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
redis.setresp = function(...)
  if select_("#", ...) ~= 1 then
    raise("redis.setresp() requires one argument.")
  end
  local version = tonumber_((...)) or 0
  if version ~= 2 and version ~= 3 then
    raise("RESP version must be 2 or 3.")
  end
  raw.setresp(version)
end
redis.set_repl = function(...)
  if select_("#", ...) ~= 1 then
    raise("redis.set_repl() requires two arguments.")
  end
  local flags = tonumber_((...)) or 0
  if flags < 0 or flags > 3 or flags ~= floor(flags) then
    raise("Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.")
  end
end
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
redis.replicate_commands = function() return true end
redis.breakpoint = function() return false end
redis.debug = function() end
redis.acl_check_cmd = function(...)
  if select_("#", ...) == 0 then
    raise("Please specify at least one argument for this redis lib call")
  end
  if not raw.command_exists((...)) then
    raise("Invalid command passed to redis.acl_check_cmd()")
  end
  return raw.acl_check(...)
end
redis.REDIS_VERSION, redis.REDIS_VERSION_NUM = raw.version, raw.version_num

-- math.random and math.randomseed as Redis has them: its own lrand48, the same sequence on
-- every platform.
local function checkint(value, position, fname)
  local number = tonumber_(value)
  if number == nil then
    error_("bad argument #" .. position .. " to '" .. fname .. "' (number expected, got "
      .. (value == nil and "no value" or type_(value)) .. ")", 3)
  end
  return number >= 0 and floor(number) or -floor(-number)
end
math.random = function(...)
  local r = raw.random()
  local n = select_("#", ...)
  if n == 0 then
    return r
  elseif n == 1 then
    local upper = checkint((...), 1, "random")
    if upper < 1 then
      error_("bad argument #1 to 'random' (interval is empty)", 2)
    end
    return floor(r * upper) + 1
  elseif n == 2 then
    local lower, upper = ...
    lower, upper = checkint(lower, 1, "random"), checkint(upper, 2, "random")
    if lower > upper then
      error_("bad argument #2 to 'random' (interval is empty)", 2)
    end
    return floor(r * (upper - lower + 1)) + lower
  end
  error_("wrong number of arguments", 2)
end
math.randomseed = function(seed)
  raw.randomseed(checkint(seed, 1, "randomseed"))
end

-- pcall as Redis 7 has it: an error table from redis.call is returned as its text. A script
-- being killed is not stopped by its own pcall.
local function after_pcall(ok, ...)
  if not ok then
    local err = ...
    if raw.killed() then
      error_(err, 0)
    end
    if type_(err) == "table" and type_(err.err) == "string" then
      return false, err.err
    end
    if type_(err) == "userdata" then
      local text, coded = raw.errinfo(err)
      return false, text
    end
  end
  return ok, ...
end
G.pcall = function(f, ...)
  return after_pcall(pcall_(f, ...))
end
-- Like Redis, only source text loads: bytecode could break the interpreter.
G.loadstring = function(code, ...)
  if type_(code) == "string" and code:sub(1, 1) == "\27" then
    return nil, "binary chunks are not allowed"
  end
  local f, err = loadstring_(code, ...)
  if f then
    setfenv_(f, env)
  end
  return f, err
end
G.load = function(reader, ...)
  if type_(reader) ~= "function" then
    return nil, "bad argument #1 to 'load' (function expected)"
  end
  local first = true
  local function text_only()
    local piece = reader()
    if first and type_(piece) == "string" and piece:sub(1, 1) == "\27" then
      error_("binary chunks are not allowed", 0)
    end
    first = false
    return piece
  end
  local f, err = load_(text_only, ...)
  if f then
    setfenv_(f, env)
  end
  return f, err
end
G.setmetatable = function(t, mt)
  if protected[t] then
    error_(READONLY, 2)
  end
  return setmetatable_(t, mt)
end
G.rawset = function(t, k, v)
  if protected[t] then
    error_(READONLY, 2)
  end
  return rawset_(t, k, v)
end

-- The error handler: every failure becomes a table {err=..., source=..., line=...}.
local function handler(err)
  if type_(err) ~= "table" then
    local text, coded, counted = raw.errinfo(err)
    err = { err = coded and text or ("ERR " .. text) }
    -- A command's error, counted by INFO when the command replied it (Redis's field).
    if counted then
      err.ignore_error_stats_update = true
    end
  end
  local source, line = raw.where()
  if source then
    err.source = source
    err.line = line
  end
  return err
end
G.__redis__err__handler = handler

-- A run's keys and arguments come either as two tables the engine made, or (a few strings,
-- the usual case) as the strings themselves after the number of keys: pushing a string costs
-- the engine no Lua handle, a table and its strings one each. `split` makes the two tables.
local function split(nkeys, ...)
  local keys, args = { ... }, {}
  for i = nkeys + 1, select_("#", ...) do
    args[i - nkeys] = keys[i]
    keys[i] = nil
  end
  return keys, args
end

-- A function's memory limit (`raw.limit`) holds from here until the engine lifts it after the
-- run: what the engine itself builds through mlua stays outside it, which spares mlua a
-- protected call for each of its steps (docs/benchmarks.md, "Scripts"). EVAL scripts have no
-- runner here: the engine sets KEYS, ARGV and the limit itself and calls the script with
-- `handler`.
local function run_function(f, keys, args)
  raw.limit()
  return xpcall_(function() return f(keys, args) end, handler)
end
local function run_function_strings(f, nkeys, ...)
  return run_function(f, split(nkeys, ...))
end

-- What Redis leaves out of the globals.
for _, name in ipairs({ "print", "dofile", "loadfile", "require", "module", "package", "os", "io",
  "setfenv", "getfenv", "newproxy", "debug" }) do
  rawset_(G, name, nil)
end

local redis_view = readonly(redis)
G.redis = redis_view
for _, name in ipairs({ "string", "math", "table", "coroutine", "cjson", "bit", "cmsgpack", "struct" }) do
  local lib = rawget_(G, name)
  if lib ~= nil then
    rawset_(G, name, readonly(lib))
  end
end
G._G = env
-- Strings are the one basic type with a metatable: make it read-only as well.
local string_mt = getmetatable_("")
if string_mt then
  -- String methods read the library through its read-only view too.
  string_mt.__index = rawget_(G, "string")
  string_mt.__metatable = readonly(string_mt)
end

-- Functions (FUNCTION LOAD): while a library's code runs, its globals are only `redis` with
-- register_function, log and the version; afterwards its functions see the usual globals.
local loading = false
local load_redis_real = {
  register_function = function(...)
    if not loading then
      raise("redis.register_function can only be called on FUNCTION LOAD command")
    end
    return raw.register_function(...)
  end,
  log = redis.log,
  LOG_DEBUG = 0, LOG_VERBOSE = 1, LOG_NOTICE = 2, LOG_WARNING = 3,
  REDIS_VERSION = raw.version, REDIS_VERSION_NUM = raw.version_num,
}
local load_redis = make_env(function(name) return rawget_(load_redis_real, name) end)
local function_env = make_env(function(name)
  if loading then
    if name == "redis" then
      return load_redis
    end
    return nil
  end
  return rawget_(G, name)
end)
local function load_library(chunk)
  loading = true
  local ok, err = xpcall_(chunk, handler)
  loading = false
  return ok, err
end

return {
  function_env = function_env,
  load_library = load_library,
  env = env,
  handler = handler,
  run_function = run_function,
  run_function_strings = run_function_strings,
  redis = redis,
  readonly = readonly,
  make_env = make_env,
  raise = raise,
}
