/**
 * Many owners (subscriptions of this tab, or of other tabs when this tab leads) over one
 * `Connection`: the connection subscribes a channel once, when its first owner wants it, and
 * unsubscribes when the last one leaves.
 *
 * An owner that joins a channel the connection already has gets an answer at once, computed
 * from its own position (`ownerRecovery`): a position behind the connection's cannot be
 * replayed on this socket, so it is told that recovery failed, like a subscribe would.
 */
import type { Connection, ConnectionListener } from './connection.js';
import type { Recovery, StreamPosition } from './frames.js';
import type { ConnectionState, StateInfo } from './state.js';

/** Where the events of one or more owners go (one tab's client, or the tabs' broadcast). */
export interface OwnerSink {
  state(state: ConnectionState, info: StateInfo): void;
  delivery(paused: boolean): void;
  subscribed(owner: string, channel: string, recovery: Recovery, position: StreamPosition, req: number): void;
  resubscribing(owner: string, channel: string): void;
  refused(owner: string, channel: string, code: number, message: string, req: number): void;
  /** Once per sink and publication, whatever the number of its owners on the channel. */
  publication(channel: string, epoch: string, offset: number, data: unknown): void;
}

interface Want {
  readonly sink: OwnerSink;
  since: StreamPosition | null;
  req: number;
  /** Whether the owner has had a subscribe answer for this want. */
  answered: boolean;
}

/** What an owner that asked with `since` is told when the connection is at `position`. */
export function ownerRecovery(
  since: StreamPosition | null,
  connectionRecovery: Recovery,
  position: StreamPosition,
): Recovery {
  if (since === null) return 'none';
  if (connectionRecovery === 'failed') return 'failed';
  if (since.epoch !== position.epoch || since.offset < position.offset) return 'failed';
  return 'recovered';
}

export class ChannelRouter implements ConnectionListener {
  private readonly wants = new Map<string, Map<string, Want>>();
  private readonly sinks = new Set<OwnerSink>();
  private connection: Connection | null = null;

  /** Attach the connection this router drives (it is created with the router as listener). */
  attach(connection: Connection): void {
    this.connection = connection;
  }

  addSink(sink: OwnerSink): void {
    this.sinks.add(sink);
  }

  /** `owner` wants `channel` from `since`; the answer is reported to `sink` with `req`. */
  want(owner: string, sink: OwnerSink, channel: string, since: StreamPosition | null, req: number): void {
    const connection = this.requireConnection();
    let owners = this.wants.get(channel);
    if (owners === undefined) {
      owners = new Map();
      this.wants.set(channel, owners);
    }
    const want: Want = { sink, since, req, answered: false };
    owners.set(owner, want);
    if (!connection.hasChannel(channel)) {
      connection.addChannel(channel, since);
      return;
    }
    const position = connection.livePosition(channel);
    if (position !== null) {
      want.answered = true;
      sink.subscribed(owner, channel, ownerRecovery(since, 'recovered', position), position, req);
    } // else: the subscribe is in flight; `subscribed` answers every owner waiting for it
  }

  unwant(owner: string, channel: string): void {
    const owners = this.wants.get(channel);
    if (owners === undefined || !owners.delete(owner)) return;
    if (owners.size === 0) {
      this.wants.delete(channel);
      this.connection?.removeChannel(channel);
    }
  }

  /** Forget every want of `owner` (its tab has gone). */
  dropOwner(owner: string): void {
    for (const channel of [...this.wants.keys()]) this.unwant(owner, channel);
  }

  channelsOf(owner: string): string[] {
    return [...this.wants].filter(([, owners]) => owners.has(owner)).map(([channel]) => channel);
  }

  // --- ConnectionListener ---------------------------------------------------------------

  state(state: ConnectionState, info: StateInfo): void {
    for (const sink of this.sinks) sink.state(state, info);
  }

  delivery(paused: boolean): void {
    for (const sink of this.sinks) sink.delivery(paused);
  }

  subscribed(channel: string, recovery: Recovery, position: StreamPosition): void {
    for (const [owner, want] of this.wants.get(channel) ?? []) {
      const told = want.answered ? recovery : ownerRecovery(want.since, recovery, position);
      want.answered = true;
      want.sink.subscribed(owner, channel, told, position, want.req);
    }
  }

  resubscribing(channel: string): void {
    for (const [owner, want] of this.wants.get(channel) ?? []) want.sink.resubscribing(owner, channel);
  }

  refused(channel: string, code: number, message: string): void {
    const owners = this.wants.get(channel);
    this.wants.delete(channel);
    for (const [owner, want] of owners ?? []) want.sink.refused(owner, channel, code, message, want.req);
  }

  publication(channel: string, epoch: string, offset: number, data: unknown): void {
    const sinks = new Set<OwnerSink>();
    for (const want of this.wants.get(channel)?.values() ?? []) sinks.add(want.sink);
    for (const sink of sinks) sink.publication(channel, epoch, offset, data);
  }

  private requireConnection(): Connection {
    if (this.connection === null) throw new Error('ChannelRouter: no connection attached');
    return this.connection;
  }
}
