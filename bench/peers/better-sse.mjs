// The peer a web developer would reach for: better-sse on Node's http module, serving the
// same two workloads as our server (a clock fan-out and a publish fan-out). Started by the
// bench; prints "listening on http://127.0.0.1:PORT" once it listens on an ephemeral port.
import http from "node:http";
import { createChannel, createSession } from "better-sse";

const clocks = new Map(); // interval_ms -> channel ticking at that interval
const events = createChannel();

function clock(intervalMs) {
  if (!clocks.has(intervalMs)) {
    const channel = createChannel();
    let id = 0;
    setInterval(() => {
      id += 1;
      channel.broadcast(new Date().toISOString(), "time", { eventId: String(id) });
    }, intervalMs);
    clocks.set(intervalMs, channel);
  }
  return clocks.get(intervalMs);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (req.method === "GET" && url.pathname === "/sse/time") {
    const session = await createSession(req, res, { serializer: String });
    clock(Number(url.searchParams.get("interval_ms") ?? 1000)).register(session);
  } else if (req.method === "GET" && url.pathname === "/events") {
    events.register(await createSession(req, res, { serializer: String }));
  } else if (req.method === "POST" && url.pathname === "/publish") {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      events.broadcast(body, "message");
      res.writeHead(201).end();
    });
  } else {
    res.writeHead(404).end();
  }
});
server.listen(0, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
