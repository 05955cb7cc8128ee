// The update transaction, as a state machine whose step is saved (temp file, fsync, rename)
// before each state-changing action, so the agent can be killed or the power cut anywhere and
// the next run resumes (or restarts the step) by itself:
//
//   planned        a verified release was chosen for the inactive slot
//   entry-removed  every boot entry that boots the inactive slot is gone: from here on nothing
//                  boots that slot, so writing it cannot leave a bootable half-written slot
//   writing        usr and verity images are streamed into the slot (chunk checkpoints)
//   written        both images are in place
//   uki-ready      the new UKI is assembled (running UKI's chunks + downloads) in the state dir
//   verified       the whole slot verifies against the release's dm-verity root hash
//   renamed        the slot's partition UUIDs now spell the new root hash (what the initramfs
//                  looks for)
//   installed      the UKI is on the ESP as <name>_<version>+3.efi: systemd-boot tries it next
//
// After `installed` the reboot strategy decides when to boot it; after the boot, after-boot.ts
// runs the health checks and blesses it, or the counter runs out and the host falls back.
import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type * as openpgp from 'openpgp';
import { CairnError } from '../errors.js';
import { writeAt } from '../file-range.js';
import { writeFileAtomic } from '../fs-atomic.js';
import type { HttpOptions } from '../http.js';
import { readGpt, repairGpt, setPartitionUuids } from '../image/gpt.js';
import { hashDevice, parseSuperblock, verifyImage, verityLayout, verityPartitionUuids } from '../image/verity.js';
import { decideUpdate, wariness as machineWariness, type ReleaseRef } from '../release/channel.js';
import { reassemble, type ChunkIndex } from '../release/chunk-index.js';
import type { ChunkParams } from '../release/chunker.js';
import { DeltaSource, indexLocal, planDelta, type DeltaPlan, type LocalChunks, type LocalSource } from '../release/delta-plan.js';
import { RELEASE_IMAGES, type ReleaseImage, type ReleaseRecord } from '../release/release-record.js';
import { initialTrustState, remoteChunks, UpdateRepository, type TrustState } from '../release/update-client.js';
import { installUki, listEntries, removeEntry, type BootEntry } from './boot-entries.js';
import type { AgentConfig } from './config.js';
import { cutPoint } from './cut-points.js';
import { identifySlots, usrHashFromCmdline, type Slot, type SlotStatus } from './slots.js';
import { loadState, saveState, type AgentState, type Transaction } from './state.js';
import { readUkiCmdline } from './uki-cmdline.js';
import { writeSlotImage } from './slot-writer.js';

/** What the agent knows about the machine it runs on. */
export interface HostContext {
  /** The boot disk: a block device, or a disk image in tests. */
  disk: string;
  /** The mounted ESP. */
  esp: string;
  /** The running root hash (from the kernel command line). */
  usrHash: string;
  /** The running image (os-release IMAGE_ID, IMAGE_VERSION) and architecture. */
  name: string;
  version: string;
  architecture: string;
  machineId: string;
}

export type Log = (event: string, fields?: Record<string, unknown>) => void;

export interface UpdateOptions {
  host: HostContext;
  config: AgentConfig;
  keys: openpgp.PublicKey[];
  log: Log;
  http?: HttpOptions;
  now?: () => Date;
}

export type UpdateOutcome =
  { status: 'up-to-date'; reason: string } | { status: 'installed'; version: string; downloadedBytes: number; localBytes: number; fullBytes: number };

const TRUST_FILE = 'trust.json';
const STAGED_UKI = 'staged.efi';

export const STEPS = ['planned', 'entry-removed', 'writing', 'written', 'uki-ready', 'verified', 'renamed', 'installed'] as const;
export type Step = (typeof STEPS)[number];

interface TxData {
  slot: 'A' | 'B';
  ref: ReleaseRef | null;
  image?: string;
  next?: number;
  downloadedBytes: number;
  localBytes: number;
  fullBytes: number;
}

async function loadTrust(dir: string): Promise<TrustState> {
  const text = await readFile(join(dir, TRUST_FILE), 'utf8').catch(() => null);
  if (text === null) return initialTrustState();
  try {
    const t = JSON.parse(text) as TrustState;
    if (typeof t.rootSerial === 'number' && Array.isArray(t.rootKeys) && typeof t.channels === 'object' && t.channels !== null) return t;
  } catch {
    // fall through
  }
  // Unreadable trust state: starting from the configured keys is safe (they still sign or not);
  // only rollback protection for channels restarts, and it re-arms with the next fetch.
  return initialTrustState();
}

/** The root hash an entry's UKI boots; undefined for a file that is no cairn UKI (left alone). */
async function entryUsrHash(entry: BootEntry): Promise<string | undefined> {
  const cmdline = await readUkiCmdline(entry.path).catch(() => undefined);
  try {
    return cmdline === undefined ? undefined : usrHashFromCmdline(cmdline);
  } catch {
    return undefined;
  }
}

export class UpdateTransaction {
  private state!: AgentState;
  private readonly stateDir: string;
  private repo!: UpdateRepository;

  constructor(private readonly o: UpdateOptions) {
    this.stateDir = o.config.stateDir;
  }

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  private async save(): Promise<void> {
    cutPoint(`state ${this.state.transaction?.step ?? 'idle'}`);
    await saveState(this.stateDir, this.state);
  }

  private async step(tx: Transaction, step: Step, data: Partial<TxData> = {}): Promise<void> {
    tx.step = step;
    tx.updatedAt = this.now().toISOString();
    tx.data = { ...tx.data, ...data };
    this.state.transaction = tx;
    await this.save();
    this.o.log('step', { step, version: tx.version });
  }

  private async open(): Promise<void> {
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
    const loaded = await loadState(this.stateDir);
    if (loaded.recovered) this.o.log('state-recovered', loaded.recovered);
    this.state = loaded.state;
    const trust = await loadTrust(this.stateDir);
    this.repo = new UpdateRepository({
      url: this.o.config.repository,
      name: this.o.host.name,
      architecture: this.o.host.architecture,
      keys: this.o.keys,
      state: trust,
      saveState: async (t) => {
        cutPoint('trust');
        await writeFileAtomic(join(this.stateDir, TRUST_FILE), JSON.stringify(t) + '\n', 0o600);
      },
      http: this.o.http,
      now: this.o.now,
    });
  }

  /** The agent's saved state (read by status). */
  get saved(): AgentState {
    return this.state;
  }

  private async slots(): Promise<SlotStatus> {
    const repaired = await repairGpt(this.o.host.disk);
    if (repaired !== 'none') this.o.log('gpt-repaired', { how: repaired });
    return identifySlots(await readGpt(this.o.host.disk), this.o.host.usrHash, this.o.host.disk);
  }

  /** Checks for an update and carries a transaction as far as `installed`. */
  async run(): Promise<UpdateOutcome> {
    await this.open();
    try {
      return await this.advance();
    } catch (err) {
      this.state.lastError = { message: (err as Error).message, step: this.state.transaction?.step ?? null, at: this.now().toISOString() };
      await this.save().catch(() => undefined);
      throw err;
    }
  }

  private async choose(): Promise<{ record: ReleaseRecord; ref: ReleaseRef | null } | { reason: string }> {
    const { config, host } = this.o;
    const source = config.source;
    if (source.kind === 'version') {
      if (source.version === host.version) return { reason: `pinned to ${host.version}, which runs` };
      if (this.state.bad.some((b) => b.version === source.version)) return { reason: `pinned version ${source.version} failed on this host before` };
      return { record: await this.repo.releaseByVersion(source.version), ref: null };
    }
    const channel = await this.repo.channel(source.channel);
    this.state.seen[source.channel] = { version: channel.release?.version ?? host.version, at: this.now().toISOString() };
    const decision = decideUpdate(
      channel,
      { version: host.version, wariness: config.wariness ?? machineWariness(host.machineId), bad: this.state.bad.map((b) => b.version) },
      this.now(),
    );
    this.o.log('decision', decision);
    if (!decision.update) return { reason: decision.reason };
    return { record: await this.repo.release(decision.target), ref: decision.target };
  }

  private async advance(): Promise<UpdateOutcome> {
    const { host } = this.o;
    const slots = await this.slots();
    let tx = this.state.transaction;
    if (tx) this.o.log('resume', { step: tx.step, version: tx.version });
    if (tx && tx.step === 'installed') return this.installedOutcome(tx);
    let record: ReleaseRecord;
    if (!tx) {
      const chosen = await this.choose();
      if ('reason' in chosen) {
        this.state.lastError = null;
        await this.save();
        return { status: 'up-to-date', reason: chosen.reason };
      }
      record = chosen.record;
      tx = { step: 'planned', version: record.version, startedAt: this.now().toISOString(), updatedAt: '', data: {} };
      const data: TxData = { slot: slots.inactive.name, ref: chosen.ref, downloadedBytes: 0, localBytes: 0, fullBytes: 0 };
      await this.step(tx, 'planned', data);
    } else {
      // Resuming: fetch the same release again, verified as before.
      const data = tx.data as unknown as TxData;
      record = data.ref ? await this.repo.release(data.ref) : await this.repo.releaseByVersion(tx.version);
      if (data.slot !== slots.inactive.name)
        throw new CairnError(
          `the saved transaction writes slot ${data.slot}, but that slot is running now`,
          'the host rebooted into the other slot mid-update; remove the state file to start over',
        );
    }
    const data = () => tx!.data as unknown as TxData;
    const target = slots.inactive;
    const at = (s: Step) => STEPS.indexOf(tx!.step as Step) < STEPS.indexOf(s);

    if (at('entry-removed')) {
      await this.removeEntriesFor(target);
      await this.step(tx, 'entry-removed');
    }
    const running = await this.runningFiles(slots.running);
    // Chunking the running slot is the slow part on a small host: once per parameter set.
    const localIndexes = new Map<string, Promise<LocalChunks>>();
    const localFor = (params: ChunkParams): Promise<LocalChunks> => {
      const key = JSON.stringify(params);
      if (!localIndexes.has(key)) localIndexes.set(key, indexLocal(running, params));
      return localIndexes.get(key)!;
    };
    if (at('written')) {
      const usrIndex = await this.repo.chunkIndex(record, 'usr');
      const local = await localFor(usrIndex.params);
      const usrSource = await this.deltaSource(record, 'usr', usrIndex, local);
      if (!data().fullBytes) {
        const verityIndex = await this.repo.chunkIndex(record, 'verity');
        const plan = usrSource.plan;
        // The verity tree is computed here from the written slot, not downloaded (unless that fails).
        const full = plan.totals.fullBytes + planDelta(verityIndex, new Map()).totals.fullBytes;
        this.o.log('delta-plan', {
          version: record.version,
          downloadBytes: plan.totals.downloadBytes,
          fullBytes: full,
          reusedBytes: plan.totals.reusedBytes,
          patchBytes: plan.totals.patchBytes,
          patchedBytes: plan.totals.patchedBytes,
        });
        if (plan.totals.reusedChunks === 0)
          this.o.log('delta-unusable', { reason: 'no chunk of the new release is in the running slot: this is a full download' });
        tx.data = { ...tx.data, fullBytes: full };
      }
      const write = async (key: 'usr' | 'verity', index: ChunkIndex, source: DeltaSource, from: number): Promise<void> => {
        const part = target[key];
        await writeSlotImage({
          index,
          target: { path: host.disk, offset: part.offset, size: part.size },
          source,
          from,
          bandwidthLimit: this.o.config.bandwidthLimit,
          checkpoint: async (p) => {
            const before = data();
            const finished = p.next === index.chunks.length;
            await this.step(tx!, 'writing', {
              image: finished ? RELEASE_IMAGES[RELEASE_IMAGES.indexOf(key) + 1] : key,
              next: finished ? 0 : p.next,
              downloadedBytes: before.downloadedBytes + p.downloadedBytes,
              localBytes: before.localBytes + p.localBytes,
            });
          },
        });
      };
      if (data().image === undefined || data().image === 'usr') await write('usr', usrIndex, usrSource.source, data().image === 'usr' ? (data().next ?? 0) : 0);
      if (data().image === 'verity') {
        if (data().next === 0 && (await this.writeVerityTree(record, target))) {
          await this.step(tx, 'writing', { image: 'uki', next: 0 });
        } else {
          const verityIndex = await this.repo.chunkIndex(record, 'verity');
          await write('verity', verityIndex, new DeltaSource(local, remoteChunks(this.repo, verityIndex)), data().next ?? 0);
        }
      }
      await this.step(tx, 'written');
    }
    if (at('uki-ready')) {
      const index = await this.repo.chunkIndex(record, 'uki');
      const { source } = await this.deltaSource(record, 'uki', index, await localFor(index.params));
      cutPoint('staged uki');
      await reassemble(index, source, join(this.stateDir, STAGED_UKI));
      await this.step(tx, 'uki-ready');
    }
    if (at('verified')) {
      const check = await verifyImage(
        { path: host.disk, offset: target.usr.offset, size: target.usr.size },
        { path: host.disk, offset: target.verity.offset, size: target.verity.size },
        record.rootHash,
      );
      if (!check.ok) {
        // Start the slot over: what is there is not what the release says.
        await this.step(tx, 'entry-removed', { image: 'usr', next: 0 });
        throw new CairnError(
          `slot ${target.name} does not verify against ${record.version}'s root hash: ${check.message}`,
          'the agent rewrites the slot on its next run',
        );
      }
      await this.step(tx, 'verified');
    }
    if (at('renamed')) {
      const uuids = verityPartitionUuids(record.rootHash);
      cutPoint('gpt');
      await setPartitionUuids(host.disk, [
        { number: target.usr.number, uuid: uuids.usr },
        { number: target.verity.number, uuid: uuids.usrVerity },
      ]);
      await this.step(tx, 'renamed');
    }
    if (at('installed')) {
      const staged = join(this.stateDir, STAGED_UKI);
      const sha = createHash('sha256')
        .update(await readFile(staged))
        .digest('hex');
      if (sha !== record.images.uki.sha256) throw new CairnError(`the staged UKI ${staged} changed since it was verified`);
      cutPoint('esp install');
      await installUki(this.o.host.esp, staged, { name: record.name, version: record.version });
      // Removed only once the step is saved: a cut before that repeats the (idempotent) install.
      await this.step(tx, 'installed');
      await rm(staged, { force: true });
    }
    return this.installedOutcome(tx);
  }

  /** Where an image's chunks come from: the running slot, patches over it, the repository. */
  private async deltaSource(
    record: ReleaseRecord,
    image: ReleaseImage,
    index: ChunkIndex,
    local: LocalChunks,
  ): Promise<{ source: DeltaSource; plan: DeltaPlan }> {
    const patches = await this.repo.patchSet(record, image, index);
    if (patches && patches.from.version !== this.o.host.version)
      this.o.log('patches-unusable', { image, from: patches.from.version, running: this.o.host.version });
    const plan = planDelta(index, local, patches ?? undefined);
    return { plan, source: new DeltaSource(local, remoteChunks(this.repo, index), { index, patches: plan.patches, fetch: (p) => this.repo.patch(p) }) };
  }

  /**
   * Computes the slot's verity tree from its freshly written usr image (the build's salt is the
   * image's SHA-256) and writes it, when it comes out as the release's verity image byte for
   * byte; false (the caller downloads it) when it does not.
   */
  private async writeVerityTree(record: ReleaseRecord, target: Slot): Promise<boolean> {
    const usr = record.images.usr;
    const want = record.images.verity;
    const { superblock, area } = await hashDevice({ path: this.o.host.disk, offset: target.usr.offset }, usr.size / 4096, {
      salt: Buffer.from(usr.sha256, 'hex'),
    });
    const sha = createHash('sha256').update(superblock).update(area).digest('hex');
    if (superblock.length + area.length !== want.size || sha !== want.sha256 || want.size > target.verity.size) {
      this.o.log('verity-download', { reason: `the verity tree computed from slot ${target.name} is not the release's (${sha}); downloading it` });
      return false;
    }
    cutPoint('verity tree');
    const handle = await open(this.o.host.disk, 'r+');
    try {
      await writeAt(handle, superblock, target.verity.offset);
      await writeAt(handle, area, target.verity.offset + superblock.length);
      await handle.sync();
    } finally {
      await handle.close();
    }
    this.o.log('verity-computed', { version: record.version, bytes: want.size });
    return true;
  }

  private installedOutcome(tx: Transaction): UpdateOutcome {
    const d = tx.data as unknown as TxData;
    return { status: 'installed', version: tx.version, downloadedBytes: d.downloadedBytes, localBytes: d.localBytes, fullBytes: d.fullBytes };
  }

  /** The running slot's images and UKI: where chunks of a new release may already be. */
  private async runningFiles(running: Slot): Promise<LocalSource[]> {
    const files: LocalSource[] = [];
    const entries = await this.entriesBooting(this.o.host.usrHash);
    if (entries[0]) files.push({ path: entries[0].path });
    // The partitions are longer than the images: the verity superblock says how long they are.
    const handle = await open(this.o.host.disk, 'r');
    try {
      const head = Buffer.alloc(4096);
      await handle.read(head, 0, head.length, running.verity.offset);
      const sb = parseSuperblock(head, `slot ${running.name} verity`);
      const layout = verityLayout(sb.dataBlocks, sb.dataBlockSize, sb.hashBlockSize);
      files.push({ path: this.o.host.disk, offset: running.usr.offset, length: sb.dataBlocks * sb.dataBlockSize });
      files.push({ path: this.o.host.disk, offset: running.verity.offset, length: layout.hashDeviceSize });
    } finally {
      await handle.close();
    }
    return files;
  }

  /** ESP entries whose UKI boots the root hash `usrHash`. */
  private async entriesBooting(usrHash: string): Promise<BootEntry[]> {
    const found: BootEntry[] = [];
    for (const entry of await listEntries(this.o.host.esp)) {
      if ((await entryUsrHash(entry)) === usrHash) found.push(entry);
    }
    return found;
  }

  /** Removes every entry that would boot `slot` as it is now (its partition UUIDs name a root hash). */
  private async removeEntriesFor(slot: Slot): Promise<void> {
    for (const entry of await listEntries(this.o.host.esp)) {
      const hash = await entryUsrHash(entry);
      if (hash === undefined || hash === this.o.host.usrHash) continue;
      const uuids = verityPartitionUuids(hash);
      if (uuids.usr === slot.usr.uuid || uuids.usrVerity === slot.verity.uuid) {
        cutPoint(`esp remove ${entry.file}`);
        await removeEntry(entry);
        this.o.log('entry-removed', { file: entry.file });
      }
    }
  }
}
