/**
 * The connection's states, the transitions allowed between them, and the reasons it reports
 * with each (a close code, or a client-side `LocalCause` with code 0).
 *
 *     disconnected ──connect()──▶ connecting ──connect reply──▶ connected
 *          ▲                        ▲    │                           │
 *          │ terminal close code,   │    └── socket lost: back off ◀─┘
 *          └─ disconnect() ─────────┴─────────────────────────────────┘
 *
 * `connecting` covers every step before the connect reply: waiting out a backoff, for the
 * network or for the page to be shown, fetching a token, opening the socket. It is reported
 * again at each step (with the new reason and delay); the other states only when entered.
 *
 * What a page can say about its updates (`DeliveryStatus`) follows from the state and the
 * server's `delivery` frames (docs/protocol.md#delivery): `connected` is `live`, or `delayed`
 * while the server says delivery is paused; `connecting` is `reconnecting`.
 */
import { InvalidStateError } from './errors.js';
import type { ConnectResult } from './frames.js';

export type ConnectionState = 'disconnected' | 'connecting' | 'connected';

/** Whether updates arrive: `live` (connected, delivery live), `delayed` (connected, but the
 * server's bus is down: updates resume, with what was missed, when it is back),
 * `reconnecting` (no connection now; recovery fills the gap after it), `disconnected`
 * (stopped). */
export type DeliveryStatus = 'live' | 'delayed' | 'reconnecting' | 'disconnected';

/** The status of a connection in `state` whose server last said delivery is `paused`. */
export function deliveryStatus(state: ConnectionState, paused: boolean): DeliveryStatus {
  if (state === 'connected') return paused ? 'delayed' : 'live';
  return state === 'connecting' ? 'reconnecting' : 'disconnected';
}

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

/** The states each state may move to (`connecting` again: a new step of connecting). */
const NEXT: Readonly<Record<ConnectionState, readonly ConnectionState[]>> = {
  disconnected: ['connecting'],
  connecting: ['connecting', 'connected', 'disconnected'],
  connected: ['connecting', 'disconnected'],
};

/** Throws InvalidStateError, naming both states, unless `from` may move to `to`. */
export function checkTransition(from: ConnectionState, to: ConnectionState): void {
  if (!NEXT[from].includes(to)) {
    throw new InvalidStateError(`the connection cannot go from ${from} to ${to}`);
  }
}
