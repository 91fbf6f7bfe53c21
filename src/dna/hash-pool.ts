/**
 * A small pool of worker threads that digest whole files.
 *
 * Why: hashing is synchronous CPU work, so a tree scan on one thread uses
 * one core however many reads are in flight. Each worker reads with 1 MiB
 * synchronous reads (page-cache copies; the disk is not the bottleneck) and
 * hashes; it also reads the file's sidecar, so the main thread does no file
 * I/O per file at all (an async `readFile` costs it ~0.1 ms of CPU, which at
 * 2,000 files is a tenth of a whole scan). The main thread only walks the
 * tree, parses sidecars and compares.
 *
 * Each worker holds up to two jobs so it never waits for a round trip to
 * the main thread between files. Workers start lazily (a one-file tree
 * starts one), are `ref`'d only while they hold a job (an abandoned idle
 * pool never keeps the process alive) and are terminated by
 * {@link HashPool.close}, which interrupts a worker in the middle of a file.
 *
 * A worker takes 30 ms to boot on a quiet machine and several times that
 * on a busy one; until the first one says it is ready, the main thread
 * hashes jobs itself (async reads, one job at a time), so a small tree is
 * done before the threads are up and a large one loses no time.
 *
 * The worker's code is plain JavaScript passed with `eval: true` and an
 * empty `execArgv`, so it runs the same from `dist/` and from the sources
 * under a TypeScript loader, and does not boot that loader in each worker.
 *
 * @module
 * @internal
 */
import { Worker } from 'node:worker_threads';
import { fromFsError, StowageError } from '../errors.js';
import { MAX_SIDECAR_BYTES, parseSidecar, sidecarReadError, sidecarTooBig, type Dna, type DnaAlgorithm } from './dna.js';
import { hashFile, readSidecarText } from './file-hash.js';

const WORKER_SOURCE = `'use strict';
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const MAX_SIDECAR = ${MAX_SIDECAR_BYTES};
const PROGRESS_EVERY = 16 << 20;
const ALGORITHMS = ['md5', 'sha1', 'sha256', 'sha512'];
const buf = Buffer.allocUnsafe(1 << 20);
const side = Buffer.allocUnsafe(MAX_SIDECAR + 1);
const errorOf = (stage, err) => ({ stage, code: err && err.code, message: String((err && err.message) || err) });
function readSidecar(path) {
  const fd = fs.openSync(path, 'r');
  try {
    let len = 0;
    for (;;) {
      const n = fs.readSync(fd, side, len, side.length - len, null);
      if (n === 0) break;
      len += n;
      if (len === side.length) break;
    }
    return len > MAX_SIDECAR ? undefined : side.toString('utf8', 0, len);
  } finally {
    fs.closeSync(fd);
  }
}
// The algorithm a sidecar names, found cheaply so the file is read once; the
// main thread parses the sidecar properly and re-hashes if this was wrong.
// undefined: the sidecar looks malformed, do not spend a read on the file.
function algorithmOf(text) {
  if (!/["']dig["']/.test(text)) return undefined;
  if (!text.includes('algorithm')) return 'md5';
  const m = /["']algorithm["']\\s*:\\s*[uUbB]?["']([a-z0-9]{1,8})["']/.exec(text);
  return m !== null && ALGORITHMS.includes(m[1]) ? m[1] : undefined;
}
function hash(id, path, algorithm) {
  const fd = fs.openSync(path, 'r');
  try {
    const h = createHash(algorithm);
    let size = 0;
    let next = PROGRESS_EVERY;
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(n === buf.length ? buf : buf.subarray(0, n));
      size += n;
      if (size >= next) {
        parentPort.postMessage({ id, progress: size });
        next = size + PROGRESS_EVERY;
      }
    }
    return { dig: h.digest('hex'), size, algorithm };
  } finally {
    fs.closeSync(fd);
  }
}
parentPort.postMessage({ ready: true });
parentPort.on('message', ({ id, path, sidecar, algorithm }) => {
  const reply = { id };
  if (sidecar !== undefined) {
    try {
      const text = readSidecar(sidecar);
      if (text === undefined) {
        reply.sidecarTooBig = true;
        parentPort.postMessage(reply);
        return;
      }
      reply.sidecarText = text;
      algorithm = algorithmOf(text);
    } catch (err) {
      reply.error = errorOf('sidecar', err);
      parentPort.postMessage(reply);
      return;
    }
    if (algorithm === undefined) {
      parentPort.postMessage(reply);
      return;
    }
  }
  try {
    Object.assign(reply, hash(id, path, algorithm));
  } catch (err) {
    reply.error = errorOf('file', err);
  }
  parentPort.postMessage(reply);
});
`;

/** Jobs a worker holds at once: one running, one waiting in its port. */
const DEPTH = 2;

interface Reply {
  id?: number;
  ready?: boolean;
  progress?: number;
  sidecarTooBig?: boolean;
  sidecarText?: string;
  dig?: string;
  size?: number;
  algorithm?: DnaAlgorithm;
  error?: { stage: 'sidecar' | 'file'; code?: string; message: string };
}

interface Job {
  id: number;
  path: string;
  sidecar: string | undefined;
  algorithm: DnaAlgorithm | undefined;
  onBytes: ((n: number) => void) | undefined;
  reported: number;
  resolve: (r: Reply) => void;
  reject: (err: unknown) => void;
}

interface Slot {
  worker: Worker;
  jobs: Map<number, Job>;
  ready: boolean;
}

/** Options of {@link HashPool}. */
export interface HashPoolOptions {
  /** Most worker threads at once. */
  size: number;
  /** Worker source replacing the real one; tests use it to make a worker crash. */
  workerSource?: string;
  /** Hash in the calling thread while no worker is ready yet (default true). */
  mainThread?: boolean;
}

/** A pool of hashing worker threads. Call {@link HashPool.close} when done. */
export class HashPool {
  readonly #size: number;
  readonly #source: string;
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  readonly #mainThread: boolean;
  readonly #stop = new AbortController();
  #mainJob: Promise<void> | undefined;
  #nextId = 1;
  #closed = false;
  #broken: StowageError | undefined;

  /** @param options - pool size, main-thread help */
  constructor(options: HashPoolOptions) {
    this.#size = options.size;
    this.#source = options.workerSource ?? WORKER_SOURCE;
    this.#mainThread = options.mainThread ?? true;
  }

  /** Worker threads alive now. */
  get threads(): number {
    return this.#slots.length;
  }

  /**
   * Digests a file on a worker thread.
   *
   * @param path - the file
   * @param algorithm - digest algorithm
   * @param onBytes - called with byte increments while hashing
   */
  async hash(path: string, algorithm: DnaAlgorithm, onBytes?: (n: number) => void): Promise<Dna> {
    const r = await this.#submit(path, undefined, algorithm, onBytes);
    return Object.freeze({ dig: r.dig!, size: r.size!, algorithm });
  }

  /**
   * Reads `file`'s sidecar and digests `file` with the algorithm the
   * sidecar names, on a worker thread. Sidecar trouble rejects with
   * ENO_SIDECAR or EBAD_SIDECAR (the file is then not read), file trouble
   * as {@link fromFsError} maps it.
   *
   * @param file - the file
   * @param sidecar - its sidecar's path
   * @param onBytes - called with byte increments while hashing
   */
  async check(file: string, sidecar: string, onBytes?: (n: number) => void): Promise<{ expected: Dna; actual: Dna }> {
    const r = await this.#submit(file, sidecar, undefined, onBytes);
    if (r.sidecarTooBig) throw sidecarTooBig(file, sidecar);
    const expected = parseSidecar(r.sidecarText ?? '', sidecar);
    if (r.dig === undefined || r.algorithm !== expected.algorithm) {
      // The worker's quick look at the sidecar disagreed with the parser.
      return { expected, actual: await this.hash(file, expected.algorithm, onBytes) };
    }
    return { expected, actual: Object.freeze({ dig: r.dig, size: r.size!, algorithm: r.algorithm }) };
  }

  #submit(path: string, sidecar: string | undefined, algorithm: DnaAlgorithm | undefined, onBytes: ((n: number) => void) | undefined): Promise<Reply> {
    if (this.#closed) return Promise.reject(new StowageError('EIO', 'HashPool is closed.'));
    if (this.#broken && !this.#mainThread) return Promise.reject(this.#broken);
    return new Promise<Reply>((resolve, reject) => {
      this.#queue.push({ id: this.#nextId++, path, sidecar, algorithm, onBytes, reported: 0, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#queue.length > 0 && !this.#closed) {
      let slot = this.#slots.find((s) => s.ready && s.jobs.size === 0);
      if (slot === undefined && !this.#broken && this.#slots.length < this.#size && this.#queue.length > this.#slots.filter((s) => !s.ready).length) {
        this.#spawn();
        continue;
      }
      slot ??= this.#slots.find((s) => s.ready && s.jobs.size < DEPTH);
      if (slot !== undefined) {
        const job = this.#queue.shift()!;
        slot.jobs.set(job.id, job);
        slot.worker.ref();
        slot.worker.postMessage({ id: job.id, path: job.path, sidecar: job.sidecar, algorithm: job.algorithm });
        continue;
      }
      if (this.#mainThread && this.#mainJob === undefined && !this.#slots.some((s) => s.ready)) {
        this.#mainJob = this.#runInMain(this.#queue.shift()!);
        continue;
      }
      return;
    }
  }

  /** Runs one job in this thread (while the workers boot). */
  async #runInMain(job: Job): Promise<void> {
    await Promise.resolve(); // let #pump return before this job settles
    try {
      const reply: Reply = { id: job.id };
      let algorithm = job.algorithm;
      if (job.sidecar !== undefined) {
        reply.sidecarText = await readSidecarText(job.path, job.sidecar);
        try {
          algorithm = parseSidecar(reply.sidecarText, job.sidecar).algorithm;
        } catch {
          algorithm = undefined; // check() parses again and rejects with EBAD_SIDECAR
        }
      }
      if (algorithm !== undefined) {
        const r = await hashFile(job.path, algorithm, { signal: this.#stop.signal, onBytes: job.onBytes });
        Object.assign(reply, r, { algorithm });
      }
      job.resolve(reply);
    } catch (err) {
      job.reject(err);
    } finally {
      this.#mainJob = undefined;
      this.#pump();
    }
  }

  #spawn(): void {
    let worker: Worker;
    try {
      worker = new Worker(this.#source, { eval: true, execArgv: [] });
    } catch (err) {
      // Out of memory or threads: no worker now means none later either.
      this.#giveUp(new StowageError('EIO', `Cannot start a hash worker: ${(err as Error).message}`, { cause: err }));
      return;
    }
    const slot: Slot = { worker, jobs: new Map(), ready: false };
    let crash: Error | undefined;
    worker.on('message', (m: Reply) => this.#onMessage(slot, m));
    worker.on('error', (err) => {
      crash = err;
    });
    worker.on('exit', (code) => {
      const at = this.#slots.indexOf(slot);
      if (at >= 0) this.#slots.splice(at, 1);
      if (this.#closed) return;
      const paths = [...slot.jobs.values()].map((j) => j.path);
      const err = new StowageError('EIO', `A hash worker died (exit code ${code}${crash ? `: ${crash.message}` : ''}) while reading ${paths.join(', ') || 'nothing'}.`, {
        cause: crash,
        details: { paths, exitCode: code },
      });
      for (const job of slot.jobs.values()) job.reject(err);
      slot.jobs.clear();
      // A worker that dies before it is ready would die again: start no more.
      if (!slot.ready) this.#giveUp(err);
      this.#pump();
    });
    // After the listeners: adding a 'message' listener refs the worker's port again.
    worker.unref();
    this.#slots.push(slot);
  }

  /**
   * Starts no more workers. With main-thread help the queue is then worked
   * off in this thread (slower, still correct); without it every job fails.
   */
  #giveUp(err: StowageError): void {
    this.#broken = err;
    if (!this.#mainThread) for (const job of this.#queue.splice(0)) job.reject(err);
  }

  #onMessage(slot: Slot, m: Reply): void {
    if (m.ready) {
      slot.ready = true;
      this.#pump();
      return;
    }
    const job = m.id === undefined ? undefined : slot.jobs.get(m.id);
    if (job === undefined) return;
    if (m.progress !== undefined) {
      job.onBytes?.(m.progress - job.reported);
      job.reported = m.progress;
      return;
    }
    slot.jobs.delete(job.id);
    if (slot.jobs.size === 0) slot.worker.unref();
    if (m.error) {
      const e = Object.assign(new Error(m.error.message), { code: m.error.code });
      job.reject(m.error.stage === 'sidecar' ? sidecarReadError(e, job.path, job.sidecar!) : fromFsError(e, 'read', job.path));
    } else {
      if (m.size !== undefined) job.onBytes?.(m.size - job.reported);
      job.resolve(m);
    }
    this.#pump();
  }

  /**
   * Terminates the workers, interrupting any file being hashed; pending
   * jobs reject with `reason`. Resolves when every thread has exited.
   *
   * @param reason - the rejection of pending jobs (an abort reason, usually)
   */
  async close(reason?: unknown): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const err = reason ?? new StowageError('EIO', 'HashPool closed.');
    this.#stop.abort(err);
    for (const job of this.#queue.splice(0)) job.reject(err);
    for (const slot of this.#slots) {
      for (const job of slot.jobs.values()) job.reject(err);
      slot.jobs.clear();
    }
    await Promise.all([...this.#slots.map((s) => s.worker.terminate()), this.#mainJob]);
  }
}
