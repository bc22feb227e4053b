/** The connection state machine (src/connection.ts, src/state.ts), seen through the client:
 * connecting, backoff, close codes, and the page's visibility and network signals. */
import { describe, expect, it, vi } from 'vitest';
import type { HeraldClient } from '../../src/client.js';
import { InvalidStateError } from '../../src/errors.js';
import { type StateInfo, checkTransition } from '../../src/state.js';
import { Q, client, connected, page, record, useFakePage } from './support.js';

useFakePage();

describe('connecting', () => {
  it('sends connect with the provider token, then reports connected', async () => {
    const c = client({ getToken: () => 'tok-1' });
    const states = record<string>((push) => c.on('state', push));
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const socket = page.socket();
    expect(socket.protocols[0]).toBe('herald.v1.json');
    expect(socket.opened.map((c) => c['op'])).toEqual(['connect']);
    socket.accept({ user: '42' });
    expect(socket.lastCommand('connect')['token']).toBe('tok-1');
    expect(states).toEqual(['connecting', 'connected']);
    expect(c.state).toBe('connected');
  });

  it('connects anonymously (no token field) without a provider', () => {
    const c = client();
    connected(c);
    expect(page.socket().lastCommand('connect')).not.toHaveProperty('token');
    expect(c.state).toBe('connected');
  });

  it('answers heartbeats with pong', () => {
    const socket = connected(client());
    socket.receive({ type: 'hb' });
    expect(socket.sent.at(-1)).toEqual({ op: 'pong' });
  });
});

describe('state transitions', () => {
  it('allows the transitions of the diagram and refuses the others, naming both states', () => {
    expect(() => checkTransition('disconnected', 'connecting')).not.toThrow();
    expect(() => checkTransition('connecting', 'connecting')).not.toThrow();
    expect(() => checkTransition('connecting', 'connected')).not.toThrow();
    expect(() => checkTransition('connected', 'connecting')).not.toThrow();
    expect(() => checkTransition('connected', 'disconnected')).not.toThrow();
    expect(() => checkTransition('disconnected', 'connected')).toThrow(InvalidStateError);
    expect(() => checkTransition('connected', 'connected')).toThrow(/from connected to connected/);
  });
});

describe('backoff', () => {
  /** A client whose backoff draws the top of each window (base 100 ms, cap `capMs`), stable
   * after 5 s, and the `connecting` reports it makes. */
  function drawingTheMostOfEachWindow(capMs: number): { c: HeraldClient; delays: StateInfo[] } {
    page.randomValue = 0.999_999;
    const c = client({ backoff: { baseMs: 100, capMs }, stableAfterMs: 5000 });
    return { c, delays: record<StateInfo>((push) => c.on('connecting', push)) };
  }

  it('grows the backoff window on repeated failures, up to the cap, and resets it once stable', async () => {
    const { c, delays } = drawingTheMostOfEachWindow(1000);
    c.connect();
    for (let i = 0; i < 6; i++) {
      page.socket().serverClose(1006);
      await vi.advanceTimersByTimeAsync(1000);
    }
    expect(delays.map((d) => d.retryInMs).filter((d) => d !== undefined)).toEqual([99, 199, 399, 799, 999, 999]);
    page.socket().accept();
    await vi.advanceTimersByTimeAsync(5000);
    page.socket().serverClose(1006);
    expect(delays.at(-1)?.retryInMs).toBe(99);
  });

  it('does not reset the backoff for a server that closes right after the connect reply', async () => {
    const { c, delays } = drawingTheMostOfEachWindow(10_000);
    c.connect();
    for (let i = 0; i < 3; i++) {
      page.socket().accept();
      page.socket().serverClose(1011);
      await vi.advanceTimersByTimeAsync(10_000);
    }
    expect(delays.map((d) => d.retryInMs).filter((d) => d !== undefined)).toEqual([99, 199, 399]);
  });

  it('waits at least floodDelayMs after close 4006', () => {
    const c = client({ floodDelayMs: 60_000 });
    const delays = record<StateInfo>((push) => c.on('connecting', push));
    connected(c);
    page.socket().serverClose(4006);
    expect(delays.at(-1)?.retryInMs).toBe(60_000);
  });
});

describe('stopping', () => {
  it('stops on a terminal close code (1000, unknown 45xx) and says why', () => {
    for (const code of [1000, 4599]) {
      const c = client();
      const stopped = record<StateInfo>((push) => c.on('disconnected', push));
      connected(c);
      page.socket().serverClose(code, 'bye');
      expect(c.state).toBe('disconnected');
      expect(stopped).toEqual([{ code, reason: 'bye' }]);
    }
  });

  it('on 4500 asks the provider once more, reconnects with the new token, and stops when it is refused too', async () => {
    let n = 0;
    const getToken = vi.fn(() => `tok-${++n}`);
    const c = client({ getToken });
    const stopped = record<StateInfo>((push) => c.on('disconnected', push));
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    page.socket().open();
    page.socket().serverClose(4500, 'unauthorized');
    expect(c.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(500);
    expect(getToken).toHaveBeenCalledTimes(2);
    expect(page.sockets).toHaveLength(2);
    page.socket().open();
    expect(page.socket().lastCommand('connect')['token']).toBe('tok-2');
    page.socket().serverClose(4500, 'unauthorized');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(c.state).toBe('disconnected');
    expect(stopped).toEqual([{ code: 4500, reason: 'unauthorized' }]);
    expect(page.sockets).toHaveLength(2);
  });

  it('never reconnects with a refused token: the same token again stops at once', async () => {
    const c = client({ getToken: () => 'same' });
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    page.socket().open();
    page.socket().serverClose(4500, 'unauthorized');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(c.state).toBe('disconnected');
    expect(page.sockets).toHaveLength(1);
  });

  it('stops at once on 4500 without a token provider', () => {
    const c = client();
    connected(c);
    page.socket().serverClose(4500);
    expect(c.state).toBe('disconnected');
  });
});

describe('the page: visibility and network', () => {
  it('does not reconnect from a hidden tab, and catches up as soon as it is shown', async () => {
    const c = client();
    const sub = c.subscribe(Q);
    connected(c);
    page.socket().replySubscribe(Q, 'e1', 3, 'none');
    page.setVisible(false);
    page.socket().serverClose(1006);
    await vi.advanceTimersByTimeAsync(600_000);
    expect(page.sockets).toHaveLength(1);
    expect(c.state).toBe('connecting');
    page.setVisible(true);
    expect(page.sockets).toHaveLength(2);
    page.socket().accept();
    expect(page.socket().lastCommand('subscribe')['since']).toEqual({ epoch: 'e1', offset: 3 });
    page.socket().replySubscribe(Q, 'e1', 3, 'recovered');
    expect(sub.state).toBe('subscribed');
  });

  it('keeps the restart hint when the page is shown during it, and no longer', async () => {
    const c = client();
    connected(c);
    page.setVisible(false);
    page.socket().serverClose(4000, 'restart retry_ms=4000');
    await vi.advanceTimersByTimeAsync(1000);
    page.setVisible(true);
    await vi.advanceTimersByTimeAsync(3000);
    expect(page.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(250);
    expect(page.sockets).toHaveLength(2);
  });

  it.each([
    [4003, 'state lost retry_ms=2000'],
    [4007, 'rebalance retry_ms=2000'],
  ])('waits for the hint of a %i close plus the backoff before reconnecting', async (code, reason) => {
    const c = client();
    const connecting = record<StateInfo>((push) => c.on('connecting', push));
    connected(c);
    page.socket().serverClose(code, reason);
    expect(connecting.at(-1)).toMatchObject({ code, retryInMs: 2250 }); // 2000 + 0.5 * 500
    await vi.advanceTimersByTimeAsync(2249);
    expect(page.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(page.sockets).toHaveLength(2);
  });

  it('keeps the hint of a 4003 close when the page is shown during it', async () => {
    const c = client();
    connected(c);
    page.setVisible(false);
    page.socket().serverClose(4003, 'state lost retry_ms=4000');
    await vi.advanceTimersByTimeAsync(1000);
    page.setVisible(true);
    await vi.advanceTimersByTimeAsync(3000);
    expect(page.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(250);
    expect(page.sockets).toHaveLength(2);
  });

  it('adds nothing for a close without a hint', async () => {
    const c = client();
    const connecting = record<StateInfo>((push) => c.on('connecting', push));
    connected(c);
    page.socket().serverClose(4001, 'slow');
    expect(connecting.at(-1)).toMatchObject({ code: 4001, retryInMs: 250 });
  });

  it('drops the socket when the browser goes offline, waits, and reconnects when online', async () => {
    const c = client();
    const socket = connected(c);
    page.setOnline(false);
    expect(socket.closedByClient).not.toBeNull();
    expect(c.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(600_000);
    expect(page.sockets).toHaveLength(1);
    page.setOnline(true);
    expect(page.sockets).toHaveLength(2);
  });

  it('does not open a socket while offline at start', async () => {
    page.setOnline(false);
    const c = client();
    c.connect();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(page.sockets).toHaveLength(0);
    page.setOnline(true);
    expect(page.sockets).toHaveLength(1);
  });
});
