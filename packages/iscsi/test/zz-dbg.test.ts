import { it } from 'vitest';
import { IscsiClient } from '../src/index.js';
import { createFakeTarget } from './fake-target.js';
it('dbg', async () => {
  for (const [window, delay] of [[4, 1], [4, 0], [64, 1]]) {
    const f = await createFakeTarget(1 << 20, { window, answerDelayMs: delay });
    const c = await IscsiClient.connect({ host: '127.0.0.1', port: f.port, targetIqn: 'x', lun: 0, timeoutMs: 5000 });
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 64 }, (_, i) => c.write(i * 4096, new Uint8Array(4096))));
    const t1 = performance.now();
    await Promise.all(Array.from({ length: 64 }, (_, i) => c.read(i * 4096, new Uint8Array(4096))));
    console.log(window, delay, 'writes', (t1 - t0).toFixed(1), 'reads', (performance.now() - t1).toFixed(1));
    await c.close(); await f.close();
  }
});
