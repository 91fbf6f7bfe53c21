/**
 * Archiver cases of `npm run bench:digest`, each against the standard tool
 * in the same run, on page-cached data (what is measured is compression,
 * tar framing and hashing, not the disk):
 *
 * - `archive-create-gz6`: `Archiver.create` (gzip level 6, DNA + sidecar)
 *   vs `tar czf`, MB/s of input (target ratio >= 1.5).
 * - `archive-create-vs-pigz`: the same vs `tar cf - | pigz -p 2 -6`
 *   (target >= 0.9).
 * - `archive-size`: compression factor (input bytes / archive bytes) of
 *   ours vs `tar czf`'s; the ratio is the size of `tar czf`'s archive over
 *   ours (>= 0.97 means ours is at most ~3% larger).
 * - `archive-dna-overhead`: create with DNA + sidecar vs a create that
 *   digests nothing and writes no sidecar (the internal `BENCH_NO_DNA`
 *   switch; same code otherwise), target ratio >= 0.95.
 * - `archive-verify`: `Archiver.verify` (gzip CRCs, tar checksums, DNA vs
 *   sidecar) vs `tar tzf FILE > /dev/null`, MB/s of archive (target >= 0.9).
 *
 * The tree: 2,000 files, 1 GiB (quick: 200 files, 64 MiB), half log-like
 * text, half random bytes, alternating, in 20 directories. Each side runs
 * `TRIALS` times, alternating ours and the tools so that a burst of load
 * from elsewhere hits both; the best time of each counts. The DNA overhead
 * pair (ours, no-dna) runs two more alternating rounds: its difference is
 * smaller than the noise of one run.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Archiver } from '../../src/archive/index.js';
import { BENCH_NO_DNA } from '../../src/archive/archive-writer.js';
import { requireTool, sh, time, type BenchContext } from '../lib.js';
import { xorshift32 } from '../../test/support/prng.js';

const MiB = 1 << 20;

const mbps = (bytes: number, seconds: number): number => bytes / 1e6 / seconds;

/** A fast PRNG (xorshift32), so that the text differs everywhere but is the same every run. */
const prng = xorshift32;

/**
 * 16 MiB of DAQ-log-like lines. Files take slices at random offsets:
 * deflate sees only 32 KiB back, so reusing the pool does not make the
 * text compress better than fresh lines would (~5x, like real logs).
 */
function textPool(): Buffer {
  const rnd = prng(0x5eed);
  const levels = ['INFO ', 'DEBUG', 'WARN ', 'ERROR', 'INFO ', 'INFO '];
  const msgs = ['trigger accepted', 'buffer flushed to disk', 'run state RUNNING', 'event built', 'slow control update', 'threshold scan step', 'readout timeout, retry'];
  const parts: string[] = [];
  let len = 0;
  let t = 1714560000000;
  while (len < 16 * MiB) {
    t += rnd() % 50;
    const l = `${new Date(t).toISOString()} [${levels[rnd() % 6]}] run=${String(1000 + (rnd() % 9000)).padStart(6, '0')} evt=${String(rnd()).padStart(10, '0')} crate=${rnd() % 8} slot=${rnd() % 21} adc=${rnd() % 4096} tdc=${rnd() % 65536} msg="${msgs[rnd() % msgs.length]}"\n`;
    parts.push(l);
    len += l.length;
  }
  return Buffer.from(parts.join(''));
}

/** Writes the tree; returns its byte count. */
async function makeTree(dir: string, files: number, total: number): Promise<number> {
  const pool = textPool();
  const rnd = prng(42);
  const avg = total / files;
  let done = 0;
  for (let i = 0; i < files; i++) {
    const sub = join(dir, `d${String(i % 20).padStart(2, '0')}`);
    if (i < 20) await mkdir(sub, { recursive: true });
    const size = i === files - 1 ? Math.max(0, total - done) : Math.floor(avg * (0.25 + 1.5 * (rnd() / 4294967296)));
    let buf: Buffer;
    if (i % 2 === 0) {
      const parts: Buffer[] = [];
      for (let got = 0; got < size; ) {
        const off = rnd() % (pool.length - 64 * 1024);
        const n = Math.min(size - got, 64 * 1024);
        parts.push(pool.subarray(off, off + n));
        got += n;
      }
      buf = Buffer.concat(parts);
    } else {
      buf = randomBytes(size);
    }
    await writeFile(join(sub, `f${String(i).padStart(5, '0')}.${i % 2 === 0 ? 'log' : 'bin'}`), buf);
    done += size;
  }
  return done;
}

/**
 * Runs the contestants round-robin `trials` times (removing outputs between
 * runs) and returns the best seconds of each.
 */
async function rounds(trials: number, contestants: Record<string, () => Promise<unknown>>, cleanup: () => Promise<void>): Promise<Record<string, number>> {
  const best: Record<string, number> = {};
  for (let i = 0; i < trials; i++) {
    for (const [name, fn] of Object.entries(contestants)) {
      await cleanup();
      best[name] = Math.min(best[name] ?? Infinity, await time(fn));
    }
  }
  return best;
}

/**
 * Runs the Archiver cases (`archive-create-gz6`, `archive-create-vs-pigz`,
 * `archive-size`, `archive-dna-overhead`, `archive-verify`) that
 * `ctx.wants`, recording one row each.
 *
 * @param ctx - the benchmark context
 */
export async function runArchiveCases(ctx: BenchContext): Promise<void> {
  const names = ['archive-create-gz6', 'archive-create-vs-pigz', 'archive-size', 'archive-dna-overhead', 'archive-verify'];
  const want = Object.fromEntries(names.map((n) => [n, ctx.wants(n)]));
  if (!names.some((n) => want[n])) return;
  await requireTool('tar', 'tar');
  await requireTool('gzip', 'gzip');
  if (want['archive-create-vs-pigz']) await requireTool('pigz', 'pigz');

  const files = ctx.quick ? 200 : 2000;
  const total = ctx.quick ? 64 * MiB : 1024 * MiB;
  const trials = ctx.quick ? 3 : 2;
  const root = join(ctx.dir, 'archive');
  const src = join(root, 'src');
  const out = join(root, 'out');
  await mkdir(out, { recursive: true });
  ctx.log(`archive: writing ${files} files, ${total / MiB} MiB (half log text, half random)...`);
  const t0 = performance.now();
  const bytes = await makeTree(src, files, total);
  await sh(`tar cf - -C ${src} . > /dev/null`);
  ctx.log(`archive: tree ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const ours = join(out, 'ours.tar.gz');
  const gnu = join(out, 'gnu.tar.gz');
  const pigz = join(out, 'pigz.tar.gz');
  const clean = (): Promise<void> => sh(`rm -f ${out}/*`).then(() => {});

  const createCases = want['archive-create-gz6'] || want['archive-create-vs-pigz'] || want['archive-size'] || want['archive-dna-overhead'];
  if (createCases) {
    const contestants: Record<string, () => Promise<unknown>> = {
      ours: () => Archiver.create(src, ours, { gzipLevel: 6 }),
    };
    if (want['archive-create-gz6'] || want['archive-size']) contestants['tar czf'] = () => sh(`tar czf ${gnu} -C ${src} .`);
    if (want['archive-create-vs-pigz']) contestants['pigz'] = () => sh(`tar cf - -C ${src} . | pigz -p 2 -6 > ${pigz}`);
    if (want['archive-dna-overhead']) contestants['no-dna'] = () => Archiver.create(src, ours, { gzipLevel: 6, [BENCH_NO_DNA]: true } as Parameters<typeof Archiver.create>[2]);
    const t = await rounds(trials, contestants, clean);
    const oursMBps = mbps(bytes, t['ours']!);
    if (want['archive-create-gz6']) ctx.record({ case: 'archive-create-gz6', unit: 'MB/s', value: oursMBps, baseline: 'tar czf', baselineValue: mbps(bytes, t['tar czf']!) });
    if (want['archive-create-vs-pigz']) ctx.record({ case: 'archive-create-vs-pigz', unit: 'MB/s', value: oursMBps, baseline: 'tar cf - | pigz -p 2 -6', baselineValue: mbps(bytes, t['pigz']!) });
    if (want['archive-dna-overhead']) {
      // The DNA costs a few percent and one run's noise here is +-5%: two
      // more rounds of just this pair, so each side's best is of trials + 2
      // (kept apart from the other rows, whose tools ran `trials` times).
      const more = await rounds(2, { ours: contestants['ours']!, 'no-dna': contestants['no-dna']! }, clean);
      const withDna = Math.min(t['ours']!, more['ours']!);
      const without = Math.min(t['no-dna']!, more['no-dna']!);
      ctx.record({ case: 'archive-dna-overhead', unit: 'MB/s', value: mbps(bytes, withDna), baseline: 'create without DNA or sidecar', baselineValue: mbps(bytes, without) });
    }
    if (want['archive-size']) {
      await clean();
      const r = await Archiver.create(src, ours, { gzipLevel: 6 });
      await sh(`tar czf ${gnu} -C ${src} .`);
      const theirs = (await stat(gnu)).size;
      ctx.log(`archive-size: ours ${r.bytesOut} bytes, tar czf ${theirs} bytes`);
      ctx.record({ case: 'archive-size', unit: 'x (in/out)', value: bytes / r.bytesOut, baseline: 'tar czf', baselineValue: bytes / theirs });
    }
  }

  if (want['archive-verify']) {
    await clean();
    const r = await Archiver.create(src, ours, { gzipLevel: 6 });
    await sh(`cat ${ours} > /dev/null`);
    const t = await rounds(
      trials + 1,
      {
        ours: async () => {
          const v = await Archiver.verify(ours);
          if (!v.sidecarChecked || v.entries !== files + 20) throw new Error(`archive-verify: unexpected result ${JSON.stringify(v)}`);
        },
        'tar tzf': () => sh(`tar tzf ${ours} > /dev/null`),
      },
      async () => {},
    );
    ctx.record({ case: 'archive-verify', unit: 'MB/s', value: mbps(r.bytesOut, t['ours']!), baseline: 'tar tzf > /dev/null', baselineValue: mbps(r.bytesOut, t['tar tzf']!) });
  }
  await rm(root, { recursive: true, force: true });
}
