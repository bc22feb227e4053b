/** Several owners (subscriptions, tabs) over one connection (src/router.ts). */
import { describe, expect, it } from 'vitest';
import { codecFor } from '../../src/codec.js';
import { DEFAULT_CONNECTION_OPTIONS } from '../../src/connection.js';
import type { Recovery, StreamPosition } from '../../src/frames.js';
import { createHub } from '../../src/link.js';
import { type OwnerSink, ownerRecovery } from '../../src/router.js';
import { page, useFakePage } from './support.js';

const Q = 'question:1';

describe('ownerRecovery', () => {
  const at = { epoch: 'e1', offset: 10 };
  it.each([
    [null, 'recovered', 'none'],
    [null, 'failed', 'none'],
    [{ epoch: 'e1', offset: 10 }, 'recovered', 'recovered'],
    [{ epoch: 'e1', offset: 12 }, 'none', 'recovered'],
    [{ epoch: 'e1', offset: 9 }, 'recovered', 'failed'],
    [{ epoch: 'e0', offset: 10 }, 'recovered', 'failed'],
    [{ epoch: 'e1', offset: 10 }, 'failed', 'failed'],
  ] as [StreamPosition | null, Recovery, Recovery][])('since %o with the connection %s -> %s', (since, connection, told) => {
    expect(ownerRecovery(since, connection, at)).toBe(told);
  });
});

interface Told {
  owner: string;
  recovery: Recovery;
  position: StreamPosition;
}

function recordingSink(): OwnerSink & { told: Told[]; pubs: number[] } {
  const told: Told[] = [];
  const pubs: number[] = [];
  return {
    told,
    pubs,
    state: () => undefined,
    delivery: () => undefined,
    subscribed: (owner, _channel, recovery, position) => told.push({ owner, recovery, position }),
    resubscribing: () => undefined,
    refused: () => undefined,
    publication: (_channel, _epoch, offset) => pubs.push(offset),
  };
}

describe('ChannelRouter over one connection', () => {
  useFakePage();

  function hub() {
    const { connection, router } = createHub(
      { url: 'ws://x/ws', codec: codecFor('json'), getToken: null, ...DEFAULT_CONNECTION_OPTIONS },
      page,
    );
    connection.connect();
    page.socket().accept();
    return { connection, router };
  }

  it('subscribes a channel once for several owners and delivers each publication once per sink', () => {
    const { router } = hub();
    const a = recordingSink();
    const b = recordingSink();
    router.addSink(a);
    router.addSink(b);
    router.want('tab-a', a, Q, null, 1);
    router.want('tab-b', b, Q, null, 1);
    router.want('tab-c', b, Q, null, 1);
    page.socket().replySubscribe(Q, 'e1', 4, 'none');
    expect(page.socket().commands('subscribe')).toHaveLength(1);
    expect(b.told.map((t) => t.owner)).toEqual(['tab-b', 'tab-c']);
    page.socket().pub(Q, 5);
    expect(a.pubs).toEqual([5]);
    expect(b.pubs).toEqual([5]);
  });

  it('tells an owner that joins a live channel from behind that recovery failed', () => {
    const { router } = hub();
    const sink = recordingSink();
    router.want('tab-a', sink, Q, { epoch: 'e1', offset: 4 }, 1);
    page.socket().replySubscribe(Q, 'e1', 6, 'recovered');
    page.socket().pub(Q, 5);
    page.socket().pub(Q, 6);
    router.want('tab-b', sink, Q, { epoch: 'e1', offset: 5 }, 1);
    router.want('tab-c', sink, Q, { epoch: 'e1', offset: 6 }, 1);
    expect(sink.told).toEqual([
      { owner: 'tab-a', recovery: 'recovered', position: { epoch: 'e1', offset: 4 } },
      { owner: 'tab-b', recovery: 'failed', position: { epoch: 'e1', offset: 6 } },
      { owner: 'tab-c', recovery: 'recovered', position: { epoch: 'e1', offset: 6 } },
    ]);
  });

  it('unsubscribes only when the last owner leaves', () => {
    const { router } = hub();
    const sink = recordingSink();
    router.want('tab-a', sink, Q, null, 1);
    router.want('tab-b', sink, Q, null, 1);
    page.socket().replySubscribe(Q, 'e1', 0, 'none');
    router.unwant('tab-a', Q);
    expect(page.socket().commands('unsubscribe')).toHaveLength(0);
    router.dropOwner('tab-b');
    expect(page.socket().commands('unsubscribe')).toHaveLength(1);
  });
});
