/** Whether the socket is alive (src/liveness.ts): the connect deadline, deaf sockets, probes. */
import { describe, expect, it, vi } from 'vitest';
import { InvalidStateError } from '../../src/errors.js';
import { Liveness } from '../../src/liveness.js';
import { LocalCause, type StateInfo } from '../../src/state.js';
import { client, connected, page, record, useFakePage } from './support.js';

useFakePage();

describe('the connect deadline', () => {
  it('gives up on a socket that opens but never answers connect, and retries', async () => {
    const c = client({ connectTimeoutMs: 5000 });
    c.connect();
    page.socket().open();
    await vi.advanceTimersByTimeAsync(5000);
    expect(page.sockets[0]?.closedByClient).not.toBeNull();
    expect(c.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(1000);
    expect(page.sockets).toHaveLength(2);
  });

  it('watches heartbeats only after a connect deadline, and says which state refused it', () => {
    const dead: string[] = [];
    const liveness = new Liveness(page, (cause) => dead.push(cause));
    expect(() => liveness.watch(1000, 500)).toThrow(InvalidStateError);
    expect(() => liveness.watch(1000, 500)).toThrow(/in state idle/);
    liveness.opened(5000);
    liveness.watch(1000, 500);
    expect(liveness.state).toBe('watching');
    expect(dead).toEqual([]);
  });
});

describe('deaf sockets', () => {
  it('reconnects when no frame arrives within ping_interval + pong_timeout', async () => {
    const c = client();
    const connecting = record<StateInfo>((push) => c.on('connecting', push));
    connected(c, { ping_interval_ms: 1000, pong_timeout_ms: 500 });
    await vi.advanceTimersByTimeAsync(1499);
    expect(page.socket().closedByClient).toBeNull();
    await vi.advanceTimersByTimeAsync(1);
    expect(page.sockets[0]?.closedByClient).not.toBeNull();
    expect(connecting.at(-1)?.reason).toBe(LocalCause.DEAF);
    await vi.advanceTimersByTimeAsync(250);
    expect(page.sockets).toHaveLength(2);
  });

  it('keeps a socket that hears heartbeats', async () => {
    const c = client();
    const socket = connected(c, { ping_interval_ms: 1000, pong_timeout_ms: 500 });
    for (let i = 0; i < 20; i++) {
      await vi.advanceTimersByTimeAsync(1000);
      socket.receive({ type: 'hb' });
    }
    expect(socket.closedByClient).toBeNull();
    expect(c.state).toBe('connected');
    expect(socket.commands('pong')).toHaveLength(20);
  });

  it('probes the socket when the page is shown again, and reconnects if the probe goes unanswered', async () => {
    const c = client();
    const socket = connected(c, { ping_interval_ms: 25_000, pong_timeout_ms: 10_000 });
    page.setVisible(false);
    await vi.advanceTimersByTimeAsync(5000);
    page.setVisible(true);
    expect(socket.lastCommand('ping')).toBeDefined();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(socket.closedByClient).not.toBeNull();
    expect(c.state).toBe('connecting');
  });

  it('keeps the socket when the probe is answered', async () => {
    const socket = connected(client());
    page.setVisible(false);
    page.setVisible(true);
    socket.receive({ type: 'reply', id: socket.lastCommand('ping')['id'], result: {} });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(socket.closedByClient).toBeNull();
  });
});
