/**
 * `stowage/dna`: DNA digests (digest + size) and sidecars.
 *
 * @module
 */
export { DnaDigest, DNA_ALGORITHMS, SIDECAR_SUFFIX, dnaEqual, assertDna, parseSidecar } from './dna-digest.js';
export type { Dna, DnaAlgorithm, DnaOptions, DnaFileOptions, DnaVerifyResult, DnaTap } from './dna-digest.js';
export { LOCK_DIR_NAME } from './dna-scan.js';
export type { DnaScanOptions } from './dna-scan.js';
