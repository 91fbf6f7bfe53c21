/**
 * Digests a byte stream on a worker thread, block by block, in order.
 *
 * Why: an SSH upload keeps the main thread busy encrypting (ssh2's AES-GCM
 * runs there), and md5 on the same thread costs as much again (~570 MB/s
 * here against ~770 for AES-GCM), so hashing in line caps a transfer well
 * below what the link carries. Likewise an archive being written keeps the
 * main thread busy packing tar and feeding the gzip threads, and md5 of the
 * output in line made a create ~10% slower. Each block is a whole
 * ArrayBuffer *transferred* (not copied) to the worker, which digests it
 * and transfers it back to the pool, so memory stays bounded by the pool.
 * A caller whose bytes are not in pool blocks (the archive writer's gzip
 * members) copies them in with {@link BlockHasher.feed}: a memcpy costs a
 * few percent of an md5.
 *
 * @module
 */
import { Worker } from 'node:worker_threads';
import type { Dna, DnaAlgorithm } from './dna-digest.js';
import { StowageError } from '../errors.js';
import { onAbort, throwIfAborted } from '../util/abort.js';

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const jobs = new Map();
// A background hasher lowers its own thread's priority (Linux, where a
// thread has a nice value of its own): it then takes what the other
// threads leave of the CPU. Elsewhere, or where it is not allowed, it runs
// at the process's priority.
if (workerData.niceness > 0 && process.platform === 'linux') {
  try {
    const os = require('node:os');
    const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop());
    os.setPriority(tid, Math.min(19, os.getPriority(tid) + workerData.niceness));
  } catch {}
}
// Messages come in batches (one postMessage per turn of the caller's event
// loop); the freed blocks and finished digests of a batch go back in one.
parentPort.on('message', (batch) => {
  const free = [];
  const digs = [];
  for (const m of batch) {
    if (m.t === 'new') jobs.set(m.id, { h: createHash(m.alg), h2: m.also === undefined ? undefined : createHash(m.also), size: 0 });
    else if (m.t === 'up') {
      const j = jobs.get(m.id);
      if (j !== undefined) {
        const bytes = new Uint8Array(m.ab, 0, m.len);
        j.h.update(bytes);
        j.h2?.update(bytes);
        j.size += m.len;
      }
      free.push(m.ab);
    } else if (m.t === 'end') {
      const j = jobs.get(m.id);
      jobs.delete(m.id);
      // A job this worker never saw (begun on a worker that died): say so.
      digs.push(j !== undefined ? { id: m.id, dig: j.h.digest('hex'), also: j.h2?.digest('hex'), size: j.size } : { id: m.id, dig: null, size: 0 });
    } else if (m.t === 'drop') jobs.delete(m.id);
  }
  parentPort.postMessage({ free, digs }, free);
});
`;

/** The error of a digest whose worker died (`err`) or was closed (`undefined`). */
function workerFailed(err: Error | undefined): StowageError {
  return new StowageError('EIO', `Digest worker failed: ${err?.message ?? 'closed'}`, { cause: err });
}

interface WorkerReply {
  free: ArrayBuffer[];
  digs: { id: number; dig: string | null; also?: string; size: number }[];
}

type WorkerRequest =
  | { t: 'new'; id: number; alg: DnaAlgorithm; also: DnaAlgorithm | undefined }
  | { t: 'up'; id: number; ab: ArrayBuffer; len: number }
  | { t: 'end' | 'drop'; id: number };

/** What a {@link HashJob} digested: its DNA, and the digest of the `also` algorithm when one was asked for. */
export interface JobDigest extends Dna {
  /** Lower-case hex digest of the same bytes by the job's `also` algorithm (see {@link BlockHasher.begin}). */
  readonly also?: string;
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
  digest(): Promise<JobDigest>;
  /** Forgets the job (its blocks still return to the pool). */
  drop(): void;
}

/**
 * A pool of blocks and a worker thread that digests them. Memory is bounded
 * by a byte budget (`maxBlocks` full blocks): full blocks are reused, and a
 * small file asks for a block fitted to its size, so many small transfers
 * in flight do not each pin a full block.
 * Shared by every transfer of one transport; {@link close} stops the worker.
 */
export class BlockHasher {
  /** Size of each full pool block. */
  readonly blockSize: number;
  readonly #budget: number;
  readonly #free: ArrayBuffer[] = [];
  readonly #waiters: { bytes: number; grant: (ab: ArrayBuffer) => void }[] = [];
  readonly #digests = new Map<number, { resolve: (d: { dig: string; also?: string | undefined; size: number }) => void; reject: (e: unknown) => void }>();
  /** Bytes of blocks alive: handed out, in the worker, or free. */
  #used = 0;
  /** Bytes of blocks inside the worker (lost with it if it dies). */
  #inWorker = 0;
  #outbox: WorkerRequest[] = [];
  #outboxTransfer: ArrayBuffer[] = [];
  #flushScheduled = false;
  #worker: Worker | undefined;
  #nextId = 1;
  #broken: Error | undefined;
  /** Jobs begun and not yet finished or dropped: while any is, the worker keeps the process alive. */
  #active = 0;

  readonly #niceness: number;

  /**
   * @param blockSize - bytes per full block
   * @param maxBlocks - memory budget, in full blocks
   * @param options - `niceness`: how much lower than the process's the
   *   worker thread's priority is (Linux; 0, the default, leaves it equal)
   */
  constructor(blockSize: number, maxBlocks: number, options: { niceness?: number } = {}) {
    this.blockSize = blockSize;
    this.#budget = blockSize * maxBlocks;
    this.#niceness = options.niceness ?? 0;
  }

  #ensureWorker(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const w = new Worker(WORKER_SOURCE, { eval: true, execArgv: [], workerData: { niceness: this.#niceness } });
    if (this.#active === 0) w.unref();
    w.on('message', (m: WorkerReply) => {
      for (const ab of m.free) {
        this.#inWorker -= ab.byteLength;
        this.#give(ab);
      }
      for (const d of m.digs) {
        const p = this.#digests.get(d.id);
        this.#digests.delete(d.id);
        if (d.dig === null) p?.reject(new StowageError('EIO', 'Digest lost: the digest worker was restarted while this transfer was being digested.'));
        else p?.resolve(d as { dig: string; also?: string; size: number });
      }
    });
    const fail = (err: Error): void => {
      this.#broken = err;
      this.#worker = undefined;
      // Blocks inside the dead worker are gone: let the pool allocate anew.
      this.#used -= this.#inWorker;
      this.#inWorker = 0;
      this.#outbox = [];
      this.#outboxTransfer = [];
      for (const p of this.#digests.values()) p.reject(workerFailed(err));
      this.#digests.clear();
      this.#serve();
    };
    w.on('error', fail);
    w.on('exit', (code) => {
      if (this.#worker === w) fail(new Error(`digest worker exited with code ${code}`));
    });
    this.#worker = w;
    return w;
  }

  /** Queues a message for the worker; what one turn of the event loop queues leaves in one postMessage. */
  #post(m: WorkerRequest): void {
    this.#outbox.push(m);
    if (m.t === 'up') {
      this.#outboxTransfer.push(m.ab);
      this.#inWorker += m.ab.byteLength;
    }
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const batch = this.#outbox;
      const transfer = this.#outboxTransfer;
      this.#outbox = [];
      this.#outboxTransfer = [];
      if (batch.length === 0) return;
      if (this.#worker !== undefined) {
        this.#worker.postMessage(batch, transfer);
        return;
      }
      // No worker to take them (it died): the blocks come straight back.
      for (const ab of transfer) {
        this.#inWorker -= ab.byteLength;
        this.#give(ab);
      }
    });
  }

  /** Starts the worker thread now (it takes tens of milliseconds), e.g. while a connection is being set up. */
  warm(): void {
    this.#ensureWorker();
  }

  /** A block for `bytes` (a full one when more than half a block) if the budget allows, else undefined. */
  #take(bytes: number): ArrayBuffer | undefined {
    const want = bytes > this.blockSize / 2 ? this.blockSize : Math.max(1, bytes);
    if (want === this.blockSize || this.#used + want > this.#budget) {
      const ab = this.#free.pop();
      if (ab !== undefined) return ab;
    }
    if (this.#used + want > this.#budget) return undefined;
    this.#used += want;
    return new ArrayBuffer(want);
  }

  #give(ab: ArrayBuffer): void {
    if (ab.byteLength === this.blockSize) this.#free.push(ab);
    else this.#used -= ab.byteLength;
    this.#serve();
  }

  #serve(): void {
    while (this.#waiters.length > 0) {
      const ab = this.#take(this.#waiters[0]!.bytes);
      if (ab === undefined) return;
      this.#waiters.shift()!.grant(ab);
    }
  }

  /**
   * Takes a block from the pool, waiting while the budget is spent.
   *
   * @param signal - cancels the wait
   * @param bytes - how many bytes the caller needs at most (default a full
   *   block): a small need gets a block fitted to it
   */
  async acquire(signal?: AbortSignal, bytes: number = this.blockSize): Promise<Buffer> {
    throwIfAborted(signal);
    if (this.#waiters.length === 0) {
      const ab = this.#take(bytes);
      if (ab !== undefined) return Buffer.from(ab);
    }
    return new Promise<Buffer>((resolve, reject) => {
      const waiter = {
        bytes,
        grant: (got: ArrayBuffer): void => {
          dispose();
          resolve(Buffer.from(got));
        },
      };
      this.#waiters.push(waiter);
      const dispose = onAbort(signal, (reason) => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(reason);
        this.#serve();
      });
    });
  }

  /**
   * Returns an unused block to the pool.
   *
   * @param buf - a block from {@link acquire}
   */
  release(buf: Buffer): void {
    if (buf.buffer.byteLength > 0) this.#give(buf.buffer as ArrayBuffer);
  }

  /**
   * Starts a digest.
   *
   * @param algorithm - digest algorithm
   * @param also - a second algorithm digesting the same bytes in the same
   *   pass (each block crosses to the worker once), given as
   *   {@link JobDigest.also}
   */
  begin(algorithm: DnaAlgorithm, also?: DnaAlgorithm): HashJob {
    if (this.#broken !== undefined && this.#worker === undefined) this.#broken = undefined;
    const worker = this.#ensureWorker();
    // An awaited digest must keep the process alive even when nothing else
    // does (an archive written by a script with no socket open); an idle
    // hasher must not.
    if (this.#active++ === 0) worker.ref();
    const settle = (): void => {
      if (--this.#active === 0) this.#worker?.unref();
    };
    const id = this.#nextId++;
    this.#post({ t: 'new', id, alg: algorithm, also });
    let size = 0;
    let done = false;
    return {
      get size() {
        return size;
      },
      update: (buf: Buffer, len: number) => {
        if (done) throw new StowageError('EIO', 'HashJob.update() after digest()');
        size += len;
        this.#post({ t: 'up', id, ab: buf.buffer as ArrayBuffer, len });
      },
      digest: () => {
        if (done) return Promise.reject(new StowageError('EIO', 'HashJob.digest() after digest() or drop()'));
        done = true;
        if (this.#worker === undefined) {
          // The worker died since this job began (its 'end' would go nowhere).
          settle();
          return Promise.reject(workerFailed(this.#broken));
        }
        return new Promise<JobDigest>((resolve, reject) => {
          this.#digests.set(id, {
            resolve: (d) => {
              settle();
              resolve(Object.freeze(d.also === undefined ? { dig: d.dig, size: d.size, algorithm } : { dig: d.dig, size: d.size, algorithm, also: d.also }));
            },
            reject: (e) => {
              settle();
              reject(e);
            },
          });
          this.#post({ t: 'end', id });
        });
      },
      drop: () => {
        if (done) return;
        done = true;
        settle();
        this.#post({ t: 'drop', id });
      },
    };
  }

  /**
   * Digests bytes that are not in pool blocks: copies them into blocks
   * (waiting while the budget is spent, which is the backpressure on a
   * producer faster than the worker) and hands those to `job`. The caller
   * keeps `buf`.
   *
   * @param job - a job of this hasher
   * @param buf - the next bytes
   * @param signal - cancels a wait for a block
   */
  async feed(job: HashJob, buf: Uint8Array, signal?: AbortSignal): Promise<void> {
    for (let off = 0; off < buf.length; ) {
      const block = await this.acquire(signal, buf.length - off);
      const n = Math.min(block.length, buf.length - off);
      block.set(n === buf.length ? buf : buf.subarray(off, off + n), 0);
      job.update(block, n);
      off += n;
    }
  }

  /** Stops the worker. Pending digests fail. */
  async close(): Promise<void> {
    const w = this.#worker;
    this.#worker = undefined;
    this.#outbox = [];
    this.#outboxTransfer = [];
    for (const p of this.#digests.values()) p.reject(new StowageError('EIO', 'Digest worker closed.'));
    this.#digests.clear();
    if (w !== undefined) await w.terminate();
  }
}

/**
 * Copies a stream of chunks into full pool blocks for one job, handing
 * each on once full: a stream of small chunks (rows read from a database)
 * then costs one pooled block and one message per block, where
 * {@link BlockHasher.feed} takes a block fitted to each chunk. Await each
 * {@link write} before the next; end with {@link flush} (then digest the
 * job) or {@link discard}.
 */
export class BlockFeeder {
  readonly #hasher: BlockHasher;
  readonly #job: HashJob;
  #block: Buffer | undefined;
  #fill = 0;
  #discarded = false;

  /**
   * @param hasher - the hasher whose blocks are filled
   * @param job - a job of that hasher
   */
  constructor(hasher: BlockHasher, job: HashJob) {
    this.#hasher = hasher;
    this.#job = job;
  }

  /**
   * Copies `buf` (the caller keeps it), waiting for blocks while the
   * hasher's budget is spent. After {@link discard}, copies nothing.
   *
   * @param buf - the next bytes
   * @param signal - cancels a wait for a block
   */
  async write(buf: Uint8Array, signal?: AbortSignal): Promise<void> {
    for (let off = 0; off < buf.length; ) {
      if (this.#discarded) return;
      if (this.#block === undefined) {
        const block = await this.#hasher.acquire(signal);
        if (this.#discarded) {
          // Discarded while the block was on its way.
          this.#hasher.release(block);
          return;
        }
        this.#block = block;
        this.#fill = 0;
      }
      const n = Math.min(this.#block.length - this.#fill, buf.length - off);
      this.#block.set(off === 0 && n === buf.length ? buf : buf.subarray(off, off + n), this.#fill);
      this.#fill += n;
      off += n;
      if (this.#fill === this.#block.length) {
        this.#job.update(this.#block, this.#fill);
        this.#block = undefined;
      }
    }
  }

  /** Hands the block being filled, if any, to the job. */
  flush(): void {
    if (this.#block !== undefined) this.#job.update(this.#block, this.#fill);
    this.#block = undefined;
  }

  /** Gives the block being filled back to the pool; later writes copy nothing. Idempotent. */
  discard(): void {
    this.#discarded = true;
    if (this.#block !== undefined) this.#hasher.release(this.#block);
    this.#block = undefined;
  }
}

let shared: BlockHasher | undefined;

/**
 * How much lower the shared hasher's thread runs than the process: its
 * nice value is the process's + 10 (Linux).
 *
 * Why: an archive being written keeps both cores of a small machine busy
 * deflating, in bursts (a run of text) with gaps between them (a run of
 * stored random bytes, a file being opened). The md5 of the output, ~0.9
 * CPU-s per GiB of a half-text tree, fits into the gaps; at the same
 * priority it took its share in the bursts instead and slowed them.
 * `archive-dna-overhead` (1 GiB; mean of 6 pairs of runs, each process's
 * first pair left out): 0.934 at the same priority, 0.950 at +5, 1.00 at
 * +10, 0.986 at +19 (one pair varies by +-5% here). +19 would starve the
 * digest, and so the archive (the writer waits for the hasher), on a
 * machine whose cores other work keeps busy: +10 leaves it a tenth of a
 * contended core, ~70 MB/s of md5, about as fast as an archive comes out
 * of gzip.
 */
const SHARED_NICENESS = 10;

/**
 * The process's hasher for work without one of its own (archive writes):
 * 1 MiB blocks, 16 MiB at most, its thread at a lower priority than the
 * process's (see SHARED_NICENESS). Its worker starts on first use, and is
 * unref'd whenever no digest is pending, so it never keeps a process alive.
 */
export function sharedBlockHasher(): BlockHasher {
  shared ??= new BlockHasher(1 << 20, 16, { niceness: SHARED_NICENESS });
  return shared;
}
