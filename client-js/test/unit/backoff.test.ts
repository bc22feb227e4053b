/** Reconnect delays: full-jitter backoff and the restart hint (src/backoff.ts). */
import { describe, expect, it } from 'vitest';
import { backoffDelayMs, restartHintMs, retryHintMs } from '../../src/backoff.js';

const options = { baseMs: 500, capMs: 30_000 };
const almostOne = 0.999_999;

describe('backoffDelayMs', () => {
  it('draws from the whole window [0, base * 2^attempt) (full jitter)', () => {
    expect(backoffDelayMs(0, options, () => 0)).toBe(0);
    expect(backoffDelayMs(0, options, () => almostOne)).toBe(499);
    expect(backoffDelayMs(3, options, () => almostOne)).toBe(3999);
    expect(backoffDelayMs(3, options, () => 0.5)).toBe(2000);
  });

  it('never exceeds the cap, however many attempts', () => {
    expect(backoffDelayMs(6, options, () => almostOne)).toBe(29_999);
    expect(backoffDelayMs(1000, options, () => almostOne)).toBe(29_999);
  });

  it('treats a negative or fractional attempt as the nearest sensible one', () => {
    expect(backoffDelayMs(-5, options, () => almostOne)).toBe(499);
    expect(backoffDelayMs(1.7, options, () => almostOne)).toBe(999);
  });
});

describe('restartHintMs', () => {
  it('reads retry_ms from the 4000 reason', () => {
    expect(restartHintMs('restart retry_ms=1234')).toBe(1234);
    expect(restartHintMs('retry_ms=0')).toBe(0);
  });

  it('is 0 when the reason has no usable hint', () => {
    expect(restartHintMs('')).toBe(0);
    expect(restartHintMs('restart')).toBe(0);
    expect(restartHintMs('restart retry_ms=-5')).toBe(0);
    expect(restartHintMs('restart xretry_ms=99')).toBe(0);
    expect(restartHintMs('restart retry_ms=12ms')).toBe(0);
  });
});

describe('retryHintMs', () => {
  it('reads retry_ms from the reason of every hinted close', () => {
    expect(retryHintMs('restart retry_ms=1234')).toBe(1234);
    expect(retryHintMs('state lost retry_ms=4999')).toBe(4999);
    expect(retryHintMs('rebalance retry_ms=17')).toBe(17);
    expect(retryHintMs('a newer reason retry_ms=5 with words after')).toBe(5);
  });

  it('is 0 without a well-formed hint of at most 9 digits', () => {
    expect(retryHintMs('state lost')).toBe(0);
    expect(retryHintMs('state lost retry_ms=')).toBe(0);
    expect(retryHintMs('state lost retry_ms=1.5')).toBe(0);
    expect(retryHintMs('state lost retry_ms=1234567890')).toBe(0);
  });

  it('is what restartHintMs still answers', () => {
    expect(restartHintMs).toBe(retryHintMs);
  });
});
