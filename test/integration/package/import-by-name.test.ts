import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

// A user's script imports the built package by name, through package.json
// "exports": the main entry and the subpaths resolve to dist/ and work.
describe('the built package, imported by name', () => {
  const root = join(import.meta.dirname, '..', '..', '..');
  const app = mkdtempSync(join(tmpdir(), 'stowage-user-'));
  mkdirSync(join(app, 'node_modules'));
  symlinkSync(root, join(app, 'node_modules', 'stowage'));
  afterAll(() => rmSync(app, { recursive: true, force: true }));

  it('exposes the public surface from the main entry and the subpaths', () => {
    writeFileSync(
      join(app, 'check.mjs'),
      `import * as s from 'stowage';
       import { DnaDigest } from 'stowage/dna';
       import { StowageError } from 'stowage/errors';
       const d = new DnaDigest(); d.update(Buffer.from('hello'));
       console.log(JSON.stringify({ dig: d.digest().dig, same: s.DnaDigest === DnaDigest, err: new s.StowageError('EIO', 'x') instanceof StowageError, keys: Object.keys(s).sort() }));`,
    );
    const out = JSON.parse(execFileSync(process.execPath, ['check.mjs'], { cwd: app, encoding: 'utf8' })) as { dig: string; same: boolean; err: boolean; keys: string[] };
    expect(out.dig).toBe('5d41402abc4b2a76b9719d911017c592');
    expect(out.same).toBe(true);
    expect(out.err).toBe(true);
    expect(out.keys).toEqual(expect.arrayContaining(['Archiver', 'DnaDigest', 'LockDir', 'LocalTransport', 'StowageError', 'ERROR_CODES']));
  });

  it('packs no built module whose source is gone (dist/ is emptied before each build)', () => {
    const [pack] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' })) as { files: { path: string }[] }[];
    const modules = pack!.files.map((f) => f.path).filter((p) => p.startsWith('dist/') && p.endsWith('.js'));
    expect(modules).toContain('dist/index.js');
    expect(modules.filter((p) => !existsSync(join(root, 'src', p.slice('dist/'.length).replace(/\.js$/, '.ts'))))).toEqual([]);
  });

  it('refuses deep imports that are not exported', () => {
    writeFileSync(join(app, 'deep.mjs'), `import 'stowage/src/errors.ts';`);
    expect(() => execFileSync(process.execPath, ['deep.mjs'], { cwd: app, stdio: 'pipe' })).toThrow(/ERR_PACKAGE_PATH_NOT_EXPORTED/);
  });
});
