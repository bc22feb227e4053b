/**
 * One socket per browser, not per tab: the tabs of an origin elect a leader with a Web Lock;
 * the leader owns the `Connection` and serves the other tabs over a `BroadcastChannel`.
 *
 * - Election: every started tab asks for the exclusive lock `<key>`; the browser grants it
 *   to one tab and, when that tab closes (or crashes), to the next in line.
 * - The new leader announces itself; every tab then asks again for each of its channels with
 *   its own position (`want`), so the leader's new socket subscribes with recovery.
 * - The leader answers each tab's `want` (addressed to that tab), and broadcasts each
 *   publication once; a tab applies those of its own subscriptions.
 *
 * Messages (all carry `from`, the sender's tab id; `to` addresses one tab):
 *   follower → leader: hello, want, unwant, bye, visible
 *   leader → tabs:     leader, state, delivery, sub, resub, refused, pub
 */
import type { Connection, ConnectionOptions } from './connection.js';
import type { Environment } from './env.js';
import type { Recovery, StreamPosition } from './frames.js';
import { type Link, type LinkListener, type Role, createHub, localSink } from './link.js';
import type { ChannelRouter, OwnerSink } from './router.js';
import type { ConnectionState, StateInfo } from './state.js';

type Message =
  | { t: 'hello'; from: string }
  | { t: 'want'; from: string; channel: string; since: StreamPosition | null; req: number }
  | { t: 'unwant'; from: string; channel: string }
  | { t: 'bye'; from: string }
  | { t: 'visible'; from: string; visible: boolean }
  | { t: 'leader'; from: string; to: string | null }
  | { t: 'state'; from: string; state: ConnectionState; info: StateInfo }
  | { t: 'delivery'; from: string; paused: boolean }
  | { t: 'sub'; from: string; to: string; channel: string; recovery: Recovery; position: StreamPosition; req: number }
  | { t: 'resub'; from: string; to: string; channel: string }
  | { t: 'refused'; from: string; to: string; channel: string; code: number; message: string; req: number }
  | { t: 'pub'; from: string; channel: string; epoch: string; offset: number; data: unknown };

/** Whether this browser has what sharing needs (Web Locks and BroadcastChannel). */
export function sharingSupported(): boolean {
  const nav = (globalThis as { navigator?: { locks?: LockManager } }).navigator;
  return typeof BroadcastChannel === 'function' && typeof nav?.locks?.request === 'function';
}

function newTabId(): string {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * A tab's part in the sharing:
 *
 *     stopped ──start()──▶ following ──granted the lock──▶ leading
 *        ▲                     │                              │
 *        └────── stop() ───────┴──────────────────────────────┘      close(): closed, for good
 */
export type SharedLinkState = 'stopped' | 'following' | 'leading' | 'closed';

/** What the leader tab holds while it leads. */
interface Leading {
  readonly connection: Connection;
  readonly router: ChannelRouter;
  readonly release: () => void;
}

export class SharedLink implements Link {
  private readonly tab = newTabId();
  private channel: BroadcastChannel | null = null;
  private readonly self: OwnerSink;
  private readonly remote: OwnerSink;
  private leading: Leading | null = null;
  private leaderId: string | null = null;
  private stateValue: SharedLinkState = 'stopped';
  private abort: AbortController | null = null;
  private readonly visibility = new Map<string, boolean>();
  private unlisten: (() => void)[] = [];

  constructor(
    private readonly key: string,
    private readonly options: ConnectionOptions,
    private readonly env: Environment,
    private readonly listener: LinkListener,
  ) {
    this.self = localSink(listener);
    this.remote = this.remoteSink();
  }

  /** The tabs' channel and the page listeners, set up on the first start(). */
  private join(): void {
    if (this.channel !== null) return;
    this.channel = new BroadcastChannel(this.key);
    this.channel.onmessage = (event: MessageEvent<Message>) => this.receive(event.data);
    this.unlisten = [
      this.env.onVisibilityChange((visible) => this.visibilityChanged(visible)),
      this.env.onOnlineChange((online) => this.leading?.connection.setOnline(online)),
    ];
  }

  get state(): SharedLinkState {
    return this.stateValue;
  }

  get role(): Role {
    return this.leading !== null ? 'leader' : 'follower';
  }

  start(): void {
    if (this.stateValue !== 'stopped') return;
    this.join();
    this.stateValue = 'following';
    this.listener.state('connecting', { code: 0, reason: 'waiting for the leader tab' });
    this.elect();
    this.post({ t: 'hello', from: this.tab });
  }

  stop(): void {
    if (this.stateValue !== 'following' && this.stateValue !== 'leading') return;
    this.stateValue = 'stopped';
    this.leaderId = null;
    this.abort?.abort();
    this.abort = null;
    if (this.leading !== null) {
      this.abdicate();
    } else {
      this.post({ t: 'bye', from: this.tab });
    }
    this.listener.state('disconnected', { code: 1000, reason: 'disconnect()' });
  }

  want(channel: string, since: StreamPosition | null, req: number): void {
    if (this.leading !== null) this.leading.router.want(this.tab, this.self, channel, since, req);
    else if (this.stateValue === 'following') this.post({ t: 'want', from: this.tab, channel, since, req });
  }

  unwant(channel: string): void {
    if (this.leading !== null) this.leading.router.unwant(this.tab, channel);
    else this.post({ t: 'unwant', from: this.tab, channel });
  }

  close(): void {
    if (this.stateValue === 'closed') return;
    this.stop();
    this.stateValue = 'closed';
    for (const unlisten of this.unlisten) unlisten();
    this.channel?.close();
    this.channel = null;
  }

  // --- election ---------------------------------------------------------------------------

  private elect(): void {
    const abort = new AbortController();
    this.abort = abort;
    navigator.locks
      .request(this.key, { mode: 'exclusive', signal: abort.signal }, () => {
        if (abort.signal.aborted || this.stateValue !== 'following') return undefined;
        return new Promise<void>((release) => this.lead(release));
      })
      .catch(() => undefined); // aborted: this tab stopped before it was elected
  }

  private lead(release: () => void): void {
    const { connection, router } = createHub(this.options, this.env);
    router.addSink(this.self);
    router.addSink(this.remote);
    this.stateValue = 'leading';
    this.leading = { connection, router, release };
    this.leaderId = this.tab;
    this.visibility.clear();
    connection.setVisible(this.env.isVisible());
    connection.setOnline(this.env.isOnline());
    this.listener.relink(); // this tab's own subscriptions want again, through the router
    this.post({ t: 'leader', from: this.tab, to: null });
    connection.connect();
  }

  /** Give up the socket: the next tab in the lock's queue leads and resubscribes. */
  private abdicate(): void {
    const leading = this.leading;
    if (leading === null) return;
    this.leading = null;
    this.leaderId = null;
    leading.router.dropOwner(this.tab);
    leading.connection.disconnect('leader tab left');
    leading.release();
  }

  private visibilityChanged(visible: boolean): void {
    if (this.leading !== null) this.updateVisibility();
    else this.post({ t: 'visible', from: this.tab, visible });
  }

  /** No hammering from hidden tabs: the shared socket counts as hidden when every tab is. */
  private updateVisibility(): void {
    const anyVisible = this.env.isVisible() || [...this.visibility.values()].some(Boolean);
    this.leading?.connection.setVisible(anyVisible);
  }

  // --- messages ---------------------------------------------------------------------------

  private receive(message: Message): void {
    if (this.stateValue === 'closed' || typeof message !== 'object' || message === null) return;
    if (message.from === this.tab) return;
    if (this.leading !== null) this.receiveAsLeader(message, this.leading);
    else if (this.stateValue === 'following') this.receiveAsFollower(message);
  }

  private receiveAsLeader(message: Message, leading: Leading): void {
    switch (message.t) {
      case 'hello': {
        this.post({ t: 'leader', from: this.tab, to: message.from });
        const connect = leading.connection.info;
        const info: StateInfo = connect === null ? { code: 0, reason: '' } : { code: 0, reason: '', connect };
        // Paused first: the tab learns it before "connected", as a socket of its own would.
        if (leading.connection.paused) this.post({ t: 'delivery', from: this.tab, paused: true });
        this.post({ t: 'state', from: this.tab, state: leading.connection.state, info });
        return;
      }
      case 'want':
        leading.router.want(message.from, this.remote, message.channel, message.since, message.req);
        return;
      case 'unwant':
        leading.router.unwant(message.from, message.channel);
        return;
      case 'bye':
        leading.router.dropOwner(message.from);
        this.visibility.delete(message.from);
        this.updateVisibility();
        return;
      case 'visible':
        this.visibility.set(message.from, message.visible);
        this.updateVisibility();
        return;
      default:
        return;
    }
  }

  private receiveAsFollower(message: Message): void {
    switch (message.t) {
      case 'leader':
        if (message.to !== null && message.to !== this.tab) return;
        if (message.to !== null && this.leaderId === message.from) return;
        this.leaderId = message.from;
        this.post({ t: 'visible', from: this.tab, visible: this.env.isVisible() });
        this.listener.relink(); // ask the new leader for every channel, with our positions
        return;
      case 'state':
        if (message.from === this.leaderId) this.listener.state(message.state, message.info);
        return;
      case 'delivery':
        if (message.from === this.leaderId) this.listener.delivery(message.paused);
        return;
      case 'sub':
        if (message.to === this.tab) this.listener.subscribed(message.channel, message.recovery, message.position, message.req);
        return;
      case 'resub':
        if (message.to === this.tab) this.listener.resubscribing(message.channel);
        return;
      case 'refused':
        if (message.to === this.tab) this.listener.refused(message.channel, message.code, message.message, message.req);
        return;
      case 'pub':
        this.listener.publication(message.channel, message.epoch, message.offset, message.data);
        return;
      default:
        return;
    }
  }

  private remoteSink(): OwnerSink {
    const from = this.tab;
    return {
      state: (state, info) => {
        if (state === 'disconnected' && this.leading === null) {
          // This tab gave up the socket (abdicate): for the other tabs the next leader is coming.
          this.post({ t: 'state', from, state: 'connecting', info: { code: 0, reason: 'the leader tab left' } });
        } else {
          this.post({ t: 'state', from, state, info });
        }
      },
      delivery: (paused) => this.post({ t: 'delivery', from, paused }),
      subscribed: (to, channel, recovery, position, req) =>
        this.post({ t: 'sub', from, to, channel, recovery, position, req }),
      resubscribing: (to, channel) => this.post({ t: 'resub', from, to, channel }),
      refused: (to, channel, code, message, req) => this.post({ t: 'refused', from, to, channel, code, message, req }),
      publication: (channel, epoch, offset, data) => this.post({ t: 'pub', from, channel, epoch, offset, data }),
    };
  }

  private post(message: Message): void {
    if (this.stateValue === 'closed' || this.channel === null) return;
    try {
      this.channel.postMessage(message);
    } catch {
      // data that cannot be cloned cannot come from the wire; a closed channel: nothing to do
    }
  }
}
