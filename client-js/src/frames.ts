/**
 * The messages of wire protocol v1 (docs/protocol.md#commands, #server-frames) as typed
 * values, and the parser that turns a decoded message into one. Nothing past this file sees
 * a raw object from the wire.
 */

/** A position in a channel: the last offset applied within an epoch (docs/protocol.md#recovery). */
export interface StreamPosition {
  readonly epoch: string;
  readonly offset: number;
}

export type Recovery = 'none' | 'recovered' | 'failed';

/** The epoch of a channel with nothing published yet (docs/protocol.md#recovery): its
 * position is ("-", 0), and the channel's first publication names the epoch it starts. */
export const NO_EPOCH = '-';

export type Command =
  | {
      readonly op: 'connect';
      readonly id: number;
      readonly token: string | null;
      /** Positions in the server-side subscriptions (docs/protocol.md#server-side-subscriptions). */
      readonly since?: Readonly<Record<string, StreamPosition>>;
    }
  | { readonly op: 'refresh'; readonly id: number; readonly token: string | null }
  | {
      readonly op: 'subscribe';
      readonly id: number;
      readonly channel: string;
      readonly since: StreamPosition | null;
    }
  | { readonly op: 'unsubscribe'; readonly id: number; readonly channel: string }
  | { readonly op: 'ping'; readonly id: number }
  | { readonly op: 'telemetry'; readonly id: number; readonly counts: TelemetryCounts }
  | { readonly op: 'pong' };

/** A telemetry report's counts (docs/protocol.md#client-telemetry): `reconnects` maps a close
 * code (or `local`, `other`) to a count; the other fields are counts or milliseconds. */
export type TelemetryCounts = Readonly<Record<string, number | Readonly<Record<string, number>>>>;

export interface ConnectResult {
  readonly client: string;
  readonly user: string | null;
  /** Token expiry in milliseconds since the Unix epoch, null when anonymous. */
  readonly expiresAtMs: number | null;
  readonly pingIntervalMs: number;
  readonly pongTimeoutMs: number;
  /** The server-side subscriptions the token named, by channel, in the token's order
   * (docs/protocol.md#server-side-subscriptions); empty when it named none. */
  readonly subs: Readonly<Record<string, ServerSubResult>>;
}

/** A server-side subscription's outcome in the connect reply: made, or refused with an
 * error code (430, 503) and its message. */
export type ServerSubResult = SubscribeResult | { readonly code: number; readonly message: string };

/** Whether a server-side subscription was made (else it was refused). */
export function isSubscribed(result: ServerSubResult): result is SubscribeResult {
  return 'recovery' in result;
}

/** The most positions a connect command may carry (the server's MAX_CONNECT_POSITIONS). */
export const MAX_CONNECT_POSITIONS = 32;

export interface SubscribeResult extends StreamPosition {
  readonly recovery: Recovery;
}

export type ServerFrame =
  | { readonly type: 'reply'; readonly id: number; readonly result: Readonly<Record<string, unknown>> }
  | { readonly type: 'error'; readonly id: number | null; readonly code: number; readonly message: string }
  | {
      readonly type: 'pub';
      readonly channel: string;
      readonly offset: number;
      readonly data: unknown;
      /** Only on an epoch's first publication (offset 1): the epoch it starts. */
      readonly epoch: string | null;
      /** The lowest offset this connection did not get because newer publications with the
       * same key superseded it (docs/protocol.md#conflation); null: nothing was dropped. */
      readonly conflated: number | null;
    }
  | { readonly type: 'hb' }
  /** The worker's delivery (docs/protocol.md#delivery): paused while its bus (Redis) is down,
   * live again once the channels are repaired. */
  | { readonly type: 'delivery'; readonly paused: boolean }
  | { readonly type: 'other' };

/** The server's answer to one command: its reply, or an error frame. */
export type Answer = Extract<ServerFrame, { readonly type: 'reply' } | { readonly type: 'error' }>;

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

/** A decoded server message as a frame; throws ProtocolError when it breaks the protocol. */
export function parseFrame(message: unknown): ServerFrame {
  if (!isRecord(message) || typeof message['type'] !== 'string') {
    throw new ProtocolError('a server message without a type');
  }
  const m = message;
  switch (m['type']) {
    case 'hb':
      return { type: 'hb' };
    case 'delivery':
      // A state a newer server may add is ignored, like an unknown frame type.
      if (m['state'] === 'paused' || m['state'] === 'live') return { type: 'delivery', paused: m['state'] === 'paused' };
      return { type: 'other' };
    case 'pub':
      if (typeof m['channel'] !== 'string' || !isCount(m['offset'])) {
        throw new ProtocolError('a pub without channel or offset');
      }
      return {
        type: 'pub',
        channel: m['channel'],
        offset: m['offset'],
        data: m['data'] ?? null,
        epoch: typeof m['epoch'] === 'string' ? m['epoch'] : null,
        conflated: isCount(m['conflated']) ? m['conflated'] : null,
      };
    case 'reply':
      if (!isCount(m['id']) || !isRecord(m['result'])) {
        throw new ProtocolError('a reply without id or result');
      }
      return { type: 'reply', id: m['id'], result: m['result'] };
    case 'error':
      if (!(m['id'] === null || isCount(m['id'])) || !isCount(m['code'])) {
        throw new ProtocolError('an error without id or code');
      }
      return {
        type: 'error',
        id: m['id'],
        code: m['code'],
        message: typeof m['message'] === 'string' ? m['message'] : '',
      };
    default:
      return { type: 'other' }; // a newer server's frame: ignored (docs/protocol.md#server-frames)
  }
}

export function parseConnectResult(result: Readonly<Record<string, unknown>>): ConnectResult {
  const ping = result['ping_interval_ms'];
  const pong = result['pong_timeout_ms'];
  const user = result['user'];
  if (!isCount(ping) || !isCount(pong) || ping === 0) {
    throw new ProtocolError('a connect reply without heartbeat settings');
  }
  return {
    client: typeof result['client'] === 'string' ? result['client'] : '',
    user: typeof user === 'string' ? user : null,
    expiresAtMs: parseExpiresAtMs(result),
    pingIntervalMs: ping,
    pongTimeoutMs: pong,
    subs: parseServerSubs(result['subs']),
  };
}

function parseServerSubs(subs: unknown): Readonly<Record<string, ServerSubResult>> {
  const parsed: Record<string, ServerSubResult> = {};
  if (subs === undefined || subs === null) return parsed;
  if (!isRecord(subs)) throw new ProtocolError('a connect reply whose subs is not an object');
  for (const [channel, result] of Object.entries(subs)) {
    if (!isRecord(result)) throw new ProtocolError(`a connect reply with a bad subs entry for ${channel}`);
    const error = result['error'];
    if (isRecord(error)) {
      if (!isCount(error['code'])) throw new ProtocolError(`a subs error without a code for ${channel}`);
      const message = typeof error['message'] === 'string' ? error['message'] : '';
      parsed[channel] = { code: error['code'], message };
    } else {
      parsed[channel] = parseSubscribeResult(result);
    }
  }
  return parsed;
}

/** The token expiry of a connect or refresh reply (`expires_at`, seconds) in milliseconds
 * since the Unix epoch; null when the token has none (or the server did not say). */
export function parseExpiresAtMs(result: Readonly<Record<string, unknown>>): number | null {
  const expires = result['expires_at'];
  return typeof expires === 'number' && Number.isFinite(expires) ? expires * 1000 : null;
}

export function parseSubscribeResult(result: Readonly<Record<string, unknown>>): SubscribeResult {
  const { epoch, offset, recovery } = result;
  if (typeof epoch !== 'string' || !isCount(offset)) {
    throw new ProtocolError('a subscribe reply without epoch or offset');
  }
  if (recovery !== 'none' && recovery !== 'recovered' && recovery !== 'failed') {
    throw new ProtocolError(`a subscribe reply with recovery ${String(recovery)}`);
  }
  return { epoch, offset, recovery };
}
