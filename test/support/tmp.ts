/**
 * Temporary folders for the test harness: created under `os.tmpdir()`,
 * removed by `remove()`, and removed anyway when the test process exits.
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { registerExitCleanup } from './proc.js';

/** A temporary folder and its removal. */
export interface TempDir {
  /** Absolute path of the folder. */
  readonly path: string;
  /** Removes the folder and everything in it (idempotent). */
  remove(): Promise<void>;
}

/**
 * Creates `os.tmpdir()/stowage-<label>-XXXXXX` (mode 0700) and registers its
 * removal for when the process exits without calling `remove()`.
 *
 * @param label - short word naming the user, e.g. "sshd"
 */
export function makeTempDir(label: string): TempDir {
  const path = mkdtempSync(join(tmpdir(), `stowage-${label}-`));
  const unregister = registerExitCleanup(() => rmSync(path, { recursive: true, force: true }));
  let removing: Promise<void> | undefined;
  return {
    path,
    remove() {
      removing ??= (async () => {
        await rm(path, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
        unregister();
      })();
      return removing;
    },
  };
}
