/**
 * Whether the socket is alive (docs/protocol.md#heartbeats): the connect deadline, the
 * deaf-socket timer and the probe sent when the page or the network comes back.
 *
 * A socket can look open for minutes after the path to the server died; only frames prove it
 * is alive. The server sends a heartbeat every `ping_interval_ms`, so no frame at all within
 * `ping_interval_ms + pong_timeout_ms` means the socket is deaf. Liveness only watches and
 * says so (`dead(cause)`); the connection decides what a dead socket means.
 *
 *     idle ──opened()──▶ awaitingConnect ──watch()──▶ watching
 *       ▲                       │                        │
 *       └──────── stop() ───────┴────────────────────────┘
 */
import { InvalidStateError } from './errors.js';
import type { Environment } from './env.js';
import { LocalCause } from './state.js';
import { Timer } from './timer.js';

export type LivenessState = 'idle' | 'awaitingConnect' | 'watching';

export class Liveness {
  private stateValue: LivenessState = 'idle';
  private lastFrameAt = 0;
  private framesHeard = 0;
  private pongTimeoutMs = 0;
  /** The connect deadline while awaiting the reply, the deaf-socket timer after it. */
  private readonly deadline: Timer;
  private readonly probeTimer: Timer;

  constructor(
    private readonly env: Environment,
    private readonly dead: (cause: string) => void,
  ) {
    this.deadline = new Timer(env);
    this.probeTimer = new Timer(env);
  }

  get state(): LivenessState {
    return this.stateValue;
  }

  /** A socket was opened: its connect reply must come within `timeoutMs`. Frames before
   * the reply do not extend this deadline. */
  opened(timeoutMs: number): void {
    this.stop();
    this.stateValue = 'awaitingConnect';
    this.lastFrameAt = this.env.now();
    this.deadline.set(timeoutMs, () => this.dead(LocalCause.CONNECT_TIMEOUT));
  }

  /** The connect reply came: from now on the socket must hear a frame within
   * `pingIntervalMs + pongTimeoutMs` of the last one. */
  watch(pingIntervalMs: number, pongTimeoutMs: number): void {
    if (this.stateValue !== 'awaitingConnect') {
      throw new InvalidStateError(`liveness: watch() in state ${this.stateValue}`);
    }
    this.stateValue = 'watching';
    this.pongTimeoutMs = pongTimeoutMs;
    const windowMs = pingIntervalMs + pongTimeoutMs;
    // One timer, re-armed lazily from the last frame rather than on every frame.
    const check = (): void => {
      const silentFor = this.env.now() - this.lastFrameAt;
      if (silentFor >= windowMs) this.dead(LocalCause.DEAF);
      else this.deadline.set(windowMs - silentFor, check);
    };
    this.deadline.set(windowMs, check);
  }

  /** A frame (any frame) arrived on the socket. */
  heard(): void {
    this.lastFrameAt = this.env.now();
    this.framesHeard++;
  }

  /** Check the socket now (timers were throttled in a background tab, or the network came
   * back): `sendPing` asks for an answer; no frame within pong_timeout_ms means deaf. Does
   * nothing before the connect reply or while a probe is out. */
  probe(sendPing: () => void): void {
    if (this.stateValue !== 'watching' || this.probeTimer.armed) return;
    const heardBefore = this.framesHeard;
    sendPing();
    this.probeTimer.set(this.pongTimeoutMs, () => {
      if (this.framesHeard === heardBefore) this.dead(LocalCause.DEAF);
    });
  }

  /** The socket is gone: no more deadlines. */
  stop(): void {
    this.stateValue = 'idle';
    this.deadline.clear();
    this.probeTimer.clear();
  }
}
