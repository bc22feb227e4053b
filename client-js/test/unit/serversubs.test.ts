/** Server-side subscriptions (docs/protocol.md#server-side-subscriptions): the connect reply's
 * `subs` make channels live without a subscribe; their positions go in the next connect. */
import { describe, expect, it, vi } from 'vitest';
import type { StateInfo } from '../../src/state.js';
import type { Publication, SubscribedEvent, SubscriptionError } from '../../src/subscription.js';
import { client, connected, offsets, page, record, useFakePage } from './support.js';

useFakePage();

const INBOX = 'user:7';
const TOKEN = { getToken: () => 'tok' };
/** The connect and the subscribes sent as messages: what a fast open carries is below. */
const CLASSIC = { ...TOKEN, fastOpen: false };

function subs(epoch: string, offset: number, recovery = 'none'): Record<string, unknown> {
  return { subs: { [INBOX]: { epoch, offset, recovery } } };
}

describe('server-side subscriptions', () => {
  it('makes a channel the connect reply names live without a subscribe command', async () => {
    const c = client(CLASSIC);
    const inbox = c.subscribe(INBOX);
    const pubs = record<Publication>((push) => inbox.on('publication', push));
    const subscribed = record<SubscribedEvent>((push) => inbox.on('subscribed', push));
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const socket = page.socket();
    socket.accept({ user: '7', ...subs('e1', 3) });
    expect(socket.commands('subscribe')).toEqual([]);
    expect(inbox.state).toBe('subscribed');
    expect(subscribed).toEqual([{ channel: INBOX, recovery: 'none', position: { epoch: 'e1', offset: 3 } }]);
    socket.pub(INBOX, 4);
    expect(offsets(pubs)).toEqual([4]);
  });

  it('in a fast open, drops its own subscribe ahead once the connect reply names the channel', async () => {
    const c = client(TOKEN);
    const inbox = c.subscribe(INBOX);
    const errors = record<SubscriptionError>((push) => inbox.on('error', push));
    const pubs = record<Publication>((push) => inbox.on('publication', push));
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const first = page.socket();
    // Not known to be server-side yet: subscribed ahead, beside the connect.
    const ahead = first.opened.find((m) => m['op'] === 'subscribe');
    expect(ahead?.['channel']).toBe(INBOX);
    first.accept({ user: '7', ...subs('e1', 3) });
    first.receive({ type: 'error', id: ahead?.['id'], code: 409, message: 'already subscribed' });
    expect(inbox.state).toBe('subscribed');
    expect(errors).toEqual([]);
    first.pub(INBOX, 4);
    expect(offsets(pubs)).toEqual([4]);
    first.serverClose(1006);
    await vi.advanceTimersByTimeAsync(1000);
    const second = page.socket(); // known now: only its position rides in the connect
    expect(second.opened.map((m) => m['op'])).toEqual(['connect']);
    expect(second.opened[0]?.['since']).toEqual({ [INBOX]: { epoch: 'e1', offset: 4 } });
  });

  it('in a fast open, does not subscribe ahead a channel the token names in subs', async () => {
    const payload = btoa(JSON.stringify({ sub: '7', exp: 1, subs: [INBOX] })).replace(/=+$/, '');
    const c = client({ getToken: () => `e30.${payload}.sig` });
    const inbox = c.subscribe(INBOX);
    c.subscribe('question:1');
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const socket = page.socket();
    expect(socket.opened.filter((m) => m['op'] === 'subscribe').map((m) => m['channel'])).toEqual(['question:1']);
    socket.accept({ user: '7', ...subs('e1', 3) });
    expect(inbox.state).toBe('subscribed');
  });

  it('tells the app of the server-side subscriptions in the connected event', async () => {
    const c = client(TOKEN);
    const infos = record<StateInfo>((push) => c.on('connected', push));
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    page.socket().accept(subs('e1', 0));
    expect(infos[0]?.connect?.subs).toEqual({ [INBOX]: { epoch: 'e1', offset: 0, recovery: 'none' } });
  });

  it('sends the positions on reconnect and applies the replay that follows the reply', async () => {
    const c = client(TOKEN);
    const inbox = c.subscribe(INBOX);
    const pubs = record<Publication>((push) => inbox.on('publication', push));
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const first = page.socket();
    first.accept(subs('e1', 3));
    first.pub(INBOX, 4);
    first.serverClose(1006);
    expect(inbox.state).toBe('subscribing');
    await vi.advanceTimersByTimeAsync(1000);
    const second = page.socket();
    second.open();
    expect(second.lastCommand('connect')['since']).toEqual({ [INBOX]: { epoch: 'e1', offset: 4 } });
    second.receive({
      type: 'reply',
      id: second.lastCommand('connect')['id'],
      result: { ping_interval_ms: 25_000, pong_timeout_ms: 10_000, ...subs('e1', 6, 'recovered') },
    });
    second.pub(INBOX, 5);
    second.pub(INBOX, 6);
    expect(second.commands('subscribe')).toEqual([]);
    expect(offsets(pubs)).toEqual([4, 5, 6]);
    expect(inbox.position).toEqual({ epoch: 'e1', offset: 6 });
  });

  it('reports a failed recovery of a server-side channel', async () => {
    const c = client(TOKEN);
    const inbox = c.subscribe(INBOX, undefined, { since: { epoch: 'old', offset: 9 } });
    const failed = record<unknown>((push) => inbox.on('recoveryFailed', push));
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const socket = page.socket();
    socket.open();
    expect(socket.lastCommand('connect')['since']).toEqual({ [INBOX]: { epoch: 'old', offset: 9 } });
    socket.receive({
      type: 'reply',
      id: socket.lastCommand('connect')['id'],
      result: { ping_interval_ms: 25_000, pong_timeout_ms: 10_000, ...subs('e2', 12, 'failed') },
    });
    expect(failed).toEqual([{ channel: INBOX, position: { epoch: 'e2', offset: 12 } }]);
    expect(inbox.position).toEqual({ epoch: 'e2', offset: 12 });
  });

  it('never unsubscribes a server-side channel; a later subscribe finds it live', async () => {
    const c = client(TOKEN);
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const socket = page.socket();
    socket.accept(subs('e1', 3));
    socket.pub(INBOX, 4); // nobody listens yet: the position moves on
    const inbox = c.subscribe(INBOX);
    const pubs = record<Publication>((push) => inbox.on('publication', push));
    await vi.advanceTimersByTimeAsync(0);
    expect(inbox.state).toBe('subscribed');
    expect(inbox.position).toEqual({ epoch: 'e1', offset: 4 });
    socket.pub(INBOX, 5);
    inbox.unsubscribe();
    socket.pub(INBOX, 6);
    expect(socket.commands('subscribe')).toEqual([]);
    expect(socket.commands('unsubscribe')).toEqual([]);
    expect(offsets(pubs)).toEqual([5]);
  });

  it('tells a later subscriber whose position is behind the live one that its recovery failed', async () => {
    const c = client(TOKEN);
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    page.socket().accept(subs('e1', 8));
    const inbox = c.subscribe(INBOX, undefined, { since: { epoch: 'e1', offset: 5 } });
    const subscribed = record<SubscribedEvent>((push) => inbox.on('subscribed', push));
    const failed = record<unknown>((push) => inbox.on('recoveryFailed', push));
    expect(inbox.state).toBe('subscribing');
    await vi.advanceTimersByTimeAsync(0); // answered after this turn, like a reply
    expect(inbox.state).toBe('subscribed');
    expect(subscribed).toEqual([{ channel: INBOX, recovery: 'failed', position: { epoch: 'e1', offset: 8 } }]);
    expect(failed).toEqual([{ channel: INBOX, position: { epoch: 'e1', offset: 8 } }]);
  });

  it('subscribes a refused server-side channel itself, and one the new token no longer names', async () => {
    const c = client(CLASSIC);
    const inbox = c.subscribe(INBOX);
    const errors = record<SubscriptionError>((push) => inbox.on('error', push));
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const first = page.socket();
    first.accept({ subs: { [INBOX]: { error: { code: 503, message: 'unavailable' } } } });
    expect(first.lastCommand('subscribe')['channel']).toBe(INBOX);
    first.replySubscribe(INBOX, 'e1', 2, 'none');
    expect(inbox.state).toBe('subscribed');
    expect(errors).toEqual([]);
    first.serverClose(1006);
    await vi.advanceTimersByTimeAsync(1000);
    const second = page.socket();
    second.accept(subs('e1', 2, 'recovered'));
    expect(second.commands('subscribe')).toEqual([]);
    second.serverClose(1006);
    await vi.advanceTimersByTimeAsync(1000);
    const third = page.socket();
    third.accept(); // no subs: the token changed
    expect(third.lastCommand('subscribe')).toMatchObject({ channel: INBOX, since: { epoch: 'e1', offset: 2 } });
  });

  it('sends no positions without a token', () => {
    const c = client();
    c.subscribe(INBOX, undefined, { since: { epoch: 'e', offset: 1 } });
    const socket = connected(c);
    expect(socket.lastCommand('connect')).not.toHaveProperty('since');
  });

  it('refuses a connect reply whose subs are malformed, as a protocol error', async () => {
    const c = client(TOKEN);
    const connecting = record<StateInfo>((push) => c.on('connecting', push));
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    page.socket().accept({ subs: { [INBOX]: { epoch: 'e1' } } });
    expect(c.state).toBe('connecting');
    expect(connecting.at(-1)?.reason).toMatch(/subscribe reply without epoch or offset/);
  });
});
