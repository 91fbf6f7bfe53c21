// Smoke tests of the sshd harness: a real OpenSSH server on a loopback port,
// reached with the OpenSSH client and with ssh2, then stopped without leftovers.
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Client, type SFTPWrapper } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive, requireBinary, run } from '../../support/proc.js';
import { startSshd, type SshdServer } from '../../support/sshd.js';

const SSH = '/usr/bin/ssh';

function ssh(server: SshdServer, args: readonly string[], command: string, timeoutMs = 20_000): ReturnType<typeof run> {
  return run(SSH, [...server.clientArgs, ...args, `${server.username}@127.0.0.1`, command], { timeoutMs });
}

function ssh2Connect(server: SshdServer): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    c.once('ready', () => resolve(c));
    c.once('error', reject);
    c.connect({ ...server.connectConfig, readyTimeout: 10_000 });
  });
}

function sftpOf(c: Client): Promise<SFTPWrapper> {
  return new Promise((resolve, reject) => c.sftp((err, sftp) => (err ? reject(err) : resolve(sftp))));
}

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

describe('startSshd', () => {
  let server: SshdServer;

  beforeAll(async () => {
    server = await startSshd();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('starts quickly on a loopback port with a known_hosts entry for it', async () => {
    expect(server.host).toBe('127.0.0.1');
    expect(server.port).toBeGreaterThan(0);
    expect(server.startMs).toBeLessThan(5_000);
    expect(isAlive(server.pid)).toBe(true);
    const { readFile } = await import('node:fs/promises');
    expect(await readFile(server.knownHostsPath, 'utf8')).toBe(`[127.0.0.1]:${server.port} ${server.hostKeyPublic}\n`);
    expect(server.hostKeyPublic).toMatch(/^ssh-ed25519 AAAA/);
    expect(server.hostKeyFingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(server.privateKey.toString('utf8')).toContain('BEGIN OPENSSH PRIVATE KEY');
    expect(server.listConnections()).toEqual([]);
  });

  it('runs a command for the OpenSSH client with strict host key checking', async () => {
    const { stdout } = await ssh(server, [], 'echo ok; id -un');
    expect(stdout).toBe(`ok\n${server.username}\n`);
  });

  it('reports the host key ssh-keygen computes', async () => {
    const keygen = requireBinary({ name: 'ssh-keygen', commands: ['ssh-keygen'], debianPackage: 'openssh-client' });
    const { stdout } = await run(keygen, ['-l', '-f', server.knownHostsPath]);
    expect(stdout).toContain(server.hostKeyFingerprint);
  });

  it('refuses the connection when known_hosts has another key for the host', async () => {
    const wrong = server.clientArgs.map((a) => (a.startsWith('UserKnownHostsFile=') ? `UserKnownHostsFile=${server.wrongKnownHostsPath}` : a));
    await expect(run(SSH, [...wrong, `${server.username}@127.0.0.1`, 'echo ok'], { timeoutMs: 20_000 })).rejects.toThrow(
      /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/,
    );
  });

  it('serves SFTP to ssh2 in the root folder, and exec', async () => {
    const c = await ssh2Connect(server);
    try {
      const sftp = await sftpOf(c);
      const path = join(server.root, 'hello.txt');
      await new Promise<void>((resolve, reject) => sftp.writeFile(path, 'stowage over sftp\n', (err) => (err ? reject(err) : resolve())));
      const back = await new Promise<Buffer>((resolve, reject) => sftp.readFile(path, (err, data) => (err ? reject(err) : resolve(data))));
      expect(back.toString('utf8')).toBe('stowage over sftp\n');
      const { readFile } = await import('node:fs/promises');
      expect(await readFile(path, 'utf8')).toBe('stowage over sftp\n');

      const out = await new Promise<string>((resolve, reject) =>
        c.exec(`cat ${path}`, (err, ch) => {
          if (err) return reject(err);
          let s = '';
          ch.on('data', (d: Buffer) => (s += d.toString('utf8')));
          ch.on('close', () => resolve(s));
          ch.stderr.resume();
        }),
      );
      expect(out).toBe('stowage over sftp\n');
    } finally {
      c.end();
    }
  });

  it('lists live connections and cuts them with killConnections()', async () => {
    const c = await ssh2Connect(server);
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    c.on('error', () => {});
    const conns = server.listConnections();
    expect(conns).toHaveLength(1);
    // A long command keeps the session busy, like a transfer in flight.
    await new Promise<void>((resolve, reject) => c.exec('sleep 60', (err, ch) => (err ? reject(err) : (ch.resume(), resolve()))));
    expect(server.killConnections()).toBe(1);
    await closed;
    expect(conns.every((pid) => !isAlive(pid))).toBe(true);
    expect(server.listConnections()).toEqual([]);
    // The listener survives and accepts new connections.
    const { stdout } = await ssh(server, [], 'echo again');
    expect(stdout).toBe('again\n');
  });
});

describe('startSshd({ allowExec: false })', () => {
  it('serves SFTP but does not run commands', async () => {
    const server = await startSshd({ allowExec: false });
    try {
      // OpenSSH 9 refuses non-SFTP sessions under ForceCommand internal-sftp.
      await expect(ssh(server, ['-n'], 'echo ok')).rejects.toThrow(/exit 1\b[\s\S]*sftp connections only/);
      const c = await ssh2Connect(server);
      try {
        const sftp = await sftpOf(c);
        const path = join(server.root, 'only-sftp.txt');
        await new Promise<void>((resolve, reject) => sftp.writeFile(path, 'x', (err) => (err ? reject(err) : resolve())));
        expect(existsSync(path)).toBe(true);
      } finally {
        c.end();
      }
    } finally {
      await server.stop();
    }
  });
});

describe('startSshd options and stop()', () => {
  it('honours ciphers, an rsa client key and a quiet log level', async () => {
    const server = await startSshd({ ciphers: ['aes128-ctr'], keyType: 'rsa', logLevel: 'ERROR' });
    try {
      expect(server.publicKey).toMatch(/^ssh-rsa /);
      const { stdout } = await ssh(server, ['-o', 'Ciphers=aes128-ctr'], 'echo ok');
      expect(stdout).toBe('ok\n');
      await expect(ssh(server, ['-o', 'Ciphers=aes256-gcm@openssh.com'], 'echo ok')).rejects.toThrow(/no matching cipher/);
    } finally {
      await server.stop();
    }
  });

  it('stop() kills the listener and its connections and removes the temp folder', async () => {
    const server = await startSshd();
    const c = await ssh2Connect(server);
    c.on('error', () => {});
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    const conns = server.listConnections();
    expect(conns).toHaveLength(1);
    expect(existsSync(server.dir)).toBe(true);
    await server.stop();
    await closed;
    expect(isAlive(server.pid)).toBe(false);
    expect(conns.some((pid) => isAlive(pid))).toBe(false);
    expect(existsSync(server.dir)).toBe(false);
    expect(await portAccepts(server.port)).toBe(false);
    await server.stop(); // idempotent
  });
});
