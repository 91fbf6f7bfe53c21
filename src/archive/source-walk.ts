/**
 * The list of what `Archiver.create` puts in an archive: a sorted walk of
 * the source directory, or the caller's explicit entries (directories among
 * them walked recursively), with the lstat facts each tar header needs.
 *
 * The walk refuses a tree that holds a `LOCKED` directory (a transfer is
 * writing it) and skips, with a warning, what tar cannot represent safely:
 * sockets, fifos and device nodes, and what vanished while it was walked
 * (a live tree). A folder or entry that is there but cannot be read
 * (EACCES, EIO) is an error: leaving it out would make a backup that
 * looks complete.
 *
 * @module
 */
import { lstat, readdir, readlink, stat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { basename, dirname, join, posix, resolve, sep } from 'node:path';
import { StowageError, fromFsError, warnOrThrow, type WarningCallback } from '../errors.js';
import { LOCK_DIR_NAME } from '../dna/index.js';
import { throwIfAborted } from '../util/abort.js';

/** One item to archive. */
export interface SourceEntry {
  /** Path inside the archive, `/`-separated, relative. */
  readonly name: string;
  /** Absolute path on disk. */
  readonly abs: string;
  /** Entry type. */
  readonly type: 'file' | 'directory' | 'symlink';
  /** lstat facts the tar header needs (kept instead of the whole Stats: a tree may have millions of entries). */
  readonly stats: EntryStats;
  /** Symlink target, for symlinks. */
  readonly linkname?: string;
}

/** The lstat facts kept per entry. */
export interface EntryStats {
  /** Bytes (files). */
  readonly size: number;
  /** Mode bits including the file type. */
  readonly mode: number;
  /** Modification time, ms since the epoch. */
  readonly mtimeMs: number;
  /** Owner. */
  readonly uid: number;
  /** Group. */
  readonly gid: number;
}

function slim(st: Stats): EntryStats {
  return { size: st.size, mode: st.mode, mtimeMs: st.mtimeMs, uid: st.uid, gid: st.gid };
}

/**
 * Files never to archive: the archive being written and its companions
 * (sidecar, `.part` files), named in one directory known by identity
 * (device and inode), so that a source reached through a symlink, a bind
 * mount or `..` cannot take them in under another path.
 */
export interface OutputExclusion {
  /** Device and inode of the directory the archive is written to; undefined when it does not exist (nothing to exclude then). */
  readonly dir: { readonly dev: bigint; readonly ino: bigint } | undefined;
  /** Base names in that directory to leave out. */
  readonly names: ReadonlySet<string>;
}

/** Options of {@link collectEntries}. */
export interface CollectOptions {
  /** Explicit relative paths under the source directory (default: everything). */
  entries?: readonly string[] | undefined;
  /** Archive a tree holding a `LOCKED` directory anyway (the lock directory itself is left out). */
  allowLocked: boolean;
  /** What never to include (the archive being written and its sidecar). */
  exclude: OutputExclusion;
  /** Per-entry trouble. */
  onWarning: WarningCallback | undefined;
  /** Throw instead of warning. */
  strict: boolean;
  /** Cancels the walk. */
  signal: AbortSignal | undefined;
}

/** Byte order comparison, stable across locales. */
function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

class Walker {
  readonly out: SourceEntry[] = [];
  readonly #seen = new Set<string>();
  constructor(
    readonly root: string,
    readonly o: CollectOptions,
  ) {}

  /** Whether `abs` is one of the excluded files: its name first (no syscall for other names), then its directory's identity. */
  async #excluded(abs: string): Promise<boolean> {
    const { dir, names } = this.o.exclude;
    if (dir === undefined || !names.has(basename(abs))) return false;
    const st = await stat(dirname(abs), { bigint: true }).catch(() => undefined);
    return st !== undefined && st.dev === dir.dev && st.ino === dir.ino;
  }

  /** Adds one path (already lstat-ed) and, for a directory, its contents. */
  async add(name: string, abs: string, stats: Stats): Promise<void> {
    throwIfAborted(this.o.signal);
    if (this.#seen.has(name) || (name !== '' && (await this.#excluded(abs)))) return;
    if (stats.isDirectory()) {
      if (name !== '') {
        this.#seen.add(name);
        this.out.push({ name, abs, type: 'directory', stats: slim(stats) });
      }
      await this.#walk(name, abs);
    } else if (stats.isFile()) {
      this.#seen.add(name);
      this.out.push({ name, abs, type: 'file', stats: slim(stats) });
    } else if (stats.isSymbolicLink()) {
      let linkname: string;
      try {
        linkname = await readlink(abs);
      } catch (err) {
        const e = fromFsError(err, 'read link', abs);
        if (!vanished(err) && (err as NodeJS.ErrnoException).code !== 'EINVAL') throw e; // EINVAL: no longer a link
        warnOrThrow(e, abs, this.o.onWarning, this.o.strict);
        return;
      }
      this.#seen.add(name);
      this.out.push({ name, abs, type: 'symlink', stats: slim(stats), linkname });
    } else {
      const kind = stats.isFIFO() ? 'fifo' : stats.isSocket() ? 'socket' : 'device node';
      const e = new StowageError('EUNSAFE_PATH', `Skipped ${abs}: a ${kind} cannot be archived.`, { details: { path: abs, kind } });
      warnOrThrow(e, abs, this.o.onWarning, this.o.strict);
    }
  }

  async #walk(name: string, abs: string): Promise<void> {
    let names: string[];
    try {
      const raw = await readdir(abs, { encoding: 'buffer' });
      names = raw.map((b) => b.toString('utf8'));
      // A name that is not UTF-8 (Latin-1 from an old DAQ or Windows tree)
      // cannot be opened through its decoded string: it would be left out,
      // and the archive verify, without it. Refused, loudly.
      const bad = raw.findIndex((b, k) => !Buffer.from(names[k]!, 'utf8').equals(b));
      if (bad >= 0) {
        throw new StowageError('EIO', `Cannot archive ${join(abs, names[bad]!)}: its name is not valid UTF-8 (bytes ${raw[bad]!.toString('hex')}), so it cannot be read by name; rename it (e.g. convmv -f latin1 -t utf8) and archive again.`, {
          details: { path: abs, nameHex: raw[bad]!.toString('hex') },
        });
      }
    } catch (err) {
      if (err instanceof StowageError && err.code === 'EIO' && err.details['nameHex'] !== undefined) throw err;
      const e = fromFsError(err, 'list', abs);
      // Only a folder that is gone (or no longer a folder) is a live tree's
      // change to warn about; one that cannot be read (EACCES, EIO) would
      // leave its whole contents out of a backup that says it succeeded.
      if (name === '' || !vanished(err)) throw e;
      warnOrThrow(e, abs, this.o.onWarning, this.o.strict);
      return;
    }
    names.sort(byName);
    if (names.includes(LOCK_DIR_NAME)) {
      const lockPath = join(abs, LOCK_DIR_NAME);
      const st = await lstat(lockPath).catch(() => undefined);
      if (st?.isDirectory()) {
        if (!this.o.allowLocked) {
          throw new StowageError('ELOCKED', `Refusing to archive ${this.root}: ${lockPath} exists, so a transfer or backup is still writing that tree. Retry when it is released, or pass allowLocked: true.`, {
            details: { path: abs, lock: lockPath },
          });
        }
        names = names.filter((n) => n !== LOCK_DIR_NAME);
      }
    }
    // lstat a directory's children a batch at a time: the walk is syscall-bound.
    const BATCH = 32;
    for (let i = 0; i < names.length; i += BATCH) {
      const batch = names.slice(i, i + BATCH);
      const stats = await Promise.all(
        batch.map((n) =>
          lstat(join(abs, n)).then(
            (s) => s,
            (err: unknown) => err,
          ),
        ),
      );
      for (let j = 0; j < batch.length; j++) {
        const childName = name === '' ? batch[j]! : `${name}/${batch[j]!}`;
        const childAbs = join(abs, batch[j]!);
        const st = stats[j];
        if (st instanceof Error || st === undefined) {
          // Vanished between readdir and lstat: a live tree; warn and go on.
          // Any other failure would leave it out: an error.
          const e = fromFsError(st, 'stat', childAbs);
          if (!vanished(st)) throw e;
          warnOrThrow(e, childAbs, this.o.onWarning, this.o.strict);
          continue;
        }
        await this.add(childName, childAbs, st as Stats);
      }
    }
  }
}

/** Whether a file system error says the path is gone (or a folder on its way is no longer one): a live tree changing under the walk. */
function vanished(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * Normalises an explicit entry to a relative `/`-separated path inside the
 * source directory; throws EUNSAFE_PATH for one that would leave it.
 *
 * @param entry - the caller's path
 */
export function normalizeSourceEntry(entry: string): string {
  if (typeof entry !== 'string' || entry === '') {
    throw new StowageError('EBAD_CONFIG', `Archiver.create: option "entries" must hold non-empty strings, got ${JSON.stringify(entry)}.`, { details: { option: 'entries', value: entry } });
  }
  const p = posix.normalize(entry.split(sep).join('/'));
  if (posix.isAbsolute(p) || p === '..' || p.startsWith('../')) {
    throw new StowageError('EUNSAFE_PATH', `Archiver.create: entry "${entry}" is not a relative path inside the source directory.`, { details: { option: 'entries', entry } });
  }
  return p.replace(/\/+$/, '') === '.' ? '' : p.replace(/\/+$/, '');
}

/**
 * Lists what to archive, in archive order.
 *
 * @param srcDir - the source directory (a symlink to one is followed; symlinks below it are stored as symlinks)
 * @param o - explicit entries, locks, exclusions, warnings, signal
 */
export async function collectEntries(srcDir: string, o: CollectOptions): Promise<SourceEntry[]> {
  throwIfAborted(o.signal);
  const root = resolve(srcDir);
  let rootStats: Stats;
  try {
    // Followed: a source given as a symlink to a directory is that directory (entries below are not followed).
    rootStats = await stat(root);
  } catch (err) {
    throw fromFsError(err, 'archive', root);
  }
  if (!rootStats.isDirectory()) {
    throw new StowageError('EBAD_CONFIG', `Archiver.create: the source ${root} is not a directory.`, { details: { path: root } });
  }
  const w = new Walker(root, o);
  if (o.entries === undefined) {
    await w.add('', root, rootStats);
    return w.out;
  }
  // Explicit entries: the lock check still applies to the source's root.
  const rootNames = await readdir(root).catch((err: unknown) => {
    throw fromFsError(err, 'list', root);
  });
  if (rootNames.includes(LOCK_DIR_NAME) && !o.allowLocked && (await lstat(join(root, LOCK_DIR_NAME)).catch(() => undefined))?.isDirectory()) {
    throw new StowageError('ELOCKED', `Refusing to archive ${root}: ${join(root, LOCK_DIR_NAME)} exists, so a transfer or backup is still writing it. Retry when it is released, or pass allowLocked: true.`, {
      details: { path: root, lock: join(root, LOCK_DIR_NAME) },
    });
  }
  for (const entry of o.entries) {
    const name = normalizeSourceEntry(entry);
    const abs = name === '' ? root : join(root, ...name.split('/'));
    let st: Stats;
    try {
      st = name === '' ? rootStats : await lstat(abs);
    } catch (err) {
      throw fromFsError(err, 'archive', abs);
    }
    await w.add(name, abs, st);
  }
  return w.out;
}
