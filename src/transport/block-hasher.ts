/**
 * Digests a byte stream on a worker thread, block by block, in order.
 *
 * Why: an SSH upload keeps the main thread busy encrypting (ssh2's AES-GCM
 * runs there), and md5 on the same thread costs as much again (~570 MB/s
 * here against ~770 for AES-GCM), so hashing in line caps a transfer well
 * below what the link carries. Each block is a whole ArrayBuffer
 * *transferred* (not copied) to the worker, which digests it and transfers
 * it back to the pool, so memory stays bounded by the pool and no byte is
 * copied for the digest.
 *
 * @module
 */
import { Worker } from 'node:worker_threads';
import type { Dna, DnaAlgorithm } from '../dna/dna-digest.js';
import { StowageError } from '../errors.js';
import { onAbort, throwIfAborted } from '../util/abort.js';

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const jobs = new Map();
parentPort.on('message', (m) => {
  if (m.t === 'new') { jobs.set(m.id, { h: createHash(m.alg), size: 0 }); return; }
  if (m.t === 'up') {
    const j = jobs.get(m.id);
    if (j !== undefined) { j.h.update(new Uint8Array(m.ab, 0, m.len)); j.size += m.len; }
    parentPort.postMessage({ t: 'free', ab: m.ab }, [m.ab]);
    return;
  }
  if (m.t === 'end') {
    const j = jobs.get(m.id);
    jobs.delete(m.id);
    if (j !== undefined) parentPort.postMessage({ t: 'dig', id: m.id, dig: j.h.digest('hex'), size: j.size });
    return;
  }
  if (m.t === 'drop') jobs.delete(m.id);
});
`;

interface WorkerMessage {
  t: 'free' | 'dig';
  ab?: ArrayBuffer;
  id?: number;
  dig?: string;
  size?: number;
}

/** One digest in progress; see {@link BlockHasher.begin}. */
export interface HashJob {
  /** Bytes handed to the job so far. */
  readonly size: number;
  /**
   * Hands a pool block to the worker: the first `len` bytes are digested,
   * then the block returns to the pool. The caller must not touch `buf`
   * afterwards.
   */
  update(buf: Buffer, len: number): void;
  /** Finishes the digest. */
  digest(): Promise<Dna>;
  /** Forgets the job (its blocks still return to the pool). */
  drop(): void;
}

/**
 * A pool of fixed-size blocks and a worker thread that digests them.
 * Shared by every transfer of one transport; {@link close} stops the worker.
 */
export class BlockHasher {
  /** Size of each pool block. */
  readonly blockSize: number;
  readonly #maxBlocks: number;
  readonly #free: ArrayBuffer[] = [];
  readonly #waiters: ((ab: ArrayBuffer) => void)[] = [];
  readonly #digests = new Map<number, { resolve: (d: { dig: string; size: number }) => void; reject: (e: unknown) => void }>();
  #allocated = 0;
  #worker: Worker | undefined;
  #nextId = 1;
  #broken: Error | undefined;

  /**
   * @param blockSize - bytes per block
   * @param maxBlocks - most blocks alive at once (bounds memory)
   */
  constructor(blockSize: number, maxBlocks: number) {
    this.blockSize = blockSize;
    this.#maxBlocks = maxBlocks;
  }

  #ensureWorker(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const w = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
    w.unref();
    w.on('message', (m: WorkerMessage) => {
      if (m.t === 'free' && m.ab !== undefined) this.#give(m.ab);
      else if (m.t === 'dig' && m.id !== undefined) {
        const p = this.#digests.get(m.id);
        this.#digests.delete(m.id);
        p?.resolve({ dig: m.dig ?? '', size: m.size ?? 0 });
      }
    });
    const fail = (err: Error): void => {
      this.#broken = err;
      this.#worker = undefined;
      // Blocks inside the dead worker are gone: let the pool allocate anew.
      this.#allocated = this.#free.length;
      for (const p of this.#digests.values()) p.reject(new StowageError('EIO', `Digest worker failed: ${err.message}`, { cause: err }));
      this.#digests.clear();
    };
    w.on('error', fail);
    w.on('exit', (code) => {
      if (this.#worker === w) fail(new Error(`digest worker exited with code ${code}`));
    });
    this.#worker = w;
    return w;
  }

  /** Starts the worker thread now (it takes tens of milliseconds), e.g. while a connection is being set up. */
  warm(): void {
    this.#ensureWorker();
  }

  #give(ab: ArrayBuffer): void {
    const w = this.#waiters.shift();
    if (w !== undefined) w(ab);
    else this.#free.push(ab);
  }

  /**
   * Takes a block from the pool, waiting while all are in use.
   *
   * @param signal - cancels the wait
   */
  async acquire(signal?: AbortSignal): Promise<Buffer> {
    throwIfAborted(signal);
    const ab = this.#free.pop();
    if (ab !== undefined) return Buffer.from(ab);
    if (this.#allocated < this.#maxBlocks) {
      this.#allocated += 1;
      return Buffer.from(new ArrayBuffer(this.blockSize));
    }
    return new Promise<Buffer>((resolve, reject) => {
      const waiter = (got: ArrayBuffer): void => {
        dispose();
        resolve(Buffer.from(got));
      };
      this.#waiters.push(waiter);
      const dispose = onAbort(signal, (reason) => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(reason);
      });
    });
  }

  /**
   * Returns an unused block to the pool.
   *
   * @param buf - a block from {@link acquire}
   */
  release(buf: Buffer): void {
    if (buf.buffer.byteLength === this.blockSize && buf.buffer.byteLength > 0) this.#give(buf.buffer as ArrayBuffer);
  }

  /**
   * Starts a digest.
   *
   * @param algorithm - digest algorithm
   */
  begin(algorithm: DnaAlgorithm): HashJob {
    if (this.#broken !== undefined && this.#worker === undefined) this.#broken = undefined;
    const w = this.#ensureWorker();
    const id = this.#nextId++;
    w.postMessage({ t: 'new', id, alg: algorithm });
    let size = 0;
    let done = false;
    return {
      get size() {
        return size;
      },
      update: (buf: Buffer, len: number) => {
        if (done) throw new StowageError('EIO', 'HashJob.update() after digest()');
        size += len;
        const ab = buf.buffer as ArrayBuffer;
        w.postMessage({ t: 'up', id, ab, len }, [ab]);
      },
      digest: () => {
        done = true;
        return new Promise<Dna>((resolve, reject) => {
          this.#digests.set(id, { resolve: (d) => resolve(Object.freeze({ dig: d.dig, size: d.size, algorithm })), reject });
          w.postMessage({ t: 'end', id });
        });
      },
      drop: () => {
        done = true;
        w.postMessage({ t: 'drop', id });
      },
    };
  }

  /** Stops the worker. Pending digests fail. */
  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    for (const p of this.#digests.values()) p.reject(new StowageError('EIO', 'Digest worker closed.'));
    this.#digests.clear();
    if (w !== undefined) await w.terminate();
  }
}
