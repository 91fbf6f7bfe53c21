import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ParallelGzip, looksCompressible } from '../../../src/archive/parallel-gzip.js';
import { gzipMembers, logText } from './helpers.js';

const MiB = 1 << 20;

async function run(inputs: Buffer[], opts: { level?: number | undefined; chunkSize?: number; concurrency?: number } = {}): Promise<{ out: Buffer; gz: ParallelGzip; writes: Buffer[] }> {
  const writes: Buffer[] = [];
  const gz = new ParallelGzip({
    level: 'level' in opts ? opts.level : 6,
    chunkSize: opts.chunkSize ?? 256 * 1024,
    concurrency: opts.concurrency ?? 2,
    write: async (b) => {
      writes.push(Buffer.from(b));
    },
  });
  for (const b of inputs) await gz.push(b);
  await gz.end();
  return { out: Buffer.concat(writes), gz, writes };
}

/** BTYPE of the first deflate block of each member (0 = stored, 1 = fixed, 2 = dynamic). */
function firstBlockTypes(writes: Buffer[]): number[] {
  // zlib writes a bare 10-byte gzip header, so the deflate data starts at byte 10.
  return writes.map((w) => (w[10]! >> 1) & 3);
}

describe('ParallelGzip', () => {
  it('writes independent gzip members, in order, that gunzip to the input', async () => {
    const text = logText(900_000);
    const rnd = randomBytes(700_000);
    const { out, gz, writes } = await run([text.subarray(0, 100), text.subarray(100), rnd], { chunkSize: 128 * 1024 });
    expect(gunzipSync(out).equals(Buffer.concat([text, rnd]))).toBe(true);
    expect(gz.members).toBe(writes.length);
    expect(gz.members).toBeGreaterThanOrEqual(12);
    expect(gzipMembers(out)).toBe(gz.members);
    expect(gz.bytesIn).toBe(text.length + rnd.length);
    expect(gz.bytesOut).toBe(out.length);
  });

  it('stores incompressible chunks (deflate level 0) and compresses the rest', async () => {
    const text = logText(MiB);
    const rnd = randomBytes(MiB);
    const { writes, out } = await run([text, rnd], { chunkSize: 256 * 1024 });
    const types = firstBlockTypes(writes);
    expect(types.slice(0, 4).every((t) => t !== 0)).toBe(true);
    expect(types.slice(4)).toEqual([0, 0, 0, 0]);
    // Stored chunks cost only the framing; text compresses well.
    const storedBytes = writes.slice(4).reduce((n, w) => n + w.length, 0);
    expect(storedBytes).toBeLessThan(MiB * 1.001);
    expect(out.length - storedBytes).toBeLessThan(MiB * 0.35);
  });

  it('cuts a chunk where compressible input turns incompressible, so one does not dilute the other', async () => {
    const text = logText(300_000);
    const rnd = randomBytes(300_000);
    const { writes } = await run([text, rnd, text], { chunkSize: MiB });
    expect(writes.length).toBe(3);
    expect(firstBlockTypes(writes).map((t) => t === 0)).toEqual([false, true, false]);
  });

  it('falls back to storing a chunk whose samples compressed but whose whole did not', async () => {
    // Random bytes with zeros exactly where the classifier samples: it says "compressible".
    const buf = randomBytes(MiB);
    const step = Math.floor((buf.length - 4096) / 3);
    for (let i = 0; i < 4; i++) buf.fill(0, i * step, i * step + 4096);
    expect(looksCompressible(buf)).toBe(true);
    const { writes, out } = await run([buf], { chunkSize: MiB });
    expect(writes.length).toBe(1);
    expect(firstBlockTypes(writes)).toEqual([0]);
    expect(out.length).toBeLessThan(buf.length + 200);
    expect(gunzipSync(out).equals(buf)).toBe(true);
  });

  it('is deterministic: the same input gives the same bytes', async () => {
    const input = [logText(500_000, 7), randomBytes(400_000), logText(20_000, 9)];
    const a = await run(input, { concurrency: 3, chunkSize: 100_000 });
    const b = await run(input, { concurrency: 1, chunkSize: 100_000 });
    expect(a.out.equals(b.out)).toBe(true);
  });

  it('passes bytes through unchanged without a level (plain .tar), in chunk-sized writes', async () => {
    const input = [randomBytes(1000), logText(300_000)];
    const { out, writes, gz } = await run(input, { level: undefined, chunkSize: 128 * 1024 });
    expect(out.equals(Buffer.concat(input))).toBe(true);
    expect(writes.length).toBe(3);
    expect(gz.members).toBe(0);
  });

  it('level 0 stores everything', async () => {
    const text = logText(200_000);
    const { out, writes } = await run([text], { level: 0, chunkSize: MiB });
    expect(firstBlockTypes(writes)).toEqual([0]);
    expect(gunzipSync(out).equals(text)).toBe(true);
  });

  it('a failing writer fails push/end, and abort() makes later calls fail with its reason', async () => {
    const gz = new ParallelGzip({
      level: 6,
      chunkSize: 64 * 1024,
      concurrency: 1,
      write: () => Promise.reject(new Error('disk on fire')),
    });
    await expect(
      (async () => {
        for (let i = 0; i < 10; i++) await gz.push(logText(64 * 1024, i + 1));
        await gz.end();
      })(),
    ).rejects.toThrow('disk on fire');
    const gz2 = new ParallelGzip({ level: 6, chunkSize: 64 * 1024, concurrency: 1, write: async () => {} });
    const reason = new Error('stop');
    gz2.abort(reason);
    await expect(gz2.push(Buffer.alloc(10))).rejects.toThrow();
  });

  it('reuses input chunks across instances without mixing their bytes, also while others abort', async () => {
    // Chunks go back to a shared free list once compressed: many streams at
    // once (some aborted with chunks still in zlib, some passing bytes
    // through without a level, whose chunks are their output) must each
    // gunzip to exactly their own input.
    const streams = Array.from({ length: 12 }, (_, i) => ({
      input: Buffer.concat([logText(300_000 + i * 7_001, i + 1), i % 3 === 0 ? randomBytes(70_000) : Buffer.alloc(0)]),
      level: i % 4 === 1 ? undefined : 1,
      abort: i % 5 === 2,
    }));
    const results = await Promise.all(
      streams.map(async (st, i) => {
        const writes: Buffer[] = [];
        const gz = new ParallelGzip({
          level: st.level,
          chunkSize: 64 * 1024,
          concurrency: 2,
          write: async (b) => {
            // Held, not copied: a reused chunk would change it under us.
            writes.push(b);
            await new Promise((r) => setImmediate(r));
          },
        });
        for (let off = 0; off < st.input.length; off += 10_007 + i) {
          await gz.push(st.input.subarray(off, off + 10_007 + i));
          if (st.abort && off > 150_000) {
            gz.abort(new Error('stop'));
            return undefined;
          }
        }
        await gz.end();
        return Buffer.concat(writes);
      }),
    );
    // Compare only once every stream is done, so later reuse would show.
    results.forEach((out, i) => {
      if (streams[i]!.abort) return expect(out).toBeUndefined();
      const back = streams[i]!.level === undefined ? out! : gunzipSync(out!);
      expect(back.equals(streams[i]!.input), `stream ${i}`).toBe(true);
    });
  });
});
