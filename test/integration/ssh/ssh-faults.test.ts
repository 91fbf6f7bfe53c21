/**
 * SshTransport against real faults on a real OpenSSH sshd: a connection cut
 * mid-transfer (the per-connection sshd child SIGKILLed), a full remote disk
 * (a small tmpfs), wrong and unknown host keys, a wrong client key, a
 * server that never answers, a stalled connection, exec refused.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { appendFileSync, closeSync, constants as fsConstants, createReadStream, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { appendFile, chmod, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, truncate, utimes, writeFile } from 'node:fs/promises';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { RESUME_CHANNEL, SshTransport, type SshTransportOptions } from '../../../src/transport/ssh/ssh-transport.js';
import type { ReplayableSource } from '../../../src/transport/transport.js';
import { isRoot, startSshd, useUpInodes, withTmpfs, type SshdServer } from '../../support/index.js';

const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');

async function md5File(path: string): Promise<string> {
  const h = createHash('md5');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

async function caught(p: Promise<unknown>): Promise<StowageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StowageError);
  return err as StowageError;
}

function optionsFor(server: SshdServer, extra: Partial<SshTransportOptions> = {}): SshTransportOptions {
  return { host: server.host, port: server.port, username: server.username, privateKey: server.privateKey, knownHosts: server.knownHostsPath, ...extra };
}

/**
 * A source whose first stream stops after `cutAt` bytes until `release()`,
 * so a fault injected meanwhile always lands mid-transfer (progress reports
 * are throttled: a trigger waiting for one past a threshold can see the
 * final report, after the transfer is over). Later opens (a resume) give
 * the rest at once.
 */
function gatedSource(data: Buffer, cutAt: number): { source: ReplayableSource; release: () => void; opens: () => number; reached: Promise<void> } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let reachedGate!: () => void;
  const reached = new Promise<void>((resolve) => {
    reachedGate = resolve;
  });
  let opens = 0;
  const source: ReplayableSource = {
    size: data.length,
    open(offset: number): Readable {
      opens += 1;
      if (opens > 1) return Readable.from([data.subarray(offset)]);
      return Readable.from(
        (async function* () {
          for (let at = offset; at < cutAt; at += 1024 * 1024) yield data.subarray(at, Math.min(cutAt, at + 1024 * 1024));
          reachedGate();
          await gate;
          yield data.subarray(cutAt);
        })(),
      );
    },
  };
  return { source, release, opens: () => opens, reached };
}

/** Waits until the far file holds at least `bytes` bytes. */
async function farSizeAtLeast(path: string, bytes: number): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const size = await stat(path).then(
      (s) => s.size,
      () => 0,
    );
    if (size >= bytes) return;
    if (Date.now() > deadline) throw new Error(`${path} never reached ${bytes} bytes (has ${size})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An ssh-agent of its own on a socket in a temporary folder, ready to take keys; `stop` kills it and removes the folder. */
async function startAgent(): Promise<{ agentDir: string; sock: string; stop: () => Promise<void> }> {
  const agentDir = await mkdtemp(join(tmpdir(), 'stowage-agent-'));
  const sock = join(agentDir, 'agent.sock');
  const agent: ChildProcess = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    if (await stat(sock).then(() => true, () => false)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    agentDir,
    sock,
    stop: async () => {
      agent.kill('SIGKILL');
      await rm(agentDir, { recursive: true, force: true });
    },
  };
}

/** How many connections sshd has accepted so far (from its log). */
function acceptedConnections(server: SshdServer): number {
  return readFileSync(server.logPath, 'utf8').split('\n').filter((l) => l.includes('Accepted publickey')).length;
}

let scratch: string;
beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'stowage-ssh-faults-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('a far host without md5sum, sha256sum or df (busybox, BSD)', () => {
  /** A PATH holding every command of /usr/bin and /bin but those. */
  async function pathWithout(tools: string[]): Promise<string> {
    const bin = join(scratch, `bin-${Math.random().toString(36).slice(2)}`);
    await mkdir(bin);
    for (const dir of ['/usr/bin', '/bin']) {
      for (const name of await readdir(dir)) {
        if (tools.includes(name)) continue;
        await symlink(join(dir, name), join(bin, name)).catch(() => {});
      }
    }
    return bin;
  }

  it('digest streams the file, freeSpace asks statvfs, and a resumed put still ends with its file', async () => {
    const bin = await pathWithout(['md5sum', 'sha1sum', 'sha256sum', 'sha512sum', 'df']);
    await using server = await startSshd({ extraConfig: [`SetEnv PATH=${bin}`] });
    await using t = new SshTransport(optionsFor(server, { retryDelayMs: 50 }));
    const data = randomBytes(24 * 1024 * 1024);
    await writeFile(join(server.root, 'one.bin'), data);
    expect(await t.digest(`${server.root}/one.bin`)).toEqual({ dig: md5(data), size: data.length, algorithm: 'md5' });
    expect((await t.digest(`${server.root}/one.bin`, 'sha256')).dig).toBe(createHash('sha256').update(data).digest('hex'));
    const fs = await t.freeSpace(server.root);
    expect(fs.totalBytes).toBeGreaterThan(0);
    // A put cut midway resumes; with no md5sum there the far check is skipped, the file kept.
    const target = `${server.root}/resumed.bin`;
    const { source, release } = gatedSource(data, 8 * 1024 * 1024);
    try {
      const putting = t.put(source, target);
      putting.catch(() => {});
      await farSizeAtLeast(`${target}.part`, 8 * 1024 * 1024);
      await new Promise((r) => setTimeout(r, 300));
      server.killConnections();
      release();
      expect((await putting).dig).toBe(md5(data));
    } finally {
      release();
    }
    expect(await md5File(join(server.root, 'resumed.bin'))).toBe(md5(data));
  });
});

describe('paths and long commands', () => {
  it('a path with a NUL byte is EBAD_CONFIG before anything is sent (sftp-server would die on it)', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { retries: 2 }));
    const before = acceptedConnections(server);
    expect((await caught(t.stat(`${server.root}/a\u0000b`))).code).toBe('EBAD_CONFIG');
    expect((await caught(t.put(Buffer.from('x'), `${server.root}/a\u0000b`))).code).toBe('EBAD_CONFIG');
    expect((await caught(t.rename(`${server.root}/a`, `${server.root}/b\u0000`))).code).toBe('EBAD_CONFIG');
    expect(() => t.createReadStream(`${server.root}/a\u0000b`)).toThrow(/NUL/);
    await t.stat(server.root);
    expect(acceptedConnections(server) - before).toBe(1);
  });

  it('mkdir and the lock operations (createFile, rename) refuse a path with a NUL byte with EBAD_CONFIG: the SFTP server and the transfers on its channel live on', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { retries: 2, channels: 1 }));
    const before = acceptedConnections(server);
    await t.stat(server.root);
    // A put on the one channel, held mid-way while the bad paths are tried.
    const data = randomBytes(4 * 1024 * 1024);
    const { source, release, reached } = gatedSource(data, 1024 * 1024);
    const putting = t.put(source, `${server.root}/alive.bin`);
    putting.catch(() => {});
    await reached;
    try {
      const bad = `${server.root}/a\u0000b`;
      const lock = t.lockFs();
      expect((await caught(t.mkdir(bad))).code).toBe('EBAD_CONFIG');
      expect((await caught(t.mkdir(bad, { recursive: true }))).code).toBe('EBAD_CONFIG');
      expect((await caught(lock.mkdir(bad))).code).toBe('EBAD_CONFIG');
      expect((await caught(lock.createFile(bad, Buffer.from('owner')))).code).toBe('EBAD_CONFIG');
      expect((await caught(lock.rename(bad, `${server.root}/b`))).code).toBe('EBAD_CONFIG');
      expect((await caught(lock.rename(`${server.root}/b`, bad))).code).toBe('EBAD_CONFIG');
    } finally {
      release();
    }
    expect((await putting).dig).toBe(md5(data));
    // Nothing was cut: still the first connection.
    expect(acceptedConnections(server) - before).toBe(1);
  });

  it('a connection cut while the far md5sum runs is a lost connection: reconnected and digested again, not "exited undefined"', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { retryDelayMs: 50 }));
    const f = join(server.root, 'sparse.img');
    await writeFile(f, '');
    await truncate(f, 1024 ** 3);
    await t.stat(server.root);
    const digesting = t.digest(f, 'md5');
    digesting.catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    expect(server.killConnections()).toBe(1);
    const dna = await digesting;
    expect(dna.dig).toBe(execFileSync('md5sum', [f], { encoding: 'utf8' }).split(' ')[0]);
  });

  it('aborting a put whose source has stalled rejects at once with the reason; nothing is left under the final name', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server));
    const data = randomBytes(4 * 1024 * 1024);
    const { source, release } = gatedSource(data, 1024 * 1024);
    const target = `${server.root}/stalled.bin`;
    const ac = new AbortController();
    const reason = new Error('operator gave up');
    try {
      const putting = t.put(source, target, { signal: ac.signal });
      putting.catch(() => {});
      await farSizeAtLeast(`${target}.part`, 1024 * 1024);
      const t0 = performance.now();
      ac.abort(reason);
      await expect(putting).rejects.toBe(reason);
      expect(performance.now() - t0).toBeLessThan(2000);
    } finally {
      release();
    }
    expect((await readdir(server.root)).filter((n) => n.startsWith('stalled'))).toEqual([]);
  });

  it('a far digest that says nothing for longer than idleTimeoutMs is not taken for a dead connection', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { idleTimeoutMs: 300 }));
    // 1 GiB of holes: md5sum reads it for a second or two, printing nothing until done.
    const f = join(server.root, 'sparse.img');
    await writeFile(f, '');
    await truncate(f, 1024 ** 3);
    const t0 = performance.now();
    const dna = await t.digest(f, 'md5');
    expect(performance.now() - t0).toBeGreaterThan(300);
    expect(dna.size).toBe(1024 ** 3);
    expect(dna.dig).toBe(execFileSync('md5sum', [f], { encoding: 'utf8' }).split(' ')[0]);
  });
});

describe('a connection cut mid-transfer', () => {
  for (const allowExec of [true, false]) {
    it(`put resumes from the confirmed offset and ends with a matching DNA (exec ${allowExec ? 'allowed' : 'refused'})`, async () => {
      await using server = await startSshd({ allowExec });
      await using t = new SshTransport(optionsFor(server, { retryDelayMs: 50 }));
      // 160 MiB with exec: large enough for the background flusher (a second channel) to be open when the cut comes.
      const data = randomBytes((allowExec ? 160 : 64) * 1024 * 1024);
      const cutAt = (allowExec ? 140 : 16) * 1024 * 1024;
      const target = `${server.root}/runs/big.bin`;
      const { source, release, opens } = gatedSource(data, cutAt);
      const resumes: { offset: number; attempt: number }[] = [];
      const onResume = (m: unknown): void => {
        resumes.push(m as { offset: number; attempt: number });
      };
      subscribe(RESUME_CHANNEL, onResume);
      let connectionsAtCut = 0;
      try {
        const putting = t.put(source, target);
        putting.catch(() => {});
        // Cut once the far side holds every byte before the gate (and its
        // write confirmations have had time to come back).
        await farSizeAtLeast(`${target}.part`, cutAt);
        await new Promise((r) => setTimeout(r, 300));
        connectionsAtCut = server.killConnections();
        release();
        const dna = await putting;
        expect(connectionsAtCut).toBe(1);
        expect(dna).toEqual({ dig: md5(data), size: data.length, algorithm: 'md5' });
        expect(await md5File(target)).toBe(md5(data));
        expect(await readdir(join(server.root, 'runs'))).toEqual(['big.bin']);
      } finally {
        release();
        unsubscribe(RESUME_CHANNEL, onResume);
      }
      // It resumed (not restarted): from an offset at or beyond what was confirmed before the cut.
      expect(opens()).toBe(2);
      expect(resumes).toHaveLength(1);
      expect(resumes[0]!.offset).toBeGreaterThanOrEqual(cutAt - 1024 * 1024);
      expect(resumes[0]!.offset).toBeLessThanOrEqual(cutAt);
    });
  }

  it('a read stream reconnects and continues from the next undelivered byte', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { retryDelayMs: 50 }));
    const data = randomBytes(48 * 1024 * 1024);
    await writeFile(join(server.root, 'r.bin'), data);
    const h = createHash('md5');
    let got = 0;
    let killed = 0;
    // The reader holds back after 8 MiB: read-ahead stops well short of the
    // end, so the cut lands mid-file.
    for await (const chunk of t.createReadStream(`${server.root}/r.bin`)) {
      h.update(chunk as Buffer);
      got += (chunk as Buffer).length;
      if (killed === 0 && got >= 8 * 1024 * 1024) {
        await new Promise((r) => setTimeout(r, 200));
        killed = server.killConnections();
      }
    }
    expect(killed).toBe(1);
    expect(got).toBe(data.length);
    expect(h.digest('hex')).toBe(md5(data));
    expect(acceptedConnections(server)).toBe(2);
  });

  it('get reconnects too and ends with a matching DNA and file', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { retryDelayMs: 50 }));
    // 256 MiB (one random MiB over and over): about a second over loopback,
    // so progress reports (every 100 ms) come well before the end and the
    // cut lands mid-file. get writes to a local file at its own pace, so
    // there is no reader to hold back as in the read-stream test.
    const block = randomBytes(1024 * 1024);
    const blocks = 256;
    const size = blocks * block.length;
    const whole = createHash('md5');
    for (let i = 0; i < blocks; i++) whole.update(block);
    const expected = whole.digest('hex');
    const sixteen = Buffer.concat(Array.from({ length: 16 }, () => block));
    await writeFile(join(server.root, 'r.bin'), '');
    for (let i = 0; i < blocks / 16; i++) await appendFile(join(server.root, 'r.bin'), sixteen);
    const local = join(scratch, 'got.bin');
    let killed = 0;
    let cutAt = 0;
    const dna = await t.get(`${server.root}/r.bin`, local, {
      onProgress: (p) => {
        if (killed === 0 && p.bytesDone >= 8 * 1024 * 1024 && p.bytesDone < size - 64 * 1024 * 1024) {
          cutAt = p.bytesDone;
          killed = server.killConnections();
        }
      },
    });
    expect(killed).toBe(1);
    expect(cutAt).toBeGreaterThan(0);
    expect(dna).toMatchObject({ dig: expected, size });
    expect(await md5File(local)).toBe(expected);
    expect(acceptedConnections(server)).toBe(2);
    await rm(local, { force: true });
  });

  it('gives up after `retries` reconnects with ECONNECT and leaves nothing under the final name', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { retries: 1, retryDelayMs: 20 }));
    const data = randomBytes(32 * 1024 * 1024);
    const src = join(scratch, 'doomed.bin');
    await writeFile(src, data);
    const target = `${server.root}/doomed.bin`;
    // Keep cutting every connection: the resumed attempt dies too.
    const timer = setInterval(() => server.killConnections(), 30);
    let err: StowageError;
    try {
      err = await caught(
        t.put(src, target, {
          onProgress: () => server.killConnections(),
        }),
      );
    } finally {
      clearInterval(timer);
    }
    expect(['ECONNECT', 'ETIMEOUT']).toContain(err.code);
    await expect(stat(target)).rejects.toThrow();
    // The .part is removed when a connection can be had again.
    const again = new SshTransport(optionsFor(server));
    await again.put(Buffer.from('ok'), `${server.root}/after.txt`);
    await again.close();
    expect((await readdir(server.root)).filter((n) => n.startsWith('doomed'))).toEqual([]);
  });

  it('a local file replaced by another of the same size during the cut is not resumed into a splice of both: retryable EIO naming it, nothing left on the far side', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { retryDelayMs: 50 }));
    const v1 = randomBytes(48 * 1024 * 1024);
    const v2 = randomBytes(v1.length);
    const src = join(scratch, 'replaced-during-cut.bin');
    await writeFile(src, v1);
    const target = `${server.root}/replaced/run.bin`;
    const resumes: unknown[] = [];
    const onResume = (m: unknown): void => void resumes.push(m);
    subscribe(RESUME_CHANNEL, onResume);
    let killed = 0;
    let err: StowageError;
    try {
      err = await caught(
        t.put(src, target, {
          onProgress: (p) => {
            if (killed > 0 || p.bytesDone < 8 * 1024 * 1024 || p.bytesDone >= v1.length) return;
            killed = server.killConnections();
            // Replaced atomically, as a writer that renames its new version into place does.
            writeFileSync(`${src}.new`, v2);
            renameSync(`${src}.new`, src);
          },
        }),
      );
    } finally {
      unsubscribe(RESUME_CHANNEL, onResume);
    }
    expect(killed).toBe(1);
    expect(resumes).toHaveLength(1);
    expect(err.code).toBe('EIO');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain(src);
    expect(err.message).toMatch(/replaced/);
    expect(err.details['reason']).toBe('source replaced');
    expect(await readdir(join(server.root, 'replaced'))).toEqual([]);
    // Sent again, the new file lands whole.
    expect((await t.put(src, target)).dig).toBe(md5(v2));
    expect(await md5File(target)).toBe(md5(v2));
  });

  it('a far file replaced during the cut by one of the same size and mtime: the read stream and get fail with a retryable EIO instead of going on with the other file', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { retryDelayMs: 50 }));
    const v1 = randomBytes(32 * 1024 * 1024);
    const v2 = randomBytes(v1.length);
    const far = join(server.root, 'swapped.bin');
    const when = new Date(Date.UTC(2024, 4, 5, 6, 7, 8));
    /** Puts v1 back, then swaps in v2 with v1's size and mtime, as a writer renaming its new version into place would. */
    const reset = async (): Promise<void> => {
      await writeFile(far, v1);
      await utimes(far, when, when);
    };
    const swap = (): void => {
      writeFileSync(`${far}.new`, v2);
      renameSync(`${far}.new`, far);
      execFileSync('touch', ['-d', when.toISOString(), far]);
    };
    await reset();
    let got = 0;
    let killed = 0;
    const readErr = await (async () => {
      for await (const chunk of t.createReadStream(far)) {
        got += (chunk as Buffer).length;
        if (killed === 0 && got >= 8 * 1024 * 1024) {
          await new Promise((r) => setTimeout(r, 200));
          killed = server.killConnections();
          swap();
        }
      }
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(killed).toBe(1);
    expect(readErr).toBeInstanceOf(StowageError);
    expect((readErr as StowageError).code).toBe('EIO');
    expect((readErr as StowageError).retryable).toBe(true);
    expect((readErr as StowageError).message).toContain(far);
    expect(got).toBeLessThan(v1.length);

    await reset();
    const local = join(scratch, 'swapped-got.bin');
    killed = 0;
    const err = await caught(
      t.get(far, local, {
        onProgress: (p) => {
          if (killed > 0 || p.bytesDone === 0 || p.bytesDone >= v1.length) return;
          killed = server.killConnections();
          swap();
        },
      }),
    );
    expect(killed).toBe(1);
    expect(err.code).toBe('EIO');
    expect(err.retryable).toBe(true);
    await expect(stat(local)).rejects.toThrow();
    await expect(stat(`${local}.part`)).rejects.toThrow();
  });

  it('a request a little slow to come back after an idle spell longer than idleTimeoutMs is not taken for a dead connection', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { idleTimeoutMs: 2000, keepaliveIntervalMs: 0 }));
    await t.stat(server.root); // connected, then quiet for longer than idleTimeoutMs
    await new Promise((r) => setTimeout(r, 2500));
    const stopped = server.listConnections();
    for (const pid of stopped) process.kill(pid, 'SIGSTOP');
    const resume = setTimeout(() => {
      for (const pid of stopped) process.kill(pid, 'SIGCONT');
    }, 900);
    try {
      // Replies 900 ms late: well within idleTimeoutMs of the request.
      await t.mkdir(`${server.root}/after-idle`);
    } finally {
      clearTimeout(resume);
      for (const pid of stopped) process.kill(pid, 'SIGCONT');
    }
    expect((await stat(join(server.root, 'after-idle'))).isDirectory()).toBe(true);
    expect(server.listConnections()).toEqual(stopped); // the same connection, not a new one
  });

  it('a far SFTP session killed while the connection lives on: the next operation connects anew, and the old connection is ended', async () => {
    await using server = await startSshd();
    const t = new SshTransport(optionsFor(server));
    await t.stat(server.root);
    const [conn] = server.listConnections();
    expect(conn).toBeDefined();
    // The session process under the connection's sshd (internal-sftp runs in it), not the connection itself.
    const sessions = execFileSync('pgrep', ['-P', String(conn)], { encoding: 'utf8' }).split('\n').filter(Boolean).map(Number);
    expect(sessions.length).toBeGreaterThan(0);
    for (const pid of sessions) process.kill(pid, 'SIGKILL');
    const deadline = Date.now() + 10_000;
    let st: Awaited<ReturnType<SshTransport['stat']>> | undefined;
    while (st === undefined && Date.now() < deadline) {
      st = await t.stat(server.root).catch(() => undefined);
      if (st === undefined) await new Promise((r) => setTimeout(r, 100));
    }
    expect(st?.type).toBe('dir');
    const gone = async (want: (pids: number[]) => boolean): Promise<number[]> => {
      const until = Date.now() + 5000;
      while (!want(server.listConnections()) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      return server.listConnections();
    };
    // The old connection is ended; only the new one is left.
    expect(await gone((pids) => !pids.includes(conn!))).not.toContain(conn);
    await t.close();
    expect(await gone((pids) => pids.length === 0)).toEqual([]);
  });

  it('aborting a put on a stalled connection rejects within a second or two, not after idleTimeoutMs', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { idleTimeoutMs: 20_000, keepaliveIntervalMs: 0 }));
    const data = randomBytes(24 * 1024 * 1024);
    const { source, release } = gatedSource(data, 4 * 1024 * 1024);
    const ac = new AbortController();
    const reason = new Error('operator gave up');
    const stopped: number[] = [];
    try {
      const putting = t.put(source, `${server.root}/stalled-link.bin`, { signal: ac.signal });
      putting.catch(() => {});
      await farSizeAtLeast(`${server.root}/stalled-link.bin.part`, 4 * 1024 * 1024);
      for (const pid of server.listConnections()) {
        process.kill(pid, 'SIGSTOP');
        stopped.push(pid);
      }
      release(); // the rest goes out into the stalled link, and its replies never come
      await new Promise((r) => setTimeout(r, 300));
      const t0 = performance.now();
      ac.abort(reason);
      await expect(putting).rejects.toBe(reason);
      // Each far cleanup step (close, removing the .part) gets at most a second once aborted.
      expect(performance.now() - t0).toBeLessThan(5000);
    } finally {
      release();
      for (const pid of stopped) process.kill(pid, 'SIGKILL');
    }
  });

  it.each([
    ['making its folder', true],
    ['creating its .part', false],
  ])('aborting a put stalled before its data (%s) rejects at once; what lands later is cleaned up', async (_stage, mkdirs) => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { idleTimeoutMs: 20_000, keepaliveIntervalMs: 0 }));
    if (!mkdirs) await mkdir(join(server.root, 'late'));
    await t.stat(server.root); // connected; the link stalls from here
    const stopped = server.listConnections();
    for (const pid of stopped) process.kill(pid, 'SIGSTOP');
    const ac = new AbortController();
    const reason = new Error('deadline passed');
    try {
      const putting = t.put(randomBytes(64 * 1024), `${server.root}/late/run-7.bin`, { signal: ac.signal, mkdirs });
      putting.catch(() => {});
      await new Promise((r) => setTimeout(r, 300));
      const t0 = performance.now();
      ac.abort(reason);
      await expect(putting).rejects.toBe(reason);
      expect(performance.now() - t0).toBeLessThan(2000);
    } finally {
      for (const pid of stopped) process.kill(pid, 'SIGCONT');
    }
    // The queued steps run now: the folder is made, or the .part created
    // after the abort is closed and removed; the connection is still usable.
    await t.put(Buffer.from('after'), `${server.root}/after.txt`);
    const deadline = Date.now() + 5000;
    while ((await readdir(join(server.root, 'late')).catch(() => [])).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await readdir(join(server.root, 'late'))).toEqual([]);
    expect(await readFile(join(server.root, 'after.txt'), 'utf8')).toBe('after');
  });

  it('a read stream aborted while its open is on the way leaves no handle open on the far side', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { idleTimeoutMs: 30_000, keepaliveIntervalMs: 0 }));
    const f = join(server.root, 'read-me.bin');
    await writeFile(f, randomBytes(1024 * 1024));
    await t.stat(server.root);
    /** Processes holding `f` open (sftp-server, as root here: all of /proc is readable). */
    const holders = async (): Promise<number> => {
      let n = 0;
      for (const pid of await readdir('/proc')) {
        if (!/^\d+$/.test(pid)) continue;
        const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
        for (const fd of fds) if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) === f) n++;
      }
      return n;
    };
    const stopped = server.listConnections();
    for (const pid of stopped) process.kill(pid, 'SIGSTOP');
    try {
      const ac = new AbortController();
      const s = t.createReadStream(f, { signal: ac.signal });
      const ended = new Promise<unknown>((resolve) => {
        s.on('error', resolve);
        s.on('close', () => resolve('closed'));
      });
      s.resume();
      await new Promise((r) => setTimeout(r, 200));
      ac.abort(new Error('no longer needed'));
      await ended;
    } finally {
      for (const pid of stopped) process.kill(pid, 'SIGCONT');
    }
    // The open arrives now, and its handle comes back to a caller that has gone.
    await new Promise((r) => setTimeout(r, 1000));
    expect(await holders()).toBe(0);
  });

  it('a stalled connection (sshd child stopped) is dropped after idleTimeoutMs and the put completes on a new one', async () => {
    await using server = await startSshd();
    // 1.5 s, not less: with 600 ms, a full-suite run on a loaded machine once
    // dropped the healthy second connection too (3 connections seen): some
    // request after the stall (the far side's fsync of the file, likely)
    // waited that long for its reply.
    await using t = new SshTransport(optionsFor(server, { idleTimeoutMs: 1500, retryDelayMs: 20, keepaliveIntervalMs: 0 }));
    const data = randomBytes(24 * 1024 * 1024);
    const { source, release } = gatedSource(data, 4 * 1024 * 1024);
    const stopped: number[] = [];
    try {
      const putting = t.put(source, `${server.root}/stall.bin`);
      putting.catch(() => {});
      await farSizeAtLeast(`${server.root}/stall.bin.part`, 4 * 1024 * 1024);
      for (const pid of server.listConnections()) {
        process.kill(pid, 'SIGSTOP');
        stopped.push(pid);
      }
      release();
      const dna = await putting;
      expect(stopped.length).toBe(1);
      expect(dna.dig).toBe(md5(data));
      expect(md5(await readFile(join(server.root, 'stall.bin')))).toBe(md5(data));
      expect(acceptedConnections(server)).toBe(2);
    } finally {
      release();
      for (const pid of stopped) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
  });
});

describe('keepalive', () => {
  it('an idle connection whose peer went silent is found dead by keepalives; the next operation reconnects at once', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server, { keepaliveIntervalMs: 150, keepaliveCountMax: 2, idleTimeoutMs: 60_000, retryDelayMs: 20 }));
    expect((await t.stat(server.root)).type).toBe('dir');
    const [pid] = server.listConnections();
    expect(pid).toBeDefined();
    process.kill(pid!, 'SIGSTOP');
    try {
      await new Promise((r) => setTimeout(r, 1200));
      const t0 = Date.now();
      expect((await t.stat(server.root)).type).toBe('dir');
      // Without keepalives this would wait for idleTimeoutMs (60 s).
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(server.listConnections().filter((p) => p !== pid)).toHaveLength(1);
    } finally {
      process.kill(pid!, 'SIGKILL');
    }
  });
});

describe('a full remote disk', () => {
  for (const allowExec of [true, false]) {
    it(`put is ENOSPACE, the .part is removed and nothing is under the final name (exec ${allowExec ? 'allowed' : 'refused'})`, async () => {
      await using server = await startSshd({ allowExec });
      await using fs = await withTmpfs(8);
      await using t = new SshTransport(optionsFor(server));
      await writeFile(join(fs.dir, 'old.bin'), Buffer.alloc(1024, 1));
      const data = randomBytes(12 * 1024 * 1024);
      const err = await caught(t.put(data, `${fs.dir}/big.bin`));
      expect(err.code).toBe('ENOSPACE');
      expect(err.message).toContain('big.bin');
      expect((await readdir(fs.dir)).sort()).toEqual(['old.bin']);
      // Room is back: the same put now works.
      expect((await t.put(data.subarray(0, 4 * 1024 * 1024), `${fs.dir}/big.bin`)).size).toBe(4 * 1024 * 1024);
      const free = await t.freeSpace(fs.dir);
      expect(free.totalBytes).toBeLessThanOrEqual(8 * 1024 * 1024);
      expect(free.availableBytes).toBeLessThan(4 * 1024 * 1024 + 1);
    });
  }
});

describe('a remote disk out of inodes', () => {
  for (const allowExec of [true, false]) {
    it(`put, mkdir and the lock's createFile are ENOSPACE saying no inodes are left, not ETRANSPORT (exec ${allowExec ? 'allowed' : 'refused'})`, async () => {
      await using server = await startSshd({ allowExec });
      await using disk = await withTmpfs(16, { inodes: 32 });
      await using t = new SshTransport(optionsFor(server));
      expect(await useUpInodes(disk.dir)).toBeGreaterThan(0);
      const before = (await readdir(disk.dir)).sort();
      const put = await caught(t.put(randomBytes(1024), `${disk.dir}/run.bin`));
      expect(put.code).toBe('ENOSPACE');
      expect(put.message).toMatch(/no free inodes/);
      expect((await caught(t.mkdir(`${disk.dir}/d`))).code).toBe('ENOSPACE');
      expect((await caught(t.mkdir(`${disk.dir}/p/q`, { recursive: true }))).code).toBe('ENOSPACE');
      expect((await caught(t.lockFs().createFile(`${disk.dir}/owner.json`, Buffer.from('{}')))).code).toBe('ENOSPACE');
      expect((await readdir(disk.dir)).sort()).toEqual(before);
    });
  }
});

describe('a local disk out of inodes', () => {
  it("get's missing local parents are ENOSPACE, not ENOT_FOUND (Node 20's recursive mkdir says ENOENT for ENOSPC)", async () => {
    await using server = await startSshd();
    await using disk = await withTmpfs(4, { inodes: 32 });
    await using t = new SshTransport(optionsFor(server));
    await writeFile(join(server.root, 'f.bin'), 'payload');
    expect(await useUpInodes(disk.dir)).toBeGreaterThan(0);
    const err = await caught(t.get(`${server.root}/f.bin`, join(disk.dir, 'a', 'b', 'f.bin')));
    expect(err.code).toBe('ENOSPACE');
    expect(err.message).toContain(join(disk.dir, 'a', 'b'));
  });
});

describe('permission denied on the far side', () => {
  it('is ETRANSPORT with the SFTP status kept (an immutable folder refuses even root)', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server));
    const dir = join(server.root, 'frozen');
    await mkdir(dir);
    // chattr +i: EPERM for every user, root included (e2fsprogs; ext4 and most local file systems).
    execFileSync('chattr', ['+i', dir]);
    try {
      const err = await caught(t.put(Buffer.from('x'), `${dir}/f`));
      expect(err.code).toBe('ETRANSPORT');
      expect(err.details['sftpStatus']).toBe('PERMISSION_DENIED');
      expect(err.message).toMatch(/permission denied/);
      expect((err.cause as { code?: number }).code).toBe(3);
      expect((await caught(t.mkdir(`${dir}/sub`))).details['sftpStatus']).toBe('PERMISSION_DENIED');
    } finally {
      execFileSync('chattr', ['-i', dir]);
    }
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('host keys', () => {
  let server: SshdServer;
  beforeAll(async () => {
    server = await startSshd({ logLevel: 'VERBOSE' });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('a changed host key is EHOSTKEY before login: nothing is sent, no file is created', async () => {
    const t = new SshTransport(optionsFor(server, { knownHosts: server.wrongKnownHostsPath }));
    const err = await caught(t.put(Buffer.from('secret'), `${server.root}/leak.txt`));
    await t.close();
    expect(err.code).toBe('EHOSTKEY');
    expect(err.retryable).toBe(false);
    expect(err.message).toMatch(/differs from the one recorded/);
    expect(err.details['fingerprint']).toBe(server.hostKeyFingerprint);
    expect(await readdir(server.root)).toEqual([]);
    expect(server.logTail(200)).not.toMatch(/Accepted publickey/);
  });

  it('an unknown host (no entry, or no known_hosts file) is EHOSTKEY in strict mode', async () => {
    const empty = join(scratch, 'known_hosts.empty');
    await writeFile(empty, `# nothing here\n[127.0.0.1]:1 ${server.hostKeyPublic}\n`);
    for (const knownHosts of [empty, join(scratch, 'no-such-known-hosts')]) {
      const t = new SshTransport(optionsFor(server, { knownHosts }));
      const err = await caught(t.stat(server.root));
      await t.close();
      expect(err.code).toBe('EHOSTKEY');
      expect(err.message).toMatch(/is not in/);
    }
  });

  it("accept-new records an unknown host, then checks against it; it still refuses a changed key", async () => {
    const kh = join(scratch, 'kh-accept', 'known_hosts');
    const t = new SshTransport(optionsFor(server, { knownHosts: kh, hostKeyPolicy: 'accept-new' }));
    await t.put(Buffer.from('hi'), `${server.root}/accept-new.txt`);
    await t.close();
    const line = (await readFile(kh, 'utf8')).trim();
    expect(line).toBe(`[127.0.0.1]:${server.port} ${server.hostKeyPublic}`);
    expect((await stat(kh)).mode & 0o777).toBe(0o600);
    const t2 = new SshTransport(optionsFor(server, { knownHosts: kh }));
    expect((await t2.stat(`${server.root}/accept-new.txt`)).size).toBe(2);
    await t2.close();
    const t3 = new SshTransport(optionsFor(server, { knownHosts: server.wrongKnownHostsPath, hostKeyPolicy: 'accept-new' }));
    expect((await caught(t3.stat(server.root))).code).toBe('EHOSTKEY');
    await t3.close();
    await rm(join(server.root, 'accept-new.txt'));
  });

  it('accept-new adds its line after a last line without its newline, keeping both entries', async () => {
    const kh = join(scratch, 'kh-no-eol', 'known_hosts');
    await mkdir(join(scratch, 'kh-no-eol'), { recursive: true });
    // Another host pinned on a last line that lacks its LF (echo -n, an editor).
    const other = `[10.0.0.9]:2222 ${server.hostKeyPublic}`;
    await writeFile(kh, other, { mode: 0o600 });
    const t = new SshTransport(optionsFor(server, { knownHosts: kh, hostKeyPolicy: 'accept-new' }));
    expect((await t.stat(server.root)).type).toBe('dir');
    await t.close();
    expect((await readFile(kh, 'utf8')).split('\n')).toEqual([other, `[127.0.0.1]:${server.port} ${server.hostKeyPublic}`, '']);
    const strict = new SshTransport(optionsFor(server, { knownHosts: kh }));
    expect((await strict.stat(server.root)).type).toBe('dir');
    await strict.close();
  });

  it('hashed known_hosts entries (ssh-keygen -H) are matched', async () => {
    const kh = join(scratch, 'known_hosts.hashed');
    await writeFile(kh, await readFile(server.knownHostsPath));
    execFileSync('ssh-keygen', ['-q', '-H', '-f', kh], { stdio: 'ignore' });
    const text = await readFile(kh, 'utf8');
    expect(text).toMatch(/^\|1\|/);
    expect(text).not.toContain('127.0.0.1');
    const t = new SshTransport(optionsFor(server, { knownHosts: kh }));
    expect((await t.stat(server.root)).type).toBe('dir');
    await t.close();
  });
});

describe('login and connection failures', () => {
  let server: SshdServer;
  beforeAll(async () => {
    server = await startSshd();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('a key the server does not know is EAUTH, not retried', async () => {
    const other = join(scratch, 'other_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other], { stdio: 'ignore' });
    const t = new SshTransport(optionsFor(server, { privateKey: await readFile(other), retries: 3, retryDelayMs: 2000 }));
    const t0 = Date.now();
    const err = await caught(t.put(Buffer.from('x'), `${server.root}/x`));
    await t.close();
    expect(err.code).toBe('EAUTH');
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(await readdir(server.root)).toEqual([]);
  });

  it('a wrong user name is EAUTH', async () => {
    const t = new SshTransport(optionsFor(server, { username: 'no-such-user-stowage' }));
    expect((await caught(t.stat('/'))).code).toBe('EAUTH');
    await t.close();
  });

  it('an unreadable or malformed private key is EBAD_CONFIG naming it', async () => {
    const bad = join(scratch, 'bad_key');
    await writeFile(bad, 'not a key');
    const t = new SshTransport(optionsFor(server, { privateKey: undefined, privateKeyPath: bad }));
    const err = await caught(t.stat('/'));
    expect(err.code).toBe('EBAD_CONFIG');
    expect(err.message).toContain(bad);
    await t.close();
    const t2 = new SshTransport(optionsFor(server, { privateKey: undefined, privateKeyPath: join(scratch, 'missing_key') }));
    expect((await caught(t2.stat('/'))).code).toBe('ENOT_FOUND');
    await t2.close();
  });

  it('authenticates through an ssh-agent socket', async () => {
    const { agentDir, sock, stop } = await startAgent();
    try {
      const emptyAgent = new SshTransport(optionsFor(server, { privateKey: undefined, agent: sock }));
      expect((await caught(emptyAgent.stat(server.root))).code).toBe('EAUTH');
      await emptyAgent.close();
      execFileSync('ssh-add', ['-q', server.privateKeyPath], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
      const t = new SshTransport(optionsFor(server, { privateKey: undefined, agent: sock }));
      expect((await t.stat(server.root)).type).toBe('dir');
      await t.close();
    } finally {
      await stop();
    }
  });

  it('an agent offering more wrong keys than MaxAuthTries is EAUTH, not retried as a lost connection', async () => {
    const { agentDir, sock, stop } = await startAgent();
    try {
      for (let i = 0; i < 12; i++) {
        const key = join(agentDir, `k${i}`);
        execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key], { stdio: 'ignore' });
        execFileSync('ssh-add', ['-q', key], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
      }
      await using strict = await startSshd(); // MaxAuthTries 6: 12 keys are too many
      const before = acceptedConnections(strict);
      const t = new SshTransport(optionsFor(strict, { privateKey: undefined, agent: sock, retries: 2, retryDelayMs: 50 }));
      const err = await caught(t.stat(strict.root));
      await t.close();
      expect(err.code).toBe('EAUTH');
      expect(err.retryable).toBe(false);
      expect(acceptedConnections(strict)).toBe(before);
      // One attempt only, not `retries` more.
      expect(readFileSync(strict.logPath, 'utf8').match(/maximum authentication attempts exceeded/gi)?.length).toBe(1);
    } finally {
      await stop();
    }
  });

  it('a server that accepts TCP but never speaks is ETIMEOUT after connectTimeoutMs', async () => {
    const silent: Server = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    try {
      const t = new SshTransport(optionsFor(server, { port, connectTimeoutMs: 400, retries: 0 }));
      const t0 = Date.now();
      const err = await caught(t.stat('/'));
      expect(err.code).toBe('ETIMEOUT');
      expect(Date.now() - t0).toBeLessThan(3000);
      await t.close();
    } finally {
      silent.close();
    }
  });

  it('a closed port is ECONNECT after the bounded retries', async () => {
    const closed: Server = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const t = new SshTransport(optionsFor(server, { port, retries: 2, retryDelayMs: 100 }));
    const t0 = Date.now();
    const err = await caught(t.stat('/'));
    expect(err.code).toBe('ECONNECT');
    // Two retries with backoff: 100 + 200 ms at least.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    await t.close();
  });

  it('aborting a connect that hangs rejects with the reason', async () => {
    const silent: Server = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    try {
      const t = new SshTransport(optionsFor(server, { port, connectTimeoutMs: 10_000 }));
      const ac = new AbortController();
      const reason = new Error('enough');
      setTimeout(() => ac.abort(reason), 100);
      await expect(t.stat('/', { signal: ac.signal })).rejects.toBe(reason);
      await t.close();
    } finally {
      silent.close();
    }
  });

  it('a closed transport refuses further work', async () => {
    const t = new SshTransport(optionsFor(server));
    await t.stat(server.root);
    await t.close();
    expect((await caught(t.stat(server.root))).code).toBe('ECONNECT');
  });

  it('unknown or bad constructor options are EBAD_CONFIG', () => {
    const base = optionsFor(server);
    const bad: unknown[] = [
      { ...base, hots: 'x' },
      { ...base, host: '' },
      { ...base, username: undefined },
      { ...base, privateKey: undefined },
      { ...base, port: 70000 },
      { ...base, hostKeyPolicy: 'yolo' },
      { ...base, requests: 0 },
      { ...base, ciphers: [] },
      { ...base, privateKeyPath: '/k' },
    ];
    for (const o of bad) {
      let err: unknown;
      try {
        new SshTransport(o as SshTransportOptions);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(o, (_k, v: unknown) => (Buffer.isBuffer(v) ? 'buf' : v))).toBeInstanceOf(StowageError);
      expect((err as StowageError).code).toBe('EBAD_CONFIG');
    }
  });
});

describe('exec refused (ForceCommand internal-sftp)', () => {
  it('capabilities say so after connect; digest streams over SFTP, free space comes from statvfs', async () => {
    await using server = await startSshd({ allowExec: false });
    await using t = new SshTransport(optionsFor(server));
    expect(t.capabilities.remoteDigest).toBe(true);
    await t.connect();
    expect(t.capabilities).toEqual({ remoteDigest: false, symlinks: true, atomicRename: true, freeSpace: true });
    const data = randomBytes(3 * 1024 * 1024);
    await t.put(data, `${server.root}/f`);
    expect(await t.digest(`${server.root}/f`, 'sha1')).toEqual({ dig: createHash('sha1').update(data).digest('hex'), size: data.length, algorithm: 'sha1' });
    const fs = await t.freeSpace(server.root);
    expect(fs.totalBytes).toBeGreaterThan(0);
  });

  it('a remote digest (md5sum on the far side) aborted midway rejects with the reason at once', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server));
    await writeFile(join(server.root, 'big'), randomBytes(256 * 1024 * 1024));
    await t.connect();
    const ac = new AbortController();
    const reason = new Error('digest no more');
    setTimeout(() => ac.abort(reason), 30);
    const t0 = Date.now();
    await expect(t.digest(`${server.root}/big`, 'md5', { signal: ac.signal })).rejects.toBe(reason);
    expect(Date.now() - t0).toBeLessThan(300);
    // The transport is still usable.
    expect((await t.digest(`${server.root}/big`, 'sha1')).size).toBe(256 * 1024 * 1024);
  });

  it('puts started together each get an SFTP channel of their own, up to `channels`', async () => {
    await using server = await startSshd({ logLevel: 'VERBOSE' });
    await using t = new SshTransport(optionsFor(server, { channels: 4 }));
    await t.connect();
    const sftpChannels = (): number => (server.logTail(10_000).match(/Starting session: subsystem 'sftp'/g) ?? []).length;
    expect(sftpChannels()).toBe(1);
    // Six puts, each held after its first MiB until all have started: more puts than channels.
    const data = Array.from({ length: 6 }, () => randomBytes(2 << 20));
    const gates = data.map((d) => gatedSource(d, 1 << 20));
    const putting = gates.map((g, i) => t.put(g.source, `${server.root}/p${i}`));
    try {
      await Promise.all(gates.map((g) => g.reached));
      // Three more opened for the puts (not one more shared by five), and no more than four in all.
      expect(sftpChannels()).toBe(4);
    } finally {
      for (const g of gates) g.release();
    }
    expect((await Promise.all(putting)).map((d) => d.dig)).toEqual(data.map((d) => md5(d)));
    expect(sftpChannels()).toBe(4);
  });

  it('over a slow link, puts started together open their channels at the same time', async () => {
    await using server = await startSshd();
    // A loopback relay that holds every chunk 100 ms each way: a 200 ms round trip.
    const held = new Set<Socket>();
    const relay = createServer((near) => {
      const far = netConnect(server.port, '127.0.0.1');
      for (const [from, to] of [
        [near, far],
        [far, near],
      ] as const) {
        held.add(from);
        from.on('data', (d: Buffer) => setTimeout(() => to.write(d), 100));
        from.on('end', () => setTimeout(() => to.end(), 100));
        from.on('error', () => to.destroy());
      }
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    const port = (relay.address() as { port: number }).port;
    const dir = await mkdtemp(join(tmpdir(), 'stowage-slow-'));
    try {
      const knownHosts = join(dir, 'known_hosts');
      await writeFile(knownHosts, `[127.0.0.1]:${port} ${server.hostKeyPublic}\n`);
      await using t = new SshTransport(optionsFor(server, { port, knownHosts, channels: 6 }));
      await t.connect();
      const data = Array.from({ length: 6 }, () => randomBytes(1 << 20));
      const gates = data.map((d) => gatedSource(d, 512 * 1024));
      const t0 = Date.now();
      const putting = gates.map((g, i) => t.put(g.source, `${server.root}/slow${i}`));
      // Awaited below; a failed timing check must not add unhandled rejections.
      for (const p of putting) p.catch(() => {});
      try {
        await Promise.all(gates.map((g) => g.reached));
        // Five more channels, each ~3 round trips to open (~0.6 s here): one
        // after another, the last put would start ~3 s late.
        expect(Date.now() - t0).toBeLessThan(2500);
      } finally {
        for (const g of gates) g.release();
      }
      expect((await Promise.all(putting)).map((d) => d.dig)).toEqual(data.map((d) => md5(d)));
    } finally {
      for (const sock of held) sock.destroy();
      await new Promise<void>((resolve) => relay.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('puts that resume while their channels fill MaxSessions check the far file by reading it back, not failing for want of an exec session', async () => {
    await using server = await startSshd({ extraConfig: ['Match all', 'MaxSessions 2'] });
    await using t = new SshTransport(optionsFor(server, { channels: 2, retryDelayMs: 50 }));
    // Exec works (probed once, with a session free): resumed puts will want md5sum.
    await writeFile(join(server.root, 'probe'), 'x');
    expect((await t.digest(`${server.root}/probe`)).dig).toBe(md5(Buffer.from('x')));
    const a = randomBytes(4 << 20);
    const b = randomBytes(4 << 20);
    const gateA = gatedSource(a, 1 << 20);
    // B stops at 1 MiB, then again at 3 MiB after its resume, until A is done.
    let releaseB1!: () => void;
    let releaseB2!: () => void;
    const b1 = new Promise<void>((r) => (releaseB1 = r));
    const b2 = new Promise<void>((r) => (releaseB2 = r));
    let reachedB!: () => void;
    const atB = new Promise<void>((r) => (reachedB = r));
    let opensB = 0;
    const sourceB: ReplayableSource = {
      size: b.length,
      open(offset: number): Readable {
        opensB += 1;
        const first = opensB === 1;
        return Readable.from(
          (async function* () {
            let at = offset;
            const stopAt = first ? 1 << 20 : 3 << 20;
            for (; at < stopAt; at += 1 << 20) yield b.subarray(at, Math.min(stopAt, at + (1 << 20)));
            if (first) {
              reachedB();
              await b1;
            } else {
              await b2;
            }
            yield b.subarray(at);
          })(),
        );
      },
    };
    const putA = t.put(gateA.source, `${server.root}/a.bin`);
    const putB = t.put(sourceB, `${server.root}/b.bin`);
    // The far checks read the `.part` files back (createReadStream).
    const readBack: string[] = [];
    const ownRead = t.createReadStream.bind(t);
    t.createReadStream = (path, options) => {
      readBack.push(path);
      return ownRead(path, options);
    };
    try {
      await Promise.all([gateA.reached, atB]);
      // Both sessions held: free space comes from statvfs, not df over exec.
      expect((await t.freeSpace(server.root)).availableBytes).toBeGreaterThan(0);
      expect(server.killConnections()).toBe(1);
      gateA.release();
      releaseB1();
      // A ends while B holds the other session: no session is left for md5sum.
      expect((await putA).dig).toBe(md5(a));
      releaseB2();
      expect((await putB).dig).toBe(md5(b));
    } finally {
      gateA.release();
      releaseB1();
      releaseB2();
    }
    expect(opensB).toBe(2);
    expect(readBack).toContain(`${server.root}/a.bin.part`);
    expect(await md5File(join(server.root, 'a.bin'))).toBe(md5(a));
    expect(await md5File(join(server.root, 'b.bin'))).toBe(md5(b));
  });

  it('a channel refused under MaxSessions ends the search for every caller waiting on it, not one refusal each', async () => {
    await using server = await startSshd({ extraConfig: ['Match all', 'MaxSessions 2'] });
    await using t = new SshTransport(optionsFor(server, { channels: 4 }));
    await t.connect();
    const refusals = (): number => (server.logTail(10_000).match(/no more sessions/g) ?? []).length;
    const data = Array.from({ length: 8 }, () => randomBytes(1 << 20));
    const dnas = await Promise.all(data.map((d, i) => t.put(d, `${server.root}/m${i}`)));
    expect(dnas.map((d) => d.dig)).toEqual(data.map((d) => md5(d)));
    // At most the opens that were on their way together (channels - 1), not one per put.
    expect(refusals()).toBeGreaterThan(0);
    expect(refusals()).toBeLessThanOrEqual(3);
  });

  it("a server's MaxSessions limit: refused channels are shared, exec gets an idle channel back, else the digest streams", async () => {
    await using server = await startSshd({ extraConfig: ['Match all', 'MaxSessions 2'], logLevel: 'VERBOSE' });
    await using t = new SshTransport(optionsFor(server, { channels: 4 }));
    const commandsRun = (): number => (server.logTail(10_000).match(/Starting session: command/g) ?? []).length;
    const data = [randomBytes(3 << 20), randomBytes(3 << 20), randomBytes(3 << 20)];
    // Three puts at once: one channel more opens (2 sessions), the third is refused and the puts share.
    const dnas = await Promise.all(data.map((d, i) => t.put(d, `${server.root}/f${i}`)));
    expect(dnas.map((d) => d.dig)).toEqual(data.map((d) => md5(d)));
    // Both sessions are busy with slow puts: md5sum cannot get a session, the digest streams over SFTP.
    const slow = (d: Buffer): ReplayableSource => ({
      size: d.length,
      open: (off) =>
        Readable.from(
          (async function* () {
            for (let o = off; o < d.length; o += 64 * 1024) {
              await new Promise((r) => setTimeout(r, 15));
              yield d.subarray(o, o + 64 * 1024);
            }
          })(),
        ),
    });
    const busy = [t.put(slow(data[0]!), `${server.root}/s0`), t.put(slow(data[1]!), `${server.root}/s1`)];
    await new Promise((r) => setTimeout(r, 150));
    expect(await t.digest(`${server.root}/f1`)).toEqual({ dig: md5(data[1]!), size: data[1]!.length, algorithm: 'md5' });
    expect(commandsRun()).toBe(0);
    await Promise.all(busy);
    // Idle again: the extra SFTP channel is closed to make room, md5sum runs on the far side.
    expect(await t.digest(`${server.root}/f2`, 'sha256')).toEqual({ dig: createHash('sha256').update(data[2]!).digest('hex'), size: data[2]!.length, algorithm: 'sha256' });
    expect(t.capabilities.remoteDigest).toBe(true);
    // The probe (echo) and sha256sum ran on the far side.
    expect(commandsRun()).toBe(2);
    expect((await t.list(server.root)).map((e) => e.name)).toEqual(['f0', 'f1', 'f2', 's0', 's1']);
  });

  it('with exec allowed, capabilities report remote digests; useExec:false turns them off', async () => {
    await using server = await startSshd();
    const t = new SshTransport(optionsFor(server));
    await t.connect();
    expect(t.capabilities.remoteDigest).toBe(true);
    await t.close();
    const t2 = new SshTransport(optionsFor(server, { useExec: false }));
    await t2.connect();
    expect(t2.capabilities.remoteDigest).toBe(false);
    await t2.put(Buffer.from('abc'), `${server.root}/a`);
    expect((await t2.digest(`${server.root}/a`)).dig).toBe(md5(Buffer.from('abc')));
    await t2.close();
  });
});

describe('LockDir over SSH under contention', () => {
  it('two holders taking turns on one far lock never see a bare SFTP FAILURE (a lock released between the mkdir and its check)', async () => {
    // The race is a matter of timing: without the fix, about one run in two of these 500 turns met it here.
    await using server = await startSshd();
    const { LockDir } = await import('../../../src/lock/lock-dir.js');
    await using ta = new SshTransport(optionsFor(server));
    await using tb = new SshTransport(optionsFor(server));
    const dir = `${server.root}/contended`;
    await mkdir(dir);
    const errors: string[] = [];
    const turns = async (t: SshTransport, who: string): Promise<number> => {
      let held = 0;
      for (let i = 0; i < 250; i++) {
        const lock = new LockDir(dir, { transport: t, purpose: who });
        try {
          await lock.acquire({ waitMs: 20_000 });
          held++;
          await lock.release();
        } catch (err) {
          errors.push(`${(err as StowageError).code}: ${(err as Error).message}`);
        }
      }
      return held;
    };
    const [a, b] = await Promise.all([turns(ta, 'a'), turns(tb, 'b')]);
    expect(errors).toEqual([]);
    expect(a + b).toBe(500);
  });
});

describe('a folder the far account may read but not search', () => {
  it('is not listed as empty (the SFTP server leaves out what it cannot look at): EIO, so nothing is planned or deleted from it', async () => {
    // As root the permission bits are not enforced: the far SFTP server then
    // runs without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH, like a normal user's.
    const asUser = isRoot() ? ['ForceCommand /usr/bin/setpriv --bounding-set -dac_override,-dac_read_search /usr/lib/openssh/sftp-server'] : [];
    await using server = await startSshd({ extraConfig: asUser });
    await using t = new SshTransport(optionsFor(server));
    const dir = join(server.root, 'set', 'data');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'svn.tar.gz'), 'archive');
    await writeFile(join(dir, 'svn.tar.gz.dna'), '{}');
    expect((await t.list(`${server.root}/set/data`)).map((e) => e.name)).toEqual(['svn.tar.gz', 'svn.tar.gz.dna']);
    await chmod(dir, 0o444);
    try {
      const err = await caught(t.list(`${server.root}/set/data`));
      expect(err.code).toBe('EIO');
      expect(err.message).toMatch(/not search it/);
      // The folder above, searchable, still lists.
      expect((await t.list(`${server.root}/set`)).map((e) => e.name)).toEqual(['data']);
    } finally {
      await chmod(dir, 0o755);
    }
  });
});

describe('a recursive remove of a tree holding a name that is not UTF-8', () => {
  it('is refused before anything is removed, naming the entry (SFTP cannot name it back), instead of emptying the rest and failing "not empty"', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server));
    const tree = join(server.root, 'tree');
    await mkdir(join(tree, 'a', 'deep'), { recursive: true });
    await mkdir(join(tree, 'b'));
    await writeFile(join(tree, 'a', 'deep', 'keep1'), 'one');
    await writeFile(join(tree, 'b', 'keep2'), 'two');
    await writeFile(join(tree, 'top'), 'three');
    // "caf\xe9" in Latin-1.
    await writeFile(Buffer.concat([Buffer.from(join(tree, 'b') + '/'), Buffer.from([0x63, 0x61, 0x66, 0xe9])]), 'latin1');
    // A real name holding U+FFFD itself is no reason to refuse.
    await writeFile(join(tree, 'a', 'real-\uFFFD-name'), 'ok');
    const err = await caught(t.remove(tree, { recursive: true }));
    expect(err.code).toBe('EIO');
    expect(err.message).toContain('not valid UTF-8');
    expect(err.message).toContain(`${tree}/b/caf`);
    expect(err.message).toMatch(/Nothing was removed/);
    expect(await readFile(join(tree, 'a', 'deep', 'keep1'), 'utf8')).toBe('one');
    expect(await readFile(join(tree, 'b', 'keep2'), 'utf8')).toBe('two');
    expect(await readFile(join(tree, 'top'), 'utf8')).toBe('three');
    expect(await readdir(join(tree, 'a'))).toEqual(['deep', 'real-\uFFFD-name']);
    // Once the name is fixed on the far host, the tree goes whole.
    await rm(Buffer.concat([Buffer.from(join(tree, 'b') + '/'), Buffer.from([0x63, 0x61, 0x66, 0xe9])]));
    await t.remove(tree, { recursive: true });
    expect(await readdir(server.root)).toEqual([]);
  });
});

describe('a put with a read-only mode', () => {
  it('keeps its .part writable by its owner, resumes after a cut, and lands with exactly the mode asked for', async () => {
    // As root the permission bits are not enforced: the far SFTP server then
    // runs without CAP_DAC_OVERRIDE, like a normal user's.
    const asUser = isRoot() ? ['ForceCommand /usr/bin/setpriv --bounding-set -dac_override,-dac_read_search /usr/lib/openssh/sftp-server'] : [];
    await using server = await startSshd({ extraConfig: asUser });
    await using t = new SshTransport(optionsFor(server, { retryDelayMs: 50 }));
    const data = randomBytes(24 * 1024 * 1024);
    const cutAt = 8 * 1024 * 1024;
    const target = `${server.root}/ro.bin`;
    const { source, release, opens } = gatedSource(data, cutAt);
    try {
      const putting = t.put(source, target, { mode: 0o444 });
      putting.catch(() => {});
      await farSizeAtLeast(`${target}.part`, cutAt);
      expect((await stat(`${target}.part`)).mode & 0o600).toBe(0o600);
      await new Promise((r) => setTimeout(r, 300));
      expect(server.killConnections()).toBe(1);
      release();
      expect(await putting).toEqual({ dig: md5(data), size: data.length, algorithm: 'md5' });
    } finally {
      release();
    }
    expect(opens()).toBe(2);
    expect((await stat(target)).mode & 0o7777).toBe(0o444);
    expect(await md5File(target)).toBe(md5(data));
    expect(await readdir(server.root)).toEqual(['ro.bin']);
  });
});

describe('a local source that is not a regular file', () => {
  it('a FIFO with no writer is refused at once with EIO, as LocalTransport does; nothing is left on the far side', async () => {
    await using server = await startSshd();
    await using t = new SshTransport(optionsFor(server));
    const fifo = join(scratch, `fifo-${Math.random().toString(36).slice(2)}`);
    execFileSync('mkfifo', [fifo]);
    const t0 = performance.now();
    try {
      const putting = t.put(fifo, `${server.root}/sub/fifo.bin`);
      const hung = new Promise<'hung'>((r) => setTimeout(() => r('hung'), 5000));
      expect(await Promise.race([putting.then(() => 'sent', () => 'refused'), hung])).toBe('refused');
      const err = await caught(putting);
      expect(err.code).toBe('EIO');
      expect(err.message).toContain('not a regular file');
      expect(performance.now() - t0).toBeLessThan(2000);
    } finally {
      // Without the fix a read-open of the FIFO is blocked: a writer lets it go.
      try {
        closeSync(openSync(fifo, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK));
      } catch {
        // No reader waiting.
      }
    }
    expect((await readdir(server.root, { recursive: true })).filter((n) => n.includes('fifo'))).toEqual([]);
  });
});

describe('digest of a file that changes while it is digested', () => {
  /**
   * A folder holding an `md5sum` that appends 1 MiB to `file` before it
   * digests its stdin: every time, or only while `once` exists.
   */
  async function appendingMd5sum(file: string, once: string | undefined): Promise<{ bin: string; runs: () => number }> {
    const bin = join(scratch, `bin-${Math.random().toString(36).slice(2)}`);
    await mkdir(bin);
    const log = join(bin, 'runs.log');
    const real = execFileSync('sh', ['-c', 'command -v md5sum'], { encoding: 'utf8' }).trim();
    const append = `head -c 1048576 /dev/zero >> '${file}'`;
    const script = [
      '#!/bin/sh',
      `echo run >> '${log}'`,
      once === undefined ? append : `if [ -e '${once}' ]; then rm -f '${once}'; ${append}; fi`,
      `exec ${real} "$@"`,
      '',
    ].join('\n');
    await writeFile(join(bin, 'md5sum'), script, { mode: 0o755 });
    await writeFile(log, '');
    return { bin, runs: () => readFileSync(log, 'utf8').split('\n').filter(Boolean).length };
  }

  it('a file appended to between the stat and the far md5sum is digested again: digest and size describe the same bytes', async () => {
    const dir = await mkdtemp(join(scratch, 'grow-'));
    const file = join(dir, 'growing.bin');
    const once = join(dir, 'once');
    const { bin, runs } = await appendingMd5sum(file, once);
    await using server = await startSshd({ extraConfig: [`SetEnv PATH=${bin}:/usr/bin:/bin`] });
    await using t = new SshTransport(optionsFor(server));
    const first = randomBytes(1024 * 1024);
    await writeFile(file, first);
    await writeFile(once, '');
    const dna = await t.digest(file, 'md5');
    const now = await readFile(file);
    expect(now.length).toBe(2 * 1024 * 1024);
    expect(dna).toEqual({ dig: md5(now), size: now.length, algorithm: 'md5' });
    expect(runs()).toBe(2);
  });

  it('a file that keeps changing is refused with a retryable EIO, never a DNA whose digest is not of its size', async () => {
    const dir = await mkdtemp(join(scratch, 'grow-'));
    const file = join(dir, 'growing.bin');
    const { bin, runs } = await appendingMd5sum(file, undefined);
    await using server = await startSshd({ extraConfig: [`SetEnv PATH=${bin}:/usr/bin:/bin`] });
    await using t = new SshTransport(optionsFor(server));
    await writeFile(file, randomBytes(1024 * 1024));
    const err = await caught(t.digest(file, 'md5'));
    expect(err.code).toBe('EIO');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('changed while it was digested');
    expect(runs()).toBe(2);
  });
});

describe('streamed digest (exec refused) of a file that changes while it is digested', () => {
  it('a file appended to once is digested again: the DNA is of the file as it is', async () => {
    await using server = await startSshd({ allowExec: false });
    await using t = new SshTransport(optionsFor(server));
    const file = join(server.root, 'grows-once.bin');
    await writeFile(file, randomBytes(4 * 1024 * 1024));
    let appended = 0;
    // The first report of each attempt comes after its stat, before the file is read.
    const dna = await t.digest(file, 'md5', {
      onProgress: () => {
        if (appended === 0) appendFileSync(file, randomBytes(1024 * 1024));
        appended += 1;
      },
    });
    expect(t.capabilities.remoteDigest).toBe(false);
    const now = await readFile(file);
    expect(now.length).toBe(5 * 1024 * 1024);
    expect(dna).toEqual({ dig: md5(now), size: now.length, algorithm: 'md5' });
  });

  it('a file that keeps changing is refused with a retryable EIO, as the md5sum path refuses it', async () => {
    await using server = await startSshd({ allowExec: false });
    await using t = new SshTransport(optionsFor(server));
    const file = join(server.root, 'keeps-growing.bin');
    await writeFile(file, randomBytes(4 * 1024 * 1024));
    let appends = 0;
    const err = await caught(
      t.digest(file, 'md5', {
        onProgress: (p) => {
          if (p.bytesDone !== 0) return;
          appends += 1;
          appendFileSync(file, randomBytes(64 * 1024));
        },
      }),
    );
    expect(appends).toBe(2);
    expect(err.code).toBe('EIO');
    expect(err.retryable).toBe(true);
    expect(err.message).toContain('changed while it was digested');
  });
});

describe('an aborted digest waiting for an exec slot', () => {
  it('rejects with the reason at once and its command never starts on the far side', async () => {
    await using server = await startSshd({ logLevel: 'VERBOSE' });
    await using t = new SshTransport(optionsFor(server));
    const commandsRun = (): number => (server.logTail(10_000).match(/Starting session: command/g) ?? []).length;
    // 1 GiB of holes: four md5sums at once read it for seconds.
    const big = join(server.root, 'sparse.img');
    await writeFile(big, '');
    await truncate(big, 1024 ** 3);
    const small = Buffer.from('small');
    await writeFile(join(server.root, 'small'), small);
    await t.connect();
    const before = commandsRun();
    // The 4 exec slots taken by slow digests.
    const slow = [0, 1, 2, 3].map(() => t.digest(big, 'md5'));
    slow.forEach((p) => p.catch(() => {}));
    const deadline = Date.now() + 10_000;
    while (commandsRun() < before + 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(commandsRun()).toBe(before + 4);
    const ac = new AbortController();
    const reason = new Error('no digest after all');
    const fifth = t.digest(`${server.root}/small`, 'sha1', { signal: ac.signal });
    fifth.catch(() => {});
    await new Promise((r) => setTimeout(r, 200));
    const t0 = performance.now();
    ac.abort(reason);
    await expect(fifth).rejects.toBe(reason);
    expect(performance.now() - t0).toBeLessThan(200);
    const dnas = await Promise.all(slow);
    expect(dnas.every((d) => d.size === 1024 ** 3)).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    expect(commandsRun()).toBe(before + 4);
    // Every slot was given back: a later digest runs on the far side.
    expect((await t.digest(`${server.root}/small`, 'sha1')).dig).toBe(createHash('sha1').update(small).digest('hex'));
    expect(commandsRun()).toBe(before + 5);
  });
});

describe('an SFTP server that never answers', () => {
  const SFTP_SERVER = '/usr/lib/openssh/sftp-server';

  /**
   * A folder with `sftp.sh`: the first session it runs (when `firstWorks`)
   * is a real sftp-server; the others write their pid to `pids`, then read
   * their requests and never answer or, with `lateSeconds`, become a real
   * sftp-server after that long.
   */
  async function stallingSubsystem(firstWorks: boolean, lateSeconds?: number): Promise<{ dir: string; script: string; pids: () => Promise<number[]>; [Symbol.asyncDispose]: () => Promise<void> }> {
    if (firstWorks || lateSeconds !== undefined) await stat(SFTP_SERVER); // ENOENT names the missing program (Debian's openssh-sftp-server)
    const dir = await mkdtemp(join(tmpdir(), 'stowage-stall-'));
    const script = join(dir, 'sftp.sh');
    const first = firstWorks ? `if mkdir '${dir}/first' 2>/dev/null; then exec ${SFTP_SERVER}; fi\n` : '';
    const rest = lateSeconds === undefined ? 'exec cat > /dev/null' : `sleep ${lateSeconds}\nexec ${SFTP_SERVER}`;
    await writeFile(script, `#!/bin/sh\n${first}echo $$ >> '${dir}/pids'\n${rest}\n`, { mode: 0o755 });
    const pids = async (): Promise<number[]> =>
      (await readFile(join(dir, 'pids'), 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number);
    return { dir, script, pids, [Symbol.asyncDispose]: () => rm(dir, { recursive: true, force: true }) };
  }

  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  /** `p` settled within `ms`, or an Error saying it was still pending. */
  async function within<T>(p: Promise<T>, ms: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms)))]);
    } finally {
      clearTimeout(timer);
    }
  }

  it('a connect whose SFTP session never opens is ETIMEOUT after connectTimeoutMs, and the connection is ended', async () => {
    await using stall = await stallingSubsystem(false);
    await using server = await startSshd({ sftpSubsystem: stall.script });
    await using t = new SshTransport(optionsFor(server, { connectTimeoutMs: 1000, retries: 0 }));
    const t0 = Date.now();
    const err = await within(caught(t.stat(server.root)), 10_000);
    expect(err.code).toBe('ETIMEOUT');
    expect(err.message).toMatch(/no SFTP session within 1000 ms.*Subsystem sftp/);
    expect(err.details['phase']).toBe('sftp');
    expect(Date.now() - t0).toBeLessThan(5000);
    // The far side saw the connection end: its stalled SFTP program got EOF and exited.
    const [pid] = await stall.pids();
    expect(pid).toBeGreaterThan(0);
    const deadline = Date.now() + 5000;
    while (alive(pid!) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(alive(pid!)).toBe(false);
  });

  it('an extra channel given up while its SFTP server starts slowly is closed, freeing its far session', async () => {
    await using stall = await stallingSubsystem(true, 2);
    await using server = await startSshd({ sftpSubsystem: stall.script });
    await using t = new SshTransport(optionsFor(server, { channels: 2, idleTimeoutMs: 1000 }));
    await t.connect();
    const data = Array.from({ length: 2 }, () => randomBytes(1 << 20));
    expect((await within(Promise.all(data.map((d, i) => t.put(d, `${server.root}/p${i}`))), 10_000)).map((d) => d.dig)).toEqual(data.map((d) => md5(d)));
    const [late] = await stall.pids();
    expect(late).toBeGreaterThan(0);
    // Its server would answer about 2 s after it was asked for; given up at 1 s, it is closed: its program ends while the connection lives on.
    const deadline = Date.now() + 8000;
    while (alive(late!) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(alive(late!)).toBe(false);
    expect((await t.stat(`${server.root}/p0`))?.size).toBe(1 << 20);
  });

  it('close() while the SFTP session is being opened cuts it at once: the waiting operation is ECONNECT, not a timeout', async () => {
    await using stall = await stallingSubsystem(false);
    await using server = await startSshd({ sftpSubsystem: stall.script });
    const t = new SshTransport(optionsFor(server, { connectTimeoutMs: 8000, retries: 0 }));
    const op = caught(t.stat(server.root));
    const deadline = Date.now() + 8000;
    while ((await stall.pids()).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect((await stall.pids()).length).toBe(1);
    const t0 = Date.now();
    await within(t.close(), 10_000);
    const err = await within(op, 10_000);
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(err.code).toBe('ECONNECT');
    expect(err.message).toMatch(/closed while connecting/);
  });

  it('extra channels whose open is never answered are given up after idleTimeoutMs and closed (their far sessions end); the puts share the open one, and no more opens are tried', async () => {
    await using stall = await stallingSubsystem(true);
    await using server = await startSshd({ sftpSubsystem: stall.script });
    await using t = new SshTransport(optionsFor(server, { channels: 4, idleTimeoutMs: 1000 }));
    await t.connect();
    const data = Array.from({ length: 4 }, () => randomBytes(2 << 20));
    const gates = data.map((d) => gatedSource(d, 1 << 20));
    const t0 = Date.now();
    const putting = gates.map((g, i) => t.put(g.source, `${server.root}/p${i}`));
    putting.forEach((p) => p.catch(() => {}));
    try {
      // Each put waited for the open it asked for, then went on over the first channel.
      await within(Promise.all(gates.map((g) => g.reached)), 10_000);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    } finally {
      for (const g of gates) g.release();
    }
    expect((await within(Promise.all(putting), 10_000)).map((d) => d.dig)).toEqual(data.map((d) => md5(d)));
    // Three opens went out (4 channels, one open), all left unanswered.
    expect((await stall.pids()).length).toBe(3);
    // Later puts, started together, do not wait for opens again.
    const more = Array.from({ length: 3 }, () => randomBytes(1 << 20));
    const t1 = Date.now();
    expect((await within(Promise.all(more.map((d, i) => t.put(d, `${server.root}/q${i}`))), 10_000)).map((d) => d.dig)).toEqual(more.map((d) => md5(d)));
    expect(Date.now() - t1).toBeLessThan(800);
    const stalled = await stall.pids();
    expect(stalled.length).toBe(3);
    // The channels given up were closed: their far sessions end while the connection lives on.
    const deadline = Date.now() + 5000;
    while (stalled.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(stalled.filter(alive)).toEqual([]);
    expect((await t.stat(`${server.root}/q0`))?.size).toBe(1 << 20);
  });
});
