/**
 * One re-armable timer on the environment's clock: the piece every timed rule of the
 * connection (connect deadline, deaf socket, probe, stable connection, token renewal, retries)
 * is built from, so that each unit owns its timers by name instead of sharing a table.
 */
import type { Environment, TimerHandle } from './env.js';

export type Clock = Pick<Environment, 'setTimeout' | 'clearTimeout'>;

export class Timer {
  private handle: TimerHandle | null = null;

  constructor(private readonly clock: Clock) {}

  /** Whether the timer is set and has not fired yet. */
  get armed(): boolean {
    return this.handle !== null;
  }

  /** Run `fn` once after `delayMs`, replacing whatever the timer was set to before. */
  set(delayMs: number, fn: () => void): void {
    this.clear();
    this.handle = this.clock.setTimeout(() => {
      this.handle = null;
      fn();
    }, delayMs);
  }

  clear(): void {
    if (this.handle === null) return;
    this.clock.clearTimeout(this.handle);
    this.handle = null;
  }
}
