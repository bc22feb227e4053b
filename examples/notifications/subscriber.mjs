/**
 * A subscriber of the notification service in Node, through the browser client (client-js):
 * what a page does, as a command that prints what it receives.
 *
 *     HERALD_TOKEN=<jwt> node --experimental-websocket subscriber.mjs \
 *         --url ws://127.0.0.1:8000/ws post:7 feed:42 question:1
 *
 * One JSON line on stdout per event: {"event": "connected", "user": ...},
 * {"event": "subscribed", "channel", "recovery", "position"},
 * {"event": "publication", "channel", "epoch", "offset", "data"},
 * {"event": "error", "channel", "code", "message"} (a refused subscribe: 403 for another
 * user's feed), {"event": "recoveryFailed", "channel", "position"},
 * {"event": "connecting", "code", "reason"}. Ends on SIGTERM, SIGINT or the end of stdin.
 *
 * Node 20 has a WebSocket global only with --experimental-websocket (Node 22 has it always);
 * client-js/dist must be built (`npm ci && npm run build` in client-js, or `./herald test`).
 */
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLIENT = resolve(HERE, '..', '..', 'client-js', 'dist', 'index.js');

/**
 * Subscribe `client` (a HeraldClient) to `channels`, reporting every event to `report`;
 * returns the subscriptions. The handlers are what a page would render.
 */
export function subscribeAll(client, channels, report) {
  client.on('connected', (info) => report({ event: 'connected', user: info.connect?.user ?? null }));
  client.on('connecting', (info) => report({ event: 'connecting', code: info.code, reason: info.reason }));
  return channels.map((channel) => {
    const subscription = client.subscribe(channel, (pub) =>
      report({ event: 'publication', channel: pub.channel, epoch: pub.epoch, offset: pub.offset, data: pub.data }),
    );
    subscription.on('subscribed', (info) =>
      report({ event: 'subscribed', channel, recovery: info.recovery ?? null, position: info.position ?? null }),
    );
    subscription.on('error', (error) => report({ event: 'error', channel, code: error.code, message: error.message }));
    subscription.on('recoveryFailed', (info) => report({ event: 'recoveryFailed', channel, position: info.position }));
    return subscription;
  });
}

async function run() {
  const { values, positionals: channels } = parseArgs({
    options: { url: { type: 'string' }, format: { type: 'string' } },
    allowPositionals: true,
  });
  const url = values.url ?? process.env.HERALD_SOCKET_URL ?? 'ws://127.0.0.1:8000/ws';
  if (typeof WebSocket === 'undefined') {
    process.stderr.write('subscriber: no WebSocket global: run it with node --experimental-websocket (Node 20)\n');
    return 2;
  }
  if (!existsSync(CLIENT)) {
    process.stderr.write(`subscriber: ${CLIENT} is missing: build client-js (npm ci && npm run build)\n`);
    return 2;
  }
  const { HeraldClient } = await import(pathToFileURL(CLIENT).href);
  const token = process.env.HERALD_TOKEN || null;
  const client = new HeraldClient(url, {
    getToken: () => token,
    format: values.format ?? 'json',
    shareConnection: false, // no tabs to share with (and no Web Locks in Node)
    telemetryIntervalMs: 0,
  });
  subscribeAll(client, channels, (event) => process.stdout.write(`${JSON.stringify(event)}\n`));
  client.connect();
  await new Promise((done) => {
    process.once('SIGTERM', done);
    process.once('SIGINT', done);
    process.stdin.once('end', done);
    process.stdin.resume();
  });
  client.close();
  return 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.exitCode = await run();
}
