/**
 * sync() over a real sshd: push (local → ssh), pull (ssh → local) and
 * ssh → ssh, the LOCKED protocol seen from the remote side, the remote
 * mutant check, guards, and a connection cut in the middle of a sync.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline, Transform, type Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Archiver } from '../../../src/archive/archiver.js';
import { DnaDigest } from '../../../src/dna/dna-digest.js';
import { StowageError, type StowageWarning } from '../../../src/errors.js';
import { LockDir } from '../../../src/lock/lock-dir.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { transportLockFs } from '../../../src/transport/lock-fs.js';
import { SshTransport } from '../../../src/transport/ssh/ssh-transport.js';
import { sync } from '../../../src/transport/sync.js';
import type { OpOptions, Transport } from '../../../src/transport/transport.js';
import { startSshd, type SshdServer } from '../../support/index.js';

const md5 = (b: Uint8Array | string): string => createHash('md5').update(b).digest('hex');
const T0 = Date.UTC(2022, 1, 2, 3, 4, 5);
const local = new LocalTransport();

/**
 * `t` seen through a wrapper that is not a LocalTransport (so sync streams
 * from it instead of handing put a path) and whose read streams call
 * `beforeChunk(bytes)` before passing each chunk on.
 */
function gatedReads(t: LocalTransport, beforeChunk: (bytes: number) => Promise<void>): Transport {
  return new Proxy(t, {
    getPrototypeOf: () => Object.prototype,
    get(target, prop) {
      if (prop === 'createReadStream') {
        return (path: string, options?: OpOptions & { start?: number }): Readable => {
          const inner = target.createReadStream(path, options);
          const out = new Transform({
            transform(chunk: Buffer, _enc, cb) {
              beforeChunk(chunk.length).then(() => cb(null, chunk), cb);
            },
          });
          return pipeline(inner, out, () => {});
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  }) as unknown as Transport;
}

/**
 * `t` whose reads hold back from the first chunk at which `when(bytesSent)`
 * holds until `release()` is called; `reached` resolves when they do.
 */
function heldReads(t: LocalTransport, when: (sent: number) => boolean): { transport: Transport; reached: Promise<void>; release: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let reachedGate!: () => void;
  const reached = new Promise<void>((resolve) => (reachedGate = resolve));
  let sent = 0;
  const transport = gatedReads(t, async (bytes) => {
    sent += bytes;
    if (!when(sent)) return;
    reachedGate();
    await gate;
  });
  return { transport, reached, release };
}

let server: SshdServer;
let remote: SshTransport;
let scratch: string;
let src: string;
let n = 0;

async function put(path: string, content: string | Buffer, mtimeMs = T0): Promise<void> {
  await mkdir(join(path, '..'), { recursive: true });
  await writeFile(path, content);
  await utimes(path, new Date(mtimeMs), new Date(mtimeMs));
}

async function walk(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const rel = prefix + e.name;
    if (e.isDirectory()) out.push(rel + '/', ...(await walk(join(dir, e.name), rel + '/')));
    else if (e.isSymbolicLink()) out.push(`${rel} -> ${await readlink(join(dir, e.name))}`);
    else out.push(`${rel} ${md5(await readFile(join(dir, e.name)))}`);
  }
  return out;
}

async function tarballs(dir: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const name = `2024/01/${String(i + 1).padStart(2, '0')}/svn-${i}.tar.gz`;
    const data = randomBytes(50_000 + i * 1000);
    await put(join(dir, name), data);
    await put(join(dir, name + '.dna'), JSON.stringify({ dig: md5(data), size: data.length }));
  }
}

beforeAll(async () => {
  server = await startSshd();
  remote = new SshTransport({ host: server.host, port: server.port, username: server.username, privateKey: server.privateKey, knownHosts: server.knownHostsPath, retryDelayMs: 50 });
  scratch = await mkdtemp(join(tmpdir(), 'stowage-ssh-sync-'));
});
afterAll(async () => {
  await remote?.close();
  await server?.stop();
  await rm(scratch, { recursive: true, force: true });
});
beforeEach(async () => {
  src = join(scratch, `src${++n}`);
  await mkdir(src);
});

describe('sync over SSH', () => {
  it('pushes a tree with LOCKED planted on the remote side while it runs; remote readers skip it; the sidecars are checked remotely', async () => {
    await tarballs(src, 6);
    await symlink('2024/01/06/svn-5.tar.gz', join(src, 'last'));
    const dst = `${server.root}/push${n}`;
    // The sync is held at its first chunk sent; meanwhile readers on the
    // remote host (the sshd's files are on this machine) look at the tree.
    const held = heldReads(local, () => true);
    const running = sync(held.transport, src, remote, dst, { lock: true, concurrency: 1 });
    const observed: { locked: boolean; scanWarnings: string[]; scanResults: number; archiveError: string | undefined } = { locked: false, scanWarnings: [], scanResults: 0, archiveError: undefined };
    try {
      await Promise.race([held.reached, running.then(() => Promise.reject(new Error('the sync ended before reaching the gate')))]);
      observed.locked = existsSync(join(dst, 'LOCKED', 'owner.json'));
      for await (const _ of DnaDigest.scan(dst, { onWarning: (w) => observed.scanWarnings.push(w.code) })) observed.scanResults++;
      observed.archiveError = await Archiver.create(dst, join(scratch, `push${n}.tar.gz`)).then(
        () => undefined,
        (e: unknown) => (e as StowageError).code,
      );
    } finally {
      held.release();
    }
    const r = await running;
    expect(observed).toEqual({ locked: true, scanWarnings: ['ELOCKED'], scanResults: 0, archiveError: 'ELOCKED' });
    expect(existsSync(join(scratch, `push${n}.tar.gz`))).toBe(false);
    expect(existsSync(join(dst, 'LOCKED'))).toBe(false);
    expect(await walk(dst)).toEqual(await walk(src));
    expect((await readFile(join(dst, '2024/01/01/svn-0.tar.gz.dna'), 'utf8')).length).toBeGreaterThan(10);
    expect(r.verified).toHaveLength(6);
    expect(r.verified.every((v) => v.ok)).toBe(true);
    expect(r.mutants).toEqual([]);
    expect(r.linked).toEqual(['last']);
    // Second run: a listing, nothing sent.
    const again = await sync(local, src, remote, dst, { lock: true });
    expect(again.copied).toEqual([]);
    expect(again.plan.unchanged).toBe(again.plan.sourceEntries);
  });

  it('a reader on the remote host (DnaDigest.scan) skips the tree while the sync holds LOCKED', async () => {
    await tarballs(src, 3);
    const dst = `${server.root}/scan${n}`;
    await mkdir(dst);
    const lock = new LockDir(dst, { fs: transportLockFs(remote), purpose: 'test' });
    await lock.acquire();
    const warnings: StowageWarning[] = [];
    try {
      await sync(local, src, remote, join(dst, 'sub'));
      const results = [];
      for await (const res of DnaDigest.scan(dst, { onWarning: (w) => warnings.push(w) })) results.push(res);
      expect(results).toEqual([]);
      expect(warnings.map((w) => w.code)).toEqual(['ELOCKED']);
    } finally {
      await lock.release();
    }
    const results = [];
    for await (const res of DnaDigest.scan(dst)) results.push(res);
    expect(results.map((x) => x.ok)).toEqual([true, true, true]);
  });

  it('reports a file corrupted on the far side as a mutant (remote digest ≠ sidecar, ≠ bytes sent) and does not delete', async () => {
    await tarballs(src, 3);
    const dst = `${server.root}/mutant${n}`;
    await put(join(dst, 'obsolete.tar.gz'), 'old');
    let corrupted = false;
    const r = await sync(local, src, remote, dst, {
      delete: 'after',
      maxDeleteFraction: 1,
      onProgress: (p) => {
        if (p.phase === 'verify' && !corrupted) {
          corrupted = true;
          // Bit rot between the copy and the check, on the remote disk (synchronous: before the check starts).
          writeFileSync(join(dst, '2024/01/02/svn-1.tar.gz'), randomBytes(51_000));
        }
      },
    });
    expect(corrupted).toBe(true);
    expect(r.mutants.map((m) => m.path)).toEqual(['2024/01/02/svn-1.tar.gz']);
    const m = r.mutants[0]!;
    expect(m.sent?.dig).toBe(m.expected.dig);
    expect(m.actual.dig).not.toBe(m.expected.dig);
    expect(r.deleteSkipped).toBe('mutants');
    expect(existsSync(join(dst, 'obsolete.tar.gz'))).toBe(true);
  });

  it('delete-after with the guard over SSH: refused above the limit, done within it', async () => {
    await tarballs(src, 4);
    const dst = `${server.root}/guard${n}`;
    await sync(local, src, remote, dst);
    await rm(join(src, '2024/01/01'), { recursive: true });
    await rm(join(src, '2024/01/02'), { recursive: true });
    const err = await sync(local, src, remote, dst, { delete: 'after', maxDelete: 3 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StowageError);
    expect((err as StowageError).code).toBe('EDELETE_GUARD');
    expect((await readdir(join(dst, '2024/01'))).sort()).toEqual(['01', '02', '03', '04']);
    const ok = await sync(local, src, remote, dst, { delete: 'after', maxDelete: 6 });
    expect(ok.deleted).toHaveLength(6);
    expect(await walk(dst)).toEqual(await walk(src));
  });

  it('pulls (ssh → local) and copies ssh → ssh, mtimes kept', async () => {
    await tarballs(src, 3);
    const far = `${server.root}/pull${n}`;
    await sync(local, src, remote, far);
    const back = join(scratch, `back${n}`);
    const pulled = await sync(remote, far, local, back);
    expect(pulled.copied).toHaveLength(6);
    expect(pulled.verified.every((v) => v.ok)).toBe(true);
    expect(await walk(back)).toEqual(await walk(src));
    expect((await local.stat(join(back, '2024/01/01/svn-0.tar.gz'))).mtimeMs).toBe(T0);
    const other = new SshTransport({ host: server.host, port: server.port, username: server.username, privateKey: server.privateKey, knownHosts: server.knownHostsPath });
    try {
      const copy = await sync(remote, far, other, `${server.root}/copy${n}`);
      expect(copy.copied).toHaveLength(6);
      expect(await walk(`${server.root}/copy${n}`)).toEqual(await walk(src));
      expect((await sync(remote, far, other, `${server.root}/copy${n}`)).copied).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it('a far name that is not valid UTF-8 (Latin-1) is reported on a pull, neither copied nor deleted; the rest is pulled', async () => {
    const far = `${server.root}/latin${n}`;
    await mkdir(far, { recursive: true });
    await writeFile(join(far, 'ok.dat'), 'ok');
    await writeFile(Buffer.concat([Buffer.from(far + '/run_'), Buffer.from([0xe9]), Buffer.from('.dat')]), 'latin-1 name');
    const back = join(scratch, `latin-back${n}`);
    const warnings: StowageWarning[] = [];
    const r = await sync(remote, far, local, back, { delete: 'after', onWarning: (w) => void warnings.push(w) });
    expect(r.copied.map((c) => c.path)).toEqual(['ok.dat']);
    expect(warnings.map((w) => [w.code, w.path])).toEqual([['EUNSAFE_PATH', 'run_\uFFFD.dat']]);
  });

  it('survives a connection cut in the middle of a sync', async () => {
    for (let i = 0; i < 8; i++) await put(join(src, `big${i}.bin`), randomBytes(4 * 1024 * 1024));
    const dst = `${server.root}/cut${n}`;
    const accepted = (): number => readFileSync(server.logPath, 'utf8').split('\n').filter((l) => l.includes('Accepted publickey')).length;
    const before = accepted();
    // Reads of the source hold back once 10 MiB went out, until the cut is
    // made: the cut always lands mid-sync (progress reports are throttled,
    // so a trigger on them can fire only at the end).
    const { transport: gated, reached, release } = heldReads(local, (sent) => sent >= 10 * 1024 * 1024);
    const syncing = sync(gated, src, remote, dst, { concurrency: 3 });
    syncing.catch(() => {});
    let cut = 0;
    try {
      await reached;
      await new Promise((r) => setTimeout(r, 300));
      cut = server.killConnections();
    } finally {
      release();
    }
    const r = await syncing;
    expect(cut).toBe(1);
    expect(r.copied).toHaveLength(8);
    expect(await walk(dst)).toEqual(await walk(src));
    expect(accepted()).toBeGreaterThan(before);
  });
});
