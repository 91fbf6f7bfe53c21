/**
 * The DNA value (digest + size + algorithm) and its sidecar text form.
 *
 * The legacy tools (the scm-backup shell functions, the conditions-DB
 * tarball scripts) store a file's DNA in a sidecar `FILE.dna` holding a
 * Python dict `{'dig': '<md5>', 'size': N}`. stowage writes the same keys as
 * JSON, which is also a Python dict literal, so old readers still work, and
 * reads the old Python-2 repr with its `L` suffix on longs.
 *
 * @module
 */
import { StowageError, fromFsError } from '../errors.js';

/** Digest algorithms a DNA may use. md5 is the default: the legacy tools' choice. */
export type DnaAlgorithm = 'md5' | 'sha1' | 'sha256' | 'sha512';

/** All supported algorithms. */
export const DNA_ALGORITHMS: readonly DnaAlgorithm[] = Object.freeze(['md5', 'sha1', 'sha256', 'sha512']);

/** Hex digits of a digest, per algorithm (internal: sidecars and the Catalog check DNAs against it). */
export const HEX_LENGTH: Readonly<Record<DnaAlgorithm, number>> = { md5: 32, sha1: 40, sha256: 64, sha512: 128 };

/** The DNA of some bytes: hex digest, byte count and algorithm. */
export interface Dna {
  /** Lower-case hex digest. */
  readonly dig: string;
  /** Number of bytes digested. */
  readonly size: number;
  /** The digest algorithm. */
  readonly algorithm: DnaAlgorithm;
}

/** Result of {@link DnaDigest.verify}. */
export interface DnaVerifyResult {
  /** The file verified. */
  readonly path: string;
  /** Whether digest and size both match the sidecar. */
  readonly ok: boolean;
  /** The DNA recorded in the sidecar. */
  readonly expected: Dna;
  /** The DNA computed now. */
  readonly actual: Dna;
}

/** Suffix of sidecar files. */
export const SIDECAR_SUFFIX = '.dna';

/** Largest sidecar accepted: a real one is under 200 bytes. */
export const MAX_SIDECAR_BYTES = 64 * 1024;

/**
 * Whether two DNAs describe the same bytes (same algorithm, digest and size).
 *
 * @param a - one DNA
 * @param b - the other
 */
export function dnaEqual(a: Dna, b: Dna): boolean {
  return a.algorithm === b.algorithm && a.size === b.size && a.dig.toLowerCase() === b.dig.toLowerCase();
}

/**
 * Throws EDIGEST_MISMATCH unless `actual` matches `expected`.
 *
 * @param what - the file or object, for the message
 * @param expected - recorded DNA
 * @param actual - computed DNA
 */
export function assertDna(what: string, expected: Dna, actual: Dna): void {
  if (!dnaEqual(expected, actual)) {
    throw new StowageError(
      'EDIGEST_MISMATCH',
      `${what} does not match its DNA: expected ${expected.algorithm} ${expected.dig} (${expected.size} bytes), got ${actual.dig} (${actual.size} bytes). Restore it from another copy.`,
      { details: { path: what, expected, actual } },
    );
  }
}

/**
 * Formats a DNA as sidecar text: JSON that is also a Python dict literal,
 * `{"dig": "<hex>", "size": N}` plus `"algorithm"` when not md5, and a
 * newline. Throws EBAD_CONFIG for a DNA that is not well formed.
 *
 * @param dna - the DNA
 * @param what - the sidecar or file, for error messages
 */
export function formatSidecar(dna: Dna, what = 'sidecar'): string {
  const bad = (why: string): StowageError =>
    new StowageError('EBAD_CONFIG', `Refusing to write ${what}: ${why}.`, { details: { sidecar: what, dna } });
  if (typeof dna !== 'object' || dna === null) throw bad('the DNA is not an object');
  const alg = dna.algorithm ?? 'md5';
  if (!(DNA_ALGORITHMS as readonly string[]).includes(alg)) throw bad(`unknown algorithm ${JSON.stringify(alg)}`);
  if (typeof dna.dig !== 'string' || !new RegExp(`^[0-9a-fA-F]{${HEX_LENGTH[alg]}}$`).test(dna.dig)) {
    throw bad(`"dig" must be ${HEX_LENGTH[alg]} hex digits for ${alg}`);
  }
  if (typeof dna.size !== 'number' || !Number.isSafeInteger(dna.size) || dna.size < 0) throw bad('"size" must be a non-negative integer');
  const algorithmKey = alg === 'md5' ? '' : `, "algorithm": "${alg}"`;
  return `{"dig": "${dna.dig.toLowerCase()}", "size": ${dna.size}${algorithmKey}}\n`;
}

/**
 * Reads a Python dict literal of string keys and string or integer values,
 * as Python 2's `repr` wrote it: `{'dig': '…', 'size': 1915051630L}`
 * (single or double quotes, optional `u`/`b` prefixes, `L` on longs).
 * Returns undefined for anything else. A scanner, not a regular
 * expression, so that no input can make it backtrack.
 */
function parsePythonDict(text: string): Record<string, string | number> | undefined {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && ' \t\r\n'.includes(text[i]!)) i++;
  };
  const str = (): string | undefined => {
    if (text[i] === 'u' || text[i] === 'b' || text[i] === 'U' || text[i] === 'B') i++;
    const q = text[i];
    if (q !== "'" && q !== '"') return undefined;
    const end = text.indexOf(q, i + 1);
    if (end < 0) return undefined;
    const v = text.slice(i + 1, end);
    if (v.includes('\\') || v.includes('\n')) return undefined;
    i = end + 1;
    return v;
  };
  const value = (): string | number | undefined => {
    const c = text[i];
    if (c !== undefined && c >= '0' && c <= '9') {
      const s0 = i;
      while (i < text.length && text[i]! >= '0' && text[i]! <= '9') i++;
      // Python 2 reads 012 as octal (10); repr() never writes it: refused, not guessed.
      if (i - s0 > 1 && text[s0] === '0') return undefined;
      const n = Number(text.slice(s0, i));
      if (text[i] === 'L' || text[i] === 'l') i++;
      return n;
    }
    return str();
  };
  const out: Record<string, string | number> = {};
  ws();
  if (text[i++] !== '{') return undefined;
  ws();
  while (text[i] !== '}') {
    const k = str();
    if (k === undefined) return undefined;
    ws();
    if (text[i++] !== ':') return undefined;
    ws();
    const v = value();
    if (v === undefined) return undefined;
    out[k] = v;
    ws();
    if (text[i] === ',') {
      i++;
      ws();
    } else if (text[i] !== '}') return undefined;
  }
  i++;
  ws();
  return i === text.length ? out : undefined;
}

/**
 * Parses the text of a sidecar: the JSON form stowage writes, or the legacy
 * Python-2 repr `{'dig': '…', 'size': 1915051630L}`. Anything malformed is
 * EBAD_SIDECAR naming the sidecar.
 *
 * @param text - the sidecar's content
 * @param sidecar - its path, for error messages
 */
export function parseSidecar(text: string, sidecar: string): Dna {
  const bad = (why: string): StowageError =>
    new StowageError('EBAD_SIDECAR', `Malformed DNA sidecar ${sidecar}: ${why}. Expected {"dig": "<hex>", "size": <bytes>}.`, {
      details: { sidecar, content: text.slice(0, 200) },
    });
  const trimmed = text.replace(/^\uFEFF/, '').trim();
  let obj: unknown;
  try {
    obj = JSON.parse(trimmed);
  } catch {
    obj = parsePythonDict(trimmed);
    if (obj === undefined) throw bad('neither JSON nor a Python dict');
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw bad('not an object');
  const rec = obj as Record<string, unknown>;
  const algorithm = rec['algorithm'] ?? 'md5';
  if (typeof algorithm !== 'string' || !(DNA_ALGORITHMS as readonly string[]).includes(algorithm)) {
    throw bad(`unknown algorithm ${JSON.stringify(algorithm)}`);
  }
  const alg = algorithm as DnaAlgorithm;
  const dig = rec['dig'];
  if (typeof dig !== 'string' || !new RegExp(`^[0-9a-fA-F]{${HEX_LENGTH[alg]}}$`).test(dig)) {
    throw bad(`"dig" must be ${HEX_LENGTH[alg]} hex digits for ${alg}`);
  }
  const size = rec['size'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw bad('"size" must be a non-negative integer');
  return Object.freeze({ dig: dig.toLowerCase(), size, algorithm: alg });
}

/**
 * Maps an error met opening or reading `sidecar` to a StowageError: missing
 * is ENO_SIDECAR, a directory is EBAD_SIDECAR, anything else as
 * {@link fromFsError} says.
 *
 * @param err - the fs error
 * @param file - the file the sidecar describes
 * @param sidecar - the sidecar's path
 */
export function sidecarReadError(err: unknown, file: string, sidecar: string): StowageError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') {
    return new StowageError('ENO_SIDECAR', `No DNA sidecar ${sidecar} for ${file}.`, { details: { path: file, sidecar }, cause: err });
  }
  if (code === 'EISDIR') {
    return new StowageError('EBAD_SIDECAR', `Malformed DNA sidecar ${sidecar}: it is a directory.`, { details: { path: file, sidecar }, cause: err });
  }
  return fromFsError(err, 'read', sidecar);
}

/**
 * The EBAD_SIDECAR for a sidecar larger than {@link MAX_SIDECAR_BYTES}.
 *
 * @param file - the file the sidecar describes
 * @param sidecar - the sidecar's path
 */
export function sidecarTooBig(file: string, sidecar: string): StowageError {
  return new StowageError('EBAD_SIDECAR', `Malformed DNA sidecar ${sidecar}: larger than ${MAX_SIDECAR_BYTES} bytes.`, { details: { path: file, sidecar } });
}
