/**
 * Shared benchmark plumbing: argument parsing (`--quick`, `--json`, `--only <substring>`), timing,
 * running a baseline command, and the one JSON line every benchmark prints
 * last: {"bench":"<name>","results":[{case,unit,value,baseline,baselineValue,ratio}]}.
 */
import { spawn } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** One result row; `ratio` is ours divided by the baseline's (higher is better for us). */
export interface BenchResult {
  case: string;
  unit: string;
  value: number;
  baseline: string;
  baselineValue: number;
  ratio: number;
}

/** What every case module receives. */
export interface BenchContext {
  /** `--quick`: small data, whole run under a minute. */
  quick: boolean;
  /** `--only <substring>`: run only the cases whose name contains it (undefined: all). */
  only: string | undefined;
  /** Whether the case named `name` should run (honours `--only`). */
  wants: (name: string) => boolean;
  /** A scratch folder for this run (removed at the end). */
  dir: string;
  /** Prints a human line (to stderr when --json, so stdout's last line stays JSON). */
  log: (msg: string) => void;
  /** Records a result row and prints it. */
  record: (r: Omit<BenchResult, 'ratio'> & { ratio?: number }) => BenchResult;
}

/** Parses argv and builds a context. */
export async function makeContext(name: string, argv = process.argv.slice(2)): Promise<{ ctx: BenchContext; results: BenchResult[]; json: boolean; finish: () => Promise<void> }> {
  const quick = argv.includes('--quick');
  const json = argv.includes('--json');
  const onlyAt = argv.findIndex((a) => a === '--only' || a.startsWith('--only='));
  const onlyArg = argv[onlyAt] ?? '';
  const only = onlyAt < 0 ? undefined : onlyArg.startsWith('--only=') ? onlyArg.slice('--only='.length) : argv[onlyAt + 1];
  if (onlyAt >= 0 && (only === undefined || only === '' || only.startsWith('--'))) throw new Error('--only needs a substring of a case name, e.g. --only md5');
  const base = process.env['STOWAGE_BENCH_DIR'] ?? tmpdir();
  const dir = join(base, `stowage-bench-${name}-${process.pid}`);
  await mkdir(dir, { recursive: true });
  const results: BenchResult[] = [];
  const log = (msg: string): void => {
    (json ? process.stderr : process.stdout).write(msg + '\n');
  };
  const ctx: BenchContext = {
    quick,
    only,
    wants: (caseName) => only === undefined || caseName.includes(only),
    dir,
    log,
    record(r) {
      const ratio = r.ratio ?? r.value / r.baselineValue;
      // Small figures (compression factors, a few MB/s) keep three decimals.
      const digits = Math.abs(r.value) < 10 ? 3 : 1;
      const full: BenchResult = { ...r, value: round(r.value, digits), baselineValue: round(r.baselineValue, digits), ratio: round(ratio, 3) };
      results.push(full);
      log(`${full.case.padEnd(26)} ${String(full.value).padStart(10)} ${full.unit.padEnd(6)} vs ${full.baseline} ${full.baselineValue} -> ratio ${full.ratio}`);
      return full;
    },
  };
  const finish = async (): Promise<void> => {
    await rm(dir, { recursive: true, force: true });
    if (json) process.stdout.write(JSON.stringify({ bench: name, results }) + '\n');
  };
  return { ctx, results, json, finish };
}

/** Rounds to `digits` decimals. */
export function round(n: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Times an async function; returns seconds. */
export async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/** Best (smallest) of `n` timings, in seconds. */
export async function best(n: number, fn: () => Promise<unknown>): Promise<number> {
  let b = Infinity;
  for (let i = 0; i < n; i++) b = Math.min(b, await time(fn));
  return b;
}

/**
 * Runs a shell command (bash -c), rejecting on non-zero exit. stdout is
 * discarded unless `capture`; stderr is passed through on failure.
 */
export function sh(cmd: string, opts: { cwd?: string; capture?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('bash', ['-c', cmd], { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', opts.capture ? 'pipe' : 'ignore', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${err.slice(-2000)}`))));
  });
}

/** Throws with the Debian package to install when a baseline tool is missing. */
export async function requireTool(tool: string, pkg: string): Promise<void> {
  try {
    await sh(`command -v ${tool}`);
  } catch {
    throw new Error(`benchmark baseline "${tool}" is missing: apt-get install ${pkg} (or run bash scripts/setup-system.sh)`);
  }
}
