/**
 * `stowage/dna`: DNA digests (digest + size) and sidecars.
 *
 * @module
 */
export { DnaDigest } from './dna-digest.js';
export type { DnaOptions, DnaFileOptions, DnaTap } from './dna-digest.js';
export { DNA_ALGORITHMS, SIDECAR_SUFFIX, MAX_SIDECAR_BYTES, dnaEqual, assertDna, parseSidecar, formatSidecar } from './dna.js';
export type { Dna, DnaAlgorithm, DnaVerifyResult } from './dna.js';
export { LOCK_DIR_NAME } from './dna-scan.js';
export type { DnaScanOptions } from './dna-scan.js';
