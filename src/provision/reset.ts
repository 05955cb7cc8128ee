// Factory reset: the host back to its first-boot state. `cairn provision reset` writes a request
// on the writable root naming what to keep; the next boot's init (native/reset.c) wipes the rest
// of the root before anything uses it, so /etc is filled from the image again, a new machine-id
// is made and the host is provisioned again from its config.
import { join } from 'node:path';
import { CairnError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { pathProblem } from './config.js';

export const RESET_REQUEST = '.cairn-factory-reset';

/** What an operator may keep by name. */
export const KEEPABLE = {
  'ssh-host-keys': ['rsa', 'ecdsa', 'ed25519'].flatMap((t) => [`etc/ssh/ssh_host_${t}_key`, `etc/ssh/ssh_host_${t}_key.pub`]),
  'agent-state': ['var/lib/cairn/agent'],
} as const;
export type Keepable = keyof typeof KEEPABLE;

/** Asks the next boot to wipe `root` but `keep` and `paths` (absolute paths in the writable root); returns the kept paths. */
export async function requestFactoryReset(root: string, keep: Keepable[], paths: string[] = []): Promise<string[]> {
  for (const path of paths) {
    const problem = pathProblem(path);
    if (problem) throw new CairnError(`--keep-path ${path}: ${problem}`);
    if (path === '/') throw new CairnError('--keep-path /: keeping the whole root is no reset');
  }
  const kept = [...new Set([...keep.flatMap((k) => KEEPABLE[k]), ...paths.map((p) => p.slice(1))])];
  await writeFileAtomic(join(root, RESET_REQUEST), kept.map((p) => `${p}\n`).join(''), 0o600);
  return kept;
}
