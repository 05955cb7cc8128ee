// Configuration files that packages ship as defaults under /usr/share and whose maintainer
// scripts would copy into /etc: cairn copies them when /etc lacks them, and lists the login
// shells that are installed in /etc/shells as add-shell would.
import { readFileSync } from 'node:fs';
import type { Tree } from './tree.js';

const ROOT = { uid: 0, gid: 0 };

// /etc file ← default shipped by its package (base-files, libc-bin and openssh-server postinst).
const DEFAULTS: [string, string][] = [
  ['etc/profile', 'usr/share/base-files/profile'],
  ['etc/motd', 'usr/share/base-files/motd'],
  ['etc/nsswitch.conf', 'usr/share/libc-bin/nsswitch.conf'],
  // openssh-server's postinst writes it with ucf.
  ['etc/ssh/sshd_config', 'usr/share/openssh/sshd_config'],
];

// Shells whose packages register them with add-shell, under both their merged and /bin paths.
const SHELLS = ['sh', 'bash', 'rbash', 'dash', 'zsh', 'fish', 'ksh93', 'mksh', 'tcsh'];

/** Installs the defaults; returns the /etc files written. */
export async function installPackageDefaults(tree: Tree): Promise<string[]> {
  const written: string[] = [];
  for (const [target, source] of DEFAULTS) {
    const from = tree.resolve(source);
    if (from === null || tree.lstat(target) !== undefined) continue;
    await tree.writeFile(target, [readFileSync(from)], 0o644, ROOT);
    written.push(`/${target}`);
  }
  if (tree.lstat('etc/shells') === undefined) {
    const shells = SHELLS.filter((s) => tree.resolve(`usr/bin/${s}`) !== null).flatMap((s) => [`/bin/${s}`, `/usr/bin/${s}`]);
    if (shells.length > 0) {
      await tree.writeFile('etc/shells', [Buffer.from(['# /etc/shells: valid login shells', ...shells, ''].join('\n'))], 0o644, ROOT);
      written.push('/etc/shells');
    }
  }
  return written;
}
