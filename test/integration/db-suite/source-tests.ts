// Tests of a pooled server source whose body is the same for MysqlSource and
// PostgresSource. Each function declares one `it` where it is called, so
// each engine's file keeps its describe blocks and its test order.
import { createServer, type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { expect, it } from 'vitest';
import { encodeBulkRow } from '../../../src/db/index.js';
import { join } from 'node:path';
import type { KeyBound, TableReader } from '../../../src/db/index.js';
import { Partitioner } from '../../../src/partition/index.js';
import { KEY_PROBES as KEY_PROBES_SYMBOL, KEY_PROBES_MAX, keyProbesOf, type KeyProbes } from '../../../src/db/key-probes.js';
import { collect, expectBadLoadColumns, expectDigestProgress, expectNamedColumnReads, rejectsWith, tempDir } from '../../unit/db/helpers.js';
import type { SuiteSource } from './streaming-suite.js';

/**
 * Rows of a range come in key then primary-key order, bounds inclusive,
 * open-ended or beyond int64.
 *
 * @param freshDb - a new empty database
 * @param exec - runs a statement in a database
 * @param source - a source of a database
 * @param createP - the engine's DDL of `p` (SEQNO bigint NOT NULL, RC int NOT NULL, v text, PRIMARY KEY (RC, SEQNO))
 */
export function itSelectsInclusiveRanges(
  freshDb: () => Promise<string>,
  exec: (database: string, sql: string) => Promise<unknown>,
  source: (database: string) => SuiteSource,
  createP: string,
): void {
  it('selects inclusive ranges in key then primary-key order, open-ended or beyond int64', async () => {
    const a = await freshDb();
    await exec(a, createP);
    await exec(a, "INSERT INTO p VALUES (2, 2, 'b'), (1, 9, 'x'), (2, 1, 'a'), (3, 1, 'c'), (9223372036854775807, 1, 'max'), (-9223372036854775808, 1, 'min')");
    await using src = source(a);
    const text = async (lo?: bigint | number, hi?: bigint | number): Promise<string> => {
      const o: { key: string; lo?: bigint | number; hi?: bigint | number } = { key: 'SEQNO' };
      if (lo !== undefined) o.lo = lo;
      if (hi !== undefined) o.hi = hi;
      return (await collect(await src.rows('p', o))).toString();
    };
    expect(await text()).toBe('-9223372036854775808\t1\tmin\n1\t9\tx\n2\t1\ta\n2\t2\tb\n3\t1\tc\n9223372036854775807\t1\tmax\n');
    expect(await text(2, 2)).toBe('2\t1\ta\n2\t2\tb\n');
    expect(await text(3n)).toBe('3\t1\tc\n9223372036854775807\t1\tmax\n');
    expect(await text(undefined, 1)).toBe('-9223372036854775808\t1\tmin\n1\t9\tx\n');
    expect(await text(9223372036854775807n, 18446744073709551615n)).toBe('9223372036854775807\t1\tmax\n');
    expect(await text(9223372036854775808n)).toBe('');
    expect(await text(-(2n ** 63n), -(2n ** 63n))).toBe('-9223372036854775808\t1\tmin\n');
    expect(await text(4, 5)).toBe('');
  });
}

/** A reader that finds the next key of a table with one query (see `KeySeeker`). */
type Seeker = { nextKey(table: string, key: string, from: KeyBound): Promise<bigint | null> };

/**
 * `nextKey` finds the smallest key at or above a bound across any gap, at
 * the int64 bounds, in a snapshot too; and the Partitioner's plan of a
 * sparse key uses it instead of opening row streams.
 *
 * @param freshDb - a new empty database
 * @param exec - runs a statement in a database
 * @param source - a source of a database
 * @param createP - the engine's DDL of `p` (SEQNO bigint NOT NULL, RC int NOT NULL, v text, PRIMARY KEY (RC, SEQNO))
 */
export function itFindsNextKey(
  freshDb: () => Promise<string>,
  exec: (database: string, sql: string) => Promise<unknown>,
  source: (database: string) => SuiteSource,
  createP: string,
): void {
  it('nextKey() finds the smallest key at or above a bound, across any gap and at the int64 bounds; a plan over a sparse key asks it instead of reading rows', async () => {
    const a = await freshDb();
    await exec(a, createP);
    await exec(a, "INSERT INTO p VALUES (-9223372036854775808, 1, 'min'), (1, 1, 'a'), (2, 1, 'b'), (1000000000000000, 1, 'far'), (1000000000000000, 2, 'far2'), (9223372036854775807, 1, 'max')");
    await using src = source(a);
    const seek = src as unknown as Seeker;
    expect(await seek.nextKey('p', 'SEQNO', -(2n ** 63n))).toBe(-(2n ** 63n));
    expect(await seek.nextKey('p', 'SEQNO', -5)).toBe(1n);
    expect(await seek.nextKey('p', 'SEQNO', 3)).toBe(1000000000000000n);
    expect(await seek.nextKey('p', 'SEQNO', 1000000000000001n)).toBe(2n ** 63n - 1n);
    expect(await seek.nextKey('p', 'SEQNO', 2n ** 63n)).toBeNull();
    expect(await seek.nextKey('p', 'SEQNO', 2n ** 64n - 1n)).toBeNull();
    await rejectsWith(seek.nextKey('nope', 'SEQNO', 0), 'ENO_TABLE');
    await rejectsWith(seek.nextKey('p', 'nope', 0), 'ENO_TABLE');
    await rejectsWith(seek.nextKey('p', 'v', 0), 'EBAD_CONFIG');
    await rejectsWith(seek.nextKey('p', 'SEQNO', 1.5), 'EBAD_CONFIG');
    expect(await src.snapshot(async (r: TableReader) => (r as unknown as Seeker).nextKey('p', 'SEQNO', 3))).toBe(1000000000000000n);
    // The plan: one question per occupied range, no row stream opened (each took a connection, closed early, per probe).
    let rowStreams = 0;
    const counted = new Proxy(src, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target) as unknown;
        if (typeof v !== 'function') return v;
        const f = (v as (...args: unknown[]) => unknown).bind(target);
        return prop === 'rows' ? (...args: unknown[]) => (rowStreams++, f(...args)) : f;
      },
    });
    const plan = await new Partitioner(counted, { table: 'p', key: 'SEQNO', rowsPerPartition: 10, outDir: join(await tempDir('seek'), 'out') }).plan();
    expect(plan.partitions.filter((x) => x.state !== 'empty').map((x) => x.lo)).toEqual([-(2n ** 63n), 1n, 1000000000000000n - 9n, 2n ** 63n - 7n]);
    expect(rowStreams).toBe(0);
  });
}

/**
 * The Partitioner's key probes (see `key-probes.ts`): the bounds without a
 * count, and `nextKeys` giving exactly what `nextKey` gives, many bounds per
 * query; a plan over a dense key then asks once per 64 ranges, and equals
 * the plan made from `keyRange()`.
 *
 * @param freshDb - a new empty database
 * @param exec - runs a statement in a database
 * @param source - a source of a database
 * @param ddl - the engine's DDL of `p` (as itFindsNextKey), and the statements that make `q` (k bigint, nullable, indexed; v text; keys 10, 20, 30 and NULL) and `d` (SEQNO bigint primary key 1..1000, v text)
 */
export function itProbesKeys(
  freshDb: () => Promise<string>,
  exec: (database: string, sql: string) => Promise<unknown>,
  source: (database: string) => SuiteSource,
  ddl: { p: string; more: string[] },
): void {
  it('key probes: bounds without a count, nextKeys() as nextKey() many at a time, and a plan over a dense key that asks once per 64 ranges', async () => {
    const a = await freshDb();
    await exec(a, ddl.p);
    await exec(a, "INSERT INTO p VALUES (-9223372036854775808, 1, 'min'), (1, 1, 'a'), (2, 1, 'b'), (1000000000000000, 1, 'far'), (1000000000000000, 2, 'far2'), (9223372036854775807, 1, 'max')");
    for (const d of ddl.more) await exec(a, d);
    await using src = source(a);
    const probes = keyProbesOf(src)!;
    expect(probes).toBeDefined();
    const seek = src as unknown as Seeker;
    expect(await probes.bounds('p', 'SEQNO')).toEqual({ lo: -(2n ** 63n), hi: 2n ** 63n - 1n, nulls: false });
    const froms = [-(2n ** 63n), -5n, 0n, 1n, 2n, 3n, 3n, 999999999999999n, 1000000000000000n, 1000000000000001n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n];
    const one: (bigint | null)[] = [];
    for (const f of froms) one.push(await seek.nextKey('p', 'SEQNO', f));
    expect(await probes.nextKeys('p', 'SEQNO', froms)).toEqual(one);
    expect(one).toEqual([-(2n ** 63n), 1n, 1n, 1n, 2n, 1000000000000000n, 1000000000000000n, 1000000000000000n, 1000000000000000n, 2n ** 63n - 1n, 2n ** 63n - 1n, null, null]);
    expect(await probes.nextKeys('p', 'SEQNO', [])).toEqual([]);
    // A nullable key: its NULLs are seen (the plan refuses them), and skipped by nextKeys.
    expect(await probes.bounds('q', 'k')).toEqual({ lo: 10n, hi: 30n, nulls: true });
    expect(await probes.nextKeys('q', 'k', [11n, 31n])).toEqual([20n, null]);
    expect(await probes.bounds('d', 'SEQNO')).toEqual({ lo: 1n, hi: 1000n, nulls: false });
    await exec(a, ddl.p.replace(/\bp\b/, 'e'));
    expect(await probes.bounds('e', 'SEQNO')).toEqual({ lo: null, hi: null, nulls: false });
    await rejectsWith(probes.nextKeys('p', 'SEQNO', Array.from({ length: KEY_PROBES_MAX + 1 }, (_, i) => BigInt(i))), 'EBAD_CONFIG');
    await rejectsWith(probes.nextKeys('p', 'SEQNO', [1.5 as unknown as bigint]), 'EBAD_CONFIG');
    await rejectsWith(probes.nextKeys('nope', 'SEQNO', [0n]), 'ENO_TABLE');
    await rejectsWith(probes.bounds('nope', 'SEQNO'), 'ENO_TABLE');
    await rejectsWith(probes.bounds('p', 'nope'), 'ENO_TABLE');
    await rejectsWith(probes.bounds('p', 'v'), 'EBAD_CONFIG');
    await rejectsWith(new Partitioner(src, { table: 'q', key: 'k', rowsPerPartition: 10, outDir: join(await tempDir('probe'), 'out') }).plan(), 'EBAD_CONFIG');

    // The plan over a dense key of 100 ranges of 10: two nextKeys queries (ranges 2-65, 66-100), no nextKey; the same plan as from keyRange() alone.
    const calls = { nextKeys: 0, nextKey: 0, keyRange: 0 };
    const spied = new Proxy(src, {
      get(target, prop) {
        if (prop === KEY_PROBES_SYMBOL) {
          const inner = Reflect.get(target, prop, target) as KeyProbes;
          return { bounds: inner.bounds, nextKeys: (...args: Parameters<KeyProbes['nextKeys']>) => (calls.nextKeys++, inner.nextKeys(...args)) };
        }
        const v = Reflect.get(target, prop, target) as unknown;
        if (typeof v !== 'function') return v;
        const f = (v as (...args: unknown[]) => unknown).bind(target);
        return prop === 'nextKey' || prop === 'keyRange' ? (...args: unknown[]) => (calls[prop]++, f(...args)) : f;
      },
    });
    const hidden = new Proxy(src, { get: (target, prop) => (prop === KEY_PROBES_SYMBOL ? undefined : ((v) => (typeof v === 'function' ? v.bind(target) : v))(Reflect.get(target, prop, target))) });
    const dir = join(await tempDir('probe'), 'out');
    const planned = await new Partitioner(spied, { table: 'd', key: 'SEQNO', rowsPerPartition: 10, outDir: dir }).plan();
    expect(calls).toEqual({ nextKeys: 2, nextKey: 0, keyRange: 1 });
    expect(planned.partitions).toHaveLength(100);
    expect(planned.keyRange).toEqual({ lo: 1n, hi: 1000n, rows: 1000 });
    expect(planned).toEqual(await new Partitioner(hidden, { table: 'd', key: 'SEQNO', rowsPerPartition: 10, outDir: dir }).plan());
    const sparse = await new Partitioner(spied, { table: 'p', key: 'SEQNO', rowsPerPartition: 10, outDir: dir }).plan();
    expect(sparse).toEqual(await new Partitioner(hidden, { table: 'p', key: 'SEQNO', rowsPerPartition: 10, outDir: dir }).plan());
  });
}

/**
 * ETIMEOUT (retryable, within the connect timeout) from a server that
 * accepts the connection and never answers.
 *
 * @param sourceAt - a source of 127.0.0.1:port (user x, password y, database z) with connectTimeoutMs 300
 */
export function itTimesOutOnSilentServer(sourceAt: (port: number) => SuiteSource): void {
  it('ETIMEOUT when the server accepts the connection but never answers', async () => {
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const { port } = silent.address() as AddressInfo;
      await using src = sourceAt(port);
      const t0 = Date.now();
      const err = await rejectsWith(src.tables(), 'ETIMEOUT');
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(err.retryable).toBe(true);
    } finally {
      silent.close();
    }
  });
}

/**
 * load() with replaceRange deletes and loads in one transaction.
 *
 * @param table - a source whose table `t` (k int PK, v varchar(8), n small int) holds the row (1, 'one', 1)
 * @param rowsOf - the bulk text of `t`
 */
export function itReplacesRange(table: () => Promise<SuiteSource>, rowsOf: (src: SuiteSource) => Promise<string>): void {
  it('replaceRange replaces a partition in the same transaction', async () => {
    await using src = await table();
    await src.load('t', Readable.from([Buffer.from('2\told\t2\n3\told\t3\n4\td\t4\n')]));
    const tail = Buffer.concat([encodeBulkRow(['2', 'new', '2']), encodeBulkRow(['3', 'new', '3'])]);
    await rejectsWith(src.load('t', Readable.from([tail])), 'EDB');
    const r = await src.load('t', Readable.from([tail]), { replaceRange: { key: 'k', lo: 2, hi: 3n } });
    expect(r).toEqual({ rows: 2, bytes: tail.length, deleted: 2 });
    expect(await rowsOf(src)).toBe('1\tone\t1\n2\tnew\t2\n3\tnew\t3\n4\td\t4\n');
    // A failing replacement deletes nothing.
    await rejectsWith(src.load('t', Readable.from([Buffer.from('2\tx\t2\n3')]), { replaceRange: { key: 'k', lo: 2, hi: 3 } }), 'EDB');
    expect(await rowsOf(src)).toBe('1\tone\t1\n2\tnew\t2\n3\tnew\t3\n4\td\t4\n');
  });
}

/**
 * `columns` puts the fields into the columns named, in that order; the
 * others take their defaults. A name the table lacks is ENO_TABLE, a bad
 * list EBAD_CONFIG, and rows must have as many fields as columns named.
 *
 * @param table - a fresh database holding `t (k int PRIMARY KEY, v varchar(8), n small int NULL)` with the row (1, 'one', 1)
 * @param rowsOf - the bulk text of `t`
 */
export function itLoadsNamedColumns(table: () => Promise<SuiteSource>, rowsOf: (src: SuiteSource) => Promise<string>): void {
  it('load({ columns }) fills the columns named, in that order; the others take their defaults', async () => {
    await using src = await table();
    expect((await src.load('t', Readable.from([Buffer.from('2\t2\ttwo\n')]), { columns: ['k', 'n', 'v'] })).rows).toBe(1);
    expect((await src.load('t', Readable.from([Buffer.from('3\tthree\n')]), { columns: ['k', 'v'] })).rows).toBe(1);
    const expected = '1\tone\t1\n2\ttwo\t2\n3\tthree\t\\N\n';
    expect(await rowsOf(src)).toBe(expected);
    await expectBadLoadColumns(src, 't');
    // Rows of the table's width are too wide for two columns: nothing is kept.
    await rejectsWith(src.load('t', Readable.from([Buffer.from('5\tfive\t5\n')]), { columns: ['k', 'v'] }), 'EDB');
    expect(await rowsOf(src)).toBe(expected);
  });
}

/**
 * `columns` of rows() and digestRange() reads the columns named, in that
 * order, by name (see `expectNamedColumnReads`).
 *
 * @param table - a fresh database holding `t (k int PRIMARY KEY, v varchar(8), n small int NULL)` with the row (1, 'one', 1)
 */
export function itReadsNamedColumns(table: () => Promise<SuiteSource>): void {
  it('rows({ columns }) and digestRange({ columns }) read the columns named, in that order, by name', async () => {
    await using src = await table();
    await src.load('t', Readable.from([Buffer.from('2\tsame\t9\n3\tsame\t1\n4\tx\\ty\t\\N\n')]));
    await expectNamedColumnReads(src);
  });
}

/**
 * digestRange reports its progress (see `expectDigestProgress`).
 *
 * @param table - a fresh database holding `t (k int PRIMARY KEY, v varchar(8), n small int NULL)` with the row (1, 'one', 1)
 */
export function itReportsDigestProgress(table: () => Promise<SuiteSource>): void {
  it('digestRange({ onProgress }) reports rows and bytes up to the digest\'s count and bytes', async () => {
    await using src = await table();
    await src.load('t', Readable.from([Buffer.from('2\ttwo\t2\n3\tthree\t\\N\n4\tfour\t4\n')]));
    await expectDigestProgress(src);
  });
}
