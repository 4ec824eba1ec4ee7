-- wrk script for bench/run's http_enqueue: POST to /enqueue an invocation whose params
-- hold the event bench/post_event.lua posts, and count every answer that is not the
-- status given as the script's argument (202 from supernode, 201 from the constant
-- baseline), so the rate reported is of invocations actually accepted.
wrk.method = "POST"
wrk.path = "/enqueue"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"token":"bench","invocation":{"class":"bench.Worker","method":"run","params":['
    .. '{"source":"bench","kind":"page_view","seq":1,"user":"u-000123",'
    .. '"payload":"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789'
    .. 'abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz01234567"}]}}'

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    expected = tonumber(args[1]) or 202
    refused = 0
end

function response(status, headers, body)
    if status ~= expected then
        refused = refused + 1
    end
end

function done(summary, latency, requests)
    local refused_total = 0
    for _, thread in ipairs(threads) do
        refused_total = refused_total + thread:get("refused")
    end
    local accepted = summary.requests - refused_total
    local errors = summary.errors.connect + summary.errors.read + summary.errors.write
        + summary.errors.timeout
    io.write(string.format("RESULT %.0f req/s requests=%d refused=%d socket_errors=%d seconds=%.2f\n",
        accepted / (summary.duration / 1e6), summary.requests, refused_total, errors,
        summary.duration / 1e6))
end
