// Meta context negotiation (NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT) for one
// connection: which contexts an export offers match the client's queries, the ids handed out,
// and the selection SET made, bound to the export it named. Socket-free; the handshake machine
// calls it and sends what it returns.

import type { NbdExport } from '../backend.js';
import { encodeString } from '../codec/bytes.js';
import { encodeMetaContextReply } from '../codec/meta-context.js';
import { Opt, STRING_MAX_BYTES } from '../constants.js';

export interface SelectedContext {
  /** The id block status chunks carry; unique within the connection. */
  readonly id: number;
  readonly name: string;
}

/**
 * What the export offers: distinct names that fit the wire. A backend bug must not break the
 * handshake: names() throwing offers none, which is safe (clients then treat everything as data).
 */
export function offeredContexts(exp: NbdExport): string[] {
  let names: readonly string[];
  try {
    names = exp.metaContexts?.names() ?? [];
  } catch {
    return [];
  }
  if (!Array.isArray(names)) return [];
  return [...new Set(names)].filter((n) => typeof n === 'string' && n.length > 0 && encodeString(n).length <= STRING_MAX_BYTES);
}

/**
 * LIST semantics: no query lists everything; a query ending in ':' is a namespace ("base:",
 * "qemu:", "qemu:dirty-bitmap:") and lists every context under it; other queries match exactly.
 * Each match once, in the export's order.
 */
export function listMatches(offered: readonly string[], queries: readonly string[]): string[] {
  if (queries.length === 0) return [...offered];
  return offered.filter((name) => queries.some((q) => (q.endsWith(':') ? name.startsWith(q) : name === q)));
}

/** SET semantics: exact names only (unknown ones are ignored, as the spec allows), each once, in query order. */
export function setMatches(offered: readonly string[], queries: readonly string[]): string[] {
  const known = new Set(offered);
  return [...new Set(queries)].filter((q) => known.has(q));
}

export class MetaContextNegotiation {
  private selection: { readonly exportName: string; readonly contexts: readonly SelectedContext[] } | undefined;
  // Fresh ids for every SET, so an id never names two contexts on one connection. Bounded by
  // optionsMax × META_QUERIES_MAX, far below 2^32.
  private nextId = 1;

  /** LIST replies (ids are meaningless there: 0), without the final ACK. */
  list(exp: NbdExport, queries: readonly string[]): Uint8Array[] {
    return listMatches(offeredContexts(exp), queries).map((name) => encodeMetaContextReply(Opt.LIST_META_CONTEXT, 0, name));
  }

  /** SET: replaces the selection with the matches for `exp`; returns their replies, without the ACK. */
  set(exp: NbdExport, queries: readonly string[]): Uint8Array[] {
    const contexts = setMatches(offeredContexts(exp), queries).map((name) => ({ id: this.nextId++, name }));
    this.selection = { exportName: exp.name, contexts };
    return contexts.map((c) => encodeMetaContextReply(Opt.SET_META_CONTEXT, c.id, c.name));
  }

  /** A failed SET, STARTTLS or a change of header mode: nothing stays selected. */
  reset(): void {
    this.selection = undefined;
  }

  /** The contexts transmission on `exp` uses: none when SET named a different export. */
  forExport(exp: NbdExport): readonly SelectedContext[] {
    const s = this.selection;
    // Names, not objects: '' and the default export's name open the same export.
    return s !== undefined && s.exportName === exp.name ? s.contexts : [];
  }
}
