/**
 * `stowage/transport`: the Transport contract, its local implementation,
 * `sync()` with its pure planner, and the lock adapter. SshTransport lives
 * in `stowage/transport/ssh` so that scripts which only copy locally never
 * load ssh2.
 *
 * @module
 */
export type {
  Transport,
  TransportStat,
  TransportEntry,
  TransportFileType,
  TransportCapabilities,
  ReplayableSource,
  PutSource,
  PutOptions,
  GetOptions,
  FreeSpace,
  DigestOptions,
  OpOptions,
} from './transport.js';
export { toReplayable, posixJoin, posixDirname } from './put-source.js';
export { LocalTransport } from './local/local-transport.js';
export { sync, planSync } from './sync.js';
export type {
  SyncOptions,
  PlanSyncOptions,
  SyncPlan,
  SyncCopy,
  SyncCopyReason,
  SyncTree,
  SyncTreeEntry,
  SyncResult,
  SyncFailure,
  SyncVerification,
} from './sync.js';
export { transportLockFs } from './lock-fs.js';
