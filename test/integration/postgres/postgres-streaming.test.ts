// PostgresSource against a real PostgreSQL: a 200k-row table streamed with
// backpressure in flat memory, cancellation of rows() and load() before
// start and midway (the server-side query really stops), and snapshots.
import { Readable } from 'node:stream';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBulkRow, type TableReader } from '../../../src/db/index.js';
import { StowageError } from '../../../src/errors.js';
import { PostgresSource } from '../../../src/db/postgres/index.js';
import { startPostgres, type PostgresServer } from '../../support/index.js';
import { collect, rejectsWith, rejectsWithReason } from '../../unit/db/helpers.js';
import { connectUtc, sql } from './helpers.js';

const ROWS = 200_000;
const WIDE_ROWS = 100_000;
let db: PostgresServer;
let admin: pg.Client;
let dbCount = 0;

beforeAll(async () => {
  db = await startPostgres();
  admin = await connectUtc(db);
  // 100k rows of 2 kB: 200 MB of bulk text, so that buffering it could not hide behind the
  // garbage a fast stream leaves for the collector (COPY chunks are large external buffers).
  await admin.query('CREATE TABLE wide ("SEQNO" bigint PRIMARY KEY, t text)');
  await admin.query(`INSERT INTO wide SELECT g, repeat(md5(g::text), 64) FROM generate_series(1, ${WIDE_ROWS}) g`);
  // Eight mixed columns, about 330 bytes of bulk text a row (66 MB in all).
  await admin.query('CREATE TABLE big ("SEQNO" bigint NOT NULL PRIMARY KEY, i int, d float8, m numeric(18,6), vc varchar(64), t text, dt timestamp(6), b bytea)');
  await admin.query(
    `INSERT INTO big SELECT g, g * 7, g / 3.0::float8, round(g / 7.0, 6), 'name-' || g, repeat('payload ', 30), '2024-01-01'::timestamp + g * interval '1 second' + g * interval '1 microsecond', decode(md5(g::text), 'hex') FROM generate_series(1, ${ROWS}) g`,
  );
}, 300_000);
afterAll(async () => {
  await admin?.end();
  await db?.stop();
});

async function freshDb(): Promise<string> {
  return db.createDatabase(`s${++dbCount}`);
}

function source(database = db.database): PostgresSource {
  return new PostgresSource({ ...db.clientConfig, database });
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

/** Active statements of other sessions whose text matches `like`. */
async function running(like: string): Promise<number> {
  const r = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active' AND query LIKE $1", [like]);
  return r.rows[0]!.n;
}

/** Open transactions of other client sessions. */
async function openTransactions(): Promise<number> {
  const r = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND xact_start IS NOT NULL");
  return r.rows[0]!.n;
}

/** The backends of stowage sources. */
async function backends(): Promise<number[]> {
  const r = await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE application_name = 'stowage'");
  return r.rows.map((x) => x.pid);
}

const BIG_COPY = 'COPY (SELECT %FROM "public"."big"%';

describe('PostgresSource: streaming a 200k-row table', () => {
  it('pulls rows only as fast as they are read (backpressure) and keeps memory flat', async () => {
    await using src = source();
    const stream = await src.rows('big', { key: 'SEQNO' });
    // Someone waits for data but does not read: the stream fills its buffer once and the server waits.
    await new Promise((r) => stream.once('readable', r));
    await tick(200);
    const idle = stream.readableLength;
    expect(idle).toBeGreaterThan(0);
    expect(idle).toBeLessThan(2 * 1024 * 1024);
    await tick(200);
    expect(stream.readableLength).toBe(idle);
    expect(await running(BIG_COPY)).toBe(1);

    stream.destroy();
    await eventually('the COPY is gone from pg_stat_activity', async () => (await running(BIG_COPY)) === 0);

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
    // Buffering the range would take more than 200 MB; streaming takes a few (plus garbage not yet collected).
    expect(peak - rss0).toBeLessThan(80 * 1024 * 1024);
    expect(await running('COPY (SELECT %FROM "public"."wide"%')).toBe(0);
  });

  it('loads the 200k rows into a fresh database with equal digests', async () => {
    const target = await freshDb();
    await using src = source();
    await using dst = source(target);
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

describe('PostgresSource: cancellation', () => {
  it('rows(): aborted before start rejects with the reason and connects to nothing', async () => {
    await using src = source();
    const before = await backends();
    const reason = new Error('stop');
    await rejectsWithReason(src.rows('big', { key: 'SEQNO', signal: AbortSignal.abort(reason) }), reason);
    await rejectsWithReason(src.digestRange('big', 'SEQNO', 1, 2, { signal: AbortSignal.abort(reason) }), reason);
    // No backend that was not there before.
    expect((await backends()).filter((p) => !before.includes(p))).toEqual([]);
  });

  it('rows(): aborted midway destroys the stream with the reason and stops the COPY on the server', async () => {
    await using src = source();
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
    await eventually('the COPY is gone from pg_stat_activity', async () => (await running(BIG_COPY)) === 0);
    // The source is still usable.
    expect((await src.keyRange('big', 'SEQNO')).count).toBe(ROWS);
  });

  it('rows(): a stream destroyed by its reader midway stops the query too', async () => {
    await using src = source();
    const stream = await src.rows('big', { key: 'SEQNO' });
    await new Promise((r) => stream.once('readable', r));
    stream.read();
    stream.destroy();
    await eventually('the COPY is gone from pg_stat_activity', async () => (await running(BIG_COPY)) === 0);
    expect((await collect(await src.rows('big', { key: 'SEQNO', lo: 7, hi: 7 }))).toString()).toMatch(/^7\t49\t/);
  });

  it('digestRange(): aborted midway', async () => {
    await using src = source();
    const reason = new Error('stop');
    const ac = new AbortController();
    const p = src.digestRange('big', 'SEQNO', 1, ROWS, { signal: ac.signal });
    setTimeout(() => ac.abort(reason), 100);
    await rejectsWithReason(p, reason);
    await eventually('the COPY is gone from pg_stat_activity', async () => (await running(BIG_COPY)) === 0);
  });

  it('load(): aborted before start destroys the input and loads nothing', async () => {
    const target = await freshDb();
    await using dst = source(target);
    await dst.createTable('t', 'CREATE TABLE t (k int PRIMARY KEY)');
    const reason = new Error('stop');
    const input = Readable.from([Buffer.from('1\n')]);
    await rejectsWithReason(dst.load('t', input, { signal: AbortSignal.abort(reason) }), reason);
    expect(input.destroyed).toBe(true);
    expect(await dst.keyRange('t', 'k')).toEqual({ lo: null, hi: null, count: 0, nulls: 0 });
  });

  it('load(): aborted midway rolls back, destroys the input, and leaves the source usable', async () => {
    const target = await freshDb();
    await using src = source();
    await using dst = source(target);
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
    await eventually('no transaction is left open', async () => (await openTransactions()) === 0);
    expect(await dst.keyRange('big', 'SEQNO')).toEqual({ lo: null, hi: null, count: 0, nulls: 0 });
    const r = await dst.load('big', await src.rows('big', { key: 'SEQNO', lo: 1, hi: 1000 }));
    expect(r.rows).toBe(1000);
  });

  it('metadata calls, createTable and snapshot(): aborted before start', async () => {
    await using src = source();
    const reason = new Error('stop');
    const signal = AbortSignal.abort(reason);
    let ran = false;
    await rejectsWithReason(src.tables({ signal }), reason);
    await rejectsWithReason(src.columns('big', { signal }), reason);
    await rejectsWithReason(src.schema('big', { signal }), reason);
    await rejectsWithReason(src.keyRange('big', 'SEQNO', { signal }), reason);
    await rejectsWithReason(src.createTable('x', 'CREATE TABLE x (a int)', { signal }), reason);
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
    await using src = source();
    const reason = new Error('stop');
    const ac = new AbortController();
    const p = src.keyRange('big', 'SEQNO', { signal: ac.signal });
    setTimeout(() => ac.abort(reason), 5);
    await rejectsWithReason(p, reason);
    expect((await src.keyRange('big', 'SEQNO')).count).toBe(ROWS);
  });
});

describe('PostgresSource: snapshots', () => {
  it('reads one consistent state of several tables while another connection writes', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE payload ("SEQNO" int, rc int, v text, PRIMARY KEY ("SEQNO", rc))');
    await sql(db, a, 'CREATE TABLE vld ("SEQNO" int PRIMARY KEY, t text)');
    await sql(db, a, "INSERT INTO vld VALUES (1, 'a'), (2, 'b')");
    await sql(db, a, "INSERT INTO payload VALUES (1, 1, 'x'), (2, 1, 'y')");
    await using src = source(a);
    const seen = await src.snapshot(async (r) => {
      const before = await r.keyRange('vld', 'SEQNO');
      // A writer commits a new SEQNO in both tables mid-snapshot.
      await sql(db, a, "INSERT INTO vld VALUES (3, 'c')");
      await sql(db, a, "INSERT INTO payload VALUES (3, 1, 'z'), (3, 2, 'zz')");
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
    expect(seen.engine).toBe('postgres');
    expect(seen.name).toBe(src.name);
    expect(await src.keyRange('payload', 'SEQNO')).toEqual({ lo: 1n, hi: 3n, count: 4, nulls: 0 });
    expect(await openTransactions()).toBe(0);
  });

  it('reads one stream at a time; a stream cut short ends the snapshot; it ends however fn ends', async () => {
    await using src = source();
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
    await eventually('no transaction is left open', async () => (await openTransactions()) === 0);
    await eventually('no query is left running', async () => (await running(BIG_COPY)) === 0);

    // Aborted midway: rejects with the reason.
    const ac = new AbortController();
    const reason = new Error('stop');
    const p = src.snapshot(async (r) => {
      const s = await r.rows('big', { key: 'SEQNO' });
      ac.abort(reason);
      await collect(s);
    }, { signal: ac.signal });
    await rejectsWithReason(p, reason);
    await eventually('no transaction is left open', async () => (await openTransactions()) === 0);
    // The source is still fine.
    expect(await src.snapshot(async (r) => (await r.keyRange('big', 'SEQNO')).count)).toBe(ROWS);
    await src.load('big', Readable.from([encodeBulkRow(['300000', '1', '1', '1', 'x', 'y', '2024-01-01 00:00:00.000000', null])]));
    expect((await src.keyRange('big', 'SEQNO')).count).toBe(ROWS + 1);
    await sql(db, db.database, 'DELETE FROM big WHERE "SEQNO" = 300000');
  });
});

describe('PostgresSource: lifetime', () => {
  it('close() destroys open streams and closes every client; later calls fail with EDB', async () => {
    const src = source();
    const stream = await src.rows('big', { key: 'SEQNO' });
    await new Promise((r) => stream.once('readable', r));
    await src.close();
    expect(stream.destroyed).toBe(true);
    await rejectsWith(src.tables(), 'EDB');
    await eventually('the COPY is gone from pg_stat_activity', async () => (await running(BIG_COPY)) === 0);
  });
});

describe('PostgresSource: connections', () => {
  it('a call waits for a free connection as long as it takes (the connect timeout is for connecting only)', async () => {
    await using src = new PostgresSource({ ...db.clientConfig, connectTimeoutMs: 200 }, { poolSize: 1 });
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
    const other = await startPostgres();
    try {
      const c = await other.connect();
      await c.query('CREATE TABLE t (k bigint PRIMARY KEY, v text)');
      await c.query(`INSERT INTO t SELECT g, repeat('x', 500) FROM generate_series(1, 100000) g`);
      await c.end();
      await using src = new PostgresSource(other.clientConfig);
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
