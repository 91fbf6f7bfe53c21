// The streaming, cancellation, snapshot, lifetime and connection tests of a
// pooled server source (MysqlSource against MariaDB, PostgresSource against
// PostgreSQL), run by each engine's test file with its fixture: a 200k-row
// table streamed with backpressure in flat memory, cancellation of rows()
// and load() before start and midway (the server-side query really stops),
// and snapshots.
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBulkRow, type TableReader, type TableSource } from '../../../src/db/index.js';
import { StowageError } from '../../../src/errors.js';
import { collect, rejectsWith, rejectsWithReason } from '../../unit/db/helpers.js';

/** Rows of the `big` table (eight mixed columns, about 330 bytes of bulk text a row). */
export const ROWS = 200_000;
/** Rows of the `wide` table (2 kB a row: 200 MB of bulk text). */
export const WIDE_ROWS = 100_000;

/** A source the suite can close with `await using`. */
export type SuiteSource = TableSource & AsyncDisposable;

/** What the suite needs of an engine. */
export interface StreamingEngine {
  /** The class name, in test titles (`MysqlSource`). */
  readonly label: string;
  /** The reader's `engine`. */
  readonly engine: string;
  /** What the engine calls a connection, in test titles. */
  readonly unit: string;
  /** What the engine's row stream runs, in test titles (`query`, `COPY`). */
  readonly queryWord: string;
  /** What `eventually` says while waiting for the dump of `big` to stop. */
  readonly gone: string;
  /** LIKE pattern of the statement that dumps `big`. */
  readonly bigQuery: string;
  /** LIKE pattern of the statement that dumps `wide`. */
  readonly wideQuery: string;
  /** The 32-bit integer type. */
  readonly int: string;
  /** DDL of the `payload` and `vld` tables of the snapshot test (SEQNO int, RC int, v text, PK (SEQNO, RC); SEQNO int PK, t text). */
  readonly snapshotTables: readonly string[];
  /** Deletes the row 300000 of `big`. */
  readonly deleteRow300000: string;
  /** Starts the server and creates `wide` ({@link WIDE_ROWS}) and `big` ({@link ROWS}). */
  start(): Promise<void>;
  /** Stops it. */
  stop(): Promise<void>;
  /** The database holding `big` and `wide`. */
  database(): string;
  /** A new empty database. */
  freshDb(): Promise<string>;
  /** A source of `database` (default: {@link database}). */
  source(database?: string): SuiteSource;
  /** A source of the default database with these connection fields and options. */
  sourceWith(connection: { connectTimeoutMs: number }, options: { poolSize: number }): SuiteSource;
  /** Runs a statement in `database` through an admin connection. */
  exec(database: string, sql: string): Promise<unknown>;
  /** Statements of other sessions whose text matches `like`. */
  running(like: string): Promise<number>;
  /** Open transactions of other sessions. */
  openTransactions(): Promise<number>;
  /** What {@link newConnections} compares with. */
  connectionMark(): Promise<unknown>;
  /** Connections made (or backends opened) since `mark`. */
  newConnections(mark: unknown): Promise<number>;
  /** Another server with a table `t` (k bigint PK, v text) of 100000 rows of 500 bytes, and a source of it. */
  startOther(): Promise<{ source(): SuiteSource; stop(): Promise<void> }>;
}

const tick = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true (or fails the test after `ms`). */
async function eventually(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`still not true after ${ms} ms: ${what}`);
    await tick(50);
  }
}

/**
 * Declares the suite for one engine.
 *
 * @param f - the engine's fixture
 */
export function streamingSuite(f: StreamingEngine): void {
  beforeAll(() => f.start(), 300_000);
  afterAll(() => f.stop());

  describe(`${f.label}: streaming a 200k-row table`, () => {
    it('pulls rows only as fast as they are read (backpressure) and keeps memory flat', async () => {
      await using src = f.source();
      const stream = await src.rows('big', { key: 'SEQNO' });
      // Someone waits for data but does not read: the stream fills its buffer once and the server waits.
      await new Promise((r) => stream.once('readable', r));
      await tick(200);
      const idle = stream.readableLength;
      expect(idle).toBeGreaterThan(0);
      expect(idle).toBeLessThan(2 * 1024 * 1024);
      await tick(200);
      expect(stream.readableLength).toBe(idle);
      expect(await f.running(f.bigQuery)).toBe(1);

      stream.destroy();
      await eventually(f.gone, async () => (await f.running(f.bigQuery)) === 0);

      const wide = await src.rows('wide', { key: 'SEQNO' });
      const rss0 = process.memoryUsage().rss;
      let peak = rss0;
      let bytes = 0;
      let lines = 0;
      let maxBuffered = 0;
      let chunks = 0;
      for await (const chunk of wide) {
        const b = chunk as Buffer;
        bytes += b.length;
        for (let i = b.indexOf(10); i >= 0; i = b.indexOf(10, i + 1)) lines++;
        maxBuffered = Math.max(maxBuffered, wide.readableLength);
        if (++chunks % 20 === 0) peak = Math.max(peak, process.memoryUsage().rss);
      }
      expect(lines).toBe(WIDE_ROWS);
      expect(bytes).toBeGreaterThan(200 * 1000 * 1000);
      expect(maxBuffered).toBeLessThan(2 * 1024 * 1024);
      // Buffering the range would take more than 200 MB; streaming takes a few, plus garbage not yet
      // collected, which on a loaded machine (the full suite on 2 cores) reached 86 MB once: the bound
      // sits between the two, well below what holding the range would cost.
      expect(peak - rss0).toBeLessThan(128 * 1024 * 1024);
      expect(await f.running(f.wideQuery)).toBe(0);
    });

    it('loads the 200k rows into a fresh database with equal digests', async () => {
      const target = await f.freshDb();
      await using src = f.source();
      await using dst = f.source(target);
      await dst.createTable('big', await src.schema('big'));
      const r = await dst.load('big', await src.rows('big', { key: 'SEQNO' }));
      expect(r.rows).toBe(ROWS);
      const [a, b] = await Promise.all([src.digestRange('big', 'SEQNO', 1, ROWS), dst.digestRange('big', 'SEQNO', 1, ROWS)]);
      expect(b).toEqual(a);
      expect(a.count).toBe(ROWS);
      const [x, y] = await Promise.all([src.digestRange('big', 'SEQNO', 5000, 15000), dst.digestRange('big', 'SEQNO', 5000, 15000)]);
      expect(y).toEqual(x);
      expect(x.count).toBe(10001);
    });
  });

  describe(`${f.label}: cancellation`, () => {
    it('rows(): aborted before start rejects with the reason and connects to nothing', async () => {
      await using src = f.source();
      const before = await f.connectionMark();
      const reason = new Error('stop');
      await rejectsWithReason(src.rows('big', { key: 'SEQNO', signal: AbortSignal.abort(reason) }), reason);
      await rejectsWithReason(src.digestRange('big', 'SEQNO', 1, 2, { signal: AbortSignal.abort(reason) }), reason);
      expect(await f.newConnections(before)).toBe(0);
    });

    it(`rows(): aborted midway destroys the stream with the reason and stops the ${f.queryWord} on the server`, async () => {
      await using src = f.source();
      const ac = new AbortController();
      const reason = new Error('stop midway');
      const stream = await src.rows('big', { key: 'SEQNO', signal: ac.signal });
      let chunks = 0;
      const err = await (async () => {
        for await (const _ of stream) {
          if (++chunks === 3) ac.abort(reason);
        }
      })().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBe(reason);
      expect(chunks).toBe(3);
      expect(stream.destroyed).toBe(true);
      await eventually(f.gone, async () => (await f.running(f.bigQuery)) === 0);
      // The source is still usable.
      expect((await src.keyRange('big', 'SEQNO')).count).toBe(ROWS);
    });

    it('rows(): a stream destroyed by its reader midway stops the query too', async () => {
      await using src = f.source();
      const stream = await src.rows('big', { key: 'SEQNO' });
      await new Promise((r) => stream.once('readable', r));
      stream.read();
      stream.destroy();
      await eventually(f.gone, async () => (await f.running(f.bigQuery)) === 0);
      expect((await collect(await src.rows('big', { key: 'SEQNO', lo: 7, hi: 7 }))).toString()).toMatch(/^7\t49\t/);
    });

    it('digestRange(): aborted midway', async () => {
      await using src = f.source();
      const reason = new Error('stop');
      const ac = new AbortController();
      const p = src.digestRange('big', 'SEQNO', 1, ROWS, { signal: ac.signal });
      setTimeout(() => ac.abort(reason), 100);
      await rejectsWithReason(p, reason);
      await eventually(f.gone, async () => (await f.running(f.bigQuery)) === 0);
    });

    it('load(): aborted before start destroys the input and loads nothing', async () => {
      const target = await f.freshDb();
      await using dst = f.source(target);
      await dst.createTable('t', `CREATE TABLE t (k ${f.int} PRIMARY KEY)`);
      const reason = new Error('stop');
      const input = Readable.from([Buffer.from('1\n')]);
      await rejectsWithReason(dst.load('t', input, { signal: AbortSignal.abort(reason) }), reason);
      expect(input.destroyed).toBe(true);
      expect(await dst.keyRange('t', 'k')).toEqual({ lo: null, hi: null, count: 0, nulls: 0 });
    });

    it('load(): aborted midway rolls back, destroys the input, and leaves the source usable', async () => {
      const target = await f.freshDb();
      await using src = f.source();
      await using dst = f.source(target);
      await dst.createTable('big', await src.schema('big'));
      const ac = new AbortController();
      const reason = new Error('stop loading');
      const rows = await src.rows('big', { key: 'SEQNO' });
      let chunks = 0;
      const input = Readable.from(
        (async function* () {
          for await (const c of rows) {
            if (++chunks === 40) ac.abort(reason);
            yield c as Buffer;
          }
        })(),
      );
      await rejectsWithReason(dst.load('big', input, { signal: ac.signal }), reason);
      expect(chunks).toBeGreaterThanOrEqual(40);
      expect(input.destroyed).toBe(true);
      await eventually('no transaction is left open', async () => (await f.openTransactions()) === 0);
      expect(await dst.keyRange('big', 'SEQNO')).toEqual({ lo: null, hi: null, count: 0, nulls: 0 });
      const r = await dst.load('big', await src.rows('big', { key: 'SEQNO', lo: 1, hi: 1000 }));
      expect(r.rows).toBe(1000);
    });

    it('metadata calls, createTable and snapshot(): aborted before start', async () => {
      await using src = f.source();
      const reason = new Error('stop');
      const signal = AbortSignal.abort(reason);
      let ran = false;
      await rejectsWithReason(src.tables({ signal }), reason);
      await rejectsWithReason(src.columns('big', { signal }), reason);
      await rejectsWithReason(src.schema('big', { signal }), reason);
      await rejectsWithReason(src.keyRange('big', 'SEQNO', { signal }), reason);
      await rejectsWithReason(src.createTable('x', `CREATE TABLE x (a ${f.int})`, { signal }), reason);
      await rejectsWithReason(
        src.snapshot(async () => {
          ran = true;
        }, { signal }),
        reason,
      );
      expect(ran).toBe(false);
      expect(await src.tables()).not.toContain('x');
    });

    it('keyRange(): aborted in flight rejects with the reason and leaves the source usable', async () => {
      await using src = f.source();
      const reason = new Error('stop');
      const ac = new AbortController();
      const p = src.keyRange('big', 'SEQNO', { signal: ac.signal });
      setTimeout(() => ac.abort(reason), 5);
      await rejectsWithReason(p, reason);
      expect((await src.keyRange('big', 'SEQNO')).count).toBe(ROWS);
    });
  });

  describe(`${f.label}: snapshots`, () => {
    it('reads one consistent state of several tables while another connection writes', async () => {
      const a = await f.freshDb();
      for (const ddl of f.snapshotTables) await f.exec(a, ddl);
      await f.exec(a, "INSERT INTO vld VALUES (1, 'a'), (2, 'b')");
      await f.exec(a, "INSERT INTO payload VALUES (1, 1, 'x'), (2, 1, 'y')");
      await using src = f.source(a);
      const seen = await src.snapshot(async (r) => {
        const before = await r.keyRange('vld', 'SEQNO');
        // A writer commits a new SEQNO in both tables mid-snapshot.
        await f.exec(a, "INSERT INTO vld VALUES (3, 'c')");
        await f.exec(a, "INSERT INTO payload VALUES (3, 1, 'z'), (3, 2, 'zz')");
        const vld = (await collect(await r.rows('vld', { key: 'SEQNO' }))).toString();
        const payload = (await collect(await r.rows('payload', { key: 'SEQNO' }))).toString();
        const d = await r.digestRange('payload', 'SEQNO', undefined, undefined);
        const after = await r.keyRange('payload', 'SEQNO');
        return { before, vld, payload, d, after, engine: r.engine, name: r.name };
      });
      expect(seen.before.hi).toBe(2n);
      expect(seen.vld).toBe('1\ta\n2\tb\n');
      expect(seen.payload).toBe('1\t1\tx\n2\t1\ty\n');
      expect(seen.d.count).toBe(2);
      expect(seen.after).toEqual({ lo: 1n, hi: 2n, count: 2, nulls: 0 });
      expect(seen.engine).toBe(f.engine);
      expect(seen.name).toBe(src.name);
      expect(await src.keyRange('payload', 'SEQNO')).toEqual({ lo: 1n, hi: 3n, count: 4, nulls: 0 });
      expect(await f.openTransactions()).toBe(0);
    });

    it('reads one stream at a time; a stream cut short ends the snapshot; it ends however fn ends', async () => {
      await using src = f.source();
      // A call while a stream is open fails (it would wait behind the stream).
      const out = await src.snapshot(async (r) => {
        // More than the stream buffers: it holds the connection until read.
        const s = await r.rows('big', { key: 'SEQNO', lo: 1, hi: 50_000 });
        const err = await rejectsWith(r.keyRange('big', 'SEQNO'), 'EDB');
        expect(err.message).toMatch(/row streams is still open/);
        await rejectsWith(r.rows('big', { key: 'SEQNO' }), 'EDB');
        const text = (await collect(s)).toString();
        // Queries may overlap.
        const [k1, k2, cols] = await Promise.all([r.keyRange('big', 'SEQNO'), r.keyRange('big', 'SEQNO'), r.columns('big')]);
        return { lines: text.split('\n').length - 1, n: k1.count, same: k2.count === k1.count, cols: cols.length };
      });
      expect(out).toEqual({ lines: 50_000, n: ROWS, same: true, cols: 8 });

      // A stream destroyed before its end closes the connection: the snapshot is over.
      await src.snapshot(async (r) => {
        const s = await r.rows('big', { key: 'SEQNO' });
        await new Promise((res) => s.once('readable', res));
        s.destroy();
        const err = await rejectsWith(r.keyRange('big', 'SEQNO'), 'EDB');
        expect(err.message).toMatch(/no longer usable/);
      });

      // fn throws with a stream open: the stream is destroyed, the reader unusable, the transaction gone.
      let kept: TableReader | undefined;
      let stream: Readable | undefined;
      const boom = new Error('boom');
      await expect(
        src.snapshot(async (r) => {
          kept = r;
          stream = await r.rows('big', { key: 'SEQNO' });
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect(stream!.destroyed).toBe(true);
      await rejectsWith(kept!.keyRange('big', 'SEQNO'), 'EDB');
      await eventually('no transaction is left open', async () => (await f.openTransactions()) === 0);
      await eventually('no query is left running', async () => (await f.running(f.bigQuery)) === 0);

      // Aborted midway: rejects with the reason.
      const ac = new AbortController();
      const reason = new Error('stop');
      const p = src.snapshot(async (r) => {
        const s = await r.rows('big', { key: 'SEQNO' });
        ac.abort(reason);
        await collect(s);
      }, { signal: ac.signal });
      await rejectsWithReason(p, reason);
      await eventually('no transaction is left open', async () => (await f.openTransactions()) === 0);
      // The source is still fine.
      expect(await src.snapshot(async (r) => (await r.keyRange('big', 'SEQNO')).count)).toBe(ROWS);
      await src.load('big', Readable.from([encodeBulkRow(['300000', '1', '1', '1', 'x', 'y', '2024-01-01 00:00:00.000000', null])]));
      expect((await src.keyRange('big', 'SEQNO')).count).toBe(ROWS + 1);
      await f.exec(f.database(), f.deleteRow300000);
    });
  });

  describe(`${f.label}: lifetime`, () => {
    it(`close() destroys open streams and closes every ${f.unit}; later calls fail with EDB`, async () => {
      const src = f.source();
      const stream = await src.rows('big', { key: 'SEQNO' });
      await new Promise((r) => stream.once('readable', r));
      await src.close();
      expect(stream.destroyed).toBe(true);
      await rejectsWith(src.tables(), 'EDB');
      await eventually(f.gone, async () => (await f.running(f.bigQuery)) === 0);
    });
  });

  describe(`${f.label}: connections`, () => {
    it('a call waits for a free connection as long as it takes (the connect timeout is for connecting only)', async () => {
      await using src = f.sourceWith({ connectTimeoutMs: 200 }, { poolSize: 1 });
      // The whole table: far more than the stream buffers, so it holds its connection until read.
      const first = await src.rows('big', { key: 'SEQNO' });
      let settled = false;
      const second = src.keyRange('big', 'SEQNO').finally(() => (settled = true));
      await tick(600);
      expect(settled).toBe(false);
      let lines = 0;
      for await (const chunk of first) for (let i = (chunk as Buffer).indexOf(10); i >= 0; i = (chunk as Buffer).indexOf(10, i + 1)) lines++;
      expect(lines).toBe(ROWS);
      expect((await second).count).toBe(ROWS);
    });

    it('ECONNECT when the server goes away in the middle of a stream', async () => {
      const other = await f.startOther();
      try {
        await using src = other.source();
        const stream = await src.rows('t', { key: 'k' });
        await new Promise((r) => stream.once('readable', r));
        const stopping = other.stop();
        const err = await collect(stream).then(
          () => undefined,
          (e: unknown) => e,
        );
        await stopping;
        expect(err).toBeInstanceOf(StowageError);
        expect((err as StowageError).code).toBe('ECONNECT');
        expect((err as StowageError).message).toMatch(/cannot be reached or closed the connection/);
        expect(stream.destroyed).toBe(true);
        await rejectsWith(src.tables(), 'ECONNECT');
      } finally {
        await other.stop();
      }
    });
  });
}
