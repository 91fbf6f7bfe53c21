/**
 * `stowage/catalog`: the embedded state store (one SQLite file).
 *
 * @module
 */
export { Catalog, PARTITION_STATES, RUN_STATUSES, MONITOR_RUN_STATUSES } from './catalog.js';
export type {
  ArchiveInput,
  ArchiveRecord,
  CatalogOptions,
  CatalogTime,
  FinishInput,
  JobRecord,
  ListOptions,
  MonitorHistoryOptions,
  MonitorNotifyStateRecord,
  MonitorResultInput,
  MonitorResultRecord,
  MonitorRunInput,
  MonitorRunRecord,
  MonitorRunStatus,
  PartitionInput,
  PartitionRecord,
  PartitionState,
  RunStatus,
  StartJobOptions,
  TransferInput,
  TransferRecord,
  WithJobOptions,
} from './catalog.js';
export { MIGRATIONS, CATALOG_SCHEMA_VERSION, migrate } from './migrations.js';
export type { Migration, MigrateResult } from './migrations.js';
