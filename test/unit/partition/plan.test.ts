import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import type { DbOptions, KeyBound, RowsOptions, TableSource } from '../../../src/db/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import { Catalog } from '../../../src/catalog/index.js';
import { exec, insertPair, makePairDb, rejectsWith, tempDir, throwsWith } from './helpers.js';

/** The source without a nextKey() of its own, with every call to rows() counted (the plan's fallback for finding the next occupied key). */
function counting(src: SqliteSource): { source: TableSource; rowsCalls: RowsOptions[] } {
  const rowsCalls: RowsOptions[] = [];
  const source = new Proxy(src, {
    get(t, p) {
      if (p === 'nextKey') return undefined;
      if (p === 'rows') {
        return (table: string, o: RowsOptions) => {
          rowsCalls.push(o);
          return t.rows(table, o);
        };
      }
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(t) : v;
    },
  });
  return { source, rowsCalls };
}

const states = (p: Awaited<ReturnType<Partitioner['plan']>>): string[] => p.partitions.map((x) => `${x.lo}-${x.hi} ${x.state}`);

describe('Partitioner.plan', () => {
  it('lists a dense table as complete ranges and a partial tail', async () => {
    const d = await tempDir();
    makePairDb(join(d, 'c.db'), Array.from({ length: 250 }, (_, i) => i + 1));
    await using src = new SqliteSource(join(d, 'c.db'));
    const p = new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: join(d, 'out') });
    const plan = await p.plan();
    // The range below the tail stays partial until the keys pass the tail's end (settleRanges: 1).
    expect(states(plan)).toEqual(['1-100 complete', '101-200 partial', '201-300 partial']);
    expect(states(await new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: join(d, 'out'), settleRanges: 0 }).plan())).toEqual(['1-100 complete', '101-200 complete', '201-300 partial']);
    expect(plan.keyRange).toEqual({ lo: 1n, hi: 250n, rows: 250 });
    expect(plan.stateFrom).toBe('disk');
    expect(plan.dir).toBe(join(d, 'out', 'CalibVld'));
    expect(plan.partitions[0]!.path).toBe(join(d, 'out', 'CalibVld', '0000000001-0000000100.tar.gz'));
    expect(plan.partitions.every((x) => x.occupied && x.archived === undefined)).toBe(true);
  });

  it('defaults to SEQNO ranges of 10000 from 1, like the Daya Bay tool', async () => {
    const d = await tempDir();
    makePairDb(join(d, 'c.db'), [1, 10000, 10001, 25000]);
    await using src = new SqliteSource(join(d, 'c.db'));
    const plan = await new Partitioner(src, { table: 'CalibVld', outDir: d }).plan();
    expect(plan.key).toBe('SEQNO');
    expect(plan.rowsPerPartition).toBe(10000n);
    expect(states(plan)).toEqual(['1-10000 complete', '10001-20000 partial', '20001-30000 partial']);
  });

  it('keys 1 and 10^15 make two partitions and one empty run, probing the gap in doubling windows', async () => {
    const d = await tempDir();
    makePairDb(join(d, 'c.db'), [1n, 10n ** 15n]);
    await using src = new SqliteSource(join(d, 'c.db'));
    const { source, rowsCalls } = counting(src);
    const t0 = performance.now();
    const plan = await new Partitioner(source, { table: 'CalibVld', outDir: d }).plan();
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(states(plan)).toEqual(['1-10000 complete', `10001-${10n ** 15n - 10000n} empty`, `${10n ** 15n - 9999n}-${10n ** 15n} partial`]);
    expect(plan.partitions.filter((x) => x.state === 'empty')[0]!.path).toBeUndefined();
    // "Next key >= 10001?" is asked over windows of 10^4, 2*10^4, 4*10^4... keys: the 10^11 empty ranges are never visited one by one.
    expect(rowsCalls.length).toBeGreaterThan(30);
    expect(rowsCalls.length).toBeLessThan(40);
    expect(rowsCalls[0]).toMatchObject({ lo: 10001n, hi: 20000n });
    expect(rowsCalls[1]).toMatchObject({ lo: 20001n, hi: 40000n });
    rowsCalls.forEach((o, i) => i > 0 && expect(o.lo).toBe(BigInt(rowsCalls[i - 1]!.hi!) + 1n));
    expect(rowsCalls.at(-1)!.hi).toBe(10n ** 15n);
  });

  it('asks no question of a dense table (unique key, as many rows as keys in its span), nor twice for a group', async () => {
    const d = await tempDir();
    makePairDb(join(d, 'c.db'), Array.from({ length: 1000 }, (_, i) => i + 1));
    await using src = new SqliteSource(join(d, 'c.db'));
    const { source, rowsCalls } = counting(src);
    const plan = await new Partitioner(source, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 100, outDir: d }).plan();
    expect(plan.partitions).toHaveLength(10);
    expect(plan.partitions.every((x) => x.occupied)).toBe(true);
    expect(rowsCalls).toEqual([]);
    // The payload's key is not unique: its own plan asks once per range.
    const payload = await new Partitioner(source, { table: 'Calib', rowsPerPartition: 100, outDir: d }).plan();
    expect(payload.partitions).toHaveLength(10);
    expect(rowsCalls.map((o) => [o.lo, o.hi])).toEqual(Array.from({ length: 9 }, (_, i) => [BigInt(i * 100 + 101), BigInt(i * 100 + 200)]));
  });

  it('walks sparse keys run by run, and a group by the union of its tables', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, [5, 7, 350, 351, 999]);
    // The payload has a range of its own the validity table lacks.
    exec(f, 'INSERT INTO "Calib" VALUES (?, 1, 1, 1.0, NULL, NULL)', 620);
    await using src = new SqliteSource(f);
    const plan = await new Partitioner(src, { tables: ['CalibVld', 'Calib'], rowsPerPartition: 100, outDir: d }).plan();
    expect(states(plan)).toEqual(['1-100 complete', '101-300 empty', '301-400 complete', '401-600 empty', '601-700 complete', '701-900 empty', '901-1000 partial']);
    expect(plan.keyRange).toEqual({ lo: 5n, hi: 999n, rows: 5 + 11 });
    expect(plan.tables).toEqual(['CalibVld', 'Calib']);
  });

  it('uses a source\'s nextKey() when it has one, instead of opening row streams', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, [1, 500, 900]);
    await using src = new SqliteSource(f);
    const { source, rowsCalls } = counting(src);
    const asked: bigint[] = [];
    const seeker = Object.assign(Object.create(source) as TableSource, {
      async nextKey(table: string, key: string, from: KeyBound, _o?: DbOptions): Promise<bigint | null> {
        asked.push(BigInt(from));
        const s = await src.rows(table, { key, lo: from });
        for await (const c of s as AsyncIterable<Buffer>) {
          s.destroy();
          return BigInt(c.toString().split('\t')[0]!);
        }
        return null;
      },
    });
    const plan = await new Partitioner(seeker, { table: 'CalibVld', rowsPerPartition: 100, outDir: d }).plan();
    expect(states(plan)).toEqual(['1-100 complete', '101-400 empty', '401-500 complete', '501-800 empty', '801-900 partial']);
    expect(asked).toEqual([101n, 501n]);
    expect(rowsCalls).toEqual([]);
  });

  it('handles keys below the base, a custom base, and bigint keys beyond 2^53', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    const big = 2n ** 60n + 3n;
    makePairDb(f, [-5, 0, 3, big]);
    await using src = new SqliteSource(f);
    const plan = await new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 10n, base: 0n, outDir: d }).plan();
    const lastLo = (big / 10n) * 10n;
    expect(states(plan)).toEqual(['-10--1 complete', '0-9 complete', `10-${lastLo - 1n} empty`, `${lastLo}-${lastLo + 9n} partial`]);
  });

  it('is empty for an empty table', async () => {
    const d = await tempDir();
    makePairDb(join(d, 'c.db'));
    await using src = new SqliteSource(join(d, 'c.db'));
    const plan = await new Partitioner(src, { table: 'CalibVld', outDir: d }).plan();
    expect(plan.partitions).toEqual([]);
    expect(plan.keyRange).toEqual({ lo: null, hi: null, rows: 0 });
  });

  it('reads the archived state from the folder, or from the Catalog', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, Array.from({ length: 150 }, (_, i) => i + 1));
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    await new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: out, settleRanges: 0 }).dump();
    insertPair(f, Array.from({ length: 100 }, (_, i) => i + 151));
    const plan = await new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: out, settleRanges: 0 }).plan();
    // 101-200 was archived while partial, and is complete now: it is to be written again.
    expect(states(plan)).toEqual(['1-100 archived', '101-200 complete', '201-300 partial']);
    expect(plan.partitions[0]!.archived).toEqual({ path: join(out, 'CalibVld', '0000000001-0000000100.tar.gz'), complete: true, tables: [{ name: 'CalibVld', rows: 100, digest: expect.stringMatching(/^[0-9a-f]{32}$/) }] });
    expect(plan.partitions[1]!.archived?.complete).toBe(false);
    expect(plan.partitions[1]!.archived?.tables[0]!.rows).toBe(50);

    // A Catalog that recorded nothing: the archives on disk still count
    // (written before it was used), so the complete one is not written again.
    using catalog = new Catalog(join(d, 'cat.db'));
    const viaCatalog = await new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: out, catalog, settleRanges: 0 }).plan();
    expect(viaCatalog.stateFrom).toBe('catalog');
    expect(states(viaCatalog)).toEqual(['1-100 archived', '101-200 complete', '201-300 partial']);
  });

  it('lists an archive whose rows were deleted since as archived, not occupied', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, [1, 2, 150, 350]);
    await using src = new SqliteSource(f);
    const p = new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: d });
    await p.dump();
    exec(f, 'DELETE FROM "CalibVld" WHERE "SEQNO" = 150');
    const plan = await p.plan();
    expect(states(plan)).toEqual(['1-100 archived', '101-200 archived', '201-300 empty', '301-400 partial']);
    expect(plan.partitions[1]!.occupied).toBe(false);
  });

  it('refuses a table with NULL keys, a missing table or key, and a folder cut on another grid', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, [1, 2, 3]);
    exec(f, 'CREATE TABLE "Loose" ("SEQNO" INTEGER, "V" TEXT)');
    exec(f, 'INSERT INTO "Loose" VALUES (1, \'a\'), (NULL, \'b\')');
    await using src = new SqliteSource(f);
    const nulls = await rejectsWith(new Partitioner(src, { table: 'Loose', outDir: d }).plan(), 'EBAD_CONFIG');
    expect(nulls.message).toMatch(/1 row\(s\) whose key "SEQNO" is NULL/);
    await rejectsWith(new Partitioner(src, { table: 'Nope', outDir: d }).plan(), 'ENO_TABLE');
    await rejectsWith(new Partitioner(src, { table: 'CalibVld', key: 'NOKEY', outDir: d }).plan(), 'ENO_TABLE');
    await new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: d }).dump();
    const grid = await rejectsWith(new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 50, outDir: d }).plan(), 'EBAD_CONFIG');
    expect(grid.message).toMatch(/not a partition of 50 keys/);
    await rejectsWith(new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, key: 'SITEMASK', outDir: d }).plan(), 'EBAD_CONFIG');
  });

  it('a folder emptied by hand starts over on another grid, also with a Catalog that remembers the old archives', async () => {
    const d = await tempDir();
    const f = join(d, 'c.db');
    makePairDb(f, Array.from({ length: 250 }, (_, i) => i + 1));
    await using src = new SqliteSource(f);
    const out = join(d, 'out');
    using catalog = new Catalog(join(d, 'cat.db'));
    await new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 100, outDir: out, catalog }).dump();
    // While the archives are there, another grid is refused.
    const grid = await rejectsWith(new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 200, outDir: out, catalog }).plan(), 'EBAD_CONFIG');
    expect(grid.message).toMatch(/not a partition of 200 keys/);
    await rm(join(out, 'CalibVld'), { recursive: true });
    const p = new Partitioner(src, { table: 'CalibVld', rowsPerPartition: 200, outDir: out, catalog });
    expect((await p.dump()).written.map((w) => [w.lo, w.hi])).toEqual([
      [1n, 200n],
      [201n, 400n],
    ]);
    expect((await p.dump()).written).toEqual([]);
  });

  it('rejects bad options up front', async () => {
    const d = await tempDir();
    makePairDb(join(d, 'c.db'));
    await using src = new SqliteSource(join(d, 'c.db'));
    const bad: unknown[] = [
      { table: 'CalibVld', outDir: d, rowsPerPartiton: 5 },
      { outDir: d },
      { table: 'CalibVld' },
      { table: 'CalibVld', tables: ['Calib'], outDir: d },
      { tables: [], outDir: d },
      { tables: ['Calib', 'Calib'], outDir: d },
      { table: '', outDir: d },
      { table: 'CalibVld', outDir: d, rowsPerPartition: 0 },
      { table: 'CalibVld', outDir: d, rowsPerPartition: 1.5 },
      { table: 'CalibVld', outDir: d, gzipLevel: 0 },
      { table: 'CalibVld', outDir: d, spoolMemoryBytes: -1 },
      { table: 'CalibVld', outDir: d, catalog: {} },
    ];
    for (const o of bad) throwsWith(() => new Partitioner(src, o as never), 'EBAD_CONFIG');
    throwsWith(() => new Partitioner({} as never, { table: 'CalibVld', outDir: d }), 'EBAD_CONFIG');
    const p = new Partitioner(src, { table: 'CalibVld', outDir: d });
    await rejectsWith(p.plan({ signl: 1 } as never), 'EBAD_CONFIG');
  });

  it('rejects with the signal\'s reason when aborted before it starts', async () => {
    const d = await tempDir();
    makePairDb(join(d, 'c.db'), [1]);
    await using src = new SqliteSource(join(d, 'c.db'));
    const ac = new AbortController();
    const reason = new Error('stop');
    ac.abort(reason);
    await expect(new Partitioner(src, { table: 'CalibVld', outDir: d }).plan({ signal: ac.signal })).rejects.toBe(reason);
  });
});
