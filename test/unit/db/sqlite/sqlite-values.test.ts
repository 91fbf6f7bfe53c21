import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { decodeSqliteField, encodeSqliteValue, sqliteColumnKind, sqliteNumberOf, sqliteRealText, sqliteTextAffinity } from '../../../../src/db/sqlite/sqlite-values.js';
import { throwsWith } from '../helpers.js';

describe('SQLite value texts', () => {
  it('finds TEXT affinity by SQLite rules', () => {
    for (const t of ['TEXT', 'varchar(255)', 'NCHAR(3)', 'CLOB', 'character varying']) expect(sqliteTextAffinity(t), t).toBe(true);
    for (const t of ['', 'INTEGER', 'BLOB', 'REAL', 'NUMERIC', 'DECIMAL(10,2)', 'ANY', 'POINT TEXT' /* INT wins */, 'DATETIME']) expect(sqliteTextAffinity(t), t).toBe(false);
    const kinds = Object.fromEntries(['TEXT', 'INTEGER', 'bigint', 'REAL', 'double', 'NUMERIC', 'DATETIME', 'BLOB', '', 'any', 'POINT TEXT'].map((t) => [t, sqliteColumnKind(t)]));
    expect(kinds).toEqual({ TEXT: 'text', INTEGER: 'numeric', bigint: 'numeric', REAL: 'numeric', double: 'numeric', NUMERIC: 'numeric', DATETIME: 'numeric', BLOB: 'none', '': 'none', any: 'none', 'POINT TEXT': 'numeric' });
  });

  it('writes REALs so they read back to the same bits and never as integers', () => {
    const cases: [number, string][] = [
      [0, '0.0'],
      [-0, '-0.0'],
      [3, '3.0'],
      [-12, '-12.0'],
      [0.1 + 0.2, '0.30000000000000004'],
      [1e21, '1e+21'],
      [5e-324, '5e-324'],
      [1.7976931348623157e308, '1.7976931348623157e+308'],
      [Infinity, 'Infinity'],
      [-Infinity, '-Infinity'],
    ];
    for (const [x, s] of cases) {
      expect(sqliteRealText(x)).toBe(s);
      expect(Object.is(sqliteNumberOf(s), x), s).toBe(true);
    }
  });

  it('reads only canonical int64 and REAL texts as numbers', () => {
    expect(sqliteNumberOf('9223372036854775807')).toBe(9223372036854775807n);
    expect(sqliteNumberOf('-9223372036854775808')).toBe(-9223372036854775808n);
    for (const s of ['9223372036854775808', '007', '-0', '+1', '1.50', '1.', '.5', '1e5', '0x10', ' 1', 'NaN', 'inf', '', 'abc']) expect(sqliteNumberOf(s), s).toBeUndefined();
  });

  it('tags BLOBs with \\x and ambiguous TEXT with \\s, only where needed', () => {
    expect(encodeSqliteValue(Buffer.from([0, 255]), false)).toBe('\\x00ff');
    expect(encodeSqliteValue(new Uint8Array(0), true)).toBe('\\x');
    expect(encodeSqliteValue('123', true)).toBe('123');
    expect(encodeSqliteValue('123', false)).toBe('\\s123');
    expect(encodeSqliteValue('1.50', false)).toBe('1.50');
    expect(encodeSqliteValue('\\x41', true)).toBe('\\s\\x41');
    expect(encodeSqliteValue('\\', true)).toBe('\\s\\');
    expect(encodeSqliteValue(null, false)).toBeNull();
    expect(encodeSqliteValue(-5n, false)).toBe('-5');
    throwsWith(() => encodeSqliteValue(NaN, false), 'EDB');
  });

  it('decodes what it encodes, to the same storage class, in every affinity', () => {
    const values = [null, 0n, -1n, 9223372036854775807n, 0, -0, 1.5, 3, Infinity, '', '0', '123', '-0', '1.0', 'Infinity', '\\', '\\x00', '\\s', 'abc', Buffer.from([]), Buffer.from([1, 2, 254])];
    for (const text of [true, false]) {
      for (const v of values) {
        if (text && (typeof v === 'bigint' || typeof v === 'number')) continue; // a TEXT column never holds numbers
        const back = decodeSqliteField(encodeSqliteValue(v, text), text, 1);
        if (typeof v === 'number') expect(Object.is(back, v), `${v} text=${text}`).toBe(true);
        else expect(back, `${String(v)} text=${text}`).toEqual(v);
      }
    }
  });

  it('refuses malformed tagged fields with EDB', () => {
    throwsWith(() => decodeSqliteField('\\xzz', false, 3), 'EDB');
    throwsWith(() => decodeSqliteField('\\x0', false, 3), 'EDB');
    const err = throwsWith(() => decodeSqliteField('\\q', true, 3), 'EDB');
    expect(err.message).toMatch(/row 3/);
  });

  it('agrees with SQLite: binding the decoded value stores the original cell', () => {
    const db = new Database(':memory:');
    db.defaultSafeIntegers(true);
    db.exec('CREATE TABLE t (i INTEGER, r REAL, n NUMERIC, x TEXT, b BLOB, a)');
    const cols = ['INTEGER', 'REAL', 'NUMERIC', 'TEXT', 'BLOB', ''];
    const ins = db.prepare('INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)');
    const inputs = [1n, 2.5, -0, 'text', '42', '4.0', Buffer.from('hi'), 'Infinity', Infinity, null, '  7 ', 9007199254740993n, -9223372036854775808n, 123456789012345n, 3];
    for (const v of inputs) ins.run(v, v, v, v, v, v);
    const before = db.prepare('SELECT * FROM t ORDER BY rowid').raw(true).all() as unknown[][];
    db.exec('DELETE FROM t');
    for (const row of before) ins.run(...row.map((v, i) => decodeSqliteField(encodeSqliteValue(v as never, sqliteTextAffinity(cols[i]!)), sqliteColumnKind(cols[i]!), 1)));
    const after = db.prepare('SELECT * FROM t ORDER BY rowid').raw(true).all() as unknown[][];
    const typed = (rows: unknown[][]): string[][] => rows.map((r) => r.map((v) => `${typeof v}:${Object.is(v, -0) ? '-0' : Buffer.isBuffer(v) ? v.toString('hex') : String(v)}`));
    expect(typed(after)).toEqual(typed(before));
    db.close();
  });
});

describe('SQLite dump fast path', () => {
  it('selects and finishes every value exactly as the reference encoder does', async () => {
    const { sqliteSelectExpr, sqliteWireField } = await import('../../../../src/db/sqlite/sqlite-values.js');
    const { escapeBulkText } = await import('../../../../src/db/index.js');
    const db = new Database(':memory:');
    const types = ['INTEGER', 'REAL', 'NUMERIC', 'TEXT', 'BLOB', ''];
    db.exec(`CREATE TABLE t (${types.map((t, i) => `c${i} ${t}`).join(', ')})`);
    const ins = db.prepare(`INSERT INTO t VALUES (${types.map(() => '?').join(', ')})`);
    const values = [null, 0n, -1n, 9223372036854775807n, -9223372036854775808n, 0, -0, 2.5, 1e300, -Infinity, '', 'x', '\u0001lead', '\\back', 'tab\t', '123', '1.0', Buffer.from([]), Buffer.from([1, 0x5c, 0xff]), 'ünï'];
    for (const v of values) ins.run(...types.map(() => v));
    const raw = db.prepare('SELECT * FROM t ORDER BY rowid').raw(true).safeIntegers(true).all() as unknown[][];
    const fast = db
      .prepare(`SELECT ${types.map((t, i) => sqliteSelectExpr(`"c${i}"`, sqliteTextAffinity(t))).join(', ')} FROM t ORDER BY rowid`)
      .raw(true)
      .safeIntegers(true)
      .all() as unknown[][];
    expect(fast).toHaveLength(values.length);
    fast.forEach((row, r) =>
      row.forEach((v, i) => {
        const aff = sqliteTextAffinity(types[i]!);
        const ref = encodeSqliteValue(raw[r]![i] as never, aff);
        expect(sqliteWireField(v, aff), `row ${r} col ${types[i]}`).toBe(ref === null ? '\\N' : escapeBulkText(ref));
      }),
    );
    db.close();
  });
});
