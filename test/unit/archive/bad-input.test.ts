/**
 * Regression: bad arguments to the Archiver's entry points surfaced as a
 * bare TypeError from Node (`create(src, out, null)`, `create(src, 123)`,
 * `create(undefined, out)`, `readEntry(f, undefined)`), as EIO
 * (`verify(undefined)`), or, for a destination that is a file, as a
 * misleading EEXIST "Cannot create directory". Now they are EBAD_CONFIG
 * naming the argument; a `null` options object means no options, as
 * `checkOptionKeys` has always taken it.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Archiver } from '../../../src/archive/index.js';
import { rejectsWith, tempDir } from './helpers.js';

async function setup(): Promise<{ root: string; src: string; file: string }> {
  const root = await tempDir();
  const src = join(root, 'src');
  await mkdir(src);
  await writeFile(join(src, 'a.txt'), 'a');
  const { path } = await Archiver.create(src, join(root, 'a.tar.gz'));
  return { root, src, file: path };
}

describe('Archiver: bad arguments are EBAD_CONFIG', () => {
  it('null options mean no options', async () => {
    const { root, src, file } = await setup();
    expect((await Archiver.create(src, join(root, 'b.tar.gz'), null as never)).entries).toBe(1);
    expect((await Archiver.verify(file, null as never)).ok).toBe(true);
    expect((await Archiver.list(file, null as never)).map((e) => e.name)).toEqual(['a.txt']);
    expect((await Archiver.readEntry(file, 'a.txt', null as never)).toString()).toBe('a');
    expect((await Archiver.extract(file, join(root, 'd'), null as never)).entries).toBe(1);
    const s = await Archiver.openEntry(file, 'a.txt', null as never);
    s.resume();
    await new Promise((res) => s.on('end', res));
  });

  it('a missing or non-string path names the argument', async () => {
    const { root, src, file } = await setup();
    const e1 = await rejectsWith(Archiver.create(src, 123 as never), 'EBAD_CONFIG');
    expect(e1.message).toContain('outFile');
    const e2 = await rejectsWith(Archiver.create(undefined as never, join(root, 'x.tar')), 'EBAD_CONFIG');
    expect(e2.message).toContain('srcDir');
    await rejectsWith(Archiver.create(src, ''), 'EBAD_CONFIG');
    const e3 = await rejectsWith(Archiver.readEntry(file, undefined as never), 'EBAD_CONFIG');
    expect(e3.message).toContain('name');
    await rejectsWith(Archiver.openEntry(file, undefined as never), 'EBAD_CONFIG');
    await rejectsWith(Archiver.verify(undefined as never), 'EBAD_CONFIG');
    await rejectsWith(Archiver.list(null as never), 'EBAD_CONFIG');
    await rejectsWith(Archiver.extract(undefined as never, join(root, 'd')), 'EBAD_CONFIG');
    await rejectsWith(Archiver.extract(file, undefined as never), 'EBAD_CONFIG');
    await rejectsWith(Archiver.verify(file, 5 as never), 'EBAD_CONFIG');
  });

  it('extract into a regular file (or below one) says the destination is not a directory', async () => {
    const { root, file } = await setup();
    const plain = join(root, 'plain.txt');
    await writeFile(plain, 'not a folder');
    const e = await rejectsWith(Archiver.extract(file, plain), 'EBAD_CONFIG');
    expect(e.message).toContain(`the destination ${plain} is not a directory`);
    const e2 = await rejectsWith(Archiver.extract(file, join(plain, 'below')), 'EBAD_CONFIG');
    expect(e2.message).toContain('is not a directory');
  });
});
