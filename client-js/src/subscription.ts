/**
 * One channel as the application sees it: the subscription state machine.
 *
 *     unsubscribed ──subscribe──▶ subscribing ──reply──▶ subscribed
 *          ▲                          ▲                       │
 *          │ unsubscribe(), refused   └── connection lost ────┘
 *
 * It keeps its own position and delivers each offset once, in order; `recoveryFailed`
 * tells the app that publications were lost and its state must be reloaded over HTTP.
 */
import { Emitter } from './emitter.js';
import { InvalidStateError } from './errors.js';
import { NO_EPOCH, type Recovery, type StreamPosition } from './frames.js';

export type SubscriptionState = 'unsubscribed' | 'subscribing' | 'subscribed';

export interface Publication {
  readonly channel: string;
  readonly epoch: string;
  readonly offset: number;
  readonly data: unknown;
}

export interface SubscribedEvent {
  readonly channel: string;
  readonly recovery: Recovery;
  readonly position: StreamPosition;
}

export interface RecoveryFailedEvent {
  readonly channel: string;
  /** Where the stream continues: reload the state, then apply publications after it. */
  readonly position: StreamPosition;
}

export interface SubscriptionError {
  readonly channel: string;
  /** An error code of docs/protocol.md#error-codes (403, 422, 430, ...). */
  readonly code: number;
  readonly message: string;
}

export type SubscriptionEvents = {
  state: (state: SubscriptionState, previous: SubscriptionState) => void;
  subscribing: (channel: string) => void;
  subscribed: (event: SubscribedEvent) => void;
  publication: (publication: Publication) => void;
  recoveryFailed: (event: RecoveryFailedEvent) => void;
  error: (error: SubscriptionError) => void;
  unsubscribed: (channel: string) => void;
};

/** What a subscription asks of its client. */
export interface SubscriptionHost {
  /** Make this the client's subscription to its channel; throws if another one holds it. */
  claim(subscription: Subscription): void;
  want(subscription: Subscription, since: StreamPosition | null, req: number): void;
  unwant(subscription: Subscription): void;
}

export class Subscription extends Emitter<SubscriptionEvents> {
  private stateValue: SubscriptionState = 'unsubscribed';
  private positionValue: StreamPosition | null;
  private req = 0;

  constructor(
    readonly channel: string,
    private readonly host: SubscriptionHost,
    since: StreamPosition | null = null,
  ) {
    super();
    this.positionValue = since;
  }

  get state(): SubscriptionState {
    return this.stateValue;
  }

  /** The last publication applied (or the subscribe position), null before the first reply. */
  get position(): StreamPosition | null {
    return this.positionValue;
  }

  /** Start receiving: from the position if there is one (recovery), else from now. */
  subscribe(): void {
    if (this.stateValue !== 'unsubscribed') {
      throw new InvalidStateError(`subscribe() on ${this.channel} in state ${this.stateValue}`);
    }
    this.host.claim(this);
    this.setState('subscribing');
    this.emit('subscribing', this.channel);
    this.host.want(this, this.positionValue, ++this.req); // may answer at once (a shared channel)
  }

  /** Stop receiving; the position is kept, so a later `subscribe()` recovers from it. */
  unsubscribe(): void {
    if (this.stateValue === 'unsubscribed') return;
    this.req++;
    this.setState('unsubscribed');
    this.host.unwant(this);
    this.emit('unsubscribed', this.channel);
  }

  // --- from the client ------------------------------------------------------------------

  /** @internal The connection behind the client changed: ask again from the position. */
  _relink(): void {
    if (this.stateValue === 'unsubscribed') return;
    this._resubscribing();
    this.host.want(this, this.positionValue, ++this.req);
  }

  /** @internal */
  _resubscribing(): void {
    if (this.stateValue !== 'subscribed') return;
    this.setState('subscribing');
    this.emit('subscribing', this.channel);
  }

  /** @internal */
  _subscribed(recovery: Recovery, position: StreamPosition, req: number): void {
    if (req !== this.req || this.stateValue === 'unsubscribed') return;
    if (recovery !== 'recovered' || this.positionValue === null) this.positionValue = position;
    this.setState('subscribed');
    this.emit('subscribed', { channel: this.channel, recovery, position: this.positionValue });
    if (recovery === 'failed') this.emit('recoveryFailed', { channel: this.channel, position });
  }

  /** @internal */
  _refused(code: number, message: string, req: number): void {
    if (req !== this.req || this.stateValue === 'unsubscribed') return;
    this.setState('unsubscribed');
    this.host.unwant(this);
    this.emit('error', { channel: this.channel, code, message });
    this.emit('unsubscribed', this.channel);
  }

  /** @internal */
  _publication(epoch: string, offset: number, data: unknown): void {
    const position = this.positionValue;
    if (this.stateValue !== 'subscribed' || position === null) return;
    if (epoch !== position.epoch && position.epoch !== NO_EPOCH) return; // "-" takes the first epoch
    if (offset <= position.offset) return; // a duplicate
    this.positionValue = { epoch, offset };
    if (offset > position.offset + 1) {
      // Only possible behind a shared connection that could not replay for this tab.
      this.emit('recoveryFailed', { channel: this.channel, position: { epoch, offset: offset - 1 } });
    }
    this.emit('publication', { channel: this.channel, epoch, offset, data });
  }

  private setState(state: SubscriptionState): void {
    const previous = this.stateValue;
    if (previous === state) return;
    this.stateValue = state;
    this.emit('state', state, previous);
  }
}
