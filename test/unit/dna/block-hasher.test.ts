import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { readdir, readFile } from 'node:fs/promises';
import { getPriority } from 'node:os';
import { BlockHasher, sharedBlockHasher } from '../../../src/dna/block-hasher.js';

let hasher: BlockHasher | undefined;
afterEach(async () => {
  await hasher?.close();
  hasher = undefined;
});

describe('BlockHasher (digest on a worker thread)', () => {
  it('digests blocks in order, several jobs interleaved, equal to a one-pass hash', async () => {
    hasher = new BlockHasher(64 * 1024, 8);
    const a = randomBytes(1_000_000);
    const b = randomBytes(300_001);
    const ja = hasher.begin('md5');
    const jb = hasher.begin('sha256');
    const feed = async (job: typeof ja, data: Buffer, off: number): Promise<number> => {
      if (off >= data.length) return off;
      const buf = await hasher!.acquire();
      const n = Math.min(buf.length, data.length - off);
      data.copy(buf, 0, off, off + n);
      job.update(buf, n);
      return off + n;
    };
    let oa = 0;
    let ob = 0;
    while (oa < a.length || ob < b.length) {
      oa = await feed(ja, a, oa);
      ob = await feed(jb, b, ob);
    }
    expect(await ja.digest()).toEqual({ dig: createHash('md5').update(a).digest('hex'), size: a.length, algorithm: 'md5' });
    expect(await jb.digest()).toEqual({ dig: createHash('sha256').update(b).digest('hex'), size: b.length, algorithm: 'sha256' });
  });

  it('a job with a second algorithm digests the same blocks with both, in one pass', async () => {
    hasher = new BlockHasher(64 * 1024, 4);
    const data = randomBytes(500_000);
    const job = hasher.begin('md5', 'sha256');
    await hasher.feed(job, data);
    expect(await job.digest()).toEqual({ dig: createHash('md5').update(data).digest('hex'), size: data.length, algorithm: 'md5', also: createHash('sha256').update(data).digest('hex') });
    // Without one, the digest has no such field.
    const plain = hasher.begin('sha1');
    await hasher.feed(plain, data);
    expect(Object.keys(await plain.digest()).sort()).toEqual(['algorithm', 'dig', 'size']);
  });

  it('bounds memory: acquire waits when every block is out, resumes when one comes back, honours abort', async () => {
    hasher = new BlockHasher(1024, 2);
    const x = await hasher.acquire();
    const y = await hasher.acquire();
    let got = false;
    const waiting = hasher.acquire().then((buf) => {
      got = true;
      return buf;
    });
    await new Promise((r) => setTimeout(r, 30));
    expect(got).toBe(false);
    hasher.release(x);
    expect((await waiting).length).toBe(1024);
    const ac = new AbortController();
    const reason = new Error('abort wait');
    const p = hasher.acquire(ac.signal);
    ac.abort(reason);
    await expect(p).rejects.toBe(reason);
    const ac2 = new AbortController();
    ac2.abort(reason);
    await expect(hasher.acquire(ac2.signal)).rejects.toBe(reason);
    hasher.release(y);
  });

  it('a small need gets a block fitted to it, counted against the same byte budget', async () => {
    hasher = new BlockHasher(1024, 2);
    const small: Buffer[] = [];
    for (let i = 0; i < 20; i++) small.push(await hasher.acquire(undefined, 100));
    expect(small.every((b) => b.length === 100)).toBe(true);
    // 2000 of 2048 bytes are out: another 100 waits, a full block waits too.
    let got: Buffer | undefined;
    const waiting = hasher.acquire(undefined, 100).then((b) => (got = b));
    await new Promise((r) => setTimeout(r, 30));
    expect(got).toBeUndefined();
    hasher.release(small.pop()!);
    expect((await waiting).length).toBe(100);
    // A fitted block goes through a digest and comes back to the budget.
    const data = randomBytes(100);
    const job = hasher.begin('md5');
    data.copy(small[0]!);
    job.update(small.shift()!, 100);
    expect(await job.digest()).toEqual({ dig: createHash('md5').update(data).digest('hex'), size: 100, algorithm: 'md5' });
    for (const b of small) hasher.release(b);
    hasher.release(got!);
    // Everything back: two full blocks fit again; more than half a block asks for a full one.
    const full = [await hasher.acquire(undefined, 600), await hasher.acquire()];
    expect(full.map((b) => b.length)).toEqual([1024, 1024]);
  });

  it('a dropped job still returns its blocks to the pool', async () => {
    hasher = new BlockHasher(1024, 1);
    const job = hasher.begin('md5');
    job.update(await hasher.acquire(), 10);
    job.drop();
    expect((await hasher.acquire()).length).toBe(1024);
  });
});

describe('BlockHasher worker lifecycle', () => {
  it('a digest of a job begun on a worker that is gone rejects with EIO instead of hanging', async () => {
    hasher = new BlockHasher(1024, 4);
    const before = hasher.begin('md5');
    before.update(await hasher.acquire(), 10);
    await hasher.close();
    // No worker at all now.
    await expect(before.digest()).rejects.toMatchObject({ code: 'EIO' });
    // A job of the old worker, finished after a new worker started.
    const old = hasher.begin('md5');
    await hasher.close();
    const fresh = hasher.begin('md5');
    const buf = await hasher.acquire();
    buf.fill(7, 0, 3);
    fresh.update(buf, 3);
    await expect(old.digest()).rejects.toMatchObject({ code: 'EIO', message: expect.stringMatching(/worker/) });
    expect((await fresh.digest()).dig).toBe(createHash('md5').update(Buffer.from([7, 7, 7])).digest('hex'));
  });

  it('feed() copies caller-owned bytes of any length into blocks, within the budget, and the caller keeps them', async () => {
    hasher = new BlockHasher(64 * 1024, 2);
    const job = hasher.begin('md5');
    const whole = createHash('md5');
    let size = 0;
    // Larger than the whole budget, a block and a bit, tiny, and empty: feed must wait for blocks to come back.
    for (const n of [300_000, 65_537, 3, 0, 131_072]) {
      const data = randomBytes(n);
      const copy = Buffer.from(data);
      await hasher.feed(job, data);
      expect(data.equals(copy)).toBe(true);
      whole.update(data);
      size += n;
    }
    expect(await job.digest()).toEqual({ dig: whole.digest('hex'), size, algorithm: 'md5' });
  });

  it('feed() waiting for a block is cancelled by its signal', async () => {
    hasher = new BlockHasher(1024, 1);
    const job = hasher.begin('md5');
    const held = await hasher.acquire(); // the whole budget, never returned
    const ac = new AbortController();
    const fed = hasher.feed(job, Buffer.alloc(10), ac.signal);
    ac.abort(new Error('stop'));
    await expect(fed).rejects.toThrow('stop');
    hasher.release(held);
    job.drop();
  });

  it('keeps the process alive while a digest is awaited, and lets it exit when idle', async () => {
    // A script whose only pending work is the digest: with the worker unref'd
    // throughout, Node would exit before the digest came back (exit code 13).
    const dir = await mkdtemp(join(tmpdir(), 'stowage-hasher-'));
    try {
      const script = join(dir, 'child.mts');
      const mod = resolve('src/dna/block-hasher.ts');
      await writeFile(
        script,
        `import { BlockHasher } from ${JSON.stringify(mod)};
const h = new BlockHasher(1024, 2);
const job = h.begin('md5');
const b = await h.acquire();
b.fill(1);
job.update(b, 1024);
await new Promise((r) => setTimeout(r, 50));
const d = await job.digest();
console.log(d.dig);
`,
      );
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', script], { timeout: 30_000 });
      expect(stdout.trim()).toBe(createHash('md5').update(Buffer.alloc(1024, 1)).digest('hex'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** The nice value of each thread of this process (Linux: /proc/self/task/TID/stat, field 19). */
async function threadNiceness(): Promise<number[]> {
  const out: number[] = [];
  for (const tid of await readdir('/proc/self/task')) {
    const stat = await readFile(`/proc/self/task/${tid}/stat`, 'utf8').catch(() => undefined);
    if (stat === undefined) continue; // the thread ended meanwhile
    out.push(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
  }
  return out;
}

describe('BlockHasher thread priority', () => {
  it('the shared (archive) hasher digests on a thread 10 nice levels below the process; a transport\'s own hasher stays at its priority', async () => {
    const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
    const data = randomBytes(3_000_001);
    const digestWith = async (h: BlockHasher): Promise<string> => {
      const job = h.begin('md5');
      await h.feed(job, data);
      return (await job.digest()).dig;
    };
    expect(process.platform).toBe('linux'); // thread nice values are a Linux notion; stowage's CI is Linux
    const base = getPriority();
    const lowered = Math.min(19, base + 10);
    const before = (await threadNiceness()).filter((n) => n === lowered).length;
    expect(await digestWith(sharedBlockHasher())).toBe(md5(data));
    // The worker lowered itself before it took its first message, so it is done by now.
    expect((await threadNiceness()).filter((n) => n === lowered).length).toBe(before + 1);
    hasher = new BlockHasher(64 * 1024, 8);
    expect(await digestWith(hasher)).toBe(md5(data));
    expect((await threadNiceness()).filter((n) => n === lowered).length).toBe(before + 1);
    expect(getPriority()).toBe(base);
  });
});
