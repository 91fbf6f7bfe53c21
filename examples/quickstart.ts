/**
 * Quickstart: back up a folder into a dated YYYY/MM/DD/HHMMSS tarball with
 * its DNA, verify it, restore it elsewhere and compare. Local disk only, no
 * server needed.
 *
 *   npm run quickstart                          # demo data in a temp folder
 *   npx tsx examples/quickstart.ts SRC BACKUPS  # your own folder
 */
import { realpathSync } from 'node:fs';
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Archiver, DnaDigest, StowageError, backupSetPath } from 'stowage';

async function* walk(dir: string): AsyncGenerator<string> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, e.name);
    if (e.isDirectory()) yield* walk(full);
    else if (e.isFile()) yield full;
  }
}

/** Compares two trees file by file through their DNA; returns the differing paths. */
async function compareTrees(a: string, b: string): Promise<string[]> {
  const diffs: string[] = [];
  for await (const fa of walk(a)) {
    const rel = relative(a, fa);
    const [da, db] = await Promise.all([DnaDigest.ofFile(fa), DnaDigest.ofFile(join(b, rel)).catch(() => undefined)]);
    if (db === undefined || da.dig !== db.dig || da.size !== db.size) diffs.push(rel);
  }
  return diffs;
}

async function makeDemoData(dir: string): Promise<void> {
  await mkdir(join(dir, 'conf'), { recursive: true });
  await mkdir(join(dir, 'runs'), { recursive: true });
  await writeFile(join(dir, 'conf', 'trac.ini'), '[trac]\ndatabase = sqlite:db/trac.db\n');
  for (let run = 1; run <= 5; run++) {
    const lines = Array.from({ length: 2000 }, (_, i) => `run ${run} event ${i} adc=${(i * 7919) % 4096}`);
    await writeFile(join(dir, 'runs', `run${String(run).padStart(5, '0')}.log`), lines.join('\n') + '\n');
  }
}

export async function quickstart(srcDir?: string, backupRoot?: string): Promise<{ archive: string; restoredTo: string; differences: string[] }> {
  const scratch = await mkdtemp(join(tmpdir(), 'stowage-quickstart-'));
  const src = srcDir ?? join(scratch, 'experiment');
  const backups = backupRoot ?? join(scratch, 'backups');
  // Backups inside the folder they back up would be taken into every later archive.
  const [s, b] = [resolve(src), resolve(backups)];
  if (b === s || b.startsWith(s + sep)) {
    await rm(scratch, { recursive: true, force: true });
    throw new StowageError('EBAD_CONFIG', `BACKUPS ${b} lies inside SRC ${s}: each archive would hold the ones before it. Give a BACKUPS folder outside SRC.`, { details: { src: s, backups: b } });
  }
  if (srcDir === undefined) await makeDemoData(src);

  // 1. Back up into a dated folder; the DNA is computed while writing and a
  //    sidecar ARCHIVE.dna is written beside the tarball.
  // In the machine's time zone, as Retention and the Monitor read set names by default.
  const setDir = join(backups, ...backupSetPath(new Date()).split('/'));
  await mkdir(setDir, { recursive: true });
  const archive = join(setDir, `${basename(src)}.tar.gz`);
  const created = await Archiver.create(src, archive, {
    onProgress: (p) => process.stdout.write(`\r  archiving ${p.itemsDone} files, ${(p.bytesDone / 1e6).toFixed(1)} MB`),
  });
  process.stdout.write('\n');
  console.log(`created ${created.path}`);
  console.log(`  ${created.entries} entries, ${created.bytesIn} bytes in, DNA ${created.dna.algorithm} ${created.dna.dig} (${created.dna.size} bytes)`);
  console.log(`  sidecar: ${await readFile(archive + '.dna', 'utf8')}`.trimEnd());

  // 2. Verify: every byte, gzip CRCs, tar header checksums, and the sidecar.
  const verified = await Archiver.verify(archive);
  console.log(`verified ${verified.entries} entries, DNA matches sidecar`);

  // 3. Restore elsewhere and compare with the source.
  const restoredTo = join(scratch, 'restored');
  await Archiver.extract(archive, restoredTo);
  const differences = await compareTrees(src, restoredTo);
  console.log(differences.length === 0 ? `restored to ${restoredTo}: identical to ${src}` : `DIFFERENCES: ${differences.join(', ')}`);

  // The restored copy (a second copy of SRC, in the temp folder) goes,
  // and the scratch folder with it unless the backups are in it.
  if (process.env['STOWAGE_KEEP'] === undefined) {
    await rm(backupRoot === undefined && srcDir !== undefined ? restoredTo : scratch, { recursive: true, force: true });
    console.log(`removed the restored copy (set STOWAGE_KEEP=1 to keep it)${backupRoot === undefined && srcDir !== undefined ? `; the backups are in ${backups}` : ''}`);
  }
  return { archive, restoredTo, differences };
}

// Run as a script (also through a symlink, or from a path with a space in it,
// where import.meta.url is percent-encoded): compare real file paths.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  const [src, dst] = process.argv.slice(2);
  try {
    const r = await quickstart(src, dst);
    process.exitCode = r.differences.length === 0 ? 0 : 1;
  } catch (err) {
    if (!(err instanceof StowageError)) throw err;
    console.error(`failed: ${err.code}: ${err.message}`);
    process.exitCode = 2;
  }
}
