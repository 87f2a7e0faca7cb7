// A static x86-64 Linux program of a few hundred bytes, hand-assembled like the boot sector
// (no compiler or libc needed): write(1, message) then exit(0). Tests store it on a file system
// that lives on a onestack volume and run it from there.

const LOAD_ADDRESS = 0x400000;
const ELF_HEADER_BYTES = 64;
const PROGRAM_HEADER_BYTES = 56;
const MESSAGE_BYTES_MAX = 4096;

/**
 *   mov eax, 1 (write); mov edi, 1 (stdout); lea rsi, [rip+msg]; mov edx, len; syscall
 *   mov eax, 60 (exit); xor edi, edi; syscall
 *   msg: message
 * in one PT_LOAD segment (R+X) mapping the whole file at 0x400000.
 */
export function tinyElf(message: string): Buffer {
  const msg = Buffer.from(message, 'utf8');
  if (msg.length === 0 || msg.length > MESSAGE_BYTES_MAX) throw new Error(`message must be 1..${MESSAGE_BYTES_MAX} bytes`);
  const code = Buffer.concat([
    Buffer.from([0xb8, 1, 0, 0, 0]), // mov eax, 1
    Buffer.from([0xbf, 1, 0, 0, 0]), // mov edi, 1
    Buffer.from([0x48, 0x8d, 0x35, 0, 0, 0, 0]), // lea rsi, [rip + disp32] (patched)
    Buffer.from([0xba, 0, 0, 0, 0]), // mov edx, len (patched)
    Buffer.from([0x0f, 0x05]), // syscall
    Buffer.from([0xb8, 60, 0, 0, 0]), // mov eax, 60
    Buffer.from([0x31, 0xff]), // xor edi, edi
    Buffer.from([0x0f, 0x05]), // syscall
  ]);
  const leaEnd = 17; // the displacement counts from the end of the lea instruction
  code.writeInt32LE(code.length - leaEnd, 13);
  code.writeUInt32LE(msg.length, 18);

  const codeOffset = ELF_HEADER_BYTES + PROGRAM_HEADER_BYTES;
  const fileBytes = codeOffset + code.length + msg.length;
  const elf = Buffer.alloc(fileBytes);
  elf.set([0x7f, 0x45, 0x4c, 0x46, 2 /* 64-bit */, 1 /* little endian */, 1 /* version */], 0);
  elf.writeUInt16LE(2, 16); // ET_EXEC
  elf.writeUInt16LE(0x3e, 18); // EM_X86_64
  elf.writeUInt32LE(1, 20); // EV_CURRENT
  elf.writeBigUInt64LE(BigInt(LOAD_ADDRESS + codeOffset), 24); // e_entry
  elf.writeBigUInt64LE(BigInt(ELF_HEADER_BYTES), 32); // e_phoff
  elf.writeUInt16LE(ELF_HEADER_BYTES, 52); // e_ehsize
  elf.writeUInt16LE(PROGRAM_HEADER_BYTES, 54); // e_phentsize
  elf.writeUInt16LE(1, 56); // e_phnum
  const ph = ELF_HEADER_BYTES;
  elf.writeUInt32LE(1, ph); // PT_LOAD
  elf.writeUInt32LE(5, ph + 4); // PF_R | PF_X
  elf.writeBigUInt64LE(0n, ph + 8); // p_offset
  elf.writeBigUInt64LE(BigInt(LOAD_ADDRESS), ph + 16); // p_vaddr
  elf.writeBigUInt64LE(BigInt(LOAD_ADDRESS), ph + 24); // p_paddr
  elf.writeBigUInt64LE(BigInt(fileBytes), ph + 32); // p_filesz
  elf.writeBigUInt64LE(BigInt(fileBytes), ph + 40); // p_memsz
  elf.writeBigUInt64LE(0x1000n, ph + 48); // p_align
  code.copy(elf, codeOffset);
  msg.copy(elf, codeOffset + code.length);
  return elf;
}
