/**
 * Off-box sync: send a folder of dated backup tarballs (YYYY/MM/DD/HHMMSS/
 * NAME.tar.gz + NAME.tar.gz.dna) to a paired node over SSH, the way the old
 * scm-backup-rsync did, but safely:
 *
 * - the host key is checked against known_hosts before anything is sent;
 * - a local tree still being written (it holds LOCKED) is not sent;
 * - LOCKED is planted on the remote folder for the duration, so readers
 *   there (a remote DnaDigest.scan, Archiver) skip the half-copied tree;
 * - sets pruned locally are deleted remotely only after every copy
 *   succeeded, and a run never deletes more than --max-delete remote
 *   entries (files and folders: a pruned set counts its tarball, its
 *   sidecar and each folder emptied), nor more than half of the remote
 *   tree;
 * - every tarball sent is digested on the remote host (md5sum there) and
 *   compared with its sidecar: mutants are reported, with the side that
 *   is damaged, and fail the run;
 * - Ctrl-C or a SIGTERM stops the transfer cleanly (the remote LOCKED is
 *   released, half-sent files are not left as finished ones).
 *
 *   npx tsx examples/offbox-sync.ts LOCAL_DIR USER@HOST[:PORT] REMOTE_DIR \
 *       [--key ~/.ssh/id_ed25519] [--known-hosts ~/.ssh/known_hosts] \
 *       [--max-delete 20] [--demo]
 *
 * `--demo` first writes three dated tarballs of generated data into
 * LOCAL_DIR. Exit status: 0 done, 1 mutants found, 2 refused, failed or
 * stopped.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, realpathSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Archiver, LocalTransport, SshTransport, StowageError, sync, type ProgressCallback, type SyncResult } from 'stowage';

/** Where and how to send. */
export interface OffboxSyncOptions {
  /** The local backup root holding YYYY/MM/DD/HHMMSS/ sets. */
  localDir: string;
  /** The paired node. */
  host: string;
  /** Its SSH port (default 22). */
  port?: number;
  /** Login on the paired node. */
  username: string;
  /** Private key file (default ~/.ssh/id_ed25519). */
  privateKeyPath?: string;
  /** known_hosts file (default ~/.ssh/known_hosts). */
  knownHosts?: string;
  /** The backup root on the paired node. */
  remoteDir: string;
  /** Most remote entries (files and folders, not sets) one run may delete (default 20). */
  maxDelete?: number;
  /** Called with one line per event (default: console.log). */
  log?: (line: string) => void;
  /** Progress of the transfer (phases `list`, `copy`, `verify`, `delete`). */
  onProgress?: ProgressCallback;
  /** Stops the transfer; the remote LOCKED is released before the promise rejects. */
  signal?: AbortSignal;
}

/** `YYYY/MM/DD/HHMMSS` of a date, in UTC. */
function datedPath(d: Date): string {
  const p = (n: number, w = 2): string => String(n).padStart(w, '0');
  return `${d.getUTCFullYear()}/${p(d.getUTCMonth() + 1)}/${p(d.getUTCDate())}/${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

/**
 * Writes `days` dated sets of a generated "repository" as tarballs with
 * sidecars (what a nightly `Archiver.create` cron leaves behind).
 *
 * @param backupRoot - where the dated sets go
 * @param days - how many nightly sets, ending today
 */
export async function makeDemoBackups(backupRoot: string, days = 3): Promise<string[]> {
  const made: string[] = [];
  const work = await mkdtemp(join(tmpdir(), 'stowage-offbox-demo-'));
  try {
    for (let d = days - 1; d >= 0; d--) {
      const when = new Date(Date.UTC(2024, 2, 10 - d, 2, 30, 0));
      const repo = join(work, 'svnrepo');
      await mkdir(join(repo, 'db', 'revs'), { recursive: true });
      for (let rev = 0; rev < 5 + (days - d); rev++) {
        await writeFile(join(repo, 'db', 'revs', String(rev)), `revision ${rev}\n`.repeat(2000 + rev * 100));
      }
      const out = join(backupRoot, datedPath(when), 'svnrepo.tar.gz');
      await mkdir(join(out, '..'), { recursive: true });
      await Archiver.create(repo, out);
      made.push(out);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return made;
}

/**
 * Sends `localDir` to `remoteDir` on the paired node with the LOCKED
 * protocol, delete-after behind a guard, and the remote mutant check.
 *
 * @param o - see {@link OffboxSyncOptions}
 */
export async function offboxSync(o: OffboxSyncOptions): Promise<SyncResult> {
  const log = o.log ?? ((line: string) => console.log(line));
  await using remote = new SshTransport({
    host: o.host,
    port: o.port ?? 22,
    username: o.username,
    privateKeyPath: o.privateKeyPath ?? join(homedir(), '.ssh', 'id_ed25519'),
    knownHosts: o.knownHosts ?? join(homedir(), '.ssh', 'known_hosts'),
  });
  await remote.connect(o.signal ? { signal: o.signal } : {});
  log(`connected to ${remote.name} (remote digests: ${remote.capabilities.remoteDigest ? 'md5sum on the far side' : 'streamed over SFTP'})`);
  // REMOTE_DIR must not be LOCAL_DIR itself reached over ssh (this host, a
  // shared file system): the sync would find everything "unchanged" and
  // report success with no off-box copy. A probe file put there must not
  // show up here.
  const probe = `.stowage-probe-${randomBytes(8).toString('hex')}`;
  await remote.put(Buffer.from('stowage offbox probe\n'), posix.join(o.remoteDir, probe), { mkdirs: true, ...(o.signal ? { signal: o.signal } : {}) });
  const same = existsSync(join(o.localDir, probe));
  await remote.remove(posix.join(o.remoteDir, probe), { force: true });
  if (same) {
    throw new StowageError('EBAD_CONFIG', `REMOTE_DIR ${remote.name}${o.remoteDir} is LOCAL_DIR ${o.localDir} itself (a file put there appears here): there would be no off-box copy. Give a folder on another machine or disk.`, {
      details: { localDir: o.localDir, remoteDir: o.remoteDir },
    });
  }
  // A mutant's warning says which side is damaged: 'src' (the local file no
  // longer matches its sidecar; it was not sent) or 'dst' (the copy that
  // arrived does not).
  const damaged = new Map<string, unknown>();
  const result = await sync(new LocalTransport(), o.localDir, remote, o.remoteDir, {
    lock: true,
    delete: 'after',
    maxDelete: o.maxDelete ?? 20,
    onWarning: (w) => {
      if (w.code === 'EDIGEST_MISMATCH') damaged.set(w.path, w.error.details['side']);
      log(`warning ${w.code}: ${w.message}`);
    },
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  });
  for (const c of result.copied) log(`sent ${c.path} (${c.dna.size} bytes, md5 ${c.dna.dig})`);
  for (const d of result.deleted) log(`deleted remote ${d}`);
  for (const v of result.verified) {
    if (v.ok) log(`verified ${v.path}: remote ${v.actual.dig}, sidecar ${v.expected.dig}`);
    else if (damaged.get(v.path) === 'src') {
      log(`MUTANT ${v.path}: the LOCAL file is damaged (local ${v.actual.dig}, sidecar ${v.expected.dig}); it was not sent, the remote copy (if any) was left as it was. Check the remote copy against the sidecar and restore the local file from it; do not overwrite the remote copy.`);
    } else {
      log(`MUTANT ${v.path}: the REMOTE copy is damaged (remote ${v.actual.dig}, sidecar ${v.expected.dig}). Check the local file against its sidecar, then remove the remote copy and run again to send it anew.`);
    }
  }
  if (result.deleteSkipped) log(`deletion skipped: ${result.deleteSkipped}`);
  const free = await remote.freeSpace(o.remoteDir);
  log(`copied ${result.copied.length}, unchanged ${result.plan.unchanged}, deleted ${result.deleted.length}, mutants ${result.mutants.length}; remote free ${free.availablePercent.toFixed(1)}%`);
  return result;
}

/** Logs a line when the phase changes, and at most every 10 s within one (not per chunk). */
function progressLines(log: (line: string) => void, everyMs = 10_000): ProgressCallback {
  let phase = '';
  let last = 0;
  return (p) => {
    if (p.phase === phase && Date.now() - last < everyMs) return;
    phase = p.phase;
    last = Date.now();
    log(`  ${p.phase}: ${p.itemsDone}${p.itemsTotal === undefined ? '' : `/${p.itemsTotal}`} files, ${(p.bytesDone / 1e6).toFixed(1)} MB`);
  };
}

function usage(why?: string): never {
  if (why !== undefined) console.error(`offbox-sync.ts: ${why}`);
  console.error('usage: offbox-sync.ts LOCAL_DIR USER@HOST[:PORT] REMOTE_DIR [--key FILE] [--known-hosts FILE] [--max-delete N] [--demo]');
  process.exit(2);
}

// Run as a script (also through a symlink, or from a path with a space in it,
// where import.meta.url is percent-encoded): compare real file paths.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  const args = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const joined = args.findIndex((a) => a.startsWith(`${name}=`));
    if (joined >= 0) return args.splice(joined, 1)[0]!.slice(name.length + 1);
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const v = args[i + 1];
    if (v === undefined) usage();
    args.splice(i, 2);
    return v;
  };
  const key = flag('--key');
  const knownHosts = flag('--known-hosts');
  const maxDelete = flag('--max-delete');
  const demo = args.includes('--demo');
  if (demo) args.splice(args.indexOf('--demo'), 1);
  // Anything else is refused: a misspelt --max-delete or a --dry-run this
  // recipe does not have must not turn into a real run that deletes.
  const unknown = args.find((a) => a.startsWith('-'));
  if (unknown !== undefined) usage(`unknown option ${unknown}; nothing was done`);
  if (maxDelete !== undefined && !/^\d+$/.test(maxDelete)) usage(`--max-delete wants a whole number, got ${JSON.stringify(maxDelete)}; nothing was done`);
  const [localDir, target, remoteDir] = args;
  const m = target === undefined ? null : /^([^@]+)@([^:]+)(?::(\d+))?$/.exec(target);
  if (localDir === undefined || remoteDir === undefined || m === null || args.length !== 3) usage();
  // Ctrl-C or a SIGTERM (cron, systemd) stops the run cleanly: the remote
  // LOCKED is released. A second signal kills at once.
  const stop = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => stop.abort(new StowageError('EABORTED', `stopped by ${sig}`)));
  try {
    if (demo) for (const f of await makeDemoBackups(localDir)) console.log(`made ${f}`);
    const r = await offboxSync({
      localDir,
      host: m[2]!,
      port: m[3] === undefined ? 22 : Number(m[3]),
      username: m[1]!,
      remoteDir,
      ...(key !== undefined ? { privateKeyPath: key } : {}),
      ...(knownHosts !== undefined ? { knownHosts } : {}),
      ...(maxDelete !== undefined ? { maxDelete: Number(maxDelete) } : {}),
      onProgress: progressLines((l) => console.log(l)),
      signal: stop.signal,
    });
    process.exitCode = r.mutants.length > 0 ? 1 : 0;
  } catch (err) {
    console.error(err instanceof StowageError ? `refused: ${err.code}: ${err.message}` : err);
    process.exitCode = 2;
  }
}
