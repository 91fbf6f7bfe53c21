// MysqlSource against a real MariaDB: the all-types fixture dumped, loaded
// into another database and compared value by value; identifiers; metadata;
// loads (all or nothing); errors.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBulkRow, type BulkField } from '../../../src/db/index.js';
import { MysqlSource, quoteMysqlIdent } from '../../../src/db/mysql/index.js';
import { enumHasEmptyMember, mysqlLoadColumns, mysqlTableInfo } from '../../../src/db/mysql/mysql-reader.js';
import type { Progress } from '../../../src/progress.js';
import { Partitioner } from '../../../src/partition/index.js';
import { ALL_TYPES_KEY, ALL_TYPES_TABLE, columnsFor, expectedFor, rowsFor } from '../../fixtures/db/all-types.js';
import { freePort, startMariadb, type MariadbServer } from '../../support/index.js';
import { chunked, collect, rejectsWith, throwsWith } from '../../unit/db/helpers.js';
import { itFindsNextKey, itProbesKeys, itLoadsNamedColumns, itReadsNamedColumns, itReplacesRange, itReportsDigestProgress, itSelectsInclusiveRanges, itTimesOutOnSilentServer } from '../db-suite/source-tests.js';
import { makeFixture, normRows, sql, textRows } from './helpers.js';

let db: MariadbServer;
let dbCount = 0;

beforeAll(async () => {
  db = await startMariadb();
  await makeFixture(db, db.database);
});
afterAll(async () => {
  await db?.stop();
});

/** A fresh empty database; returns its name. */
async function freshDb(): Promise<string> {
  return db.createDatabase(`d${++dbCount}`);
}

function source(database = db.database, options: ConstructorParameters<typeof MysqlSource>[1] = {}): MysqlSource {
  return new MysqlSource({ ...db.connectionConfig, database }, options);
}

async function dump(src: MysqlSource, table: string, key = ALL_TYPES_KEY): Promise<Buffer> {
  return collect(await src.rows(table, { key }));
}

const N = null;
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
const ESCAPE_BYTES = Buffer.from([0x09, 0x0a, 0x0d, 0x5c, 0x00, 0x4e, 0x5c, 0x4e, 0x7f, 0xff]);
const TXT = 'line1\nline2\r\nCR\ronly, backslash \\ and \\\\, literal \\N, \\t, \\n, trailing \\';

describe('MysqlSource: the all-types fixture', () => {
  it('dumps every value to the documented bulk text', async () => {
    await using src = source();
    // Columns: SEQNO ROW_COUNTER i32 i64 u64 dbl dec vc txt bin dt ts d
    const rows: BulkField[][] = [
      ['1', '1', N, N, N, N, N, N, N, N, N, N, N],
      ['1', '2', '0', '0', '0', '0', '0.0000000000', '', '', Buffer.alloc(0), N, N, N],
      ['1', '3', N, N, N, N, N, 'tab\there', TXT, ESCAPE_BYTES, N, N, N],
      ['1', '4', N, N, N, N, N, '\\N', 'a\0b', N, N, N, N],
      ['2', '1', N, N, N, N, N, 'Grüße, 日本語, e\u0301', '🚀 Daya Bay 大亚湾 \u202Eright-to-left\u202C \uFEFF zero-width\u200B', ALL_BYTES, N, N, N],
      ['3', '1', '2147483647', '9223372036854775807', '18446744073709551615', '1.7976931348623157e308', '9999999999999999999999999999.9999999999', N, N, N, N, N, N],
      ['4', '1', '-2147483648', '-9223372036854775808', N, '-5e-324', '-0.0000000001', N, N, N, N, N, N],
      ['5', '1', N, '9007199254740993', N, '0.30000000000000004', '12345678901234567890.0123456789', N, N, N, N, N, N],
      ['5', '2', N, N, N, '0.3333333333333333', N, N, N, N, '2024-02-29 23:59:59.123456', '2024-03-31 01:30:00.500000', '2024-02-29'],
      ['6', '1', N, N, N, '2.2250738585072014e-308', N, N, N, N, '1000-01-01 00:00:00.000000', '1970-01-01 00:00:01.000000', '1000-01-01'],
      ['7', '1', N, N, N, '4503599627370495.5', N, N, N, N, '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999', '9999-12-31'],
      // MariaDB stores -0.0 as 0.
      ['8', '1', N, N, N, '0', N, N, N, N, N, N, N],
      ['8', '2', N, N, N, N, N, N, N, N, N, N, N],
      ['9007199254740993', '1', N, '9007199254740993', N, '9.007199254740992e15', N, 'key 2^53+1', N, N, N, N, N],
    ];
    const expected = Buffer.concat(rows.map(encodeBulkRow));
    const got = await dump(src, ALL_TYPES_TABLE);
    expect(got.toString('latin1').split('\n')).toEqual(expected.toString('latin1').split('\n'));
    expect(got.equals(expected)).toBe(true);
  });

  it('round-trips: dump, load into a fresh database, same digest, same bytes, every value equal', async () => {
    const target = await freshDb();
    await using src = source();
    await using dst = source(target);
    const schema = await src.schema(ALL_TYPES_TABLE);
    expect(schema).toMatch(/^CREATE TABLE `all_types` \(\n/);
    expect(schema).toMatch(/PRIMARY KEY \(`SEQNO`,`ROW_COUNTER`\)/);
    expect(schema.endsWith(';\n')).toBe(true);
    await dst.createTable(ALL_TYPES_TABLE, schema);
    expect(await dst.schema(ALL_TYPES_TABLE)).toBe(schema);
    const progress: Progress[] = [];
    const result = await dst.load(ALL_TYPES_TABLE, await src.rows(ALL_TYPES_TABLE, { key: ALL_TYPES_KEY }), { onProgress: (p) => progress.push(p) });
    const n = rowsFor('mysql').length;
    expect(result.rows).toBe(n);
    expect(result.deleted).toBe(0);
    expect(progress.at(-1)).toMatchObject({ phase: 'load', itemsDone: n, bytesDone: result.bytes });

    const a = await src.digestRange(ALL_TYPES_TABLE, ALL_TYPES_KEY, undefined, undefined);
    const b = await dst.digestRange(ALL_TYPES_TABLE, ALL_TYPES_KEY, undefined, undefined);
    expect(a.count).toBe(n);
    expect(b).toEqual(a);
    expect((await dump(dst, ALL_TYPES_TABLE)).equals(await dump(src, ALL_TYPES_TABLE))).toBe(true);

    // Row by row, every value cast to text by the server, on both sides.
    const before = await textRows(db, db.database);
    const after = await textRows(db, target);
    expect(after).toEqual(before);
    // And equal to what the fixture inserted, except that MariaDB has no -0.0.
    const expected = expectedFor('mysql').map((r) => r.map((v) => (Object.is(v, -0) ? 0 : v)));
    expect(normRows(after)).toEqual(normRows(expected));
    expect(await dst.columns(ALL_TYPES_TABLE)).toEqual(await src.columns(ALL_TYPES_TABLE));
    expect((await dst.columns(ALL_TYPES_TABLE)).map((c) => c.name)).toEqual(columnsFor('mysql').map((c) => c.name));
  });

  it('digests sub-ranges equal on both sides and different where one double is off by one ulp', async () => {
    const target = await freshDb();
    await makeFixture(db, target);
    await using src = source();
    await using dst = source(target);
    const bits = new BigInt64Array(new Float64Array([0.1 + 0.2]).buffer);
    bits[0]! += 1n;
    const nextUp = new Float64Array(bits.buffer)[0]!;
    const c = await db.connect({ database: target });
    const [r] = await c.execute('UPDATE all_types SET dbl = ? WHERE SEQNO = 5 AND ROW_COUNTER = 1', [nextUp]);
    await c.end();
    expect((r as { affectedRows: number }).affectedRows).toBe(1);
    for (const [lo, hi] of [[1n, 4n], [6n, 9007199254740993n]] as const) {
      expect(await dst.digestRange(ALL_TYPES_TABLE, 'SEQNO', lo, hi)).toEqual(await src.digestRange(ALL_TYPES_TABLE, 'SEQNO', lo, hi));
    }
    const s5 = await src.digestRange(ALL_TYPES_TABLE, 'SEQNO', 5, 5);
    const d5 = await dst.digestRange(ALL_TYPES_TABLE, 'SEQNO', 5, 5);
    expect(d5.count).toBe(2);
    expect(d5.count).toBe(s5.count);
    expect(d5.digest).not.toBe(s5.digest);
  });

  it('keeps FLOAT exact (MySQL prints it with 6 digits) and BIGINT UNSIGNED keys up to 2^64-1', async () => {
    const a = await freshDb();
    const b = await freshDb();
    const ddl = 'CREATE TABLE f (k BIGINT UNSIGNED PRIMARY KEY, x FLOAT, y DOUBLE)';
    await sql(db, a, ddl);
    const values = [[0n, 1.2345678, 0.1], [18446744073709551614n, 16777217, 1e-310], [18446744073709551615n, -3.4028234663852886e38, null]];
    for (const v of values) await sql(db, a, 'INSERT INTO f VALUES (?, ?, ?)', [String(v[0]), v[1], v[2]]);
    await using src = source(a);
    await using dst = source(b);
    expect(await src.keyRange('f', 'k')).toEqual({ lo: 0n, hi: 18446744073709551615n, count: 3, nulls: 0 });
    const text = await dump(src, 'f', 'k');
    expect(text.toString()).toBe('0\t1.2345677614212036\t0.1\n18446744073709551614\t16777216\t1e-310\n18446744073709551615\t-3.4028234663852886e38\t\\N\n');
    await dst.createTable('f', await src.schema('f'));
    await dst.load('f', Readable.from([text]));
    // Same bits: the float read back as a double on both sides.
    const bitsOf = (d: string): Promise<unknown[][]> => sql(db, d, 'SELECT k, CAST(x + 0e0 AS CHAR), CAST(y AS CHAR) FROM f ORDER BY k');
    expect(await bitsOf(b)).toEqual(await bitsOf(a));
    expect((await dump(dst, 'f', 'k')).equals(text)).toBe(true);
    expect((await collect(await src.rows('f', { key: 'k', lo: 18446744073709551615n }))).toString()).toBe('18446744073709551615\t-3.4028234663852886e38\t\\N\n');
    expect((await collect(await src.rows('f', { key: 'k', hi: 18446744073709551614n, lo: 1n }))).toString()).toBe('18446744073709551614\t16777216\t1e-310\n');
  });
});

describe('MysqlSource: more types', () => {
  it('round-trips BIT, YEAR, TIME, ENUM, SET, JSON, zero dates, geometry, FLOAT(M,D), binary strings and latin1 columns byte for byte', async () => {
    const a = await freshDb();
    const b = await freshDb();
    const c = await db.connect({ database: a, multipleStatements: true });
    await c.query(
      "SET sql_mode = ''; CREATE TABLE m (k INT PRIMARY KEY, b BIT(12), y YEAR, t TIME(3), e ENUM('a', 'b c'), s SET('x', 'y'), j JSON, z DATETIME, g POINT, f FLOAT(7,3), u TINYINT UNSIGNED, dd DOUBLE(10,4), bi BINARY(4), vb VARBINARY(8), l CHAR(5) CHARACTER SET latin1, tt TINYTEXT)",
    );
    await c.query(
      "SET sql_mode = ''; INSERT INTO m VALUES (1, b'101000000011', 2024, '-838:59:58.123', 'b c', 'x,y', '{\"a\": [1, 2.50]}', '0000-00-00 00:00:00', ST_GeomFromText('POINT(1 2)'), 1234.567, 255, 123456.7891, 'ab', x'00ff5c', 'Grüß', 'tab\there'), (2, NULL, NULL, NULL, NULL, '', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    );
    await c.end();
    await using src = source(a);
    await using dst = source(b);
    const text = await dump(src, 'm', 'k');
    // BIT and geometry travel as their raw bytes; FLOAT(7,3) as the exact double of the float; latin1 as UTF-8.
    expect(text.toString('latin1').split('\t').slice(0, 9)).toEqual(['1', '\\n\x03', '2024', '-838:59:58.123', 'b c', 'x,y', '{"a": [1, 2.50]}', '0000-00-00 00:00:00', expect.stringMatching(/^\\0\\0\\0\\0\x01\x01/)]);
    expect(text.toString('utf8')).toContain('\t1234.5670166015625\t255\t123456.7891\tab\\0\\0\t\\0\xff'.replace('\xff', '\ufffd'));
    expect(text.toString('utf8')).toContain('\tGrüß\ttab\\there\n');
    await dst.createTable('m', await src.schema('m'));
    expect((await dst.load('m', Readable.from([text]))).rows).toBe(2);
    expect((await dump(dst, 'm', 'k')).equals(text)).toBe(true);
    const same = 'SELECT k, HEX(b), y, t, e, s, j, CAST(z AS CHAR), ST_AsText(g), f, u, dd, HEX(bi), HEX(vb), HEX(l), tt FROM m ORDER BY k';
    expect(await sql(db, b, same)).toEqual(await sql(db, a, same));
  });
});

describe("MysqlSource: MariaDB's INET6, INET4 and UUID", () => {
  it('round-trips them, alone in a table or beside UTF-8 text: sent as utf8mb4 text, which they parse (from binary text they took the bytes as the value)', async () => {
    const a = await freshDb();
    const b = await freshDb();
    // 2001:db8::1:2:34 is 16 characters: as binary text it was stored as the address of those bytes (3230:3031:...), without a warning.
    await sql(db, a, 'CREATE TABLE ip (k INT PRIMARY KEY, i6 INET6 NOT NULL, i4 INET4, u UUID)');
    await sql(db, a, "INSERT INTO ip VALUES (1, '2001:db8::1:2:34', '10.0.0.1', '123e4567-e89b-12d3-a456-426614174000'), (2, 'fe80::1:2:3:4:56', NULL, NULL), (3, '::', '255.255.255.255', '00000000-0000-0000-0000-000000000000')");
    await sql(db, a, "CREATE TABLE ipu (k INT PRIMARY KEY, i6 INET6, v VARCHAR(20) CHARACTER SET utf8mb4, bl BLOB)");
    await sql(db, a, "INSERT INTO ipu VALUES (1, '2001:db8::1:2:34', 'Grüße', x'00ff'), (2, NULL, NULL, NULL)");
    await using src = source(a);
    await using dst = source(b);
    for (const t of ['ip', 'ipu']) {
      const text = await dump(src, t, 'k');
      await dst.createTable(t, await src.schema(t));
      expect((await dst.load(t, Readable.from([text]))).rows).toBe(t === 'ip' ? 3 : 2);
      expect((await dump(dst, t, 'k')).equals(text)).toBe(true);
      const same = `SELECT * FROM ${t} ORDER BY k`;
      expect(await sql(db, b, same)).toEqual(await sql(db, a, same));
    }
    expect(await sql(db, b, 'SELECT CAST(i6 AS CHAR), CAST(u AS CHAR) FROM ip WHERE k = 1')).toEqual([['2001:db8::1:2:34', '123e4567-e89b-12d3-a456-426614174000']]);
    expect(await dst.digestRange('ip', 'k', undefined, undefined)).toEqual(await src.digestRange('ip', 'k', undefined, undefined));
  });
});

describe('MysqlSource: values a lax sql_mode let in', () => {
  it('loads back the invalid dates a table holds (written under ALLOW_INVALID_DATES), byte for byte', async () => {
    const a = await freshDb();
    const b = await freshDb();
    const c = await db.connect({ database: a, multipleStatements: true });
    await c.query("SET sql_mode = 'ALLOW_INVALID_DATES'; CREATE TABLE v (k INT PRIMARY KEY, d DATETIME NULL, dd DATE NULL); INSERT INTO v VALUES (1, '2024-02-30 12:00:00', '2023-02-31'), (2, '2024-04-31 00:00:00', '2024-06-31')");
    await c.end();
    await using src = source(a);
    await using dst = source(b);
    const text = await dump(src, 'v', 'k');
    expect(text.toString()).toBe('1\t2024-02-30 12:00:00\t2023-02-31\n2\t2024-04-31 00:00:00\t2024-06-31\n');
    await dst.createTable('v', await src.schema('v'));
    expect((await dst.load('v', Readable.from([text]))).rows).toBe(2);
    expect((await dump(dst, 'v', 'k')).equals(text)).toBe(true);
    const same = 'SELECT k, CAST(d AS CHAR), CAST(dd AS CHAR) FROM v ORDER BY k';
    expect(await sql(db, b, same)).toEqual(await sql(db, a, same));
  });

  it("loads back an ENUM's error value (index 0, stored for a value not in the list), and still refuses a value not in the list", async () => {
    const a = await freshDb();
    const b = await freshDb();
    const c = await db.connect({ database: a, multipleStatements: true });
    await c.query(
      "SET sql_mode = ''; CREATE TABLE v (k INT PRIMARY KEY, e ENUM('on','off') NULL, n ENUM('x','it''s') NOT NULL, w ENUM('','y') NULL); " +
        "INSERT INTO v VALUES (1, 'on', 'x', ''), (2, 'bogus', 'nope', 'y'), (3, NULL, 'it''s', NULL), (4, 'off', 'x', ''), (5, 'also bogus', 'x', 'y')",
    );
    await c.end();
    await using src = source(a);
    await using dst = source(b);
    const text = await dump(src, 'v', 'k');
    expect(text.toString()).toBe("1\ton\tx\t\n2\t\t\ty\n3\t\\N\tit's\t\\N\n4\toff\tx\t\n5\t\tx\ty\n");
    await dst.createTable('v', await src.schema('v'));
    // Split everywhere, so that the empty values fall at chunk edges too.
    expect((await dst.load('v', chunked(text, 1))).rows).toBe(5);
    const same = 'SELECT k, e, e + 0, n, n + 0, w, w + 0 FROM v ORDER BY k';
    expect(await sql(db, b, same)).toEqual(await sql(db, a, same));
    expect(await sql(db, b, 'SELECT e + 0 FROM v WHERE k = 2')).toEqual([[0]]);
    // A value the list lacks is not an error value of the source: refused, nothing kept.
    const err = await rejectsWith(dst.load('v', Readable.from(['6\tmaybe\tx\ty\n']), { replaceRange: { key: 'k', lo: 1, hi: 9 } }), 'EDB');
    expect(err.message).toMatch(/Data truncated for column 'e'/);
    // The list parsed as the server writes it (quotes doubled).
    expect([`enum('on','off')`, `enum('','y')`, `enum('it''s','')`, `enum('a','''')`, `enum('x','','z')`, `enum('a\\\\','b')`].map(enumHasEmptyMember)).toEqual([false, true, true, false, true, false]);
    // Nor is an empty value where a warning of another kind comes with it.
    await rejectsWith(dst.load('v', Readable.from(['7\t\tx\ty\n8\ton\tx\tnot-in-w\n'])), 'EDB');
    expect(await sql(db, b, same)).toEqual(await sql(db, a, same));
  });
});

describe('MysqlSource: a server whose global sql_notes is 0', () => {
  it('still refuses (EDB, nothing kept) a value the column rounds, which the server reports as a Note only', async () => {
    const b = await freshDb();
    await sql(db, b, 'CREATE TABLE r (k INT PRIMARY KEY, x DECIMAL(5,2))');
    await sql(db, b, 'SET GLOBAL sql_notes = 0');
    try {
      // Sessions opened now take the global: without the source's own setting, 1.23456 went in as 1.23 in silence.
      await using dst = source(b);
      const err = await rejectsWith(dst.load('r', Readable.from(['1\t1.23456\n'])), 'EDB');
      expect(err.message).toMatch(/Data truncated for column 'x'/);
      expect((await dst.load('r', Readable.from(['2\t1.25\n']))).rows).toBe(1);
    } finally {
      await sql(db, b, 'SET GLOBAL sql_notes = 1');
    }
    expect(await sql(db, b, 'SELECT k, CAST(x AS CHAR) FROM r')).toEqual([[2, '1.25']]);
  });
});

describe('MysqlSource: a server whose global sql_select_limit caps SELECTs', () => {
  it('still reads, digests, lists and compares every row', async () => {
    const a = await freshDb();
    const b = await freshDb();
    for (const d of [a, b]) {
      await sql(db, d, 'CREATE TABLE t (SEQNO INT PRIMARY KEY, V VARCHAR(20))');
      await sql(db, d, "INSERT INTO t SELECT seq, CONCAT('v', seq) FROM seq_1_to_5000");
    }
    await sql(db, b, "UPDATE t SET V = 'changed' WHERE SEQNO = 4000");
    for (let i = 0; i < 1005; i++) await sql(db, a, `CREATE TABLE extra_${i} (k INT)`);
    await sql(db, a, 'SET GLOBAL sql_select_limit = 1000');
    try {
      // Sessions opened now take the global: without the source's own setting, every SELECT stopped at 1000 rows in silence.
      await using sa = source(a);
      await using sb = source(b);
      expect((await dump(sa, 't', 'SEQNO')).toString().split('\n').length - 1).toBe(5000);
      expect((await sa.digestRange('t', 'SEQNO', undefined, undefined)).count).toBe(5000);
      expect((await sa.tables()).length).toBe(1006);
      const r = await Partitioner.compare(sa, sb, 't', { key: 'SEQNO' });
      expect(r.equal).toBe(false);
      expect(r.differences.map((x) => x.key)).toEqual([4000n]);
      const out = await mkdtemp(join(tmpdir(), 'stowage-limit-'));
      try {
        expect((await new Partitioner(sa, { table: 't', key: 'SEQNO', rowsPerPartition: 100_000, outDir: out }).dump()).rows).toBe(5000);
      } finally {
        await rm(out, { recursive: true, force: true });
      }
    } finally {
      await sql(db, a, 'SET GLOBAL sql_select_limit = DEFAULT');
    }
  });
});

describe('MysqlSource: more warnings than the OK packet counts (65535)', () => {
  // Five ENUM error values a row (one warning each, all expected) and, in the last row, a value too long for its column.
  const body = (rows: number, last: string): Buffer => Buffer.from(Array.from({ length: rows }, (_, k) => `${k + 1}\t\t\t\t\t\t${k + 1 === rows ? last : 'ok'}\n`).join(''));
  const table = "CREATE TABLE w (k INT PRIMARY KEY, e1 ENUM('a','b'), e2 ENUM('a','b'), e3 ENUM('a','b'), e4 ENUM('a','b'), e5 ENUM('a','b'), v VARCHAR(2))";

  it('refuses (EDB, nothing kept) a truncated value behind 65535 ENUM error values, which the capped count matched exactly', async () => {
    const b = await freshDb();
    await sql(db, b, table);
    await using dst = source(b);
    const err = await rejectsWith(dst.load('w', Readable.from([body(13107, 'abcdef')])), 'EDB');
    expect(err.message).toMatch(/65536 warning\(s\)/);
    expect(await sql(db, b, 'SELECT COUNT(*) FROM w')).toEqual([['0']]);
  });

  it('loads more than 65535 ENUM error values and nothing else wrong, which the capped count refused', async () => {
    const b = await freshDb();
    await sql(db, b, table);
    await using dst = source(b);
    expect((await dst.load('w', Readable.from([body(14000, 'ok')]))).rows).toBe(14000);
    expect(await sql(db, b, 'SELECT COUNT(*), SUM(e1 + e2 + e3 + e4 + e5) FROM w')).toEqual([['14000', '0']]);
  });
});

describe('MysqlSource: character sets', () => {
  it('refuses (EDB) to read a column whose character set does not come back byte for byte, instead of changing its bytes', async () => {
    const a = await freshDb();
    const c = await db.connect({ database: a, multipleStatements: true });
    // cp932's NEC and IBM codes for the same character: through Unicode, one of them comes back as the other.
    await c.query("CREATE TABLE cs (id INT PRIMARY KEY, sj VARCHAR(30) CHARACTER SET cp932, l VARCHAR(30) CHARACTER SET latin1, u VARCHAR(30) CHARACTER SET utf8mb4)");
    await c.query("INSERT INTO cs VALUES (1, CONVERT(_binary x'8790ed40fa40' USING cp932), 'Grüß', '大亚湾')");
    await c.end();
    await using src = source(a);
    const err = await rejectsWith(src.rows('cs', { key: 'id' }), 'EDB');
    expect(err.message).toMatch(/column\(s\) "sj" \(cp932\)/);
    expect(err.details['columns']).toEqual([{ name: 'sj', charset: 'cp932' }]);
    await rejectsWith(src.digestRange('cs', 'id', 1, 1), 'EDB');
    // The other columns read fine, and latin1 is carried.
    expect((await collect(await src.rows('cs', { key: 'id', columns: ['id', 'l', 'u'] }))).toString()).toBe('1\tGrüß\t大亚湾\n');
  });
});

describe('MysqlSource: a server that ignores the client\'s character set (--skip-character-set-client-handshake, latin1)', () => {
  let legacy: MariadbServer;
  beforeAll(async () => {
    legacy = await startMariadb({ extraArgs: ['--skip-character-set-client-handshake', '--character-set-server=latin1', '--collation-server=latin1_swedish_ci'] });
  });
  afterAll(async () => {
    await legacy?.stop();
  });

  it('reads and loads utf8mb4 text as utf8mb4, emoji included, and digests it as the modern server does', async () => {
    const c = await legacy.connect({ multipleStatements: true });
    // The test's own session asks for utf8mb4 explicitly, as the server ignores the handshake's.
    await c.query("SET NAMES utf8mb4; CREATE TABLE t (k INT PRIMARY KEY, v VARCHAR(20) CHARACTER SET utf8mb4, l VARCHAR(20) CHARACTER SET latin1); INSERT INTO t VALUES (1, 'Grüße 🚀', 'Grüße')");
    await c.end();
    await using old = new MysqlSource({ ...legacy.connectionConfig });
    const text = await collect(await old.rows('t', { key: 'k' }));
    expect(text.toString('utf8')).toBe('1\tGrüße 🚀\tGrüße\n');
    // Into the modern server, and back again: the same rows, the same digest.
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE t (k INT PRIMARY KEY, v VARCHAR(20) CHARACTER SET utf8mb4, l VARCHAR(20) CHARACTER SET latin1)');
    await using modern = source(a);
    expect((await modern.load('t', Readable.from([text]))).rows).toBe(1);
    expect(await modern.digestRange('t', 'k', 1, 1)).toEqual(await old.digestRange('t', 'k', 1, 1));
    // And loading into the legacy server keeps the emoji.
    expect((await old.load('t', Readable.from([Buffer.from('2\t大亚湾 🚀\tx\n')]))).rows).toBe(1);
    expect((await collect(await old.rows('t', { key: 'k', lo: 2, hi: 2 }))).toString('utf8')).toBe('2\t大亚湾 🚀\tx\n');
  });
});

describe('MysqlSource: createTable waiting on a lock', () => {
  it('rejects with the reason as soon as it is aborted, and the source stays usable', async () => {
    const a = await freshDb();
    const locker = await db.connect({ database: a });
    await locker.query('FLUSH TABLES WITH READ LOCK');
    try {
      await using src = source(a);
      const ac = new AbortController();
      const reason = new Error('operator stop');
      const t0 = performance.now();
      setTimeout(() => ac.abort(reason), 300);
      await expect(src.createTable('blocked', 'CREATE TABLE blocked (k INT PRIMARY KEY)', { signal: ac.signal })).rejects.toBe(reason);
      expect(performance.now() - t0).toBeLessThan(3000);
      await locker.query('UNLOCK TABLES');
      expect(await src.tables()).toEqual(expect.any(Array));
    } finally {
      await locker.query('UNLOCK TABLES').catch(() => {});
      await locker.end();
    }
  });
});

describe('MysqlSource: a table whose engine cannot roll back (MyISAM)', () => {
  it('refuses to replace rows it would lose on a failure, says which rows a failed load kept, and loads an empty range', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE my (k INT PRIMARY KEY, v VARCHAR(10)) ENGINE=MyISAM');
    await sql(db, a, "INSERT INTO my VALUES (1, 'old1'), (2, 'old2')");
    await using src = source(a);
    const refused = await rejectsWith(src.load('my', Readable.from([Buffer.from('1\tnew1\n')]), { replaceRange: { key: 'k', lo: 1, hi: 4 } }), 'EBAD_CONFIG');
    expect(refused.message).toMatch(/"my" is a MyISAM table, which cannot roll back.*nothing was changed\. Convert it \(ALTER TABLE `my` ENGINE=InnoDB\)/);
    expect(await sql(db, a, 'SELECT k, v FROM my ORDER BY k')).toEqual([[1, 'old1'], [2, 'old2']]);
    const failed = await rejectsWith(src.load('my', Readable.from([Buffer.from('3\tnew3\n4\tnew4\n1\tdup\n')])), 'EDB');
    expect(failed.message).toMatch(/the table is MyISAM, which cannot roll back: the 2 rows stored were kept/);
    expect(failed.details).toMatchObject({ kept: 2 });
    expect(await sql(db, a, 'SELECT k FROM my ORDER BY k')).toEqual([[1], [2], [3], [4]]);
    // An empty range has nothing to lose: replaced as usual.
    expect(await src.load('my', Readable.from([Buffer.from('10\tten\n')]), { replaceRange: { key: 'k', lo: 10, hi: 19 } })).toMatchObject({ rows: 1, deleted: 0 });
  });
});

describe('MysqlSource: ascii columns holding bytes 0x80-0xFF', () => {
  // A server stores any byte in an ascii column, strict sql_mode or not;
  // read as ascii, each of 0x80-0xFF comes out as `?`, and the copy would
  // hold 3F3F where the source holds 80FF, with equal digests.
  const HEX = 'SELECT k, HEX(a), HEX(c), HEX(t), HEX(e) FROM t ORDER BY k';

  async function asciiTable(): Promise<string> {
    const a = await freshDb();
    const c = await db.connect({ database: a, multipleStatements: true });
    await c.query(
      "SET sql_mode = 'STRICT_ALL_TABLES'; CREATE TABLE t (k BIGINT PRIMARY KEY, a VARCHAR(10) CHARACTER SET ascii, c CHAR(6) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '', t TEXT CHARACTER SET ascii, e ENUM('x', 'y z') CHARACTER SET ascii, u VARCHAR(10) CHARACTER SET utf8mb4)",
    );
    await c.query(
      "SET sql_mode = 'STRICT_ALL_TABLES'; INSERT INTO t VALUES (1, X'80FF', X'819D8D8F905C', X'00097F800A', 'y z', 'ü'), (2, 'plain', 'a?b', X'7461620968657265205C4E', 'x', NULL), (3, NULL, '', '', NULL, '?'), (4, '?', X'3F80', NULL, 'x', 'x')",
    );
    await c.end();
    expect((await sql(db, a, 'SELECT HEX(a) FROM t WHERE k = 1'))[0]).toEqual(['80FF']);
    return a;
  }

  it('dumps and loads an ascii column holding X\'80FF\' byte for byte: same hex on both sides, same digests, same dump', async () => {
    const a = await asciiTable();
    const b = await freshDb();
    await using src = source(a);
    await using dst = source(b);
    const text = await dump(src, 't', 'k');
    // The bytes travel as latin1 text: 0x80 is €, 0xFF is ÿ; plain ASCII as it is.
    expect(text.toString('utf8').split('\n')[0]).toBe('1\t€ÿ\t\u0081\u009d\u008d\u008f\u0090\\\\\t\\0\\t\x7f€\\n\ty z\tü');
    expect(text.toString('utf8').split('\n').slice(1)).toEqual(['2\tplain\ta?b\ttab\\there \\\\N\tx\t\\N', '3\t\\N\t\t\t\\N\t?', '4\t?\t?€\t\\N\tx\tx', '']);
    await dst.createTable('t', await src.schema('t'));
    expect((await dst.load('t', Readable.from([text]))).rows).toBe(4);
    const hex = await sql(db, b, HEX);
    expect(hex).toEqual(await sql(db, a, HEX));
    expect(hex[0]).toEqual(['1', '80FF', '819D8D8F905C', '00097F800A', '79207A']);
    expect((await dump(dst, 't', 'k')).equals(text)).toBe(true);
    expect(await dst.digestRange('t', 'k', undefined, undefined)).toEqual(await src.digestRange('t', 'k', undefined, undefined));
    expect(await dst.digestRange('t', 'k', 1, 1)).toEqual(await src.digestRange('t', 'k', 1, 1));
    // In a snapshot too, and with the columns option (reordered), on both sides.
    const some = await src.snapshot(async (r) => collect(await r.rows('t', { key: 'k', columns: ['t', 'k', 'a'] })));
    expect(some.toString('utf8').split('\n')[0]).toBe('\\0\\t\x7f€\\n\t1\t€ÿ');
    const c = await freshDb();
    await using part = source(c);
    await part.createTable('t', await src.schema('t'));
    expect((await part.load('t', Readable.from([some]), { columns: ['t', 'k', 'a'] })).rows).toBe(4);
    expect(await sql(db, c, 'SELECT k, HEX(a), HEX(t) FROM t ORDER BY k')).toEqual(await sql(db, a, 'SELECT k, HEX(a), HEX(t) FROM t ORDER BY k'));
  });

  it('tells two ascii values apart that differ only in a byte >= 0x80 (digests differ)', async () => {
    const a = await asciiTable();
    const b = await freshDb();
    await using src = source(a);
    await using dst = source(b);
    await dst.createTable('t', await src.schema('t'));
    await dst.load('t', Readable.from([await dump(src, 't', 'k')]));
    const c = await db.connect({ database: b });
    await c.query("UPDATE t SET a = X'80FE' WHERE k = 1");
    await c.end();
    expect(await dst.digestRange('t', 'k', 1, 1)).not.toEqual(await src.digestRange('t', 'k', 1, 1));
  });

  it('refuses (EDB, nothing kept) to load into an ascii column text with a character latin1 lacks', async () => {
    const a = await asciiTable();
    await using src = source(a);
    const before = await sql(db, a, HEX);
    const err = await rejectsWith(src.load('t', Readable.from([Buffer.from('5\tok\tok\t大\tx\tx\n')]), { replaceRange: { key: 'k', lo: 1, hi: 4 } }), 'EDB');
    expect(err.message).toMatch(/nothing was kept/);
    expect(await sql(db, a, HEX)).toEqual(before);
  });
});

describe('MysqlSource: escaping at every position', () => {
  it('escapes each special byte wherever it falls in a field, next to bytes that look special to the 4-byte test', async () => {
    // The row encoder copies 4 bytes at a time when none needs escaping:
    // a byte to escape (or a neighbour of one, 0x01..0x0e, 0x5b, 0x5d) at
    // every offset in values of every length up to 13 must come out as the
    // reference encoder writes it.
    const a = await freshDb();
    const c = await db.connect({ database: a });
    await c.query('CREATE TABLE w (k INT PRIMARY KEY, v VARBINARY(64), t VARCHAR(64) CHARACTER SET utf8mb4)');
    const specials = [0x00, 0x09, 0x0a, 0x0d, 0x5c, 0x01, 0x08, 0x0b, 0x0c, 0x0e, 0x1a, 0x5b, 0x5d, 0x7f, 0x80, 0xff];
    const rows: BulkField[][] = [];
    let k = 0;
    for (let len = 1; len <= 13; len++) {
      for (let at = 0; at < len; at++) {
        for (const b of specials) {
          const v = Buffer.alloc(len, 0x61 + (k % 26));
          v[at] = b;
          const t = b < 0x80 ? v.toString('latin1') : `${'é'.repeat(at % 3)}x${'ü'.repeat(len % 4)}`;
          rows.push([String(++k), v, t]);
        }
      }
    }
    for (let i = 0; i < rows.length; i += 500) {
      const part = rows.slice(i, i + 500);
      await c.query(`INSERT INTO w VALUES ${part.map(() => '(?, ?, ?)').join(', ')}`, part.flat());
    }
    await c.end();
    await using src = source(a);
    const got = await dump(src, 'w', 'k');
    const expected = Buffer.concat(rows.map(encodeBulkRow));
    expect(got.toString('latin1').split('\n')).toEqual(expected.toString('latin1').split('\n'));
    expect(got.equals(expected)).toBe(true);
  });
});

describe('MysqlSource: identifiers', () => {
  it('handles a table and columns named with quotes, backticks, backslashes, spaces and unicode', async () => {
    const a = await freshDb();
    const b = await freshDb();
    const table = 'we"ird tab`le';
    const key = 'SE`Q "NO';
    const cols = [key, "it's [x] \\", 'naïve ; DROP TABLE canary; --', '`'];
    await sql(db, a, 'CREATE TABLE canary (x INT)');
    await sql(db, a, `CREATE TABLE ${quoteMysqlIdent(table)} (${cols.map((c, i) => `${quoteMysqlIdent(c)} ${i === 0 ? 'BIGINT PRIMARY KEY' : 'TEXT'}`).join(', ')}, INDEX ${quoteMysqlIdent('idx `q`')} (${quoteMysqlIdent(cols[1]!)}(10)))`);
    for (let i = 1; i <= 5; i++) await sql(db, a, `INSERT INTO ${quoteMysqlIdent(table)} VALUES (?, ?, ?, ?)`, [i, `v${i}`, 'x', null]);
    await using src = source(a);
    await using dst = source(b);
    expect(await src.tables()).toEqual(['canary', table]);
    expect((await src.columns(table)).map((c) => c.name)).toEqual(cols);
    expect(await src.keyRange(table, key)).toEqual({ lo: 1n, hi: 5n, count: 5, nulls: 0 });
    const schema = await src.schema(table);
    expect(schema).toContain('KEY `idx ``q```');
    await dst.createTable(table, schema);
    await dst.load(table, await src.rows(table, { key, lo: 2, hi: 4 }));
    await dst.load(table, Readable.from([encodeBulkRow(['9', 'a', 'b', null])]), { replaceRange: { key, lo: 9, hi: 9 } });
    expect(await dst.keyRange(table, key)).toEqual({ lo: 2n, hi: 9n, count: 4, nulls: 0 });
    expect(await dst.digestRange(table, key, 2, 4)).toEqual(await src.digestRange(table, key, 2, 4));
    expect(await dst.tables()).toEqual([table]);
    // Nothing from a name reached SQL unquoted: the canary table is still there.
    expect(await src.tables()).toEqual(['canary', table]);
  });

  it('treats names that look like SQL as names', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE canary (x INT)');
    await using src = source(a);
    const evil = ['canary` WHERE 1; DROP TABLE canary; -- ', "canary'; DROP TABLE canary; --", 'canary\\', 'canary`'];
    for (const name of evil) {
      await rejectsWith(src.columns(name), 'ENO_TABLE');
      await rejectsWith(src.rows(name, { key: 'x' }), 'ENO_TABLE');
      await rejectsWith(src.keyRange('canary', name), 'ENO_TABLE');
      await rejectsWith(src.load('canary', Readable.from([]), { replaceRange: { key: name, lo: 1, hi: 2 } }), 'ENO_TABLE');
    }
    expect(await src.tables()).toEqual(['canary']);
  });

  it('quotes by MySQL rules and refuses names it cannot carry', () => {
    expect(quoteMysqlIdent('we"ird tab`le')).toBe('`we"ird tab``le`');
    expect(quoteMysqlIdent('``')).toBe('``````');
    throwsWith(() => quoteMysqlIdent(''), 'EBAD_CONFIG');
    throwsWith(() => quoteMysqlIdent('a\0b'), 'EBAD_CONFIG');
  });
});

describe('MysqlSource: tables, keys and ranges', () => {
  it('lists base tables only, leaves generated columns out, finds key columns case-insensitively', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE b (id INT PRIMARY KEY, x INT, twice INT AS (x * 2) VIRTUAL, thrice INT AS (x * 3) STORED, y TEXT)');
    await sql(db, a, 'CREATE TABLE a (SeqNo INT)');
    await sql(db, a, 'CREATE VIEW v AS SELECT * FROM a');
    await sql(db, a, "INSERT INTO b (id, x, y) VALUES (1, 21, 'z')");
    await using src = source(a);
    expect(await src.tables()).toEqual(['a', 'b']);
    expect((await rejectsWith(src.columns('v'), 'ENO_TABLE')).message).toMatch(/"v" in .* is a view, not a table this source reads or loads: .*dump the tables it reads/);
    await sql(db, a, 'CREATE TABLE hist (id INT PRIMARY KEY) WITH SYSTEM VERSIONING');
    expect((await rejectsWith(src.keyRange('hist', 'id'), 'ENO_TABLE')).message).toMatch(/is a system-versioned table .*mariadb-dump/);
    expect(await src.tables()).toEqual(['a', 'b']);
    expect(await src.columns('b')).toEqual([
      { name: 'id', type: 'int(11)', nullable: false, primaryKey: 1 },
      { name: 'x', type: 'int(11)', nullable: true, primaryKey: 0 },
      { name: 'y', type: 'text', nullable: true, primaryKey: 0 },
    ]);
    const text = await collect(await src.rows('b', { key: 'ID' }));
    expect(text.toString()).toBe('1\t21\tz\n');
    await using dst = source(await freshDb());
    await dst.createTable('b', await src.schema('b'));
    await dst.load('b', Readable.from([text]));
    expect(await sql(db, dst.database, 'SELECT twice, thrice FROM b')).toEqual([[42, 63]]);
    expect(await src.keyRange('a', 'seqno')).toEqual({ lo: null, hi: null, count: 0, nulls: 0 });
  });

  it('reports NULL keys, and refuses a key that is not an integer column', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE n (k INT, v TEXT, d DOUBLE, s VARCHAR(9))');
    await sql(db, a, "INSERT INTO n VALUES (NULL, 'a', 1, 'x'), (3, 'b', 2, 'y'), (NULL, 'c', 3, 'z'), (-7, 'd', 4, 'w')");
    await using src = source(a);
    expect(await src.keyRange('n', 'k')).toEqual({ lo: -7n, hi: 3n, count: 2, nulls: 2 });
    expect((await collect(await src.rows('n', { key: 'k' }))).toString()).toBe('-7\td\t4\tw\n3\tb\t2\ty\n');
    for (const col of ['d', 's', 'v']) {
      const err = await rejectsWith(src.keyRange('n', col), 'EBAD_CONFIG');
      expect(err.message).toMatch(/not an integer column/);
      await rejectsWith(src.rows('n', { key: col }), 'EBAD_CONFIG');
    }
  });

  itSelectsInclusiveRanges(freshDb, (database, text) => sql(db, database, text), (database) => source(database), 'CREATE TABLE p (SEQNO BIGINT NOT NULL, RC INT NOT NULL, v TEXT, PRIMARY KEY (RC, SEQNO))');
  itFindsNextKey(freshDb, (database, text) => sql(db, database, text), (database) => source(database), 'CREATE TABLE p (SEQNO BIGINT NOT NULL, RC INT NOT NULL, v TEXT, PRIMARY KEY (RC, SEQNO))');
  itProbesKeys(freshDb, (database, text) => sql(db, database, text), (database) => source(database), {
    p: 'CREATE TABLE p (SEQNO BIGINT NOT NULL, RC INT NOT NULL, v TEXT, PRIMARY KEY (RC, SEQNO))',
    more: [
      'CREATE TABLE q (k BIGINT NULL, v TEXT, KEY (k))',
      "INSERT INTO q VALUES (10, 'a'), (NULL, 'n'), (20, 'b'), (30, 'c')",
      'CREATE TABLE d (SEQNO BIGINT NOT NULL PRIMARY KEY, v TEXT)',
      "INSERT INTO d SELECT seq, 'x' FROM seq_1_to_1000",
    ],
  });
});

describe('MysqlSource: errors', () => {
  it('ENO_TABLE for a missing table or key column, everywhere', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE t (k INT, v TEXT)');
    await using src = source(a);
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

  it('EBAD_CONFIG for bad options, names, bounds and connection settings', async () => {
    await using src = source();
    await rejectsWith(src.rows('t', { key: 'k', lo: 3, hi: 2 }), 'EBAD_CONFIG');
    await rejectsWith(src.rows('t', { key: 'k', lo: 2 ** 53 }), 'EBAD_CONFIG');
    await rejectsWith(src.rows('t', { key: 'k', hi: 1n << 64n }), 'EBAD_CONFIG');
    await rejectsWith(src.rows('t', { key: 'k', limit: 3 } as never), 'EBAD_CONFIG');
    await rejectsWith(src.rows('', { key: 'k' }), 'EBAD_CONFIG');
    await rejectsWith(src.rows('t\0', { key: 'k' }), 'EBAD_CONFIG');
    await rejectsWith(src.keyRange('t', 'k', { sginal: undefined } as never), 'EBAD_CONFIG');
    await rejectsWith(src.load('t', Readable.from([]), { replaceRange: { key: 'k', lo: 1 } as never }), 'EBAD_CONFIG');
    await rejectsWith(src.load('t', 'not a stream' as never), 'EBAD_CONFIG');
    await rejectsWith(src.snapshot('x' as never), 'EBAD_CONFIG');
    await rejectsWith(src.createTable('t2', '  '), 'EBAD_CONFIG');
    const err = throwsWith(() => new MysqlSource({ ...db.connectionConfig, pasword: 'x' } as never), 'EBAD_CONFIG');
    expect(err.message).toMatch(/Did you mean "password"/);
    throwsWith(() => new MysqlSource({ host: '127.0.0.1' } as never), 'EBAD_CONFIG');
    throwsWith(() => new MysqlSource(db.connectionConfig, { poolSize: 0 }), 'EBAD_CONFIG');
    throwsWith(() => new MysqlSource('postgres://x@y/z'), 'EBAD_CONFIG');
    throwsWith(() => new MysqlSource(42 as never), 'EBAD_CONFIG');
  });

  it('takes a mysql:// URI and names itself without the password', async () => {
    await using src = new MysqlSource(db.uri);
    expect(src.name).toBe(`mysql://${db.user}@127.0.0.1:${db.port}/${db.database}`);
    expect(src.name).not.toContain(db.password);
    expect(await src.tables()).toContain(ALL_TYPES_TABLE);
    await using named = new MysqlSource(db.uri, { name: 'conditions' });
    expect(named.name).toBe('conditions');
  });

  itTimesOutOnSilentServer((port) => new MysqlSource({ host: '127.0.0.1', port, user: 'x', password: 'y', database: 'z', connectTimeoutMs: 300 }));

  it('ECONNECT when nothing listens, EAUTH for a wrong password, with the driver error as cause', async () => {
    const port = await freePort();
    await using nobody = new MysqlSource({ host: '127.0.0.1', port, user: 'x', database: 'y', connectTimeoutMs: 5000 });
    const e1 = await rejectsWith(nobody.tables(), 'ECONNECT');
    expect(e1.retryable).toBe(true);
    expect((e1.cause as { code?: string }).code).toBe('ECONNREFUSED');
    expect(e1.details.driverCode).toBe('ECONNREFUSED');
    await using wrong = new MysqlSource({ ...db.connectionConfig, password: 'wrong' });
    const e2 = await rejectsWith(wrong.tables(), 'EAUTH');
    expect((e2.cause as { code?: string }).code).toBe('ER_ACCESS_DENIED_ERROR');
  });

  it('EDB with the driver code for SQL the server refuses; a closed source refuses everything', async () => {
    const a = await freshDb();
    const src = source(a);
    const err = await rejectsWith(src.createTable('x', 'CREATE TABLEX x (a INT)'), 'EDB');
    expect(err.details.driverCode).toBe('ER_PARSE_ERROR');
    expect(err.details.errno).toBe(1064);
    expect((err.cause as { sqlState?: string }).sqlState).toBe('42000');
    await rejectsWith(src.createTable('x', 'CREATE TABLE x (a INT); DROP TABLE y'), 'EDB');
    await rejectsWith(src.createTable('x', 'CREATE TABLE other (a INT)'), 'ENO_TABLE');
    await src.createTable('x', 'CREATE TABLE x (a INT);\n');
    await rejectsWith(src.createTable('x', 'CREATE TABLE x (a INT)'), 'EEXIST');
    expect(await src.tables()).toEqual(['other', 'x']);
    await src.close();
    await src.close();
    await rejectsWith(src.tables(), 'EDB');
    await rejectsWith(src.rows('x', { key: 'a' }), 'EDB');
    await rejectsWith(src.load('x', Readable.from([])), 'EDB');
  });
});

describe('MysqlSource: load', () => {
  async function table(): Promise<MysqlSource> {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE t (k INT PRIMARY KEY, v VARCHAR(8), n TINYINT)');
    await sql(db, a, "INSERT INTO t VALUES (1, 'one', 1)");
    return source(a);
  }
  const rowsOf = async (src: MysqlSource): Promise<string> => (await collect(await src.rows('t', { key: 'k' }))).toString();

  it('rolls back everything on malformed input, a duplicate key, or a value the column cannot hold', async () => {
    await using src = await table();
    const good = Buffer.concat([encodeBulkRow(['2', 'two', '2']), encodeBulkRow(['3', 'three', '3'])]);
    const cases: [string, Buffer[], RegExp][] = [
      ['too few fields', [good, Buffer.from('4\tfour\n')], /row 3: expected 3 fields, found 2/],
      ['too many fields', [good, Buffer.from('4\tfour\t4\textra\n')], /row 3: expected 3 fields, found 4/],
      ['bad escape', [good, Buffer.from('4\t\\q\t4\n')], /unknown escape \\q/],
      ['\\N inside a field', [good, Buffer.from('4\tx\\N\t4\n')], /\\N inside a longer field/],
      ['truncated', [good, Buffer.from('4\tfo')], /truncated/],
      ['duplicate key', [good, encodeBulkRow(['1', 'again', '1'])], /stored 2 of 3 rows.*Duplicate entry '1'/],
      ['too long for VARCHAR(8)', [good, encodeBulkRow(['4', 'much too long', '4'])], /Data too long|truncated/i],
      ['out of range', [good, encodeBulkRow(['4', 'x', '300'])], /Out of range/i],
      ['not a number', [good, encodeBulkRow(['4', 'x', 'abc'])], /Incorrect integer value/i],
    ];
    for (const [what, chunks, re] of cases) {
      const input = Readable.from(chunks);
      const err = await rejectsWith(src.load('t', input), 'EDB');
      expect(err.message, what).toMatch(re);
      expect(await rowsOf(src), what).toBe('1\tone\t1\n');
      expect(input.destroyed, what).toBe(true);
    }
    expect((await src.load('t', Readable.from([good]))).rows).toBe(2);
    expect(await rowsOf(src)).toBe('1\tone\t1\n2\ttwo\t2\n3\tthree\t3\n');
  });

  itReplacesRange(table, (src) => rowsOf(src as MysqlSource));

  itLoadsNamedColumns(table, (src) => rowsOf(src as MysqlSource));

  itReadsNamedColumns(table);

  itReportsDigestProgress(table);

  it('loads from any async iterable of chunks, split anywhere, and reads the escapes other engines write', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE t (k INT PRIMARY KEY, v TEXT, b BLOB)');
    await using src = source(a);
    const text = Buffer.concat([encodeBulkRow(['1', 'tab\there\\', Buffer.from([0, 0x5c, 0x0a, 0xff])]), encodeBulkRow(['2', 'ünï', null]), encodeBulkRow(['3', '\\N', ''])]);
    expect((await src.load('t', chunked(text, 1))).rows).toBe(3);
    expect((await collect(await src.rows('t', { key: 'k' }))).equals(text)).toBe(true);
    // \b \f \v \Z, as PostgreSQL or MySQL may write them, are the bytes they stand for.
    await src.load('t', Readable.from([Buffer.from('4\ta\\bb\\fc\\vd\\Ze\\0f\t\\N\n')]));
    expect(await sql(db, a, 'SELECT HEX(v) FROM t WHERE k = 4')).toEqual([['6108620C630B641A650066']]);
  });

  it('sends all-UTF-8 tables as binary text and others as utf8mb4, the same values stored; text that is not UTF-8 fails either way, nothing kept', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE u (k INT PRIMARY KEY, v VARCHAR(20) CHARACTER SET utf8mb4, m VARCHAR(20) CHARACTER SET utf8mb3, j JSON, e ENUM(\'ü\', \'🚀\') CHARACTER SET utf8mb4, b BLOB, d DOUBLE)');
    await sql(db, a, 'CREATE TABLE l (k INT PRIMARY KEY, v VARCHAR(20) CHARACTER SET utf8mb4, l VARCHAR(20) CHARACTER SET latin1)');
    await using src = source(a);
    const cols = async (t: string): Promise<ReturnType<typeof mysqlLoadColumns>> => {
      const c = await db.connect({ database: a });
      try {
        // The callback connection under mysql2's promise wrapper, which the source's helpers take.
        const info = await mysqlTableInfo('test', (c as unknown as { connection: Parameters<typeof mysqlTableInfo>[1] }).connection, t);
        return mysqlLoadColumns(info, info.columns.map((_, i) => i));
      } finally {
        await c.end();
      }
    };
    expect((await cols('u')).charset).toBe('binary');
    expect((await cols('l')).charset).toBe('utf8mb4');
    // What the server is sent, from its general query log (the choice above once went unused).
    await sql(db, a, "SET GLOBAL log_output = 'TABLE'");
    await sql(db, a, 'TRUNCATE TABLE mysql.general_log');
    await sql(db, a, 'SET GLOBAL general_log = 1');
    const u = Buffer.concat([encodeBulkRow(['1', 'Grüße 🚀', 'naïve', '{"a": "€"}', '🚀', Buffer.from([0xc3, 0x28, 0x00, 0xff]), '0.1']), encodeBulkRow(['2', '', null, null, 'ü', '', '-0.5'])]);
    const l = encodeBulkRow(['1', 'Grüße 🚀', 'Grüße']);
    try {
      expect((await src.load('u', Readable.from([u]))).rows).toBe(2);
      expect((await src.load('l', Readable.from([l]))).rows).toBe(1);
    } finally {
      await sql(db, a, 'SET GLOBAL general_log = 0');
    }
    const sent = (await sql(db, a, "SELECT CONVERT(argument USING utf8mb4) FROM mysql.general_log WHERE argument LIKE 'LOAD DATA%' ORDER BY event_time")).map((r) => String(r[0]).match(/INTO TABLE `(\w+)` CHARACTER SET (\w+)/)?.slice(1));
    expect(sent).toEqual([
      ['u', 'binary'],
      ['l', 'utf8mb4'],
    ]);
    expect((await collect(await src.rows('u', { key: 'k' }))).equals(u)).toBe(true);
    expect((await collect(await src.rows('l', { key: 'k' }))).equals(l)).toBe(true);
    expect(await sql(db, a, 'SELECT HEX(l) FROM l')).toEqual([['4772FC DF65'.replace(' ', '')]]);
    // Malformed UTF-8 (C3 28), and a 4-byte character where only 3 fit (utf8mb3): refused, nothing kept.
    const bad = Buffer.from([0x33, 0x09, 0xc3, 0x28, 0x09, 0x5c, 0x4e, 0x09, 0x5c, 0x4e, 0x09, 0x5c, 0x4e, 0x09, 0x5c, 0x4e, 0x09, 0x31, 0x0a]);
    for (const [t, input] of [
      ['u', bad],
      ['u', encodeBulkRow(['3', 'ok', '🚀', null, null, null, '1'])],
      ['l', Buffer.from([0x32, 0x09, 0xc3, 0x28, 0x09, 0x5c, 0x4e, 0x0a])],
    ] as const) {
      const err = await rejectsWith(src.load(t, Readable.from([Buffer.concat([encodeBulkRow(t === 'u' ? ['9', 'fine', null, null, null, null, '9'] : ['9', 'fine', null]), input])])), 'EDB');
      expect(err.message).toMatch(/Incorrect string value/i);
    }
    expect(await sql(db, a, 'SELECT COUNT(*) FROM u')).toEqual([['2']]);
    expect(await sql(db, a, 'SELECT COUNT(*) FROM l')).toEqual([['1']]);
  });

  it('refuses a source whose server disallows LOCAL INFILE with a clear EDB', async () => {
    const off = await startMariadb({ extraArgs: ['--local-infile=0'] });
    try {
      await using src = new MysqlSource(off.connectionConfig);
      await src.createTable('t', 'CREATE TABLE t (k INT)');
      const input = Readable.from([Buffer.from('1\n')]);
      const err = await rejectsWith(src.load('t', input), 'EDB');
      expect(err.details.errno).toBe(4166);
      expect(err.message).toMatch(/set local_infile = 1 on the server/);
      expect(input.destroyed).toBe(true);
      expect(await src.keyRange('t', 'k')).toEqual({ lo: null, hi: null, count: 0, nulls: 0 });
    } finally {
      await off.stop();
    }
  });
});
