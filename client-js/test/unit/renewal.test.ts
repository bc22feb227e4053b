/** The connection token (src/renewal.ts): fetched before connecting, after 4004, and renewed
 * on the open connection with `refresh` (a planned reconnect when the server refuses it). */
import { describe, expect, it, vi } from 'vitest';
import type { HeraldClient } from '../../src/client.js';
import { TokenKeeper } from '../../src/renewal.js';
import type { FakeSocket } from './fakes.js';
import { Q, client, page, useFakePage } from './support.js';

useFakePage();

/**
 * A client whose provider hands out tok-1, tok-2, ... (counted in `tokens.fetched`),
 * subscribed to Q, connected with a token that expires in `expiresInS`; heartbeats are an
 * hour apart, so that only the renewal acts.
 */
async function connectedWithToken(
  expiresInS: number,
): Promise<{ c: HeraldClient; socket: FakeSocket; tokens: { fetched: number } }> {
  const tokens = { fetched: 0 };
  const c = client({ getToken: async () => `tok-${++tokens.fetched}`, tokenRefreshMarginMs: 30_000 });
  c.subscribe(Q);
  c.connect();
  await vi.advanceTimersByTimeAsync(0);
  const socket = page.socket();
  socket.accept({ expires_at: Date.now() / 1000 + expiresInS, ping_interval_ms: 3_600_000 });
  return { c, socket, tokens };
}

describe('tokens', () => {
  it('fetches a fresh token after 4004 before reconnecting', async () => {
    let n = 0;
    const c = client({ getToken: () => `tok-${++n}` });
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    page.socket().accept();
    page.socket().serverClose(4004, 'token expired');
    await vi.advanceTimersByTimeAsync(250);
    page.socket().open();
    expect(page.socket().lastCommand('connect')['token']).toBe('tok-2');
  });

  it('fetches a new token shortly before expiry and sends it over the open connection with refresh', async () => {
    const { c, socket } = await connectedWithToken(300);
    socket.replySubscribe(Q, 'e1', 5, 'none');
    await vi.advanceTimersByTimeAsync(269_000);
    expect(socket.commands('refresh')).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1000);
    const refresh = socket.lastCommand('refresh');
    expect(refresh['token']).toBe('tok-2');
    socket.receive({ type: 'reply', id: refresh['id'], result: { expires_at: Date.now() / 1000 + 300 } });
    // The same socket lives on, and the next renewal is planned from the new expiry.
    expect(page.sockets).toHaveLength(1);
    expect(socket.closedByClient).toBeNull();
    expect(c.state).toBe('connected');
    await vi.advanceTimersByTimeAsync(270_000);
    expect(socket.lastCommand('refresh')['token']).toBe('tok-3');
    expect(page.sockets).toHaveLength(1);
  });

  it('reconnects with the fresh token, recovering its channels, when the server refuses refresh', async () => {
    const { socket: first } = await connectedWithToken(300);
    first.replySubscribe(Q, 'e1', 5, 'none');
    await vi.advanceTimersByTimeAsync(270_000);
    const refresh = first.lastCommand('refresh');
    first.receive({ type: 'error', id: refresh['id'], code: 404, message: 'unknown command' });
    expect(first.closedByClient).not.toBeNull();
    expect(page.sockets).toHaveLength(2);
    page.socket().accept();
    expect(page.socket().lastCommand('connect')['token']).toBe('tok-2');
    expect(page.socket().lastCommand('subscribe')['since']).toEqual({ epoch: 'e1', offset: 5 });
  });

  it('renews a token shorter-lived than the margin at half its remaining life, not in a loop', async () => {
    const { socket, tokens } = await connectedWithToken(10);
    await vi.advanceTimersByTimeAsync(4999);
    expect(socket.commands('refresh')).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(socket.commands('refresh')).toHaveLength(1);
    expect(tokens.fetched).toBe(2);
  });

  it('retries with backoff when the token provider fails', async () => {
    let calls = 0;
    const c = client({
      getToken: async () => {
        calls++;
        if (calls === 1) throw new Error('network down');
        return 'tok';
      },
    });
    c.connect();
    await vi.advanceTimersByTimeAsync(0);
    expect(page.sockets).toHaveLength(0);
    expect(c.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(250);
    expect(page.sockets).toHaveLength(1);
  });
});

describe('TokenKeeper', () => {
  const host = { currentConnection: () => () => false, sendRefresh: () => undefined, reconnectWithToken: () => undefined };

  it('needs a fetch before the first connect, after markStale, and within the margin of the expiry', async () => {
    const keeper = new TokenKeeper(() => 'tok', 30_000, page, host);
    expect([keeper.state, keeper.needsFetch()]).toEqual(['stale', true]);
    await keeper.fetch();
    expect([keeper.state, keeper.token, keeper.needsFetch()]).toEqual(['current', 'tok', false]);
    keeper.accepted(Date.now() + 30_000);
    expect(keeper.needsFetch()).toBe(true);
    await keeper.fetch();
    keeper.markStale();
    expect([keeper.state, keeper.needsFetch()]).toEqual(['stale', true]);
    keeper.stop();
  });

  it('never needs a fetch without a provider (anonymous)', () => {
    const keeper = new TokenKeeper(null, 30_000, page, host);
    expect(keeper.needsFetch()).toBe(false);
    expect(keeper.hasProvider).toBe(false);
  });
});
