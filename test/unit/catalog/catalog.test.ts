import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { CATALOG_SCHEMA_VERSION, Catalog, MIGRATIONS, migrate, type Migration } from '../../../src/catalog/index.js';
import { StowageError } from '../../../src/errors.js';
import { rejectsWith, tempDir, throwsWith } from '../db/helpers.js';
import { isRoot, withTmpfs } from '../../support/index.js';

const dna = (dig: string, size: number) => ({ dig, size, algorithm: 'md5' as const });
const D1 = dna('d41d8cd98f00b204e9800998ecf8427e', 0);
const D2 = dna('5d41402abc4b2a76b9719d911017c592', 5);

async function catalogFile(): Promise<string> {
  return join(await tempDir('catalog'), 'stowage.catalog');
}

describe('Catalog: the file', () => {
  it('creates a WAL-mode file at the current schema version with its settings', async () => {
    const file = await catalogFile();
    using c = new Catalog(file);
    expect(c.schemaVersion).toBe(CATALOG_SCHEMA_VERSION);
    expect(CATALOG_SCHEMA_VERSION).toBe(MIGRATIONS.length);
    expect(c.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(c.db.pragma('foreign_keys', { simple: true })).toBe(1n);
    expect(c.db.pragma('synchronous', { simple: true })).toBe(2n); // FULL
    expect(c.db.pragma('busy_timeout', { simple: true })).toBe(5000n);
    const tables = c.db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all();
    // Later migrations (LazyChannel, Monitor) add their own tables beside these.
    expect(tables).toEqual(expect.arrayContaining(['archives', 'jobs', 'partitions', 'transfers']));
    expect(existsSync(`${file}-wal`)).toBe(true);
  });

  it('keeps its records across close and reopen', async () => {
    const file = await catalogFile();
    const c = new Catalog(file);
    c.recordArchive({ path: 'a.tar.gz', dna: D2, created: 1000, bytesIn: 10, entries: 2 });
    c.close();
    c.close();
    throwsWith(() => c.archive('a.tar.gz'), 'EDB');
    throwsWith(() => c.db, 'EDB');
    const again = new Catalog(file);
    expect(again.archive('a.tar.gz')).toEqual({ path: 'a.tar.gz', dna: D2, created: new Date(1000), bytesIn: 10, entries: 2 });
    expect(again.schemaVersion).toBe(CATALOG_SCHEMA_VERSION);
    again.close();
  });

  it('migrates an empty file and an older version forward, keeping the data', async () => {
    const file = await catalogFile();
    const db = new Database(file);
    expect(migrate(db, file, MIGRATIONS.slice(0, 1))).toEqual({ from: 0, to: 1 });
    db.prepare("INSERT INTO archives VALUES ('old.tar.gz', 'abc', 3, 'md5', 5, NULL, NULL, 5)").run();
    expect(db.pragma('user_version', { simple: true })).toBe(1);
    db.close();
    using c = new Catalog(file);
    expect(c.schemaVersion).toBe(CATALOG_SCHEMA_VERSION);
    expect(c.archive('old.tar.gz')?.dna).toEqual({ dig: 'abc', size: 3, algorithm: 'md5' });
    expect(c.startJob('after-upgrade').status).toBe('running');
    // Nothing to do on a current file.
    expect(migrate(c.db, file)).toEqual({ from: CATALOG_SCHEMA_VERSION, to: CATALOG_SCHEMA_VERSION });
  });

  it('applies appended migrations in order, each in its own transaction; a failing one is rolled back alone', async () => {
    const file = await catalogFile();
    const db = new Database(file);
    const extra: Migration[] = [
      ...MIGRATIONS,
      { version: MIGRATIONS.length + 1, description: 'lazy lists', up: 'CREATE TABLE lazy (run INTEGER PRIMARY KEY) STRICT;' },
      {
        version: MIGRATIONS.length + 2,
        description: 'broken',
        up: (d) => {
          d.exec('CREATE TABLE half (a INTEGER)');
          throw new Error('disk on fire');
        },
      },
    ];
    const err = throwsWith(() => migrate(db, file, extra), 'EDB');
    expect(err.message).toMatch(new RegExp(`migration ${MIGRATIONS.length + 2} \\(broken\\).*disk on fire`));
    expect(db.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length + 1);
    const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").pluck().all();
    expect(tables).toContain('lazy');
    expect(tables).not.toContain('half');
    throwsWith(() => migrate(db, file, [{ version: 2, description: 'x', up: '' }]), 'EBAD_CONFIG');
    db.close();
  });

  it('refuses a file written by a newer stowage (EBAD_CONFIG) and leaves it untouched', async () => {
    const file = await catalogFile();
    new Catalog(file).close();
    const db = new Database(file);
    db.pragma(`user_version = ${CATALOG_SCHEMA_VERSION + 1}`);
    db.close();
    const err = throwsWith(() => new Catalog(file), 'EBAD_CONFIG');
    expect(err.message).toMatch(/newer than the \d+ this version of stowage knows/);
    expect(err.details).toMatchObject({ version: CATALOG_SCHEMA_VERSION + 1, known: CATALOG_SCHEMA_VERSION });
    throwsWith(() => new Catalog(file, { readonly: true }), 'EBAD_CONFIG');
    const check = new Database(file, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(CATALOG_SCHEMA_VERSION + 1);
    check.close();
  });

  it('refuses, unchanged, a newer file in rollback-journal mode and an SQLite file of another application', async () => {
    // A newer stowage's catalog, not in WAL mode: switching it to WAL would already change it.
    const newer = await catalogFile();
    const n = new Database(newer);
    n.exec('CREATE TABLE future (x INTEGER)');
    n.pragma(`user_version = ${CATALOG_SCHEMA_VERSION + 5}`);
    n.close();
    throwsWith(() => new Catalog(newer), 'EBAD_CONFIG');
    const checkNewer = new Database(newer, { readonly: true });
    expect(checkNewer.pragma('journal_mode', { simple: true })).toBe('delete');
    checkNewer.close();
    // Someone's data file: no catalog tables are added to it, no WAL.
    const data = await catalogFile();
    const d = new Database(data);
    d.exec('CREATE TABLE measurements (x INTEGER); INSERT INTO measurements VALUES (42)');
    d.close();
    const err = throwsWith(() => new Catalog(data), 'EBAD_CONFIG');
    expect(err.message).toMatch(/is not a stowage catalog.*measurements/);
    throwsWith(() => new Catalog(data, { readonly: true }), 'EBAD_CONFIG');
    const check = new Database(data, { readonly: true });
    expect(check.pragma('journal_mode', { simple: true })).toBe('delete');
    expect(check.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").pluck().all()).toEqual(['measurements']);
    check.close();
    // An empty SQLite file is fine: it becomes a catalog.
    const empty = await catalogFile();
    new Database(empty).close();
    new Catalog(empty).close();
  });

  it('opens read-only for readers, refusing writes and files that need migrating', async () => {
    const file = await catalogFile();
    throwsWith(() => new Catalog(file, { readonly: true }), 'ENOT_FOUND');
    // A file there that the reader may not open is not "not found": EDB.
    // (Root reads anything: the reader is then the child process of an unprivileged user.)
    {
      const dir = await mkdtemp(join(tmpdir(), 'stowage-cat-perm-'));
      const locked = join(dir, 'locked.catalog');
      new Catalog(locked).close();
      await chmod(dir, 0o755);
      if (isRoot()) {
        await chmod(locked, 0o600);
        const code = `import { Catalog } from ${JSON.stringify(fileURLToPath(new URL('../../../dist/catalog/index.js', import.meta.url)))}; try { new Catalog(${JSON.stringify(locked)}, { readonly: true }); console.log('opened'); } catch (e) { console.log(e.code); }`;
        const out = execFileSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--input-type=module', '-e', code], { encoding: 'utf8' }).trim();
        expect(out).toBe('EDB');
      } else {
        await chmod(locked, 0o000);
        throwsWith(() => new Catalog(locked, { readonly: true }), 'EDB');
      }
      await rm(dir, { recursive: true, force: true });
    }
    const db = new Database(file);
    migrate(db, file, MIGRATIONS.slice(0, 1));
    db.close();
    const err = throwsWith(() => new Catalog(file, { readonly: true }), 'EBAD_CONFIG');
    expect(err.message).toMatch(/open it once without readonly/);
    new Catalog(file).close();
    using ro = new Catalog(file, { readonly: true });
    expect(ro.lastJobs()).toEqual([]);
    const w = throwsWith(() => ro.startJob('x'), 'EDB');
    expect((w.cause as { code?: string }).code).toBe('SQLITE_READONLY');
    expect(w.message).toMatch(/opened with readonly: true; open it without that option to record/);
  });

  it('fails clearly on a missing directory, a non-database file, and bad options', async () => {
    const dir = await tempDir('catalog');
    throwsWith(() => new Catalog(join(dir, 'no', 'such', 'dir', 'c.db')), 'ENOT_FOUND');
    const junk = join(dir, 'junk');
    await writeFile(junk, 'not sqlite at all, '.repeat(50));
    const err = throwsWith(() => new Catalog(junk), 'EDB');
    expect((err.cause as { code?: string }).code).toBe('SQLITE_NOTADB');
    throwsWith(() => new Catalog(join(dir, 'c.db'), { busyTimeout: 1 } as never), 'EBAD_CONFIG');
    throwsWith(() => new Catalog(''), 'EBAD_CONFIG');
  });

  it('two Catalog objects on one file see each other’s writes', async () => {
    const file = await catalogFile();
    using a = new Catalog(file);
    using b = new Catalog(file);
    a.recordArchive({ path: 'x', dna: D1 });
    expect(b.archive('x')?.dna).toEqual(D1);
    const job = b.startJob('nightly');
    expect(a.unfinishedJobs().map((j) => j.id)).toEqual([job.id]);
    a.finishJob(job.id, { status: 'ok' });
    expect(b.lastJobs({ name: 'nightly' })[0]?.status).toBe('ok');
    // b's transaction commits while a reads in between.
    b.transaction(() => {
      b.recordArchive({ path: 'y', dna: D2 });
      b.recordPartition({ source: 's', table: 't', key: 'k', lo: 1, hi: 10, state: 'archived', rows: 10, archivePath: 'y' });
    });
    expect(a.partitions('s', 't')[0]?.archivePath).toBe('y');
  });

  it('several processes opening one new file at the same instant (default busy timeout): none refused, migrated once, no write lost', async () => {
    // Before: 4 of 32 such openings failed, "database is locked" or "not a
    // stowage catalog" (the first migration committed between two reads).
    for (let round = 0; round < 8; round++) {
      const file = await catalogFile();
      const t0 = Date.now() + 1500;
      await Promise.all(Array.from({ length: 4 }, (_, i) => writer(file, `r${round}w${i}`, 20, { STOWAGE_T0: String(t0) })));
      using c = new Catalog(file);
      expect(c.schemaVersion).toBe(CATALOG_SCHEMA_VERSION);
      expect(c.archives({ limit: 1000 })).toHaveLength(80);
    }
  });

  it('several processes creating and writing one new file at once: migrated once, no write lost', async () => {
    const file = await catalogFile();
    const runs = Array.from({ length: 3 }, (_, i) => writer(file, `w${i}`, 150));
    await Promise.all(runs);
    using c = new Catalog(file);
    expect(c.schemaVersion).toBe(CATALOG_SCHEMA_VERSION);
    expect(c.archives({ limit: 10_000 })).toHaveLength(450);
    expect(c.lastJobs({ limit: 100 }).filter((j) => j.status === 'ok')).toHaveLength(3);
  });
});

/** Runs catalog-writer.ts in a child process; resolves to its output, rejects when it fails. */
function writer(file: string, name: string, count: number, env: Record<string, string> = {}): Promise<string> {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const worker = join(here, 'catalog-writer.ts');
  const tsx = join(here, '..', '..', '..', 'node_modules', 'tsx', 'dist', 'loader.mjs');
  return new Promise<string>((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', pathToFileURL(tsx).href, worker, file, name, String(count)], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d));
    p.stderr.on('data', (d: Buffer) => (out += d));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`writer ${name} exited ${code}: ${out}`))));
  });
}

describe('Catalog: archives and partitions', () => {
  it('records an archive, replaces it by path, lists by prefix, forgets it', async () => {
    using c = new Catalog(await catalogFile());
    const first = c.recordArchive({ path: 'Vld/0000000001-0000010000.tar.gz', dna: D1, created: new Date(2000) });
    expect(first).toEqual({ path: 'Vld/0000000001-0000010000.tar.gz', dna: D1, created: new Date(2000), bytesIn: null, entries: null });
    c.recordArchive({ path: 'Vld/0000000001-0000010000.tar.gz', dna: { ...D2, dig: D2.dig.toUpperCase() }, created: 3000, entries: 3 });
    expect(c.archive('Vld/0000000001-0000010000.tar.gz')).toEqual({ path: 'Vld/0000000001-0000010000.tar.gz', dna: D2, created: new Date(3000), bytesIn: null, entries: 3 });
    c.recordArchive({ path: 'Payload/0000000001-0000010000.tar.gz', dna: D1, created: 4000 });
    c.recordArchive({ path: 'Vld/0000010001-0000020000.tar.gz', dna: { dig: 'ab'.repeat(32), size: 9, algorithm: 'sha256' }, created: 5000 });
    expect(c.archives({ prefix: 'Vld/' }).map((a) => a.path)).toEqual(['Vld/0000010001-0000020000.tar.gz', 'Vld/0000000001-0000010000.tar.gz']);
    expect(c.archives({ limit: 1 })).toHaveLength(1);
    expect(c.archives({ prefix: 'Vld/' })[0]?.dna.algorithm).toBe('sha256');
    expect(c.forgetArchive('Payload/0000000001-0000010000.tar.gz')).toBe(true);
    expect(c.forgetArchive('Payload/0000000001-0000010000.tar.gz')).toBe(false);
    expect(c.archive('Payload/0000000001-0000010000.tar.gz')).toBeUndefined();
  });

  it('refuses bad archive input with EBAD_CONFIG', async () => {
    using c = new Catalog(await catalogFile());
    throwsWith(() => c.recordArchive({ path: '', dna: D1 }), 'EBAD_CONFIG');
    throwsWith(() => c.recordArchive({ path: 'p', dna: { dig: 'zz', size: 1, algorithm: 'md5' } }), 'EBAD_CONFIG');
    throwsWith(() => c.recordArchive({ path: 'p', dna: { ...D1, size: -1 } }), 'EBAD_CONFIG');
    throwsWith(() => c.recordArchive({ path: 'p', dna: { ...D1, algorithm: 'crc32' as never } }), 'EBAD_CONFIG');
    throwsWith(() => c.recordArchive({ path: 'p', dna: D1, created: Number.NaN }), 'EBAD_CONFIG');
    // Finite but past any Date (the INTEGER column would refuse it as EDB), and an invalid Date.
    throwsWith(() => c.recordArchive({ path: 'p', dna: D1, created: 1e300 }), 'EBAD_CONFIG');
    throwsWith(() => c.recordArchive({ path: 'p', dna: D1, created: new Date('not a date') }), 'EBAD_CONFIG');
    using last = new Catalog(await catalogFile());
    expect(last.recordArchive({ path: 'p', dna: D1, created: 8.64e15 }).created).toEqual(new Date(8.64e15));
    throwsWith(() => c.recordArchive({ path: 'p', dna: D1, entries: 1.5 }), 'EBAD_CONFIG');
    throwsWith(() => c.recordArchive({ path: 'p', dna: D1, sise: 1 } as never), 'EBAD_CONFIG');
    throwsWith(() => c.archives({ limit: 0 }), 'EBAD_CONFIG');
    expect(c.archives()).toEqual([]);
  });

  it('records partitions with bigint keys beyond 2^53, upserts by range, keeps them when the archive is forgotten', async () => {
    using c = new Catalog(await catalogFile());
    const big = 9007199254740993n;
    c.recordArchive({ path: 'T/tail.tar.gz', dna: D1 });
    c.recordPartition({ source: 'db', table: 'T', key: 'SEQNO', lo: big, hi: big + 9999n, state: 'partial', rows: 5, digest: 'ab', archivePath: 'T/tail.tar.gz' });
    c.recordPartition({ source: 'db', table: 'T', key: 'SEQNO', lo: 1, hi: 10000, state: 'empty', rows: 0 });
    const p = c.recordPartition({ source: 'db', table: 'T', key: 'SEQNO', lo: big, hi: big + 9999n, state: 'archived', rows: 10000, digest: 'cd', archivePath: 'T/tail.tar.gz' });
    expect(p).toMatchObject({ lo: big, hi: big + 9999n, state: 'archived', rows: 10000, digest: 'cd' });
    expect(typeof p.lo).toBe('bigint');
    const list = c.partitions('db', 'T');
    expect(list.map((x) => [x.lo, x.state])).toEqual([
      [1n, 'empty'],
      [big, 'archived'],
    ]);
    expect(list[0]).toMatchObject({ source: 'db', table: 'T', key: 'SEQNO', digest: null, archivePath: null });
    expect(list[0]!.updated).toBeInstanceOf(Date);
    expect(c.partitions('db', 'T', { key: 'OTHER' })).toEqual([]);
    expect(c.partitions('other', 'T')).toEqual([]);
    c.forgetArchive('T/tail.tar.gz');
    expect(c.partitions('db', 'T')[1]?.archivePath).toBeNull();
  });

  it('refuses a DNA whose digest is not of its algorithm\'s length (EBAD_CONFIG)', async () => {
    using c = new Catalog(await catalogFile());
    for (const dna of [{ dig: 'ab', size: 1, algorithm: 'sha256' }, { dig: 'a'.repeat(64), size: 1 }, { dig: 'a'.repeat(32), size: 1, algorithm: 'sha1' }]) {
      const err = throwsWith(() => c.recordArchive({ path: 'p', dna: dna as never }), 'EBAD_CONFIG');
      expect(err.message).toMatch(/hex digits for/);
    }
    expect(c.archives()).toEqual([]);
    expect(c.recordArchive({ path: 'p', dna: { dig: 'B'.repeat(64), size: 1, algorithm: 'sha256' } }).dna.dig).toBe('b'.repeat(64));
  });

  it('a range recorded as holding rows drops the empty runs it overlaps, and only those', async () => {
    using c = new Catalog(await catalogFile());
    c.recordArchive({ path: 'T/21.tar.gz', dna: D1 });
    const rec = (table: string, lo: number, hi: number, state: 'empty' | 'archived' | 'partial', key = 'SEQNO'): void => {
      c.recordPartition({ source: 'db', table, key, lo, hi, state, rows: state === 'empty' ? 0 : 3, ...(state === 'empty' ? {} : { archivePath: 'T/21.tar.gz' }) });
    };
    rec('T', 11, 50, 'empty');
    rec('T', 61, 90, 'empty');
    rec('U', 11, 50, 'empty');
    rec('T', 11, 50, 'empty', 'OTHER');
    rec('T', 21, 30, 'archived');
    expect(c.partitions('db', 'T', { key: 'SEQNO' }).map((x) => [x.lo, x.hi, x.state])).toEqual([
      [21n, 30n, 'archived'],
      [61n, 90n, 'empty'],
    ]);
    // Another table's, and another key's, runs stay.
    expect(c.partitions('db', 'U').map((x) => x.state)).toEqual(['empty']);
    expect(c.partitions('db', 'T', { key: 'OTHER' }).map((x) => x.state)).toEqual(['empty']);
    // An empty record over the same bounds is simply replaced by one with rows.
    rec('T', 61, 90, 'partial');
    expect(c.partitions('db', 'T', { key: 'SEQNO' }).map((x) => [x.lo, x.state])).toEqual([
      [21n, 'archived'],
      [61n, 'partial'],
    ]);
    // An empty run recorded over ranges with rows is kept as asked (the Catalog records; the Partitioner judges).
    rec('T', 1, 100, 'empty');
    expect(c.partitions('db', 'T', { key: 'SEQNO' }).map((x) => [x.lo, x.hi, x.state])).toEqual([
      [1n, 100n, 'empty'],
      [21n, 30n, 'archived'],
      [61n, 90n, 'partial'],
    ]);
  });

  it('refuses a partition pointing at an unrecorded archive (ENOT_FOUND) and bad ranges (EBAD_CONFIG)', async () => {
    using c = new Catalog(await catalogFile());
    const base = { source: 's', table: 't', key: 'k', lo: 1, hi: 2, state: 'complete' as const, rows: 2 };
    const err = throwsWith(() => c.recordPartition({ ...base, archivePath: 'nowhere.tar.gz' }), 'ENOT_FOUND');
    expect(err.message).toMatch(/recordArchive\(\) first/);
    throwsWith(() => c.recordPartition({ ...base, lo: 3 }), 'EBAD_CONFIG');
    throwsWith(() => c.recordPartition({ ...base, lo: 2 ** 53 }), 'EBAD_CONFIG');
    throwsWith(() => c.recordPartition({ ...base, hi: 1n << 63n }), 'EBAD_CONFIG');
    throwsWith(() => c.recordPartition({ ...base, state: 'done' as never }), 'EBAD_CONFIG');
    throwsWith(() => c.recordPartition({ ...base, rows: -1 }), 'EBAD_CONFIG');
    throwsWith(() => c.recordPartition({ ...base, digest: 'XYZ' }), 'EBAD_CONFIG');
    throwsWith(() => c.recordPartition({ ...base, table: '' }), 'EBAD_CONFIG');
    expect(c.partitions('s', 't')).toEqual([]);
  });

  it('a transaction commits all records or none', async () => {
    using c = new Catalog(await catalogFile());
    const boom = new Error('boom');
    expect(() =>
      c.transaction(() => {
        c.recordArchive({ path: 'a', dna: D1 });
        c.recordPartition({ source: 's', table: 't', key: 'k', lo: 1, hi: 2, state: 'archived', rows: 2, archivePath: 'a' });
        throw boom;
      }),
    ).toThrow(boom);
    expect(c.archive('a')).toBeUndefined();
    expect(c.partitions('s', 't')).toEqual([]);
    expect(c.transaction(() => c.recordArchive({ path: 'a', dna: D1 }).path)).toBe('a');
    throwsWith(() => c.transaction('nope' as never), 'EBAD_CONFIG');
    throwsWith(
      () =>
        c.transaction(async () => {
          c.recordArchive({ path: 'async', dna: D1 });
        }),
      'EBAD_CONFIG',
    );
    expect(c.archive('async')).toBeUndefined();
  });
});

describe('Catalog: transfers and jobs', () => {
  it('records a finished transfer in one call, and a running one finished later', async () => {
    using c = new Catalog(await catalogFile());
    const done = c.recordTransfer({ src: 'daq01', dst: 'archive01', path: 'run1.tar.gz', dna: D2, started: 1000, finished: 2000 });
    expect(done).toEqual({ id: done.id, src: 'daq01', dst: 'archive01', path: 'run1.tar.gz', dna: D2, status: 'ok', started: new Date(1000), finished: new Date(2000), error: null });
    const running = c.recordTransfer({ src: 'daq01', dst: 'archive02', path: 'run1.tar.gz', started: 3000 });
    expect(running).toMatchObject({ status: 'running', finished: null, dna: null });
    const failed = c.finishTransfer(running.id, { status: 'failed', error: 'ECONNECT', finished: 4000 });
    expect(failed).toMatchObject({ status: 'failed', error: 'ECONNECT', finished: new Date(4000) });
    const second = c.recordTransfer({ src: 'daq01', dst: 'archive02', path: 'run1.tar.gz', started: 5000 });
    expect(c.finishTransfer(second.id, { status: 'ok', dna: D2 }).dna).toEqual(D2);
    expect(c.transfers({ path: 'run1.tar.gz' }).map((t) => t.started.getTime())).toEqual([5000, 3000, 1000]);
    expect(c.transfers({ dst: 'archive02', status: 'ok' }).map((t) => t.id)).toEqual([second.id]);
    throwsWith(() => c.finishTransfer(second.id, { status: 'ok' }), 'EBAD_CONFIG');
    throwsWith(() => c.finishTransfer(9999, { status: 'ok' }), 'ENOT_FOUND');
    throwsWith(() => c.finishTransfer(second.id, { status: 'running' as never }), 'EBAD_CONFIG');
    throwsWith(() => c.recordTransfer({ src: 'a', dst: 'b', path: 'p', status: 'running', finished: 1 }), 'EBAD_CONFIG');
    throwsWith(() => c.recordTransfer({ src: 'a', dst: 'b', path: 'p', status: 'ok' }), 'EBAD_CONFIG');
    throwsWith(() => c.transfers({ status: 'lost' as never }), 'EBAD_CONFIG');
  });

  it('records job runs, finds the ones that never finished, lists the latest', async () => {
    using c = new Catalog(await catalogFile());
    const a = c.startJob('dump', { started: 1000, details: { tables: ['Vld', 'Payload'] } });
    expect(a).toMatchObject({ name: 'dump', status: 'running', finished: null, host: hostname(), pid: process.pid, details: { tables: ['Vld', 'Payload'] } });
    const b = c.startJob('dump', { started: 2000 });
    const other = c.startJob('sync', { started: 1500 });
    c.finishJob(b.id, { status: 'ok', finished: 2500 });
    expect(c.unfinishedJobs().map((j) => j.id)).toEqual([a.id, other.id]);
    expect(c.unfinishedJobs({ name: 'dump' }).map((j) => j.id)).toEqual([a.id]);
    expect(c.lastJobs({ name: 'dump' }).map((j) => [j.id, j.status])).toEqual([
      [b.id, 'ok'],
      [a.id, 'running'],
    ]);
    expect(c.lastJobs({ limit: 1 }).map((j) => j.id)).toEqual([b.id]);
    throwsWith(() => c.finishJob(b.id, { status: 'failed' }), 'EBAD_CONFIG');
    throwsWith(() => c.finishJob(424242, { status: 'ok' }), 'ENOT_FOUND');
    throwsWith(() => c.startJob(''), 'EBAD_CONFIG');
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    throwsWith(() => c.startJob('x', { details: circular }), 'EBAD_CONFIG');
  });

  it('withJob records ok, failed and aborted outcomes and passes results and errors through', async () => {
    using c = new Catalog(await catalogFile());
    expect(await c.withJob('ok', async () => 42)).toBe(42);
    const boom = new StowageError('EIO', 'disk went away');
    await expect(c.withJob('fails', async () => Promise.reject(boom))).rejects.toBe(boom);
    const ac = new AbortController();
    const reason = new Error('operator stop');
    ac.abort(reason);
    await expect(c.withJob('aborts', async () => Promise.reject(reason), { signal: ac.signal })).rejects.toBe(reason);
    const jobs = c.lastJobs();
    expect(Object.fromEntries(jobs.map((j) => [j.name, [j.status, j.error]]))).toEqual({
      ok: ['ok', null],
      fails: ['failed', 'disk went away'],
      aborts: ['aborted', 'operator stop'],
    });
    expect(jobs.every((j) => j.finished instanceof Date)).toBe(true);
    await rejectsWith(c.withJob('x', async () => 1, { sigal: ac.signal } as never), 'EBAD_CONFIG');
  });

  it('a write on a full disk is ENOSPACE and records nothing (a RETURNING write read with get() lost the commit error)', async () => {
    const DNA = { dig: 'd41d8cd98f00b204e9800998ecf8427e', size: 0, algorithm: 'md5' as const };
    await using disk = await withTmpfs(1);
    using c = new Catalog(join(disk.dir, 'stowage.catalog'));
    c.recordArchive({ path: 'Vld/0000000001-0000010000.tar.gz', dna: DNA });
    await disk.fill();
    const writes: [string, () => unknown][] = [
      ['recordArchive', () => c.recordArchive({ path: 'Vld/0000010001-0000020000.tar.gz', dna: DNA })],
      ['recordTransfer', () => c.recordTransfer({ src: 'local', dst: 'far', path: 'Vld/0000000001-0000010000.tar.gz', dna: DNA, finished: new Date() })],
      ['startJob', () => c.startJob('nightly')],
    ];
    for (const [what, write] of writes) {
      const err = throwsWith(write, 'ENOSPACE');
      expect(err.message, what).toMatch(/the disk is full.*nothing of it was recorded/);
    }
    await disk.unfill();
    expect(c.archives().map((a) => a.path)).toEqual(['Vld/0000000001-0000010000.tar.gz']);
    expect(c.transfers()).toEqual([]);
    expect(c.lastJobs()).toEqual([]);
    // With room again, the same writes go in.
    for (const [, write] of writes) write();
    expect(c.archives()).toHaveLength(2);
    expect(c.transfers()).toHaveLength(1);
    expect(c.lastJobs()).toHaveLength(1);
  });

  it('disposes with using and await using', async () => {
    const file = await catalogFile();
    let kept: Catalog;
    {
      using c = new Catalog(file);
      kept = c;
    }
    throwsWith(() => kept.lastJobs(), 'EDB');
    {
      await using c = new Catalog(file);
      kept = c;
      expect(c.lastJobs()).toEqual([]);
    }
    throwsWith(() => kept.lastJobs(), 'EDB');
  });
});
