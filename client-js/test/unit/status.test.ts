/** `HeraldClient.status` and its `status` event (src/state.ts, src/client.ts): what a page
 * can truthfully say, from the connection state and the server's `delivery` frames
 * (docs/protocol.md#delivery). */
import { describe, expect, it, vi } from 'vitest';
import type { HeraldClient } from '../../src/client.js';
import { deliveryStatus } from '../../src/state.js';
import type { FakeSocket } from './fakes.js';
import { Q, client, connected, page, record, useFakePage } from './support.js';

useFakePage();

const PAUSED = { type: 'delivery', state: 'paused' };
const LIVE = { type: 'delivery', state: 'live' };

/** Every status `c` reports from now on, in order. */
function statuses(c: HeraldClient): string[] {
  return record((push) => c.on('status', (status) => push(status)));
}

/** Open `socket` as a worker whose bus is down does: the paused frame, then the connect reply. */
function acceptPaused(socket: FakeSocket): void {
  socket.open();
  socket.receive(PAUSED);
  const connect = socket.lastCommand('connect');
  socket.receive({
    type: 'reply',
    id: connect['id'],
    result: { version: 1, client: 'c1', user: null, expires_at: null, ping_interval_ms: 25_000, pong_timeout_ms: 10_000 },
  });
}

describe('the delivery status', () => {
  it('is disconnected before connect(), reconnecting until the connect reply, then live', () => {
    const c = client();
    const seen = statuses(c);
    expect(c.status).toBe('disconnected');
    c.connect();
    expect(c.status).toBe('reconnecting');
    page.socket().accept();
    expect(c.status).toBe('live');
    expect(seen).toEqual(['reconnecting', 'live']);
  });

  it('is delayed while the server says delivery is paused, and live again when it says so', () => {
    const c = client();
    const socket = connected(c);
    const seen = statuses(c);
    const previous = record<string>((push) => c.on('status', (_status, before) => push(before)));
    socket.receive(PAUSED);
    expect(c.status).toBe('delayed');
    expect(c.state).toBe('connected'); // the socket itself is fine
    socket.receive(LIVE);
    expect(c.status).toBe('live');
    expect(seen).toEqual(['delayed', 'live']);
    expect(previous).toEqual(['live', 'delayed']);
  });

  it('goes from reconnecting straight to delayed when the paused frame precedes the connect reply', () => {
    const c = client();
    const seen = statuses(c);
    c.connect();
    acceptPaused(page.socket());
    expect(c.status).toBe('delayed');
    expect(seen).toEqual(['reconnecting', 'delayed']); // never "live" in between
  });

  it('is reconnecting once the socket is lost, and live on a new socket the server does not pause', async () => {
    const c = client();
    const socket = connected(c);
    socket.receive(PAUSED);
    const seen = statuses(c);
    socket.serverClose(1006);
    expect(c.status).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(1_000); // the first backoff: random(0, 500 ms)
    expect(page.sockets).toHaveLength(2);
    page.socket().accept();
    expect(c.status).toBe('live');
    expect(seen).toEqual(['reconnecting', 'live']);
  });

  it('a repeated frame changes nothing and emits nothing', () => {
    const c = client();
    const socket = connected(c);
    const seen = statuses(c);
    socket.receive(LIVE);
    socket.receive(PAUSED);
    socket.receive(PAUSED);
    expect(seen).toEqual(['delayed']);
  });

  it('ignores a delivery frame with a state it does not know, or none', () => {
    const c = client();
    const socket = connected(c);
    socket.receive({ type: 'delivery', state: 'degraded' });
    socket.receive({ type: 'delivery' });
    socket.receive({ type: 'delivery', state: 1 });
    expect(c.status).toBe('live');
    expect(c.state).toBe('connected'); // not a protocol error: the socket stays
    expect(socket.closedByClient).toBeNull();
  });

  it('publications keep flowing through a pause (the server sends what it has)', () => {
    const c = client();
    const pubs: number[] = [];
    c.subscribe(Q, (pub) => pubs.push(pub.offset));
    const socket = connected(c);
    socket.replySubscribe(Q, 'e1', 0, 'none');
    socket.receive(PAUSED);
    socket.pub(Q, 1);
    socket.pub(Q, 2);
    socket.receive(LIVE);
    expect(pubs).toEqual([1, 2]);
    expect(c.status).toBe('live');
  });

  it('is disconnected after disconnect() and close(), whatever the server said last', () => {
    const c = client();
    const socket = connected(c);
    socket.receive(PAUSED);
    c.disconnect();
    expect(c.status).toBe('disconnected');
    c.connect();
    acceptPaused(page.socket());
    c.close();
    expect(c.status).toBe('disconnected');
  });

  it('reads the same frames in msgpack', () => {
    const c = client({ format: 'msgpack' });
    const socket = connected(c);
    socket.receive(PAUSED);
    expect(c.status).toBe('delayed');
    socket.receive(LIVE);
    expect(c.status).toBe('live');
  });
});

describe('deliveryStatus', () => {
  it('maps every state and pause to one status', () => {
    expect(deliveryStatus('connected', false)).toBe('live');
    expect(deliveryStatus('connected', true)).toBe('delayed');
    expect(deliveryStatus('connecting', true)).toBe('reconnecting');
    expect(deliveryStatus('connecting', false)).toBe('reconnecting');
    expect(deliveryStatus('disconnected', true)).toBe('disconnected');
  });
});
