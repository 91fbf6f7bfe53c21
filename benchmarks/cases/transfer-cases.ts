/**
 * Transfer cases of `npm run bench:transfer`, over loopback to a real
 * OpenSSH sshd started for the run (test/support/sshd.ts), each against the
 * standard tool in the same run, with the same key and known_hosts:
 *
 * - `ssh-put-file`: `SshTransport.put` of one file (1 GiB; 64 MiB with
 *   `--quick`), DNA computed while sending, connection set-up included, vs
 *   `scp` with the client's defaults (target ratio >= 1.0).
 * - `ssh-put-file-vs-rsync`: the same put vs `rsync -e ssh` of the file.
 * - `sync-tree`: `sync()` of a 2,000-file, 1 GiB tree (200 files, 64 MiB
 *   with `--quick`) into an empty remote folder vs `rsync -a -e ssh`
 *   (target >= 1.0).
 * - `resync-nochange`: the same sync again, nothing changed, vs rsync's
 *   no-change run, in files checked per second (target >= 0.5): a listing
 *   on each side, not a re-read.
 *
 * Trials alternate ours and the baselines so a burst of load from elsewhere
 * hits all of them; the best time of each counts. The target of each trial
 * is removed before the next, so rsync never gets a delta transfer.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DnaDigest } from '../../src/dna/index.js';
import { LocalTransport, sync } from '../../src/transport/index.js';
import { SshTransport } from '../../src/transport/ssh/index.js';
import { startSshd, type SshdServer } from '../../test/support/index.js';
import { requireTool, sh, time, type BenchContext } from '../lib.js';

const MiB = 1 << 20;

/** Writes `bytes` of incompressible-looking data, different for each `seed`. */
async function writeData(path: string, bytes: number, seed: number): Promise<void> {
  const block = Buffer.alloc(Math.min(MiB, Math.max(bytes, 1)));
  for (let off = 0; off < block.length; off += 64) createHash('sha512').update(`${seed}:${off}`).digest().copy(block, off);
  const h = await open(path, 'w');
  try {
    for (let done = 0, i = 0; done < bytes; i++) {
      const n = Math.min(block.length, bytes - done);
      block.writeUInt32LE(i, 0);
      await h.write(block, 0, n);
      done += n;
    }
  } finally {
    await h.close();
  }
}

/** A tree of `files` files holding `bytes` in all, sizes varied ×0.25..×1.75 around the mean, 20 files per folder. */
async function writeTree(root: string, files: number, bytes: number): Promise<number> {
  const mean = bytes / files;
  let total = 0;
  for (let i = 0; i < files; i++) {
    const dir = join(root, `d${String(Math.floor(i / 400)).padStart(2, '0')}`, `e${String(Math.floor(i / 20) % 20).padStart(2, '0')}`);
    if (i % 20 === 0) await mkdir(dir, { recursive: true });
    const size = Math.round(mean * (0.25 + 1.5 * ((i * 7919) % 1000) / 999));
    await writeData(join(dir, `f${String(i).padStart(5, '0')}.dat`), size, i);
    total += size;
  }
  return total;
}

function shellWords(args: readonly string[]): string {
  return args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
}

const mbps = (bytes: number, seconds: number): number => bytes / 1e6 / seconds;

function transportFor(server: SshdServer): SshTransport {
  // STOWAGE_BENCH_SSH_FSYNC=0 turns off the far fsync before each rename, for
  // profiling only: it shows what durability costs against rsync (which does
  // not fsync). Reported figures use the default (fsync on).
  const fsync = process.env['STOWAGE_BENCH_SSH_FSYNC'] !== '0';
  return new SshTransport({ host: server.host, port: server.port, username: server.username, privateKey: server.privateKey, knownHosts: server.knownHostsPath, fsync });
}

/** Runs every transfer case; see the module comment. */
export async function runTransferCases(ctx: BenchContext): Promise<void> {
  await requireTool('scp', 'openssh-client');
  await requireTool('rsync', 'rsync');
  const server = await startSshd();
  const trials = ctx.quick ? 2 : 3;
  const remoteHost = `${server.username}@127.0.0.1`;
  const ssh = `ssh ${shellWords(server.clientArgs)}`;
  try {
    const cpuNote = (await sh('uptime', { capture: true })).trim();
    ctx.log(`load: ${cpuNote}`);

    // --- one file
    if (ctx.wants('ssh-put-file') || ctx.wants('ssh-put-file-vs-rsync')) {
      const bytes = ctx.quick ? 64 * MiB : 1024 * MiB;
      const file = join(ctx.dir, 'one.bin');
      await writeData(file, bytes, 1);
      const expected = await DnaDigest.ofFile(file);
      const target = `${server.root}/one.bin`;
      let ours = Infinity;
      let scp = Infinity;
      let rsync = Infinity;
      for (let i = 0; i < trials; i++) {
        ours = Math.min(
          ours,
          await time(async () => {
            const t = transportFor(server);
            const dna = await t.put(file, target);
            await t.close();
            if (dna.dig !== expected.dig || dna.size !== bytes) throw new Error(`ssh-put-file: DNA ${dna.dig} != ${expected.dig}`);
          }),
        );
        await rm(target, { force: true });
        if (ctx.wants('ssh-put-file')) {
          scp = Math.min(scp, await time(() => sh(`scp ${shellWords(server.clientArgs)} -q ${file} ${remoteHost}:${target}`)));
          await rm(target, { force: true });
        }
        if (ctx.wants('ssh-put-file-vs-rsync')) {
          rsync = Math.min(rsync, await time(() => sh(`rsync -e ${shellWords([ssh])} ${file} ${remoteHost}:${target}`)));
          await rm(target, { force: true });
        }
      }
      if (ctx.wants('ssh-put-file')) ctx.record({ case: 'ssh-put-file', unit: 'MB/s', value: mbps(bytes, ours), baseline: 'scp', baselineValue: mbps(bytes, scp) });
      if (ctx.wants('ssh-put-file-vs-rsync')) {
        ctx.record({ case: 'ssh-put-file-vs-rsync', unit: 'MB/s', value: mbps(bytes, ours), baseline: 'rsync -e ssh', baselineValue: mbps(bytes, rsync) });
      }
      await rm(file, { force: true });
    }

    // --- a tree
    if (ctx.wants('sync-tree') || ctx.wants('resync-nochange')) {
      const files = ctx.quick ? 200 : 2000;
      const src = join(ctx.dir, 'tree');
      const total = await writeTree(src, files, ctx.quick ? 64 * MiB : 1024 * MiB);
      ctx.log(`tree: ${files} files, ${(total / MiB).toFixed(0)} MiB`);
      const local = new LocalTransport();
      const oursDir = `${server.root}/tree-ours`;
      const rsyncDir = `${server.root}/tree-rsync`;
      let ours = Infinity;
      let rsync = Infinity;
      let oursAgain = Infinity;
      let rsyncAgain = Infinity;
      for (let i = 0; i < trials; i++) {
        await rm(oursDir, { recursive: true, force: true });
        await rm(rsyncDir, { recursive: true, force: true });
        ours = Math.min(
          ours,
          await time(async () => {
            const t = transportFor(server);
            const r = await sync(local, src, t, oursDir);
            await t.close();
            if (r.copied.length !== files) throw new Error(`sync-tree: copied ${r.copied.length} of ${files}`);
          }),
        );
        rsync = Math.min(rsync, await time(() => sh(`rsync -a -e ${shellWords([ssh])} ${src}/ ${remoteHost}:${rsyncDir}/`)));
        oursAgain = Math.min(
          oursAgain,
          await time(async () => {
            const t = transportFor(server);
            const r = await sync(local, src, t, oursDir);
            await t.close();
            if (r.copied.length !== 0) throw new Error(`resync-nochange: copied ${r.copied.length}`);
          }),
        );
        rsyncAgain = Math.min(rsyncAgain, await time(() => sh(`rsync -a -e ${shellWords([ssh])} ${src}/ ${remoteHost}:${rsyncDir}/`)));
      }
      if (ctx.wants('sync-tree')) {
        ctx.record({ case: 'sync-tree', unit: 'MB/s', value: mbps(total, ours), baseline: 'rsync -a -e ssh', baselineValue: mbps(total, rsync) });
      }
      if (ctx.wants('resync-nochange')) {
        ctx.record({ case: 'resync-nochange', unit: 'files/s', value: files / oursAgain, baseline: 'rsync -a -e ssh (no change)', baselineValue: files / rsyncAgain });
      }
      await rm(src, { recursive: true, force: true });
    }
  } finally {
    await server.stop();
  }
}
