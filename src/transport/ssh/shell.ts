/**
 * Building and parsing the few shell commands SshTransport runs on the far
 * side (`md5sum`, `df -P -k`). Paths are always single-quoted, so nothing
 * in them (spaces, quotes, `$(...)`, backticks, globs, newlines) is ever
 * interpreted by the remote shell.
 *
 * @module
 */
import type { DnaAlgorithm } from '../../dna/dna-digest.js';
import type { FreeSpace } from '../transport.js';

/**
 * Quotes a string for a POSIX shell: wraps it in single quotes and writes
 * each embedded `'` as `'\''`.
 *
 * @param s - any string
 */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

const DIGEST_COMMAND: Record<DnaAlgorithm, string> = { md5: 'md5sum', sha1: 'sha1sum', sha256: 'sha256sum', sha512: 'sha512sum' };
const HEX_LENGTH: Record<DnaAlgorithm, number> = { md5: 32, sha1: 40, sha256: 64, sha512: 128 };

/**
 * The command that digests a remote file. The file is read through a
 * redirect, so its name never appears in the output (md5sum escapes odd
 * names) and a name starting with `-` is never taken for an option.
 *
 * @param path - the remote path
 * @param algorithm - digest algorithm
 */
export function digestCommand(path: string, algorithm: DnaAlgorithm): string {
  return `${DIGEST_COMMAND[algorithm]} < ${shellQuote(path)}`;
}

/**
 * Parses the output of {@link digestCommand}: `<hex>  -`.
 *
 * @param stdout - the command's output
 * @param algorithm - digest algorithm
 * @returns the lower-case hex digest, or undefined when the output is not one
 */
export function parseDigestOutput(stdout: string, algorithm: DnaAlgorithm): string | undefined {
  const m = new RegExp(`^([0-9a-fA-F]{${HEX_LENGTH[algorithm]}})\\s`).exec(stdout.trimStart() + '\n');
  return m?.[1]?.toLowerCase();
}

/**
 * The command that reports free space of the file system holding `path`,
 * in POSIX format with 1024-byte blocks.
 *
 * @param path - the remote path
 */
export function dfCommand(path: string): string {
  return `df -P -k -- ${shellQuote(path)}`;
}

/**
 * Parses `df -P -k` output (a header, then one line; the file-system name
 * may contain spaces, so the numbers are read from the right).
 *
 * @param stdout - the command's output
 * @returns free space, or undefined when the output is not recognised
 */
export function parseDfOutput(stdout: string): FreeSpace | undefined {
  const lines = stdout.trim().split('\n');
  // POSIX df may wrap a long file-system name onto its own line: join them.
  const body = lines.slice(1).join(' ');
  const m = /(\d+)\s+(\d+)\s+(\d+)\s+(\d+)%\s+\S.*$/.exec(body);
  if (!m) return undefined;
  const totalBytes = Number(m[1]) * 1024;
  const availableBytes = Number(m[3]) * 1024;
  return { totalBytes, availableBytes, availablePercent: totalBytes > 0 ? (availableBytes / totalBytes) * 100 : 0 };
}
