/**
 * RowSpool: holds the bulk text of one table's range between reading it
 * (inside a database snapshot) and writing it into the partition archive.
 *
 * Why: a tar header carries the entry's size, which is known only once the
 * last row has been read, and the manifest (the archive's first entry)
 * carries the row count and range digest. So the rows are taken in first:
 * in memory up to `memoryBytes` (a partition of 10k rows is a few MB), then
 * spilled to a file beside the archive, so a partition of any size costs
 * bounded memory. The range digest, the row count and the SHA-256 of the
 * bulk text as it came (the manifest's `sha256`, which a restore checks the
 * rows against) are computed in the same pass, and the snapshot is released
 * as soon as every table is read.
 *
 * A spill file holds every byte taken in, so its SHA-256 is that one; the
 * file is digested again as it is read back, and bytes that changed in
 * between (a disk fault, another process) fail the read with EIO at its
 * end, so that the archive being written from them is never put in place:
 * the digests in its manifest were computed before the spill, and a
 * restore would refuse the rows only years later, once the source may have
 * been purged.
 *
 * @module
 */
import { open, rm, type FileHandle } from 'node:fs/promises';
import { StowageError, fromFsError } from '../errors.js';
import { createHash } from 'node:crypto';
import { truncatedBulkText } from '../db/bulk-text.js';
import { RANGE_DIGEST_ALGORITHM, RangeDigester, type RangeDigest } from '../db/range-digest.js';
import { anySignal, throwIfAborted } from '../util/abort.js';
import { BlockFeeder, sharedBlockHasher, type BlockHasher, type HashJob } from '../dna/block-hasher.js';
import type { DnaAlgorithm } from '../dna/dna.js';
import { ROWS_HASH_ALGORITHM } from './manifest.js';

/** What a spool knows of its rows: the {@link RangeDigest}, and the SHA-256 of the bulk text exactly as it came. */
export interface SpoolDigest extends RangeDigest {
  /** Lower-case hex SHA-256 of the bulk text in the order it came (the bytes of the archive's rows entry). */
  readonly sha256: string;
}

/** Options of {@link RowSpool.fill}. */
export interface RowSpoolOptions {
  /** 0-based field of the key column (for the range digest). */
  keyIndex: number;
  /**
   * The key is unique (the table's whole primary key): every row is its own
   * group, so the range digest is the md5 of the text itself and no row
   * needs to be looked at (see {@link UniqueKeyDigester}).
   */
  uniqueKey?: boolean | undefined;
  /** Bytes kept in memory before spilling to `spillPath`. */
  memoryBytes: number;
  /** The file to spill to (created only if needed, removed by {@link RowSpool.dispose}). */
  spillPath: string;
  /** Cancels the read. */
  signal?: AbortSignal | undefined;
  /** Called with the byte count of each chunk taken in. */
  onBytes?: ((n: number) => void) | undefined;
  /** Whose thread computes the digests of rows over 256 KiB (default the process's shared hasher). */
  hasher?: BlockHasher | undefined;
}

const READ_SIZE = 1 << 20;
const LF = 0x0a;

/** Rows of less than this are hashed on the main thread when their digest is asked for, without the hashing thread. */
const INLINE_BYTES = 256 * 1024;

/**
 * Digests a stream of chunks with one algorithm, or two in one pass: in
 * line, when the digest is asked for, while the bytes are under 256 KiB;
 * else on a {@link BlockHasher}'s thread, the bytes copied into its blocks
 * (waiting while its memory budget is spent). Await each {@link update}
 * before the next; end with {@link digest} or {@link abort} (an unfinished
 * job keeps the hashing thread, and so the process, alive).
 */
class StreamDigester {
  readonly #hasher: BlockHasher;
  readonly #algorithm: DnaAlgorithm;
  readonly #also: DnaAlgorithm | undefined;
  #job: HashJob | undefined;
  /** Copies the bytes into the job's blocks, once there is a job. */
  #feeder: BlockFeeder | undefined;
  /** Chunks held (by reference) while the bytes are under INLINE_BYTES. */
  #held: Uint8Array[] = [];
  #heldBytes = 0;
  /** Fired by {@link abort}: ends an update waiting for a block. */
  readonly #stop = new AbortController();

  constructor(hasher: BlockHasher, algorithm: DnaAlgorithm, also?: DnaAlgorithm) {
    this.#hasher = hasher;
    this.#algorithm = algorithm;
    this.#also = also;
  }

  async update(buf: Buffer, signal: AbortSignal | undefined): Promise<void> {
    if (this.#job === undefined) {
      if (this.#heldBytes + buf.length <= INLINE_BYTES) {
        this.#held.push(buf);
        this.#heldBytes += buf.length;
        return;
      }
      this.#job = this.#hasher.begin(this.#algorithm, this.#also);
      this.#feeder = new BlockFeeder(this.#hasher, this.#job);
      const held = this.#held;
      this.#held = [];
      this.#heldBytes = 0;
      for (const h of held) await this.#feeder.write(h, anySignal(signal, this.#stop.signal));
    }
    await this.#feeder!.write(buf, anySignal(signal, this.#stop.signal));
  }

  /** The digest, and the `also` one (`''` when there is none). */
  async digest(): Promise<{ dig: string; also: string }> {
    if (this.#job === undefined) {
      const h = createHash(this.#algorithm);
      const h2 = this.#also === undefined ? undefined : createHash(this.#also);
      for (const c of this.#held) {
        h.update(c);
        h2?.update(c);
      }
      this.#held = [];
      return { dig: h.digest('hex'), also: h2?.digest('hex') ?? '' };
    }
    this.#feeder!.flush();
    const d = await this.#job.digest();
    return { dig: d.dig, also: d.also ?? '' };
  }

  /** Ends an update waiting for a block (EIO), forgets the bytes held, gives a block back and drops the job. */
  abort(why: string): void {
    if (!this.#stop.signal.aborted) this.#stop.abort(new StowageError('EIO', why));
    this.#held = [];
    this.#feeder?.discard();
    this.#job?.drop();
  }
}

/**
 * The range digest of rows whose key is unique. By its definition (see
 * `range-digest.ts`) each row is then a group of one, left as is, so the
 * digest is the md5 of the bulk text, and the count its number of LF: the
 * same result as {@link RangeDigester}, without splitting rows in JS. The
 * SHA-256 of the same bytes comes with it ({@link SpoolDigest}).
 *
 * Both digests run on a {@link BlockHasher}'s thread, in one pass (a dump
 * gives one of its own; the process's shared one by default), because a
 * dump is paced by its main thread (it parses what the server sends,
 * spools it and feeds the archive writer): the rows are copied into the
 * hasher's blocks, which waits while its memory budget is spent. Rows of
 * less than 256 KiB in all are hashed in line when the digest is asked
 * for. Await each {@link update} before the next; end with {@link digest}
 * or {@link abort} (an unfinished digest keeps the hashing thread, and so
 * the process, alive).
 */
export class UniqueKeyDigester {
  readonly #hashes: StreamDigester;
  #lines = 0;
  #bytes = 0;
  #last = LF;
  #done: Promise<SpoolDigest> | undefined;
  #dropped = false;

  /** @param hasher - whose thread computes the digests (default the process's shared one) */
  constructor(hasher: BlockHasher = sharedBlockHasher()) {
    this.#hashes = new StreamDigester(hasher, RANGE_DIGEST_ALGORITHM, ROWS_HASH_ALGORITHM);
  }

  /**
   * Adds bulk text bytes (any chunking). Chunks are kept by reference until
   * copied for the hasher: do not modify a chunk after passing it.
   *
   * @param chunk - the next bytes
   * @param signal - cancels a wait for the hasher's memory
   */
  async update(chunk: Uint8Array, signal?: AbortSignal): Promise<void> {
    if (this.#done !== undefined || this.#dropped) throw new StowageError('EIO', 'UniqueKeyDigester.update() after digest() or abort().');
    if (chunk.length === 0) return;
    this.#bytes += chunk.length;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let i = buf.indexOf(LF); i !== -1; i = buf.indexOf(LF, i + 1)) this.#lines++;
    this.#last = buf[buf.length - 1]!;
    await this.#hashes.update(buf, signal);
  }

  /** Finishes (the same promise each time); EDB if the input stopped in the middle of a row, EIO if the hashing thread failed. */
  digest(): Promise<SpoolDigest> {
    if (this.#dropped) return Promise.reject(new StowageError('EIO', 'UniqueKeyDigester.digest() after abort().'));
    this.#done ??= this.#finish();
    return this.#done;
  }

  /**
   * Drops the digest (when the rows are dropped): an update waiting for the
   * hasher's memory rejects with EIO; a digest being computed still
   * settles. Idempotent.
   */
  abort(): void {
    if (this.#dropped || this.#done !== undefined) return;
    this.#dropped = true;
    this.#hashes.abort('UniqueKeyDigester: the digest was dropped (abort()) while rows were being added.');
  }

  async #finish(): Promise<SpoolDigest> {
    if (this.#last !== LF) {
      this.#hashes.abort('UniqueKeyDigester: the input stopped in the middle of a row.');
      throw truncatedBulkText(this.#lines + 1);
    }
    const { dig, also } = await this.#hashes.digest();
    return Object.freeze({ count: this.#lines, bytes: this.#bytes, digest: dig, sha256: also });
  }
}

/**
 * The digests of rows whose key may repeat: the range digest in line
 * ({@link RangeDigester}: rows sharing a key are sorted), the SHA-256 of
 * the bulk text as it came on a {@link BlockHasher}'s thread.
 */
class SharedKeyDigester {
  readonly #range: RangeDigester;
  readonly #sha: StreamDigester;

  constructor(keyIndex: number, hasher: BlockHasher) {
    this.#range = new RangeDigester({ keyIndex });
    this.#sha = new StreamDigester(hasher, ROWS_HASH_ALGORITHM);
  }

  async update(buf: Buffer, signal: AbortSignal | undefined): Promise<void> {
    this.#range.update(buf);
    await this.#sha.update(buf, signal);
  }

  async digest(): Promise<SpoolDigest> {
    let range: RangeDigest;
    try {
      range = this.#range.digest();
    } catch (err) {
      this.abort();
      throw err;
    }
    return Object.freeze({ ...range, sha256: (await this.#sha.digest()).dig });
  }

  abort(): void {
    this.#sha.abort('RowSpool: the rows were dropped while they were being digested.');
  }
}

/** Fills a {@link RowSpool}; see {@link RowSpool.writer}. */
export interface SpoolWriter {
  /** Adds bytes of bulk text. */
  write(chunk: Uint8Array): Promise<void>;
  /** Ends the input (EDB if it stopped in the middle of a row) and gives the spool. */
  finish(): Promise<RowSpool>;
  /** Drops what was taken in and removes the spill file. */
  abort(): Promise<void>;
}

/** The rows of one range, in memory or in a spill file, with their digest. */
export class RowSpool {
  /** Count, bytes and range digest of the rows, and their SHA-256 (also that of the spill file, which holds every byte taken in). */
  readonly digest: SpoolDigest;
  readonly #chunks: Buffer[];
  readonly #file: string | undefined;
  readonly #fileBytes: number;
  #disposed = false;

  private constructor(digest: SpoolDigest, chunks: Buffer[], file: string | undefined, fileBytes: number) {
    this.digest = digest;
    this.#chunks = chunks;
    this.#file = file;
    this.#fileBytes = fileBytes;
  }

  /** Bytes of bulk text held. */
  get bytes(): number {
    return this.digest.bytes;
  }

  /** Whether the rows went to the spill file. */
  get spilled(): boolean {
    return this.#file !== undefined;
  }

  /**
   * Reads a bulk text stream to its end.
   *
   * @param input - the rows
   * @param options - see {@link RowSpoolOptions}
   */
  static async fill(input: AsyncIterable<Uint8Array>, options: RowSpoolOptions): Promise<RowSpool> {
    const w = RowSpool.writer(options);
    try {
      for await (const c of input) await w.write(c);
      return await w.finish();
    } catch (err) {
      await w.abort();
      throw err;
    }
  }

  /**
   * A spool filled piece by piece (whole rows or not: the digest cuts
   * lines itself), for a reader that cuts one stream into several ranges.
   *
   * @param options - see {@link RowSpoolOptions}
   */
  static writer(options: RowSpoolOptions): SpoolWriter {
    const { keyIndex, memoryBytes, spillPath, signal, onBytes } = options;
    const hasher = options.hasher ?? sharedBlockHasher();
    const digester = options.uniqueKey === true ? new UniqueKeyDigester(hasher) : new SharedKeyDigester(keyIndex, hasher);
    const chunks: Buffer[] = [];
    let held = 0;
    let handle: FileHandle | undefined;
    let fileBytes = 0;
    let done = false;
    const cleanup = async (): Promise<void> => {
      if (handle !== undefined) {
        await handle.close().catch(() => {});
        await rm(spillPath, { force: true }).catch(() => {});
      }
    };
    return {
      async write(c: Uint8Array): Promise<void> {
        throwIfAborted(signal);
        const buf = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
        await digester.update(buf, signal);
        onBytes?.(buf.length);
        if (handle === undefined && held + buf.length <= memoryBytes) {
          chunks.push(buf);
          held += buf.length;
          return;
        }
        if (handle === undefined) {
          try {
            // Made anew, never opened through what is there: a stale spill
            // file is removed, and so is a symlink planted at the name
            // (the link, not what it points to).
            await rm(spillPath, { force: true }).catch(() => {});
            handle = await open(spillPath, 'wx+', 0o600);
          } catch (err) {
            throw fromFsError(err, 'create', spillPath);
          }
          for (const h of chunks.splice(0)) fileBytes += await writeAll(handle, h, spillPath);
          held = 0;
        }
        fileBytes += await writeAll(handle, buf, spillPath);
      },
      async finish(): Promise<RowSpool> {
        done = true;
        const digest = await digester.digest();
        await handle?.close();
        return new RowSpool(digest, chunks, handle === undefined ? undefined : spillPath, fileBytes);
      },
      async abort(): Promise<void> {
        digester.abort();
        if (done && handle === undefined) return;
        done = true;
        chunks.length = 0;
        await cleanup();
      },
    };
  }

  /**
   * The rows, from the start (may be called more than once). Read back from
   * a spill file, they are digested again: EIO at the end if they are not
   * the bytes written (see the module documentation).
   */
  async *read(): AsyncGenerator<Buffer> {
    if (this.#file === undefined) {
      yield* this.#chunks;
      return;
    }
    let handle: FileHandle;
    try {
      handle = await open(this.#file, 'r');
    } catch (err) {
      throw fromFsError(err, 'read', this.#file);
    }
    const hash = createHash(ROWS_HASH_ALGORITHM);
    try {
      let left = this.#fileBytes;
      while (left > 0) {
        const buf = Buffer.allocUnsafe(Math.min(READ_SIZE, left));
        const { bytesRead } = await handle.read(buf, 0, buf.length, null).catch((err: unknown) => {
          throw fromFsError(err, 'read', this.#file!);
        });
        if (bytesRead === 0) throw new StowageError('EIO', `Spill file ${this.#file} shrank while it was read back.`, { details: { path: this.#file } });
        left -= bytesRead;
        const got = bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
        hash.update(got);
        if (left === 0) {
          const now = hash.digest('hex');
          if (now !== this.digest.sha256) {
            throw new StowageError('EIO', `Spill file ${this.#file} changed between its write and its read-back (sha256 ${this.digest.sha256} written, ${now} read): a disk fault, or another process wrote to it. Nothing was archived from it; dump again.`, {
              details: { path: this.#file, written: this.digest.sha256, read: now },
            });
          }
        }
        yield got;
      }
    } finally {
      await handle.close().catch(() => {});
    }
  }

  /** Drops the rows and removes the spill file. Idempotent. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#chunks.length = 0;
    if (this.#file !== undefined) await rm(this.#file, { force: true }).catch(() => {});
  }
}

async function writeAll(handle: FileHandle, buf: Buffer, path: string): Promise<number> {
  let off = 0;
  while (off < buf.length) {
    try {
      const { bytesWritten } = await handle.write(buf, off, buf.length - off);
      off += bytesWritten;
    } catch (err) {
      throw fromFsError(err, 'write', path);
    }
  }
  return buf.length;
}
