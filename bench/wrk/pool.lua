-- The 10,000-token pool: every request carries the next token of the file given after `--`
-- (one per line), so the proxy's verified-token cache and per-user state see every key.
-- Each wrk thread starts at a different offset.
local tokens = {}
local n = 0
local i = 0

function init(args)
  local f = assert(io.open(args[1], "r"))
  for line in f:lines() do
    if #line > 0 then
      n = n + 1
      tokens[n] = "Bearer " .. line
    end
  end
  f:close()
  assert(n > 0, "no tokens in " .. args[1])
  i = math.random(n) - 1
end

function request()
  i = (i % n) + 1
  wrk.headers["Authorization"] = tokens[i]
  return wrk.format(nil, nil, nil, nil)
end
