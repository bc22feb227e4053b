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

/** `herald.v1.open.` + the unpadded base64url of the JSON array of `commands` (JSON whatever
 * the socket's encoding). */
export function openToken(commands: readonly Command[]): string {
  const bytes = new TextEncoder().encode(JSON.stringify(commands.map(toWire)));
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  const base64 = btoa(binary);
  return OPEN_PREFIX + base64.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
