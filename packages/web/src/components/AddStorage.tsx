// Finding storage and adding it as an element: local candidates (image files in the data dir,
// block devices), remote ones (NBD exports, iSCSI targets, with CHAP), and the add form.
// CHAP secrets go to the API in the request body and nowhere else: the fields are cleared once
// sent, and nothing is kept in storage.
import { useEffect, useState } from 'preact/hooks';
import { call, SLOW_CALL_TIMEOUT_MS } from '../api.js';
import { formatBytes } from '../format.js';
import type { Candidates, DeviceCandidate, DiscoverResult } from '../types.js';
import { Field, Message, useAction } from './ui.js';

export function AddStorage({ refresh, elementsVersion }: { refresh: () => void; elementsVersion: string }) {
  const [uri, setUri] = useState('');
  return (
    <div class="add-storage">
      <LocalCandidates onUse={setUri} elementsVersion={elementsVersion} />
      <Discover onUse={setUri} />
      <AddElementForm uri={uri} setUri={setUri} refresh={refresh} />
    </div>
  );
}

function LocalCandidates({ onUse, elementsVersion }: { onUse: (uri: string) => void; elementsVersion: string }) {
  const action = useAction();
  const [found, setFound] = useState<Candidates | null>(null);
  const scan = (): void => { void action.run(async () => { setFound(await call<Candidates>('GET', '/candidates')); return undefined; }); };
  // Rescan when the set of elements changes: a file that became an element is no candidate.
  useEffect(scan, [elementsVersion]);
  return (
    <div class="panel" data-testid="candidates">
      <h3>Local candidates <button type="button" class="small" onClick={scan} disabled={action.busy}>Rescan</button></h3>
      <Message action={action} />
      {found === null ? null : (
        <table class="compact">
          <thead><tr><th>What</th><th>Path</th><th>Size</th><th>Notes</th><th /></tr></thead>
          <tbody>
            {found.files.map((f) => (
              <tr key={f.path} data-testid={`candidate-${f.name}`}>
                <td>image file</td><td><code>{f.path}</code></td><td>{formatBytes(f.sizeBytes)}</td><td />
                <td><button type="button" class="small" onClick={() => onUse(f.uri)} data-testid={`use-${f.name}`}>Use</button></td>
              </tr>
            ))}
            {found.devices.map((d) => (
              <tr key={d.path} data-testid={`candidate-${d.name}`}>
                <td>block device</td><td><code>{d.path}</code>{d.model !== null ? ` ${d.model}` : ''}</td><td>{formatBytes(d.sizeBytes)}</td>
                <td class={d.inUse !== null || d.partitions > 0 ? 'warn' : ''}>{deviceNotes(d).join('; ')}</td>
                <td>
                  <button type="button" class="small" disabled={d.readOnly || d.inUse !== null} onClick={() => onUse(d.uri)} data-testid={`use-${d.name}`}
                    title={d.inUse !== null ? `in use: ${d.inUse}` : d.partitions > 0 ? 'its partitions will be overwritten' : ''}>Use</button>
                </td>
              </tr>
            ))}
            {found.files.length + found.devices.length === 0
              ? <tr><td colSpan={5} class="muted">Nothing unused found in {found.dataDir} or /sys/block.</td></tr> : null}
          </tbody>
        </table>
      )}
    </div>
  );
}

function deviceNotes(d: DeviceCandidate): string[] {
  const notes: string[] = [];
  if (d.inUse !== null) notes.push(`in use: ${d.inUse}`);
  if (d.partitions > 0) notes.push(`${d.partitions} partition${d.partitions > 1 ? 's' : ''} (overwritten if used)`);
  if (d.readOnly) notes.push('read-only');
  if (d.removable) notes.push('removable');
  return notes;
}

/** iscsi://HOST → iscsi://USER@HOST when a CHAP user is given and the URI names none. */
function withUser(uri: string, user: string): string {
  if (user === '' || !/^iscsi:\/\//i.test(uri) || /^iscsi:\/\/[^/]*@/i.test(uri)) return uri;
  return uri.replace(/^iscsi:\/\//i, `iscsi://${encodeURIComponent(user)}@`);
}

function Discover({ onUse }: { onUse: (uri: string) => void }) {
  const action = useAction();
  const [uri, setUri] = useState('');
  const [user, setUser] = useState('');
  const [secret, setSecret] = useState('');
  const [result, setResult] = useState<DiscoverResult | null>(null);
  const submit = (ev: Event): void => {
    ev.preventDefault();
    const body: Record<string, string> = { uri: withUser(uri.trim(), user.trim()) };
    if (secret !== '') body['secret'] = secret;
    setSecret('');
    void action.run(async () => {
      const found = await call<DiscoverResult>('POST', '/discover', body);
      setResult(found);
      return `${found.items.length} found at ${found.where}`;
    });
  };
  return (
    <form class="panel" onSubmit={submit} data-testid="discover-form" autocomplete="off">
      <h3>Discover remote disks</h3>
      <div class="row">
        <Field label="Server"><input required value={uri} onInput={(e) => setUri(e.currentTarget.value)} placeholder="nbd://HOST[:PORT] or iscsi://HOST[:PORT]" data-testid="discover-uri" /></Field>
        <Field label="CHAP user (iSCSI)"><input value={user} onInput={(e) => setUser(e.currentTarget.value)} autocomplete="off" /></Field>
        <Field label="CHAP secret (iSCSI)"><input type="password" value={secret} onInput={(e) => setSecret(e.currentTarget.value)} autocomplete="new-password" /></Field>
        <button type="submit" disabled={action.busy} data-testid="discover-submit">{action.busy ? 'Asking…' : 'Discover'}</button>
      </div>
      <Message action={action} testid="discover-msg" />
      {result === null ? null : (
        <ul class="found" data-testid="discover-results">
          {result.items.map((item) => (
            <li key={item.uri}>
              <code>{item.uri}</code>{item.description !== undefined ? ` — ${item.description}` : ''}{' '}
              <button type="button" class="small" onClick={() => onUse(withUser(item.uri, user.trim()))}>Use</button>
            </li>
          ))}
        </ul>
      )}
    </form>
  );
}

function AddElementForm({ uri, setUri, refresh }: { uri: string; setUri: (uri: string) => void; refresh: () => void }) {
  const action = useAction();
  const [name, setName] = useState('');
  const [cache, setCache] = useState('writeback');
  const [secretFile, setSecretFile] = useState('');
  const [secret, setSecret] = useState('');
  const kind = /^iscsi:\/\//i.test(uri) ? 'iscsi' : /^nbds?(\+unix)?:\/\//i.test(uri) ? 'nbd' : 'local';
  const submit = (ev: Event): void => {
    ev.preventDefault();
    const body: Record<string, string> = { uri: uri.trim() };
    if (name.trim() !== '') body['name'] = name.trim();
    if (kind === 'local') body['cache'] = cache;
    if (kind === 'iscsi' && secretFile.trim() !== '') body['secretFile'] = secretFile.trim();
    if (kind === 'iscsi' && secret !== '') body['secret'] = secret;
    setSecret('');
    void action.run(async () => {
      const added = await call<{ name: string; sizeBytes: number }>('POST', '/elements', body, SLOW_CALL_TIMEOUT_MS);
      setUri('');
      setName('');
      refresh();
      return `element ${added.name} added (${formatBytes(added.sizeBytes)})`;
    });
  };
  return (
    <form class="panel" onSubmit={submit} data-testid="add-element-form" autocomplete="off">
      <h3>Add an element</h3>
      <div class="row">
        <Field label="URI" hint="file:PATH, /dev/…, nbd://HOST[:PORT]/EXPORT, iscsi://[USER@]HOST[:PORT]/IQN/LUN">
          <input required class="wide" value={uri} onInput={(e) => setUri(e.currentTarget.value)} data-testid="element-uri" />
        </Field>
        <Field label="Name (optional)"><input value={name} onInput={(e) => setName(e.currentTarget.value)} data-testid="element-name" /></Field>
        {kind === 'local' ? (
          <Field label="Cache">
            <select value={cache} onChange={(e) => setCache(e.currentTarget.value)} data-testid="element-cache">
              <option value="writeback">writeback (page cache)</option>
              <option value="none">none (O_DIRECT)</option>
            </select>
          </Field>
        ) : null}
        {kind === 'iscsi' ? (
          <>
            <Field label="CHAP secret file" hint="a path on the daemon's machine"><input value={secretFile} onInput={(e) => setSecretFile(e.currentTarget.value)} /></Field>
            <Field label="or CHAP secret" hint="the daemon keeps it in a 0600 file in its data dir">
              <input type="password" value={secret} onInput={(e) => setSecret(e.currentTarget.value)} autocomplete="new-password" />
            </Field>
          </>
        ) : null}
        <button type="submit" disabled={action.busy} data-testid="element-add">{action.busy ? 'Adding…' : 'Add element'}</button>
      </div>
      <Message action={action} testid="element-msg" />
    </form>
  );
}
