/**
 * RowSpool: holds the bulk text of one table's range between reading it
 * (inside a database snapshot) and writing it into the partition archive.
 *
 * Why: a tar header carries the entry's size, which is known only once the
 * last row has been read, and the manifest (the archive's first entry)
 * carries the row count and range digest. So the rows are taken in first:
 * in memory up to `memoryBytes` (a partition of 10k rows is a few MB), then
 * spilled to a file beside the archive, so a partition of any size costs
 * bounded memory. The range digest and the row count are computed in the
 * same pass, and the snapshot is released as soon as every table is read.
 *
 * A spill file is digested (md5) as it is written (with a unique key, the
 * range digest is that md5 already) and again as it is read back; bytes that changed in between (a disk fault, another process) fail
 * the read with EIO at its end, so that the archive being written from them
 * is never put in place: the range digest in its manifest was computed
 * before the spill, and a restore would refuse the rows only years later,
 * once the source may have been purged.
 *
 * @module
 */
import { open, rm, type FileHandle } from 'node:fs/promises';
import { StowageError, fromFsError } from '../errors.js';
import { createHash } from 'node:crypto';
import { truncatedBulkText } from '../db/bulk-text.js';
import { RANGE_DIGEST_ALGORITHM, RangeDigester, type RangeDigest } from '../db/range-digest.js';
import { throwIfAborted } from '../util/abort.js';
import { OffThreadHash } from '../dna/off-thread-hash.js';

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
}

const READ_SIZE = 1 << 20;
const LF = 0x0a;

/** Bytes a {@link UniqueKeyDigester} lets its hashing thread fall behind before {@link RowSpool.writer} waits for it. */
const MAX_HASH_BACKLOG = 16 << 20;

/**
 * The range digest of rows whose key is unique. By its definition (see
 * `range-digest.ts`) each row is then a group of one, left as is, so the
 * digest is the md5 of the bulk text, and the count its number of LF: the
 * same result as {@link RangeDigester}, without splitting rows in JS. The
 * md5 is computed on a worker thread (see `off-thread-hash.ts`), so the
 * digest is a promise; call {@link abort} to drop one not asked for.
 */
export class UniqueKeyDigester {
  readonly #hash = new OffThreadHash(RANGE_DIGEST_ALGORITHM);
  #lines = 0;
  #bytes = 0;
  #last = LF;
  #done: RangeDigest | undefined;

  /**
   * Adds bulk text bytes (any chunking).
   *
   * @param chunk - the next bytes
   */
  update(chunk: Uint8Array): this {
    if (chunk.length === 0) return this;
    this.#hash.update(chunk);
    this.#bytes += chunk.length;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let i = buf.indexOf(LF); i !== -1; i = buf.indexOf(LF, i + 1)) this.#lines++;
    this.#last = buf[buf.length - 1]!;
    return this;
  }

  /** Bytes handed to the hashing thread and not hashed yet. */
  get backlog(): number {
    return this.#hash.backlog;
  }

  /**
   * Resolves once the hashing thread is at most `maxBacklog` bytes behind.
   *
   * @param maxBacklog - bytes it may still have to hash
   */
  drain(maxBacklog: number): Promise<void> {
    return this.#hash.drain(maxBacklog);
  }

  /** Finishes; EDB if the input stopped in the middle of a row (EIO if the hashing thread failed). */
  async digest(): Promise<RangeDigest> {
    if (this.#done) return this.#done;
    if (this.#last !== LF) {
      this.#hash.abort();
      throw truncatedBulkText(this.#lines + 1);
    }
    const digest = await this.#hash.digest();
    this.#done ??= Object.freeze({ count: this.#lines, bytes: this.#bytes, digest });
    return this.#done;
  }

  /** Drops the digest (when the rows are dropped). */
  abort(): void {
    this.#hash.abort();
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
  /** Count, bytes and range digest of the rows. */
  readonly digest: RangeDigest;
  readonly #chunks: Buffer[];
  readonly #file: string | undefined;
  readonly #fileBytes: number;
  /** md5 (hex) of the bytes written to the spill file. */
  readonly #fileDigest: string | undefined;
  #disposed = false;

  private constructor(digest: RangeDigest, chunks: Buffer[], file: string | undefined, fileBytes: number, fileDigest: string | undefined) {
    this.digest = digest;
    this.#chunks = chunks;
    this.#file = file;
    this.#fileBytes = fileBytes;
    this.#fileDigest = fileDigest;
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
    const digester = options.uniqueKey === true ? new UniqueKeyDigester() : new RangeDigester({ keyIndex });
    const chunks: Buffer[] = [];
    let held = 0;
    let handle: FileHandle | undefined;
    let fileBytes = 0;
    // A spill file holds every byte taken in: with a unique key the range
    // digest is already the md5 of exactly those bytes, so it is not
    // computed twice; otherwise the file gets an md5 of its own.
    const fileHash = options.uniqueKey === true ? undefined : createHash(RANGE_DIGEST_ALGORITHM);
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
        digester.update(buf);
        if (digester instanceof UniqueKeyDigester && digester.backlog > MAX_HASH_BACKLOG) await digester.drain(MAX_HASH_BACKLOG);
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
          for (const h of chunks.splice(0)) {
            fileHash?.update(h);
            fileBytes += await writeAll(handle, h, spillPath);
          }
          held = 0;
        }
        fileHash?.update(buf);
        fileBytes += await writeAll(handle, buf, spillPath);
      },
      async finish(): Promise<RowSpool> {
        done = true;
        const digest = await digester.digest();
        await handle?.close();
        const fileDigest = handle === undefined ? undefined : (fileHash?.digest('hex') ?? digest.digest);
        return new RowSpool(digest, chunks, handle === undefined ? undefined : spillPath, fileBytes, fileDigest);
      },
      async abort(): Promise<void> {
        if (digester instanceof UniqueKeyDigester) digester.abort();
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
    const hash = createHash(RANGE_DIGEST_ALGORITHM);
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
          if (now !== this.#fileDigest) {
            throw new StowageError('EIO', `Spill file ${this.#file} changed between its write and its read-back (md5 ${this.#fileDigest} written, ${now} read): a disk fault, or another process wrote to it. Nothing was archived from it; dump again.`, {
              details: { path: this.#file, written: this.#fileDigest, read: now },
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
