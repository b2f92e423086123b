-- wrk script: one single-event POST /emoji per request, users spread over 10,000 ids.
local emojis = {"🔥", "❤️", "😂", "👍", "🎉", "😮", "👏", "🚀"}
local n = 0
request = function()
  n = n + 1
  local body = string.format('{"user_id":"load-%d","emoji":"%s"}', n % 10000, emojis[n % #emojis + 1])
  return wrk.format("POST", "/emoji", {["content-type"] = "application/json"}, body)
end
