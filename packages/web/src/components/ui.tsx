// Small building blocks: state badges, the progress bar, the message line under a form, and a
// hook that runs one API action at a time and keeps its error for the person to read.
import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { describeError } from '../api.js';

export function Badge({ state }: { state: string }) {
  return <span class={`badge badge-${state}`} data-state={state}>{state}</span>;
}

export function Section({ title, children, id }: { title: string; children: ComponentChildren; id?: string }) {
  return (
    <section class="card" id={id}>
      <h2>{title}</h2>
      {children}
    </section>
  );
}

/** `percent` in [0, 100]; data-percent carries the exact value for tests and scripts. */
export function Progress({ percent, label, testid }: { percent: number; label: string; testid?: string }) {
  const clamped = Math.min(100, Math.max(0, percent));
  return (
    <div class="progress" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={clamped} data-percent={clamped.toFixed(1)} data-testid={testid}>
      <div class="progress-bar" style={{ width: `${clamped}%` }} />
      <span class="progress-label">{label}</span>
    </div>
  );
}

export interface Action {
  busy: boolean;
  error: string | null;
  done: string | null;
  /** Runs `work` unless another run is going; its resolved text is shown as done. */
  run(work: () => Promise<string | undefined>): Promise<boolean>;
  clear(): void;
}

/** A success note fades after this long; errors stay until the next try. */
const DONE_SHOWN_MS = 10_000;

export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  useEffect(() => {
    if (done === null) return undefined;
    const timer = setTimeout(() => setDone(null), DONE_SHOWN_MS);
    return () => clearTimeout(timer);
  }, [done]);
  return {
    busy, error, done,
    clear: () => { setError(null); setDone(null); },
    run: async (work) => {
      if (busy) return false;
      setBusy(true);
      setError(null);
      setDone(null);
      try {
        setDone((await work()) ?? null);
        return true;
      } catch (err) {
        setError(describeError(err));
        return false;
      } finally {
        setBusy(false);
      }
    },
  };
}

export function Message({ action, testid }: { action: Action; testid?: string }) {
  if (action.error !== null) return <p class="msg msg-error" role="alert" data-testid={testid}>{action.error}</p>;
  if (action.done !== null) return <p class="msg msg-ok" data-testid={testid}>{action.done}</p>;
  return null;
}

/** A labelled form row. */
export function Field({ label, children, hint }: { label: string; children: ComponentChildren; hint?: string }) {
  return (
    <label class="field">
      <span class="field-label">{label}</span>
      {children}
      {hint !== undefined ? <span class="field-hint">{hint}</span> : null}
    </label>
  );
}
