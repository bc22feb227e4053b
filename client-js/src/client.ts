/**
 * `HeraldClient`: the library's entry point.
 *
 *     const client = new HeraldClient('wss://rt.example.com/ws', { getToken });
 *     const sub = client.subscribe('question:42', (pub) => render(pub.data));
 *     sub.on('recoveryFailed', () => reloadQuestionOverHttp());
 *     client.connect();
 *
 * The connection state events mirror centrifuge-js: `connecting` (with the close code or
 * cause and the chosen delay), `connected` (with the connect reply), `disconnected` (stopped
 * for good: close(), disconnect(), or a terminal close code such as 4500).
 *
 * `status` says what a page can truthfully show: `live`, `delayed` (connected, but the
 * server's Redis is down: docs/protocol.md#delivery), `reconnecting`, `disconnected`.
 */
import type { BackoffOptions } from './backoff.js';
import { type Format, codecFor } from './codec.js';
import { type ConnectionOptions, DEFAULT_CONNECTION_OPTIONS } from './connection.js';
import { Emitter } from './emitter.js';
import { type Environment, browserEnvironment } from './env.js';
import { InvalidStateError } from './errors.js';
import type { Recovery, StreamPosition } from './frames.js';
import { type Link, type LinkListener, LocalLink, type Role } from './link.js';
import { SharedLink, sharingSupported } from './shared.js';
import type { TokenProvider } from './renewal.js';
import { type ConnectionState, type DeliveryStatus, type StateInfo, deliveryStatus } from './state.js';
import { type Publication, Subscription, type SubscriptionHost } from './subscription.js';

export interface HeraldClientOptions {
  /** Returns the connection token (a JWT from the site), or null to connect anonymously.
   * Called before the first connect, before the token expires, and after 4004 or 4500. */
  readonly getToken?: TokenProvider;
  /** Wire format: 'json' (text frames, the default) or 'msgpack' (binary frames). */
  readonly format?: Format;
  /** Share one socket among the tabs of this origin (default true, where supported). */
  readonly shareConnection?: boolean;
  readonly backoff?: BackoffOptions;
  readonly connectTimeoutMs?: number;
  readonly stableAfterMs?: number;
  readonly tokenRefreshMarginMs?: number;
  readonly floodDelayMs?: number;
  /** How often the connection reports what it saw to the fleet (reconnects, recoveries, time
   * without updates; docs/protocol.md#client-telemetry), in ms; 0 turns it off. Default 60 s. */
  readonly telemetryIntervalMs?: number;
  /** Carry the connect and the subscribes in the upgrade request (docs/protocol.md#fast-open):
   * their answers come with the 101, one round trip. Default true; false sends them as the
   * socket's first messages. */
  readonly fastOpen?: boolean;
  /** For tests and unusual hosts: sockets, timers, clock, page signals. */
  readonly environment?: Environment;
}

export interface SubscribeOptions {
  /** Recover from this position (e.g. the one the page's HTTP state was loaded at). */
  readonly since?: StreamPosition;
}

export type ClientEvents = {
  state: (state: ConnectionState, previous: ConnectionState) => void;
  /** The delivery status changed (see `HeraldClient.status`). */
  status: (status: DeliveryStatus, previous: DeliveryStatus) => void;
  connecting: (info: StateInfo) => void;
  connected: (info: StateInfo) => void;
  disconnected: (info: StateInfo) => void;
};

export class HeraldClient extends Emitter<ClientEvents> {
  private stateValue: ConnectionState = 'disconnected';
  /** The server said delivery is paused (since the last `connecting`). */
  private paused = false;
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly link: Link;
  private closed = false;

  constructor(readonly url: string, options: HeraldClientOptions = {}) {
    super();
    const env = options.environment ?? browserEnvironment();
    const codec = codecFor(options.format ?? 'json');
    const connectionOptions: ConnectionOptions = {
      url,
      codec,
      getToken: options.getToken ?? null,
      backoff: options.backoff ?? DEFAULT_CONNECTION_OPTIONS.backoff,
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECTION_OPTIONS.connectTimeoutMs,
      stableAfterMs: options.stableAfterMs ?? DEFAULT_CONNECTION_OPTIONS.stableAfterMs,
      tokenRefreshMarginMs: options.tokenRefreshMarginMs ?? DEFAULT_CONNECTION_OPTIONS.tokenRefreshMarginMs,
      floodDelayMs: options.floodDelayMs ?? DEFAULT_CONNECTION_OPTIONS.floodDelayMs,
      telemetryIntervalMs: options.telemetryIntervalMs ?? DEFAULT_CONNECTION_OPTIONS.telemetryIntervalMs,
      fastOpen: options.fastOpen ?? true,
    };
    const listener = this.linkListener();
    this.link =
      options.shareConnection !== false && sharingSupported()
        ? new SharedLink(`herald:${codec.format}:${url}`, connectionOptions, env, listener)
        : new LocalLink(connectionOptions, env, listener);
  }

  get state(): ConnectionState {
    return this.stateValue;
  }

  /** 'live', 'delayed' (connected, but the server's bus is down), 'reconnecting' or
   * 'disconnected': what the page can truthfully say about its updates. */
  get status(): DeliveryStatus {
    return deliveryStatus(this.stateValue, this.paused);
  }

  /** 'local': this tab has its own socket; 'leader'/'follower': tabs share the leader's. */
  get role(): Role {
    return this.link.role;
  }

  /** Connect, and stay connected (reconnecting as the close codes allow) until disconnect(). */
  connect(): void {
    this.requireOpen('connect');
    this.link.start();
  }

  /** Disconnect; subscriptions and their positions are kept for the next connect(). */
  disconnect(): void {
    this.requireOpen('disconnect');
    this.link.stop();
  }

  /** Subscribe to `channel`; `handler` (optional) receives its publications in order. */
  subscribe(channel: string, handler?: (publication: Publication) => void, options: SubscribeOptions = {}): Subscription {
    this.requireOpen('subscribe');
    if (this.subscriptions.has(channel)) {
      throw new InvalidStateError(`already subscribed to ${channel}: use getSubscription()`);
    }
    const subscription = new Subscription(channel, this.host(), options.since ?? null);
    if (handler !== undefined) subscription.on('publication', handler);
    this.subscriptions.set(channel, subscription);
    subscription.subscribe();
    return subscription;
  }

  getSubscription(channel: string): Subscription | undefined {
    return this.subscriptions.get(channel);
  }

  /** Disconnect and release everything (the shared socket passes to another tab). */
  close(): void {
    if (this.closed) return;
    for (const subscription of [...this.subscriptions.values()]) subscription.unsubscribe();
    this.link.close();
    this.setState('disconnected', { code: 1000, reason: 'close()' });
    this.closed = true;
  }

  private requireOpen(what: string): void {
    if (this.closed) throw new InvalidStateError(`${what}() on a closed HeraldClient`);
  }

  private host(): SubscriptionHost {
    return {
      claim: (subscription) => {
        const current = this.subscriptions.get(subscription.channel);
        if (current === undefined) {
          this.requireOpen('subscribe');
          this.subscriptions.set(subscription.channel, subscription); // subscribe() again after unsubscribe()
        } else if (current !== subscription) {
          throw new InvalidStateError(`another subscription to ${subscription.channel} exists`);
        }
      },
      want: (subscription, since, req) => {
        if (this.subscriptions.get(subscription.channel) === subscription) this.link.want(subscription.channel, since, req);
      },
      unwant: (subscription) => {
        if (this.subscriptions.get(subscription.channel) !== subscription) return;
        this.subscriptions.delete(subscription.channel);
        this.link.unwant(subscription.channel);
      },
    };
  }

  private linkListener(): LinkListener {
    const sub = (channel: string): Subscription | undefined => this.subscriptions.get(channel);
    return {
      state: (state, info) => this.setState(state, info),
      delivery: (paused) => this.setPaused(paused),
      subscribed: (channel: string, recovery: Recovery, position: StreamPosition, req: number) =>
        sub(channel)?._subscribed(recovery, position, req),
      resubscribing: (channel) => sub(channel)?._resubscribing(),
      refused: (channel, code, message, req) => sub(channel)?._refused(code, message, req),
      publication: (channel, epoch, offset, data) => sub(channel)?._publication(epoch, offset, data),
      relink: () => {
        for (const subscription of this.subscriptions.values()) subscription._relink();
      },
    };
  }

  private setState(state: ConnectionState, info: StateInfo): void {
    if (this.closed) return;
    const previous = this.stateValue;
    const status = this.status;
    this.stateValue = state;
    // A new socket starts live; the server's paused frame, if any, precedes its connect reply.
    if (state !== 'connected') this.paused = false;
    if (previous !== state) this.emit('state', state, previous);
    if (state === 'connecting') this.emit('connecting', info);
    else if (state === 'connected' && previous !== 'connected') this.emit('connected', info);
    else if (state === 'disconnected' && previous !== 'disconnected') this.emit('disconnected', info);
    this.emitStatus(status);
  }

  private setPaused(paused: boolean): void {
    if (this.closed) return;
    const status = this.status;
    this.paused = paused;
    this.emitStatus(status);
  }

  private emitStatus(previous: DeliveryStatus): void {
    const status = this.status;
    if (status !== previous) this.emit('status', status, previous);
  }
}
