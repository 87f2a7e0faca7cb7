// Creating an array from unused elements, and mirroring a volume onto a remote disk (the engine
// replaces a leg: add the remote element, then rebuild the chosen leg's role onto it).
import { useState } from 'preact/hooks';
import { call, seg, SLOW_CALL_TIMEOUT_MS } from '../api.js';
import { LAYOUTS, REPLACEABLE, type EngineStatus } from '../types.js';
import { Field, Message, useAction } from './ui.js';

const CHUNKED = new Set(['raid0', 'raid10', 'raid5', 'raid6']);

export function CreateArray({ status, refresh }: { status: EngineStatus; refresh: () => void }) {
  const action = useAction();
  const [name, setName] = useState('');
  const [layout, setLayout] = useState<string>('raid1');
  const [chosen, setChosen] = useState<string[]>([]);
  const [chunkKiB, setChunkKiB] = useState('64');
  const unused = status.elements.filter((e) => e.volume === null && e.state === 'spare');
  const toggle = (element: string, on: boolean): void => {
    setChosen(on ? [...chosen.filter((c) => c !== element), element] : chosen.filter((c) => c !== element));
  };
  const submit = (ev: Event): void => {
    ev.preventDefault();
    const elements = chosen.filter((c) => unused.some((e) => e.name === c));
    const body: Record<string, unknown> = { name: name.trim(), layout, elements };
    if (CHUNKED.has(layout)) body['chunkKiB'] = Number(chunkKiB);
    void action.run(async () => {
      await call('POST', '/volumes', body, SLOW_CALL_TIMEOUT_MS);
      setName('');
      setChosen([]);
      refresh();
      return `volume ${String(body['name'])} created (${layout} of ${elements.join(', ')})`;
    });
  };
  return (
    <form class="panel" onSubmit={submit} data-testid="create-array-form">
      <div class="row">
        <Field label="Name"><input required value={name} onInput={(e) => setName(e.currentTarget.value)} data-testid="array-name" /></Field>
        <Field label="Layout">
          <select value={layout} onChange={(e) => setLayout(e.currentTarget.value)} data-testid="array-layout">
            {LAYOUTS.map((l) => <option key={l} value={l}>{l}</option>)}
          </select>
        </Field>
        {CHUNKED.has(layout) ? (
          <Field label="Chunk (KiB)"><input type="number" min={4} step={4} value={chunkKiB} onInput={(e) => setChunkKiB(e.currentTarget.value)} data-testid="array-chunk" /></Field>
        ) : null}
      </div>
      <fieldset class="choices">
        <legend>Elements, in role order (unused ones)</legend>
        {unused.length === 0 ? <p class="muted">No unused elements: add some above.</p> : unused.map((e) => (
          <label key={e.name} class="choice">
            <input type="checkbox" checked={chosen.includes(e.name)} onChange={(ev) => toggle(e.name, ev.currentTarget.checked)} data-testid={`array-element-${e.name}`} />
            {e.name} <span class="muted">({e.kind})</span>
            {chosen.includes(e.name) ? <span class="role"> role {chosen.indexOf(e.name)}</span> : null}
          </label>
        ))}
      </fieldset>
      <button type="submit" disabled={action.busy || chosen.length === 0} data-testid="array-create">{action.busy ? 'Creating…' : 'Create array'}</button>
      <Message action={action} testid="array-msg" />
    </form>
  );
}

export function MirrorToRemote({ status, refresh }: { status: EngineStatus; refresh: () => void }) {
  const action = useAction();
  const volumes = status.volumes.filter((v) => REPLACEABLE.has(v.layout));
  const [volume, setVolume] = useState('');
  const [leg, setLeg] = useState('');
  const [uri, setUri] = useState('');
  const [name, setName] = useState('');
  const [secret, setSecret] = useState('');
  if (volumes.length === 0) return <p class="muted">No raid1, raid10, raid5 or raid6 volume to mirror.</p>;
  const target = volumes.find((v) => v.name === volume) ?? volumes[0]!;
  // By default the leg to give up is a failed one, else the last one.
  const legs = target.elements;
  const chosenLeg = legs.find((e) => e.name === leg)?.name ?? legs.find((e) => e.state !== 'active')?.name ?? legs[legs.length - 1]?.name ?? '';
  const submit = (ev: Event): void => {
    ev.preventDefault();
    const body: Record<string, string> = { uri: uri.trim() };
    if (name.trim() !== '') body['name'] = name.trim();
    if (secret !== '') body['secret'] = secret;
    setSecret('');
    void action.run(async () => {
      const added = await call<{ name: string }>('POST', '/elements', body, SLOW_CALL_TIMEOUT_MS);
      try {
        await call('POST', `/volumes/${seg(target.name)}/replace`, { old: chosenLeg, new: added.name }, SLOW_CALL_TIMEOUT_MS);
      } finally {
        refresh();
      }
      setUri('');
      setName('');
      return `element ${added.name} added; rebuilding ${chosenLeg}'s role of ${target.name} onto it`;
    });
  };
  return (
    <form class="panel" onSubmit={submit} data-testid="mirror-form" autocomplete="off">
      <p class="muted">Adds a remote disk as an element and rebuilds one leg's role onto it (the leg leaves the volume).</p>
      <div class="row">
        <Field label="Volume">
          <select value={target.name} onChange={(e) => { setVolume(e.currentTarget.value); setLeg(''); }} data-testid="mirror-volume">
            {volumes.map((v) => <option key={v.name} value={v.name}>{v.name} ({v.layout}, {v.state})</option>)}
          </select>
        </Field>
        <Field label="Leg to move">
          <select value={chosenLeg} onChange={(e) => setLeg(e.currentTarget.value)} data-testid="mirror-leg">
            {legs.map((e) => <option key={e.name} value={e.name}>{e.name} ({e.kind}, {e.state})</option>)}
          </select>
        </Field>
        <Field label="Remote URI"><input required class="wide" value={uri} onInput={(e) => setUri(e.currentTarget.value)} placeholder="nbd://HOST:PORT/EXPORT or iscsi://USER@HOST/IQN/LUN" data-testid="mirror-uri" /></Field>
        <Field label="Name (optional)"><input value={name} onInput={(e) => setName(e.currentTarget.value)} data-testid="mirror-name" /></Field>
        {/^iscsi:\/\//i.test(uri) ? (
          <Field label="CHAP secret"><input type="password" value={secret} onInput={(e) => setSecret(e.currentTarget.value)} autocomplete="new-password" /></Field>
        ) : null}
        <button type="submit" disabled={action.busy} data-testid="mirror-submit">{action.busy ? 'Working…' : 'Add and mirror'}</button>
      </div>
      <Message action={action} testid="mirror-msg" />
    </form>
  );
}
