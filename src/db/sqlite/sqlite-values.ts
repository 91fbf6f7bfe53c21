/**
 * The text of SQLite values in the bulk text format, exact to the storage
 * class.
 *
 * SQLite types values, not columns: any cell may hold NULL, INTEGER, REAL,
 * TEXT or BLOB, and a column's declared type only gives it an *affinity*
 * that converts some values on insert. A dump is exact when loading it
 * gives every cell back its storage class and value. The rule:
 *
 * - NULL → `\N`; INTEGER → decimal; REAL → the shortest text that parses
 *   back to the same double, with `.0` added when it would read as an
 *   integer (`3.0`, `-0.0`, `1e+21`, `Infinity`); TEXT → itself; BLOB →
 *   `\x` + lower-case hex (PostgreSQL's bytea text).
 * - On load, a field is read by its column's affinity. In a TEXT-affinity
 *   column every field is text (SQLite would turn a number into text there
 *   anyway). In any other column a field that is exactly the canonical text
 *   of an int64 is an INTEGER, exactly the canonical text of a REAL is a
 *   REAL, and anything else is TEXT.
 * - Two prefixes remove the remaining ambiguity: `\x` marks a BLOB, and
 *   `\s` marks "TEXT, verbatim". The writer adds `\s` only where the reader
 *   would misread the text: text starting with a backslash, or text in a
 *   non-TEXT column that reads as a number (`'123'` stored as TEXT in an
 *   untyped column). The writer asks the reader's own predicate, so the
 *   two cannot disagree.
 *
 * Because a stored value is a fixed point of its column's affinity, binding
 * the same storage class and value again stores the same cell.
 *
 * @module
 */
import { isUtf8 } from 'node:buffer';
import { StowageError } from '../../errors.js';
import { BULK_NULL, escapeBulkText, malformedBulkText } from '../bulk-text.js';
import { INT64_MAX, INT64_MIN } from '../table-source.js';

/** A value as better-sqlite3 returns it with `safeIntegers(true)`. */
export type SqliteValue = null | bigint | number | string | Buffer;

/**
 * Whether a column declared with `type` has TEXT affinity, by SQLite's
 * rules (section 3.1 of "Datatypes In SQLite"): the type contains CHAR,
 * CLOB or TEXT and not INT. In a STRICT table `ANY` has no affinity.
 *
 * @param type - the declared type, as `pragma_table_info` reports it
 */
export function sqliteTextAffinity(type: string): boolean {
  const t = type.toUpperCase();
  if (t.includes('INT')) return false;
  return t.includes('CHAR') || t.includes('CLOB') || t.includes('TEXT');
}

/**
 * Whether SQLite converts a number bound to a column declared with `type`
 * to the column's own numeric class (INTEGER, REAL or NUMERIC affinity), so
 * that binding a safe integer as a JavaScript number stores the same cell
 * as binding it as a BigInt. False for TEXT, BLOB and untyped columns, and
 * for `ANY` (no conversion at all in a STRICT table).
 *
 * @param type - the declared type
 */
export function sqliteConvertsNumbers(type: string): boolean {
  const t = type.toUpperCase().trim();
  if (t.includes('INT')) return true;
  if (sqliteTextAffinity(t) || t.includes('BLOB') || t === '' || t === 'ANY') return false;
  return true;
}

const INT_TEXT = /^-?(?:0|[1-9][0-9]{0,18})$/;
const REAL_TEXT = /^-?(?:[0-9]+\.[0-9]+(?:e[+-][0-9]+)?|[0-9]e[+-][0-9]+|Infinity)$/;

/**
 * The canonical text of a REAL: shortest round-trip digits (as JavaScript
 * prints doubles), with `.0` added when it would otherwise read as an
 * integer.
 *
 * @param x - the double (not NaN: SQLite stores NaN as NULL)
 */
export function sqliteRealText(x: number): string {
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const s = String(x);
  // Integral doubles below 1e21 print without a point or exponent.
  return Number.isInteger(x) && x < 1e21 && x > -1e21 ? `${s}.0` : s;
}

/**
 * What a field's text reads as in a column without TEXT affinity, when it
 * is the canonical text of an INTEGER or a REAL; `undefined` when it is
 * plain TEXT.
 *
 * @param s - the field's text (unescaped)
 */
export function sqliteNumberOf(s: string): bigint | number | undefined {
  const c = s.charCodeAt(s.charCodeAt(0) === 45 ? 1 : 0);
  if (!((c >= 48 && c <= 57) || c === 73)) return undefined; // digit or 'I'
  if (INT_TEXT.test(s)) {
    if (s === '-0') return undefined;
    // Up to 18 digits always fits in int64; 19 may not.
    if (s.length < (c === s.charCodeAt(0) ? 19 : 20)) return BigInt(s);
    const v = BigInt(s);
    return v >= INT64_MIN && v <= INT64_MAX ? v : undefined;
  }
  if (REAL_TEXT.test(s)) {
    const v = Number(s);
    if (sqliteRealText(v) === s) return v;
  }
  return undefined;
}

/**
 * The field text (unescaped, not yet bulk-escaped) of a value; `null` for
 * SQL NULL.
 *
 * @param v - the value as better-sqlite3 returned it (safe integers on)
 * @param textAffinity - whether its column has TEXT affinity
 */
export function encodeSqliteValue(v: SqliteValue | Uint8Array, textAffinity: boolean): string | null {
  if (v === null) return null;
  switch (typeof v) {
    case 'bigint':
      return v.toString();
    case 'number':
      if (Number.isNaN(v)) throw new StowageError('EDB', 'SQLite returned NaN, which it cannot store.', { details: { value: 'NaN' } });
      return sqliteRealText(v);
    case 'string':
      if (v.charCodeAt(0) === 92 || (!textAffinity && sqliteNumberOf(v) !== undefined)) return `\\s${v}`;
      return v;
    default:
      return `\\x${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('hex')}`;
  }
}

const HEX = /^(?:[0-9a-fA-F]{2})*$/;

/** How a column reads field text on load; see {@link sqliteColumnKind}. */
export type SqliteColumnKind = 'text' | 'numeric' | 'none';

/**
 * How a column declared with `type` reads field text: `'text'` (TEXT
 * affinity: always text), `'numeric'` (numbers are converted by the column
 * anyway, so safe integers may be bound as JS numbers), `'none'` (no
 * conversion: storage classes must be bound exactly).
 *
 * @param type - the declared type
 */
export function sqliteColumnKind(type: string): SqliteColumnKind {
  if (sqliteTextAffinity(type)) return 'text';
  return sqliteConvertsNumbers(type) ? 'numeric' : 'none';
}

/**
 * The value to bind for a field's text (unescaped) on load.
 *
 * @param s - the field's text, or null for SQL NULL
 * @param kind - the column's kind, or a boolean: whether it has TEXT affinity
 * @param row - 1-based row number, for error messages
 */
export function decodeSqliteField(s: string | null, kind: SqliteColumnKind | boolean, row: number): SqliteValue {
  if (s === null) return null;
  if (s.charCodeAt(0) === 92) {
    const tag = s.charCodeAt(1);
    if (tag === 120 /* x */) {
      const hex = s.slice(2);
      if (!HEX.test(hex)) throw malformedBulkText(row, 'a \\x BLOB field holds something other than pairs of hex digits');
      return Buffer.from(hex, 'hex');
    }
    if (tag === 115 /* s */) return s.slice(2);
    throw malformedBulkText(row, `a field starts with a backslash not followed by x (BLOB) or s (TEXT): ${JSON.stringify(s.slice(0, 8))}`);
  }
  if (kind === true || kind === 'text') return s;
  const v = sqliteNumberOf(s);
  if (v === undefined) return s;
  // An INTEGER-, REAL- or NUMERIC-affinity column turns an integral double back into INTEGER.
  if (kind === 'numeric' && typeof v === 'bigint' && s.length < 16) return Number(v);
  return v;
}

/**
 * The select-list expression for one column of a dump. SQLite does the
 * cheap part and spares JavaScript a BigInt or Buffer per value (the
 * dominant cost of a dump). In a column without TEXT affinity an INTEGER
 * comes back as its decimal text, a BLOB as its finished field text
 * (`\\x` + hex), a REAL as a number, a TEXT as U+0001 followed by the
 * text (to be told apart). In a TEXT-affinity column (only TEXT, BLOB or
 * NULL) a TEXT comes back as it is and a BLOB as U+0001 and its finished
 * field.
 *
 * Text that is not valid UTF-8 must be seen as such, not read with U+FFFD
 * in its place: a TEXT whose character count (SQLite's, which skips the
 * continuation bytes after a lead byte) differs from its byte count, that
 * is one holding multi-byte characters, a stray continuation or a NUL,
 * comes back as its stored bytes (a Buffer) and is checked byte by byte.
 * One whose counts agree is ASCII, or holds bytes no decoder accepts, which
 * then read as U+FFFD: {@link sqliteWireField} refuses those.
 *
 * @param quoted - the quoted column name
 * @param textAffinity - whether the column has TEXT affinity
 */
export function sqliteSelectExpr(quoted: string, textAffinity: boolean): string {
  const blob = `'\\\\x' || lower(hex(${quoted}))`;
  const plain = `length(${quoted}) = length(CAST(${quoted} AS BLOB))`;
  // (A TEXT starting with U+0001 comes back as bytes too, so that a string starting with it is always a BLOB's field.)
  if (textAffinity) return `CASE typeof(${quoted}) WHEN 'text' THEN CASE WHEN ${plain} AND substr(${quoted}, 1, 1) <> char(1) THEN ${quoted} ELSE CAST(${quoted} AS BLOB) END WHEN 'blob' THEN char(1) || ${blob} ELSE ${quoted} END`;
  return `CASE typeof(${quoted}) WHEN 'integer' THEN CAST(${quoted} AS TEXT) WHEN 'blob' THEN ${blob} WHEN 'text' THEN CASE WHEN ${plain} THEN char(1) || ${quoted} ELSE CAST(${quoted} AS BLOB) END ELSE ${quoted} END`;
}

/**
 * The escaped bulk text field of a value selected with
 * {@link sqliteSelectExpr}: what {@link encodeSqliteValue} gives, escaped.
 * A TEXT value that is not valid UTF-8 (bytes written by an old tool that
 * stored Latin-1 as TEXT) is EDB: the bulk text carries text as UTF-8, and
 * decoding it would change it without a word.
 *
 * @param v - the selected value
 * @param textAffinity - whether the column has TEXT affinity
 */
export function sqliteWireField(v: unknown, textAffinity: boolean): string {
  if (v === null) return BULK_NULL;
  if (typeof v === 'string') {
    if (textAffinity) return v.charCodeAt(0) === 1 ? v.slice(1) : textField(decoded(v), true);
    return v.charCodeAt(0) === 1 ? textField(decoded(v.slice(1)), false) : v; // else an INTEGER's decimal or a BLOB's field, finished by SQLite
  }
  if (typeof v === 'number') return sqliteRealText(v);
  const bytes = v as Buffer;
  if (!isUtf8(bytes)) throw notUtf8(`bytes ${bytes.subarray(0, 24).toString('hex')}${bytes.length > 24 ? '…' : ''}`);
  return textField(bytes.toString('utf8'), textAffinity);
}

/**
 * A TEXT read as a string because its character and byte counts agree: a
 * U+FFFD in it can only be the decoder's, for bytes it could not decode
 * (a real U+FFFD is three bytes in one character, and comes as bytes).
 */
function decoded(text: string): string {
  if (text.includes('\uFFFD')) throw notUtf8(`it reads as ${JSON.stringify(text.slice(0, 24))}`);
  return text;
}

/** The escaped field of a TEXT value. */
function textField(text: string, textAffinity: boolean): string {
  if (textAffinity) return escapeBulkText(text.charCodeAt(0) === 92 ? `\\s${text}` : text);
  return escapeBulkText(encodeSqliteValue(text, false)!);
}

function notUtf8(what: string): StowageError {
  return new StowageError(
    'EDB',
    `a TEXT value is not valid UTF-8 (${what}): stowage carries text as UTF-8 and would change it. Store such values as BLOBs (UPDATE … SET col = CAST(col AS BLOB) WHERE …), or convert them to UTF-8, then dump again.`,
    { details: { value: what } },
  );
}
