/**
 * Close codes and error codes of the Herald wire protocol v1 (docs/protocol.md#codes).
 *
 * Mirrors socketsrv/protocol/codes.py; tests/docs/test_protocol_doc.py checks that both
 * files and the tables in docs/protocol.md agree, so change all three together.
 *
 * Close codes (CloseEvent.code):
 * - 1000-1015: RFC 6455 section 7.4.1 codes;
 * - 4000-4499: reconnect (with backoff) and recover;
 * - 4500-4999: do not reconnect: something must change first (a new token, a fix).
 *
 * Error codes (the `code` of an error frame) answer one command; the connection stays open.
 */

export const CloseCode = {
  NORMAL: 1000,
  PROTOCOL_ERROR: 1002,
  INVALID_DATA: 1007,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  RESTART: 4000,
  SLOW: 4001,
  NO_PONG: 4002,
  STATE_LOST: 4003,
  TOKEN_EXPIRED: 4004,
  CONNECT_TIMEOUT: 4005,
  FLOOD: 4006,
  REBALANCE: 4007,
  UNAUTHORIZED: 4500,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** The close codes after which a client reconnects (the `reconnect` column). */
export const RECONNECT: ReadonlySet<number> = new Set<number>([
  CloseCode.PROTOCOL_ERROR,
  CloseCode.INVALID_DATA,
  CloseCode.MESSAGE_TOO_BIG,
  CloseCode.INTERNAL_ERROR,
  CloseCode.RESTART,
  CloseCode.SLOW,
  CloseCode.NO_PONG,
  CloseCode.STATE_LOST,
  CloseCode.TOKEN_EXPIRED,
  CloseCode.CONNECT_TIMEOUT,
  CloseCode.FLOOD,
  CloseCode.REBALANCE,
]);

const KNOWN_CLOSE_CODES: ReadonlySet<number> = new Set<number>(Object.values(CloseCode));

/**
 * Whether to reconnect after a close with `code`: the table decides for known codes;
 * an unknown code in 4500-4999 means stop, any other unknown code (1001, 1006, a 4xxx
 * added by a newer server) means reconnect with backoff.
 */
export function shouldReconnect(code: number): boolean {
  if (KNOWN_CLOSE_CODES.has(code)) {
    return RECONNECT.has(code);
  }
  return !(code >= 4500 && code <= 4999);
}

export const ErrorCode = {
  BAD_REQUEST: 400,
  NOT_CONNECTED: 401,
  PERMISSION_DENIED: 403,
  UNKNOWN_COMMAND: 404,
  ALREADY_CONNECTED: 405,
  ALREADY_SUBSCRIBED: 409,
  NOT_SUBSCRIBED: 410,
  INVALID_CHANNEL: 422,
  TOO_MANY_REQUESTS: 429,
  TOO_MANY_SUBSCRIPTIONS: 430,
  INTERNAL: 500,
  UNAVAILABLE: 503,
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The error codes after which the same command may succeed later (the `retry` column). */
export const RETRY: ReadonlySet<number> = new Set<number>([
  ErrorCode.TOO_MANY_REQUESTS,
  ErrorCode.INTERNAL,
  ErrorCode.UNAVAILABLE,
]);
