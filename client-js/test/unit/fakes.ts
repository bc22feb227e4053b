/** Fake sockets and a fake page for the unit tests; time comes from vitest's fake timers. */
import { codecFor, type Format } from '../../src/codec.js';
import type { Environment, SocketLike } from '../../src/env.js';
import { decode, encode } from '../../src/msgpack.js';
import { OPEN_PREFIX } from '../../src/opening.js';

export type Wire = Record<string, unknown>;

export class FakeSocket implements SocketLike {
  protocol = '';
  binaryType: BinaryType = 'blob';
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { readonly data: unknown }) => void) | null = null;
  onclose: ((event: { readonly code: number; readonly reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  /** Every message the client sent, decoded. */
  readonly sent: Wire[] = [];
  closedByClient: { code: number | undefined; reason: string | undefined } | null = null;

  /** The commands the upgrade request carried in its open token (fast open), if any. */
  readonly opened: Wire[] = [];

  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {
    const token = protocols.find((p) => p.startsWith(OPEN_PREFIX));
    if (token !== undefined) {
      const base64 = token.slice(OPEN_PREFIX.length).replace(/-/g, '+').replace(/_/g, '/');
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      this.opened.push(...(JSON.parse(new TextDecoder().decode(bytes)) as Wire[]));
      this.sent.push(...this.opened); // as good as sent: the server runs them first
    }
  }

  private get format(): Format {
    return this.protocols[0] === 'herald.v1.msgpack' ? 'msgpack' : 'json';
  }

  send(data: string | Uint8Array): void {
    this.sent.push((typeof data === 'string' ? JSON.parse(data) : decode(data)) as Wire);
  }

  close(code?: number, reason?: string): void {
    this.closedByClient = { code, reason };
  }

  // --- the server's side ----------------------------------------------------------------

  open(): void {
    this.protocol = this.protocols[0] ?? '';
    this.onopen?.({});
  }

  receive(frame: Wire): void {
    const data = this.format === 'msgpack' ? encode(frame).buffer : JSON.stringify(frame);
    this.onmessage?.({ data });
  }

  /** The server closes the socket (or the network drops it). */
  serverClose(code: number, reason = ''): void {
    this.onclose?.({ code, reason });
  }

  commands(op: string): Wire[] {
    return this.sent.filter((m) => m['op'] === op);
  }

  lastCommand(op: string): Wire {
    const found = this.commands(op).at(-1);
    if (found === undefined) throw new Error(`no ${op} sent; sent: ${JSON.stringify(this.sent)}`);
    return found;
  }

  /** Open, and answer the connect command. */
  accept(result: Partial<Wire> = {}): void {
    this.open();
    const connect = this.lastCommand('connect');
    this.receive({
      type: 'reply',
      id: connect['id'],
      result: {
        version: 1,
        client: 'c1',
        user: null,
        expires_at: null,
        ping_interval_ms: 25_000,
        pong_timeout_ms: 10_000,
        ...result,
      },
    });
  }

  /** Answer the last subscribe command of `channel`. */
  replySubscribe(channel: string, epoch: string, offset: number, recovery: 'none' | 'recovered' | 'failed'): void {
    const command = this.commands('subscribe').filter((c) => c['channel'] === channel).at(-1);
    if (command === undefined) throw new Error(`no subscribe to ${channel}`);
    this.receive({ type: 'reply', id: command['id'], result: { epoch, offset, recovery } });
  }

  pub(channel: string, offset: number, data: unknown = { n: offset }): void {
    this.receive({ type: 'pub', channel, offset, data });
  }

  /** A publication that says the offsets from `conflated` on were superseded (conflation). */
  conflatedPub(channel: string, offset: number, conflated: number, data: unknown = { n: offset }): void {
    this.receive({ type: 'pub', channel, offset, data, conflated });
  }
}

export interface FakePage extends Environment {
  readonly sockets: FakeSocket[];
  /** The newest socket. */
  socket(): FakeSocket;
  setVisible(visible: boolean): void;
  setOnline(online: boolean): void;
  randomValue: number;
}

export function fakePage(): FakePage {
  let visible = true;
  let online = true;
  const visibilityListeners = new Set<(visible: boolean) => void>();
  const onlineListeners = new Set<(online: boolean) => void>();
  const sockets: FakeSocket[] = [];
  const page: FakePage = {
    sockets,
    randomValue: 0.5,
    socket() {
      const last = sockets.at(-1);
      if (last === undefined) throw new Error('no socket was opened');
      return last;
    },
    createSocket(url, protocols) {
      const socket = new FakeSocket(url, protocols);
      sockets.push(socket);
      return socket;
    },
    setTimeout: (callback, delayMs) => globalThis.setTimeout(callback, delayMs),
    clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
    now: () => Date.now(),
    random: () => page.randomValue,
    isOnline: () => online,
    isVisible: () => visible,
    onOnlineChange(listener) {
      onlineListeners.add(listener);
      return () => onlineListeners.delete(listener);
    },
    onVisibilityChange(listener) {
      visibilityListeners.add(listener);
      return () => visibilityListeners.delete(listener);
    },
    setVisible(value) {
      visible = value;
      for (const listener of visibilityListeners) listener(value);
    },
    setOnline(value) {
      online = value;
      for (const listener of onlineListeners) listener(value);
    },
  };
  return page;
}

export { codecFor };
