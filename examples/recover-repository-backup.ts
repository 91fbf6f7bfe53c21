/**
 * Recover the repository and the wiki on the other node, from the newest
 * backup set written by `nightly-repository-backup.ts`.
 *
 *  1. Find the newest complete set in the backup tree (any transport: the
 *     paired node's own disk, or over SSH): not under a live LOCKED (a
 *     stale one, left by a transfer that died, is ignored), both tarballs
 *     there with their sidecars, no `.part` file left by a transfer that
 *     died. Newer sets that fail this are passed over and reported. A
 *     tarball that then fails its DNA stops the recovery: a mutant is for
 *     an operator to look at, not to skip silently. Fetch its tarballs, each
 *     checked against its DNA sidecar while it arrives; the unpacking below
 *     checks gzip CRCs and tar checksums in a staging folder.
 *  2. Unpack the Subversion repository beside its target and run
 *     `svnadmin verify` on it; unpack the wiki and check its database
 *     (`db/trac.db`, or `wikiDb`) with `PRAGMA integrity_check`. Nothing
 *     installed is touched until both trees passed.
 *  3. Configuration that differs from what is installed now (the
 *     repository's `conf/` and `hooks/`, the wiki's `conf/trac.ini`) is
 *     shown as a unified diff and replaced only when the `confirm` callback
 *     says yes; a declined file stays exactly as it is. Files the backup
 *     does not have (a hook added since) are kept.
 *  4. The restored trees replace the targets by renames, one after the
 *     other; the old ones are kept beside them as
 *     `NAME.before-restore-<time>`: nothing is deleted.
 *
 *   npx tsx examples/recover-repository-backup.ts BACKUP_TREE SVN_TARGET WIKI_TARGET
 *   (asks on the terminal before replacing each changed config file;
 *   exit status 0 recovered, 2 failed or stopped by Ctrl-C/SIGTERM, 3 usage)
 */
import { spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { createInterface } from 'node:readline/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Archiver, LocalTransport, LockDir, StowageError, listBackupSets, parseSidecar, posixDirname, posixJoin, throwIfAborted, transportLockFs, type Transport } from 'stowage';

/** A configuration file the recovery would replace. */
export interface ConfigChange {
  /** Which tree: the repository or the wiki. */
  readonly tree: 'svn' | 'wiki';
  /** Its path relative to the tree (`conf/svnserve.conf`). */
  readonly path: string;
  /** The installed file it would replace. */
  readonly file: string;
  /** Unified diff from the installed file to the backup's. */
  readonly diff: string;
}

/** Options of {@link recoverRepositoryBackup}. */
export interface RecoverOptions {
  /** The backup tree: where and which folder. */
  source: { transport: Transport; dir: string };
  /** Where the repository goes (replaced if it exists). */
  svnRepo: string;
  /** Where the wiki goes (replaced if it exists). */
  wikiDir: string;
  /** The wiki's SQLite database, relative to the wiki's folder (default `db/trac.db`, as the nightly recipe's `wikiDb`). */
  wikiDb?: string;
  /** Asked once per changed configuration file; true replaces it, false keeps the installed one. */
  confirm: (change: ConfigChange) => boolean | Promise<boolean>;
  /** A set id to restore instead of the newest (`2026/11/22/031500`). */
  set?: string;
  /** Time zone of the set names (default UTC). */
  timeZone?: string;
  /** Where the tarballs are fetched to (default a temp folder beside the repository). */
  workDir?: string;
  /** The `svnadmin` program (default from PATH). */
  svnadmin?: string;
  /**
   * A `LOCKED` over the tree whose heartbeat is older than this is left by
   * a transfer or backup that died, and is ignored (default 10 min, the
   * nightly recipe's `staleMs`). A live lock makes the sets it covers
   * unavailable.
   */
  lockStaleMs?: number;
  /** Cancels the recovery (nothing is swapped in after an abort: both trees are checked before either is). */
  signal?: AbortSignal;
  /** Progress lines for a log. */
  log?: (line: string) => void;
}

/** What happened to one tree. */
export interface RecoveredTree {
  /** Where it is now. */
  readonly path: string;
  /** The previous tree, kept, if there was one. */
  readonly previous: string | undefined;
  /** Configuration files replaced by the backup's (confirmed). */
  readonly replaced: readonly string[];
  /** Configuration files kept as installed (declined). */
  readonly kept: readonly string[];
  /** Installed files the backup does not have, carried over. */
  readonly carried: readonly string[];
}

/** What {@link recoverRepositoryBackup} did. */
export interface RecoverResult {
  /** The set restored. */
  readonly set: string;
  /** The repository, its youngest revision after `svnadmin verify`. */
  readonly svn: RecoveredTree & { readonly youngest: number };
  /** The wiki, with its database's integrity check. */
  readonly wiki: RecoveredTree & { readonly integrity: string };
  /** Every configuration change shown, in order. */
  readonly changes: readonly ConfigChange[];
  /** Newer sets passed over, newest first, and why (`svn-daq.tar.gz.part still being written`). */
  readonly skipped: readonly { readonly set: string; readonly reason: string }[];
}

// ---------------------------------------------------------------------------
// A small unified diff (longest common subsequence over lines), enough for
// configuration files; no dependency.

interface Line {
  readonly text: string;
  /** The file's last line, without a final newline. */
  readonly noEol: boolean;
}

function splitLines(s: string): Line[] {
  if (s === '') return [];
  const parts = s.split('\n');
  const endsWithNl = parts[parts.length - 1] === '';
  if (endsWithNl) parts.pop();
  return parts.map((text, i) => ({ text, noEol: !endsWithNl && i === parts.length - 1 }));
}

const same = (a: Line, b: Line): boolean => a.text === b.text && a.noEol === b.noEol;

/**
 * A unified diff (`diff -u` format, 3 lines of context) from `before` to
 * `after`; empty when they are equal.
 *
 * @param before - the old text
 * @param after - the new text
 * @param fromLabel - the `---` label
 * @param toLabel - the `+++` label
 */
export function unifiedDiff(before: string, after: string, fromLabel: string, toLabel: string, context = 3): string {
  if (before === after) return '';
  const a = splitLines(before);
  const b = splitLines(after);
  const n = a.length;
  const m = b.length;
  // lcs[i][j]: LCS length of a[i..] and b[j..]
  const lcs = new Uint32Array((n + 1) * (m + 1));
  const at = (i: number, j: number): number => lcs[i * (m + 1) + j]!;
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * (m + 1) + j] = same(a[i]!, b[j]!) ? at(i + 1, j + 1) + 1 : Math.max(at(i + 1, j), at(i, j + 1));
    }
  }
  const ops: { op: ' ' | '-' | '+'; line: Line; ai: number; bi: number }[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && same(a[i]!, b[j]!)) ops.push({ op: ' ', line: a[i]!, ai: i++, bi: j++ });
    else if (i < n && (j === m || at(i + 1, j) >= at(i, j + 1))) ops.push({ op: '-', line: a[i]!, ai: i++, bi: j });
    else ops.push({ op: '+', line: b[j]!, ai: i, bi: j++ });
  }
  const out = [`--- ${fromLabel}`, `+++ ${toLabel}`];
  let k = 0;
  while (k < ops.length) {
    while (k < ops.length && ops[k]!.op === ' ') k++;
    if (k === ops.length) break;
    const start = Math.max(0, k - context);
    let end = k;
    // Extend while the next change is within 2 * context lines.
    for (;;) {
      while (end < ops.length && ops[end]!.op !== ' ') end++;
      let next = end;
      while (next < ops.length && ops[next]!.op === ' ') next++;
      if (next < ops.length && next - end <= 2 * context) end = next;
      else {
        end = Math.min(ops.length, end + context);
        break;
      }
    }
    const hunk = ops.slice(start, end);
    const aLen = hunk.filter((h) => h.op !== '+').length;
    const bLen = hunk.filter((h) => h.op !== '-').length;
    const aStart = aLen === 0 ? hunk[0]!.ai : hunk[0]!.ai + 1;
    const bStart = bLen === 0 ? hunk[0]!.bi : hunk[0]!.bi + 1;
    out.push(`@@ -${aStart}${aLen === 1 ? '' : `,${aLen}`} +${bStart}${bLen === 1 ? '' : `,${bLen}`} @@`);
    for (const h of hunk) {
      out.push(`${h.op}${h.line.text}`);
      if (h.line.noEol) out.push('\\ No newline at end of file');
    }
    k = end;
  }
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------

async function run(program: string, args: readonly string[], signal?: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], ...(signal ? { signal } : {}) });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    child.on('error', (e) => reject(signal?.aborted ? signal.reason : new StowageError('EIO', `${program}: ${e.message}`, { cause: e })));
    child.on('close', (code) => {
      if (signal?.aborted) reject(signal.reason);
      else if (code === 0) resolve(out);
      else reject(new StowageError('EIO', `${program} ${args.join(' ')} exited with status ${code}: ${err.trim()}`, { details: { program, code } }));
    });
  });
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

async function* files(dir: string, prefix = ''): AsyncGenerator<string> {
  let entries;
  try {
    entries = await readdir(join(dir, prefix), { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory()) yield* files(dir, rel);
    else if (e.isFile()) yield rel;
  }
}

/** Fetches the named tarballs of a far set, each checked against its sidecar in transit (one read). */
async function fetchSet(t: Transport, setDir: string, names: readonly string[], into: string, signal?: AbortSignal): Promise<string[]> {
  const op = signal ? { signal } : {};
  const got: string[] = [];
  for (const name of names) {
    const remote = posixJoin(setDir, name);
    const chunks: Buffer[] = [];
    for await (const c of t.createReadStream(`${remote}.dna`, op) as AsyncIterable<Buffer>) chunks.push(c);
    const dna = parseSidecar(Buffer.concat(chunks).toString('utf8'), `${t.name}:${remote}.dna`);
    const local = join(into, name);
    // Checked against its DNA as it arrives; its gzip and tar structure is
    // checked by the extraction into a staging folder, before anything is
    // swapped in, so no second read is needed here.
    await t.get(remote, local, { expectedDna: dna, ...op });
    got.push(local);
  }
  return got;
}

/**
 * Brings the installed configuration into a freshly unpacked tree, before
 * anything is swapped in: configuration files that differ are shown and
 * confirmed one by one (declined ones keep the installed bytes), and
 * installed files the backup lacks are carried over.
 */
async function reconcileConfig(
  tree: 'svn' | 'wiki',
  restored: string,
  target: string,
  isConfig: (rel: string) => boolean,
  confirm: RecoverOptions['confirm'],
  changes: ConfigChange[],
): Promise<Pick<RecoveredTree, 'replaced' | 'kept' | 'carried'>> {
  const replaced: string[] = [];
  const kept: string[] = [];
  const carried: string[] = [];
  if (!(await exists(target))) return { replaced, kept, carried };
  for await (const rel of files(target)) {
    if (!isConfig(rel)) continue;
    const current = join(target, rel);
    const incoming = join(restored, rel);
    if (!(await exists(incoming))) {
      await mkdir(dirname(incoming), { recursive: true });
      await copyFile(current, incoming);
      carried.push(rel);
      continue;
    }
    const [now, then] = await Promise.all([readFile(current), readFile(incoming)]);
    if (now.equals(then)) continue;
    const binary = now.includes(0) || then.includes(0);
    const diff = binary ? `Binary files ${rel} differ\n` : unifiedDiff(now.toString('utf8'), then.toString('utf8'), `installed/${rel}`, `backup/${rel}`);
    const change: ConfigChange = { tree, path: rel, file: current, diff };
    changes.push(change);
    if (await confirm(change)) replaced.push(rel);
    else {
      await copyFile(current, incoming); // declined: the installed file stays as it is
      kept.push(rel);
    }
  }
  return { replaced, kept, carried };
}

/** Renames `target` aside (if it exists) and the restored tree in; returns where the old one went. */
async function swapIn(restored: string, target: string, stamp: string): Promise<string | undefined> {
  const previous = (await exists(target)) ? `${target}.before-restore-${stamp}` : undefined;
  if (previous !== undefined) await rename(target, previous);
  try {
    await mkdir(dirname(target), { recursive: true });
    await rename(restored, target);
  } catch (err) {
    // The old tree goes back where it was: this swap changed nothing.
    if (previous !== undefined) await rename(previous, target);
    throw err;
  }
  return previous;
}

/** Undoes a {@link swapIn}: the tree swapped in is renamed away and removed, the previous one renamed back to `target`. */
async function undoSwap(target: string, previous: string | undefined, stamp: string): Promise<void> {
  const away = `${target}.stowage-undone-${stamp}`;
  await rename(target, away);
  if (previous !== undefined) await rename(previous, target);
  await rm(away, { recursive: true, force: true });
}

/**
 * `PRAGMA integrity_check` of the restored wiki database. A file that is
 * missing, is not an SQLite database or is not intact fails with
 * ECORRUPT_ARCHIVE naming it and its archive.
 */
async function checkWikiDb(wikiDir: string, dbRel: string, archive: string): Promise<string> {
  const file = join(wikiDir, ...dbRel.split('/'));
  if (!(await exists(file))) {
    throw new StowageError('ECORRUPT_ARCHIVE', `${archive} holds no wiki database ${dbRel}.`, { details: { path: dbRel, archive } });
  }
  let integrity: string;
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      integrity = String(db.pragma('integrity_check', { simple: true }));
    } finally {
      db.close();
    }
  } catch (err) {
    throw new StowageError('ECORRUPT_ARCHIVE', `${dbRel} in ${archive} cannot be read as an SQLite database: ${(err as Error).message}`, { details: { path: dbRel, archive }, cause: err });
  }
  if (integrity !== 'ok') throw new StowageError('ECORRUPT_ARCHIVE', `${dbRel} in ${archive} fails its integrity check: ${integrity}`, { details: { path: dbRel, archive } });
  return integrity;
}

/**
 * The two tarballs of a set (names in its folder), or why it cannot be
 * restored from: both `svn-*.tar.gz` and `wiki-*.tar.gz` must be there,
 * one of each, each with its DNA sidecar, and no file may still be in
 * transit (a `.part` left by a sync or a backup that died). A set is a
 * flat folder, as the nightly recipe writes it; anything else in it is
 * ignored.
 */
async function setArchives(t: Transport, setPath: string, signal?: AbortSignal): Promise<{ svn: string; wiki: string } | { reason: string }> {
  let entries;
  try {
    entries = await t.list(setPath, signal ? { signal } : {});
  } catch (err) {
    // Purged (by retention on that node) since the tree was listed.
    if (err instanceof StowageError && err.code === 'ENOT_FOUND') return { reason: 'gone since the tree was listed' };
    throw err;
  }
  const names = new Set(entries.filter((e) => e.type === 'file').map((e) => e.name));
  const parts = [...names].filter((n) => n.endsWith('.part')).sort();
  if (parts.length > 0) return { reason: `${parts.join(', ')} still being written` };
  const found: Record<'svn' | 'wiki', string> = { svn: '', wiki: '' };
  for (const kind of ['svn', 'wiki'] as const) {
    const archives = [...names].filter((n) => n.startsWith(`${kind}-`) && n.endsWith('.tar.gz')).sort();
    if (archives.length === 0) return { reason: `no ${kind}-*.tar.gz archive` };
    if (archives.length > 1) return { reason: `more than one ${kind}-*.tar.gz archive (${archives.join(', ')})` };
    if (!names.has(`${archives[0]}.dna`)) return { reason: `${archives[0]} has no DNA sidecar` };
    found[kind] = archives[0]!;
  }
  return found;
}

/**
 * Whether a lock over the tree is live. A sync or a backup that died
 * leaves its `LOCKED` behind: once its heartbeat is older than `staleMs`
 * it no longer holds anything up, and sets it covers are judged by what
 * they hold (a set it was writing has `.part` files or misses a tarball).
 */
async function lockIsLive(t: Transport, lockPath: string, staleMs: number): Promise<{ live: boolean; note: string }> {
  const info = await LockDir.inspect(posixDirname(lockPath), { fs: transportLockFs(t), staleMs, name: basename(lockPath) });
  if (!info.locked) return { live: false, note: `${lockPath} is gone` };
  const who = info.owner ? ` (${info.owner.purpose}, pid ${info.owner.pid} on ${info.owner.host})` : '';
  return info.stale ? { live: false, note: `ignoring the stale lock ${lockPath}${who}: ${info.reason ?? 'stale'}` } : { live: true, note: `${lockPath}${who}` };
}

/** The one top-level folder a tarball unpacked into. */
async function soleFolder(dir: string): Promise<string> {
  const entries = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory());
  if (entries.length !== 1) throw new StowageError('ECORRUPT_ARCHIVE', `expected one top-level folder in the archive, found ${entries.length}`, { details: { dir } });
  return join(dir, entries[0]!.name);
}

/**
 * Recovers the repository and the wiki from the newest (or the given) set;
 * see the module notes.
 *
 * @param o - see {@link RecoverOptions}
 */
export async function recoverRepositoryBackup(o: RecoverOptions): Promise<RecoverResult> {
  // Whole paths without trailing slashes (`daqwiki/` cannot be renamed
  // onto), and two targets that are neither one nor inside each other.
  o = { ...o, svnRepo: resolve(o.svnRepo), wikiDir: resolve(o.wikiDir) };
  if (o.svnRepo === o.wikiDir || o.svnRepo.startsWith(o.wikiDir + sep) || o.wikiDir.startsWith(o.svnRepo + sep)) {
    throw new StowageError('EBAD_CONFIG', `The repository target ${o.svnRepo} and the wiki target ${o.wikiDir} must be two separate folders, neither inside the other. Nothing was changed.`, {
      details: { svnRepo: o.svnRepo, wikiDir: o.wikiDir },
    });
  }
  const log = o.log ?? (() => {});
  const signal = o.signal;
  const { transport: t, dir } = o.source;
  const sets = await listBackupSets(t, dir, { timeZone: o.timeZone ?? 'UTC', ...(signal ? { signal } : {}) });
  const staleMs = o.lockStaleMs ?? 10 * 60_000;
  const skipped: { set: string; reason: string }[] = [];
  const locks = new Map<string, { live: boolean; note: string }>();
  let set: (typeof sets)[number] | undefined;
  let archives: { svn: string; wiki: string } | undefined;
  for (const candidate of [...sets].reverse()) {
    if (o.set !== undefined && candidate.id !== o.set) continue;
    let reason: string | undefined;
    if (candidate.lockedBy !== undefined) {
      // One lock (the tree's root) often covers every set: judge it once.
      let lock = locks.get(candidate.lockedBy);
      if (lock === undefined) {
        throwIfAborted(signal);
        lock = await lockIsLive(t, candidate.lockedBy, staleMs);
        locks.set(candidate.lockedBy, lock);
        if (!lock.live) log(lock.note);
      }
      if (lock.live) {
        if (o.set !== undefined) {
          throw new StowageError('ELOCKED', `Set ${o.set} in ${t.name}:${dir} is locked by ${lock.note}: a transfer or backup is writing it. Retry when it is released.`, { details: { dir, set: o.set, lock: candidate.lockedBy }, retryable: true });
        }
        reason = `locked by ${lock.note}`;
      }
    }
    if (reason === undefined) {
      const found = await setArchives(t, candidate.path, signal);
      if ('svn' in found) {
        set = candidate;
        archives = found;
        break;
      }
      reason = found.reason;
    }
    if (o.set !== undefined) {
      throw new StowageError('ENOT_FOUND', `Set ${o.set} in ${t.name}:${dir} cannot be restored: ${reason}. Pick another set, or leave \`set\` out for the newest complete one.`, { details: { dir, set: o.set, reason } });
    }
    skipped.push({ set: candidate.id, reason });
    log(`passing over set ${candidate.id}: ${reason}`);
  }
  if (set === undefined || archives === undefined) {
    const why = o.set !== undefined ? `no set ${o.set}` : `no complete backup set${skipped.length > 0 ? ` (passed over: ${skipped.map((x) => `${x.set}: ${x.reason}`).join('; ')})` : ''}`;
    throw new StowageError('ENOT_FOUND', `Nothing to restore in ${t.name}:${dir}: ${why}.`, { details: { dir, set: o.set, skipped } });
  }
  log(`restoring set ${set.id} from ${t.name}:${dir}`);

  // Unpack beside the targets, so that the final step is a rename.
  for (const target of [o.svnRepo, o.wikiDir]) {
    await mkdir(dirname(target), { recursive: true }).catch((err: unknown) => {
      throw new StowageError('EBAD_CONFIG', `Cannot make the folder of the target ${target}: ${(err as Error).message} (a file stands where a folder of the path should be?). Nothing was changed.`, { details: { path: target }, cause: err });
    });
  }
  const work = await mkdtemp(o.workDir ? join(o.workDir, 'stowage-recover-') : `${o.svnRepo}.stowage-recover-`);
  const stages: string[] = [];
  const stage = async (target: string): Promise<string> => {
    const d = await mkdtemp(`${target}.stowage-restore-`);
    stages.push(d);
    return d;
  };
  // To the millisecond, and free for both trees before either is swapped:
  // two recoveries in one minute once took the same name (ENOTEMPTY, with
  // the repository already swapped in and the wiki not).
  let stamp = new Date().toISOString().replace(/[-:.]/g, '').slice(0, 18);
  for (let n = 2; (await exists(`${o.svnRepo}.before-restore-${stamp}`)) || (await exists(`${o.wikiDir}.before-restore-${stamp}`)); n++) stamp = `${stamp.split('-')[0]}-${n}`;
  const changes: ConfigChange[] = [];
  try {
    const fetchDir = join(work, 'fetched');
    await mkdir(fetchDir);
    const [svnArchive, wikiArchive] = (await fetchSet(t, set.path, [archives.svn, archives.wiki], fetchDir, signal)) as [string, string];

    // 2. Unpack both trees beside their targets and check them; nothing
    //    installed is touched until both passed.
    const svnStage = await stage(o.svnRepo);
    await Archiver.extract(svnArchive, svnStage, signal ? { signal } : {});
    const svnRestored = await soleFolder(svnStage);
    await run(o.svnadmin ?? 'svnadmin', ['verify', '--quiet', svnRestored], signal);
    const youngest = Number((await run('svnlook', ['youngest', svnRestored], signal)).trim());
    log(`svnadmin verify of the restored repository: ok`);

    const wikiStage = await stage(o.wikiDir);
    await Archiver.extract(wikiArchive, wikiStage, signal ? { signal } : {});
    const wikiRestored = await soleFolder(wikiStage);
    const dbRel = o.wikiDb ?? 'db/trac.db';
    const integrity = await checkWikiDb(wikiRestored, dbRel, basename(wikiArchive));
    log(`${dbRel} of the restored wiki: integrity ${integrity}`);

    // 3. Configuration of both trees, shown and confirmed.
    const isSvnConfig = (rel: string): boolean => rel.startsWith('conf/') || rel.startsWith('hooks/');
    const svnConfig = await reconcileConfig('svn', svnRestored, o.svnRepo, isSvnConfig, o.confirm, changes);
    const wikiConfig = await reconcileConfig('wiki', wikiRestored, o.wikiDir, (rel) => rel.startsWith('conf/'), o.confirm, changes);

    // 4. Swap both in (renames, the old trees kept beside them).
    throwIfAborted(signal);
    const svn: RecoveredTree = { path: o.svnRepo, previous: await swapIn(svnRestored, o.svnRepo, stamp), ...svnConfig };
    let wiki: RecoveredTree;
    try {
      wiki = { path: o.wikiDir, previous: await swapIn(wikiRestored, o.wikiDir, stamp), ...wikiConfig };
    } catch (err) {
      // Both or neither: the repository goes back as it was, so the node is
      // not left with a recovered repository beside the old wiki.
      const undone = await undoSwap(o.svnRepo, svn.previous, stamp).then(
        () => true,
        () => false,
      );
      throw new StowageError(
        'EIO',
        `Cannot put the recovered wiki in place at ${o.wikiDir}: ${(err as Error).message}. ${undone ? `The repository at ${o.svnRepo} was put back as it was; nothing was changed.` : `The recovered repository is at ${o.svnRepo}${svn.previous === undefined ? '' : ` and the old one at ${svn.previous}`}: put the old one back by hand.`}`,
        { details: { path: o.wikiDir, undone }, cause: err },
      );
    }
    log(`restored ${o.svnRepo} (r${youngest}) and ${o.wikiDir}; ${changes.length} config change(s) shown`);
    return { set: set.id, svn: { ...svn, youngest }, wiki: { ...wiki, integrity }, changes, skipped };
  } finally {
    // Only scratch folders: after a successful install the restored trees were renamed away.
    for (const d of [work, ...stages]) await rm(d, { recursive: true, force: true });
  }
}

// Run as a script (also through a symlink, or from a path with a space in it,
// where import.meta.url is percent-encoded): compare real file paths.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  const [tree, svnRepo, wikiDir] = process.argv.slice(2);
  if (tree === undefined || svnRepo === undefined || wikiDir === undefined) {
    console.error('usage: recover-repository-backup.ts BACKUP_TREE SVN_TARGET WIKI_TARGET');
    process.exit(3);
  }
  // Ctrl-C (also at a prompt) or a SIGTERM stops the recovery before anything
  // is swapped in; the scratch folders are removed. A second signal kills at once.
  const stop = new AbortController();
  const halt = (sig: string) => () => stop.abort(new StowageError('EABORTED', `stopped by ${sig}`));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, halt(sig));
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  rl.once('SIGINT', halt('SIGINT'));
  try {
    const r = await recoverRepositoryBackup({
      source: { transport: new LocalTransport(), dir: tree },
      svnRepo,
      wikiDir,
      confirm: async (c) => {
        process.stdout.write(c.diff);
        // Ctrl-C at the prompt ends the question with a bare AbortError: the signal's reason says why.
        const answer = await rl.question(`Replace ${c.file} with the backup's? [y/N] `, { signal: stop.signal }).catch((err: unknown) => {
          if (stop.signal.aborted) throw stop.signal.reason;
          // Its input ended (</dev/null, a pipe with too few answers): nothing to decide with.
          if ((err as NodeJS.ErrnoException).code === 'ERR_USE_AFTER_CLOSE') {
            throw new StowageError('EBAD_CONFIG', `a configuration file differs (${c.file}) and needs a y/N answer, but the input ended: run it from a terminal, or give one answer per changed file on stdin. Nothing was swapped in.`, { details: { file: c.file } });
          }
          throw err;
        });
        return /^y(es)?$/i.test(answer.trim());
      },
      signal: stop.signal,
      log: (l) => console.log(l),
    });
    console.log(`set ${r.set}: ${r.svn.path} at r${r.svn.youngest}, wiki database ${r.wiki.integrity}`);
    for (const p of [r.svn.previous, r.wiki.previous]) if (p) console.log(`previous copy kept at ${p}`);
  } catch (err) {
    console.error(err instanceof StowageError ? `recovery failed: ${err.code}: ${err.message}` : err);
    process.exitCode = 2;
  } finally {
    rl.close();
  }
}
