/**
 * Measures how long each test server takes to start and stop:
 * `npx tsx test/support/measure.ts [rounds]` (default 3 rounds, one server
 * at a time). Prints one JSON line per server with the median and max.
 *
 * @module
 */
import { startMariadb } from './mariadb.js';
import { startPostgres } from './postgres.js';
import { startSshd } from './sshd.js';
import { withTmpfs } from './tmpfs.js';
import { isRoot } from './proc.js';

interface Stoppable {
  readonly startMs: number;
  stop(): Promise<void>;
}

const rounds = Number(process.argv[2] ?? 3);

function stats(xs: number[]): { median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { median: Math.round(s[Math.floor(s.length / 2)] ?? 0), max: Math.round(s[s.length - 1] ?? 0) };
}

const servers: [string, () => Promise<Stoppable>][] = [
  ['sshd', () => startSshd()],
  ['mariadb', () => startMariadb()],
  ['postgres', () => startPostgres()],
];
if (isRoot()) {
  servers.push([
    'tmpfs',
    async () => {
      const t0 = performance.now();
      const fs = await withTmpfs(20);
      return { startMs: performance.now() - t0, stop: () => fs.stop() };
    },
  ]);
}

for (const [name, start] of servers) {
  const starts: number[] = [];
  const stops: number[] = [];
  for (let i = 0; i < rounds; i += 1) {
    const s = await start();
    starts.push(s.startMs);
    const t0 = performance.now();
    await s.stop();
    stops.push(performance.now() - t0);
  }
  process.stdout.write(`${JSON.stringify({ server: name, rounds, startMs: stats(starts), stopMs: stats(stops) })}\n`);
}
