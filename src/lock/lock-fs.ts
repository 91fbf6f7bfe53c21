/**
 * The file operations a {@link LockDir} needs, as a small interface, and
 * their implementation on the local file system.
 *
 * Why an interface of its own and not the Transport: a lock must be planted
 * on the tree it protects, which may be on another host, but it needs only
 * seven operations, two of them with guarantees a general transport does not
 * promise: `createFile` must be exclusive (O_EXCL: exactly one of several
 * concurrent creators succeeds), and `rename` must be one atomic rename(2)
 * (the file never has both names at once) that does not replace an
 * existing target. Over SFTP: `open` with `SSH_FXF_CREAT | SSH_FXF_EXCL`,
 * and `posix-rename@openssh.com` after a `stat` of the target (OpenSSH's
 * plain v3 rename is link()+unlink(), which has the two-names moment), so
 * a transport adapter stays thin.
 *
 * Paths are strings with `/` separators. Errors are {@link StowageError}s:
 * a missing path is `ENOT_FOUND`, an existing one `EEXIST`; anything else
 * keeps the original error as `cause`.
 *
 * @module
 */
import { lstat, mkdir, open, readFile, rename, rm, unlink, utimes, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { StowageError, fromFsError } from '../errors.js';
import { fsyncDir } from '../util/atomic-file.js';

/** What {@link LockFs.stat} reports. */
export interface LockFsStat {
  /** Modification time in milliseconds since the epoch. */
  readonly mtimeMs: number;
}

/**
 * The minimal file operations of a lock, local or remote.
 *
 * Every method rejects with a {@link StowageError}: `ENOT_FOUND` when a path
 * (or its parent) does not exist, `EEXIST` where noted, another code
 * (`EIO`, `ETRANSPORT`, `ENOSPACE`...) otherwise.
 */
export interface LockFs {
  /**
   * Creates one directory (not its parents). Rejects with `EEXIST` when
   * anything already exists at `path`, `ENOT_FOUND` when the parent is missing.
   *
   * @param path - the directory to create
   */
  mkdir(path: string): Promise<void>;
  /**
   * Creates a new file exclusively and durably: of several concurrent
   * callers exactly one succeeds, the others get `EEXIST`. The content is
   * flushed to stable storage before the promise resolves. A reader may see
   * the file empty or partial while it is being written; the lock treats
   * such a file as "being created".
   *
   * @param path - the file to create
   * @param data - its whole content (a few hundred bytes)
   */
  createFile(path: string, data: Uint8Array): Promise<void>;
  /**
   * Reads a whole (small) file.
   *
   * @param path - the file
   */
  readFile(path: string): Promise<Uint8Array>;
  /**
   * Renames a file or directory atomically (one rename(2): never both names
   * at once). Must not replace an existing `to`: rejects with `EEXIST`
   * instead (checking first is enough, see the local implementation).
   * `ENOT_FOUND` when `from` is missing.
   *
   * @param from - the current path
   * @param to - the new path
   */
  rename(from: string, to: string): Promise<void>;
  /**
   * Removes a file, or a directory with everything in it. A missing path is
   * not an error.
   *
   * @param path - what to remove
   */
  remove(path: string): Promise<void>;
  /**
   * The modification time of a file or directory (symlinks not followed).
   *
   * @param path - the file or directory
   */
  stat(path: string): Promise<LockFsStat>;
  /**
   * Sets the modification (and access) time of a file: the lock's heartbeat.
   *
   * @param path - the file
   * @param mtimeMs - the new time, milliseconds since the epoch
   */
  setMtime(path: string, mtimeMs: number): Promise<void>;
}

async function writeAll(handle: FileHandle, data: Uint8Array, path: string): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await handle.write(data, off, data.length - off);
    if (bytesWritten === 0) throw new StowageError('EIO', `Cannot write ${path}: the write made no progress.`, { details: { path } });
    off += bytesWritten;
  }
}

/**
 * {@link LockFs} on the local file system (node:fs).
 *
 * `mkdir` and `createFile` fsync the directory they change; `createFile`
 * opens with `O_CREAT | O_EXCL` and fsyncs the file before resolving.
 * `rename` checks that the target is absent, then calls `rename(2)`.
 */
export const localLockFs: LockFs = Object.freeze({
  async mkdir(path: string): Promise<void> {
    try {
      await mkdir(path);
    } catch (err) {
      throw fromFsError(err, 'create directory', path);
    }
    await fsyncDir(dirname(path));
  },

  async createFile(path: string, data: Uint8Array): Promise<void> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'wx', 0o644);
    } catch (err) {
      throw fromFsError(err, 'create', path);
    }
    try {
      await writeAll(handle, data, path);
      await handle.sync();
    } catch (err) {
      await handle.close().catch(() => {});
      // Leave no half-written file behind to block the lock until it is stale.
      await unlink(path).catch(() => {});
      throw fromFsError(err, 'write', path);
    }
    try {
      await handle.close();
    } catch (err) {
      throw fromFsError(err, 'close', path);
    }
    await fsyncDir(dirname(path));
  },

  async readFile(path: string): Promise<Uint8Array> {
    try {
      return await readFile(path);
    } catch (err) {
      throw fromFsError(err, 'read', path);
    }
  },

  async rename(from: string, to: string): Promise<void> {
    // Two steps, check then rename(2): Node has no renameat2(RENAME_NOREPLACE).
    // A link()+unlink() pair would refuse atomically but leaves a moment
    // where the file has both names, and a concurrent rename of the old name
    // would then duplicate the owner file. LockDir renames onto fresh unique
    // names, and back onto owner.json only where no contender can create
    // it (see the why-block of lock-dir.ts), so the gap is not a race.
    const exists = await lstat(to).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return false;
        throw fromFsError(err, 'stat', to);
      },
    );
    if (exists) throw new StowageError('EEXIST', `Cannot rename ${from} to ${to}: the target already exists.`, { details: { path: to, action: 'rename' } });
    try {
      await rename(from, to);
    } catch (err) {
      throw fromFsError(err, 'rename', from);
    }
  },

  async remove(path: string): Promise<void> {
    try {
      await rm(path, { recursive: true, force: true, maxRetries: 2, retryDelay: 20 });
    } catch (err) {
      throw fromFsError(err, 'remove', path);
    }
  },

  async stat(path: string): Promise<LockFsStat> {
    try {
      const s = await lstat(path);
      return { mtimeMs: s.mtimeMs };
    } catch (err) {
      throw fromFsError(err, 'stat', path);
    }
  },

  async setMtime(path: string, mtimeMs: number): Promise<void> {
    try {
      const t = new Date(mtimeMs);
      await utimes(path, t, t);
    } catch (err) {
      throw fromFsError(err, 'set mtime of', path);
    }
  },
});

/** The method names every {@link LockFs} must have (checked up front). */
export const LOCK_FS_METHODS: readonly (keyof LockFs)[] = Object.freeze(['mkdir', 'createFile', 'readFile', 'rename', 'remove', 'stat', 'setMtime']);
