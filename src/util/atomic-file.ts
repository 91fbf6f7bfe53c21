/**
 * The one durable-write helper: every writer of stowage goes through it.
 *
 * A durable local write is: a temp name beside the target (`NAME.part`),
 * write, check the byte count, fsync the file, rename onto the final name,
 * fsync the directory. Until the rename nothing is visible under the final
 * name, so a crash, a full disk or an abort never leaves a partial file
 * that looks complete. On failure the `.part` file is removed.
 *
 * @module
 */
import { link, lstat, open, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StowageError, fromFsError } from '../errors.js';
import { throwIfAborted } from './abort.js';

/** Suffix of files being written; never a final name. */
export const PART_SUFFIX = '.part';

/** Options of {@link AtomicFile.open}. */
export interface AtomicFileOptions {
  /** File mode of the new file (default 0o644 before umask). */
  mode?: number;
  /** Refuse (EEXIST) when the target already exists (default false: replace it). */
  noOverwrite?: boolean;
  /** Cancels the open. */
  signal?: AbortSignal;
  /**
   * Write to a fresh, unpredictable temporary name in the same folder
   * (`.stowage-<random>.part`) instead of `NAME.part`: for a writer whose
   * `NAME.part` may itself be data to keep (an archive holding `X.part`
   * beside `X`), or whose `NAME` is so long that `NAME.part` would exceed
   * the file system's limit on names.
   */
  uniquePart?: boolean;
}

/** A fresh temporary name beside `path` (see {@link AtomicFileOptions.uniquePart}). */
export function uniquePartPath(path: string): string {
  return join(dirname(path), `.stowage-${randomBytes(8).toString('hex')}${PART_SUFFIX}`);
}

/** Whether `name` is one {@link uniquePartPath} makes (`.stowage-<16 hex>.part`). */
export function isUniquePartName(name: string): boolean {
  return /^\.stowage-[0-9a-f]{16}\.part$/.test(name);
}

/** Whether anything (a file, a directory, even a dangling link) is at `path`. */
async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw fromFsError(err, 'stat', path);
  }
}

/**
 * Whether a failed `link()` says that the file system has no hard links
 * there (FAT, some network and FUSE mounts), so that the caller falls back
 * to a rename or a copy; any other failure is a real one.
 *
 * @param err - what `link()` threw
 */
export function isNoHardLinkError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EXDEV' || code === 'EMLINK';
}

/**
 * Moves `from` onto `to` only if nothing is at `to`, atomically: a hard link
 * fails with EEXIST when the name is taken, where a check then a rename
 * would race. On file systems without hard links it falls back to check,
 * then rename.
 */
async function renameNoOverwrite(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new StowageError('EEXIST', `Refusing to overwrite ${to}: it appeared while writing.`, { details: { path: to }, cause: err });
    if (!isNoHardLinkError(err)) throw fromFsError(err, 'link', from);
    if (await exists(to)) throw new StowageError('EEXIST', `Refusing to overwrite ${to}: it appeared while writing.`, { details: { path: to } });
    try {
      await rename(from, to);
    } catch (err2) {
      throw fromFsError(err2, 'rename', from);
    }
    return;
  }
  await unlink(from).catch(() => {});
}

async function writeAll(handle: FileHandle, buf: Uint8Array, path: string): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    let n: number;
    try {
      ({ bytesWritten: n } = await handle.write(buf, off, buf.length - off));
    } catch (err) {
      throw fromFsError(err, 'write', path);
    }
    if (n === 0) throw new StowageError('EIO', `Cannot write ${path}: the write made no progress.`, { details: { path } });
    off += n;
  }
}

/**
 * Fsyncs a directory so that a rename inside it survives a crash.
 *
 * @param dir - the directory
 */
export async function fsyncDir(dir: string): Promise<void> {
  let h: FileHandle | undefined;
  try {
    h = await open(dir, 'r');
    await h.sync();
  } catch (err) {
    // Some file systems refuse fsync on directories (EINVAL, EISDIR); the
    // rename is then as durable as that file system makes it.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EBADF') throw fromFsError(err, 'fsync directory', dir);
  } finally {
    await h?.close().catch(() => {});
  }
}

/**
 * A file being written under `NAME.part` that becomes `NAME` only on
 * {@link AtomicFile.commit}.
 *
 * @example
 * ```ts
 * const f = await AtomicFile.open('/backups/run-0001.tar.gz');
 * try {
 *   await f.write(buf);
 *   await f.commit();
 * } catch (err) {
 *   await f.discard();
 *   throw err;
 * }
 * ```
 */
export class AtomicFile {
  /** The final path. */
  readonly path: string;
  /** The temporary path written to. */
  readonly partPath: string;
  /** Bytes written so far. */
  bytesWritten = 0;
  readonly #handle: FileHandle;
  readonly #noOverwrite: boolean;
  #state: 'open' | 'sealed' | 'committed' | 'discarded' = 'open';

  private constructor(path: string, partPath: string, handle: FileHandle, noOverwrite: boolean) {
    this.path = path;
    this.partPath = partPath;
    this.#handle = handle;
    this.#noOverwrite = noOverwrite;
  }

  /**
   * Creates `path.part` anew (removing any stale leftover, a symlink included: it is never written through),
   * or, with `uniquePart`, a fresh `.stowage-<random>.part` beside `path`.
   *
   * @param path - the final path
   * @param options - mode, noOverwrite, signal, uniquePart
   */
  static async open(path: string, options: AtomicFileOptions = {}): Promise<AtomicFile> {
    throwIfAborted(options.signal);
    if (options.noOverwrite && (await exists(path))) {
      throw new StowageError('EEXIST', `Refusing to overwrite ${path}: it already exists.`, { details: { path } });
    }
    // Created anew, never opened through what is there: a stale leftover is
    // removed first, and a symlink named `path.part` (planted, or synced
    // from a source) is removed instead of written through, so nothing
    // outside `path`'s folder is ever written. A unique part name is never
    // there already (it is not removed: nothing of ours is in the way).
    let handle: FileHandle;
    const part = options.uniquePart ? uniquePartPath(path) : path + PART_SUFFIX;
    try {
      handle = await open(part, 'wx', options.mode ?? 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || options.uniquePart) throw fromFsError(err, 'create', part);
      try {
        await unlink(part);
        handle = await open(part, 'wx', options.mode ?? 0o644);
      } catch (err2) {
        throw fromFsError(err2, 'create', part);
      }
    }
    return new AtomicFile(path, part, handle, options.noOverwrite ?? false);
  }

  /** The underlying file handle (positioned writes are the caller's business). */
  get handle(): FileHandle {
    return this.#handle;
  }

  /**
   * Appends a buffer; resolves when it is all written.
   *
   * @param buf - the bytes
   */
  async write(buf: Uint8Array): Promise<void> {
    if (this.#state !== 'open') throw new StowageError('EIO', `Cannot write ${this.partPath}: already ${this.#state}.`, { details: { path: this.path } });
    await writeAll(this.#handle, buf, this.partPath);
    this.bytesWritten += buf.length;
  }

  /**
   * A Writable stream appending to this file, with backpressure, for use in
   * `stream.pipeline`. It does not commit on finish: call {@link commit}.
   */
  writable(): Writable {
    return new Writable({
      highWaterMark: 1 << 20,
      write: (chunk: Buffer, _enc, cb) => {
        this.write(chunk).then(() => cb(), cb);
      },
      writev: (chunks, cb) => {
        const buf = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk as Buffer));
        this.write(buf as Buffer).then(() => cb(), cb);
      },
    });
  }

  /**
   * Checks the byte count, fsyncs and closes the `.part` file, and leaves it
   * under its temporary name: for a writer that renames many files only once
   * all of them are known good (`Archiver.extract`), without holding a file
   * descriptor per file meanwhile. Rename it later with {@link commit} (or
   * by path, then {@link fsyncDir}); {@link discard} still removes it. On any
   * failure the `.part` file is removed and the error thrown.
   *
   * @param expectedBytes - if given, the number of bytes that must have been written
   */
  async seal(expectedBytes?: number): Promise<void> {
    if (this.#state !== 'open') throw new StowageError('EIO', `Cannot seal ${this.path}: already ${this.#state}.`, { details: { path: this.path } });
    try {
      await this.#syncAndClose(expectedBytes);
      this.#state = 'sealed';
    } catch (err) {
      // #syncAndClose may have given the name up already (discarded).
      if ((this.#state as string) !== 'discarded') await this.discard();
      throw err;
    }
  }

  /** Byte count, fsync, "the `.part` name is still ours", close: what commit and seal share. */
  async #syncAndClose(expectedBytes: number | undefined): Promise<void> {
    if (expectedBytes !== undefined && expectedBytes !== this.bytesWritten) {
      throw new StowageError('EIO', `Short write to ${this.path}: ${this.bytesWritten} of ${expectedBytes} bytes.`, {
        details: { path: this.path, expected: expectedBytes, written: this.bytesWritten },
      });
    }
    try {
      await this.#handle.sync();
    } catch (err) {
      throw fromFsError(err, 'fsync', this.partPath);
    }
    // The name must still be our file: another writer of the same path
    // (a second put at once) removes a `.part` it finds and makes its own.
    // Renaming that one would put its bytes under our name and DNA.
    const [mine, named] = await Promise.all([this.#handle.stat({ bigint: true }), lstat(this.partPath, { bigint: true }).catch(() => undefined)]);
    if (named === undefined || named.ino !== mine.ino || named.dev !== mine.dev) {
      await this.#handle.close().catch(() => {});
      this.#state = 'discarded'; // ours is already gone from the name; the one there is not ours to remove
      throw new StowageError('EIO', `Cannot finish ${this.path}: while it was written, ${this.partPath} was replaced by another writer of the same path (two writes at once). Nothing was renamed; write it again once the other is done.`, {
        details: { path: this.path, part: this.partPath },
        retryable: true,
      });
    }
    await this.#handle.close();
  }

  /**
   * Checks the byte count, fsyncs, renames onto the final name and fsyncs the
   * directory (after {@link seal}: renames and fsyncs the directory). On any
   * failure the `.part` file is removed and the error thrown.
   *
   * @param expectedBytes - if given, the number of bytes that must have been written
   */
  async commit(expectedBytes?: number): Promise<void> {
    if (this.#state !== 'open' && this.#state !== 'sealed') throw new StowageError('EIO', `Cannot commit ${this.path}: already ${this.#state}.`, { details: { path: this.path } });
    try {
      if (this.#state === 'open') await this.#syncAndClose(expectedBytes);
      this.#state = 'committed';
      if (this.#noOverwrite) {
        await renameNoOverwrite(this.partPath, this.path);
      } else {
        try {
          await rename(this.partPath, this.path);
        } catch (err) {
          throw fromFsError(err, 'rename', this.partPath);
        }
      }
      await fsyncDir(dirname(this.path));
    } catch (err) {
      if ((this.#state as string) !== 'discarded') {
        this.#state = 'sealed';
        await this.discard();
      }
      throw err;
    }
  }

  /** Closes and removes the `.part` file; never throws. Safe to call twice. */
  async discard(): Promise<void> {
    if (this.#state === 'committed' || this.#state === 'discarded') return;
    this.#state = 'discarded';
    await this.#handle.close().catch(() => {});
    await rm(this.partPath, { force: true }).catch(() => {});
  }

  /** Discards unless committed, so `await using f = await AtomicFile.open(...)` cleans up. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.discard();
  }
}

/** Options of {@link writeFileAtomic}. */
export interface WriteFileAtomicOptions extends AtomicFileOptions {
  /** Bytes the source must produce; a different count fails the write. */
  expectedBytes?: number;
}

/**
 * Streams `source` into `path` durably: `path.part`, fsync, rename, fsync dir.
 * Returns the number of bytes written. On error or abort nothing is left
 * under either name.
 *
 * @param path - the final path
 * @param source - a readable stream or async iterable of buffers
 * @param options - expectedBytes, mode, noOverwrite, signal
 */
export async function writeFileAtomic(
  path: string,
  source: Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options: WriteFileAtomicOptions = {},
): Promise<number> {
  const file = await AtomicFile.open(path, options);
  try {
    await pipeline(source, file.writable(), options.signal ? { signal: options.signal } : {});
    await file.commit(options.expectedBytes);
    return file.bytesWritten;
  } catch (err) {
    await file.discard();
    if (options.signal?.aborted) throw options.signal.reason;
    throw err;
  }
}
