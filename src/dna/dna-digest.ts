/**
 * DnaDigest: the digest and size of bytes, computed in one streaming pass,
 * for a buffer feed, a file, or a stream flowing through a tap; plus the
 * sidecar files that record a DNA beside its file, and their checks.
 *
 * @module
 */
import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { StowageError } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { throwIfAborted } from '../util/abort.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { checkOneOf, checkOptionKeys, checkPathArg } from '../util/options.js';
import { scanTree, type DnaScanOptions } from './dna-scan.js';
import { hashFile, readSidecarText } from './file-hash.js';
import {
  DNA_ALGORITHMS,
  SIDECAR_SUFFIX,
  dnaEqual,
  formatSidecar,
  parseSidecar,
  type Dna,
  type DnaAlgorithm,
  type DnaVerifyResult,
} from './dna.js';

// Re-exported so that `./dna-digest.js` keeps offering what it always did.
export { DNA_ALGORITHMS, MAX_SIDECAR_BYTES, SIDECAR_SUFFIX, assertDna, dnaEqual, formatSidecar, parseSidecar } from './dna.js';
export type { Dna, DnaAlgorithm, DnaVerifyResult } from './dna.js';

/** Options selecting the digest algorithm. */
export interface DnaOptions {
  /** Digest algorithm (default `'md5'`). */
  algorithm?: DnaAlgorithm;
}

/** Options of {@link DnaDigest.ofFile}. */
export interface DnaFileOptions extends DnaOptions {
  /** Cancels the read. */
  signal?: AbortSignal;
  /** Called with byte progress while reading. */
  onProgress?: ProgressCallback;
}

/** A pass-through stream that digests what flows through it; see {@link DnaDigest.tap}. */
export interface DnaTap extends Transform {
  /**
   * Resolves with the DNA once every byte has passed through the tap (its
   * input ended); rejects with the stream's error if the tap is destroyed
   * before that (a source, destination or abort error in a pipeline), or
   * with EIO if it is destroyed without one.
   */
  readonly dna: Promise<Dna>;
}

function resolveAlgorithm(where: string, options: DnaOptions | undefined): DnaAlgorithm {
  const a = options?.algorithm ?? 'md5';
  return checkOneOf(where, 'algorithm', a, DNA_ALGORITHMS);
}

/**
 * Incremental DNA computation: feed bytes with {@link update}, read the DNA
 * with {@link digest}.
 *
 * @example
 * ```ts
 * const d = new DnaDigest();            // md5
 * d.update(Buffer.from('hello'));
 * d.digest(); // { dig: '5d41402abc4b2a76b9719d911017c592', size: 5, algorithm: 'md5' }
 * ```
 */
export class DnaDigest {
  /** The algorithm in use. */
  readonly algorithm: DnaAlgorithm;
  #hash: Hash;
  #size = 0;
  #done: Dna | undefined;

  /** @param options - `{ algorithm }`, md5 by default */
  constructor(options: DnaOptions = {}) {
    checkOptionKeys('DnaDigest', options, ['algorithm']);
    this.algorithm = resolveAlgorithm('DnaDigest', options);
    this.#hash = createHash(this.algorithm);
  }

  /** Bytes digested so far. */
  get size(): number {
    return this.#size;
  }

  /**
   * Adds bytes. Anything but a Buffer or typed array (a string, say) is
   * EBAD_CONFIG; after {@link digest} it is EIO.
   *
   * @param buf - the bytes
   */
  update(buf: Uint8Array): this {
    if (this.#done) throw new StowageError('EIO', 'DnaDigest.update() called after digest().');
    if (!ArrayBuffer.isView(buf)) {
      // A string would be hashed as UTF-8 but counted in UTF-16 units: refuse it.
      throw new StowageError('EBAD_CONFIG', `DnaDigest.update() takes a Buffer or Uint8Array, got ${typeof buf}.`, { details: { got: typeof buf } });
    }
    this.#hash.update(buf);
    this.#size += buf.byteLength;
    return this;
  }

  /** Finishes and returns the DNA. Calling it again returns the same DNA. */
  digest(): Dna {
    this.#done ??= Object.freeze({ dig: this.#hash.digest('hex'), size: this.#size, algorithm: this.algorithm });
    return this.#done;
  }

  /**
   * Digests a file in one streaming pass with 1 MiB reads; the next read is
   * in flight while the current buffer is hashed. `size` is the number of
   * bytes read. A missing file is ENOT_FOUND, an unreadable one (or a
   * directory) EIO, a bad option EBAD_CONFIG; an abort rethrows the
   * signal's reason and closes the file.
   *
   * @param path - the file
   * @param options - algorithm, signal, onProgress
   */
  static async ofFile(path: string, options: DnaFileOptions = {}): Promise<Dna> {
    checkPathArg('DnaDigest.ofFile', 'path', path);
    options ??= {};
    checkOptionKeys('DnaDigest.ofFile', options, ['algorithm', 'signal', 'onProgress']);
    const algorithm = resolveAlgorithm('DnaDigest.ofFile', options);
    throwIfAborted(options.signal);
    const progress = new ProgressTracker('hash', options.onProgress, { itemsTotal: 1 });
    const { dig, size } = await hashFile(path, algorithm, {
      signal: options.signal,
      onSize: (n) => (progress.bytesTotal = n),
      onBytes: options.onProgress ? (n) => progress.add(n) : undefined,
    });
    progress.add(0, 1);
    progress.report(true);
    return Object.freeze({ dig, size, algorithm });
  }

  /**
   * A pass-through stream that digests what flows through it. Its `.dna`
   * promise resolves when the stream ends, so data is digested while it is
   * written, with no second read.
   *
   * @param options - `{ algorithm }`
   *
   * @example
   * ```ts
   * const tap = DnaDigest.tap();
   * await pipeline(source, tap, destination);
   * const dna = await tap.dna;
   * ```
   */
  static tap(options: DnaOptions = {}): DnaTap {
    checkOptionKeys('DnaDigest.tap', options, ['algorithm']);
    const d = new DnaDigest({ algorithm: resolveAlgorithm('DnaDigest.tap', options) });
    let resolve!: (dna: Dna) => void;
    let reject!: (err: unknown) => void;
    const dna = new Promise<Dna>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // The promise may legitimately be ignored by callers that only pipe.
    dna.catch(() => {});
    const t = new Transform({
      highWaterMark: 1 << 20,
      transform(chunk: Buffer, _enc, cb: TransformCallback) {
        try {
          d.update(chunk);
        } catch (err) {
          cb(err as Error);
          return;
        }
        cb(null, chunk);
      },
      flush(cb: TransformCallback) {
        resolve(d.digest());
        cb();
      },
    });
    t.on('error', reject);
    t.on('close', () => reject(new StowageError('EIO', 'DnaDigest.tap: stream closed before it ended.')));
    return Object.assign(t, { dna }) as DnaTap;
  }

  /**
   * Writes `file.dna` durably (temp file, fsync, rename) as JSON with keys
   * `dig` and `size`, plus `algorithm` when it is not md5, e.g.
   * `{"dig": "7b87e78cc03ea544e2ad3abae46eecd1", "size": 1915051630}`: the
   * same text is a Python dict literal. Returns the sidecar's path. A DNA
   * that is not well formed (hex length, size) is EBAD_CONFIG and nothing is
   * written.
   *
   * @param file - the file the DNA describes (not the sidecar path)
   * @param dna - its DNA
   */
  static async writeSidecar(file: string, dna: Dna): Promise<string> {
    checkPathArg('DnaDigest.writeSidecar', 'file', file);
    const sidecar = file + SIDECAR_SUFFIX;
    await writeFileAtomic(sidecar, [Buffer.from(formatSidecar(dna, sidecar))]);
    return sidecar;
  }

  /**
   * Reads the sidecar `file.dna`: the JSON form or the legacy Python-2 repr
   * `{'dig': '…', 'size': 1915051630L}`. Missing is ENO_SIDECAR; anything
   * malformed is EBAD_SIDECAR naming the file.
   *
   * @param file - the file the DNA describes (not the sidecar path)
   */
  static async readSidecar(file: string): Promise<Dna> {
    checkPathArg('DnaDigest.readSidecar', 'file', file);
    const sidecar = file + SIDECAR_SUFFIX;
    return parseSidecar(await readSidecarText(file, sidecar), sidecar);
  }

  /**
   * Re-digests `path` and compares with its sidecar. Resolves with
   * `{ ok, expected, actual }`; a missing sidecar is ENO_SIDECAR.
   *
   * @param path - the file
   * @param options - signal, onProgress
   */
  static async verify(path: string, options: Omit<DnaFileOptions, 'algorithm'> = {}): Promise<DnaVerifyResult> {
    checkPathArg('DnaDigest.verify', 'path', path);
    options ??= {};
    checkOptionKeys('DnaDigest.verify', options, ['signal', 'onProgress']);
    throwIfAborted(options.signal);
    const expected = await DnaDigest.readSidecar(path);
    const actual = await DnaDigest.ofFile(path, { ...options, algorithm: expected.algorithm });
    return { path, ok: dnaEqual(expected, actual), expected, actual };
  }

  /**
   * Walks a tree, re-digests every file that has a sidecar (on worker
   * threads, `concurrency` at once) and yields each result as it completes.
   * The mutants are the results with `ok === false`; the scan goes on past
   * them. Trees holding a `LOCKED` directory are skipped (a warning).
   * Per-file trouble goes to `onWarning` (thrown with `strict`); a missing
   * root is ENOT_FOUND. Breaking out of the loop or aborting terminates the
   * worker threads.
   *
   * @param dir - the tree's root
   * @param options - concurrency, skipLocked, onWarning, strict, onProgress, signal
   *
   * @example
   * ```ts
   * for await (const r of DnaDigest.scan('/backups', { concurrency: 2 })) {
   *   if (!r.ok) console.error('mutant', r.path, r.expected, r.actual);
   * }
   * ```
   */
  static scan(dir: string, options: DnaScanOptions = {}): AsyncGenerator<DnaVerifyResult> {
    return scanTree(dir, options);
  }
}

