/** The msgpack encoder and decoder (src/msgpack.ts). */
import { describe, expect, it } from 'vitest';
import { MsgpackError, decode, encode } from '../../src/msgpack.js';

const hex = (bytes: Uint8Array): string => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
const bytes = (text: string): Uint8Array => new Uint8Array(text.split(' ').map((h) => parseInt(h, 16)));

describe('msgpack encode', () => {
  it('writes the smallest integer format for each range (spec examples)', () => {
    expect(hex(encode(0))).toBe('00');
    expect(hex(encode(127))).toBe('7f');
    expect(hex(encode(128))).toBe('cc 80');
    expect(hex(encode(256))).toBe('cd 01 00');
    expect(hex(encode(65536))).toBe('ce 00 01 00 00');
    expect(hex(encode(2 ** 32))).toBe('cf 00 00 00 01 00 00 00 00');
    expect(hex(encode(-1))).toBe('ff');
    expect(hex(encode(-32))).toBe('e0');
    expect(hex(encode(-33))).toBe('d0 df');
    expect(hex(encode(-129))).toBe('d1 ff 7f');
    expect(hex(encode(-32769))).toBe('d2 ff ff 7f ff');
    expect(hex(encode(-(2 ** 31) - 1))).toBe('d3 ff ff ff ff 7f ff ff ff');
  });

  it('writes floats as float64, and nil, booleans, str, bin', () => {
    expect(hex(encode(1.5))).toBe('cb 3f f8 00 00 00 00 00 00');
    expect(hex(encode(null))).toBe('c0');
    expect(hex(encode(true))).toBe('c3');
    expect(hex(encode(false))).toBe('c2');
    expect(hex(encode('hb'))).toBe('a2 68 62');
    expect(hex(encode(new Uint8Array([1, 2])))).toBe('c4 02 01 02');
  });

  it('writes a command map the way the server expects it', () => {
    expect(hex(encode({ op: 'pong' }))).toBe('81 a2 6f 70 a4 70 6f 6e 67');
  });

  it('uses the 8-, 16- and 32-bit length forms past the fix forms', () => {
    expect(hex(encode('x'.repeat(32)).subarray(0, 2))).toBe('d9 20');
    expect(hex(encode('x'.repeat(256)).subarray(0, 3))).toBe('da 01 00');
    expect(hex(encode(new Array(16).fill(0)).subarray(0, 3))).toBe('dc 00 10');
    expect(hex(encode(new Array(65536).fill(0)).subarray(0, 5))).toBe('dd 00 01 00 00');
  });

  it('refuses what msgpack cannot hold', () => {
    expect(() => encode(() => 1)).toThrow(MsgpackError);
    expect(() => encode(Symbol('s'))).toThrow(MsgpackError);
  });
});

describe('msgpack decode', () => {
  it('reads back everything it writes', () => {
    const values: unknown[] = [
      0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER,
      -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, Number.MIN_SAFE_INTEGER,
      0.25, -1e300, null, true, false, '', 'é€😀', 'y'.repeat(70000),
      [], [1, [2, [3]]], {}, { type: 'pub', channel: 'question:1', offset: 7, data: { score: -3, tags: ['a'] } },
      new Uint8Array([0, 255]),
    ];
    for (const value of values) expect(decode(encode(value))).toEqual(value);
  });

  it('reads float32, and 64-bit integers as numbers', () => {
    expect(decode(bytes('ca 3f c0 00 00'))).toBe(1.5);
    expect(decode(bytes('cf 00 00 00 00 00 00 00 2a'))).toBe(42);
    expect(decode(bytes('d3 ff ff ff ff ff ff ff fe'))).toBe(-2);
  });

  it('refuses truncated input, trailing bytes, ext types, bad UTF-8 and non-string keys', () => {
    expect(() => decode(bytes('cd 01'))).toThrow(MsgpackError);
    expect(() => decode(bytes('a3 61 62'))).toThrow(MsgpackError);
    expect(() => decode(bytes('dd ff ff ff ff'))).toThrow(MsgpackError);
    expect(() => decode(bytes('01 02'))).toThrow(MsgpackError);
    expect(() => decode(bytes('d4 01 00'))).toThrow(MsgpackError);
    expect(() => decode(bytes('a1 ff'))).toThrow(MsgpackError);
    expect(() => decode(bytes('81 01 02'))).toThrow(MsgpackError);
    expect(() => decode(new Uint8Array())).toThrow(MsgpackError);
  });

  it('does not let a __proto__ key change the object prototype', () => {
    const decoded = decode(encode(JSON.parse('{"__proto__": {"polluted": 1}, "a": 1}'))) as Record<string, unknown>;
    expect(decoded).toEqual({ a: 1 });
    expect(Object.getPrototypeOf(decoded)).toBe(Object.prototype);
  });

  it('refuses nesting deeper than the limit instead of overflowing the stack', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    expect(() => encode(deep)).toThrow(MsgpackError);
    expect(() => decode(new Uint8Array(100).fill(0x91))).toThrow(MsgpackError);
  });
});
