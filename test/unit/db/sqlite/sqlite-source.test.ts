import { readdirSync, readlinkSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { digestBulkText, encodeBulkRow, type TableReader } from '../../../../src/db/index.js';
import { SqliteSource, quoteSqliteIdent } from '../../../../src/db/sqlite/index.js';
import type { Progress } from '../../../../src/progress.js';
import { ALL_TYPES_KEY, ALL_TYPES_TABLE, columnsFor, createAllTypesTable, expectedFor, rowsFor, type FixtureValue } from '../../../fixtures/db/all-types.js';
import { collect, expectBadLoadColumns, expectDigestProgress, expectNamedColumnReads, rejectsWith, tempDir, throwsWith } from '../helpers.js';

type Cell = null | bigint | number | string | Buffer;

/** Creates a WAL database file with the all-types fixture in `table`. */
function makeFixtureDb(file: string, table = ALL_TYPES_TABLE): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(createAllTypesTable('sqlite', table, quoteSqliteIdent));
  const rows = rowsFor('sqlite');
  const ins = db.prepare(`INSERT INTO ${quoteSqliteIdent(table)} VALUES (${rows[0]!.map(() => '?').join(', ')})`);
  db.transaction(() => {
    for (const r of rows) ins.run(...r.map((v) => (v instanceof Uint8Array ? Buffer.from(v) : v)));
  })();
  db.close();
}

/** Every cell of a table, in key order, as better-sqlite3 returns it with safe integers. */
function readAll(file: string, table: string, orderBy = '"SEQNO", "ROW_COUNTER"'): Cell[][] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare(`SELECT * FROM ${quoteSqliteIdent(table)} ORDER BY ${orderBy}`).raw(true).safeIntegers(true).all() as Cell[][];
  } finally {
    db.close();
  }
}

/** A cell with its storage class, -0 and bytes made visible, for exact comparisons. */
function typed(v: Cell | FixtureValue): string {
  if (v === null) return 'null';
  if (typeof v === 'bigint') return `integer:${v}`;
  if (typeof v === 'number') return `real:${Object.is(v, -0) ? '-0' : String(v)}`;
  if (typeof v === 'string') return `text:${JSON.stringify(v)}`;
  return `blob:${Buffer.from(v).toString('hex')}`;
}

const typedRows = (rows: (Cell | FixtureValue)[][]): string[][] => rows.map((r) => r.map(typed));

async function dump(src: TableReader, table: string, key = ALL_TYPES_KEY): Promise<Buffer> {
  return collect(await src.rows(table, { key }));
}

/** Open file descriptors of this process on `file` (and its -wal/-shm). */
function fdsTo(file: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`).startsWith(file)) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

const hexAll = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('hex');

describe('SqliteSource: the all-types fixture', () => {
  it('dumps every value to the documented bulk text', async () => {
    const dir = await tempDir('sqlite');
    const file = join(dir, 'src.db');
    makeFixtureDb(file);
    await using src = new SqliteSource(file);
    const lines = (await dump(src, ALL_TYPES_TABLE)).toString('utf8').split('\n');
    expect(lines.pop()).toBe('');
    // Columns: SEQNO ROW_COUNTER i32 i64 dbl dec vc txt bin dt ts d num anything
    const N = '\\N';
    expect(lines).toEqual([
      ['1', '1', N, N, N, N, N, N, N, N, N, N, N, N],
      ['1', '2', '0', '0', '0.0', '0.0000000000', '', '', '\\\\x', N, N, N, '0', ''],
      ['1', '3', N, N, N, N, 'tab\\there', 'line1\\nline2\\r\\nCR\\ronly, backslash \\\\ and \\\\\\\\, literal \\\\N, \\\\t, \\\\n, trailing \\\\', '\\\\x090a0d5c004e5c4e7fff', N, N, N, 'abc', '\\\\s\\\\N'],
      ['1', '4', N, N, N, N, '\\\\s\\\\N', 'a\\0b', N, N, N, N, N, '\\\\s\\\\x41'],
      ['2', '1', N, N, N, N, 'Grüße, 日本語, e\u0301', '🚀 Daya Bay 大亚湾 \u202Eright-to-left\u202C \uFEFF zero-width\u200B', `\\\\x${hexAll}`, N, N, N, N, '\\\\s123'],
      ['3', '1', '2147483647', '9223372036854775807', '1.7976931348623157e+308', '9999999999999999999999999999.9999999999', N, N, N, N, N, N, '42', '123'],
      ['4', '1', '-2147483648', '-9223372036854775808', '-5e-324', '-0.0000000001', N, N, N, N, N, N, '3.5', '1.0'],
      ['5', '1', N, '9007199254740993', '0.30000000000000004', '12345678901234567890.0123456789', N, N, N, N, N, N, '12345678901234567000.0', '0.30000000000000004'],
      ['5', '2', N, N, '0.3333333333333333', N, N, N, N, '2024-02-29 23:59:59.123456', '2024-03-31 01:30:00.500000', '2024-02-29', N, `\\\\x${hexAll}`],
      ['6', '1', N, N, '2.2250738585072014e-308', N, N, N, N, '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', '1000-01-01', N, '\\\\sInfinity'],
      ['7', '1', N, N, '4503599627370495.5', N, N, N, N, '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', '9999-12-31', N, '1.50'],
      ['8', '1', N, N, '0.0', N, N, N, N, N, N, N, N, '-0.0'],
      ['8', '2', N, N, 'Infinity', N, N, N, N, N, N, N, '\\\\sInfinity', '-Infinity'],
      ['9007199254740993', '1', N, '9007199254740993', '9007199254740992.0', N, 'key 2^53+1', N, N, N, N, N, N, '-0'],
    ].map((fields) => fields.join('\t')));
  });

  it('round-trips: dump, load into a fresh file, same digest, same bytes, every cell equal with its storage class', async () => {
    const dir = await tempDir('sqlite');
    const srcFile = join(dir, 'src.db');
    const dstFile = join(dir, 'dst.db');
    makeFixtureDb(srcFile);
    await using src = new SqliteSource(srcFile);
    await using dst = new SqliteSource(dstFile, { create: true });
    await dst.createTable(ALL_TYPES_TABLE, await src.schema(ALL_TYPES_TABLE));
    const progress: Progress[] = [];
    const result = await dst.load(ALL_TYPES_TABLE, await src.rows(ALL_TYPES_TABLE, { key: ALL_TYPES_KEY }), { onProgress: (p) => progress.push(p) });
    const n = rowsFor('sqlite').length;
    expect(result.rows).toBe(n);
    expect(result.deleted).toBe(0);
    expect(progress.at(-1)).toMatchObject({ phase: 'load', itemsDone: n, bytesDone: result.bytes });

    const a = await src.digestRange(ALL_TYPES_TABLE, ALL_TYPES_KEY, undefined, undefined);
    const b = await dst.digestRange(ALL_TYPES_TABLE, ALL_TYPES_KEY, undefined, undefined);
    expect(a.count).toBe(n);
    expect(b).toEqual(a);
    expect((await dump(dst, ALL_TYPES_TABLE)).equals(await dump(src, ALL_TYPES_TABLE))).toBe(true);

    const before = readAll(srcFile, ALL_TYPES_TABLE);
    const after = readAll(dstFile, ALL_TYPES_TABLE);
    expect(typedRows(after)).toEqual(typedRows(before));
    expect(typedRows(after)).toEqual(typedRows(expectedFor('sqlite')));
    // The columns of the copy are those of the original, in order.
    expect(await dst.columns(ALL_TYPES_TABLE)).toEqual(await src.columns(ALL_TYPES_TABLE));
    expect((await dst.columns(ALL_TYPES_TABLE)).map((c) => c.name)).toEqual(columnsFor('sqlite').map((c) => c.name));
  });

  it('digests sub-ranges equal on both sides and different where a single cell differs', async () => {
    const dir = await tempDir('sqlite');
    const srcFile = join(dir, 'src.db');
    const dstFile = join(dir, 'dst.db');
    makeFixtureDb(srcFile);
    makeFixtureDb(dstFile);
    await using src = new SqliteSource(srcFile);
    await using dst = new SqliteSource(dstFile);
    const db = new Database(dstFile);
    // One ulp off, in one row of key 5.
    const bits = new BigInt64Array(new Float64Array([0.1 + 0.2]).buffer);
    bits[0]! += 1n;
    const nextUp = new Float64Array(bits.buffer)[0]!;
    expect(nextUp).not.toBe(0.1 + 0.2);
    expect(db.prepare('UPDATE all_types SET dbl = ? WHERE SEQNO = 5 AND ROW_COUNTER = 1').run(nextUp).changes).toBe(1);
    db.close();
    for (const [lo, hi] of [[1n, 4n], [6n, 9007199254740993n]] as const) {
      expect(await dst.digestRange(ALL_TYPES_TABLE, 'SEQNO', lo, hi)).toEqual(await src.digestRange(ALL_TYPES_TABLE, 'SEQNO', lo, hi));
    }
    const s5 = await src.digestRange(ALL_TYPES_TABLE, 'SEQNO', 5, 5);
    const d5 = await dst.digestRange(ALL_TYPES_TABLE, 'SEQNO', 5, 5);
    expect(d5.count).toBe(2);
    expect(d5.count).toBe(s5.count);
    expect(d5.digest).not.toBe(s5.digest);
  });
});

describe('SqliteSource: identifiers', () => {
  it('handles a table and columns named with quotes, backticks, spaces, brackets and unicode', async () => {
    const dir = await tempDir('sqlite');
    const srcFile = join(dir, 'src.db');
    const table = 'we"ird tab`le';
    const key = 'SE"Q NO';
    const cols = [key, "it's [x]", 'naïve ; DROP TABLE x; --', '"'];
    const db = new Database(srcFile);
    db.exec(`CREATE TABLE ${quoteSqliteIdent(table)} (${cols.map((c, i) => `${quoteSqliteIdent(c)} ${i === 0 ? 'INTEGER PRIMARY KEY' : 'TEXT'}`).join(', ')})`);
    db.exec(`CREATE INDEX ${quoteSqliteIdent('idx "q"')} ON ${quoteSqliteIdent(table)} (${quoteSqliteIdent(cols[1]!)})`);
    const ins = db.prepare(`INSERT INTO ${quoteSqliteIdent(table)} VALUES (?, ?, ?, ?)`);
    for (let i = 1n; i <= 5n; i++) ins.run(i, `v${i}`, 'x', null);
    db.close();

    await using src = new SqliteSource(srcFile);
    expect(await src.tables()).toEqual([table]);
    expect((await src.columns(table)).map((c) => c.name)).toEqual(cols);
    expect(await src.keyRange(table, key)).toEqual({ lo: 1n, hi: 5n, count: 5, nulls: 0 });
    const schema = await src.schema(table);
    expect(schema).toContain('CREATE INDEX "idx ""q"""');
    await using dst = new SqliteSource(join(dir, 'dst.db'), { create: true });
    await dst.createTable(table, schema);
    await dst.load(table, await src.rows(table, { key, lo: 2, hi: 4 }));
    expect(await dst.keyRange(table, key)).toEqual({ lo: 2n, hi: 4n, count: 3, nulls: 0 });
    expect(await dst.digestRange(table, key, 2, 4)).toEqual(await src.digestRange(table, key, 2, 4));
    expect(await dst.tables()).toEqual([table]);
  });

  it('quotes by SQLite rules and refuses names it cannot carry', () => {
    expect(quoteSqliteIdent('we"ird tab`le')).toBe('"we""ird tab`le"');
    expect(quoteSqliteIdent('""')).toBe('""""""');
    throwsWith(() => quoteSqliteIdent(''), 'EBAD_CONFIG');
    throwsWith(() => quoteSqliteIdent('a\0b'), 'EBAD_CONFIG');
  });

  it('finds tables and key columns case-insensitively, as SQL does', async () => {
    await using src = memorySource('CREATE TABLE Vld (SeqNo INTEGER PRIMARY KEY, x TEXT); INSERT INTO Vld VALUES (1, \'a\'), (2, \'b\');');
    expect(await src.keyRange('vld', 'SEQNO')).toEqual({ lo: 1n, hi: 2n, count: 2, nulls: 0 });
    expect((await collect(await src.rows('VLD', { key: 'seqno' }))).toString()).toBe('1\ta\n2\tb\n');
  });
});

/** A source over a fresh in-memory database set up by `sql` (borrowed: the test's GC closes it). */
function memorySource(sql: string): SqliteSource {
  const db = new Database(':memory:');
  db.exec(sql);
  return new SqliteSource(db);
}

describe('SqliteSource: tables, keys and ranges', () => {
  it('lists base tables only: no views, no sqlite_ internals', async () => {
    await using src = memorySource(`
      CREATE TABLE b (id INTEGER PRIMARY KEY AUTOINCREMENT);
      CREATE TABLE a (id INTEGER);
      CREATE VIEW v AS SELECT * FROM a;
      INSERT INTO b DEFAULT VALUES;`);
    expect(await src.tables()).toEqual(['a', 'b']);
    expect((await rejectsWith(src.columns('v'), 'ENO_TABLE')).message).toMatch(/"v" in .* is a view, not a table this source reads or loads/);
    expect((await rejectsWith(src.columns('sqlite_sequence'), 'ENO_TABLE')).message).toMatch(/does not exist/);
  });

  it('reports an empty table, NULL keys, and refuses non-integer keys', async () => {
    await using src = memorySource(`
      CREATE TABLE e (k INTEGER);
      CREATE TABLE n (k INTEGER, v TEXT);
      INSERT INTO n VALUES (NULL, 'a'), (3, 'b'), (NULL, 'c'), (-7, 'd');
      CREATE TABLE r (k);
      INSERT INTO r VALUES (1), (2.5), ('x');`);
    expect(await src.keyRange('e', 'k')).toEqual({ lo: null, hi: null, count: 0, nulls: 0 });
    expect(await src.keyRange('n', 'k')).toEqual({ lo: -7n, hi: 3n, count: 2, nulls: 2 });
    // NULL-key rows belong to no range, even an unbounded one.
    expect((await collect(await src.rows('n', { key: 'k' }))).toString()).toBe('-7\td\n3\tb\n');
    const err = await rejectsWith(src.keyRange('r', 'k'), 'EBAD_CONFIG');
    expect(err.message).toMatch(/2 value\(s\) that are not integers/);
  });

  it("keyRange of the rowid's alias counts the table's cells without reading a value; any other key has its values read and checked", async () => {
    const statements: string[] = [];
    const db = new Database(':memory:', { verbose: (sql) => statements.push(String(sql)) });
    db.exec(`
      CREATE TABLE alias (id INTEGER PRIMARY KEY, v TEXT);
      CREATE TABLE auto (id integer primary key autoincrement, v TEXT);
      CREATE TABLE tabledesc (id INTEGER, v TEXT, PRIMARY KEY (id DESC));
      CREATE TABLE coldesc (id INTEGER PRIMARY KEY DESC, v TEXT);
      CREATE TABLE norowid (id INTEGER PRIMARY KEY, v TEXT) WITHOUT ROWID;
      CREATE TABLE int (id INT PRIMARY KEY, v TEXT);
      CREATE TABLE pair (id INTEGER, v INTEGER, PRIMARY KEY (id, v));
      CREATE TABLE empty (id INTEGER PRIMARY KEY);
      INSERT INTO coldesc VALUES (5, 'x'), (-3, 'y'), ('z', 'text key');
      INSERT INTO int VALUES (2.5, 'x'), (7, 'y');`);
    for (const t of ['alias', 'auto', 'tabledesc', 'norowid', 'pair']) db.exec(`INSERT INTO ${t} VALUES (-9, 1), (4, 2), (9007199254740993, 3)`);
    await using src = new SqliteSource(db);
    const sqlOf = async (table: string): Promise<{ range: unknown; sql: string }> => {
      statements.length = 0;
      const range = await src.keyRange(table, 'id');
      return { range, sql: statements.find((s) => /\bmin\(/.test(s)) ?? '' };
    };
    const want = { lo: -9n, hi: 9007199254740993n, count: 3, nulls: 0 };
    // Aliases (SQLite reads them with OP_Rowid): bounds by seek, rows by count(*).
    for (const t of ['alias', 'auto', 'tabledesc']) {
      const { range, sql } = await sqlOf(t);
      expect(range, t).toEqual(want);
      expect(sql, t).toMatch(/\(SELECT count\(\*\) FROM "\w+"\)/);
      expect(sql, t).not.toMatch(/typeof/);
    }
    expect(await sqlOf('empty')).toMatchObject({ range: { lo: null, hi: null, count: 0, nulls: 0 } });
    // Not aliases: every value read, so a text or real key is still refused.
    for (const t of ['norowid', 'pair']) {
      const { range, sql } = await sqlOf(t);
      expect(range, t).toEqual(want);
      expect(sql, t).toMatch(/typeof/);
    }
    expect((await rejectsWith(src.keyRange('coldesc', 'id'), 'EBAD_CONFIG')).message).toMatch(/1 value\(s\) that are not integers/);
    expect((await rejectsWith(src.keyRange('int', 'id'), 'EBAD_CONFIG')).message).toMatch(/1 value\(s\) that are not integers/);
  });

  it('selects inclusive ranges in key then primary-key order, open-ended or beyond int64', async () => {
    await using src = memorySource(`
      CREATE TABLE p (SEQNO INTEGER NOT NULL, RC INTEGER NOT NULL, v TEXT, PRIMARY KEY (SEQNO, RC));
      INSERT INTO p VALUES (2, 2, 'b'), (1, 9, 'x'), (2, 1, 'a'), (3, 1, 'c'), (9223372036854775807, 1, 'max');`);
    const text = async (lo?: bigint | number, hi?: bigint | number): Promise<string> => {
      const o: { key: string; lo?: bigint | number; hi?: bigint | number } = { key: 'SEQNO' };
      if (lo !== undefined) o.lo = lo;
      if (hi !== undefined) o.hi = hi;
      return (await collect(await src.rows('p', o))).toString();
    };
    expect(await text()).toBe('1\t9\tx\n2\t1\ta\n2\t2\tb\n3\t1\tc\n9223372036854775807\t1\tmax\n');
    expect(await text(2, 2)).toBe('2\t1\ta\n2\t2\tb\n');
    expect(await text(3n)).toBe('3\t1\tc\n9223372036854775807\t1\tmax\n');
    expect(await text(undefined, 1)).toBe('1\t9\tx\n');
    expect(await text(9223372036854775807n, 18446744073709551615n)).toBe('9223372036854775807\t1\tmax\n');
    expect(await text(9223372036854775808n)).toBe('');
    expect(await text(4, 5)).toBe('');
  });

  it('nextKey() finds the smallest key at or above a bound, across any gap, also in a snapshot', async () => {
    await using src = memorySource(`
      CREATE TABLE s (k INTEGER PRIMARY KEY, v TEXT);
      INSERT INTO s VALUES (-5, 'a'), (1, 'b'), (1000000000000000, 'c'), (9223372036854775807, 'd');
      CREATE TABLE odd (k);
      INSERT INTO odd VALUES (1), (2.5), ('text');`);
    expect(await src.nextKey('s', 'k', -9223372036854775808n)).toBe(-5n);
    expect(await src.nextKey('s', 'k', 2)).toBe(1000000000000000n);
    expect(await src.nextKey('s', 'k', 1000000000000001n)).toBe(9223372036854775807n);
    expect(await src.nextKey('s', 'k', 9223372036854775808n)).toBeNull();
    await rejectsWith(src.nextKey('odd', 'k', 2), 'EBAD_CONFIG');
    expect(await src.nextKey('odd', 'k', 0)).toBe(1n);
    await rejectsWith(src.nextKey('nope', 'k', 0), 'ENO_TABLE');
    await rejectsWith(src.nextKey('s', 'nope', 0), 'ENO_TABLE');
    await rejectsWith(src.nextKey('s', 'k', 1.5), 'EBAD_CONFIG');
    expect(await src.snapshot(async (r) => (r as TableReader & Pick<SqliteSource, 'nextKey'>).nextKey('s', 'k', 2))).toBe(1000000000000000n);
  });

  it('leaves generated columns out of columns(), rows() and load()', async () => {
    await using src = memorySource(`
      CREATE TABLE g (k INTEGER PRIMARY KEY, a INTEGER, twice INTEGER GENERATED ALWAYS AS (a * 2) VIRTUAL, b TEXT);
      INSERT INTO g (k, a, b) VALUES (1, 21, 'x');`);
    expect((await src.columns('g')).map((c) => c.name)).toEqual(['k', 'a', 'b']);
    const text = await collect(await src.rows('g', { key: 'k' }));
    expect(text.toString()).toBe('1\t21\tx\n');
    await using dst = memorySource('');
    await dst.createTable('g', await src.schema('g'));
    await dst.load('g', Readable.from([text]));
    expect(await dst.digestRange('g', 'k', undefined, undefined)).toEqual(await src.digestRange('g', 'k', undefined, undefined));
  });

  it('reports column metadata', async () => {
    await using src = memorySource('CREATE TABLE c (a INTEGER NOT NULL, b TEXT, c BLOB NOT NULL, PRIMARY KEY (c, a));');
    expect(await src.columns('c')).toEqual([
      { name: 'a', type: 'INTEGER', nullable: false, primaryKey: 2 },
      { name: 'b', type: 'TEXT', nullable: true, primaryKey: 0 },
      { name: 'c', type: 'BLOB', nullable: false, primaryKey: 1 },
    ]);
  });
});

describe('SqliteSource: TEXT that is not UTF-8', () => {
  it('is EDB naming the bytes, in this thread and on a reader worker, instead of a dump with U+FFFD in their place', async () => {
    const dir = await tempDir();
    const file = join(dir, 'latin1.db');
    const db = new Database(file);
    // Old Python 2 tools stored Latin-1 bytes as TEXT; untyped and TEXT columns alike.
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, u); INSERT INTO t VALUES (1, 'fine', 'ok'), (2, CAST(x'caf9e9' AS TEXT), 'ok'), (3, 'x', CAST(x'41ff00' AS TEXT))");
    db.close();
    for (const workers of [0, 1]) {
      await using src = new SqliteSource(file, { workers });
      const err = await rejectsWith(collect(await src.rows('t', { key: 'id' })), 'EDB');
      expect(err.message).toMatch(/not valid UTF-8 \(it reads as "\uFFFD\uFFFD\uFFFD"\)/);
      await rejectsWith(src.digestRange('t', 'id', 1, 3), 'EDB');
      const err3 = await rejectsWith(collect(await src.rows('t', { key: 'id', lo: 3, hi: 3 })), 'EDB');
      expect(err3.message).toMatch(/bytes 41ff00/);
      // Valid text, U+FFFD itself included, goes through unchanged.
      expect((await collect(await src.rows('t', { key: 'id', lo: 1, hi: 1 }))).toString()).toBe('1\tfine\tok\n');
    }
    const ok = new Database(file);
    ok.exec("UPDATE t SET v = 'caf\uFFFD' WHERE id = 2; UPDATE t SET u = CAST(u AS BLOB) WHERE id = 3");
    ok.close();
    await using fixed = new SqliteSource(file);
    expect((await collect(await fixed.rows('t', { key: 'id' }))).toString()).toBe('1\tfine\tok\n2\tcaf\uFFFD\tok\n3\tx\t\\\\x41ff00\n');
  });
});

describe('SqliteSource: errors', () => {
  it('ENO_TABLE for a missing table or key column, everywhere', async () => {
    await using src = memorySource('CREATE TABLE t (k INTEGER, v TEXT);');
    await rejectsWith(src.columns('nope'), 'ENO_TABLE');
    await rejectsWith(src.schema('nope'), 'ENO_TABLE');
    await rejectsWith(src.keyRange('nope', 'k'), 'ENO_TABLE');
    await rejectsWith(src.rows('nope', { key: 'k' }), 'ENO_TABLE');
    await rejectsWith(src.digestRange('nope', 'k', 1, 2), 'ENO_TABLE');
    await rejectsWith(src.load('nope', Readable.from([Buffer.from('1\ta\n')])), 'ENO_TABLE');
    const err = await rejectsWith(src.keyRange('t', 'SEQNO'), 'ENO_TABLE');
    expect(err.message).toMatch(/no column "SEQNO" \(it has k, v\)/);
    await rejectsWith(src.rows('t', { key: 'SEQNO' }), 'ENO_TABLE');
    await rejectsWith(src.digestRange('t', 'SEQNO', 1, 2), 'ENO_TABLE');
    await rejectsWith(src.load('t', Readable.from([]), { replaceRange: { key: 'SEQNO', lo: 1, hi: 2 } }), 'ENO_TABLE');
  });

  it('EBAD_CONFIG for bad options, names and bounds', async () => {
    await using src = memorySource('CREATE TABLE t (k INTEGER, v TEXT);');
    await rejectsWith(src.rows('t', { key: 'k', lo: 3, hi: 2 }), 'EBAD_CONFIG');
    await rejectsWith(src.rows('t', { key: 'k', lo: 2 ** 53 }), 'EBAD_CONFIG');
    await rejectsWith(src.rows('t', { key: 'k', lo: 1.5 }), 'EBAD_CONFIG');
    await rejectsWith(src.rows('t', { key: 'k', hi: 1n << 64n }), 'EBAD_CONFIG');
    await rejectsWith(src.rows('t', { key: 'k', limit: 3 } as never), 'EBAD_CONFIG');
    await rejectsWith(src.rows('', { key: 'k' }), 'EBAD_CONFIG');
    await rejectsWith(src.rows('t\0', { key: 'k' }), 'EBAD_CONFIG');
    await rejectsWith(src.rows('t', {} as never), 'EBAD_CONFIG');
    await rejectsWith(src.keyRange('t', 'k', { sginal: undefined } as never), 'EBAD_CONFIG');
    await rejectsWith(src.load('t', Readable.from([]), { replaceRange: { key: 'k', lo: 1 } as never }), 'EBAD_CONFIG');
    await rejectsWith(src.load('t', 'not a stream' as never), 'EBAD_CONFIG');
    await rejectsWith(src.snapshot('x' as never), 'EBAD_CONFIG');
    await rejectsWith(src.createTable('t2', '  '), 'EBAD_CONFIG');
    const err = throwsWith(() => new SqliteSource(':memory:', { readOnly: true } as never), 'EBAD_CONFIG');
    expect(err.message).toMatch(/Did you mean "readonly"/);
    throwsWith(() => new SqliteSource(':memory:', { busyTimeoutMs: -1 }), 'EBAD_CONFIG');
    throwsWith(() => new SqliteSource(42 as never), 'EBAD_CONFIG');
  });

  it('ENOT_FOUND for a missing file unless create is set; EDB for a file that is not a database', async () => {
    const dir = await tempDir('sqlite');
    throwsWith(() => new SqliteSource(join(dir, 'missing.db')), 'ENOT_FOUND');
    const junk = join(dir, 'junk.db');
    await writeFile(junk, 'this is not an SQLite database, just text that is long enough to have a header...'.repeat(10));
    const err = throwsWith(() => new SqliteSource(junk), 'EDB');
    expect((err.cause as { code?: string }).code).toBe('SQLITE_NOTADB');
    const created = new SqliteSource(join(dir, 'new.db'), { create: true });
    expect(created.name).toBe(`sqlite:${join(dir, 'new.db')}`);
    expect(await created.tables()).toEqual([]);
    await created.close();
  });

  it('a read-only source refuses load and createTable', async () => {
    const dir = await tempDir('sqlite');
    const file = join(dir, 'ro.db');
    makeFixtureDb(file);
    await using src = new SqliteSource(file, { readonly: true, name: 'conditions' });
    expect(src.name).toBe('conditions');
    expect((await src.keyRange(ALL_TYPES_TABLE, 'SEQNO')).count).toBe(rowsFor('sqlite').length);
    await rejectsWith(src.load(ALL_TYPES_TABLE, Readable.from([])), 'EBAD_CONFIG');
    await rejectsWith(src.createTable('x', 'CREATE TABLE x (a)'), 'EBAD_CONFIG');
  });
});

describe('SqliteSource: createTable and load', () => {
  it('createTable refuses an existing table (EEXIST), DDL that creates another table (ENO_TABLE, nothing kept), bad SQL (EDB)', async () => {
    await using src = memorySource('CREATE TABLE t (k INTEGER);');
    await rejectsWith(src.createTable('t', 'CREATE TABLE t (k INTEGER);'), 'EEXIST');
    await rejectsWith(src.createTable('T', 'CREATE TABLE T (k INTEGER);'), 'EEXIST');
    await rejectsWith(src.createTable('u', 'CREATE TABLE other (k INTEGER);'), 'ENO_TABLE');
    expect(await src.tables()).toEqual(['t']);
    const err = await rejectsWith(src.createTable('u', 'CREATE TABLE u (k INTEGER); CREATE TABLEX oops;'), 'EDB');
    expect((err.cause as { code?: string }).code).toBe('SQLITE_ERROR');
    expect(await src.tables()).toEqual(['t']);
  });

  it('rolls back everything on malformed input, a truncated stream, or a duplicate key', async () => {
    await using src = memorySource("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one');");
    const count = (): Promise<number> => src.keyRange('t', 'k').then((r) => r.count);
    const good = Buffer.concat([encodeBulkRow(['2', 'two']), encodeBulkRow(['3', 'three'])]);
    const cases: [string, Buffer[], RegExp][] = [
      ['wrong field count', [good, Buffer.from('4\tfour\textra\n')], /row 3: expected 2 fields, found 3/],
      ['bad escape', [good, Buffer.from('4\t\\q\n')], /unknown escape/],
      ['truncated', [good, Buffer.from('4\tfo')], /truncated/],
      ['duplicate key', [good, encodeBulkRow(['1', 'again'])], /UNIQUE constraint failed/],
    ];
    for (const [what, chunks, re] of cases) {
      const input = Readable.from(chunks);
      const err = await rejectsWith(src.load('t', input), 'EDB');
      expect(err.message, what).toMatch(re);
      expect(await count(), what).toBe(1);
      expect(input.destroyed, what).toBe(true);
    }
    expect((await src.load('t', Readable.from([good]))).rows).toBe(2);
    expect(await count()).toBe(3);
  });

  it('load({ columns }) fills the columns named, in that order; the others take their defaults', async () => {
    await using src = memorySource("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT, n INTEGER DEFAULT 7, b BLOB); INSERT INTO t VALUES (1, 'one', 1, NULL);");
    const rows = async (): Promise<string> => (await collect(await src.rows('t', { key: 'k' }))).toString();
    expect((await src.load('t', Readable.from([Buffer.from('2\t\\\\x0aff\t2\ttwo\n')]), { columns: ['k', 'b', 'n', 'v'] })).rows).toBe(1);
    expect((await src.load('t', Readable.from([Buffer.from('3\tthree\n')]), { columns: ['k', 'v'] })).rows).toBe(1);
    // Each field is decoded by its own column's type: the BLOB given second is still a BLOB.
    const expected = '1\tone\t1\t\\N\n2\ttwo\t2\t\\\\x0aff\n3\tthree\t7\t\\N\n';
    expect(await rows()).toBe(expected);
    await expectBadLoadColumns(src, 't');
    await rejectsWith(src.load('t', Readable.from([Buffer.from('5\tfive\t5\t\\N\n')]), { columns: ['k', 'v'] }), 'EDB');
    expect(await rows()).toBe(expected);
  });

  it('rows({ columns }) and digestRange({ columns }) read the columns named, in that order, by name', async () => {
    await using src = memorySource("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT, n INTEGER); INSERT INTO t VALUES (1, 'one', 1), (2, 'same', 9), (3, 'same', 1), (4, 'x\ty', NULL);");
    await expectNamedColumnReads(src);
  });

  it('refuses (EBAD_CONFIG) a key column of TEXT affinity for ranges, whose values compare as text, instead of returning or replacing a wrong subset', async () => {
    await using src = memorySource("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT); INSERT INTO t VALUES ('1', 'a'), ('2', 'b'), ('9', 'c'), ('10', 'd');");
    const err = await rejectsWith(src.rows('t', { key: 'k', lo: 1, hi: 10 }), 'EBAD_CONFIG');
    expect(err.message).toMatch(/Key column "k" of table "t" .* has TEXT affinity .*compare as text/);
    await rejectsWith(src.digestRange('t', 'k', 1, 10), 'EBAD_CONFIG');
    await rejectsWith(src.load('t', Readable.from([Buffer.from('3\tx\n')]), { replaceRange: { key: 'k', lo: 1, hi: 10 } }), 'EBAD_CONFIG');
  });

  it('digestRange({ onProgress }) reports rows and bytes up to the digest\'s count and bytes', async () => {
    await using src = memorySource("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT, n INTEGER); INSERT INTO t VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', NULL), (4, 'four', 4);");
    await expectDigestProgress(src);
  });

  it('replaceRange replaces a partition in the same transaction', async () => {
    await using src = memorySource("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'old'), (3, 'old'), (4, 'd');");
    const tail = Buffer.concat([encodeBulkRow(['2', 'new']), encodeBulkRow(['3', 'new'])]);
    await rejectsWith(src.load('t', Readable.from([tail])), 'EDB');
    const r = await src.load('t', Readable.from([tail]), { replaceRange: { key: 'k', lo: 2, hi: 3n } });
    expect(r).toEqual({ rows: 2, bytes: tail.length, deleted: 2 });
    expect((await collect(await src.rows('t', { key: 'k' }))).toString()).toBe('1\ta\n2\tnew\n3\tnew\n4\td\n');
    // A failing replacement deletes nothing.
    await rejectsWith(src.load('t', Readable.from([Buffer.from('2\tx\n3')]), { replaceRange: { key: 'k', lo: 2, hi: 3 } }), 'EDB');
    expect((await collect(await src.rows('t', { key: 'k' }))).toString()).toBe('1\ta\n2\tnew\n3\tnew\n4\td\n');
  });

  it('loads from any async iterable of chunks, split anywhere', async () => {
    await using src = memorySource('CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT, b BLOB);');
    const text = Buffer.concat([encodeBulkRow(['1', 'tab\there', '\\x00ff']), encodeBulkRow(['2', 'ünï', null])]);
    async function* bytes(): AsyncGenerator<Uint8Array> {
      for (const b of text) yield Uint8Array.of(b);
    }
    expect((await src.load('t', bytes())).rows).toBe(2);
    expect((await collect(await src.rows('t', { key: 'k' }))).equals(text)).toBe(true);
  });

  it('serialises concurrent loads on one source', async () => {
    const dir = await tempDir('sqlite');
    await using src = new SqliteSource(join(dir, 'c.db'), { create: true });
    await src.createTable('t', 'CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT);');
    const part = (from: number): Readable =>
      Readable.from(
        (async function* () {
          for (let i = from; i < from + 1000; i += 100) {
            await new Promise((r) => setImmediate(r));
            yield Buffer.concat(Array.from({ length: 100 }, (_, j) => encodeBulkRow([String(i + j), 'v'])));
          }
        })(),
      );
    const results = await Promise.all([src.load('t', part(0)), src.load('t', part(1000)), src.load('t', part(2000))]);
    expect(results.map((r) => r.rows)).toEqual([1000, 1000, 1000]);
    expect(await src.keyRange('t', 'k')).toEqual({ lo: 0n, hi: 2999n, count: 3000, nulls: 0 });
  });

  it('loads with foreign keys off: a child before its parent, a replaceRange on the parent cascades to no child; the setting is put back', async () => {
    const ddl = 'CREATE TABLE parent (SEQNO INTEGER PRIMARY KEY, v TEXT); CREATE TABLE child (SEQNO INTEGER NOT NULL REFERENCES parent(SEQNO) ON DELETE CASCADE, ROW_COUNTER INTEGER NOT NULL, PRIMARY KEY (SEQNO, ROW_COUNTER));';
    const parentRows = Buffer.from('1\ta\n2\tb\n3\tc\n');
    const childRows = Buffer.from('1\t1\n1\t2\n2\t1\n3\t1\n');
    const dir = await tempDir('sqlite');
    const file = join(dir, 'fk.db');
    const setup = new Database(file);
    setup.exec(ddl);
    setup.close();
    // A file: each load has its own connection, where better-sqlite3 turns foreign keys on.
    await using src = new SqliteSource(file);
    expect((await src.load('parent', Readable.from([parentRows]))).rows).toBe(3);
    expect((await src.load('child', Readable.from([childRows]))).rows).toBe(4);
    // Restoring the parent's partition again (ON DELETE CASCADE would empty the child).
    expect(await src.load('parent', Readable.from([parentRows]), { replaceRange: { key: 'SEQNO', lo: 1, hi: 3 } })).toEqual({ rows: 3, bytes: parentRows.length, deleted: 3 });
    expect((await collect(await src.rows('child', { key: 'SEQNO' }))).toString()).toBe(childRows.toString());
    expect((await collect(await src.rows('parent', { key: 'SEQNO' }))).toString()).toBe(parentRows.toString());
    // The child before its parent; a borrowed connection gets its own setting back, after a load that commits and after one that fails.
    const db = new Database(':memory:');
    db.exec(ddl);
    await using mem = new SqliteSource(db);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect((await mem.load('child', Readable.from([childRows]))).rows).toBe(4);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    await rejectsWith(mem.load('parent', Readable.from([Buffer.from('1\ta\n2')])), 'EDB');
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    db.pragma('foreign_keys = OFF');
    expect((await mem.load('parent', Readable.from([parentRows]))).rows).toBe(3);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(0);
    // A child restored alone, into a file without its parent table (SQLite resolves the parent when it prepares the INSERT).
    const alone = new Database(join(dir, 'alone.db'));
    alone.exec('CREATE TABLE child (SEQNO INTEGER NOT NULL REFERENCES parent(SEQNO) ON DELETE CASCADE, ROW_COUNTER INTEGER NOT NULL, PRIMARY KEY (SEQNO, ROW_COUNTER));');
    alone.close();
    await using lone = new SqliteSource(join(dir, 'alone.db'));
    expect((await lone.load('child', Readable.from([childRows]))).rows).toBe(4);
    expect((await collect(await lone.rows('child', { key: 'SEQNO' }))).toString()).toBe(childRows.toString());
  });

  it("a duplicate key is EDB whatever the table's ON CONFLICT clauses say, nothing is kept; a row a trigger drops is EDB too", async () => {
    await using src = memorySource(`
      CREATE TABLE ig (SEQNO INTEGER PRIMARY KEY ON CONFLICT IGNORE, v); INSERT INTO ig VALUES (1, 'old');
      CREATE TABLE rp (SEQNO INTEGER, name UNIQUE ON CONFLICT REPLACE); INSERT INTO rp VALUES (100, 'x');
      CREATE TABLE tr (SEQNO INTEGER PRIMARY KEY, v TEXT);
      CREATE TRIGGER tr_skip BEFORE INSERT ON tr WHEN NEW.v = 'skip' BEGIN SELECT RAISE(IGNORE); END;`);
    const rows = async (t: string): Promise<string> => (await collect(await src.rows(t, { key: 'SEQNO' }))).toString();
    // IGNORE would keep 'old' and report 2 rows loaded.
    const ig = await rejectsWith(src.load('ig', Readable.from([Buffer.from('1\tnew\n2\tb\n')])), 'EDB');
    expect(ig.message).toMatch(/UNIQUE constraint failed: ig\.SEQNO/);
    expect(await rows('ig')).toBe('1\told\n');
    // REPLACE would delete row 100 without a word.
    const rp = await rejectsWith(src.load('rp', Readable.from([Buffer.from('5\tx\n')])), 'EDB');
    expect(rp.message).toMatch(/UNIQUE constraint failed: rp\.name/);
    expect(await rows('rp')).toBe('100\tx\n');
    const tr = await rejectsWith(src.load('tr', Readable.from([Buffer.from('1\tok\n2\tskip\n3\tok\n')])), 'EDB');
    expect(tr.message).toMatch(/row 2 loaded into "tr" was not inserted/);
    expect(await rows('tr')).toBe('');
    expect(await src.load('ig', Readable.from([Buffer.from('2\tb\n')]))).toMatchObject({ rows: 1, deleted: 0 });
    expect(await src.load('rp', Readable.from([Buffer.from('5\ty\n')]))).toMatchObject({ rows: 1, deleted: 0 });
    expect(await rows('rp')).toBe('5\ty\n100\tx\n');
  });

  it('refuses bulk text that is not valid UTF-8 (EDB naming the row), for TEXT and BLOB columns alike, and keeps nothing', async () => {
    await using src = memorySource('CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT, b BLOB, u);');
    const ok = Buffer.from('1\tfine\t\\N\t\\N\n');
    const bad = (v: number[], col: number): Buffer => {
      const fields = [Buffer.from('2'), Buffer.from('x'), Buffer.from('\\N'), Buffer.from('\\N')];
      fields[col] = Buffer.from(v);
      return Buffer.concat([Buffer.concat(fields.flatMap((f, i) => (i === 0 ? [f] : [Buffer.from('\t'), f]))), Buffer.from('\n')]);
    };
    const cases: [Buffer, RegExp][] = [
      [bad([0x63, 0x61, 0x66, 0xe9], 1), /row 2: field 2 is not valid UTF-8 \(bytes 636166e9\)/], // Latin-1 in a TEXT column
      [bad([0x41, 0xff, 0x00], 2), /row 2: field 3 is not valid UTF-8 \(bytes 41ff00\)/], // raw bytes in a BLOB column
      [bad([0xed, 0xa0, 0x80], 3), /row 2: field 4 is not valid UTF-8/], // a UTF-16 surrogate
      [bad([0xe6, 0x97], 1), /row 2: field 2 is not valid UTF-8/], // a character cut short
    ];
    for (const [b, re] of cases) {
      const input = Readable.from([ok, b]);
      const err = await rejectsWith(src.load('t', input), 'EDB');
      expect(err.message).toMatch(re);
      expect(input.destroyed).toBe(true);
      expect((await src.keyRange('t', 'k')).count).toBe(0);
    }
    // Valid UTF-8, U+FFFD itself included, loads unchanged even with characters split across chunks.
    const good = Buffer.from('1\tcaf\uFFFD\t\\N\t\\N\n2\t日本 🚀\t\\\\x00ff\tü\n');
    async function* bytes(): AsyncGenerator<Uint8Array> {
      for (const c of good) yield Uint8Array.of(c);
    }
    expect((await src.load('t', bytes())).rows).toBe(2);
    expect((await collect(await src.rows('t', { key: 'k' }))).equals(good)).toBe(true);
  });
});

describe('SqliteSource: snapshots', () => {
  it('reads one consistent state of several tables while another connection writes', async () => {
    const dir = await tempDir('sqlite');
    const file = join(dir, 's.db');
    const setup = new Database(file);
    setup.pragma('journal_mode = WAL');
    setup.exec("CREATE TABLE payload (SEQNO INTEGER, RC INTEGER, v TEXT, PRIMARY KEY (SEQNO, RC)); CREATE TABLE vld (SEQNO INTEGER PRIMARY KEY, t TEXT);");
    setup.exec("INSERT INTO vld VALUES (1, 'a'), (2, 'b'); INSERT INTO payload VALUES (1, 1, 'x'), (2, 1, 'y');");
    await using src = new SqliteSource(file);
    const seen = await src.snapshot(async (r) => {
      const before = await r.keyRange('vld', 'SEQNO');
      // A writer commits a new SEQNO in both tables mid-snapshot.
      setup.exec("INSERT INTO vld VALUES (3, 'c'); INSERT INTO payload VALUES (3, 1, 'z'), (3, 2, 'zz');");
      const vld = (await collect(await r.rows('vld', { key: 'SEQNO' }))).toString();
      const payload = (await collect(await r.rows('payload', { key: 'SEQNO' }))).toString();
      const d = await r.digestRange('payload', 'SEQNO', undefined, undefined);
      return { before, vld, payload, d };
    });
    expect(seen.before.hi).toBe(2n);
    expect(seen.vld).toBe('1\ta\n2\tb\n');
    expect(seen.payload).toBe('1\t1\tx\n2\t1\ty\n');
    expect(seen.d.count).toBe(2);
    // Outside the snapshot the new rows are there.
    expect(await src.keyRange('payload', 'SEQNO')).toEqual({ lo: 1n, hi: 3n, count: 4, nulls: 0 });
    setup.close();
  });

  it('ends the snapshot however fn ends: open streams destroyed, reader unusable, connection closed', async () => {
    const dir = await tempDir('sqlite');
    const file = join(dir, 's.db');
    makeFixtureDb(file);
    const base = fdsTo(file);
    const src = new SqliteSource(file);
    let kept: TableReader | undefined;
    let stream: Readable | undefined;
    const boom = new Error('boom');
    await expect(
      src.snapshot(async (r) => {
        kept = r;
        stream = await r.rows(ALL_TYPES_TABLE, { key: 'SEQNO' });
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(stream!.destroyed).toBe(true);
    await rejectsWith(kept!.keyRange(ALL_TYPES_TABLE, 'SEQNO'), 'EDB');
    // The source itself still works, and a load can follow (no lock left behind).
    await src.load(ALL_TYPES_TABLE, Readable.from([]), {});
    expect(await src.snapshot(async (r) => (await r.keyRange(ALL_TYPES_TABLE, 'SEQNO')).count)).toBe(rowsFor('sqlite').length);
    // SQLite keeps a closed connection's descriptor while others on the file are open, so
    // count after closing the source: a snapshot connection left open would still hold one.
    await src.close();
    expect(fdsTo(file)).toBe(base);
  });

  it('an in-memory source holds loads off during a snapshot', async () => {
    await using src = memorySource('CREATE TABLE t (k INTEGER PRIMARY KEY);');
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const snap = src.snapshot(async (r) => {
      order.push('snapshot start');
      await gate;
      const n = (await r.keyRange('t', 'k')).count;
      order.push(`snapshot sees ${n}`);
      return n;
    });
    const load = src.load('t', Readable.from([Buffer.from('1\n')])).then(() => order.push('loaded'));
    await new Promise((r) => setTimeout(r, 20));
    release();
    expect(await snap).toBe(0);
    await load;
    expect(order).toEqual(['snapshot start', 'snapshot sees 0', 'loaded']);
  });
});

describe('SqliteSource: lifetime', () => {
  it('close() destroys open streams, later calls fail with EDB, a borrowed database stays open', async () => {
    const db = new Database(':memory:');
    db.exec('CREATE TABLE t (k INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2);');
    const src = new SqliteSource(db);
    const stream = await src.rows('t', { key: 'k' });
    await src.close();
    await src.close();
    expect(stream.destroyed).toBe(true);
    await rejectsWith(src.tables(), 'EDB');
    await rejectsWith(src.rows('t', { key: 'k' }), 'EDB');
    expect(db.open).toBe(true);
    expect(db.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 2 });
    db.close();
  });

  it('closes its own file on close() and on await using', async () => {
    const dir = await tempDir('sqlite');
    const file = join(dir, 'own.db');
    makeFixtureDb(file);
    const base = fdsTo(file);
    {
      await using src = new SqliteSource(file);
      await src.tables();
      expect(fdsTo(file)).toBeGreaterThan(base);
    }
    expect(fdsTo(file)).toBe(base);
    // The digest helper sees what rows() writes, byte for byte.
    await using again = new SqliteSource(file);
    const bytes = await collect(await again.rows(ALL_TYPES_TABLE, { key: 'SEQNO' }));
    expect(await again.digestRange(ALL_TYPES_TABLE, 'SEQNO', undefined, undefined)).toEqual(
      await digestBulkText(Readable.from([bytes]), { keyIndex: 0 }),
    );
  });
});

describe('SqliteSource: a database another process holds locked', () => {
  it('fails with a retryable EDB naming busyTimeoutMs, at open and at a read, after waiting that long', async () => {
    const file = join(await tempDir('sqlite-busy'), 'runs.db');
    const writer = new Database(file);
    writer.pragma('journal_mode = delete');
    writer.exec("CREATE TABLE runs (run INTEGER PRIMARY KEY, note TEXT); INSERT INTO runs VALUES (1, 'cosmics')");
    await using src = new SqliteSource(file, { busyTimeoutMs: 50 });
    // The writer in an exclusive transaction (a DAQ writing, a VACUUM): no reader gets in.
    writer.exec('BEGIN EXCLUSIVE');
    try {
      // Before: EDB "database is locked", not retryable, no word of the option.
      const atRead = await rejectsWith((async () => collect(await src.rows('runs', { key: 'run' })))(), 'EDB');
      const atOpen = throwsWith(() => new SqliteSource(file, { busyTimeoutMs: 50 }), 'EDB');
      for (const err of [atRead, atOpen]) {
        expect(err.message).toMatch(/database is locked: .*busyTimeoutMs/);
        expect(err.retryable).toBe(true);
        expect(err.details).toMatchObject({ driverCode: 'SQLITE_BUSY' });
      }
    } finally {
      writer.exec('ROLLBACK');
      writer.close();
    }
    expect((await collect(await src.rows('runs', { key: 'run' }))).toString()).toBe('1\tcosmics\n');
  });
});
