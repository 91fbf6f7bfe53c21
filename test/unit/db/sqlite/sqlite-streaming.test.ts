import { readdirSync, readlinkSync } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeBulkRow } from '../../../../src/db/index.js';
import { SqliteSource } from '../../../../src/db/sqlite/index.js';
import { collect, rejectsWithReason, tempDir } from '../helpers.js';

const ROWS = 100_000;
const PAD = 'x'.repeat(400);

/** A WAL-mode file with a 100k-row table of about 450 bytes a row (about 45 MB of bulk text). */
function bigTable(file: string): void {
  const db = new Database(file);
  db.exec('CREATE TABLE big (SEQNO INTEGER PRIMARY KEY, i INTEGER, r REAL, t TEXT, b BLOB)');
  const ins = db.prepare('INSERT INTO big VALUES (?, ?, ?, ?, ?)');
  db.transaction(() => {
    for (let i = 1; i <= ROWS; i++) ins.run(i, i * 7, i / 3, `${PAD}${i}`, Buffer.from([i & 255, (i >> 8) & 255]));
  })();
  // WAL last, after a checkpoint: the copy is then one self-contained file.
  db.pragma('journal_mode = WAL');
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

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

const tick = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

let master: string | undefined;

/** A private copy of the big table (built once per file of tests). */
async function fixture(options: { workers?: number } = {}): Promise<{ file: string; src: SqliteSource }> {
  if (master === undefined) {
    const m = join(await mkdtemp(join(tmpdir(), 'stowage-sqlite-master-')), 'big.db');
    bigTable(m);
    master = m;
  }
  const dir = await tempDir('sqlite-big');
  const file = join(dir, 'big.db');
  await copyFile(master, file);
  return { file, src: new SqliteSource(file, options) };
}

afterAll(async () => {
  if (master !== undefined) await rm(join(master, '..'), { recursive: true, force: true });
});

describe('SqliteSource: streaming a 100k-row table', () => {
  // In this thread, so that the measure is the stream's own: a reader worker adds a one-time
  // few tens of MB (its isolate's heap, allocator arenas) on its first large read.
  it('pulls rows only as fast as they are read (backpressure) and keeps memory flat (in-thread)', async () => {
    const { src } = await fixture({ workers: 0 });
    const stream = await src.rows('big', { key: 'SEQNO' });
    // Nothing is fetched before someone asks.
    await tick(20);
    expect(stream.readableLength).toBe(0);
    // Someone waits for data but does not read: the stream fills its buffer once and stops stepping the query.
    await new Promise((r) => stream.once('readable', r));
    await tick(50);
    const idle = stream.readableLength;
    expect(idle).toBeGreaterThan(0);
    expect(idle).toBeLessThan(1024 * 1024);
    await tick(50);
    expect(stream.readableLength).toBe(idle);

    // Now read everything, sampling memory as we go.
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    let bytes = 0;
    let lines = 0;
    let maxBuffered = 0;
    for await (const chunk of stream) {
      bytes += (chunk as Buffer).length;
      for (const c of chunk as Buffer) if (c === 10) lines++;
      maxBuffered = Math.max(maxBuffered, stream.readableLength);
      if (lines % 5000 < 200) peak = Math.max(peak, process.memoryUsage().rss);
    }
    expect(lines).toBe(ROWS);
    expect(bytes).toBeGreaterThan(40 * 1024 * 1024);
    expect(maxBuffered).toBeLessThan(1024 * 1024);
    // Buffering the whole table would take more than 40 MB; streaming takes a few.
    expect(peak - rss0).toBeLessThan(24 * 1024 * 1024);
    await src.close();
  });

  it('a reader worker makes rows only as fast as they are read (backpressure)', async () => {
    const { src } = await fixture();
    expect(await src.warmUp()).toBeGreaterThan(0);
    const stream = await src.rows('big', { key: 'SEQNO' });
    await tick(20);
    expect(stream.readableLength).toBe(0);
    await new Promise((r) => stream.once('readable', r));
    await tick(50);
    const idle = stream.readableLength;
    expect(idle).toBeGreaterThan(0);
    expect(idle).toBeLessThan(1024 * 1024);
    await tick(50);
    expect(stream.readableLength).toBe(idle);
    let lines = 0;
    let maxBuffered = 0;
    for await (const chunk of stream) {
      for (const c of chunk as Buffer) if (c === 10) lines++;
      maxBuffered = Math.max(maxBuffered, stream.readableLength);
    }
    expect(lines).toBe(ROWS);
    expect(maxBuffered).toBeLessThan(1024 * 1024);
    await src.close();
  });

  it('digests the 100k rows equal after a load into a fresh file', async () => {
    const { file, src } = await fixture();
    const dst = new SqliteSource(join(file, '..', 'copy.db'), { create: true });
    await dst.createTable('big', await src.schema('big'));
    const r = await dst.load('big', await src.rows('big', { key: 'SEQNO' }));
    expect(r.rows).toBe(ROWS);
    const [a, b] = await Promise.all([src.digestRange('big', 'SEQNO', 1, ROWS), dst.digestRange('big', 'SEQNO', 1, ROWS)]);
    expect(b).toEqual(a);
    expect(a.count).toBe(ROWS);
    await Promise.all([src.close(), dst.close()]);
  });
});

describe('SqliteSource: cancellation', () => {
  it('rows(): aborted before start rejects with the reason and opens nothing', async () => {
    const { file, src } = await fixture();
    const base = fdsTo(file);
    const reason = new Error('stop');
    await rejectsWithReason(src.rows('big', { key: 'SEQNO', signal: AbortSignal.abort(reason) }), reason);
    expect(fdsTo(file)).toBe(base);
    await src.close();
  });

  it('rows(): aborted midway destroys the stream with the reason and releases its connection', async () => {
    const { file, src } = await fixture();
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
    // The source is still usable.
    expect((await src.keyRange('big', 'SEQNO')).count).toBe(ROWS);
    await src.close();
    expect(fdsTo(file)).toBe(0);
  });

  it('digestRange(): aborted before start and midway', async () => {
    const { src } = await fixture();
    const reason = new Error('stop');
    await rejectsWithReason(src.digestRange('big', 'SEQNO', 1, ROWS, { signal: AbortSignal.abort(reason) }), reason);
    const ac = new AbortController();
    const p = src.digestRange('big', 'SEQNO', 1, ROWS, { signal: ac.signal });
    // A timer fires while the digest runs (the row stream lets the event loop turn).
    setTimeout(() => ac.abort(reason), 5);
    await rejectsWithReason(p, reason);
    await src.close();
  });

  it('metadata calls and snapshot(): aborted before start', async () => {
    const { src } = await fixture();
    const reason = new Error('stop');
    const signal = AbortSignal.abort(reason);
    let ran = false;
    await rejectsWithReason(src.tables({ signal }), reason);
    await rejectsWithReason(src.columns('big', { signal }), reason);
    await rejectsWithReason(src.schema('big', { signal }), reason);
    await rejectsWithReason(src.keyRange('big', 'SEQNO', { signal }), reason);
    await rejectsWithReason(src.createTable('x', 'CREATE TABLE x (a)', { signal }), reason);
    await rejectsWithReason(
      src.snapshot(
        async () => {
          ran = true;
        },
        { signal },
      ),
      reason,
    );
    expect(ran).toBe(false);
    expect(await src.tables()).toEqual(['big']);
    await src.close();
  });

  it('snapshot(): aborted midway rejects at once with the reason and ends the snapshot', async () => {
    const { file, src } = await fixture();
    const ac = new AbortController();
    const reason = new Error('stop');
    let stream: Readable | undefined;
    const p = src.snapshot(
      async (r) => {
        stream = await r.rows('big', { key: 'SEQNO' });
        await new Promise(() => {}); // never settles on its own
      },
      { signal: ac.signal },
    );
    // rows() takes a few round trips to a reader worker: abort once the stream is open.
    while (stream === undefined) await tick();
    ac.abort(reason);
    await rejectsWithReason(p, reason);
    expect(stream!.destroyed).toBe(true);
    await src.close();
    expect(fdsTo(file)).toBe(0);
  });

  it('load(): aborted before start destroys the input and changes nothing', async () => {
    const { src } = await fixture();
    const reason = new Error('stop');
    const input = Readable.from([encodeBulkRow(['200001', '1', '1.0', 'a', null])]);
    await rejectsWithReason(src.load('big', input, { signal: AbortSignal.abort(reason) }), reason);
    expect(input.destroyed).toBe(true);
    expect((await src.keyRange('big', 'SEQNO')).count).toBe(ROWS);
    await src.close();
  });

  it('load(): aborted midway rolls back every row already inserted and destroys the input', async () => {
    const { src } = await fixture();
    const ac = new AbortController();
    const reason = new Error('stop midway');
    let sent = 0;
    const input = Readable.from(
      (async function* () {
        for (let i = 0; i < 1000; i++) {
          const rows = Array.from({ length: 100 }, (_, j) => encodeBulkRow([String(200_000 + i * 100 + j), '1', '1.0', 'new', null]));
          sent += 100;
          if (sent === 3000) setImmediate(() => ac.abort(reason));
          yield Buffer.concat(rows);
          await new Promise((r) => setImmediate(r));
        }
      })(),
    );
    await rejectsWithReason(src.load('big', input, { signal: ac.signal }), reason);
    expect(sent).toBeGreaterThanOrEqual(3000);
    expect(sent).toBeLessThan(100_000);
    expect(input.destroyed).toBe(true);
    expect(await src.keyRange('big', 'SEQNO')).toEqual({ lo: 1n, hi: BigInt(ROWS), count: ROWS, nulls: 0 });
    // The write lock was released: the next load goes through.
    expect((await src.load('big', Readable.from([encodeBulkRow(['200001', '1', '1.0', 'a', null])]))).rows).toBe(1);
    await src.close();
  });

  it('a partial dump read and then dropped releases everything', async () => {
    const { file, src } = await fixture();
    const stream = await src.rows('big', { key: 'SEQNO', lo: 10, hi: 20 });
    expect((await collect(stream)).toString().split('\n')).toHaveLength(12);
    const dropped = await src.rows('big', { key: 'SEQNO' });
    dropped.destroy();
    await src.close();
    expect(fdsTo(file)).toBe(0);
  });
});
