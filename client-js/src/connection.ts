/**
 * One websocket to the fleet, kept alive: the client state machine of protocol v1.
 *
 *     disconnected ──connect()──▶ connecting ──connect reply──▶ connected
 *          ▲                        ▲    │                           │
 *          │ terminal close code,   │    └── socket lost: back off ◀─┘
 *          └─ disconnect() ─────────┴─────────────────────────────────┘
 *
 * It owns the socket-level truth of docs/protocol.md#recovery: for each channel the position
 * (epoch, offset) it resubscribes from after a reconnect (the source of truth, like
 * redis-py's `PubSub.on_connect`), the duplicate and gap checks, heartbeats and the deaf-socket
 * timer, the close-code decision, the backoff, the token and the page's online/visibility
 * signals. It knows nothing about tabs or application handlers: it reports to one
 * `ConnectionListener` (a `ChannelRouter`), which fans out to the subscriptions.
 */
import { type BackoffOptions, DEFAULT_BACKOFF, backoffDelayMs, restartHintMs } from './backoff.js';
import { type Codec } from './codec.js';
import { CloseCode, ErrorCode, RETRY, shouldReconnect } from './codes.js';
import type { Environment, SocketLike, TimerHandle } from './env.js';
import {
  type Command,
  type ConnectResult,
  ProtocolError,
  type Recovery,
  type ServerFrame,
  type StreamPosition,
  parseConnectResult,
  parseSubscribeResult,
} from './frames.js';

export type ConnectionState = 'disconnected' | 'connecting' | 'connected';

/** Why the connection is (re)connecting or stopped: a close code, or a client-side cause. */
export interface StateInfo {
  /** The close code (CloseEvent.code), or 0 for a client-side cause. */
  readonly code: number;
  readonly reason: string;
  /** Set on `connected`. */
  readonly connect?: ConnectResult;
  /** Set while waiting to reconnect: the delay chosen, in milliseconds. */
  readonly retryInMs?: number;
}

export type TokenProvider = () => Promise<string | null> | string | null;

export interface ConnectionOptions {
  readonly url: string;
  readonly codec: Codec;
  readonly getToken: TokenProvider | null;
  readonly backoff: BackoffOptions;
  /** Time allowed from opening the socket to the connect reply. */
  readonly connectTimeoutMs: number;
  /** A connection counts as stable (and the backoff restarts from 0) after this long. */
  readonly stableAfterMs: number;
  /** Fetch a new token this long before the current one expires, and reconnect with it. */
  readonly tokenRefreshMarginMs: number;
  /** The shortest wait after close 4006 (flood). */
  readonly floodDelayMs: number;
}

export const DEFAULT_CONNECTION_OPTIONS = {
  backoff: DEFAULT_BACKOFF,
  connectTimeoutMs: 10_000,
  stableAfterMs: 10_000,
  tokenRefreshMarginMs: 30_000,
  floodDelayMs: 60_000,
} as const;

/** What a connection reports; channel events only for channels added with `addChannel`. */
export interface ConnectionListener {
  state(state: ConnectionState, info: StateInfo): void;
  /** The channel's subscribe reply: `position` is where it continues from. */
  subscribed(channel: string, recovery: Recovery, position: StreamPosition): void;
  /** The socket is gone; the channel will be resubscribed with recovery. */
  resubscribing(channel: string): void;
  /** The server refused the channel for good (403, 422, 430, ...); it has been dropped. */
  refused(channel: string, code: number, message: string): void;
  /** A publication, in order, each offset once. */
  publication(channel: string, epoch: string, offset: number, data: unknown): void;
}

interface ChannelEntry {
  position: StreamPosition | null;
  live: boolean;
  pendingId: number | null;
  retryAttempt: number;
  retryTimer: TimerHandle | null;
}

type ReplyHandler = (frame: Extract<ServerFrame, { type: 'reply' } | { type: 'error' }>) => void;

/** Client-side causes of a reconnect, reported with code 0. */
export const LocalCause = {
  DEAF: 'no frame within ping_interval_ms + pong_timeout_ms',
  CONNECT_TIMEOUT: 'no connect reply in time',
  GAP: 'a gap in the offsets of a channel',
  PROTOCOL: 'the server broke the protocol',
  OFFLINE: 'the browser is offline',
  HIDDEN: 'waiting for the page to be shown',
  TOKEN: 'the token provider failed',
  TOKEN_REFRESH: 'reconnecting with a fresh token',
  SOCKET: 'the websocket could not be created',
} as const;

export class Connection {
  private stateValue: ConnectionState = 'disconnected';
  private readonly channels = new Map<string, ChannelEntry>();
  private socket: SocketLike | null = null;
  private generation = 0;
  private nextId = 1;
  private readonly pending = new Map<number, ReplyHandler>();
  private attempt = 0;
  private unauthorizedRetried = false;
  private token: string | null = null;
  private tokenStale = true;
  /** The expiry the server read from the current token (connect reply), null if unknown. */
  private tokenExpiresAtMs: number | null = null;
  private connectInfo: ConnectResult | null = null;
  private lastFrameAt = 0;
  private framesReceived = 0;
  private online: boolean;
  private visible: boolean;
  /** The server's restart hint or a flood close forbid reconnecting before this time. */
  private retryNotBefore = 0;
  /** Set while a reconnect waits for the network or for the page to be shown. */
  private waitingFor: 'online' | 'visible' | null = null;
  private readonly timers = new Map<'retry' | 'liveness' | 'stable' | 'token' | 'probe', TimerHandle>();

  constructor(
    private readonly options: ConnectionOptions,
    private readonly env: Environment,
    private readonly listener: ConnectionListener,
  ) {
    this.online = env.isOnline();
    this.visible = env.isVisible();
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  /** The connect reply of the current connection, null unless connected. */
  get info(): ConnectResult | null {
    return this.connectInfo;
  }

  /** Start connecting (from `disconnected`; otherwise nothing to do). */
  connect(): void {
    if (this.stateValue !== 'disconnected') return;
    this.attempt = 0;
    this.unauthorizedRetried = false;
    this.setState('connecting', { code: 0, reason: 'connect()' });
    this.open();
  }

  /** Close the socket and stay disconnected; channels are kept for the next `connect()`. */
  disconnect(reason = 'disconnect()'): void {
    if (this.stateValue === 'disconnected') return;
    this.dropSocket(CloseCode.NORMAL, reason);
    this.stop({ code: CloseCode.NORMAL, reason });
  }

  /** Want `channel` from `since` (null: from now); subscribes at once when connected. */
  addChannel(channel: string, since: StreamPosition | null): void {
    if (this.channels.has(channel)) return;
    const entry: ChannelEntry = { position: since, live: false, pendingId: null, retryAttempt: 0, retryTimer: null };
    this.channels.set(channel, entry);
    if (this.stateValue === 'connected') this.sendSubscribe(channel, entry);
  }

  /** Stop wanting `channel`: unsubscribe (which also cancels a pending subscribe). */
  removeChannel(channel: string): void {
    const entry = this.channels.get(channel);
    if (entry === undefined) return;
    this.channels.delete(channel);
    this.clearChannelRetry(entry);
    if (entry.pendingId !== null) this.pending.delete(entry.pendingId);
    if (this.stateValue === 'connected' && (entry.live || entry.pendingId !== null)) {
      this.send({ op: 'unsubscribe', id: this.takeId(), channel });
    }
  }

  hasChannel(channel: string): boolean {
    return this.channels.has(channel);
  }

  /** The channel's position, when it is live on the current socket. */
  livePosition(channel: string): StreamPosition | null {
    const entry = this.channels.get(channel);
    return entry?.live === true ? entry.position : null;
  }

  /** The network went on or off line (window `online` / `offline`). */
  setOnline(online: boolean): void {
    if (online === this.online) return;
    this.online = online;
    if (this.stateValue === 'disconnected') return;
    if (!online) {
      // The socket may look open for minutes after the network went away; start over.
      this.dropSocket(CloseCode.NORMAL, LocalCause.OFFLINE);
      this.resetConnectionState();
      this.markChannelsLost();
      this.waitFor('online', LocalCause.OFFLINE);
    } else if (this.stateValue === 'connected') {
      this.probe();
    } else if (this.waitingFor === 'online' || this.timers.has('retry')) {
      this.catchUp();
    }
  }

  /** The page was shown or hidden (`visibilitychange`). */
  setVisible(visible: boolean): void {
    if (visible === this.visible) return;
    this.visible = visible;
    if (!visible || this.stateValue === 'disconnected') return;
    if (this.stateValue === 'connected') {
      this.probe(); // timers were throttled in the background: check the socket now
    } else if (this.waitingFor === 'visible' || this.timers.has('retry')) {
      this.catchUp();
    }
  }

  // --- opening ----------------------------------------------------------------------------

  private open(): void {
    this.clearTimer('retry');
    this.waitingFor = null;
    if (!this.online) {
      this.waitFor('online', LocalCause.OFFLINE);
      return;
    }
    const generation = ++this.generation;
    if (this.getTokenNeeded()) {
      void this.fetchToken().then(
        () => {
          if (generation === this.generation && this.stateValue === 'connecting') this.openSocket();
        },
        () => {
          if (generation === this.generation && this.stateValue === 'connecting') {
            this.scheduleRetry({ code: 0, reason: LocalCause.TOKEN });
          }
        },
      );
    } else {
      this.openSocket();
    }
  }

  private getTokenNeeded(): boolean {
    if (this.options.getToken === null) return false;
    if (this.tokenStale) return true;
    const expiresAt = this.tokenExpiresAtMs;
    return expiresAt !== null && this.env.now() >= expiresAt - this.options.tokenRefreshMarginMs;
  }

  private async fetchToken(): Promise<void> {
    const provider = this.options.getToken;
    if (provider === null) return;
    const token = await provider();
    this.token = token;
    this.tokenStale = false;
    this.tokenExpiresAtMs = null;
  }

  private openSocket(): void {
    const generation = ++this.generation;
    let socket: SocketLike;
    try {
      socket = this.env.createSocket(this.options.url, [this.options.codec.subprotocol]);
    } catch {
      this.scheduleRetry({ code: 0, reason: LocalCause.SOCKET });
      return;
    }
    socket.binaryType = this.options.codec.binaryType;
    this.socket = socket;
    const current = (): boolean => generation === this.generation && this.socket === socket;
    socket.onopen = () => {
      if (current()) this.sendConnect();
    };
    socket.onmessage = (event) => {
      if (current()) this.receive(event.data);
    };
    socket.onclose = (event) => {
      if (current()) this.lost(event.code, event.reason);
    };
    socket.onerror = () => undefined; // a close event follows; it carries the code
    this.lastFrameAt = this.env.now();
    this.armLiveness(this.options.connectTimeoutMs, LocalCause.CONNECT_TIMEOUT);
  }

  private sendConnect(): void {
    const id = this.takeId();
    this.pending.set(id, (frame) => {
      if (frame.type === 'error') {
        this.abandonSocket(0, `connect refused with error ${frame.code}`);
        return;
      }
      let result: ConnectResult;
      try {
        result = parseConnectResult(frame.result);
      } catch (error) {
        this.abandonSocket(0, `${LocalCause.PROTOCOL}: ${String(error)}`);
        return;
      }
      this.connected(result);
    });
    this.send({ op: 'connect', id, token: this.token });
  }

  private connected(result: ConnectResult): void {
    this.connectInfo = result;
    this.tokenExpiresAtMs = result.expiresAtMs;
    this.armLiveness(result.pingIntervalMs + result.pongTimeoutMs, LocalCause.DEAF);
    this.setTimer('stable', this.options.stableAfterMs, () => {
      this.attempt = 0;
      this.unauthorizedRetried = false;
    });
    this.armTokenRenewal();
    this.setState('connected', { code: 0, reason: '', connect: result });
    for (const [channel, entry] of this.channels) {
      if (this.stateValue !== 'connected') return;
      this.sendSubscribe(channel, entry);
    }
  }

  private armTokenRenewal(): void {
    const expiresAt = this.tokenExpiresAtMs;
    if (expiresAt === null || this.options.getToken === null) return;
    // A token that lives less than twice the margin is renewed at half its remaining life,
    // not at once: short-lived tokens must not turn into a renewal loop.
    const remaining = expiresAt - this.env.now();
    const refreshIn = Math.max(remaining - this.options.tokenRefreshMarginMs, remaining / 2);
    if (remaining > 0) this.setTimer('token', refreshIn, () => this.refreshToken());
  }

  /** A fresh token goes to the open connection with the `refresh` command (docs/protocol.md);
   * a server that refuses the command gets a planned reconnect with recovery instead. A token
   * the server does not accept closes the socket (4004, 4500), handled like any close. */
  private refreshToken(): void {
    const generation = this.generation;
    void this.fetchToken().then(
      () => {
        if (generation !== this.generation || this.stateValue !== 'connected') return;
        const id = this.takeId();
        this.pending.set(id, (frame) => {
          if (generation !== this.generation || this.stateValue !== 'connected') return;
          if (frame.type === 'error') {
            this.reconnectForToken();
            return;
          }
          const expires = frame.result['expires_at'];
          this.tokenExpiresAtMs =
            typeof expires === 'number' && Number.isFinite(expires) ? expires * 1000 : null;
          this.armTokenRenewal();
        });
        this.send({ op: 'refresh', id, token: this.token });
      },
      () => {
        this.tokenStale = true; // try again when the server closes with 4004
      },
    );
  }

  private reconnectForToken(): void {
    this.dropSocket(CloseCode.NORMAL, LocalCause.TOKEN_REFRESH);
    this.resetConnectionState();
    this.markChannelsLost();
    this.setState('connecting', { code: 0, reason: LocalCause.TOKEN_REFRESH, retryInMs: 0 });
    this.open();
  }

  // --- channels ---------------------------------------------------------------------------

  private sendSubscribe(channel: string, entry: ChannelEntry): void {
    this.clearChannelRetry(entry);
    const id = this.takeId();
    const since = entry.position;
    entry.pendingId = id;
    this.pending.set(id, (frame) => {
      if (this.channels.get(channel) !== entry) return;
      entry.pendingId = null;
      if (frame.type === 'error') {
        this.subscribeError(channel, entry, frame.code, frame.message);
        return;
      }
      let result;
      try {
        result = parseSubscribeResult(frame.result);
      } catch (error) {
        this.abandonSocket(0, `${LocalCause.PROTOCOL}: ${String(error)}`);
        return;
      }
      entry.retryAttempt = 0;
      entry.live = true;
      if (result.recovery !== 'recovered' || entry.position === null) {
        // none, failed: continue from the reply's position; recovered: the replay follows.
        entry.position = { epoch: result.epoch, offset: result.offset };
      }
      this.listener.subscribed(channel, result.recovery, entry.position);
    });
    this.send({ op: 'subscribe', id, channel, since });
  }

  private subscribeError(channel: string, entry: ChannelEntry, code: number, message: string): void {
    if (RETRY.has(code)) {
      const delay = backoffDelayMs(entry.retryAttempt++, this.options.backoff, () => this.env.random());
      entry.retryTimer = this.env.setTimeout(() => {
        entry.retryTimer = null;
        if (this.channels.get(channel) === entry && this.stateValue === 'connected') {
          this.sendSubscribe(channel, entry);
        }
      }, Math.max(delay, code === ErrorCode.TOO_MANY_REQUESTS ? 1000 : 0));
      return;
    }
    this.channels.delete(channel);
    this.listener.refused(channel, code, message);
  }

  private clearChannelRetry(entry: ChannelEntry): void {
    if (entry.retryTimer !== null) {
      this.env.clearTimeout(entry.retryTimer);
      entry.retryTimer = null;
    }
  }

  private markChannelsLost(): void {
    for (const [channel, entry] of this.channels) {
      this.clearChannelRetry(entry);
      entry.pendingId = null;
      if (entry.live) {
        entry.live = false;
        this.listener.resubscribing(channel);
      }
    }
  }

  // --- receiving --------------------------------------------------------------------------

  private receive(data: unknown): void {
    this.lastFrameAt = this.env.now();
    this.framesReceived++;
    let frame: ServerFrame;
    try {
      frame = this.options.codec.decode(data);
    } catch (error) {
      const why = error instanceof ProtocolError ? error.message : String(error);
      this.abandonSocket(0, `${LocalCause.PROTOCOL}: ${why}`);
      return;
    }
    switch (frame.type) {
      case 'hb':
        this.send({ op: 'pong' });
        return;
      case 'pub':
        this.publication(frame.channel, frame.offset, frame.data);
        return;
      case 'reply':
      case 'error': {
        if (frame.id === null) return; // an answer to a message the server could not read
        const handler = this.pending.get(frame.id);
        this.pending.delete(frame.id);
        handler?.(frame);
        return;
      }
      case 'other':
        return;
    }
  }

  private publication(channel: string, offset: number, data: unknown): void {
    const entry = this.channels.get(channel);
    if (entry === undefined || !entry.live || entry.position === null) return; // not ours (any more)
    const position = entry.position;
    if (offset <= position.offset) return; // a duplicate
    if (offset > position.offset + 1) {
      this.abandonSocket(0, `${LocalCause.GAP} (${channel}: ${position.offset} then ${offset})`);
      return;
    }
    entry.position = { epoch: position.epoch, offset };
    this.listener.publication(channel, position.epoch, offset, data);
  }

  // --- liveness ---------------------------------------------------------------------------

  /** One timer for "no frame within `windowMs` of the last one", re-armed lazily. */
  private armLiveness(windowMs: number, cause: string): void {
    const check = (): void => {
      const silentFor = this.env.now() - this.lastFrameAt;
      if (silentFor >= windowMs) {
        this.abandonSocket(0, cause);
      } else {
        this.setTimer('liveness', windowMs - silentFor, check);
      }
    };
    if (cause === LocalCause.CONNECT_TIMEOUT) {
      // Frames before the connect reply do not extend the connect deadline.
      this.setTimer('liveness', windowMs, () => this.abandonSocket(0, cause));
    } else {
      this.setTimer('liveness', windowMs, check);
    }
  }

  /** Ask for a sign of life now; reconnect if none comes within pong_timeout_ms. */
  private probe(): void {
    const info = this.connectInfo;
    if (info === null || this.timers.has('probe')) return;
    const framesBefore = this.framesReceived;
    const id = this.takeId();
    this.pending.set(id, () => undefined); // any frame at all is the sign of life
    this.send({ op: 'ping', id });
    this.setTimer('probe', info.pongTimeoutMs, () => {
      if (this.framesReceived === framesBefore) this.abandonSocket(0, LocalCause.DEAF);
    });
  }

  // --- losing the socket ------------------------------------------------------------------

  /** Close the socket from this side and go through the same path as a lost one. */
  private abandonSocket(code: number, reason: string): void {
    this.dropSocket(CloseCode.NORMAL, reason);
    this.afterLoss(code, reason);
  }

  /** The server (or the network) closed the socket. */
  private lost(code: number, reason: string): void {
    this.socket = null;
    this.afterLoss(code, reason);
  }

  private afterLoss(code: number, reason: string): void {
    this.resetConnectionState();
    this.markChannelsLost();
    if (code === 0 || shouldReconnect(code)) {
      if (code === CloseCode.TOKEN_EXPIRED) this.tokenStale = true;
      this.scheduleRetry({ code, reason });
      return;
    }
    if (code === CloseCode.UNAUTHORIZED && this.options.getToken !== null && !this.unauthorizedRetried) {
      this.retryWithAnotherToken(code, reason);
      return;
    }
    this.stop({ code, reason });
  }

  /**
   * The token was refused (4500): ask the provider once for another one (the user may have
   * logged in again in another tab) and reconnect with it; never with the refused one
   * (docs/protocol.md#tokens). A second refusal in a row stops.
   */
  private retryWithAnotherToken(code: number, reason: string): void {
    this.unauthorizedRetried = true;
    const refused = this.token;
    const generation = ++this.generation;
    this.setState('connecting', { code, reason });
    void this.fetchToken().then(
      () => {
        if (generation !== this.generation) return;
        if (this.token === refused) this.stop({ code, reason });
        else this.scheduleRetry({ code, reason });
      },
      () => {
        if (generation === this.generation) this.stop({ code, reason });
      },
    );
  }

  private scheduleRetry(info: { code: number; reason: string }): void {
    this.resetConnectionState();
    let delay = backoffDelayMs(this.attempt++, this.options.backoff, () => this.env.random());
    if (info.code === CloseCode.RESTART) delay += restartHintMs(info.reason);
    if (info.code === CloseCode.FLOOD) delay = Math.max(delay, this.options.floodDelayMs);
    const mustWait = info.code === CloseCode.RESTART || info.code === CloseCode.FLOOD;
    this.retryNotBefore = mustWait ? this.env.now() + delay : 0;
    this.setState('connecting', { ...info, retryInMs: delay });
    this.setTimer('retry', delay, () => {
      if (!this.visible) {
        this.waitFor('visible', LocalCause.HIDDEN); // no reconnect loop from a hidden tab
      } else {
        this.open();
      }
    });
  }

  private waitFor(what: 'online' | 'visible', reason: string): void {
    this.clearTimer('retry');
    this.waitingFor = what;
    this.setState('connecting', { code: 0, reason });
  }

  /** The page came back (shown, online): reconnect now instead of at the end of the backoff. */
  private catchUp(): void {
    if (!this.online) return;
    const wait = this.retryNotBefore - this.env.now();
    if (wait > 0) {
      // The server asked for this delay (restart hint, flood): keep it, but no longer.
      this.waitingFor = null;
      this.setTimer('retry', wait, () => this.open());
      return;
    }
    this.open();
  }

  private stop(info: StateInfo): void {
    this.resetConnectionState();
    this.clearTimer('retry');
    this.waitingFor = null;
    this.markChannelsLost();
    this.generation++;
    this.setState('disconnected', info);
  }

  private dropSocket(code: number, reason: string): void {
    const socket = this.socket;
    this.socket = null;
    this.generation++;
    if (socket === null) return;
    socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    try {
      socket.close(code, reason.slice(0, 120));
    } catch {
      // closing an already closed socket: nothing to do
    }
  }

  private resetConnectionState(): void {
    this.pending.clear();
    this.connectInfo = null;
    for (const name of ['liveness', 'stable', 'token', 'probe'] as const) this.clearTimer(name);
  }

  // --- helpers ----------------------------------------------------------------------------

  private send(command: Command): void {
    const socket = this.socket;
    if (socket === null) return;
    try {
      socket.send(this.options.codec.encode(command));
    } catch {
      // a socket that is closing: its close event decides what happens next
    }
  }

  private takeId(): number {
    const id = this.nextId;
    this.nextId = id >= 2_147_483_647 ? 1 : id + 1;
    return id;
  }

  private setState(state: ConnectionState, info: StateInfo): void {
    const changed = state !== this.stateValue;
    this.stateValue = state;
    if (changed || state === 'connecting') this.listener.state(state, info);
  }

  private setTimer(name: 'retry' | 'liveness' | 'stable' | 'token' | 'probe', delayMs: number, fn: () => void): void {
    this.clearTimer(name);
    this.timers.set(
      name,
      this.env.setTimeout(() => {
        this.timers.delete(name);
        fn();
      }, delayMs),
    );
  }

  private clearTimer(name: 'retry' | 'liveness' | 'stable' | 'token' | 'probe'): void {
    const handle = this.timers.get(name);
    if (handle !== undefined) {
      this.env.clearTimeout(handle);
      this.timers.delete(name);
    }
  }
}
