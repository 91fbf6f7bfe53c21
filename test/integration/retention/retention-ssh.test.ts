/**
 * Retention on a remote tree through SshTransport against a real OpenSSH
 * sshd (started by the harness; fails loudly naming the Debian package when
 * sshd is missing): listing, DNA checks computed on the far side, LOCKED,
 * atomic removal, the `last` link and its repair, free-space mode with the
 * local tree as the copy elsewhere.
 */
import { cp, mkdir, readlink } from 'node:fs/promises';
import { existsSync, lstatSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Retention, listBackupSets } from '../../../src/retention/index.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { SshTransport } from '../../../src/transport/ssh/ssh-transport.js';
import { startSshd, type SshdServer } from '../../support/index.js';
import { dailyIds, makeSet, plantLock } from '../../unit/retention/helpers.js';

let server: SshdServer;
let ssh: SshTransport;
const NOW = Date.parse('2026-11-22T12:00:00Z');

beforeAll(async () => {
  server = await startSshd();
  ssh = new SshTransport({ host: server.host, port: server.port, username: server.username, privateKey: server.privateKey, knownHosts: server.knownHostsPath });
});
afterAll(async () => {
  await ssh?.close();
  await server?.stop();
});

describe('Retention over SshTransport', () => {
  it('plans with far-side digests, honours LOCKED, removes atomically and keeps last', async () => {
    const root = join(server.root, 'apply');
    const ids = dailyIds('2026-11-22', 10);
    for (const id of ids) await makeSet(root, id, { files: { 'svn.tar.gz': `svn ${id}`, 'wiki.tar.gz': `wiki ${id}` } });
    await plantLock(join(root, ids[1]!));
    await cp(join(root, ids[2]!, 'svn.tar.gz'), join(root, ids[3]!, 'svn.tar.gz')); // a mutant (same size)
    const sets = await listBackupSets(ssh, root, { timeZone: 'UTC' });
    expect(sets.map((s) => s.id)).toEqual(ids);
    const r = new Retention({ keepLast: 3, timeZone: 'UTC' });
    const res = await r.apply(ssh, root, { now: NOW, maxPurgeFraction: 1 });
    expect(res.plan.keep.map((k) => k.item.id)).toEqual(ids.slice(-3).reverse());
    expect(res.skipped.map((s) => s.set.id)).toEqual([ids[1]!]);
    expect(res.plan.purge.find((p) => p.item.id === ids[3])?.rule).toBe('unverified');
    expect(res.removed.map((x) => x.id)).toEqual([ids[0]!, ...ids.slice(2, 7)]);
    for (const [k, id] of ids.entries()) expect(existsSync(join(root, id)), id).toBe(k === 1 || k >= 7);
    expect(existsSync(join(root, ids[0]!.slice(0, 10)))).toBe(false); // empty day folder pruned

    expect(await Retention.updateLastLink(ssh, root, { timeZone: 'UTC' })).toMatchObject({ action: 'created', target: ids[9] });
    expect(await readlink(join(root, 'last'))).toBe(ids[9]);
    await makeSet(root, '2026/11/23/030000', { files: { 'svn.tar.gz': 'svn new' } });
    expect(await Retention.updateLastLink(ssh, root, { timeZone: 'UTC' })).toMatchObject({ action: 'updated', target: '2026/11/23/030000', previousTarget: ids[9] });
    expect(await readlink(join(root, 'last'))).toBe('2026/11/23/030000');
  });

  it('repairs a collapsed last folder on the far side', async () => {
    const root = join(server.root, 'collapsed');
    await makeSet(root, '2026/11/22/031500', { files: { 'svn.tar.gz': 'svn bytes' } });
    await cp(join(root, '2026/11/22/031500'), join(root, 'last'), { recursive: true });
    expect(await Retention.updateLastLink(ssh, root, { timeZone: 'UTC' })).toMatchObject({ action: 'repaired', copyOf: '2026/11/22/031500' });
    expect(lstatSync(join(root, 'last')).isSymbolicLink()).toBe(true);
  });

  it('free-space mode purges far sets only when the local copy verifies', async () => {
    const root = join(server.root, 'free');
    const localRoot = join(server.dir, 'local-copy');
    const ids = dailyIds('2026-11-22', 4);
    for (const id of ids) await makeSet(root, id, { files: { 'data.bin': `data ${id}` } });
    await mkdir(localRoot, { recursive: true });
    for (const id of ids.slice(1)) await cp(join(root, id), join(localRoot, id), { recursive: true });
    const res = await Retention.applyFreeSpace(ssh, root, { minFreePercent: 99.999, minKeep: 2, verifiedElsewhere: [{ transport: new LocalTransport(), dir: localRoot }], timeZone: 'UTC' });
    expect(res.before.totalBytes).toBeGreaterThan(0);
    expect(res.skipped.map((s) => s.set.id)).toEqual([ids[0]!]);
    expect(res.removed.map((p) => p.set.id)).toEqual(ids.slice(1, 3));
    expect(res.stoppedBy).toBe('minKeep');
    expect(ids.map((id) => existsSync(join(root, id)))).toEqual([true, false, false, true]);
  });
});
