/**
 * Regressions of `Archiver.create` and its source walk:
 * - the output was left out of the walk by path string only, so a source
 *   reached through a symlink (`link/svn` with `link -> real`) took in the
 *   previous `self.tar.gz` and its sidecar written into `real/svn`;
 * - a source given as a symlink to a directory was refused ("is not a
 *   directory": the root was lstat-ed);
 * - a file listed by the walk that vanished before it was read left the
 *   progress short of its total for good.
 */
import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { chmod, mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Archiver } from '../../../src/archive/index.js';
import type { Progress } from '../../../src/progress.js';
import { isRoot } from '../../support/index.js';
import { tempDir } from './helpers.js';

const run = promisify(execFile);

describe('Archiver.create: the source and the output', () => {
  it('leaves out its own output (archive, sidecar) when the source is reached through a symlink', async () => {
    const d = await tempDir();
    const real = join(d, 'real', 'svn');
    await mkdir(join(real, 'sub'), { recursive: true });
    await writeFile(join(real, 'db'), 'data');
    // Same name in another folder of the source: data, kept.
    await writeFile(join(real, 'sub', 'self.tar.gz'), 'not the output');
    await symlink(join(d, 'real'), join(d, 'link'));
    const out = join(real, 'self.tar.gz');
    await Archiver.create(join(d, 'link', 'svn'), out);
    const again = await Archiver.create(join(d, 'link', 'svn'), out);
    const names = (await Archiver.list(again.path)).map((e) => e.name).sort();
    expect(names).toEqual(['db', 'sub', 'sub/self.tar.gz']);
  });

  it('follows a symlink given as the source; symlinks below it stay symlinks', async () => {
    const d = await tempDir();
    const real = join(d, 'real');
    await mkdir(real);
    await writeFile(join(real, 'a.txt'), 'a');
    await symlink('a.txt', join(real, 'to-a'));
    await symlink(real, join(d, 'link'));
    const r = await Archiver.create(join(d, 'link'), join(d, 'out.tar.gz'));
    const entries = await Archiver.list(r.path);
    expect(entries.map((e) => [e.name, e.type, e.linkname])).toEqual([
      ['a.txt', 'file', undefined],
      ['to-a', 'symlink', 'a.txt'],
    ]);
    // The same through explicit entries naming the root.
    const r2 = await Archiver.create(join(d, 'link'), join(d, 'out2.tar'), { entries: ['.'] });
    expect((await Archiver.list(r2.path)).map((e) => e.name)).toEqual(['a.txt', 'to-a']);
  });

  it('progress ends at its total when a listed file vanishes before it is read', async () => {
    const d = await tempDir();
    const src = join(d, 'src');
    await mkdir(src);
    await writeFile(join(src, 'a.bin'), randomBytes(3 << 20));
    await writeFile(join(src, 'b.bin'), randomBytes(1 << 20));
    const seen: Progress[] = [];
    const warnings: string[] = [];
    const r = await Archiver.create(src, join(d, 'x.tar'), {
      onWarning: (w) => warnings.push(w.code),
      onProgress: (p) => {
        seen.push(p);
        if (seen.length === 1) unlinkSync(join(src, 'b.bin'));
      },
    });
    expect(warnings).toEqual(['ENOT_FOUND']);
    expect(r.bytesIn).toBe(3 << 20);
    const last = seen.at(-1)!;
    expect(last.bytesDone).toBe(3 << 20);
    expect(last.bytesTotal).toBe(last.bytesDone);
  });
});

describe('Archiver.create: a folder it cannot read', () => {
  // Run by an ordinary user (root reads everything): as nobody when the tests run as root.
  it('is an error (EIO naming it), not a warning that leaves its contents out of a backup that says it succeeded', async () => {
    const d = await tempDir();
    await mkdir(join(d, 'src', 'locked'), { recursive: true });
    await writeFile(join(d, 'src', 'a.txt'), 'run 1\n');
    await writeFile(join(d, 'src', 'locked', 'secret.txt'), 'calibration\n');
    await chmod(join(d, 'src', 'locked'), 0o000);
    const root = join(import.meta.dirname, '..', '..', '..');
    const code = `
      import { Archiver } from ${JSON.stringify(join(root, 'src', 'archive', 'index.ts'))};
      const warnings = [];
      try {
        const r = await Archiver.create(${JSON.stringify(join(d, 'src'))}, ${JSON.stringify(join(d, 'out', 'src.tar.gz'))}, { onWarning: (w) => warnings.push(w.code) });
        console.log(JSON.stringify({ entries: r.entries, warnings }));
      } catch (err) {
        console.log(JSON.stringify({ code: err.code, message: err.message, warnings }));
      }`;
    await mkdir(join(d, 'out'));
    await chown(d, 'nobody');
    const tsx = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
    const argv = [process.execPath, tsx, '--input-type=module', '-e', code];
    const { stdout } = await run(isRoot() ? 'setpriv' : argv[0]!, isRoot() ? ['--reuid=nobody', '--regid=nogroup', '--clear-groups', ...argv] : argv.slice(1), { cwd: d, env: { ...process.env, HOME: d } });
    const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as { code?: string; message?: string; entries?: number; warnings: string[] };
    expect(r.code).toBe('EIO');
    expect(r.message).toContain(join(d, 'src', 'locked'));
    expect(r.warnings).toEqual([]);
    await expect(readdir(join(d, 'out'))).resolves.toEqual([]);
    await chmod(join(d, 'src', 'locked'), 0o755);
  });
});

/** chown -R to a user, by name. */
async function chown(dir: string, user: string): Promise<void> {
  if (isRoot()) await run('chown', ['-R', `${user}:`, dir]);
}
