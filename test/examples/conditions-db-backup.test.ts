import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DnaDigest } from '../../src/dna/index.js';
import { spawnUntil, startMariadb, startSshd, type MariadbServer, type SshdServer } from '../support/index.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const tsx = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
const script = join(root, 'examples', 'conditions-db-backup.ts');

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name));
      else out.push(relative(dir, join(d, e.name)));
    }
  };
  await walk(dir);
  return out.sort();
}

async function mtimes(dir: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const f of await files(dir)) out[f] = (await stat(join(dir, f))).mtimeMs;
  return out;
}

// The recipe runs as a user runs it (tsx, importing `stowage` by name)
// against two real MariaDB servers (the conditions database and the far
// node's copy) and a real sshd (the far node).
describe('examples/conditions-db-backup.ts', () => {
  let source: MariadbServer;
  let target: MariadbServer;
  let sshd: SshdServer;
  let scratch: string;
  let outDir: string;
  let remoteDir: string;
  const uri = (s: MariadbServer, db: string): string => `mysql://${s.user}:${encodeURIComponent(s.password)}@127.0.0.1:${s.port}/${db}`;
  const recipe = (extra: string[] = [], knownHosts = sshd.knownHostsPath) =>
    run(
      process.execPath,
      [
        tsx,
        script,
        uri(source, 'offline_db'),
        uri(target, 'offline_db_copy'),
        outDir,
        `${sshd.username}@127.0.0.1:${sshd.port}`,
        remoteDir,
        '--ssh-key',
        sshd.privateKeyPath,
        '--known-hosts',
        knownHosts,
        '--catalog',
        join(scratch, 'stowage.catalog'),
        ...extra,
      ],
      { cwd: root },
    ).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );

  beforeAll(async () => {
    [source, target, sshd] = await Promise.all([startMariadb(), startMariadb(), startSshd()]);
    await source.createDatabase('offline_db');
    await target.createDatabase('offline_db_copy');
    scratch = await mkdtemp(join(tmpdir(), 'stowage-conddb-test-'));
    outDir = join(scratch, 'dbi');
    remoteDir = join(sshd.root, 'node2', 'dbi');
  });
  afterAll(async () => {
    await Promise.all([source?.stop(), target?.stop(), sshd?.stop()]);
    await rm(scratch, { recursive: true, force: true });
  });

  it('dumps the pair in SEQNO ranges, ships them, recovers them into the second MariaDB, and the copy equals the source', async () => {
    const r = await recipe(['--demo-rows', '25000']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/demo: SEQNO up to 25000/);
    expect(r.stdout).toMatch(/wrote CalibPmtSpec\/0000000001-0000010000\.tar\.gz \(complete: CalibPmtSpec 30000, CalibPmtSpecVld 10000/);
    // The range below the tail stays partial until the keys pass the tail (settleRanges: late commits may still reach it).
    expect(r.stdout).toMatch(/wrote CalibPmtSpec\/0000010001-0000020000\.tar\.gz \(partial: CalibPmtSpec 30000, CalibPmtSpecVld 10000/);
    expect(r.stdout).toMatch(/wrote CalibPmtSpec\/0000020001-0000030000\.tar\.gz \(partial: CalibPmtSpec 15000, CalibPmtSpecVld 5000/);
    expect(r.stdout).toMatch(/dump: 3 written, 0 unchanged partial/);
    expect(r.stdout).toMatch(/ship: 6 files to ssh:\/\/.*, 0 already there \(digests equal\), 3 verified on the far side/);
    expect(r.stdout).toMatch(/recover \(every range\): 3 ranges, CalibPmtSpec 75000 rows \(table created\), CalibPmtSpecVld 25000 rows \(table created\)/);
    expect(r.stdout).toMatch(/compare CalibPmtSpec: equal \(3 ranges, 75000 rows\)/);
    expect(r.stdout).toMatch(/compare CalibPmtSpecVld: equal \(3 ranges, 25000 rows\)/);
    expect(await files(remoteDir)).toEqual(await files(outDir));
    expect((await files(remoteDir)).filter((f) => f.endsWith('.tar.gz'))).toEqual([
      'CalibPmtSpec/0000000001-0000010000.tar.gz',
      'CalibPmtSpec/0000010001-0000020000.tar.gz',
      'CalibPmtSpec/0000020001-0000030000.tar.gz',
    ]);
    const [n] = await target.query<{ n: number }[]>('SELECT COUNT(*) AS n FROM CalibPmtSpec', [], 'offline_db_copy');
    expect(Number(n!.n)).toBe(75000);
  });

  it('after new rows arrive, ships the new ranges and the rewritten tail, and loads the ranges the copy lacks', async () => {
    const before = await mtimes(remoteDir);
    const r = await recipe(['--demo-rows', '12000']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/dump: 3 written, 0 unchanged partial, 1 archived before/);
    expect(r.stdout).toMatch(/wrote CalibPmtSpec\/0000010001-0000020000\.tar\.gz \(complete/);
    expect(r.stdout).toMatch(/wrote CalibPmtSpec\/0000020001-0000030000\.tar\.gz \(partial: CalibPmtSpec 30000, CalibPmtSpecVld 10000/);
    expect(r.stdout).toMatch(/wrote CalibPmtSpec\/0000030001-0000040000\.tar\.gz \(partial: CalibPmtSpec 21000, CalibPmtSpecVld 7000/);
    expect(r.stdout).toMatch(/ship: 6 files to .*, 3 verified on the far side/);
    expect(r.stdout.match(/^shipped /gm)).toHaveLength(6);
    // 10001-20000 was rewritten (now complete) but the copy already holds its rows: only the two that differ are loaded.
    // Compared (and loaded) up to the largest key the dump saw, 37000.
    expect(r.stdout).toMatch(/recover \(keys 20001-37000\): 2 ranges, CalibPmtSpec 51000 rows, CalibPmtSpecVld 17000 rows into/);
    expect(r.stdout).toMatch(/compare CalibPmtSpec: equal \(4 ranges, 111000 rows\)/);
    const after = await mtimes(remoteDir);
    for (const f of ['CalibPmtSpec/0000000001-0000010000.tar.gz', 'CalibPmtSpec/0000000001-0000010000.tar.gz.dna']) expect(after[f], f).toBe(before[f]);
    expect(await files(remoteDir)).toEqual(await files(outDir));
  });

  it('with no new rows, writes, ships and loads nothing, and still proves the copy equal', async () => {
    const local = await mtimes(outDir);
    const far = await mtimes(remoteDir);
    const r = await recipe();
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/dump: 0 written, 2 unchanged partial/);
    expect(r.stdout).toMatch(/ship: 0 files/);
    expect(r.stdout).toMatch(/recover: nothing to load, .* already equals the source/);
    expect(r.stdout).toMatch(/compare CalibPmtSpecVld: equal \(4 ranges, 37000 rows\)/);
    expect(await mtimes(outDir)).toEqual(local);
    expect(await mtimes(remoteDir)).toEqual(far);
  });

  it('a run that fails after its dump (host key changed) is made good by the next run: the copy is complete and equal', async () => {
    const failed = await recipe(['--demo-rows', '15000'], sshd.wrongKnownHostsPath);
    expect(failed.code).toBe(2);
    expect(failed.stderr).toMatch(/refused: EHOSTKEY/);
    expect(failed.stdout).toMatch(/dump: [1-9]\d* written/);
    // The next run has nothing new to dump, but the copy lacks what the failed run dumped.
    const r = await recipe();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/dump: 0 written/);
    expect(r.stdout).toMatch(/ship: [1-9]\d* files/);
    expect(r.stdout).toMatch(/recover \(keys 30001-52000\): 3 ranges/);
    expect(r.stdout).toMatch(/compare CalibPmtSpec: equal \(6 ranges, 156000 rows\)/);
    expect(r.stdout).toMatch(/compare CalibPmtSpecVld: equal \(6 ranges, 52000 rows\)/);
    const [n] = await target.query<{ n: number }[]>('SELECT COUNT(*) AS n FROM CalibPmtSpecVld', [], 'offline_db_copy');
    expect(Number(n!.n)).toBe(52000);
  });

  it('loads again a range of the copy that drifted, from the shipped archives', async () => {
    await target.query('UPDATE CalibPmtSpec SET PMTSPEHIGH = 0 WHERE SEQNO = 4242 AND ROW_COUNTER = 2', [], 'offline_db_copy');
    const r = await recipe();
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/recover \(keys 1-10000\): 1 ranges/);
    expect(r.stdout).toMatch(/compare CalibPmtSpec: equal/);
  });

  it('prints archive names relative to OUT_DIR when OUT_DIR is given relative', async () => {
    const r = await run(
      process.execPath,
      [tsx, script, uri(source, 'offline_db'), uri(target, 'offline_db_copy'), relative(scratch, outDir), `${sshd.username}@127.0.0.1:${sshd.port}`, remoteDir, '--ssh-key', sshd.privateKeyPath, '--known-hosts', sshd.knownHostsPath, '--catalog', join(scratch, 'stowage.catalog'), '--demo-rows', '100'],
      { cwd: scratch },
    ).catch((e: { stdout: string }) => e);
    expect(r.stdout).toMatch(/^wrote CalibPmtSpec\/0000050001-0000060000\.tar\.gz \(partial/m);
  });
  it('with OUT_DIR given with a trailing slash, reads the far copy back beside it (dbi.far), never into it', async () => {
    for (let i = 0; i < 2; i++) {
      const r = await run(
        process.execPath,
        [tsx, script, uri(source, 'offline_db'), uri(target, 'offline_db_copy'), `${outDir}/`, `${sshd.username}@127.0.0.1:${sshd.port}`, remoteDir, '--ssh-key', sshd.privateKeyPath, '--known-hosts', sshd.knownHostsPath, '--catalog', join(scratch, 'stowage.catalog')],
        { cwd: root },
      );
      expect(r.stdout).toMatch(new RegExp(`read back: \\d+ files from the far side into ${outDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.far\\n`));
    }
    expect((await files(outDir)).filter((f) => f.includes('.far'))).toEqual([]);
    expect((await files(remoteDir)).filter((f) => f.includes('.far'))).toEqual([]);
    // A staging folder given inside OUT_DIR is refused before anything is done.
    const { conditionsDbBackup } = (await import(script)) as typeof import('../../examples/conditions-db-backup.js');
    const common = { source: uri(source, 'offline_db'), target: uri(target, 'offline_db_copy'), tables: ['CalibPmtSpec', 'CalibPmtSpecVld'], remote: { host: '127.0.0.1', username: sshd.username, dir: remoteDir } };
    for (const stagingDir of [join(outDir, 'far'), outDir, scratch]) {
      await expect(conditionsDbBackup({ ...common, outDir, stagingDir, log: () => {} } as never)).rejects.toMatchObject({ code: 'EBAD_CONFIG', details: { option: 'stagingDir' } });
    }
  });

  it('exits 1 naming the keys when the copy differs from the source and the archives cannot mend it', async () => {
    // A row of an archived (complete) range rewritten in the source: no dump writes that range again.
    await source.query('UPDATE CalibPmtSpec SET PMTSPEHIGH = 0 WHERE SEQNO = 4242 AND ROW_COUNTER = 2', [], 'offline_db');
    const r = await recipe();
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/compare CalibPmtSpec: DIFFERENT in 1 ranges; keys 4242 \(different\)/);
  });

  it('stops cleanly on SIGTERM mid-dump (exit 2, nothing half-written, no LOCKED), and the next run completes the copy', async () => {
    await source.createDatabase('sig_db');
    await target.createDatabase('sig_copy');
    const out = join(scratch, 'sig-out');
    const far = join(sshd.root, 'node2', 'sig');
    const args = [tsx, script, uri(source, 'sig_db'), uri(target, 'sig_copy'), out, `${sshd.username}@127.0.0.1:${sshd.port}`, far, '--ssh-key', sshd.privateKeyPath, '--known-hosts', sshd.knownHostsPath, '--catalog', join(scratch, 'sig.catalog'), '--rows-per-partition', '500'];
    // Signalled once its output shows it at work: the dump of 40 ranges has begun
    const proc = await spawnUntil(process.execPath, [...args, '--demo-rows', '20000'], { cwd: root, until: /^ {2}dump: /m });
    const { child, exited } = proc;
    // Then the first archive with its sidecar: the run is stopped in the middle of the dump.
    const sidecars = async (): Promise<number> => (await files(out).catch(() => [] as string[])).filter((f) => f.endsWith('.dna')).length;
    for (let i = 0; i < 1000 && child.exitCode === null && (await sidecars()) === 0; i++) await new Promise((r) => setTimeout(r, 5));
    child.kill('SIGTERM');
    expect(await exited, proc.stdout()).toBe(2);
    expect(proc.stderr()).toMatch(/refused: EABORTED: stopped by SIGTERM/);
    expect(proc.stdout()).not.toMatch(/^ship: /m);
    // Whatever was written is whole: every archive under its final name has its sidecar and matches it, and no .part is left.
    const written = await files(out).catch(() => [] as string[]);
    expect(written.filter((f) => !f.endsWith('.tar.gz') && !f.endsWith('.tar.gz.dna'))).toEqual([]);
    for (const f of written.filter((x) => x.endsWith('.tar.gz'))) {
      expect(written, f).toContain(`${f}.dna`);
      expect((await DnaDigest.verify(join(out, f))).ok, f).toBe(true);
    }
    const archives = written.filter((f) => f.endsWith('.tar.gz')).length;
    expect(archives).toBeGreaterThan(0);
    expect(archives).toBeLessThan(40);

    const r = await run(process.execPath, args, { cwd: root }).then(
      (x) => ({ code: 0, stdout: x.stdout, stderr: x.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/compare CalibPmtSpec: equal \(40 ranges, 60000 rows\)/);
    expect(r.stdout).toMatch(/compare CalibPmtSpecVld: equal \(40 ranges, 20000 rows\)/);
    expect(await files(far)).toEqual(await files(out));
  });

  // The pair of the SIGTERM test (sig_db, 40 ranges of 500 SEQNO), equal and complete from here on.
  const sigRecipe = (extra: string[] = []) =>
    run(process.execPath, [tsx, script, uri(source, 'sig_db'), uri(target, 'sig_copy'), join(scratch, 'sig-out'), `${sshd.username}@127.0.0.1:${sshd.port}`, join(sshd.root, 'node2', 'sig'), '--ssh-key', sshd.privateKeyPath, '--known-hosts', sshd.knownHostsPath, '--catalog', join(scratch, 'sig.catalog'), '--rows-per-partition', '500', ...extra], { cwd: root }).then(
      (x) => ({ code: 0, stdout: x.stdout, stderr: x.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
  /** Flips one byte of a file, keeping its size and mtime (bit rot: what a size-and-mtime check never sees). */
  const rot = async (file: string): Promise<void> => {
    const { mtime } = await stat(file);
    const bytes = await readFile(file);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x40;
    await writeFile(file, bytes);
    await utimes(file, mtime, mtime);
  };

  it('sends again an archive that rotted on the far node, and reads back again a staging copy that rotted (every run digests them all)', async () => {
    // Before, both went unnoticed every night: "0 files ... 0 verified", exit 0.
    const farFile = join(sshd.root, 'node2', 'sig', 'CalibPmtSpec', '0000000001-0000000500.tar.gz');
    const staged = join(scratch, 'sig-out.far', 'CalibPmtSpec', '0000000501-0000001000.tar.gz');
    await rot(farFile);
    await rot(staged);
    // And one deleted on the far node, and one cut short there.
    const farGone = join(sshd.root, 'node2', 'sig', 'CalibPmtSpec', '0000001001-0000001500.tar.gz');
    const farCut = join(sshd.root, 'node2', 'sig', 'CalibPmtSpec', '0000001501-0000002000.tar.gz');
    await rm(farGone);
    await writeFile(farCut, (await readFile(farCut)).subarray(0, 100));
    expect((await DnaDigest.verify(farFile)).ok).toBe(false);
    const r = await sigRecipe();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^shipped CalibPmtSpec\/0000000001-0000000500\.tar\.gz \(\d+ bytes\): its far copy differed$/m);
    expect(r.stdout).toMatch(/^shipped CalibPmtSpec\/0000001001-0000001500\.tar\.gz \(\d+ bytes\): its far copy was missing$/m);
    expect(r.stdout).toMatch(/^shipped CalibPmtSpec\/0000001501-0000002000\.tar\.gz \(\d+ bytes\): its far copy differed$/m);
    expect(r.stdout).toMatch(/^ship: 3 files to .*, 3 verified on the far side/m);
    // The staging copy that rotted (those of the far files mended have the right bytes already).
    expect(r.stdout).toMatch(/^read back: 1 files from the far side/m);
    for (const f of [farFile, farGone, farCut, staged]) expect((await DnaDigest.verify(f)).ok, f).toBe(true);
  });

  it('reloads each run of differing ranges on its own, not every range between the first and the last', async () => {
    // Before: "recover (keys 1-10500): 21 ranges".
    await target.query('UPDATE CalibPmtSpec SET PMTSPEHIGH = 0 WHERE SEQNO IN (7, 10250)', [], 'sig_copy');
    const r = await sigRecipe();
    expect(r.code).toBe(0);
    expect(r.stdout.match(/^recover .*$/gm)).toEqual([expect.stringMatching(/^recover \(keys 1-500\): 1 ranges/), expect.stringMatching(/^recover \(keys 10001-10500\): 1 ranges/)]);
    expect(r.stdout).toMatch(/compare CalibPmtSpec: equal \(40 ranges, 60000 rows\)/);
  });

  it('compares up to the largest key the dump saw: rows a live source commits meanwhile are the next run\'s, not a difference; rows only the copy holds are one', async () => {
    const { conditionsDbBackup } = (await import(script)) as typeof import('../../examples/conditions-db-backup.js');
    const sql = (s: MariadbServer, db: string, q: string): void => void execFileSync('mariadb', ['-h127.0.0.1', `-P${s.port}`, `-u${s.user}`, `-p${s.password}`, db, '-e', q]);
    const options = {
      source: uri(source, 'sig_db'),
      target: uri(target, 'sig_copy'),
      tables: ['CalibPmtSpec', 'CalibPmtSpecVld'],
      outDir: join(scratch, 'sig-out'),
      rowsPerPartition: 500,
      catalog: join(scratch, 'sig.catalog'),
      remote: { host: '127.0.0.1', port: sshd.port, username: sshd.username, privateKeyPath: sshd.privateKeyPath, knownHosts: sshd.knownHostsPath, dir: join(sshd.root, 'node2', 'sig') },
    };
    // A writer commits a SEQNO while the run reads the far copy back, after its dump (before: exit 1, "DIFFERENT", most nights on a live source).
    const lines: string[] = [];
    const live = await conditionsDbBackup({
      ...options,
      log: (line) => {
        lines.push(line);
        if (line.startsWith('read back:')) sql(source, 'sig_db', "INSERT INTO CalibPmtSpecVld SELECT MAX(SEQNO) + 1, NOW(), NOW(), 1, 1, 0, 0, -1, NOW(), NOW() FROM CalibPmtSpecVld");
      },
    });
    expect(live.equal, lines.join('\n')).toBe(true);
    // A row only the copy holds, above every key of the source: a difference, bound or not.
    sql(target, 'sig_copy', "INSERT INTO CalibPmtSpecVld VALUES (999999, NOW(), NOW(), 1, 1, 0, 0, -1, NOW(), NOW())");
    const extra: string[] = [];
    const r = await conditionsDbBackup({ ...options, log: (line) => extra.push(line) });
    expect(r.equal).toBe(false);
    expect(extra.join('\n')).toMatch(/no archive holds these keys; the copy has rows there that the source does not/);
    expect(extra.join('\n')).toMatch(/compare CalibPmtSpecVld: DIFFERENT in 1 ranges; keys 999999 \(only-in-b\)/);
    sql(target, 'sig_copy', 'DELETE FROM CalibPmtSpecVld WHERE SEQNO = 999999');
  });

  it('runs one at a time: a second run started meanwhile stops at once with ELOCKED naming the first, which completes', async () => {
    // Before, both restored into the target at once, and one failed on a duplicate key.
    const first = await spawnUntil(process.execPath, [tsx, script, uri(source, 'sig_db'), uri(target, 'sig_copy'), join(scratch, 'sig-out'), `${sshd.username}@127.0.0.1:${sshd.port}`, join(sshd.root, 'node2', 'sig'), '--ssh-key', sshd.privateKeyPath, '--known-hosts', sshd.knownHostsPath, '--catalog', join(scratch, 'sig.catalog'), '--rows-per-partition', '500', '--demo-rows', '2000'], { cwd: root, until: /^ {2}dump: /m });
    const second = await sigRecipe();
    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(/refused: ELOCKED: .*conditions-db-backup of /);
    expect(await first.exited, first.stdout() + first.stderr()).toBe(0);
    expect(first.stdout()).toMatch(/compare CalibPmtSpec: equal \(45 ranges, 66000 rows\)/);
  });

  it('refuses counts that are not whole numbers with its usage (exit 2), before touching anything', async () => {
    for (const extra of [['--demo-rows', 'abc'], ['--rows-per-partition', '1e4']]) {
      const r = await recipe(extra);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^usage: conditions-db-backup\.ts /);
      expect(r.stdout).toBe('');
    }
  });
});
