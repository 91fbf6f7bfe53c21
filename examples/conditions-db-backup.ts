/**
 * Conditions-database backup: the Daya Bay DBI workflow done properly.
 *
 * A payload table and its validity table (sharing SEQNO) are cut into
 * ranges of 10,000 SEQNO; each range is archived once, together for both
 * tables and as of one snapshot, as `DIR/<lo>-<hi>.tar.gz` with its DNA
 * sidecar. The archives are shipped to a second node over SSH (host key
 * checked against known_hosts, LOCKED planted while copying, every archive
 * digested on the far side), read back from there, loaded into a second
 * MariaDB, and the copy is compared with the source range by range. Run it
 * again after new rows arrived: only the new ranges and the rewritten
 * partial ones (the tail, and the range below it, which a writer committing
 * out of SEQNO order may still reach) are dumped and shipped. Every run
 * digests every archive on both sides: one that rotted on the far node (or
 * in the staging copy) is sent (or read back) again. What is loaded is
 * decided from the second MariaDB itself: the ranges where it differs from
 * the source (all of them where a table is missing), each reloaded on its
 * own, so a run that failed after its dump (far node down) is made good by
 * the next one. The comparison stops at the largest key the dump saw: rows
 * a live source commits meanwhile are the next run's, not a difference.
 * One run at a time: a second one started meanwhile (a slow night, a
 * manual run) stops at once with ELOCKED naming the first. Ctrl-C or a
 * SIGTERM stops a run cleanly (the far LOCKED is released, a load in
 * progress is rolled back).
 *
 *   npx tsx examples/conditions-db-backup.ts SOURCE_URI TARGET_URI OUT_DIR USER@HOST[:PORT] REMOTE_DIR \
 *       [--tables CalibPmtSpec,CalibPmtSpecVld] [--key SEQNO] [--rows-per-partition 10000] \
 *       [--ssh-key ~/.ssh/id_ed25519] [--known-hosts ~/.ssh/known_hosts] [--catalog FILE] [--demo-rows N]
 *
 * SOURCE_URI and TARGET_URI are `mysql://user:password@host:port/database`.
 * `--demo-rows N` first creates the demo pair in the source (if missing) and
 * appends N new SEQNO with their payload, as a calibration run would.
 * Exit status: 0 the copy equals the source, 1 it differs, 2 refused or failed.
 */
import { realpathSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Catalog, LocalTransport, LockDir, MysqlSource, Partitioner, SshTransport, StowageError, sync, type CompareReport, type ProgressCallback } from 'stowage';

/** What to back up, where to ship it, where to recover it. */
export interface ConditionsDbBackupOptions {
  /** The conditions database (`mysql://...` URI). */
  source: string;
  /** The second MariaDB, on the far node, recovered from the shipped copy. */
  target: string;
  /** The tables sharing the key, dumped together: the payload and its validity table. */
  tables: readonly string[];
  /** The key (default SEQNO). */
  key?: string;
  /** Keys per archive (default 10000). */
  rowsPerPartition?: number;
  /** Where the archives are written locally. */
  outDir: string;
  /** The far node. */
  remote: {
    host: string;
    port?: number;
    username: string;
    /** Private key file (default ~/.ssh/id_ed25519). */
    privateKeyPath?: string;
    /** known_hosts file (default ~/.ssh/known_hosts). */
    knownHosts?: string;
    /** The archive folder there. */
    dir: string;
  };
  /** Where the far copy is read back before loading (default `OUT_DIR.far`). */
  stagingDir?: string;
  /** A Catalog file recording archives and ranges (default: state from the archives on disk). */
  catalog?: string;
  /** Called with one line per event (default: console.log). */
  log?: (line: string) => void;
  /** Progress of the dump, the transfers, the load and the comparison (each reports its phases). */
  onProgress?: ProgressCallback;
  /** Stops the run: the far LOCKED is released, a load in progress is rolled back. */
  signal?: AbortSignal;
}

/** What a run did. */
export interface ConditionsDbBackupResult {
  /** Archives written this run (paths relative to OUT_DIR). */
  readonly written: string[];
  /** Files shipped to the far node (archives and sidecars). */
  readonly shipped: string[];
  /** Archives loaded into the target (the ranges where it differed from the source). */
  readonly recovered: number;
  /** Per table, the comparison of the target with the source. */
  readonly reports: CompareReport[];
  /** Whether every table of the target equals the source's. */
  readonly equal: boolean;
}

/** The demo pair: a validity table and a payload table with three rows per SEQNO. */
const DEMO_TABLES = ['CalibPmtSpec', 'CalibPmtSpecVld'];

/**
 * Creates the demo pair (if missing) and appends `n` SEQNO with their
 * payload rows, each SEQNO in one transaction, as the DBI writers do.
 *
 * @param uri - the source database
 * @param n - SEQNO to add
 * @returns the new largest SEQNO
 */
export async function addDemoRows(uri: string, n: number): Promise<number> {
  const { createConnection } = await import('mysql2/promise');
  const c = await createConnection({ uri });
  try {
    await c.query(`CREATE TABLE IF NOT EXISTS CalibPmtSpecVld (SEQNO INT NOT NULL PRIMARY KEY, TIMESTART DATETIME NOT NULL, TIMEEND DATETIME NOT NULL,
      SITEMASK TINYINT, SIMMASK TINYINT, SUBSITE INT, TASK INT, AGGREGATENO INT, VERSIONDATE DATETIME NOT NULL, INSERTDATE DATETIME NOT NULL) ENGINE=InnoDB`);
    await c.query(`CREATE TABLE IF NOT EXISTS CalibPmtSpec (SEQNO INT NOT NULL, ROW_COUNTER INT NOT NULL, PMTSENSID INT, PMTDESCRIB CHAR(27), PMTSTATUS TINYINT,
      PMTSPEHIGH DOUBLE, PMTSIGMASPEHIGH DOUBLE, PMTTOFFSET DECIMAL(12,4), PMTNOTE TEXT, PRIMARY KEY (SEQNO, ROW_COUNTER)) ENGINE=InnoDB`);
    const [[row]] = (await c.query('SELECT COALESCE(MAX(SEQNO), 0) AS top FROM CalibPmtSpecVld')) as unknown as [[{ top: number | string }]];
    const from = Number(row.top) + 1;
    const to = from + n - 1;
    for (let a = from; a <= to; a += 5000) {
      const b = Math.min(to, a + 4999);
      await c.query('START TRANSACTION');
      await c.query(`INSERT INTO CalibPmtSpecVld SELECT seq, TIMESTAMP'2011-08-15 00:00:00' + INTERVAL seq MINUTE, '2038-01-19 03:14:07', 1 << (seq % 7), 1, seq % 8, 0, -1,
        TIMESTAMP'2011-08-15 00:00:00' + INTERVAL seq MINUTE, NOW() FROM seq_${a}_to_${b}`);
      await c.query(`INSERT INTO CalibPmtSpec SELECT s.seq, r.seq, 0x10000000 + r.seq, CONCAT('DayaBayAD1_ring', r.seq, '_column', s.seq % 24), 1,
        18 + (s.seq % 100) / 37e0, 1.5 + r.seq / 3e0, CAST((s.seq % 1000) * 0.125 AS DECIMAL(12,4)), IF(r.seq = 2, NULL, CONCAT('run ', s.seq, '\\tok'))
        FROM seq_${a}_to_${b} s, seq_1_to_3 r`);
      await c.query('COMMIT');
    }
    return to;
  } finally {
    await c.end();
  }
}

/**
 * One backup run: dump (incremental), ship, read back, recover, compare.
 *
 * @param o - see {@link ConditionsDbBackupOptions}
 */
export async function conditionsDbBackup(o: ConditionsDbBackupOptions): Promise<ConditionsDbBackupResult> {
  const log = o.log ?? ((line: string) => console.log(line));
  const key = o.key ?? 'SEQNO';
  const rowsPerPartition = o.rowsPerPartition ?? 10000;
  // Beside OUT_DIR, never in it: `dbi/` must give `dbi.far`, not `dbi/.far`,
  // which the next run would ship and read back one level deeper each night.
  const stagingDir = resolve(o.stagingDir ?? `${resolve(o.outDir)}.far`);
  const outAbs = resolve(o.outDir);
  if (stagingDir === outAbs || stagingDir.startsWith(outAbs + sep) || outAbs.startsWith(stagingDir + sep)) {
    throw new StowageError('EBAD_CONFIG', `conditionsDbBackup: the staging folder ${stagingDir} must lie outside OUT_DIR ${outAbs} (and not hold it): it would be shipped with the archives and read back into itself on every run. Leave stagingDir out (OUT_DIR.far) or choose a folder beside it.`, {
      details: { option: 'stagingDir', stagingDir, outDir: outAbs },
    });
  }
  // One run at a time, for the whole run (the dump's own lock covers only the dump): two runs
  // restoring into the target at once would load the same ranges twice over each other.
  await mkdir(stagingDir, { recursive: true });
  const runLock = new LockDir(stagingDir, { purpose: `conditions-db-backup of ${outAbs}`, staleMs: 10 * 60_000 });
  return runLock.withLock((lockSignal) => backupRun(o, { log, key, rowsPerPartition, stagingDir, outAbs, signal: o.signal === undefined ? lockSignal : AbortSignal.any([o.signal, lockSignal]), token: runLock.owner!.token }));
}

/** The run itself, under the run's lock (see {@link conditionsDbBackup}). */
async function backupRun(
  o: ConditionsDbBackupOptions,
  r: { log: (line: string) => void; key: string; rowsPerPartition: number; stagingDir: string; outAbs: string; signal: AbortSignal; token: string },
): Promise<ConditionsDbBackupResult> {
  const { log, key, rowsPerPartition, stagingDir, outAbs } = r;
  const sig = { signal: r.signal };
  const progress = o.onProgress ? { onProgress: o.onProgress } : {};
  await using source = new MysqlSource(o.source);
  await using target = new MysqlSource(o.target);
  using catalog = o.catalog === undefined ? undefined : new Catalog(o.catalog);

  // 1. Dump: new complete ranges and the changed partial ones (the tail and the range below it), each range of both tables in one snapshot.
  const partitioner = new Partitioner(source, { tables: o.tables, key, rowsPerPartition, outDir: o.outDir, ...(catalog ? { catalog } : {}) });
  const dump = await partitioner.dump({ concurrency: 2, ...sig, ...progress });
  const rel = (p: string): string => relative(outAbs, resolve(p));
  for (const w of dump.written) {
    log(`wrote ${rel(w.path)} (${w.complete ? 'complete' : 'partial'}: ${w.tables.map((t) => `${t.name} ${t.rows}`).join(', ')}; md5 ${w.dna.dig})`);
  }
  log(`dump: ${dump.written.length} written, ${dump.unchanged.length} unchanged partial, ${dump.plan.partitions.filter((p) => p.state === 'archived').length} archived before`);

  // 2. Ship to the far node: new or rewritten files, and any whose far copy no longer has the
  //    local one's digest (rotted there: every archive is digested on both sides, `checksum`);
  //    each file sent is digested there again and checked against its sidecar.
  await using remote = new SshTransport({
    host: o.remote.host,
    port: o.remote.port ?? 22,
    username: o.remote.username,
    privateKeyPath: o.remote.privateKeyPath ?? join(homedir(), '.ssh', 'id_ed25519'),
    knownHosts: o.remote.knownHosts ?? join(homedir(), '.ssh', 'known_hosts'),
  });
  await remote.connect(sig);
  const local = new LocalTransport();
  const warn = (w: { code: string; message: string }): void => log(`warning ${w.code}: ${w.message}`);
  const shipped = await sync(local, o.outDir, remote, o.remote.dir, { lock: true, checksum: true, onWarning: warn, ...sig, ...progress });
  // Sent though this run did not write it: its far copy was missing or differed (damaged or deleted
  // there, or written by a run that failed before it shipped).
  const rewritten = new Set(dump.written.flatMap((w) => [rel(w.path), `${rel(w.path)}.dna`].map((x) => x.split(sep).join('/'))));
  const why = new Map(shipped.plan.copies.filter((c) => !rewritten.has(c.path)).map((c) => [c.path, c.reason === 'new' ? ': its far copy was missing' : ': its far copy differed'] as const));
  for (const c of shipped.copied) log(`shipped ${c.path} (${c.dna.size} bytes)${why.get(c.path) ?? ''}`);
  if (shipped.mutants.length > 0) {
    throw new StowageError(
      'EDIGEST_MISMATCH',
      `${shipped.mutants.length} archive(s) do not match their DNA sidecar after shipping to ${remote.name}: ${shipped.mutants.map((m) => m.path).join(', ')}. A local archive that no longer matches its sidecar is not sent (the far copy is kept): check ${outAbs} for disk trouble; otherwise run again.`,
      { details: { mutants: shipped.mutants.map((m) => m.path) } },
    );
  }
  log(`ship: ${shipped.copied.length} files to ${remote.name}:${o.remote.dir}, ${shipped.plan.unchanged} already there (digests equal), ${shipped.verified.length} verified on the far side`);

  // 3. Read the far copy back (on the far node itself, point Partitioner.restore at its folder directly),
  //    digests compared too, so a staging copy that rotted is read back again.
  //    The staging folder holds this run's own LOCKED (ownLockToken: not another writer's).
  const back = await sync(remote, o.remote.dir, local, stagingDir, { checksum: true, ownLockToken: r.token, onWarning: warn, ...sig, ...progress });
  if (back.mutants.length > 0) {
    throw new StowageError(
      'EDIGEST_MISMATCH',
      `${back.mutants.length} archive(s) on ${remote.name}:${o.remote.dir} do not match their DNA sidecar: ${back.mutants.map((m) => m.path).join(', ')}. Nothing was loaded from them. Send them again from ${outAbs} (remove the far copies, then run again), and check that disk.`,
      { details: { mutants: back.mutants.map((m) => m.path) } },
    );
  }
  log(`read back: ${back.copied.length} files from the far side into ${stagingDir}`);

  // 4. Recover into the second database what it lacks or holds differently.
  //    Decided from the target, not from what this run dumped: a run that
  //    failed between its dump and this step (far node or target down) left
  //    ranges unloaded that no later dump writes again. Every DNA is
  //    verified before anything is loaded; each range replaces what the
  //    target had in it, so loading a range twice is harmless.
  //    Compared up to the largest key the dump saw: rows a live source
  //    commits meanwhile are in no archive yet (the next run's), not a
  //    difference. Up to the target's own largest key where that is higher:
  //    rows the copy holds and the source no longer has are one.
  const upTo = dump.plan.keyRange.hi;
  const compareAll = async (): Promise<CompareReport[]> => {
    const out: CompareReport[] = [];
    for (const table of o.tables) {
      let hi = upTo;
      if (hi !== null) {
        const there = (await target.keyRange(table, key, sig)).hi;
        if (there !== null && there > hi) hi = there;
      }
      out.push(await Partitioner.compare(source, target, table, { key, rowsPerPartition, ...(hi === null ? {} : { hi }), ...sig, ...progress }));
    }
    return out;
  };
  let reports: CompareReport[] | undefined;
  /** The key ranges to load, runs of adjacent differing ranges merged; undefined: none; [{}]: every range. */
  let toLoad: { lo?: bigint; hi?: bigint }[] | undefined;
  try {
    reports = await compareAll();
    const stale = reports.flatMap((c) => c.differingRanges).sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
    for (const d of stale) {
      const last = toLoad?.at(-1);
      if (last !== undefined && d.lo <= last.hi! + 1n) last.hi = d.hi > last.hi! ? d.hi : last.hi;
      else (toLoad ??= []).push({ lo: d.lo, hi: d.hi });
    }
  } catch (err) {
    if (!(err instanceof StowageError && err.code === 'ENO_TABLE')) throw err;
    toLoad = [{}]; // a table the target does not have yet: load every range
  }
  let recovered = 0;
  if (toLoad === undefined) {
    log(`recover: nothing to load, ${target.name} already equals the source${upTo === null ? '' : ` (keys up to ${upTo})`}`);
  } else {
    // Each run of differing ranges on its own: the ranges between them are not loaded again.
    for (const span of toLoad) {
      const what = span.lo === undefined ? 'every range' : `keys ${span.lo}-${span.hi}`;
      const loaded = await Partitioner.restore(target, stagingDir, { ...span, concurrency: 2, ...sig, ...progress }).catch((err: unknown) => {
        // No archive holds these keys: rows of the copy the source does not have (the comparison below names them).
        // Not an archive gone while its sidecar is there (`details.missing`): that one stops the run.
        if (err instanceof StowageError && err.code === 'ENOT_FOUND' && (err.details as { missing?: unknown } | undefined)?.missing === undefined && span.lo !== undefined) return undefined;
        throw err;
      });
      if (loaded === undefined) {
        log(`recover (${what}): no archive holds these keys; the copy has rows there that the source does not`);
        continue;
      }
      recovered += loaded.partitions;
      log(`recover (${what}): ${loaded.partitions} ranges, ${loaded.tables.map((t) => `${t.name} ${t.rows} rows${t.created ? ' (table created)' : ''}`).join(', ')} into ${target.name}`);
    }
    reports = await compareAll();
  }

  // 5. Prove the copy equal to the source, range by range.
  for (const c of reports!) {
    log(
      c.equal
        ? `compare ${c.table}: equal (${c.ranges.length} ranges, ${c.a.rows} rows)`
        : `compare ${c.table}: DIFFERENT in ${c.differingRanges.length} ranges; keys ${c.differences.map((d) => `${d.key} (${d.kind})`).join(', ')}${c.truncated ? ' ...' : ''}`,
    );
  }
  return {
    written: dump.written.map((w) => rel(w.path)),
    shipped: shipped.copied.map((c) => c.path),
    recovered,
    reports: reports!,
    equal: reports!.every((r) => r.equal),
  };
}

/** Logs a line when the phase changes, and at most every 10 s within one (not per chunk). */
function progressLines(log: (line: string) => void, everyMs = 10_000): ProgressCallback {
  let phase = '';
  let last = 0;
  return (p) => {
    if (p.phase === phase && Date.now() - last < everyMs) return;
    phase = p.phase;
    last = Date.now();
    log(`  ${p.phase}: ${p.itemsDone}${p.itemsTotal === undefined ? '' : `/${p.itemsTotal}`} items, ${(p.bytesDone / 1e6).toFixed(1)} MB`);
  };
}

function usage(): never {
  console.error(
    'usage: conditions-db-backup.ts SOURCE_URI TARGET_URI OUT_DIR USER@HOST[:PORT] REMOTE_DIR [--tables A,B] [--key SEQNO] [--rows-per-partition N] [--ssh-key FILE] [--known-hosts FILE] [--catalog FILE] [--demo-rows N]',
  );
  process.exit(2);
}

// Run as a script (also through a symlink, or from a path with a space in it,
// where import.meta.url is percent-encoded): compare real file paths.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  const args = process.argv.slice(2);
  const flag = (name: string): string | undefined => {
    const i = args.indexOf(name);
    if (i < 0) return undefined;
    const v = args[i + 1];
    if (v === undefined) usage();
    args.splice(i, 2);
    return v;
  };
  const tables = flag('--tables');
  const key = flag('--key');
  const rows = flag('--rows-per-partition');
  const sshKey = flag('--ssh-key');
  const knownHosts = flag('--known-hosts');
  const catalog = flag('--catalog');
  const demoRows = flag('--demo-rows');
  const [sourceUri, targetUri, outDir, node, remoteDir] = args;
  const m = node === undefined ? null : /^([^@]+)@([^:]+)(?::(\d+))?$/.exec(node);
  if (sourceUri === undefined || targetUri === undefined || outDir === undefined || remoteDir === undefined || m === null || args.length !== 5) usage();
  // Counts as whole numbers, not NaN ("SEQNO up to NaN").
  if ((demoRows !== undefined && !/^\d+$/.test(demoRows)) || (rows !== undefined && !/^\d+$/.test(rows))) usage();
  // Ctrl-C or a SIGTERM (cron, systemd) stops the run cleanly. A second signal kills at once.
  const stop = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => stop.abort(new StowageError('EABORTED', `stopped by ${sig}`)));
  try {
    if (demoRows !== undefined) console.log(`demo: SEQNO up to ${await addDemoRows(sourceUri, Number(demoRows))} in the source`);
    const r = await conditionsDbBackup({
      source: sourceUri,
      target: targetUri,
      tables: tables === undefined ? DEMO_TABLES : tables.split(','),
      outDir,
      remote: {
        host: m[2]!,
        port: m[3] === undefined ? 22 : Number(m[3]),
        username: m[1]!,
        dir: remoteDir,
        ...(sshKey !== undefined ? { privateKeyPath: sshKey } : {}),
        ...(knownHosts !== undefined ? { knownHosts } : {}),
      },
      ...(key !== undefined ? { key } : {}),
      ...(rows !== undefined ? { rowsPerPartition: Number(rows) } : {}),
      ...(catalog !== undefined ? { catalog } : {}),
      onProgress: progressLines((l) => console.log(l)),
      signal: stop.signal,
    });
    process.exitCode = r.equal ? 0 : 1;
  } catch (err) {
    console.error(err instanceof StowageError ? `refused: ${err.code}: ${err.message}` : err);
    process.exitCode = 2;
  }
}
