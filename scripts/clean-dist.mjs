// Empties dist/ before a build, so that a module removed from src/ is not
// left behind in dist/ (and packed with the package).
import { rmSync } from 'node:fs';
import { join } from 'node:path';

rmSync(join(import.meta.dirname, '..', 'dist'), { recursive: true, force: true });
