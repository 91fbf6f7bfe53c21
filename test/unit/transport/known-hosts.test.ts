import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  checkHostKey,
  fingerprintOf,
  formatKnownHostsLine,
  hostFieldMatches,
  keyTypeOfBlob,
  knownHostsName,
  parseKnownHosts,
  preferredHostKeyAlgorithms,
} from '../../../src/transport/ssh/known-hosts.js';

/** A fake wire-format key blob: string type, then random bytes. */
function blob(type: string): Buffer {
  const t = Buffer.from(type);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(t.length);
  return Buffer.concat([len, t, randomBytes(32)]);
}

function hashed(name: string): string {
  const salt = randomBytes(20);
  return `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
}

const ED = blob('ssh-ed25519');
const ED2 = blob('ssh-ed25519');
const RSA = blob('ssh-rsa');

describe('known_hosts', () => {
  it('names hosts as OpenSSH does: bare for port 22, [host]:port otherwise, lower-cased', () => {
    expect(knownHostsName('Backup.Example.org', 22)).toBe('backup.example.org');
    expect(knownHostsName('127.0.0.1', 2222)).toBe('[127.0.0.1]:2222');
  });

  it('parses plain, hashed, marked and commented lines; skips malformed ones', () => {
    const text = [
      '# comment',
      '',
      `host1,10.0.0.1 ssh-ed25519 ${ED.toString('base64')} comment here`,
      `${hashed('host2')} ssh-rsa ${RSA.toString('base64')}`,
      `@revoked * ssh-ed25519 ${ED2.toString('base64')}`,
      `@cert-authority *.example.org ssh-ed25519 ${ED.toString('base64')}`,
      '@weird host ssh-ed25519 AAAA',
      'onlytwo fields',
      'host3 ssh-ed25519 not!base64',
    ].join('\n');
    const entries = parseKnownHosts(text);
    expect(entries.map((e) => [e.line, e.marker, e.keyType])).toEqual([
      [3, undefined, 'ssh-ed25519'],
      [4, undefined, 'ssh-rsa'],
      [5, 'revoked', 'ssh-ed25519'],
      [6, 'cert-authority', 'ssh-ed25519'],
    ]);
  });

  it('matches patterns: comma lists, wildcards, negation, hashed names', () => {
    expect(hostFieldMatches('a,b,c', 'b')).toBe(true);
    expect(hostFieldMatches('a,b', 'd')).toBe(false);
    expect(hostFieldMatches('*.example.org', 'db.example.org')).toBe(true);
    expect(hostFieldMatches('*.example.org', 'example.org')).toBe(false);
    expect(hostFieldMatches('db?.example.org', 'db1.example.org')).toBe(true);
    expect(hostFieldMatches('*.example.org,!bad.example.org', 'bad.example.org')).toBe(false);
    expect(hostFieldMatches('[127.0.0.1]:2222', '[127.0.0.1]:2222')).toBe(true);
    expect(hostFieldMatches('[127.0.0.1]:2222', '[127.0.0.1]:2223')).toBe(false);
    expect(hostFieldMatches('127.0.0.1', '127.0.0.1')).toBe(true);
    expect(hostFieldMatches('127.0.0.1', '127a0a0a1')).toBe(false);
    expect(hostFieldMatches(hashed('[h]:2200'), '[h]:2200')).toBe(true);
    expect(hostFieldMatches(hashed('[h]:2200'), '[h]:2201')).toBe(false);
    expect(hostFieldMatches('|1|garbage', 'h')).toBe(false);
  });

  it('checks a presented key: ok, changed (same type, other key), unknown, revoked', () => {
    const entries = parseKnownHosts(
      [`[h]:2222 ssh-ed25519 ${ED.toString('base64')}`, `${hashed('other')} ssh-ed25519 ${ED2.toString('base64')}`, `@revoked * ssh-rsa ${RSA.toString('base64')}`].join('\n'),
    );
    expect(checkHostKey(entries, 'h', 2222, ED).status).toBe('ok');
    expect(checkHostKey(entries, 'H', 2222, ED).status).toBe('ok');
    const changed = checkHostKey(entries, 'h', 2222, ED2);
    expect(changed.status).toBe('changed');
    expect(changed.hostLines).toEqual([1]);
    expect(changed.fingerprint).toBe(fingerprintOf(ED2));
    expect(checkHostKey(entries, 'h', 22, ED).status).toBe('unknown');
    expect(checkHostKey(entries, 'other', 22, ED2).status).toBe('ok');
    expect(checkHostKey(entries, 'h', 2222, RSA).status).toBe('revoked');
    // Another type than the recorded one is unknown, not changed.
    const onlyRsa = parseKnownHosts(`h ssh-rsa ${blob('ssh-rsa').toString('base64')}`);
    expect(checkHostKey(onlyRsa, 'h', 22, ED).status).toBe('unknown');
  });

  it('offers first the host-key algorithms of the types recorded for the host', () => {
    const entries = parseKnownHosts(`[h]:2222 ssh-rsa ${RSA.toString('base64')}\nother ssh-ed25519 ${ED.toString('base64')}`);
    const algs = preferredHostKeyAlgorithms(entries, 'h', 2222);
    expect(algs.slice(0, 3)).toEqual(['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
    expect(algs).toContain('ssh-ed25519');
    expect(preferredHostKeyAlgorithms([], 'h', 22)[0]).toBe('ssh-ed25519');
  });

  it('formats the line accept-new appends, which parses back and matches', () => {
    const line = formatKnownHostsLine('H', 2222, ED);
    expect(line).toBe(`[h]:2222 ssh-ed25519 ${ED.toString('base64')}\n`);
    expect(checkHostKey(parseKnownHosts(line), 'h', 2222, ED).status).toBe('ok');
    expect(keyTypeOfBlob(ED)).toBe('ssh-ed25519');
    expect(keyTypeOfBlob(Buffer.alloc(2))).toBe('');
    expect(fingerprintOf(ED)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });
});
