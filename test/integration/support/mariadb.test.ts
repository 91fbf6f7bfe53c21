// Smoke tests of the MariaDB harness: a real mariadbd in a temp folder on a
// loopback port, used through mysql2 and the mariadb CLI, then stopped
// without leftovers.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { createReadStream } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMariadb, type MariadbServer } from '../../support/mariadb.js';
import { isAlive, requireBinary, run } from '../../support/proc.js';

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('startMariadb', () => {
  let db: MariadbServer;

  beforeAll(async () => {
    db = await startMariadb();
  });
  afterAll(async () => {
    await db?.stop();
  });

  it('starts quickly on a loopback port with a test database', async () => {
    expect(db.host).toBe('127.0.0.1');
    expect(db.startMs).toBeLessThan(10_000);
    expect(db.version).toMatch(/MariaDB/);
    expect(isAlive(db.pid)).toBe(true);
    const rows = await db.query<{ db: string; u: string }[]>('SELECT DATABASE() AS db, CURRENT_USER() AS u');
    expect(rows).toEqual([{ db: 'stowage_test', u: 'stowage@%' }]);
    expect(db.uri).toBe(`mysql://stowage:${db.password}@127.0.0.1:${db.port}/stowage_test`);
  });

  it('creates a table, inserts and selects through mysql2', async () => {
    await db.query('CREATE TABLE events (id BIGINT PRIMARY KEY, t DATETIME(6) NOT NULL, payload VARCHAR(64))');
    await db.query('INSERT INTO events VALUES (?, ?, ?), (?, ?, ?)', [1, '2024-01-02 03:04:05.000006', 'a', 2, '2024-01-03 00:00:00', 'ü']);
    const rows = await db.query<{ id: number; payload: string }[]>('SELECT id, payload FROM events ORDER BY id');
    expect(rows).toEqual([
      { id: 1, payload: 'a' },
      { id: 2, payload: 'ü' },
    ]);
  });

  it('allows LOAD DATA LOCAL INFILE', async () => {
    const file = join(db.dir, 'rows.tsv');
    await writeFile(file, '10\tx\n11\ty\n12\tz\n');
    await db.query('CREATE TABLE loaded (id INT PRIMARY KEY, v VARCHAR(8))');
    const c = await db.connect({ infileStreamFactory: (path: string) => createReadStream(path) });
    try {
      const [res] = await c.query({ sql: `LOAD DATA LOCAL INFILE ${c.escape(file)} INTO TABLE loaded` });
      expect((res as { affectedRows: number }).affectedRows).toBe(3);
    } finally {
      await c.end();
    }
    expect(await db.query('SELECT COUNT(*) AS n FROM loaded')).toEqual([{ n: 3 }]);
  });

  it('creates more databases', async () => {
    expect(await db.createDatabase('second_db')).toBe('second_db');
    await db.query('CREATE TABLE t (x INT)', undefined, 'second_db');
    const rows = await db.query<{ TABLE_NAME: string }[]>("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'second_db'");
    expect(rows.map((r) => r.TABLE_NAME)).toEqual(['t']);
    await expect(db.createDatabase('bad name; DROP')).rejects.toThrow(/bad database/);
  });

  it('is reachable with the mariadb CLI over TCP and over the socket', async () => {
    const cli = requireBinary({ name: 'mariadb', commands: ['mariadb', 'mysql'], debianPackage: 'mariadb-client' });
    const tcp = await run(cli, [...db.clientArgs, '-N', '-B', '-e', 'SELECT @@port', db.database]);
    expect(tcp.stdout.trim()).toBe(String(db.port));
    const sock = await run(cli, ['--no-defaults', `--socket=${db.socketPath}`, '-u', 'root', '-N', '-B', '-e', 'SELECT @@datadir']);
    expect(sock.stdout.trim().replace(/\/$/, '')).toBe(db.dataDir);
  });
});

describe('startMariadb stop()', () => {
  it('ends the server and removes the temp folder', async () => {
    const db = await startMariadb({ database: 'other', user: 'tester', password: 'pw' });
    expect(db.connectionConfig).toEqual({ host: '127.0.0.1', port: db.port, user: 'tester', password: 'pw', database: 'other' });
    const c = await db.connect();
    c.on('error', () => {});
    expect(existsSync(db.dataDir)).toBe(true);
    await db.stop();
    expect(isAlive(db.pid)).toBe(false);
    expect(existsSync(db.dir)).toBe(false);
    expect(await portAccepts(db.port)).toBe(false);
    c.destroy();
  });
});
