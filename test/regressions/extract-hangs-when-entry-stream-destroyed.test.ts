/**
 * Regression: Archiver.extract hung (and, with other timing, reported
 * success) when writing a file failed with ENOSPC.
 *
 * The extract visitor writes an entry with `for await (const c of data)`;
 * when the write throws, leaving the loop destroys the entry stream, and
 * tar-stream then destroys the whole extract stream *without* an 'error'
 * event (only 'close'). The pass heard of the failure only later, once the
 * visitor had discarded its `.part` file. If, in between, the pass wrote
 * its next chunk (write() on a destroyed stream returns false) it waited for
 * a 'drain' that could never come; if it had reached the end of the archive
 * it waited for a 'finish' that could never come, or took the bare 'close'
 * for success. Which of these happened depended on the machine's load: the
 * full-suite run timed out in test/unit/archive/enospace.test.ts.
 *
 * Here the timing is forced: a 3 MiB entry (more than one 1 MiB read, so
 * the pass is between reads when the visitor takes its first chunk) and a
 * visitor that stops reading after that chunk and fails a little later, as
 * the ENOSPC path does while it removes its `.part` file. Without the fix
 * every run hung.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Archiver } from '../../src/archive/index.js';
import { readArchive } from '../../src/archive/archive-reader.js';
import { StowageError } from '../../src/errors.js';
import { sleep } from '../../src/util/abort.js';
import { withTmpfs, type Tmpfs } from '../support/index.js';
import { ls, rejectsWith, tempDir } from '../unit/archive/helpers.js';

async function bigEntryArchive(gzip: boolean): Promise<string> {
  const root = await tempDir('regr');
  const src = join(root, 'src');
  await mkdir(src);
  await writeFile(join(src, 'a.bin'), randomBytes(3 << 20));
  await writeFile(join(src, 'b.txt'), 'after');
  const { path } = await Archiver.create(src, join(root, gzip ? 'x.tar.gz' : 'x.tar'), { deterministic: true });
  return path;
}

describe('a visitor that stops reading an entry and then fails', () => {
  for (const gzip of [false, true]) {
    it(`fails the pass with the visitor's error, without hanging (${gzip ? '.tar.gz' : '.tar'})`, { timeout: 10_000 }, async () => {
      const file = await bigEntryArchive(gzip);
      const pass = readArchive(file, { phase: 'extract' }, async (e, data) => {
        if (e.type !== 'file') return;
        for await (const _ of data as AsyncIterable<Buffer>) break;
        await sleep(300);
        throw new StowageError('ENOSPACE', 'disk full (simulated)');
      });
      await rejectsWith(pass, 'ENOSPACE');
    });
  }

  it('a visitor that stops reading and then returns normally fails the pass (EIO) instead of hanging', { timeout: 10_000 }, async () => {
    const file = await bigEntryArchive(false);
    const pass = readArchive(file, { phase: 'list' }, async (e, data) => {
      if (e.type !== 'file') return;
      for await (const _ of data as AsyncIterable<Buffer>) break;
      await sleep(300);
    });
    const err = await rejectsWith(pass, 'EIO');
    expect(err.message).toContain('a.bin');
  });
});

describe('Archiver.extract onto a full disk (real ENOSPC)', () => {
  let disk: Tmpfs;
  beforeAll(async () => {
    disk = await withTmpfs(4);
  });
  afterAll(async () => {
    await disk?.stop();
  });

  for (const gzip of [false, true]) {
    it(`rejects with ENOSPACE within the timeout and leaves no .part (${gzip ? '.tar.gz' : '.tar'})`, { timeout: 10_000 }, async () => {
      const file = await bigEntryArchive(gzip);
      await disk.fill(1 << 20);
      try {
        for (let i = 0; i < 5; i++) {
          const dest = join(disk.dir, `dest${i}`);
          await rejectsWith(Archiver.extract(file, dest), 'ENOSPACE');
          expect(await ls(dest)).toEqual([]);
        }
      } finally {
        await disk.unfill();
      }
    });
  }
});
