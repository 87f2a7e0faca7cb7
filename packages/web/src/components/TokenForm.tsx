// Asked when the page has no token or the daemon refused it. The token goes to sessionStorage
// (this tab only) and with every API call as `Authorization: Bearer`.
import { useState } from 'preact/hooks';
import { setToken } from '../api.js';

export function TokenForm({ refused, onToken }: { refused: boolean; onToken: () => void }) {
  const [value, setValue] = useState('');
  const submit = (ev: Event): void => {
    ev.preventDefault();
    if (value.trim() === '') return;
    setToken(value);
    setValue('');
    onToken();
  };
  return (
    <main class="token-page">
      <form class="card token-form" onSubmit={submit} data-testid="token-form" autocomplete="off">
        <h1>onestack</h1>
        {refused
          ? <p class="msg msg-error" role="alert" data-testid="token-refused">The daemon refused this token (401). Enter the current one.</p>
          : <p>This page needs the daemon's API token.</p>}
        <p class="muted">
          Open the GUI URL that <code>onestack serve</code> printed at start-up (it ends in <code>?token=…</code>), or paste the
          token from the file <code>api-token</code> in the daemon's data dir.
        </p>
        <label class="field">
          <span class="field-label">API token</span>
          <input type="password" required value={value} onInput={(e) => setValue(e.currentTarget.value)} data-testid="token-input" autocomplete="off" />
        </label>
        <button type="submit" data-testid="token-submit">Open</button>
      </form>
    </main>
  );
}
