/**
 * The connection token (docs/protocol.md#tokens): fetching it from the app's provider, knowing
 * when it must be fetched again, and renewing it before it expires.
 *
 * Renewal sends the fresh token on the open connection with the `refresh` command: no
 * reconnect, no resubscribe. A server that answers `refresh` with an error (one older than the
 * command) gets a planned reconnect with the new token instead, which recovery makes lossless.
 * A token the server does not accept closes the socket (4004, 4500); the connection handles
 * that like any close, and asks for a fresh token first.
 *
 *     stale ──fetch()──▶ current ──markStale() (4004, a failed renewal)──▶ stale
 */
import type { Environment } from './env.js';
import { type Answer, parseExpiresAtMs } from './frames.js';
import { Timer } from './timer.js';

/** The app's source of connection tokens: a JWT, or null to connect anonymously. */
export type TokenProvider = () => Promise<string | null> | string | null;

export type TokenState = 'stale' | 'current';

/** What renewal needs from the connection. */
export interface RenewalHost {
  /** A check that stays true while the connection open now is the open one. */
  currentConnection(): () => boolean;
  /** Send `refresh` with `token` on the open connection; `onAnswer` receives the answer. */
  sendRefresh(token: string | null, onAnswer: (answer: Answer) => void): void;
  /** The server refused `refresh`: reconnect, with recovery, using the token just fetched. */
  reconnectWithToken(): void;
}

export class TokenKeeper {
  private stateValue: TokenState = 'stale';
  private tokenValue: string | null = null;
  /** The expiry the server read from the current token (connect or refresh reply), null if unknown. */
  private expiresAtMs: number | null = null;
  private readonly renewal: Timer;

  constructor(
    private readonly provider: TokenProvider | null,
    /** Renew the token this long before it expires. */
    private readonly refreshMarginMs: number,
    private readonly env: Environment,
    private readonly host: RenewalHost,
  ) {
    this.renewal = new Timer(env);
  }

  get state(): TokenState {
    return this.stateValue;
  }

  /** The token to send; null when anonymous or before the first fetch. */
  get token(): string | null {
    return this.tokenValue;
  }

  /** Whether the app gave a provider (an anonymous client has none). */
  get hasProvider(): boolean {
    return this.provider !== null;
  }

  /** Whether a token must be fetched before connecting: none yet, stale, or about to expire. */
  needsFetch(): boolean {
    if (this.provider === null) return false;
    if (this.stateValue === 'stale') return true;
    const expiresAt = this.expiresAtMs;
    return expiresAt !== null && this.env.now() >= expiresAt - this.refreshMarginMs;
  }

  /** Ask the provider for a token; rejects, leaving the state as it was, when it fails. */
  async fetch(): Promise<void> {
    const provider = this.provider;
    if (provider === null) return;
    const token = await provider();
    this.tokenValue = token;
    this.stateValue = 'current';
    this.expiresAtMs = null;
  }

  /** The token may no longer be accepted (close 4004): fetch another before connecting. */
  markStale(): void {
    this.stateValue = 'stale';
  }

  /** The server accepted the token and read `expiresAtMs` from it: plan the renewal. */
  accepted(expiresAtMs: number | null): void {
    this.expiresAtMs = expiresAtMs;
    if (expiresAtMs === null || this.provider === null) return;
    // A token that lives less than twice the margin is renewed at half its remaining life,
    // not at once: short-lived tokens must not turn into a renewal loop.
    const remaining = expiresAtMs - this.env.now();
    const renewIn = Math.max(remaining - this.refreshMarginMs, remaining / 2);
    if (remaining > 0) this.renewal.set(renewIn, () => this.renew());
  }

  /** The connection is gone: no renewal until the next `accepted`. */
  stop(): void {
    this.renewal.clear();
  }

  private renew(): void {
    const current = this.host.currentConnection();
    void this.fetch().then(
      () => {
        if (!current()) return;
        this.host.sendRefresh(this.tokenValue, (answer) => {
          if (!current()) return;
          if (answer.type === 'error') this.host.reconnectWithToken();
          else this.accepted(parseExpiresAtMs(answer.result));
        });
      },
      () => this.markStale(), // try again when the server closes with 4004
    );
  }
}
