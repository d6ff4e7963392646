-- wrk script for bench/oci.sh: method and Accept header from the environment, and a
-- machine-readable summary line. No response() callback: wrk then does not copy
-- bodies into Lua, it only parses and counts every byte it reads from the socket.
wrk.method = os.getenv("WRK_METHOD") or "GET"
local accept = os.getenv("WRK_ACCEPT")
if accept and accept ~= "" then
  wrk.headers["Accept"] = accept
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH bytes=%d duration_us=%d requests=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.bytes, summary.duration, summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
