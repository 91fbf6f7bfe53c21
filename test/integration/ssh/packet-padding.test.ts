/**
 * Pooled padding of ssh2's AES-GCM packets (packet-padding.ts) against a
 * real OpenSSH sshd, which checks every packet it receives: the layout is
 * ssh2's own, the padding is random and never repeats, a rekey's new
 * cipher gets it too, and other ciphers are left alone.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Client, type SFTPWrapper } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pooledAllocPacket, usePooledPadding } from '../../../src/transport/ssh/packet-padding.js';
import { startSshd, type SshdServer } from '../../support/index.js';

let server: SshdServer;

beforeAll(async () => {
  server = await startSshd();
});
afterAll(async () => {
  await server?.stop();
});

function connect(cipher: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    c.once('ready', () => resolve(c));
    c.once('error', reject);
    c.connect({ ...server.connectConfig, algorithms: { cipher: [cipher as never] } });
  });
}

const cipherOf = (c: Client): { allocPacket: (n: number) => Buffer } => (c as unknown as { _protocol: { _cipher: { allocPacket: (n: number) => Buffer } } })._protocol._cipher;

/** Writes `data` to `name` over SFTP and returns the md5 of what the far side holds. */
async function roundTrip(c: Client, name: string, data: Buffer): Promise<string> {
  const sftp = await new Promise<SFTPWrapper>((resolve, reject) => c.sftp((err, s) => (err ? reject(err) : resolve(s))));
  await new Promise<void>((resolve, reject) => sftp.writeFile(`${server.root}/${name}`, data, (err) => (err ? reject(err) : resolve())));
  sftp.end();
  return createHash('md5').update(await readFile(`${server.root}/${name}`)).digest('hex');
}

describe('usePooledPadding', () => {
  it('lays AES-GCM packets out as ssh2 does, with random padding never repeated, and sshd takes them', async () => {
    const c = await connect('aes128-gcm@openssh.com');
    try {
      const original = Object.getPrototypeOf(cipherOf(c)) as { allocPacket: (n: number) => Buffer };
      expect(usePooledPadding(c)).toBe(true);
      expect(cipherOf(c).allocPacket).toBe(pooledAllocPacket);
      const pads = new Set<string>();
      for (const n of [0, 1, 2, 10, 11, 12, 13, 27, 28, 100, 32768, 32777]) {
        const ours = pooledAllocPacket(n);
        const theirs = original.allocPacket.call(cipherOf(c), n);
        expect(ours.length, `payload ${n}`).toBe(theirs.length);
        expect(ours.subarray(0, 5).equals(theirs.subarray(0, 5)), `payload ${n}`).toBe(true);
        const padLen = ours[4]!;
        expect(padLen).toBeGreaterThanOrEqual(4);
        expect((ours.length - 16 - 4) % 16).toBe(0);
        pads.add(ours.subarray(5 + n, 5 + n + padLen).toString('hex'));
      }
      expect(pads.size).toBe(12);
      // Enough packets to refill the pool several times, checked by sshd (a bad packet drops the connection).
      const data = randomBytes(24 << 20);
      expect(await roundTrip(c, 'gcm.bin', data)).toBe(createHash('md5').update(data).digest('hex'));
    } finally {
      c.end();
    }
  });

  it('gives the cipher a rekey installs the same padding', async () => {
    const c = await connect('aes256-gcm@openssh.com');
    try {
      expect(usePooledPadding(c)).toBe(true);
      const before = cipherOf(c);
      // ssh2's Client has no rekey(); its protocol object does.
      (c as unknown as { _protocol: { rekey(): void } })._protocol.rekey();
      const until = Date.now() + 10_000;
      while (cipherOf(c) === before && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(cipherOf(c)).not.toBe(before);
      expect(cipherOf(c).allocPacket).toBe(pooledAllocPacket);
      const data = randomBytes(3 << 20);
      expect(await roundTrip(c, 'rekeyed.bin', data)).toBe(createHash('md5').update(data).digest('hex'));
    } finally {
      c.end();
    }
  });

  it('leaves other ciphers as they are', async () => {
    const c = await connect('chacha20-poly1305@openssh.com');
    try {
      const own = cipherOf(c).allocPacket;
      expect(usePooledPadding(c)).toBe(false);
      expect(cipherOf(c).allocPacket).toBe(own);
      const data = randomBytes(1 << 20);
      expect(await roundTrip(c, 'chacha.bin', data)).toBe(createHash('md5').update(data).digest('hex'));
    } finally {
      c.end();
    }
  });
});
