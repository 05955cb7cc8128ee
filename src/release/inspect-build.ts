// Everything about one build folder, for `cairn inspect`: its manifest, the signature over it
// (checked when a key is given), its artifacts and the layout of its disk.
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CairnError } from '../errors.js';
import { inspectDisk, type DiskReport } from '../image/inspect-disk.js';
import { MANIFEST, SIGNATURE, parseManifest, type Manifest } from '../pipeline/manifest.js';
import { loadKeyring } from '../trust/keyring.js';
import { describeSigners, formatSigner, type Signer } from '../trust/signers.js';
import { verifyDetached } from '../trust/verify.js';

const DISK = 'disk.raw';

export type SignatureStatus = { status: 'signed'; signers: Signer[] } | { status: 'unsigned' } | { status: 'unchecked' } | { status: 'invalid'; error: string };

export interface BuildReport {
  dir: string;
  manifest: Manifest;
  signature: SignatureStatus;
  /** By name. */
  artifacts: [string, { size: number; sha256: string }][];
  /** null: the build has no disk.raw; error: it cannot be read. */
  disk: DiskReport | { error: string } | null;
}

/** A build folder, or its disk.raw: both name the same build. */
async function buildDir(target: string): Promise<string> {
  const info = await stat(target).catch(() => {
    throw new CairnError(`${target} does not exist`, 'point at a build folder (images/<name>/<version>) or its disk.raw');
  });
  return info.isDirectory() ? target : dirname(target);
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

export async function inspectBuild(target: string, keyPath?: string): Promise<BuildReport> {
  const dir = await buildDir(target);
  const manifestPath = join(dir, MANIFEST);
  const text = await readFile(manifestPath).catch(() => {
    throw new CairnError(`${dir} is not a cairn build: ${manifestPath} is missing`, 'build one with "cairn build RECIPE" (the disk stage writes the manifest)');
  });
  const manifest = parseManifest(text.toString('utf8'), manifestPath);
  const signature = await signatureStatus(dir, text, keyPath);
  const diskPath = join(dir, DISK);
  // A damaged or missing disk is part of what inspect reports, not a reason to stop.
  const disk = await stat(diskPath).then(
    () =>
      inspectDisk(diskPath, manifest.architecture).catch((err: Error) => {
        if (!(err instanceof CairnError)) throw err;
        return { error: err.message };
      }),
    () => null,
  );
  const artifacts = Object.entries(manifest.artifacts).sort(([a], [b]) => a.localeCompare(b));
  return { dir, manifest, signature, artifacts, disk };
}

export function describeSignature(s: SignatureStatus): string {
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

const mib = (bytes: number): string => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;

/** The JSON form `cairn inspect --json` prints. */
export function buildReportJson({ dir, manifest, signature, artifacts, disk }: BuildReport): object {
  const { name, version, architecture, kernel, usr, sourceDateEpoch, lockfileSha256 } = manifest;
  return {
    dir,
    name,
    version,
    architecture,
    kernel,
    rootHash: usr.rootHash,
    usr,
    sourceDateEpoch,
    lockfileSha256,
    artifacts: Object.fromEntries(artifacts),
    disk,
    signature,
  };
}

export function formatBuildReport({ manifest: m, signature, artifacts, disk }: BuildReport): string {
  const lines = [
    `name          ${m.name}`,
    `version       ${m.version}`,
    `architecture  ${m.architecture}`,
    `kernel        ${m.kernel.version}`,
    `cmdline       ${m.kernel.cmdline}`,
    `root hash     ${m.usr.rootHash}`,
    `signature     ${describeSignature(signature)}`,
    'artifacts:',
    ...artifacts.map(([name, a]) => `  ${name.padEnd(20)} ${String(a.size).padStart(12)}  ${a.sha256}`),
  ];
  if (disk === null) lines.push(`disk          no ${DISK} in this build`);
  else if ('error' in disk) lines.push(`disk          cannot read ${DISK}: ${disk.error}`);
  else {
    lines.push(`disk          ${disk.path} (${mib(disk.size)})`);
    lines.push('  #  label           type                uuid                                  start        size');
    for (const p of disk.partitions) {
      lines.push(
        `  ${String(p.number).padEnd(2)} ${p.label.padEnd(15)} ${p.typeName.padEnd(19)} ${p.uuid}  ${mib(p.start).padStart(11)} ${mib(p.size).padStart(11)}`,
      );
    }
    lines.push(`boot entries  ${disk.ukis.length ? disk.ukis.map((u) => `EFI/Linux/${u}`).join(', ') : 'none in EFI/Linux'}`);
  }
  return lines.join('\n') + '\n';
}
