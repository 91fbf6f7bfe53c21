import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import type { DbOptions, TableSource } from '../../../src/db/index.js';
import { KEY_PROBES, KEY_PROBES_MAX, type KeyProbes } from '../../../src/db/key-probes.js';
import { Partitioner } from '../../../src/partition/index.js';
import { makePairDb, tempDir } from './helpers.js';
import { xorshift32 } from '../../support/prng.js';

/**
 * The SQLite source with key probes made of its own nextKey() and
 * keyRange() (SqliteSource has none), every probe query and count counted.
 */
function probing(src: SqliteSource): { source: TableSource; calls: { nextKeys: number; froms: number; keyRange: number } } {
  const calls = { nextKeys: 0, froms: 0, keyRange: 0 };
  const probes: KeyProbes = {
    async bounds(table: string, key: string, options?: DbOptions) {
      const r = await src.keyRange(table, key, options);
      return { lo: r.lo, hi: r.hi, nulls: r.nulls > 0 };
    },
    async nextKeys(table: string, key: string, froms: readonly bigint[], options?: DbOptions) {
      expect(froms.length).toBeLessThanOrEqual(KEY_PROBES_MAX);
      calls.nextKeys++;
      calls.froms += froms.length;
      const out: (bigint | null)[] = [];
      for (const f of froms) out.push(await src.nextKey(table, key, f, options));
      return out;
    },
  };
  const source = new Proxy(src, {
    get(t, p) {
      if (p === KEY_PROBES) return probes;
      if (p === 'keyRange') {
        return (...a: Parameters<SqliteSource['keyRange']>) => {
          calls.keyRange++;
          return t.keyRange(...a);
        };
      }
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  }) as unknown as TableSource;
  return { source, calls };
}

/** A seeded generator of numbers in [0, 1). */
function rng(seed: number): () => number {
  const next = xorshift32(seed);
  return () => next() / 2 ** 32;
}

describe('Partitioner plan from key probes', () => {
  it('is the plan keyRange() gives, for dense runs, gaps of every width and sparse keys, single tables and the pair', async () => {
    for (let seed = 1; seed <= 12; seed++) {
      const r = rng(seed);
      const keys = new Set<bigint>();
      let k = BigInt(Math.floor(r() * 50)) - 20n;
      const n = 50 + Math.floor(r() * 400);
      for (let i = 0; i < n; i++) {
        keys.add(k);
        const x = r();
        // Mostly the next key, sometimes a gap of a few ranges, now and then one of many.
        k += x < 0.8 ? 1n : x < 0.95 ? BigInt(1 + Math.floor(r() * 40)) : BigInt(Math.floor(r() * 1e9));
      }
      const d = await tempDir();
      const file = join(d, `k${seed}.db`);
      makePairDb(file, [...keys], 1);
      await using src = new SqliteSource(file);
      const { source, calls } = probing(src);
      const size = 1 + Math.floor(r() * 12);
      for (const opts of [{ table: 'Calib' }, { tables: ['CalibVld', 'Calib'] }]) {
        const want = await new Partitioner(src, { ...opts, rowsPerPartition: size, outDir: join(d, 'out') }).plan();
        const got = await new Partitioner(source, { ...opts, rowsPerPartition: size, outDir: join(d, 'out') }).plan();
        expect(got, `seed ${seed}, ${size} keys per range`).toEqual(want);
      }
      expect(calls.nextKeys).toBeGreaterThan(0);
    }
  });

  it('asks once per 64 ranges over a dense key, never past the largest key; the count is taken once, beside', async () => {
    const d = await tempDir();
    makePairDb(join(d, 'dense.db'), Array.from({ length: 1000 }, (_, i) => i + 1), 1);
    await using src = new SqliteSource(join(d, 'dense.db'));
    const { source, calls } = probing(src);
    const plan = await new Partitioner(source, { table: 'Calib', rowsPerPartition: 10, outDir: join(d, 'out') }).plan();
    expect(plan.partitions).toHaveLength(100);
    expect(plan.keyRange).toEqual({ lo: 1n, hi: 1000n, rows: 1000 });
    // Ranges 2..65 in one query, 66..100 in the next (none asked above 1000).
    expect(calls).toEqual({ nextKeys: 2, froms: 64 + 35, keyRange: 1 });
  });
});
