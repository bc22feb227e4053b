/**
 * What the client needs from its surroundings, in one object: the websocket, timers, the
 * clock, randomness and the page's online/visibility signals. `browserEnvironment()` reads
 * the browser's globals; tests pass fake sockets and fake timers instead.
 */

/** The part of the browser's `WebSocket` the client uses. */
export interface SocketLike {
  readonly protocol: string;
  binaryType: BinaryType;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { readonly data: unknown }) => void) | null;
  onclose: ((event: { readonly code: number; readonly reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type TimerHandle = unknown;

export interface Environment {
  createSocket(url: string, protocols: string[]): SocketLike;
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  /** Wall-clock milliseconds since the Unix epoch (token expiry is wall-clock). */
  now(): number;
  random(): number;
  isOnline(): boolean;
  isVisible(): boolean;
  /** Calls `listener` when the network goes on or off line; returns the unsubscriber. */
  onOnlineChange(listener: (online: boolean) => void): () => void;
  /** Calls `listener` when the page is shown or hidden; returns the unsubscriber. */
  onVisibilityChange(listener: (visible: boolean) => void): () => void;
}

/** Browsers cap setTimeout delays at 2^31-1 ms; longer ones fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/** The browser's globals (or the parts of them that exist: a worker has no document). */
export function browserEnvironment(): Environment {
  const g = globalThis as typeof globalThis & {
    document?: Document;
    navigator?: Navigator;
    addEventListener?: typeof addEventListener;
    removeEventListener?: typeof removeEventListener;
  };
  return {
    createSocket: (url, protocols) => new WebSocket(url, protocols) as unknown as SocketLike,
    setTimeout: (callback, delayMs) => globalThis.setTimeout(callback, Math.min(delayMs, MAX_TIMER_MS)),
    clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
    now: () => Date.now(),
    random: () => Math.random(),
    isOnline: () => g.navigator?.onLine ?? true,
    isVisible: () => g.document?.visibilityState !== 'hidden',
    onOnlineChange(listener) {
      if (typeof g.addEventListener !== 'function' || typeof g.removeEventListener !== 'function') {
        return () => undefined;
      }
      const on = (): void => listener(true);
      const off = (): void => listener(false);
      g.addEventListener('online', on);
      g.addEventListener('offline', off);
      return () => {
        g.removeEventListener?.('online', on);
        g.removeEventListener?.('offline', off);
      };
    },
    onVisibilityChange(listener) {
      const doc = g.document;
      if (doc === undefined) return () => undefined;
      const handler = (): void => listener(doc.visibilityState !== 'hidden');
      doc.addEventListener('visibilitychange', handler);
      return () => doc.removeEventListener('visibilitychange', handler);
    },
  };
}
