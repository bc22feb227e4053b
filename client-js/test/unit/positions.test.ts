/** Channels and their positions on the socket (src/positions.ts), seen through the client. */
import { describe, expect, it, vi } from 'vitest';
import type { HeraldClient } from '../../src/client.js';
import type { StateInfo } from '../../src/state.js';
import type { Publication, RecoveryFailedEvent, SubscriptionError } from '../../src/subscription.js';
import { Q, client, connected, offsets, page, record, useFakePage } from './support.js';

useFakePage();

describe('subscriptions', () => {
  it('subscribes without since, delivers publications in order and drops duplicates', () => {
    const c = client();
    const sub = c.subscribe(Q);
    const pubs = record<Publication>((push) => sub.on('publication', push));
    const socket = connected(c);
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
    const socket = connected(c);
    socket.pub(Q, 1); // before the reply: not live yet
    socket.pub('question:7', 1);
    socket.replySubscribe(Q, 'e1', 0, 'none');
    socket.pub(Q, 1);
    expect(offsets(pubs)).toEqual([1]);
  });

  it('subscribes with since when given a position (state loaded over HTTP)', () => {
    const c = client();
    c.subscribe(Q, undefined, { since: { epoch: 'e9', offset: 4 } });
    connected(c);
    expect(page.socket().lastCommand('subscribe')['since']).toEqual({ epoch: 'e9', offset: 4 });
  });

  it('unsubscribe sends the command and stops delivery', () => {
    const c = client();
    const sub = c.subscribe(Q);
    const pubs = record<Publication>((push) => sub.on('publication', push));
    const socket = connected(c);
    socket.replySubscribe(Q, 'e1', 0, 'none');
    sub.unsubscribe();
    expect(socket.lastCommand('unsubscribe')['channel']).toBe(Q);
    socket.pub(Q, 1);
    expect(pubs).toEqual([]);
    expect(sub.state).toBe('unsubscribed');
    expect(c.getSubscription(Q)).toBeUndefined();
  });

  it('reports a refused channel (403) as an error and stops', () => {
    const c = client();
    const sub = c.subscribe('user:7');
    const errors = record<SubscriptionError>((push) => sub.on('error', push));
    const socket = connected(c);
    const id = socket.lastCommand('subscribe')['id'];
    socket.receive({ type: 'error', id, code: 403, message: 'permission denied' });
    expect(errors).toEqual([{ channel: 'user:7', code: 403, message: 'permission denied' }]);
    expect(sub.state).toBe('unsubscribed');
  });

  it('sends a subscribe refused with 503 or 429 again after a backoff', async () => {
    const c = client();
    const sub = c.subscribe(Q);
    const socket = connected(c);
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
  /** Connected, subscribed to Q at e1/10, and offsets 11 and 12 delivered. */
  function connectedWithPubs(c: HeraldClient): void {
    const socket = connected(c);
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

  it('takes the epoch a "-" channel\'s first publication names, and recovers from it', async () => {
    const c = client();
    const sub = c.subscribe(Q);
    const pubs = record<Publication>((push) => sub.on('publication', push));
    let socket = connected(c);
    socket.replySubscribe(Q, '-', 0, 'none'); // nothing published yet (docs/protocol.md#recovery)
    socket.receive({ type: 'pub', channel: Q, offset: 1, data: { n: 1 }, epoch: 'e7' });
    socket.pub(Q, 2);
    expect(pubs.map((p) => [p.epoch, p.offset])).toEqual([
      ['e7', 1],
      ['e7', 2],
    ]);
    expect(sub.position).toEqual({ epoch: 'e7', offset: 2 });
    socket.serverClose(1006);
    await vi.advanceTimersByTimeAsync(250);
    socket = page.socket();
    socket.accept();
    expect(socket.lastCommand('subscribe')['since']).toEqual({ epoch: 'e7', offset: 2 });
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
});

describe('conflation (docs/protocol.md#conflation)', () => {
  function subscribedAt12(c: HeraldClient): Publication[] {
    const sub = c.subscribe(Q);
    const pubs = record<Publication>((push) => sub.on('publication', push));
    const socket = connected(c);
    socket.replySubscribe(Q, 'e1', 10, 'none');
    socket.pub(Q, 11);
    socket.pub(Q, 12);
    return pubs;
  }

  it('takes offsets announced as conflated as no gap: no reconnect, no recovery', () => {
    const c = client();
    const pubs = subscribedAt12(c);
    const socket = page.socket();
    socket.conflatedPub(Q, 17, 13, { score: 5 });
    socket.pub(Q, 18);
    expect(socket.closedByClient).toBeNull();
    expect(page.sockets).toHaveLength(1);
    expect(offsets(pubs)).toEqual([11, 12, 17, 18]);
    expect(c.getSubscription(Q)?.position).toEqual({ epoch: 'e1', offset: 18 });
  });

  it('accepts an announcement that reaches back before its position (an earlier frame came)', () => {
    const c = client();
    const pubs = subscribedAt12(c);
    page.socket().conflatedPub(Q, 15, 12);
    expect(page.socket().closedByClient).toBeNull();
    expect(offsets(pubs)).toEqual([11, 12, 15]);
  });

  it('still treats a skip it was not told about as a gap', () => {
    const c = client();
    subscribedAt12(c);
    page.socket().pub(Q, 17);
    expect(page.socket().closedByClient).not.toBeNull();
  });

  it('treats an announcement that starts after the skip as a gap (something before it was lost)', () => {
    const c = client();
    const pubs = subscribedAt12(c);
    page.socket().conflatedPub(Q, 17, 15);
    expect(page.socket().closedByClient).not.toBeNull();
    expect(offsets(pubs)).toEqual([11, 12]);
  });

  it('never applies an older value after a newer one', () => {
    const c = client();
    const pubs = subscribedAt12(c);
    const socket = page.socket();
    socket.conflatedPub(Q, 17, 13, { score: 9 });
    socket.pub(Q, 14, { score: 4 }); // an older offset than the one applied: dropped
    expect(pubs.map((p) => p.data)).toEqual([{ n: 11 }, { n: 12 }, { score: 9 }]);
  });
});
