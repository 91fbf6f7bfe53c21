/**
 * LockDir between real processes: a herd of Node processes contending for
 * one lock (starting from a stale lock they all try to take over at once),
 * a holder killed with SIGKILL, and a holder that exits without releasing.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { LockDir, type LockOwner } from '../../../src/lock/index.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');
const CHILD = join(ROOT, 'test', 'fixtures', 'lock', 'lock-child.ts');

interface Child {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly lines: string[];
  /** Resolves with the first stdout line matching `test`. */
  line(test: (l: string) => boolean): Promise<string>;
  /** Sends a command and resolves with the first line after it that matches `test`. */
  ask(cmd: string, test: (l: string) => boolean): Promise<string>;
  stderr(): string;
}

const children: Child[] = [];

function startChild(args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let err = '';
  let buf = '';
  const waiters: { test: (l: string) => boolean; resolve: (l: string) => void }[] = [];
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(l);
      for (const w of [...waiters]) {
        if (w.test(l)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(l);
        }
      }
    }
  });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  const child: Child = {
    proc,
    exit,
    lines,
    stderr: () => err,
    line: (test) =>
      new Promise<string>((resolve, reject) => {
        const seen = lines.find(test);
        if (seen !== undefined) return resolve(seen);
        waiters.push({ test, resolve });
        void exit.then(({ code, signal }) => reject(new Error(`child exited (${code ?? signal}) before the expected line; stdout:\n${lines.join('\n')}\nstderr:\n${err}`)));
      }),
    ask: (cmd, test) => {
      const from = lines.length;
      proc.stdin.write(cmd + '\n');
      return child.line((l) => test(l) && lines.lastIndexOf(l) >= from);
    },
  };
  children.push(child);
  return child;
}

/** The pid of a process that has exited and been reaped. */
async function deadPid(): Promise<number> {
  const p = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => p.once('exit', resolve));
  return p.pid!;
}

async function killAll(): Promise<void> {
  for (const c of children.splice(0)) {
    if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
    await c.exit;
  }
}

describe('LockDir: a herd of 8 processes', () => {
  const N = 8;
  let herdDir: TempDir;
  let herd: Child[];
  let dead: number;
  beforeAll(async () => {
    herdDir = makeTempDir('lock-herd');
    dead = await deadPid();
    herd = Array.from({ length: N }, () => startChild(['serve', herdDir.path]));
    await Promise.all(herd.map((c) => c.line((l) => l === 'ready')));
  });
  afterAll(async () => {
    for (const c of herd) c.proc.stdin.end('quit\n');
    const exits = await Promise.race([Promise.all(herd.map((c) => c.exit)), new Promise((resolve) => setTimeout(() => resolve('still running'), 10_000))]);
    await killAll();
    await herdDir.remove();
    expect(exits).toEqual(herd.map(() => ({ code: 0, signal: null })));
  });

  /** Plants a lock left by a process of this host that no longer exists. */
  async function plantDead(parent: string, token: string): Promise<LockOwner> {
    const stale: LockOwner = { host: hostname(), pid: dead, purpose: 'crashed', since: new Date().toISOString(), token };
    await mkdir(join(parent, 'LOCKED'));
    await writeFile(join(parent, 'LOCKED', 'owner.json'), JSON.stringify(stale));
    return stale;
  }

  it('8 processes that find the same stale lock at the same moment: exactly one wins, 10 times over', async () => {
    const parent = herdDir.path;
    for (let round = 0; round < 10; round++) {
      await plantDead(parent, round.toString(16).padStart(32, '0'));
      const results = await Promise.all(herd.map((c) => c.ask('try', (l) => l.startsWith('won ') || l.startsWith('lost '))));
      expect({ round, results: results.map((r) => (r.startsWith('won ') ? 'won' : r)).sort() }).toEqual({
        round,
        results: ['won', ...Array.from({ length: N - 1 }, () => 'lost ELOCKED')].sort(),
      });
      const w = results.findIndex((r) => r.startsWith('won '));
      const onDisk = JSON.parse(await readFile(join(parent, 'LOCKED', 'owner.json'), 'utf8')) as LockOwner;
      expect(onDisk.pid).toBe(herd[w]!.proc.pid);
      expect(`won ${onDisk.token}`).toBe(results[w]);
      expect(await readdir(join(parent, 'LOCKED'))).toEqual(['owner.json']);
      await herd[w]!.ask('release', (l) => l === 'released');
      expect(await readdir(parent)).toEqual([]);
    }
  });

  it('8 processes x 25 rounds of read-modify-write under the lock, starting from a stale lock they all take over at once: the count is exact', async () => {
    const parent = herdDir.path;
    const counter = join(parent, 'counter');
    await writeFile(counter, '0');
    await plantDead(parent, 'f'.repeat(32));
    expect(await LockDir.inspect(parent)).toMatchObject({ locked: true, stale: true, reason: 'owner-dead' });

    const ROUNDS = 25;
    const done = await Promise.all(herd.map((c) => c.ask(`count ${counter} ${ROUNDS}`, (l) => l === 'counted' || l.startsWith('OVERLAP'))));
    expect(done).toEqual(herd.map(() => 'counted'));
    expect(Number(await readFile(counter, 'utf8'))).toBe(N * ROUNDS);
    // Released for good: no lock, no graveyard, no marker left behind.
    expect(await readdir(parent)).toEqual(['counter']);
    await rm(counter);
  });
});

describe('LockDir: holders that die', () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = makeTempDir('lock-proc');
  });
  afterEach(async () => {
    await killAll();
    await tmp.remove();
  });

  it('a lock left by a SIGKILLed holder is taken over, and the owner file is then ours', async () => {
    const parent = tmp.path;
    const holder = startChild(['hold', parent]);
    const theirs = JSON.parse(await holder.line((l) => l.startsWith('{'))) as LockOwner;
    expect(theirs.pid).toBe(holder.proc.pid);

    const lock = new LockDir(parent);
    await expect(lock.acquire()).rejects.toMatchObject({ code: 'ELOCKED', details: { owner: theirs } });

    holder.proc.kill('SIGKILL');
    await holder.exit;
    expect(await LockDir.inspect(parent)).toMatchObject({ locked: true, stale: true, reason: 'owner-dead', owner: theirs });

    await lock.acquire({ waitMs: 2_000, pollMs: 10 });
    const onDisk = JSON.parse(await readFile(join(parent, 'LOCKED', 'owner.json'), 'utf8')) as LockOwner;
    expect(onDisk).toEqual(lock.owner);
    expect(onDisk.token).not.toBe(theirs.token);
    expect(onDisk.pid).toBe(process.pid);
    expect(await readdir(join(parent, 'LOCKED'))).toEqual(['owner.json']);
    await lock.release();
    expect(await readdir(parent)).toEqual([]);
  });

  it('a holder that returns without releasing still exits on its own (the heartbeat is unref\'d), leaving a lock that is stale at once', async () => {
    const parent = tmp.path;
    const child = startChild(['exit', parent]);
    const theirs = JSON.parse(await child.line((l) => l.startsWith('{'))) as LockOwner;
    const exit = await Promise.race([child.exit, new Promise((resolve) => setTimeout(() => resolve('still running'), 10_000))]);
    expect(exit).toEqual({ code: 0, signal: null });
    expect(await LockDir.inspect(parent)).toMatchObject({ locked: true, stale: true, reason: 'owner-dead', owner: theirs });
  });
});
