/**
 * DnaDigest cases of `npm run bench:digest`, each against the coreutils
 * tool in the same run, on page-cached data (what is measured is hashing and
 * the read path, not the disk):
 *
 * - `md5-file`: `DnaDigest.ofFile` md5 vs `md5sum` (target ratio >= 0.9).
 * - `sha256-file`: `DnaDigest.ofFile` sha256 vs `sha256sum` (target >= 1.5).
 * - `scan-tree`: `DnaDigest.scan` of a tree with sidecars vs
 *   `find | xargs -0 -P2 md5sum` (both cores, target >= 0.85).
 *
 * Each side runs 3 times, alternating ours and the baseline so that a burst
 * of load from elsewhere hits both; the best time of each counts.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DnaDigest } from '../../src/dna/index.js';
import { requireTool, sh, time, type BenchContext } from '../lib.js';

const MiB = 1 << 20;
const TRIALS = 3;

/** Writes `bytes` of incompressible-looking data (a 1 MiB random block, varied per MiB). */
async function writeData(path: string, bytes: number): Promise<void> {
  const block = Buffer.alloc(MiB);
  for (let off = 0; off < MiB; off += 64) createHash('sha512').update(String(off)).digest().copy(block, off);
  const h = await open(path, 'w');
  try {
    for (let done = 0, i = 0; done < bytes; i++) {
      const n = Math.min(MiB, bytes - done);
      block.writeUInt32LE(i, 0);
      await h.write(block, 0, n);
      done += n;
    }
  } finally {
    await h.close();
  }
}

/** Runs ours and the baseline alternately `TRIALS` times; returns the best seconds of each. */
async function duel(ours: () => Promise<unknown>, theirs: () => Promise<unknown>): Promise<{ ours: number; theirs: number }> {
  let o = Infinity;
  let t = Infinity;
  for (let i = 0; i < TRIALS; i++) {
    o = Math.min(o, await time(ours));
    t = Math.min(t, await time(theirs));
  }
  return { ours: o, theirs: t };
}

const mbps = (bytes: number, seconds: number): number => bytes / 1e6 / seconds;

async function fileCase(ctx: BenchContext, name: string, algorithm: 'md5' | 'sha256', tool: string, file: string, bytes: number): Promise<void> {
  await requireTool(tool, 'coreutils');
  const ref = (await sh(`${tool} ${file}`, { capture: true })).split(' ')[0];
  const mine = await DnaDigest.ofFile(file, { algorithm });
  if (mine.dig !== ref || mine.size !== bytes) throw new Error(`${name}: DnaDigest gave ${mine.dig}/${mine.size}, ${tool} ${ref}/${bytes}`);
  const t = await duel(
    () => DnaDigest.ofFile(file, { algorithm }),
    () => sh(`${tool} ${file}`),
  );
  ctx.record({ case: name, unit: 'MB/s', value: mbps(bytes, t.ours), baseline: tool, baselineValue: mbps(bytes, t.theirs) });
}

async function scanCase(ctx: BenchContext): Promise<void> {
  await requireTool('md5sum', 'coreutils');
  await requireTool('xargs', 'findutils');
  const files = ctx.quick ? 200 : 2000;
  const total = ctx.quick ? 64 * MiB : 1024 * MiB;
  const each = Math.floor(total / files);
  const perDir = 100;
  const root = join(ctx.dir, 'tree');
  ctx.log(`scan-tree: writing ${files} files of ${(each / 1024).toFixed(0)} KiB with sidecars...`);
  const t0 = performance.now();
  for (let i = 0; i < files; i++) {
    const sub = join(root, `d${String(Math.floor(i / perDir)).padStart(3, '0')}`);
    if (i % perDir === 0) await mkdir(sub, { recursive: true });
    const f = join(sub, `run${String(i).padStart(5, '0')}.dat`);
    const buf = Buffer.alloc(each, i % 251);
    buf.writeUInt32LE(i, 0);
    await writeFile(f, buf);
    // The sidecar text exactly as writeSidecar makes it, without 2,000 fsyncs of setup.
    await writeFile(f + '.dna', `{"dig": "${createHash('md5').update(buf).digest('hex')}", "size": ${each}}\n`);
  }
  await sh(`find ${root} -type f -print0 | xargs -0 cat > /dev/null`);
  ctx.log(`scan-tree: tree ready in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const bytes = files * each;
  const scan = async (): Promise<void> => {
    let n = 0;
    for await (const r of DnaDigest.scan(root, { concurrency: 2 })) {
      if (!r.ok) throw new Error(`scan-tree: unexpected mutant ${r.path}`);
      n++;
    }
    if (n !== files) throw new Error(`scan-tree: scanned ${n} of ${files} files`);
  };
  // `-n 100`: without it xargs puts every file on one command line and -P2
  // never starts a second md5sum; the baseline must really use both cores.
  const t = await duel(scan, () => sh(`find ${root} -type f ! -name '*.dna' -print0 | xargs -0 -P2 -n 100 md5sum > /dev/null`));
  ctx.record({ case: 'scan-tree', unit: 'MB/s', value: mbps(bytes, t.ours), baseline: 'xargs -P2 -n 100 md5sum', baselineValue: mbps(bytes, t.theirs) });
}

/**
 * Runs the DnaDigest cases (`md5-file`, `sha256-file`, `scan-tree`) that
 * `ctx.wants`, recording one row each.
 *
 * @param ctx - the benchmark context
 */
export async function runDigestCases(ctx: BenchContext): Promise<void> {
  const wantMd5 = ctx.wants('md5-file');
  const wantSha = ctx.wants('sha256-file');
  if (wantMd5 || wantSha) {
    const bytes = ctx.quick ? 128 * MiB : 1024 * MiB;
    const file = join(ctx.dir, 'big.dat');
    ctx.log(`digest: writing a ${bytes / MiB} MiB file...`);
    await writeData(file, bytes);
    await sh(`cat ${file} > /dev/null`);
    if (wantMd5) await fileCase(ctx, 'md5-file', 'md5', 'md5sum', file, bytes);
    if (wantSha) await fileCase(ctx, 'sha256-file', 'sha256', 'sha256sum', file, bytes);
    await sh(`rm -f ${file}`);
  }
  if (ctx.wants('scan-tree')) await scanCase(ctx);
}
