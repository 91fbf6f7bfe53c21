// Partitioner.restore loads an archive again when the target rolled a load
// back as a deadlock victim (SQLSTATE 40001 / 40P01), and only then; and it
// reads the next archive ahead of its load, which never outlives a failure.
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import type { LoadOptions, TableSource } from '../../../src/db/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import type { Progress } from '../../../src/progress.js';
import { count, makePairDb, rejectsWith, tempDir } from './helpers.js';

const seq = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const PAIR = ['CalibVld', 'Calib'];

async function dumped(): Promise<{ d: string; out: string }> {
  const d = await tempDir();
  const f = join(d, 'src.db');
  makePairDb(f, seq(1, 250), 3);
  await using src = new SqliteSource(f);
  const out = join(d, 'out');
  await new Partitioner(src, { tables: PAIR, rowsPerPartition: 100, outDir: out }).dump();
  return { d, out };
}

/** `dst` with its `load` replaced by `load` (which may call the real one, bound to `dst`). */
function withLoad(dst: SqliteSource, load: (real: TableSource['load'], name: string, input: Readable | AsyncIterable<Uint8Array>, options?: LoadOptions) => ReturnType<TableSource['load']>): TableSource {
  const real = dst.load.bind(dst);
  return new Proxy(dst, {
    get: (t, p) => {
      if (p === 'load') return (name: string, input: Readable | AsyncIterable<Uint8Array>, options?: LoadOptions) => load(real, name, input, options);
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  }) as unknown as TableSource;
}

/**
 * The target, whose loads of `table` fail `times` times (after reading a
 * chunk of their input) with `error`, as a server's rolled back load does.
 */
function failing(dst: SqliteSource, table: string, times: number, error: () => StowageError): { target: TableSource; loads: string[] } {
  const loads: string[] = [];
  let left = times;
  const target = withLoad(dst, async (real, name, input, options) => {
    // A load that replaces a range here is the restore taking a group's range out again (see undoPartial).
    loads.push(options?.replaceRange ? `${name} (range taken out)` : name);
    if (name === table && left > 0) {
      left--;
      const it = (input as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
      await it.next();
      await it.return?.();
      throw error();
    }
    return real(name, input, options);
  });
  return { target, loads };
}

const deadlock = (state: string) => (): StowageError => new StowageError('EDB', 'cannot load rows: Deadlock found when trying to get lock', { details: { sqlState: state } });

describe('Partitioner.restore: deadlock victims', () => {
  it('loads what is left of the archive again after a deadlock (40001), counting each range once', async () => {
    const { d, out } = await dumped();
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const { target, loads } = failing(dst, 'Calib', 2, deadlock('40001'));
    const seen: Progress[] = [];
    const r = await Partitioner.restore(target, out, { concurrency: 1, onProgress: (p) => seen.push(p) });
    expect(r.partitions).toBe(3);
    expect(r.tables).toEqual([
      { name: 'Calib', rows: 750, partitions: 3, created: true },
      { name: 'CalibVld', rows: 250, partitions: 3, created: true },
    ]);
    // CalibVld, loaded before Calib in the first archive, is not loaded
    // twice: once per archive, while Calib is tried twice more. (The next
    // archive, read ahead, may take the free load between two tries.)
    expect(loads.slice(0, 2)).toEqual(['CalibVld', 'Calib']);
    expect(loads.filter((x) => x === 'CalibVld')).toHaveLength(3);
    expect(loads.filter((x) => x === 'Calib')).toHaveLength(5);
    expect(count(join(d, 'dst.db'), 'Calib')).toBe(750);
    expect(count(join(d, 'dst.db'), 'CalibVld')).toBe(250);
    expect(seen.at(-1)).toMatchObject({ phase: 'load', itemsDone: 3, bytesDone: r.bytes });
  });

  it("retries PostgreSQL's deadlock_detected (40P01) too, and gives up after four tries with the last error", async () => {
    const { d, out } = await dumped();
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const ok = failing(dst, 'Calib', 3, deadlock('40P01'));
    await Partitioner.restore(ok.target, out, { concurrency: 1, hi: 100 });
    expect(ok.loads).toEqual(['CalibVld', 'Calib', 'Calib', 'Calib', 'Calib']);
    await using dst2 = new SqliteSource(join(d, 'dst2.db'), { create: true });
    const bad = failing(dst2, 'Calib', 4, deadlock('40P01'));
    const err = await rejectsWith(Partitioner.restore(bad.target, out, { concurrency: 1, hi: 100 }), 'EDB');
    expect(err.message).toMatch(/Deadlock/);
    // CalibVld, committed before the failure in a table this restore created, is taken out again.
    expect(bad.loads).toEqual(['CalibVld', 'Calib', 'Calib', 'Calib', 'Calib', 'CalibVld (range taken out)']);
    expect(count(join(d, 'dst2.db'), 'Calib')).toBe(0);
    expect(count(join(d, 'dst2.db'), 'CalibVld')).toBe(0);
  });

  it('does not retry other failures (a duplicate key, 23505)', async () => {
    const { d, out } = await dumped();
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const { target, loads } = failing(dst, 'Calib', 1, () => new StowageError('EDB', 'duplicate key', { details: { sqlState: '23505' } }));
    await rejectsWith(Partitioner.restore(target, out, { concurrency: 1, hi: 100 }), 'EDB');
    expect(loads).toEqual(['CalibVld', 'Calib', 'CalibVld (range taken out)']);
  });
});

describe('Partitioner.restore: the archive read ahead', () => {
  it('is not loaded once another load has failed the restore', async () => {
    const { d, out } = await dumped();
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    // Three archives, one load at a time: the second is read ahead while the first loads, and waits.
    const { target, loads } = failing(dst, 'Calib', 1, () => new StowageError('EDB', 'duplicate key', { details: { sqlState: '23505' } }));
    await rejectsWith(Partitioner.restore(target, out, { concurrency: 1 }), 'EDB');
    expect(loads).toEqual(['CalibVld', 'Calib', 'CalibVld (range taken out)']);
    expect(count(join(d, 'dst.db'), 'CalibVld')).toBe(0);
    expect(count(join(d, 'dst.db'), 'Calib')).toBe(0);
  });

  it('is read while the load before it runs, and its load waits for a free one', async () => {
    const { d, out } = await dumped();
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const buffered: boolean[] = [];
    let active = 0;
    let most = 0;
    const target = withLoad(dst, async (real, name, input, options) => {
      most = Math.max(most, ++active);
      // Whether rows were read for this load before it took any.
      buffered.push((input as Readable).readableLength > 0);
      // Long enough for the next archive to be read ahead on a busy machine (30 ms flaked under the full suite).
      await new Promise((r) => setTimeout(r, 150));
      try {
        return await real(name, input, options);
      } finally {
        active--;
      }
    });
    // One table, so one load per archive: each archive after the first is read while the one before loads.
    const r = await Partitioner.restore(target, out, { concurrency: 1, table: 'CalibVld' });
    expect(r.rows).toBe(250);
    expect(most).toBe(1);
    expect(buffered).toEqual([false, true, true]);
    expect(count(join(d, 'dst.db'), 'CalibVld')).toBe(250);
  });

  it('an abort while an archive waits for a free load rejects with the reason, and leaves nothing running', async () => {
    const { d, out } = await dumped();
    await using dst = new SqliteSource(join(d, 'dst.db'), { create: true });
    const ac = new AbortController();
    const reason = new Error('operator stop');
    const target = withLoad(dst, (real, name, input, options) => {
      // The first load stops the restore while the next archive waits for it.
      ac.abort(reason);
      return real(name, input, options);
    });
    await expect(Partitioner.restore(target, out, { concurrency: 1, signal: ac.signal })).rejects.toBe(reason);
    expect(count(join(d, 'dst.db'), 'Calib')).toBe(0);
  });
});

