/**
 * LockDir in one process, on the real file system: acquire/release, live
 * and stale owners, takeover races made deterministic by a LockFs that
 * runs a step of a rival at the exact moment it matters, heartbeat and the
 * lost-lock signal, withLock/close, abort, options, inspect.
 */
import { spawn } from 'node:child_process';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdir, readFile, readdir, readlink, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { LockDir, localLockFs, type LockFs, type LockOwner } from '../../../src/lock/index.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';

let tmp: TempDir;
let parent: string;
const open: LockDir[] = [];

beforeEach(() => {
  tmp = makeTempDir('lock');
  parent = tmp.path;
});
afterEach(async () => {
  for (const l of open.splice(0)) await l.close().catch(() => {});
  await tmp.remove();
});

function lockOf(options: ConstructorParameters<typeof LockDir>[1] = {}, dir = parent): LockDir {
  const l = new LockDir(dir, options);
  open.push(l);
  return l;
}

const lockedDir = (): string => join(parent, 'LOCKED');
const ownerFile = (): string => join(parent, 'LOCKED', 'owner.json');
const readOwner = async (): Promise<LockOwner> => JSON.parse(await readFile(ownerFile(), 'utf8')) as LockOwner;

/** Plants a lock by hand, as another process or host would have left it. */
async function plant(owner: Partial<LockOwner>, ageMs = 0): Promise<LockOwner> {
  const full: LockOwner = { host: hostname(), pid: process.pid, purpose: 'planted', since: new Date().toISOString(), token: 'a'.repeat(32), ...owner };
  await mkdir(lockedDir());
  await writeFile(ownerFile(), JSON.stringify(full));
  if (ageMs > 0) await age(ownerFile(), ageMs);
  return full;
}

async function age(path: string, ms: number): Promise<void> {
  const t = new Date(Date.now() - ms);
  await utimes(path, t, t);
}

async function deadPid(): Promise<number> {
  const p = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => p.once('exit', resolve));
  return p.pid!;
}

async function rejection(p: Promise<unknown>): Promise<StowageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StowageError);
  return err as StowageError;
}

function aborted(signal: AbortSignal, ms: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return resolve(signal.reason);
    const t = setTimeout(() => reject(new Error(`signal not aborted within ${ms} ms`)), ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve(signal.reason);
    });
  });
}

/** A LockFs over the local one that runs `before` once, just before the first call matching `when`. */
function withHook(when: (op: keyof LockFs, args: unknown[]) => boolean, before: () => Promise<void>): LockFs {
  let fired = false;
  const hooked = {} as Record<keyof LockFs, (...a: unknown[]) => Promise<unknown>>;
  for (const op of Object.keys(localLockFs) as (keyof LockFs)[]) {
    hooked[op] = async (...args: unknown[]) => {
      if (!fired && when(op, args)) {
        fired = true;
        await before();
      }
      return (localLockFs[op] as (...a: unknown[]) => Promise<unknown>)(...args);
    };
  }
  return hooked as unknown as LockFs;
}

describe('LockDir acquire and release', () => {
  it('creates LOCKED/owner.json { host, pid, purpose, since, token, machine, staleMs } and release removes everything', async () => {
    const lock = lockOf({ purpose: 'nightly backup' });
    expect(lock.held).toBe(false);
    expect(lock.path).toBe(lockedDir());
    const before = Date.now();
    await lock.acquire();
    expect(lock.held).toBe(true);
    const owner = await readOwner();
    expect(owner).toEqual(lock.owner);
    expect(Object.keys(owner).sort()).toEqual(['host', 'machine', 'pid', 'purpose', 'since', 'staleMs', 'token']);
    expect(owner).toMatchObject({ host: hostname(), pid: process.pid, purpose: 'nightly backup' });
    expect(owner.token).toMatch(/^[0-9a-f]{32}$/);
    expect(Date.parse(owner.since)).toBeGreaterThanOrEqual(before - 1000);
    expect(await readdir(lockedDir())).toEqual(['owner.json']);

    await lock.release();
    expect(lock.held).toBe(false);
    expect(lock.owner).toBeUndefined();
    expect(await readdir(parent)).toEqual([]);
    await lock.release(); // not held: nothing to do

    await lock.acquire();
    expect(lock.owner?.token).not.toBe(owner.token);
    await lock.release();
  });

  it('a live owner makes acquire fail with ELOCKED naming the owner; waitMs 0 tries once, waitMs waits that long', async () => {
    const a = lockOf({ purpose: 'first' });
    await a.acquire();
    const b = lockOf();
    let t = Date.now();
    const err = await rejection(b.acquire());
    expect(Date.now() - t).toBeLessThan(1000);
    expect(err.code).toBe('ELOCKED');
    expect(err.retryable).toBe(true);
    expect(err.details['owner']).toEqual(a.owner);
    expect(err.message).toContain('first');

    t = Date.now();
    expect((await rejection(b.acquire({ waitMs: 300, pollMs: 20 }))).code).toBe('ELOCKED');
    expect(Date.now() - t).toBeGreaterThanOrEqual(295);
    expect(b.held).toBe(false);
    expect(await readOwner()).toEqual(a.owner);
    expect(await readdir(lockedDir())).toEqual(['owner.json']);
  });

  it('a waiting acquire gets the lock once the owner releases', async () => {
    const a = lockOf();
    await a.acquire();
    const b = lockOf();
    setTimeout(() => void a.release(), 100);
    await b.acquire({ waitMs: 5_000, pollMs: 10 });
    expect(b.held).toBe(true);
    expect(a.held).toBe(false);
    expect(await readOwner()).toEqual(b.owner);
  });

  it('is not re-entrant: a second acquire on the same object is ELOCKED', async () => {
    const a = lockOf();
    await a.acquire();
    const err = await rejection(a.acquire());
    expect(err.code).toBe('ELOCKED');
    expect(a.held).toBe(true);
  });

  it('fails with ENOT_FOUND when the parent directory does not exist, creating nothing', async () => {
    const lock = lockOf({}, join(parent, 'missing'));
    expect((await rejection(lock.acquire({ waitMs: 1000 }))).code).toBe('ENOT_FOUND');
    expect(await readdir(parent)).toEqual([]);
  });

  it('honours the name option', async () => {
    const lock = lockOf({ name: 'BUSY' });
    await lock.acquire();
    expect(await readdir(parent)).toEqual(['BUSY']);
    expect(await LockDir.inspect(parent, { name: 'BUSY' })).toMatchObject({ locked: true, owner: lock.owner });
    expect(await LockDir.inspect(parent)).toMatchObject({ locked: false });
  });
});

describe('LockDir release after a takeover', () => {
  /** A LockFs whose rename of a released owner file back to owner.json fails `times` times (a dropped SFTP reply). */
  function flakyPutBack(times: number): LockFs {
    let left = times;
    return {
      ...localLockFs,
      rename: async (from: string, to: string) => {
        if (left > 0 && from.includes('.released-') && to.endsWith('owner.json')) {
          left--;
          throw new StowageError('ETRANSPORT', 'connection lost while renaming');
        }
        return localLockFs.rename(from, to);
      },
    };
  }

  it("puts the new owner's file back despite a transient failure, never deletes it", async () => {
    const a = lockOf({ fs: flakyPutBack(2) });
    await a.acquire();
    // Another owner took the lock over meanwhile: its owner file replaced ours.
    const file = join(lockedDir(), 'owner.json');
    const theirs = JSON.stringify({ ...(JSON.parse(await readFile(file, 'utf8')) as LockOwner), token: 'f'.repeat(32), pid: 4242 });
    await writeFile(file, theirs);
    const err = await a.release().then(
      () => undefined,
      (e: unknown) => e as StowageError,
    );
    expect(err?.code).toBe('ELOCK_LOST');
    expect(err?.message).toMatch(/another owner took it over/);
    expect(await readFile(file, 'utf8')).toBe(theirs);
    expect((await readdir(lockedDir())).sort()).toEqual(['owner.json']);
  });

  it('leaves the file aside and says where when it cannot be put back at all', async () => {
    const a = lockOf({ fs: flakyPutBack(100) });
    await a.acquire();
    const file = join(lockedDir(), 'owner.json');
    const theirs = JSON.stringify({ ...(JSON.parse(await readFile(file, 'utf8')) as LockOwner), token: 'e'.repeat(32), pid: 4243 });
    await writeFile(file, theirs);
    const err = (await a.release().catch((e: unknown) => e)) as StowageError;
    expect(err.code).toBe('ELOCK_LOST');
    expect(err.message).toMatch(/could not be put back: it is at .*owner\.json\.released-[0-9a-f]+; rename it to owner\.json/);
    const aside = (await readdir(lockedDir())).find((n) => n.startsWith('owner.json.released-'))!;
    expect(await readFile(join(lockedDir(), aside), 'utf8')).toBe(theirs);
  });
});

describe('LockDir staleness and takeover', () => {
  it('takes over at once a lock whose owner process on this host is gone', async () => {
    const theirs = await plant({ pid: await deadPid() });
    expect(await LockDir.inspect(parent)).toMatchObject({ locked: true, stale: true, reason: 'owner-dead', owner: theirs });
    const seen: unknown[] = [];
    const onTakeover = (m: unknown): void => void seen.push(m);
    subscribe('stowage:lock:takeover', onTakeover);
    const lock = lockOf();
    try {
      await lock.acquire();
    } finally {
      unsubscribe('stowage:lock:takeover', onTakeover);
    }
    expect(await readOwner()).toEqual(lock.owner);
    expect(await readdir(lockedDir())).toEqual(['owner.json']);
    expect(seen).toEqual([{ path: lock.path, previous: theirs, reason: 'owner-dead', owner: lock.owner }]);
  });

  it('an owner on another host is judged by its heartbeat only', async () => {
    // A pid that is gone here; on another host it means nothing.
    const theirs = await plant({ host: 'elsewhere.example.org', pid: await deadPid() });
    const lock = lockOf({ staleMs: 1_000 });
    const err = await rejection(lock.acquire());
    expect(err.code).toBe('ELOCKED');
    expect(err.details['owner']).toEqual(theirs);
    expect(await LockDir.inspect(parent, { staleMs: 1_000 })).toMatchObject({ locked: true, stale: false });

    await age(ownerFile(), 5_000);
    const seen = await LockDir.inspect(parent, { staleMs: 1_000 });
    expect(seen).toMatchObject({ locked: true, stale: true, reason: 'heartbeat-expired', owner: theirs });
    expect(seen.ageMs).toBeGreaterThanOrEqual(4_900);
    await lock.acquire();
    expect(await readOwner()).toEqual(lock.owner);
  });

  it('records where its pid means something, and judges an owner from another kernel or pid namespace by its heartbeat only, even under our host name', async () => {
    // This machine's boot id and pid namespace, read the way a test can.
    const machine = `${(await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim()}/${await readlink('/proc/self/ns/pid')}`;
    const mine = lockOf();
    await mine.acquire();
    expect(mine.owner!.machine).toBe(machine);
    expect(await readOwner()).toEqual(mine.owner);
    await mine.release();

    // Another container sharing our host name (host networking) and this
    // folder: its pid is not ours to test. A live owner there must not be
    // taken over because that number is free here.
    const theirs = await plant({ pid: await deadPid(), machine: '00000000-0000-0000-0000-000000000000/pid:[1]' });
    const lock = lockOf({ staleMs: 1_000 });
    const err = await rejection(lock.acquire());
    expect(err.code).toBe('ELOCKED');
    expect(err.details['owner']).toEqual(theirs);
    expect(await LockDir.inspect(parent, { staleMs: 1_000 })).toMatchObject({ locked: true, stale: false, owner: theirs });
    await age(ownerFile(), 5_000);
    expect(await LockDir.inspect(parent, { staleMs: 1_000 })).toMatchObject({ locked: true, stale: true, reason: 'heartbeat-expired' });
    await rm(lockedDir(), { recursive: true });

    // Our own machine recorded, the pid gone: dead at once, as without it,
    // even under the host's former name.
    await plant({ pid: await deadPid(), machine });
    expect(await LockDir.inspect(parent)).toMatchObject({ locked: true, stale: true, reason: 'owner-dead' });
    await rm(lockedDir(), { recursive: true });
    await plant({ host: 'renamed-since.example.org', pid: await deadPid(), machine });
    expect(await LockDir.inspect(parent)).toMatchObject({ locked: true, stale: true, reason: 'owner-dead' });
    await rm(lockedDir(), { recursive: true });

    // A malformed machine field is an unreadable owner file (held until it ages).
    await plant({ pid: await deadPid(), machine: 42 as unknown as string });
    expect(await LockDir.inspect(parent)).toMatchObject({ locked: true, stale: false });
    expect((await LockDir.inspect(parent)).owner).toBeUndefined();
  });

  it('a live owner on this host whose heartbeat is older than staleMs is stale', async () => {
    await plant({ pid: process.pid }, 5_000);
    expect(await LockDir.inspect(parent, { staleMs: 1_000 })).toMatchObject({ stale: true, reason: 'heartbeat-expired' });
    expect(await LockDir.inspect(parent, { staleMs: 10_000 })).toMatchObject({ stale: false });
    const lock = lockOf({ staleMs: 1_000 });
    await lock.acquire();
    expect(await readOwner()).toEqual(lock.owner);
  });

  it("a contender with a shorter staleMs judges a live owner's heartbeat by the owner's own staleMs (recorded in owner.json, honoured up to a day)", async () => {
    const a = lockOf({ staleMs: 8_000, heartbeatMs: 2_000 });
    await a.acquire();
    try {
      expect(a.owner?.staleMs).toBe(8_000);
      expect((await readOwner()).staleMs).toBe(8_000);
      await new Promise((resolve) => setTimeout(resolve, 700));
      // 700 ms since the last beat: past b's 500 ms, within a's 8 s.
      const b = lockOf({ staleMs: 500 });
      expect((await rejection(b.acquire())).code).toBe('ELOCKED');
      expect(await LockDir.inspect(parent, { staleMs: 500 })).toMatchObject({ locked: true, stale: false });
      expect(a.signal.aborted).toBe(false);
    } finally {
      await a.release();
    }
    // An owner's staleMs past a day counts as a day; one without (older versions) is judged by ours alone.
    await plant({ pid: process.pid, staleMs: 7 * 24 * 3600 * 1000 }, 25 * 3600 * 1000);
    expect(await LockDir.inspect(parent, { staleMs: 1_000 })).toMatchObject({ stale: true, reason: 'heartbeat-expired' });
  });

  it('a lock directory without owner.json is held while young (its creator is writing it) and stale once older than staleMs', async () => {
    await mkdir(lockedDir());
    const lock = lockOf({ staleMs: 1_000 });
    const err = await rejection(lock.acquire({ waitMs: 100, pollMs: 10 }));
    expect(err.code).toBe('ELOCKED');
    expect(err.details['owner']).toBeUndefined();
    expect(await LockDir.inspect(parent, { staleMs: 1_000 })).toMatchObject({ locked: true, stale: false });
    expect((await LockDir.inspect(parent, { staleMs: 1_000 })).owner).toBeUndefined();

    await age(lockedDir(), 5_000);
    expect(await LockDir.inspect(parent, { staleMs: 1_000 })).toMatchObject({ locked: true, stale: true, reason: 'owner-file-missing' });
    await lock.acquire();
    expect(await readOwner()).toEqual(lock.owner);
  });

  it('an unreadable owner.json is held while young and taken over once older than staleMs', async () => {
    await mkdir(lockedDir());
    await writeFile(ownerFile(), '{"host": "half-writ');
    const lock = lockOf({ staleMs: 1_000 });
    expect((await rejection(lock.acquire())).code).toBe('ELOCKED');
    await age(ownerFile(), 5_000);
    expect(await LockDir.inspect(parent, { staleMs: 1_000 })).toMatchObject({ locked: true, stale: true, reason: 'owner-file-unreadable' });
    await lock.acquire();
    expect(await readOwner()).toEqual(lock.owner);
    expect(await readdir(lockedDir())).toEqual(['owner.json']);
  });

  it('when a rival takes over the same stale lock first, the late contender puts the rival\'s owner file back and reports ELOCKED', async () => {
    await plant({ pid: await deadPid() });
    const rival = lockOf();
    // The late contender has judged the lock stale; just before it renames
    // owner.json away, the rival completes its own takeover.
    const fs = withHook(
      (op, args) => op === 'rename' && String(args[0]).endsWith('/owner.json'),
      () => rival.acquire(),
    );
    const late = lockOf({ fs });
    const err = await rejection(late.acquire());
    expect(err.code).toBe('ELOCKED');
    expect(err.details['owner']).toEqual(rival.owner);
    expect(rival.held).toBe(true);
    expect(await readOwner()).toEqual(rival.owner);
    expect(await readdir(lockedDir())).toEqual(['owner.json']);
    expect(rival.signal.aborted).toBe(false);
    await rival.release();
    expect(await readdir(parent)).toEqual([]);
  });

  it('an owner that refreshes its heartbeat after being judged stale keeps its lock', async () => {
    const theirs = await plant({ host: 'elsewhere.example.org' }, 5_000);
    const fs = withHook(
      (op, args) => op === 'rename' && String(args[0]).endsWith('/owner.json'),
      () => utimes(ownerFile(), new Date(), new Date()),
    );
    const late = lockOf({ staleMs: 1_000, fs });
    const err = await rejection(late.acquire());
    expect(err.code).toBe('ELOCKED');
    expect(await readOwner()).toEqual(theirs);
    expect(await readdir(lockedDir())).toEqual(['owner.json']);
  });

  it('of two contenders that both find a lock without owner file and old, exactly one gets it', async () => {
    await mkdir(lockedDir());
    await age(lockedDir(), 5_000);
    const a = lockOf({ staleMs: 1_000 });
    const b = lockOf({ staleMs: 1_000 });
    const results = await Promise.allSettled([a.acquire(), b.acquire()]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const winner = a.held ? a : b;
    expect([a.held, b.held].filter(Boolean)).toHaveLength(1);
    expect(await readOwner()).toEqual(winner.owner);
  });
});

describe('LockDir lost locks and the heartbeat', () => {
  it('release after being taken over is ELOCK_LOST and leaves the new owner alone', async () => {
    const a = lockOf({ staleMs: 1_000, heartbeatMs: 300 });
    await a.acquire();
    await age(ownerFile(), 5_000); // as if a had been paused for 5 s
    const b = lockOf({ staleMs: 1_000 });
    await b.acquire();
    const err = await rejection(a.release());
    expect(err.code).toBe('ELOCK_LOST');
    expect(err.details['owner']).toEqual(b.owner);
    expect(a.signal.aborted).toBe(true);
    expect(a.signal.reason).toBe(err);
    expect(a.held).toBe(false);
    expect(await readOwner()).toEqual(b.owner);
    expect(await readdir(lockedDir())).toEqual(['owner.json']);
    expect(b.signal.aborted).toBe(false);
    await a.release(); // the loss was reported once
  });

  it('the signal aborts with ELOCK_LOST when owner.json is replaced under us', async () => {
    const lock = lockOf({ staleMs: 2_000, heartbeatMs: 20 });
    await lock.acquire();
    const signal = lock.signal;
    expect(signal.aborted).toBe(false);
    const intruder: LockOwner = { host: 'elsewhere.example.org', pid: 4242, purpose: 'intruder', since: new Date().toISOString(), token: 'b'.repeat(32) };
    await rm(ownerFile());
    await writeFile(ownerFile(), JSON.stringify(intruder));
    const reason = (await aborted(signal, 3_000)) as StowageError;
    expect(reason).toBeInstanceOf(StowageError);
    expect(reason.code).toBe('ELOCK_LOST');
    expect(reason.details['owner']).toEqual(intruder);
    expect(lock.held).toBe(false);
    expect((await rejection(lock.release())).code).toBe('ELOCK_LOST');
    expect(await readOwner()).toEqual(intruder);
  });

  it('the signal aborts with ELOCK_LOST when the lock directory vanishes', async () => {
    const lock = lockOf({ staleMs: 2_000, heartbeatMs: 20 });
    await lock.acquire();
    await rm(lockedDir(), { recursive: true });
    const reason = (await aborted(lock.signal, 3_000)) as StowageError;
    expect(reason.code).toBe('ELOCK_LOST');
    expect(reason.message).toContain('disappeared');
  });

  it('the heartbeat refreshes owner.json, so a live holder is never stale', async () => {
    const a = lockOf({ staleMs: 600, heartbeatMs: 25 });
    await a.acquire();
    await age(ownerFile(), 10_000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(Date.now() - (await stat(ownerFile())).mtimeMs).toBeLessThan(1_000);
    // Without a heartbeat, a holder of this process is stale after 600 ms
    // (the planted-age test above); b waits twice that in vain.
    const b = lockOf({ staleMs: 600 });
    const err = await rejection(b.acquire({ waitMs: 1_200, pollMs: 20 }));
    expect(err.code).toBe('ELOCKED');
    expect(Date.now() - (await stat(ownerFile())).mtimeMs).toBeLessThan(1_000);
    expect(a.signal.aborted).toBe(false);
    expect(await readOwner()).toEqual(a.owner);
  });
});

describe('LockDir.withLock and close', () => {
  it('runs fn under the lock, passes a live signal, returns its value and releases', async () => {
    const lock = lockOf();
    const result = await lock.withLock(async (signal) => {
      expect(signal.aborted).toBe(false);
      expect(await LockDir.inspect(parent)).toMatchObject({ locked: true, owner: lock.owner });
      return 42;
    });
    expect(result).toBe(42);
    expect(lock.held).toBe(false);
    expect(await readdir(parent)).toEqual([]);
  });

  it('releases when fn throws, and rethrows fn\'s error', async () => {
    const lock = lockOf();
    const boom = new Error('boom');
    await expect(
      lock.withLock(() => {
        throw boom;
      }),
    ).rejects.toBe(boom);
    expect(lock.held).toBe(false);
    expect(await readdir(parent)).toEqual([]);
  });

  it('the signal given to fn also aborts with the caller\'s signal', async () => {
    const lock = lockOf();
    const ctrl = new AbortController();
    const reason = new Error('stop');
    await expect(
      lock.withLock(
        async (signal) => {
          ctrl.abort(reason);
          expect(signal.aborted).toBe(true);
          throw signal.reason;
        },
        { signal: ctrl.signal },
      ),
    ).rejects.toBe(reason);
    expect(await readdir(parent)).toEqual([]);
  });

  it('close() and Symbol.asyncDispose release the lock', async () => {
    const a = lockOf();
    await a.acquire();
    await a.close();
    expect(await readdir(parent)).toEqual([]);
    await a.close();
    {
      await using b = lockOf();
      await b.acquire();
      expect(await readdir(parent)).toEqual(['LOCKED']);
    }
    expect(await readdir(parent)).toEqual([]);
  });
});

describe('LockDir abort', () => {
  it('an acquire aborted before it starts rejects with the reason and creates nothing', async () => {
    const reason = new Error('cancelled');
    const lock = lockOf();
    await expect(lock.acquire({ signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    await expect(lock.withLock(() => 1, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
    expect(await readdir(parent)).toEqual([]);
    expect(lock.held).toBe(false);
  });

  it('an acquire aborted while waiting rejects promptly and leaves the owner alone', async () => {
    const a = lockOf();
    await a.acquire();
    const b = lockOf();
    const ctrl = new AbortController();
    const reason = new Error('cancelled');
    setTimeout(() => ctrl.abort(reason), 100);
    const t = Date.now();
    await expect(b.acquire({ waitMs: 10_000, pollMs: 20, signal: ctrl.signal })).rejects.toBe(reason);
    expect(Date.now() - t).toBeLessThan(2_000);
    expect(b.held).toBe(false);
    expect(await readOwner()).toEqual(a.owner);
    await a.release();
    await b.acquire();
    expect(b.held).toBe(true);
  });
});

describe('LockDir options', () => {
  it('unknown or bad options are EBAD_CONFIG naming the option', async () => {
    const bad = (f: () => unknown): StowageError => {
      try {
        f();
      } catch (err) {
        expect(err).toBeInstanceOf(StowageError);
        expect((err as StowageError).code).toBe('EBAD_CONFIG');
        return err as StowageError;
      }
      throw new Error('no error thrown');
    };
    const e = bad(() => new LockDir(parent, { stalems: 5 } as never));
    expect(e.message).toContain('"stalems"');
    expect(e.details['suggestion']).toBe('staleMs');
    expect(bad(() => new LockDir(parent, { staleMs: 1000, heartbeatMs: 1000 })).details['option']).toBe('heartbeatMs');
    // Just inside staleMs is refused too: a late heartbeat would let a second writer in.
    const late = bad(() => new LockDir(parent, { staleMs: 60_000, heartbeatMs: 59_000 }));
    expect(late.details['option']).toBe('heartbeatMs');
    expect(late.message).toMatch(/at most a third of "staleMs" \(60000\)/);
    // Half is refused too: the holder gives the lock up when a beat is staleMs / 2 late, so one failed beat would lose it.
    expect(bad(() => new LockDir(parent, { staleMs: 60_000, heartbeatMs: 30_000 })).details['option']).toBe('heartbeatMs');
    expect(new LockDir(parent, { staleMs: 60_000, heartbeatMs: 20_000 }).heartbeatMs).toBe(20_000);
    expect(new LockDir(parent, { staleMs: 3 }).heartbeatMs).toBe(1);
    expect(bad(() => new LockDir(parent, { staleMs: 2 })).details['option']).toBe('staleMs');
    expect(bad(() => new LockDir(parent, { staleMs: 0 })).details['option']).toBe('staleMs');
    expect(bad(() => new LockDir(parent, { name: 'a/b' })).details['option']).toBe('name');
    expect(bad(() => new LockDir(parent, { name: '..' })).details['option']).toBe('name');
    expect(bad(() => new LockDir(parent, { purpose: 7 as never })).details['option']).toBe('purpose');
    expect(bad(() => new LockDir(parent, { fs: { mkdir: async () => {} } as never })).message).toContain('createFile');
    expect(bad(() => new LockDir('')).details['option']).toBe('parentDir');

    const lock = lockOf();
    expect((await rejection(lock.acquire({ wait: 5 } as never))).details['suggestion']).toBe('waitMs');
    expect((await rejection(lock.acquire({ waitMs: -1 }))).details['option']).toBe('waitMs');
    expect((await rejection(lock.acquire({ pollMs: 0 }))).details['option']).toBe('pollMs');
    expect((await rejection(lock.withLock(() => 1, { poll: 1 } as never))).code).toBe('EBAD_CONFIG');
    expect((await rejection(LockDir.inspect(parent, { purpose: 'x' } as never))).code).toBe('EBAD_CONFIG');
    expect(await readdir(parent)).toEqual([]);
  });
});

describe('LockDir.inspect', () => {
  it('reports an absent, a held and a stale lock without changing anything', async () => {
    expect(await LockDir.inspect(parent)).toEqual({ path: lockedDir(), locked: false, stale: false, ageMs: 0 });
    expect(await LockDir.inspect(join(parent, 'missing'))).toMatchObject({ locked: false });

    const lock = lockOf({ heartbeatMs: 10_000 });
    await lock.acquire();
    const held = await LockDir.inspect(parent);
    expect(held).toMatchObject({ path: lockedDir(), locked: true, stale: false, owner: lock.owner });
    expect(held.reason).toBeUndefined();
    expect(held.ageMs).toBeLessThan(5_000);
    await lock.release();

    const theirs = await plant({ pid: await deadPid() }, 3_000);
    const before = { list: await readdir(lockedDir()), mtime: (await stat(ownerFile())).mtimeMs, dirMtime: (await stat(lockedDir())).mtimeMs };
    const stale = await LockDir.inspect(parent);
    expect(stale).toMatchObject({ locked: true, stale: true, reason: 'owner-dead', owner: theirs });
    expect(stale.ageMs).toBeGreaterThanOrEqual(2_900);
    expect({ list: await readdir(lockedDir()), mtime: (await stat(ownerFile())).mtimeMs, dirMtime: (await stat(lockedDir())).mtimeMs }).toEqual(before);
    expect(await readOwner()).toEqual(theirs);
  });
});

/** A LockFs over the local one whose `op` fails with `error` while `armed()` and `when(args)` hold, at most `times` times. */
function failing(op: keyof LockFs, error: () => Error, opts: { when?: (args: unknown[]) => boolean; armed?: () => boolean; times?: number } = {}): LockFs {
  let left = opts.times ?? Infinity;
  const fs = { ...localLockFs } as Record<keyof LockFs, (...a: unknown[]) => Promise<unknown>>;
  fs[op] = async (...args: unknown[]) => {
    if (left > 0 && (opts.armed?.() ?? true) && (opts.when?.(args) ?? true)) {
      left -= 1;
      throw error();
    }
    return (localLockFs[op] as (...a: unknown[]) => Promise<unknown>)(...args);
  };
  return fs as unknown as LockFs;
}

describe('LockDir when the file operations fail', () => {
  it('a stale lock that cannot be moved aside is ESTALE_LOCK, with the cause, and is left as it was', async () => {
    const theirs = await plant({ pid: await deadPid() });
    const eio = new StowageError('EIO', 'rename failed');
    const lock = lockOf({ fs: failing('rename', () => eio, { when: (a) => String(a[0]).endsWith('/owner.json') }) });
    const err = await rejection(lock.acquire({ waitMs: 1_000 }));
    expect(err.code).toBe('ESTALE_LOCK');
    expect(err.cause).toBe(eio);
    expect(err.details['owner']).toEqual(theirs);
    expect(lock.held).toBe(false);
    expect(await readOwner()).toEqual(theirs);
    expect(await readdir(lockedDir())).toEqual(['owner.json']);
  });

  it('an owner file that cannot be written is reported and leaves no lock directory behind', async () => {
    const lock = lockOf({ fs: failing('createFile', () => new StowageError('ENOSPACE', 'disk full')) });
    expect((await rejection(lock.acquire())).code).toBe('ENOSPACE');
    expect(lock.held).toBe(false);
    expect(await readdir(parent)).toEqual([]);
  });

  it('one failed heartbeat at the longest period allowed (staleMs / 3) does not lose the lock', async () => {
    let armed = false;
    const lock = lockOf({ staleMs: 900, heartbeatMs: 300, fs: failing('setMtime', () => new StowageError('EIO', 'utimes failed'), { armed: () => armed, times: 1 }) });
    await lock.acquire();
    armed = true;
    await new Promise((r) => setTimeout(r, 1_300)); // four beats, the first of them failing
    expect(lock.signal.aborted).toBe(false);
    expect(lock.held).toBe(true);
    await lock.release();
  });

  it('a heartbeat that cannot be refreshed aborts the signal with ELOCK_LOST, the cause attached', async () => {
    let armed = false;
    const eio = new StowageError('EIO', 'utimes failed');
    const lock = lockOf({ staleMs: 200, heartbeatMs: 20, fs: failing('setMtime', () => eio, { armed: () => armed }) });
    await lock.acquire();
    const published: unknown[] = [];
    const onLost = (m: unknown): void => void published.push(m);
    subscribe('stowage:lock:lost', onLost);
    try {
      armed = true;
      const reason = (await aborted(lock.signal, 3_000)) as StowageError;
      expect(reason.code).toBe('ELOCK_LOST');
      expect(reason.cause).toBe(eio);
      expect(reason.message).toContain('heartbeat');
      expect(published).toEqual([{ path: lock.path, error: reason }]);
    } finally {
      unsubscribe('stowage:lock:lost', onLost);
    }
    expect(lock.held).toBe(false);
  });

  it('a heartbeat that hangs (a stalled NFS mount or SSH link) aborts the signal with ELOCK_LOST before others may take the lock over', async () => {
    let hang = false;
    const never = new Promise<never>(() => {});
    const fs = { ...localLockFs, setMtime: async (...a: Parameters<LockFs['setMtime']>) => (hang ? never : localLockFs.setMtime(...a)) } as LockFs;
    const lock = lockOf({ staleMs: 400, heartbeatMs: 40, fs });
    await lock.acquire();
    const t0 = performance.now();
    hang = true;
    const reason = (await aborted(lock.signal, 3_000)) as StowageError;
    const after = performance.now() - t0;
    expect(reason.code).toBe('ELOCK_LOST');
    expect(reason.message).toMatch(/heartbeat .*stuck/);
    // Lost at staleMs / 2 plus a beat or two: before the lock looks stale to anyone else.
    expect(after).toBeGreaterThanOrEqual(150);
    expect(after).toBeLessThan(400);
    expect(lock.held).toBe(false);
  });

  it('a release whose first step fails keeps the lock held, and can be retried', async () => {
    let armed = false;
    const eio = new StowageError('EIO', 'rename failed');
    const lock = lockOf({ fs: failing('rename', () => eio, { armed: () => armed, times: 1 }) });
    await lock.acquire();
    armed = true;
    await expect(lock.release()).rejects.toBe(eio);
    expect(lock.held).toBe(true);
    expect(await readOwner()).toEqual(lock.owner);
    await lock.release();
    expect(lock.held).toBe(false);
    expect(await readdir(parent)).toEqual([]);
  });
});

describe('LockDir on another LockFs', () => {
  it('plants the lock through the given operations, with "/"-separated paths of that tree', async () => {
    // A "remote" tree: paths under /remote map onto the temp folder.
    const calls: string[] = [];
    const map = (p: string): string => {
      expect(p.startsWith('/remote/')).toBe(true);
      return join(parent, p.slice('/remote/'.length));
    };
    const remote: LockFs = {
      mkdir: (p) => (calls.push('mkdir'), localLockFs.mkdir(map(p))),
      createFile: (p, d) => (calls.push('createFile'), localLockFs.createFile(map(p), d)),
      readFile: (p) => (calls.push('readFile'), localLockFs.readFile(map(p))),
      rename: (a, b) => (calls.push('rename'), localLockFs.rename(map(a), map(b))),
      remove: (p) => (calls.push('remove'), localLockFs.remove(map(p))),
      stat: (p) => (calls.push('stat'), localLockFs.stat(map(p))),
      setMtime: (p, t) => (calls.push('setMtime'), localLockFs.setMtime(map(p), t)),
    };
    await mkdir(join(parent, 'tree'));
    const lock = lockOf({ fs: remote, staleMs: 1_000, heartbeatMs: 20 }, '/remote/tree');
    expect(lock.path).toBe('/remote/tree/LOCKED');
    await lock.acquire();
    expect(JSON.parse(await readFile(join(parent, 'tree', 'LOCKED', 'owner.json'), 'utf8'))).toEqual(lock.owner);
    expect(await LockDir.inspect('/remote/tree', { fs: remote })).toMatchObject({ locked: true, owner: lock.owner });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(calls).toContain('setMtime');
    await lock.release();
    expect(await readdir(join(parent, 'tree'))).toEqual([]);
    expect(calls.slice(0, 2)).toEqual(['mkdir', 'createFile']);
  });
});
