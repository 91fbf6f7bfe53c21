/**
 * The built-in notifiers against real processes and a real HTTP server on
 * 127.0.0.1: arguments passed without a shell, the report on stdin, the
 * JSON posted, and every failure mapped to a code (EIO, ENOT_FOUND,
 * ETIMEOUT, ECONNECT), plus abort before start and midway.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CommandNotifier, HttpNotifier, MonitorReport, monitorEventJSON, type MonitorEvent } from '../../../src/monitor/index.js';
import { rejectsWith, throwsWith } from '../db/helpers.js';
import { scratch } from './helpers.js';

function event(subject = 'STOWAGE CRITICAL - svn: newest backup 3d old'): MonitorEvent {
  const report = new MonitorReport({
    monitor: 'svn',
    source: 'local:/backups/svn',
    checkedAt: new Date('2026-11-22T03:15:00Z'),
    durationMs: 3,
    checks: [{ check: 'age', status: 'critical', message: 'newest backup 3d old', metrics: [], details: {}, error: null }],
  });
  return { monitor: 'svn', status: 'critical', previousStatus: 'ok', changes: [{ check: 'age', from: 'ok', to: 'critical' }], subject, text: report.toText(), report };
}

/** A node program that records its arguments and stdin as JSON into the file given first. */
const RECORDER = "const fs=require('fs');let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{fs.writeFileSync(process.argv[1],JSON.stringify({argv:process.argv.slice(2),stdin:s}))})";
/** A node program that writes its pid to the file given, then waits a minute. */
const SLEEPER = "require('fs').writeFileSync(process.argv[1], String(process.pid)); setTimeout(()=>{}, 60000)";

async function waitForFile(path: string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    if (existsSync(path)) {
      const text = await readFile(path, 'utf8');
      if (text !== '') return text;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${path} never appeared`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('CommandNotifier', () => {
  it('runs the program with placeholders filled in, no shell, and the report on stdin', async () => {
    const out = join(await scratch('notify'), 'mail.json');
    const evil = 'STOWAGE CRITICAL - $(touch /tmp/stowage-pwned); `id` "quoted"';
    const n = new CommandNotifier([process.execPath, '-e', RECORDER, out, '-s', '{subject}', 'status={status}', '{monitor}', 'oncall@example.org'], { name: 'mail:oncall' });
    expect(n.name).toBe('mail:oncall');
    await n.notify(event(evil));
    const got = JSON.parse(await readFile(out, 'utf8')) as { argv: string[]; stdin: string };
    expect(got.argv).toEqual(['-s', evil, 'status=critical', 'svn', 'oncall@example.org']);
    expect(got.stdin).toBe('svn: CRITICAL at 2026-11-22T03:15:00.000Z (local:/backups/svn)\n  [CRITICAL] age: newest backup 3d old\n');
    expect(existsSync('/tmp/stowage-pwned')).toBe(false);
  });

  it('sends the event as JSON on stdin with input: json, nothing with input: none', async () => {
    const dir = await scratch('notify');
    await new CommandNotifier([process.execPath, '-e', RECORDER, join(dir, 'a.json')], { input: 'json' }).notify(event());
    const got = JSON.parse(await readFile(join(dir, 'a.json'), 'utf8')) as { stdin: string };
    expect(JSON.parse(got.stdin)).toEqual(JSON.parse(JSON.stringify(monitorEventJSON(event()))));
    await new CommandNotifier([process.execPath, '-e', RECORDER, join(dir, 'b.json')], { input: 'none', env: { STOWAGE_X: '1' } }).notify(event());
    expect(JSON.parse(await readFile(join(dir, 'b.json'), 'utf8'))).toEqual({ argv: [], stdin: '' });
  });

  it('names its default after the program', () => {
    expect(new CommandNotifier(['/usr/bin/mail', '-s', 'x']).name).toBe('command:mail');
  });

  it('fails with EIO and the end of stderr when the program exits non-zero', async () => {
    const n = new CommandNotifier([process.execPath, '-e', 'process.stderr.write("smtp: connection refused\\n"); process.exit(3)']);
    const err = await rejectsWith(n.notify(event()), 'EIO');
    expect(err.message).toMatch(/exited with status 3: smtp: connection refused$/);
    expect(err.details).toMatchObject({ exitCode: 3 });
  });

  it('does not fail because the program ignored its stdin', async () => {
    await new CommandNotifier([process.execPath, '-e', 'process.exit(0)']).notify(event());
  });

  it('fails with ENOT_FOUND for a missing program', async () => {
    await rejectsWith(new CommandNotifier(['/nonexistent/bin/mail', '-s', 'x']).notify(event()), 'ENOT_FOUND');
  });

  it('takes the command\'s own exit, not a helper it left holding stderr: delivered at once, and timeoutMs holds', async () => {
    // A mailer that hands the message to a background helper and exits 0 at once.
    const t0 = performance.now();
    await new CommandNotifier(['sh', '-c', 'cat >/dev/null; sleep 3 & exit 0'], { timeoutMs: 2500 }).notify(event());
    expect(performance.now() - t0).toBeLessThan(2000);
    // One that does not exit is killed at timeoutMs, whatever its helper holds.
    const t1 = performance.now();
    await rejectsWith(new CommandNotifier(['sh', '-c', 'cat >/dev/null; sleep 3 & sleep 4'], { timeoutMs: 500 }).notify(event()), 'ETIMEOUT');
    expect(performance.now() - t1).toBeLessThan(2500);
  });

  it('kills a program that runs past timeoutMs (ETIMEOUT)', async () => {
    // 2.5 s: long enough for node to start and write its pid on a busy machine.
    const pidFile = join(await scratch('notify'), 'pid');
    const n = new CommandNotifier([process.execPath, '-e', SLEEPER, pidFile], { timeoutMs: 2500 });
    const err = await rejectsWith(n.notify(event()), 'ETIMEOUT');
    expect(err.message).toMatch(/did not finish within 2500 ms/);
    expect(alive(Number(await readFile(pidFile, 'utf8')))).toBe(false);
  });

  it('rejects with the reason when aborted before start (nothing runs) or midway (the program is killed)', async () => {
    const dir = await scratch('notify');
    const before = new AbortController();
    before.abort(new Error('stop before'));
    await expect(new CommandNotifier([process.execPath, '-e', SLEEPER, join(dir, 'never')]).notify(event(), { signal: before.signal })).rejects.toBe(before.signal.reason);
    expect(existsSync(join(dir, 'never'))).toBe(false);

    const ac = new AbortController();
    const pidFile = join(dir, 'pid');
    const p = new CommandNotifier([process.execPath, '-e', SLEEPER, pidFile]).notify(event(), { signal: ac.signal });
    const pid = Number(await waitForFile(pidFile));
    expect(alive(pid)).toBe(true);
    const reason = new Error('stop midway');
    ac.abort(reason);
    await expect(p).rejects.toBe(reason);
    expect(alive(pid)).toBe(false);
  });

  it('refuses bad argv and options', () => {
    throwsWith(() => new CommandNotifier([]), 'EBAD_CONFIG');
    throwsWith(() => new CommandNotifier('mail -s x' as never), 'EBAD_CONFIG');
    throwsWith(() => new CommandNotifier([''], {}), 'EBAD_CONFIG');
    throwsWith(() => new CommandNotifier(['mail'], { input: 'html' as never }), 'EBAD_CONFIG');
    throwsWith(() => new CommandNotifier(['mail'], { timeout: 5 } as never), 'EBAD_CONFIG');
    throwsWith(() => new CommandNotifier(['mail'], { env: { A: 1 } as never }), 'EBAD_CONFIG');
    throwsWith(() => new CommandNotifier(['mail'], { name: ' ' }), 'EBAD_CONFIG');
  });
});

describe('HttpNotifier', () => {
  let server: Server;
  let base: string;
  let handler: (req: IncomingMessage, body: string, res: ServerResponse) => void = (_q, _b, res) => res.end();
  const hanging: ServerResponse[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d)).on('end', () => handler(req, body, res));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    for (const r of hanging) r.destroy();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('POSTs the event as JSON with its headers', async () => {
    const seen: { method?: string; url?: string; type?: string; auth?: string; body?: string }[] = [];
    handler = (req, body, res) => {
      seen.push({ method: req.method!, url: req.url!, type: req.headers['content-type']!, auth: req.headers.authorization!, body });
      res.writeHead(204).end();
    };
    const n = new HttpNotifier(`${base}/hooks/backups?token=abc`, { headers: { authorization: 'Bearer s3cret' } });
    expect(n.name).toBe(`http:${base}/hooks/backups`);
    await n.notify(event());
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/hooks/backups?token=abc', type: 'application/json', auth: 'Bearer s3cret' });
    const json = JSON.parse(seen[0]!.body!) as Record<string, unknown>;
    expect(Object.keys(json)).toEqual(['monitor', 'status', 'previousStatus', 'subject', 'changes', 'report']);
    expect(json).toMatchObject({ monitor: 'svn', status: 'critical', previousStatus: 'ok', changes: [{ check: 'age', from: 'ok', to: 'critical' }] });
    expect((json['report'] as { checkedAt: string }).checkedAt).toBe('2026-11-22T03:15:00.000Z');
  });

  it('fails with EIO on a non-2xx answer, naming the status', async () => {
    handler = (_q, _b, res) => res.writeHead(503, 'Service Unavailable').end('maintenance');
    const err = await rejectsWith(new HttpNotifier(`${base}/hook`).notify(event()), 'EIO');
    expect(err.message).toMatch(/answered 503 Service Unavailable: maintenance$/);
    handler = (_q, _b, res) => res.writeHead(302, { location: 'http://example.org/' }).end();
    await rejectsWith(new HttpNotifier(`${base}/hook`).notify(event()), 'EIO');
  });

  it('fails with ECONNECT when nothing listens', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const err = await rejectsWith(new HttpNotifier(`http://127.0.0.1:${port}/hook`).notify(event()), 'ECONNECT');
    expect(err.details).toMatchObject({ errno: 'ECONNREFUSED' });
  });

  it('fails with ETIMEOUT when the server does not answer in time', async () => {
    handler = (_q, _b, res) => hanging.push(res);
    const err = await rejectsWith(new HttpNotifier(`${base}/slow`, { timeoutMs: 300 }).notify(event()), 'ETIMEOUT');
    expect(err.message).toMatch(/no answer from .*\/slow within 300 ms/);
  });

  it('a 2xx answer whose body never ends is delivered, not ETIMEOUT (the next run would tell the change again); a non-2xx one still names its status', async () => {
    handler = (_q, _b, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('accepted, and then...');
      hanging.push(res);
    };
    const t0 = Date.now();
    await new HttpNotifier(`${base}/slow-body`, { timeoutMs: 300 }).notify(event());
    expect(Date.now() - t0).toBeLessThan(300);
    handler = (_q, _b, res) => {
      res.writeHead(500, 'Internal Server Error');
      res.write('partial');
      hanging.push(res);
    };
    const err = await rejectsWith(new HttpNotifier(`${base}/slow-error`, { timeoutMs: 300 }).notify(event()), 'EIO');
    expect(err.message).toMatch(/answered 500 Internal Server Error/);
  });

  it('rejects with the reason when aborted before start or midway', async () => {
    let requests = 0;
    handler = (_q, _b, res) => {
      requests++;
      hanging.push(res);
    };
    const before = new AbortController();
    before.abort(new Error('before'));
    await expect(new HttpNotifier(`${base}/x`).notify(event(), { signal: before.signal })).rejects.toBe(before.signal.reason);
    expect(requests).toBe(0);
    const ac = new AbortController();
    const p = new HttpNotifier(`${base}/x`).notify(event(), { signal: ac.signal });
    while (requests === 0) await new Promise((r) => setTimeout(r, 10));
    const reason = new Error('midway');
    ac.abort(reason);
    await expect(p).rejects.toBe(reason);
  });

  it('refuses a bad URL and options', () => {
    throwsWith(() => new HttpNotifier('not a url'), 'EBAD_CONFIG');
    throwsWith(() => new HttpNotifier('ftp://127.0.0.1/x'), 'EBAD_CONFIG');
    throwsWith(() => new HttpNotifier(`http://127.0.0.1/x`, { header: {} } as never), 'EBAD_CONFIG');
    throwsWith(() => new HttpNotifier(`http://127.0.0.1/x`, { timeoutMs: 0 }), 'EBAD_CONFIG');
    throwsWith(() => new HttpNotifier(`http://127.0.0.1/x`, { headers: { a: 1 } as never }), 'EBAD_CONFIG');
  });
});
