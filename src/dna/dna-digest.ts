/**
 * DNA: the digest and size of a file, computed in one streaming pass.
 *
 * The legacy tools (the scm-backup shell functions, the conditions-DB
 * tarball scripts) store a file's DNA in a sidecar `FILE.dna` holding a
 * Python dict `{'dig': '<md5>', 'size': N}`. stowage writes the same keys as
 * JSON (which is also a Python dict literal, so old readers still work) and
 * reads the old Python-2 repr with its `L` suffix on longs.
 *
 * @module
 */
import { createHash, type Hash } from 'node:crypto';
import { open, readFile, type FileHandle } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { StowageError, fromFsError } from '../errors.js';
import { ProgressTracker, type ProgressCallback } from '../progress.js';
import { throwIfAborted } from '../util/abort.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { checkOneOf, checkOptionKeys } from '../util/options.js';
import { scanTree, type DnaScanOptions } from './dna-scan.js';

/** Digest algorithms a DNA may use. md5 is the default: the legacy tools' choice. */
export type DnaAlgorithm = 'md5' | 'sha1' | 'sha256' | 'sha512';

/** All supported algorithms. */
export const DNA_ALGORITHMS: readonly DnaAlgorithm[] = Object.freeze(['md5', 'sha1', 'sha256', 'sha512']);

const HEX_LENGTH: Record<DnaAlgorithm, number> = { md5: 32, sha1: 40, sha256: 64, sha512: 128 };

/** The DNA of some bytes: hex digest, byte count and algorithm. */
export interface Dna {
  /** Lower-case hex digest. */
  readonly dig: string;
  /** Number of bytes digested. */
  readonly size: number;
  /** The digest algorithm. */
  readonly algorithm: DnaAlgorithm;
}

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

/** Result of {@link DnaDigest.verify}. */
export interface DnaVerifyResult {
  /** The file verified. */
  readonly path: string;
  /** Whether digest and size both match the sidecar. */
  readonly ok: boolean;
  /** The DNA recorded in the sidecar. */
  readonly expected: Dna;
  /** The DNA computed now. */
  readonly actual: Dna;
}

/** A pass-through stream that digests what flows through it; see {@link DnaDigest.tap}. */
export interface DnaTap extends Transform {
  /** Resolves with the DNA when the stream ends; rejects if it errors. */
  readonly dna: Promise<Dna>;
}

/** Suffix of sidecar files. */
export const SIDECAR_SUFFIX = '.dna';

/** Read size for file digests: 1 MiB reads are ~20% faster than 64 KiB. */
const READ_SIZE = 1 << 20;

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
   * Adds bytes.
   *
   * @param buf - the bytes
   */
  update(buf: Uint8Array): this {
    if (this.#done) throw new StowageError('EIO', 'DnaDigest.update() called after digest().');
    this.#hash.update(buf);
    this.#size += buf.length;
    return this;
  }

  /** Finishes and returns the DNA. Calling it again returns the same DNA. */
  digest(): Dna {
    this.#done ??= Object.freeze({ dig: this.#hash.digest('hex'), size: this.#size, algorithm: this.algorithm });
    return this.#done;
  }

  /**
   * Digests a file in one streaming pass with 1 MiB reads; the next read is
   * in flight while the current buffer is hashed.
   *
   * @param path - the file
   * @param options - algorithm, signal, onProgress
   */
  static async ofFile(path: string, options: DnaFileOptions = {}): Promise<Dna> {
    checkOptionKeys('DnaDigest.ofFile', options, ['algorithm', 'signal', 'onProgress']);
    const algorithm = resolveAlgorithm('DnaDigest.ofFile', options);
    throwIfAborted(options.signal);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      throw fromFsError(err, 'read', path);
    }
    try {
      const progress = new ProgressTracker('hash', options.onProgress);
      if (options.onProgress) progress.bytesTotal = (await handle.stat()).size;
      const d = new DnaDigest({ algorithm });
      let bufs = [Buffer.allocUnsafe(READ_SIZE), Buffer.allocUnsafe(READ_SIZE)];
      const read = (buf: Buffer): Promise<number> =>
        handle.read(buf, 0, buf.length, null).then(
          (r) => r.bytesRead,
          (err: unknown) => {
            throw fromFsError(err, 'read', path);
          },
        );
      let pending = read(bufs[0]!);
      for (;;) {
        const n = await pending;
        if (n === 0) break;
        throwIfAborted(options.signal);
        const cur = bufs[0]!;
        pending = read(bufs[1]!);
        d.update(n === cur.length ? cur : cur.subarray(0, n));
        progress.add(n);
        bufs = [bufs[1]!, cur];
      }
      progress.report(true);
      return d.digest();
    } finally {
      await handle.close().catch(() => {});
    }
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
        d.update(chunk);
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
   * `dig` and `size`, plus `algorithm` when it is not md5. Returns the
   * sidecar's path.
   *
   * @param file - the file the DNA describes (not the sidecar path)
   * @param dna - its DNA
   */
  static async writeSidecar(file: string, dna: Dna): Promise<string> {
    const body: Record<string, unknown> = { dig: dna.dig, size: dna.size };
    if (dna.algorithm !== 'md5') body['algorithm'] = dna.algorithm;
    const sidecar = file + SIDECAR_SUFFIX;
    await writeFileAtomic(sidecar, [Buffer.from(JSON.stringify(body).replace(/,"/g, ', "').replace(/":/g, '": ') + '\n')]);
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
    const sidecar = file + SIDECAR_SUFFIX;
    let text: string;
    try {
      text = await readFile(sidecar, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new StowageError('ENO_SIDECAR', `No DNA sidecar ${sidecar} for ${file}.`, { details: { path: file, sidecar }, cause: err });
      }
      throw fromFsError(err, 'read', sidecar);
    }
    return parseSidecar(text, sidecar);
  }

  /**
   * Re-digests `path` and compares with its sidecar. Resolves with
   * `{ ok, expected, actual }`; a missing sidecar is ENO_SIDECAR.
   *
   * @param path - the file
   * @param options - signal, onProgress
   */
  static async verify(path: string, options: Omit<DnaFileOptions, 'algorithm'> = {}): Promise<DnaVerifyResult> {
    checkOptionKeys('DnaDigest.verify', options, ['signal', 'onProgress']);
    const expected = await DnaDigest.readSidecar(path);
    const actual = await DnaDigest.ofFile(path, { ...options, algorithm: expected.algorithm });
    return { path, ok: dnaEqual(expected, actual), expected, actual };
  }

  /**
   * Walks a tree, re-digests every file that has a sidecar (on worker
   * threads, `concurrency` at once) and yields each result as it completes.
   * The mutants are the results with `ok === false`; the scan goes on past
   * them. Trees holding a `LOCKED` directory are skipped (a warning).
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

/**
 * Whether two DNAs describe the same bytes (same algorithm, digest and size).
 *
 * @param a - one DNA
 * @param b - the other
 */
export function dnaEqual(a: Dna, b: Dna): boolean {
  return a.algorithm === b.algorithm && a.size === b.size && a.dig.toLowerCase() === b.dig.toLowerCase();
}

/**
 * Throws EDIGEST_MISMATCH unless `actual` matches `expected`.
 *
 * @param what - the file or object, for the message
 * @param expected - recorded DNA
 * @param actual - computed DNA
 */
export function assertDna(what: string, expected: Dna, actual: Dna): void {
  if (!dnaEqual(expected, actual)) {
    throw new StowageError(
      'EDIGEST_MISMATCH',
      `${what} does not match its DNA: expected ${expected.algorithm} ${expected.dig} (${expected.size} bytes), got ${actual.dig} (${actual.size} bytes). Restore it from another copy.`,
      { details: { path: what, expected, actual } },
    );
  }
}

/**
 * Parses the text of a sidecar (JSON or legacy Python repr).
 *
 * @param text - the sidecar's content
 * @param sidecar - its path, for error messages
 */
export function parseSidecar(text: string, sidecar: string): Dna {
  const bad = (why: string): StowageError =>
    new StowageError('EBAD_SIDECAR', `Malformed DNA sidecar ${sidecar}: ${why}. Expected {"dig": "<hex>", "size": <bytes>}.`, {
      details: { sidecar, content: text.slice(0, 200) },
    });
  const trimmed = text.trim();
  let obj: unknown;
  try {
    obj = JSON.parse(trimmed);
  } catch {
    // Legacy Python-2 repr: single-quoted strings, longs with an L suffix.
    const legacy = /^\{\s*(?:(?:'[a-z_]+'|"[a-z_]+")\s*:\s*(?:'[^'\\]*'|"[^"\\]*"|\d+L?)\s*,?\s*)+\}$/;
    if (!legacy.test(trimmed)) throw bad('not JSON nor a Python dict');
    const converted = trimmed
      .replace(/'([^'\\]*)'/g, '"$1"')
      .replace(/(\d)L\b/g, '$1')
      .replace(/,\s*\}$/, '}');
    try {
      obj = JSON.parse(converted);
    } catch {
      throw bad('not JSON nor a Python dict');
    }
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw bad('not an object');
  const rec = obj as Record<string, unknown>;
  const algorithm = rec['algorithm'] ?? 'md5';
  if (typeof algorithm !== 'string' || !(DNA_ALGORITHMS as readonly string[]).includes(algorithm)) {
    throw bad(`unknown algorithm ${JSON.stringify(algorithm)}`);
  }
  const alg = algorithm as DnaAlgorithm;
  const dig = rec['dig'];
  if (typeof dig !== 'string' || !new RegExp(`^[0-9a-fA-F]{${HEX_LENGTH[alg]}}$`).test(dig)) {
    throw bad(`"dig" must be ${HEX_LENGTH[alg]} hex digits for ${alg}`);
  }
  const size = rec['size'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw bad('"size" must be a non-negative integer');
  return Object.freeze({ dig: dig.toLowerCase(), size, algorithm: alg });
}
