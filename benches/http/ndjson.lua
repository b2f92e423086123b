-- wrk script: POST /events with an NDJSON batch of BATCH events per request (default 1000).
local batch = tonumber(os.getenv("BATCH") or "1000")
local emojis = {"🔥", "❤️", "😂", "👍", "🎉", "😮", "👏", "🚀"}
local lines = {}
for i = 1, batch do
  lines[i] = string.format('{"user_id":"load-%d","emoji":"%s"}', i % 10000, emojis[i % #emojis + 1])
end
local body = table.concat(lines, "\n")
request = function()
  return wrk.format("POST", "/events", {["content-type"] = "application/x-ndjson"}, body)
end
