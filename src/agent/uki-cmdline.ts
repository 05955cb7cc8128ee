// Reads the .cmdline section of a UKI on the ESP, to tell which /usr a boot entry boots when the
// boot loader did not say which entry it picked. Files on the ESP are not trusted: every offset is
// checked against the file and the amount read is bounded.
import { open } from 'node:fs/promises';

/** Kernel command lines are at most a few KiB (COMMAND_LINE_SIZE is 2048 on x86). */
const MAX_CMDLINE = 64 * 1024;
const MAX_HEADERS = 64 * 1024;
const SECTION_HEADER = 40;

/** The UKI's built-in command line, or undefined when the file is no PE image with a .cmdline section. */
export async function readUkiCmdline(path: string): Promise<string | undefined> {
  const handle = await open(path, 'r');
  try {
    const size = (await handle.stat()).size;
    const head = Buffer.alloc(Math.min(size, MAX_HEADERS));
    await handle.read(head, 0, head.length, 0);
    const section = findSection(head, '.cmdline');
    if (!section || section.offset + section.length > size || section.length > MAX_CMDLINE) return undefined;
    const data = Buffer.alloc(section.length);
    await handle.read(data, 0, data.length, section.offset);
    // systemd-stub stops at the first NUL; ukify writes none, some tools pad with them.
    const end = data.indexOf(0);
    return data.subarray(0, end === -1 ? data.length : end).toString('utf8');
  } finally {
    await handle.close();
  }
}

function findSection(head: Buffer, name: string): { offset: number; length: number } | undefined {
  if (head.length < 0x40 || head.toString('latin1', 0, 2) !== 'MZ') return undefined;
  const pe = head.readUInt32LE(0x3c);
  if (pe + 24 > head.length || head.toString('latin1', pe, pe + 4) !== 'PE\0\0') return undefined;
  const count = head.readUInt16LE(pe + 6);
  const table = pe + 24 + head.readUInt16LE(pe + 20);
  for (let i = 0; i < count; i++) {
    const h = table + i * SECTION_HEADER;
    if (h + SECTION_HEADER > head.length) return undefined;
    if (head.toString('latin1', h, h + 8).replace(/\0+$/, '') !== name) continue;
    // VirtualSize is the section's length; the raw size is it rounded up to the file alignment.
    return { offset: head.readUInt32LE(h + 20), length: Math.min(head.readUInt32LE(h + 8), head.readUInt32LE(h + 16)) };
  }
  return undefined;
}
