import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SqliteSource } from '../../../src/db/sqlite/index.js';
import type { RowsOptions, TableReader } from '../../../src/db/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import { matchColumns } from '../../../src/partition/compare.js';
import { exec, insertPair, makePairDb, rejectsWith, tempDir } from './helpers.js';

const seq = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** Both orders of a pair of sides. */
const bothWays = <T>(a: T, b: T): [T, T][] => [
  [a, b],
  [b, a],
];

/** Two identical databases a and b. */
async function twins(keys: number[], perSeqno = 3): Promise<{ fa: string; fb: string; a: SqliteSource; b: SqliteSource }> {
  const d = await tempDir();
  const fa = join(d, 'a.db');
  const fb = join(d, 'b.db');
  makePairDb(fa, keys, perSeqno);
  exec(fa, 'PRAGMA wal_checkpoint(TRUNCATE)');
  await copyFile(fa, fb);
  return { fa, fb, a: new SqliteSource(fa), b: new SqliteSource(fb) };
}

/** A reader with its rows() calls recorded. */
function recording(r: SqliteSource): { reader: TableReader; calls: RowsOptions[] } {
  const calls: RowsOptions[] = [];
  const reader = new Proxy(r, {
    get(t, p) {
      if (p === 'rows') {
        return (table: string, o: RowsOptions) => {
          calls.push(o);
          return t.rows(table, o);
        };
      }
      const v = Reflect.get(t, p, t) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
    },
  });
  return { reader, calls };
}

describe('Partitioner.compare', () => {
  it('finds two copies equal range by range', async () => {
    const { a, b } = await twins([...seq(1, 150), 700]);
    const r = await Partitioner.compare(a, b, 'Calib', { rowsPerPartition: 100 });
    expect(r.equal).toBe(true);
    expect(r.ranges.map((x) => [x.lo, x.hi, x.a.count, x.equal])).toEqual([
      [1n, 100n, 300, true],
      [101n, 200n, 150, true],
      [601n, 700n, 3, true],
    ]);
    expect(r.differingRanges).toEqual([]);
    expect(r.differences).toEqual([]);
    expect(r.a).toEqual({ name: a.name, rows: 453, nulls: 0, columns: ['SEQNO', 'ROW_COUNTER', 'PMTID', 'GAIN', 'NOTE', 'RAW'] });
    expect([r.columnsEqual, r.columnOrderEqual]).toEqual([true, true]);
    await a.close();
    await b.close();
  });

  it('reads each side once, as one stream, when they are equal', async () => {
    const { a, b } = await twins([...seq(1, 500), 10 ** 12]);
    const ra = recording(a);
    const rb = recording(b);
    const r = await Partitioner.compare(ra.reader, rb.reader, 'CalibVld', { rowsPerPartition: 10 });
    expect(r.equal).toBe(true);
    expect(r.ranges).toHaveLength(51);
    expect(ra.calls).toHaveLength(1);
    expect(rb.calls).toHaveLength(1);
    await a.close();
    await b.close();
  });

  it('narrows each difference down to its key: changed, missing and extra rows', async () => {
    const { fb, a, b } = await twins(seq(1, 450));
    exec(fb, 'UPDATE "Calib" SET "GAIN" = 0.1 WHERE "SEQNO" = 42 AND "ROW_COUNTER" = 2');
    exec(fb, 'DELETE FROM "Calib" WHERE "SEQNO" = 250 AND "ROW_COUNTER" = 3');
    exec(fb, 'DELETE FROM "Calib" WHERE "SEQNO" = 251');
    insertPair(fb, [900, 4000], 2);
    const r = await Partitioner.compare(a, b, 'Calib', { rowsPerPartition: 100 });
    expect(r.equal).toBe(false);
    expect(r.differingRanges.map((x) => [x.lo, x.a.count, x.b.count])).toEqual([
      [1n, 300, 300],
      [201n, 300, 296],
      [801n, 0, 2],
      [3901n, 0, 2],
    ]);
    expect(r.ranges).toHaveLength(7);
    expect(r.differences).toEqual([
      { key: 42n, kind: 'different', rowsA: 3, rowsB: 3 },
      { key: 250n, kind: 'different', rowsA: 3, rowsB: 2 },
      { key: 251n, kind: 'only-in-a', rowsA: 3, rowsB: 0 },
      { key: 900n, kind: 'only-in-b', rowsA: 0, rowsB: 2 },
      { key: 4000n, kind: 'only-in-b', rowsA: 0, rowsB: 2 },
    ]);
    expect(r.truncated).toBe(false);
    await a.close();
    await b.close();
  });

  it('bisects a large differing range instead of reading it whole', async () => {
    const { fb, a, b } = await twins(seq(1, 12000), 1);
    exec(fb, 'UPDATE "Calib" SET "NOTE" = \'x\' WHERE "SEQNO" = 7777');
    const ra = recording(a);
    const r = await Partitioner.compare(ra.reader, b, 'Calib', { rowsPerPartition: 1_000_000 });
    expect(r.differences).toEqual([{ key: 7777n, kind: 'different', rowsA: 1, rowsB: 1 }]);
    // Side a was read once as a whole for the range digests, then key by key only in a small piece around 7777.
    expect(ra.calls[0]!.lo).toBeUndefined();
    expect(ra.calls[0]!.hi).toBeUndefined();
    const bounded = ra.calls.slice(1);
    expect(bounded).toHaveLength(1);
    const piece = bounded[0]!;
    expect(BigInt(piece.lo!) <= 7777n && 7777n <= BigInt(piece.hi!)).toBe(true);
    expect(BigInt(piece.hi!) - BigInt(piece.lo!)).toBeLessThan(4096n);
    await a.close();
    await b.close();
  });

  it('stops listing keys at maxDifferences, still counting every range', async () => {
    const { fb, a, b } = await twins(seq(1, 300), 1);
    exec(fb, 'UPDATE "Calib" SET "NOTE" = \'x\' WHERE "SEQNO" % 10 = 0');
    const r = await Partitioner.compare(a, b, 'Calib', { rowsPerPartition: 100, maxDifferences: 5 });
    expect(r.differences.map((x) => x.key)).toEqual([10n, 20n, 30n, 40n, 50n]);
    expect(r.truncated).toBe(true);
    expect(r.differingRanges).toHaveLength(3);
    await a.close();
    await b.close();
  });

  it('compares only [lo, hi] when asked', async () => {
    const { fb, a, b } = await twins(seq(1, 300));
    exec(fb, 'DELETE FROM "Calib" WHERE "SEQNO" = 280');
    const inside = await Partitioner.compare(a, b, 'Calib', { rowsPerPartition: 100, lo: 50, hi: 250 });
    expect(inside.equal).toBe(true);
    expect(inside.ranges.map((x) => [x.lo, x.hi])).toEqual([
      [50n, 100n],
      [101n, 200n],
      [201n, 250n],
    ]);
    const around = await Partitioner.compare(a, b, 'Calib', { rowsPerPartition: 100, lo: 250 });
    expect(around.differences).toEqual([{ key: 280n, kind: 'only-in-a', rowsA: 3, rowsB: 0 }]);
    await a.close();
    await b.close();
  });

  it('compares rows by column name: columns in another order (or another case) compare equal, a changed value is still found', async () => {
    const d = await tempDir();
    const fa = join(d, 'a.db');
    const fb = join(d, 'b.db');
    makePairDb(fa, seq(1, 1500), 3);
    const cols = '"SEQNO", "ROW_COUNTER", "PMTID", "GAIN", "NOTE", "RAW"';
    exec(fb, 'CREATE TABLE "Calib" ("note" TEXT, "ROW_COUNTER" INTEGER NOT NULL, "RAW" BLOB, "seqno" INTEGER NOT NULL, "GAIN" REAL, "PMTID" INTEGER, PRIMARY KEY ("seqno", "ROW_COUNTER"))');
    exec(fb, `ATTACH '${fa}' AS src; INSERT INTO "Calib" (${cols}) SELECT ${cols} FROM src."Calib"; DETACH src`);
    await using a = new SqliteSource(fa);
    await using b = new SqliteSource(fb);
    const r = await Partitioner.compare(a, b, 'Calib', { rowsPerPartition: 1000 });
    expect([r.equal, r.columnsEqual, r.columnOrderEqual, r.differingRanges.length]).toEqual([true, true, false, 0]);
    expect(r.b.columns).toEqual(['note', 'ROW_COUNTER', 'RAW', 'seqno', 'GAIN', 'PMTID']);
    expect(r.ranges.map((x) => x.a.count)).toEqual([3000, 1500]);
    exec(fb, 'UPDATE "Calib" SET "GAIN" = "GAIN" + 1e-9 WHERE "seqno" = 150 AND "ROW_COUNTER" = 2');
    // The range [1, 1000] (6,000 rows on both sides) is bisected with digestRange of the named columns, then merged.
    for (const [x, y] of bothWays(a, b)) {
      const c = await Partitioner.compare(x, y, 'Calib', { rowsPerPartition: 1000 });
      expect([c.equal, c.columnsEqual, c.columnOrderEqual]).toEqual([false, true, false]);
      expect(c.differingRanges.map((g) => [g.lo, g.hi])).toEqual([[1n, 1000n]]);
      expect(c.differences).toEqual([{ key: 150n, kind: 'different', rowsA: 3, rowsB: 3 }]);
    }
    // Side b is read in a's column order, and the halves' digests agree where the rows do: one small piece is merged.
    const rb = recording(b);
    await Partitioner.compare(a, rb.reader, 'Calib', { rowsPerPartition: 1000 });
    expect(rb.calls.every((o) => o.columns?.join() === 'seqno,ROW_COUNTER,PMTID,GAIN,note,RAW')).toBe(true);
    const merged = rb.calls.slice(1);
    expect(merged).toHaveLength(1);
    expect(BigInt(merged[0]!.lo!) <= 150n && 150n <= BigInt(merged[0]!.hi!)).toBe(true);
  });

  it('matches names exactly before case-insensitively, and only where unambiguous on both sides', async () => {
    // PostgreSQL can hold "Value" and "value" in one table. The exact match pairs a."value" with b."value",
    // whatever the order of a's columns; a."Value" is left without a partner.
    expect(matchColumns(['k', 'Value', 'value'], ['k', 'value'], 0, 0)).toEqual({ a: ['k', 'value'], b: undefined, keyIndex: 0, equal: false });
    expect(matchColumns(['k', 'value', 'Value'], ['k', 'value'], 0, 0)).toEqual({ a: ['k', 'value'], b: undefined, keyIndex: 0, equal: false });
    // Case-insensitively only where one name of that spelling is left on each side.
    expect(matchColumns(['k', 'Name', 'NAME'], ['k', 'name'], 0, 0)).toEqual({ a: ['k'], b: ['k'], keyIndex: 0, equal: false });
    expect(matchColumns(['k', 'name', 'NAME', 'Name'], ['k', 'Name', 'NAME', 'nAmE'], 0, 0)).toEqual({ a: undefined, b: ['k', 'nAmE', 'NAME', 'Name'], keyIndex: 0, equal: true });
    // The keys pair with each other, wherever they stand, and nothing else takes b's key.
    expect(matchColumns(['x', 'SEQNO', 'seqno2'], ['seqno', 'X', 'SEQNO'], 1, 0)).toEqual({ a: ['x', 'SEQNO'], b: ['X', 'seqno'], keyIndex: 1, equal: false });
    // Same names but for their case, in the same order: equal, and in the same order.
    const d = await tempDir();
    const [fb, fc] = [join(d, 'b.db'), join(d, 'c.db')];
    exec(fb, 'CREATE TABLE "T" ("K" INTEGER PRIMARY KEY, "value" TEXT); INSERT INTO "T" VALUES (1, \'v1\'), (2, \'v2\')');
    exec(fc, 'CREATE TABLE "T" ("k" INTEGER PRIMARY KEY, "VALUE" TEXT); INSERT INTO "T" VALUES (1, \'v1\'), (2, \'v2\')');
    await using b = new SqliteSource(fb);
    await using c = new SqliteSource(fc);
    const rc = await Partitioner.compare(b, c, 'T', { key: 'K' });
    expect([rc.equal, rc.columnsEqual, rc.columnOrderEqual]).toEqual([true, true, true]);
  });

  it('compares the columns both sides have when one side has more; the report is then not equal', async () => {
    const d = await tempDir();
    const fa = join(d, 'a.db');
    const fb = join(d, 'b.db');
    makePairDb(fa, seq(1, 120), 1);
    // The extra column comes before the key: read without it, the key moves to the first field.
    exec(fb, 'CREATE TABLE "CalibVld" ("EXTRA" TEXT DEFAULT \'x\', "SEQNO" INTEGER PRIMARY KEY, "VERSIONDATE" TEXT, "TIMEEND" TEXT NOT NULL, "TIMESTART" TEXT NOT NULL, "SITEMASK" INTEGER)');
    const cols = '"SEQNO", "TIMESTART", "TIMEEND", "SITEMASK", "VERSIONDATE"';
    exec(fb, `ATTACH '${fa}' AS src; INSERT INTO "CalibVld" (${cols}) SELECT ${cols} FROM src."CalibVld"; DETACH src`);
    await using a = new SqliteSource(fa);
    await using b = new SqliteSource(fb);
    const r = await Partitioner.compare(a, b, 'CalibVld', { rowsPerPartition: 100 });
    expect([r.equal, r.columnsEqual, r.columnOrderEqual, r.differingRanges.length, r.differences.length]).toEqual([false, false, false, 0, 0]);
    exec(fb, 'UPDATE "CalibVld" SET "TIMEEND" = \'2038-01-19 03:14:08\' WHERE "SEQNO" = 7');
    for (const [x, y] of bothWays(a, b)) {
      const c = await Partitioner.compare(x, y, 'CalibVld', { rowsPerPartition: 100 });
      expect(c.ranges.map((g) => [g.lo, g.a.count, g.b.count])).toEqual([
        [1n, 100, 100],
        [101n, 20, 20],
      ]);
      expect(c.differences).toEqual([{ key: 7n, kind: 'different', rowsA: 1, rowsB: 1 }]);
    }
    // Only the extra column differs: the rows of the columns both have are equal.
    exec(fb, 'UPDATE "CalibVld" SET "TIMEEND" = \'2038-01-19 03:14:07\', "EXTRA" = \'y\' WHERE "SEQNO" = 7');
    expect((await Partitioner.compare(a, b, 'CalibVld', { rowsPerPartition: 100 })).differences).toEqual([]);
  });

  it('is not equal when the columns differ, or when a side holds NULL-key rows (which no range compares)', async () => {
    const { fa, fb, a, b } = await twins([1, 2]);
    exec(fa, 'CREATE TABLE "T" ("SEQNO" INTEGER, "V" TEXT)');
    exec(fb, 'CREATE TABLE "T" ("SEQNO" INTEGER, "W" TEXT)');
    const cols = await Partitioner.compare(a, b, 'T');
    expect([cols.columnsEqual, cols.columnOrderEqual, cols.equal]).toEqual([false, false, false]);
    exec(fa, 'CREATE TABLE "U" ("SEQNO" INTEGER, "V" TEXT)');
    exec(fb, 'CREATE TABLE "U" ("SEQNO" INTEGER, "V" TEXT)');
    exec(fa, 'INSERT INTO "U" VALUES (1, \'a\'), (NULL, \'b\')');
    exec(fb, 'INSERT INTO "U" VALUES (1, \'a\')');
    const nulls = await Partitioner.compare(a, b, 'U');
    expect(nulls.differingRanges).toEqual([]);
    expect([nulls.a.nulls, nulls.b.nulls, nulls.equal]).toEqual([1, 0, false]);
    // As many NULL-key rows on each side, with other values: they are in no
    // range and cannot be compared, so the tables are not reported equal.
    exec(fb, 'INSERT INTO "U" VALUES (NULL, \'other\')');
    const same = await Partitioner.compare(a, b, 'U');
    expect([same.a.nulls, same.b.nulls, same.differingRanges.length, same.equal]).toEqual([1, 1, 0, false]);
    // Within key bounds they are outside the comparison, which can be equal.
    expect((await Partitioner.compare(a, b, 'U', { lo: 1, hi: 1 })).equal).toBe(true);
    await a.close();
    await b.close();
  });

  it('rejects bad input and stops when aborted', async () => {
    const { a, b } = await twins([1]);
    await rejectsWith(Partitioner.compare(a, b, 'Nope'), 'ENO_TABLE');
    await rejectsWith(Partitioner.compare(a, b, 'Calib', { key: 'NOPE' }), 'ENO_TABLE');
    await rejectsWith(Partitioner.compare(a, b, 'Calib', { kee: 'x' } as never), 'EBAD_CONFIG');
    await rejectsWith(Partitioner.compare(a, b, 'Calib', { rowsPerPartition: 0 }), 'EBAD_CONFIG');
    await rejectsWith(Partitioner.compare(a, {} as never, 'Calib'), 'EBAD_CONFIG');
    const ac = new AbortController();
    const reason = new Error('enough');
    ac.abort(reason);
    await expect(Partitioner.compare(a, b, 'Calib', { signal: ac.signal })).rejects.toBe(reason);
    await a.close();
    await b.close();
  });

  it('refuses sides of different engines, and a side that is not a whole reader, with EBAD_CONFIG', async () => {
    const { a, b } = await twins([1, 2, 3]);
    const asPostgres = new Proxy(b, { get: (t, p) => (p === 'engine' ? 'postgres' : ((v) => (typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v))(Reflect.get(t, p, t) as unknown)) });
    const err = await rejectsWith(Partitioner.compare(a, asPostgres as TableReader, 'Calib'), 'EBAD_CONFIG');
    expect(err.message).toMatch(/side a is sqlite .* side b is postgres/);
    const partial = { engine: 'sqlite', name: 'x', rows: a.rows.bind(a), digestRange: a.digestRange.bind(a) };
    await rejectsWith(Partitioner.compare(a, partial as unknown as TableReader, 'Calib'), 'EBAD_CONFIG');
    await a.close();
    await b.close();
  });

  it('destroys the stream one side opened when the other side fails to open its own', async () => {
    const { fb, a, b } = await twins(seq(1, 50));
    exec(fb, 'UPDATE "Calib" SET "GAIN" = 0 WHERE "SEQNO" = 7');
    const opened: { destroyed: boolean }[] = [];
    const failing = new Proxy(a, {
      get(t, p) {
        // The first pass (one stream over the whole table) reads; the key-by-key merge of the differing range fails to open.
        if (p === 'rows') return (table: string, o: RowsOptions) => (o.lo === undefined ? t.rows(table, o) : Promise.reject(new Error('table dropped meanwhile')));
        const v = Reflect.get(t, p, t) as unknown;
        return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
      },
    });
    const watched = new Proxy(b, {
      get(t, p) {
        if (p === 'rows') {
          // A stream that ends only when read or destroyed (a MySQL row stream holds a pooled connection so).
          return async (table: string, o: RowsOptions) => {
            if (o.lo === undefined) return t.rows(table, o);
            const st = new PassThrough();
            opened.push(st);
            return st;
          };
        }
        const v = Reflect.get(t, p, t) as unknown;
        return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(t) : v;
      },
    });
    await expect(Partitioner.compare(failing, watched, 'Calib')).rejects.toThrow(/table dropped meanwhile/);
    expect(opened.length).toBeGreaterThan(0);
    expect(opened.every((x) => x.destroyed)).toBe(true);
    await a.close();
    await b.close();
  });
});
