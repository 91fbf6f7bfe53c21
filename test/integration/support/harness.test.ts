// Tests of the harness plumbing: free ports and retries, missing binaries,
// fixed ports that are taken, and the last-resort cleanup when a test
// process exits without stopping its servers.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort, isPortInUse, withFreePort } from '../../support/ports.js';
import { descendants, isAlive, missingBinaryMessage, requireBinary, ServerStartError } from '../../support/proc.js';
import { startMariadb } from '../../support/mariadb.js';
import { startPostgres } from '../../support/postgres.js';
import { startSshd } from '../../support/sshd.js';
import { makeTempDir } from '../../support/tmp.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const CHILD = join(import.meta.dirname, 'fixtures', 'leave-running.ts');

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve(srv));
  });
}

function close(srv: Server): Promise<void> {
  return new Promise((resolve) => srv.close(() => resolve()));
}

interface Report {
  pids: number[];
  dirs: string[];
  ports: number[];
}

/** Runs the child, returns what it started and how it ended. */
function runChild(mode: 'exit' | 'throw' | 'signal', servers: string[]): Promise<{ report: Report; code: number | null; signal: string | null; descendants: number[] }> {
  return new Promise((resolve, reject) => {
    // node itself (not the tsx wrapper, which would stand between us and the signal).
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, mode, ...servers], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let report: Report | undefined;
    let tree: number[] = [];
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (err += d));
    child.stdout.on('data', (d: string) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (report === undefined && line !== undefined && out.includes('\n')) {
        report = JSON.parse(line) as Report;
        tree = report.pids.flatMap((pid) => descendants(pid).map((r) => r.pid));
        if (mode === 'signal') child.kill('SIGTERM');
        else child.stdin.write('go\n');
      }
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (report === undefined) reject(new Error(`child printed no report (code ${code}, signal ${signal}):\n${err}`));
      else resolve({ report, code, signal, descendants: tree });
    });
  });
}

async function waitGone(pids: number[], ms = 5_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (pids.every((p) => !isAlive(p))) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

describe('ports', () => {
  it('freePort() returns a loopback port nobody listens on', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(1023);
    const srv = await listen(port);
    await close(srv);
  });

  it('withFreePort() retries on another port when the first is taken', async () => {
    const tried: number[] = [];
    const blockers: Server[] = [];
    try {
      const got = await withFreePort(async (port) => {
        tried.push(port);
        if (tried.length === 1) blockers.push(await listen(port)); // someone else took it
        const srv = await listen(port);
        return { port, srv };
      });
      expect(tried).toHaveLength(2);
      expect(got.port).toBe(tried[1]);
      await close(got.srv);
    } finally {
      for (const b of blockers) await close(b);
    }
  });

  it('withFreePort() does not retry other failures', async () => {
    let calls = 0;
    await expect(
      withFreePort(async () => {
        calls += 1;
        throw new Error('config broken');
      }),
    ).rejects.toThrow('config broken');
    expect(calls).toBe(1);
  });
});

describe('servers on a fixed port that is taken', () => {
  it.each([
    ['sshd', (port: number) => startSshd({ port })],
    ['mariadb', (port: number) => startMariadb({ port })],
    ['postgres', (port: number) => startPostgres({ port })],
  ] as const)('%s fails with the server log and portInUse', async (_name, start) => {
    const port = await freePort();
    const blocker = await listen(port);
    try {
      const err = await start(port).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ServerStartError);
      expect(isPortInUse(err)).toBe(true);
      expect((err as Error).message).toMatch(/log \(.*\) ---\n/);
    } finally {
      await close(blocker);
    }
  });
});

describe('options', () => {
  it.each([
    ['startSshd', () => startSshd({ allowexec: false } as never)],
    ['startMariadb', () => startMariadb({ databse: 'x' } as never)],
    ['startPostgres', () => startPostgres({ wal_level: 'logical' } as never)],
  ] as const)('%s rejects an unknown option before starting anything', async (name, start) => {
    await expect(start()).rejects.toThrow(new RegExp(`^${name}: unknown option`));
  });
});

describe('missing binaries', () => {
  it('name the Debian package and the setup script', () => {
    expect(() => requireBinary({ name: 'frobd', paths: ['/nonexistent/frobd'], commands: ['stowage-no-such-frobd'], debianPackage: 'frob-server' })).toThrow(
      missingBinaryMessage('frobd', 'frob-server'),
    );
    expect(missingBinaryMessage('frobd', 'frob-server')).toMatch(/"frob-server".*bash scripts\/setup-system\.sh.*apt-get install frob-server/);
  });
});

describe('temp folders', () => {
  it('are under the OS temp folder and removed by remove()', async () => {
    const t = makeTempDir('unit');
    expect(existsSync(t.path)).toBe(true);
    expect(t.path).toMatch(/stowage-unit-/);
    await t.remove();
    expect(existsSync(t.path)).toBe(false);
    await t.remove();
  });
});

describe('last-resort cleanup when the test process leaves without stop()', () => {
  it('process.exit(): servers (with their setsid children) killed, folders removed', async () => {
    const r = await runChild('exit', ['sshd', 'postgres']);
    expect(r.code).toBe(0);
    expect(r.report.pids).toHaveLength(2);
    expect(r.descendants.length).toBeGreaterThan(0); // the postgres backend, at least
    expect(await waitGone([...r.report.pids, ...r.descendants])).toBe(true);
    for (const d of r.report.dirs) expect(existsSync(d)).toBe(false);
  });

  it('uncaught error: servers killed, folders removed', async () => {
    const r = await runChild('throw', ['sshd']);
    expect(r.code).not.toBe(0);
    expect(await waitGone(r.report.pids)).toBe(true);
    for (const d of r.report.dirs) expect(existsSync(d)).toBe(false);
  });

  it('SIGTERM: servers killed, folders removed, the process still dies of SIGTERM', async () => {
    const r = await runChild('signal', ['sshd', 'mariadb']);
    expect(r.signal).toBe('SIGTERM');
    expect(await waitGone(r.report.pids)).toBe(true);
    for (const d of r.report.dirs) expect(existsSync(d)).toBe(false);
  });
});
