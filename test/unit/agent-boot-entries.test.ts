// Boot entries on a temp dir standing in for the ESP; the boot loader's part (counting down
// before a boot) is done here the way systemd-boot's boot_entry_bump_counters() renames.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import {
  blessEntry,
  bootedEntry,
  cleanLeftovers,
  ENTRY_DIR,
  entriesOf,
  installUki,
  isTrialBoot,
  listEntries,
  loaderEntrySelected,
  locateEsp,
  parseEntryName,
  removeEntry,
  type BootEntry,
} from '../../src/agent/boot-entries.js';
import { CairnError } from '../../src/errors.js';
import { addPeSections } from '../../src/image/uki.js';
import { stubPe } from '../fixtures/pe-stub.js';

let work: string;
let esp: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-agent-esp-'));
  esp = join(work, 'esp');
  await mkdir(esp);
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

const HASH_1 = '1'.repeat(64);
const HASH_2 = 'ab'.repeat(32);

/** A UKI-shaped PE whose .cmdline names `usrHash`. */
async function uki(name: string, usrHash: string, extra = ''): Promise<string> {
  const path = join(work, name);
  await writeFile(
    path,
    addPeSections(stubPe(), [
      { name: '.osrel', data: Buffer.from('ID=cairn\n') },
      { name: '.cmdline', data: Buffer.from(`console=ttyS0 usrhash=${usrHash} ${extra}`.trim()) },
      { name: '.linux', data: Buffer.alloc(5000, 0x90) },
    ]),
  );
  return path;
}

/** What systemd-boot does before it starts an entry with a counter. */
async function bootLoaderCountsDown(entry: BootEntry): Promise<string> {
  assert.notEqual(entry.triesLeft, null);
  const next = `${entry.id}+${Math.max(entry.triesLeft! - 1, 0)}-${entry.triesDone! + 1}.efi`;
  await rename(entry.path, join(esp, ENTRY_DIR, next));
  return next;
}

/** An efivarfs file: 4 bytes of attributes, then UTF-16LE with a NUL. */
async function efivar(value: string): Promise<string> {
  const path = join(work, 'LoaderEntrySelected');
  await writeFile(path, Buffer.concat([Buffer.from([0x06, 0, 0, 0]), Buffer.from(`${value}\0`, 'utf16le')]));
  return path;
}

const files = async (): Promise<string[]> => (await readdir(join(esp, ENTRY_DIR))).sort();

test('counter names parse the way systemd-boot reads them', () => {
  const cases: [string, ReturnType<typeof parseEntryName>][] = [
    ['cairn_1.0+3.efi', { id: 'cairn_1.0', triesLeft: 3, triesDone: 0 }],
    ['cairn_1.0+2-1.efi', { id: 'cairn_1.0', triesLeft: 2, triesDone: 1 }],
    ['cairn_1.0+0-3.efi', { id: 'cairn_1.0', triesLeft: 0, triesDone: 3 }],
    ['cairn_1.0.efi', { id: 'cairn_1.0', triesLeft: null, triesDone: null }],
    ['CAIRN_1.0+1-2.EFI', { id: 'CAIRN_1.0', triesLeft: 1, triesDone: 2 }],
    ['a+1+2.efi', { id: 'a+1', triesLeft: 2, triesDone: 0 }],
    // Not a counter (letters, a dangling dash, past INT_MAX): the whole name is the id.
    ['a+b.efi', { id: 'a+b', triesLeft: null, triesDone: null }],
    ['a+3-.efi', { id: 'a+3-', triesLeft: null, triesDone: null }],
    ['a+2147483648.efi', { id: 'a+2147483648', triesLeft: null, triesDone: null }],
    ['entry.conf', undefined],
    ['.efi', undefined],
  ];
  for (const [name, expected] of cases) assert.deepEqual(parseEntryName(name), expected, name);
});

test('an entry lives from +3 through the count-down to blessed', async () => {
  const installed = await installUki(esp, await uki('v2.efi', HASH_2), { name: 'cairn', version: '2.0' });
  assert.deepEqual([installed.file, installed.status, installed.name, installed.version], ['cairn_2.0+3.efi', 'counting', 'cairn', '2.0']);
  assert.deepEqual(await files(), ['cairn_2.0+3.efi']);
  assert.deepEqual(await readFile(installed.path), await readFile(join(work, 'v2.efi')));

  const selectedAtBoot = installed.file.toLowerCase();
  const counted = await bootLoaderCountsDown(installed);
  assert.equal(counted, 'cairn_2.0+2-1.efi');
  const booted = await bootedEntry(esp, { efivar: await efivar(selectedAtBoot) });
  assert.ok(booted);
  assert.deepEqual([booted.source, booted.entry.file, isTrialBoot(booted.entry)], ['loader', 'cairn_2.0+2-1.efi', true]);

  const blessed = await blessEntry(booted.entry);
  assert.deepEqual([blessed.file, blessed.status, blessed.triesLeft], ['cairn_2.0.efi', 'blessed', null]);
  assert.deepEqual(await files(), ['cairn_2.0.efi']);
  const after = await bootedEntry(esp, { efivar: await efivar(selectedAtBoot) });
  assert.deepEqual([after?.entry.file, isTrialBoot(after!.entry)], ['cairn_2.0.efi', false]);
  assert.equal(await blessEntry(blessed), blessed, 'blessing a blessed entry changes nothing');
});

test('an entry that fails three times is exhausted while the older one stays blessed', async () => {
  await installUki(esp, await uki('v1.efi', HASH_1), { name: 'cairn', version: '1.0' }).then(blessEntry);
  let entry = await installUki(esp, await uki('v2.efi', HASH_2), { name: 'cairn', version: '2.0' });
  for (let boot = 0; boot < 3; boot++) {
    await bootLoaderCountsDown(entry);
    entry = entriesOf(await listEntries(esp), 'cairn', '2.0')[0]!;
  }
  const entries = await listEntries(esp);
  assert.deepEqual(
    entries.map((e) => [e.file, e.status, e.version]),
    [
      ['cairn_1.0.efi', 'blessed', '1.0'],
      ['cairn_2.0+0-3.efi', 'exhausted', '2.0'],
    ],
  );
  // Back on 1.0, told by the usrhash because the loader variable is missing.
  const booted = await bootedEntry(esp, { efivar: join(work, 'no-such-var'), usrHash: HASH_1 });
  assert.deepEqual([booted?.source, booted?.entry.version, isTrialBoot(booted!.entry)], ['usrhash', '1.0', false]);
  await removeEntry(entry);
  await removeEntry(entry);
  assert.deepEqual(await files(), ['cairn_1.0.efi']);
});

test('installing again is idempotent, and a stale or used-up entry of the release is replaced by a fresh one', async () => {
  const v2 = await uki('v2.efi', HASH_2);
  const first = await installUki(esp, v2, { name: 'cairn', version: '2.0' });
  const inode = (await stat(first.path)).ino;
  const again = await installUki(esp, v2, { name: 'cairn', version: '2.0' });
  assert.deepEqual([again.file, (await stat(again.path)).ino], [first.file, inode], 'the same file was kept, not rewritten');
  // Counted down once, then installed again (a new transaction for the same release): a full counter.
  await bootLoaderCountsDown(again);
  const fresh = await installUki(esp, v2, { name: 'cairn', version: '2.0' });
  assert.deepEqual(await files(), ['cairn_2.0+3.efi']);
  // Different bytes under the same name are replaced.
  const rebuilt = await uki('v2b.efi', HASH_2, 'quiet');
  await installUki(esp, rebuilt, { name: 'cairn', version: '2.0', tries: 5 });
  assert.deepEqual(await files(), ['cairn_2.0+5.efi']);
  assert.deepEqual(await readFile(join(esp, ENTRY_DIR, 'cairn_2.0+5.efi')), await readFile(rebuilt));
  assert.equal(fresh.triesLeft, 3);
  await assert.rejects(installUki(esp, v2, { name: 'cairn', version: '2.0', tries: 0 }), CairnError);
  await assert.rejects(installUki(esp, v2, { name: 'cairn', version: '2_0' }), CairnError);
});

test('an install that fails leaves no entry and no temp file', async () => {
  await installUki(esp, await uki('v1.efi', HASH_1), { name: 'cairn', version: '1.0' });
  // A directory as the source: reading it fails after the temp file was created.
  await assert.rejects(installUki(esp, work, { name: 'cairn', version: '2.0' }));
  assert.deepEqual(await files(), ['cairn_1.0+3.efi']);
});

test('temp files left by a cut are invisible to the boot loader and cleaned unless their entry exists', async () => {
  await installUki(esp, await uki('v1.efi', HASH_1), { name: 'cairn', version: '1.0' });
  const dir = join(esp, ENTRY_DIR);
  // Cut while writing 2.0 (no entry yet), and cut inside the rename of 1.0 (both names exist).
  await writeFile(join(dir, '.cairn_2.0+3.efi.0123456789ab.tmp'), 'half a UKI');
  await writeFile(join(dir, '.cairn_1.0+3.efi.ba9876543210.tmp'), 'same clusters as the entry');
  await writeFile(join(dir, 'notes.txt'), 'not ours');
  assert.deepEqual(
    (await listEntries(esp)).map((e) => e.file),
    ['cairn_1.0+3.efi'],
    'hidden .tmp names are never entries',
  );
  const cleaned = await cleanLeftovers(esp);
  assert.deepEqual(cleaned, {
    removed: [{ file: '.cairn_2.0+3.efi.0123456789ab.tmp', target: 'cairn_2.0+3.efi' }],
    kept: [{ file: '.cairn_1.0+3.efi.ba9876543210.tmp', target: 'cairn_1.0+3.efi' }],
  });
  assert.deepEqual(await files(), ['.cairn_1.0+3.efi.ba9876543210.tmp', 'cairn_1.0+3.efi', 'notes.txt']);
});

test('the booted entry: the loader variable first, then the usrhash, else unknown', async () => {
  assert.deepEqual(await listEntries(esp), [], 'an ESP without EFI/Linux has no entries');
  await installUki(esp, await uki('v1.efi', HASH_1), { name: 'cairn', version: '1.0' }).then(blessEntry);
  await installUki(esp, await uki('v2.efi', HASH_2), { name: 'cairn', version: '2.0' });
  // systemd-boot lower-cases ids; multi-profile UKIs add @N.
  assert.equal((await bootedEntry(esp, { efivar: await efivar('CAIRN_2.0+3.efi@0') }))?.entry.version, '2.0');
  // A variable naming an entry that is not here falls back to the usrhash.
  const other = await bootedEntry(esp, { efivar: await efivar('other_9.efi'), usrHash: HASH_1 });
  assert.deepEqual([other?.source, other?.entry.version], ['usrhash', '1.0']);
  assert.equal(await bootedEntry(esp, { efivar: await efivar('other_9.efi') }), undefined);
  assert.equal(await bootedEntry(esp, { efivar: join(work, 'none'), usrHash: 'f'.repeat(64) }), undefined);
  // A damaged variable is an error, not a guess.
  await writeFile(join(work, 'odd'), Buffer.from([6, 0, 0, 0, 0x61]));
  await assert.rejects(loaderEntrySelected(join(work, 'odd')), /is not a UTF-16 boot entry id/);
});

test('the ESP is the configured folder, else /efi, else /boot/efi', async () => {
  const efi = join(work, 'efi');
  const bootEfi = join(work, 'boot-efi');
  await mkdir(join(bootEfi, 'EFI'), { recursive: true });
  await mkdir(efi);
  assert.equal(await locateEsp(null, [efi, bootEfi]), bootEfi, 'an empty mount point is not the ESP');
  await mkdir(join(efi, 'EFI'));
  assert.equal(await locateEsp(null, [efi, bootEfi]), efi);
  assert.equal(await locateEsp(bootEfi), bootEfi);
  await assert.rejects(locateEsp(join(work, 'missing')), /is not a directory/);
  await assert.rejects(locateEsp(null, [join(work, 'a'), join(work, 'b')]), /no EFI System Partition mounted/);
});
