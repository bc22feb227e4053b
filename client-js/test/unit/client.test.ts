/** `HeraldClient` and its subscriptions as the app uses them (src/client.ts,
 * src/subscription.ts); the connection's own rules are tested beside its units. */
import { describe, expect, it, vi } from 'vitest';
import type { Publication } from '../../src/subscription.js';
import { Q, client, connected, page, record, useFakePage } from './support.js';

useFakePage();

describe('subscribing', () => {
  it('a handler passed to subscribe receives the publications', () => {
    const c = client();
    const seen: unknown[] = [];
    c.subscribe(Q, (pub) => seen.push(pub.data));
    connected(c);
    page.socket().replySubscribe(Q, 'e1', 0, 'none');
    page.socket().pub(Q, 1, { score: 3 });
    expect(seen).toEqual([{ score: 3 }]);
  });

  it('refuses a second subscription to the same channel', () => {
    const c = client();
    c.subscribe(Q);
    expect(() => c.subscribe(Q)).toThrow(/already subscribed/);
  });
});

describe('closing', () => {
  it('close() unsubscribes, closes the socket and stays closed', async () => {
    const c = client();
    c.subscribe(Q);
    const socket = connected(c);
    c.close();
    expect(socket.closedByClient?.code).toBe(1000);
    expect(c.state).toBe('disconnected');
    await vi.advanceTimersByTimeAsync(120_000);
    expect(page.sockets).toHaveLength(1);
    expect(() => c.connect()).toThrow(/closed/);
  });
});

describe('msgpack', () => {
  it('speaks herald.v1.msgpack end to end', () => {
    const c = client({ format: 'msgpack' });
    const pubs: unknown[] = [];
    c.subscribe(Q, (pub) => pubs.push(pub.data));
    c.connect();
    const socket = page.socket();
    expect(socket.protocols[0]).toBe('herald.v1.msgpack');
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
    const socket = connected(c);
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
    const socket = connected(c);
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
