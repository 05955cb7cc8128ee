// Streams a release image into a region of the boot disk (a slot partition) chunk by chunk, as
// chunks become available: from the running slot when it has them (the delta), else made from a
// patch over chunks it has, else from the repository, each verified before it is written. Nothing is staged in a temporary copy of the
// image. Progress is checkpointed (data synced, then the next chunk number saved), so a restart
// resumes where the last checkpoint was; the slot is verified as a whole afterwards anyway.
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { CairnError } from '../errors.js';
import { writeAt } from '../file-range.js';
import type { ChunkIndex, ChunkIndexEntry } from '../release/chunk-index.js';
import type { DeltaSource } from '../release/delta-plan.js';
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
  /** The running slot's chunks, patches over them, and the repository. */
  source: DeltaSource;
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
    throw new CairnError(
      `${index.image} is ${index.size} bytes, the slot partition holds ${target.size}`,
      'the release does not fit this disk layout; slots are fixed at provisioning',
    );
  }
  const progress: WriteProgress = { next: o.from, localBytes: 0, downloadedBytes: 0 };
  const parallel = Math.max(1, o.parallel ?? DEFAULT_PARALLEL);
  const started = Date.now();
  let downloaded = 0;
  const fetchChunk = async (entry: ChunkIndexEntry): Promise<{ data: Buffer; local: boolean; bytes: number }> => {
    const { data, origin, bytes } = await o.source.fetch(entry);
    downloaded += bytes;
    if (o.bandwidthLimit && bytes > 0) {
      const due = (downloaded / o.bandwidthLimit) * 1000 - (Date.now() - started);
      if (due > 0) await sleep(due);
    }
    return { data, local: origin === 'local', bytes };
  };
  const handle = await open(target.path, 'r+');
  try {
    const ahead: Promise<{ data: Buffer; local: boolean; bytes: number }>[] = [];
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
      const { data, local, bytes } = await ahead.shift()!;
      fill();
      cutPoint(`write ${index.image} chunk ${progress.next}`);
      await writeAt(handle, data, target.offset + entry.offset);
      if (local) progress.localBytes += data.length;
      progress.downloadedBytes += bytes;
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
