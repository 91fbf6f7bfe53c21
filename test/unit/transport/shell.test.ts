import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { posixDirname, posixJoin } from '../../../src/transport/put-source.js';
import { dfCommand, digestCommand, parseDfOutput, parseDigestOutput, shellQuote } from '../../../src/transport/ssh/shell.js';

const dir = mkdtempSync(join(tmpdir(), 'stowage-shell-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('remote shell commands', () => {
  const nasty = ["plain", "with space", "it's", "two '' quotes", '$(touch INJECTED)', '`touch INJECTED2`', 'a;touch INJECTED3', 'new\nline', '-n', '*', 'back\\slash', 'dq"x'];

  it('shellQuote survives a real /bin/sh: the string comes back unchanged and nothing runs', () => {
    for (const s of nasty) {
      const out = execFileSync('/bin/sh', ['-c', `printf '%s' ${shellQuote(s)}`], { cwd: dir, encoding: 'utf8' });
      expect(out).toBe(s);
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it('digestCommand digests a file with an awkward name through a real shell', () => {
    for (const name of nasty.filter((n) => n !== '*')) {
      writeFileSync(join(dir, name), 'abc');
      const out = execFileSync('/bin/sh', ['-c', digestCommand(join(dir, name), 'md5')], { encoding: 'utf8' });
      expect(parseDigestOutput(out, 'md5')).toBe('900150983cd24fb0d6963f7d28e17f72');
      rmSync(join(dir, name));
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it('parses digest output of each algorithm and rejects anything else', () => {
    expect(parseDigestOutput('900150983CD24FB0D6963F7D28E17F72  -\n', 'md5')).toBe('900150983cd24fb0d6963f7d28e17f72');
    expect(parseDigestOutput('a9993e364706816aba3e25717850c26c9cd0d89d  -', 'sha1')).toBe('a9993e364706816aba3e25717850c26c9cd0d89d');
    expect(parseDigestOutput('900150983cd24fb0d6963f7d28e17f72  -', 'sha256')).toBeUndefined();
    expect(parseDigestOutput('This service allows sftp connections only.\n', 'md5')).toBeUndefined();
    expect(parseDigestOutput('', 'md5')).toBeUndefined();
  });

  it('parses df -P -k output, also with a wrapped or spaced file-system name, from a real df', () => {
    expect(parseDfOutput('Filesystem 1024-blocks Used Available Capacity Mounted on\n/dev/vda 1000 400 600 40% /\n')).toEqual({
      totalBytes: 1000 * 1024,
      availableBytes: 600 * 1024,
      availablePercent: 60,
    });
    expect(parseDfOutput('Filesystem 1024-blocks Used Available Capacity Mounted on\nmy fs name\n 2000 1000 1000 50% /mnt/x y\n')?.availableBytes).toBe(1000 * 1024);
    expect(parseDfOutput('df: /nope: No such file or directory\n')).toBeUndefined();
    const real = parseDfOutput(execFileSync('/bin/sh', ['-c', dfCommand(dir)], { encoding: 'utf8' }));
    expect(real?.totalBytes).toBeGreaterThan(0);
  });

  it('posixJoin and posixDirname', () => {
    expect(posixJoin('/a/', '/b', '', 'c')).toBe('/a/b/c');
    expect(posixDirname('/a/b')).toBe('/a');
    expect(posixDirname('/a/b/')).toBe('/a');
    expect(posixDirname('/a')).toBe('/');
    expect(posixDirname('/')).toBe('/');
    expect(posixDirname('a')).toBe('.');
    expect(posixDirname('a/b')).toBe('a');
  });
});
