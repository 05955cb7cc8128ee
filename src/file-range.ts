// Byte ranges of files and block devices: slot partitions inside a boot disk, chunks inside an
// image. A read or write call may move fewer bytes than asked; these finish the job or say why.
import { open, type FileHandle } from 'node:fs/promises';
import { CairnError } from './errors.js';

/** Writes all of `data` at `position`. */
export async function writeAt(handle: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) done += (await handle.write(data, done, data.length - done, position + done)).bytesWritten;
}

/** Reads exactly `length` bytes at `offset` of `path`; a file that ends sooner is an error. */
export async function readRange(path: string, offset: number, length: number): Promise<Buffer> {
  const file = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await file.read(buf, done, length - done, offset + done);
      if (bytesRead === 0)
        throw new CairnError(
          `${path}: short read at ${offset + done} (wanted ${length} bytes from ${offset})`,
          'the file changed or is shorter than its index says',
        );
      done += bytesRead;
    }
    return buf;
  } finally {
    await file.close();
  }
}
