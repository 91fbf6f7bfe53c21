/**
 * A catalog on a read-only file system (a snapshot, a read-only mount of
 * the backup disk): read-only, it is read; for writing, a clear
 * EBAD_CONFIG; with unmerged changes in its -wal, a clear EDB. A real
 * tmpfs remounted read-only (root), nothing simulated.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, statSync, symlinkSync } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CATALOG_SCHEMA_VERSION, Catalog } from '../../../src/catalog/index.js';
import { tempDir, throwsWith } from '../db/helpers.js';
import { isRoot, withTmpfs } from '../../support/index.js';

const D1 = { dig: 'd41d8cd98f00b204e9800998ecf8427e', size: 0, algorithm: 'md5' as const };
const D2 = { dig: '5d41402abc4b2a76b9719d911017c592', size: 5, algorithm: 'md5' as const };

/** Writes at `file` the image a crash leaves: a catalog whose -wal holds a record of `archive` not merged into it, no -shm. Returns the -wal's size. */
async function crashImage(file: string, archive: string): Promise<number> {
  const live = join(await tempDir('catalog-crash'), 'stowage.catalog');
  using c = new Catalog(live);
  c.db.pragma('wal_autocheckpoint = 0');
  c.recordArchive({ path: archive, dna: D1 });
  copyFileSync(live, file);
  copyFileSync(`${live}-wal`, `${file}-wal`);
  return statSync(`${file}-wal`).size;
}

describe('Catalog on a read-only file system', () => {
  it('is read read-only from a copy made at open, once its writer closed it; writes are refused', async () => {
    await using fs = await withTmpfs(8);
    const file = join(fs.dir, 'stowage.catalog');
    {
      using c = new Catalog(file);
      c.recordArchive({ path: 'Vld/0000000001-0000010000.tar.gz', dna: D1, entries: 3 });
      c.recordArchive({ path: 'Vld/0000010001-0000020000.tar.gz', dna: D2, entries: 3 });
    }
    // Closed cleanly: SQLite merged the -wal and removed it and the -shm.
    expect(existsSync(`${file}-wal`)).toBe(false);
    await fs.remount(true);
    // What SQLite does alone there: it cannot create the -shm, and refuses.
    expect(() => new Database(file, { readonly: true, fileMustExist: true }).pragma('user_version')).toThrow(/unable to open/);

    using ro = new Catalog(file, { readonly: true });
    expect(ro.schemaVersion).toBe(CATALOG_SCHEMA_VERSION);
    expect(ro.archives().map((a) => a.path).sort()).toEqual(['Vld/0000000001-0000010000.tar.gz', 'Vld/0000010001-0000020000.tar.gz']);
    expect(ro.archive('Vld/0000010001-0000020000.tar.gz')?.dna).toEqual(D2);
    const e = throwsWith(() => ro.recordArchive({ path: 'Vld/x.tar.gz', dna: D1 }), 'EDB');
    expect(e.message).toMatch(/readonly: true/);
    expect(existsSync(`${file}-shm`)).toBe(false);
  });

  it('refuses to open for writing with EBAD_CONFIG naming the folder and the readonly option, for an existing and a new file', async () => {
    await using fs = await withTmpfs(8);
    const file = join(fs.dir, 'stowage.catalog');
    new Catalog(file).close();
    await fs.remount(true);
    for (const path of [file, join(fs.dir, 'new.catalog')]) {
      const e = throwsWith(() => new Catalog(path), 'EBAD_CONFIG');
      expect(e.message).toContain(fs.dir);
      expect(e.message).toMatch(/EROFS/);
      expect(e.message).toMatch(/readonly: true/);
      expect(e.details).toMatchObject({ path, option: 'readonly', errno: 'EROFS' });
    }
    expect(existsSync(join(fs.dir, 'new.catalog'))).toBe(false);
  });

  it('refuses a catalog whose -wal holds changes its writer never merged (EDB, saying what to do), and reads it once merged', async () => {
    await using fs = await withTmpfs(8);
    const file = join(fs.dir, 'stowage.catalog');
    const walBytes = await crashImage(file, 'Vld/0000000001-0000010000.tar.gz');
    expect(walBytes).toBeGreaterThan(0);
    await fs.remount(true);
    const e = throwsWith(() => new Catalog(file, { readonly: true }), 'EDB');
    expect(e.message).toContain(`${file}-wal`);
    expect(e.message).toMatch(/not yet merged/);
    expect(e.details).toMatchObject({ path: file, wal: `${file}-wal`, walBytes });
    // Where it can be written, SQLite merges the -wal: the record is there.
    await fs.remount(false);
    using rw = new Catalog(file, { readonly: true });
    expect(rw.archive('Vld/0000000001-0000010000.tar.gz')?.dna).toEqual(D1);
  });

  it('follows a symlink as SQLite does: the -wal and the folder that count are those of the file it points to', async () => {
    await using fs = await withTmpfs(8);
    const clean = join(fs.dir, 'clean.catalog');
    const crashed = join(fs.dir, 'crashed.catalog');
    new Catalog(clean).close();
    await crashImage(crashed, 'A');
    await fs.remount(true);
    // The links live in a writable folder; the files they name do not.
    const links = await tempDir('catalog-links');
    symlinkSync(clean, join(links, 'clean.catalog'));
    symlinkSync(crashed, join(links, 'crashed.catalog'));
    using ro = new Catalog(join(links, 'clean.catalog'), { readonly: true });
    expect(ro.archives()).toEqual([]);
    const e = throwsWith(() => new Catalog(join(links, 'crashed.catalog'), { readonly: true }), 'EDB');
    expect(e.details).toMatchObject({ wal: `${crashed}-wal` });
    const w = throwsWith(() => new Catalog(join(links, 'clean.catalog')), 'EBAD_CONFIG');
    expect(w.details).toMatchObject({ notWritable: fs.dir, errno: 'EROFS' });
  });

  it('reads one in a folder this user may not write (EACCES), and refuses to open it for writing there', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stowage-cat-ro-'));
    const file = join(dir, 'stowage.catalog');
    {
      using c = new Catalog(file);
      c.recordArchive({ path: 'A', dna: D1 });
    }
    await chmod(dir, 0o555);
    try {
      if (isRoot()) {
        // Root writes anywhere: the user is a child process of an unprivileged one, on the built package.
        const lib = JSON.stringify(fileURLToPath(new URL('../../../dist/catalog/index.js', import.meta.url)));
        const code = `import { Catalog } from ${lib}; const f = ${JSON.stringify(file)};
          const c = new Catalog(f, { readonly: true }); console.log(c.archives().map((a) => a.path).join(',')); c.close();
          try { new Catalog(f); console.log('opened'); } catch (e) { console.log(e.code, e.details.errno); }`;
        const out = execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e', code], { encoding: 'utf8' }).trim();
        expect(out.split('\n')).toEqual(['A', 'EBAD_CONFIG EACCES']);
      } else {
        using ro = new Catalog(file, { readonly: true });
        expect(ro.archives().map((a) => a.path)).toEqual(['A']);
        expect(throwsWith(() => new Catalog(file), 'EBAD_CONFIG').details).toMatchObject({ errno: 'EACCES' });
      }
      expect(existsSync(`${file}-shm`)).toBe(false);
    } finally {
      await chmod(dir, 0o755);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
