// Meta contexts and extended headers in the handshake: the option codecs, the matching rules,
// and the server's haggling machine (server/handshake.ts) driven socket-free, option by option.
// Real clients drive the same paths in block-status-peers.test.ts.
import { describe, expect, it } from 'vitest';
import {
  ByteAccumulator, ClientFlag, Info, META_QUERIES_MAX, MetaContext, Opt, Rep, STRING_MAX_BYTES, ServerHandshake, type HandshakeStep,
  type NbdExportProvider, type OptionReply, createMemoryExport, createMemoryProvider, decodeMetaContextReply, decodeMetaContextRequest,
  decodeOption, decodeOptionReply, decodeInfoReply, encodeClientFlags, encodeInfoOption, encodeMetaContextOption, encodeMetaContextReply,
  encodeOption, listMatches, setMatches, type TlsMode,
} from '../src/index.js';

const enc = new TextEncoder();
const never = async (): Promise<never> => { throw new Error('not called'); };
const withContexts = createMemoryExport('disk0', 1 << 20, {
  extraContexts: { 'qemu:dirty-bitmap:a': never, 'qemu:dirty-bitmap:b': never, 'qemu:allocation-depth': never },
});
const other = createMemoryExport('other', 1 << 20);
const bare = createMemoryExport('bare', 1 << 20, { metaContexts: false });
const provider = createMemoryProvider([withContexts, other, bare]);

/** A handshake machine past the client flags; send() returns the replies to one option. */
class Machine {
  readonly hs: ServerHandshake;
  private readonly acc = new ByteAccumulator(1 << 20);
  last: HandshakeStep = { kind: 'need-more' };

  constructor(tls: TlsMode = 'none', p: NbdExportProvider = provider) {
    this.hs = new ServerHandshake({ provider: p, optionDataMaxBytes: 65536, optionsMax: 64, tls });
    this.acc.push(encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | ClientFlag.NO_ZEROES));
  }

  send(option: Uint8Array): OptionReply[] {
    this.acc.push(option);
    this.last = this.hs.advance(this.acc);
    return this.hs.output.splice(0).flatMap((m) => {
      const d = decodeOptionReply(m, 1 << 20);
      return d.kind === 'value' ? [d.value] : []; // an EXPORT_NAME reply is not an option reply
    });
  }

  /** Shorthands: one option, the reply types it got. */
  types(option: Uint8Array): number[] {
    return this.send(option).map((r) => r.replyType);
  }
}

const list = (name: string, queries: string[]): Uint8Array => encodeMetaContextOption(Opt.LIST_META_CONTEXT, name, queries);
const set = (name: string, queries: string[]): Uint8Array => encodeMetaContextOption(Opt.SET_META_CONTEXT, name, queries);
const named = (replies: OptionReply[]): { id: number; name: string }[] =>
  replies.filter((r) => r.replyType === Rep.META_CONTEXT).map((r) => {
    const d = decodeMetaContextReply(r.data);
    if (d === undefined) throw new Error('bad META_CONTEXT');
    return { id: d.contextId, name: d.name };
  });

describe('meta context option codec', () => {
  it('round-trips LIST and SET data through the option decoder', () => {
    const d = decodeOption(set('disk0', ['base:allocation', 'qemu:dirty-bitmap:ä']), 65536);
    expect(d).toMatchObject({ kind: 'value', value: { type: 'set-meta-context', name: 'disk0', queries: ['base:allocation', 'qemu:dirty-bitmap:ä'] } });
    expect(decodeOption(list('', []), 65536)).toMatchObject({ kind: 'value', value: { type: 'list-meta-context', name: '', queries: [] } });
  });

  it('refuses malformed data with a reason: short, lying lengths, trailing bytes, NUL, too many or too long queries', () => {
    const data = (build: (dv: DataView) => void, n: number): Uint8Array => { const b = new Uint8Array(n); build(new DataView(b.buffer)); return b; };
    const cases: [string, Uint8Array][] = [
      ['short', new Uint8Array(7)],
      ['name longer than data', data((dv) => dv.setUint32(0, 100), 8)],
      ['name above 4096', data((dv) => dv.setUint32(0, 5000), 5100)],
      ['count without queries', data((dv) => dv.setUint32(4, 2), 8)],
      ['query longer than data', data((dv) => { dv.setUint32(4, 1); dv.setUint32(8, 10); }, 14)],
      ['trailing bytes', data(() => {}, 9)],
      ['too many queries', data((dv) => dv.setUint32(4, META_QUERIES_MAX + 1), 8 + 4 * (META_QUERIES_MAX + 1))],
      ['NUL in a query', set('', ['a\0b']).subarray(16)],
      ['bad UTF-8', (() => { const b = set('', ['ab']).slice(16); b[12] = 0xff; return b; })()],
    ];
    for (const [what, bytes] of cases) {
      const d = decodeMetaContextRequest(bytes);
      expect(d.kind, what).toBe('invalid');
      expect(decodeOption(encodeOption(Opt.SET_META_CONTEXT, bytes), 65536), what).toMatchObject({ kind: 'value', value: { type: 'invalid', option: Opt.SET_META_CONTEXT } });
    }
    // The limits themselves are accepted.
    const most = Array.from({ length: META_QUERIES_MAX }, (_, i) => `q${i}`);
    expect(decodeMetaContextRequest(set('', most).subarray(16))).toMatchObject({ kind: 'value', value: { queries: most } });
    const longest = 'x'.repeat(STRING_MAX_BYTES);
    expect(decodeMetaContextRequest(set(longest, [longest]).subarray(16))).toMatchObject({ kind: 'value' });
  });

  it('EXTENDED_HEADERS carries no data', () => {
    expect(decodeOption(encodeOption(Opt.EXTENDED_HEADERS), 64)).toMatchObject({ value: { type: 'extended-headers' } });
    expect(decodeOption(encodeOption(Opt.EXTENDED_HEADERS, new Uint8Array(1)), 64)).toMatchObject({ value: { type: 'invalid', option: Opt.EXTENDED_HEADERS } });
  });

  it('META_CONTEXT replies round-trip', () => {
    const r = decodeOptionReply(encodeMetaContextReply(Opt.SET_META_CONTEXT, 0xfffffffe, 'base:allocation'), 4096);
    expect(r.kind === 'value' && r.value.replyType === Rep.META_CONTEXT && decodeMetaContextReply(r.value.data)).toEqual({ contextId: 0xfffffffe, name: 'base:allocation' });
    expect(decodeMetaContextReply(new Uint8Array(4))).toBeUndefined();
  });
});

describe('matching', () => {
  const offered = ['base:allocation', 'qemu:dirty-bitmap:a', 'qemu:dirty-bitmap:b', 'qemu:allocation-depth'];
  it('LIST: no query lists all; namespaces by prefix; leaf names exactly; each once', () => {
    expect(listMatches(offered, [])).toEqual(offered);
    expect(listMatches(offered, ['base:'])).toEqual(['base:allocation']);
    expect(listMatches(offered, ['qemu:'])).toEqual(offered.slice(1));
    expect(listMatches(offered, [MetaContext.DIRTY_BITMAP_PREFIX, 'qemu:dirty-bitmap:a'])).toEqual(['qemu:dirty-bitmap:a', 'qemu:dirty-bitmap:b']);
    expect(listMatches(offered, ['base:alloc', 'nope:', 'qemu:dirty-bitmap:c'])).toEqual([]);
  });

  it('SET: exact names only, in query order, duplicates once', () => {
    expect(setMatches(offered, [])).toEqual([]);
    expect(setMatches(offered, ['base:', 'qemu:'])).toEqual([]);
    expect(setMatches(offered, ['qemu:dirty-bitmap:b', 'base:allocation', 'qemu:dirty-bitmap:b', 'x:y'])).toEqual(['qemu:dirty-bitmap:b', 'base:allocation']);
  });
});

describe('handshake machine: LIST/SET_META_CONTEXT', () => {
  it('LIST answers contexts (id 0) then ACK, with or without structured replies; unknown export: ERR_UNKNOWN', () => {
    const m = new Machine();
    const replies = m.send(list('', ['qemu:dirty-bitmap:']));
    expect(named(replies)).toEqual([{ id: 0, name: 'qemu:dirty-bitmap:a' }, { id: 0, name: 'qemu:dirty-bitmap:b' }]);
    expect(replies.at(-1)?.replyType).toBe(Rep.ACK);
    expect(named(m.send(list('disk0', [])))).toHaveLength(4);
    expect(m.types(list('missing', []))).toEqual([Rep.ERR_UNKNOWN]);
    expect(m.types(list('bare', []))).toEqual([Rep.ACK]); // an export without metaContexts offers none
    expect(m.types(encodeOption(Opt.LIST_META_CONTEXT, new Uint8Array(3)))).toEqual([Rep.ERR_INVALID]);
    // A backend whose names() throws offers none rather than breaking the handshake.
    const throwing = Object.create(other, { name: { value: 'throwing' }, metaContexts: { value: { names: () => { throw new Error('boom'); }, blockStatus: never } } });
    const m2 = new Machine('none', createMemoryProvider([throwing]));
    expect(m2.types(list('throwing', []))).toEqual([Rep.ACK]);
  });

  it('SET needs structured replies first (ERR_INVALID), then selects exact names with ids unique per connection', () => {
    const m = new Machine();
    expect(m.types(set('disk0', ['base:allocation']))).toEqual([Rep.ERR_INVALID]);
    expect(m.types(encodeOption(Opt.STRUCTURED_REPLY))).toEqual([Rep.ACK]);
    const first = named(m.send(set('disk0', ['base:allocation', 'qemu:dirty-bitmap:a', 'base:'])));
    expect(first.map((c) => c.name)).toEqual(['base:allocation', 'qemu:dirty-bitmap:a']);
    const second = named(m.send(set('', ['base:allocation'])));
    expect(second).toHaveLength(1);
    const ids = [...first, ...second].map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(m.types(set('missing', ['base:allocation']))).toEqual([Rep.ERR_UNKNOWN]);
  });

  it('the selection follows the export it named: kept for the same export under another name, dropped for another export', () => {
    const go = (setName: string, goName: string): string[] => {
      const m = new Machine();
      m.send(encodeOption(Opt.STRUCTURED_REPLY));
      m.send(set(setName, ['base:allocation']));
      m.send(encodeInfoOption(Opt.GO, goName, []));
      if (m.last.kind !== 'transmission') throw new Error('no transmission');
      return m.last.setup.metaContexts.map((c) => c.name);
    };
    expect(go('', 'disk0')).toEqual(['base:allocation']); // '' is the default export, disk0
    expect(go('disk0', '')).toEqual(['base:allocation']);
    expect(go('disk0', 'other')).toEqual([]);
    expect(go('other', 'disk0')).toEqual([]);
    // EXPORT_NAME ends haggling the same way.
    const m = new Machine();
    m.send(encodeOption(Opt.STRUCTURED_REPLY));
    m.send(set('disk0', ['base:allocation']));
    m.send(encodeOption(Opt.EXPORT_NAME, enc.encode('other')));
    expect(m.last.kind === 'transmission' && m.last.setup.metaContexts).toEqual([]);
  });

  it('a failed SET clears the selection; SET with no queries selects none', () => {
    for (const failing of [set('missing', ['base:allocation']), set('disk0', [])]) {
      const m = new Machine();
      m.send(encodeOption(Opt.STRUCTURED_REPLY));
      m.send(set('disk0', ['base:allocation']));
      m.send(failing);
      m.send(encodeInfoOption(Opt.GO, 'disk0', []));
      expect(m.last.kind === 'transmission' && m.last.setup.metaContexts).toEqual([]);
    }
  });

  it('STARTTLS resets structured replies, extended headers and the selection', () => {
    const m = new Machine('optional');
    m.send(encodeOption(Opt.EXTENDED_HEADERS));
    m.send(set('disk0', ['base:allocation']));
    expect(m.types(encodeOption(Opt.STARTTLS))).toEqual([Rep.ACK]);
    expect(m.last.kind).toBe('starttls');
    // (connection.ts upgrades the socket here; the machine just continues.)
    expect(m.types(set('disk0', ['base:allocation']))).toEqual([Rep.ERR_INVALID]);
    m.send(encodeInfoOption(Opt.GO, 'disk0', []));
    expect(m.last).toMatchObject({ kind: 'transmission', setup: { structuredReplies: false, extendedHeaders: false, metaContexts: [] } });
  });
});

describe('handshake machine: EXTENDED_HEADERS', () => {
  it('ACKs once; a second one is ERR_INVALID; STRUCTURED_REPLY afterwards is ERR_EXT_HEADER_REQD; SET works without STRUCTURED_REPLY', () => {
    const m = new Machine();
    expect(m.types(encodeOption(Opt.EXTENDED_HEADERS))).toEqual([Rep.ACK]);
    expect(m.types(encodeOption(Opt.EXTENDED_HEADERS))).toEqual([Rep.ERR_INVALID]);
    expect(m.types(encodeOption(Opt.STRUCTURED_REPLY))).toEqual([Rep.ERR_EXT_HEADER_REQD]);
    expect(m.types(encodeOption(Opt.EXTENDED_HEADERS, new Uint8Array(4)))).toEqual([Rep.ERR_INVALID]);
    expect(named(m.send(set('disk0', ['base:allocation'])))).toHaveLength(1);
    const replies = m.send(encodeInfoOption(Opt.GO, '', [Info.NAME]));
    expect(m.last).toMatchObject({ kind: 'transmission', setup: { structuredReplies: true, extendedHeaders: true, metaContexts: [{ name: 'base:allocation' }] } });
    // DF is advertised with extended headers; INFO_NAME gives the canonical name for ''.
    const infos = replies.filter((r) => r.replyType === Rep.INFO).map((r) => decodeInfoReply(r.data));
    expect(infos).toContainEqual({ info: 'name', text: 'disk0' });
    const exp = infos.find((i) => i?.info === 'export');
    expect(exp !== undefined && exp.info === 'export' && (exp.transmissionFlags & (1 << 7)) !== 0).toBe(true);
  });

  it('STRUCTURED_REPLY then EXTENDED_HEADERS is allowed; contexts selected before the mode change are dropped', () => {
    const m = new Machine();
    m.send(encodeOption(Opt.STRUCTURED_REPLY));
    m.send(set('disk0', ['base:allocation']));
    expect(m.types(encodeOption(Opt.EXTENDED_HEADERS))).toEqual([Rep.ACK]);
    m.send(encodeInfoOption(Opt.GO, 'disk0', []));
    expect(m.last).toMatchObject({ kind: 'transmission', setup: { extendedHeaders: true, metaContexts: [] } });
  });

  it('TLS required: LIST/SET/EXTENDED_HEADERS before STARTTLS get ERR_TLS_REQD', () => {
    const m = new Machine('required');
    for (const o of [list('', []), set('', []), encodeOption(Opt.EXTENDED_HEADERS)]) expect(m.types(o)).toEqual([Rep.ERR_TLS_REQD]);
  });
});
