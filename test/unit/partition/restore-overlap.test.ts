// Partitioner.restore reads the manifests and lists the target's tables
// while it checks the DNAs: these tests hold it to the order of the errors
// (a mutant is reported first, whatever else fails) and to leaving nothing
// running behind a failed restore.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import type { TableSource } from '../../../src/db/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import { writePartitionArchive } from '../../../src/partition/partition-archive.js';
import type { Progress } from '../../../src/progress.js';
import { archiveEntries, makePairDb, rejectsWith, tempDir } from './helpers.js';

const seq = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const PAIR = ['CalibVld', 'Calib'];

async function dumped(keys = seq(1, 250)): Promise<{ d: string; out: string }> {
  const d = await tempDir();
  const f = join(d, 'src.db');
  makePairDb(f, keys, 3);
  await using src = new SqliteSource(f);
  const out = join(d, 'out');
  await new Partitioner(src, { tables: PAIR, rowsPerPartition: 100, outDir: out }).dump();
  return { d, out };
}

interface Spy {
  target: TableSource;
  calls: string[];
  /** tables() calls started and not yet settled. */
  listing: () => number;
}

/** The target with its calls recorded; `tables` may be replaced. */
function spy(dst: SqliteSource, tables?: () => Promise<string[]>): Spy {
  const calls: string[] = [];
  let open = 0;
  const target = new Proxy(dst, {
    get: (t, p) => {
      const v = Reflect.get(t, p, t) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        calls.push(String(p));
        if (p === 'tables') {
          open++;
          const run = tables !== undefined ? tables() : (v as (...a: unknown[]) => Promise<string[]>).apply(t, args);
          return run.finally(() => open--);
        }
        return (v as (...a: unknown[]) => unknown).apply(t, args);
      };
    },
  }) as unknown as TableSource;
  return { target, calls, listing: () => open };
}

describe('Partitioner.restore: manifests and the target listed while the DNAs are checked', () => {
  it('reports a mutant first (EDIGEST_MISMATCH) though its manifest cannot be read and the target fails: nothing created or loaded', async () => {
    const { d, out } = await dumped();
    const victim = join(out, 'CalibVld', '0000000101-0000000200.tar.gz');
    const buf = await readFile(victim);
    // Early in the deflate stream: the manifest (the first entry) is damaged too.
    for (let i = 20; i < 60; i++) buf[i]! ^= 0x5a;
    await writeFile(victim, buf);
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const s = spy(dst, () => Promise.reject(new StowageError('EDB', 'the target is down')));
    const err = await rejectsWith(Partitioner.restore(s.target, out), 'EDIGEST_MISMATCH');
    expect(err.message).toContain(victim);
    expect(s.calls.filter((c) => c === 'createTable' || c === 'load' || c === 'keyRange')).toEqual([]);
    expect(await dst.tables()).toEqual([]);
  });

  it('with every archive intact, reports the failure to list the target (before any load), loading nothing', async () => {
    const { d, out } = await dumped();
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const s = spy(dst, () => Promise.reject(new StowageError('ECONNECT', 'the target is down')));
    const seen: Progress[] = [];
    const err = await rejectsWith(Partitioner.restore(s.target, out, { onProgress: (p) => seen.push(p) }), 'ECONNECT');
    expect(err.message).toBe('the target is down');
    expect(seen.every((p) => p.phase === 'verify')).toBe(true);
    expect(s.calls.filter((c) => c === 'createTable' || c === 'load')).toEqual([]);
  });

  it('with every DNA right, still refuses an archive whose first entry is not the manifest (ECORRUPT_ARCHIVE), loading nothing', async () => {
    const { d, out } = await dumped();
    const path = join(out, 'CalibVld', '0000000201-0000000300.tar.gz');
    const e = await archiveEntries(path);
    // Re-packed with the manifest last, and a fresh, matching sidecar.
    const entries = [...e.entries()].sort(([a], [b]) => (a === 'manifest.json' ? 1 : b === 'manifest.json' ? -1 : 0));
    await writePartitionArchive(
      path,
      entries.map(([name, data]) => ({ name, size: data.length, data })),
      { gzipLevel: 6, gzipConcurrency: 1, mtime: new Date() },
    );
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const s = spy(dst);
    const err = await rejectsWith(Partitioner.restore(s.target, out), 'ECORRUPT_ARCHIVE');
    expect(err.message).toContain(path);
    expect(s.calls.filter((c) => c === 'createTable' || c === 'load')).toEqual([]);
    expect(await dst.tables()).toEqual([]);
  });

  it('aborted while the DNAs are checked: rejects with the reason once the listing and the manifest reads have settled', async () => {
    const { d, out } = await dumped(seq(1, 2000));
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // A listing that only ends when let go: the restore must wait for it.
    const s = spy(dst, async () => {
      await gate;
      return [];
    });
    const ac = new AbortController();
    const reason = new Error('stop now');
    const run = Partitioner.restore(s.target, out, { signal: ac.signal, onProgress: (p) => p.phase === 'verify' && p.itemsDone === 1 && ac.abort(reason) });
    let settled = false;
    void run.catch(() => {}).finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false);
    expect(s.listing()).toBe(1);
    release();
    await expect(run).rejects.toBe(reason);
    expect(s.listing()).toBe(0);
    expect(s.calls.filter((c) => c === 'createTable' || c === 'load')).toEqual([]);
    expect(await dst.tables()).toEqual([]);
  });
});
