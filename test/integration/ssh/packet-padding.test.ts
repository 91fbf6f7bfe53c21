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
import { isPooledAllocPacket, pooledAllocPacket, usePooledPadding } from '../../../src/transport/ssh/packet-padding.js';
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

/** Connects with `cipher`, runs `fn`, and disconnects. */
async function withClient(cipher: string, fn: (c: Client) => Promise<void>): Promise<void> {
  const c = await connect(cipher);
  try {
    await fn(c);
  } finally {
    c.end();
  }
}

/** Writes `bytes` random bytes to `name` over SFTP and expects the far side to hold exactly them. */
async function expectRoundTrip(c: Client, name: string, bytes: number): Promise<void> {
  const data = randomBytes(bytes);
  const sftp = await new Promise<SFTPWrapper>((resolve, reject) => c.sftp((err, s) => (err ? reject(err) : resolve(s))));
  await new Promise<void>((resolve, reject) => sftp.writeFile(`${server.root}/${name}`, data, (err) => (err ? reject(err) : resolve())));
  sftp.end();
  const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
  expect(md5(await readFile(`${server.root}/${name}`))).toBe(md5(data));
}

describe('usePooledPadding', () => {
  it('lays AES-GCM packets out as ssh2 does, with random padding never repeated, and sshd takes them', async () => {
    await withClient('aes128-gcm@openssh.com', async (c) => {
      const original = Object.getPrototypeOf(cipherOf(c)) as { allocPacket: (n: number) => Buffer };
      expect(usePooledPadding(c)).toBe(true);
      expect(isPooledAllocPacket(cipherOf(c).allocPacket)).toBe(true);
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
      await expectRoundTrip(c, 'gcm.bin', 24 << 20);
    });
  });

  it('reuses the buffers of large packets, each only after the socket wrote it', async () => {
    await withClient('aes128-gcm@openssh.com', async (c) => {
      expect(usePooledPadding(c)).toBe(true);
      // Watch what reaches the socket, outside the pool's own hook.
      const sock = (c as unknown as { _sock: { write: (...a: unknown[]) => boolean } })._sock;
      const pooledWrite = sock.write;
      const seen = new Set<ArrayBufferLike>();
      let large = 0;
      sock.write = function (this: unknown, ...args: unknown[]) {
        const chunk = args[0];
        if (Buffer.isBuffer(chunk) && chunk.length >= 8 * 1024) {
          large += 1;
          seen.add(chunk.buffer);
        }
        return pooledWrite.apply(this, args);
      };
      // As SshTransport does: what ssh2 sends in one turn leaves in one
      // writev, so packets wait in the socket while later ones are made.
      // sshd checks every packet's tag: a buffer reused while the socket
      // still held it would reach it with another packet's bytes in it.
      const net = sock as unknown as { cork(): void; uncork(): void; prependListener(e: 'data', f: () => void): void };
      let corked = false;
      const corkTurn = (): void => {
        if (corked) return;
        corked = true;
        net.cork();
        setImmediate(() => {
          corked = false;
          net.uncork();
        });
      };
      net.prependListener('data', corkTurn);
      const data = randomBytes(24 << 20);
      const sftp = await new Promise<SFTPWrapper>((resolve, reject) => c.sftp((err, s) => (err ? reject(err) : resolve(s))));
      const path = `${server.root}/pooled.bin`;
      const handle = await new Promise<Buffer>((resolve, reject) => sftp.open(path, 'w', (err, h) => (err ? reject(err) : resolve(h))));
      corkTurn();
      await Promise.all(
        Array.from({ length: data.length / 131_072 }, (_, i) => new Promise<void>((resolve, reject) => sftp.write(handle, data, i * 131_072, 131_072, i * 131_072, (err) => (err ? reject(err) : resolve())))),
      );
      await new Promise<void>((resolve, reject) => sftp.close(handle, (err) => (err ? reject(err) : resolve())));
      sftp.end();
      const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
      expect(md5(await readFile(path))).toBe(md5(data));
      expect(large).toBeGreaterThan(700);
      expect(seen.size).toBeLessThan(large / 2);
    });
  });

  it('gives the cipher a rekey installs the same padding', async () => {
    await withClient('aes256-gcm@openssh.com', async (c) => {
      expect(usePooledPadding(c)).toBe(true);
      const before = cipherOf(c);
      // ssh2's Client has no rekey(); its protocol object does.
      (c as unknown as { _protocol: { rekey(): void } })._protocol.rekey();
      const until = Date.now() + 10_000;
      while (cipherOf(c) === before && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(cipherOf(c)).not.toBe(before);
      expect(isPooledAllocPacket(cipherOf(c).allocPacket)).toBe(true);
      await expectRoundTrip(c, 'rekeyed.bin', 3 << 20);
    });
  });

  it('leaves other ciphers as they are', async () => {
    await withClient('chacha20-poly1305@openssh.com', async (c) => {
      const own = cipherOf(c).allocPacket;
      expect(usePooledPadding(c)).toBe(false);
      expect(cipherOf(c).allocPacket).toBe(own);
      await expectRoundTrip(c, 'chacha.bin', 1 << 20);
    });
  });
});
