import { execFile } from 'node:child_process';
import { access, copyFile, mkdtemp, readdir, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');

// The quickstart recipe runs as a user runs it: tsx, importing `stowage` by name.
describe('examples/quickstart.ts', () => {
  const dirs: string[] = [];
  afterAll(async () => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

  it('names its set as a Monitor with default options reads it (the machine\'s time zone), far from UTC too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stowage-qs-tz-'));
    dirs.push(dir);
    await mkdir(join(dir, 'src'));
    await writeFile(join(dir, 'src', 'a.txt'), 'a');
    // Monitor (and Retention) read set names in the machine's zone by default: run both in Tokyo, 9 h from UTC.
    const code = `
      import { quickstart } from ${JSON.stringify(join(root, 'examples', 'quickstart.ts'))};
      import { LocalTransport, Monitor } from 'stowage';
      await quickstart(${JSON.stringify(join(dir, 'src'))}, ${JSON.stringify(join(dir, 'backups'))});
      const r = await new Monitor({ transport: new LocalTransport(), dir: ${JSON.stringify(join(dir, 'backups'))} }, { maxAge: '1h' }).check();
      console.log('STATUS ' + r.status + ' ' + r.check('age').message);`;
    const tsx = join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs');
    const { stdout } = await run(process.execPath, [tsx, '--input-type=module', '-e', code], { cwd: root, env: { ...process.env, TZ: 'Asia/Tokyo' } });
    expect(stdout).toMatch(/^STATUS ok newest backup \d+s old/m);
  });

  it('backs up demo data, verifies, restores and finds no difference', async () => {
    const { stdout } = await run(process.execPath, [join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(root, 'examples', 'quickstart.ts')], { cwd: root });
    expect(stdout).toMatch(/created .*\/\d{4}\/\d{2}\/\d{2}\/\d{6}\/experiment\.tar\.gz/);
    expect(stdout).toMatch(/verified \d+ entries/);
    expect(stdout).toMatch(/identical to/);
  });

  it('backs up a folder given on the command line into a dated set with a sidecar', async () => {
    const scratch = await mkdtemp(join(tmpdir(), 'stowage-qs-test-'));
    dirs.push(scratch);
    const src = join(scratch, 'wiki');
    await mkdir(join(src, 'db'), { recursive: true });
    await writeFile(join(src, 'db', 'trac.db'), Buffer.alloc(100_000, 7));
    const backups = join(scratch, 'backups');
    const { stdout } = await run(process.execPath, [join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(root, 'examples', 'quickstart.ts'), src, backups], { cwd: root });
    // The restored copy of the user's folder does not stay behind in the temp folder.
    const restored = /restored to (.*): identical/.exec(stdout)?.[1];
    expect(restored).toBeDefined();
    await expect(access(restored!)).rejects.toThrow(/ENOENT/);
    await expect(access(join(restored!, '..'))).rejects.toThrow(/ENOENT/);
    expect(stdout).toMatch(/removed the restored copy \(set STOWAGE_KEEP=1 to keep it\)\n/);
    const years = await readdir(backups);
    expect(years).toHaveLength(1);
    expect(years[0]).toMatch(/^\d{4}$/);
    const [y] = years;
    const [m] = await readdir(join(backups, y!));
    const [d] = await readdir(join(backups, y!, m!));
    const [t] = await readdir(join(backups, y!, m!, d!));
    expect(t).toMatch(/^\d{6}$/);
    expect((await readdir(join(backups, y!, m!, d!, t!))).sort()).toEqual(['wiki.tar.gz', 'wiki.tar.gz.dna']);
  });

  it('refuses BACKUPS inside SRC (each archive would hold the ones before it): exit 2, one line, nothing written', async () => {
    const scratch = await mkdtemp(join(tmpdir(), 'stowage-qs-inside-'));
    dirs.push(scratch);
    await writeFile(join(scratch, 'run00001.log'), 'adc=17\n');
    const err = (await run(process.execPath, [join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(root, 'examples', 'quickstart.ts'), scratch, join(scratch, 'backups')], { cwd: root }).catch((e: unknown) => e)) as { code: number; stderr: string };
    expect(err.code).toBe(2);
    expect(err.stderr).toMatch(/^failed: EBAD_CONFIG: BACKUPS .*backups lies inside SRC .*Give a BACKUPS folder outside SRC\.\n$/);
    expect(await readdir(scratch)).toEqual(['run00001.log']);
  });

  it('given only a folder, keeps the backups it made in the temp folder and removes the restored copy', async () => {
    const scratch = await mkdtemp(join(tmpdir(), 'stowage-qs-src-'));
    dirs.push(scratch);
    await writeFile(join(scratch, 'run00001.log'), 'adc=17\n');
    const { stdout } = await run(process.execPath, [join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(root, 'examples', 'quickstart.ts'), scratch], { cwd: root });
    const backups = /the backups are in (.*)\n/.exec(stdout)?.[1];
    expect(backups).toBeDefined();
    dirs.push(join(backups!, '..'));
    expect(await readdir(backups!)).toHaveLength(1);
    await expect(access(/restored to (.*): identical/.exec(stdout)![1]!)).rejects.toThrow(/ENOENT/);
  });

  // Cron starts the recipe through a symlink (/usr/local/bin/...), or from a
  // folder whose name has a space: it must still run, not exit 0 silently.
  it('runs when started through a symlink and from a path with a space', async () => {
    const scratch = await mkdtemp(join(tmpdir(), 'stowage-qs-cli-'));
    dirs.push(scratch);
    const src = join(scratch, 'wiki');
    await mkdir(src);
    await writeFile(join(src, 'notes.txt'), 'crate 3 slot 7\n');

    const bin = join(scratch, 'bin');
    await mkdir(bin);
    await symlink(join(root, 'examples', 'quickstart.ts'), join(bin, 'quickstart.ts'));
    const viaLink = await run(process.execPath, [join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(bin, 'quickstart.ts'), src, join(scratch, 'backups-link')], { cwd: scratch });
    expect(viaLink.stdout).toMatch(/identical to/);
    expect(await readdir(join(scratch, 'backups-link'))).toHaveLength(1);

    // A copy in "cron jobs/", importing `stowage` through its own node_modules.
    const spaced = join(scratch, 'cron jobs');
    await mkdir(join(spaced, 'node_modules'), { recursive: true });
    await symlink(root, join(spaced, 'node_modules', 'stowage'));
    await writeFile(join(spaced, 'package.json'), '{ "type": "module" }\n');
    await copyFile(join(root, 'examples', 'quickstart.ts'), join(spaced, 'quickstart.ts'));
    const viaSpace = await run(process.execPath, [join(root, 'node_modules', 'tsx', 'dist', 'cli.mjs'), join(spaced, 'quickstart.ts'), src, join(scratch, 'backups-space')], { cwd: spaced });
    expect(viaSpace.stdout).toMatch(/identical to/);
    expect(await readdir(join(scratch, 'backups-space'))).toHaveLength(1);
  });
});
