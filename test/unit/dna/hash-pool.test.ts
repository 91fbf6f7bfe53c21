import { run } from '../../support/index.js';
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { HashPool } from '../../../src/dna/hash-pool.js';
import { DnaDigest } from '../../../src/dna/index.js';
import { coreutils, data, hex, put, rejectsWith, tempDir } from './helpers.js';

const repo = join(import.meta.dirname, '..', '..', '..');
const pools: HashPool[] = [];
function pool(size: number, workerSource?: string, mainThread = true): HashPool {
  const p = new HashPool(workerSource === undefined ? { size, mainThread } : { size, workerSource, mainThread });
  pools.push(p);
  return p;
}
afterEach(async () => {
  for (const p of pools.splice(0)) await p.close();
});

/** A fake worker: replies with a fixed digest, exits with code 3 for paths containing "crash". */
const CRASHY = `
const { parentPort } = require('node:worker_threads');
parentPort.postMessage({ ready: true });
parentPort.on('message', ({ id, path, algorithm }) => {
  if (path.includes('crash')) process.exit(3);
  parentPort.postMessage({ id, dig: 'ab'.repeat(16), size: 1, algorithm });
});`;

/** A worker that dies while booting. */
const STILLBORN = `process.exit(4);`;

/** A worker that never gets ready. */
const SLEEPY = `setInterval(() => {}, 1000);`;

describe('HashPool', () => {
  it('hashes files like sha256sum and md5sum', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'f', data(3 * 1024 * 1024 + 3));
    const p = pool(2);
    expect(await p.hash(f, 'sha256')).toEqual({ dig: coreutils('sha256sum', f), size: 3 * 1024 * 1024 + 3, algorithm: 'sha256' });
    expect((await p.hash(f, 'md5')).dig).toBe(coreutils('md5sum', f));
  });

  it('starts workers lazily, never more than its size', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'f', data(1000));
    const p = pool(3, undefined, false);
    expect(p.threads).toBe(0);
    await p.hash(f, 'md5');
    expect(p.threads).toBe(1);
    await Promise.all(Array.from({ length: 20 }, () => p.hash(f, 'md5')));
    expect(p.threads).toBe(3);
  });

  it('check() reads the sidecar in the worker and hashes with its algorithm', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'f', data(5000));
    await DnaDigest.writeSidecar(f, await DnaDigest.ofFile(f, { algorithm: 'sha1' }));
    const { expected, actual } = await pool(1).check(f, f + '.dna');
    expect(actual).toEqual({ dig: coreutils('sha1sum', f), size: 5000, algorithm: 'sha1' });
    expect(expected).toEqual(actual);
  });

  it('check() re-hashes when the worker\'s quick look at the sidecar disagrees with the parser', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'f', 'abc');
    // JSON escapes hide "sha1" from the worker's pattern; the parser sees it.
    await writeFile(f + '.dna', `{"dig": "${hex('sha1', Buffer.from('abc'))}", "size": 3, "algorithm": "sha\\u0031"}`);
    const { expected, actual } = await pool(1).check(f, f + '.dna');
    expect(expected.algorithm).toBe('sha1');
    expect(actual).toEqual(expected);
  });

  it('check() maps sidecar and file trouble to their codes', async () => {
    const dir = await tempDir();
    const p = pool(1);
    const f = await put(dir, 'f', 'abc');
    await rejectsWith(p.check(f, f + '.dna'), 'ENO_SIDECAR');
    await writeFile(f + '.dna', 'x'.repeat(70_000));
    await rejectsWith(p.check(f, f + '.dna'), 'EBAD_SIDECAR');
    await writeFile(f + '.dna', `{"dig": "${'0'.repeat(32)}", "size": 3, "algorithm": "md4"}`);
    await rejectsWith(p.check(f, f + '.dna'), 'EBAD_SIDECAR');
    const gone = join(dir, 'gone');
    await writeFile(gone + '.dna', `{"dig": "${'0'.repeat(32)}", "size": 3}`);
    await rejectsWith(p.check(gone, gone + '.dna'), 'ENOT_FOUND');
    await rejectsWith(p.hash(dir, 'md5'), 'EIO');
  });

  it('rejects the jobs of a worker that dies with EIO and replaces it', async () => {
    const p = pool(1, CRASHY, false);
    expect((await p.hash('/ok-1', 'md5')).dig).toBe('ab'.repeat(16));
    const err = await rejectsWith(p.hash('/crash-now', 'md5'), 'EIO');
    expect(err.message).toContain('/crash-now');
    expect(err.details['exitCode']).toBe(3);
    expect((await p.hash('/ok-2', 'md5')).dig).toBe('ab'.repeat(16));
  });

  it('gives up (EIO for every job) when a worker dies while booting', async () => {
    const p = pool(2, STILLBORN, false);
    const jobs = [p.hash('/a', 'md5'), p.hash('/b', 'md5'), p.hash('/c', 'md5')];
    const settled = await Promise.allSettled(jobs);
    expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected', 'rejected']);
    const err = await rejectsWith(jobs[0]!, 'EIO');
    expect(err.details['exitCode']).toBe(4);
    await rejectsWith(p.hash('/ok', 'md5'), 'EIO');
  });

  it('falls back to the calling thread when workers die while booting', async () => {
    const dir = await tempDir();
    const files = await Promise.all([0, 1, 2, 3].map((i) => put(dir, `f${i}`, data(5000 + i))));
    const p = pool(2, STILLBORN);
    await Promise.all(files.map((f) => p.hash(f, 'md5'))); // starts the (doomed) workers
    for (let i = 0; i < 100 && p.threads > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(p.threads).toBe(0);
    const dnas = await Promise.all(files.map((f) => p.hash(f, 'md5')));
    expect(dnas.map((d) => d.dig)).toEqual(files.map((f) => coreutils('md5sum', f)));
    expect(p.threads).toBe(0); // none started again
  });

  it('hashes in the calling thread while no worker is ready', async () => {
    const dir = await tempDir();
    const files = await Promise.all([0, 1, 2].map((i) => put(dir, `f${i}`, data(10_000 + i))));
    await DnaDigest.writeSidecar(files[2]!, await DnaDigest.ofFile(files[2]!, { algorithm: 'sha512' }));
    const p = pool(2, SLEEPY);
    expect(await p.hash(files[0]!, 'md5')).toEqual({ dig: coreutils('md5sum', files[0]!), size: 10_000, algorithm: 'md5' });
    expect((await p.hash(files[1]!, 'sha1')).dig).toBe(coreutils('sha1sum', files[1]!));
    expect((await p.check(files[2]!, files[2]! + '.dna')).actual.dig).toBe(coreutils('sha512sum', files[2]!));
    await rejectsWith(p.check(files[0]!, files[0]! + '.dna'), 'ENO_SIDECAR');
    await writeFile(files[1]! + '.dna', 'junk');
    await rejectsWith(p.check(files[1]!, files[1]! + '.dna'), 'EBAD_SIDECAR');
    await rejectsWith(p.hash(join(dir, 'missing'), 'md5'), 'ENOT_FOUND');
    expect(p.threads).toBeGreaterThan(0); // started, but never ready
  });

  it('without main-thread help, waits for a worker to be ready', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'f', 'abc');
    const p = pool(1, SLEEPY, false);
    const outcome = await Promise.race([p.hash(f, 'md5').then(() => 'hashed'), new Promise((r) => setTimeout(() => r('waiting'), 300))]);
    expect(outcome).toBe('waiting');
  });

  it('close() stops a job running in the calling thread', async () => {
    const dir = await tempDir();
    const f = join(dir, 'sparse');
    await writeFile(f, '');
    await truncate(f, 2 ** 31);
    const p = pool(1, SLEEPY);
    const job = p.hash(f, 'md5');
    const outcome = Promise.allSettled([job]);
    await new Promise((r) => setTimeout(r, 50));
    const reason = new Error('enough');
    const t0 = performance.now();
    await p.close(reason);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(await outcome).toEqual([{ status: 'rejected', reason }]);
  });

  it('close() rejects pending jobs with the reason, and later jobs with EIO', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'f', data(1 << 20));
    const p = pool(1, undefined, false);
    const jobs = Array.from({ length: 4 }, () => p.hash(f, 'md5'));
    const outcomes = Promise.allSettled(jobs);
    const reason = new Error('closing');
    await p.close(reason);
    expect(await outcomes).toEqual(jobs.map(() => ({ status: 'rejected', reason })));
    expect(p.threads).toBe(0);
    await rejectsWith(p.hash(f, 'md5'), 'EIO');
  });

  it('does not keep the process alive while idle, even if never closed', async () => {
    const dir = await tempDir();
    const f = await put(dir, 'f', data(1000));
    const script = join(dir, 'idle.mts');
    await writeFile(
      script,
      `import { HashPool } from ${JSON.stringify(pathToFileURL(join(repo, 'src', 'dna', 'hash-pool.ts')).href)};
const p = new HashPool({ size: 2 });
const dna = await p.hash(${JSON.stringify(f)}, 'md5');
console.log(dna.dig, p.threads);
`,
    );
    const t0 = performance.now();
    // Resolves only if the script exits 0 before the timeout (a hang is killed and fails the test).
    const out = await run(process.execPath, ['--import', 'tsx', script], { cwd: repo, timeoutMs: 20_000 });
    expect(out.stdout.trim()).toBe(`${coreutils('md5sum', f)} 1`);
    expect(performance.now() - t0).toBeLessThan(15_000);
  });
});
