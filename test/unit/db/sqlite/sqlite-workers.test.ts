import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { TableReader } from '../../../../src/db/index.js';
import { SqliteSource, quoteSqliteIdent } from '../../../../src/db/sqlite/index.js';
import { StowageError } from '../../../../src/errors.js';
import { ALL_TYPES_KEY, ALL_TYPES_TABLE, createAllTypesTable, rowsFor } from '../../../fixtures/db/all-types.js';
import { collect, rejectsWith, tempDir } from '../helpers.js';

/** A WAL database file with the all-types fixture. */
function makeFixtureDb(file: string): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(createAllTypesTable('sqlite', ALL_TYPES_TABLE, quoteSqliteIdent));
  const rows = rowsFor('sqlite');
  const ins = db.prepare(`INSERT INTO ${quoteSqliteIdent(ALL_TYPES_TABLE)} VALUES (${rows[0]!.map(() => '?').join(', ')})`);
  db.transaction(() => {
    for (const r of rows) ins.run(...r.map((v) => (v instanceof Uint8Array ? Buffer.from(v) : v)));
  })();
  db.close();
}

/** A WAL file with `n` rows of about 200 bytes in table t (k INTEGER PRIMARY KEY, v TEXT). */
function makeBigDb(file: string, n: number): Database.Database {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)');
  db.exec(`WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < ${n}) INSERT INTO t SELECT x, printf('%.200c', 'v') || x FROM s`);
  return db;
}

async function dumpOf(r: TableReader, table: string, key: string, lo?: bigint, hi?: bigint): Promise<Buffer> {
  return collect(await r.rows(table, { key, ...(lo !== undefined ? { lo } : {}), ...(hi !== undefined ? { hi } : {}) }));
}

const tick = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('SqliteSource: reader workers', () => {
  it('rows from a worker are byte-identical to rows read in this thread (all-types fixture, whole and sub-ranges, in and out of snapshots)', async () => {
    const dir = await tempDir('sqlite-w');
    const file = join(dir, 'a.db');
    makeFixtureDb(file);
    await using inThread = new SqliteSource(file, { workers: 0 });
    await using worker = new SqliteSource(file, { workers: 2 });
    expect(await worker.warmUp()).toBe(2);
    const expected = await dumpOf(inThread, ALL_TYPES_TABLE, ALL_TYPES_KEY);
    expect(expected.length).toBeGreaterThan(100);
    expect(inThread.workerThreads).toBe(0);
    expect(await dumpOf(worker, ALL_TYPES_TABLE, ALL_TYPES_KEY)).toEqual(expected);
    const { lo, hi } = await inThread.keyRange(ALL_TYPES_TABLE, ALL_TYPES_KEY);
    for (const [a, b] of [
      [lo!, lo!],
      [lo! + 1n, hi! - 1n],
      [hi!, hi! + 100n],
    ] as const) {
      expect(await dumpOf(worker, ALL_TYPES_TABLE, ALL_TYPES_KEY, a, b)).toEqual(await dumpOf(inThread, ALL_TYPES_TABLE, ALL_TYPES_KEY, a, b));
    }
    const snap = await worker.snapshot(async (r) => ({
      rows: await dumpOf(r, ALL_TYPES_TABLE, ALL_TYPES_KEY),
      columns: await r.columns(ALL_TYPES_TABLE),
      range: await r.keyRange(ALL_TYPES_TABLE, ALL_TYPES_KEY),
      schema: await r.schema(ALL_TYPES_TABLE),
      tables: await r.tables(),
    }));
    expect(snap.rows).toEqual(expected);
    expect(snap.columns).toEqual(await inThread.columns(ALL_TYPES_TABLE));
    expect(snap.range).toEqual(await inThread.keyRange(ALL_TYPES_TABLE, ALL_TYPES_KEY));
    expect(snap.schema).toBe(await inThread.schema(ALL_TYPES_TABLE));
    expect(snap.tables).toEqual(await inThread.tables());
    expect(worker.workerThreads).toBe(2);
  });

  it('a snapshot held by a worker sees one state while another connection writes, metadata and rows alike', async () => {
    const dir = await tempDir('sqlite-w');
    const file = join(dir, 's.db');
    const writer = makeBigDb(file, 1000);
    await using src = new SqliteSource(file, { workers: 1 });
    expect(await src.warmUp()).toBe(1);
    const seen = await src.snapshot(async (r) => {
      // The snapshot is pinned when snapshot() starts, before any read of fn: a commit now is not seen.
      writer.exec("INSERT INTO t VALUES (1001, 'new'); DELETE FROM t WHERE k = 1; UPDATE t SET v = 'changed' WHERE k = 2");
      expect(src.workerThreads).toBe(1);
      const range = await r.keyRange('t', 'k');
      const next = await (r as unknown as { nextKey(t: string, k: string, from: bigint): Promise<bigint | null> }).nextKey('t', 'k', 0n);
      const first = (await dumpOf(r, 't', 'k', 1n, 2n)).toString();
      // And one while a stream is being read.
      const stream = await r.rows('t', { key: 'k' });
      writer.exec('DELETE FROM t WHERE k > 500');
      const all = (await collect(stream)).toString().split('\n').length - 1;
      const digest = await r.digestRange('t', 'k', undefined, undefined);
      return { range, next, first, all, count: digest.count };
    });
    expect(seen.range).toEqual({ lo: 1n, hi: 1000n, count: 1000, nulls: 0 });
    expect(seen.next).toBe(1n);
    expect(seen.first).toMatch(/^1\tv+1\n2\tv+2\n$/);
    expect(seen.all).toBe(1000);
    expect(seen.count).toBe(1000);
    // After it, the writes are there.
    expect(await src.keyRange('t', 'k')).toEqual({ lo: 2n, hi: 500n, count: 499, nulls: 0 });
    expect(await src.snapshot(async (r) => (await r.keyRange('t', 'k')).count)).toBe(499);
    writer.close();
  });

  it('destroying or aborting a stream mid-way stops the worker statement; the source stays usable with the same workers', async () => {
    const dir = await tempDir('sqlite-w');
    const file = join(dir, 'b.db');
    const writer = makeBigDb(file, 20_000);
    writer.pragma('busy_timeout = 0');
    await using src = new SqliteSource(file, { workers: 2 });
    expect(await src.warmUp()).toBe(2);
    await using ref = new SqliteSource(file, { workers: 0 });
    const full = await dumpOf(src, 't', 'k');
    // A reader's open read transaction keeps a TRUNCATE checkpoint from finishing: busy = 1.
    const checkpointBusy = (): number => (writer.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[])[0]!.busy;
    for (const how of ['destroy', 'abort', 'snapshot-destroy'] as const) {
      const ac = new AbortController();
      let ended!: () => void;
      const snapshotEnd = new Promise<void>((r) => (ended = r));
      let stream!: Readable;
      let snap: Promise<void> | undefined;
      if (how === 'snapshot-destroy') {
        let opened!: () => void;
        const isOpen = new Promise<void>((r) => (opened = r));
        snap = src.snapshot(async (r) => {
          stream = await r.rows('t', { key: 'k' });
          opened();
          await snapshotEnd;
        });
        await isOpen;
      } else stream = await src.rows('t', { key: 'k', signal: ac.signal });
      const errors: unknown[] = [];
      stream.on('error', (e) => errors.push(e));
      const chunk = await new Promise<Buffer>((r) => stream.once('data', r));
      stream.pause();
      expect(chunk.length).toBeGreaterThan(0);
      writer.exec(`UPDATE t SET v = '${how}' WHERE k = 1`);
      expect(checkpointBusy()).toBe(1);
      if (how === 'abort') ac.abort(new Error('stop'));
      else stream.destroy();
      // The worker sees the cancel between two chunks, then ends its statement (and, outside a snapshot, its connection).
      let busy = 1;
      for (let i = 0; i < 100 && busy === 1 && how !== 'snapshot-destroy'; i++) {
        await tick(10);
        busy = checkpointBusy();
      }
      if (how === 'snapshot-destroy') {
        // Inside a snapshot the read transaction is the snapshot's, until it ends.
        ended();
        await snap;
        await tick(10);
        busy = checkpointBusy();
      }
      expect(busy).toBe(0);
      expect(stream.destroyed).toBe(true);
      expect(errors.map((e) => (e as Error).message)).toEqual(how === 'abort' ? ['stop'] : []);
      // Same worker, same output.
      const again = await dumpOf(src, 't', 'k');
      // (Buffer.equals: toEqual walks 4 MB byte by byte.)
      expect(again.equals(await dumpOf(ref, 't', 'k'))).toBe(true);
      expect(again.length).toBe(full.length - 201 + how.length);
      expect(src.workerThreads).toBe(2);
    }
    writer.close();
  });

  it('with every worker busy, reads run in this thread; concurrent snapshots all see their state', async () => {
    const dir = await tempDir('sqlite-w');
    const file = join(dir, 'c.db');
    makeBigDb(file, 3000).close();
    await using src = new SqliteSource(file, { workers: 1 });
    expect(await src.warmUp()).toBe(1);
    const expected = await dumpOf(src, 't', 'k', 1000n, 1999n);
    const results = await Promise.all([0, 1, 2].map(() => src.snapshot((r) => dumpOf(r, 't', 'k', 1000n, 1999n))));
    for (const r of results) expect(r).toEqual(expected);
    expect(src.workerThreads).toBe(1);
  });

  it('close() ends the workers and destroys their open streams; later calls fail with EDB', async () => {
    const dir = await tempDir('sqlite-w');
    const file = join(dir, 'd.db');
    makeBigDb(file, 20_000).close();
    const src = new SqliteSource(file, { workers: 2 });
    expect(await src.warmUp()).toBe(2);
    const s1 = await src.rows('t', { key: 'k' });
    s1.on('error', () => {});
    await new Promise((r) => s1.once('readable', r));
    let inSnapshot: Readable | undefined;
    const snap = src.snapshot(async (r) => {
      inSnapshot = await r.rows('t', { key: 'k' });
      return collect(inSnapshot);
    });
    const settled = snap.then(
      () => 'resolved',
      (e: unknown) => e,
    );
    while (inSnapshot === undefined) await tick(5);
    await src.close();
    expect(src.workerThreads).toBe(0);
    expect(s1.destroyed).toBe(true);
    expect(inSnapshot.destroyed).toBe(true);
    expect(await settled).toBeInstanceOf(StowageError);
    await rejectsWith(src.rows('t', { key: 'k' }), 'EDB');
    await rejectsWith(src.snapshot(async () => 1), 'EDB');
  });

  it('a file that goes missing or is corrupt is an EDB StowageError, from the worker path too', async () => {
    const dir = await tempDir('sqlite-w');
    // Corrupt table pages behind a sound schema page: the open succeeds, the rows fail.
    const bad = join(dir, 'bad.db');
    const db = makeBigDb(bad, 5000);
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.pragma('journal_mode = DELETE');
    db.close();
    const fh = await open(bad, 'r+');
    const { size } = await fh.stat();
    await fh.write(Buffer.alloc(size - 8192, 0xa5), 0, size - 8192, 8192);
    await fh.close();
    await using src = new SqliteSource(bad, { workers: 1 });
    expect(await src.warmUp()).toBe(1);
    const e1 = await rejectsWith(
      (async () => collect(await src.rows('t', { key: 'k' })))(),
      'EDB',
    );
    expect(e1.message).toMatch(/malformed|corrupt|not a database/i);
    expect(src.workerThreads).toBe(1);
    const e2 = await rejectsWith(src.snapshot(async (r) => dumpOf(r, 't', 'k')), 'EDB');
    expect(e2.message).toContain(src.name);

    // A file removed after the source opened it: a worker cannot open it again.
    const gone = join(dir, 'gone.db');
    makeBigDb(gone, 10).close();
    await using src2 = new SqliteSource(gone, { workers: 1 });
    expect(await src2.warmUp()).toBe(1);
    await rm(gone);
    const e3 = await rejectsWith(src2.rows('t', { key: 'k' }), 'EDB');
    expect(e3).toBeInstanceOf(StowageError);
    expect(e3.message).toMatch(/open a connection/);
    await rejectsWith(src2.snapshot(async () => 1), 'EDB');
    // The source's own connection still reads (in this thread).
    expect(await src2.tables()).toEqual(['t']);
  });

  it('no workers for an in-memory or borrowed database, nor with workers: 0; bad values are EBAD_CONFIG', async () => {
    const dir = await tempDir('sqlite-w');
    const file = join(dir, 'e.db');
    makeBigDb(file, 100).close();
    const borrowed = new Database(file);
    await using a = new SqliteSource(borrowed);
    await using b = new SqliteSource(':memory:');
    await using c = new SqliteSource(file, { workers: 0 });
    expect((await dumpOf(a, 't', 'k')).length).toBeGreaterThan(0);
    expect((await dumpOf(c, 't', 'k')).length).toBeGreaterThan(0);
    await b.snapshot(async (r) => r.tables());
    expect([a.workerThreads, b.workerThreads, c.workerThreads]).toEqual([0, 0, 0]);
    await rejectsWith(Promise.resolve().then(() => new SqliteSource(file, { workers: -1 })), 'EBAD_CONFIG');
    borrowed.close();
  });
});
