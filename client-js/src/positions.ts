/**
 * The channels a connection carries and where each stands: for every channel wanted, its
 * state on the current socket and the position (epoch, offset) it resubscribes from after a
 * reconnect. This table is the source of truth for resubscribing, like redis-py's
 * `PubSub.on_connect` (docs/protocol.md#recovery).
 *
 * It sends the subscribe and unsubscribe commands, applies their answers (retrying 429, 500
 * and 503 per channel with backoff), and checks every publication against the position:
 * offsets at or below it are duplicates and dropped; an offset past the next one is a gap,
 * never sent on a healthy socket, so the socket is given up and recovery fills the gap, unless
 * the frame says the offsets skipped were conflated (superseded by this or another newer
 * publication: docs/protocol.md#conflation), which is no gap and needs no recovery.
 *
 * Server-side subscriptions (docs/protocol.md#server-side-subscriptions): the connect reply
 * says which channels the token made the server subscribe; those are live without a
 * subscribe command, are never unsubscribed (the server refuses it: an app that no longer
 * wants one stops hearing of it, its position is kept), and their positions go in the next
 * connect command. One the server refused, or one a new token no longer names, is subscribed
 * like any other channel if the app wants it.
 *
 *     idle ──subscribe──▶ subscribing ──reply──▶ live
 *      ▲                   │       ▲              │
 *      │            429, 500, 503  └── retrying   │
 *      └────────── socket lost ◀──────────────────┘       other errors: the channel is dropped
 */
import { type BackoffOptions, backoffDelayMs } from './backoff.js';
import { ErrorCode, RETRY } from './codes.js';
import type { Environment } from './env.js';
import { InvalidStateError } from './errors.js';
import {
  type Answer,
  type Command,
  NO_EPOCH,
  MAX_CONNECT_POSITIONS,
  type Recovery,
  type ServerSubResult,
  type StreamPosition,
  isSubscribed,
  parseSubscribeResult,
} from './frames.js';
import { LocalCause } from './state.js';
import { Timer } from './timer.js';

/** A channel's state on the current socket; `idle`: wanted, not subscribed on it (yet). */
export type ChannelState = 'idle' | 'subscribing' | 'retrying' | 'live';

/** What the connection reports about its channels (only channels added with `add`). */
export interface ChannelListener {
  /** The channel's subscribe reply: `position` is where it continues from. */
  subscribed(channel: string, recovery: Recovery, position: StreamPosition): void;
  /** The socket is gone; the channel will be resubscribed with recovery. */
  resubscribing(channel: string): void;
  /** The server refused the channel for good (403, 422, 430, ...); it has been dropped. */
  refused(channel: string, code: number, message: string): void;
  /** A publication, in order, each offset once. */
  publication(channel: string, epoch: string, offset: number, data: unknown): void;
}

/** What the channel table needs from its connection. */
export interface ChannelHost {
  /** Whether the socket is connected (commands can be sent). */
  isConnected(): boolean;
  /** Send the command built with a fresh id; `onAnswer`, if given, receives its answer. */
  request(build: (id: number) => Command, onAnswer?: (answer: Answer) => void): number;
  /** Forget the command `id`: its answer, if one comes, is ignored. */
  cancel(id: number): void;
  /** The server broke the protocol or skipped offsets: give up the socket and recover. */
  broken(reason: string): void;
}

/** The server's rate limit refills at 20 commands/s: a 429 waits at least this long. */
const RATE_LIMITED_RETRY_MS = 1000;

interface ChannelEntry {
  state: ChannelState;
  position: StreamPosition | null;
  /** The subscribe command in flight, while `subscribing`. */
  requestId: number | null;
  retryAttempt: number;
  readonly retry: Timer;
  /** The app wants it (`add`); an unwanted entry is a server-side subscription only. */
  wanted: boolean;
  /** The server subscribes it at connect (the last connect reply's `subs` named it). */
  server: boolean;
}

export class ChannelPositions {
  private readonly entries = new Map<string, ChannelEntry>();

  constructor(
    private readonly env: Environment,
    private readonly backoff: BackoffOptions,
    private readonly host: ChannelHost,
    private readonly listener: ChannelListener,
  ) {}

  /** Whether the app wants `channel` (server-side subscriptions it has not asked for: no). */
  has(channel: string): boolean {
    return this.entries.get(channel)?.wanted === true;
  }

  /** Whether the server subscribes `channel` at connect (the last connect reply said so). */
  isServerSide(channel: string): boolean {
    return this.entries.get(channel)?.server === true;
  }

  /** The channel's position, when it is live on the current socket. */
  livePosition(channel: string): StreamPosition | null {
    const entry = this.entries.get(channel);
    return entry?.state === 'live' ? entry.position : null;
  }

  /** Want `channel` from `since` (null: from now); subscribes at once when connected. */
  add(channel: string, since: StreamPosition | null): void {
    const existing = this.entries.get(channel);
    if (existing !== undefined) {
      if (existing.wanted) return;
      // A server-side subscription: the connection's position stands (the router tells an
      // owner whose own position is behind it that its recovery failed). 'none': no recovery
      // happened on the socket now, so telemetry counts none. Answered after the caller's
      // turn, as a subscribe reply would be: listeners added right after subscribe() hear it.
      existing.wanted = true;
      void Promise.resolve().then(() => {
        const now = this.entries.get(channel);
        if (now === existing && now.wanted && now.state === 'live' && now.position !== null) {
          this.listener.subscribed(channel, 'none', now.position);
        }
      });
      return;
    }
    const entry = this.newEntry(since, true);
    this.entries.set(channel, entry);
    if (this.host.isConnected()) this.subscribe(channel, entry);
  }

  private newEntry(since: StreamPosition | null, wanted: boolean): ChannelEntry {
    return {
      state: 'idle',
      position: since,
      requestId: null,
      retryAttempt: 0,
      retry: new Timer(this.env),
      wanted,
      server: !wanted,
    };
  }

  /** Stop wanting `channel`: unsubscribe (which also cancels a pending subscribe). */
  remove(channel: string): void {
    const entry = this.entries.get(channel);
    if (entry === undefined) return;
    if (entry.server) {
      entry.wanted = false; // the server keeps sending it (no unsubscribe): kept, unheard
      return;
    }
    this.entries.delete(channel);
    entry.retry.clear();
    if (entry.requestId !== null) this.host.cancel(entry.requestId);
    const onSocket = entry.state === 'live' || entry.state === 'subscribing';
    if (onSocket && this.host.isConnected()) {
      this.host.request((id) => ({ op: 'unsubscribe', id, channel }));
    }
  }

  /** The connect reply came: subscribe every channel not already live (or being subscribed
   * by the socket's fast open), from its position. */
  subscribeAll(): void {
    for (const [channel, entry] of this.entries) {
      if (!this.host.isConnected()) return;
      if (entry.state === 'idle' || entry.state === 'retrying') this.subscribe(channel, entry);
    }
  }

  /** A socket is being opened (fast open, docs/protocol.md#fast-open): subscribe, ahead of
   * the connect reply, every channel not known to be a server-side subscription (`server`:
   * those the token names). */
  subscribeAhead(server: ReadonlySet<string>): void {
    for (const [channel, entry] of this.entries) {
      if (entry.server || server.has(channel)) continue; // the connect subscribes it
      if (entry.state === 'idle' || entry.state === 'retrying') this.subscribe(channel, entry);
    }
  }

  /** The positions to send in the connect command: the server-side subscriptions' first,
   * then the other channels' (the server ignores those its token does not name), at most
   * MAX_CONNECT_POSITIONS. */
  connectPositions(): Readonly<Record<string, StreamPosition>> {
    const positions: Record<string, StreamPosition> = {};
    const ordered = [...this.entries].sort(([, a], [, b]) => Number(b.server) - Number(a.server));
    let count = 0;
    for (const [channel, entry] of ordered) {
      if (entry.position === null || count >= MAX_CONNECT_POSITIONS) continue;
      positions[channel] = entry.position;
      count++;
    }
    return positions;
  }

  /** The connect reply's `subs`, applied before anything else of the new socket: each channel
   * the server subscribed is live from its result (as a subscribe reply); one it refused, or
   * one no longer named, is left to `subscribeAll` if the app wants it, else forgotten. */
  serverSubscribed(subs: Readonly<Record<string, ServerSubResult>>): void {
    for (const [channel, entry] of [...this.entries]) {
      const result = subs[channel];
      if (!entry.server || (result !== undefined && isSubscribed(result))) continue;
      entry.server = false;
      if (!entry.wanted) this.entries.delete(channel);
    }
    for (const [channel, result] of Object.entries(subs)) {
      if (!isSubscribed(result)) continue;
      let entry = this.entries.get(channel);
      if (entry === undefined) {
        entry = this.newEntry(null, false);
        this.entries.set(channel, entry);
      }
      entry.server = true;
      entry.retry.clear();
      entry.retryAttempt = 0;
      if (entry.requestId !== null) {
        // Subscribed ahead too (fast open, before the token's subs were known): the server
        // answers that one 409; the connect's subscription is the one that counts.
        this.host.cancel(entry.requestId);
        entry.requestId = null;
      }
      entry.state = 'live';
      if (result.recovery !== 'recovered' || entry.position === null) {
        entry.position = { epoch: result.epoch, offset: result.offset };
      }
      this.listener.subscribed(channel, result.recovery, entry.position);
    }
  }

  /** The socket is gone: every channel goes back to idle; live ones are reported. */
  lost(): void {
    for (const [channel, entry] of this.entries) {
      entry.retry.clear();
      entry.requestId = null;
      const wasLive = entry.state === 'live';
      entry.state = 'idle';
      if (wasLive) this.listener.resubscribing(channel);
    }
  }

  /**
   * A publication from the socket: applied if it is the channel's next offset. `epoch` comes
   * only with an epoch's first offset; a position at NO_EPOCH ("-": nothing was published when
   * it was taken) takes it, so that a later subscribe recovers from a named epoch.
   * `conflated`: the server dropped the offsets from there up to `offset` - 1 on purpose, each
   * superseded by a newer value (docs/protocol.md#conflation): a skip it covers is no gap. Values
   * still come in offset order, so an older one is never applied after a newer one.
   */
  publication(
    channel: string,
    offset: number,
    data: unknown,
    epoch: string | null = null,
    conflated: number | null = null,
  ): void {
    const entry = this.entries.get(channel);
    if (entry === undefined || entry.state !== 'live' || entry.position === null) return; // not ours (any more)
    const position = entry.position;
    if (offset <= position.offset) return; // a duplicate
    if (offset > position.offset + 1 && !(conflated !== null && conflated <= position.offset + 1)) {
      this.host.broken(`${LocalCause.GAP} (${channel}: ${position.offset} then ${offset})`);
      return;
    }
    const named = position.epoch === NO_EPOCH && epoch !== null ? epoch : position.epoch;
    entry.position = { epoch: named, offset };
    this.listener.publication(channel, named, offset, data);
  }

  private subscribe(channel: string, entry: ChannelEntry): void {
    if (entry.state !== 'idle' && entry.state !== 'retrying') {
      throw new InvalidStateError(`subscribe to ${channel} in state ${entry.state}`);
    }
    entry.retry.clear();
    entry.state = 'subscribing';
    const since = entry.position;
    entry.requestId = this.host.request(
      (id) => ({ op: 'subscribe', id, channel, since }),
      (answer) => {
        if (this.entries.get(channel) !== entry) return;
        entry.requestId = null;
        this.answered(channel, entry, answer);
      },
    );
  }

  private answered(channel: string, entry: ChannelEntry, answer: Answer): void {
    if (answer.type === 'error') {
      this.refusedWith(channel, entry, answer.code, answer.message);
      return;
    }
    let result;
    try {
      result = parseSubscribeResult(answer.result);
    } catch (error) {
      entry.state = 'idle';
      this.host.broken(`${LocalCause.PROTOCOL}: ${String(error)}`);
      return;
    }
    entry.retryAttempt = 0;
    entry.state = 'live';
    if (result.recovery !== 'recovered' || entry.position === null) {
      // none, failed: continue from the reply's position; recovered: the replay follows.
      entry.position = { epoch: result.epoch, offset: result.offset };
    }
    this.listener.subscribed(channel, result.recovery, entry.position);
  }

  private refusedWith(channel: string, entry: ChannelEntry, code: number, message: string): void {
    if (!RETRY.has(code)) {
      this.entries.delete(channel);
      this.listener.refused(channel, code, message);
      return;
    }
    entry.state = 'retrying';
    const delay = backoffDelayMs(entry.retryAttempt++, this.backoff, () => this.env.random());
    const wait = code === ErrorCode.TOO_MANY_REQUESTS ? Math.max(delay, RATE_LIMITED_RETRY_MS) : delay;
    entry.retry.set(wait, () => {
      if (this.entries.get(channel) === entry && this.host.isConnected()) this.subscribe(channel, entry);
    });
  }
}
