/**
 * Helpers of the Monitor tests: temp folders that live until the end of the
 * test file (a tree built in `beforeAll` serves several tests).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

/** A fresh temp folder, removed after the test file. */
export async function scratch(label = 'monitor'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), `stowage-${label}-`));
  dirs.push(d);
  return d;
}
