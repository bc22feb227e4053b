/**
 * What this client experienced, counted and reported to the fleet for its dashboards
 * (docs/protocol.md#client-telemetry): reconnects by close code, recoveries, gaps, deaf
 * sockets, time without a connection and time with delivery paused.
 *
 * The connection tells it what happens (`reconnect`, `recovery`, `state`, `delivery`); while
 * connected, a report of the counts since the last accepted one goes out every `intervalMs`
 * (the first after a random half to whole interval, so clients that reconnected together do
 * not report together), and none when nothing changed. A report carries at most the server's
 * clamps (MAX_COUNT per count, MAX_DURATION_MS per duration); the rest, and what a 429 or a
 * lost socket left unreported, goes into the next report; any other error drops it (a 404:
 * an older server without telemetry, so nothing more is sent on that socket).
 */
import { CloseCode, ErrorCode } from './codes.js';
import type { Environment } from './env.js';
import type { Answer, Recovery, TelemetryCounts } from './frames.js';
import { type ConnectionState, LocalCause } from './state.js';
import { Timer } from './timer.js';

/** The server's clamps per report (docs/protocol.md#client-telemetry). */
export const MAX_COUNT = 1000;
export const MAX_DURATION_MS = 3_600_000;

/** Sends one report; `onAnswer` receives the server's reply or error. */
export type TelemetrySend = (counts: TelemetryCounts, onAnswer: (answer: Answer) => void) => void;

/** The close codes reported under their own key; any other is `other` (as the server folds). */
const OWN_KEY: ReadonlySet<number> = new Set<number>([...Object.values(CloseCode), 1006]);

/** The `reconnects` key of a close `code`: itself, `local` for a socket the client gave up
 * (code 0), `other` for a code outside the close table and 1006. */
export function reconnectKey(code: number): string {
  if (code === 0) return 'local';
  return OWN_KEY.has(code) ? String(code) : 'other';
}

type Scalar = 'recovered' | 'recovery_failed' | 'gaps' | 'deaf' | 'disconnected_ms' | 'delayed_ms';
const SCALARS: readonly Scalar[] = ['recovered', 'recovery_failed', 'gaps', 'deaf', 'disconnected_ms', 'delayed_ms'];

interface Tally {
  readonly reconnects: Map<string, number>;
  readonly values: Record<Scalar, number>;
}

const emptyTally = (): Tally => ({
  reconnects: new Map(),
  values: { recovered: 0, recovery_failed: 0, gaps: 0, deaf: 0, disconnected_ms: 0, delayed_ms: 0 },
});

export class Telemetry {
  /** Counted since the last accepted report (what a report in flight carries included). */
  private readonly pending = emptyTally();
  private inFlight: Tally | null = null;
  private stateValue: ConnectionState = 'disconnected';
  /** When the connected socket was lost, while reconnecting. */
  private lostAt: number | null = null;
  /** When the server said delivery is paused, while it is. */
  private pausedAt: number | null = null;
  /** The server does not know the command (404): nothing more on this socket. */
  private refused = false;
  private readonly timer: Timer;

  constructor(
    private readonly env: Pick<Environment, 'now' | 'random' | 'setTimeout' | 'clearTimeout'>,
    private readonly intervalMs: number,
    private readonly send: TelemetrySend,
  ) {
    this.timer = new Timer(env);
  }

  /** What would go in a report now (tests, debugging). */
  get counts(): TelemetryCounts {
    return toCounts(this.pending);
  }

  /** A socket was lost and the client reconnects: `code` 0 with a `LocalCause` when the
   * client gave it up itself. */
  reconnect(code: number, reason: string): void {
    const key = reconnectKey(code);
    const reconnects = this.pending.reconnects;
    reconnects.set(key, (reconnects.get(key) ?? 0) + 1);
    if (code !== 0) return;
    if (reason === LocalCause.DEAF) this.pending.values.deaf++;
    else if (reason.startsWith(LocalCause.GAP)) this.pending.values.gaps++;
  }

  /** A subscribe reply's recovery. */
  recovery(recovery: Recovery): void {
    if (recovery === 'recovered') this.pending.values.recovered++;
    else if (recovery === 'failed') this.pending.values.recovery_failed++;
  }

  /** The server said delivery is paused (or live again) on the current socket. */
  delivery(paused: boolean): void {
    if (paused) this.pausedAt ??= this.env.now();
    else this.endPause();
  }

  /** The connection's state changed. */
  state(state: ConnectionState): void {
    const previous = this.stateValue;
    if (state === previous) return;
    this.stateValue = state;
    const now = this.env.now();
    if (previous === 'connected') {
      this.endPause();
      this.timer.clear();
      this.inFlight = null; // its answer will not come: the counts stay pending
      if (state === 'connecting') this.lostAt = now;
    }
    if (state !== 'connecting' && this.lostAt !== null) {
      this.pending.values.disconnected_ms += now - this.lostAt;
      this.lostAt = null;
    }
    if (state === 'connected') {
      this.refused = false;
      this.schedule(this.intervalMs * (0.5 + 0.5 * this.env.random()));
    }
  }

  private schedule(delayMs: number): void {
    if (this.intervalMs > 0) this.timer.set(delayMs, () => this.report());
  }

  private endPause(): void {
    if (this.pausedAt === null) return;
    this.pending.values.delayed_ms += this.env.now() - this.pausedAt;
    this.pausedAt = null;
  }

  private report(): void {
    this.schedule(this.intervalMs);
    if (this.refused || this.inFlight !== null) return;
    if (this.pausedAt !== null) {
      this.endPause();
      this.pausedAt = this.env.now(); // still paused: the rest goes in a later report
    }
    const sent = capped(this.pending);
    const counts = toCounts(sent);
    if (Object.keys(counts).length === 0) return;
    this.inFlight = sent;
    this.send(counts, (answer) => {
      if (this.inFlight !== sent) return;
      this.inFlight = null;
      if (answer.type === 'error' && answer.code === ErrorCode.TOO_MANY_REQUESTS) return;
      if (answer.type === 'error' && answer.code === ErrorCode.UNKNOWN_COMMAND) this.refused = true;
      subtract(this.pending, sent);
    });
  }
}

/** The wire form: durations rounded to whole milliseconds, zeros left out. */
function toCounts(tally: Tally): TelemetryCounts {
  const counts: Record<string, number | Record<string, number>> = {};
  const reconnects: Record<string, number> = {};
  for (const [key, count] of tally.reconnects) if (count > 0) reconnects[key] = count;
  if (Object.keys(reconnects).length > 0) counts['reconnects'] = reconnects;
  for (const name of SCALARS) {
    const value = Math.round(tally.values[name]);
    if (value > 0) counts[name] = value;
  }
  return counts;
}

/** A copy of `tally` within the clamps: what is over them waits for the next reports. */
function capped(tally: Tally): Tally {
  const reconnects = new Map<string, number>();
  for (const [key, count] of tally.reconnects) reconnects.set(key, Math.min(count, MAX_COUNT));
  const values = { ...tally.values };
  for (const name of SCALARS) {
    values[name] = Math.min(values[name], name.endsWith('_ms') ? MAX_DURATION_MS : MAX_COUNT);
  }
  return { reconnects, values };
}

function subtract(from: Tally, sent: Tally): void {
  for (const [key, count] of sent.reconnects) {
    const left = (from.reconnects.get(key) ?? 0) - count;
    if (left > 0) from.reconnects.set(key, left);
    else from.reconnects.delete(key);
  }
  for (const name of SCALARS) from.values[name] -= sent.values[name];
}
