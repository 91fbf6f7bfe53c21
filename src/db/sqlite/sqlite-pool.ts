/**
 * Reader worker threads of a file-backed SqliteSource.
 *
 * better-sqlite3 is synchronous, so stepping a statement and formatting its
 * values as bulk text takes the thread that runs it: in-thread, about half
 * of a dump's main-thread time, with the digest, compression and archive
 * writing waiting behind it. A worker (`sqlite-worker.ts`) opens its own
 * read-only connection on the same file, runs the query, formats the bulk
 * text with the same functions, and hands over finished chunks (transferred
 * ArrayBuffers, no copy); the main thread only pushes them into the stream.
 *
 * Each worker holds one connection at a time (a snapshot, or one row
 * stream), and is lent to one user at a time: {@link SqliteWorkerPool.acquire}
 * gives `undefined` when all are busy and the caller reads in-thread, as
 * without workers. Idle workers are unref'd (they never keep the process
 * alive) and are ended by {@link SqliteWorkerPool.close}.
 *
 * A stream keeps at most {@link CREDIT} chunks in flight ahead of its
 * consumer; destroying it (abort, early end) cancels the worker's
 * statement.
 *
 * @module
 */
import { Readable } from 'node:stream';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { onAbort } from '../../util/abort.js';
import { closedError } from '../source-common.js';
import { dbError } from '../table-source.js';
import type { SqliteWorkerError, SqliteWorkerReply, SqliteWorkerRequest } from './sqlite-worker.js';

/** Chunks (about 64 KiB each) a worker may make ahead of the consumer. */
export const CREDIT = 4;

/** Distributive Omit (keeps each request variant's own fields). */
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

/**
 * Starts a worker thread on `sqlite-worker`: the compiled `.js` next to
 * this module (the package, from `dist/`), or, when this module runs from
 * its TypeScript source (tests, benchmarks, under tsx or vitest), the `.ts`
 * file through tsx's ESM API registered inside the worker (a worker does
 * not inherit the parent's loader hooks on Node 20).
 */
function startWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./sqlite-worker.js', import.meta.url), { execArgv: [] });
  const require = createRequire(import.meta.url);
  const api = new URL('./esm/api/index.mjs', pathToFileURL(require.resolve('tsx'))).href;
  const entry = new URL('./sqlite-worker.ts', import.meta.url).href;
  return new Worker(`import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); })`, { eval: true, execArgv: [] });
}

/** An Error standing for a driver error thrown in a worker (message and driver code kept). */
function revive(e: SqliteWorkerError): Error {
  const err = new Error(e.message) as Error & { code?: unknown };
  err.name = e.name;
  if (e.code !== undefined) err.code = e.code;
  return err;
}

/** A row stream fed by a worker. */
class WorkerRowStream extends Readable {
  readonly #worker: SqliteWorker;
  readonly #id: number;
  readonly #source: string;
  readonly #action: string;
  readonly #signal: AbortSignal | undefined;
  readonly #disposeAbort: () => void;
  readonly #onEnd: () => void;
  #inflight: number;
  #over = false;

  constructor(worker: SqliteWorker, id: number, source: string, action: string, signal: AbortSignal | undefined, onEnd: () => void) {
    super({ highWaterMark: CREDIT * 64 * 1024 });
    this.#worker = worker;
    this.#id = id;
    this.#source = source;
    this.#action = action;
    this.#signal = signal;
    this.#onEnd = onEnd;
    this.#inflight = 0;
    this.#disposeAbort = onAbort(signal, (reason) => this.destroy(reason as Error));
  }

  override _read(): void {
    if (this.#over || this.#inflight >= CREDIT) return;
    const n = CREDIT - this.#inflight;
    this.#inflight = CREDIT;
    this.#worker.post({ t: 'credit', id: this.#id, n });
  }

  /** A chunk from the worker. */
  chunk(buf: ArrayBuffer): void {
    if (this.#over) return;
    this.#inflight--;
    this.push(Buffer.from(buf));
  }

  /** The worker's last chunk was sent. */
  done(): void {
    if (this.#over) return;
    this.#finish();
    this.push(null);
  }

  /** The query failed (or the worker died). */
  fail(err: Error): void {
    if (this.#over) return;
    this.destroy(dbError(err, this.#source, this.#action, this.#signal) as Error);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.#over) {
      this.#worker.post({ t: 'cancel', id: this.#id });
      this.#finish();
    }
    callback(err);
  }

  #finish(): void {
    if (this.#over) return;
    this.#over = true;
    this.#disposeAbort();
    this.#worker.forget(this.#id);
    this.#onEnd();
  }
}

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/** One reader worker thread and its requests. */
export class SqliteWorker {
  readonly #thread: Worker;
  readonly #pending = new Map<number, Pending>();
  readonly #streams = new Map<number, WorkerRowStream>();
  readonly #onDeath: (w: SqliteWorker) => void;
  #nextId = 1;
  #dead: Error | undefined;
  #ready = false;
  #onReady!: () => void;
  /** Settles when the thread has loaded its module (or has died). */
  readonly whenReady = new Promise<void>((r) => (this.#onReady = r));

  /** @param onDeath - called once if the thread ends or fails */
  constructor(onDeath: (w: SqliteWorker) => void) {
    this.#onDeath = onDeath;
    this.#thread = startWorker();
    this.#thread.on('message', (m: SqliteWorkerReply) => this.#onMessage(m));
    this.#thread.on('error', (err) => this.#die(err));
    this.#thread.on('exit', (code) => this.#die(new Error(`the SQLite reader worker exited (code ${code})`)));
    this.#thread.unref();
  }

  /** Whether the thread ended before its entry module had loaded (it cannot start here). */
  get stillborn(): boolean {
    return this.#dead !== undefined && !this.#ready;
  }

  /** Whether the thread has loaded its module and can serve at once. */
  get ready(): boolean {
    return this.#ready && this.#dead === undefined;
  }

  /** Whether the thread is gone. */
  get dead(): boolean {
    return this.#dead !== undefined;
  }

  /** Keeps the process alive while lent (`true`), or not (idle). */
  hold(busy: boolean): void {
    if (this.#dead !== undefined) return;
    if (busy) this.#thread.ref();
    else this.#thread.unref();
  }

  /** Sends a message that has no reply. */
  post(msg: SqliteWorkerRequest): void {
    if (this.#dead === undefined) this.#thread.postMessage(msg);
  }

  /**
   * Sends a request and waits for its reply; rejects with the worker's
   * error (a revived driver error) or if the thread dies first.
   *
   * @param msg - the request, without its id
   */
  request(msg: WithoutId<Exclude<SqliteWorkerRequest, { t: 'rows' | 'credit' | 'cancel' }>>): Promise<unknown> {
    if (this.#dead !== undefined) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#thread.postMessage({ ...msg, id } as SqliteWorkerRequest);
    });
  }

  /**
   * Starts a range query on the worker's connection and returns its bulk
   * text stream; `onEnd` is called once when the stream ends, fails or is
   * destroyed.
   */
  rows(sql: string, params: unknown[], aff: boolean[], source: string, action: string, signal: AbortSignal | undefined, onEnd: () => void): Readable {
    const id = this.#nextId++;
    const stream = new WorkerRowStream(this, id, source, action, signal, onEnd);
    if (stream.destroyed) return stream; // aborted already
    this.#streams.set(id, stream);
    if (this.#dead !== undefined) {
      stream.fail(this.#dead);
      return stream;
    }
    // No credit yet: nothing is read before the consumer asks (the first `_read`).
    this.#thread.postMessage({ t: 'rows', id, sql, params, aff, credit: 0 } satisfies SqliteWorkerRequest);
    return stream;
  }

  /** Drops a stream's routing entry. */
  forget(id: number): void {
    this.#streams.delete(id);
  }

  /**
   * Ends the thread; pending requests and open streams fail with `reason`.
   *
   * @param reason - why
   */
  async terminate(reason: Error): Promise<void> {
    this.#die(reason);
    await this.#thread.terminate();
  }

  #onMessage(m: SqliteWorkerReply): void {
    switch (m.t) {
      case 'ready':
        this.#ready = true;
        this.#onReady();
        return;
      case 'chunk':
        this.#streams.get(m.id)?.chunk(m.buf);
        return;
      case 'done':
        this.#streams.get(m.id)?.done();
        return;
      case 'ok': {
        const p = this.#pending.get(m.id);
        this.#pending.delete(m.id);
        p?.resolve(m.value);
        return;
      }
      case 'err': {
        const err = revive(m.error);
        const p = this.#pending.get(m.id);
        if (p !== undefined) {
          this.#pending.delete(m.id);
          p.reject(err);
        } else this.#streams.get(m.id)?.fail(err);
      }
    }
  }

  #die(err: Error): void {
    if (this.#dead !== undefined) return;
    this.#dead = err;
    this.#onReady();
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
    for (const s of [...this.#streams.values()]) s.fail(err);
    this.#streams.clear();
    this.#onDeath(this);
  }
}

/** A small pool of reader workers; see the module comment. */
export class SqliteWorkerPool {
  readonly #max: number;
  readonly #name: string;
  readonly #idle: SqliteWorker[] = [];
  readonly #all = new Set<SqliteWorker>();
  #closed = false;
  #broken = false;

  /**
   * @param max - the most workers at once (0: never any)
   * @param name - the source's name, for messages
   */
  constructor(max: number, name: string) {
    this.#max = max;
    this.#name = name;
  }

  /** Live workers (idle or lent). */
  get size(): number {
    return this.#all.size;
  }

  /**
   * Starts idle workers up to `max`, so that the first reads do not wait
   * for a thread to load (tens of ms from `dist/`, a few hundred under
   * tsx). They stay unref'd until lent.
   */
  warm(): void {
    while (!this.#closed && !this.#broken && this.#all.size < this.#max) {
      const w = this.#spawn();
      if (w === undefined) return;
      w.hold(false);
      this.#idle.push(w);
    }
  }

  #spawn(): SqliteWorker | undefined {
    let w: SqliteWorker;
    try {
      w = new SqliteWorker((dead) => {
        // A thread that could not even load its module will not do better next time: read in-thread from now on.
        if (dead.stillborn) this.#broken = true;
        this.#all.delete(dead);
        const i = this.#idle.indexOf(dead);
        if (i >= 0) this.#idle.splice(i, 1);
      });
    } catch {
      return undefined;
    }
    this.#all.add(w);
    return w;
  }

  /**
   * An idle worker (one that has loaded first), or a new one while fewer
   * than `max` exist; `undefined` when all are lent (or the pool is closed,
   * or threads cannot start here): the caller then reads in this thread. A
   * worker still loading is lent as it is (its requests wait for it: about
   * 0.1 s from `dist/`), since the read it serves may be a large part of a
   * dump. Give it back with {@link release}.
   */
  acquire(): SqliteWorker | undefined {
    if (this.#closed || this.#broken) return undefined;
    let i = this.#idle.findIndex((x) => x.ready);
    if (i < 0) i = this.#idle.findIndex((x) => !x.dead);
    let w: SqliteWorker | undefined;
    if (i >= 0) w = this.#idle.splice(i, 1)[0]!;
    else if (this.#all.size < this.#max) w = this.#spawn();
    if (w === undefined) return undefined;
    w.hold(true);
    return w;
  }

  /** Starts the missing workers and waits until every idle one has loaded (or died). */
  async ready(): Promise<void> {
    this.warm();
    await Promise.all(this.#idle.map((w) => w.whenReady));
  }

  /**
   * Takes a worker back (its connection must have been ended).
   *
   * @param w - a worker from {@link acquire}
   */
  release(w: SqliteWorker): void {
    if (w.dead) return;
    w.hold(false);
    if (this.#closed) void w.terminate(closedError(this.#name));
    else this.#idle.push(w);
  }

  /** Ends every worker; lent ones fail their requests and streams. */
  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#all];
    this.#idle.length = 0;
    await Promise.all(all.map((w) => w.terminate(closedError(this.#name))));
  }
}
