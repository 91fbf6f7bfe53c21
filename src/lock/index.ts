/**
 * `stowage/lock`: {@link LockDir}, a lock that is a directory (`LOCKED/owner.json`),
 * safe between processes and hosts, with a heartbeat and atomic takeover of
 * stale locks, and the {@link LockFs} operations that plant it on a local
 * or remote tree.
 *
 * @module
 */
export { LockDir, LOCK_OWNER_FILE } from './lock-dir.js';
export type { LockOwner, LockDirOptions, LockAcquireOptions, LockInspectOptions, LockInspection, LockStaleReason, LockTransport } from './lock-dir.js';
export { localLockFs, LOCK_FS_METHODS } from './lock-fs.js';
export type { LockFs, LockFsStat } from './lock-fs.js';
