// Client allowlist: IPv4 and IPv6 CIDR blocks, parsed and matched by pure functions (no DNS, no
// sockets). Every address is held as 16 bytes; an IPv4 address is its IPv4-mapped IPv6 form
// (::ffff:a.b.c.d) and an IPv4 block a.b.c.d/n the mapped block /(96+n), so a dual-stack
// listener's "::ffff:127.0.0.1" matches "127.0.0.0/8" and one comparison serves both families.
// The list guards TCP only: a Unix-socket peer has no network address, and who may connect to
// the socket is decided by its file permissions (and its directory's), not by nbd.allow.

export interface Cidr {
  /** The network address, 16 bytes, host bits cleared. */
  readonly network: Uint8Array;
  /** Prefix length over the 16-byte form (an IPv4 /n is 96 + n). */
  readonly prefixBits: number;
  /** As written, for log lines. */
  readonly text: string;
}

const GROUPS_IPV6 = 8;
const V4_MAPPED_PREFIX_BITS = 96;

/** Parses an IPv4 dotted quad into 4 bytes, or undefined. Leading zeros are refused (octal ambiguity). */
function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i] as string;
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > 255) return undefined;
    out[i] = Number(p);
  }
  return out;
}

/** Hex groups of one side of "::" (an IPv4 tail counts as two groups), or undefined. */
function parseGroups(side: string, allowV4Tail: boolean): number[] | undefined {
  if (side === '') return [];
  const parts = side.split(':');
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as string;
    if (allowV4Tail && i === parts.length - 1 && p.includes('.')) {
      const v4 = parseIpv4(p);
      if (v4 === undefined) return undefined;
      groups.push(((v4[0] as number) << 8) | (v4[1] as number), ((v4[2] as number) << 8) | (v4[3] as number));
      continue;
    }
    if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
    groups.push(parseInt(p, 16));
  }
  return groups;
}

/** Parses an IPv6 address (with "::", an IPv4 tail, a %zone which is ignored) into 16 bytes. */
function parseIpv6(text: string): Uint8Array | undefined {
  const zoneAt = text.indexOf('%');
  const bare = zoneAt < 0 ? text : text.slice(0, zoneAt);
  if (bare.length === 0 || bare.length > 45) return undefined;
  const halves = bare.split('::');
  if (halves.length > 2) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const head = parseGroups(halves[0] as string, false);
    const tail = parseGroups(halves[1] as string, true);
    if (head === undefined || tail === undefined || head.length + tail.length > GROUPS_IPV6 - 1) return undefined;
    groups = [...head, ...new Array<number>(GROUPS_IPV6 - head.length - tail.length).fill(0), ...tail];
  } else {
    const all = parseGroups(bare, true);
    if (all === undefined || all.length !== GROUPS_IPV6) return undefined;
    groups = all;
  }
  const out = new Uint8Array(16);
  for (let i = 0; i < GROUPS_IPV6; i++) {
    out[2 * i] = (groups[i] as number) >> 8;
    out[2 * i + 1] = (groups[i] as number) & 0xff;
  }
  return out;
}

/** An address (IPv4, IPv6, IPv4-mapped IPv6) as 16 bytes with its family, or undefined. */
export function parseAddress(text: string): { bytes: Uint8Array; family: 4 | 6 } | undefined {
  const v4 = parseIpv4(text);
  if (v4 !== undefined) {
    const bytes = new Uint8Array(16);
    bytes[10] = 0xff;
    bytes[11] = 0xff;
    bytes.set(v4, 12);
    return { bytes, family: 4 };
  }
  if (!text.includes(':')) return undefined;
  const v6 = parseIpv6(text);
  return v6 === undefined ? undefined : { bytes: v6, family: 6 };
}

/** "ADDRESS" or "ADDRESS/PREFIX"; a bare address is a single host. Undefined when malformed. */
export function parseCidr(text: string): Cidr | undefined {
  // A zone (%eth0) names a link, not a network: refused here, ignored on peer addresses.
  if (text.length === 0 || text.length > 64 || text.includes('%')) return undefined;
  const slash = text.indexOf('/');
  const address = parseAddress(slash < 0 ? text : text.slice(0, slash));
  if (address === undefined) return undefined;
  const familyBits = address.family === 4 ? 32 : 128;
  let prefix = familyBits;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(p) || Number(p) > familyBits) return undefined;
    prefix = Number(p);
  }
  const prefixBits = address.family === 4 ? V4_MAPPED_PREFIX_BITS + prefix : prefix;
  return { network: maskTo(address.bytes, prefixBits), prefixBits, text };
}

function maskTo(bytes: Uint8Array, prefixBits: number): Uint8Array {
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) {
    const bits = Math.max(0, Math.min(8, prefixBits - 8 * i));
    out[i] = (bytes[i] as number) & ((0xff00 >> bits) & 0xff);
  }
  return out;
}

/** Whether 16-byte `address` lies in `cidr`. */
export function cidrContains(cidr: Cidr, address: Uint8Array): boolean {
  if (address.length !== 16 || cidr.network.length !== 16) throw new RangeError('addresses are 16 bytes');
  const whole = cidr.prefixBits >> 3;
  for (let i = 0; i < whole; i++) if (address[i] !== cidr.network[i]) return false;
  const rest = cidr.prefixBits & 7;
  if (rest === 0) return true;
  const mask = (0xff00 >> rest) & 0xff;
  return ((address[whole] as number) & mask) === cidr.network[whole];
}

/**
 * A matcher over a list of CIDR texts; throws RangeError naming the first malformed entry. An
 * empty list allows every address. A peer address that cannot be parsed is refused.
 */
export function createAllowList(entries: readonly string[]): (peerAddress: string | undefined) => boolean {
  const blocks = entries.map((text, i) => {
    const cidr = parseCidr(text);
    if (cidr === undefined) throw new RangeError(`allow[${i}]: invalid address or CIDR ${JSON.stringify(text)}`);
    return cidr;
  });
  if (blocks.length === 0) return () => true;
  return (peerAddress) => {
    const parsed = peerAddress === undefined ? undefined : parseAddress(peerAddress);
    if (parsed === undefined) return false;
    return blocks.some((b) => cidrContains(b, parsed.bytes));
  };
}

/** How a connection reached the server: only TCP peers have an address to match. */
export type PeerTransport = 'tcp' | 'unix';

/**
 * createAllowList applied per transport: TCP peers must match `entries`; Unix-socket peers are
 * always let through here, because file permissions on the socket already decided who connects.
 */
export function createPeerFilter(entries: readonly string[]): (transport: PeerTransport, peerAddress: string | undefined) => boolean {
  const allowed = createAllowList(entries);
  return (transport, peerAddress) => transport === 'unix' || allowed(peerAddress);
}
