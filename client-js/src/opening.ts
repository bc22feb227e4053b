/**
 * The open token (docs/protocol.md#fast-open): a socket's first commands carried in its
 * upgrade request, as one more `Sec-WebSocket-Protocol` entry, so that the server answers
 * them with the 101. Mirrors socketsrv/protocol/opening.py.
 */
import { toWire } from './codec.js';
import type { Command } from './frames.js';

export const OPEN_PREFIX = 'herald.v1.open.';
/** The longest open token the server runs (prefix included); a longer one is not offered and
 * the commands are sent as messages instead. */
export const MAX_OPEN_TOKEN_LENGTH = 8000;

/**
 * The channels a connection token's `subs` claim names (docs/protocol.md#server-side-subscriptions),
 * read from its payload without checking the signature (the server checks it): those the
 * connect subscribes, so a fast open does not subscribe them ahead. None for an anonymous
 * connection or a token that is not a JWT with such a claim.
 */
export function subsOfToken(token: string | null): ReadonlySet<string> {
  const payload = token?.split('.')[1];
  if (payload === undefined) return new Set();
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
    const subs = typeof claims === 'object' && claims !== null ? (claims as Record<string, unknown>)['subs'] : null;
    return new Set(Array.isArray(subs) ? subs.filter((s): s is string => typeof s === 'string') : []);
  } catch {
    return new Set();
  }
}

/** `herald.v1.open.` + the unpadded base64url of the JSON array of `commands` (JSON whatever
 * the socket's encoding). */
export function openToken(commands: readonly Command[]): string {
  const bytes = new TextEncoder().encode(JSON.stringify(commands.map(toWire)));
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  const base64 = btoa(binary);
  return OPEN_PREFIX + base64.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
