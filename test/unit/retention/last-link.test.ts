import { cp, mkdir, readFile, readlink, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { StowageWarning } from '../../../src/errors.js';
import { Retention } from '../../../src/retention/index.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import type { TransportCapabilities } from '../../../src/transport/transport.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { ChrootTransport, dailyIds, makeSet, plantLock, snapshot } from './helpers.js';

const local = new LocalTransport();
let tmp: TempDir;
let root: string;
const ids = dailyIds('2026-11-22', 3, '031500');
beforeEach(async () => {
  tmp = makeTempDir('retention-last');
  root = join(tmp.path, 'backups');
  await mkdir(root);
});
afterEach(async () => {
  await tmp.remove();
});

const lastOf = (name = 'last') => readlink(join(root, name));
const leftovers = async () => (await snapshot(root)).filter((p) => p.includes('.stowage-'));
const update = (o: Parameters<typeof Retention.updateLastLink>[2] = {}) => Retention.updateLastLink(local, root, { timeZone: 'UTC', ...o });

describe('Retention.updateLastLink', () => {
  it('creates, keeps and moves the link, with a relative target, atomically', async () => {
    await makeSet(root, ids[0]!);
    await makeSet(root, ids[1]!);
    expect(await update()).toEqual({ action: 'created', link: join(root, 'last'), target: ids[1] });
    expect(await lastOf()).toBe(ids[1]);
    expect(await realpath(join(root, 'last'))).toBe(await realpath(join(root, ids[1]!)));
    expect(await update()).toEqual({ action: 'unchanged', link: join(root, 'last'), target: ids[1] });
    await makeSet(root, ids[2]!);
    expect(await update()).toEqual({ action: 'updated', link: join(root, 'last'), target: ids[2], previousTarget: ids[1] });
    expect(await lastOf()).toBe(ids[2]);
    expect(await leftovers()).toEqual([]);
  });

  it('points at the newest COMPLETE set: skips one still being written or locked', async () => {
    await makeSet(root, ids[0]!);
    await makeSet(root, ids[1]!);
    await writeFile(join(root, ids[1]!, 'wiki.tar.gz.part'), 'half');
    await makeSet(root, ids[2]!);
    await plantLock(join(root, ids[2]!));
    expect((await update()).target).toBe(ids[0]);
  });

  it('does nothing without a complete set', async () => {
    expect(await update()).toEqual({ action: 'none', link: join(root, 'last') });
    expect(existsSync(join(root, 'last'))).toBe(false);
    await mkdir(join(root, ids[0]!), { recursive: true }); // an empty set
    await symlink('2020/01/01/000000', join(root, 'last')); // dangling: left as is
    expect((await update()).action).toBe('none');
    expect(await lastOf()).toBe('2020/01/01/000000');
  });

  it('repairs a link collapsed into a folder holding a copy of the newest set', async () => {
    await makeSet(root, ids[0]!);
    await makeSet(root, ids[1]!, { files: { 'svn.tar.gz': 'svn bytes', 'sub/wiki.tar.gz': 'wiki bytes' } });
    await cp(join(root, ids[1]!), join(root, 'last'), { recursive: true }); // rsync -r without -l
    expect(lstatSync(join(root, 'last')).isDirectory()).toBe(true);
    expect(await update()).toEqual({ action: 'repaired', link: join(root, 'last'), target: ids[1], copyOf: ids[1] });
    expect(lstatSync(join(root, 'last')).isSymbolicLink()).toBe(true);
    expect(await lastOf()).toBe(ids[1]);
    expect(await readFile(join(root, 'last', 'sub', 'wiki.tar.gz'), 'utf8')).toBe('wiki bytes');
    expect(await leftovers()).toEqual([]);
  });

  it('repairs a folder that is a copy of an older set (collapsed on an earlier day)', async () => {
    for (const id of ids) await makeSet(root, id);
    await cp(join(root, ids[0]!), join(root, 'last'), { recursive: true });
    expect(await update()).toMatchObject({ action: 'repaired', target: ids[2], copyOf: ids[0] });
    expect(await lastOf()).toBe(ids[2]);
  });

  it('repairs an empty folder', async () => {
    await makeSet(root, ids[0]!);
    await mkdir(join(root, 'last'));
    expect(await update()).toMatchObject({ action: 'repaired', copyOf: ids[0] });
  });

  it('keeps a folder holding anything found in no set (EEXIST), untouched', async () => {
    await makeSet(root, ids[0]!, { files: { 'svn.tar.gz': 'svn bytes' } });
    await cp(join(root, ids[0]!), join(root, 'last'), { recursive: true });
    await writeFile(join(root, 'last', 'notes.txt'), 'written into last by hand');
    const before = await snapshot(root);
    await expect(update()).rejects.toMatchObject({ code: 'EEXIST', message: expect.stringContaining('only copy'), details: { path: join(root, 'last') } });
    expect(await snapshot(root)).toEqual(before);
  });

  it('keeps a folder whose bytes differ from the set (same names and sizes)', async () => {
    await makeSet(root, ids[0]!, { files: { 'svn.tar.gz': 'svn bytes' } });
    await cp(join(root, ids[0]!), join(root, 'last'), { recursive: true });
    await writeFile(join(root, 'last', 'svn.tar.gz'), 'SVN BYTES');
    await expect(update()).rejects.toMatchObject({ code: 'EEXIST' });
    expect(lstatSync(join(root, 'last')).isDirectory()).toBe(true);
  });

  it('keeps the folder when the SET is the mutant: the folder may be the only good copy', async () => {
    await makeSet(root, ids[0]!, { files: { 'svn.tar.gz': 'svn bytes' } });
    await cp(join(root, ids[0]!), join(root, 'last'), { recursive: true });
    await writeFile(join(root, ids[0]!, 'svn.tar.gz'), 'svn bytez'); // rot in the set, the copy matches the sidecar
    await expect(update()).rejects.toMatchObject({ code: 'EEXIST' });
    expect(await readFile(join(root, 'last', 'svn.tar.gz'), 'utf8')).toBe('svn bytes');
  });

  it('leaves a folder being written into alone (ELOCKED)', async () => {
    await makeSet(root, ids[0]!);
    await cp(join(root, ids[0]!), join(root, 'last'), { recursive: true });
    await plantLock(join(root, 'last'));
    await expect(update()).rejects.toMatchObject({ code: 'ELOCKED' });
    expect(lstatSync(join(root, 'last')).isDirectory()).toBe(true);
  });

  it('refuses to replace a regular file named last (EEXIST)', async () => {
    await makeSet(root, ids[0]!);
    await writeFile(join(root, 'last'), 'not a link');
    await expect(update()).rejects.toMatchObject({ code: 'EEXIST', message: expect.stringContaining('is a file') });
    expect(await readFile(join(root, 'last'), 'utf8')).toBe('not a link');
  });

  it('takes another name', async () => {
    await makeSet(root, ids[0]!);
    expect(await update({ name: 'latest' })).toMatchObject({ action: 'created', link: join(root, 'latest') });
    expect(await lastOf('latest')).toBe(ids[0]);
  });

  it('works through any transport (far paths only) and without atomic rename', async () => {
    await makeSet(root, ids[0]!);
    await makeSet(root, ids[1]!);
    const far = new ChrootTransport(tmp.path, 'far');
    expect(await Retention.updateLastLink(far, '/backups', { timeZone: 'UTC' })).toEqual({ action: 'created', link: '/backups/last', target: ids[1] });
    class NoAtomicRename extends LocalTransport {
      override readonly capabilities: TransportCapabilities = { remoteDigest: true, symlinks: true, atomicRename: false, freeSpace: true };
    }
    await makeSet(root, ids[2]!);
    expect(await Retention.updateLastLink(new NoAtomicRename(), root, { timeZone: 'UTC' })).toMatchObject({ action: 'updated', target: ids[2] });
    expect(await lastOf()).toBe(ids[2]);
  });

  it('never points at a set dated after now (as Retention does not count it): warns, and moves a link that points there', async () => {
    for (const id of ids) await makeSet(root, id);
    await makeSet(root, '2099/01/01/031500');
    const warnings: StowageWarning[] = [];
    const now = Date.parse('2026-11-22T12:00:00Z');
    expect(await update({ now, onWarning: (w) => warnings.push(w) })).toMatchObject({ action: 'created', target: ids[2] });
    expect(await lastOf()).toBe(ids[2]);
    expect(warnings).toEqual([expect.objectContaining({ code: 'EBAD_CONFIG', path: join(root, '2099/01/01/031500'), message: expect.stringContaining('dated after now') })]);
    // A link left pointing at the future set (by an older version) is moved back; the default now is the clock.
    await rm(join(root, 'last'));
    await symlink('2099/01/01/031500', join(root, 'last'));
    expect(await update()).toMatchObject({ action: 'updated', target: ids[2], previousTarget: '2099/01/01/031500' });
    await expect(update({ now, strict: true })).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('2099/01/01/031500') });
    await expect(update({ now: new Date(NaN) })).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('"now"') });
    // Only future-dated sets: nothing to link.
    const only = join(tmp.path, 'only');
    await makeSet(only, '2099/01/01/031500');
    expect(await Retention.updateLastLink(local, only, { timeZone: 'UTC', now })).toMatchObject({ action: 'none' });
    expect(existsSync(join(only, 'last'))).toBe(false);
  });

  it('refuses a transport without symlinks, bad options, a missing tree, and an aborted signal', async () => {
    class NoLinks extends LocalTransport {
      override readonly capabilities: TransportCapabilities = { remoteDigest: true, symlinks: false, atomicRename: true, freeSpace: true };
    }
    await expect(Retention.updateLastLink(new NoLinks(), root)).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('symlinks') });
    await expect(update({ name: 'a/b' })).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('"name"') });
    await expect(update({ name: '..' })).rejects.toMatchObject({ code: 'EBAD_CONFIG' });
    await expect(update({ nme: 'x' } as never)).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('"nme"') });
    await expect(Retention.updateLastLink(local, join(root, 'nope'))).rejects.toMatchObject({ code: 'ENOT_FOUND' });
    const ac = new AbortController();
    const reason = new Error('stop');
    ac.abort(reason);
    await expect(update({ signal: ac.signal })).rejects.toBe(reason);
  });
});
