/**
 * A throwaway PostgreSQL cluster for integration tests: `initdb` into a temp
 * folder, then the `postgres` server on a free loopback port with its unix
 * socket in the same folder.
 *
 * PostgreSQL refuses to run as root. When the tests run as root the cluster
 * belongs to the `postgres` system account (created by the Debian package):
 * the temp folder is chowned to it and `initdb`/`postgres` run with its uid
 * and gid. The server is started directly (not through `pg_ctl`) in its own
 * process group, so the harness owns its pid, its log and its shutdown
 * (SIGINT = fast shutdown) like every other server here.
 *
 * Durability is traded for speed (`fsync=off`, `synchronous_commit=off`,
 * `full_page_writes=off`): the data is thrown away with the folder.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { onPort } from './ports.js';
import {
  isRoot,
  lookupUser,
  missingBinaryMessage,
  requireBinary,
  run,
  spawnServer,
  waitFor,
  type ServerProcess,
  type SystemUser,
  checkOptions,
} from './proc.js';
import { makeTempDir } from './tmp.js';

/** A value of a `postgres -c name=value` setting. */
export type PostgresSetting = string | number | boolean;

/** Options of {@link startPostgres}. */
export interface PostgresOptions {
  /** Test database created at start (default "stowage_test"). */
  readonly database?: string;
  /** Superuser created by initdb (default "stowage"). */
  readonly user?: string;
  /** Its password, required over TCP (scram-sha-256; default: random). */
  readonly password?: string;
  /** `wal_level` (default: PostgreSQL's, "replica"); "minimal" also sets `max_wal_senders=0`. */
  readonly walLevel?: 'minimal' | 'replica' | 'logical';
  /** Extra server settings, passed as `-c name=value`. */
  readonly settings?: Readonly<Record<string, PostgresSetting>>;
  /** Extra `initdb` arguments. */
  readonly initdbArgs?: readonly string[];
  /**
   * Listen on this port instead of a free one (e.g. to restart a server
   * where clients expect it). A taken port is then an error, not retried.
   */
  readonly port?: number;
  /** How long to wait for the server to accept connections (default 30 s). */
  readonly startTimeoutMs?: number;
}

/** Connection settings for `new pg.Client()`. */
export interface PostgresClientConfig {
  /** 127.0.0.1 */
  readonly host: string;
  /** TCP port. */
  readonly port: number;
  /** Superuser. */
  readonly user: string;
  /** Its password. */
  readonly password: string;
  /** Test database. */
  readonly database: string;
}

/** A running PostgreSQL started by {@link startPostgres}. */
export interface PostgresServer {
  /** Always 127.0.0.1. */
  readonly host: '127.0.0.1';
  /** TCP port. */
  readonly port: number;
  /** Superuser name. */
  readonly user: string;
  /** Its password (TCP connections use scram-sha-256; the unix socket trusts). */
  readonly password: string;
  /** The test database created at start. */
  readonly database: string;
  /** The cluster's data directory. */
  readonly dataDir: string;
  /** Folder holding the unix socket (`host` for socket connections). */
  readonly socketDir: string;
  /** The harness's folder (data, socket, log); removed by `stop()`. */
  readonly dir: string;
  /** Folder of the server and client programs (pg_dump, pg_restore, pg_basebackup ...). */
  readonly binDir: string;
  /** `postgresql://user:password@127.0.0.1:port/database` */
  readonly connectionString: string;
  /** `{ host, port, user, password, database }` for pg. */
  readonly clientConfig: PostgresClientConfig;
  /** `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE` for the command-line tools. */
  readonly env: Readonly<Record<string, string>>;
  /** The system account the server runs as (`postgres` when the tests run as root). */
  readonly runAs: SystemUser | undefined;
  /** `server_version`, e.g. "15.14 (Debian 15.14-0+deb12u1)". */
  readonly version: string;
  /** The server's log. */
  readonly logPath: string;
  /** Pid of the postmaster. */
  readonly pid: number;
  /** Milliseconds `startPostgres` took. */
  readonly startMs: number;
  /**
   * Runs SQL over a fresh pg connection and returns the rows.
   *
   * @param sql - SQL text, `$1` placeholders
   * @param params - placeholder values
   * @param database - database to use (default: the test database)
   */
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[], database?: string): Promise<T[]>;
  /** Opens a connected `pg.Client` as the superuser; `end()` it yourself. */
  connect(config?: Partial<pg.ClientConfig>): Promise<pg.Client>;
  /**
   * Creates a database (name: letters, digits, underscore) and returns its name.
   *
   * @param name - database name
   */
  createDatabase(name: string): Promise<string>;
  /** The last lines of the server log. */
  logTail(lines?: number): string;
  /** Fast shutdown, then removes the temp folder. */
  stop(): Promise<void>;
  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

function checkIdent(what: string, name: string): void {
  if (!IDENT.test(name)) throw new Error(`startPostgres: bad ${what} ${JSON.stringify(name)} (letters, digits, underscore)`);
}

function compareVersions(a: string, b: string): number {
  return Number(a) - Number(b);
}

/**
 * The folder holding `initdb`, `postgres`, `pg_dump` ...: `$STOWAGE_PG_BIN`,
 * else the newest `/usr/lib/postgresql/<major>/bin` (Debian), else the
 * folder of `initdb` on PATH. Throws naming the Debian package when none.
 */
export function postgresBinDir(): string {
  const fromEnv = process.env['STOWAGE_PG_BIN'];
  if (fromEnv) {
    if (existsSync(join(fromEnv, 'initdb'))) return fromEnv;
    throw new Error(`STOWAGE_PG_BIN=${fromEnv} has no initdb`);
  }
  const base = '/usr/lib/postgresql';
  let versions: string[] = [];
  try {
    versions = readdirSync(base).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort(compareVersions).reverse();
  } catch {
    versions = [];
  }
  for (const v of versions) {
    const dir = join(base, v, 'bin');
    if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'postgres'))) return dir;
  }
  let initdb: string;
  try {
    initdb = requireBinary({ name: 'initdb', commands: ['initdb'], debianPackage: 'postgresql' });
  } catch {
    throw new Error(missingBinaryMessage('PostgreSQL server (initdb, postgres)', 'postgresql'));
  }
  return initdb.slice(0, initdb.lastIndexOf('/'));
}

/** The account the cluster runs as: undefined (ourselves) unless we are root. */
function clusterAccount(): SystemUser | undefined {
  if (!isRoot()) return undefined;
  const u = lookupUser('postgres');
  if (u === undefined || u.uid === 0) {
    throw new Error(
      'PostgreSQL refuses to run as root and there is no unprivileged "postgres" account to run it as: ' +
        'install the Debian package "postgresql" (it creates the account; `bash scripts/setup-system.sh`), or run the tests as an ordinary user',
    );
  }
  return u;
}

/**
 * Starts a PostgreSQL cluster on a free loopback port in a temp folder.
 * Throws (naming the Debian package) when PostgreSQL is missing.
 *
 * @param opts - see {@link PostgresOptions}
 */
export async function startPostgres(opts: PostgresOptions = {}): Promise<PostgresServer> {
  const t0 = performance.now();
  checkOptions('startPostgres', opts, ['database', 'user', 'password', 'walLevel', 'settings', 'initdbArgs', 'port', 'startTimeoutMs']);
  const binDir = postgresBinDir();
  const initdb = join(binDir, 'initdb');
  const postgres = join(binDir, 'postgres');
  if (!existsSync(postgres)) throw new Error(missingBinaryMessage(`postgres (in ${binDir})`, 'postgresql'));
  const database = opts.database ?? 'stowage_test';
  const user = opts.user ?? 'stowage';
  const password = opts.password ?? randomBytes(12).toString('hex');
  checkIdent('database', database);
  checkIdent('user', user);
  const account = clusterAccount();
  const ids = account === undefined ? {} : { uid: account.uid, gid: account.gid };
  const env: NodeJS.ProcessEnv = { ...process.env, ...(account === undefined ? {} : { HOME: account.home, USER: account.name, LOGNAME: account.name }) };
  for (const k of Object.keys(env)) if (k.startsWith('PG')) delete env[k];

  const tmp = makeTempDir('postgres');
  try {
    const dataDir = join(tmp.path, 'data');
    const socketDir = join(tmp.path, 'sock');
    const logPath = join(tmp.path, 'postgres.log');
    const pwFile = join(tmp.path, 'pwfile');
    mkdirSync(socketDir, { mode: 0o700 });
    writeFileSync(pwFile, `${password}\n`, { mode: 0o600 });
    if (account !== undefined) {
      for (const p of [tmp.path, socketDir, pwFile]) chownSync(p, account.uid, account.gid);
      // The temp folder's parents must let the account through.
      await run('/bin/sh', ['-c', 'test -w "$1" && test -x "$1"', 'sh', tmp.path], { ...ids, cwd: '/' }).catch((err: unknown) => {
        throw new Error(
          `the "${account.name}" account cannot reach ${tmp.path}; give its parent folders o+x or set TMPDIR to a folder it can use`,
          { cause: err },
        );
      });
    }
    const locale = existsSync('/usr/lib/locale/C.utf8') ? 'C.UTF-8' : 'C';
    await run(
      initdb,
      [
        '-D', dataDir,
        '-E', 'UTF8',
        `--locale=${locale}`,
        '-U', user,
        `--pwfile=${pwFile}`,
        '--auth-local=trust',
        '--auth-host=scram-sha-256',
        '--no-sync',
        '--no-instructions',
        ...(opts.initdbArgs ?? []),
      ],
      { ...ids, env, cwd: tmp.path, timeoutMs: 120_000 },
    );

    const settings: Record<string, PostgresSetting> = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: socketDir,
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      ...(opts.walLevel !== undefined ? { wal_level: opts.walLevel } : {}),
      ...(opts.walLevel === 'minimal' ? { max_wal_senders: 0 } : {}),
      ...(opts.settings ?? {}),
    };
    const settingArgs = Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${typeof v === 'boolean' ? (v ? 'on' : 'off') : String(v)}`]);

    const { port, proc } = await onPort(opts.port, async (port) => {
      writeFileSync(logPath, ''); // a fresh log per attempt, so a retry is judged on its own output
      const proc = spawnServer({
        name: 'postgres',
        command: postgres,
        args: ['-D', dataDir, '-p', String(port), ...settingArgs],
        logPath,
        cwd: tmp.path,
        env,
        ...ids,
        stopSignal: 'SIGINT',
      });
      try {
        // Our own socket first: whatever answers there is our server.
        await waitFor(
          async () => {
            const c = new pg.Client({ host: socketDir, port, user, database: 'postgres', connectionTimeoutMillis: 2_000 });
            try {
              await c.connect();
              await c.query('SELECT 1');
            } finally {
              await c.end().catch(() => {});
            }
            return true;
          },
          { timeoutMs: opts.startTimeoutMs ?? 30_000, what: `postgres on ${socketDir}`, server: proc },
        );
        return { port, proc };
      } catch (err) {
        await proc.stop(5_000).catch(() => {});
        throw err;
      }
    });

    try {
      const admin = new pg.Client({ host: socketDir, port, user, database: 'postgres' });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE "${database}"`);
      } finally {
        await admin.end();
      }
      const clientConfig: PostgresClientConfig = { host: '127.0.0.1', port, user, password, database };
      // Now over TCP with the password, and make sure it is our server.
      const tcp = new pg.Client({ ...clientConfig, connectionTimeoutMillis: 5_000 });
      await tcp.connect();
      let version: string;
      try {
        const r = await tcp.query<{ d: string; p: string; v: string }>(
          "SELECT current_setting('data_directory') AS d, current_setting('port') AS p, current_setting('server_version') AS v",
        );
        const row = r.rows[0];
        if (row === undefined || row.d !== dataDir || Number(row.p) !== port) {
          throw new Error(`another server answers on 127.0.0.1:${port}: ${JSON.stringify(row)}`);
        }
        version = row.v;
      } finally {
        await tcp.end();
      }
      return makeServer({ proc, tmp, port, user, password, database, dataDir, socketDir, binDir, logPath, version, clientConfig, account, t0 });
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
  dataDir: string;
  socketDir: string;
  binDir: string;
  logPath: string;
  version: string;
  clientConfig: PostgresClientConfig;
  account: SystemUser | undefined;
  t0: number;
}

function makeServer(p: Parts): PostgresServer {
  const connect = async (config: Partial<pg.ClientConfig> = {}): Promise<pg.Client> => {
    const c = new pg.Client({ ...p.clientConfig, ...config });
    await c.connect();
    return c;
  };
  const query = async <T>(sql: string, params?: readonly unknown[], database?: string): Promise<T[]> => {
    const c = await connect({ database: database ?? p.database });
    try {
      const r = await c.query(sql, params === undefined ? undefined : [...params]);
      return r.rows as T[];
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
    database: p.database,
    dataDir: p.dataDir,
    socketDir: p.socketDir,
    dir: p.tmp.path,
    binDir: p.binDir,
    connectionString: `postgresql://${encodeURIComponent(p.user)}:${encodeURIComponent(p.password)}@127.0.0.1:${p.port}/${p.database}`,
    clientConfig: p.clientConfig,
    env: {
      PGHOST: '127.0.0.1',
      PGPORT: String(p.port),
      PGUSER: p.user,
      PGPASSWORD: p.password,
      PGDATABASE: p.database,
    },
    runAs: p.account,
    version: p.version,
    logPath: p.logPath,
    pid: p.proc.pid,
    startMs: performance.now() - p.t0,
    query,
    connect,
    async createDatabase(name: string) {
      checkIdent('database', name);
      await query(`CREATE DATABASE "${name}"`);
      return name;
    },
    logTail: (lines?: number) => p.proc.logTail(lines),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
