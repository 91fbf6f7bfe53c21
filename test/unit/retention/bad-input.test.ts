/**
 * Bad arguments to the public entry points of retention are EBAD_CONFIG
 * naming what is wrong, never a TypeError from deep inside (regression:
 * `Retention.apply(t, d, null)`, `listBackupSets(t, d, null)` and
 * `Retention.updateLastLink(t, d, null)` threw "Cannot read properties of
 * null"). A `null` options object means "no options", as for every other
 * options object of stowage (checkOptionKeys).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Retention, backupSetPath, listBackupSets } from '../../../src/retention/index.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { dailyIds, makeSet } from './helpers.js';

const local = new LocalTransport();
let tmp: TempDir;
let root: string;
const ids = dailyIds('2026-11-22', 2);
beforeEach(async () => {
  tmp = makeTempDir('retention-bad-input');
  root = join(tmp.path, 'backups');
  await mkdir(root);
  for (const id of ids) await makeSet(root, id);
});
afterEach(async () => {
  await tmp.remove();
});

const BAD = { code: 'EBAD_CONFIG', name: 'StowageError' };

describe('retention entry points and null options', () => {
  it('null options mean no options, as in checkOptionKeys', async () => {
    const r = new Retention({ keepLast: 5 });
    expect((await r.apply(local, root, null as never)).kept.map((k) => k.item.id)).toEqual([...ids].reverse());
    expect((await listBackupSets(local, root, null as never)).map((s) => s.id)).toEqual(ids);
    expect(await Retention.updateLastLink(local, root, null as never)).toMatchObject({ action: 'created', target: ids[1] });
    expect(backupSetPath(Date.parse('2026-11-22T03:00:00Z'), null as never)).toMatch(/^2026\/11\/2[12]\/\d{6}$/);
  });

  it('options that are not an object, a path that is not a string, and a missing transport are EBAD_CONFIG', async () => {
    const r = new Retention({ keepLast: 5 });
    await expect(r.apply(local, root, 'dry' as never)).rejects.toMatchObject(BAD);
    await expect(listBackupSets(local, root, 7 as never)).rejects.toMatchObject(BAD);
    await expect(Retention.updateLastLink(local, root, 'last' as never)).rejects.toMatchObject(BAD);
    for (const dir of [null, undefined, 42, '', { path: root }]) {
      await expect(r.apply(local, dir as never)).rejects.toMatchObject({ ...BAD, message: expect.stringContaining('path') });
      await expect(listBackupSets(local, dir as never)).rejects.toMatchObject(BAD);
      await expect(Retention.updateLastLink(local, dir as never)).rejects.toMatchObject(BAD);
      await expect(Retention.applyFreeSpace(local, dir as never, { minFreePercent: 10, verifiedElsewhere: [{ transport: local, dir: '/elsewhere' }] })).rejects.toMatchObject(BAD);
    }
    for (const t of [null, undefined, {}, '/backups']) {
      await expect(r.apply(t as never, root)).rejects.toMatchObject({ ...BAD, message: expect.stringContaining('Transport') });
      await expect(listBackupSets(t as never, root)).rejects.toMatchObject(BAD);
      await expect(Retention.updateLastLink(t as never, root)).rejects.toMatchObject(BAD);
      await expect(Retention.applyFreeSpace(t as never, root, { minFreePercent: 10, verifiedElsewhere: [{ transport: local, dir: '/elsewhere' }] })).rejects.toMatchObject(BAD);
    }
    await expect(Retention.applyFreeSpace(local, root, null as never)).rejects.toMatchObject(BAD);
    await expect(Retention.applyFreeSpace(local, root, { minFreePercent: 10, verifiedElsewhere: [{ transport: local, dir: 5 as never }] })).rejects.toMatchObject({ ...BAD, message: expect.stringContaining('verifiedElsewhere[0].dir') });
  });
});
