import { describe, expect, it } from 'vitest';
import { PartitionGrid, formatBound, parsePartitionFileName, partitionFileName, tableDirName } from '../../../src/partition/index.js';
import { parseManifest, formatManifest } from '../../../src/partition/manifest.js';
import { throwsWith } from './helpers.js';

describe('PartitionGrid', () => {
  it('cuts SEQNO into 1-10000, 10001-20000, ... by default base 1', () => {
    const g = new PartitionGrid(10000n, 1n);
    expect([g.indexOf(1n), g.indexOf(10000n), g.indexOf(10001n), g.indexOf(20000n), g.indexOf(20001n)]).toEqual([0n, 0n, 1n, 1n, 2n]);
    expect([g.lo(0n), g.hi(0n), g.lo(1n), g.hi(1n)]).toEqual([1n, 10000n, 10001n, 20000n]);
    expect(g.isPartition(10001n, 20000n)).toBe(true);
    expect(g.isPartition(10000n, 19999n)).toBe(false);
    expect(g.isPartition(1n, 5000n)).toBe(false);
  });

  it('puts keys below the base in negative partitions (floor division)', () => {
    const g = new PartitionGrid(100n, 1n);
    expect(g.indexOf(0n)).toBe(-1n);
    expect([g.lo(-1n), g.hi(-1n)]).toEqual([-99n, 0n]);
    expect(g.indexOf(-99n)).toBe(-1n);
    expect(g.indexOf(-100n)).toBe(-2n);
    const z = new PartitionGrid(10n, 0n);
    expect([z.lo(0n), z.hi(0n), z.indexOf(-1n), z.indexOf(9n), z.indexOf(10n)]).toEqual([0n, 9n, -1n, 0n, 1n]);
  });

  it('clamps the first and last partitions to the 64-bit key space', () => {
    const g = new PartitionGrid(10000n, 1n);
    const top = (1n << 64n) - 1n;
    expect(g.hi(g.indexOf(top))).toBe(top);
    const bottom = -(1n << 63n);
    expect(g.lo(g.indexOf(bottom))).toBe(bottom);
  });

  it('refuses an empty partition size', () => {
    throwsWith(() => new PartitionGrid(0n, 1n), 'EBAD_CONFIG');
  });
});

describe('archive names', () => {
  it('zero-pads both bounds to 10 digits', () => {
    expect(partitionFileName(1n, 10000n)).toBe('0000000001-0000010000.tar.gz');
    expect(partitionFileName(-99n, 0n)).toBe('-0000000099-0000000000.tar.gz');
    expect(partitionFileName(999999999901n, 1000000000000n)).toBe('999999999901-1000000000000.tar.gz');
    expect(formatBound(-(1n << 63n))).toBe('-9223372036854775808');
  });

  it('reads the bounds back, and nothing from names that are not partition archives', () => {
    for (const [lo, hi] of [
      [1n, 10000n],
      [-99n, 0n],
      [999999999901n, 1000000000000n],
    ] as const) {
      expect(parsePartitionFileName(partitionFileName(lo, hi))).toEqual({ lo, hi });
    }
    for (const n of ['0000000001-0000010000.tar.gz.dna', '0000000001-0000010000.tar.gz.part', '1-10000.tar.gz', '0000010000-0000000001.tar.gz', 'x.tar.gz', '00000000001-0000010000.tar.gz']) {
      expect(parsePartitionFileName(n), n).toBeUndefined();
    }
  });

  it('encodes table names into safe, distinct folder names', () => {
    expect(tableDirName('CalibPmtSpecVld')).toBe('CalibPmtSpecVld');
    expect(tableDirName('we"ird tab`le')).toBe('we%22ird%20tab%60le');
    expect(tableDirName('..')).toBe('%2E.');
    expect(tableDirName('.hidden')).toBe('%2Ehidden');
    expect(tableDirName('a/b')).toBe('a%2Fb');
    expect(tableDirName('50%')).toBe('50%25');
    expect(tableDirName('ünï')).toBe('%C3%BCn%C3%AF');
    // A folder LOCKED is a lock to sync, DnaDigest.scan and retention.
    expect(tableDirName('LOCKED')).toBe('%4COCKED');
    expect(tableDirName('%4COCKED')).toBe('%254COCKED');
    expect(tableDirName('Locked')).toBe('Locked');
    const names = ['a b', 'a%20b', 'a_b', 'A b', 'a.b', '%2E', '.'];
    expect(new Set(names.map(tableDirName)).size).toBe(names.length);
    for (const n of names) expect(tableDirName(n)).toMatch(/^[A-Za-z0-9_%-][A-Za-z0-9_.%-]*$/);
  });
});

describe('parseManifest', () => {
  const good = {
    format: 'stowage-partition',
    version: 1,
    engine: 'sqlite',
    source: 'sqlite:/x.db',
    key: 'SEQNO',
    lo: '1',
    hi: '100',
    rowsPerPartition: '100',
    base: '1',
    complete: true,
    created: '2024-05-01T00:00:00.000Z',
    tables: [{ name: 'T', schema: 'T/schema.sql', rows: 'T/rows.tsv', columns: ['SEQNO', 'V'], keyIndex: 0, count: 2, bytes: 10, digest: 'd41d8cd98f00b204e9800998ecf8427e' }],
  };

  it('reads a well-formed manifest with bigint bounds', () => {
    const m = parseManifest(JSON.stringify({ ...good, lo: '9007199254740993', hi: '9007199254741092' }), 'a.tar.gz');
    expect(m.lo).toBe(9007199254740993n);
    expect(m.hi).toBe(9007199254741092n);
    expect(m.tables[0]!.columns).toEqual(['SEQNO', 'V']);
    expect(m.created.toISOString()).toBe('2024-05-01T00:00:00.000Z');
    // Archives written before the rows' sha256 was recorded have none; later ones carry it.
    expect(m.tables[0]!.sha256).toBeUndefined();
    const sha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
    expect(parseManifest(JSON.stringify({ ...good, tables: [{ ...good.tables[0], sha256 }] }), 'a.tar.gz').tables[0]!.sha256).toBe(sha256);
    // So with the columns' types (SQLite's may be empty: a column declared without one).
    expect(m.tables[0]!.types).toBeUndefined();
    const typed = parseManifest(JSON.stringify({ ...good, tables: [{ ...good.tables[0], types: ['INTEGER', ''] }] }), 'a.tar.gz');
    expect(typed.tables[0]!.types).toEqual(['INTEGER', '']);
    expect(parseManifest(formatManifest(typed), 'a.tar.gz').tables[0]!.types).toEqual(['INTEGER', '']);
  });

  it.each([
    ['not JSON', '{'],
    ['another format', JSON.stringify({ ...good, format: 'x' })],
    ['a newer version', JSON.stringify({ ...good, version: 2 })],
    ['an unknown engine', JSON.stringify({ ...good, engine: 'oracle' })],
    ['lo > hi', JSON.stringify({ ...good, lo: '5', hi: '4' })],
    ['no tables', JSON.stringify({ ...good, tables: [] })],
    ['a bad digest', JSON.stringify({ ...good, tables: [{ ...good.tables[0], digest: 'xyz' }] })],
    ['a bad sha256', JSON.stringify({ ...good, tables: [{ ...good.tables[0], sha256: 'd41d8cd98f00b204e9800998ecf8427e' }] })],
    ['a sha256 that is not a string', JSON.stringify({ ...good, tables: [{ ...good.tables[0], sha256: null }] })],
    ['keyIndex out of range', JSON.stringify({ ...good, tables: [{ ...good.tables[0], keyIndex: 2 }] })],
    ['a type list of another length', JSON.stringify({ ...good, tables: [{ ...good.tables[0], types: ['INTEGER'] }] })],
    ['a type that is not a string', JSON.stringify({ ...good, tables: [{ ...good.tables[0], types: ['INTEGER', 5] }] })],
    ['a table twice', JSON.stringify({ ...good, tables: [good.tables[0], good.tables[0]] })],
    ['a bad date', JSON.stringify({ ...good, created: 'yesterday' })],
  ])('refuses %s as ECORRUPT_ARCHIVE', (_what, text) => {
    const err = throwsWith(() => parseManifest(text, '/b/a.tar.gz'), 'ECORRUPT_ARCHIVE');
    expect(err.message).toContain('/b/a.tar.gz');
  });
});
