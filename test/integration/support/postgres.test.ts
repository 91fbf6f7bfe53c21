// Smoke tests of the PostgreSQL harness: a real cluster in a temp folder on a
// loopback port (run as the "postgres" account when the tests run as root),
// used through pg and pg_dump, then stopped without leftovers.
import { existsSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type PostgresServer } from '../../support/postgres.js';
import { descendants, isAlive, isRoot, run } from '../../support/proc.js';

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

describe('startPostgres', () => {
  let db: PostgresServer;

  beforeAll(async () => {
    db = await startPostgres();
  });
  afterAll(async () => {
    await db?.stop();
  });

  it('starts quickly on a loopback port with a test database', async () => {
    expect(db.host).toBe('127.0.0.1');
    expect(db.startMs).toBeLessThan(10_000);
    expect(isAlive(db.pid)).toBe(true);
    expect(existsSync(join(db.binDir, 'pg_dump'))).toBe(true);
    const rows = await db.query<{ db: string; u: string; enc: string }>(
      "SELECT current_database() AS db, current_user AS u, pg_encoding_to_char(encoding) AS enc FROM pg_database WHERE datname = current_database()",
    );
    expect(rows).toEqual([{ db: 'stowage_test', u: 'stowage', enc: 'UTF8' }]);
    expect(db.connectionString).toBe(`postgresql://stowage:${db.password}@127.0.0.1:${db.port}/stowage_test`);
  });

  it('runs as an unprivileged account', () => {
    const owner = statSync(db.dataDir).uid;
    if (isRoot()) {
      expect(db.runAs?.name).toBe('postgres');
      expect(owner).toBe(db.runAs?.uid);
    } else {
      expect(db.runAs).toBeUndefined();
      expect(owner).toBe(process.getuid?.());
    }
  });

  it('creates a table, inserts and selects through pg', async () => {
    await db.query('CREATE TABLE events (id bigint PRIMARY KEY, t timestamptz NOT NULL, payload text)');
    await db.query('INSERT INTO events VALUES ($1, $2, $3), ($4, $5, $6)', [1, '2024-01-02T03:04:05.000006Z', 'a', 2, '2024-01-03T00:00:00Z', 'ü']);
    const rows = await db.query<{ id: string; payload: string }>('SELECT id, payload FROM events ORDER BY id');
    expect(rows).toEqual([
      { id: '1', payload: 'a' },
      { id: '2', payload: 'ü' },
    ]);
  });

  it('needs the password over TCP', async () => {
    const c = new pg.Client({ ...db.clientConfig, password: 'wrong' });
    await expect(c.connect()).rejects.toThrow(/password authentication failed/);
  });

  it('creates more databases and works with pg_dump', async () => {
    expect(await db.createDatabase('second_db')).toBe('second_db');
    await db.query('CREATE TABLE t (x int); INSERT INTO t VALUES (42)', undefined, 'second_db');
    const { stdout } = await run(join(db.binDir, 'pg_dump'), ['--data-only', '--table=t', 'second_db'], {
      env: { ...process.env, ...db.env },
    });
    expect(stdout).toMatch(/COPY public\.t \(x\) FROM stdin;\n42\n\\\.\n/);
    await expect(db.createDatabase('bad"name')).rejects.toThrow(/bad database/);
  });
});

describe('startPostgres options and stop()', () => {
  it('passes walLevel and settings, ends the server with its backends, removes the folder', async () => {
    const db = await startPostgres({ walLevel: 'logical', settings: { max_connections: 40, work_mem: '8MB', jit: false } });
    const rows = await db.query<{ w: string; m: string; wm: string; j: string }>(
      "SELECT current_setting('wal_level') AS w, current_setting('max_connections') AS m, current_setting('work_mem') AS wm, current_setting('jit') AS j",
    );
    expect(rows).toEqual([{ w: 'logical', m: '40', wm: '8MB', j: 'off' }]);
    // An idle client keeps a backend (which setsid()s) alive during stop().
    const c = await db.connect();
    c.on('error', () => {});
    const backends = descendants(db.pid);
    expect(backends.length).toBeGreaterThan(0);
    await db.stop();
    expect(isAlive(db.pid)).toBe(false);
    expect(backends.some((b) => isAlive(b.pid, b))).toBe(false);
    expect(existsSync(db.dir)).toBe(false);
    expect(await portAccepts(db.port)).toBe(false);
    await c.end().catch(() => {});
  });
});
