// Unpacks an OCI image (an image layout directory, `oci:DIR[:TAG]`, or a tar of one as skopeo
// and docker save write, `oci-archive:FILE[:TAG]`; docker's older save format with only
// manifest.json too) into a root folder for a container that does not use the shared /usr.
// Nothing is trusted until checked: every JSON document and blob against its digest and size,
// every layer's uncompressed content against the config's diff_ids, and every layer entry as it
// is placed (no path leaves the root, no absolute symlink is written through, no device nodes,
// bounded sizes and counts).
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import { link, mkdir, mkdtemp, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { type CompressionKind, decompressor } from '../debian/decompress.js';
import { CairnError } from '../errors.js';
import { Tree } from '../rootfs/tree.js';
import { applyLayer, layerEntryPath, type UnpackBudget } from './oci-layer.js';

/** How the image says to run it. */
export interface OciImageConfig {
  /** Entrypoint followed by Cmd. */
  args: string[];
  /** Entrypoint alone: a command given to `cairn run` replaces Cmd and follows it, as docker does. */
  entrypoint: string[];
  /** KEY=VALUE pairs. */
  env: string[];
  /** WorkingDir, or "/" when the image names none. */
  cwd: string;
  /** User as the image writes it (name, uid, uid:gid); "" when it names none, which means root. */
  user: string;
}

export interface OciLimits {
  /** index.json, manifests, configs. */
  jsonBytes: number;
  /** One compressed layer. */
  blobBytes: number;
  /** Uncompressed layer bytes (tar streams, so also file content) of the whole image. */
  unpackedBytes: number;
  entries: number;
  layers: number;
  /** What an oci-archive may unpack to before it is read. */
  archiveBytes: number;
}

export const DEFAULT_OCI_LIMITS: OciLimits = {
  jsonBytes: 4 << 20,
  blobBytes: 16 * 1024 ** 3,
  unpackedBytes: 32 * 1024 ** 3,
  entries: 2_000_000,
  layers: 256,
  archiveBytes: 64 * 1024 ** 3,
};

const HINT = 'the image is damaged or hostile: fetch or save it again';
const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;
const MEDIA = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
};
const REF_NAME = 'org.opencontainers.image.ref.name';
// Node's process.arch → the GOARCH names OCI platforms use.
const OCI_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };

export function hostOciArchitecture(): string {
  return OCI_ARCH[process.arch] ?? process.arch;
}

export interface ImageRef {
  transport: 'oci' | 'oci-archive';
  path: string;
  tag: string | null;
}

/**
 * `oci:DIR[:TAG]` or `oci-archive:FILE[:TAG]`. A path may itself hold colons, so the tag is
 * what follows the shortest prefix that exists.
 */
export function parseImageRef(ref: string): ImageRef {
  const m = /^(oci|oci-archive):(.+)$/.exec(ref);
  if (m === null)
    throw new CairnError(
      `"${ref}" is not an image reference cairn reads`,
      'write oci:DIR[:TAG] for an OCI image layout or oci-archive:FILE[:TAG] for a tar of one (skopeo copy, docker save)',
    );
  const transport = m[1] as ImageRef['transport'];
  const rest = m[2]!;
  const exists = (path: string) => statSync(path, { throwIfNoEntry: false }) !== undefined;
  if (exists(rest)) return { transport, path: rest, tag: null };
  for (let at = rest.indexOf(':'); at > 0; at = rest.indexOf(':', at + 1)) {
    const path = rest.slice(0, at);
    const tag = rest.slice(at + 1);
    if (tag !== '' && exists(path)) return { transport, path, tag };
  }
  throw new CairnError(
    `${ref}: ${rest} does not exist`,
    transport === 'oci'
      ? 'name an OCI image layout folder (with index.json)'
      : 'name a tar archive of an image (skopeo copy … oci-archive:FILE, docker save -o FILE)',
  );
}

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: { os?: string; architecture?: string; variant?: string };
}

interface LayerPlan {
  path: string;
  what: string;
  compression: CompressionKind | 'detect';
  /** The compressed blob's digest and size, when the format records them (OCI, not docker save's). */
  digest: string | null;
  size: number | null;
  diffId: string;
}

function fail(what: string, why: string): CairnError {
  return new CairnError(`${what}: ${why}`, HINT);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function descriptor(value: unknown, what: string, limits: OciLimits): Descriptor {
  if (!isObject(value)) throw fail(what, 'is not a descriptor object');
  const { mediaType, digest, size, annotations, platform } = value;
  if (typeof mediaType !== 'string') throw fail(what, 'has no mediaType');
  if (typeof digest !== 'string' || !DIGEST.test(digest)) throw fail(what, `has no valid digest (${JSON.stringify(digest)})`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw fail(what, `has no valid size (${JSON.stringify(size)})`);
  if (size > limits.blobBytes) throw fail(what, `declares ${size} bytes, more than the ${limits.blobBytes} cairn reads`);
  if (annotations !== undefined && (!isObject(annotations) || Object.values(annotations).some((v) => typeof v !== 'string')))
    throw fail(what, 'has malformed annotations');
  if (platform !== undefined && !isObject(platform)) throw fail(what, 'has a malformed platform');
  return { mediaType, digest, size, annotations: annotations as Record<string, string> | undefined, platform: platform as Descriptor['platform'] };
}

function newHash(digest: string): Hash {
  return createHash(digest.slice(0, digest.indexOf(':')));
}

function digestOf(hash: Hash, digest: string): string {
  return `${digest.slice(0, digest.indexOf(':'))}:${hash.digest('hex')}`;
}

/** Checks a file against a digest and size before anything reads it as content. */
async function verifyBlob(path: string, digest: string, size: number | null, what: string): Promise<void> {
  const actual = await stat(path).then(
    (s) => (s.isFile() ? s.size : null),
    () => null,
  );
  if (actual === null) throw fail(what, `${path} is missing`);
  if (size !== null && actual !== size) throw fail(what, `${path} is ${actual} bytes, its descriptor says ${size}`);
  const hash = newHash(digest);
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  const got = digestOf(hash, digest);
  if (got !== digest) throw fail(what, `${path} does not match its digest ${digest} (it hashes to ${got})`);
}

async function readJson(path: string, what: string, limits: OciLimits, digest?: string, size?: number): Promise<unknown> {
  const actual = await stat(path).then(
    (s) => s.size,
    () => null,
  );
  if (actual === null) throw fail(what, `${path} is missing`);
  if (actual > limits.jsonBytes) throw fail(what, `${path} is ${actual} bytes, more than the ${limits.jsonBytes} cairn reads as JSON`);
  if (digest !== undefined) await verifyBlob(path, digest, size ?? null, what);
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw fail(what, `${path} is not JSON (${(err as Error).message})`);
  }
}

function blobPath(layout: string, digest: string): string {
  const [algorithm, hex] = digest.split(':') as [string, string];
  return join(layout, 'blobs', algorithm, hex);
}

function layerCompression(mediaType: string, what: string): CompressionKind {
  if (/^application\/vnd\.(oci\.image\.layer(\.nondistributable)?\.v1\.tar|docker\.image\.rootfs(\.foreign)?\.diff\.tar)$/.test(mediaType)) return 'none';
  if (
    /^application\/vnd\.oci\.image\.layer(\.nondistributable)?\.v1\.tar\+gzip$|^application\/vnd\.docker\.image\.rootfs(\.foreign)?\.diff\.tar\.gzip$/.test(
      mediaType,
    )
  )
    return 'gz';
  if (/^application\/vnd\.oci\.image\.layer(\.nondistributable)?\.v1\.tar\+zstd$/.test(mediaType)) return 'zst';
  throw new CairnError(`${what}: layer media type ${mediaType} is not supported`, 'cairn unpacks tar layers, plain, gzip or zstd compressed');
}

interface ImageConfigJson {
  architecture?: string;
  os?: string;
  config?: { Entrypoint?: string[] | null; Cmd?: string[] | null; Env?: string[] | null; WorkingDir?: string; User?: string };
  rootfs: { type: 'layers'; diff_ids: string[] };
}

function strings(value: unknown, what: string, field: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v.includes('\0'))) throw fail(what, `${field} is not a list of strings`);
  return value as string[];
}

function checkConfig(data: unknown, what: string): ImageConfigJson {
  if (!isObject(data)) throw fail(what, 'is not a JSON object');
  const rootfs = data.rootfs;
  if (
    !isObject(rootfs) ||
    rootfs.type !== 'layers' ||
    !Array.isArray(rootfs.diff_ids) ||
    rootfs.diff_ids.some((d) => typeof d !== 'string' || !DIGEST.test(d))
  ) {
    throw fail(what, 'has no rootfs.diff_ids (a list of layer digests)');
  }
  const arch = hostOciArchitecture();
  if (typeof data.architecture === 'string' && data.architecture !== arch) {
    throw new CairnError(
      `${what}: the image is for ${data.architecture}, this host is ${arch}`,
      'pick the image for this architecture (skopeo copy --override-arch)',
    );
  }
  if (typeof data.os === 'string' && data.os !== 'linux') throw new CairnError(`${what}: the image is for ${data.os}, not linux`);
  const config = data.config;
  if (config !== undefined && config !== null && !isObject(config)) throw fail(what, 'config is not an object');
  const c = (config ?? {}) as Record<string, unknown>;
  for (const field of ['WorkingDir', 'User'] as const) {
    if (c[field] !== undefined && (typeof c[field] !== 'string' || (c[field] as string).includes('\0'))) throw fail(what, `config.${field} is not a string`);
  }
  for (const env of strings(c.Env, what, 'config.Env')) {
    if (!/^[^=]+=/.test(env)) throw fail(what, `config.Env entry ${JSON.stringify(env)} is not KEY=VALUE`);
  }
  strings(c.Entrypoint, what, 'config.Entrypoint');
  strings(c.Cmd, what, 'config.Cmd');
  return data as unknown as ImageConfigJson;
}

/** The manifest descriptor of index.json (or a nested index) for the tag and this host's platform. */
async function chooseManifest(layout: string, index: unknown, tag: string | null, limits: OciLimits, depth = 0): Promise<Descriptor> {
  const what = depth === 0 ? `${layout}/index.json` : `${layout}: nested image index`;
  if (!isObject(index) || !Array.isArray(index.manifests)) throw fail(what, 'has no manifests list');
  if (index.manifests.length > 4096) throw fail(what, `lists ${index.manifests.length} manifests`);
  let candidates = index.manifests.map((m, i) => descriptor(m, `${what}: manifests[${i}]`, limits));
  if (depth === 0) {
    const tags = candidates.map((d) => d.annotations?.[REF_NAME]).filter((t): t is string => t !== undefined);
    if (tag !== null) {
      candidates = candidates.filter((d) => d.annotations?.[REF_NAME] === tag);
      if (candidates.length === 0)
        throw new CairnError(
          `${layout} has no image tagged "${tag}"`,
          tags.length > 0 ? `its tags: ${tags.join(', ')}` : 'it has no tagged images: leave out the tag',
        );
    } else if (candidates.length > 1) {
      throw new CairnError(
        `${layout} holds ${candidates.length} images: name one with :TAG`,
        tags.length > 0 ? `its tags: ${tags.join(', ')}` : 'tag them (skopeo copy … oci:DIR:TAG)',
      );
    }
  }
  const arch = hostOciArchitecture();
  if (candidates.length > 1 || candidates[0]?.platform !== undefined) {
    const forHost = candidates.filter((d) => d.platform === undefined || (d.platform.os === 'linux' && d.platform.architecture === arch));
    if (forHost.length === 0) {
      throw new CairnError(
        `${what}: no image for linux/${arch} (it has ${candidates.map((d) => `${d.platform?.os}/${d.platform?.architecture}`).join(', ')})`,
        'copy the image for this platform',
      );
    }
    candidates = forHost;
  }
  const chosen = candidates[0];
  if (chosen === undefined) throw fail(what, 'lists no manifests');
  if (chosen.mediaType === MEDIA.ociIndex || chosen.mediaType === MEDIA.dockerList) {
    if (depth >= 4) throw fail(what, 'nests image indexes too deeply');
    const nested = await readJson(blobPath(layout, chosen.digest), `${what}: index ${chosen.digest}`, limits, chosen.digest, chosen.size);
    return chooseManifest(layout, nested, null, limits, depth + 1);
  }
  return chosen;
}

async function planFromLayout(layout: string, tag: string | null, limits: OciLimits): Promise<{ config: ImageConfigJson; layers: LayerPlan[] }> {
  const version = await readJson(join(layout, 'oci-layout'), `${layout}/oci-layout`, limits);
  if (!isObject(version) || version.imageLayoutVersion !== '1.0.0') throw fail(`${layout}/oci-layout`, 'is not an OCI image layout version 1.0.0');
  const index = await readJson(join(layout, 'index.json'), `${layout}/index.json`, limits);
  const chosen = await chooseManifest(layout, index, tag, limits);
  if (chosen.mediaType !== MEDIA.ociManifest && chosen.mediaType !== MEDIA.dockerManifest) {
    throw new CairnError(`${layout}: ${chosen.mediaType} is not an image manifest cairn reads`, 'cairn reads OCI and docker v2 image manifests');
  }
  const manifestWhat = `${layout}: manifest ${chosen.digest}`;
  const manifest = await readJson(blobPath(layout, chosen.digest), manifestWhat, limits, chosen.digest, chosen.size);
  if (!isObject(manifest) || !Array.isArray(manifest.layers)) throw fail(manifestWhat, 'has no layers list');
  const configDescriptor = descriptor(manifest.config, `${manifestWhat}: config`, limits);
  const configWhat = `${layout}: config ${configDescriptor.digest}`;
  const config = checkConfig(
    await readJson(blobPath(layout, configDescriptor.digest), configWhat, limits, configDescriptor.digest, configDescriptor.size),
    configWhat,
  );
  const descriptors = manifest.layers.map((l, i) => descriptor(l, `${manifestWhat}: layers[${i}]`, limits));
  if (descriptors.length !== config.rootfs.diff_ids.length)
    throw fail(configWhat, `lists ${config.rootfs.diff_ids.length} diff_ids for ${descriptors.length} layers`);
  return {
    config,
    layers: descriptors.map((d, i) => ({
      path: blobPath(layout, d.digest),
      what: `${layout}: layer ${i + 1}/${descriptors.length} (${d.digest})`,
      compression: layerCompression(d.mediaType, `${manifestWhat}: layers[${i}]`),
      digest: d.digest,
      size: d.size,
      diffId: config.rootfs.diff_ids[i]!,
    })),
  };
}

/** A path manifest.json names inside the archive, refused when it could lead out of it. */
function archivePath(path: string, what: string): string {
  try {
    return layerEntryPath(path);
  } catch (err) {
    throw fail(what, `names the path ${JSON.stringify(path)}: ${(err as Error).message}`);
  }
}

/** docker save's own format: manifest.json naming the config (by its digest) and the layer tars. */
async function planFromDockerSave(dir: string, tag: string | null, limits: OciLimits): Promise<{ config: ImageConfigJson; layers: LayerPlan[] }> {
  const what = 'manifest.json of the docker archive';
  const manifest = await readJson(join(dir, 'manifest.json'), what, limits);
  if (!Array.isArray(manifest) || manifest.length === 0 || manifest.length > 4096) throw fail(what, 'is not a list of images');
  const images = manifest.map((entry, i) => {
    if (!isObject(entry) || typeof entry.Config !== 'string' || !Array.isArray(entry.Layers) || entry.Layers.some((l) => typeof l !== 'string'))
      throw fail(what, `entry ${i} has no Config and Layers`);
    return { config: entry.Config, layers: entry.Layers as string[], tags: strings(entry.RepoTags, what, `[${i}].RepoTags`) };
  });
  const allTags = images.flatMap((image) => image.tags);
  const matching = tag === null ? images : images.filter((image) => image.tags.some((t) => t === tag || t.endsWith(`:${tag}`)));
  if (matching.length !== 1) {
    throw new CairnError(
      matching.length === 0 ? `the docker archive has no image tagged "${tag}"` : `the docker archive holds ${matching.length} images: name one with :TAG`,
      allTags.length > 0 ? `its tags: ${allTags.join(', ')}` : 'save one image per archive',
    );
  }
  const image = matching[0]!;
  // The config's file name is its digest (the image ID): that is what anchors everything else.
  const configId = /(?:^|\/)([a-f0-9]{64})(?:\.json)?$/.exec(image.config);
  if (configId === null) throw fail(what, `the config ${image.config} is not named by its digest, so it cannot be checked`);
  const configPath = join(dir, archivePath(image.config, what));
  const configWhat = `docker archive config ${image.config}`;
  const config = checkConfig(await readJson(configPath, configWhat, limits, `sha256:${configId[1]}`), configWhat);
  if (image.layers.length !== config.rootfs.diff_ids.length)
    throw fail(configWhat, `lists ${config.rootfs.diff_ids.length} diff_ids for ${image.layers.length} layers`);
  return {
    config,
    layers: image.layers.map((layer, i) => ({
      path: join(dir, archivePath(layer, what)),
      what: `docker archive layer ${i + 1}/${image.layers.length} (${layer})`,
      compression: 'detect',
      digest: null,
      size: null,
      diffId: config.rootfs.diff_ids[i]!,
    })),
  };
}

/** docker save layers are plain tars, but a gzip or zstd one is recognised by its first bytes. */
async function detectCompression(path: string): Promise<CompressionKind> {
  const file = await open(path, 'r');
  try {
    const head = Buffer.alloc(4);
    await file.read(head, 0, 4, 0);
    if (head[0] === 0x1f && head[1] === 0x8b) return 'gz';
    if (head.readUInt32LE(0) === 0xfd2fb528) return 'zst';
    return 'none';
  } finally {
    await file.close();
  }
}

/**
 * Hashes what passes through with the algorithm of `digest` (when given); with a budget, stops
 * the stream once it is spent, `limit` naming the whole allowance in the error.
 */
class Measure extends Transform {
  readonly hash: Hash | null;

  constructor(
    digest: string | null,
    private readonly budget?: { bytes: number },
    private readonly limit?: number,
  ) {
    super();
    this.hash = digest === null ? null : newHash(digest);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.budget !== undefined) {
      this.budget.bytes -= chunk.length;
      if (this.budget.bytes < 0) {
        done(new CairnError(`the image unpacks to more than the ${this.limit} bytes cairn allows`, HINT));
        return;
      }
    }
    this.hash?.update(chunk);
    done(null, chunk);
  }
}

async function unpackLayer(tree: Tree, layer: LayerPlan, budget: UnpackBudget, limits: OciLimits, rootless: boolean): Promise<void> {
  if (layer.digest !== null) await verifyBlob(layer.path, layer.digest, layer.size, layer.what);
  else if (
    !(await stat(layer.path).then(
      (s) => s.isFile(),
      () => false,
    ))
  )
    throw fail(layer.what, `${layer.path} is missing`);
  const compression = layer.compression === 'detect' ? await detectCompression(layer.path) : layer.compression;
  const source = createReadStream(layer.path, { highWaterMark: 1 << 20 });
  // The blob is hashed again as it is read: a file changed since the check above is caught too.
  const compressed = layer.digest === null ? null : new Measure(layer.digest);
  const uncompressed = new Measure(layer.diffId, budget, limits.unpackedBytes);
  let stream: Readable = source;
  for (const stage of [compressed, decompressor(compression), uncompressed]) {
    if (stage === null) continue;
    const from = stream;
    stream = from.pipe(stage);
    from.on('error', (err) => stage.destroy(err));
  }
  await applyLayer(tree, stream, budget, layer.what, rootless);
  if (compressed !== null && digestOf(compressed.hash!, layer.digest!) !== layer.digest) throw fail(layer.what, 'changed while it was read');
  const diffId = digestOf(uncompressed.hash!, layer.diffId);
  if (diffId !== layer.diffId) throw fail(layer.what, `its content hashes to ${diffId}, the image config says ${layer.diffId}`);
}

/**
 * Unpacks an oci-archive into `into` (a new folder): regular files and folders only, its
 * symlinks (docker save links repeated layers) made hard links to the files they name.
 */
async function extractArchive(file: string, into: string, limits: OciLimits): Promise<void> {
  const what = `archive ${file}`;
  const links = new Map<string, string>();
  let bytes = 0;
  let entries = 0;
  const compression = await detectCompression(file);
  const extract = tar.extract();
  const source = createReadStream(file);
  const unpack = decompressor(compression);
  // Bounds the decompressed stream itself, padding after the last entry included; each entry
  // may add its header, a pax or long-name record and padding to its content.
  const measure = new Measure(null, { bytes: limits.archiveBytes + limits.entries * 8192 }, limits.archiveBytes);
  let streamError: Error | null = null;
  for (const s of [source, unpack, measure])
    s.on('error', (err: Error) => {
      streamError ??= err;
      extract.destroy(err);
    });
  source.pipe(unpack).pipe(measure).pipe(extract);
  try {
    for await (const entry of extract) {
      const { header } = entry;
      if (++entries > limits.entries) throw fail(what, 'has too many entries');
      let rel: string;
      try {
        rel = layerEntryPath(header.name);
      } catch (err) {
        throw fail(what, `entry "${header.name}": ${(err as Error).message}`);
      }
      const body = entry as unknown as AsyncIterable<Buffer>;
      if (rel !== '' && header.type === 'directory') {
        await mkdir(join(into, rel), { recursive: true });
      } else if (rel !== '' && (header.type === 'file' || header.type === 'contiguous-file')) {
        bytes += header.size ?? 0;
        if (bytes > limits.archiveBytes) throw fail(what, `unpacks to more than the ${limits.archiveBytes} bytes cairn allows`);
        // Only folders and regular files are ever made here, so joining cannot lead through a link.
        await mkdir(dirname(join(into, rel)), { recursive: true });
        await pipeline(Readable.from(body), createWriteStream(join(into, rel), { flags: 'wx' }));
      } else if (rel !== '' && header.type === 'symlink') {
        links.set(rel, header.linkname ?? '');
      } else if (rel !== '') {
        throw fail(what, `entry "${header.name}" is a ${header.type}; an image archive holds files and folders`);
      }
      for await (const chunk of body) void chunk;
    }
  } catch (err) {
    // Refusals made in the loop already name the archive; what the streams raised does not.
    if (err instanceof CairnError && err !== streamError) throw err;
    const cause = (streamError ?? err) as Error;
    if (cause instanceof CairnError) throw fail(what, cause.message);
    throw fail(what, `not a readable tar archive: ${cause.message}`);
  } finally {
    for (const s of [source, unpack, measure, extract]) s.destroy();
  }
  for (const [rel] of links) {
    let target = rel;
    for (let hops = 0; links.has(target); hops++) {
      const linkname = links.get(target)!;
      const resolved = posix.normalize(posix.join(posix.dirname(target), linkname));
      if (hops > 40 || linkname.startsWith('/') || resolved === '..' || resolved.startsWith('../'))
        throw fail(what, `the link ${rel} -> ${links.get(rel)} leads outside the archive`);
      target = resolved;
    }
    await mkdir(dirname(join(into, rel)), { recursive: true });
    await link(join(into, target), join(into, rel)).catch(() => {
      throw fail(what, `the link ${rel} -> ${links.get(rel)} names no file in the archive`);
    });
  }
}

/** Makes sure `dest` is an empty folder; returns whether it had to be made. */
async function claimDest(dest: string): Promise<boolean> {
  const entries = await readdir(dest).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw new CairnError(`cannot unpack into ${dest}: ${err.message}`);
  });
  if (entries !== null && entries.length > 0) throw new CairnError(`${dest} is not empty`, 'an image is unpacked into a new or empty folder');
  await mkdir(dest, { recursive: true, mode: 0o755 });
  return entries === null;
}

function runConfig(config: ImageConfigJson): OciImageConfig {
  const c = config.config ?? {};
  return {
    args: [...(c.Entrypoint ?? []), ...(c.Cmd ?? [])],
    entrypoint: c.Entrypoint ?? [],
    env: c.Env ?? [],
    cwd: c.WorkingDir || '/',
    user: c.User ?? '',
  };
}

/**
 * Unpacks the image `ref` into `dest` (new or empty; left as it was if anything fails) and
 * returns how the image says to run it. As root, files keep the image's owners; otherwise they
 * belong to the caller and folders get owner write (for a user namespace to map).
 */
export async function unpackOciImage(ref: string, dest: string, limits: Partial<OciLimits> = {}): Promise<OciImageConfig> {
  const bounds = { ...DEFAULT_OCI_LIMITS, ...limits };
  const { transport, path, tag } = parseImageRef(ref);
  const created = await claimDest(dest);
  let scratch: string | null = null;
  try {
    let layout = path;
    if (transport === 'oci-archive') {
      scratch = await mkdtemp(join(dirname(dest), '.oci-archive-'));
      await extractArchive(path, scratch, bounds);
      layout = scratch;
    }
    const hasIndex = await stat(join(layout, 'index.json')).then(
      () => true,
      () => false,
    );
    const hasDockerManifest = await stat(join(layout, 'manifest.json')).then(
      () => true,
      () => false,
    );
    if (!hasIndex && !hasDockerManifest) {
      throw new CairnError(
        `${path} is not an image: it has neither index.json (OCI image layout) nor manifest.json (docker save)`,
        'make one with skopeo copy docker://IMAGE oci:DIR:TAG or docker save -o FILE IMAGE',
      );
    }
    const plan = hasIndex ? await planFromLayout(layout, tag, bounds) : await planFromDockerSave(layout, tag, bounds);
    if (plan.layers.length > bounds.layers) throw fail(ref, `has ${plan.layers.length} layers, more than the ${bounds.layers} cairn unpacks`);
    const rootless = process.getuid?.() !== 0;
    const tree = new Tree(dest, !rootless);
    const budget: UnpackBudget = { entries: bounds.entries, bytes: bounds.unpackedBytes };
    for (const layer of plan.layers) await unpackLayer(tree, layer, budget, bounds, rootless);
    return runConfig(plan.config);
  } catch (err) {
    if (created) await rm(dest, { recursive: true, force: true });
    else for (const name of await readdir(dest)) await rm(join(dest, name), { recursive: true, force: true });
    throw err;
  } finally {
    if (scratch !== null) await rm(scratch, { recursive: true, force: true });
  }
}
