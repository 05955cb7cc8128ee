// OpenSSH in an image that serves a fleet: no host keys in the image (each host makes its own on
// its first boot, into its writable /etc), and the recipe users' keys in /etc/ssh/authorized_keys.d,
// which sshd reads beside each user's ~/.ssh/authorized_keys (where provisioning puts keys).
import type { Recipe } from '../recipe/types.js';
import type { Tree } from './tree.js';

const ROOT = { uid: 0, gid: 0 };
const UNIT_DIR = 'usr/lib/systemd/system';
export const HOST_KEYS_UNIT = 'cairn-ssh-host-keys.service';

const HOST_KEYS = `[Unit]
Description=SSH host keys of this host (made here on its first boot, never shipped in the image)
DefaultDependencies=no
After=local-fs.target
Before=ssh.service ssh.socket
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
`;

const SSHD_CONFIG = `# cairn: keys from the image's recipe live in /etc, beside the user's own.
AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/authorized_keys.d/%u
`;

/** Sets up sshd where the image has it; returns whether it did. */
export async function configureSsh(tree: Tree, recipe: Pick<Recipe, 'users'>): Promise<boolean> {
  if (tree.resolve('usr/sbin/sshd') === null) return false;
  for (const name of ['rsa', 'ecdsa', 'ed25519']) for (const suffix of ['', '.pub']) tree.remove(`etc/ssh/ssh_host_${name}_key${suffix}`);
  tree.mkdir('etc/ssh/sshd_config.d', 0o755, ROOT);
  await tree.writeFile('etc/ssh/sshd_config.d/50-cairn.conf', [Buffer.from(SSHD_CONFIG)], 0o644, ROOT);
  tree.mkdir('etc/ssh/authorized_keys.d', 0o755, ROOT);
  for (const user of recipe.users) {
    if (user.sshAuthorizedKeys.length === 0) continue;
    await tree.writeFile(`etc/ssh/authorized_keys.d/${user.name}`, [Buffer.from(user.sshAuthorizedKeys.join('\n') + '\n')], 0o644, ROOT);
  }
  await tree.writeFile(`${UNIT_DIR}/${HOST_KEYS_UNIT}`, [Buffer.from(HOST_KEYS)], 0o644, ROOT);
  for (const wanting of ['ssh.service', 'ssh.socket']) {
    tree.mkdir(`${UNIT_DIR}/${wanting}.wants`, 0o755, ROOT);
    tree.symlink(`${UNIT_DIR}/${wanting}.wants/${HOST_KEYS_UNIT}`, `../${HOST_KEYS_UNIT}`, ROOT);
  }
  return true;
}
