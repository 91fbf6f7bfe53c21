/**
 * The LockFs contract, run against the local implementation. The checks
 * live in `lockFsContract` so a transport adapter (SFTP) can run the same
 * ones against its own tree.
 */
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StowageError } from '../../../src/errors.js';
import { localLockFs, LOCK_FS_METHODS, type LockFs } from '../../../src/lock/index.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';

async function code(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StowageError);
  return (err as StowageError).code;
}

const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8');

/**
 * The checks every LockFs must pass. `root` is an empty directory of the
 * tree `fs` works on, named with `/` separators.
 */
function lockFsContract(name: string, make: () => Promise<{ fs: LockFs; root: string; done: () => Promise<void> }>): void {
  describe(`LockFs contract: ${name}`, () => {
    let fs: LockFs;
    let root: string;
    let done: () => Promise<void>;
    beforeEach(async () => {
      ({ fs, root, done } = await make());
    });
    afterEach(async () => {
      await done();
    });

    it('has every method', () => {
      for (const m of LOCK_FS_METHODS) expect(typeof fs[m]).toBe('function');
    });

    it('mkdir creates one level, EEXIST when present, ENOT_FOUND without parent', async () => {
      await fs.mkdir(`${root}/d`);
      expect(await code(fs.mkdir(`${root}/d`))).toBe('EEXIST');
      expect(await code(fs.mkdir(`${root}/x/y`))).toBe('ENOT_FOUND');
      await fs.createFile(`${root}/f`, Buffer.from('1'));
      expect(await code(fs.mkdir(`${root}/f`))).toBe('EEXIST');
    });

    it('createFile is exclusive: of 16 concurrent creators exactly one wins, the others get EEXIST', async () => {
      const results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => fs.createFile(`${root}/owner.json`, Buffer.from(`writer ${i}`))));
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      expect(won).toHaveLength(1);
      for (const r of results) if (r.status === 'rejected') expect((r.reason as StowageError).code).toBe('EEXIST');
      expect(text(await fs.readFile(`${root}/owner.json`))).toBe(`writer ${won[0]}`);
      expect(await code(fs.createFile(`${root}/none/owner.json`, Buffer.from('x')))).toBe('ENOT_FOUND');
    });

    it('readFile reads, ENOT_FOUND when missing', async () => {
      await fs.createFile(`${root}/a`, Buffer.from('abc'));
      expect(text(await fs.readFile(`${root}/a`))).toBe('abc');
      expect(await code(fs.readFile(`${root}/b`))).toBe('ENOT_FOUND');
    });

    it('rename moves files and directories, never replaces a target, ENOT_FOUND when the source is missing', async () => {
      await fs.createFile(`${root}/a`, Buffer.from('A'));
      await fs.createFile(`${root}/b`, Buffer.from('B'));
      expect(await code(fs.rename(`${root}/a`, `${root}/b`))).toBe('EEXIST');
      expect(text(await fs.readFile(`${root}/a`))).toBe('A');
      expect(text(await fs.readFile(`${root}/b`))).toBe('B');
      await fs.rename(`${root}/a`, `${root}/c`);
      expect(text(await fs.readFile(`${root}/c`))).toBe('A');
      expect(await code(fs.readFile(`${root}/a`))).toBe('ENOT_FOUND');
      expect(await code(fs.rename(`${root}/a`, `${root}/d`))).toBe('ENOT_FOUND');

      await fs.mkdir(`${root}/d1`);
      await fs.createFile(`${root}/d1/f`, Buffer.from('F'));
      await fs.mkdir(`${root}/d2`); // empty: rename(2) alone would replace it
      expect(await code(fs.rename(`${root}/d1`, `${root}/d2`))).toBe('EEXIST');
      await fs.rename(`${root}/d1`, `${root}/d3`);
      expect(text(await fs.readFile(`${root}/d3/f`))).toBe('F');
    });

    it('remove deletes files and whole trees, and a missing path is fine', async () => {
      await fs.mkdir(`${root}/t`);
      await fs.mkdir(`${root}/t/u`);
      await fs.createFile(`${root}/t/u/f`, Buffer.from('x'));
      await fs.remove(`${root}/t`);
      expect(await code(fs.stat(`${root}/t`))).toBe('ENOT_FOUND');
      await fs.remove(`${root}/t`);
      await fs.createFile(`${root}/g`, Buffer.from('x'));
      await fs.remove(`${root}/g`);
      expect(await code(fs.readFile(`${root}/g`))).toBe('ENOT_FOUND');
    });

    it('stat and setMtime read and set the modification time, ENOT_FOUND when missing', async () => {
      await fs.createFile(`${root}/h`, Buffer.from('x'));
      const t = Date.now() - 3_600_000;
      await fs.setMtime(`${root}/h`, t);
      expect(Math.abs((await fs.stat(`${root}/h`)).mtimeMs - t)).toBeLessThan(1_000);
      await fs.mkdir(`${root}/dir`);
      expect(Math.abs((await fs.stat(`${root}/dir`)).mtimeMs - Date.now())).toBeLessThan(60_000);
      expect(await code(fs.stat(`${root}/nope`))).toBe('ENOT_FOUND');
      expect(await code(fs.setMtime(`${root}/nope`, t))).toBe('ENOT_FOUND');
    });
  });
}

lockFsContract('localLockFs', async () => {
  const tmp = makeTempDir('lockfs');
  return { fs: localLockFs, root: tmp.path, done: () => tmp.remove() };
});

describe('localLockFs specifics', () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = makeTempDir('lockfs');
  });
  afterEach(async () => {
    await tmp.remove();
  });

  it('createFile leaves no temporary file beside the new one and refuses to touch an existing one', async () => {
    await mkdir(`${tmp.path}/LOCKED`);
    await writeFile(`${tmp.path}/LOCKED/owner.json`, 'theirs');
    const before = (await stat(`${tmp.path}/LOCKED/owner.json`)).mtimeMs;
    expect(await code(localLockFs.createFile(`${tmp.path}/LOCKED/owner.json`, Buffer.from('mine')))).toBe('EEXIST');
    expect(await readFile(`${tmp.path}/LOCKED/owner.json`, 'utf8')).toBe('theirs');
    expect((await stat(`${tmp.path}/LOCKED/owner.json`)).mtimeMs).toBe(before);
    await localLockFs.createFile(`${tmp.path}/LOCKED/other.json`, Buffer.from('mine'));
    expect((await readdir(`${tmp.path}/LOCKED`)).sort()).toEqual(['other.json', 'owner.json']);
  });
});
