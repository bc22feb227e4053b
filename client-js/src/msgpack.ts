/**
 * A small msgpack codec (https://github.com/msgpack/msgpack/blob/master/spec.md) for the
 * `herald.v1.msgpack` subprotocol: nil, booleans, integers, floats, str, bin, arrays and maps.
 *
 * Decoding maps gives plain objects with string keys (the protocol has no other keys);
 * integers beyond 2^53 come back as the nearest number; ext types are refused. Encoding
 * writes integers in the smallest integer format (the protocol wants ids and offsets as
 * msgpack integers, never floats), other numbers as float64, strings as str, Uint8Array as bin.
 */

export class MsgpackError extends Error {
  override readonly name = 'MsgpackError';
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

class Writer {
  private buf = new Uint8Array(64);
  private view = new DataView(this.buf.buffer);
  private pos = 0;

  private ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + extra) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(value: number): void {
    this.ensure(1);
    this.view.setUint8(this.pos, value);
    this.pos += 1;
  }

  u16(value: number): void {
    this.ensure(2);
    this.view.setUint16(this.pos, value);
    this.pos += 2;
  }

  u32(value: number): void {
    this.ensure(4);
    this.view.setUint32(this.pos, value);
    this.pos += 4;
  }

  u64(value: bigint): void {
    this.ensure(8);
    this.view.setBigUint64(this.pos, value);
    this.pos += 8;
  }

  i64(value: bigint): void {
    this.ensure(8);
    this.view.setBigInt64(this.pos, value);
    this.pos += 8;
  }

  f64(value: number): void {
    this.ensure(8);
    this.view.setFloat64(this.pos, value);
    this.pos += 8;
  }

  bytes(data: Uint8Array): void {
    this.ensure(data.length);
    this.buf.set(data, this.pos);
    this.pos += data.length;
  }

  result(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

/** Encode `value` as one msgpack object. Throws MsgpackError for values msgpack cannot hold. */
export function encode(value: unknown): Uint8Array {
  const writer = new Writer();
  write(writer, value, 0);
  return writer.result();
}

const MAX_DEPTH = 64;

function write(w: Writer, value: unknown, depth: number): void {
  if (depth > MAX_DEPTH) throw new MsgpackError('nested too deeply');
  if (value === null || value === undefined) {
    w.u8(0xc0);
  } else if (value === false) {
    w.u8(0xc2);
  } else if (value === true) {
    w.u8(0xc3);
  } else if (typeof value === 'number') {
    writeNumber(w, value);
  } else if (typeof value === 'bigint') {
    if (value >= 0n) {
      w.u8(0xcf);
      w.u64(value);
    } else {
      w.u8(0xd3);
      w.i64(value);
    }
  } else if (typeof value === 'string') {
    writeString(w, value);
  } else if (value instanceof Uint8Array) {
    writeHeader(w, value.length, null, 0xc4, 0xc5, 0xc6);
    w.bytes(value);
  } else if (Array.isArray(value)) {
    writeHeader(w, value.length, 0x90, null, 0xdc, 0xdd, 15);
    for (const item of value) write(w, item, depth + 1);
  } else if (typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    writeHeader(w, entries.length, 0x80, null, 0xde, 0xdf, 15);
    for (const [key, item] of entries) {
      writeString(w, key);
      write(w, item, depth + 1);
    }
  } else {
    throw new MsgpackError(`cannot encode a ${typeof value}`);
  }
}

function writeNumber(w: Writer, value: number): void {
  if (!Number.isSafeInteger(value)) {
    w.u8(0xcb);
    w.f64(value);
  } else if (value >= 0) {
    if (value < 0x80) w.u8(value);
    else if (value < 0x100) (w.u8(0xcc), w.u8(value));
    else if (value < 0x10000) (w.u8(0xcd), w.u16(value));
    else if (value < 0x100000000) (w.u8(0xce), w.u32(value));
    else (w.u8(0xcf), w.u64(BigInt(value)));
  } else if (value >= -32) {
    w.u8(value & 0xff);
  } else if (value >= -0x80) {
    w.u8(0xd0);
    w.u8(value & 0xff);
  } else if (value >= -0x8000) {
    w.u8(0xd1);
    w.u16(value & 0xffff);
  } else if (value >= -0x80000000) {
    w.u8(0xd2);
    w.u32(value >>> 0);
  } else {
    w.u8(0xd3);
    w.i64(BigInt(value));
  }
}

function writeString(w: Writer, value: string): void {
  const data = utf8Encoder.encode(value);
  writeHeader(w, data.length, 0xa0, 0xd9, 0xda, 0xdb, 31);
  w.bytes(data);
}

/** A length header: fix (when `fix` is given and length <= fixMax), then 8-, 16-, 32-bit forms. */
function writeHeader(
  w: Writer,
  length: number,
  fix: number | null,
  tag8: number | null,
  tag16: number,
  tag32: number,
  fixMax = 0,
): void {
  if (fix !== null && length <= fixMax) {
    w.u8(fix | length);
  } else if (tag8 !== null && length < 0x100) {
    w.u8(tag8);
    w.u8(length);
  } else if (length < 0x10000) {
    w.u8(tag16);
    w.u16(length);
  } else {
    w.u8(tag32);
    w.u32(length);
  }
}

/** Decode exactly one msgpack object from `data`; trailing bytes are an error. */
export function decode(data: Uint8Array): unknown {
  const reader = new Reader(data);
  const value = reader.value(0);
  if (reader.pos !== data.length) throw new MsgpackError('trailing bytes after the object');
  return value;
}

class Reader {
  pos = 0;
  private readonly view: DataView;

  constructor(private readonly data: Uint8Array) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  private need(n: number): number {
    const at = this.pos;
    if (at + n > this.data.length) throw new MsgpackError('truncated input');
    this.pos += n;
    return at;
  }

  private u8(): number {
    return this.view.getUint8(this.need(1));
  }

  private u16(): number {
    return this.view.getUint16(this.need(2));
  }

  private u32(): number {
    return this.view.getUint32(this.need(4));
  }

  value(depth: number): unknown {
    if (depth > MAX_DEPTH) throw new MsgpackError('nested too deeply');
    const tag = this.u8();
    if (tag < 0x80) return tag;
    if (tag >= 0xe0) return tag - 0x100;
    if (tag >= 0xa0 && tag <= 0xbf) return this.str(tag & 0x1f);
    if (tag >= 0x90 && tag <= 0x9f) return this.array(tag & 0x0f, depth);
    if (tag >= 0x80 && tag <= 0x8f) return this.map(tag & 0x0f, depth);
    switch (tag) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return this.bin(this.u8());
      case 0xc5:
        return this.bin(this.u16());
      case 0xc6:
        return this.bin(this.u32());
      case 0xca:
        return this.view.getFloat32(this.need(4));
      case 0xcb:
        return this.view.getFloat64(this.need(8));
      case 0xcc:
        return this.u8();
      case 0xcd:
        return this.u16();
      case 0xce:
        return this.u32();
      case 0xcf:
        return Number(this.view.getBigUint64(this.need(8)));
      case 0xd0:
        return this.view.getInt8(this.need(1));
      case 0xd1:
        return this.view.getInt16(this.need(2));
      case 0xd2:
        return this.view.getInt32(this.need(4));
      case 0xd3:
        return Number(this.view.getBigInt64(this.need(8)));
      case 0xd9:
        return this.str(this.u8());
      case 0xda:
        return this.str(this.u16());
      case 0xdb:
        return this.str(this.u32());
      case 0xdc:
        return this.array(this.u16(), depth);
      case 0xdd:
        return this.array(this.u32(), depth);
      case 0xde:
        return this.map(this.u16(), depth);
      case 0xdf:
        return this.map(this.u32(), depth);
      default:
        throw new MsgpackError(`unsupported type 0x${tag.toString(16)}`);
    }
  }

  private str(length: number): string {
    const at = this.need(length);
    try {
      return utf8Decoder.decode(this.data.subarray(at, at + length));
    } catch {
      throw new MsgpackError('a str that is not UTF-8');
    }
  }

  private bin(length: number): Uint8Array {
    const at = this.need(length);
    return this.data.slice(at, at + length);
  }

  private array(length: number, depth: number): unknown[] {
    if (length > this.data.length - this.pos) throw new MsgpackError('truncated input');
    const out: unknown[] = [];
    for (let i = 0; i < length; i++) out.push(this.value(depth + 1));
    return out;
  }

  private map(length: number, depth: number): Record<string, unknown> {
    if (length > this.data.length - this.pos) throw new MsgpackError('truncated input');
    const out: Record<string, unknown> = {};
    for (let i = 0; i < length; i++) {
      const key = this.value(depth + 1);
      if (typeof key !== 'string') throw new MsgpackError('a map key that is not a str');
      const item = this.value(depth + 1);
      if (key === '__proto__') continue;
      out[key] = item;
    }
    return out;
  }
}
