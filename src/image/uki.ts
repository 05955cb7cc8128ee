// A Unified Kernel Image: the image's own systemd-stub with the kernel, initramfs, command line,
// os-release and kernel version added as PE sections, laid out the way systemd's ukify does it
// (each section after the stub's last one, at the next aligned file offset and virtual address).
// cairn edits the PE itself rather than calling objcopy so the bytes depend on the inputs alone.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CairnError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';

export interface UkiInputs {
  /** systemd-stub from the image (usr/lib/systemd/boot/efi/linuxx64.efi.stub). */
  stub: string;
  /** The kernel (boot/vmlinuz-<ver>). */
  kernel: string;
  /** The compressed initramfs. */
  initrd: string;
  cmdline: string;
  /** The contents of the image's os-release file. */
  osRelease: string;
  /** The kernel version (`uname -r`). */
  uname: string;
  output: string;
}

export interface UkiSection {
  name: string;
  data: Uint8Array;
}

const SECTION_HEADER = 40;
const PE32_PLUS = 0x20b;
const IMAGE_SCN_CNT_CODE = 0x00000020;
const IMAGE_SCN_CNT_INITIALIZED_DATA = 0x00000040;
const IMAGE_SCN_MEM_READ = 0x40000000;
const DIRECTORY_SECURITY = 4;

const roundUp = (n: number, align: number): number => Math.ceil(n / align) * align;

/**
 * `stub` with `sections` appended, in order. The stub must be an unsigned PE32+ with room in its
 * headers for the new section table entries (systemd's stubs are built with that room).
 */
export function addPeSections(stub: Buffer, sections: readonly UkiSection[], where = 'the stub'): Buffer {
  const bad = (why: string) =>
    new CairnError(`${where} is not a usable systemd-stub: ${why}`, "use the linuxx64.efi.stub of the recipe's systemd-boot-efi package");
  if (stub.length < 0x40 || stub.toString('latin1', 0, 2) !== 'MZ') throw bad('no DOS header');
  const pe = stub.readUInt32LE(0x3c);
  if (pe + 24 > stub.length || stub.toString('latin1', pe, pe + 4) !== 'PE\0\0') throw bad('no PE signature');
  const coff = pe + 4;
  const count = stub.readUInt16LE(coff + 2);
  const optSize = stub.readUInt16LE(coff + 16);
  const opt = coff + 20;
  if (opt + optSize > stub.length || optSize < 112 + 8 * (DIRECTORY_SECURITY + 1)) throw bad('optional header is truncated');
  if (stub.readUInt16LE(opt) !== PE32_PLUS) throw bad('not a PE32+ (64-bit) image');
  const sectionAlignment = stub.readUInt32LE(opt + 32);
  const fileAlignment = stub.readUInt32LE(opt + 36);
  const sizeOfHeaders = stub.readUInt32LE(opt + 60);
  const securityDir = opt + 112 + 8 * DIRECTORY_SECURITY;
  if (stub.readUInt32LE(securityDir + 4) !== 0) {
    throw bad('it is signed; a signature would not cover the added sections');
  }
  const powerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;
  if (!powerOfTwo(sectionAlignment) || !powerOfTwo(fileAlignment) || fileAlignment < 512 || sectionAlignment < fileAlignment || sizeOfHeaders > stub.length) {
    throw bad('its alignments or header size are out of range');
  }
  const table = opt + optSize;
  const tableEnd = table + (count + sections.length) * SECTION_HEADER;
  let firstRaw = stub.length;
  let lastVirtualEnd = sizeOfHeaders;
  for (let i = 0; i < count; i++) {
    const h = table + i * SECTION_HEADER;
    if (h + SECTION_HEADER > stub.length) throw bad('section table is truncated');
    const name = stub.toString('latin1', h, h + 8).replace(/\0+$/, '');
    if (sections.some((s) => s.name === name)) throw bad(`it already has a ${name} section`);
    const rawSize = stub.readUInt32LE(h + 16);
    const raw = stub.readUInt32LE(h + 20);
    if (rawSize > 0) firstRaw = Math.min(firstRaw, raw);
    lastVirtualEnd = Math.max(lastVirtualEnd, stub.readUInt32LE(h + 12) + stub.readUInt32LE(h + 8));
  }
  if (tableEnd > sizeOfHeaders || tableEnd > firstRaw) {
    throw bad(`its headers have no room for ${sections.length} more sections (${tableEnd - Math.min(sizeOfHeaders, firstRaw)} bytes short)`);
  }

  const out: Buffer[] = [Buffer.from(stub), Buffer.alloc(roundUp(stub.length, fileAlignment) - stub.length)];
  let fileOffset = roundUp(stub.length, fileAlignment);
  let virtualAddress = roundUp(lastVirtualEnd, sectionAlignment);
  let initializedData = stub.readUInt32LE(opt + 8);
  const headers = Buffer.alloc(sections.length * SECTION_HEADER);
  sections.forEach((s, i) => {
    const name = Buffer.from(s.name, 'latin1');
    if (name.length > 8 || !/^\.[a-z0-9]+$/.test(s.name))
      throw new CairnError(`PE section name ${JSON.stringify(s.name)} is not a short section name like ".linux"`);
    const rawSize = roundUp(s.data.length, fileAlignment);
    if (virtualAddress + s.data.length > 0xffffffff || fileOffset + rawSize > 0xffffffff) {
      throw new CairnError(`the UKI would be larger than 4 GiB (section ${s.name})`, 'a smaller kernel or initramfs is needed');
    }
    const h = i * SECTION_HEADER;
    name.copy(headers, h);
    headers.writeUInt32LE(s.data.length, h + 8);
    headers.writeUInt32LE(virtualAddress, h + 12);
    headers.writeUInt32LE(rawSize, h + 16);
    headers.writeUInt32LE(fileOffset, h + 20);
    // Old kernels using the EFI handover protocol run in place, so ukify marks .linux as code.
    headers.writeUInt32LE(IMAGE_SCN_MEM_READ | (s.name === '.linux' ? IMAGE_SCN_CNT_CODE : IMAGE_SCN_CNT_INITIALIZED_DATA), h + 36);
    out.push(Buffer.from(s.data), Buffer.alloc(rawSize - s.data.length));
    fileOffset += rawSize;
    virtualAddress = roundUp(virtualAddress + s.data.length, sectionAlignment);
    initializedData = (initializedData + s.data.length) >>> 0;
  });
  const result = Buffer.concat(out);
  headers.copy(result, table + count * SECTION_HEADER);
  result.writeUInt16LE(count + sections.length, coff + 2);
  result.writeUInt32LE(initializedData, opt + 8);
  result.writeUInt32LE(virtualAddress, opt + 56); // SizeOfImage: the end of the last section, aligned
  result.writeUInt32LE(0, opt + 64); // CheckSum: UEFI ignores it, and a stale one would be wrong
  return result;
}

/** Builds the UKI at `output` and returns its SHA-256. */
export async function buildUki(inputs: UkiInputs): Promise<string> {
  const read = async (path: string, what: string): Promise<Buffer> => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new CairnError(
        `cannot read the ${what} ${path}: ${(err as Error).message}`,
        what === 'systemd-stub' ? "add systemd-boot-efi to the recipe's packages: the UKI is built on the image's own stub" : undefined,
      );
    }
  };
  const [stub, kernel, initrd] = await Promise.all([read(inputs.stub, 'systemd-stub'), read(inputs.kernel, 'kernel'), read(inputs.initrd, 'initramfs')]);
  if (inputs.cmdline.includes('\0') || inputs.uname.includes('\0') || inputs.osRelease.includes('\0')) {
    throw new CairnError("the UKI's command line, kernel version and os-release must not contain NUL characters");
  }
  // The order ukify uses; .linux last.
  const uki = addPeSections(
    stub,
    [
      { name: '.osrel', data: Buffer.from(inputs.osRelease, 'utf8') },
      { name: '.cmdline', data: Buffer.from(inputs.cmdline, 'utf8') },
      { name: '.uname', data: Buffer.from(inputs.uname, 'utf8') },
      { name: '.initrd', data: initrd },
      { name: '.linux', data: kernel },
    ],
    inputs.stub,
  );
  await writeFileAtomic(inputs.output, uki);
  return createHash('sha256').update(uki).digest('hex');
}
