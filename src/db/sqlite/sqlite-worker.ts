/**
 * The entry of an SQLite reader worker thread (see `sqlite-pool.ts`): one
 * read-only better-sqlite3 connection on the source's file at a time,
 * serving metadata queries and row streams formatted as bulk text by the
 * same {@link sqliteWireField} the in-thread reader uses, so the main
 * thread only forwards finished chunks.
 *
 * Protocol (structured clone over the worker port; see `sqlite-pool.ts`):
 * `open` (a connection, inside `BEGIN` and a first read when it holds a
 * snapshot), `all` (a query's rows), `rows` (a range query streamed as
 * chunks, each an ArrayBuffer transferred to the main thread, at most
 * `credit` ahead of the consumer), `credit`, `cancel`, `end` (rolls back
 * and closes the connection). Every reply names the request's id.
 *
 * @module
 */
import { parentPort } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { sqliteWireField } from './sqlite-values.js';

/** A message from the main thread. */
export type SqliteWorkerRequest =
  | { t: 'open'; id: number; file: string; timeout: number; snapshot: boolean }
  | { t: 'all'; id: number; sql: string; params: unknown[]; raw: boolean; pluck: boolean }
  | { t: 'rows'; id: number; sql: string; params: unknown[]; aff: boolean[]; credit: number }
  | { t: 'credit'; id: number; n: number }
  | { t: 'cancel'; id: number }
  | { t: 'end'; id: number };

/** A driver error as it crosses the thread boundary. */
export interface SqliteWorkerError {
  message: string;
  name: string;
  code: unknown;
}

/** A message to the main thread. */
export type SqliteWorkerReply =
  | { t: 'ready' }
  | { t: 'ok'; id: number; value?: unknown }
  | { t: 'err'; id: number; error: SqliteWorkerError }
  | { t: 'chunk'; id: number; buf: ArrayBuffer }
  | { t: 'done'; id: number };

/** Bulk text characters per chunk (as the in-thread reader). */
const CHUNK_CHARS = 64 * 1024;

interface RowJob {
  readonly id: number;
  readonly iter: IterableIterator<unknown[]>;
  readonly aff: boolean[];
  credit: number;
  scheduled: boolean;
  over: boolean;
}

const port = parentPort;
let db: Database.Database | undefined;
const jobs = new Map<number, RowJob>();

function post(msg: SqliteWorkerReply, transfer?: ArrayBuffer[]): void {
  port!.postMessage(msg, transfer);
}

function fail(id: number, err: unknown): void {
  const e = err as { message?: unknown; name?: unknown; code?: unknown } | undefined;
  post({ t: 'err', id, error: { message: String(e?.message ?? err), name: String(e?.name ?? 'Error'), code: e?.code } });
}

function conn(): Database.Database {
  if (db === undefined) throw new Error('no connection is open');
  return db;
}

function stopJob(job: RowJob): void {
  if (job.over) return;
  job.over = true;
  jobs.delete(job.id);
  try {
    job.iter.return?.();
  } catch {
    // The statement is being dropped anyway.
  }
}

function schedule(job: RowJob): void {
  if (job.scheduled || job.over || job.credit <= 0) return;
  job.scheduled = true;
  // A later turn, so credit and cancel messages are seen between chunks.
  setImmediate(() => {
    job.scheduled = false;
    step(job);
  });
}

/** Makes one chunk of a row job and posts it. */
function step(job: RowJob): void {
  if (job.over) return;
  const aff = job.aff;
  const n = aff.length;
  let chunk = '';
  let end = false;
  try {
    while (chunk.length < CHUNK_CHARS) {
      const r = job.iter.next();
      if (r.done === true) {
        end = true;
        break;
      }
      const row = r.value;
      chunk += sqliteWireField(row[0], aff[0]!);
      for (let i = 1; i < n; i++) chunk += `\t${sqliteWireField(row[i], aff[i]!)}`;
      chunk += '\n';
    }
  } catch (err) {
    stopJob(job);
    fail(job.id, err);
    return;
  }
  if (chunk.length > 0) {
    const b = Buffer.from(chunk, 'utf8');
    // A whole ArrayBuffer of its own is handed over as it is; a pooled slice is copied.
    const ab = b.byteOffset === 0 && b.buffer.byteLength === b.byteLength ? (b.buffer as ArrayBuffer) : new Uint8Array(b).buffer;
    post({ t: 'chunk', id: job.id, buf: ab }, [ab]);
    job.credit--;
  }
  if (end) {
    stopJob(job);
    post({ t: 'done', id: job.id });
    return;
  }
  schedule(job);
}

function closeDb(): void {
  for (const job of [...jobs.values()]) stopJob(job);
  const d = db;
  db = undefined;
  if (d === undefined) return;
  try {
    if (d.inTransaction) d.exec('ROLLBACK');
  } finally {
    d.close();
  }
}

function handle(m: SqliteWorkerRequest): void {
  switch (m.t) {
    case 'open': {
      try {
        closeDb();
        const d = new Database(m.file, { readonly: true, fileMustExist: true, timeout: m.timeout });
        db = d;
        d.defaultSafeIntegers(true);
        if (m.snapshot) {
          d.exec('BEGIN');
        }
        // Fails now if the file is not a database; pins the snapshot inside BEGIN.
        d.prepare('SELECT count(*) FROM sqlite_schema').get();
        post({ t: 'ok', id: m.id });
      } catch (err) {
        try {
          closeDb();
        } catch {
          // Reported below.
        }
        fail(m.id, err);
      }
      return;
    }
    case 'all': {
      try {
        let stmt = conn().prepare(m.sql).safeIntegers(true);
        if (m.pluck) stmt = stmt.pluck(true);
        else if (m.raw) stmt = stmt.raw(true);
        post({ t: 'ok', id: m.id, value: stmt.all(...m.params) });
      } catch (err) {
        fail(m.id, err);
      }
      return;
    }
    case 'rows': {
      let iter: IterableIterator<unknown[]>;
      try {
        iter = conn().prepare<unknown[], unknown[]>(m.sql).raw(true).safeIntegers(true).iterate(...m.params);
      } catch (err) {
        fail(m.id, err);
        return;
      }
      const job: RowJob = { id: m.id, iter, aff: m.aff, credit: m.credit, scheduled: false, over: false };
      jobs.set(m.id, job);
      schedule(job);
      return;
    }
    case 'credit': {
      const job = jobs.get(m.id);
      if (job === undefined) return;
      job.credit += m.n;
      schedule(job);
      return;
    }
    case 'cancel': {
      const job = jobs.get(m.id);
      if (job !== undefined) stopJob(job);
      return;
    }
    case 'end': {
      try {
        closeDb();
        post({ t: 'ok', id: m.id });
      } catch (err) {
        fail(m.id, err);
      }
      return;
    }
  }
}

if (port !== null) {
  port.on('message', handle);
  post({ t: 'ready' });
}
