// The app: token gate, live status (SSE, else polling), and the dashboard sections.
import { useEffect, useRef, useState } from 'preact/hooks';
import { call, forgetToken, getToken, onUnauthorized } from '../api.js';
import { History } from '../history.js';
import { startLive, type LiveMode } from '../live.js';
import type { EngineStatus } from '../types.js';
import { AddStorage } from './AddStorage.js';
import { CreateArray, MirrorToRemote } from './Arrays.js';
import { Elements, Pools } from './Elements.js';
import { TokenForm } from './TokenForm.js';
import { Section } from './ui.js';
import { Volumes } from './Volumes.js';

type Auth = 'none' | 'refused' | 'ok';

const MODE_TEXT: Record<LiveMode, string> = {
  connecting: 'connecting…', events: 'live (event stream)', polling: 'live (polling every second)', offline: 'daemon not answering', unauthorized: 'token refused',
};

export function App() {
  const [auth, setAuth] = useState<Auth>(getToken() === null ? 'none' : 'ok');
  const [status, setStatus] = useState<EngineStatus | null>(null);
  const [mode, setMode] = useState<LiveMode>('connecting');
  const [, setVersion] = useState(0);
  const history = useRef(new History());

  const accept = (next: EngineStatus, atMs: number): void => {
    history.current.add(next, atMs);
    setStatus(next);
    setVersion(history.current.version);
  };

  useEffect(() => onUnauthorized(() => setAuth('refused')), []);
  useEffect(() => {
    if (auth !== 'ok') return undefined;
    return startLive({
      status: accept,
      mode: (m) => { setMode(m); if (m === 'unauthorized') setAuth('refused'); },
    });
  }, [auth]);

  if (auth !== 'ok') return <TokenForm refused={auth === 'refused'} onToken={() => setAuth('ok')} />;

  const refresh = (): void => { void call<EngineStatus>('GET', '/status').then((s) => accept(s, Date.now())).catch(() => undefined); };
  const signOut = (): void => { forgetToken(); setStatus(null); setAuth('none'); };
  const boot = status?.volumes.find((v) => v.boot)?.name;
  return (
    <div class="app" data-testid="dashboard">
      <header class="top">
        <h1>onestack</h1>
        <span class={`live live-${mode}`} data-testid="live-mode" data-mode={mode}>{MODE_TEXT[mode]}</span>
        {status !== null ? <span class="muted">data dir <code>{status.dataDir}</code> · boot volume {boot ?? 'default (none picked)'}</span> : null}
        <button type="button" class="small right" onClick={signOut}>Forget token</button>
      </header>
      {status === null ? <p class="muted">Loading status…</p> : (
        <main>
          <Section title="Volumes" id="volumes"><Volumes status={status} series={history.current.volumes} refresh={refresh} /></Section>
          <Section title="Driver pools" id="pools"><Pools status={status} pools={history.current.pools} /></Section>
          <Section title="Elements" id="elements"><Elements status={status} refresh={refresh} /></Section>
          <Section title="Add storage" id="add">
            <AddStorage refresh={refresh} elementsVersion={status.elements.map((e) => e.name).join(',')} />
          </Section>
          <Section title="Create an array" id="create"><CreateArray status={status} refresh={refresh} /></Section>
          <Section title="Mirror onto a remote disk" id="mirror"><MirrorToRemote status={status} refresh={refresh} /></Section>
        </main>
      )}
    </div>
  );
}
