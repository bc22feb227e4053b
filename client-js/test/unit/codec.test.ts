/** The JSON and msgpack codecs and the frame parser (src/codec.ts, src/frames.ts). */
import { describe, expect, it } from 'vitest';
import { codecFor } from '../../src/codec.js';
import { ProtocolError, parseConnectResult, parseFrame, parseSubscribeResult } from '../../src/frames.js';
import { decode, encode } from '../../src/msgpack.js';

describe('the JSON codec', () => {
  const codec = codecFor('json');

  it('offers herald.v1.json and leaves absent fields out', () => {
    expect(codec.subprotocol).toBe('herald.v1.json');
    expect(JSON.parse(codec.encode({ op: 'subscribe', id: 2, channel: 'question:1', since: null }) as string)).toEqual({
      op: 'subscribe',
      id: 2,
      channel: 'question:1',
    });
    expect(JSON.parse(codec.encode({ op: 'connect', id: 1, token: null }) as string)).toEqual({ op: 'connect', id: 1 });
  });

  it('reads server frames and refuses binary frames and malformed JSON', () => {
    expect(codec.decode('{"type":"pub","channel":"question:1","offset":3,"data":{"s":1}}')).toEqual({
      type: 'pub',
      channel: 'question:1',
      offset: 3,
      data: { s: 1 },
      epoch: null,
      conflated: null,
    });
    expect(codec.decode('{"type":"pub","channel":"q:1","offset":1,"data":0,"epoch":"e1"}')).toMatchObject({
      offset: 1,
      epoch: 'e1',
    });
    expect(codec.decode('{"type":"pub","channel":"q:1","offset":9,"data":0,"conflated":5}')).toMatchObject({
      offset: 9,
      conflated: 5,
    });
    expect(() => codec.decode(new ArrayBuffer(2))).toThrow(ProtocolError);
    expect(() => codec.decode('{"type":')).toThrow(ProtocolError);
  });
});

describe('the msgpack codec', () => {
  const codec = codecFor('msgpack');

  it('offers herald.v1.msgpack and sends ids and offsets as msgpack integers', () => {
    expect(codec.subprotocol).toBe('herald.v1.msgpack');
    const bytes = codec.encode({ op: 'subscribe', id: 300, channel: 'tag:python', since: { epoch: 'e1', offset: 70000 } });
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(decode(bytes as Uint8Array)).toEqual({ op: 'subscribe', id: 300, channel: 'tag:python', since: { epoch: 'e1', offset: 70000 } });
    // 300 as uint16 (cd 01 2c), never as a float (cb ...)
    expect(Array.from(bytes as Uint8Array).join(',')).toContain([0xcd, 0x01, 0x2c].join(','));
  });

  it('reads binary frames and refuses text frames', () => {
    expect(codec.decode(encode({ type: 'hb' }).buffer)).toEqual({ type: 'hb' });
    expect(() => codec.decode('{"type":"hb"}')).toThrow(ProtocolError);
    expect(() => codec.decode(new Uint8Array([0xc1]).buffer)).toThrow(ProtocolError);
  });
});

describe('parseFrame', () => {
  it('keeps frames of unknown types as "other" (a newer server)', () => {
    expect(parseFrame({ type: 'future', x: 1 })).toEqual({ type: 'other' });
  });

  it('refuses messages that break the protocol', () => {
    for (const bad of [null, [], 'x', {}, { type: 1 }, { type: 'pub', channel: 'q', offset: -1 },
      { type: 'pub', offset: 1 }, { type: 'reply', id: 1 }, { type: 'error', id: 'x', code: 400 }]) {
      expect(() => parseFrame(bad)).toThrow(ProtocolError);
    }
  });

  it('reads an error with a null id', () => {
    expect(parseFrame({ type: 'error', id: null, code: 400, message: 'bad request' })).toEqual({
      type: 'error', id: null, code: 400, message: 'bad request',
    });
  });

  it('reads the connect reply in milliseconds and the subscribe reply', () => {
    expect(parseConnectResult({ client: 'c', user: '42', expires_at: 1767225600.5, ping_interval_ms: 25000, pong_timeout_ms: 10000 })).toEqual({
      client: 'c', user: '42', expiresAtMs: 1767225600500, pingIntervalMs: 25000, pongTimeoutMs: 10000, subs: {},
    });
    expect(() => parseConnectResult({ ping_interval_ms: 0, pong_timeout_ms: 1 })).toThrow(ProtocolError);
    expect(parseSubscribeResult({ epoch: 'e', offset: 4, recovery: 'failed' })).toEqual({ epoch: 'e', offset: 4, recovery: 'failed' });
    expect(() => parseSubscribeResult({ epoch: 'e', offset: 4, recovery: 'maybe' })).toThrow(ProtocolError);
  });
});
