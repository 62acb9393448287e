-- HashCountRandom, HoneyPy's developer example, as an apiary Lua service plugin.
-- On connect: "ACCEPT_CONN: <remote ip>\n". For every chunk received: counter + 1, then the hex
-- MD5 of the counter's decimal string, ":", 99 random bytes, "\n". The connection stays open.

function handle()
  tx("ACCEPT_CONN: " .. remote_host .. "\n")
  local count = 0
  while true do
    local data = rx()
    if data == nil then
      return
    end
    count = count + 1
    tx(md5(tostring(count)) .. ":" .. random_bytes(99) .. "\n")
  end
end
