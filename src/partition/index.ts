/**
 * `stowage/partition`: the Partitioner (layer 2): tables cut into key
 * ranges, each range archived once as `DIR/<lo>-<hi>.tar.gz` with its DNA,
 * incremental dumps, verified restores and range-by-range comparison.
 *
 * @module
 */
export { Partitioner } from './partitioner.js';
export type {
  ArchivedPartition,
  ArchivedTable,
  DumpOptions,
  DumpResult,
  PartitionerOptions,
  PartitionPlan,
  PlanOptions,
  PlannedPartition,
  PlannedState,
  WrittenPartition,
  WrittenTable,
} from './partitioner.js';
export type { RestoreOptions, RestoreResult, RestoredTable } from './restore.js';
export type { CompareOptions, CompareReport, CompareSide, KeyDifference, KeyDifferenceKind, RangeComparison } from './compare.js';
export { BOUND_DIGITS, PARTITION_SUFFIX, PartitionGrid, formatBound, parsePartitionFileName, partitionFileName, tableDirName } from './layout.js';
export { MANIFEST_ENTRY, MANIFEST_FORMAT, MANIFEST_VERSION, parseManifest } from './manifest.js';
export type { ManifestTable, PartitionManifest } from './manifest.js';
export type { KeySeeker } from './key-seek.js';
