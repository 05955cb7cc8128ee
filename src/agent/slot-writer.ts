// Streams a release image into a region of the boot disk (a slot partition) chunk by chunk, as
// chunks become available: from the running slot when it has them (the delta), else from the
// repository, each verified before it is written. Nothing is staged in a temporary copy of the
// image. Progress is checkpointed (data synced, then the next chunk number saved), so a restart
// resumes where the last checkpoint was; the slot is verified as a whole afterwards anyway.
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { CairnError } from '../errors.js';
import type { ChunkIndex, ChunkIndexEntry } from '../release/chunk-index.js';
import { LocalChunkSource, type LocalChunks } from '../release/delta-plan.js';
import { cutPoint } from './cut-points.js';

export interface SlotTarget {
  path: string;
  offset: number;
  size: number;
}

export interface WriteProgress {
  /** Chunks of the index already in place. */
  next: number;
  localBytes: number;
  downloadedBytes: number;
}

export interface SlotWriteOptions {
  index: ChunkIndex;
  target: SlotTarget;
  local: LocalChunks;
  download: (entry: ChunkIndexEntry) => Promise<Buffer>;
  /** Where to resume (from the last checkpoint). */
  from: number;
  /** Saves progress; called after the written data was synced. */
  checkpoint: (progress: WriteProgress) => Promise<void>;
  /** Downloads running ahead of the writer. */
  parallel?: number;
  /** Bytes per second for downloads; undefined: no limit. */
  bandwidthLimit?: number | null;
  /** Write this many bytes between checkpoints. */
  checkpointBytes?: number;
}

const DEFAULT_PARALLEL = 6;
const DEFAULT_CHECKPOINT_BYTES = 16 * 1024 * 1024;

export async function writeSlotImage(o: SlotWriteOptions): Promise<WriteProgress> {
  const { index, target } = o;
  if (index.size > target.size) {
    throw new CairnError(`${index.image} is ${index.size} bytes, the slot partition holds ${target.size}`, 'the release does not fit this disk layout; slots are fixed at provisioning');
  }
  const reader = new LocalChunkSource(o.local);
  const progress: WriteProgress = { next: o.from, localBytes: 0, downloadedBytes: 0 };
  const parallel = Math.max(1, o.parallel ?? DEFAULT_PARALLEL);
  const started = Date.now();
  let downloaded = 0;
  const fetchChunk = async (entry: ChunkIndexEntry): Promise<{ data: Buffer; local: boolean }> => {
    const here = o.local.get(entry.sha256);
    if (here && here.size === entry.size) {
      try {
        return { data: await reader.get(entry.sha256, entry.size), local: true };
      } catch {
        // The running slot changed under us? Take the chunk from the repository instead.
      }
    }
    const data = await o.download(entry);
    downloaded += entry.storedSize;
    if (o.bandwidthLimit) {
      const due = (downloaded / o.bandwidthLimit) * 1000 - (Date.now() - started);
      if (due > 0) await sleep(due);
    }
    return { data, local: false };
  };
  const handle = await open(target.path, 'r+');
  try {
    const ahead: Promise<{ data: Buffer; local: boolean }>[] = [];
    let queued = o.from;
    const fill = (): void => {
      while (ahead.length < parallel && queued < index.chunks.length) {
        const p = fetchChunk(index.chunks[queued++]!);
        p.catch(() => undefined); // awaited in order below
        ahead.push(p);
      }
    };
    let sinceCheckpoint = 0;
    fill();
    while (progress.next < index.chunks.length) {
      const entry = index.chunks[progress.next]!;
      const { data, local } = await ahead.shift()!;
      fill();
      cutPoint(`write ${index.image} chunk ${progress.next}`);
      let done = 0;
      while (done < data.length) {
        const { bytesWritten } = await handle.write(data, done, data.length - done, target.offset + entry.offset + done);
        done += bytesWritten;
      }
      if (local) progress.localBytes += data.length;
      else progress.downloadedBytes += entry.storedSize;
      progress.next++;
      sinceCheckpoint += data.length;
      if (sinceCheckpoint >= (o.checkpointBytes ?? DEFAULT_CHECKPOINT_BYTES) || progress.next === index.chunks.length) {
        await handle.sync();
        await o.checkpoint({ ...progress });
        sinceCheckpoint = 0;
      }
    }
    await Promise.allSettled(ahead);
  } finally {
    await handle.close();
  }
  return progress;
}
