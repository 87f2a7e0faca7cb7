// The API token check (issue 8, item 5): candidates are compared as SHA-256 digests with
// crypto.timingSafeEqual, so every comparison handles 32 equal-length bytes whatever the
// candidate's length or how much of the token it gets right. Timing itself is not asserted
// (STYLE: speed is measured, not asserted); these pin the behaviour around it.
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import { TokenCheck } from '../src/api/http.js';

// The real function, observed: which buffers the check hands it.
vi.mock('node:crypto', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:crypto')>();
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) };
});

const TOKEN = 'Yq3v2kZ9_0a1b2c3d4e5f6g7h8i9j0kLmNoPqRsTuVw';
const request = (authorization?: string): IncomingMessage =>
  ({ headers: authorization === undefined ? {} : { authorization } }) as unknown as IncomingMessage;

describe('TokenCheck', () => {
  const check = new TokenCheck(TOKEN);

  it('accepts the token, and only the token', () => {
    expect(check.matches(TOKEN)).toBe(true);
    for (const wrong of [undefined, '', TOKEN.slice(0, -1), `${TOKEN}x`, TOKEN.toLowerCase(), ` ${TOKEN}`, `${TOKEN.slice(0, -1)}W`, 'x'.repeat(5000)]) {
      expect(check.matches(wrong), String(wrong).slice(0, 20)).toBe(false);
    }
  });

  it('reads `Authorization: Bearer TOKEN` (scheme case-insensitive) and nothing else', () => {
    expect(check.matchesRequest(request(`Bearer ${TOKEN}`))).toBe(true);
    expect(check.matchesRequest(request(`bearer ${TOKEN}`))).toBe(true);
    for (const header of [undefined, TOKEN, `Basic ${TOKEN}`, `Bearer ${TOKEN} extra`, `Bearer`, `Bearer ${TOKEN.slice(1)}`]) {
      expect(check.matchesRequest(request(header)), String(header)).toBe(false);
    }
  });

  it('refuses a token too short to be secret', () => {
    expect(() => new TokenCheck('short')).toThrow(/too short/);
  });

  it('every candidate, whatever its length, goes through one timingSafeEqual over two 32-byte digests', () => {
    vi.mocked(timingSafeEqual).mockClear();
    const candidates = ['', 'a', TOKEN.slice(0, 10), TOKEN, `${TOKEN}${TOKEN}`, 'z'.repeat(4096)];
    for (const c of candidates) check.matches(c);
    const calls = vi.mocked(timingSafeEqual).mock.calls;
    expect(calls).toHaveLength(candidates.length);
    for (const [a, b] of calls) expect([(a as Buffer).length, (b as Buffer).length]).toEqual([32, 32]);
  });
});
