/**
 * The range digest: the fingerprint of a key range of a table that two
 * databases compare to prove they hold the same rows.
 *
 * Definition (every TableSource computes it this way, from its own
 * {@link TableReader.rows} output, so a range dumped from an engine and
 * loaded into the same engine compares equal):
 *
 * 1. Take the bulk text of the range (see `bulk-text.ts`): one LF-terminated
 *    line per row, rows in ascending key order.
 * 2. Group consecutive lines whose key field (field number `keyIndex`, as
 *    raw escaped bytes) is equal.
 * 3. Within each group, sort the lines (LF included) by unsigned byte
 *    comparison; a group of one line is left as is.
 * 4. `digest` is the lower-case hex md5 of the concatenation of all groups
 *    in order; `count` is the number of lines, `bytes` their total length.
 *
 * Step 3 makes the digest independent of the order in which an engine
 * returns rows sharing one key value (a payload table has many rows per
 * SEQNO, and collations differ), without a global sort. For a table whose
 * key is unique it is simply the md5 of the bulk text itself, so the rows
 * file inside a partition archive can be checked with `md5sum`.
 *
 * Memory holds the rows of one key value at a time; a group larger than
 * `maxGroupBytes` (default 256 MiB) is refused with EBAD_CONFIG: the key is
 * not selective enough to partition that table.
 *
 * @module
 */
import { createHash, type Hash } from 'node:crypto';
import { StowageError } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { throwIfAborted } from '../util/abort.js';
import { MAX_ROW_BYTES, malformedBulkText, rowTooLong, truncatedBulkText } from './bulk-text.js';

/** The digest algorithm of range digests. */
export const RANGE_DIGEST_ALGORITHM = 'md5';

/** The fingerprint of a key range; see the module documentation. */
export interface RangeDigest {
  /** Number of rows. */
  readonly count: number;
  /** Bytes of bulk text of those rows. */
  readonly bytes: number;
  /** Lower-case hex md5, as defined in `range-digest.ts`. */
  readonly digest: string;
}

/** Options of {@link RangeDigester}. */
export interface RangeDigesterOptions {
  /** 0-based position of the key column among the row's fields. */
  keyIndex: number;
  /** Largest group of rows sharing one key value, in bytes (default 256 MiB). */
  maxGroupBytes?: number;
}

const TAB = 0x09;
const LF = 0x0a;

/**
 * Computes a {@link RangeDigest} incrementally from bulk text, e.g. while
 * the same bytes are written into an archive.
 *
 * Cost: the rows are walked where they lie in each chunk, without a Buffer
 * per row: one `indexOf` per row for its LF (and one per field before the
 * key), the key compared and copied byte by byte, and the rows of one-row
 * groups hashed a whole chunk's run at a time. Only rows that share a key
 * with a neighbour, or that straddle two chunks, are held as Buffers.
 *
 * @example
 * ```ts
 * const d = new RangeDigester({ keyIndex: 0 });
 * for await (const chunk of await source.rows('Vld', { key: 'SEQNO', lo: 1n, hi: 10000n })) d.update(chunk);
 * d.digest(); // { count, bytes, digest }
 * ```
 */
export class RangeDigester {
  readonly #keyIndex: number;
  readonly #maxGroupBytes: number;
  readonly #hash: Hash = createHash(RANGE_DIGEST_ALGORITHM);
  /** The key of the current group (bytes `0..#keyLen` of `#key`); `#hasKey` false before the first row. */
  #key: Buffer = Buffer.allocUnsafe(64);
  #keyLen = 0;
  #hasKey = false;
  /**
   * Rows of the current group held as Buffers: when it has two rows or
   * more, or when its one row lay in an earlier chunk. Empty while the
   * current group is one row of the chunk being walked.
   */
  #group: Buffer[] = [];
  #groupBytes = 0;
  /** The start of an unfinished row at the end of the last chunk. */
  #tail: Buffer[] = [];
  #tailBytes = 0;
  #lines = 0;
  #bytes = 0;
  #done: RangeDigest | undefined;

  /** Complete rows taken so far (the `count` of the digest to come). */
  get rows(): number {
    return this.#lines;
  }

  /** @param options - key position and group size cap */
  constructor(options: RangeDigesterOptions) {
    const { keyIndex, maxGroupBytes = 256 * 1024 * 1024 } = options;
    if (!Number.isInteger(keyIndex) || keyIndex < 0) {
      throw new StowageError('EBAD_CONFIG', `RangeDigester: keyIndex must be an integer >= 0, got ${String(keyIndex)}.`, { details: { option: 'keyIndex', value: keyIndex } });
    }
    this.#keyIndex = keyIndex;
    this.#maxGroupBytes = maxGroupBytes;
  }

  /**
   * Adds bulk text bytes (any chunking). Chunks are kept by reference until
   * hashed: do not modify a chunk after passing it (stream chunks are never
   * modified).
   *
   * @param chunk - the next bytes
   */
  update(chunk: Uint8Array): this {
    if (this.#done) throw new StowageError('EIO', 'RangeDigester.update() called after digest().');
    let buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (buf.length === 0) return this;
    this.#bytes += buf.length;
    if (this.#tailBytes > 0) {
      // Finish the row begun in an earlier chunk on its own, then go on.
      const nl = buf.indexOf(LF);
      if (nl < 0) {
        this.#holdTail(buf);
        return this;
      }
      this.#tail.push(buf.subarray(0, nl + 1));
      const row = Buffer.concat(this.#tail, this.#tailBytes + nl + 1);
      this.#tail = [];
      this.#tailBytes = 0;
      this.#walk(row);
      buf = buf.subarray(nl + 1);
    }
    const end = this.#walk(buf);
    if (end < buf.length) this.#holdTail(buf.subarray(end));
    return this;
  }

  /** Finishes and returns the digest; throws EDB if the input stopped mid-row. */
  digest(): RangeDigest {
    if (this.#done) return this.#done;
    if (this.#tailBytes > 0) throw truncatedBulkText(this.#lines + 1);
    this.#endGroup();
    this.#done = Object.freeze({ count: this.#lines, bytes: this.#bytes, digest: this.#hash.digest('hex') });
    return this.#done;
  }

  #holdTail(part: Buffer): void {
    this.#tail.push(part);
    this.#tailBytes += part.length;
    if (this.#tailBytes > MAX_ROW_BYTES) throw rowTooLong(this.#lines + 1, MAX_ROW_BYTES);
  }

  /** Hashes the held rows of the current group (sorted when more than one) and forgets them. */
  #endGroup(): void {
    const g = this.#group;
    if (g.length === 0) return;
    if (g.length > 1) g.sort(Buffer.compare);
    for (const row of g) this.#hash.update(row);
    g.length = 0;
    this.#groupBytes = 0;
  }

  #addToGroup(row: Buffer): void {
    this.#group.push(row);
    this.#groupBytes += row.length;
    if (this.#group.length > 1 && this.#groupBytes > this.#maxGroupBytes) {
      const key = this.#key.toString('utf8', 0, Math.min(this.#keyLen, 40));
      throw new StowageError('EBAD_CONFIG', `The rows sharing key value ${key} exceed ${this.#maxGroupBytes} bytes: the key column is not selective enough to partition this table.`, {
        details: { option: 'key', keyValue: key, maxGroupBytes: this.#maxGroupBytes },
      });
    }
  }

  /**
   * Walks the complete rows of `buf`; returns the offset after the last LF.
   *
   * `runStart` marks the first byte not hashed yet. While the current group
   * is a single row of this chunk (`single >= 0` is its start), it stays
   * part of that run; the run is hashed when a row joins the group, and at
   * the end of the chunk.
   */
  #walk(buf: Buffer): number {
    const keyIndex = this.#keyIndex;
    let runStart = 0;
    let single = -1;
    let start = 0;
    let nl = buf.indexOf(LF);
    while (nl >= 0) {
      const row = this.#lines + 1;
      // The key field [ks, ke) of the row [start, nl].
      let ks = start;
      for (let f = 0; f < keyIndex; f++) {
        const tab = buf.indexOf(TAB, ks);
        if (tab < 0 || tab > nl) throw malformedBulkText(row, `the row has fewer than ${keyIndex + 1} fields, so no key field`);
        ks = tab + 1;
      }
      let ke = ks;
      while (ke < nl && buf[ke] !== TAB) ke++;
      const len = ke - ks;
      let same = this.#hasKey && len === this.#keyLen;
      if (same) {
        const key = this.#key;
        for (let j = 0; j < len; j++) {
          if (buf[ks + j] !== key[j]) {
            same = false;
            break;
          }
        }
      }
      this.#lines++;
      if (same) {
        // The row joins the current group: rows of a group are held, to be sorted.
        if (single >= 0) {
          if (single > runStart) this.#hash.update(buf.subarray(runStart, single));
          this.#addToGroup(buf.subarray(single, start));
          single = -1;
        }
        this.#addToGroup(buf.subarray(start, nl + 1));
        runStart = nl + 1;
      } else {
        // A new key: the current group is complete.
        if (single < 0) {
          this.#endGroup();
          runStart = start;
        }
        if (len > this.#key.length) this.#key = Buffer.allocUnsafe(Math.max(len, this.#key.length * 2));
        const key = this.#key;
        for (let j = 0; j < len; j++) key[j] = buf[ks + j]!;
        this.#keyLen = len;
        this.#hasKey = true;
        single = start;
      }
      start = nl + 1;
      nl = buf.indexOf(LF, start);
    }
    // The last row's group may go on in the next chunk: hold that row.
    if (single >= 0) {
      if (single > runStart) this.#hash.update(buf.subarray(runStart, single));
      this.#addToGroup(buf.subarray(single, start));
    } else if (start > runStart) {
      this.#hash.update(buf.subarray(runStart, start));
    }
    return start;
  }
}

/** Options of {@link digestBulkText}. */
export interface DigestBulkTextOptions extends RangeDigesterOptions {
  /** Stops reading (and rejects with the signal's reason). */
  signal?: AbortSignal | undefined;
  /** Progress: phase `digest`, bytes read, items the complete rows so far. */
  onProgress?: ProgressCallback | undefined;
}

/**
 * Computes the {@link RangeDigest} of a bulk text stream. Every
 * `TableSource.digestRange` is this applied to its own `rows()` stream.
 *
 * @param input - the bulk text (a Readable, or any async iterable of chunks)
 * @param options - key position, group cap, signal
 */
export async function digestBulkText(input: AsyncIterable<Uint8Array>, options: DigestBulkTextOptions): Promise<RangeDigest> {
  const { signal, onProgress, ...rest } = options;
  throwIfAborted(signal);
  const d = new RangeDigester(rest);
  const progress = onProgress === undefined ? undefined : new ProgressTracker('digest', onProgress);
  for await (const chunk of input) {
    throwIfAborted(signal);
    d.update(chunk);
    progress?.add(chunk.length, d.rows - progress.itemsDone);
  }
  const digest = d.digest();
  if (progress !== undefined) {
    progress.add(0, digest.count - progress.itemsDone);
    progress.report(true);
  }
  return digest;
}
