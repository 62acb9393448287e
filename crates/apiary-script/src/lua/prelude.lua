-- Trusted prelude run once in every sandboxed state before the plugin; see sandbox.rs.
-- Error catchers are wrapped so that a script cannot swallow the error raised when its
-- instruction budget or memory limit is exhausted: once tripped, the error is raised again.
local guard, raw_pcall, raw_xpcall, raw_resume, raw_close, raw_load, raw_yield, token, mode = ...
local error, select = error, select

local function check(ok, ...)
  if guard(ok, (...)) then
    error((...), 0)
  end
  return ok, ...
end

pcall = function(f, ...) return check(raw_pcall(f, ...)) end
xpcall = function(f, h, ...) return check(raw_xpcall(f, h, ...)) end
coroutine.resume = function(co, ...) return check(raw_resume(co, ...)) end
coroutine.close = function(co) return check(raw_close(co)) end

-- Text chunks only: precompiled bytecode can break the VM's memory safety.
load = function(chunk, name, _mode, ...)
  if select('#', ...) > 0 then
    return raw_load(chunk, name, "t", (...))
  end
  return raw_load(chunk, name, "t")
end

if mode == "session" then
  rx = function() return raw_yield(token, "rx") end
  sleep = function(secs) return raw_yield(token, "sleep", secs) end
  close = function() return raw_yield(token, "close") end
else
  local function unavailable(name)
    return function() error(name .. "() is not available here", 2) end
  end
  rx = unavailable("rx")
  sleep = unavailable("sleep")
  close = unavailable("close")
end

-- The body of a session coroutine: run the plugin's top level, then its handler.
return function(chunk)
  chunk()
  local h = handle
  if type(h) ~= "function" then
    error("the plugin defines no handle() function", 0)
  end
  return h()
end
