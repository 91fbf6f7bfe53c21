/**
 * `stowage/retention`: which dated backups to keep, pruning a backup tree
 * on any Transport, free-space mode, and the `last` link.
 *
 * @module
 */
export { Retention } from './retention.js';
export type {
  RetentionPolicy,
  ResolvedRetentionPolicy,
  RetentionItem,
  RetentionPlan,
  KeepDecision,
  PurgeDecision,
  KeepRule,
  PurgeRule,
  SetVerify,
  RetentionApplyOptions,
  RetentionApplyResult,
  BackupSetItem,
} from './retention.js';
export { listBackupSets, backupSetPath } from './backup-sets.js';
export type { BackupSet, LeftoverDecision, ListBackupSetsOptions, SkippedSet } from './backup-sets.js';
export type { ElsewhereNode, FreeSpaceOptions, FreeSpacePurge, FreeSpaceResult } from './free-space.js';
export type { LastLinkOptions, LastLinkResult } from './last-link.js';
export type { Duration } from './calendar.js';
