/**
 * Regression: aborting a server load before the server asked for its rows
 * crashed the process with an uncaught "Error: <abort reason>".
 *
 * `MysqlSource.load` and `PostgresSource.load` arm the abort (destroy the
 * input with `signal.reason`) as soon as they hold a connection, but only
 * pipe the input into the bulk text gate once the server is ready for the
 * rows (mysql2's `infileStreamFactory`, or the COPY). An abort in between
 * (while the table is looked up, or the `replaceRange` DELETE waits on a
 * lock) destroyed an input that nobody listened to for 'error' (the
 * `Readable.from` made of an async iterable, as `Partitioner.restore` passes
 * in), so Node threw the reason as an uncaught exception, even though the
 * load itself rejected properly. The full-suite run reported it from the
 * "aborted midway" restore test of test/integration/partition/suite.ts,
 * depending on timing.
 *
 * Here the timing is forced: another session holds a row lock, so the load
 * waits in its DELETE, and is aborted there.
 *
 * Found with it: a MysqlSource load aborted while stuck on that lock hung.
 * After its grace period it closes its connection, and mysql2 never calls
 * back a query whose connection was destroyed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MysqlSource } from '../../src/db/mysql/index.js';
import { PostgresSource } from '../../src/db/postgres/index.js';
import type { TableSource } from '../../src/db/table-source.js';
import { sleep } from '../../src/util/abort.js';
import { startMariadb, startPostgres, type MariadbServer, type PostgresServer } from '../support/index.js';

let maria: MariadbServer;
let pg: PostgresServer;

beforeAll(async () => {
  [maria, pg] = await Promise.all([startMariadb(), startPostgres()]);
});
afterAll(async () => {
  await Promise.all([maria?.stop(), pg?.stop()]);
});

async function* rows(): AsyncGenerator<Buffer> {
  yield Buffer.from('1\t1\n2\t2\n');
}

/** Runs `fn` with the process's uncaught exceptions recorded instead of reported (restored after). */
async function recordingUncaught(fn: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const saved = process.listeners('uncaughtException');
  const record = (err: unknown): void => void seen.push(err);
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', record);
  try {
    await fn();
    // Let whatever the destroyed input emits come out.
    await sleep(200);
  } finally {
    process.off('uncaughtException', record);
    for (const l of saved) process.on('uncaughtException', l);
  }
  return seen;
}

/** Starts a load that replaces keys 1..10, aborts it while its DELETE waits on the lock, then calls `unlock`. */
async function abortWhileDeleteWaits(target: TableSource, waiting: () => Promise<boolean>, unlock: () => Promise<unknown>): Promise<void> {
  const ac = new AbortController();
  const reason = new Error('operator stop');
  const load = target.load('t', rows(), { signal: ac.signal, replaceRange: { key: 'id', lo: 1n, hi: 10n } });
  load.catch(() => {});
  const deadline = Date.now() + 30_000;
  while (!(await waiting())) {
    if (Date.now() > deadline) throw new Error('the load never waited on the row lock');
    await sleep(20);
  }
  ac.abort(reason);
  // Released at once (well within the load's grace period before it closes its connection), the DELETE
  // completes and the load sees the abort.
  const unlocked = unlock();
  await expect(load).rejects.toBe(reason);
  await unlocked;
}

describe('a server load aborted before the server asks for its rows', () => {
  it('MysqlSource: rejects with the reason, and nothing is thrown uncaught', async () => {
    const database = await maria.createDatabase('abort_before_feed');
    const setup = await maria.connect({ database });
    const locker = await maria.connect({ database });
    try {
      await setup.query('CREATE TABLE t (id BIGINT PRIMARY KEY, v INT) ENGINE=InnoDB');
      await setup.query('INSERT INTO t VALUES (5, 5)');
      await locker.beginTransaction();
      await locker.query('SELECT * FROM t WHERE id = 5 FOR UPDATE');
      await using target = new MysqlSource({ ...maria.connectionConfig, database });
      const uncaught = await recordingUncaught(() =>
        abortWhileDeleteWaits(target, async () => {
          const [r] = await setup.query("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE 'DELETE FROM%'");
          return Number((r as { n: number | string }[])[0]!.n) > 0;
        }, () => locker.rollback()),
      );
      expect(uncaught).toEqual([]);
      const [left] = await setup.query('SELECT id FROM t');
      expect(left).toEqual([{ id: 5 }]);
    } finally {
      await locker.end();
      await setup.end();
    }
  });

  it('MysqlSource: still stuck on the lock when its grace period ends, it rejects with the reason (it hung)', async () => {
    // mysql2 never calls back a query whose connection was destroyed: the
    // load closed its connection after the grace period, and waited forever.
    const database = await maria.createDatabase('abort_stuck_on_lock');
    const setup = await maria.connect({ database });
    const locker = await maria.connect({ database });
    try {
      await setup.query('CREATE TABLE t (id BIGINT PRIMARY KEY, v INT) ENGINE=InnoDB');
      await setup.query('INSERT INTO t VALUES (5, 5)');
      await locker.beginTransaction();
      await locker.query('SELECT * FROM t WHERE id = 5 FOR UPDATE');
      await using target = new MysqlSource({ ...maria.connectionConfig, database });
      const t0 = Date.now();
      await abortWhileDeleteWaits(
        target,
        async () => {
          const [r] = await setup.query("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE 'DELETE FROM%'");
          return Number((r as { n: number | string }[])[0]!.n) > 0;
        },
        // The lock stays taken: the load must give up on its own (2 s grace), long before InnoDB's 50 s lock wait timeout.
        async () => {},
      );
      expect(Date.now() - t0).toBeLessThan(15_000);
      await locker.rollback();
      const [left] = await setup.query('SELECT id FROM t');
      expect(left).toEqual([{ id: 5 }]);
    } finally {
      await locker.end();
      await setup.end();
    }
  }, 40_000);

  it('PostgresSource: rejects with the reason, and nothing is thrown uncaught', async () => {
    const database = await pg.createDatabase('abort_before_feed');
    const setup = await pg.connect({ database });
    const locker = await pg.connect({ database });
    try {
      await setup.query('CREATE TABLE t (id BIGINT PRIMARY KEY, v INT)');
      await setup.query('INSERT INTO t VALUES (5, 5)');
      await locker.query('BEGIN');
      await locker.query('SELECT * FROM t WHERE id = 5 FOR UPDATE');
      await using target = new PostgresSource({ ...pg.clientConfig, database });
      const uncaught = await recordingUncaught(() =>
        abortWhileDeleteWaits(target, async () => {
          const r = await setup.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'DELETE FROM%' AND wait_event_type = 'Lock'");
          return (r.rows[0] as { n: number }).n > 0;
        }, () => locker.query('ROLLBACK')),
      );
      expect(uncaught).toEqual([]);
      const left = await setup.query('SELECT id::int AS id FROM t');
      expect(left.rows).toEqual([{ id: 5 }]);
    } finally {
      await locker.end();
      await setup.end();
    }
  });
});
