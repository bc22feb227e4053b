/** What the client counts and reports to the fleet (src/telemetry.ts, docs/protocol.md#client-telemetry). */
import { describe, expect, it, vi } from 'vitest';
import type { HeraldClient } from '../../src/client.js';
import { reconnectKey } from '../../src/telemetry.js';
import type { FakeSocket, Wire } from './fakes.js';
import { Q, client, connected, page, useFakePage } from './support.js';

useFakePage();

const INTERVAL = 60_000;
/** Heartbeat settings under which a socket never goes deaf during a test. */
const QUIET = { ping_interval_ms: 100_000_000, pong_timeout_ms: 10_000 };

/** `connected` (support.ts) with the QUIET heartbeat settings. */
function connectedQuietly(c: HeraldClient): FakeSocket {
  return connected(c, QUIET);
}

/** A client whose first report comes after exactly half an interval (random() = 0). */
function reportingClient(): HeraldClient {
  page.randomValue = 0;
  return client({ telemetryIntervalMs: INTERVAL, backoff: { baseMs: 100, capMs: 100 } });
}

/** Let the next report fall due; the telemetry commands sent on `socket` so far. */
async function nextReport(socket: FakeSocket, waitMs = INTERVAL): Promise<Wire[]> {
  await vi.advanceTimersByTimeAsync(waitMs);
  return socket.commands('telemetry');
}

/** Answer the last telemetry command on `socket` with a reply, or with error `code`. */
function answer(socket: FakeSocket, code?: number): void {
  const id = socket.lastCommand('telemetry')['id'];
  if (code === undefined) socket.receive({ type: 'reply', id, result: {} });
  else socket.receive({ type: 'error', id, code, message: 'refused' });
}

/** Lose the socket with `code` and let the client reconnect; the new socket, accepted. */
async function reconnectAfter(socket: FakeSocket, code: number, downMs = 100): Promise<FakeSocket> {
  socket.serverClose(code);
  await vi.advanceTimersByTimeAsync(downMs);
  const next = page.socket();
  expect(next).not.toBe(socket);
  next.accept(QUIET);
  return next;
}

describe('the reconnect key of a close code', () => {
  it('is the code for the close table and 1006, local for the client, other for the rest', () => {
    expect(reconnectKey(4001)).toBe('4001');
    expect(reconnectKey(1006)).toBe('1006');
    expect(reconnectKey(0)).toBe('local');
    expect(reconnectKey(1001)).toBe('other');
    expect(reconnectKey(4999)).toBe('other');
  });
});

describe('counting', () => {
  it('counts reconnects by close code and the time without a connection', async () => {
    const c = reportingClient();
    let socket = connectedQuietly(c);
    socket = await reconnectAfter(socket, 4001, 100);
    socket = await reconnectAfter(socket, 1006, 100);
    const [report] = await nextReport(socket, INTERVAL / 2);
    expect(report?.['counts']).toEqual({ reconnects: { '4001': 1, '1006': 1 }, disconnected_ms: 200 });
  });

  it('counts recoveries by result', async () => {
    const c = reportingClient();
    c.subscribe(Q, undefined, { since: { epoch: 'e1', offset: 3 } });
    c.subscribe('question:7', undefined, { since: { epoch: 'e1', offset: 3 } });
    const socket = connectedQuietly(c);
    socket.replySubscribe(Q, 'e1', 5, 'recovered');
    socket.replySubscribe('question:7', 'e2', 9, 'failed');
    const [report] = await nextReport(socket, INTERVAL / 2);
    expect(report?.['counts']).toEqual({ recovered: 1, recovery_failed: 1 });
  });

  it('counts a gap in the offsets and the reconnect it causes as local', async () => {
    const c = reportingClient();
    c.subscribe(Q);
    let socket = connectedQuietly(c);
    socket.replySubscribe(Q, 'e1', 5, 'none');
    socket.pub(Q, 7);
    await vi.advanceTimersByTimeAsync(100);
    socket = page.socket();
    socket.accept(QUIET);
    const [report] = await nextReport(socket, INTERVAL / 2);
    expect(report?.['counts']).toMatchObject({ gaps: 1, reconnects: { local: 1 } });
  });

  it('counts a deaf socket', async () => {
    const c = reportingClient();
    connected(c, { ping_interval_ms: 1000, pong_timeout_ms: 500 });
    await vi.advanceTimersByTimeAsync(1500 + 100);
    const socket = page.socket();
    socket.accept(QUIET);
    const [report] = await nextReport(socket, INTERVAL / 2);
    expect(report?.['counts']).toMatchObject({ deaf: 1, reconnects: { local: 1 } });
  });

  it('counts the time delivery was paused, up to the report while it lasts', async () => {
    const c = reportingClient();
    const socket = connectedQuietly(c);
    await vi.advanceTimersByTimeAsync(10_000);
    socket.receive({ type: 'delivery', state: 'paused' });
    const [first] = await nextReport(socket, INTERVAL / 2 - 10_000);
    expect(first?.['counts']).toEqual({ delayed_ms: 20_000 });
    answer(socket);
    await vi.advanceTimersByTimeAsync(5_000);
    socket.receive({ type: 'delivery', state: 'live' });
    const reports = await nextReport(socket, INTERVAL - 5_000);
    expect(reports.at(-1)?.['counts']).toEqual({ delayed_ms: 5_000 });
  });

  it('does not count time stopped by disconnect() as time without a connection', async () => {
    const c = reportingClient();
    connectedQuietly(c);
    c.disconnect();
    await vi.advanceTimersByTimeAsync(300_000);
    const socket = connectedQuietly(c);
    expect(await nextReport(socket, INTERVAL / 2)).toEqual([]);
  });
});

describe('the periodic report', () => {
  it('sends nothing when nothing changed', async () => {
    const c = reportingClient();
    const socket = connectedQuietly(c);
    expect(await nextReport(socket, 10 * INTERVAL)).toEqual([]);
  });

  it('sends deltas: what an accepted report carried is not sent again', async () => {
    const c = reportingClient();
    let socket = connectedQuietly(c);
    socket = await reconnectAfter(socket, 4001);
    await nextReport(socket, INTERVAL / 2);
    answer(socket);
    expect(await nextReport(socket)).toHaveLength(1); // nothing new: no second report
    socket.receive({ type: 'delivery', state: 'paused' });
    socket.receive({ type: 'delivery', state: 'live' });
    c.subscribe(Q, undefined, { since: { epoch: 'e1', offset: 1 } });
    socket.replySubscribe(Q, 'e1', 1, 'recovered');
    const reports = await nextReport(socket);
    expect(reports).toHaveLength(2);
    expect(reports[1]?.['counts']).toEqual({ recovered: 1 });
  });

  it('keeps what a 429 refused and sends it with the next report', async () => {
    const c = reportingClient();
    let socket = connectedQuietly(c);
    socket = await reconnectAfter(socket, 4000);
    await nextReport(socket, INTERVAL / 2);
    answer(socket, 429);
    c.subscribe(Q, undefined, { since: { epoch: 'e1', offset: 1 } });
    socket.replySubscribe(Q, 'e1', 1, 'failed');
    const reports = await nextReport(socket);
    expect(reports.at(-1)?.['counts']).toEqual({
      reconnects: { '4000': 1 },
      disconnected_ms: 100,
      recovery_failed: 1,
    });
  });

  it('keeps what a lost socket left unanswered and reports it on the next one', async () => {
    const c = reportingClient();
    let socket = connectedQuietly(c);
    socket = await reconnectAfter(socket, 4001);
    await nextReport(socket, INTERVAL / 2); // sent, never answered
    socket = await reconnectAfter(socket, 4002);
    const [report] = await nextReport(socket, INTERVAL / 2);
    expect(report?.['counts']).toEqual({ reconnects: { '4001': 1, '4002': 1 }, disconnected_ms: 200 });
  });

  it('stops reporting on a socket whose server does not know the command (404)', async () => {
    const c = reportingClient();
    let socket = connectedQuietly(c);
    socket = await reconnectAfter(socket, 4001);
    await nextReport(socket, INTERVAL / 2);
    answer(socket, 404);
    socket.receive({ type: 'delivery', state: 'paused' });
    expect(await nextReport(socket, 5 * INTERVAL)).toHaveLength(1);
  });

  it('spreads the first report over the second half of the interval', async () => {
    page.randomValue = 0.999;
    const c = client({ telemetryIntervalMs: INTERVAL, backoff: { baseMs: 100, capMs: 100 } });
    let socket = connectedQuietly(c);
    socket = await reconnectAfter(socket, 4001);
    expect(await nextReport(socket, INTERVAL - 100)).toEqual([]);
    expect(await nextReport(socket, 100)).toHaveLength(1);
  });

  it('sends no more than the server counts per report and keeps the rest for later', async () => {
    const c = reportingClient();
    connectedQuietly(c);
    page.setOnline(false); // two hours without a network: no socket meanwhile
    await vi.advanceTimersByTimeAsync(2 * 3_600_000);
    page.setOnline(true);
    const socket = page.socket();
    socket.accept(QUIET);
    await nextReport(socket, INTERVAL / 2);
    expect(socket.lastCommand('telemetry')['counts']).toEqual({ disconnected_ms: 3_600_000 });
    answer(socket);
    const reports = await nextReport(socket);
    expect(reports.at(-1)?.['counts']).toEqual({ disconnected_ms: 3_600_000 });
  });

  it('reports in msgpack too', async () => {
    page.randomValue = 0;
    const c = client({ format: 'msgpack', telemetryIntervalMs: INTERVAL, backoff: { baseMs: 100, capMs: 100 } });
    let socket = connectedQuietly(c);
    socket = await reconnectAfter(socket, 4003);
    const [report] = await nextReport(socket, INTERVAL / 2);
    expect(report).toMatchObject({ op: 'telemetry', counts: { reconnects: { '4003': 1 }, disconnected_ms: 100 } });
    expect(typeof report?.['id']).toBe('number');
  });

  it('is off with an interval of 0', async () => {
    const c = client({ telemetryIntervalMs: 0, backoff: { baseMs: 100, capMs: 100 } });
    let socket = connectedQuietly(c);
    socket = await reconnectAfter(socket, 4001);
    expect(await nextReport(socket, 10 * INTERVAL)).toEqual([]);
  });
});
