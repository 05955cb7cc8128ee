import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { CommandModule } from 'yargs';
import { CairnError } from '../errors.js';
import { runTool } from '../host-tool.js';
import { readGpt } from '../image/gpt.js';
import { ESP_TYPE, partitionTypes } from '../image/partition-types.js';
import { MANIFEST, SIGNATURE, parseManifest, type Manifest } from '../release/manifest.js';
import { loadKeyring } from '../trust/keyring.js';
import { verifyDetached } from '../trust/verify.js';
import { describeSigners, formatSigner, type Signer } from './verify.js';
import { jsonOption } from './options.js';

const DISK = 'disk.raw';

type SignatureStatus =
  | { status: 'signed'; signers: Signer[] }
  | { status: 'unsigned' }
  | { status: 'unchecked' }
  | { status: 'invalid'; error: string };

interface DiskPartition {
  number: number;
  label: string;
  type: string;
  typeName: string;
  uuid: string;
  start: number;
  size: number;
}

interface DiskReport {
  path: string;
  size: number;
  partitions: DiskPartition[];
  /** File names in the ESP's EFI/Linux, boot counter suffix included. */
  ukis: string[];
}

interface Args {
  target: string;
  key?: string;
  json: boolean;
}

/** A build folder, or its disk.raw: both name the same build. */
async function buildDir(target: string): Promise<string> {
  const info = await stat(target).catch(() => {
    throw new CairnError(`${target} does not exist`, 'point at a build folder (images/<name>/<version>) or its disk.raw');
  });
  return info.isDirectory() ? target : dirname(target);
}

function typeNames(arch: string): Map<string, string> {
  const names = new Map([[ESP_TYPE, 'esp']]);
  // An unknown architecture is the manifest's problem, not a reason to hide the layout.
  try {
    const t = partitionTypes(arch);
    names.set(t.usr, `usr-${arch}`).set(t.usrVerity, `usr-verity-${arch}`).set(t.root, `root-${arch}`);
  } catch {
    /* the GUIDs are shown instead */
  }
  return names;
}

/** The ESP's EFI/Linux listing, read with mtools straight from the image (no loop device). */
async function listUkis(disk: string, espOffset: number): Promise<string[]> {
  const out = await runTool('mdir', ['-b', '-i', `${disk}@@${espOffset}`, '::EFI/Linux'], { MTOOLS_SKIP_CHECK: '1' });
  return out.split('\n').filter((line) => line.trim() !== '').map((line) => basename(line.trim())).sort();
}

async function inspectDisk(path: string, arch: string): Promise<DiskReport> {
  const layout = await readGpt(path);
  const names = typeNames(arch);
  const partitions = layout.partitions.map((p) => ({ number: p.number, label: p.label, type: p.type, typeName: names.get(p.type) ?? p.type, uuid: p.uuid, start: p.offset, size: p.size }));
  const esp = layout.partitions.find((p) => p.type === ESP_TYPE);
  return { path, size: layout.diskSize, partitions, ukis: esp ? await listUkis(path, esp.offset) : [] };
}

async function signatureStatus(dir: string, text: Buffer, keyPath: string | undefined): Promise<SignatureStatus> {
  const signature = await readFile(join(dir, SIGNATURE), 'utf8').catch(() => null);
  if (signature === null) return { status: 'unsigned' };
  if (!keyPath) return { status: 'unchecked' };
  // A key that cannot be read is a mistake in the command, not a property of the build: it throws.
  const keys = await loadKeyring(keyPath);
  try {
    const { signers } = await verifyDetached(text, signature, keys, join(dir, MANIFEST));
    return { status: 'signed', signers: describeSigners(signers, keys) };
  } catch (err) {
    if (!(err instanceof CairnError)) throw err;
    return { status: 'invalid', error: err.message };
  }
}

function describeStatus(s: SignatureStatus): string {
  switch (s.status) {
    case 'signed':
      return `signed by ${s.signers.map(formatSigner).join(', ')}`;
    case 'unsigned':
      return 'unsigned';
    case 'unchecked':
      return `signed (not checked: pass --key PUBKEY)`;
    case 'invalid':
      return `signature does NOT verify: ${s.error}`;
  }
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

function printText(m: Manifest, artifacts: [string, { size: number; sha256: string }][], disk: DiskReport | { error: string } | null, sig: SignatureStatus): void {
  const lines = [
    `name          ${m.name}`,
    `version       ${m.version}`,
    `architecture  ${m.architecture}`,
    `kernel        ${m.kernel.version}`,
    `cmdline       ${m.kernel.cmdline}`,
    `root hash     ${m.usr.rootHash}`,
    `signature     ${describeStatus(sig)}`,
    'artifacts:',
    ...artifacts.map(([name, a]) => `  ${name.padEnd(20)} ${String(a.size).padStart(12)}  ${a.sha256}`),
  ];
  if (disk === null) lines.push(`disk          no ${DISK} in this build`);
  else if ('error' in disk) lines.push(`disk          cannot read ${DISK}: ${disk.error}`);
  else {
    lines.push(`disk          ${disk.path} (${mib(disk.size)})`);
    lines.push('  #  label           type                uuid                                  start        size');
    for (const p of disk.partitions) {
      lines.push(`  ${String(p.number).padEnd(2)} ${p.label.padEnd(15)} ${p.typeName.padEnd(19)} ${p.uuid}  ${mib(p.start).padStart(11)} ${mib(p.size).padStart(11)}`);
    }
    lines.push(`boot entries  ${disk.ukis.length ? disk.ukis.map((u) => `EFI/Linux/${u}`).join(', ') : 'none in EFI/Linux'}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

const command: CommandModule<object, Args> = {
  command: 'inspect <target>',
  describe: "Show a build: versions, kernel, root hash, artifacts, disk layout, the ESP's boot entries and signature status",
  builder: (y) =>
    y
      .positional('target', { type: 'string', demandOption: true, describe: 'Build folder (images/<name>/<version>) or its disk.raw' })
      .option('key', { type: 'string', describe: 'Public key or keyring to check the signature on manifest.json with' })
      .option('json', jsonOption)
      .example('$0 inspect images/tiny/0.1.0 --key keys/release.pub.asc', 'everything about one build, signature checked'),
  handler: async (args) => {
    const dir = await buildDir(args.target);
    const manifestPath = join(dir, MANIFEST);
    const text = await readFile(manifestPath).catch(() => {
      throw new CairnError(`${dir} is not a cairn build: ${manifestPath} is missing`, 'build one with "cairn build RECIPE" (the disk stage writes the manifest)');
    });
    const manifest = parseManifest(text.toString('utf8'), manifestPath);
    const signature = await signatureStatus(dir, text, args.key);
    const diskPath = join(dir, DISK);
    // A damaged or missing disk is part of what inspect reports, not a reason to stop.
    const disk = await stat(diskPath).then(
      () => inspectDisk(diskPath, manifest.architecture).catch((err: Error) => {
        if (!(err instanceof CairnError)) throw err;
        return { error: err.message };
      }),
      () => null,
    );
    const artifacts = Object.entries(manifest.artifacts).sort(([a], [b]) => a.localeCompare(b));
    if (args.json) {
      const { name, version, architecture, kernel, usr, sourceDateEpoch, lockfileSha256 } = manifest;
      process.stdout.write(JSON.stringify({ dir, name, version, architecture, kernel, rootHash: usr.rootHash, usr, sourceDateEpoch, lockfileSha256, artifacts: Object.fromEntries(artifacts), disk, signature }, null, 2) + '\n');
      return;
    }
    printText(manifest, artifacts, disk, signature);
  },
};

export default command;
