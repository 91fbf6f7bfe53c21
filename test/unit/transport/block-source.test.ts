import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { openBlockSource } from '../../../src/transport/block-source.js';

describe('openBlockSource', () => {
  it('reads a buffer, a replayable stream of odd chunks, from any offset', async () => {
    const data = randomBytes(10_000);
    const chunks = (off: number): Readable => Readable.from((function* () {
      for (let i = off; i < data.length; i += 777) yield data.subarray(i, Math.min(data.length, i + 777));
    })());
    for (const src of [data, { size: data.length, open: chunks }]) {
      for (const off of [0, 1234]) {
        const s = await openBlockSource(src, off);
        const out: Buffer[] = [];
        for (;;) {
          const buf = Buffer.alloc(4096);
          const n = await s.read(buf, buf.length);
          if (n === 0) break;
          out.push(buf.subarray(0, n));
        }
        await s.close();
        expect(Buffer.concat(out).equals(data.subarray(off))).toBe(true);
      }
    }
    await expect(openBlockSource(42 as never, 0)).rejects.toMatchObject({ code: 'EBAD_CONFIG' });
  });
});
