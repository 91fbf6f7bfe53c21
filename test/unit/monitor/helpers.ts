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

/** Ids of 8 nightly sets at 03:15 UTC ending 2026-11-22. */
export const NIGHTS = ['2026/11/15/031500', '2026/11/16/031500', '2026/11/17/031500', '2026/11/18/031500', '2026/11/19/031500', '2026/11/20/031500', '2026/11/21/031500', '2026/11/22/031500'];
/** Time of the newest of {@link NIGHTS}. */
export const NEWEST = Date.parse('2026-11-22T03:15:00Z');
/** An hour in ms. */
export const HOUR = 3_600_000;
/** A day in ms. */
export const DAY = 24 * HOUR;
