/**
 * A small, real file system that can be filled up, for "disk full" tests:
 * a tmpfs of a given size mounted on a temp folder. Mounting needs root;
 * anywhere else this throws, so a full-disk test fails instead of passing
 * without having run.
 *
 * @module
 */
import { execFileSync } from 'node:child_process';
import { open, statfs, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isRoot, registerExitCleanup, requireBinary, run } from './proc.js';
import { makeTempDir } from './tmp.js';

/** A mounted tmpfs from {@link withTmpfs}. */
export interface Tmpfs {
  /** The mount point (a temp folder). */
  readonly dir: string;
  /** Its size in bytes. */
  readonly sizeBytes: number;
  /** Bytes still available to an ordinary write. */
  available(): Promise<number>;
  /**
   * Writes `DIR/.fill` until the file system is full (ENOSPC), then gives
   * back `leaveBytes` (default 0) by truncating it. Returns the bytes that
   * remain available.
   *
   * @param leaveBytes - room to leave for the write under test
   */
  fill(leaveBytes?: number): Promise<number>;
  /** Removes the `.fill` file. */
  unfill(): Promise<void>;
  /**
   * Remounts it read-only (writes then fail with EROFS), or writable again.
   *
   * @param readOnly - true for read-only
   */
  remount(readOnly: boolean): Promise<void>;
  /** Unmounts and removes the mount point. */
  stop(): Promise<void>;
  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Options of {@link withTmpfs}. */
export interface TmpfsOptions {
  /**
   * Most inodes (files, folders, links) the file system holds, root folder
   * included (tmpfs `nr_inodes`), for "out of inodes" tests: a tmpfs folder
   * takes no data blocks, so only this makes `mkdir` fail with ENOSPC.
   * Default: tmpfs's own (half the RAM pages).
   */
  readonly inodes?: number;
}

/**
 * Mounts a tmpfs of `sizeMiB` MiB on a fresh temp folder. Throws when not
 * running as root or when the mount fails (for instance in a container
 * without CAP_SYS_ADMIN), with an explanation.
 *
 * @param sizeMiB - size in MiB (1 to 4096)
 * @param options - inode limit
 */
export async function withTmpfs(sizeMiB: number, options: TmpfsOptions = {}): Promise<Tmpfs> {
  if (!Number.isInteger(sizeMiB) || sizeMiB < 1 || sizeMiB > 4096) {
    throw new Error(`withTmpfs: sizeMiB must be an integer from 1 to 4096, got ${String(sizeMiB)}`);
  }
  const { inodes } = options;
  if (inodes !== undefined && (!Number.isInteger(inodes) || inodes < 2)) {
    throw new Error(`withTmpfs: inodes must be an integer of at least 2, got ${String(inodes)}`);
  }
  if (!isRoot()) {
    throw new Error(
      'withTmpfs: mounting a tmpfs for full-disk tests needs root (mount -t tmpfs); ' +
        'run this test as root, e.g. in the CI container. It is not skipped on purpose: a full-disk test that did not run must not pass.',
    );
  }
  const mount = requireBinary({ name: 'mount', paths: ['/usr/bin/mount', '/bin/mount'], commands: ['mount'], debianPackage: 'mount' });
  const umount = requireBinary({ name: 'umount', paths: ['/usr/bin/umount', '/bin/umount'], commands: ['umount'], debianPackage: 'mount' });
  const tmp = makeTempDir('tmpfs');
  const dir = tmp.path;
  try {
    await run(mount, ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0777${inodes === undefined ? '' : `,nr_inodes=${inodes}`}`, 'tmpfs', dir]);
  } catch (err) {
    await tmp.remove();
    throw new Error(
      `withTmpfs: could not mount a ${sizeMiB} MiB tmpfs on ${dir} (a container without CAP_SYS_ADMIN cannot mount): ${(err as Error).message}`,
      { cause: err },
    );
  }
  const unregister = registerExitCleanup(() => {
    execFileSync(umount, ['-l', dir], { stdio: 'ignore' });
  });
  const fillPath = join(dir, '.fill');
  const available = async (): Promise<number> => {
    const s = await statfs(dir);
    return s.bavail * s.bsize;
  };
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      try {
        await run(umount, [dir]);
      } catch {
        // Something still holds a file open in it: detach it anyway.
        await run(umount, ['-l', dir]);
      }
      unregister();
      await tmp.remove();
    })();
    return stopping;
  };
  return {
    dir,
    sizeBytes: sizeMiB * 1024 * 1024,
    available,
    async fill(leaveBytes = 0) {
      const fh = await open(fillPath, 'a');
      let written = (await fh.stat()).size;
      try {
        const chunk = Buffer.alloc(1024 * 1024, 0xa5);
        let size = chunk.length;
        for (;;) {
          try {
            const { bytesWritten } = await fh.write(chunk, 0, size);
            written += bytesWritten;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
            // Fill the last partial blocks with smaller writes.
            if (size <= 512) break;
            size = Math.floor(size / 2);
          }
        }
        if (leaveBytes > 0) await fh.truncate(Math.max(0, written - leaveBytes));
      } finally {
        await fh.close();
      }
      return available();
    },
    async unfill() {
      await unlink(fillPath).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    },
    async remount(readOnly: boolean) {
      await run(mount, ['-o', `remount,${readOnly ? 'ro' : 'rw'}`, dir]);
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

/**
 * Creates empty files in `dir` until the file system has no inode left
 * (a tmpfs made with `inodes`); returns how many it made.
 *
 * @param dir - a folder on that file system
 */
export async function useUpInodes(dir: string): Promise<number> {
  for (let i = 0; ; i++) {
    try {
      await writeFile(join(dir, `inode-${i}`), '');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') return i;
      throw err;
    }
  }
}
