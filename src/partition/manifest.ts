/**
 * The manifest of a partition archive: the first entry, `manifest.json`,
 * saying what the archive holds so that a restore can check every table's
 * rows against it (bytes and SHA-256, or count, bytes and range digest in
 * archives written before the SHA-256 was recorded) before committing them.
 *
 * Layout of a partition archive (all entries regular files):
 *
 * ```
 * manifest.json            this manifest
 * <DIR>/schema.sql         per table, in manifest order: the engine's DDL (TableReader.schema)
 * <DIR>/rows.tsv           per table: the rows of the range as bulk text (see db/bulk-text.ts)
 * ```
 *
 * where `<DIR>` is the table's encoded name (see `layout.ts`). Keys and
 * bounds are written as decimal strings, since they may pass 2^53. Readers
 * refuse a manifest of another format or a newer version. A table's
 * `sha256` was added within version 1 (readers that predate it ignore it;
 * archives that predate it lack it): `sha256sum` of the extracted
 * `rows.tsv` prints it. So were its column `types`.
 *
 * @module
 */
import { StowageError } from '../errors.js';
import type { TableEngine } from '../db/table-source.js';

/** The `format` field of every partition manifest. */
export const MANIFEST_FORMAT = 'stowage-partition';
/** The manifest version this code writes and reads. */
export const MANIFEST_VERSION = 1;
/** The manifest's entry name inside the archive. */
export const MANIFEST_ENTRY = 'manifest.json';
/** The algorithm of a table's {@link ManifestTable.sha256}: the dump computes it, the restore checks the rows by it. */
export const ROWS_HASH_ALGORITHM = 'sha256';

/** One table of a partition, as its manifest records it. */
export interface ManifestTable {
  /** The table's name. */
  readonly name: string;
  /** Entry holding its DDL. */
  readonly schema: string;
  /** Entry holding its rows (bulk text). */
  readonly rows: string;
  /** The stored columns, in bulk text field order. */
  readonly columns: readonly string[];
  /**
   * Their types as the source names them (`ColumnInfo.type`: PostgreSQL's
   * `format_type`, MySQL's `COLUMN_TYPE`, SQLite's declared type), in the
   * same order. Added within version 1: archives written before lack it. A
   * restore into a table that exists compares them with its columns', since
   * the target would convert a value into a narrower type as it stores it.
   */
  readonly types?: readonly string[];
  /** 0-based field of the key column. */
  readonly keyIndex: number;
  /** Rows in the range. */
  readonly count: number;
  /** Bytes of bulk text. */
  readonly bytes: number;
  /** The range digest (`range-digest.ts`) of the rows. */
  readonly digest: string;
  /**
   * Lower-case hex SHA-256 of the rows entry: the bulk text exactly as the
   * database gave it, computed as it was read (before the spool, tar and
   * gzip). A restore checks the rows against it: on a CPU with SHA
   * extensions (AMD Zen, Intel since Ice Lake) SHA-256 runs at more than
   * twice the speed of md5 (1.8 against 0.77 GB/s here), and the rows need
   * not be split to compute their range digest. Without them (OpenSSL told
   * to ignore them here: 0.55 GB/s) the check costs ~40 ms more per million
   * rows than the range digest's would. Absent from archives written before
   * it was recorded, whose rows are checked against `digest`.
   */
  readonly sha256?: string;
}

/** What a partition archive holds. */
export interface PartitionManifest {
  /** Always {@link MANIFEST_FORMAT}. */
  readonly format: typeof MANIFEST_FORMAT;
  /** {@link MANIFEST_VERSION}. */
  readonly version: number;
  /** The engine the rows and DDL come from. */
  readonly engine: TableEngine;
  /** The source's name (`TableSource.name`). */
  readonly source: string;
  /** The key column. */
  readonly key: string;
  /** Smallest key of the range. */
  readonly lo: bigint;
  /** Largest key of the range. */
  readonly hi: bigint;
  /** Keys per partition of the grid it belongs to. */
  readonly rowsPerPartition: bigint;
  /** First key of partition 0 of that grid. */
  readonly base: bigint;
  /** Whether the range was complete (the table held keys above `hi`) when dumped; false for the partial tail. */
  readonly complete: boolean;
  /** When it was dumped. */
  readonly created: Date;
  /** The tables, in archive order. */
  readonly tables: readonly ManifestTable[];
}

/**
 * Serialises a manifest (bigints as decimal strings).
 *
 * @param m - the manifest
 */
export function formatManifest(m: PartitionManifest): Buffer {
  const json = {
    format: m.format,
    version: m.version,
    engine: m.engine,
    source: m.source,
    key: m.key,
    lo: m.lo.toString(),
    hi: m.hi.toString(),
    rowsPerPartition: m.rowsPerPartition.toString(),
    base: m.base.toString(),
    complete: m.complete,
    created: m.created.toISOString(),
    tables: m.tables.map((t) => ({ ...t, columns: [...t.columns], ...(t.types === undefined ? {} : { types: [...t.types] }) })),
  };
  return Buffer.from(JSON.stringify(json, null, 2) + '\n', 'utf8');
}

function corrupt(file: string, why: string): StowageError {
  return new StowageError('ECORRUPT_ARCHIVE', `Partition archive ${file} has a bad manifest: ${why}.`, { details: { path: file, reason: why } });
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
const isStr = (x: unknown): x is string => typeof x === 'string' && x.length > 0;
const isBig = (x: unknown): x is string => typeof x === 'string' && /^-?\d{1,20}$/.test(x);

/**
 * Parses and checks a manifest; ECORRUPT_ARCHIVE naming `file` for anything
 * that is not a well-formed manifest of this format and version.
 *
 * @param text - the bytes of `manifest.json`
 * @param file - the archive, for messages
 */
export function parseManifest(text: Buffer | string, file: string): PartitionManifest {
  let j: unknown;
  try {
    j = JSON.parse(text.toString());
  } catch (err) {
    throw corrupt(file, `not JSON (${(err as Error).message})`);
  }
  if (!isObj(j)) throw corrupt(file, 'not an object');
  if (j['format'] !== MANIFEST_FORMAT) throw corrupt(file, `format is ${JSON.stringify(j['format'])}, not "${MANIFEST_FORMAT}"`);
  if (j['version'] !== MANIFEST_VERSION) throw corrupt(file, `version ${String(j['version'])} is not ${MANIFEST_VERSION} (written by another stowage version?)`);
  const engine = j['engine'];
  if (engine !== 'mysql' && engine !== 'postgres' && engine !== 'sqlite') throw corrupt(file, `unknown engine ${JSON.stringify(engine)}`);
  for (const f of ['source', 'key', 'created'] as const) if (!isStr(j[f])) throw corrupt(file, `"${f}" is missing`);
  for (const f of ['lo', 'hi', 'rowsPerPartition', 'base'] as const) if (!isBig(j[f])) throw corrupt(file, `"${f}" is not an integer string`);
  if (typeof j['complete'] !== 'boolean') throw corrupt(file, '"complete" is not a boolean');
  const created = new Date(j['created'] as string);
  if (Number.isNaN(created.getTime())) throw corrupt(file, '"created" is not a date');
  const lo = BigInt(j['lo'] as string);
  const hi = BigInt(j['hi'] as string);
  if (lo > hi) throw corrupt(file, '"lo" is greater than "hi"');
  const rawTables = j['tables'];
  if (!Array.isArray(rawTables) || rawTables.length === 0) throw corrupt(file, '"tables" is empty');
  const names = new Set<string>();
  const tables = rawTables.map((t: unknown, i): ManifestTable => {
    if (!isObj(t)) throw corrupt(file, `table ${i} is not an object`);
    const { name, schema, rows, columns, types, keyIndex, count, bytes, digest, sha256 } = t;
    if (!isStr(name) || !isStr(schema) || !isStr(rows)) throw corrupt(file, `table ${i} lacks its name or entries`);
    if (names.has(name)) throw corrupt(file, `table ${JSON.stringify(name)} is listed twice`);
    names.add(name);
    if (!Array.isArray(columns) || columns.length === 0 || !columns.every(isStr)) throw corrupt(file, `table ${JSON.stringify(name)} has no column list`);
    if (!isInt(keyIndex) || keyIndex >= columns.length) throw corrupt(file, `table ${JSON.stringify(name)} has a bad keyIndex`);
    if (!isInt(count) || !isInt(bytes)) throw corrupt(file, `table ${JSON.stringify(name)} has a bad count or byte size`);
    if (typeof digest !== 'string' || !/^[0-9a-f]{32}$/.test(digest)) throw corrupt(file, `table ${JSON.stringify(name)} has a bad digest`);
    if (sha256 !== undefined && (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256))) throw corrupt(file, `table ${JSON.stringify(name)} has a bad sha256`);
    if (types !== undefined && (!Array.isArray(types) || types.length !== columns.length || !types.every((x) => typeof x === 'string'))) throw corrupt(file, `table ${JSON.stringify(name)} has a bad type list`);
    const base = { name, schema, rows, columns: Object.freeze([...(columns as string[])]), keyIndex, count, bytes, digest };
    return Object.freeze({ ...base, ...(types === undefined ? {} : { types: Object.freeze([...(types as string[])]) }), ...(sha256 === undefined ? {} : { sha256 }) });
  });
  return Object.freeze({
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    engine,
    source: j['source'] as string,
    key: j['key'] as string,
    lo,
    hi,
    rowsPerPartition: BigInt(j['rowsPerPartition'] as string),
    base: BigInt(j['base'] as string),
    complete: j['complete'],
    created,
    tables: Object.freeze(tables),
  });
}
