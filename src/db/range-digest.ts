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
import { throwIfAborted } from '../util/abort.js';
import { LineSplitter, malformedBulkText } from './bulk-text.js';

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

function keyField(line: Buffer, keyIndex: number, row: number): Buffer {
  let start = 0;
  for (let i = 0; i < keyIndex; i++) {
    const tab = line.indexOf(TAB, start);
    if (tab < 0) throw malformedBulkText(row, `the row has fewer than ${keyIndex + 1} fields, so no key field`);
    start = tab + 1;
  }
  let end = line.indexOf(TAB, start);
  if (end < 0) end = line.length - 1;
  return line.subarray(start, end);
}

/**
 * Computes a {@link RangeDigest} incrementally from bulk text, e.g. while
 * the same bytes are written into an archive.
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
  readonly #splitter = new LineSplitter();
  readonly #hash: Hash = createHash(RANGE_DIGEST_ALGORITHM);
  #key: Buffer | undefined;
  #group: Buffer[] = [];
  #groupBytes = 0;
  #done: RangeDigest | undefined;
  // Lines of finished one-row groups that lie back to back in one chunk are
  // hashed with one update() call (a unique key means every group is one row).
  #spanBuffer: ArrayBufferLike | undefined;
  #spanStart = 0;
  #spanEnd = 0;

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
    this.#splitter.push(chunk, (line) => this.#line(line));
    return this;
  }

  /** Finishes and returns the digest; throws EDB if the input stopped mid-row. */
  digest(): RangeDigest {
    if (this.#done) return this.#done;
    this.#splitter.end();
    this.#flush();
    this.#flushSpan();
    this.#done = Object.freeze({ count: this.#splitter.lines, bytes: this.#splitter.bytes, digest: this.#hash.digest('hex') });
    return this.#done;
  }

  #line(line: Buffer): void {
    const key = keyField(line, this.#keyIndex, this.#splitter.lines);
    if (this.#key !== undefined && key.equals(this.#key)) {
      this.#group.push(line);
      this.#groupBytes += line.length;
      if (this.#groupBytes > this.#maxGroupBytes) {
        throw new StowageError(
          'EBAD_CONFIG',
          `The rows sharing key value ${key.toString('utf8', 0, 40)} exceed ${this.#maxGroupBytes} bytes: the key column is not selective enough to partition this table.`,
          { details: { option: 'key', keyValue: key.toString('utf8', 0, 40), maxGroupBytes: this.#maxGroupBytes } },
        );
      }
      return;
    }
    this.#flush();
    this.#key = key;
    this.#group.push(line);
    this.#groupBytes = line.length;
  }

  #flush(): void {
    const g = this.#group;
    if (g.length === 1) {
      const line = g[0]!;
      if (line.buffer === this.#spanBuffer && line.byteOffset === this.#spanEnd) {
        this.#spanEnd += line.length;
      } else {
        this.#flushSpan();
        this.#spanBuffer = line.buffer;
        this.#spanStart = line.byteOffset;
        this.#spanEnd = line.byteOffset + line.length;
      }
    } else if (g.length > 1) {
      this.#flushSpan();
      g.sort(Buffer.compare);
      for (const line of g) this.#hash.update(line);
    }
    this.#group = [];
    this.#groupBytes = 0;
  }

  #flushSpan(): void {
    if (this.#spanBuffer === undefined) return;
    this.#hash.update(new Uint8Array(this.#spanBuffer, this.#spanStart, this.#spanEnd - this.#spanStart));
    this.#spanBuffer = undefined;
  }
}

/** Options of {@link digestBulkText}. */
export interface DigestBulkTextOptions extends RangeDigesterOptions {
  /** Stops reading (and rejects with the signal's reason). */
  signal?: AbortSignal;
}

/**
 * Computes the {@link RangeDigest} of a bulk text stream. Every
 * `TableSource.digestRange` is this applied to its own `rows()` stream.
 *
 * @param input - the bulk text (a Readable, or any async iterable of chunks)
 * @param options - key position, group cap, signal
 */
export async function digestBulkText(input: AsyncIterable<Uint8Array>, options: DigestBulkTextOptions): Promise<RangeDigest> {
  const { signal, ...rest } = options;
  throwIfAborted(signal);
  const d = new RangeDigester(rest);
  for await (const chunk of input) {
    throwIfAborted(signal);
    d.update(chunk);
  }
  return d.digest();
}
