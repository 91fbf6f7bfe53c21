/**
 * An SQLite source database in WAL mode on a medium this user cannot write
 * (a read-only mount, a folder of the DAQ's own user): SQLite cannot make
 * the -shm index it reads such a file through. A real tmpfs remounted
 * read-only (root), nothing simulated.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteSource } from '../../../../src/db/sqlite/index.js';
import { withTmpfs } from '../../../support/index.js';
import { collect, throwsWith } from '../helpers.js';

describe('SqliteSource on a read-only medium', () => {
  it('a WAL database its writer closed is EBAD_CONFIG saying why (the -shm it cannot create) and what to do; a rollback-journal one reads', async () => {
    await using fs = await withTmpfs(8);
    const wal = join(fs.dir, 'runs.db');
    const plain = join(fs.dir, 'plain.db');
    for (const [file, mode] of [
      [wal, 'wal'],
      [plain, 'delete'],
    ] as const) {
      const db = new Database(file);
      db.pragma(`journal_mode = ${mode}`);
      db.exec("CREATE TABLE runs (run INTEGER PRIMARY KEY, note TEXT); INSERT INTO runs VALUES (1, 'cosmics'), (2, 'calib')");
      db.close();
    }
    await fs.remount(true);
    for (const readonly of [true, false]) {
      // Before: EDB "unable to open database file" (or "attempt to write a readonly database"), no cause, no remedy.
      const err = throwsWith(() => new SqliteSource(wal, { readonly }), 'EBAD_CONFIG');
      expect(err.message).toContain('runs.db-shm');
      expect(err.message).toContain(`in ${fs.dir}, which this user cannot write`);
      expect(err.message).toMatch(/\.backup COPY\.db/);
      expect(err.details).toMatchObject({ path: wal, dir: fs.dir });
    }
    await using src = new SqliteSource(plain, { readonly: true });
    expect((await collect(await src.rows('runs', { key: 'run' }))).toString()).toBe('1\tcosmics\n2\tcalib\n');
    await fs.remount(false);
    await using writable = new SqliteSource(wal, { readonly: true });
    expect((await writable.keyRange('runs', 'run')).count).toBe(2);
  });
});
