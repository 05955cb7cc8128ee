/** A recipe after validation and defaults: every field the build reads is present. */
export interface Recipe {
  /** Absolute path of the recipe file; relative paths in the recipe resolve against its folder. */
  file: string;
  name: string;
  version: string;
  description: string;
  base: BaseDistribution;
  packages: string[];
  kernel: KernelSpec;
  /** Program the initramfs hands over to, inside the image (e.g. /usr/lib/systemd/systemd). */
  init: string;
  hostname: string;
  users: UserSpec[];
  groups: GroupSpec[];
  files: FileSpec[];
  units: { enable: string[]; mask: string[] };
  alternatives: AlternativeSpec[];
  links: LinkSpec[];
  disk: DiskSpec;
  update: UpdateSpec | null;
  containers: ContainerSpec[];
}

export interface BaseDistribution {
  suite: string;
  /** Suites on the same mirror whose packages are taken only where `packages` names NAME/SUITE. */
  extraSuites: string[];
  /** Archive root URL, e.g. http://deb.debian.org/debian */
  mirror: string;
  components: string[];
  architecture: string;
  /** Absolute path of an OpenPGP keyring (binary or armored) that signs InRelease. */
  keyring: string;
  /** Add every package with `Essential: yes`. */
  essential: boolean;
  /** Add every package of this priority or higher ("required", "important"), or none. */
  priority: 'required' | 'important' | 'none';
}

export interface KernelSpec {
  /** Debian package that ships /boot/vmlinuz-* and /boot/config-* (e.g. linux-image-cloud-amd64). */
  package: string;
  /** Absolute path of the kernel-configs/ fragment the kernel's config must satisfy. */
  config: string;
}

export interface UserSpec {
  name: string;
  uid: number;
  /** Primary group: a group name from `groups` or created with the user's name and uid. */
  group: string;
  groups: string[];
  home: string;
  shell: string;
  gecos: string;
  /** Crypt(3) hash, or null for a locked account. */
  password: string | null;
  /** OpenSSH public key lines that may log in as the user. */
  sshAuthorizedKeys: string[];
}

export interface GroupSpec {
  name: string;
  gid: number;
}

export interface FileSpec {
  /** Absolute path inside the image. */
  path: string;
  /** Inline content, or null when `source` is set. */
  content: string | null;
  /** Absolute path of a file on the build host (resolved from the recipe's folder), or null. */
  source: string | null;
  mode: number;
  owner: string;
  group: string;
}

export interface AlternativeSpec {
  /** The generic name, e.g. "editor". */
  name: string;
  /** Path of the link, e.g. /usr/bin/editor. */
  link: string;
  /** Target the link points to, e.g. /usr/bin/vim.tiny. */
  path: string;
}

export interface LinkSpec {
  /** Absolute path of the link inside the image. */
  path: string;
  /** What it points to, as written. */
  target: string;
}

export interface DiskSpec {
  /** Sizes in bytes. */
  esp: number;
  usr: number;
  usrVerity: number;
  root: number;
  /** Compress the /usr EROFS image (lz4hc, lzma, …) or null for none. */
  usrCompression: string | null;
}

export interface UpdateSpec {
  repository: string;
  channel: string;
  /** Absolute paths of public keys the agent trusts. */
  keys: string[];
}

export interface ContainerSpec {
  name: string;
  command: string[];
  layers: string[];
  restart: 'no' | 'on-failure' | 'always';
  memory: number | null;
  cpus: number | null;
  pids: number | null;
  net: 'none' | 'host' | 'private';
  env: Record<string, string>;
}
