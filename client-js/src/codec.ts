/**
 * The two encodings of protocol v1 (docs/protocol.md#transport): JSON in text frames
 * (`herald.v1.json`) and msgpack in binary frames (`herald.v1.msgpack`).
 */
import { type Command, ProtocolError, type ServerFrame, parseFrame } from './frames.js';
import { decode, encode } from './msgpack.js';

export type Format = 'json' | 'msgpack';

export interface Codec {
  readonly format: Format;
  readonly subprotocol: string;
  /** What `WebSocket.binaryType` must be for `decode` to receive the frames it expects. */
  readonly binaryType: BinaryType;
  encode(command: Command): string | Uint8Array;
  /** A websocket message's data as a frame; throws ProtocolError when it is not one. */
  decode(data: unknown): ServerFrame;
}

/** `since: null` and `token: null` mean "absent": they are left out of the message. */
export function toWire(command: Command): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(command)) {
    if (value !== null) out[key] = value;
  }
  return out;
}

const jsonCodec: Codec = {
  format: 'json',
  subprotocol: 'herald.v1.json',
  binaryType: 'arraybuffer',
  encode: (command) => JSON.stringify(toWire(command)),
  decode(data) {
    if (typeof data !== 'string') throw new ProtocolError('a binary frame on herald.v1.json');
    let message: unknown;
    try {
      message = JSON.parse(data);
    } catch {
      throw new ProtocolError('malformed JSON');
    }
    return parseFrame(message);
  },
};

const msgpackCodec: Codec = {
  format: 'msgpack',
  subprotocol: 'herald.v1.msgpack',
  binaryType: 'arraybuffer',
  encode: (command) => encode(toWire(command)),
  decode(data) {
    let bytes: Uint8Array;
    if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
    else if (data instanceof Uint8Array) bytes = data;
    else throw new ProtocolError('a text frame on herald.v1.msgpack');
    let message: unknown;
    try {
      message = decode(bytes);
    } catch (error) {
      throw new ProtocolError(`malformed msgpack (${String(error)})`);
    }
    return parseFrame(message);
  },
};

export function codecFor(format: Format): Codec {
  return format === 'msgpack' ? msgpackCodec : jsonCodec;
}
