import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RangeDigester } from '../../../src/db/range-digest.js';
import { RowSpool, UniqueKeyDigester } from '../../../src/partition/row-spool.js';
import { rejectsWith, tempDir } from './helpers.js';

const text = Array.from({ length: 2000 }, (_, i) => `${i + 1}\tvalue ${i} \\t tab\t\\N\t${'x'.repeat(i % 97)}\n`).join('');

function chunks(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

describe('UniqueKeyDigester', () => {
  it.each([1, 13, 4096, 1 << 20])('gives the range digest of unique-key rows, chunked by %i', async (size) => {
    const buf = Buffer.from(text);
    const u = new UniqueKeyDigester();
    const r = new RangeDigester({ keyIndex: 0 });
    for (const c of chunks(buf, size)) {
      u.update(c);
      r.update(c);
    }
    expect(await u.digest()).toEqual(r.digest());
    expect((await u.digest()).count).toBe(2000);
  });

  it('gives the same digest when its md5 runs on the hashing thread (more than one 256 KiB block)', async () => {
    const big = Buffer.from(text.repeat(40)); // ~4.6 MB
    const u = new UniqueKeyDigester();
    for (const c of chunks(big, 100_003)) u.update(c);
    expect(await u.digest()).toEqual(new RangeDigester({ keyIndex: 0 }).update(big).digest());
  });

  it('refuses input cut in the middle of a row, and gives the empty digest for no rows', async () => {
    await rejectsWith(new UniqueKeyDigester().update(Buffer.from('1\ta\n2\tb')).digest(), 'EDB');
    await rejectsWith(new UniqueKeyDigester().update(Buffer.from(text.repeat(10) + '1\ta')).digest(), 'EDB');
    expect(await new UniqueKeyDigester().digest()).toEqual(new RangeDigester({ keyIndex: 0 }).digest());
  });
});

describe('RowSpool', () => {
  it('holds rows in memory or spills them, replays them, and removes the spill file', async () => {
    const d = await tempDir();
    for (const [memoryBytes, uniqueKey] of [
      [1 << 20, false],
      [1000, true],
    ] as const) {
      const spillPath = join(d, `s-${memoryBytes}`);
      const s = await RowSpool.fill(Readable.from(chunks(Buffer.from(text), 777)), { keyIndex: 0, uniqueKey, memoryBytes, spillPath });
      expect(s.spilled).toBe(memoryBytes < text.length);
      expect(existsSync(spillPath)).toBe(s.spilled);
      expect(s.digest).toEqual(new RangeDigester({ keyIndex: 0 }).update(Buffer.from(text)).digest());
      for (let i = 0; i < 2; i++) {
        const back: Buffer[] = [];
        for await (const c of s.read()) back.push(c);
        expect(Buffer.concat(back).toString()).toBe(text);
      }
      await s.dispose();
      expect(existsSync(spillPath)).toBe(false);
    }
  });

  it.each([false, true])('refuses spilled rows that changed before they were read back (EIO), holding back their last bytes (uniqueKey %s)', async (uniqueKey) => {
    const d = await tempDir();
    const spillPath = join(d, 'spill');
    // 1,800 KiB of rows in 777-byte chunks: read back in two reads of 1 MiB or less.
    const big = Buffer.from(text.repeat(15));
    const s = await RowSpool.fill(Readable.from(chunks(big, 777)), { keyIndex: 0, uniqueKey, memoryBytes: 1000, spillPath });
    expect(s.spilled).toBe(true);
    const onDisk = readFileSync(spillPath);
    onDisk[100]! ^= 0x01; // same length, one bit
    writeFileSync(spillPath, onDisk);
    let passed = 0;
    const err = await rejectsWith(
      (async () => {
        for await (const c of s.read()) passed += c.length;
      })(),
      'EIO',
    );
    expect(err.message).toMatch(/changed between its write and its read-back/);
    expect(passed).toBeLessThan(big.length);
    // Put back as written: read back whole.
    onDisk[100]! ^= 0x01;
    writeFileSync(spillPath, onDisk);
    const back: Buffer[] = [];
    for await (const c of s.read()) back.push(c);
    expect(Buffer.concat(back).equals(big)).toBe(true);
    await s.dispose();
  });

  it('removes its spill file when the input fails or is cut mid-row', async () => {
    const d = await tempDir();
    const spillPath = join(d, 'spill');
    async function* failing(): AsyncGenerator<Buffer> {
      yield Buffer.from(text);
      throw new Error('connection lost');
    }
    await expect(RowSpool.fill(failing(), { keyIndex: 0, memoryBytes: 10, spillPath })).rejects.toThrow('connection lost');
    expect(existsSync(spillPath)).toBe(false);
    await rejectsWith(RowSpool.fill(Readable.from([Buffer.from(text + '9\tpartial')]), { keyIndex: 0, memoryBytes: 10, spillPath }), 'EDB');
    expect(existsSync(spillPath)).toBe(false);
  });
});
