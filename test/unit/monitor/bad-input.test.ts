/**
 * Null options to the Monitor and the notifiers mean "no options", as for
 * every options object of stowage (checkOptionKeys), instead of a TypeError
 * from deep inside (regression).
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CommandNotifier, HttpNotifier, Monitor, MonitorReport } from '../../../src/monitor/index.js';
import { LocalTransport } from '../../../src/transport/local/local-transport.js';
import { makeSet } from '../retention/helpers.js';
import { scratch } from './helpers.js';

const local = new LocalTransport();

describe('Monitor entry points and null options', () => {
  it('Monitor, check and the notifiers take null options as none', async () => {
    const root = await scratch('monitor-null');
    await makeSet(root, '2026/11/22/031500', { files: { 'svn.tar.gz': randomBytes(100) } });
    const m = new Monitor({ transport: local, dir: root }, { maxAge: '26h' }, null as never);
    const r = await m.check(null as never);
    expect(r).toBeInstanceOf(MonitorReport);
    expect(r.check('age')).toBeDefined();
    expect(() => m.history(null as never)).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG', message: expect.stringContaining('Catalog') }));
    expect(new CommandNotifier(['true'], null as never).name).toBe('command:true');
    expect(new HttpNotifier('http://127.0.0.1:9/hook', null as never).name).toBe('http:http://127.0.0.1:9/hook');
    await new CommandNotifier(['true'], { input: 'none' }).notify({ monitor: 'm', status: 'ok', previousStatus: null, changes: [], subject: 's', text: 't', report: r }, null as never);
  });

  it('a source dir that is not a string, and options that are not an object, are EBAD_CONFIG', () => {
    for (const dir of [null, 42, '']) expect(() => new Monitor({ transport: local, dir: dir as never }, { maxAge: '26h' })).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG' }));
    expect(() => new Monitor({ transport: local, dir: '/x' }, { maxAge: '26h' }, 'opts' as never)).toThrow(expect.objectContaining({ code: 'EBAD_CONFIG' }));
  });
});
