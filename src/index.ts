/**
 * stowage: keep experiment data safe with small classes that compose.
 *
 * Layer 0 (primitives): {@link DnaDigest}, Archiver, LockDir, errors, progress.
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
