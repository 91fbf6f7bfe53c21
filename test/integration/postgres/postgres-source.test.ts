// PostgresSource against a real PostgreSQL: the all-types fixture dumped,
// loaded into another database and compared value by value; the CREATE
// TABLE rebuilt from the catalogs; identifiers; metadata; loads (all or
// nothing); errors.
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBulkRow, type BulkField } from '../../../src/db/index.js';
import { PostgresSource, quotePgIdent } from '../../../src/db/postgres/index.js';
import type { Progress } from '../../../src/progress.js';
import { ALL_TYPES_KEY, ALL_TYPES_TABLE, columnsFor, expectedFor, rowsFor } from '../../fixtures/db/all-types.js';
import { freePort, startPostgres, type PostgresServer } from '../../support/index.js';
import { chunked, collect, rejectsWith, throwsWith } from '../../unit/db/helpers.js';
import { itFindsNextKey, itProbesKeys, itLoadsNamedColumns, itReadsNamedColumns, itReplacesRange, itReportsDigestProgress, itSelectsInclusiveRanges, itTimesOutOnSilentServer } from '../db-suite/source-tests.js';
import { makeFixture, normRows, sql, textRows } from './helpers.js';

let db: PostgresServer;
let dbCount = 0;

beforeAll(async () => {
  db = await startPostgres();
  await makeFixture(db, db.database);
});
afterAll(async () => {
  await db?.stop();
});

/** A fresh empty database; returns its name. */
async function freshDb(): Promise<string> {
  return db.createDatabase(`d${++dbCount}`);
}

function source(database = db.database, options: ConstructorParameters<typeof PostgresSource>[1] = {}): PostgresSource {
  return new PostgresSource({ ...db.clientConfig, database }, options);
}

async function dump(src: PostgresSource, table: string, key = ALL_TYPES_KEY): Promise<Buffer> {
  return collect(await src.rows(table, { key }));
}

const N = null;
const HEX_ALL = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('hex');
const TXT = 'line1\nline2\r\nCR\ronly, backslash \\ and \\\\, literal \\N, \\t, \\n, trailing \\';

describe('PostgresSource: the all-types fixture', () => {
  it('dumps every value to the documented bulk text (COPY text, passed through)', async () => {
    await using src = source();
    // Columns: SEQNO ROW_COUNTER i32 i64 dbl dec vc txt bin dt ts d
    const rows: BulkField[][] = [
      ['1', '1', N, N, N, N, N, N, N, N, N, N],
      ['1', '2', '0', '0', '0', '0.0000000000', '', '', '\\x', N, N, N],
      ['1', '3', N, N, N, N, 'tab\there', TXT, '\\x090a0d5c004e5c4e7fff', N, N, N],
      ['1', '4', N, N, N, N, '\\N', 'a b', N, N, N, N],
      ['2', '1', N, N, N, N, 'Grüße, 日本語, e\u0301', '🚀 Daya Bay 大亚湾 \u202Eright-to-left\u202C \uFEFF zero-width\u200B', `\\x${HEX_ALL}`, N, N, N],
      ['3', '1', '2147483647', '9223372036854775807', '1.7976931348623157e+308', '9999999999999999999999999999.9999999999', N, N, N, N, N, N],
      ['4', '1', '-2147483648', '-9223372036854775808', '-5e-324', '-0.0000000001', N, N, N, N, N, N],
      ['5', '1', N, '9007199254740993', '0.30000000000000004', '12345678901234567890.0123456789', N, N, N, N, N, N],
      ['5', '2', N, N, '0.3333333333333333', N, N, N, N, '2024-02-29 23:59:59.123456', '2024-03-31 01:30:00.5+00', '2024-02-29'],
      ['6', '1', N, N, '2.2250738585072014e-308', N, N, N, N, '1000-01-01 00:00:00', '1970-01-01 00:00:01+00', '1000-01-01'],
      ['7', '1', N, N, '4.5035996273704955e+15', N, N, N, N, '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999999+00', '9999-12-31'],
      ['8', '1', N, N, '-0', N, N, N, N, N, N, N],
      ['8', '2', N, N, 'Infinity', N, N, N, N, N, N, N],
      ['9007199254740993', '1', N, '9007199254740993', '9.007199254740992e+15', N, 'key 2^53+1', N, N, N, N, N],
    ];
    const expected = Buffer.concat(rows.map(encodeBulkRow));
    const got = await dump(src, ALL_TYPES_TABLE);
    expect(got.toString('utf8').split('\n')).toEqual(expected.toString('utf8').split('\n'));
    expect(got.equals(expected)).toBe(true);
  });

  it('round-trips: dump, load into a fresh database, same digest, same bytes, every value equal', async () => {
    const target = await freshDb();
    await using src = source();
    await using dst = source(target);
    const schema = await src.schema(ALL_TYPES_TABLE);
    expect(schema).toBe(
      [
        'CREATE TABLE "all_types" (',
        '    "SEQNO" bigint NOT NULL,',
        '    "ROW_COUNTER" integer NOT NULL,',
        '    "i32" integer,',
        '    "i64" bigint,',
        '    "dbl" double precision,',
        '    "dec" numeric(38,10),',
        '    "vc" character varying(255),',
        '    "txt" text,',
        '    "bin" bytea,',
        '    "dt" timestamp(6) without time zone,',
        '    "ts" timestamp(6) with time zone,',
        '    "d" date,',
        '    CONSTRAINT "all_types_pkey" PRIMARY KEY ("SEQNO", "ROW_COUNTER")',
        ');',
        '',
      ].join('\n'),
    );
    await dst.createTable(ALL_TYPES_TABLE, schema);
    expect(await dst.schema(ALL_TYPES_TABLE)).toBe(schema);
    const progress: Progress[] = [];
    const result = await dst.load(ALL_TYPES_TABLE, await src.rows(ALL_TYPES_TABLE, { key: ALL_TYPES_KEY }), { onProgress: (p) => progress.push(p) });
    const n = rowsFor('postgres').length;
    expect(result.rows).toBe(n);
    expect(result.deleted).toBe(0);
    expect(progress.at(-1)).toMatchObject({ phase: 'load', itemsDone: n, bytesDone: result.bytes });

    const a = await src.digestRange(ALL_TYPES_TABLE, ALL_TYPES_KEY, undefined, undefined);
    const b = await dst.digestRange(ALL_TYPES_TABLE, ALL_TYPES_KEY, undefined, undefined);
    expect(a.count).toBe(n);
    expect(b).toEqual(a);
    expect((await dump(dst, ALL_TYPES_TABLE)).equals(await dump(src, ALL_TYPES_TABLE))).toBe(true);

    // Row by row, every value cast to text by the server, on both sides, and as the fixture inserted it.
    const before = await textRows(db, db.database);
    const after = await textRows(db, target);
    expect(after).toEqual(before);
    expect(normRows(after)).toEqual(normRows(expectedFor('postgres')));
    expect(await dst.columns(ALL_TYPES_TABLE)).toEqual(await src.columns(ALL_TYPES_TABLE));
    expect((await dst.columns(ALL_TYPES_TABLE)).map((c) => c.name)).toEqual(columnsFor('postgres').map((c) => c.name));
  });

  it('keeps the text stable whatever the server and client time zones are', async () => {
    const target = await freshDb();
    await makeFixture(db, target);
    await sql(db, target, `ALTER DATABASE ${target} SET TimeZone = 'America/Chicago'`);
    await sql(db, target, `ALTER DATABASE ${target} SET DateStyle = 'SQL, DMY'`);
    await sql(db, target, `ALTER DATABASE ${target} SET extra_float_digits = -3`);
    await using src = source();
    await using other = source(target);
    expect((await dump(other, ALL_TYPES_TABLE)).equals(await dump(src, ALL_TYPES_TABLE))).toBe(true);
  });

  it('loads the same values whatever array_nulls and xmloption the target database sets', async () => {
    const a = await freshDb();
    const b = await freshDb();
    await sql(db, a, `CREATE TABLE t (id int PRIMARY KEY, arr text[], x xml)`);
    await sql(db, a, `INSERT INTO t VALUES (1, ARRAY['x', NULL, 'NULL'], XMLPARSE(CONTENT 'text<a/>more')), (2, NULL, NULL)`);
    // A database whose settings would read NULL elements as strings, and refuse XML fragments.
    await sql(db, b, `ALTER DATABASE ${b} SET array_nulls = off`);
    await sql(db, b, `ALTER DATABASE ${b} SET xmloption = document`);
    await using src = source(a);
    await using dst = source(b);
    const text = await dump(src, 't', 'id');
    await dst.createTable('t', await src.schema('t'));
    expect((await dst.load('t', Readable.from([text]))).rows).toBe(2);
    expect((await dump(dst, 't', 'id')).equals(text)).toBe(true);
    expect(await sql(db, b, `SELECT arr[2] IS NULL, arr[3], x::text FROM t WHERE id = 1`)).toEqual([[true, 'NULL', 'text<a/>more']]);
  });

  it('digests sub-ranges equal on both sides and different where one double is off by one ulp', async () => {
    const target = await freshDb();
    await makeFixture(db, target);
    await using src = source();
    await using dst = source(target);
    const bits = new BigInt64Array(new Float64Array([0.1 + 0.2]).buffer);
    bits[0]! += 1n;
    const nextUp = new Float64Array(bits.buffer)[0]!;
    const c = await db.connect({ database: target });
    const r = await c.query('UPDATE all_types SET dbl = $1::float8 WHERE "SEQNO" = 5 AND "ROW_COUNTER" = 1', [String(nextUp)]);
    await c.end();
    expect(r.rowCount).toBe(1);
    for (const [lo, hi] of [[1n, 4n], [6n, 9007199254740993n]] as const) {
      expect(await dst.digestRange(ALL_TYPES_TABLE, 'SEQNO', lo, hi)).toEqual(await src.digestRange(ALL_TYPES_TABLE, 'SEQNO', lo, hi));
    }
    const s5 = await src.digestRange(ALL_TYPES_TABLE, 'SEQNO', 5, 5);
    const d5 = await dst.digestRange(ALL_TYPES_TABLE, 'SEQNO', 5, 5);
    expect(d5.count).toBe(2);
    expect(d5.digest).not.toBe(s5.digest);
  });
});

describe('PostgresSource: more types', () => {
  it('round-trips booleans, uuid, network, money, ranges, times with zones, real, NaN, arrays, geometry and full-text values byte for byte', async () => {
    const a = await freshDb();
    const b = await freshDb();
    await sql(
      db,
      a,
      `CREATE TABLE m (k int PRIMARY KEY, bo boolean, u uuid, ip inet, cidr cidr, mac macaddr, mo money, r int4range, tz timetz(2), t time, f4 real, f8 float8, n numeric,
        a2 int[][], pt point, ts tsvector, c char(3), x xml, iv interval, d date, js json)`,
    );
    await sql(
      db,
      a,
      `INSERT INTO m VALUES (1, true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03', 1234.56, '[1,5)', '04:05:06.78+02', '23:59:59.999999',
        3.4028235e38, 'NaN', 'NaN', '{{1,2},{3,NULL}}', '(1.5,-2)', 'a:1 fat:2 rat', 'ab', '<x a="1">t&amp;</x>', '-1 year 2 mons -3 days 04:05:06.7', 'infinity', '{"k": [1, 2.50]}'),
        (2, false, NULL, '::1', '2001:db8::/32', NULL, -0.01, 'empty', NULL, NULL, 1.17549435e-38, '-Infinity', '-12.3400', '{}', NULL, '', 'a\\b', NULL, '0', '-infinity', 'null')`,
    );
    await using src = source(a);
    await using dst = source(b);
    const text = await dump(src, 'm', 'k');
    expect(text.toString()).toBe(
      [
        '1\tt\ta0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\t192.168.0.1/24\t10.0.0.0/8\t08:00:2b:01:02:03\t$1,234.56\t[1,5)\t04:05:06.78+02\t23:59:59.999999\t3.4028235e+38\tNaN\tNaN\t{{1,2},{3,NULL}}\t(1.5,-2)\t\'a\':1 \'fat\':2 \'rat\'\tab \t<x a="1">t&amp;</x>\t-10 mons -3 days +04:05:06.7\tinfinity\t{"k": [1, 2.50]}',
        '2\tf\t\\N\t::1\t2001:db8::/32\t\\N\t-$0.01\tempty\t\\N\t\\N\t1.1754944e-38\t-Infinity\t-12.3400\t{}\t\\N\t\ta\\\\b\t\\N\t00:00:00\t-infinity\tnull',
        '',
      ].join('\n'),
    );
    await dst.createTable('m', await src.schema('m'));
    expect((await dst.load('m', Readable.from([text]))).rows).toBe(2);
    expect((await dump(dst, 'm', 'k')).equals(text)).toBe(true);
    const same = 'SELECT k, bo, u::text, ip::text, cidr::text, mac::text, mo::numeric::text, r::text, tz::text, t::text, f4::text, f8::text, n::text, a2::text, pt::text, ts::text, c, x::text, iv::text, d::text, js::text FROM m ORDER BY k';
    expect(await sql(db, b, same)).toEqual(await sql(db, a, same));
  });
});

describe('PostgresSource: the CREATE TABLE rebuilt from the catalogs', () => {
  it('carries types with typmods, collations, defaults, identity, generated and serial columns, constraints and indexes', async () => {
    const a = await freshDb();
    const b = await freshDb();
    await sql(db, a, 'CREATE TYPE mood AS ENUM (\'sad\', \'ok\')');
    await sql(
      db,
      a,
      `CREATE UNLOGGED TABLE "Run" (
        id serial PRIMARY KEY,
        seq bigint GENERATED BY DEFAULT AS IDENTITY,
        name varchar(40) COLLATE "C" NOT NULL DEFAULT 'x',
        started timestamptz(3) DEFAULT now(),
        price numeric(12,2) CHECK (price >= 0),
        twice integer GENERATED ALWAYS AS (id * 2) STORED,
        tags text[] DEFAULT '{}',
        m mood,
        bits bit varying(16),
        iv interval,
        j jsonb,
        UNIQUE (name, started)
      )`,
    );
    await sql(db, a, 'CREATE INDEX "run name lower" ON "Run" (lower(name)) WHERE price > 1');
    await sql(db, a, 'CREATE UNIQUE INDEX run_seq ON "Run" USING btree (seq DESC NULLS LAST)');
    await sql(db, a, `INSERT INTO "Run" (name, started, price, tags, m, bits, iv, j) VALUES ('a', '2024-01-01 00:00:00.123+02', 1.5, '{x,"y z"}', 'ok', B'101', '1 day 02:03:04.5', '{"k": [1, 2.50]}'), ('b', NULL, 0, '{}', NULL, NULL, NULL, NULL)`);
    await using src = source(a);
    await using dst = source(b);
    const ddl = await src.schema('Run');
    expect(ddl).toBe(
      [
        // The enum type the table uses comes first, created where the target lacks it.
        "DO $stowage$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'mood' AND typnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())) THEN CREATE TYPE \"mood\" AS ENUM ('sad', 'ok'); " +
          "ELSIF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'mood' AND typnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema()) AND typtype = 'e') THEN RAISE EXCEPTION USING ERRCODE = 'duplicate_object', " +
          "MESSAGE = format('type %I of schema %I is not an enum type, which the table''s columns need: rename one of them', 'mood', current_schema()); END IF; END $stowage$;",
        'CREATE SEQUENCE "Run_id_seq" AS integer INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1 NO CYCLE;',
        'CREATE UNLOGGED TABLE "Run" (',
        '    "id" integer DEFAULT nextval(\'"Run_id_seq"\'::regclass) NOT NULL,',
        '    "seq" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL,',
        '    "name" character varying(40) COLLATE "C" DEFAULT \'x\'::character varying NOT NULL,',
        '    "started" timestamp(3) with time zone DEFAULT now(),',
        '    "price" numeric(12,2),',
        '    "twice" integer GENERATED ALWAYS AS ((id * 2)) STORED,',
        '    "tags" text[] DEFAULT \'{}\'::text[],',
        '    "m" mood,',
        '    "bits" bit varying(16),',
        '    "iv" interval,',
        '    "j" jsonb,',
        '    CONSTRAINT "Run_pkey" PRIMARY KEY (id),',
        '    CONSTRAINT "Run_name_started_key" UNIQUE (name, started),',
        '    CONSTRAINT "Run_price_check" CHECK ((price >= (0)::numeric))',
        ');',
        'ALTER SEQUENCE "Run_id_seq" OWNED BY "Run"."id";',
        'CREATE INDEX "run name lower" ON "Run" USING btree (lower((name)::text)) WHERE (price > (1)::numeric);',
        'CREATE UNIQUE INDEX "run_seq" ON "Run" USING btree (seq DESC NULLS LAST);',
        '',
      ].join('\n'),
    );
    // The DDL creates the enum type the target lacks, then the same table.
    await dst.createTable('Run', ddl);
    expect(await sql(db, b, "SELECT enum_range(NULL::mood)::text")).toEqual([['{sad,ok}']]);
    expect(await dst.schema('Run')).toBe(ddl);
    expect((await src.columns('Run')).map((c) => c.name)).toEqual(['id', 'seq', 'name', 'started', 'price', 'tags', 'm', 'bits', 'iv', 'j']);
    const text = await collect(await src.rows('Run', { key: 'id' }));
    expect(text.toString()).toBe('1\t1\ta\t2023-12-31 22:00:00.123+00\t1.50\t{x,"y z"}\tok\t101\t1 day 02:03:04.5\t{"k": [1, 2.50]}\n2\t2\tb\t\\N\t0.00\t{}\t\\N\t\\N\t\\N\t\\N\n');
    await dst.load('Run', Readable.from([text]));
    expect(await dst.digestRange('Run', 'id', undefined, undefined)).toEqual(await src.digestRange('Run', 'id', undefined, undefined));
    expect(await sql(db, b, 'SELECT twice FROM "Run" ORDER BY id')).toEqual([[2], [4]]);
  });

  it('works in another schema, and the DDL lands in the target schema', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE SCHEMA "cond db"');
    await sql(db, a, 'CREATE SCHEMA restore');
    await sql(db, a, 'CREATE TABLE public.t (k int PRIMARY KEY, v text)');
    await sql(db, a, 'CREATE TABLE "cond db".t (k int PRIMARY KEY, w text)');
    await sql(db, a, 'CREATE INDEX t_w ON "cond db".t (w)');
    await sql(db, a, "INSERT INTO \"cond db\".t VALUES (1, 'in schema')");
    await using src = source(a, { schema: 'cond db' });
    await using dst = source(a, { schema: 'restore' });
    expect(src.name).toBe(`postgres://${db.user}@127.0.0.1:${db.port}/${a}?schema=cond%20db`);
    expect(await src.tables()).toEqual(['t']);
    expect((await src.columns('t')).map((c) => c.name)).toEqual(['k', 'w']);
    const ddl = await src.schema('t');
    expect(ddl).toContain('CREATE INDEX "t_w" ON "t" USING btree (w);');
    await dst.createTable('t', ddl);
    await dst.load('t', await src.rows('t', { key: 'k' }));
    expect(await sql(db, a, 'SELECT k, w FROM restore.t')).toEqual([[1, 'in schema']]);
    // A domain's default over an enum of the source's schema names them as that schema sees them: the DDL creates both in the target's.
    await sql(db, a, "CREATE TYPE \"cond db\".mood AS ENUM ('ok', 'bad')");
    await sql(db, a, "CREATE DOMAIN \"cond db\".state AS \"cond db\".mood DEFAULT 'ok'");
    await sql(db, a, 'CREATE TABLE "cond db".u (k int PRIMARY KEY, s "cond db".state)');
    await dst.createTable('u', await src.schema('u'));
    await sql(db, a, 'INSERT INTO restore.u (k) VALUES (1)');
    expect(await sql(db, a, 'SELECT s::text FROM restore.u')).toEqual([['ok']]);
    expect(await sql(db, a, "SELECT t.typname, n.nspname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typname IN ('mood', 'state') ORDER BY 2, 1")).toEqual([
      ['mood', 'cond db'],
      ['state', 'cond db'],
      ['mood', 'restore'],
      ['state', 'restore'],
    ]);
    expect(await sql(db, a, "SELECT count(*)::int FROM pg_indexes WHERE schemaname = 'restore' AND indexname = 't_w'")).toEqual([[1]]);
    expect(await sql(db, a, 'SELECT count(*)::int FROM public.t')).toEqual([[0]]);
  });
});

describe('PostgresSource: identifiers', () => {
  it('handles a table and columns named with quotes, backticks, backslashes, spaces and unicode', async () => {
    const a = await freshDb();
    const b = await freshDb();
    const table = 'we"ird tab`le';
    const key = 'SE"Q NO';
    const cols = [key, "it's [x] \\", 'naïve ; DROP TABLE canary; --', '"', '🚀'];
    await sql(db, a, 'CREATE TABLE canary (x int)');
    await sql(db, a, `CREATE TABLE ${quotePgIdent(table)} (${cols.map((c, i) => `${quotePgIdent(c)} ${i === 0 ? 'bigint PRIMARY KEY' : 'text'}`).join(', ')})`);
    await sql(db, a, `CREATE INDEX ${quotePgIdent('idx "q"')} ON ${quotePgIdent(table)} (${quotePgIdent(cols[1]!)})`);
    for (let i = 1; i <= 5; i++) await sql(db, a, `INSERT INTO ${quotePgIdent(table)} VALUES ($1, $2, $3, $4, $5)`, [i, `v${i}`, 'x', null, '🚀']);
    await using src = source(a);
    await using dst = source(b);
    expect(await src.tables()).toEqual(['canary', table]);
    expect((await src.columns(table)).map((c) => c.name)).toEqual(cols);
    expect(await src.keyRange(table, key)).toEqual({ lo: 1n, hi: 5n, count: 5, nulls: 0 });
    const schema = await src.schema(table);
    expect(schema).toContain('CREATE INDEX "idx ""q""" ON "we""ird tab`le" USING btree');
    await dst.createTable(table, schema);
    await dst.load(table, await src.rows(table, { key, lo: 2, hi: 4 }));
    await dst.load(table, Readable.from([encodeBulkRow(['9', 'a', 'b', null, 'c'])]), { replaceRange: { key, lo: 9, hi: 9 } });
    expect(await dst.keyRange(table, key)).toEqual({ lo: 2n, hi: 9n, count: 4, nulls: 0 });
    expect(await dst.digestRange(table, key, 2, 4)).toEqual(await src.digestRange(table, key, 2, 4));
    expect(await dst.tables()).toEqual([table]);
    expect(await src.tables()).toEqual(['canary', table]);
  });

  it('treats names that look like SQL as names', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE canary (x int)');
    await using src = source(a);
    const evil = ['canary" WHERE true; DROP TABLE canary; -- ', "canary'; DROP TABLE canary; --", 'canary\\', 'canary"'];
    for (const name of evil) {
      await rejectsWith(src.columns(name), 'ENO_TABLE');
      await rejectsWith(src.rows(name, { key: 'x' }), 'ENO_TABLE');
      await rejectsWith(src.keyRange('canary', name), 'ENO_TABLE');
      await rejectsWith(src.load('canary', Readable.from([]), { replaceRange: { key: name, lo: 1, hi: 2 } }), 'ENO_TABLE');
    }
    await using evilSchema = source(a, { schema: "public\"; DROP TABLE canary; --" });
    expect(await evilSchema.tables()).toEqual([]);
    expect(await src.tables()).toEqual(['canary']);
  });

  it('quotes by PostgreSQL rules and refuses names it cannot carry', () => {
    expect(quotePgIdent('we"ird tab`le')).toBe('"we""ird tab`le"');
    expect(quotePgIdent('""')).toBe('""""""');
    throwsWith(() => quotePgIdent(''), 'EBAD_CONFIG');
    throwsWith(() => quotePgIdent('a\0b'), 'EBAD_CONFIG');
  });
});

describe('PostgresSource: tables, keys and ranges', () => {
  it('lists ordinary tables only and finds names as an unquoted name would', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE b (id int PRIMARY KEY)');
    await sql(db, a, 'CREATE TABLE a (seqno int)');
    await sql(db, a, 'CREATE VIEW v AS SELECT * FROM a');
    await sql(db, a, 'CREATE MATERIALIZED VIEW mv AS SELECT * FROM a');
    await sql(db, a, 'CREATE SEQUENCE s');
    await sql(db, a, 'CREATE TABLE parted (k int) PARTITION BY RANGE (k)');
    await sql(db, a, 'CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10)');
    await sql(db, a, 'CREATE TABLE "Vld" (id int)');
    await using src = source(a);
    expect(await src.tables()).toEqual(['Vld', 'a', 'b', 'parted_1']);
    // There, but not tables: each says what it is and what to do.
    const said = await Promise.all(['v', 'mv', 's', 'parted', 'nope'].map(async (t) => (await rejectsWith(src.columns(t), 'ENO_TABLE')).message));
    expect(said[0]).toMatch(/"v" in .* is a view, not a table this source reads or loads: .*dump the tables it reads/);
    expect(said[1]).toMatch(/is a materialized view/);
    expect(said[2]).toMatch(/is a sequence/);
    expect(said[3]).toMatch(/is a partitioned table, .*dump each of them \(tables\(\) lists them\)/);
    expect(said[4]).toMatch(/Table "nope" does not exist/);
    expect(await src.keyRange('A', 'SEQNO')).toEqual({ lo: null, hi: null, count: 0, nulls: 0 });
    expect(await src.keyRange('vld', 'ID')).toEqual({ lo: null, hi: null, count: 0, nulls: 0 });
  });

  it('reports NULL keys, and refuses a key that is not an integer column', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE n (k smallint, v text, d float8, m numeric)');
    await sql(db, a, "INSERT INTO n VALUES (NULL, 'a', 1, 1), (3, 'b', 2, 2), (NULL, 'c', 3, 3), (-7, 'd', 4, 4)");
    await using src = source(a);
    expect(await src.keyRange('n', 'k')).toEqual({ lo: -7n, hi: 3n, count: 2, nulls: 2 });
    expect((await collect(await src.rows('n', { key: 'k' }))).toString()).toBe('-7\td\t4\t4\n3\tb\t2\t2\n');
    for (const col of ['d', 'v', 'm']) {
      const err = await rejectsWith(src.keyRange('n', col), 'EBAD_CONFIG');
      expect(err.message).toMatch(/not an integer column/);
      await rejectsWith(src.rows('n', { key: col }), 'EBAD_CONFIG');
    }
  });

  itSelectsInclusiveRanges(freshDb, (database, text) => sql(db, database, text), (database) => source(database), 'CREATE TABLE p ("SEQNO" bigint NOT NULL, rc int NOT NULL, v text, PRIMARY KEY (rc, "SEQNO"))');
  itFindsNextKey(freshDb, (database, text) => sql(db, database, text), (database) => source(database), 'CREATE TABLE p ("SEQNO" bigint NOT NULL, rc int NOT NULL, v text, PRIMARY KEY (rc, "SEQNO"))');
  itProbesKeys(freshDb, (database, text) => sql(db, database, text), (database) => source(database), {
    p: 'CREATE TABLE p ("SEQNO" bigint NOT NULL, rc int NOT NULL, v text, PRIMARY KEY (rc, "SEQNO"))',
    more: [
      'CREATE TABLE q (k bigint, v text)',
      'CREATE INDEX ON q (k)',
      "INSERT INTO q VALUES (10, 'a'), (NULL, 'n'), (20, 'b'), (30, 'c')",
      'CREATE TABLE d ("SEQNO" bigint PRIMARY KEY, v text)',
      "INSERT INTO d SELECT s, 'x' FROM generate_series(1, 1000) s",
    ],
  });
});

describe('PostgresSource: row-level security', () => {
  it('refuses (EDB, saying which role can) to read, count or load a table whose policies hide rows from this role, instead of dumping the rows it sees', async () => {
    const a = await freshDb();
    await sql(db, a, "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenant_owner') THEN CREATE ROLE tenant_owner LOGIN PASSWORD 'tenant-pw'; END IF; END $$");
    await sql(db, a, 'CREATE TABLE r (k int PRIMARY KEY, tenant text)');
    await sql(db, a, "INSERT INTO r SELECT i, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END FROM generate_series(1, 2000) i");
    await sql(db, a, 'ALTER TABLE r OWNER TO tenant_owner');
    await sql(db, a, 'ALTER TABLE r ENABLE ROW LEVEL SECURITY');
    await sql(db, a, 'ALTER TABLE r FORCE ROW LEVEL SECURITY');
    await sql(db, a, "CREATE POLICY only_a ON r USING (tenant = 'a')");
    // Its owner, under FORCE: the policy hides half the rows (a dump read 1000 of 2000, and its restore "succeeded").
    await using owner = new PostgresSource({ ...db.clientConfig, user: 'tenant_owner', password: 'tenant-pw', database: a });
    for (const call of [() => owner.keyRange('r', 'k'), async () => collect(await owner.rows('r', { key: 'k' })), () => owner.digestRange('r', 'k', 1, 2000), () => owner.load('r', Readable.from(['3001\ta\n']))]) {
      const err = await rejectsWith(call(), 'EDB');
      expect(err.message).toMatch(/row-level security.*BYPASSRLS/);
    }
    // A superuser (the harness's) reads every row.
    await using admin = source(a);
    expect((await admin.keyRange('r', 'k')).count).toBe(2000);
    expect(await sql(db, a, 'SELECT count(*)::int FROM r')).toEqual([[2000]]);
  });
});

describe('PostgresSource: replaceRange and foreign keys', () => {
  it('a table others inherit from is read, counted and replaced as itself: its children\'s rows are neither dumped with it nor deleted', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE parent (k int PRIMARY KEY, v text)');
    await sql(db, a, 'CREATE TABLE child (extra int) INHERITS (parent)');
    await sql(db, a, "INSERT INTO parent VALUES (1, 'p1'), (2, 'p2')");
    await sql(db, a, "INSERT INTO child VALUES (3, 'c3', 0), (1, 'c1dup', 0)");
    await using src = source(a);
    expect(await src.keyRange('parent', 'k')).toMatchObject({ lo: 1n, hi: 2n, count: 2 });
    expect((await collect(await src.rows('parent', { key: 'k' }))).toString()).toBe('1\tp1\n2\tp2\n');
    const r = await src.load('parent', Readable.from([Buffer.from('1\tp1-new\n')]), { replaceRange: { key: 'k', lo: 1, hi: 3 } });
    expect(r).toMatchObject({ rows: 1, deleted: 2 });
    expect(await sql(db, a, 'SELECT k::text, v FROM ONLY parent ORDER BY k')).toEqual([['1', 'p1-new']]);
    expect(await sql(db, a, 'SELECT k::text, v FROM child ORDER BY k')).toEqual([['1', 'c1dup'], ['3', 'c3']]);
  });

  it('refuses (EDB, nothing changed anywhere) a replaceRange that would delete rows other tables cascade from, or null; merges when every row comes back; loads when the range is empty', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE parent ("SEQNO" bigint PRIMARY KEY, v text)');
    await sql(db, a, 'CREATE TABLE child ("SEQNO" bigint, "ROW" int, pseq bigint REFERENCES parent ("SEQNO") ON DELETE CASCADE, PRIMARY KEY ("SEQNO", "ROW"))');
    await sql(db, a, 'CREATE TABLE note (id int PRIMARY KEY, pseq bigint CONSTRAINT note_parent REFERENCES parent ("SEQNO") ON DELETE SET NULL)');
    await sql(db, a, "INSERT INTO parent VALUES (1, 'a'), (2, 'b'), (3, 'c')");
    await sql(db, a, 'INSERT INTO child VALUES (1, 1, 1), (1, 2, 1), (2, 1, 2), (3, 1, 3)');
    await sql(db, a, 'INSERT INTO note VALUES (7, 2)');
    await using src = source(a);
    // Row 2 does not come back: deleting it would cascade into child and null note.
    const err = await rejectsWith(src.load('parent', Readable.from([Buffer.from('1\ta\n3\tC\n')]), { replaceRange: { key: 'SEQNO', lo: 1, hi: 3 } }), 'EDB');
    expect(err.message).toMatch(/child \(child_pseq_fkey, ON DELETE CASCADE\)/);
    expect(err.message).toMatch(/note \(note_parent, ON DELETE SET NULL\)/);
    expect(err.message).toMatch(/nothing was loaded/);
    expect(await sql(db, a, 'SELECT count(*)::text FROM child')).toEqual([['4']]);
    expect(await sql(db, a, 'SELECT pseq::text FROM note')).toEqual([['2']]);
    expect(await sql(db, a, 'SELECT v FROM parent ORDER BY "SEQNO"')).toEqual([['a'], ['b'], ['c']]);
    // Every row comes back (one changed, one new): merged in place, nothing cascades, the rows referring to them stay.
    const merged = await src.load('parent', Readable.from([Buffer.from('1\ta\n2\tB\n3\tc\n4\td\n')]), { replaceRange: { key: 'SEQNO', lo: 1, hi: 4 } });
    expect(merged).toMatchObject({ rows: 4, deleted: 3 });
    expect(await sql(db, a, 'SELECT "SEQNO"::text, v FROM parent ORDER BY "SEQNO"')).toEqual([['1', 'a'], ['2', 'B'], ['3', 'c'], ['4', 'd']]);
    expect(await sql(db, a, 'SELECT count(*)::text FROM child')).toEqual([['4']]);
    expect(await sql(db, a, 'SELECT pseq::text FROM note')).toEqual([['2']]);
    // A key that is GENERATED ALWAYS AS IDENTITY merges too (the rows keep their keys).
    await sql(db, a, 'CREATE TABLE gen (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)');
    await sql(db, a, 'CREATE TABLE gen_ref (id int PRIMARY KEY, gid bigint REFERENCES gen (id))');
    await sql(db, a, "INSERT INTO gen (v) VALUES ('x'), ('y')");
    await sql(db, a, 'INSERT INTO gen_ref VALUES (1, 1), (2, 2)');
    expect(await src.load('gen', Readable.from([Buffer.from('1\tX\n2\ty\n')]), { replaceRange: { key: 'id', lo: 1, hi: 2 } })).toMatchObject({ rows: 2, deleted: 2 });
    expect(await sql(db, a, 'SELECT id::text, v FROM gen ORDER BY id')).toEqual([['1', 'X'], ['2', 'y']]);
    // A DEFERRABLE primary key cannot arbitrate ON CONFLICT: that table deletes first, and its NO ACTION key refuses as before.
    await sql(db, a, 'CREATE TABLE dfr (id bigint PRIMARY KEY DEFERRABLE, code text UNIQUE)');
    await sql(db, a, 'CREATE TABLE dfr_ref (id int PRIMARY KEY, code text REFERENCES dfr (code))');
    await sql(db, a, "INSERT INTO dfr VALUES (1, 'x')");
    await sql(db, a, "INSERT INTO dfr_ref VALUES (1, 'x')");
    const refused = await rejectsWith(src.load('dfr', Readable.from([Buffer.from('1\tx\n')]), { replaceRange: { key: 'id', lo: 1, hi: 1 } }), 'EDB');
    expect(refused.message).toMatch(/foreign key constraint/);
    expect(await sql(db, a, 'SELECT id::text, code FROM dfr')).toEqual([['1', 'x']]);
    // A range holding no rows deletes nothing: it loads.
    const r = await src.load('parent', Readable.from([Buffer.from('10\tj\n')]), { replaceRange: { key: 'SEQNO', lo: 10, hi: 19 } });
    expect(r).toMatchObject({ rows: 1, deleted: 0 });
    expect(await sql(db, a, 'SELECT count(*)::text FROM child')).toEqual([['4']]);
  });
});

describe('PostgresSource: errors', () => {
  it('ENO_TABLE for a missing table or key column, everywhere', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE t (k int, v text)');
    await using src = source(a);
    await rejectsWith(src.columns('nope'), 'ENO_TABLE');
    await rejectsWith(src.schema('nope'), 'ENO_TABLE');
    await rejectsWith(src.keyRange('nope', 'k'), 'ENO_TABLE');
    await rejectsWith(src.rows('nope', { key: 'k' }), 'ENO_TABLE');
    await rejectsWith(src.digestRange('nope', 'k', 1, 2), 'ENO_TABLE');
    await rejectsWith(src.load('nope', Readable.from([Buffer.from('1\ta\n')])), 'ENO_TABLE');
    const err = await rejectsWith(src.keyRange('t', 'SEQNO'), 'ENO_TABLE');
    expect(err.message).toMatch(/no column "SEQNO" \(it has k, v\)/);
    await rejectsWith(src.rows('t', { key: 'SEQNO' }), 'ENO_TABLE');
    await rejectsWith(src.load('t', Readable.from([]), { replaceRange: { key: 'SEQNO', lo: 1, hi: 2 } }), 'ENO_TABLE');
  });

  it('EBAD_CONFIG for bad options, names, bounds and connection settings', async () => {
    await using src = source();
    await rejectsWith(src.rows('t', { key: 'k', lo: 3, hi: 2 }), 'EBAD_CONFIG');
    await rejectsWith(src.rows('t', { key: 'k', lo: 1.5 }), 'EBAD_CONFIG');
    await rejectsWith(src.rows('t', { key: 'k', hi: 1n << 64n }), 'EBAD_CONFIG');
    await rejectsWith(src.rows('t', { key: 'k', limit: 3 } as never), 'EBAD_CONFIG');
    await rejectsWith(src.rows('', { key: 'k' }), 'EBAD_CONFIG');
    await rejectsWith(src.keyRange('t', 'k', { sginal: undefined } as never), 'EBAD_CONFIG');
    await rejectsWith(src.load('t', Readable.from([]), { replaceRange: { key: 'k', lo: 1 } as never }), 'EBAD_CONFIG');
    await rejectsWith(src.load('t', 'not a stream' as never), 'EBAD_CONFIG');
    await rejectsWith(src.snapshot('x' as never), 'EBAD_CONFIG');
    await rejectsWith(src.createTable('t2', '  '), 'EBAD_CONFIG');
    const err = throwsWith(() => new PostgresSource({ ...db.clientConfig, pasword: 'x' } as never), 'EBAD_CONFIG');
    expect(err.message).toMatch(/Did you mean "password"/);
    throwsWith(() => new PostgresSource(db.clientConfig, { schema: '' }), 'EBAD_CONFIG');
    throwsWith(() => new PostgresSource(db.clientConfig, { shema: 'x' } as never), 'EBAD_CONFIG');
    throwsWith(() => new PostgresSource({ host: '127.0.0.1' } as never), 'EBAD_CONFIG');
    throwsWith(() => new PostgresSource('mysql://x@y/z'), 'EBAD_CONFIG');
  });

  it('takes a postgres:// URI and names itself without the password', async () => {
    await using src = new PostgresSource(db.connectionString);
    expect(src.name).toBe(`postgres://${db.user}@127.0.0.1:${db.port}/${db.database}`);
    expect(await src.tables()).toContain(ALL_TYPES_TABLE);
  });

  itTimesOutOnSilentServer((port) => new PostgresSource({ host: '127.0.0.1', port, user: 'x', password: 'y', database: 'z', connectTimeoutMs: 300 }));

  it('ECONNECT when nothing listens, EAUTH for a wrong password, with the driver error as cause', async () => {
    const port = await freePort();
    await using nobody = new PostgresSource({ host: '127.0.0.1', port, user: 'x', database: 'y', connectTimeoutMs: 5000 });
    const e1 = await rejectsWith(nobody.tables(), 'ECONNECT');
    expect(e1.retryable).toBe(true);
    expect((e1.cause as { code?: string }).code).toBe('ECONNREFUSED');
    await using wrong = new PostgresSource({ ...db.clientConfig, password: 'wrong' });
    const e2 = await rejectsWith(wrong.tables(), 'EAUTH');
    expect((e2.cause as { code?: string }).code).toBe('28P01');
    expect(e2.details.sqlState).toBe('28P01');
  });

  it('createTable: EDB with the SQLSTATE, nothing kept when the DDL fails or creates another table, EEXIST', async () => {
    const a = await freshDb();
    const src = source(a);
    const err = await rejectsWith(src.createTable('x', 'CREATE TABLEX x (a int)'), 'EDB');
    expect(err.details.sqlState).toBe('42601');
    expect((err.cause as { code?: string }).code).toBe('42601');
    await rejectsWith(src.createTable('x', 'CREATE TABLE y (a int); CREATE TABLE x (a nosuchtype)'), 'EDB');
    await rejectsWith(src.createTable('x', 'CREATE TABLE other (a int)'), 'ENO_TABLE');
    expect(await src.tables()).toEqual([]);
    await src.createTable('x', 'CREATE TABLE x (a int);\nCREATE INDEX x_a ON x (a);\n');
    await rejectsWith(src.createTable('x', 'CREATE TABLE x (a int)'), 'EEXIST');
    expect(await src.tables()).toEqual(['x']);
    await src.close();
    await src.close();
    await rejectsWith(src.tables(), 'EDB');
    await rejectsWith(src.rows('x', { key: 'a' }), 'EDB');
  });
});

describe('PostgresSource: load', () => {
  async function table(): Promise<PostgresSource> {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE t (k int PRIMARY KEY, v varchar(8), n smallint)');
    await sql(db, a, "INSERT INTO t VALUES (1, 'one', 1)");
    return source(a);
  }
  const rowsOf = async (src: PostgresSource): Promise<string> => (await collect(await src.rows('t', { key: 'k' }))).toString();

  it('rolls back everything on malformed input, a duplicate key, or a value the column cannot hold', async () => {
    await using src = await table();
    const good = Buffer.concat([encodeBulkRow(['2', 'two', '2']), encodeBulkRow(['3', 'three', '3'])]);
    const cases: [string, Buffer[], RegExp, string?][] = [
      ['too few fields', [good, Buffer.from('4\tfour\n')], /row 3: expected 3 fields, found 2/],
      ['too many fields', [good, Buffer.from('4\tfour\t4\textra\n')], /row 3: expected 3 fields, found 4/],
      ['bad escape', [good, Buffer.from('4\t\\q\t4\n')], /unknown escape \\q/],
      ['end-of-data marker', [good, Buffer.from('\\.\n4\tx\t4\n')], /unknown escape \\\./],
      ['octal look-alike', [good, Buffer.from('4\t\\012\t4\n')], /NUL character/],
      ['\\N inside a field', [good, Buffer.from('4\tx\\N\t4\n')], /\\N inside a longer field/],
      ['truncated', [good, Buffer.from('4\tfo')], /truncated/],
      ['duplicate key', [good, encodeBulkRow(['1', 'again', '1'])], /duplicate key/, '23505'],
      ['too long for varchar(8)', [good, encodeBulkRow(['4', 'much too long', '4'])], /too long/, '22001'],
      ['out of range', [good, encodeBulkRow(['4', 'x', '70000'])], /out of range/, '22003'],
      ['not a number', [good, encodeBulkRow(['4', 'x', 'abc'])], /invalid input syntax/, '22P02'],
    ];
    for (const [what, chunks, re, sqlState] of cases) {
      const input = Readable.from(chunks);
      const err = await rejectsWith(src.load('t', input), 'EDB');
      expect(err.message, what).toMatch(re);
      if (sqlState !== undefined) expect(err.details.sqlState, what).toBe(sqlState);
      expect(await rowsOf(src), what).toBe('1\tone\t1\n');
      expect(input.destroyed, what).toBe(true);
    }
    expect((await src.load('t', Readable.from([good]))).rows).toBe(2);
    expect(await rowsOf(src)).toBe('1\tone\t1\n2\ttwo\t2\n3\tthree\t3\n');
  });

  itReplacesRange(table, (src) => rowsOf(src as PostgresSource));

  itLoadsNamedColumns(table, (src) => rowsOf(src as PostgresSource));

  itReadsNamedColumns(table);

  itReportsDigestProgress(table);

  it('loads from any async iterable of chunks, split anywhere; control characters and \\Z survive', async () => {
    const a = await freshDb();
    await sql(db, a, 'CREATE TABLE t (k int PRIMARY KEY, v text, b bytea)');
    await using src = source(a);
    const text = Buffer.concat([encodeBulkRow(['1', 'tab\there\\', '\\x005c0aff']), encodeBulkRow(['2', 'ünï', null]), encodeBulkRow(['3', '\\N', ''])]);
    expect((await src.load('t', chunked(text, 1))).rows).toBe(3);
    // An empty field is an empty bytea, which COPY writes as \x.
    expect((await collect(await src.rows('t', { key: 'k' }))).toString()).toBe('1\ttab\\there\\\\\t\\\\x005c0aff\n2\tünï\t\\N\n3\t\\\\N\t\\\\x\n');
    // \b \f \v as COPY writes them, \Z as MySQL writes it: the bytes they stand for.
    await src.load('t', Readable.from([Buffer.from('4\ta\\bb\\fc\\vd\\Ze\x7f\t\\N\n')]));
    expect(await sql(db, a, "SELECT encode(convert_to(v, 'UTF8'), 'hex') FROM t WHERE k = 4")).toEqual([['6108620c630b641a657f']]);
    const again = await collect(await src.rows('t', { key: 'k', lo: 4, hi: 4 }));
    expect(again.toString('latin1')).toBe('4\ta\\bb\\fc\\vd\x1ae\x7f\t\\N\n');
    const b = await freshDb();
    await using dst = source(b);
    await dst.createTable('t', await src.schema('t'));
    await dst.load('t', Readable.from([again]));
    expect((await collect(await dst.rows('t', { key: 'k' }))).equals(again)).toBe(true);
  });
});
