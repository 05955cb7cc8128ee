// Where cairn's own files are, in one table: the checkout or installed package it runs from
// (keyrings, kernel configurations, schemas, compiled code) and the native programs, and where
// an image carries them. Everything that needs one of these paths asks here.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Shipped with cairn, used when a recipe names none (paths relative to cairnRoot()). */
export const DEFAULT_KEYRING = 'keyrings/debian-archive-keyring.gpg';
export const DEFAULT_KERNEL_CONFIG = 'kernel-configs/container-host.config';

/** Where an image carries cairn (the bundled app, the container helper), as paths inside the image. */
export const IMAGE_PATHS = {
  app: 'usr/lib/cairn/app',
  spawn: 'usr/lib/cairn/spawn',
  layers: 'usr/lib/cairn/layers',
  /** The lock the image was built from: its base identity for layers. */
  baseLock: 'usr/lib/cairn/cairn.lock',
} as const;

let cached: string | undefined;

/**
 * The folder cairn is installed in (the one holding its package.json), where the shipped
 * keyrings/ and kernel-configs/ live. Found by walking up because the compiled module sits
 * one level deeper (dist/src) than its source (src).
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

/** A file shipped with cairn, by its path in the checkout (`src/recipe/recipe.schema.json`). */
export function shipped(path: string): string {
  return join(cairnRoot(), path);
}

/** The native programs as `make -C native` builds them. */
export const NATIVE = {
  /** The initramfs's PID 1. */
  init: (): string => shipped('native/build/init'),
  /** The container helper; on a host, the image's copy is used when cairn runs from there. */
  spawn: (): string => shipped('native/build/spawn'),
} as const;

/** The container helper to run: the checkout's build, else the one the image installed. */
export function spawnCandidates(): string[] {
  return [NATIVE.spawn(), `/${IMAGE_PATHS.spawn}`];
}
