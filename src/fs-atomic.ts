import { randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * Creates `path` through `fill`, which writes a new temporary file beside it; the file is
 * synced and renamed into place only when `fill` succeeds, so a reader or a crash sees the old
 * file or the complete new one, never a mix, and a failure leaves nothing behind.
 */
export async function writeAtomic(path: string, fill: (handle: FileHandle) => Promise<void>, mode = 0o644): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    const handle = await open(tmp, 'wx', mode);
    try {
      await fill(handle);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncRenamed(path);
}

/**
 * Renames `from` to `to` so that a crash afterwards keeps the file under its new name, whole.
 * The file is synced again under its new name: Linux's vfat writes a renamed file's size and
 * first cluster into the new directory entry only when the inode is written back, so a synced
 * directory alone can hold the new name with size 0 (seen on the ESP after a power cut).
 */
export async function renameDurably(from: string, to: string): Promise<void> {
  await rename(from, to);
  await syncRenamed(to);
}

async function syncRenamed(to: string): Promise<void> {
  const file = await open(to, 'r');
  try {
    await file.sync();
  } finally {
    await file.close();
  }
  await syncDirectory(dirname(to));
}

/** Makes a directory's entries durable: after a rename, create or unlink in it, a crash keeps the change. */
export async function syncDirectory(path: string): Promise<void> {
  const dir = await open(path, 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await writeAtomic(path, (handle) => handle.writeFile(data), mode);
}
