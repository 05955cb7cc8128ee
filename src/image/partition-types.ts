// GPT partition type GUIDs and attribute bits from the UAPI Group's Discoverable Partitions
// Specification (https://uapi-group.org/specifications/specs/discoverable_partitions_specification/,
// source: github.com/uapi-group/specifications, specs/discoverable_partitions_specification.md).
// Using them lets systemd tools (systemd-dissect, repart, gpt-auto) understand a cairn disk and
// lets the initramfs tell a usr slot from its verity partition without reading any label.
import { CairnError } from '../errors.js';

/** EFI System Partition (UEFI spec; DPS `SD_GPT_ESP`). */
export const ESP_TYPE = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';

export interface ArchPartitionTypes {
  root: string;
  usr: string;
  usrVerity: string;
  /** The removable-media boot path firmware falls back to: EFI/BOOT/BOOT<suffix>.EFI. */
  efiSuffix: string;
}

// Keyed by Debian architecture names, the form recipes use (base.architecture).
const BY_ARCH: Record<string, ArchPartitionTypes> = {
  amd64: {
    root: '4f68bce3-e8cd-4db1-96e7-fbcaf984b709', // SD_GPT_ROOT_X86_64
    usr: '8484680c-9521-48c6-9c11-b0720656f69e', // SD_GPT_USR_X86_64
    usrVerity: '77ff5f63-e7b6-4633-acf4-1565b864c0e6', // SD_GPT_USR_X86_64_VERITY
    efiSuffix: 'x64',
  },
  arm64: {
    root: 'b921b045-1df0-41c3-af44-4c6f280d3fae', // SD_GPT_ROOT_ARM64
    usr: 'b0e01050-ee5f-4390-949a-9101b17104e9', // SD_GPT_USR_ARM64
    usrVerity: '6e11a4e7-fbca-4ded-b9e9-e1a512bb664e', // SD_GPT_USR_ARM64_VERITY
    efiSuffix: 'aa64',
  },
};

export function partitionTypes(arch: string): ArchPartitionTypes {
  const types = BY_ARCH[arch];
  if (!types) {
    throw new CairnError(
      `no disk layout for architecture ${JSON.stringify(arch)}`,
      `cairn builds disks for ${Object.keys(BY_ARCH).join(', ')}; set base.architecture to one of them`,
    );
  }
  return types;
}

/** DPS attribute bit 60: mount read-only. DPS recommends it unconditionally for verity partitions. */
export const GPT_FLAG_READ_ONLY = 1n << 60n;
