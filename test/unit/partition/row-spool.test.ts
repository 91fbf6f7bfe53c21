import { createHash } from 'node:crypto';
import { run } from '../../support/index.js';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RangeDigester } from '../../../src/db/range-digest.js';
import { BlockHasher } from '../../../src/dna/block-hasher.js';
import { RowSpool, UniqueKeyDigester } from '../../../src/partition/row-spool.js';
import { rejectsWith, tempDir } from './helpers.js';

const repo = join(import.meta.dirname, '..', '..', '..');

/** What a spool of these unique-key rows says of them: their range digest and their SHA-256. */
function spoolDigest(rows: Buffer): object {
  return { ...new RangeDigester({ keyIndex: 0 }).update(rows).digest(), sha256: createHash('sha256').update(rows).digest('hex') };
}

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
      await u.update(c);
      r.update(c);
    }
    expect(await u.digest()).toEqual({ ...r.digest(), sha256: createHash('sha256').update(buf).digest('hex') });
    expect((await u.digest()).count).toBe(2000);
  });

  it.each([
    ['the shared hasher', undefined],
    ['a hasher of two 64 KiB blocks (waits for blocks)', new BlockHasher(64 * 1024, 2)],
  ])('gives the same digest when its md5 runs on a hashing thread (over 256 KiB), with %s', async (_, hasher) => {
    const big = Buffer.from(text.repeat(40)); // ~4.6 MB
    const u = new UniqueKeyDigester(hasher);
    for (const c of chunks(big, 100_003)) await u.update(c);
    expect(await u.digest()).toEqual(spoolDigest(big));
    await hasher?.close();
  });

  it('hashes rows under 256 KiB in line, without a job on the hashing thread', async () => {
    const refuse = (): never => {
      throw new Error('the hashing thread was used');
    };
    const u = new UniqueKeyDigester({ begin: refuse, acquire: refuse, release: refuse } as unknown as BlockHasher);
    const buf = Buffer.from(text).subarray(0, Buffer.from(text).lastIndexOf(10) + 1);
    for (const c of chunks(buf, 1000)) await u.update(c);
    expect(await u.digest()).toEqual(spoolDigest(buf));
  });

  it('refuses input cut in the middle of a row, and gives the empty digest for no rows', async () => {
    const fed = async (b: Buffer): Promise<UniqueKeyDigester> => {
      const u = new UniqueKeyDigester();
      await u.update(b);
      return u;
    };
    await rejectsWith((await fed(Buffer.from('1\ta\n2\tb'))).digest(), 'EDB');
    await rejectsWith((await fed(Buffer.from(text.repeat(10) + '1\ta'))).digest(), 'EDB');
    expect(await new UniqueKeyDigester().digest()).toEqual(spoolDigest(Buffer.alloc(0)));
  });

  it('gives one digest to callers that ask at once, and refuses updates after it', async () => {
    const u = new UniqueKeyDigester();
    const big = Buffer.from(text.repeat(5));
    await u.update(big);
    const [a, b] = await Promise.all([u.digest(), u.digest()]);
    expect(a).toEqual(b);
    expect(a).toEqual(spoolDigest(big));
    await rejectsWith(u.update(Buffer.from('1\n')), 'EIO');
  });

  it('abort() ends an update waiting for the hasher\'s memory, and a digest after it is EIO; a signal ends such a wait too', async () => {
    const hasher = new BlockHasher(64 * 1024, 1);
    try {
      const only = await hasher.acquire();
      const u = new UniqueKeyDigester(hasher);
      const waiting = u.update(Buffer.from(text.repeat(5)));
      await new Promise((r) => setTimeout(r, 20));
      u.abort();
      // Ends at once, with the only block still taken.
      const err = await rejectsWith(waiting, 'EIO');
      expect(err.message).toMatch(/dropped/);
      hasher.release(only);
      await rejectsWith(u.digest(), 'EIO');
      const again = await hasher.acquire();
      const v = new UniqueKeyDigester(hasher);
      const ac = new AbortController();
      const reason = new Error('stop');
      const w = v.update(Buffer.from(text.repeat(5)), ac.signal);
      setTimeout(() => ac.abort(reason), 20);
      await expect(w).rejects.toBe(reason);
      v.abort();
      hasher.release(again);
    } finally {
      await hasher.close();
    }
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
      expect(s.digest).toEqual(spoolDigest(Buffer.from(text)));
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

  it.each([
    ['in line', 1],
    ['on the hashing thread', 40],
  ])('rows sharing keys (%s): the range digest sorts each key\'s rows, the sha256 is of the bytes as they came', async (_, times) => {
    const d = await tempDir();
    // Keys repeat, their rows out of byte order: the two digests differ in what they take.
    const rows = Buffer.from(Array.from({ length: 300 * times }, (_, i) => `${Math.floor(i / 3)}\t${'zyx'[i % 3]} row ${i}\n`).join(''));
    const s = await RowSpool.fill(Readable.from(chunks(rows, 4096)), { keyIndex: 0, memoryBytes: 1 << 20, spillPath: join(d, 'spill') });
    expect(s.digest).toEqual({ ...new RangeDigester({ keyIndex: 0 }).update(rows).digest(), sha256: createHash('sha256').update(rows).digest('hex') });
    expect(s.digest.digest).not.toBe(createHash('md5').update(rows).digest('hex'));
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

  it.each([
    [8 << 20, false],
    [100_000, true],
  ])('unique-key rows over 256 KiB (digested on the hashing thread) with %i bytes in memory: digest, spill and replay are right', async (memoryBytes, spilled) => {
    const d = await tempDir();
    const big = Buffer.from(text.repeat(30));
    const spillPath = join(d, `big-${memoryBytes}`);
    const s = await RowSpool.fill(Readable.from(chunks(big, 65_536)), { keyIndex: 0, uniqueKey: true, memoryBytes, spillPath });
    expect(s.spilled).toBe(spilled);
    expect(s.digest).toEqual(spoolDigest(big));
    const back: Buffer[] = [];
    for await (const c of s.read()) back.push(c);
    expect(Buffer.concat(back).equals(big)).toBe(true);
    await s.dispose();
    await rejectsWith(RowSpool.fill(Readable.from([big, Buffer.from('9\tpartial')]), { keyIndex: 0, uniqueKey: true, memoryBytes, spillPath }), 'EDB');
    expect(existsSync(spillPath)).toBe(false);
  });

  it.each(['abort', 'finish'])('a unique-key writer ended by %s() does not keep the process alive', async (how) => {
    const d = await tempDir();
    const script = join(d, 'left.mts');
    await writeFile(
      script,
      `import { RowSpool } from ${JSON.stringify(pathToFileURL(join(repo, 'src', 'partition', 'row-spool.ts')).href)};
const w = RowSpool.writer({ keyIndex: 0, uniqueKey: true, memoryBytes: 1 << 30, spillPath: ${JSON.stringify(join(d, 'spill'))} });
const row = Buffer.from('1\\tsome text of a row\\n'.repeat(100_000));
await w.write(row);
${how === 'abort' ? 'await w.abort();' : 'console.log((await w.finish()).digest.count);'}
console.log('${how}ed');
`,
    );
    const t0 = performance.now();
    // Resolves only if the script exits 0 before the timeout (a hang is killed and fails the test).
    const out = await run(process.execPath, ['--import', 'tsx', script], { cwd: repo, timeoutMs: 20_000 });
    expect(out.stdout).toContain(`${how}ed`);
    if (how === 'finish') expect(out.stdout).toContain('100000');
    expect(performance.now() - t0).toBeLessThan(15_000);
  });
});
