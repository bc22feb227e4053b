/**
 * How a tab's client reaches the connection: `LocalLink` owns one in this tab; `SharedLink`
 * (shared.ts) owns one when this tab leads, and talks to the leader's otherwise.
 */
import { Connection, type ConnectionOptions } from './connection.js';
import type { Environment } from './env.js';
import type { Recovery, StreamPosition } from './frames.js';
import { ChannelRouter, type OwnerSink } from './router.js';
import type { ConnectionState, StateInfo } from './state.js';

/** What a link reports to its tab's client. */
export interface LinkListener {
  state(state: ConnectionState, info: StateInfo): void;
  /** The server said delivery is paused or live (reset by each `connecting`). */
  delivery(paused: boolean): void;
  subscribed(channel: string, recovery: Recovery, position: StreamPosition, req: number): void;
  resubscribing(channel: string): void;
  refused(channel: string, code: number, message: string, req: number): void;
  publication(channel: string, epoch: string, offset: number, data: unknown): void;
  /** The connection behind the link is a new one (a new leader): want every channel again. */
  relink(): void;
}

export type Role = 'local' | 'leader' | 'follower';

export interface Link {
  readonly role: Role;
  /** The app wants to be connected. */
  start(): void;
  /** The app wants to be disconnected (channels are kept). */
  stop(): void;
  want(channel: string, since: StreamPosition | null, req: number): void;
  unwant(channel: string): void;
  /** For good: nothing is reported afterwards. */
  close(): void;
}

/** An OwnerSink for this tab's own client. */
export function localSink(listener: LinkListener): OwnerSink {
  return {
    state: (state, info) => listener.state(state, info),
    delivery: (paused) => listener.delivery(paused),
    subscribed: (_owner, channel, recovery, position, req) => listener.subscribed(channel, recovery, position, req),
    resubscribing: (_owner, channel) => listener.resubscribing(channel),
    refused: (_owner, channel, code, message, req) => listener.refused(channel, code, message, req),
    publication: (channel, epoch, offset, data) => listener.publication(channel, epoch, offset, data),
  };
}

/** A connection and its router, wired together. */
export function createHub(options: ConnectionOptions, env: Environment): { connection: Connection; router: ChannelRouter } {
  const router = new ChannelRouter();
  const connection = new Connection(options, env, router);
  router.attach(connection);
  return { connection, router };
}

const SELF = 'self';

/** One connection per tab: used where Web Locks or BroadcastChannel are missing, or asked for. */
export class LocalLink implements Link {
  readonly role: Role = 'local';
  private readonly connection: Connection;
  private readonly router: ChannelRouter;
  private readonly sink: OwnerSink;
  private unlisten: (() => void)[] = [];

  constructor(options: ConnectionOptions, private readonly env: Environment, listener: LinkListener) {
    ({ connection: this.connection, router: this.router } = createHub(options, env));
    this.sink = localSink(listener);
    this.router.addSink(this.sink);
  }

  start(): void {
    if (this.unlisten.length === 0) {
      this.unlisten = [
        this.env.onOnlineChange((online) => this.connection.setOnline(online)),
        this.env.onVisibilityChange((visible) => this.connection.setVisible(visible)),
      ];
    }
    this.connection.setOnline(this.env.isOnline());
    this.connection.setVisible(this.env.isVisible());
    this.connection.connect();
  }

  stop(): void {
    this.connection.disconnect();
  }

  want(channel: string, since: StreamPosition | null, req: number): void {
    this.router.want(SELF, this.sink, channel, since, req);
  }

  unwant(channel: string): void {
    this.router.unwant(SELF, channel);
  }

  close(): void {
    for (const unlisten of this.unlisten) unlisten();
    this.unlisten = [];
    this.router.dropOwner(SELF);
    this.connection.disconnect('close()');
  }
}
