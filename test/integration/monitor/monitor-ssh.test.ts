/**
 * Monitor on a backup tree on the far side of a real OpenSSH sshd (started
 * by the harness; fails loudly naming the Debian package when sshd is
 * missing): DNA computed on the far host (no data file is read back), free
 * space from the far `df`, a stale far LOCKED, and a host that cannot be
 * reached reported as critical instead of thrown.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Monitor } from '../../../src/monitor/index.js';
import { SshTransport } from '../../../src/transport/ssh/ssh-transport.js';
import type { Transport } from '../../../src/transport/transport.js';
import { freePort, startSshd, type SshdServer } from '../../support/index.js';
import { makeSet } from '../../unit/retention/helpers.js';

const NIGHTS = ['2026/11/20/031500', '2026/11/21/031500', '2026/11/22/031500'];
const NEWEST = Date.parse('2026-11-22T03:15:00Z');

let server: SshdServer;
let ssh: SshTransport;

beforeAll(async () => {
  server = await startSshd();
  ssh = new SshTransport({ host: server.host, port: server.port, username: server.username, privateKey: server.privateKey, knownHosts: server.knownHostsPath });
});
afterAll(async () => {
  await ssh?.close();
  await server?.stop();
});

/** Counts the far files a Monitor opens for reading, by the transport it is given. */
function counting(t: Transport): { transport: Transport; opened: string[] } {
  const opened: string[] = [];
  const transport = new Proxy(t, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === 'createReadStream') {
        return (path: string, o?: object) => {
          opened.push(path);
          return target.createReadStream(path, o);
        };
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { transport, opened };
}

describe('Monitor over SshTransport', () => {
  it('verifies the newest set with far-side digests and reads far free space', async () => {
    const root = join(server.root, 'healthy');
    for (const id of NIGHTS) await makeSet(root, id, { files: { 'svn.tar.gz': randomBytes(300_000), 'wiki.tar.gz': randomBytes(50_000) } });
    const { transport, opened } = counting(ssh);
    const m = new Monitor({ transport, dir: root }, { maxAge: '26h', size: true, verify: { newest: 2 }, freeSpace: [{ name: 'far', transport, path: root, minFreePercent: 1 }], locks: true }, { timeZone: 'UTC' });
    const r = await m.check({ now: NEWEST + 3_600_000 });
    expect(r.status).toBe('ok');
    expect(ssh.capabilities.remoteDigest).toBe(true);
    expect(r.check('dna')).toMatchObject({ status: 'ok', details: { sets: [NIGHTS[2], NIGHTS[1]], files: 4 } });
    // Only sidecars were read back; the archives were digested on the far host.
    expect(opened.length).toBe(4);
    expect(opened.every((p) => p.endsWith('.dna'))).toBe(true);
    const node = (r.check('freeSpace')!.details['nodes'] as { totalBytes: number; availablePercent: number }[])[0]!;
    expect(node.totalBytes).toBeGreaterThan(0);
    expect(node.availablePercent).toBeGreaterThan(0);
    expect(r.source).toBe(`${ssh.name}:${root}`);
  });

  it('reports a far mutant, a missing far tree, and a stale far LOCKED', async () => {
    const root = join(server.root, 'troubled');
    for (const id of NIGHTS) await makeSet(root, id, { files: { 'svn.tar.gz': randomBytes(1000) } });
    await writeFile(join(root, ...NIGHTS[2]!.split('/'), 'svn.tar.gz'), randomBytes(1000));
    await mkdir(join(root, 'LOCKED'));
    await writeFile(join(root, 'LOCKED', 'owner.json'), JSON.stringify({ host: 'backup-node', pid: 4242, purpose: 'nightly sync', since: new Date(NEWEST - 86_400_000).toISOString(), token: 'x' }));
    const old = (Date.now() - 3 * 3_600_000) / 1000;
    await utimes(join(root, 'LOCKED', 'owner.json'), old, old);
    const r = await new Monitor({ transport: ssh, dir: root }, { verify: true, locks: true }, { timeZone: 'UTC' }).check({ now: NEWEST });
    // The whole tree is under a (stale) LOCKED: it hides only a newest set still being written, so the mutant is found all the same.
    expect(r.check('dna')).toMatchObject({ status: 'critical' });
    expect(r.check('dna')!.message).toContain(`${join(root, ...NIGHTS[2]!.split('/'), 'svn.tar.gz')} does not match its DNA`);
    expect(r.check('locks')).toMatchObject({ status: 'warning' });
    expect(r.check('locks')!.message).toMatch(/^stale lock ssh:\/\/.*\/troubled\/LOCKED \(pid 4242 on backup-node, nightly sync\): no heartbeat for 3h/);

    await ssh.remove(join(root, 'LOCKED'), { recursive: true });
    const mutant = await new Monitor({ transport: ssh, dir: root }, { verify: true, locks: true }, { timeZone: 'UTC' }).check({ now: NEWEST });
    expect(mutant.check('dna')).toMatchObject({ status: 'critical' });
    expect(mutant.check('dna')!.message).toContain(`${join(root, ...NIGHTS[2]!.split('/'), 'svn.tar.gz')} does not match its DNA`);
    expect(mutant.check('locks')).toMatchObject({ status: 'ok', message: 'no LOCKED directory' });

    const gone = await new Monitor({ transport: ssh, dir: join(server.root, 'never-synced') }, { maxAge: '26h' }).check({ now: NEWEST });
    expect(gone.check('age')).toMatchObject({ status: 'critical', error: { code: 'ENOT_FOUND' } });
  });

  it('reports a host that cannot be reached as critical (ECONNECT), never throwing', async () => {
    const port = await freePort();
    const down = new SshTransport({ host: '127.0.0.1', port, username: server.username, privateKey: server.privateKey, knownHosts: server.knownHostsPath, retries: 0, connectTimeoutMs: 3000 });
    try {
      const r = await new Monitor({ transport: down, dir: '/backups' }, { maxAge: '26h', freeSpace: [{ name: 'paired', transport: down, path: '/backups', minFreePercent: 5 }] }).check({ now: NEWEST });
      expect(r.status).toBe('critical');
      expect(r.check('age')).toMatchObject({ status: 'critical', error: { code: 'ECONNECT' } });
      expect(r.check('freeSpace')!.message).toMatch(/^cannot read free space on paired: /);
      expect(Monitor.exitCode(r)).toBe(2);
    } finally {
      await down.close();
    }
  });
});
