/**
 * A real OpenSSH server for integration tests: private config, generated
 * host and client keys, loopback port, temp folder as the remote tree.
 *
 * The server is `/usr/sbin/sshd -D -e -f <config>` started in its own
 * process group. Each SSH connection is served by a child that calls
 * `setsid()`, so connections are found (and cut) through `/proc` parent
 * links; see {@link SshdServer.killConnections}.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { onPort } from './ports.js';
import {
  childrenOf,
  currentUser,
  descendants,
  isRoot,
  requireBinary,
  run,
  signalRefs,
  spawnServer,
  waitFor,
  type ServerProcess,
  checkOptions,
} from './proc.js';
import { makeTempDir, type TempDir } from './tmp.js';

/** Options of {@link startSshd}. */
export interface SshdOptions {
  /**
   * Allow `exec` requests (default true). When false the server runs
   * `ForceCommand internal-sftp`, the usual "SFTP-only account" setup: SFTP
   * works, but an `exec` channel does not run the command: OpenSSH 9 answers
   * with "This service allows sftp connections only." on stderr and exit
   * status 1 (older versions ran the SFTP server, which printed nothing and
   * ended when stdin closed).
   */
  readonly allowExec?: boolean;
  /** `Ciphers` list, e.g. `['aes128-gcm@openssh.com']` (default: OpenSSH's). */
  readonly ciphers?: readonly string[];
  /** Client key type (default ed25519, in OpenSSH format, which ssh2 reads). */
  readonly keyType?: 'ed25519' | 'rsa';
  /** sshd `LogLevel` (default INFO; VERBOSE or DEBUG3 when debugging). */
  readonly logLevel?: 'QUIET' | 'FATAL' | 'ERROR' | 'INFO' | 'VERBOSE' | 'DEBUG' | 'DEBUG1' | 'DEBUG2' | 'DEBUG3';
  /**
   * The program of the `Subsystem sftp` line (default `internal-sftp`), e.g.
   * a script that stands for a broken or hung SFTP server. sshd runs it
   * through the user's shell.
   */
  readonly sftpSubsystem?: string;
  /** Extra sshd_config lines, appended verbatim. */
  readonly extraConfig?: readonly string[];
  /**
   * Listen on this port instead of a free one (e.g. to restart a server
   * where clients expect it). A taken port is then an error, not retried.
   */
  readonly port?: number;
  /** How long to wait for the server to accept connections (default 15 s). */
  readonly startTimeoutMs?: number;
}

/** A running sshd started by {@link startSshd}. */
export interface SshdServer {
  /** Always 127.0.0.1. */
  readonly host: '127.0.0.1';
  /** The loopback port it listens on. */
  readonly port: number;
  /** Login name (the user running the tests). */
  readonly username: string;
  /** The client's private key (OpenSSH format). */
  readonly privateKey: Buffer;
  /** Path of the client's private key (mode 0600). */
  readonly privateKeyPath: string;
  /** The client's public key, `ssh-ed25519 AAAA... comment`. */
  readonly publicKey: string;
  /** The server's public host key, `ssh-ed25519 AAAA...`. */
  readonly hostKeyPublic: string;
  /** The host key's fingerprint as OpenSSH prints it: `SHA256:...` (unpadded base64). */
  readonly hostKeyFingerprint: string;
  /** A known_hosts file holding `[127.0.0.1]:PORT <host key>`. */
  readonly knownHostsPath: string;
  /** A known_hosts file holding the same host with a different key (for EHOSTKEY tests). */
  readonly wrongKnownHostsPath: string;
  /** An empty folder the tests use as the remote tree (absolute path, same machine). */
  readonly root: string;
  /** The harness's own folder (config, keys, log); removed by `stop()`. */
  readonly dir: string;
  /** sshd's log (its stderr). */
  readonly logPath: string;
  /** Pid of the listening sshd. */
  readonly pid: number;
  /** Milliseconds `startSshd` took. */
  readonly startMs: number;
  /**
   * Options for the OpenSSH client tools (`ssh`, `scp`, `sftp`, `rsync -e`):
   * `-F /dev/null -i KEY -o Port=PORT -o UserKnownHostsFile=... -o BatchMode=yes
   * -o StrictHostKeyChecking=yes ...`. Add `${username}@127.0.0.1`.
   */
  readonly clientArgs: readonly string[];
  /** `{ host, port, username, privateKey }` for `new ssh2.Client().connect()`. */
  readonly connectConfig: { host: string; port: number; username: string; privateKey: Buffer };
  /** Pids of the per-connection sshd children (one per live SSH connection). */
  listConnections(): number[];
  /**
   * SIGKILLs every process under the listener (connection children, their
   * sessions and commands), which cuts live transfers mid-way. Returns how
   * many connections were cut.
   */
  killConnections(): number;
  /** The last lines of the sshd log. */
  logTail(lines?: number): string;
  /** Stops the server and all connections, removes the temp folder. */
  stop(): Promise<void>;
  /** Same as `stop()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

function fingerprint(publicKeyLine: string): string {
  const blob = Buffer.from(publicKeyLine.trim().split(/\s+/)[1] ?? '', 'base64');
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/** sshd refuses a locked account (password field starting with "!") unless PAM decides. */
function accountLocked(user: string): boolean {
  try {
    const shadow = readFileSync('/etc/shadow', 'utf8');
    const line = shadow.split('\n').find((l) => l.startsWith(`${user}:`));
    return line?.split(':')[1]?.startsWith('!') ?? false;
  } catch {
    return false;
  }
}

async function bannerOk(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: '127.0.0.1', port });
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('no SSH banner within 2 s'));
    }, 2_000);
    sock.setEncoding('latin1');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.includes('\n')) {
        clearTimeout(timer);
        sock.destroy();
        if (buf.startsWith('SSH-2.0-')) resolve(true);
        else reject(new Error(`unexpected banner ${JSON.stringify(buf.slice(0, 80))}`));
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      if (!buf.includes('\n')) reject(new Error('connection closed before the SSH banner'));
    });
  });
}

/**
 * Starts sshd on a free loopback port with fresh keys. Throws (naming the
 * Debian package) when sshd or ssh-keygen is missing.
 *
 * @param opts - see {@link SshdOptions}
 */
export async function startSshd(opts: SshdOptions = {}): Promise<SshdServer> {
  const t0 = performance.now();
  checkOptions('startSshd', opts, ['allowExec', 'ciphers', 'keyType', 'logLevel', 'sftpSubsystem', 'extraConfig', 'port', 'startTimeoutMs']);
  const sshd = requireBinary({ name: 'sshd', paths: ['/usr/sbin/sshd'], commands: ['sshd'], debianPackage: 'openssh-server' });
  const keygen = requireBinary({ name: 'ssh-keygen', paths: ['/usr/bin/ssh-keygen'], commands: ['ssh-keygen'], debianPackage: 'openssh-client' });
  if (isRoot()) {
    // sshd running as root needs its privilege separation folder.
    mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  }

  const tmp = makeTempDir('sshd');
  try {
    const etc = join(tmp.path, 'etc');
    const root = join(tmp.path, 'root');
    mkdirSync(etc, { mode: 0o700 });
    mkdirSync(root);
    const hostKeyPath = join(etc, 'ssh_host_ed25519_key');
    const wrongHostKeyPath = join(etc, 'other_host_ed25519_key');
    const privateKeyPath = join(etc, opts.keyType === 'rsa' ? 'id_rsa' : 'id_ed25519');
    const keyArgs = (file: string, type: 'ed25519' | 'rsa', comment: string): string[] => [
      '-q', '-t', type, ...(type === 'rsa' ? ['-b', '3072'] : []), '-N', '', '-C', comment, '-f', file,
    ];
    await Promise.all([
      run(keygen, keyArgs(hostKeyPath, 'ed25519', 'stowage-test-host')),
      run(keygen, keyArgs(wrongHostKeyPath, 'ed25519', 'stowage-test-other-host')),
      run(keygen, keyArgs(privateKeyPath, opts.keyType ?? 'ed25519', 'stowage-test-client')),
    ]);
    const publicKey = readFileSync(`${privateKeyPath}.pub`, 'utf8').trim();
    const hostKeyLine = readFileSync(`${hostKeyPath}.pub`, 'utf8').trim().split(/\s+/);
    const hostKeyPublic = `${hostKeyLine[0]} ${hostKeyLine[1]}`;
    const wrongLine = readFileSync(`${wrongHostKeyPath}.pub`, 'utf8').trim().split(/\s+/);
    const authorizedKeysPath = join(etc, 'authorized_keys');
    writeFileSync(authorizedKeysPath, `${publicKey}\n`, { mode: 0o600 });
    const username = currentUser();
    const logPath = join(tmp.path, 'sshd.log');
    const configPath = join(etc, 'sshd_config');
    const knownHostsPath = join(etc, 'known_hosts');
    const wrongKnownHostsPath = join(etc, 'known_hosts.wrong');

    // Below INFO, sshd does not log "Server listening on ...": the banner alone must do.
    const quietLog = ['QUIET', 'FATAL', 'ERROR'].includes(opts.logLevel ?? 'INFO');
    const { port, proc } = await onPort(opts.port, async (port) => {
      const config = [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        'AddressFamily inet',
        `HostKey ${hostKeyPath}`,
        `PidFile ${join(tmp.path, 'sshd.pid')}`,
        `AuthorizedKeysFile ${authorizedKeysPath}`,
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PermitRootLogin prohibit-password',
        `AllowUsers ${username}`,
        'StrictModes no',
        `UsePAM ${accountLocked(username) ? 'yes' : 'no'}`,
        'UseDNS no',
        'PrintMotd no',
        'PrintLastLog no',
        'X11Forwarding no',
        `LogLevel ${opts.logLevel ?? 'INFO'}`,
        // Parallel channels and connections from one test must not be throttled.
        'MaxStartups 200:30:400',
        'MaxSessions 200',
        'MaxAuthTries 10',
        'LoginGraceTime 30',
        'ClientAliveInterval 15',
        'ClientAliveCountMax 4',
        `Subsystem sftp ${opts.sftpSubsystem ?? 'internal-sftp'}`,
        ...(opts.ciphers !== undefined ? [`Ciphers ${opts.ciphers.join(',')}`] : []),
        ...(opts.extraConfig ?? []),
        // Match-like keywords last: ForceCommand applies to everything after it.
        ...(opts.allowExec === false ? ['ForceCommand internal-sftp'] : []),
        '',
      ].join('\n');
      writeFileSync(configPath, config, { mode: 0o600 });
      writeFileSync(knownHostsPath, `[127.0.0.1]:${port} ${hostKeyPublic}\n`);
      writeFileSync(wrongKnownHostsPath, `[127.0.0.1]:${port} ${wrongLine[0]} ${wrongLine[1]}\n`);
      writeFileSync(logPath, ''); // a fresh log per attempt, so a retry is judged on its own output
      const proc = spawnServer({
        name: 'sshd',
        command: sshd,
        args: ['-D', '-e', '-f', configPath],
        logPath,
        cwd: tmp.path,
        // The listener has nothing to flush; connections are killed first anyway.
        stopSignal: 'SIGKILL',
      });
      try {
        await waitFor(
          async () => (quietLog || proc.logTail(200).includes(`Server listening on 127.0.0.1 port ${port}.`)) && (await bannerOk(port)),
          { timeoutMs: opts.startTimeoutMs ?? 15_000, what: `sshd on 127.0.0.1:${port}`, server: proc },
        );
      } catch (err) {
        await proc.stop(2_000).catch(() => {});
        throw err;
      }
      return { port, proc };
    });

    // Let the per-connection child of the readiness probe go away, so tests
    // start with listConnections() empty.
    await waitFor(async () => childrenOf(proc.pid).length === 0, {
      timeoutMs: 5_000,
      what: 'the readiness probe connection to close',
      server: proc,
    }).catch(() => {});

    const privateKey = readFileSync(privateKeyPath);
    const startMs = performance.now() - t0;
    return makeServer({
      tmp,
      proc,
      port,
      username,
      privateKey,
      privateKeyPath,
      publicKey,
      hostKeyPublic,
      knownHostsPath,
      wrongKnownHostsPath,
      root,
      logPath,
      startMs,
    });
  } catch (err) {
    await tmp.remove();
    throw err;
  }
}

interface Parts {
  tmp: TempDir;
  proc: ServerProcess;
  port: number;
  username: string;
  privateKey: Buffer;
  privateKeyPath: string;
  publicKey: string;
  hostKeyPublic: string;
  knownHostsPath: string;
  wrongKnownHostsPath: string;
  root: string;
  logPath: string;
  startMs: number;
}

function makeServer(p: Parts): SshdServer {
  const { proc, tmp } = p;
  const killConnections = (): number => {
    const conns = childrenOf(proc.pid).length;
    // Repeat: a connection being accepted right now may fork after the scan.
    for (let i = 0; i < 5; i += 1) {
      const refs = descendants(proc.pid);
      if (refs.length === 0) break;
      signalRefs(refs, 'SIGKILL');
    }
    return conns;
  };
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      try {
        if (proc.exitStatus === undefined) {
          // Stop accepting, then cut the connections, then end the listener.
          try {
            process.kill(proc.pid, 'SIGSTOP');
          } catch {
            // Already gone.
          }
          killConnections();
        }
        await proc.stop(5_000);
      } finally {
        await tmp.remove();
      }
    })();
    return stopping;
  };
  return {
    host: '127.0.0.1',
    port: p.port,
    username: p.username,
    privateKey: p.privateKey,
    privateKeyPath: p.privateKeyPath,
    publicKey: p.publicKey,
    hostKeyPublic: p.hostKeyPublic,
    hostKeyFingerprint: fingerprint(p.hostKeyPublic),
    knownHostsPath: p.knownHostsPath,
    wrongKnownHostsPath: p.wrongKnownHostsPath,
    root: p.root,
    dir: tmp.path,
    logPath: p.logPath,
    pid: proc.pid,
    startMs: p.startMs,
    clientArgs: [
      '-F', '/dev/null',
      '-i', p.privateKeyPath,
      '-o', `Port=${p.port}`,
      '-o', 'IdentitiesOnly=yes',
      '-o', 'IdentityAgent=none',
      '-o', 'BatchMode=yes',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', `UserKnownHostsFile=${p.knownHostsPath}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'ConnectTimeout=10',
    ],
    connectConfig: { host: '127.0.0.1', port: p.port, username: p.username, privateKey: p.privateKey },
    listConnections: () => childrenOf(proc.pid).map((r) => r.pid),
    killConnections,
    logTail: (lines?: number) => proc.logTail(lines),
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
