/**
 * `stowage/archive`: `.tar` and `.tar.gz` archives with their DNA computed
 * in the same pass, parallel gzip (multi-member, as pigz writes), full
 * verification, and extraction that treats archives as untrusted.
 *
 * @module
 */
export { Archiver, DEFAULT_EXTRACT_MAX_BYTES, DETERMINISTIC_MTIME } from './archiver.js';
export type {
  ArchiveCreateOptions,
  ArchiveCreateResult,
  ArchiveVerifyOptions,
  ArchiveVerifyResult,
  ArchiveListOptions,
  ArchiveReadOptions,
  ArchiveExtractOptions,
  ArchiveExtractResult,
} from './archiver.js';
export type { ArchiveEntry, ArchiveEntryType } from './archive-reader.js';
