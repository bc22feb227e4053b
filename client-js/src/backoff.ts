/**
 * Reconnect delays: full-jitter exponential backoff (docs/protocol.md#reconnecting).
 *
 * "Full jitter" (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015): the delay is
 * uniform in [0, min(cap, base * 2^attempt)], which spreads a crowd of clients that lost the
 * same server over the whole window instead of sending them back in waves.
 */

export interface BackoffOptions {
  /** The window of the first retry, in milliseconds. */
  readonly baseMs: number;
  /** The largest window, in milliseconds. */
  readonly capMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, capMs: 30_000 };

/**
 * The delay before retry number `attempt` (0 for the first retry after a loss).
 *
 * `random` returns a number in [0, 1) like `Math.random`; pass a fixed one in tests.
 */
export function backoffDelayMs(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(0, Math.floor(attempt)), 30);
  const window = Math.min(options.capMs, options.baseMs * 2 ** exponent);
  return Math.floor(random() * window);
}

/**
 * The server's reconnect hint: the `retry_ms=<n>` at the end of a close reason
 * (`restart retry_ms=<n>`, `state lost retry_ms=<n>`, `rebalance retry_ms=<n>`), in
 * milliseconds, or 0 when the reason carries none. Read whatever the code (a newer server may
 * hint on more codes; docs/protocol.md#reconnecting); `n` is 1 to 9 digits, drawn by the
 * server at random for each client. Nothing else in a close reason is read.
 */
export function retryHintMs(reason: string): number {
  const match = /(?:^|\s)retry_ms=(\d{1,9})(?:\s|$)/.exec(reason);
  return match?.[1] === undefined ? 0 : Number(match[1]);
}

/** @deprecated the same as {@link retryHintMs}, from when only 4000 carried a hint. */
export const restartHintMs = retryHintMs;
