// The peer a Node.js user would pick: Socket.IO 4 with the sharded Redis adapter (Redis 7).
//
//     node bench/peers/socketio_node/server.mjs --port P --redis-url URL [--workers N]
//         [--host 127.0.0.1]
//
// Versions are pinned in package.json / package-lock.json beside this file; bench/targets.py
// runs `npm ci` here on first use. Set up the way Socket.IO's documentation recommends for
// production (bench/README.md, "Socket.IO on Node.js"):
//
// * one process per core with node:cluster: the primary forks N workers that share one
//   listening port (Node's default round-robin scheduling: the primary accepts and hands each
//   connection to a worker). The websocket transport alone is enabled, so no sticky session is
//   needed (the documentation's "Using multiple nodes": sticky sessions are for HTTP
//   long-polling, whose requests must reach one process);
// * every worker is a node of the sharded Redis adapter (`createShardedAdapter` from
//   @socket.io/redis-adapter, SSUBSCRIBE/SPUBLISH, subscription mode "dynamic": one Redis
//   channel per room, `socket.io#/#<room>#`), over the `redis` client; that adapter is also
//   how another process publishes (bench/targets.py's SocketIONodePublisher writes what
//   the adapter writes);
// * the documentation's performance tuning: ws's native add-ons (bufferutil, utf-8-validate)
//   installed, and the initial HTTP request of each session discarded to save memory;
//   permessage-deflate off (Engine.IO's default, and Herald's); Engine.IO's own heartbeat at
//   its defaults (ping every 25 s).
//
// Clients emit `subscribe` with a channel name; the handler joins the room of that name and
// acks "ok" (the same events as bench/peers/socketio_server.py, so bench/peers/
// socketio_adapter.py speaks to both). The ack waits until Redis confirmed the room's
// SSUBSCRIBE, so nothing published after a client saw its ack is lost. Publications arrive
// as `pub` events. `GET /healthz` answers 200 with the pid and the versions.
//
// "ready" is printed once every worker serves and its adapter's own channels are subscribed.
// SIGTERM or SIGINT: the workers exit, then the primary, with status 0; a worker that exits
// on its own ends the primary with status 1 (a measurement never runs behind a restart).
// With --workers 1 there is no primary: the single process serves.

import cluster from "node:cluster";
import { readFileSync } from "node:fs";
import http from "node:http";
import process from "node:process";
import { parseArgs } from "node:util";

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;

const { values: args } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.1" },
    port: { type: "string" },
    "redis-url": { type: "string" },
    workers: { type: "string", default: "1" },
  },
});
if (!args.port || !args["redis-url"]) {
  console.error("usage: server.mjs --port P --redis-url URL [--workers N] [--host H]");
  process.exit(2);
}
const port = Number(args.port);
const workers = Number(args.workers);

if (workers > 1 && cluster.isPrimary) {
  await primary(workers);
} else {
  await worker();
}

async function primary(count) {
  let stopping = false;
  let ready = 0;
  const timer = setTimeout(() => {
    console.error(`${count - ready} worker(s) not ready in ${START_TIMEOUT_MS} ms`);
    stopAll(1);
  }, START_TIMEOUT_MS);

  function stopAll(code) {
    stopping = true;
    clearTimeout(timer);
    const alive = Object.values(cluster.workers).filter((w) => !w.isDead());
    if (alive.length === 0) process.exit(code);
    let left = alive.length;
    for (const w of alive) {
      w.once("exit", () => {
        if (--left === 0) process.exit(code);
      });
      w.process.kill("SIGTERM");
    }
    setTimeout(() => {
      for (const w of alive) if (!w.isDead()) w.process.kill("SIGKILL");
      process.exit(code);
    }, STOP_TIMEOUT_MS).unref();
  }

  process.on("SIGTERM", () => stopAll(0));
  process.on("SIGINT", () => stopAll(0));
  cluster.on("message", (_worker, message) => {
    if (message === "ready" && ++ready === count) {
      clearTimeout(timer);
      process.stdout.write("ready\n");
    }
  });
  cluster.on("exit", (w, code, signal) => {
    if (stopping) return;
    console.error(`worker ${w.process.pid} exited (${signal ?? code})`);
    stopAll(1);
  });
  for (let index = 0; index < count; index++) {
    cluster.fork({ BENCH_WORKER_INDEX: String(index), BENCH_WORKERS: String(count) });
  }
}

function version(name) {
  const path = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  try {
    return JSON.parse(readFileSync(path, "utf8")).version;
  } catch {
    return null;
  }
}

async function worker() {
  const { Server } = await import("socket.io");
  const { createShardedAdapter } = await import("@socket.io/redis-adapter");
  const { createClient } = await import("redis");

  const versions = Object.fromEntries(
    ["socket.io", "@socket.io/redis-adapter", "redis", "engine.io", "ws"].map((name) => [
      name,
      version(name),
    ]),
  );
  const body = JSON.stringify({ ok: true, pid: process.pid, node: process.version, versions });
  const httpServer = http.createServer((req, res) => {
    const found = req.url === "/healthz";
    res.writeHead(found ? 200 : 404, { "content-type": "application/json" });
    res.end(found ? body : "{}");
  });

  const pubClient = createClient({ url: args["redis-url"] });
  const subClient = pubClient.duplicate();
  for (const client of [pubClient, subClient]) {
    client.on("error", (err) => console.error(`redis: ${err.message}`));
  }
  await Promise.all([pubClient.connect(), subClient.connect()]);

  // The adapter subscribes to a room's channel when the room is created, without waiting for
  // Redis's confirmation. It is given the subscriber through this thin wrapper, which keeps
  // the confirmation of each channel's SSUBSCRIBE so that a subscribe ack can wait for it.
  const confirmed = new Map();
  const subscriber = {
    sSubscribe(channel, listener, bufferMode) {
      const done = subClient.sSubscribe(channel, listener, bufferMode);
      for (const name of [channel].flat()) confirmed.set(name, done);
      return done;
    },
    sUnsubscribe(channel, listener, bufferMode) {
      for (const name of [channel].flat()) confirmed.delete(name);
      return subClient.sUnsubscribe(channel, listener, bufferMode);
    },
  };

  const io = new Server(httpServer, {
    transports: ["websocket"],
    perMessageDeflate: false,
    serveClient: false,
    cors: { origin: "*" },
  });
  io.adapter(createShardedAdapter(pubClient, subscriber));
  const adapter = io.of("/").adapter;
  const roomChannel = (room) => `${adapter.channel}${room}#`;

  // Performance tuning (documentation): drop the reference to the upgrade request.
  io.engine.on("connection", (rawSocket) => {
    rawSocket.request = null;
  });

  io.on("connection", (socket) => {
    socket.on("subscribe", async (channel, ack) => {
      socket.join(channel);
      const pending = confirmed.get(roomChannel(channel));
      if (pending !== undefined) {
        try {
          await pending;
        } catch (err) {
          console.error(`SSUBSCRIBE ${channel}: ${err.message}`);
          return; // no ack: the client counts the subscription as not confirmed
        }
      }
      if (typeof ack === "function") ack("ok");
    });
  });

  function stop() {
    // The connections close with the process; nothing of a worker needs flushing.
    process.exit(0);
  }
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  if (cluster.isWorker) {
    // The primary's signal reaches the workers too when sent to the process group; the
    // primary decides when a worker stops, through its own SIGTERM to that worker.
    process.removeAllListeners("SIGINT");
    process.on("SIGINT", () => {});
  }

  await new Promise((resolve, reject) => {
    httpServer.once("error", reject);
    httpServer.listen({ host: args.host, port, backlog: 4096 }, resolve);
  });
  await Promise.all(confirmed.values());
  if (cluster.isWorker) {
    process.send("ready");
  } else {
    process.stdout.write("ready\n");
  }
}
