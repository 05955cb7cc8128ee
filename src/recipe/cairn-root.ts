import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Shipped with cairn, used when a recipe names none (paths relative to cairnRoot()). */
export const DEFAULT_KEYRING = 'keyrings/debian-archive-keyring.gpg';
export const DEFAULT_KERNEL_CONFIG = 'kernel-configs/container-host.config';

let cached: string | undefined;

/**
 * The folder cairn is installed in (the one holding its package.json), where the shipped
 * keyrings/ and kernel-configs/ live. Found by walking up because the compiled module sits
 * one level deeper (dist/src/recipe) than its source (src/recipe).
 */
export function cairnRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  cached = dir;
  return dir;
}
