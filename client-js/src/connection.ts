/**
 * One websocket to the fleet, kept alive: the connection state machine of protocol v1
 * (its states and transitions are drawn in state.ts).
 *
 * It owns the socket and its life: opening it, the connect handshake, reading frames and
 * dispatching answers, the close-code decision (codes.ts), the backoff before the next
 * attempt, and the page's online/visibility signals. The rest is delegated, one job each:
 * - `ChannelPositions` (positions.ts): the channels, their positions, subscribe and the
 *   duplicate and gap checks;
 * - `Liveness` (liveness.ts): the connect deadline, the deaf-socket timer and probes;
 * - `TokenKeeper` (renewal.ts): the token, and its renewal with `refresh`;
 * - `Telemetry` (telemetry.ts): what this client saw, reported to the fleet.
 * It knows nothing about tabs or application handlers: it reports to one
 * `ConnectionListener` (a `ChannelRouter`), which fans out to the subscriptions.
 */
import { type BackoffOptions, DEFAULT_BACKOFF, backoffDelayMs, retryHintMs } from './backoff.js';
import { type Codec } from './codec.js';
import { CloseCode, shouldReconnect } from './codes.js';
import type { Environment, SocketLike } from './env.js';
import {
  type Answer,
  type Command,
  type ConnectResult,
  ProtocolError,
  type ServerFrame,
  type StreamPosition,
  parseConnectResult,
} from './frames.js';
import { Liveness } from './liveness.js';
import { MAX_OPEN_TOKEN_LENGTH, openToken, subsOfToken } from './opening.js';
import { type ChannelHost, type ChannelListener, ChannelPositions } from './positions.js';
import { type TokenProvider, TokenKeeper } from './renewal.js';
import { Requests } from './requests.js';
import { type ConnectionState, LocalCause, type StateInfo, checkTransition } from './state.js';
import { Telemetry } from './telemetry.js';
import { Timer } from './timer.js';

export interface ConnectionOptions {
  readonly url: string;
  readonly codec: Codec;
  readonly getToken: TokenProvider | null;
  readonly backoff: BackoffOptions;
  /** Time allowed from opening the socket to the connect reply. */
  readonly connectTimeoutMs: number;
  /** A connection counts as stable (and the backoff restarts from 0) after this long. */
  readonly stableAfterMs: number;
  /** Fetch a new token this long before the current one expires, and send it on the open
   * connection with `refresh` (a planned reconnect if the server refuses the command). */
  readonly tokenRefreshMarginMs: number;
  /** The shortest wait after close 4006 (flood). */
  readonly floodDelayMs: number;
  /** How often to report telemetry while connected (docs/protocol.md#client-telemetry);
   * 0 turns it off. Default 60 s. */
  readonly telemetryIntervalMs?: number;
  /** Carry the connect and the subscribes in the upgrade request (docs/protocol.md#fast-open),
   * so that their answers come with the 101: one round trip. Default true. */
  readonly fastOpen?: boolean;
}

export const DEFAULT_CONNECTION_OPTIONS = {
  backoff: DEFAULT_BACKOFF,
  connectTimeoutMs: 10_000,
  stableAfterMs: 10_000,
  tokenRefreshMarginMs: 30_000,
  floodDelayMs: 60_000,
  telemetryIntervalMs: 60_000,
} as const;

/** What a connection reports; channel events only for channels added with `addChannel`. */
export interface ConnectionListener extends ChannelListener {
  state(state: ConnectionState, info: StateInfo): void;
  /** A `delivery` frame: the server's bus is down (`paused`) or delivery is live again.
   * Comes before the connect reply when the connection starts paused. */
  delivery(paused: boolean): void;
}

type Wait = 'online' | 'visible';

export class Connection {
  private stateValue: ConnectionState = 'disconnected';
  private socket: SocketLike | null = null;
  /** Bumped whenever a socket or an async step is abandoned: their late callbacks compare it
   * with the value they started with and do nothing. */
  private generation = 0;
  private connectInfo: ConnectResult | null = null;
  /** What the server last said about delivery on this socket (false on a new socket). */
  private pausedValue = false;
  private readonly requests = new Requests();
  private readonly channels: ChannelPositions;
  private readonly liveness: Liveness;
  private readonly tokens: TokenKeeper;
  private readonly telemetry: Telemetry;
  private attempt = 0;
  private unauthorizedRetried = false;
  private online: boolean;
  private visible: boolean;
  /** The server's restart hint or a flood close forbid reconnecting before this time. */
  private retryNotBefore = 0;
  /** Set while a reconnect waits for the network or for the page to be shown. */
  private waitingFor: Wait | null = null;
  private readonly retryTimer: Timer;
  private readonly stableTimer: Timer;
  /** While the first commands of a socket are gathered for its open token: `send` puts them
   * here instead of on a socket. */
  private gathering: Command[] | null = null;

  constructor(
    private readonly options: ConnectionOptions,
    private readonly env: Environment,
    private readonly listener: ConnectionListener,
  ) {
    this.online = env.isOnline();
    this.visible = env.isVisible();
    this.retryTimer = new Timer(env);
    this.stableTimer = new Timer(env);
    this.liveness = new Liveness(env, (cause) => this.abandonSocket(0, cause));
    this.telemetry = new Telemetry(
      env,
      options.telemetryIntervalMs ?? DEFAULT_CONNECTION_OPTIONS.telemetryIntervalMs,
      (counts, onAnswer) => this.request((id) => ({ op: 'telemetry', id, counts }), onAnswer),
    );
    this.channels = new ChannelPositions(env, options.backoff, this.channelHost(), this.countRecoveries(listener));
    this.tokens = new TokenKeeper(options.getToken, options.tokenRefreshMarginMs, env, {
      currentConnection: () => {
        const generation = this.generation;
        return () => generation === this.generation && this.stateValue === 'connected';
      },
      sendRefresh: (token, onAnswer) => this.request((id) => ({ op: 'refresh', id, token }), onAnswer),
      reconnectWithToken: () => this.reconnectForToken(),
    });
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  /** Whether the server said delivery is paused on the current socket. */
  get paused(): boolean {
    return this.pausedValue;
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
    this.channels.add(channel, since);
  }

  /** Stop wanting `channel`: unsubscribe (which also cancels a pending subscribe). */
  removeChannel(channel: string): void {
    this.channels.remove(channel);
  }

  hasChannel(channel: string): boolean {
    return this.channels.has(channel);
  }

  /** The channel's position, when it is live on the current socket. */
  livePosition(channel: string): StreamPosition | null {
    return this.channels.livePosition(channel);
  }

  /** The network went on or off line (window `online` / `offline`). */
  setOnline(online: boolean): void {
    if (online === this.online) return;
    this.online = online;
    if (this.stateValue === 'disconnected') return;
    if (!online) {
      // The socket may look open for minutes after the network went away; start over.
      this.dropSocket(CloseCode.NORMAL, LocalCause.OFFLINE);
      this.socketGone();
      this.waitFor('online', LocalCause.OFFLINE);
    } else if (this.stateValue === 'connected') {
      this.probe();
    } else if (this.waitingFor === 'online' || this.retryTimer.armed) {
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
    } else if (this.waitingFor === 'visible' || this.retryTimer.armed) {
      this.catchUp();
    }
  }

  // --- opening ----------------------------------------------------------------------------

  private open(): void {
    this.retryTimer.clear();
    this.waitingFor = null;
    if (!this.online) {
      this.waitFor('online', LocalCause.OFFLINE);
      return;
    }
    const generation = ++this.generation;
    if (!this.tokens.needsFetch()) {
      this.openSocket();
      return;
    }
    const stillOpening = (): boolean => generation === this.generation && this.stateValue === 'connecting';
    void this.tokens.fetch().then(
      () => {
        if (stillOpening()) this.openSocket();
      },
      () => {
        if (stillOpening()) this.scheduleRetry({ code: 0, reason: LocalCause.TOKEN });
      },
    );
  }

  private openSocket(): void {
    const generation = ++this.generation;
    // Fast open: the connect and the subscribes are made now; they travel in the upgrade
    // request when their open token fits, else as the socket's first messages.
    const first = this.options.fastOpen === false ? null : this.gather();
    const token = first === null ? null : openToken(first);
    const protocols = [this.options.codec.subprotocol];
    if (token !== null && token.length <= MAX_OPEN_TOKEN_LENGTH) protocols.push(token);
    let socket: SocketLike;
    try {
      socket = this.env.createSocket(this.options.url, protocols);
    } catch {
      this.requests.clear();
      this.channels.lost();
      this.scheduleRetry({ code: 0, reason: LocalCause.SOCKET });
      return;
    }
    socket.binaryType = this.options.codec.binaryType;
    this.socket = socket;
    const current = (): boolean => generation === this.generation && this.socket === socket;
    socket.onopen = () => {
      if (!current()) return;
      if (first === null) this.sendConnect();
      else if (protocols.length === 1) for (const command of first) this.send(command);
    };
    socket.onmessage = (event) => {
      if (current()) this.receive(event.data);
    };
    socket.onclose = (event) => {
      if (current()) this.lost(event.code, event.reason);
    };
    socket.onerror = () => undefined; // a close event follows; it carries the code
    this.liveness.opened(this.options.connectTimeoutMs);
  }

  /** The first commands of a new socket: the connect, then a subscribe for every channel the
   * app wants that the token's server-side subscriptions may not cover. */
  private gather(): Command[] {
    const first: Command[] = [];
    this.gathering = first;
    try {
      this.sendConnect();
      this.channels.subscribeAhead(subsOfToken(this.tokens.token));
    } finally {
      this.gathering = null;
    }
    return first;
  }

  private sendConnect(): void {
    this.request(
      (id) => {
        // Positions for the server-side subscriptions the token may name (none without one).
        const token = this.tokens.token;
        const since = token === null ? {} : this.channels.connectPositions();
        return Object.keys(since).length === 0 ? { op: 'connect', id, token } : { op: 'connect', id, token, since };
      },
      (answer) => {
        if (answer.type === 'error') {
          this.abandonSocket(0, `connect refused with error ${answer.code}`);
          return;
        }
        let result: ConnectResult;
        try {
          result = parseConnectResult(answer.result);
        } catch (error) {
          this.abandonSocket(0, `${LocalCause.PROTOCOL}: ${String(error)}`);
          return;
        }
        this.connected(result);
      },
    );
  }

  private connected(result: ConnectResult): void {
    this.connectInfo = result;
    this.liveness.watch(result.pingIntervalMs, result.pongTimeoutMs);
    this.stableTimer.set(this.options.stableAfterMs, () => {
      this.attempt = 0;
      this.unauthorizedRetried = false;
    });
    this.tokens.accepted(result.expiresAtMs);
    // The server-side subscriptions are live before anyone hears of the connection, so that
    // a subscribe made on `connected` finds them (and no publication precedes them).
    this.channels.serverSubscribed(result.subs);
    this.setState('connected', { code: 0, reason: '', connect: result });
    this.channels.subscribeAll();
  }

  /** The server refused `refresh`: a planned reconnect with the fresh token, at once. */
  private reconnectForToken(): void {
    this.dropSocket(CloseCode.NORMAL, LocalCause.TOKEN_REFRESH);
    this.socketGone();
    this.setState('connecting', { code: 0, reason: LocalCause.TOKEN_REFRESH, retryInMs: 0 });
    this.open();
  }

  // --- receiving --------------------------------------------------------------------------

  private receive(data: unknown): void {
    this.liveness.heard();
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
      case 'delivery':
        this.pausedValue = frame.paused;
        this.telemetry.delivery(frame.paused);
        this.listener.delivery(frame.paused);
        return;
      case 'pub':
        this.channels.publication(frame.channel, frame.offset, frame.data, frame.epoch, frame.conflated);
        return;
      case 'reply':
      case 'error':
        this.requests.answer(frame);
        return;
      case 'other':
        return;
    }
  }

  /** Ask for a sign of life now; any frame at all answers it (liveness.ts). */
  private probe(): void {
    this.liveness.probe(() => this.request((id) => ({ op: 'ping', id }), () => undefined));
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
    this.socketGone();
    if (code === 0 || shouldReconnect(code)) {
      this.telemetry.reconnect(code, reason);
      if (code === CloseCode.TOKEN_EXPIRED) this.tokens.markStale();
      this.scheduleRetry({ code, reason });
      return;
    }
    if (code === CloseCode.UNAUTHORIZED && this.tokens.hasProvider && !this.unauthorizedRetried) {
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
    const refused = this.tokens.token;
    const generation = ++this.generation;
    this.setState('connecting', { code, reason });
    void this.tokens.fetch().then(
      () => {
        if (generation !== this.generation) return;
        if (this.tokens.token === refused) this.stop({ code, reason });
        else this.scheduleRetry({ code, reason });
      },
      () => {
        if (generation === this.generation) this.stop({ code, reason });
      },
    );
  }

  private scheduleRetry(info: { code: number; reason: string }): void {
    this.resetConnectionState();
    // The server's hint (4000, 4003, 4007: a random share of its spread) comes on top of the
    // backoff, whatever the code: a crowd closed at once comes back spread out.
    const hintMs = retryHintMs(info.reason);
    let delay = backoffDelayMs(this.attempt++, this.options.backoff, () => this.env.random());
    delay += hintMs;
    if (info.code === CloseCode.FLOOD) delay = Math.max(delay, this.options.floodDelayMs);
    const mustWait = hintMs > 0 || info.code === CloseCode.RESTART || info.code === CloseCode.FLOOD;
    this.retryNotBefore = mustWait ? this.env.now() + delay : 0;
    this.setState('connecting', { ...info, retryInMs: delay });
    this.retryTimer.set(delay, () => {
      if (!this.visible) {
        this.waitFor('visible', LocalCause.HIDDEN); // no reconnect loop from a hidden tab
      } else {
        this.open();
      }
    });
  }

  private waitFor(what: Wait, reason: string): void {
    this.retryTimer.clear();
    this.waitingFor = what;
    this.setState('connecting', { code: 0, reason });
  }

  /** The page came back (shown, online): reconnect now instead of at the end of the backoff. */
  private catchUp(): void {
    if (!this.online) return;
    const wait = this.retryNotBefore - this.env.now();
    if (wait > 0) {
      // The server asked for this delay (a retry_ms hint, flood): keep it, but no longer.
      this.waitingFor = null;
      this.retryTimer.set(wait, () => this.open());
      return;
    }
    this.open();
  }

  private stop(info: StateInfo): void {
    this.retryTimer.clear();
    this.waitingFor = null;
    this.socketGone();
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

  /** Everything tied to the socket that went away ends; the channels wait to resubscribe. */
  private socketGone(): void {
    this.resetConnectionState();
    this.channels.lost();
  }

  private resetConnectionState(): void {
    this.requests.clear();
    this.connectInfo = null;
    this.pausedValue = false; // a new socket starts live; listeners reset on `connecting`
    this.liveness.stop();
    this.stableTimer.clear();
    this.tokens.stop();
  }

  // --- sending ----------------------------------------------------------------------------

  /** Send the command built with a fresh id; `onAnswer`, if given, receives its answer. */
  private request(build: (id: number) => Command, onAnswer?: (answer: Answer) => void): number {
    const id = this.requests.takeId();
    if (onAnswer !== undefined) this.requests.expect(id, onAnswer);
    this.send(build(id));
    return id;
  }

  private send(command: Command): void {
    if (this.gathering !== null) {
      this.gathering.push(command);
      return;
    }
    const socket = this.socket;
    if (socket === null) return;
    try {
      socket.send(this.options.codec.encode(command));
    } catch {
      // a socket that is closing: its close event decides what happens next
    }
  }

  private channelHost(): ChannelHost {
    return {
      isConnected: () => this.stateValue === 'connected',
      request: (build, onAnswer) => this.request(build, onAnswer),
      cancel: (id) => this.requests.cancel(id),
      broken: (reason) => this.abandonSocket(0, reason),
    };
  }

  /** The listener, with each subscribe reply's recovery counted for telemetry. */
  private countRecoveries(listener: ChannelListener): ChannelListener {
    return {
      subscribed: (channel, recovery, position) => {
        this.telemetry.recovery(recovery);
        listener.subscribed(channel, recovery, position);
      },
      resubscribing: (channel) => listener.resubscribing(channel),
      refused: (channel, code, message) => listener.refused(channel, code, message),
      publication: (channel, epoch, offset, data) => listener.publication(channel, epoch, offset, data),
    };
  }

  private setState(state: ConnectionState, info: StateInfo): void {
    checkTransition(this.stateValue, state);
    const changed = state !== this.stateValue;
    this.stateValue = state;
    if (changed) this.telemetry.state(state);
    if (changed || state === 'connecting') this.listener.state(state, info);
  }
}
