/**
 * LocalTransport's recursive remove walks the tree itself (so that an abort
 * stops it between entries): it must still unlink symlinks inside the tree
 * without following them, and remove names that are not UTF-8.
 */
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'stowage-local-remove-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

describe('LocalTransport.remove({ recursive: true })', () => {
  it('unlinks symlinks inside the tree without following them and removes non-UTF-8 names', async () => {
    const t = new LocalTransport();
    const outside = join(base, 'outside');
    await mkdir(join(outside, 'sub'), { recursive: true });
    await writeFile(join(outside, 'keep.dat'), 'precious');
    const tree = join(base, 'tree');
    await mkdir(join(tree, 'a', 'b'), { recursive: true });
    await writeFile(join(tree, 'a', 'b', 'f'), 'x');
    await symlink(outside, join(tree, 'a', 'dirlink'));
    await symlink(join(outside, 'keep.dat'), join(tree, 'filelink'));
    // "caf\xe9" in Latin-1: not valid UTF-8.
    await writeFile(Buffer.concat([Buffer.from(join(tree, 'a') + '/'), Buffer.from([0x63, 0x61, 0x66, 0xe9])]), 'latin1');
    await t.remove(tree, { recursive: true });
    expect(await readdir(base)).toEqual(['outside']);
    expect((await readdir(outside)).sort()).toEqual(['keep.dat', 'sub']);
  });
});
