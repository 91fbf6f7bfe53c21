import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, open, readdir, readFile, readlink, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StowageError, type StowageWarning } from '../../../src/errors.js';
import { LockDir } from '../../../src/lock/lock-dir.js';
import { DnaDigest } from '../../../src/dna/index.js';
import type { Progress } from '../../../src/progress.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { sync } from '../../../src/transport/sync.js';
import { transportLockFs } from '../../../src/transport/lock-fs.js';
import type { PutOptions, PutSource, Transport } from '../../../src/transport/transport.js';

const md5 = (b: Uint8Array | string): string => createHash('md5').update(b).digest('hex');
const T0 = Date.UTC(2023, 4, 5, 6, 7, 8);

let base: string;
let src: string;
let dst: string;
const local = new LocalTransport();

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

async function caught(p: Promise<unknown>): Promise<StowageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StowageError);
  return err as StowageError;
}

/** A LocalTransport that fails `put` for some paths and counts puts in flight: a fault injector, not a mock of a server. */
function faulty(failOn: (path: string) => boolean): LocalTransport & { maxInFlight: number } {
  const t = new LocalTransport() as LocalTransport & { maxInFlight: number };
  t.maxInFlight = 0;
  let inFlight = 0;
  const realPut = t.put.bind(t);
  t.put = async (source: PutSource, path: string, options?: PutOptions) => {
    inFlight++;
    t.maxInFlight = Math.max(t.maxInFlight, inFlight);
    try {
      await new Promise((r) => setTimeout(r, 5));
      if (failOn(path)) throw new StowageError('ENOSPACE', `No space left to write ${path}.`, { details: { path } });
      return await realPut(source, path, options);
    } finally {
      inFlight--;
    }
  };
  return t;
}

/**
 * Another writer holding the destination's lock, and a transport over it
 * on which, the moment the destination is listed while that lock is held,
 * the writer does `change` and lets go: a plan from such a listing is stale.
 */
async function writerLetsGoOnListing(change: () => Promise<unknown>): Promise<{ held: LockDir; watcher: LocalTransport; listedWhileHeld: () => boolean }> {
  const held = new LockDir(dst, { purpose: 'someone else' });
  await held.acquire();
  const watcher = faulty(() => false);
  const realList = watcher.list.bind(watcher);
  let listed = false;
  watcher.list = async (path, opts) => {
    const r = await realList(path, opts);
    if (held.held) {
      listed = true;
      await change();
      await held.release();
    }
    return r;
  };
  return { held, watcher, listedWhileHeld: () => listed };
}

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-sync-'));
  src = join(base, 'src');
  dst = join(base, 'dst');
  await mkdir(src);
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

async function sampleTree(): Promise<void> {
  await put(join(src, 'a.txt'), 'alpha');
  await put(join(src, 'runs', 'run1.dat'), Buffer.alloc(300_000, 1));
  await put(join(src, 'runs', 'deep', 'run2.dat'), Buffer.alloc(70_000, 2));
  await mkdir(join(src, 'empty'));
  await symlink('runs/run1.dat', join(src, 'latest'));
  await chmod(join(src, 'a.txt'), 0o600);
  await utimes(join(src, 'runs'), new Date(T0), new Date(T0));
}

describe('sync between two LocalTransports', () => {
  it('a custom lockName does not make the standard LOCKED of another writer an ordinary folder: neither deleted, copied nor ignored at a root', async () => {
    for (let i = 0; i < 6; i++) await put(join(src, `f${i}`), `file ${i}`);
    await put(join(dst, 'sub', 'run.mid'), 'old run');
    const writer = new LockDir(join(dst, 'sub'), { purpose: 'retention at work' });
    await writer.acquire();
    try {
      const warnings: StowageWarning[] = [];
      const r = await sync(local, src, local, dst, { delete: 'after', maxDeleteFraction: 1, lock: true, lockName: 'SYNC.LOCK', onWarning: (w) => warnings.push(w) });
      expect(r.deleted).toEqual([]);
      expect(existsSync(join(dst, 'sub', 'LOCKED', 'owner.json'))).toBe(true);
      expect(existsSync(join(dst, 'sub', 'run.mid'))).toBe(true);
      expect(existsSync(join(dst, 'SYNC.LOCK'))).toBe(false); // its own lock, released
      // A source tree under the standard LOCKED is being written: not synced.
      const held = new LockDir(src, { purpose: 'nightly run' });
      await held.acquire();
      try {
        expect((await caught(sync(local, src, local, join(base, 'other'), { lockName: 'SYNC.LOCK' }))).code).toBe('ELOCKED');
      } finally {
        await held.release();
      }
      // And a destination whose root another writer holds is not synced into.
      const rootLock = new LockDir(dst, { purpose: 'retention at work' });
      await rootLock.acquire();
      try {
        const err = await caught(sync(local, src, local, dst, { lockName: 'SYNC.LOCK' }));
        expect(err.code).toBe('ELOCKED');
        expect(err.message).toMatch(/holds LOCKED \(another writer\)/);
      } finally {
        await rootLock.release();
      }
    } finally {
      await writer.release();
    }
  });

  it("symlinks: false with delete: 'after' leaves the destination's folder behind a skipped source link whole", async () => {
    const disk2 = join(base, 'disk2');
    await put(join(disk2, 'run1.mid'), 'one');
    await put(join(disk2, 'run2.mid'), 'two');
    await symlink(disk2, join(src, 'data'));
    for (let i = 0; i < 8; i++) await put(join(src, `f${i}`), `file ${i}`);
    // An earlier `cp -rL` of the source: the link's folder copied as a folder.
    for (let i = 0; i < 8; i++) await put(join(dst, `f${i}`), `file ${i}`);
    await put(join(dst, 'data', 'run1.mid'), 'one');
    await put(join(dst, 'data', 'run2.mid'), 'two');
    const r = await sync(local, src, local, dst, { delete: 'after', symlinks: false });
    expect(r.deleted).toEqual([]);
    expect(r.plan.deletes).toEqual([]);
    expect(await readFile(join(dst, 'data', 'run1.mid'), 'utf8')).toBe('one');
    expect(await readFile(join(dst, 'data', 'run2.mid'), 'utf8')).toBe('two');
  });

  it('copies a tree into a missing destination: contents, mtimes, modes, symlinks, empty folders', async () => {
    await sampleTree();
    const r = await sync(local, src, local, dst);
    expect(await walk(dst)).toEqual(await walk(src));
    expect(r.copied.map((c) => c.path).sort()).toEqual(['a.txt', 'runs/deep/run2.dat', 'runs/run1.dat']);
    expect(r.copied.find((c) => c.path === 'a.txt')?.dna).toEqual({ dig: md5('alpha'), size: 5, algorithm: 'md5' });
    expect(r.linked).toEqual(['latest']);
    expect(r.bytesCopied).toBe(5 + 300_000 + 70_000);
    expect((await lstat(join(dst, 'a.txt'))).mtimeMs).toBe(T0);
    expect((await lstat(join(dst, 'a.txt'))).mode & 0o777).toBe(0o600);
    expect(Math.floor((await lstat(join(dst, 'runs'))).mtimeMs / 1000)).toBe(T0 / 1000);
    expect(r.dryRun).toBe(false);
  });

  it('a second run copies nothing; a changed file is copied again (by size, by mtime, by digest with checksum)', async () => {
    await sampleTree();
    await sync(local, src, local, dst);
    const again = await sync(local, src, local, dst);
    expect(again.copied).toEqual([]);
    expect(again.plan.unchanged).toBe(again.plan.sourceEntries);
    await put(join(src, 'a.txt'), 'alpha, longer');
    await put(join(src, 'runs', 'run1.dat'), Buffer.alloc(300_000, 9), T0 + 60_000);
    const changed = await sync(local, src, local, dst);
    expect(changed.plan.copies.map((c) => [c.path, c.reason]).sort()).toEqual([
      ['a.txt', 'size'],
      ['runs/run1.dat', 'mtime'],
    ]);
    // Same size, same mtime, different bytes: only checksum sees it.
    await put(join(src, 'runs', 'deep', 'run2.dat'), Buffer.alloc(70_000, 3));
    expect((await sync(local, src, local, dst)).copied).toEqual([]);
    const sums = await sync(local, src, local, dst, { checksum: true });
    expect(sums.copied.map((c) => c.path)).toEqual(['runs/deep/run2.dat']);
    expect(await walk(dst)).toEqual(await walk(src));
  });

  it("delete: 'after' removes what the source no longer has; without it, extras stay", async () => {
    await sampleTree();
    await sync(local, src, local, dst);
    await put(join(dst, 'stale.txt'), 'old');
    await put(join(dst, 'old-dir', 'x'), 'x');
    await put(join(dst, 'y.part'), 'leftover');
    const keep = await sync(local, src, local, dst);
    expect(keep.deleted).toEqual([]);
    expect(await readdir(dst)).toContain('stale.txt');
    const del = await sync(local, src, local, dst, { delete: 'after' });
    expect([...del.deleted].sort()).toEqual(['old-dir', 'old-dir/x', 'stale.txt', 'y.part']);
    expect(await walk(dst)).toEqual(await walk(src));
  });

  it('maxDelete and maxDeleteFraction refuse with EDELETE_GUARD before anything is changed', async () => {
    for (let i = 0; i < 10; i++) await put(join(src, `f${i}`), `file ${i}`);
    await sync(local, src, local, dst);
    for (let i = 0; i < 4; i++) await rm(join(src, `f${i}`));
    await put(join(src, 'new.txt'), 'new');
    const before = await walk(dst);
    const byCount = await caught(sync(local, src, local, dst, { delete: 'after', maxDelete: 3 }));
    expect(byCount.code).toBe('EDELETE_GUARD');
    expect(byCount.details['deletes']).toBe(4);
    expect(await walk(dst)).toEqual(before);
    const byFraction = await caught(sync(local, src, local, dst, { delete: 'after', maxDeleteFraction: 0.3 }));
    expect(byFraction.code).toBe('EDELETE_GUARD');
    expect(byFraction.message).toMatch(/4 of 10 entries/);
    expect(await walk(dst)).toEqual(before);
    const ok = await sync(local, src, local, dst, { delete: 'after', maxDelete: 4, maxDeleteFraction: 0.4 });
    expect(ok.deleted).toHaveLength(4);
    expect(await walk(dst)).toEqual(await walk(src));
  });

  it('the default guard refuses deleting more than half of the destination', async () => {
    for (let i = 0; i < 4; i++) await put(join(src, `f${i}`), `file ${i}`);
    await sync(local, src, local, dst);
    for (let i = 0; i < 3; i++) await rm(join(src, `f${i}`));
    expect((await caught(sync(local, src, local, dst, { delete: 'after' }))).code).toBe('EDELETE_GUARD');
    expect(await readdir(dst)).toHaveLength(4);
  });

  it('an empty or missing source against a non-empty destination is refused unless allowEmptySource', async () => {
    await put(join(dst, 'precious'), 'data');
    const empty = await caught(sync(local, src, local, dst, { delete: 'after' }));
    expect(empty.code).toBe('EDELETE_GUARD');
    expect(empty.message).toMatch(/empty/);
    const missing = await caught(sync(local, join(base, 'unmounted'), local, dst, { delete: 'after' }));
    expect(missing.code).toBe('EDELETE_GUARD');
    expect(missing.message).toMatch(/missing/);
    // Even without delete: an empty source is suspicious.
    expect((await caught(sync(local, src, local, dst))).code).toBe('EDELETE_GUARD');
    expect(await readdir(dst)).toEqual(['precious']);
    const allowed = await sync(local, src, local, dst, { delete: 'after', allowEmptySource: true, maxDeleteFraction: 1 });
    expect(allowed.deleted).toEqual(['precious']);
    expect(await readdir(dst)).toEqual([]);
    // Missing source, nothing on the other side: simply not found.
    expect((await caught(sync(local, join(base, 'nothing'), local, join(base, 'nothing-either')))).code).toBe('ENOT_FOUND');
  });

  it('dryRun returns the plan and touches nothing (and refuses what the real run would refuse)', async () => {
    await sampleTree();
    await put(join(base, 'dst', 'extra'), 'x');
    const r = await sync(local, src, local, dst, { dryRun: true, delete: 'after', lock: true, maxDeleteFraction: 1 });
    expect(r.dryRun).toBe(true);
    expect(r.plan.copies.map((c) => c.path).sort()).toEqual(['a.txt', 'latest', 'runs/deep/run2.dat', 'runs/run1.dat']);
    expect(r.plan.deletes).toEqual(['extra']);
    expect(r.copied).toEqual([]);
    expect(await readdir(dst)).toEqual(['extra']);
    for (let i = 0; i < 5; i++) await put(join(dst, `more${i}`), 'x');
    expect((await caught(sync(local, src, local, dst, { dryRun: true, delete: 'after' }))).code).toBe('EDELETE_GUARD');
    expect(await readdir(dst)).toHaveLength(6);
  });

  it('lock: true holds LOCKED on the destination during the sync and removes it afterwards', async () => {
    await sampleTree();
    const seen: boolean[] = [];
    await sync(local, src, local, dst, {
      lock: true,
      onProgress: (p) => {
        if (p.phase === 'copy') seen.push(true);
      },
      filter: (path) => {
        return path !== 'never';
      },
    });
    expect(seen.length).toBeGreaterThan(0);
    expect(await readdir(dst)).not.toContain('LOCKED');
    // Observe the lock from inside: a transport whose put checks for it.
    const watcher = faulty(() => false);
    const realPut = watcher.put.bind(watcher);
    let lockedDuringPut = false;
    watcher.put = async (s, p, o) => {
      lockedDuringPut = (await readdir(dst)).includes('LOCKED');
      return realPut(s, p, o);
    };
    await put(join(src, 'b.txt'), 'beta');
    await sync(local, src, watcher, dst, { lock: true });
    expect(lockedDuringPut).toBe(true);
    expect(await readdir(dst)).not.toContain('LOCKED');
  });

  it('lock: true locks the destination before listing it: no plan from a tree another writer was still changing', async () => {
    await sampleTree();
    await sync(local, src, local, dst);
    const before = await walk(dst);
    expect(before).toContain(`a.txt ${md5('alpha')}`);
    // Another writer holds the destination; the moment its tree is listed,
    // that writer removes a.txt and lets go. A sync planning from that
    // listing would find a.txt "unchanged", copy nothing, and end with the
    // destination missing it.
    const { held, watcher, listedWhileHeld } = await writerLetsGoOnListing(() => rm(join(dst, 'a.txt')));
    try {
      expect((await caught(sync(local, src, watcher, dst, { lock: true }))).code).toBe('ELOCKED');
      expect(listedWhileHeld()).toBe(false);
    } finally {
      if (held.held) await held.release();
    }
    expect(await walk(dst)).toEqual(before);
    // Once the writer is gone, the same sync runs and leaves no lock behind.
    await sync(local, src, watcher, dst, { lock: true });
    expect(await walk(dst)).toEqual(before);
  });

  it('lock: true with a missing source allowed to empty the destination also locks before listing', async () => {
    await put(join(dst, 'old1'), 'one');
    await put(join(dst, 'old2'), 'two');
    await rm(src, { recursive: true });
    // The writer adds a run and lets go: a plan from this listing would not know of it.
    const { held, watcher, listedWhileHeld } = await writerLetsGoOnListing(() => put(join(dst, 'new-run'), 'fresh'));
    try {
      expect((await caught(sync(local, src, watcher, dst, { lock: true, delete: 'after', allowEmptySource: true, maxDeleteFraction: 1 }))).code).toBe('ELOCKED');
      expect(listedWhileHeld()).toBe(false);
    } finally {
      if (held.held) await held.release();
    }
    expect((await readdir(dst)).sort()).toEqual(['old1', 'old2']);
    // Without a destination, a missing source is still refused without planting anything.
    await rm(dst, { recursive: true });
    expect((await caught(sync(local, src, local, dst, { lock: true, allowEmptySource: true }))).code).toBe('ENOT_FOUND');
    expect(existsSync(dst)).toBe(false);
  });

  it('a destination locked by a live owner is ELOCKED; so is a source under LOCKED; nothing is copied', async () => {
    await sampleTree();
    await mkdir(dst);
    const held = new LockDir(dst, { purpose: 'someone else' });
    await held.acquire();
    try {
      expect((await caught(sync(local, src, local, dst, { lock: true }))).code).toBe('ELOCKED');
      expect((await caught(sync(local, src, local, dst))).code).toBe('ELOCKED');
      expect(await readdir(dst)).toEqual(['LOCKED']);
    } finally {
      await held.release();
    }
    const writer = new LockDir(src, { purpose: 'nightly dump' });
    await writer.acquire();
    try {
      const err = await caught(sync(local, src, local, dst));
      expect(err.code).toBe('ELOCKED');
      expect(err.message).toContain('nightly dump');
      expect(await readdir(dst)).toEqual([]);
    } finally {
      await writer.release();
    }
  });

  it('a subtree under LOCKED is skipped with a warning and its copy on the destination is not deleted', async () => {
    await sampleTree();
    await sync(local, src, local, dst);
    await put(join(dst, 'runs', 'deep', 'only-on-dst'), 'x');
    await mkdir(join(src, 'runs', 'deep', 'LOCKED'));
    await put(join(src, 'runs', 'deep', 'half-written'), 'partial');
    await rm(join(src, 'a.txt'));
    await put(join(src, 'b.txt'), 'b');
    const warnings: StowageWarning[] = [];
    const r = await sync(local, src, local, dst, { delete: 'after', onWarning: (w) => warnings.push(w) });
    expect(warnings.map((w) => [w.code, w.path])).toEqual([['ELOCKED', 'runs/deep']]);
    expect(r.deleted).toEqual(['a.txt']);
    expect(await readdir(join(dst, 'runs', 'deep'))).toEqual(['only-on-dst', 'run2.dat']);
    expect((await caught(sync(local, src, local, dst, { strict: true }))).code).toBe('ELOCKED');
  });

  it('.part files of the source are not copied; filter leaves entries out on both sides', async () => {
    await put(join(src, 'done.tar.gz'), 'done');
    await put(join(src, 'writing.tar.gz.part'), 'half');
    await put(join(src, 'skip.tmp'), 'tmp');
    await put(join(dst, 'also.tmp'), 'keep me');
    const r = await sync(local, src, local, dst, { delete: 'after', filter: (p) => !p.endsWith('.tmp') });
    expect(r.copied.map((c) => c.path)).toEqual(['done.tar.gz']);
    expect((await readdir(dst)).sort()).toEqual(['also.tmp', 'done.tar.gz']);
  });

  it('a source locked while it is listed, or while the files are copied, is refused (ELOCKED) and nothing is deleted to match it', async () => {
    for (let i = 0; i < 10; i++) await put(join(src, `f${i}`), `f${i}`);
    await sync(local, src, local, dst);
    // A writer locks the source while it is listed, and starts rewriting it.
    const racing = new LocalTransport();
    const realList = racing.list.bind(racing);
    let writer: LockDir | undefined;
    racing.list = async (path, o) => {
      if (writer === undefined) {
        writer = new LockDir(src);
        await writer.acquire();
        await rm(join(src, 'f9'));
      }
      return realList(path, o);
    };
    try {
      const err = await caught(sync(racing, src, local, dst, { delete: 'after' }));
      expect(err.code).toBe('ELOCKED');
      expect(err.message).toMatch(/locked while it was listed/);
      expect(existsSync(join(dst, 'f9'))).toBe(true);
    } finally {
      await writer?.release();
    }
    // Locked while the files are copied: they are, and nothing is deleted.
    await rm(join(src, 'f8'));
    await put(join(src, 'new'), 'new');
    const locking = new LocalTransport();
    const realPut = locking.put.bind(locking);
    let second: LockDir | undefined;
    locking.put = async (source, path, o) => {
      if (second === undefined) {
        second = new LockDir(src);
        await second.acquire();
      }
      return realPut(source, path, o);
    };
    try {
      const err = await caught(sync(local, src, locking, dst, { delete: 'after' }));
      expect(err.code).toBe('ELOCKED');
      expect(err.message).toMatch(/nothing was deleted/);
      expect(existsSync(join(dst, 'new'))).toBe(true);
      expect(existsSync(join(dst, 'f8'))).toBe(true);
    } finally {
      await second?.release();
    }
  });

  it('a destination the caller locked itself (transportLockFs recipe) is synced when its token is given, refused otherwise', async () => {
    await put(join(src, 'a'), 'a');
    await mkdir(dst, { recursive: true });
    const lock = new LockDir(dst, { fs: transportLockFs(local), purpose: 'offbox sync' });
    await lock.withLock(async () => {
      expect((await caught(sync(local, src, local, dst))).code).toBe('ELOCKED');
      const r = await sync(local, src, local, dst, { ownLockToken: lock.owner!.token });
      expect(r.copied.map((c) => c.path)).toEqual(['a']);
    });
    expect(existsSync(join(dst, 'LOCKED'))).toBe(false);
  });

  it('names that are not valid UTF-8 (Latin-1 files and folders) are reported, neither copied nor deleted; the rest syncs', async () => {
    await put(join(src, 'ok.dat'), 'ok');
    await writeFile(Buffer.concat([Buffer.from(src + '/run_'), Buffer.from([0xe9]), Buffer.from('.dat')]), 'latin-1 name');
    await mkdir(Buffer.concat([Buffer.from(src + '/runs_'), Buffer.from([0xfc])]));
    await mkdir(dst, { recursive: true });
    await writeFile(Buffer.concat([Buffer.from(dst + '/old_'), Buffer.from([0xe9])]), 'on the destination only');
    const warnings: StowageWarning[] = [];
    const r = await sync(local, src, local, dst, { delete: 'after', onWarning: (w) => void warnings.push(w) });
    expect(r.copied.map((c) => c.path)).toEqual(['ok.dat']);
    expect(r.deleted).toEqual([]);
    expect(warnings.map((w) => [w.code, w.path]).sort()).toEqual([
      ['EUNSAFE_PATH', 'old_\uFFFD'],
      ['EUNSAFE_PATH', 'run_\uFFFD.dat'],
      ['EUNSAFE_PATH', 'runs_\uFFFD'],
    ]);
    expect((await readdir(dst, { encoding: 'buffer' })).some((b) => b.includes(Buffer.from([0xe9])))).toBe(true);
  });

  it('a file rewritten in place while it is copied (same size, same second) is copied again by the next run, with a warning', async () => {
    await put(join(src, 'ibdata1'), Buffer.alloc(100_000, 1), T0 + 100);
    const writing = new LocalTransport();
    const realPut = writing.put.bind(writing);
    let rewritten = false;
    writing.put = async (source, path, o) => {
      const dna = await realPut(source, path, o);
      if (!rewritten) {
        rewritten = true;
        const h = await open(join(src, 'ibdata1'), 'r+');
        await h.write(Buffer.alloc(10, 2), 0, 10, 5000);
        await h.close();
        await utimes(join(src, 'ibdata1'), new Date(T0 + 600), new Date(T0 + 600));
      }
      return dna;
    };
    const warnings: StowageWarning[] = [];
    await sync(local, src, writing, dst, { onWarning: (w) => void warnings.push(w) });
    expect(warnings.map((w) => [w.code, w.path])).toEqual([['EIO', 'ibdata1']]);
    const again = await sync(local, src, local, dst);
    expect(again.copied.map((c) => c.path)).toEqual(['ibdata1']);
    expect((await readFile(join(dst, 'ibdata1'))).equals(await readFile(join(src, 'ibdata1')))).toBe(true);
    expect((await sync(local, src, local, dst)).copied).toEqual([]);
  });

  it('refuses source and destination that overlap on one disk (one inside the other, the same, or through a symlink), touching nothing', async () => {
    await put(join(dst, 'incoming', 'run1.mid'), 'run 1');
    await put(join(dst, 'old.mid'), 'old');
    await symlink(dst, join(base, 'alias'));
    for (const [from, to] of [
      [join(dst, 'incoming'), dst],
      [dst, join(dst, 'incoming')],
      [dst, join(base, 'alias')],
    ] as const) {
      const err = await caught(sync(local, from, local, to, { delete: 'after', maxDeleteFraction: 1 }));
      expect(err.code).toBe('EBAD_CONFIG');
      expect(err.message).toMatch(/Nothing was changed/);
    }
    expect(await walk(dst)).toEqual(['incoming/', `incoming/run1.mid ${md5('run 1')}`, `old.mid ${md5('old')}`]);
  });

  it('a source file named NAME.part is not copied, with a warning, and its namesake on the destination is not deleted', async () => {
    for (let i = 0; i < 10; i++) await put(join(src, `f${i}`), 'x');
    await sync(local, src, local, dst);
    await put(join(src, 'run0042.part'), 'data');
    await put(join(dst, 'run0042.part'), 'data');
    const warnings: StowageWarning[] = [];
    const r = await sync(local, src, local, dst, { delete: 'after', onWarning: (w) => void warnings.push(w) });
    expect(r.deleted).toEqual([]);
    expect(existsSync(join(dst, 'run0042.part'))).toBe(true);
    expect(warnings.map((w) => [w.code, w.path])).toEqual([['ELOCKED', 'run0042.part']]);
  });

  it('the sidecar of a source mutant is not copied: the good copy on the destination keeps the DNA it matches', async () => {
    const sidecarAt = async (t: number): Promise<void> => {
      await DnaDigest.writeSidecar(join(src, 'run.tgz'), await DnaDigest.ofFile(join(src, 'run.tgz')));
      await utimes(join(src, 'run.tgz.dna'), new Date(t), new Date(t));
    };
    await put(join(src, 'run.tgz'), 'version one', T0);
    await sidecarAt(T0);
    await sync(local, src, local, dst);
    // A new version with its new sidecar, damaged on the source after its DNA was taken.
    await put(join(src, 'run.tgz'), 'version two', T0 + 60_000);
    await sidecarAt(T0 + 60_000);
    await put(join(src, 'run.tgz'), 'version tw0', T0 + 60_000);
    const r = await sync(local, src, local, dst, { onWarning: () => {} });
    expect(r.mutants.map((m) => m.path)).toEqual(['run.tgz']);
    expect(await readFile(join(dst, 'run.tgz'), 'utf8')).toBe('version one');
    expect((await DnaDigest.verify(join(dst, 'run.tgz'))).ok).toBe(true);
  });

  it('a file that vanishes from the source after the listing is skipped with a warning; the other files are copied', async () => {
    for (let i = 0; i < 20; i++) await put(join(src, `run${String(i).padStart(3, '0')}.mid`), `run ${i}`);
    await put(join(dst, 'run000.mid'), 'old copy');
    const purging = new LocalTransport();
    const realList = purging.list.bind(purging);
    purging.list = async (path, o) => {
      const entries = await realList(path, o);
      await rm(join(src, 'run000.mid'), { force: true }); // the lazylogger moves it away
      return entries;
    };
    const warnings: StowageWarning[] = [];
    const r = await sync(purging, src, local, dst, { concurrency: 1, delete: 'after', onWarning: (w) => void warnings.push(w) });
    expect(r.copied).toHaveLength(19);
    expect(warnings.map((w) => [w.code, w.path])).toEqual([['ENOT_FOUND', 'run000.mid']]);
    expect(await readFile(join(dst, 'run000.mid'), 'utf8')).toBe('old copy');
  });

  it('an abort while a symlink is made leaves no NAME.part; progress counts links and ends at its total; a dry run reports done', async () => {
    await put(join(src, 'a'), 'a');
    await symlink('a', join(src, 'l'));
    const seen: Progress[] = [];
    const r = await sync(local, src, local, dst, { onProgress: (p) => void seen.push({ ...p }) });
    expect(r.linked).toEqual(['l']);
    const last = seen.at(-1)!;
    expect([last.phase, last.itemsDone]).toEqual(['done', last.itemsTotal]);
    const dry: Progress[] = [];
    await sync(local, src, local, join(base, 'dry'), { dryRun: true, onProgress: (p) => void dry.push({ ...p }) });
    expect(dry.at(-1)!.phase).toBe('done');

    await rm(dst, { recursive: true, force: true });
    const ac = new AbortController();
    const aborting = new LocalTransport();
    const realSymlink = aborting.symlink.bind(aborting);
    aborting.symlink = async (target, path, o) => {
      await realSymlink(target, path, o);
      ac.abort(new Error('stop'));
    };
    await expect(sync(local, src, aborting, dst, { signal: ac.signal, lock: true })).rejects.toThrow('stop');
    expect((await readdir(dst)).filter((n) => n.endsWith('.part') || n === 'LOCKED')).toEqual([]);
  });

  it('a failed copy stops the run, nothing is deleted, the error lists the failures', async () => {
    for (let i = 0; i < 12; i++) await put(join(src, `f${String(i).padStart(2, '0')}`), `file ${i}`);
    await sync(local, src, local, dst);
    await put(join(dst, 'extra'), 'x');
    for (let i = 0; i < 12; i++) await put(join(src, `f${String(i).padStart(2, '0')}`), `changed ${i}`);
    const t = faulty((p) => p.endsWith('f05'));
    const err = await caught(sync(local, src, t, dst, { delete: 'after' }));
    expect(err.code).toBe('ENOSPACE');
    expect(err.message).toMatch(/nothing was deleted/);
    expect((err.details['failed'] as { path: string }[]).map((f) => f.path)).toEqual(['f05']);
    expect(await readdir(dst)).toContain('extra');
    expect((await readdir(dst)).filter((n) => n.endsWith('.part'))).toEqual([]);
  });

  it('a folder in the way of a file counts with everything under it against the guard', async () => {
    // The destination holds a folder of 10 runs where the source now has a
    // file of that name: replacing it deletes 11 entries, not 1.
    for (let i = 0; i < 10; i++) await put(join(dst, 'runs', `r${i}`), `run ${i}`);
    for (let i = 0; i < 30; i++) await put(join(dst, `keep${i}`), `keep ${i}`);
    for (let i = 0; i < 30; i++) await put(join(src, `keep${i}`), `keep ${i}`);
    await put(join(src, 'runs'), 'now a file');
    const before = await walk(dst);
    const plan = await sync(local, src, local, dst, { delete: 'after', dryRun: true });
    expect(plan.plan.replaces).toEqual(['runs']);
    expect(plan.plan.removals).toBe(11);
    const err = await caught(sync(local, src, local, dst, { delete: 'after', maxDelete: 10 }));
    expect(err.code).toBe('EDELETE_GUARD');
    expect(err.details['deletes']).toBe(11);
    expect(await walk(dst)).toEqual(before);
    const byFraction = await caught(sync(local, src, local, dst, { delete: 'after', maxDeleteFraction: 0.2 }));
    expect(byFraction.message).toMatch(/11 of 41 entries/);
    expect(await walk(dst)).toEqual(before);
    const ok = await sync(local, src, local, dst, { delete: 'after', maxDelete: 11 });
    expect(ok.deleted).toEqual(['runs']);
    expect(await readFile(join(dst, 'runs'), 'utf8')).toBe('now a file');
  });

  it('a folder in the way of a file is removed as listed, never recursively: what was written into it since stays, and that copy fails', async () => {
    for (let i = 0; i < 3; i++) await put(join(dst, 'runs', 'deep', `r${i}`), `run ${i}`);
    await put(join(src, 'runs'), 'now a file');
    await put(join(src, 'other'), 'other');
    // A DAQ writer drops a new run into the folder after the sync listed it.
    const writer = faulty(() => false);
    const realRemove = writer.remove.bind(writer);
    let wrote = false;
    writer.remove = async (path, opts) => {
      if (!wrote && path.includes('/runs/')) {
        wrote = true;
        await put(join(dst, 'runs', 'deep', 'r9-new'), 'fresh data');
      }
      return realRemove(path, opts);
    };
    const err = await caught(sync(local, src, writer, dst, { delete: 'after', maxDeleteFraction: 1 }));
    expect(wrote).toBe(true);
    expect(err.code).toBe('EEXIST');
    expect(err.details['failed']).toEqual([expect.objectContaining({ path: 'runs', code: 'EEXIST' })]);
    expect(err.message).toContain('the 3 entries in the way of a copy were removed');
    expect([...(err.details['deleted'] as string[])].sort()).toEqual(['runs/deep/r0', 'runs/deep/r1', 'runs/deep/r2']);
    expect(await readFile(join(dst, 'runs', 'deep', 'r9-new'), 'utf8')).toBe('fresh data');
    expect(await readFile(join(dst, 'other'), 'utf8')).toBe('other');
    // Once that run is dealt with, the next sync replaces the folder.
    await rm(join(dst, 'runs', 'deep', 'r9-new'));
    const ok = await sync(local, src, local, dst, { delete: 'after', maxDeleteFraction: 1 });
    expect(ok.deleted).toEqual(['runs']);
    expect(await readFile(join(dst, 'runs'), 'utf8')).toBe('now a file');
  });

  it('folders in the way are replaced one by one: one that cannot be removed fails its own copy only, and a failure keeps its code', async () => {
    await put(join(dst, 'p', 'old'), 'old p');
    await put(join(dst, 'q', 'old'), 'old q');
    await put(join(src, 'p'), 'new p file');
    await put(join(src, 'q'), 'new q file');
    // While p's contents are removed, a writer drops a file into q.
    const writer = faulty(() => false);
    const realRemove = writer.remove.bind(writer);
    writer.remove = async (path, opts) => {
      if (path.endsWith('/p/old')) await put(join(dst, 'q', 'fresh'), 'fresh');
      return realRemove(path, opts);
    };
    const err = await caught(sync(local, src, writer, dst, { delete: 'after', maxDeleteFraction: 1 }));
    expect(err.code).toBe('EEXIST');
    expect(err.details['failed']).toEqual([expect.objectContaining({ path: 'q', code: 'EEXIST' })]);
    expect(err.message).toMatch(/q holds 1 entry the listing did not see \(fresh/);
    expect(await readFile(join(dst, 'p'), 'utf8')).toBe('new p file');
    expect((await readdir(join(dst, 'q'))).sort()).toEqual(['fresh']);

    // A removal that times out is ETIMEOUT, retryable, not "written since".
    await put(join(dst, 'r', 'old'), 'old r');
    await put(join(src, 'r'), 'new r file');
    await rm(join(dst, 'q'), { recursive: true });
    const stalling = faulty(() => false);
    const rr = stalling.remove.bind(stalling);
    stalling.remove = async (path, opts) => {
      if (path.endsWith('/r/old')) throw new StowageError('ETIMEOUT', 'SFTP remove timed out', { details: { path } });
      return rr(path, opts);
    };
    const slow = await caught(sync(local, src, stalling, dst, { delete: 'after', maxDeleteFraction: 1 }));
    expect(slow.code).toBe('ETIMEOUT');
    expect(slow.retryable).toBe(true);
    expect(slow.message).not.toMatch(/did not see/);
    expect(await readFile(join(dst, 'q'), 'utf8')).toBe('new q file');
    expect(await readFile(join(dst, 'r', 'old'), 'utf8')).toBe('old r');
  });

  it('a folder in the way of a copy is removed only after every other copy succeeded', async () => {
    for (let i = 0; i < 5; i++) await put(join(dst, 'runs', `r${i}`), `run ${i}`);
    for (let i = 0; i < 20; i++) await put(join(src, `f${String(i).padStart(2, '0')}`), `file ${i}`);
    await put(join(src, 'runs'), 'now a file');
    const removedWhileCopying: string[] = [];
    const t = faulty((p) => {
      // Every put sees whether the folder in the way is still there.
      removedWhileCopying.push(String(!existsSync(join(dst, 'runs', 'r0'))));
      return p.endsWith('f13');
    });
    const err = await caught(sync(local, src, t, dst, { delete: 'after', maxDeleteFraction: 1 }));
    expect(err.code).toBe('ENOSPACE');
    expect(err.message).toMatch(/nothing was deleted/);
    expect(await readdir(join(dst, 'runs'))).toHaveLength(5);
    expect(removedWhileCopying).not.toContain('true');
    // Once the other copies go through, the folder makes way for the file, and its copy comes last.
    const order: string[] = [];
    const t2 = faulty((p) => {
      order.push(p.slice(dst.length + 1));
      return false;
    });
    const ok = await sync(local, src, t2, dst, { delete: 'after', maxDeleteFraction: 1, concurrency: 1 });
    expect(ok.deleted).toEqual(['runs']);
    expect(order.at(-1)).toBe('runs');
    expect(await readFile(join(dst, 'runs'), 'utf8')).toBe('now a file');
    expect(await walk(dst)).toEqual(await walk(src));
  });

  it('keeps several files in flight (concurrency)', async () => {
    for (let i = 0; i < 16; i++) await put(join(src, `f${i}`), `file ${i}`);
    const t = faulty(() => false);
    await sync(local, src, t, dst, { concurrency: 6 });
    expect(t.maxInFlight).toBe(6);
    const t1 = faulty(() => false);
    await sync(local, src, t1, join(base, 'dst1'), { concurrency: 1 });
    expect(t1.maxInFlight).toBe(1);
  });

  it('checks transferred files that have a sidecar: a mutant is reported, and deletion is skipped', async () => {
    await put(join(src, 'good.tar.gz'), 'good bytes');
    await put(join(src, 'good.tar.gz.dna'), JSON.stringify({ dig: md5('good bytes'), size: 10 }));
    await put(join(src, 'legacy.tar.gz'), 'legacy');
    await put(join(src, 'legacy.tar.gz.dna'), `{'dig': '${md5('legacy')}', 'size': 6L}`);
    await put(join(src, 'bad.tar.gz'), 'rotten bytes');
    await put(join(src, 'bad.tar.gz.dna'), JSON.stringify({ dig: md5('original bytes'), size: 14 }));
    await put(join(src, 'plain.txt'), 'no sidecar');
    await put(join(dst, 'old'), 'to delete');
    const warnings: StowageWarning[] = [];
    const r = await sync(local, src, local, dst, { delete: 'after', maxDeleteFraction: 1, onWarning: (w) => warnings.push(w) });
    expect(r.verified.map((v) => [v.path, v.ok]).sort()).toEqual([
      ['bad.tar.gz', false],
      ['good.tar.gz', true],
      ['legacy.tar.gz', true],
    ]);
    expect(r.mutants.map((m) => m.path)).toEqual(['bad.tar.gz']);
    expect(r.mutants[0]!.actual.dig).toBe(md5('rotten bytes'));
    expect(r.mutants[0]!.sent?.dig).toBe(md5('rotten bytes'));
    expect(warnings.map((w) => w.code)).toEqual(['EDIGEST_MISMATCH']);
    expect(r.deleteSkipped).toBe('mutants');
    expect(await readdir(dst)).toContain('old');
    // The source no longer matches its sidecar: it was checked while sent, and never took the name on the destination.
    expect(warnings[0]!.message).toMatch(/was not copied/);
    expect(r.copied.map((c) => c.path)).not.toContain('bad.tar.gz');
    expect(existsSync(join(dst, 'bad.tar.gz'))).toBe(false);
    expect((await readdir(dst)).filter((n) => n.endsWith('.part'))).toEqual([]);
    expect((await caught(sync(local, src, local, join(base, 'strict'), { strict: true }))).code).toBe('EDIGEST_MISMATCH');
    const noVerify = await sync(local, src, local, join(base, 'nv'), { verify: false });
    expect(noVerify.verified).toEqual([]);
  });

  it('a source mutant in place of a destination folder leaves that folder (and its own sidecar unsent); any mutant keeps every folder in the way of a copy', async () => {
    await put(join(src, 'run42'), 'rotten bytes!');
    await put(join(src, 'run42.dna'), JSON.stringify({ dig: md5('good bytes 42'), size: 13 }));
    for (let i = 0; i < 6; i++) await put(join(src, `keep${i}`), `k${i}`);
    for (let i = 0; i < 6; i++) await put(join(dst, `keep${i}`), `k${i}`);
    await put(join(dst, 'run42', 'part1.mid'), 'one');
    await put(join(dst, 'run42', 'part2.mid'), 'two');
    const warnings: StowageWarning[] = [];
    const r = await sync(local, src, local, dst, { delete: 'after', onWarning: (w) => warnings.push(w) });
    expect(r.mutants.map((m) => m.path)).toEqual(['run42']);
    expect(r.deleted).toEqual([]);
    expect(r.deleteSkipped).toBe('mutants');
    expect(await readFile(join(dst, 'run42', 'part1.mid'), 'utf8')).toBe('one');
    expect(await readFile(join(dst, 'run42', 'part2.mid'), 'utf8')).toBe('two');
    expect(existsSync(join(dst, 'run42.dna'))).toBe(false);
    expect(warnings.map((w) => w.code).sort()).toEqual(['EDIGEST_MISMATCH', 'EEXIST']);
    expect(warnings.find((w) => w.code === 'EEXIST')!.message).toMatch(/run42 a dir; it was left as it is, because the source holds a file that does not match its DNA/);

    // A mutant elsewhere, and an unrelated file in place of a folder: the folder stays too.
    await rm(join(src, 'run42'));
    await rm(join(src, 'run42.dna'));
    await put(join(src, 'a.tar.gz'), 'rotten');
    await put(join(src, 'a.tar.gz.dna'), JSON.stringify({ dig: md5('intact'), size: 6 }));
    await put(join(src, 'B'), 'now a file');
    await put(join(dst, 'B', 'inside.mid'), 'kept');
    const w2: StowageWarning[] = [];
    const r2 = await sync(local, src, local, dst, { delete: 'after', maxDeleteFraction: 1, onWarning: (w) => w2.push(w) });
    expect(r2.mutants.map((m) => m.path)).toEqual(['a.tar.gz']);
    expect(r2.deleteSkipped).toBe('mutants');
    expect(r2.deleted).toEqual([]);
    expect(await readFile(join(dst, 'B', 'inside.mid'), 'utf8')).toBe('kept');
    expect(existsSync(join(dst, 'run42', 'part1.mid'))).toBe(true);

    // Once the source is whole again, the folders give way to the files.
    await put(join(src, 'a.tar.gz'), 'intact');
    const r3 = await sync(local, src, local, dst, { delete: 'after', maxDeleteFraction: 1 });
    expect(r3.mutants).toEqual([]);
    expect(await readFile(join(dst, 'B'), 'utf8')).toBe('now a file');
    expect(existsSync(join(dst, 'run42'))).toBe(false);
  });

  it('a replacing source file that vanishes before its check is a warning, the folder in its way stays, and the sync goes on', async () => {
    await put(join(src, 'x'), 'new x');
    await put(join(src, 'x.dna'), JSON.stringify({ dig: md5('new x'), size: 5 }));
    for (let i = 0; i < 4; i++) await put(join(src, `k${i}`), `k${i}`);
    await put(join(dst, 'x', 'inside.mid'), 'kept');
    await put(join(dst, 'old'), 'to delete');
    const vanishing = new LocalTransport();
    const digest = vanishing.digest.bind(vanishing);
    vanishing.digest = async (path, algorithm, o) => {
      if (path === join(src, 'x')) await rm(path); // a lazylogger moved it away just now
      return digest(path, algorithm, o);
    };
    const warnings: StowageWarning[] = [];
    const r = await sync(vanishing, src, local, dst, { delete: 'after', maxDeleteFraction: 1, onWarning: (w) => warnings.push(w) });
    expect(warnings.map((w) => w.code)).toEqual(['ENOT_FOUND']);
    expect(warnings[0]!.message).toMatch(/x vanished after it was listed; it was not copied, and .*x was left as it was/);
    expect(await readFile(join(dst, 'x', 'inside.mid'), 'utf8')).toBe('kept');
    expect(existsSync(join(dst, 'x.dna'))).toBe(false);
    expect(r.deleted).toEqual(['old']);
  });

  it('a file and its sidecar that both take the place of folders are both put in place', async () => {
    await put(join(src, 'x'), 'new x');
    await put(join(src, 'x.dna'), JSON.stringify({ dig: md5('new x'), size: 5 }));
    await put(join(dst, 'x', 'a'), 'a');
    await put(join(dst, 'x.dna', 'b'), 'b');
    const r = await sync(local, src, local, dst, { delete: 'after', maxDeleteFraction: 1 });
    expect(r.copied.map((c) => c.path).sort()).toEqual(['x', 'x.dna']);
    expect(await readFile(join(dst, 'x'), 'utf8')).toBe('new x');
    expect((await DnaDigest.verify(join(dst, 'x'))).ok).toBe(true);
  });

  it('a source that no longer matches its sidecar does not replace the good copy on the destination', async () => {
    const good = Buffer.alloc(100_000, 7);
    await put(join(src, 'run.tar.gz'), good);
    await put(join(src, 'run.tar.gz.dna'), JSON.stringify({ dig: md5(good), size: good.length }));
    await sync(local, src, local, dst);
    // One bit flips on the source; size and sidecar unchanged, mtime moves on.
    const bad = Buffer.from(good);
    bad.writeUInt8(bad[5000]! ^ 1, 5000);
    await put(join(src, 'run.tar.gz'), bad, T0 + 60_000);
    const warnings: StowageWarning[] = [];
    const r = await sync(local, src, local, dst, { checksum: true, onWarning: (w) => warnings.push(w) });
    expect(r.mutants.map((m) => [m.path, m.actual.dig, m.expected.dig])).toEqual([['run.tar.gz', md5(bad), md5(good)]]);
    expect(warnings.map((w) => w.code)).toEqual(['EDIGEST_MISMATCH']);
    expect(md5(await readFile(join(dst, 'run.tar.gz')))).toBe(md5(good));
    // A sidecar in another algorithm than the sync's is checked all the same.
    const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
    await put(join(src, 'wiki.tar.gz'), good);
    await put(join(src, 'wiki.tar.gz.dna'), JSON.stringify({ dig: sha(good), size: good.length, algorithm: 'sha256' }));
    await sync(local, src, local, dst, { checksum: true });
    await put(join(src, 'wiki.tar.gz'), bad, T0 + 120_000);
    const r2 = await sync(local, src, local, dst, { checksum: true });
    expect(r2.mutants.map((m) => [m.path, m.actual.algorithm])).toEqual([
      ['run.tar.gz', 'md5'],
      ['wiki.tar.gz', 'sha256'],
    ]);
    expect(md5(await readFile(join(dst, 'wiki.tar.gz')))).toBe(md5(good));
  });

  it('a copy that differs from its sidecar on the destination (written wrong there) is a mutant, and deletion is skipped', async () => {
    await put(join(src, 'run.tar.gz'), 'run bytes');
    await put(join(src, 'run.tar.gz.dna'), JSON.stringify({ dig: md5('run bytes'), size: 9 }));
    await put(join(dst, 'old'), 'old');
    // The far disk garbles what it was sent: the bytes sent match, the bytes stored do not.
    const garbling = new LocalTransport();
    const realPut = garbling.put.bind(garbling);
    garbling.put = async (source: PutSource, path: string, options?: PutOptions) => {
      const dna = await realPut(source, path, options);
      if (path.endsWith('run.tar.gz')) await writeFile(path, 'rUn bytes');
      return dna;
    };
    const r = await sync(local, src, garbling, dst, { delete: 'after', maxDeleteFraction: 1 });
    expect(r.mutants.map((m) => [m.path, m.sent?.dig, m.actual.dig])).toEqual([['run.tar.gz', md5('run bytes'), md5('rUn bytes')]]);
    expect(r.deleteSkipped).toBe('mutants');
    expect(existsSync(join(dst, 'old'))).toBe(true);
  });

  it('a folder the source no longer has is emptied entry by entry: a LOCKED subtree and excluded entries in it stay, and the folder with them', async () => {
    await put(join(src, 'keep.txt'), 'k');
    await put(join(dst, 'keep.txt'), 'k');
    for (let i = 0; i < 3; i++) await put(join(dst, 'old', `n${i}.txt`), 'n');
    await put(join(dst, 'old', 'run7', 'data.bin'), 'being written by someone else');
    await mkdir(join(dst, 'old', 'run7', 'LOCKED'));
    for (let i = 0; i < 20; i++) await put(join(dst, 'old', 'precious', `p${i}.keep`), 'p');
    const warnings: StowageWarning[] = [];
    const r = await sync(local, src, local, dst, {
      delete: 'after',
      maxDelete: 5,
      maxDeleteFraction: 1,
      filter: (p) => !p.endsWith('.keep') && !p.endsWith('/precious'),
      onWarning: (w) => warnings.push(w),
    });
    // Only the three notes are deleted (within maxDelete 5); "old" holds what the sync must not touch, so it is kept.
    expect([...r.deleted].sort()).toEqual(['old/n0.txt', 'old/n1.txt', 'old/n2.txt']);
    expect(r.plan.kept).toEqual(['old']);
    expect(warnings.map((w) => [w.code, w.path])).toEqual([
      ['ELOCKED', 'old/run7'],
      ['ELOCKED', 'old'],
    ]);
    expect(await walk(join(dst, 'old'))).toEqual(['precious/', ...Array.from({ length: 20 }, (_, i) => `precious/p${i}.keep ${md5('p')}`).sort(), 'run7/', 'run7/LOCKED/', `run7/data.bin ${md5('being written by someone else')}`]);
  });

  it('an entry the filter leaves out of the source is not deleted from the destination', async () => {
    await put(join(src, 'run41.mid'), 'done');
    await put(join(src, 'run42.mid'), 'being rewritten now', Date.now());
    await put(join(dst, 'run42.mid'), 'the copy of yesterday', T0);
    const cutoff = Date.now() - 60_000;
    const r = await sync(local, src, local, dst, { delete: 'after', maxDeleteFraction: 1, filter: (_p, e) => e.type !== 'file' || e.mtimeMs < cutoff });
    expect(r.copied.map((c) => c.path)).toEqual(['run41.mid']);
    expect(r.deleted).toEqual([]);
    expect(await readFile(join(dst, 'run42.mid'), 'utf8')).toBe('the copy of yesterday');
  });

  it('a source file the filter keeps whose destination entry it leaves out is not copied, with a warning (EEXIST)', async () => {
    // A filter on mtime: the source's run42 is old (kept), the destination's copy was touched just now (left out).
    await put(join(src, 'run41.mid'), 'done');
    await put(join(src, 'run42.mid'), 'final version', T0);
    await put(join(dst, 'run42.mid'), 'being written on the far side', Date.now());
    const cutoff = Date.now() - 60_000;
    const filter = (_p: string, e: { type: string; mtimeMs: number }): boolean => e.type !== 'file' || e.mtimeMs < cutoff;
    const warnings: StowageWarning[] = [];
    const r = await sync(local, src, local, dst, { filter, onWarning: (w) => warnings.push(w) });
    expect(r.copied.map((c) => c.path)).toEqual(['run41.mid']);
    expect(warnings.map((w) => [w.code, w.path])).toEqual([['EEXIST', 'run42.mid']]);
    expect(warnings[0]!.message).toMatch(/filter left out .*run42\.mid/);
    expect(await readFile(join(dst, 'run42.mid'), 'utf8')).toBe('being written on the far side');
    expect((await caught(sync(local, src, local, dst, { filter, strict: true }))).code).toBe('EEXIST');
    // A filter on names alone, the same on both sides: nothing to say.
    const quiet: StowageWarning[] = [];
    await sync(local, src, local, dst, { filter: (p) => p !== 'run42.mid', onWarning: (w) => quiet.push(w) });
    expect(quiet).toEqual([]);
  });

  it('a folder that vanishes while the source is listed is not taken for a missing source, and its copy is not deleted', async () => {
    for (let i = 0; i < 20; i++) await put(join(src, `f${i}.txt`), `f${i}`);
    await put(join(src, 'tmp', 'scratch'), 's');
    await sync(local, src, local, dst);
    // The source's tmp/ disappears between the listing of its parent and its own.
    const racing = new LocalTransport();
    const realList = racing.list.bind(racing);
    racing.list = async (path, options) => {
      if (path.endsWith('/tmp')) await rm(path, { recursive: true, force: true });
      return realList(path, options);
    };
    const warnings: StowageWarning[] = [];
    const r = await sync(racing, src, local, dst, { delete: 'after', allowEmptySource: true, maxDeleteFraction: 1, onWarning: (w) => warnings.push(w) });
    expect(warnings.map((w) => [w.code, w.path])).toEqual([['ENOT_FOUND', 'tmp']]);
    expect(r.deleted).toEqual([]);
    expect(existsSync(join(dst, 'tmp', 'scratch'))).toBe(true);
    expect((await readdir(dst)).length).toBe(21);
  });

  it('a symlink named FILE.part is never written through: on the destination it is replaced, on the source it is not synced', async () => {
    await mkdir(join(base, 'outside'));
    await put(join(base, 'outside', 'victim.db'), 'precious');
    await put(join(src, 'f'), 'new bytes');
    await mkdir(dst);
    await symlink('../outside/victim.db', join(dst, 'f.part'));
    await symlink('../outside/victim.db', join(src, 'g.part'));
    const r = await sync(local, src, local, dst);
    expect(await readFile(join(base, 'outside', 'victim.db'), 'utf8')).toBe('precious');
    expect(await readFile(join(dst, 'f'), 'utf8')).toBe('new bytes');
    expect((await lstat(join(dst, 'f'))).isSymbolicLink()).toBe(false);
    expect(r.linked).toEqual([]);
    expect(existsSync(join(dst, 'g.part'))).toBe(false);
  });

  it('a type conflict left alone is reported', async () => {
    await put(join(src, 'run42.mid'), 'file');
    await put(join(dst, 'run42.mid', 'inner'), 'a folder there');
    const warnings: StowageWarning[] = [];
    const r = await sync(local, src, local, dst, { onWarning: (w) => warnings.push(w) });
    expect(r.plan.conflicts).toEqual(['run42.mid']);
    expect(warnings.map((w) => [w.code, w.path])).toEqual([['EEXIST', 'run42.mid']]);
    expect((await caught(sync(local, src, local, dst, { strict: true }))).code).toBe('EEXIST');
  });

  it('a dry run with lock: true refuses while a live writer holds the destination lock, as the run would', async () => {
    await put(join(src, 'a'), 'a');
    await mkdir(dst);
    const other = new LockDir(dst, { purpose: 'another sync' });
    await other.acquire();
    try {
      expect((await caught(sync(local, src, local, dst, { lock: true, dryRun: true }))).code).toBe('ELOCKED');
    } finally {
      await other.release();
    }
    expect((await sync(local, src, local, dst, { lock: true, dryRun: true })).plan.copies.length).toBe(1);
  });

  it('reports progress: phases, bytes up to the total, files', async () => {
    await sampleTree();
    const seen: Progress[] = [];
    const r = await sync(local, src, local, dst, { onProgress: (p) => seen.push(p) });
    expect(seen.map((p) => p.phase).filter((p, i, a) => a.indexOf(p) === i)).toEqual(['list', 'copy', 'verify', 'done']);
    const last = seen[seen.length - 1]!;
    expect(last.bytesDone).toBe(r.bytesCopied);
    // Every copy counts, the symlink too: the last report is at its total.
    expect(last.itemsDone).toBe(r.plan.copies.length);
    expect(last.itemsDone).toBe(last.itemsTotal);
    expect(last.bytesTotal).toBe(r.plan.bytesToCopy);
    // The copy phase starts with its totals known and ends with a report at them.
    const copies = seen.filter((p) => p.phase === 'copy');
    expect(copies[0]).toMatchObject({ itemsDone: 0, itemsTotal: r.plan.copies.length, bytesTotal: r.plan.bytesToCopy });
    expect(copies.at(-1)).toMatchObject({ itemsDone: r.plan.copies.length, bytesDone: r.bytesCopied });
  });

  it('aborted before start: rejects with the reason, touches nothing', async () => {
    await sampleTree();
    const ac = new AbortController();
    const reason = new Error('no sync today');
    ac.abort(reason);
    await expect(sync(local, src, local, dst, { signal: ac.signal, lock: true })).rejects.toBe(reason);
    await expect(readdir(dst)).rejects.toThrow();
  });

  it('aborted midway: rejects with the reason, releases the lock, leaves no .part', async () => {
    for (let i = 0; i < 40; i++) await put(join(src, `f${i}`), Buffer.alloc(200_000, i));
    const ac = new AbortController();
    const reason = new Error('stop');
    const slow = faulty(() => false);
    let n = 0;
    const p = sync(local, src, slow, dst, {
      lock: true,
      concurrency: 2,
      signal: ac.signal,
      onProgress: (pr) => {
        if (pr.phase === 'copy' && pr.itemsDone >= 3 && n++ === 0) ac.abort(reason);
      },
    });
    await expect(p).rejects.toBe(reason);
    const left = await readdir(dst);
    expect(left).not.toContain('LOCKED');
    expect(left.filter((x) => x.endsWith('.part'))).toEqual([]);
    expect(left.length).toBeLessThan(40);
  });


  it('32 files in flight, each listening to the caller’s signal, raise no MaxListenersExceededWarning', async () => {
    for (let i = 0; i < 64; i++) await put(join(src, `d${i % 4}`, `f${i}`), Buffer.alloc(50_000, i));
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const ac = new AbortController();
      const r = await sync(local, src, faulty(() => false), dst, { lock: true, signal: ac.signal });
      expect(r.copied).toHaveLength(64);
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => w.name)).not.toContain('MaxListenersExceededWarning');
  });
  it('bad options are EBAD_CONFIG', async () => {
    const bad: Record<string, unknown>[] = [{ delet: 'after' }, { delete: 'before' }, { maxDelete: -1 }, { maxDeleteFraction: 2 }, { concurrency: 0 }, { lockName: 'a/b' }, { filter: 'x' }];
    for (const o of bad) expect((await caught(sync(local, src, local, dst, o as never))).code).toBe('EBAD_CONFIG');
  });

  it('works through the Transport interface only (any transport)', async () => {
    const t: Transport = faulty(() => false);
    await sampleTree();
    await sync(t, src, t, dst);
    expect(await walk(dst)).toEqual(await walk(src));
  });
});
