import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { DnaDigest } from '../../../src/dna/index.js';
import { data, hex, rejectsWith, throwsWith } from './helpers.js';

/** A sink that keeps what it receives, optionally slowly. */
function sink(delayMs = 0): Writable & { received: Buffer[]; bytes: number } {
  const received: Buffer[] = [];
  const w = new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _enc, cb) {
      received.push(chunk);
      w.bytes += chunk.length;
      if (delayMs > 0) setTimeout(cb, delayMs);
      else cb();
    },
  }) as Writable & { received: Buffer[]; bytes: number };
  w.received = received;
  w.bytes = 0;
  return w;
}

describe('DnaDigest.tap', () => {
  it('passes every byte through unchanged and resolves .dna at the end', async () => {
    const chunks = [data(1), data(70_000), Buffer.alloc(0), data(3 * 1024 * 1024 + 7)];
    const all = Buffer.concat(chunks);
    const tap = DnaDigest.tap();
    const out = sink();
    await pipeline(Readable.from(chunks), tap, out);
    expect(Buffer.concat(out.received).equals(all)).toBe(true);
    expect(await tap.dna).toEqual({ dig: hex('md5', all), size: all.length, algorithm: 'md5' });
  });

  it('uses the selected algorithm', async () => {
    const buf = data(200_000);
    const tap = DnaDigest.tap({ algorithm: 'sha512' });
    await pipeline(Readable.from([buf]), tap, sink());
    expect(await tap.dna).toEqual({ dig: hex('sha512', buf), size: buf.length, algorithm: 'sha512' });
  });

  it('gives the empty DNA for an empty stream', async () => {
    const tap = DnaDigest.tap();
    await pipeline(Readable.from([]), tap, sink());
    expect(await tap.dna).toEqual({ dig: 'd41d8cd98f00b204e9800998ecf8427e', size: 0, algorithm: 'md5' });
  });

  it('respects backpressure: a slow consumer holds the producer back', async () => {
    const chunk = 64 * 1024;
    const total = 48 * 1024 * 1024;
    let produced = 0;
    let maxAhead = 0;
    const out = sink(5);
    const src = new Readable({
      highWaterMark: chunk,
      read() {
        if (produced >= total) {
          this.push(null);
          return;
        }
        const b = Buffer.alloc(chunk, produced / chunk);
        produced += chunk;
        maxAhead = Math.max(maxAhead, produced - out.bytes);
        this.push(b);
      },
    });
    const tap = DnaDigest.tap();
    // Stop early: enough to see whether the producer ran ahead of the slow sink.
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 500);
    await pipeline(src, tap, out, { signal: ac.signal }).catch(() => {});
    clearTimeout(timer);
    expect(out.bytes).toBeGreaterThan(0);
    // Buffers on the way: source 64 KiB + tap 1 MiB in and out + sink 64 KiB.
    expect(maxAhead).toBeLessThan(4 * 1024 * 1024);
    expect(produced).toBeLessThan(total);
  });

  it('rejects .dna with the source\'s error, and the pipeline fails with it', async () => {
    const boom = new Error('disk went away');
    const src = new Readable({
      read() {
        this.push(data(1000));
        this.destroy(boom);
      },
    });
    const tap = DnaDigest.tap();
    await expect(pipeline(src, tap, sink())).rejects.toBe(boom);
    await expect(tap.dna).rejects.toBe(boom);
  });

  it('rejects .dna with the destination\'s error when it fails before the input ended', async () => {
    const full = Object.assign(new Error('ENOSPC: no space left'), { code: 'ENOSPC' });
    const out = new Writable({
      write(_c, _e, cb) {
        cb(full);
      },
    });
    const tap = DnaDigest.tap();
    const chunks = Array.from({ length: 64 }, () => data(128 * 1024)); // 8 MiB: more than the tap buffers
    await expect(pipeline(Readable.from(chunks), tap, out)).rejects.toBe(full);
    await expect(tap.dna).rejects.toBe(full);
  });

  it('rejects .dna with the abort error when the pipeline is aborted', async () => {
    const ac = new AbortController();
    const src = new Readable({ read() {} }); // never ends
    const tap = DnaDigest.tap();
    setTimeout(() => ac.abort(), 20);
    await expect(pipeline(src, tap, sink(), { signal: ac.signal })).rejects.toMatchObject({ name: 'AbortError' });
    await expect(tap.dna).rejects.toMatchObject({ name: 'AbortError' });
  });

  it('rejects .dna with EIO when destroyed before it ended', async () => {
    const tap = DnaDigest.tap();
    tap.write(Buffer.from('partial'));
    tap.destroy();
    await rejectsWith(tap.dna, 'EIO');
  });

  it('is EBAD_CONFIG for an unknown option or algorithm', () => {
    throwsWith(() => DnaDigest.tap({ algorithm: 'sha3' as 'md5' }), 'EBAD_CONFIG');
    throwsWith(() => DnaDigest.tap({ signal: undefined } as never), 'EBAD_CONFIG');
  });
});
