/**
 * The real system for the browser tests: a redis-server and a publisher (the project's own
 * launcher and publisher, in one Python process: publish_lines.py), the socket fleet
 * (`python -m socketsrv`) verifying Ed25519 tokens, a static server for the built client and a
 * test page, and headless Chromium through playwright-core.
 *
 * Interpreter: $HERALD_PYTHON_BIN, else <repo>/.venv/bin/python (what `./herald` creates).
 * Browser: $CHROMIUM_PATH, else /usr/bin/chromium.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
export const CLIENT_ROOT = resolve(HERE, '..', '..');
export const REPO_ROOT = resolve(CLIENT_ROOT, '..');
const PYTHON = process.env.HERALD_PYTHON_BIN ?? join(REPO_ROOT, '.venv', 'bin', 'python');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
];

/** Poll `check` until it returns a truthy value; fail with `what` (and `detail()`) after timeoutMs. */
export async function waitFor(what, check, { timeoutMs = 20_000, intervalMs = 50, detail } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await sleep(intervalMs);
  }
  const extra = detail ? `\n${await detail()}` : '';
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})${extra}`);
}

/** A promise that resolves after `ms` without keeping the process alive. */
function deadline(ms) {
  return new Promise((done) => setTimeout(done, ms).unref());
}

export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

function spawnLogged(command, args, { cwd, env, logPath }) {
  const child = spawn(command, args, { cwd, env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  const chunks = [];
  const keep = (chunk) => {
    chunks.push(chunk);
    if (chunks.length > 400) chunks.splice(0, 200);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.logTail = () => Buffer.concat(chunks).toString('utf8').slice(-4000);
  if (logPath) child.on('exit', () => writeFileSync(logPath, child.logTail()));
  return child;
}

export class Fleet {
  constructor({ redisUrl, port, publicKeyFile, workers = 1, env = {} }) {
    this.options = { redisUrl, port, publicKeyFile, workers, env };
    this.process = null;
  }

  get url() {
    return `ws://127.0.0.1:${this.options.port}/ws`;
  }

  async start() {
    const { redisUrl, port, publicKeyFile, workers, env } = this.options;
    this.process = spawnLogged(PYTHON, ['-m', 'socketsrv', '--port', String(port), '--workers', String(workers)], {
      cwd: REPO_ROOT,
      env: {
        ...process.env,
        PYTHONUNBUFFERED: '1',
        REDIS_URL: redisUrl,
        HERALD_JWT_PUBLIC_KEY_FILE: publicKeyFile,
        HERALD_RECONNECT_SPREAD_S: '0.5',
        HERALD_UNSUBSCRIBE_GRACE_S: '1',
        HERALD_LOG_LEVEL: 'WARNING',
        // Short heartbeats so that the deaf-socket test needs seconds, not half a minute.
        HERALD_PING_INTERVAL_S: '2',
        HERALD_PONG_TIMEOUT_S: '2',
        ...env,
      },
    });
    let inARow = 0;
    await waitFor(
      'the fleet to be ready',
      async () => {
        if (this.process.exitCode !== null) throw new Error(`fleet exited early:\n${this.process.logTail()}`);
        inARow = (await httpStatus(port, '/readyz')) === 200 ? inARow + 1 : 0;
        return inARow >= 4 * workers;
      },
      { timeoutMs: 30_000, detail: () => this.process.logTail() },
    );
  }

  /** SIGTERM: the fleet drains (close 4000 with a retry_ms hint) and exits; resolves on exit. */
  async terminate() {
    if (this.process === null) return null;
    const child = this.process;
    this.process = null;
    if (child.exitCode !== null) return child.exitCode;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const result = await Promise.race([exited, deadline(40_000).then(() => null)]);
    killGroup(child);
    return result === null ? null : result[0];
  }

  log() {
    return this.process?.logTail() ?? '';
  }
}

function killGroup(child) {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function httpStatus(port, path) {
  return new Promise((resolveStatus) => {
    const request = net.connect(port, '127.0.0.1');
    let data = '';
    request.setTimeout(2000, () => (request.destroy(), resolveStatus(0)));
    request.on('connect', () => request.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`));
    request.on('data', (chunk) => (data += chunk.toString()));
    request.on('error', () => resolveStatus(0));
    request.on('close', () => resolveStatus(Number(/^HTTP\/1\.[01] (\d{3})/.exec(data)?.[1] ?? 0)));
  });
}

/**
 * A TCP proxy in front of the fleet. `deafenAll()` makes every connection open so far silent in
 * both directions while its sockets stay open (a dead NAT mapping, a proxy that lost its
 * upstream); connections made afterwards are forwarded normally.
 */
export class Proxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.connections = new Set();
    this.server = net.createServer((downstream) => {
      const upstream = net.connect(this.targetPort, '127.0.0.1');
      const link = { downstream, upstream, deaf: false };
      this.connections.add(link);
      downstream.on('data', (chunk) => link.deaf || upstream.write(chunk));
      upstream.on('data', (chunk) => link.deaf || downstream.write(chunk));
      const end = () => {
        this.connections.delete(link);
        downstream.destroy();
        upstream.destroy();
      };
      downstream.on('close', end);
      upstream.on('close', () => link.deaf || end());
      downstream.on('error', end);
      upstream.on('error', () => link.deaf || end());
    });
  }

  async start() {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return this;
  }

  get url() {
    return `ws://127.0.0.1:${this.server.address().port}/ws`;
  }

  deafenAll() {
    for (const link of this.connections) link.deaf = true;
  }

  async close() {
    for (const link of this.connections) {
      link.downstream.destroy();
      link.upstream.destroy();
    }
    await new Promise((done) => this.server.close(done));
  }
}

/**
 * Redis and the project's own publisher, in one long-lived Python process (publish_lines.py,
 * which starts redis-server with the launcher the Python tests use). `publish` resolves with
 * {epoch, offset}.
 */
export class RedisPublisher {
  constructor(dir) {
    this.dir = dir;
    this.process = null;
    this.waiting = [];
    this.redisUrl = null;
  }

  /** Start the process; resolves once Redis answers and its URL is known. */
  async start() {
    this.process = spawnLogged(PYTHON, [join(HERE, 'publish_lines.py'), this.dir], {
      cwd: REPO_ROOT,
      env: { ...process.env, PYTHONPATH: REPO_ROOT, PYTHONUNBUFFERED: '1' },
    });
    createInterface({ input: this.process.stdout }).on('line', (line) => this.waiting.shift()?.(JSON.parse(line)));
    const hello = new Promise((resolveHello) => this.waiting.push(resolveHello));
    const exited = once(this.process, 'exit').then(() => null);
    const answer = await Promise.race([hello, exited, deadline(30_000).then(() => null)]);
    if (answer?.redis_url === undefined) throw new Error(`Redis and the publisher did not start:\n${this.process.logTail()}`);
    this.redisUrl = answer.redis_url;
  }

  /** Send one request line; resolves with its answer line (answers come in order). */
  ask(request) {
    return new Promise((resolveAnswer) => {
      this.waiting.push(resolveAnswer);
      this.process.stdin.write(`${JSON.stringify(request)}\n`);
    });
  }

  async publish(channel, data) {
    const answer = await this.ask({ channel, data });
    if (answer.error) throw new Error(answer.error);
    return answer;
  }

  /** Publish, retrying while Redis is unreachable (it is being restarted). */
  async publishEventually(channel, data, timeoutMs = 20_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.publish(channel, data);
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(100);
      }
    }
  }

  /** Restart Redis on the same port with nothing kept (history, epochs), as after a crash. */
  async restartRedisWithoutData() {
    await this.ask({ op: 'restart_redis' });
  }

  /** End of input: the process stops Redis and exits; killed if it takes longer than 5 s. */
  async close() {
    const child = this.process;
    if (child === null) return;
    this.process = null;
    if (child.exitCode === null) {
      const exited = once(child, 'exit');
      child.stdin.end();
      await Promise.race([exited, deadline(5000)]);
    }
    killGroup(child);
  }
}

/** An Ed25519 key pair; the public half is written where the fleet reads it. */
export class TokenIssuer {
  constructor(dir) {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    this.privateKey = privateKey;
    this.publicKeyFile = join(dir, 'jwt-public.pem');
    writeFileSync(this.publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }));
  }

  token(userId, expiresInS = 3600) {
    const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const input = `${b64({ alg: 'EdDSA', typ: 'JWT' })}.${b64({ sub: userId, exp: Math.floor(Date.now() / 1000) + expiresInS })}`;
    return `${input}.${sign(null, Buffer.from(input), this.privateKey).toString('base64url')}`;
  }
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.map': 'application/json' };

/** Serves /dist/* from client-js/dist and / as the test page. */
export async function startStaticServer() {
  const distRoot = join(CLIENT_ROOT, 'dist');
  if (!existsSync(join(distRoot, 'index.js'))) throw new Error('client-js/dist is missing: run `npm run build` first');
  const server = createServer((request, response) => {
    const path = new URL(request.url ?? '/', 'http://x').pathname;
    let file;
    if (path === '/' || path === '/index.html') file = join(HERE, 'page.html');
    else if (path.startsWith('/dist/')) file = normalize(join(distRoot, path.slice('/dist/'.length)));
    if (file === undefined || !file.startsWith(HERE) && !file.startsWith(distRoot) || !existsSync(file) || !statSync(file).isFile()) {
      response.writeHead(404).end();
      return;
    }
    response.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(response);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

export async function launchChromium() {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/** Everything one test file needs, started in order and stopped in reverse. */
export async function startSystem() {
  const dir = mkdtempSync(join(tmpdir(), 'herald-e2e-'));
  const system = { dir, stops: [] };
  try {
    system.issuer = new TokenIssuer(dir);
    system.publisher = new RedisPublisher(dir);
    system.stops.push(() => system.publisher.close());
    await system.publisher.start();
    system.fleet = new Fleet({ redisUrl: system.publisher.redisUrl, port: await freePort(), publicKeyFile: system.issuer.publicKeyFile });
    await system.fleet.start();
    system.stops.push(() => system.fleet.terminate());
    system.proxy = await new Proxy(system.fleet.options.port).start();
    system.stops.push(() => system.proxy.close());
    system.web = await startStaticServer();
    system.stops.push(() => new Promise((done) => system.web.server.close(done)));
    system.browser = await launchChromium();
    if (process.env.HERALD_E2E_TIMING) console.error('started');
    system.stops.push(() => system.browser.close());
  } catch (error) {
    await stopSystem(system);
    throw error;
  }
  return system;
}

export async function stopSystem(system) {
  for (const stop of system.stops.reverse()) {
    try {
      const t = Date.now();
      await stop();
      if (process.env.HERALD_E2E_TIMING) console.error('stop', stop.toString(), Date.now() - t);
    } catch {
      // keep stopping the rest
    }
  }
  rmSync(system.dir, { recursive: true, force: true });
}
