import { run } from '../../support/index.js';
import { mkdir, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DnaDigest, type DnaScanOptions, type DnaVerifyResult } from '../../../src/dna/index.js';
import type { StowageWarning } from '../../../src/errors.js';
import type { Progress } from '../../../src/progress.js';
import { data, put, rejectsWith, tempDir, threadCount } from './helpers.js';

const repo = join(import.meta.dirname, '..', '..', '..');

/** Writes `dir/rel` with `content` and, unless `sidecar` is false, its sidecar. */
async function file(dir: string, rel: string, content: Buffer | string, algorithm: 'md5' | 'sha256' = 'md5'): Promise<string> {
  const p = join(dir, rel);
  await mkdir(join(p, '..'), { recursive: true });
  await writeFile(p, content);
  await DnaDigest.writeSidecar(p, await DnaDigest.ofFile(p, { algorithm }));
  return p;
}

async function collect(dir: string, options: DnaScanOptions = {}): Promise<{ results: DnaVerifyResult[]; warnings: StowageWarning[] }> {
  const warnings: StowageWarning[] = [];
  const results: DnaVerifyResult[] = [];
  for await (const r of DnaDigest.scan(dir, { onWarning: (w) => warnings.push(w), ...options })) results.push(r);
  results.sort((a, b) => (a.path < b.path ? -1 : 1));
  return { results, warnings };
}

async function waitForThreads(n: number): Promise<number> {
  for (let i = 0; i < 100 && threadCount() > n; i++) await new Promise((r) => setTimeout(r, 20));
  return threadCount();
}

/** A tree with intact files, a mutant, a sha256 sidecar, a symlink, an orphan, a bad sidecar and a LOCKED subtree. */
async function richTree(): Promise<string> {
  const root = await tempDir();
  await file(root, 'a/1.dat', data(5000));
  const mutant = await file(root, 'a/2.dat', data(6000));
  await writeFile(mutant, data(6000)); // same size, other bytes
  await file(root, 'b/c/3.dat', data(70_000), 'sha256');
  await put(root, 'no-sidecar.dat', 'ignored');
  await writeFile(join(root, 'orphan.dat.dna'), '{"dig": "7b87e78cc03ea544e2ad3abae46eecd1", "size": 1}');
  await put(root, 'bad.dat', 'x');
  await writeFile(join(root, 'bad.dat.dna'), "{'dig': 'nothex', 'size': 1L}");
  await file(root, 'locked/5.dat', 'in transfer');
  await mkdir(join(root, 'locked', 'LOCKED'));
  await symlink(join(root, 'a', '1.dat'), join(root, 'link.dat'));
  await DnaDigest.writeSidecar(join(root, 'link.dat'), await DnaDigest.ofFile(join(root, 'a', '1.dat')));
  await symlink(join(root, 'a'), join(root, 'dirlink')); // not followed: no duplicate results, no loops
  return root;
}

describe('DnaDigest.scan', () => {
  it('yields every file with a sidecar, mutants included, and warns about the rest', async () => {
    const root = await richTree();
    const { results, warnings } = await collect(root);
    expect(results.map((r) => [r.path.slice(root.length + 1), r.ok])).toEqual([
      ['a/1.dat', true],
      ['a/2.dat', false],
      ['b/c/3.dat', true],
      ['link.dat', true],
    ]);
    const mutant = results[1]!;
    expect(mutant.expected.size).toBe(mutant.actual.size);
    expect(mutant.expected.dig).not.toBe(mutant.actual.dig);
    expect(results[2]!.actual.algorithm).toBe('sha256');
    expect(warnings.map((w) => [w.code, w.path.slice(root.length + 1), w.recoverable])).toEqual(
      expect.arrayContaining([
        ['EBAD_SIDECAR', 'bad.dat', true],
        ['ELOCKED', 'locked', true],
        ['ENOT_FOUND', 'orphan.dat.dna', true],
      ]),
    );
    expect(warnings).toHaveLength(3);
    expect(warnings.find((w) => w.code === 'EBAD_SIDECAR')!.message).toContain(join(root, 'bad.dat.dna'));
  });

  it('scans LOCKED trees too with skipLocked: false', async () => {
    const root = await richTree();
    const { results, warnings } = await collect(root, { skipLocked: false });
    expect(results.map((r) => r.path.slice(root.length + 1))).toContain('locked/5.dat');
    expect(warnings.map((w) => w.code)).not.toContain('ELOCKED');
  });

  it('skips a LOCKED root entirely', async () => {
    const root = await tempDir();
    await file(root, 'x.dat', 'x');
    await mkdir(join(root, 'LOCKED'));
    const { results, warnings } = await collect(root);
    expect(results).toEqual([]);
    expect(warnings.map((w) => w.code)).toEqual(['ELOCKED']);
  });

  it.each([
    ['ELOCKED', async (root: string) => mkdir(join(root, 'sub', 'LOCKED'), { recursive: true })],
    ['ENOT_FOUND', async (root: string) => writeFile(join(root, 'gone.dna'), '{}')],
    ['EBAD_SIDECAR', async (root: string) => (await put(root, 'z.dat', 'z'), writeFile(join(root, 'z.dat.dna'), 'nope'))],
  ] as const)('throws %s under strict: true', async (code, make) => {
    const root = await tempDir();
    await file(root, 'ok.dat', 'fine');
    await make(root);
    const before = threadCount();
    await rejectsWith(collect(root, { strict: true }), code);
    expect(await waitForThreads(before)).toBe(before);
  });

  it('does not stop at the first mutant: a tree of mutants yields them all', async () => {
    const root = await tempDir();
    for (let i = 0; i < 12; i++) {
      const p = await file(root, `m${i}.dat`, data(1000 + i));
      await writeFile(p, data(1000 + i));
    }
    const { results } = await collect(root, { concurrency: 2 });
    expect(results).toHaveLength(12);
    expect(results.every((r) => !r.ok)).toBe(true);
  });

  it('uses one worker thread per core asked for, and none remain afterwards', async () => {
    const root = await tempDir();
    for (let i = 0; i < 16; i++) await file(root, `f${String(i).padStart(2, '0')}.dat`, data(256 * 1024));
    const before = threadCount();
    let peak = before;
    for await (const r of DnaDigest.scan(root, { concurrency: 2 })) {
      expect(r.ok).toBe(true);
      peak = Math.max(peak, threadCount());
    }
    expect(peak).toBeGreaterThanOrEqual(before + 2);
    expect(await waitForThreads(before)).toBe(before);
  });

  it('reports progress: bytes and files, ending with all of them', async () => {
    const root = await tempDir();
    let bytes = 0;
    for (let i = 0; i < 5; i++) {
      await file(root, `p${i}.dat`, data(100_000 * (i + 1)));
      bytes += 100_000 * (i + 1);
    }
    const seen: Progress[] = [];
    const { results } = await collect(root, { onProgress: (p) => seen.push(p) });
    expect(results).toHaveLength(5);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((p) => p.phase === 'scan')).toBe(true);
    expect(seen.at(-1)).toMatchObject({ bytesDone: bytes, itemsDone: 5 });
  });

  it('stops when the consumer breaks out, terminating its workers', async () => {
    const root = await tempDir();
    for (let i = 0; i < 20; i++) await file(root, `f${i}.dat`, data(50_000));
    const before = threadCount();
    let n = 0;
    for await (const _ of DnaDigest.scan(root, { concurrency: 2 })) {
      if (++n === 2) break;
    }
    expect(n).toBe(2);
    expect(await waitForThreads(before)).toBe(before);
  });

  it('fails with what onWarning throws', async () => {
    const root = await tempDir();
    await writeFile(join(root, 'orphan.dna'), '{}');
    const mine = new Error('warnings are fatal here');
    await expect(
      (async () => {
        for await (const _ of DnaDigest.scan(root, {
          onWarning: () => {
            throw mine;
          },
        }));
      })(),
    ).rejects.toBe(mine);
  });

  it('is ENOT_FOUND for a missing root and EIO for a root that is a file', async () => {
    const root = await tempDir();
    await rejectsWith(collect(join(root, 'nope')), 'ENOT_FOUND');
    await rejectsWith(collect(await put(root, 'f', 'x')), 'EIO');
  });

  it.each<[string, DnaScanOptions]>([
    ['concurrency 0', { concurrency: 0 }],
    ['concurrency 1.5', { concurrency: 1.5 }],
    ['concurrency "2"', { concurrency: '2' as unknown as number }],
    ['concurrency 65', { concurrency: 65 }],
    ['strict "yes"', { strict: 'yes' as unknown as boolean }],
    ['skipLocked 1', { skipLocked: 1 as unknown as boolean }],
    ['onProgress not a function', { onProgress: 5 as never }],
    ['a misspelled option', { concurency: 2 } as DnaScanOptions],
  ])('is EBAD_CONFIG for %s, before starting any thread', async (_what, options) => {
    const root = await tempDir();
    const before = threadCount();
    await rejectsWith(collect(root, options), 'EBAD_CONFIG');
    expect(threadCount()).toBe(before);
  });

  it('rethrows the reason when aborted before start, starting no thread', async () => {
    const root = await tempDir();
    await file(root, 'a.dat', 'a');
    const ac = new AbortController();
    const reason = new Error('not today');
    ac.abort(reason);
    const before = threadCount();
    await expect(collect(root, { signal: ac.signal })).rejects.toBe(reason);
    expect(threadCount()).toBe(before);
  });

  it('stops midway when aborted: rethrows the reason, workers terminated mid-file', async () => {
    const root = await tempDir();
    for (const name of ['a.dat', 'b.dat', 'c.dat']) {
      const p = join(root, name);
      await writeFile(p, '');
      await truncate(p, 2 ** 31); // 2 GiB of holes each: many seconds of hashing
      await writeFile(p + '.dna', `{"dig": "${'0'.repeat(32)}", "size": ${2 ** 31}}`);
    }
    const ac = new AbortController();
    const reason = new Error('abort midway');
    const before = threadCount();
    let seen = 0;
    const t0 = performance.now();
    await expect(
      collect(root, {
        concurrency: 2,
        signal: ac.signal,
        onProgress: (p) => {
          seen = p.bytesDone;
          if (p.bytesDone > 0) ac.abort(reason);
        },
      }),
    ).rejects.toBe(reason);
    expect(seen).toBeGreaterThan(0);
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(await waitForThreads(before)).toBe(before);
  });

  it('lets the process exit after an abort midway (no thread left behind)', async () => {
    const root = await tempDir();
    const big = join(root, 'big.dat');
    await writeFile(big, '');
    await truncate(big, 2 ** 33); // 8 GiB of holes: ~15 s of hashing if a worker survived
    await writeFile(big + '.dna', `{"dig": "${'0'.repeat(32)}", "size": ${2 ** 33}}`);
    const script = join(root, 'abort.mts');
    await writeFile(
      script,
      `import { DnaDigest } from ${JSON.stringify(pathToFileURL(join(repo, 'src', 'dna', 'index.ts')).href)};
const ac = new AbortController();
try {
  for await (const _ of DnaDigest.scan(${JSON.stringify(root)}, { signal: ac.signal, onProgress: (p) => { if (p.bytesDone > 0) ac.abort(new Error('stop')); } }));
  console.log('finished?!');
} catch (err) {
  console.log('aborted:', (err as Error).message);
}
`,
    );
    const t0 = performance.now();
    // Resolves only if the script exits 0 before the timeout (a hang is killed and fails the test).
    const out = await run(process.execPath, ['--import', 'tsx', script], { cwd: repo, timeoutMs: 30_000 });
    expect(out.stdout.trim()).toBe('aborted: stop');
    expect(performance.now() - t0).toBeLessThan(10_000);
  });
});
