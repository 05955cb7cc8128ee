// A fresh machine's disk: a copy of disk.raw made with plain reads and writes, all-zero blocks
// left as holes (the images are gigabytes of mostly nothing), optionally on a larger disk, as a
// cloud volume is larger than the image. (A whole copy through copyFile once preceded a first
// boot whose systemd-boot found no entry on the ESP, on a CI machine only; this avoids both the
// kernel's copy offload and gigabytes of writeback.)
import { open } from 'node:fs/promises';

export async function copySparse(from: string, to: string, extraBytes = 0): Promise<void> {
  const src = await open(from, 'r');
  const dst = await open(to, 'wx');
  try {
    const { size } = await src.stat();
    const block = Buffer.alloc(1 << 20);
    const zeros = Buffer.alloc(block.length);
    for (let at = 0; at < size; at += block.length) {
      const { bytesRead } = await src.read(block, 0, Math.min(block.length, size - at), at);
      const data = block.subarray(0, bytesRead);
      if (!data.equals(zeros.subarray(0, data.length))) await dst.write(data, 0, data.length, at);
    }
    await dst.truncate(size + extraBytes);
    await dst.sync();
  } finally {
    await Promise.all([src.close(), dst.close()]);
  }
}
