/**
 * Vitest global setup: examples and the package-import test load `stowage`
 * by name, which resolves to `dist/`. Build it anew (into an emptied
 * `dist/`) when it is missing, older than the sources, or holds a module
 * whose source is gone, so `npx vitest run` works on its own too.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The newest mtime of the files and folders under `dir` (a folder's changes when a file in it is removed). */
function newest(dir: string): number {
  let m = statSync(dir).mtimeMs;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    m = Math.max(m, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return m;
}

/** Whether `dist` holds a built module (`X.js`) with no `src/X.ts`. */
function hasOrphan(dist: string, src: string): boolean {
  if (!existsSync(dist)) return false;
  for (const e of readdirSync(dist, { withFileTypes: true })) {
    if (e.isDirectory()) {
      if (hasOrphan(join(dist, e.name), join(src, e.name))) return true;
    } else if (e.name.endsWith('.js') && !existsSync(join(src, e.name.replace(/\.js$/, '.ts')))) {
      return true;
    }
  }
  return false;
}

export default function setup(): void {
  const root = join(import.meta.dirname, '..', '..');
  let built = 0;
  try {
    built = statSync(join(root, 'dist', 'index.js')).mtimeMs;
  } catch {
    built = 0;
  }
  if (built < newest(join(root, 'src')) || hasOrphan(join(root, 'dist'), join(root, 'src'))) {
    rmSync(join(root, 'dist'), { recursive: true, force: true });
    execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
  }
}
