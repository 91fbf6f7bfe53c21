/**
 * `mkdir -p` that reports why it failed.
 *
 * Node 20's `fs.promises.mkdir(path, { recursive: true })` reports any
 * failure to create a missing folder as ENOENT: on a disk out of inodes
 * (ENOSPC) or over quota (EDQUOT) the caller would be told a path "does not
 * exist" and never that the disk is full. On ENOENT the missing folders are
 * made again one at a time, which gives the real errno.
 *
 * @module
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/**
 * Creates `path` and its missing parents; an existing folder is fine.
 * Rejects with the Node.js error of the part that could not be made, with
 * its real code (ENOSPC, EDQUOT, EACCES, ENOTDIR...).
 *
 * @param path - the folder to create
 * @param mode - mode of the folders created (default 0o777 less the umask)
 */
export async function mkdirRecursive(path: string, mode?: number): Promise<void> {
  const opts = mode === undefined ? {} : { mode };
  try {
    await mkdir(path, { recursive: true, ...opts });
    return;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // The missing parts, deepest first.
  const missing: string[] = [];
  for (let p = resolve(path); ; p = dirname(p)) {
    const there = await stat(p).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return false;
        throw err;
      },
    );
    if (there) break;
    missing.push(p);
    if (dirname(p) === p) break;
  }
  for (const p of missing.reverse()) {
    try {
      await mkdir(p, opts);
    } catch (err) {
      // Made by someone else meanwhile is fine.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}
