import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { OffThreadHash, hashThreadRunning, terminateHashThread } from '../../../src/dna/off-thread-hash.js';
import { data, hex, rejectsWith, tempDir, throwsWith } from './helpers.js';

const repo = join(import.meta.dirname, '..', '..', '..');
const BLOCK = 256 * 1024;

function feed(h: OffThreadHash, buf: Buffer, size: number): void {
  for (let i = 0; i < buf.length; i += size) h.update(buf.subarray(i, i + size));
}

afterEach(async () => {
  await terminateHashThread();
});

describe('OffThreadHash', () => {
  it.each([
    ['md5', 0, 1],
    ['md5', 1, 1],
    ['md5', BLOCK - 1, 4096],
    ['md5', BLOCK, BLOCK],
    ['md5', BLOCK + 1, 7777],
    ['md5', 3 * 1024 * 1024 + 5, 100_003],
    ['sha256', 2 * BLOCK + 17, 65_536],
    ['sha1', 1 << 20, 1 << 20],
  ] as const)('%s of %i bytes fed in chunks of %i is the digest of those bytes', async (algorithm, n, size) => {
    const buf = data(n);
    const h = new OffThreadHash(algorithm);
    feed(h, buf, size);
    expect(await h.digest()).toBe(hex(algorithm, buf));
    expect(await h.digest()).toBe(hex(algorithm, buf));
  });

  it('copies what it is given: the caller may reuse a chunk at once', async () => {
    const buf = data(2 * BLOCK + 100);
    const h = new OffThreadHash('md5');
    const scratch = Buffer.alloc(10_000);
    for (let i = 0; i < buf.length; i += scratch.length) {
      const n = buf.copy(scratch, 0, i);
      h.update(scratch.subarray(0, n));
      scratch.fill(0xee);
    }
    expect(await h.digest()).toBe(hex('md5', buf));
  });

  it('hashes a stream of less than one block on the main thread, without starting the worker', async () => {
    await terminateHashThread();
    expect(hashThreadRunning()).toBe(false);
    const buf = data(BLOCK - 1);
    const h = new OffThreadHash('md5');
    feed(h, buf, 1000);
    expect(await h.digest()).toBe(hex('md5', buf));
    expect(hashThreadRunning()).toBe(false);
    const big = new OffThreadHash('md5');
    big.update(data(BLOCK));
    expect(hashThreadRunning()).toBe(true);
    big.abort();
  });

  it('streams hashed at once do not mix', async () => {
    const bufs = [data(3 * BLOCK + 1), data(BLOCK * 2).reverse(), data(5 * BLOCK + 3).fill(7, 1000, 2000)];
    const hs = bufs.map(() => new OffThreadHash('md5'));
    for (let off = 0; off < 6 * BLOCK; off += 50_000) {
      bufs.forEach((b, i) => {
        if (off < b.length) hs[i]!.update(b.subarray(off, off + 50_000));
      });
    }
    expect(await Promise.all(hs.map((h) => h.digest()))).toEqual(bufs.map((b) => hex('md5', b)));
  });

  it('drain waits until the worker is at most that far behind', async () => {
    const h = new OffThreadHash('md5');
    const buf = data(16 * 1024 * 1024);
    feed(h, buf, BLOCK);
    expect(h.backlog).toBeGreaterThan(0);
    await h.drain(0);
    expect(h.backlog).toBe(0);
    await h.drain(0); // nothing to wait for
    expect(await h.digest()).toBe(hex('md5', buf));
  });

  it('fails every stream the worker held with EIO when it dies; the next stream gets a new worker', async () => {
    const a = new OffThreadHash('md5');
    const b = new OffThreadHash('md5');
    a.update(data(2 * BLOCK));
    b.update(data(4 * BLOCK));
    const waiting = b.drain(0).then(
      () => 'drained',
      (err: unknown) => err,
    );
    await terminateHashThread();
    const err = await rejectsWith(a.digest(), 'EIO');
    expect(err.message).toMatch(/hashing thread failed/);
    const drained = await waiting;
    // The drain either finished before the thread died or failed with it.
    if (drained !== 'drained') expect((drained as { code?: string }).code).toBe('EIO');
    throwsWith(() => b.update(data(10)), 'EIO');
    await rejectsWith(b.digest(), 'EIO');
    const c = new OffThreadHash('md5');
    const buf = data(3 * BLOCK);
    c.update(buf);
    expect(await c.digest()).toBe(hex('md5', buf));
  });

  it('refuses updates after digest() or abort(), and a digest after abort()', async () => {
    const h = new OffThreadHash('md5');
    h.update(data(10));
    await h.digest();
    throwsWith(() => h.update(data(1)), 'EIO');
    const g = new OffThreadHash('md5');
    g.update(data(2 * BLOCK));
    g.abort();
    g.abort();
    throwsWith(() => g.update(data(1)), 'EIO');
    await rejectsWith(g.digest(), 'EIO');
  });

  it('does not keep the process alive: one fed and never finished lets it exit', async () => {
    const dir = await tempDir();
    const script = join(dir, 'left.mts');
    await writeFile(
      script,
      `import { OffThreadHash } from ${JSON.stringify(pathToFileURL(join(repo, 'src', 'dna', 'off-thread-hash.ts')).href)};
const done = new OffThreadHash('md5');
done.update(Buffer.alloc(1 << 20, 1));
console.log(await done.digest());
const left = new OffThreadHash('md5');
left.update(Buffer.alloc(1 << 20, 2));
`,
    );
    const t0 = performance.now();
    const out = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'] });
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout });
      });
    });
    expect(out.stdout.trim()).toBe(hex('md5', Buffer.alloc(1 << 20, 1)));
    expect(out.code).toBe(0);
    expect(performance.now() - t0).toBeLessThan(15_000);
  });
});
