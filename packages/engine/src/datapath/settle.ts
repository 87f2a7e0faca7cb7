// Waiting helpers of the data path. A slot or a part of a request may be reused only when nothing
// touches it any more, so a failure waits for its siblings instead of racing ahead of them.

/** Like Promise.all, but waits for every promise (no part is left running when one rejects), then throws the first rejection. */
export async function settleAll(all: readonly Promise<unknown>[]): Promise<void> {
  throwFirstRejection(await Promise.allSettled(all));
}

/** settleAll that also answers with the values, in order. */
export async function settleValues<T>(all: readonly Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(all);
  throwFirstRejection(results);
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

function throwFirstRejection(results: readonly PromiseSettledResult<unknown>[]): void {
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** `fn` on the first call only: a release handed to a client may be called twice. */
export function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}

const POLL_MS = 5;

/** Polls `cond` every few ms until it holds (true) or `timeoutMs` passed (false): drains are rare, no event to wait on. */
export async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return true;
}
