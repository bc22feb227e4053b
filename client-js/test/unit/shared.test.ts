/** Tabs sharing one socket (src/shared.ts): each tab is a client on its own fake page, and
 * the tabs meet through the in-process BroadcastChannel and Web Locks below. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { HeraldClient } from '../../src/client.js';
import type { Publication } from '../../src/subscription.js';
import { type FakePage, fakePage } from './fakes.js';

/** BroadcastChannel within one process: delivers to the other instances of a name, later. */
class FakeBroadcastChannel {
  static readonly all = new Set<FakeBroadcastChannel>();
  onmessage: ((event: { data: unknown }) => void) | null = null;

  constructor(readonly name: string) {
    FakeBroadcastChannel.all.add(this);
  }

  postMessage(message: unknown): void {
    const copy = structuredClone(message);
    for (const other of FakeBroadcastChannel.all) {
      if (other !== this && other.name === this.name) queueMicrotask(() => other.onmessage?.({ data: copy }));
    }
  }

  close(): void {
    FakeBroadcastChannel.all.delete(this);
  }
}

/** Exclusive Web Locks: granted in request order, released when the callback's promise settles. */
class FakeLocks {
  private readonly queues = new Map<string, { grant: () => void; signal?: AbortSignal }[]>();
  private readonly held = new Set<string>();

  request(name: string, options: { signal?: AbortSignal }, callback: () => unknown): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const grant = (): void => {
        this.held.add(name);
        Promise.resolve(callback())
          .then(resolve, reject)
          .finally(() => {
            this.held.delete(name);
            this.next(name);
          });
      };
      const queue = this.queues.get(name) ?? [];
      this.queues.set(name, queue);
      const entry = options.signal === undefined ? { grant } : { grant, signal: options.signal };
      queue.push(entry);
      options.signal?.addEventListener('abort', () => {
        const at = queue.indexOf(entry);
        if (at >= 0) {
          queue.splice(at, 1);
          reject(new DOMException('aborted', 'AbortError'));
        }
      });
      this.next(name);
    });
  }

  private next(name: string): void {
    if (this.held.has(name)) return;
    this.queues.get(name)?.shift()?.grant();
  }
}

const URL = 'ws://herald.test/ws';
const Q = 'question:9';

const flush = async (): Promise<void> => {
  for (let i = 0; i < 50; i++) await Promise.resolve();
};

let pages: FakePage[];
const allSockets = () => pages.flatMap((p) => p.sockets);

interface Tab {
  readonly client: HeraldClient;
  readonly page: FakePage;
}

function tab(): Tab {
  const page = fakePage();
  pages.push(page);
  return { client: new HeraldClient(URL, { environment: page }), page };
}

beforeEach(() => {
  vi.useFakeTimers();
  pages = [];
  vi.stubGlobal('BroadcastChannel', FakeBroadcastChannel);
  vi.stubGlobal('navigator', { locks: new FakeLocks() });
});

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
  FakeBroadcastChannel.all.clear();
});

/** Tab `a` connects first (and leads), then tab `b` (and follows), each settled in turn. */
async function connectInOrder(a: Tab, b: Tab): Promise<void> {
  a.client.connect();
  await flush();
  b.client.connect();
  await flush();
}

function record(client: HeraldClient, channel: string): Publication[] {
  const pubs: Publication[] = [];
  client.subscribe(channel, (pub) => pubs.push(pub));
  return pubs;
}

describe('tabs sharing one connection', () => {
  it('the first tab leads and owns the only socket; the second tab is served through it', async () => {
    const a = tab();
    const b = tab();
    const pubsA = record(a.client, Q);
    const pubsB = record(b.client, Q);
    const onlyB = record(b.client, 'questions:new');
    await connectInOrder(a, b);
    expect(a.client.role).toBe('leader');
    expect(b.client.role).toBe('follower');
    expect(allSockets()).toHaveLength(1);
    const socket = a.page.socket();
    socket.accept();
    await flush();
    expect(b.client.state).toBe('connected');
    expect(socket.commands('subscribe').map((c) => c['channel']).sort()).toEqual(['question:9', 'questions:new']);
    socket.replySubscribe(Q, 'e1', 0, 'none');
    socket.replySubscribe('questions:new', 'e7', 3, 'none');
    await flush();
    expect(b.client.getSubscription(Q)?.state).toBe('subscribed');
    socket.pub(Q, 1);
    socket.pub(Q, 2);
    socket.pub('questions:new', 4);
    await flush();
    expect(pubsA.map((p) => p.offset)).toEqual([1, 2]);
    expect(pubsB.map((p) => p.offset)).toEqual([1, 2]);
    expect(onlyB.map((p) => p.offset)).toEqual([4]);
  });

  it('when the leader tab closes, the next tab leads and resubscribes from its own position', async () => {
    const a = tab();
    const b = tab();
    record(a.client, Q);
    const pubsB = record(b.client, Q);
    await connectInOrder(a, b);
    const first = a.page.socket();
    first.accept();
    first.replySubscribe(Q, 'e1', 10, 'none');
    first.pub(Q, 11);
    await flush();
    const statesB: string[] = [];
    b.client.on('state', (state) => statesB.push(state));
    a.client.close();
    await flush();
    expect(first.closedByClient).not.toBeNull();
    expect(statesB).not.toContain('disconnected'); // the other tab is only waiting for the next leader
    expect(b.client.role).toBe('leader');
    const second = b.page.socket();
    second.accept();
    await flush();
    expect(second.lastCommand('subscribe')['since']).toEqual({ epoch: 'e1', offset: 11 });
    second.replySubscribe(Q, 'e1', 13, 'recovered');
    second.pub(Q, 11);
    second.pub(Q, 12);
    second.pub(Q, 13);
    await flush();
    expect(pubsB.map((p) => p.offset)).toEqual([11, 12, 13]);
    expect(allSockets()).toHaveLength(2);
  });

  it('the leader tab joining a channel a follower already has live is answered at once', async () => {
    const a = tab();
    const b = tab();
    await connectInOrder(a, b);
    const pubsB = record(b.client, Q);
    await flush();
    const socket = a.page.socket();
    socket.accept();
    await flush();
    socket.replySubscribe(Q, 'e1', 3, 'none');
    await flush();
    const pubsA = record(a.client, Q);
    expect(a.client.getSubscription(Q)?.state).toBe('subscribed');
    expect(socket.commands('subscribe')).toHaveLength(1);
    socket.pub(Q, 4);
    await flush();
    expect(pubsA.map((p) => p.offset)).toEqual([4]);
    expect(pubsB.map((p) => p.offset)).toEqual([4]);
  });

  it('a follower leaving a channel unsubscribes the socket only when no other tab wants it', async () => {
    const a = tab();
    const b = tab();
    record(a.client, Q);
    record(b.client, Q);
    record(b.client, 'tag:redis');
    await connectInOrder(a, b);
    const socket = a.page.socket();
    socket.accept();
    await flush();
    socket.replySubscribe(Q, 'e1', 0, 'none');
    socket.replySubscribe('tag:redis', 'e2', 0, 'none');
    await flush();
    b.client.getSubscription(Q)?.unsubscribe();
    b.client.getSubscription('tag:redis')?.unsubscribe();
    await flush();
    expect(socket.commands('unsubscribe').map((c) => c['channel'])).toEqual(['tag:redis']);
  });

  it('counts the shared socket as hidden only when every tab is hidden', async () => {
    const a = tab();
    const b = tab();
    await connectInOrder(a, b);
    a.page.socket().accept();
    await flush();
    a.page.setVisible(false);
    await flush();
    a.page.socket().serverClose(1006);
    await vi.advanceTimersByTimeAsync(1000);
    expect(allSockets()).toHaveLength(2); // tab b is visible: the leader reconnects
    b.page.setVisible(false);
    await flush();
    a.page.socket().serverClose(1006);
    await vi.advanceTimersByTimeAsync(600_000);
    expect(allSockets()).toHaveLength(2); // every tab hidden: no reconnect
    b.page.setVisible(true);
    await flush();
    expect(allSockets()).toHaveLength(3);
  });

  it("every tab shows the shared socket's delivery status: delayed while the server pauses, then live", async () => {
    const a = tab();
    const b = tab();
    await connectInOrder(a, b);
    const socket = a.page.socket();
    socket.accept();
    await flush();
    const seenB: string[] = [];
    b.client.on('status', (status) => seenB.push(status));
    socket.receive({ type: 'delivery', state: 'paused' });
    await flush();
    expect([a.client.status, b.client.status]).toEqual(['delayed', 'delayed']);
    socket.receive({ type: 'delivery', state: 'live' });
    await flush();
    expect([a.client.status, b.client.status]).toEqual(['live', 'live']);
    expect(seenB).toEqual(['delayed', 'live']);
  });

  it('a tab that joins while the shared socket is paused shows delayed, never live first', async () => {
    const a = tab();
    a.client.connect();
    await flush();
    const socket = a.page.socket();
    socket.accept();
    socket.receive({ type: 'delivery', state: 'paused' });
    await flush();
    const b = tab();
    const seenB: string[] = [];
    b.client.on('status', (status) => seenB.push(status));
    b.client.connect();
    await flush();
    expect(b.client.role).toBe('follower');
    expect(b.client.status).toBe('delayed');
    expect(seenB).toEqual(['reconnecting', 'delayed']);
  });

  it('each tab connects on its own where Web Locks are missing', () => {
    vi.stubGlobal('navigator', {});
    const a = tab();
    const b = tab();
    a.client.connect();
    b.client.connect();
    expect(a.client.role).toBe('local');
    expect(allSockets()).toHaveLength(2);
  });
});
