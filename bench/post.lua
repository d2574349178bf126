-- wrk script: one Datastar event POST per request.
-- Usage: wrk ... -s bench/post.lua URL -- '<Cookie header value>'
wrk.method = "POST"
wrk.body = '{"counter":{"count":0}}'
wrk.headers["Datastar-Request"] = "true"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "text/event-stream"

function init(args)
  if args[1] ~= nil and args[1] ~= "" then
    wrk.headers["Cookie"] = args[1]
  end
end
