/**
 * Guards for extracting untrusted archives.
 *
 * Why: a tar file is a list of instructions to write paths, and the classic
 * attacks make those paths leave the destination: an absolute name, a `..`
 * segment, a symlink (or hard link) pointing out and a later entry written
 * *through* it (node-tar's CVE-2021-32803/32804/37701 family), a planted
 * symlink at the `NAME.part` slot an atomic writer opens, device nodes, and
 * size bombs. Every check here runs before anything is written for the
 * entry, and every path component between the destination and the target is
 * checked with `lstat` (or, for an entry of the archive not yet renamed into
 * place, against what it will be), so a symlink planted by an earlier entry
 * is never followed.
 *
 * @module
 */
import { lstat, mkdir, readlink, rmdir } from 'node:fs/promises';
import { dirname, isAbsolute, join, posix, relative, resolve, sep } from 'node:path';
import { StowageError, fromFsError } from '../errors.js';
import type { ArchiveEntry } from './archive-reader.js';
import { mkdirRecursive } from '../util/mkdirp.js';

function unsafe(archive: string, entry: string, why: string, extra: Record<string, unknown> = {}): StowageError {
  return new StowageError('EUNSAFE_PATH', `Refusing to extract "${entry}" from ${archive}: ${why}. Nothing was written for it.`, {
    details: { path: archive, entry, reason: why, ...extra },
  });
}

/** Whether a normalised `/`-separated relative path climbs out (`..` segment) or is absolute. */
function escapes(p: string): boolean {
  return p.startsWith('/') || p.split('/').includes('..');
}

/**
 * An entry extracted but not yet in place: `Archiver.extract` keeps files
 * and links under temporary names until the whole archive has been checked,
 * and the guard judges every later entry against the tree as it will be.
 * Hard links are `file`s.
 */
export type PendingEntry = { readonly kind: 'file' } | { readonly kind: 'symlink'; readonly linkname: string };

/** What is at a path of the destination once the pending entries are in place. */
export interface EntryAt {
  /** Its type, as lstat sees it (a symlink is never followed). */
  readonly type: 'file' | 'directory' | 'symlink' | 'other';
  /** A pending symlink's target (read from disk on demand otherwise). */
  readonly linkname?: string;
}

/**
 * Validates entries of one archive against one destination directory and
 * prepares their parent directories without following symlinks.
 */
export class ExtractGuard {
  /** The destination's real path. */
  readonly dest: string;
  /** Directories this guard created, parents before children (for removal if the extraction fails). */
  readonly created: string[] = [];
  readonly #archive: string;
  readonly #allowUnsafe: boolean;
  readonly #pending: (abs: string) => PendingEntry | undefined;
  /** Directories (absolute) known to be real directories inside `dest`. */
  readonly #safeDirs = new Set<string>();

  /**
   * @param dest - the destination's real path (already created)
   * @param archive - the archive's path, for messages
   * @param allowUnsafe - skip the path checks (`allowUnsafePaths`)
   * @param pending - entries not yet renamed into place, by absolute path (default: none)
   */
  constructor(dest: string, archive: string, allowUnsafe: boolean, pending: (abs: string) => PendingEntry | undefined = () => undefined) {
    this.dest = dest;
    this.#archive = archive;
    this.#allowUnsafe = allowUnsafe;
    this.#pending = pending;
    this.#safeDirs.add(dest);
  }

  /**
   * What is at `abs` once the pending entries are in place: the pending
   * entry there if any, else what lstat finds (undefined: nothing).
   *
   * @param abs - an absolute path
   */
  async at(abs: string): Promise<EntryAt | undefined> {
    const p = this.#pending(abs);
    if (p !== undefined) return p.kind === 'symlink' ? { type: 'symlink', linkname: p.linkname } : { type: 'file' };
    let st;
    try {
      st = await lstat(abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw fromFsError(err, 'stat', abs);
    }
    return { type: st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'directory' : st.isFile() ? 'file' : 'other' };
  }

  /** A symlink's target, pending or on disk; undefined if `abs` is not a symlink. */
  async #linkAt(abs: string): Promise<string | undefined> {
    const a = await this.at(abs);
    if (a?.type !== 'symlink') return undefined;
    return a.linkname ?? (await readlink(abs).catch(() => undefined));
  }

  /**
   * Creates the directory `dir` of an entry (its parent already prepared),
   * remembering it for {@link ExtractGuard.removeCreated}; one created meanwhile is fine.
   *
   * @param dir - absolute path
   */
  async mkdir(dir: string): Promise<void> {
    try {
      await mkdir(dir, { mode: 0o700 });
      this.created.push(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromFsError(err, 'create directory', dir);
    }
  }

  /** Removes the directories this guard created, deepest first, where they are empty again; never throws. */
  async removeCreated(): Promise<void> {
    for (const d of this.created.splice(0).reverse()) await rmdir(d).catch(() => {});
  }

  /**
   * The absolute path an entry is written to; throws EUNSAFE_PATH for an
   * absolute name or one with a `..` segment.
   *
   * @param rawName - the name as stored in the archive
   * @param name - the normalised name
   */
  target(rawName: string, name: string): string {
    if (this.#allowUnsafe) return isAbsolute(name) || rawName.startsWith('/') ? resolve('/', rawName) : resolve(this.dest, name);
    if (rawName.startsWith('/') || /^[A-Za-z]:[\\/]/.test(rawName)) throw unsafe(this.#archive, rawName, 'absolute path');
    if (escapes(name) || name.split('/').includes('..')) throw unsafe(this.#archive, rawName, 'path has a ".." segment');
    if (name.includes('\0')) throw unsafe(this.#archive, rawName, 'path holds a NUL byte');
    return name === '' ? this.dest : join(this.dest, ...name.split('/'));
  }

  /**
   * Checks every existing directory between `dest` and `dirname(target)` with
   * lstat (a symlink there is EUNSAFE_PATH: writing would go through it),
   * then creates the missing ones.
   *
   * @param target - absolute path about to be written
   * @param entry - entry name, for messages
   */
  async prepareParent(target: string, entry: string): Promise<void> {
    const parent = dirname(target);
    if (this.#safeDirs.has(parent)) return;
    if (this.#allowUnsafe) {
      await mkdirRecursive(parent).catch((err: unknown) => {
        throw fromFsError(err, 'create directory', parent);
      });
      return;
    }
    const rel = relative(this.dest, parent);
    if (rel.startsWith('..') || isAbsolute(rel)) throw unsafe(this.#archive, entry, 'it resolves outside the destination');
    let cur = this.dest;
    let missing = false;
    for (const part of rel === '' ? [] : rel.split(sep)) {
      cur = join(cur, part);
      if (this.#safeDirs.has(cur)) continue;
      if (!missing) {
        const st = await this.at(cur);
        if (st === undefined) {
          missing = true;
        } else if (st.type === 'symlink') {
          throw unsafe(this.#archive, entry, `it would be written through the symlink ${cur}`, { symlink: cur });
        } else if (st.type !== 'directory') {
          throw new StowageError('EEXIST', `Cannot extract "${entry}" from ${this.#archive}: ${cur} exists and is not a directory.`, { details: { path: this.#archive, entry, blocker: cur } });
        }
      }
      if (missing) {
        try {
          await mkdir(cur);
          this.created.push(cur);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromFsError(err, 'create directory', cur);
          // Created by someone else meanwhile: it must still be a real directory.
          const st = await lstat(cur);
          if (!st.isDirectory()) throw unsafe(this.#archive, entry, `${cur} appeared as a non-directory while extracting`);
        }
      }
      this.#safeDirs.add(cur);
    }
  }

  /**
   * Checks a symlink entry: its target, resolved from the link's own
   * directory, must stay inside the destination.
   *
   * @param entry - the symlink entry
   */
  checkSymlink(entry: ArchiveEntry): void {
    const link = entry.linkname ?? '';
    if (this.#allowUnsafe) return;
    if (link === '') throw unsafe(this.#archive, entry.name, 'symlink with an empty target');
    if (posix.isAbsolute(link)) throw unsafe(this.#archive, entry.name, `symlink to the absolute path ${link}`, { linkname: link });
    const resolved = posix.normalize(posix.join(posix.dirname(entry.name), link));
    if (resolved === '..' || resolved.startsWith('../')) throw unsafe(this.#archive, entry.name, `symlink to ${link} points outside the destination`, { linkname: link });
  }

  /**
   * Checks a hard-link entry and returns the absolute path of its source:
   * inside the destination, reached without symlinks, and a regular file.
   *
   * @param entry - the hard-link entry
   */
  async hardlinkSource(entry: ArchiveEntry): Promise<string> {
    const link = entry.linkname ?? '';
    let name = link;
    while (name.startsWith('./')) name = name.slice(2);
    if (this.#allowUnsafe) return resolve(this.dest, name);
    if (link === '' || posix.isAbsolute(link) || escapes(posix.normalize(name))) {
      throw unsafe(this.#archive, entry.name, `hard link to ${link || '(nothing)'} points outside the destination`, { linkname: link });
    }
    const src = join(this.dest, ...posix.normalize(name).split('/'));
    await this.assertNoSymlinkIn(src, entry.name);
    const st = await this.at(src);
    if (st === undefined) throw new StowageError('ENOT_FOUND', `Cannot link to ${src}: it does not exist.`, { details: { path: src, action: 'link to', entry: entry.name } });
    if (st.type !== 'file') throw unsafe(this.#archive, entry.name, `hard link to ${link}, which is not a regular file`, { linkname: link });
    return src;
  }

  /**
   * Where a symlink at `name` (relative to the destination) pointing to
   * `link` leads once the links already on disk are followed: the
   * destination-relative components of that place, or undefined when it is
   * outside (or a chain of links is too long to be honest). A component
   * that does not exist (yet) is taken as a plain directory.
   *
   * The lexical check of {@link ExtractGuard.checkSymlink} alone misses
   * `a/b/s -> ../..` followed by `t -> a/b/s/..`: each stays inside on
   * paper, and `t` leads to the destination's parent.
   */
  async #resolveOnDisk(name: string, link: string): Promise<string[] | undefined> {
    // Empty and `.` components are no level (names come normalised; this holds for any caller).
    const stack = posix
      .dirname(name)
      .split('/')
      .filter((c) => c !== '' && c !== '.');
    const pending = link.split('/');
    for (let hops = 0; pending.length > 0; ) {
      const c = pending.shift()!;
      if (c === '' || c === '.') continue;
      if (c === '..') {
        if (stack.length === 0) return undefined;
        stack.pop();
        continue;
      }
      stack.push(c);
      const abs = join(this.dest, ...stack);
      const next = await this.#linkAt(abs).catch(() => undefined);
      if (next !== undefined) {
        if (++hops > 40) return undefined;
        if (posix.isAbsolute(next)) return undefined;
        stack.pop();
        pending.unshift(...next.split('/'));
      }
    }
    return stack;
  }

  /**
   * Checks, once every entry has been read and before any is put in place,
   * that each symlink leads inside the destination when the links around it
   * (pending or on disk) are followed (see
   * {@link ExtractGuard.checkSymlinkOnDisk}); if one does not, the
   * extraction fails with EUNSAFE_PATH naming them.
   *
   * @param links - the symlink entries: destination-relative name and absolute path
   */
  async checkLinksAfter(links: readonly { name: string; target: string }[]): Promise<void> {
    if (this.#allowUnsafe) return;
    const bad: { name: string; linkname: string }[] = [];
    const seen = new Set<string>();
    for (const l of links) {
      if (seen.has(l.target)) continue;
      seen.add(l.target);
      // What will be there: a later entry of the same name may have replaced the link.
      const now = await this.#linkAt(l.target).catch(() => undefined);
      if (now === undefined || (await this.#resolveOnDisk(l.name, now)) !== undefined) continue;
      bad.push({ name: l.name, linkname: now });
    }
    if (bad.length > 0) {
      throw new StowageError(
        'EUNSAFE_PATH',
        `Refusing the symlink(s) ${bad.map((b) => `"${b.name}" -> ${b.linkname}`).join(', ')} from ${this.#archive}: through other symlinks of the archive they lead outside the destination. Nothing was extracted.`,
        { details: { path: this.#archive, entry: bad[0]!.name, links: bad, reason: 'symlink leads outside the destination through other symlinks' } },
      );
    }
  }

  /**
   * Checks a symlink entry against the links already extracted: following
   * them, its target must stay inside the destination.
   *
   * @param entry - the symlink entry (already through {@link ExtractGuard.checkSymlink})
   */
  async checkSymlinkOnDisk(entry: ArchiveEntry): Promise<void> {
    if (this.#allowUnsafe) return;
    const link = entry.linkname ?? '';
    if ((await this.#resolveOnDisk(entry.name, link)) === undefined) {
      throw unsafe(this.#archive, entry.name, `symlink to ${link} leads outside the destination through symlinks extracted before it`, { linkname: link });
    }
  }

  /** Throws EUNSAFE_PATH if a directory between dest and `path` is a symlink. */
  async assertNoSymlinkIn(path: string, entry: string): Promise<void> {
    const rel = relative(this.dest, dirname(path));
    if (rel.startsWith('..') || isAbsolute(rel)) throw unsafe(this.#archive, entry, 'it resolves outside the destination');
    let cur = this.dest;
    for (const part of rel === '' ? [] : rel.split(sep)) {
      cur = join(cur, part);
      if (this.#safeDirs.has(cur)) continue;
      const st = await this.at(cur).catch(() => undefined);
      if (st?.type === 'symlink') throw unsafe(this.#archive, entry, `it goes through the symlink ${cur}`, { symlink: cur });
    }
  }

  /** Forgets which directories were checked (after a symlink is created, any of them may have been replaced). */
  forgetDirs(): void {
    this.#safeDirs.clear();
    this.#safeDirs.add(this.dest);
  }
}
