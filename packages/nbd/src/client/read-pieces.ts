// The pieces of one READ received so far, as sorted [start, end) pairs with adjacent ones merged
// (servers send chunks in order: normally one pair). Overlaps are refused: chunks that overlap
// could add up to the read's length while leaving some of it unwritten.

/** Disjoint pieces of one READ that may be outstanding at once. */
export const READ_PIECES_MAX = 1024;

/** Adds [start, end) to sorted, merged pairs; returns why it cannot (overlap, too fragmented). */
export function addReadPiece(pairs: number[], start: number, end: number): string | undefined {
  let lo = 0;
  let hi = pairs.length / 2;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (pairs[2 * mid]! < start) lo = mid + 1;
    else hi = mid;
  }
  const prevEnd = lo > 0 ? pairs[2 * lo - 1]! : -1;
  const nextStart = lo < pairs.length / 2 ? pairs[2 * lo]! : Infinity;
  if (prevEnd > start || nextStart < end) return 'read reply chunks overlap';
  if (prevEnd === start && nextStart === end) pairs.splice(2 * lo - 1, 2);
  else if (prevEnd === start) pairs[2 * lo - 1] = end;
  else if (nextStart === end) pairs[2 * lo] = start;
  else if (pairs.length >= 2 * READ_PIECES_MAX) return `read reply in more than ${READ_PIECES_MAX} disjoint pieces`;
  else pairs.splice(2 * lo, 0, start, end);
  return undefined;
}
