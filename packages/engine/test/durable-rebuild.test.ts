// Rebuilds: a failed leg is rebuilt onto a hot spare automatically (progress, throttle, data),
// replaceElement moves a leg onto another unused element, a rebuild cut short by a stop starts
// again at the next open, and the replacement survives the restart (state file).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Engine, type RebuildStatus } from '../dist/index.js';
import { readSuperblockFile } from '../dist/meta/element-io.js';
import { DATA_OFFSET_BYTES } from '../src/meta/types.js';
import { equalBytes, MiB, pattern } from './datapath-harness.js';
import { readFileRange } from './helpers.js';

const LEG_BYTES = 32 * MiB;
const RATE_MIB_PER_SEC = 24;
const quiet = (): void => undefined;

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onestack-rebuild-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function config(): unknown {
  for (const f of ['p', 'q', 's1', 's2']) {
    const file = path.join(dir, `${f}.img`);
    if (fs.existsSync(file)) continue;
    fs.writeFileSync(file, '');
    fs.truncateSync(file, DATA_OFFSET_BYTES + LEG_BYTES);
  }
  return {
    dataDir: path.join(dir, 'data'), nbd: { listen: '127.0.0.1:0' }, rebuild: { maxMiBPerSec: RATE_MIB_PER_SEC },
    elements: ['p', 'q', 's1', 's2'].map((f) => ({ name: f, uri: `file:${path.join(dir, `${f}.img`)}` })),
    volumes: [{ name: 'm', layout: 'raid1', elements: ['p', 'q'], spares: ['s1'] }],
  };
}

async function until(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const dataOf = (name: string): Uint8Array => readFileRange(path.join(dir, `${name}.img`), DATA_OFFSET_BYTES, LEG_BYTES);

describe('rebuild onto spares and replacements', () => {
  it('rebuilds a failed leg onto the hot spare with live, throttled progress; replaceElement; restart mid-rebuild', async () => {
    const engine = await Engine.open({ config: config(), log: quiet });
    const data = pattern(LEG_BYTES, 5);
    await engine.volume('m').write(0, data);
    const seen: RebuildStatus[] = [];
    engine.events.on('change', (s: { volumes: { name: string; rebuild: RebuildStatus | null }[] }) => {
      const r = s.volumes[0]?.rebuild;
      if (r !== null && r !== undefined) seen.push(r);
    });
    const m = (): ReturnType<Engine['status']>['volumes'][number] => engine.status().volumes[0]!;

    await engine.failElement('q');
    await until('the rebuild onto s1 to start', () => m().rebuild !== null);
    expect(m()).toMatchObject({ state: 'rebuilding', rebuild: { kind: 'rebuild', element: 's1', totalBytes: LEG_BYTES } });
    expect(m().elements.map((e) => [e.name, e.state])).toEqual([['p', 'active'], ['s1', 'rebuilding']]);
    // Foreground I/O goes on meanwhile (and reaches the leg being rebuilt).
    await engine.volume('m').write(LEG_BYTES - MiB, data.subarray(LEG_BYTES - MiB));
    await until('the rebuild to finish', () => m().state === 'optimal');
    const last = m().lastRebuild!;
    expect(last).toMatchObject({ kind: 'rebuild', element: 's1', outcome: 'done', doneBytes: LEG_BYTES, totalBytes: LEG_BYTES });
    expect(last.seconds, `${LEG_BYTES / MiB} MiB at ${RATE_MIB_PER_SEC} MiB/s`).toBeGreaterThan((0.8 * LEG_BYTES) / MiB / RATE_MIB_PER_SEC);
    expect(last.mibPerSec).toBeLessThan(RATE_MIB_PER_SEC * 1.2);
    const middle = seen.filter((p) => p.percent > 0 && p.percent < 100);
    expect(middle.length, 'progress events while it ran').toBeGreaterThan(2);
    expect(middle.every((p) => p.mibPerSec > 0 && p.etaSeconds !== null && p.doneBytes < p.totalBytes)).toBe(true);
    expect(equalBytes(dataOf('s1'), data), 'the spare holds the volume').toBe(true);
    const q = engine.status().elements.find((e) => e.name === 'q')!;
    expect(q).toMatchObject({ state: 'failed', volume: null, reason: expect.stringMatching(/replaced by s1/) });

    // By request: s1 → s2, then stop in the middle of that rebuild.
    await expect(engine.replaceElement('m', 's1', 'p')).rejects.toMatchObject({ code: 'conflict' });
    await engine.replaceElement('m', 's1', 's2');
    await until('the rebuild onto s2 to be under way', () => (m().rebuild?.doneBytes ?? 0) > 2 * MiB);
    await engine.close();
    expect(await readSuperblockFile(path.join(dir, 's2.img'))).toMatchObject({ needsRebuild: true, eventCount: 0, role: 1 });

    const again = await Engine.open({ config: config(), log: quiet });
    try {
      const v = (): ReturnType<Engine['status']>['volumes'][number] => again.status().volumes[0]!;
      expect(v().elements.map((e) => e.name), 'the replacement survived the restart').toEqual(['p', 's2']);
      expect(v().rebuild).toMatchObject({ kind: 'rebuild', element: 's2' });
      await until('the restarted rebuild to finish', () => v().state === 'optimal');
      expect(v().lastRebuild).toMatchObject({ outcome: 'done', totalBytes: LEG_BYTES });
      expect(equalBytes(dataOf('s2'), data)).toBe(true);
      expect(equalBytes(await again.volume('m').read(0, LEG_BYTES), data)).toBe(true);
    } finally {
      await again.close();
    }
  }, 60_000);
});
