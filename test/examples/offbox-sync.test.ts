import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnUntil, startSshd, type SshdServer } from '../support/index.js';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
const tsx = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
const script = join(root, 'examples', 'offbox-sync.ts');

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

// The recipe runs as a user runs it (tsx, importing `stowage` by name)
// against a real sshd from the test harness.
describe('examples/offbox-sync.ts', () => {
  let server: SshdServer;
  let scratch: string;
  let local: string;
  let remoteDir: string;
  const recipe = (extra: string[] = [], knownHosts = server.knownHostsPath) =>
    run(process.execPath, [tsx, script, local, `${server.username}@127.0.0.1:${server.port}`, remoteDir, '--key', server.privateKeyPath, '--known-hosts', knownHosts, ...extra], { cwd: root }).then(
      (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );

  beforeAll(async () => {
    server = await startSshd();
    scratch = await mkdtemp(join(tmpdir(), 'stowage-offbox-test-'));
    local = join(scratch, 'backups');
    remoteDir = join(server.root, 'paired', 'backups');
  });
  afterAll(async () => {
    await server?.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  it('sends dated tarballs with their sidecars, verifies them on the remote side, leaves no LOCKED', async () => {
    const r = await recipe(['--demo']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/connected to ssh:\/\/.*remote digests: md5sum on the far side/);
    expect(r.stdout.match(/^verified /gm)).toHaveLength(3);
    expect(r.stdout).toMatch(/copied 6, unchanged \d+, deleted 0, mutants 0/);
    const sent = await files(remoteDir);
    expect(sent).toEqual(await files(local));
    expect(sent.filter((f) => f.endsWith('.tar.gz'))).toEqual(['2024/03/08/023000/svnrepo.tar.gz', '2024/03/09/023000/svnrepo.tar.gz', '2024/03/10/023000/svnrepo.tar.gz']);
    expect(existsSync(join(remoteDir, 'LOCKED'))).toBe(false);
    const sidecar = JSON.parse(await readFile(join(remoteDir, sent[0]! + '.dna'), 'utf8')) as { dig: string };
    expect(createHash('md5').update(await readFile(join(remoteDir, sent[0]!))).digest('hex')).toBe(sidecar.dig);
  });

  it('refuses a REMOTE_DIR that is LOCAL_DIR itself (this host over ssh): no off-box copy, exit 2, no probe left', async () => {
    const r = await run(process.execPath, [tsx, script, local, `${server.username}@127.0.0.1:${server.port}`, local, '--key', server.privateKeyPath, '--known-hosts', server.knownHostsPath], { cwd: root }).then(
      (x) => ({ code: 0, stdout: x.stdout, stderr: x.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/EBAD_CONFIG: REMOTE_DIR .* is LOCAL_DIR .* itself .*there would be no off-box copy/);
    expect((await files(local)).filter((f) => f.includes('.stowage-probe-'))).toEqual([]);
    expect((await files(remoteDir)).filter((f) => f.includes('.stowage-probe-'))).toEqual([]);
  });

  it('a second run sends nothing; a set pruned locally is deleted remotely (within the guard)', async () => {
    expect((await recipe()).stdout).toMatch(/copied 0, unchanged \d+, deleted 0, mutants 0/);
    await rm(join(local, '2024', '03', '08'), { recursive: true });
    const r = await recipe();
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/deleted remote 2024\/03\/08\/023000\/svnrepo.tar.gz\n/);
    expect(existsSync(join(remoteDir, '2024', '03', '08'))).toBe(false);
    expect(await files(remoteDir)).toEqual(await files(local));
  });

  it('refuses to delete past --max-delete, and refuses an empty local folder (an unmounted disk), remote intact', async () => {
    const before = await files(remoteDir);
    await rm(join(local, '2024', '03', '09'), { recursive: true });
    const guard = await recipe(['--max-delete', '1']);
    expect(guard.code).toBe(2);
    expect(guard.stderr).toMatch(/refused: EDELETE_GUARD/);
    expect(await files(remoteDir)).toEqual(before);
    // The --flag=value form counts; an option the recipe does not have (a --dry-run it lacks) or a bad number does nothing at all.
    expect((await recipe(['--max-delete=1'])).stderr).toMatch(/refused: EDELETE_GUARD/);
    for (const extra of [['--max-delete=0', '--dry-run'], ['--max-delte', '0'], ['--max-delete', 'ten'], ['extra-arg']]) {
      const r = await recipe(extra);
      expect(r.code, extra.join(' ')).toBe(2);
      expect(r.stderr, extra.join(' ')).toMatch(/usage: offbox-sync\.ts/);
      expect(await files(remoteDir)).toEqual(before);
    }
    expect((await recipe(['--dry-run'])).stderr).toMatch(/unknown option --dry-run; nothing was done/);
    await rm(local, { recursive: true });
    await mkdir(local);
    const empty = await recipe();
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/refused: EDELETE_GUARD: .*empty/);
    expect(await files(remoteDir)).toEqual(before);
  });

  it('reports a tarball that rotted after its sidecar was written as a mutant (exit 1)', async () => {
    await rm(local, { recursive: true, force: true });
    await mkdir(local);
    const r0 = await recipe(['--demo']);
    expect(r0.code).toBe(0);
    const victim = join(local, '2024', '03', '10', '023000', 'svnrepo.tar.gz');
    const bytes = await readFile(victim);
    bytes[100] = bytes[100]! ^ 0xff;
    await writeFile(victim, bytes);
    await utimes(victim, new Date(), new Date(Date.now() + 5000));
    const r = await recipe();
    expect(r.code).toBe(1);
    // The local file rotted: the report must say so, and not send the
    // operator to "repair" the good remote copy from it.
    const line = r.stdout.split('\n').find((l) => l.startsWith('MUTANT '));
    expect(line).toMatch(/^MUTANT 2024\/03\/10\/023000\/svnrepo.tar.gz: the LOCAL file is damaged \(local [0-9a-f]{32}, sidecar [0-9a-f]{32}\); it was not sent/);
    expect(line).toMatch(/restore the local file from it/);
    expect(line).not.toMatch(/remote [0-9a-f]{32}/);
    expect(r.stdout).toMatch(/mutants 1/);
    // And indeed the remote copy is still the good one.
    const sidecar = JSON.parse(await readFile(victim + '.dna', 'utf8')) as { dig: string };
    const far = join(remoteDir, '2024', '03', '10', '023000', 'svnrepo.tar.gz');
    expect(createHash('md5').update(await readFile(far)).digest('hex')).toBe(sidecar.dig);
  });

  it('does not send a tree that holds LOCKED (a backup being written), nor to a host whose key changed', async () => {
    await mkdir(join(local, 'LOCKED'));
    const locked = await recipe();
    expect(locked.code).toBe(2);
    expect(locked.stderr).toMatch(/refused: ELOCKED/);
    await rm(join(local, 'LOCKED'), { recursive: true });
    const wrong = await recipe([], server.wrongKnownHostsPath);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/refused: EHOSTKEY/);
  });

  it('stops cleanly on SIGTERM mid-transfer: exit 2, the remote LOCKED released', async () => {
    const big = join(scratch, 'big');
    await mkdir(join(big, '2024', '03', '11', '023000'), { recursive: true });
    await writeFile(join(big, '2024', '03', '11', '023000', 'raw.dat'), '');
    await truncate(join(big, '2024', '03', '11', '023000', 'raw.dat'), 2 ** 31); // 2 GiB (sparse here, not over SFTP)
    const far = join(server.root, 'paired', 'big');
    // Signalled once its output shows it at work: the progress line of the copy phase
    const proc = await spawnUntil(process.execPath, [tsx, script, big, `${server.username}@127.0.0.1:${server.port}`, far, '--key', server.privateKeyPath, '--known-hosts', server.knownHostsPath], { cwd: root, until: /^ {2}copy: /m });
    const { child, exited } = proc;
    child.kill('SIGTERM');
    expect(await exited).toBe(2);
    expect(proc.stderr()).toMatch(/EABORTED: stopped by SIGTERM/);
    expect(existsSync(join(far, 'LOCKED'))).toBe(false);
    expect(existsSync(join(far, '2024', '03', '11', '023000', 'raw.dat'))).toBe(false); // no half file passed off as a whole one
  });
});
