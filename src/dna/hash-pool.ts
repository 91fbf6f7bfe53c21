/**
 * A small pool of worker threads that digest whole files.
 *
 * Hashing in the main thread is synchronous CPU work, so a tree scan on one
 * thread uses one core however many reads are in flight. Each worker reads
 * with 1 MiB synchronous reads and hashes; the main thread only walks the
 * tree and compares. The worker's code is plain JavaScript passed with
 * `eval: true`, so it runs the same from `dist/` and from the TypeScript
 * sources under a test runner.
 *
 * @module
 */
import { Worker } from 'node:worker_threads';
import type { Dna, DnaAlgorithm } from './dna-digest.js';
import { fromFsError, StowageError } from '../errors.js';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const buf = Buffer.allocUnsafe(1 << 20);
parentPort.on('message', ({ id, path, algorithm }) => {
  let fd;
  try {
    fd = fs.openSync(path, 'r');
    const h = createHash(algorithm);
    let size = 0;
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(n === buf.length ? buf : buf.subarray(0, n));
      size += n;
      if (size % (64 << 20) < n) parentPort.postMessage({ id, progress: size });
    }
    parentPort.postMessage({ id, dig: h.digest('hex'), size });
  } catch (err) {
    parentPort.postMessage({ id, error: { code: err.code, message: err.message } });
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
});
`;

interface Pending {
  resolve: (dna: Dna) => void;
  reject: (err: unknown) => void;
  path: string;
  algorithm: DnaAlgorithm;
  reported: number;
  onBytes: ((n: number) => void) | undefined;
}

interface Slot {
  worker: Worker;
  busy: Pending | undefined;
  id: number;
}

/** A pool of hashing worker threads. Call {@link HashPool.close} when done. */
export class HashPool {
  readonly #slots: Slot[] = [];
  readonly #queue: { path: string; algorithm: DnaAlgorithm; onBytes: ((n: number) => void) | undefined; resolve: (d: Dna) => void; reject: (e: unknown) => void }[] = [];
  #nextId = 1;
  #closed = false;

  /** @param size - number of worker threads */
  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true });
      const slot: Slot = { worker, busy: undefined, id: 0 };
      worker.on('message', (m: { id: number; progress?: number; dig?: string; size?: number; error?: { code?: string; message: string } }) => {
        const job = slot.busy;
        if (job === undefined || m.id !== slot.id) return;
        if (m.progress !== undefined) {
          job.onBytes?.(m.progress - job.reported);
          job.reported = m.progress;
          return;
        }
        slot.busy = undefined;
        if (m.error) {
          const e = Object.assign(new Error(m.error.message), { code: m.error.code });
          job.reject(fromFsError(e, 'read', job.path));
        } else {
          job.onBytes?.(m.size! - job.reported);
          job.resolve(Object.freeze({ dig: m.dig!, size: m.size!, algorithm: job.algorithm }));
        }
        this.#pump();
      });
      worker.on('error', (err) => {
        const job = slot.busy;
        slot.busy = undefined;
        job?.reject(new StowageError('EIO', `Hash worker failed while reading ${job.path}: ${err.message}`, { cause: err, details: { path: job.path } }));
      });
      this.#slots.push(slot);
    }
  }

  /**
   * Digests a file on a worker thread.
   *
   * @param path - the file
   * @param algorithm - digest algorithm
   * @param onBytes - called with byte increments while hashing
   */
  hash(path: string, algorithm: DnaAlgorithm, onBytes?: (n: number) => void): Promise<Dna> {
    if (this.#closed) return Promise.reject(new StowageError('EIO', 'HashPool is closed.'));
    return new Promise<Dna>((resolve, reject) => {
      this.#queue.push({ path, algorithm, onBytes, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    for (const slot of this.#slots) {
      if (slot.busy !== undefined) continue;
      const next = this.#queue.shift();
      if (next === undefined) return;
      slot.id = this.#nextId++;
      slot.busy = { ...next, reported: 0 };
      slot.worker.postMessage({ id: slot.id, path: next.path, algorithm: next.algorithm });
    }
  }

  /** Terminates the workers; pending jobs reject with `reason`. */
  async close(reason?: unknown): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const err = reason ?? new StowageError('EIO', 'HashPool closed.');
    for (const q of this.#queue.splice(0)) q.reject(err);
    for (const slot of this.#slots) slot.busy?.reject(err);
    await Promise.all(this.#slots.map((s) => s.worker.terminate()));
  }
}
