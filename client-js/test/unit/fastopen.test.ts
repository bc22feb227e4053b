/** Fast open (docs/protocol.md#fast-open): the connect and the subscribes ride in the upgrade
 * request's open token, so their answers come with the 101 and nothing is sent on open. */
import { describe, expect, it, vi } from 'vitest';
import { MAX_OPEN_TOKEN_LENGTH, OPEN_PREFIX } from '../../src/opening.js';
import type { Publication } from '../../src/subscription.js';
import { Q, client, offsets, page, record, useFakePage } from './support.js';

useFakePage();

describe('fast open', () => {
  it('carries the connect and every subscribe, with positions, in the open token', async () => {
    const c = client({ getToken: () => 'tok' });
    c.subscribe(Q, undefined, { since: { epoch: 'e1', offset: 5 } });
    c.subscribe('tag:python');
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const socket = page.socket();
    expect(socket.protocols[0]).toBe('herald.v1.json');
    expect(socket.protocols[1]?.startsWith(OPEN_PREFIX)).toBe(true);
    expect(socket.opened).toEqual([
      // With a token, every position rides in the connect too: a channel the token's subs
      // name recovers from it (the server ignores the others).
      { op: 'connect', id: 1, token: 'tok', since: { [Q]: { epoch: 'e1', offset: 5 } } },
      { op: 'subscribe', id: 2, channel: Q, since: { epoch: 'e1', offset: 5 } },
      { op: 'subscribe', id: 3, channel: 'tag:python' },
    ]);
    socket.open();
    expect(socket.sent).toEqual(socket.opened); // nothing more on open
  });

  it('takes the answers that come with the 101: connected, subscribed, the replay applied', async () => {
    const c = client();
    const sub = c.subscribe(Q, undefined, { since: { epoch: 'e1', offset: 5 } });
    const pubs = record<Publication>((push) => sub.on('publication', push));
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const socket = page.socket();
    socket.accept();
    socket.replySubscribe(Q, 'e1', 7, 'recovered');
    socket.pub(Q, 6);
    socket.pub(Q, 7);
    expect(c.state).toBe('connected');
    expect(sub.state).toBe('subscribed');
    expect(offsets(pubs)).toEqual([6, 7]);
    expect(socket.commands('subscribe')).toHaveLength(1); // not sent again on connected
  });

  it('sends the commands as messages on open when the open token would be too long', async () => {
    const c = client();
    for (let i = 1; i <= 200; i++) c.subscribe(`question:${i}`, undefined, { since: { epoch: 'epoch-x', offset: i } });
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const socket = page.socket();
    expect(socket.protocols).toEqual(['herald.v1.json']);
    expect(socket.sent).toEqual([]);
    socket.open();
    expect(socket.sent.map((m) => m['op'])).toEqual(['connect', ...Array<string>(200).fill('subscribe')]);
    expect(MAX_OPEN_TOKEN_LENGTH).toBe(8000);
  });

  it('is off with fastOpen: false: the connect is sent on open, the subscribes on connected', async () => {
    const c = client({ fastOpen: false });
    c.subscribe(Q);
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    const socket = page.socket();
    expect(socket.protocols).toEqual(['herald.v1.json']);
    socket.accept();
    expect(socket.sent.map((m) => m['op'])).toEqual(['connect', 'subscribe']);
  });
});
