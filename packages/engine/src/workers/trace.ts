// Debug trace of sub-requests (ONESTACK_TRACE=ids): one stderr line per sub with its 64-bit ID,
// decoded. A sub's class bit says whether its element is local or remote (middle-core.ts).
import { writeSync } from 'node:fs';
import { D, DESC_WORDS, parseRequestId, requestIdFromWords } from '@onestack/queue';

export const TRACE_IDS = (process.env.ONESTACK_TRACE ?? '').split(',').includes('ids');

const OP_NAMES = ['READ', 'WRITE', 'FLUSH', 'TRIM', 'WRITE_ZEROES', 'CACHE', 'COMPUTE'];

export function traceSub(stage: string, words: Int32Array, sub: number, offsetBytes: number): void {
  const sb = sub * DESC_WORDS;
  const id = requestIdFromWords(words[sb + D.ID_HI]!, words[sb + D.ID_LO]!);
  const p = parseRequestId(id);
  // Straight to fd 2: a worker's process.stderr is flow-controlled through its event loop, which a
  // bottom worker blocked in Atomics.wait does not turn, so later lines would sit in its buffer.
  writeSync(2, `onestack: trace: ${stage} id=0x${id.toString(16).padStart(16, '0')} class=${p.cls} op=${OP_NAMES[p.op] ?? p.op} volume=${p.volumeIndex} seq=${p.sequence} element=${words[sb + D.TARGET]} offset=${offsetBytes} length=${words[sb + D.LENGTH]}\n`);
}
