import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HeraldClient, type HeraldClientOptions } from '../../src/client.js';
import { LocalCause, type StateInfo } from '../../src/state.js';
import type { Publication, RecoveryFailedEvent, SubscriptionError } from '../../src/subscription.js';
import { type FakePage, fakePage } from './fakes.js';

const URL = 'ws://herald.test/ws';
const Q = 'question:42';

let page: FakePage;

beforeEach(() => {
  vi.useFakeTimers({ now: new Date('2026-01-01T00:00:00Z') });
  page = fakePage();
});

afterEach(() => {
  vi.useRealTimers();
});

function client(options: HeraldClientOptions = {}): HeraldClient {
  return new HeraldClient(URL, { environment: page, shareConnection: false, ...options });
}

function record<T>(subscribe: (push: (value: T) => void) => void): T[] {
  const values: T[] = [];
  subscribe((value) => values.push(value));
  return values;
}

const offsets = (pubs: Publication[]): number[] => pubs.map((p) => p.offset);

describe('connecting', () => {
  it('sends connect with the provider token, then reports connected', async () => {
    const c = client({ getToken: () => 'tok-1' });
    const states = record<string>((push) => c.on('state', push));
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const socket = page.socket();
    expect(socket.protocols).toEqual(['herald.v1.json']);
    socket.accept({ user: '42' });
    expect(socket.lastCommand('connect')['token']).toBe('tok-1');
    expect(states).toEqual(['connecting', 'connected']);
    expect(c.state).toBe('connected');
  });

  it('connects anonymously (no token field) without a provider', () => {
    const c = client();
    c.connect();
    page.socket().accept();
    expect(page.socket().lastCommand('connect')).not.toHaveProperty('token');
    expect(c.state).toBe('connected');
  });

  it('answers heartbeats with pong', () => {
    client().connect();
    const socket = page.socket();
    socket.accept();
    socket.receive({ type: 'hb' });
    expect(socket.sent.at(-1)).toEqual({ op: 'pong' });
  });

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
});

describe('subscriptions', () => {
  it('subscribes without since, delivers publications in order and drops duplicates', () => {
    const c = client();
    const sub = c.subscribe(Q);
    const pubs = record<Publication>((push) => sub.on('publication', push));
    c.connect();
    const socket = page.socket();
    socket.accept();
    expect(socket.lastCommand('subscribe')).toEqual({ op: 'subscribe', id: 2, channel: Q });
    expect(sub.state).toBe('subscribing');
    socket.replySubscribe(Q, 'e1', 10, 'none');
    expect(sub.state).toBe('subscribed');
    socket.pub(Q, 11);
    socket.pub(Q, 11);
    socket.pub(Q, 12);
    socket.pub(Q, 10);
    expect(offsets(pubs)).toEqual([11, 12]);
    expect(pubs[0]).toEqual({ channel: Q, epoch: 'e1', offset: 11, data: { n: 11 } });
    expect(sub.position).toEqual({ epoch: 'e1', offset: 12 });
  });

  it('ignores publications of channels it is not subscribed to', () => {
    const c = client();
    const sub = c.subscribe(Q);
    const pubs = record<Publication>((push) => sub.on('publication', push));
    c.connect();
    const socket = page.socket();
    socket.accept();
    socket.pub(Q, 1); // before the reply: not live yet
    socket.pub('question:7', 1);
    socket.replySubscribe(Q, 'e1', 0, 'none');
    socket.pub(Q, 1);
    expect(offsets(pubs)).toEqual([1]);
  });

  it('a handler passed to subscribe receives the publications', () => {
    const c = client();
    const seen: unknown[] = [];
    c.subscribe(Q, (pub) => seen.push(pub.data));
    c.connect();
    page.socket().accept();
    page.socket().replySubscribe(Q, 'e1', 0, 'none');
    page.socket().pub(Q, 1, { score: 3 });
    expect(seen).toEqual([{ score: 3 }]);
  });

  it('subscribes with since when given a position (state loaded over HTTP)', () => {
    const c = client();
    c.subscribe(Q, undefined, { since: { epoch: 'e9', offset: 4 } });
    c.connect();
    page.socket().accept();
    expect(page.socket().lastCommand('subscribe')['since']).toEqual({ epoch: 'e9', offset: 4 });
  });

  it('unsubscribe sends the command and stops delivery', () => {
    const c = client();
    const sub = c.subscribe(Q);
    const pubs = record<Publication>((push) => sub.on('publication', push));
    c.connect();
    const socket = page.socket();
    socket.accept();
    socket.replySubscribe(Q, 'e1', 0, 'none');
    sub.unsubscribe();
    expect(socket.lastCommand('unsubscribe')['channel']).toBe(Q);
    socket.pub(Q, 1);
    expect(pubs).toEqual([]);
    expect(sub.state).toBe('unsubscribed');
    expect(c.getSubscription(Q)).toBeUndefined();
  });

  it('refuses a second subscription to the same channel', () => {
    const c = client();
    c.subscribe(Q);
    expect(() => c.subscribe(Q)).toThrow(/already subscribed/);
  });

  it('reports a refused channel (403) as an error and stops', () => {
    const c = client();
    const sub = c.subscribe('user:7');
    const errors = record<SubscriptionError>((push) => sub.on('error', push));
    c.connect();
    const socket = page.socket();
    socket.accept();
    const id = socket.lastCommand('subscribe')['id'];
    socket.receive({ type: 'error', id, code: 403, message: 'permission denied' });
    expect(errors).toEqual([{ channel: 'user:7', code: 403, message: 'permission denied' }]);
    expect(sub.state).toBe('unsubscribed');
  });

  it('sends a subscribe refused with 503 or 429 again after a backoff', async () => {
    const c = client();
    const sub = c.subscribe(Q);
    c.connect();
    const socket = page.socket();
    socket.accept();
    socket.receive({ type: 'error', id: socket.lastCommand('subscribe')['id'], code: 503, message: 'unavailable' });
    expect(socket.commands('subscribe')).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(500);
    expect(socket.commands('subscribe')).toHaveLength(2);
    socket.receive({ type: 'error', id: socket.lastCommand('subscribe')['id'], code: 429, message: 'too many' });
    await vi.advanceTimersByTimeAsync(1000);
    expect(socket.commands('subscribe')).toHaveLength(3);
    socket.replySubscribe(Q, 'e1', 0, 'none');
    expect(sub.state).toBe('subscribed');
  });
});

describe('reconnecting with recovery', () => {
  function connectedWithPubs(c: HeraldClient): void {
    c.connect();
    const socket = page.socket();
    socket.accept();
    socket.replySubscribe(Q, 'e1', 10, 'none');
    socket.pub(Q, 11);
    socket.pub(Q, 12);
  }

  it('waits for the restart hint plus the backoff, then resubscribes from the last position', async () => {
    const c = client();
    const sub = c.subscribe(Q);
    const pubs = record<Publication>((push) => sub.on('publication', push));
    const states = record<string>((push) => sub.on('state', push));
    const connecting = record<StateInfo>((push) => c.on('connecting', push));
    connectedWithPubs(c);
    page.socket().serverClose(4000, 'restart retry_ms=3000');
    expect(sub.state).toBe('subscribing');
    expect(connecting.at(-1)).toMatchObject({ code: 4000, retryInMs: 3250 }); // 3000 + 0.5 * 500
    await vi.advanceTimersByTimeAsync(3249);
    expect(page.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(page.sockets).toHaveLength(2);
    const socket = page.socket();
    socket.accept();
    expect(socket.lastCommand('subscribe')['since']).toEqual({ epoch: 'e1', offset: 12 });
    socket.replySubscribe(Q, 'e1', 15, 'recovered');
    for (const offset of [13, 14, 15, 16]) socket.pub(Q, offset);
    expect(offsets(pubs)).toEqual([11, 12, 13, 14, 15, 16]);
    expect(states).toEqual(['subscribed', 'subscribing', 'subscribed']); // it was subscribing already
  });

  it('tells the app plainly when recovery failed, and continues from the new position', async () => {
    const c = client();
    const sub = c.subscribe(Q);
    const failures = record<RecoveryFailedEvent>((push) => sub.on('recoveryFailed', push));
    const pubs = record<Publication>((push) => sub.on('publication', push));
    connectedWithPubs(c);
    page.socket().serverClose(1006);
    await vi.advanceTimersByTimeAsync(250);
    const socket = page.socket();
    socket.accept();
    socket.replySubscribe(Q, 'e2', 3, 'failed');
    expect(failures).toEqual([{ channel: Q, position: { epoch: 'e2', offset: 3 } }]);
    socket.pub(Q, 4);
    expect(pubs.at(-1)).toMatchObject({ epoch: 'e2', offset: 4 });
  });

  it('treats a gap in offsets as a broken socket: reconnects and recovers', async () => {
    const c = client();
    c.subscribe(Q);
    connectedWithPubs(c);
    const first = page.socket();
    first.pub(Q, 14);
    expect(first.closedByClient).not.toBeNull();
    await vi.advanceTimersByTimeAsync(250);
    page.socket().accept();
    expect(page.socket().lastCommand('subscribe')['since']).toEqual({ epoch: 'e1', offset: 12 });
  });

  it('grows the backoff window on repeated failures, up to the cap, and resets it once stable', async () => {
    page.randomValue = 0.999_999;
    const c = client({ backoff: { baseMs: 100, capMs: 1000 }, stableAfterMs: 5000 });
    const delays = record<StateInfo>((push) => c.on('connecting', push));
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
    page.randomValue = 0.999_999;
    const c = client({ backoff: { baseMs: 100, capMs: 10_000 }, stableAfterMs: 5000 });
    const delays = record<StateInfo>((push) => c.on('connecting', push));
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
    c.connect();
    page.socket().accept();
    page.socket().serverClose(4006);
    expect(delays.at(-1)?.retryInMs).toBe(60_000);
  });
});

describe('stopping', () => {
  it('stops on a terminal close code (1000, unknown 45xx) and says why', () => {
    for (const code of [1000, 4599]) {
      const c = client();
      const stopped = record<StateInfo>((push) => c.on('disconnected', push));
      c.connect();
      page.socket().accept();
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
    c.connect();
    page.socket().accept();
    page.socket().serverClose(4500);
    expect(c.state).toBe('disconnected');
  });

  it('close() unsubscribes, closes the socket and stays closed', async () => {
    const c = client();
    c.subscribe(Q);
    c.connect();
    const socket = page.socket();
    socket.accept();
    c.close();
    expect(socket.closedByClient?.code).toBe(1000);
    expect(c.state).toBe('disconnected');
    await vi.advanceTimersByTimeAsync(120_000);
    expect(page.sockets).toHaveLength(1);
    expect(() => c.connect()).toThrow(/closed/);
  });
});

describe('tokens', () => {
  it('fetches a fresh token after 4004 before reconnecting', async () => {
    let n = 0;
    const c = client({ getToken: () => `tok-${++n}` });
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    page.socket().accept();
    page.socket().serverClose(4004, 'token expired');
    await vi.advanceTimersByTimeAsync(250);
    page.socket().open();
    expect(page.socket().lastCommand('connect')['token']).toBe('tok-2');
  });

  it('fetches a new token shortly before expiry and sends it over the open connection with refresh', async () => {
    let n = 0;
    const c = client({ getToken: async () => `tok-${++n}`, tokenRefreshMarginMs: 30_000 });
    c.subscribe(Q);
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const socket = page.socket();
    socket.accept({ expires_at: Date.now() / 1000 + 300, ping_interval_ms: 3_600_000 });
    socket.replySubscribe(Q, 'e1', 5, 'none');
    await vi.advanceTimersByTimeAsync(269_000);
    expect(socket.commands('refresh')).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1000);
    const refresh = socket.lastCommand('refresh');
    expect(refresh['token']).toBe('tok-2');
    socket.receive({ type: 'reply', id: refresh['id'], result: { expires_at: Date.now() / 1000 + 300 } });
    // The same socket lives on, and the next renewal is planned from the new expiry.
    expect(page.sockets).toHaveLength(1);
    expect(socket.closedByClient).toBeNull();
    expect(c.state).toBe('connected');
    await vi.advanceTimersByTimeAsync(270_000);
    expect(socket.lastCommand('refresh')['token']).toBe('tok-3');
    expect(page.sockets).toHaveLength(1);
  });

  it('reconnects with the fresh token, recovering its channels, when the server refuses refresh', async () => {
    let n = 0;
    const c = client({ getToken: async () => `tok-${++n}`, tokenRefreshMarginMs: 30_000 });
    c.subscribe(Q);
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const first = page.socket();
    first.accept({ expires_at: Date.now() / 1000 + 300, ping_interval_ms: 3_600_000 });
    first.replySubscribe(Q, 'e1', 5, 'none');
    await vi.advanceTimersByTimeAsync(270_000);
    const refresh = first.lastCommand('refresh');
    first.receive({ type: 'error', id: refresh['id'], code: 404, message: 'unknown command' });
    expect(first.closedByClient).not.toBeNull();
    expect(page.sockets).toHaveLength(2);
    page.socket().accept();
    expect(page.socket().lastCommand('connect')['token']).toBe('tok-2');
    expect(page.socket().lastCommand('subscribe')['since']).toEqual({ epoch: 'e1', offset: 5 });
  });

  it('renews a token shorter-lived than the margin at half its remaining life, not in a loop', async () => {
    let n = 0;
    const c = client({ getToken: async () => `tok-${++n}`, tokenRefreshMarginMs: 30_000 });
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const socket = page.socket();
    socket.accept({ expires_at: Date.now() / 1000 + 10, ping_interval_ms: 3_600_000 });
    await vi.advanceTimersByTimeAsync(4999);
    expect(socket.commands('refresh')).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(socket.commands('refresh')).toHaveLength(1);
    expect(n).toBe(2);
  });

  it('retries with backoff when the token provider fails', async () => {
    let calls = 0;
    const c = client({
      getToken: async () => {
        calls++;
        if (calls === 1) throw new Error('network down');
        return 'tok';
      },
    });
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(page.sockets).toHaveLength(0);
    expect(c.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(250);
    expect(page.sockets).toHaveLength(1);
  });
});

describe('deaf sockets', () => {
  it('reconnects when no frame arrives within ping_interval + pong_timeout', async () => {
    const c = client();
    const connecting = record<StateInfo>((push) => c.on('connecting', push));
    c.connect();
    page.socket().accept({ ping_interval_ms: 1000, pong_timeout_ms: 500 });
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
    c.connect();
    const socket = page.socket();
    socket.accept({ ping_interval_ms: 1000, pong_timeout_ms: 500 });
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
    c.connect();
    const socket = page.socket();
    socket.accept({ ping_interval_ms: 25_000, pong_timeout_ms: 10_000 });
    page.setVisible(false);
    await vi.advanceTimersByTimeAsync(5000);
    page.setVisible(true);
    expect(socket.lastCommand('ping')).toBeDefined();
    await vi.advanceTimersByTimeAsync(10_000);
    expect(socket.closedByClient).not.toBeNull();
    expect(c.state).toBe('connecting');
  });

  it('keeps the socket when the probe is answered', async () => {
    const c = client();
    c.connect();
    const socket = page.socket();
    socket.accept();
    page.setVisible(false);
    page.setVisible(true);
    socket.receive({ type: 'reply', id: socket.lastCommand('ping')['id'], result: {} });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(socket.closedByClient).toBeNull();
  });
});

describe('the page: visibility and network', () => {
  it('does not reconnect from a hidden tab, and catches up as soon as it is shown', async () => {
    const c = client();
    const sub = c.subscribe(Q);
    c.connect();
    page.socket().accept();
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
    c.connect();
    page.socket().accept();
    page.setVisible(false);
    page.socket().serverClose(4000, 'restart retry_ms=4000');
    await vi.advanceTimersByTimeAsync(1000);
    page.setVisible(true);
    await vi.advanceTimersByTimeAsync(3000);
    expect(page.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(250);
    expect(page.sockets).toHaveLength(2);
  });

  it('drops the socket when the browser goes offline, waits, and reconnects when online', async () => {
    const c = client();
    c.connect();
    const socket = page.socket();
    socket.accept();
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

describe('msgpack', () => {
  it('speaks herald.v1.msgpack end to end', () => {
    const c = client({ format: 'msgpack' });
    const pubs: unknown[] = [];
    c.subscribe(Q, (pub) => pubs.push(pub.data));
    c.connect();
    const socket = page.socket();
    expect(socket.protocols).toEqual(['herald.v1.msgpack']);
    expect(socket.binaryType).toBe('arraybuffer');
    socket.accept();
    socket.replySubscribe(Q, 'e1', 0, 'none');
    socket.pub(Q, 1, { score: 7, who: 'ü' });
    expect(pubs).toEqual([{ score: 7, who: 'ü' }]);
  });
});

describe('unsubscribing while the subscribe is pending', () => {
  it('cancels it: no subscribe answer or publication reaches the app afterwards', () => {
    const c = client();
    const sub = c.subscribe(Q);
    const pubs = record<Publication>((push) => sub.on('publication', push));
    const subscribed = record<unknown>((push) => sub.on('subscribed', push));
    c.connect();
    const socket = page.socket();
    socket.accept();
    sub.unsubscribe();
    expect(socket.lastCommand('unsubscribe')['channel']).toBe(Q);
    socket.replySubscribe(Q, 'e1', 0, 'none'); // a reply the server should not send, ignored anyway
    socket.pub(Q, 1);
    expect(subscribed).toEqual([]);
    expect(pubs).toEqual([]);
  });

  it('subscribe() again after unsubscribe() recovers from the kept position', () => {
    const c = client();
    const first = c.subscribe(Q);
    c.connect();
    const socket = page.socket();
    socket.accept();
    socket.replySubscribe(Q, 'e1', 5, 'none');
    socket.pub(Q, 6);
    first.unsubscribe();
    first.subscribe();
    expect(first.state).toBe('subscribing');
    expect(c.getSubscription(Q)).toBe(first);
    expect(socket.lastCommand('subscribe')['since']).toEqual({ epoch: 'e1', offset: 6 });
    expect(() => c.subscribe(Q)).toThrow(/already subscribed/);
  });

  it('an old subscription object cannot take the channel back from a newer one', () => {
    const c = client();
    const first = c.subscribe(Q);
    first.unsubscribe();
    c.subscribe(Q);
    expect(() => first.subscribe()).toThrow(/another subscription/);
    expect(first.state).toBe('unsubscribed');
  });
});
