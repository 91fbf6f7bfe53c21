import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { StowageWarning } from '../../../src/errors.js';
import { backupSetPath, listBackupSets } from '../../../src/retention/index.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { link, makeSet, plantLock } from './helpers.js';

const local = new LocalTransport();
let tmp: TempDir;
let root: string;
beforeEach(async () => {
  tmp = makeTempDir('retention-sets');
  root = join(tmp.path, 'backups');
  await mkdir(root);
});
afterEach(async () => {
  await tmp.remove();
});

describe('listBackupSets', () => {
  it('lists the sets oldest first with their times read in the zone, and ignores the last link', async () => {
    for (const id of ['2026/11/22/031500', '2026/03/29/033000', '2026/10/25/023000', '2024/02/29/000000']) await makeSet(root, id);
    await link(root, '2026/11/22/031500');
    const warnings: StowageWarning[] = [];
    const sets = await listBackupSets(local, root, { timeZone: 'Europe/Berlin', onWarning: (w) => warnings.push(w) });
    expect(warnings).toEqual([]);
    expect(sets.map((s) => [s.id, s.time.toISOString()])).toEqual([
      ['2024/02/29/000000', '2024-02-28T23:00:00.000Z'],
      ['2026/03/29/033000', '2026-03-29T01:30:00.000Z'],
      ['2026/10/25/023000', '2026-10-25T00:30:00.000Z'], // the fall-back hour: the earlier instant
      ['2026/11/22/031500', '2026-11-22T02:15:00.000Z'],
    ]);
    expect(sets[0]!.path).toBe(join(root, '2024/02/29/000000'));
    expect(sets.every((s) => s.lockedBy === undefined)).toBe(true);
    const utc = await listBackupSets(local, root, { timeZone: 'UTC' });
    expect(utc[0]!.time.toISOString()).toBe('2024-02-29T00:00:00.000Z');
  });

  it('a wall time in the spring-forward gap is moved forward by the gap', async () => {
    await makeSet(root, '2026/03/29/023000');
    const [s] = await listBackupSets(local, root, { timeZone: 'Europe/Berlin' });
    expect(s!.time.toISOString()).toBe('2026-03-29T01:30:00.000Z');
  });

  it('ignores and warns on every name that does not fit the layout, touching nothing', async () => {
    await makeSet(root, '2026/11/22/031500');
    const junk = ['README', '26', '2026/13', '2026/00', '2026/1', '2026/11/31', '2026/11/22/240000', '2026/11/22/036000', '2026/11/22/0315', '2100/02/29', '2023/02/29', 'abcd'];
    for (const j of junk) await mkdir(join(root, j), { recursive: true });
    await writeFile(join(root, '2026/11/22/031501'), 'a file, not a set');
    await writeFile(join(root, 'notes.txt'), 'hello');
    const warnings: StowageWarning[] = [];
    const sets = await listBackupSets(local, root, { timeZone: 'UTC', onWarning: (w) => warnings.push(w) });
    expect(sets.map((s) => s.id)).toEqual(['2026/11/22/031500']);
    const warned = warnings.map((w) => w.path.slice(root.length + 1)).sort();
    expect(warned).toEqual(
      ['README', '26', '2026/13', '2026/00', '2026/1', '2026/11/31', '2026/11/22/240000', '2026/11/22/036000', '2026/11/22/0315', '2100/02/29', '2023/02/29', 'abcd', '2026/11/22/031501', 'notes.txt'].sort(),
    );
    expect(warnings.every((w) => w.code === 'EBAD_CONFIG' && w.recoverable && /YYYY\/MM\/DD\/HHMMSS/.test(w.message))).toBe(true);
  });

  it('strict throws on the first odd name', async () => {
    await makeSet(root, '2026/11/22/031500');
    await writeFile(join(root, 'notes.txt'), 'hello');
    await expect(listBackupSets(local, root, { timeZone: 'UTC', strict: true })).rejects.toMatchObject({ code: 'EBAD_CONFIG', details: { path: join(root, 'notes.txt') } });
  });

  it('2024-02-29 is a day, 2100-02-29 is not', async () => {
    await makeSet(root, '2024/02/29/120000');
    await makeSet(root, '2100/02/29/120000');
    await makeSet(root, '2100/02/28/120000');
    const warnings: StowageWarning[] = [];
    const sets = await listBackupSets(local, root, { timeZone: 'UTC', onWarning: (w) => warnings.push(w) });
    expect(sets.map((s) => s.id)).toEqual(['2024/02/29/120000', '2100/02/28/120000']);
    expect(warnings.map((w) => w.path)).toEqual([join(root, '2100/02/29')]);
  });

  it('marks sets under a LOCKED directory at any level, and warns once per lock', async () => {
    for (const id of ['2025/12/31/030000', '2026/10/01/030000', '2026/11/01/030000', '2026/11/02/030000', '2026/11/03/030000', '2026/11/03/150000']) await makeSet(root, id);
    await plantLock(join(root, '2026/10'));
    await plantLock(join(root, '2026/11/02'));
    await plantLock(join(root, '2026/11/03/150000'));
    const warnings: StowageWarning[] = [];
    const sets = await listBackupSets(local, root, { timeZone: 'UTC', onWarning: (w) => warnings.push(w) });
    expect(Object.fromEntries(sets.map((s) => [s.id, s.lockedBy?.slice(root.length + 1)]))).toEqual({
      '2025/12/31/030000': undefined,
      '2026/10/01/030000': '2026/10/LOCKED',
      '2026/11/01/030000': undefined,
      '2026/11/02/030000': '2026/11/02/LOCKED',
      '2026/11/03/030000': undefined,
      '2026/11/03/150000': '2026/11/03/150000/LOCKED',
    });
    expect(warnings.map((w) => [w.code, w.path.slice(root.length + 1)])).toEqual([
      ['ELOCKED', '2026/10/LOCKED'],
      ['ELOCKED', '2026/11/02/LOCKED'],
      ['ELOCKED', '2026/11/03/150000/LOCKED'],
    ]);
  });

  it('a LOCKED root covers every set, unless it is the caller own lock (ownLockToken)', async () => {
    await makeSet(root, '2026/11/01/030000');
    await plantLock(root, 'my-token');
    const foreign = await listBackupSets(local, root, { timeZone: 'UTC' });
    expect(foreign[0]!.lockedBy).toBe(join(root, 'LOCKED'));
    const other = await listBackupSets(local, root, { timeZone: 'UTC', ownLockToken: 'not-mine' });
    expect(other[0]!.lockedBy).toBe(join(root, 'LOCKED'));
    const mine = await listBackupSets(local, root, { timeZone: 'UTC', ownLockToken: 'my-token' });
    expect(mine[0]!.lockedBy).toBeUndefined();
  });

  it('a LOCKED without a readable owner file is foreign even with a token', async () => {
    await makeSet(root, '2026/11/01/030000');
    await mkdir(join(root, 'LOCKED'));
    const sets = await listBackupSets(local, root, { timeZone: 'UTC', ownLockToken: 'my-token' });
    expect(sets[0]!.lockedBy).toBe(join(root, 'LOCKED'));
  });

  it('an empty tree has no sets', async () => {
    expect(await listBackupSets(local, root, { timeZone: 'UTC' })).toEqual([]);
  });

  it('a missing tree is ENOT_FOUND, a file is ENOT_FOUND', async () => {
    await expect(listBackupSets(local, join(root, 'nope'))).rejects.toMatchObject({ code: 'ENOT_FOUND', message: expect.stringContaining('does not exist') });
    await writeFile(join(root, 'file'), 'x');
    await expect(listBackupSets(local, join(root, 'file'))).rejects.toMatchObject({ code: 'ENOT_FOUND', message: expect.stringContaining('not a directory') });
  });

  it('refuses unknown and bad options', async () => {
    await expect(listBackupSets(local, root, { timezone: 'UTC' } as never)).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('"timezone"') });
    await expect(listBackupSets(local, root, { timeZone: 'Nowhere/Land' })).rejects.toMatchObject({ code: 'EBAD_CONFIG' });
    await expect(listBackupSets(local, root, { linkName: 'a/b' })).rejects.toMatchObject({ code: 'EBAD_CONFIG', message: expect.stringContaining('"linkName"') });
    await expect(listBackupSets(local, root, { ownLockToken: '' })).rejects.toMatchObject({ code: 'EBAD_CONFIG' });
  });

  it('aborted before start rejects with the reason', async () => {
    const ac = new AbortController();
    const reason = new Error('stop');
    ac.abort(reason);
    await expect(listBackupSets(local, root, { signal: ac.signal })).rejects.toBe(reason);
  });
});

describe('backupSetPath', () => {
  it.each([
    ['2026-11-22T02:15:00Z', 'Europe/Berlin', '2026/11/22/031500'],
    ['2026-11-22T02:15:00Z', 'UTC', '2026/11/22/021500'],
    ['2026-03-29T01:30:00Z', 'Europe/Berlin', '2026/03/29/033000'],
    ['2026-10-25T00:30:00Z', 'Europe/Berlin', '2026/10/25/023000'],
    ['2026-10-25T01:30:00Z', 'Europe/Berlin', '2026/10/25/023000'], // the same wall time twice
    ['2024-02-29T23:59:59Z', 'UTC', '2024/02/29/235959'],
    ['2020-12-31T23:30:00Z', 'America/Chicago', '2020/12/31/173000'],
  ])('%s in %s is %s', (t, tz, expected) => {
    expect(backupSetPath(new Date(t), { timeZone: tz })).toBe(expected);
    expect(backupSetPath(Date.parse(t), { timeZone: tz })).toBe(expected);
  });

  it('round-trips through listBackupSets', async () => {
    const t = Date.parse('2026-07-04T10:11:12Z');
    await makeSet(root, backupSetPath(t, { timeZone: 'America/Chicago' }));
    const [s] = await listBackupSets(local, root, { timeZone: 'America/Chicago' });
    expect(s!.time.getTime()).toBe(t);
  });

  it('refuses bad input', () => {
    expect(() => backupSetPath(new Date('x'))).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG' }));
    expect(() => backupSetPath(0, { timeZone: 'Bad/Zone' })).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG' }));
    expect(() => backupSetPath(0, { tz: 'UTC' } as never)).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG' }));
    expect(() => backupSetPath(Date.parse('+010000-01-01T00:00:00Z'), { timeZone: 'UTC' })).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG' }));
  });
});
