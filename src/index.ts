/**
 * stowage: keep experiment data safe with small classes that compose.
 *
 * - Layer 0 (primitives): {@link DnaDigest}, {@link Archiver}, {@link LockDir},
 *   {@link StowageError}, {@link Progress}.
 * - Layer 1 (adapters): {@link LocalTransport}, {@link SshTransport} and
 *   {@link sync}; the TableSources ({@link MysqlSource},
 *   {@link PostgresSource}, {@link SqliteSource}); the {@link Catalog}.
 * - Layer 2 (workflows): {@link Partitioner}, {@link Retention} and
 *   {@link Monitor}. ReplicationManager, Mirror and LazyChannel are designed
 *   (see the README's map) but not part of this release.
 *
 * The main entry re-exports everything. Subpath exports (`stowage/dna`,
 * `stowage/transport/ssh`, `stowage/db/mysql`, ...) load only what they
 * name, so a script that only digests files never loads ssh2 or a driver.
 *
 * @module
 */
export { StowageError, ERROR_CODES, isStowageError, fromFsError, warnOrThrow } from './errors.js';
export type { StowageErrorCode, StowageErrorOptions, StowageWarning, WarningCallback } from './errors.js';
export { ProgressTracker } from './progress.js';
export type { Progress, ProgressCallback, ProgressTrackerOptions } from './progress.js';
export { throwIfAborted, onAbort, raceAbort, sleep, anySignal } from './util/abort.js';
export { AtomicFile, writeFileAtomic, fsyncDir, PART_SUFFIX } from './util/atomic-file.js';
export type { AtomicFileOptions, WriteFileAtomicOptions } from './util/atomic-file.js';
export * from './dna/index.js';
export * from './archive/index.js';
export * from './lock/index.js';
export * from './transport/index.js';
export * from './transport/ssh/index.js';
export * from './retention/index.js';
export * from './db/index.js';
export * from './db/sqlite/index.js';
export * from './catalog/index.js';
export * from './monitor/index.js';
export * from './db/mysql/index.js';
export * from './db/postgres/index.js';
export * from './partition/index.js';
