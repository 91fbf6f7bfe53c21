import { randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { gunzipInto } from '../../../src/archive/gunzip-into.js';
import { logText } from './helpers.js';

describe('gunzipInto', () => {
  const text = logText(300_000);
  const random = randomBytes(70_000);

  it('inflates one member into the buffer given, and the result is a view of it', () => {
    const out = Buffer.alloc(1 << 20);
    const r = gunzipInto(gzipSync(text), out);
    expect(r).toBeDefined();
    expect(r!.equals(text)).toBe(true);
    expect(r!.buffer).toBe(out.buffer);
    expect(r!.byteOffset).toBe(out.byteOffset);
  });

  it('inflates several members (as ParallelGzip writes them) to what gunzipSync gives', () => {
    const file = Buffer.concat([gzipSync(text.subarray(0, 100_000), { level: 1 }), gzipSync(random, { level: 0 }), gzipSync(text.subarray(100_000))]);
    const r = gunzipInto(file, Buffer.allocUnsafe(1 << 20));
    expect(r?.equals(gunzipSync(file))).toBe(true);
    expect(r!.length).toBe(text.length + random.length);
  });

  it('reuses the same buffer for one file after another, each result whole', () => {
    const out = Buffer.allocUnsafe(1 << 20);
    const a = Buffer.from('a'.repeat(5000));
    const b = text.subarray(0, 1000);
    expect(gunzipInto(gzipSync(text), out)?.equals(text)).toBe(true);
    expect(gunzipInto(gzipSync(a), out)?.equals(a)).toBe(true);
    expect(gunzipInto(gzipSync(b), out)?.equals(b)).toBe(true);
  });

  it('gives undefined when the output does not fit, or exactly fills the buffer, then works again', () => {
    const gz = gzipSync(text);
    expect(gunzipInto(gz, Buffer.allocUnsafe(text.length - 1))).toBeUndefined();
    expect(gunzipInto(gz, Buffer.allocUnsafe(text.length))).toBeUndefined();
    expect(gunzipInto(gz, Buffer.allocUnsafe(text.length + 1))?.equals(text)).toBe(true);
  });

  it('gives undefined for damaged, truncated or trailed input (the public path then says why), and works again after', () => {
    const gz = gzipSync(text);
    const out = Buffer.allocUnsafe(1 << 20);
    const flipped = Buffer.from(gz);
    flipped[Math.floor(gz.length / 2)]! ^= 0xff;
    const badCrc = Buffer.from(gz);
    badCrc[gz.length - 8]! ^= 0x01;
    const badLength = Buffer.from(gz);
    badLength[gz.length - 1]! ^= 0x01;
    for (const bad of [flipped, badCrc, badLength, gz.subarray(0, gz.length - 1), gz.subarray(0, 20), Buffer.concat([gz, Buffer.from('trailing')]), Buffer.from('not gzip at all')]) {
      expect(gunzipInto(bad, out)).toBeUndefined();
      expect(gunzipInto(gz, out)?.equals(text)).toBe(true);
    }
    expect(() => gunzipSync(flipped)).toThrow();
    expect(() => gunzipSync(badCrc)).toThrow();
  });

  it('gives undefined for empty input or an empty buffer', () => {
    expect(gunzipInto(Buffer.alloc(0), Buffer.allocUnsafe(1024))).toBeUndefined();
    expect(gunzipInto(gzipSync(text), Buffer.alloc(0))).toBeUndefined();
  });
});
