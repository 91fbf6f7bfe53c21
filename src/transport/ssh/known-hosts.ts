/**
 * known_hosts parsing and host-key checking, as OpenSSH does it.
 *
 * Why not trust on first use: a backup that silently sends a night's data
 * to whatever answers on the address is a leak waiting to happen. The
 * remote key is compared with the known_hosts file before any data is sent;
 * an unknown or changed key is refused (EHOSTKEY), unless the caller asks
 * for `accept-new` (OpenSSH's `StrictHostKeyChecking=accept-new`: a host
 * with no entry at all is recorded, a changed key is still refused).
 *
 * Supported: plain and hashed (`|1|salt|hash`) host fields, comma lists,
 * `*`/`?` wildcards, `!` negation, `[host]:port` for non-22 ports,
 * `@revoked` markers. `@cert-authority` lines are ignored (certificates are
 * not supported).
 *
 * @module
 */
import { createHmac, createHash } from 'node:crypto';

/** One parsed known_hosts line. */
export interface KnownHostEntry {
  /** `revoked` for `@revoked` lines, `cert-authority` for `@cert-authority`, else undefined. */
  readonly marker: 'revoked' | 'cert-authority' | undefined;
  /** The host field as written (patterns or a hashed `|1|salt|hash`). */
  readonly hosts: string;
  /** The key type named on the line (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`...). */
  readonly keyType: string;
  /** The public key blob, base64 as written. */
  readonly keyBase64: string;
  /** 1-based line number, for messages. */
  readonly line: number;
}

/** Outcome of {@link checkHostKey}. */
export type HostKeyStatus =
  /** The key is listed for this host. */
  | 'ok'
  /** The key is listed under `@revoked`. */
  | 'revoked'
  /** The host is listed with a different key of the same type. */
  | 'changed'
  /** The host has no entry for this key type. */
  | 'unknown';

/** Result of {@link checkHostKey}. */
export interface HostKeyCheck {
  /** What was found. */
  readonly status: HostKeyStatus;
  /** The key type of the presented key. */
  readonly keyType: string;
  /** SHA256 fingerprint of the presented key, as `ssh-keygen -l` prints it. */
  readonly fingerprint: string;
  /** Line numbers of entries naming this host (any key type). */
  readonly hostLines: readonly number[];
}

/**
 * Parses the text of a known_hosts file; malformed lines are skipped (as
 * OpenSSH does).
 *
 * @param text - the file's content
 */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.trim();
    if (raw === '' || raw.startsWith('#')) continue;
    const fields = raw.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (fields[0]!.startsWith('@')) {
      const m = fields.shift()!;
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else continue;
    }
    const [hosts, keyType, keyBase64] = fields;
    if (hosts === undefined || keyType === undefined || keyBase64 === undefined) continue;
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(keyBase64)) continue;
    out.push({ marker, hosts, keyType, keyBase64, line: i + 1 });
  }
  return out;
}

/**
 * The name a host is looked up under: `host` for port 22, else `[host]:port`,
 * lower-cased, as OpenSSH writes it.
 *
 * @param host - host name or address
 * @param port - TCP port
 */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === 22 ? h : `[${h}]:${port}`;
}

function globToRegExp(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`, 'i');
}

/**
 * Whether a known_hosts host field matches `name` (see {@link knownHostsName}).
 *
 * @param hosts - the host field: `|1|salt|hash` or a comma list of patterns
 * @param name - the looked-up name
 */
export function hostFieldMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith('|1|')) {
    const [, , salt, hash] = hosts.split('|');
    if (salt === undefined || hash === undefined) return false;
    const mac = createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64');
    return mac === hash;
  }
  let positive = false;
  for (const p of hosts.split(',')) {
    if (p === '') continue;
    const negated = p.startsWith('!');
    const pat = negated ? p.slice(1) : p;
    if (globToRegExp(pat).test(name)) {
      if (negated) return false;
      positive = true;
    }
  }
  return positive;
}

/**
 * The key type named inside an SSH public key blob (its first string).
 *
 * @param blob - the wire-format public key
 */
export function keyTypeOfBlob(blob: Buffer): string {
  if (blob.length < 4) return '';
  const n = blob.readUInt32BE(0);
  if (n > blob.length - 4 || n > 64) return '';
  return blob.subarray(4, 4 + n).toString('latin1');
}

/**
 * SHA256 fingerprint of a public key blob, as `ssh-keygen -l` prints it.
 *
 * @param blob - the wire-format public key
 */
export function fingerprintOf(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/**
 * Checks a presented host key against parsed known_hosts entries.
 *
 * @param entries - from {@link parseKnownHosts}
 * @param host - the host connected to
 * @param port - its port
 * @param blob - the presented public key (wire format)
 */
export function checkHostKey(entries: readonly KnownHostEntry[], host: string, port: number, blob: Buffer): HostKeyCheck {
  const name = knownHostsName(host, port);
  const keyType = keyTypeOfBlob(blob);
  const b64 = blob.toString('base64');
  const fingerprint = fingerprintOf(blob);
  const hostLines: number[] = [];
  let ok = false;
  let changed = false;
  for (const e of entries) {
    if (e.marker === 'revoked') {
      if (e.keyBase64 === b64 && (e.hosts === '*' || hostFieldMatches(e.hosts, name))) return { status: 'revoked', keyType, fingerprint, hostLines: [e.line] };
      continue;
    }
    if (e.marker === 'cert-authority') continue;
    if (!hostFieldMatches(e.hosts, name)) continue;
    hostLines.push(e.line);
    if (e.keyBase64 === b64) ok = true;
    else if (e.keyType === keyType) changed = true;
  }
  if (ok) return { status: 'ok', keyType, fingerprint, hostLines };
  return { status: changed ? 'changed' : 'unknown', keyType, fingerprint, hostLines };
}

const ALGORITHMS_OF_KEY_TYPE: Record<string, readonly string[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
};

/** Host-key algorithms offered, strongest first (ssh2's default set). */
export const DEFAULT_HOST_KEY_ALGORITHMS: readonly string[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
];

/**
 * Host-key algorithms to offer: those whose key type known_hosts lists for
 * the host first (so the server presents a key we can check, as OpenSSH
 * does), then the rest.
 *
 * @param entries - from {@link parseKnownHosts}
 * @param host - the host
 * @param port - its port
 * @param supported - algorithms the client supports
 */
export function preferredHostKeyAlgorithms(entries: readonly KnownHostEntry[], host: string, port: number, supported: readonly string[] = DEFAULT_HOST_KEY_ALGORITHMS): string[] {
  const name = knownHostsName(host, port);
  const known = new Set<string>();
  for (const e of entries) {
    if (e.marker !== undefined || !hostFieldMatches(e.hosts, name)) continue;
    for (const a of ALGORITHMS_OF_KEY_TYPE[e.keyType] ?? []) known.add(a);
  }
  const first = supported.filter((a) => known.has(a));
  return [...first, ...supported.filter((a) => !known.has(a))];
}

/**
 * A known_hosts line for a host and key, as `accept-new` appends it.
 *
 * @param host - the host
 * @param port - its port
 * @param blob - the public key (wire format)
 */
export function formatKnownHostsLine(host: string, port: number, blob: Buffer): string {
  return `${knownHostsName(host, port)} ${keyTypeOfBlob(blob)} ${blob.toString('base64')}\n`;
}
