/**
 * The setup the client's unit tests share: a fake page and fake timers per test, a client on
 * that page, and small recorders. Time is vitest's fake clock, from a fixed date.
 */
import { afterEach, beforeEach, vi } from 'vitest';
import { HeraldClient, type HeraldClientOptions } from '../../src/client.js';
import type { Publication } from '../../src/subscription.js';
import { type FakePage, type FakeSocket, type Wire, fakePage } from './fakes.js';

export const URL = 'ws://herald.test/ws';
export const Q = 'question:42';

/** The running test's page: a fresh one before each test of a file that calls `useFakePage`. */
export let page: FakePage;

/** Before each test of the calling file: fake timers from 2026-01-01 and a fresh fake page. */
export function useFakePage(): void {
  beforeEach(() => {
    vi.useFakeTimers({ now: new Date('2026-01-01T00:00:00Z') });
    page = fakePage();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
}

/** A client on the test's page, with its own socket (no sharing between tabs). */
export function client(options: HeraldClientOptions = {}): HeraldClient {
  return new HeraldClient(URL, { environment: page, shareConnection: false, ...options });
}

/** Connect `c` and accept its socket (answer connect with `result`); returns the socket. */
export function connected(c: HeraldClient, result: Partial<Wire> = {}): FakeSocket {
  c.connect();
  const socket = page.socket();
  socket.accept(result);
  return socket;
}

/** Every value `subscribe` pushes, in order. */
export function record<T>(subscribe: (push: (value: T) => void) => void): T[] {
  const values: T[] = [];
  subscribe((value) => values.push(value));
  return values;
}

export const offsets = (pubs: Publication[]): number[] => pubs.map((p) => p.offset);
