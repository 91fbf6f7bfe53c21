/**
 * A throwaway MariaDB server for integration tests: `mariadb-install-db`
 * into a temp folder, then `mariadbd` on a free loopback port with a
 * private unix socket, a test user with every privilege, a test database,
 * and `LOAD DATA LOCAL INFILE` enabled.
 *
 * Settings trade durability for speed (no binlog, small redo log, relaxed
 * flushing): the data is thrown away with the folder.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createConnection, type Connection, type ConnectionOptions } from 'mysql2/promise';
import { onPort } from './ports.js';
import { checkOptions, isRoot, requireBinary, run, spawnServer, waitFor, type ServerProcess } from './proc.js';
import { makeTempDir } from './tmp.js';

/** Options of {@link startMariadb}. */
export interface MariadbOptions {
  /** Name of the test database created at start (default "stowage_test"). */
  readonly database?: string;
  /** Name of the test user, granted all privileges (default "stowage"). */
  readonly user?: string;
  /** Its password (default: random). */
  readonly password?: string;
  /** Extra `mariadbd` arguments, e.g. `['--log-bin=binlog', '--server-id=1']`. */
  readonly extraArgs?: readonly string[];
  /**
   * Listen on this port instead of a free one (e.g. to restart a server
   * where clients expect it). A taken port is then an error, not retried.
   */
  readonly port?: number;
  /** How long to wait for the server to accept connections (default 30 s). */
  readonly startTimeoutMs?: number;
}

/** Connection settings for mysql2. */
export interface MariadbConnectionConfig {
  /** 127.0.0.1 */
  readonly host: string;
  /** TCP port. */
  readonly port: number;
  /** Test user. */
  readonly user: string;
  /** Its password. */
  readonly password: string;
  /** Test database. */
  readonly database: string;
}

/** A running MariaDB started by {@link startMariadb}. */
export interface MariadbServer {
  /** Always 127.0.0.1. */
  readonly host: '127.0.0.1';
  /** TCP port. */
  readonly port: number;
  /** Test user (all privileges, from any host). */
  readonly user: string;
  /** Its password. */
  readonly password: string;
  /** Unix socket path (root@localhost without password also works there). */
  readonly socketPath: string;
  /** The test database created at start. */
  readonly database: string;
  /** The data directory. */
  readonly dataDir: string;
  /** The harness's folder (data, socket, log); removed by `stop()`. */
  readonly dir: string;
  /** `mysql://user:password@127.0.0.1:port/database` */
  readonly uri: string;
  /** `{ host, port, user, password, database }` for mysql2. */
  readonly connectionConfig: MariadbConnectionConfig;
  /**
   * Arguments for the `mariadb`/`mariadb-dump` clients over TCP:
   * `--no-defaults --protocol=TCP --host=127.0.0.1 --port=N --user=U --password=P`.
   */
  readonly clientArgs: readonly string[];
  /** The server's log. */
  readonly logPath: string;
  /** Pid of mariadbd. */
  readonly pid: number;
  /** Server version string, e.g. "10.11.6-MariaDB-0+deb12u1". */
  readonly version: string;
  /** Milliseconds `startMariadb` took. */
  readonly startMs: number;
  /**
   * Runs SQL over a fresh mysql2 connection (multiple statements allowed,
   * local infile enabled) and returns the rows (or the result header).
   *
   * @param sql - SQL text, `?` placeholders
   * @param values - placeholder values
   * @param database - database to use (default: the test database)
   */
  query<T = Record<string, unknown>[]>(sql: string, values?: MariadbQueryValues, database?: string): Promise<T>;
  /** Opens a mysql2 promise connection as the test user; close it yourself. */
  connect(options?: Partial<ConnectionOptions>): Promise<Connection>;
  /**
   * Creates a database (name: letters, digits, underscore) and returns its name.
   *
   * @param name - database name
   */
  createDatabase(name: string): Promise<string>;
  /** The last lines of the server log. */
  logTail(lines?: number): string;
  /** Shuts the server down and removes the temp folder. */
  stop(): Promise<void>;
  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** Placeholder values mysql2 accepts. */
export type MariadbQueryValues = Parameters<Connection['query']>[1];

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

function checkIdent(what: string, name: string): void {
  if (!IDENT.test(name)) throw new Error(`startMariadb: bad ${what} ${JSON.stringify(name)} (letters, digits, underscore)`);
}

/**
 * Starts MariaDB on a free loopback port in a temp folder. Throws (naming
 * the Debian package) when mariadbd or mariadb-install-db is missing.
 *
 * @param opts - see {@link MariadbOptions}
 */
export async function startMariadb(opts: MariadbOptions = {}): Promise<MariadbServer> {
  const t0 = performance.now();
  checkOptions('startMariadb', opts, ['database', 'user', 'password', 'extraArgs', 'port', 'startTimeoutMs']);
  const mariadbd = requireBinary({
    name: 'mariadbd',
    paths: ['/usr/sbin/mariadbd', '/usr/sbin/mysqld'],
    commands: ['mariadbd', 'mysqld'],
    debianPackage: 'mariadb-server',
  });
  const installDb = requireBinary({
    name: 'mariadb-install-db',
    paths: ['/usr/bin/mariadb-install-db'],
    commands: ['mariadb-install-db', 'mysql_install_db'],
    debianPackage: 'mariadb-server',
  });
  const database = opts.database ?? 'stowage_test';
  const user = opts.user ?? 'stowage';
  const password = opts.password ?? randomBytes(12).toString('hex');
  checkIdent('database', database);
  checkIdent('user', user);

  const tmp = makeTempDir('mariadb');
  try {
    const dataDir = join(tmp.path, 'data');
    const tmpDir = join(tmp.path, 'tmp');
    mkdirSync(tmpDir);
    const socketPath = join(tmp.path, 'mariadb.sock');
    const logPath = join(tmp.path, 'mariadb.log');
    const asRoot = isRoot() ? ['--user=root'] : [];
    // Options shared by the bootstrap run and the server (the redo log size
    // must agree).
    const common = ['--innodb-log-file-size=16M', '--innodb-buffer-pool-size=128M'];
    await run(
      installDb,
      [
        '--no-defaults',
        `--datadir=${dataDir}`,
        '--auth-root-authentication-method=normal',
        '--skip-test-db',
        '--skip-name-resolve',
        ...asRoot,
        ...common,
        `--tmpdir=${tmpDir}`,
      ],
      { timeoutMs: 120_000 },
    );

    const { port, proc } = await onPort(opts.port, async (port) => {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(logPath, ''); // a fresh log per attempt, so a retry is judged on its own output
      const proc = spawnServer({
        name: 'mariadbd',
        command: mariadbd,
        args: [
          '--no-defaults',
          `--datadir=${dataDir}`,
          `--port=${port}`,
          '--bind-address=127.0.0.1',
          `--socket=${socketPath}`,
          `--pid-file=${join(tmp.path, 'mariadbd.pid')}`,
          `--log-error=${logPath}`,
          `--tmpdir=${tmpDir}`,
          '--skip-name-resolve',
          '--local-infile=1',
          '--skip-log-bin',
          '--innodb-flush-log-at-trx-commit=2',
          '--innodb-doublewrite=0',
          '--character-set-server=utf8mb4',
          '--collation-server=utf8mb4_general_ci',
          '--max-connections=300',
          '--max-allowed-packet=256M',
          ...common,
          ...asRoot,
          ...(opts.extraArgs ?? []),
        ],
        logPath,
        cwd: tmp.path,
        stopSignal: 'SIGTERM',
      });
      try {
        const timeoutMs = opts.startTimeoutMs ?? 30_000;
        // Our own socket first: whatever answers there is our server.
        await waitFor(
          async () => {
            const c = await createConnection({ socketPath, user: 'root', password: '', connectTimeout: 2_000 });
            await c.end();
            return true;
          },
          { timeoutMs, what: `mariadbd on ${socketPath}`, server: proc },
        );
        return { port, proc };
      } catch (err) {
        await proc.stop(5_000).catch(() => {});
        throw err;
      }
    });

    try {
      const admin = await createConnection({ socketPath, user: 'root', password: '', multipleStatements: true });
      try {
        const pw = admin.escape(password);
        await admin.query(
          [
            `CREATE USER '${user}'@'%' IDENTIFIED BY ${pw}`,
            `CREATE USER '${user}'@'localhost' IDENTIFIED BY ${pw}`,
            `GRANT ALL PRIVILEGES ON *.* TO '${user}'@'%' WITH GRANT OPTION`,
            `GRANT ALL PRIVILEGES ON *.* TO '${user}'@'localhost' WITH GRANT OPTION`,
            `CREATE DATABASE \`${database}\``,
            '',
          ].join(';\n'),
        );
      } finally {
        await admin.end();
      }
      const connectionConfig: MariadbConnectionConfig = { host: '127.0.0.1', port, user, password, database };
      // Now over TCP, and make sure it is our server that answers there.
      const tcp = await createConnection({ ...connectionConfig, connectTimeout: 5_000 });
      let version: string;
      try {
        const [rows] = await tcp.query('SELECT @@datadir AS d, @@port AS p, VERSION() AS v');
        const row = (rows as { d: string; p: number; v: string }[])[0];
        if (row === undefined || row.p !== port || row.d.replace(/\/$/, '') !== dataDir) {
          throw new Error(`another server answers on 127.0.0.1:${port}: ${JSON.stringify(row)}`);
        }
        version = row.v;
      } finally {
        await tcp.end();
      }
      return makeServer({ proc, tmp, port, user, password, database, socketPath, dataDir, logPath, version, connectionConfig, t0 });
    } catch (err) {
      await proc.stop(5_000).catch(() => {});
      throw err;
    }
  } catch (err) {
    await tmp.remove();
    throw err;
  }
}

interface Parts {
  proc: ServerProcess;
  tmp: ReturnType<typeof makeTempDir>;
  port: number;
  user: string;
  password: string;
  database: string;
  socketPath: string;
  dataDir: string;
  logPath: string;
  version: string;
  connectionConfig: MariadbConnectionConfig;
  t0: number;
}

function makeServer(p: Parts): MariadbServer {
  const connect = (options: Partial<ConnectionOptions> = {}): Promise<Connection> =>
    createConnection({ ...p.connectionConfig, ...options });
  const query = async <T>(sql: string, values?: MariadbQueryValues, database?: string): Promise<T> => {
    const c = await connect({ multipleStatements: true, database: database ?? p.database });
    try {
      const [rows] = await c.query(sql, values);
      return rows as T;
    } finally {
      await c.end();
    }
  };
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      try {
        await p.proc.stop(20_000);
      } finally {
        await p.tmp.remove();
      }
    })();
    return stopping;
  };
  return {
    host: '127.0.0.1',
    port: p.port,
    user: p.user,
    password: p.password,
    socketPath: p.socketPath,
    database: p.database,
    dataDir: p.dataDir,
    dir: p.tmp.path,
    uri: `mysql://${encodeURIComponent(p.user)}:${encodeURIComponent(p.password)}@127.0.0.1:${p.port}/${p.database}`,
    connectionConfig: p.connectionConfig,
    clientArgs: ['--no-defaults', '--protocol=TCP', '--host=127.0.0.1', `--port=${p.port}`, `--user=${p.user}`, `--password=${p.password}`],
    logPath: p.logPath,
    pid: p.proc.pid,
    version: p.version,
    startMs: performance.now() - p.t0,
    query,
    connect,
    async createDatabase(name: string) {
      checkIdent('database', name);
      await query(`CREATE DATABASE \`${name}\``);
      return name;
    },
    logTail: (lines?: number) => p.proc.logTail(lines),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
