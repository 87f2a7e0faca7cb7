import { it } from 'vitest';
import { startApiServer } from '../src/api/server.js';
import { FakeEngine } from './fake-engine.js';
const TOKEN = 'fake-token-0123456789abcdef0123456789';
it('close timing', async () => {
  const s = await startApiServer({ engine: new FakeEngine(), token: TOKEN }, { host: '127.0.0.1', port: 0 });
  const base = `http://127.0.0.1:${s.port}`;
  const mode = process.env.XMODE ?? '';
  const h = { authorization: `Bearer ${TOKEN}` };
  const c = new AbortController();
  const res = await fetch(`${base}/api/v1/events`, { headers: h, signal: c.signal });
  if (mode.includes('read')) await res.body!.getReader().read();
  if (mode.includes('abort')) c.abort();
  if (mode.includes('wait')) await new Promise((r) => setTimeout(r, 200));
  if (mode.includes('page')) await (await fetch(`${base}/?token=${TOKEN}`)).text();
  const t = Date.now(); await s.close(); console.log(mode, 'close ms', Date.now() - t);
});
