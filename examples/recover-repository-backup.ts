/**
 * Recover the repository and the wiki on the other node, from the newest
 * backup set written by `nightly-repository-backup.ts`.
 *
 *  1. Find the newest complete set in the backup tree (any transport: the
 *     paired node's own disk, or over SSH): not locked, both tarballs there
 *     with their sidecars, no `.part` file left by a transfer that died.
 *     Newer sets that fail this are passed over and reported. Fetch its tarballs, each
 *     checked against its DNA sidecar while it arrives and verified whole
 *     (gzip CRCs, tar checksums) once here.
 *  2. Unpack the Subversion repository beside its target and run
 *     `svnadmin verify` on it; unpack the wiki and check its database with
 *     `PRAGMA integrity_check`.
 *  3. Configuration that differs from what is installed now (the
 *     repository's `conf/` and `hooks/`, the wiki's `conf/trac.ini`) is
 *     shown as a unified diff and replaced only when the `confirm` callback
 *     says yes; a declined file stays exactly as it is. Files the backup
 *     does not have (a hook added since) are kept.
 *  4. The restored tree replaces the target by renames; the old one is kept
 *     beside it as `NAME.before-restore-<time>`: nothing is deleted.
 *
 *   npx tsx examples/recover-repository-backup.ts BACKUP_TREE SVN_TARGET WIKI_TARGET
 *   (asks on the terminal before replacing each changed config file)
 */
import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { createInterface } from 'node:readline/promises';
import { basename, dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { Archiver, DnaDigest, LocalTransport, StowageError, listBackupSets, parseSidecar, posixJoin, type Transport } from 'stowage';

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
  /** Cancels the recovery (nothing is swapped in after an abort). */
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

/** Fetches every tarball of a far set, each checked against its sidecar in transit and verified whole here. */
async function fetchSet(t: Transport, setDir: string, into: string, signal?: AbortSignal): Promise<string[]> {
  const op = signal ? { signal } : {};
  const got: string[] = [];
  for (const e of await t.list(setDir, op)) {
    if (e.type !== 'file' || e.name.endsWith('.dna')) continue;
    const chunks: Buffer[] = [];
    for await (const c of t.createReadStream(`${e.path}.dna`, op) as AsyncIterable<Buffer>) chunks.push(c);
    const dna = parseSidecar(Buffer.concat(chunks).toString('utf8'), `${t.name}:${e.path}.dna`);
    const local = join(into, e.name);
    await t.get(e.path, local, { expectedDna: dna, ...op });
    await DnaDigest.writeSidecar(local, dna);
    await Archiver.verify(local, { requireSidecar: true, ...op });
    got.push(local);
  }
  return got;
}

/**
 * Puts a freshly unpacked tree in place of `target`: configuration files
 * that differ are shown and confirmed one by one (declined ones keep the
 * installed bytes), installed files the backup lacks are carried over,
 * then renames: target aside, restored tree in.
 */
async function install(
  tree: 'svn' | 'wiki',
  restored: string,
  target: string,
  isConfig: (rel: string) => boolean,
  confirm: RecoverOptions['confirm'],
  changes: ConfigChange[],
  stamp: string,
): Promise<RecoveredTree> {
  const replaced: string[] = [];
  const kept: string[] = [];
  const carried: string[] = [];
  const hadTarget = await exists(target);
  if (hadTarget) {
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
  }
  const previous = hadTarget ? `${target}.before-restore-${stamp}` : undefined;
  if (previous !== undefined) await rename(target, previous);
  await mkdir(dirname(target), { recursive: true });
  await rename(restored, target);
  return { path: target, previous, replaced, kept, carried };
}

/**
 * Why a set cannot be restored from, or undefined when it can: both
 * tarballs are there, each with its DNA sidecar, and no file is still being
 * written (a `.part` left by a sync or a backup that died).
 */
async function unusable(t: Transport, setPath: string, signal?: AbortSignal): Promise<string | undefined> {
  const names = new Set((await t.list(setPath, signal ? { signal } : {})).filter((e) => e.type === 'file').map((e) => e.name));
  const parts = [...names].filter((n) => n.endsWith('.part'));
  if (parts.length > 0) return `${parts.join(', ')} still being written`;
  for (const prefix of ['svn-', 'wiki-']) {
    const archive = [...names].find((n) => n.startsWith(prefix) && n.endsWith('.tar.gz'));
    if (archive === undefined) return `no ${prefix}*.tar.gz archive`;
    if (!names.has(`${archive}.dna`)) return `${archive} has no DNA sidecar`;
  }
  return undefined;
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
  const log = o.log ?? (() => {});
  const signal = o.signal;
  const { transport: t, dir } = o.source;
  const sets = await listBackupSets(t, dir, { timeZone: o.timeZone ?? 'UTC', ...(signal ? { signal } : {}) });
  const skipped: { set: string; reason: string }[] = [];
  let set: (typeof sets)[number] | undefined;
  for (const candidate of [...sets].reverse()) {
    if (o.set !== undefined && candidate.id !== o.set) continue;
    const reason = candidate.lockedBy !== undefined ? `locked by ${candidate.lockedBy}` : await unusable(t, candidate.path, signal);
    if (reason === undefined) {
      set = candidate;
      break;
    }
    if (o.set !== undefined) {
      throw new StowageError('ENOT_FOUND', `Set ${o.set} in ${t.name}:${dir} cannot be restored: ${reason}. Pick another set, or leave \`set\` out for the newest complete one.`, { details: { dir, set: o.set, reason } });
    }
    skipped.push({ set: candidate.id, reason });
    log(`passing over set ${candidate.id}: ${reason}`);
  }
  if (set === undefined) {
    const why = o.set !== undefined ? `no set ${o.set}` : `no complete backup set${skipped.length > 0 ? ` (passed over: ${skipped.map((x) => `${x.set}: ${x.reason}`).join('; ')})` : ''}`;
    throw new StowageError('ENOT_FOUND', `Nothing to restore in ${t.name}:${dir}: ${why}.`, { details: { dir, set: o.set, skipped } });
  }
  log(`restoring set ${set.id} from ${t.name}:${dir}`);

  // Unpack beside the targets, so that the final step is a rename.
  for (const target of [o.svnRepo, o.wikiDir]) await mkdir(dirname(target), { recursive: true });
  const work = await mkdtemp(o.workDir ? join(o.workDir, 'stowage-recover-') : `${o.svnRepo}.stowage-recover-`);
  const stages: string[] = [];
  const stage = async (target: string): Promise<string> => {
    const d = await mkdtemp(`${target}.stowage-restore-`);
    stages.push(d);
    return d;
  };
  const stamp = new Date().toISOString().replace(/[:.]/g, '').slice(0, 15);
  const changes: ConfigChange[] = [];
  try {
    const fetchDir = join(work, 'fetched');
    await mkdir(fetchDir);
    const fetched = await fetchSet(t, posixJoin(dir, set.id), fetchDir, signal);
    const svnArchive = fetched.find((f) => basename(f).startsWith('svn-'));
    const wikiArchive = fetched.find((f) => basename(f).startsWith('wiki-'));
    if (svnArchive === undefined || wikiArchive === undefined) {
      throw new StowageError('ENOT_FOUND', `Set ${set.id} lacks ${svnArchive === undefined ? 'the svn-*.tar.gz' : 'the wiki-*.tar.gz'} archive.`, { details: { set: set.id } });
    }

    // Repository: unpack beside the target, verify, then install.
    const svnStage = await stage(o.svnRepo);
    await Archiver.extract(svnArchive, svnStage, signal ? { signal } : {});
    const svnRestored = await soleFolder(svnStage);
    const svnadmin = o.svnadmin ?? 'svnadmin';
    await run(svnadmin, ['verify', '--quiet', svnRestored], signal);
    log(`svnadmin verify of the restored repository: ok`);
    const isSvnConfig = (rel: string): boolean => rel.startsWith('conf/') || rel.startsWith('hooks/');
    const svn = await install('svn', svnRestored, o.svnRepo, isSvnConfig, o.confirm, changes, stamp);
    await run(svnadmin, ['verify', '--quiet', o.svnRepo], signal);
    const youngest = Number((await run('svnlook', ['youngest', o.svnRepo], signal)).trim());

    // Wiki: unpack, check the database, install.
    const wikiStage = await stage(o.wikiDir);
    await Archiver.extract(wikiArchive, wikiStage, signal ? { signal } : {});
    const wikiRestored = await soleFolder(wikiStage);
    let integrity = 'no database';
    for await (const rel of files(wikiRestored)) {
      if (!rel.endsWith('.db')) continue;
      const db = new Database(join(wikiRestored, rel), { readonly: true, fileMustExist: true });
      try {
        integrity = String(db.pragma('integrity_check', { simple: true }));
      } finally {
        db.close();
      }
      if (integrity !== 'ok') throw new StowageError('ECORRUPT_ARCHIVE', `${rel} in ${basename(wikiArchive)} fails its integrity check: ${integrity}`, { details: { path: rel } });
    }
    const wiki = await install('wiki', wikiRestored, o.wikiDir, (rel) => rel.startsWith('conf/'), o.confirm, changes, stamp);
    log(`restored ${o.svnRepo} (r${youngest}) and ${o.wikiDir}; ${changes.length} config change(s) shown`);
    return { set: set.id, svn: { ...svn, youngest }, wiki: { ...wiki, integrity }, changes, skipped };
  } finally {
    // Only scratch folders: after a successful install the restored trees were renamed away.
    for (const d of [work, ...stages]) await rm(d, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [tree, svnRepo, wikiDir] = process.argv.slice(2);
  if (tree === undefined || svnRepo === undefined || wikiDir === undefined) {
    console.error('usage: recover-repository-backup.ts BACKUP_TREE SVN_TARGET WIKI_TARGET');
    process.exit(3);
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    const r = await recoverRepositoryBackup({
      source: { transport: new LocalTransport(), dir: tree },
      svnRepo,
      wikiDir,
      confirm: async (c) => {
        process.stdout.write(c.diff);
        return /^y(es)?$/i.test((await rl.question(`Replace ${c.file} with the backup's? [y/N] `)).trim());
      },
      log: (l) => console.log(l),
    });
    console.log(`set ${r.set}: ${r.svn.path} at r${r.svn.youngest}, wiki database ${r.wiki.integrity}`);
    for (const p of [r.svn.previous, r.wiki.previous]) if (p) console.log(`previous copy kept at ${p}`);
  } finally {
    rl.close();
  }
}
