// Smoke test of the tmpfs harness: a real, small file system that fills up.
// As an ordinary user withTmpfs must throw (never pretend to have mounted).
import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isRoot } from '../../support/proc.js';
import { withTmpfs } from '../../support/tmpfs.js';

function mounted(dir: string): boolean {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[1] === dir && l.split(' ')[2] === 'tmpfs');
}

describe('withTmpfs', () => {
  it('rejects a bad size', async () => {
    await expect(withTmpfs(0)).rejects.toThrow(/sizeMiB/);
    await expect(withTmpfs(1.5)).rejects.toThrow(/sizeMiB/);
  });

  // One test with two branches rather than a skipped one: as root it mounts,
  // as an ordinary user it must throw.
  it('mounts a tmpfs that fills up with ENOSPC, then unmounts and removes it (as root; throws otherwise)', async () => {
    if (!isRoot()) {
      await expect(withTmpfs(20)).rejects.toThrow(/needs root/);
      return;
    }
    const fs = await withTmpfs(20);
    try {
      expect(mounted(fs.dir)).toBe(true);
      expect(fs.sizeBytes).toBe(20 * 1024 * 1024);
      const before = await fs.available();
      expect(before).toBeGreaterThan(19 * 1024 * 1024);
      expect(before).toBeLessThanOrEqual(fs.sizeBytes);

      expect(await fs.fill()).toBe(0);
      await expect(writeFile(join(fs.dir, 'more'), Buffer.alloc(64 * 1024))).rejects.toMatchObject({ code: 'ENOSPC' });

      await fs.unfill();
      const left = await fs.fill(100 * 1024);
      expect(left).toBeGreaterThanOrEqual(100 * 1024);
      expect(left).toBeLessThan(200 * 1024);
      await writeFile(join(fs.dir, 'fits'), Buffer.alloc(64 * 1024));
      await expect(writeFile(join(fs.dir, 'too-big'), Buffer.alloc(256 * 1024))).rejects.toMatchObject({ code: 'ENOSPC' });
    } finally {
      await fs.stop();
    }
    expect(mounted(fs.dir)).toBe(false);
    expect(existsSync(fs.dir)).toBe(false);
  });
});
