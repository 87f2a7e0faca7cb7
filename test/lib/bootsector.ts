// A 512-byte x86 boot sector, hand-assembled here (no assembler on the test machine needed):
// the BIOS loads it at 0000:7C00 in real mode; it prints a message on COM1 (polling the line
// status register, as firmware with no interrupts set up must) and then halts for good. The
// test that boots a VM from an NBD export looks for the message on the VM's serial port.

const SECTOR_BYTES = 512;
const LOAD_ADDRESS = 0x7c00;
const COM1 = 0x3f8;
const COM1_LSR = COM1 + 5; // line status register
const LSR_THR_EMPTY = 0x20; // the transmit holding register takes a byte
const MESSAGE_BYTES_MAX = 400;

/** Tiny emitter: bytes plus rel8 jumps to labels resolved when the code is finished. */
class Code {
  private readonly bytes: number[] = [];
  private readonly labels = new Map<string, number>();
  private readonly fixups: { at: number; label: string }[] = [];

  emit(...b: readonly number[]): this {
    for (const x of b) {
      if (!Number.isInteger(x) || x < 0 || x > 0xff) throw new Error(`not a byte: ${x}`);
      this.bytes.push(x);
    }
    return this;
  }

  imm16(v: number): readonly [number, number] {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new Error(`not a 16-bit value: ${v}`);
    return [v & 0xff, v >> 8];
  }

  label(name: string): this {
    if (this.labels.has(name)) throw new Error(`label ${name} defined twice`);
    this.labels.set(name, this.bytes.length);
    return this;
  }

  /** opcode + rel8 displacement to `label` (measured from the end of the instruction). */
  jump8(opcode: number, label: string): this {
    this.emit(opcode, 0);
    this.fixups.push({ at: this.bytes.length - 1, label });
    return this;
  }

  get offset(): number { return this.bytes.length; }

  finish(): Uint8Array {
    for (const f of this.fixups) {
      const target = this.labels.get(f.label);
      if (target === undefined) throw new Error(`undefined label ${f.label}`);
      const rel = target - (f.at + 1);
      if (rel < -128 || rel > 127) throw new Error(`jump to ${f.label} out of rel8 range (${rel})`);
      this.bytes[f.at] = rel & 0xff;
    }
    return Uint8Array.from(this.bytes);
  }
}

/**
 * The boot sector printing `message` (printable ASCII; CR LF appended) on COM1.
 *
 *   cli; xor ax,ax; mov ds,ax; mov es,ax; mov ss,ax; mov sp,0x7c00; cld
 *   ; 115200 8N1 (firmware may have left the UART in any state)
 *   mov dx,0x3fb; mov al,0x80; out dx,al      ; DLAB on
 *   mov dx,0x3f8; mov al,1; out dx,al         ; divisor 1 (low byte)
 *   mov dx,0x3f9; xor al,al; out dx,al        ; divisor high byte
 *   mov dx,0x3fb; mov al,3; out dx,al         ; 8N1, DLAB off
 *   mov si,msg
 * next: lodsb; test al,al; jz done; mov ah,al
 * wait: mov dx,0x3fd; in al,dx; test al,0x20; jz wait
 *       mov al,ah; mov dx,0x3f8; out dx,al; jmp next
 * done: hlt; jmp done
 * msg:  db message, 13, 10, 0
 *       ... zeros ... db 0x55, 0xaa
 */
export function bootSector(message: string): Uint8Array {
  if (!/^[\x20-\x7e]+$/.test(message)) throw new Error('boot message must be printable ASCII');
  if (message.length > MESSAGE_BYTES_MAX) throw new Error(`boot message longer than ${MESSAGE_BYTES_MAX} bytes`);
  const c = new Code();
  const outByte = (port: number, value: number): void => {
    c.emit(0xba, ...c.imm16(port)); // mov dx, port
    if (value === 0) c.emit(0x30, 0xc0); // xor al, al
    else c.emit(0xb0, value); // mov al, value
    c.emit(0xee); // out dx, al
  };
  c.emit(0xfa); // cli
  c.emit(0x31, 0xc0); // xor ax, ax
  c.emit(0x8e, 0xd8); // mov ds, ax
  c.emit(0x8e, 0xc0); // mov es, ax
  c.emit(0x8e, 0xd0); // mov ss, ax
  c.emit(0xbc, ...c.imm16(LOAD_ADDRESS)); // mov sp, 0x7c00 (stack grows down, below us)
  c.emit(0xfc); // cld: lodsb counts up
  outByte(COM1 + 3, 0x80);
  outByte(COM1, 1);
  outByte(COM1 + 1, 0);
  outByte(COM1 + 3, 0x03);
  const movSi = c.offset;
  c.emit(0xbe, 0, 0); // mov si, msg (patched below: msg's address needs the code's length)
  c.label('next');
  c.emit(0xac); // lodsb
  c.emit(0x84, 0xc0); // test al, al
  c.jump8(0x74, 'done'); // jz done
  c.emit(0x88, 0xc4); // mov ah, al
  c.label('wait');
  c.emit(0xba, ...c.imm16(COM1_LSR)); // mov dx, 0x3fd
  c.emit(0xec); // in al, dx
  c.emit(0xa8, LSR_THR_EMPTY); // test al, 0x20
  c.jump8(0x74, 'wait'); // jz wait
  c.emit(0x88, 0xe0); // mov al, ah
  c.emit(0xba, ...c.imm16(COM1)); // mov dx, 0x3f8
  c.emit(0xee); // out dx, al
  c.jump8(0xeb, 'next'); // jmp next
  c.label('done');
  c.emit(0xf4); // hlt (interrupts are off: it stays halted)
  c.jump8(0xeb, 'done'); // jmp done (in case an NMI wakes it)
  const msgOffset = c.offset;
  c.emit(...Buffer.from(message, 'ascii'), 13, 10, 0);
  const code = c.finish();

  const sector = new Uint8Array(SECTOR_BYTES);
  if (code.length > 446) throw new Error(`boot code is ${code.length} bytes; it must end before the partition table at 446`);
  sector.set(code, 0);
  const msgAddress = LOAD_ADDRESS + msgOffset;
  sector[movSi + 1] = msgAddress & 0xff;
  sector[movSi + 2] = msgAddress >> 8;
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}
