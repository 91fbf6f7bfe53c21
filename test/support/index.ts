/**
 * The integration-test harness: real sshd, MariaDB and PostgreSQL servers
 * on free loopback ports in temporary folders, and a fillable tmpfs.
 *
 * ```ts
 * import { startSshd } from '../support/index.js';
 * let sshd: SshdServer;
 * beforeAll(async () => { sshd = await startSshd(); });
 * afterAll(() => sshd?.stop());
 * ```
 *
 * A missing server binary is an error naming the Debian package to install
 * (`bash scripts/setup-system.sh` installs them all), never a skipped test.
 *
 * @module
 */
export { freePort, isPortInUse, onPort, withFreePort } from './ports.js';
export {
  checkOptions,
  childrenOf,
  currentUser,
  descendants,
  isAlive,
  isRoot,
  missingBinaryMessage,
  registerExitCleanup,
  requireBinary,
  run,
  ServerStartError,
  spawnUntil,
  waitFor,
  type BinarySpec,
  type RunOptions,
  type RunResult,
  type ServerProcess,
  type WatchedChild,
} from './proc.js';
export { makeTempDir, type TempDir } from './tmp.js';
export { xorshift32 } from './prng.js';
export { startSshd, type SshdOptions, type SshdServer } from './sshd.js';
export { startMariadb, type MariadbConnectionConfig, type MariadbOptions, type MariadbQueryValues, type MariadbServer } from './mariadb.js';
export {
  postgresBinDir,
  startPostgres,
  type PostgresClientConfig,
  type PostgresOptions,
  type PostgresServer,
  type PostgresSetting,
} from './postgres.js';
export { useUpInodes, withTmpfs, type Tmpfs, type TmpfsOptions } from './tmpfs.js';
