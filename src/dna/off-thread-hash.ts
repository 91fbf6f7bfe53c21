/**
 * A digest of a byte stream computed on a worker thread, for streams that
 * pass through the main thread anyway (rows read from a database).
 *
 * Why: a partition dump is paced by its main thread, which parses the rows
 * the server sends, spools them and feeds the archive writer; the md5 of
 * the rows (the range digest of a unique-key table) took a sixth of its
 * time there. The bytes are copied into 256 KiB blocks whose memory is
 * handed over to the worker (no second copy), so the main thread pays one
 * `memcpy` per byte instead of md5. 1M rows (143 MB) dumped from MariaDB
 * on 2 cores: see the CHANGELOG.
 *
 * A stream of less than one block never reaches the worker: it is hashed
 * on the main thread when its digest is asked for, so small partitions do
 * not pay for a thread. One worker, started on first use, serves every
 * stream of the process, in the order their blocks arrive; it is
 * `unref`'d except while a digest or a {@link OffThreadHash.drain} is
 * awaited, so it never keeps a process alive on its own. If it dies, every
 * stream it held fails with EIO and the next one starts a new worker.
 *
 * The worker's code is plain JavaScript passed with `eval: true` and an
 * empty `execArgv`, as in `hash-pool.ts`.
 *
 * @module
 * @internal
 */
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { StowageError } from '../errors.js';
import type { DnaAlgorithm } from './dna.js';

const WORKER_SOURCE = `'use strict';
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    let h = hashes.get(m.id);
    if (h === undefined) hashes.set(m.id, (h = createHash(m.algorithm)));
    h.update(new Uint8Array(m.buf));
    parentPort.postMessage({ id: m.id, done: m.buf.byteLength });
  } else if (m.op === 'digest') {
    const h = hashes.get(m.id) ?? createHash(m.algorithm);
    hashes.delete(m.id);
    parentPort.postMessage({ id: m.id, hex: h.digest('hex') });
  } else {
    hashes.delete(m.id);
  }
});
`;

/** Bytes copied into one block before it is handed to the worker. */
const BLOCK_BYTES = 256 * 1024;

interface Reply {
  id: number;
  done?: number;
  hex?: string;
}

interface Shared {
  readonly worker: Worker;
  /** Streams with blocks or a digest on the worker. */
  readonly live: Map<number, OffThreadHash>;
  /** Streams awaiting the worker (a digest or a drain): the worker is `ref`'d while there are any. */
  awaited: number;
}

let shared: Shared | undefined;
let nextId = 1;

function sharedWorker(): Shared {
  if (shared !== undefined) return shared;
  const worker = new Worker(WORKER_SOURCE, { eval: true, execArgv: [] });
  const s: Shared = { worker, live: new Map(), awaited: 0 };
  const fail = (err: unknown): void => {
    if (shared === s) shared = undefined;
    const e = new StowageError('EIO', `The hashing thread failed: ${err instanceof Error ? err.message : String(err)}.`, { cause: err });
    const streams = [...s.live.values()];
    s.live.clear();
    for (const h of streams) h._fail(e);
  };
  worker.on('message', (m: Reply) => s.live.get(m.id)?._reply(m));
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`it exited with code ${code}`)));
  worker.unref();
  shared = s;
  return s;
}

/**
 * Whether the shared worker is running. For tests.
 *
 * @internal
 */
export function hashThreadRunning(): boolean {
  return shared !== undefined;
}

/**
 * Ends the shared worker, as a crash would: every stream it holds fails
 * with EIO. For tests.
 *
 * @internal
 */
export async function terminateHashThread(): Promise<void> {
  const s = shared;
  if (s === undefined) return;
  await s.worker.terminate();
}

/**
 * A hash fed on the main thread and computed on a worker (see the module
 * documentation).
 *
 * @example
 * ```ts
 * const h = new OffThreadHash('md5');
 * for await (const chunk of rows) {
 *   h.update(chunk);
 *   if (h.backlog > 16 << 20) await h.drain(16 << 20);
 * }
 * const hex = await h.digest();
 * ```
 */
export class OffThreadHash {
  readonly #algorithm: DnaAlgorithm;
  #block: Uint8Array | undefined;
  #fill = 0;
  /** Its id on the worker; 0 until its first block is sent. */
  #id = 0;
  #shared: Shared | undefined;
  #sent = 0;
  #hashed = 0;
  #failed: StowageError | undefined;
  #finished = false;
  /** The awaited digest or drain, if any. */
  #waiter: { test: () => boolean; resolve: () => void; reject: (err: unknown) => void } | undefined;
  #hex: string | undefined;

  /** @param algorithm - the digest algorithm */
  constructor(algorithm: DnaAlgorithm) {
    this.#algorithm = algorithm;
  }

  /** Bytes handed to the worker and not hashed yet. */
  get backlog(): number {
    return this.#sent - this.#hashed;
  }

  /**
   * Adds bytes. They are copied: the caller may reuse `chunk` at once.
   *
   * @param chunk - the next bytes
   */
  update(chunk: Uint8Array): void {
    if (this.#finished) throw new StowageError('EIO', 'OffThreadHash.update() after digest() or abort().');
    if (this.#failed !== undefined) throw this.#failed;
    let off = 0;
    while (off < chunk.length) {
      this.#block ??= new Uint8Array(BLOCK_BYTES);
      const n = Math.min(BLOCK_BYTES - this.#fill, chunk.length - off);
      this.#block.set(off === 0 && n === chunk.length ? chunk : chunk.subarray(off, off + n), this.#fill);
      this.#fill += n;
      off += n;
      if (this.#fill === BLOCK_BYTES) this.#send();
    }
  }

  /**
   * Resolves once the backlog is at most `maxBacklog` bytes; rejects (EIO)
   * if the worker failed.
   *
   * @param maxBacklog - bytes the worker may still have to hash
   */
  async drain(maxBacklog: number): Promise<void> {
    if (this.#failed !== undefined) throw this.#failed;
    if (this.backlog <= maxBacklog) return;
    await this.#wait(() => this.backlog <= maxBacklog);
  }

  /** The lower-case hex digest of every byte added; rejects (EIO) if the worker failed. */
  async digest(): Promise<string> {
    if (this.#hex !== undefined) return this.#hex;
    if (this.#failed !== undefined) throw this.#failed;
    if (this.#finished) throw new StowageError('EIO', 'OffThreadHash.digest() after abort().');
    this.#finished = true;
    if (this.#id === 0) {
      // Less than one block in all: not worth a thread.
      const h = createHash(this.#algorithm);
      if (this.#fill > 0) h.update(this.#block!.subarray(0, this.#fill));
      this.#block = undefined;
      this.#hex = h.digest('hex');
      return this.#hex;
    }
    if (this.#fill > 0) this.#send();
    this.#shared!.worker.postMessage({ op: 'digest', id: this.#id, algorithm: this.#algorithm });
    await this.#wait(() => this.#hex !== undefined);
    return this.#hex!;
  }

  /** Drops the stream (and its state on the worker). Idempotent. */
  abort(): void {
    this.#finished = true;
    this.#block = undefined;
    const s = this.#shared;
    if (s === undefined || this.#id === 0 || !s.live.has(this.#id)) return;
    s.live.delete(this.#id);
    s.worker.postMessage({ op: 'drop', id: this.#id });
  }

  /** @internal A message from the worker about this stream. */
  _reply(m: Reply): void {
    if (m.done !== undefined) this.#hashed += m.done;
    if (m.hex !== undefined) {
      this.#hex = m.hex;
      this.#shared?.live.delete(this.#id);
    }
    const w = this.#waiter;
    if (w !== undefined && w.test()) w.resolve();
  }

  /** @internal The worker died. */
  _fail(err: StowageError): void {
    this.#failed ??= err;
    this.#waiter?.reject(err);
  }

  #send(): void {
    if (this.#id === 0) {
      this.#shared = sharedWorker();
      this.#id = nextId++;
      this.#shared.live.set(this.#id, this);
    }
    const block = this.#block!;
    this.#block = undefined;
    const buf = this.#fill === block.length ? block.buffer : block.buffer.slice(0, this.#fill);
    this.#sent += this.#fill;
    this.#fill = 0;
    this.#shared!.worker.postMessage({ op: 'update', id: this.#id, algorithm: this.#algorithm, buf }, [buf as ArrayBuffer]);
  }

  #wait(test: () => boolean): Promise<void> {
    const s = this.#shared!;
    return new Promise<void>((resolve, reject) => {
      if (s.awaited++ === 0) s.worker.ref();
      const done = (): void => {
        this.#waiter = undefined;
        if (--s.awaited === 0) s.worker.unref();
      };
      this.#waiter = {
        test,
        resolve: () => {
          done();
          resolve();
        },
        reject: (err) => {
          done();
          reject(err);
        },
      };
    });
  }
}
