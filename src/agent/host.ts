// The running host as the agent sees it: which image and version it runs (os-release, which the
// build writes into /usr), the root hash it booted (kernel command line), its boot disk, ESP and
// machine id. Every path can be overridden for tests and unusual layouts.
import { readFile } from 'node:fs/promises';
import { CairnError } from '../errors.js';
import { locateEsp } from './boot-entries.js';
import { deviceOf, findBootDisk } from '../image/block-device.js';
import { runningUsrHash } from './slots.js';
import type { HostContext } from './update.js';

export interface HostPaths {
  osRelease?: string;
  cmdline?: string;
  machineId?: string;
  disk?: string;
  esp?: string | null;
}

const ARCHITECTURES: Partial<Record<NodeJS.Architecture, string>> = { x64: 'amd64', arm64: 'arm64', riscv64: 'riscv64', ppc64: 'ppc64el', s390x: 's390x' };

export function parseOsRelease(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) fields[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1');
  }
  return fields;
}

export async function detectHost(paths: HostPaths = {}): Promise<HostContext> {
  const osReleasePath = paths.osRelease ?? '/usr/lib/os-release';
  const os = parseOsRelease(await readFile(osReleasePath, 'utf8'));
  const name = os.IMAGE_ID;
  const version = os.IMAGE_VERSION;
  if (!name || !version) throw new CairnError(`${osReleasePath} has no IMAGE_ID and IMAGE_VERSION`, 'the agent runs on images cairn built');
  const architecture = ARCHITECTURES[process.arch];
  if (!architecture) throw new CairnError(`no Debian architecture for ${process.arch}`);
  const machineId = (await readFile(paths.machineId ?? '/etc/machine-id', 'utf8').catch(() => '')).trim();
  if (!/^[0-9a-f]{32}$/.test(machineId)) throw new CairnError('/etc/machine-id is missing or malformed', 'systemd writes it on first boot');
  return {
    name,
    version,
    architecture,
    machineId,
    usrHash: await runningUsrHash(paths.cmdline),
    disk: paths.disk ?? (await findBootDisk(await deviceOf('/usr'))),
    esp: await locateEsp(paths.esp ?? null),
  };
}
