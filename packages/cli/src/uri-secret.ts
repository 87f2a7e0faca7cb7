// Secrets inside URIs. An iSCSI URI may carry its CHAP secret inline (libiscsi's USER%SECRET@,
// SPEC); it is taken out at the edge, so nothing further on (engine, errors, logs, output) holds
// it inside a URI, and any text shown to a person is masked once more on the way out.

const MASK = '***';
/** SCHEME://USER%SECRET@ or SCHEME://USER:SECRET@ at the start of a URI. */
const INLINE_RE = /^([a-z][a-z0-9+.-]*:\/\/)([^@/?#%:\s]*)[%:]([^@/?#\s]*)@/i;
/** The same anywhere in a text (error messages, tables). */
const INLINE_ANYWHERE_RE = /([a-z][a-z0-9+.-]*:\/\/[^@/?#%:\s]*[%:])[^@/?#\s]*@/gi;
/** Shorter "secrets" would blank out ordinary words of a message; CHAP wants 12+ anyway. */
const REDACT_CHARS_MIN = 4;

export interface SplitUri {
  /** The URI with the secret removed (`iscsi://USER@HOST...`). */
  readonly uri: string;
  /** The user named in the URI ('' when none). */
  readonly user: string;
  /** The inline secret, decoded; absent when none or when it is our own mask. */
  readonly secret?: string;
}

/** Takes an inline secret out of a URI. A URI without one comes back unchanged. */
export function splitInlineSecret(uri: string): SplitUri {
  const match = INLINE_RE.exec(uri);
  if (match === null) {
    const user = /^[a-z][a-z0-9+.-]*:\/\/([^@/?#\s]*)@/i.exec(uri)?.[1] ?? '';
    return { uri, user: safeDecode(user) };
  }
  const [whole, scheme = '', rawUser = '', rawSecret = ''] = match;
  const rest = uri.slice(whole.length);
  const stripped = rawUser === '' ? `${scheme}${rest}` : `${scheme}${rawUser}@${rest}`;
  const secret = rawSecret === '' || rawSecret === MASK ? undefined : safeDecode(rawSecret);
  return { uri: stripped, user: safeDecode(rawUser), ...(secret !== undefined ? { secret } : {}) };
}

/** Whether a URI carries a secret of its own (the mask `***` does not count). */
export function hasInlineSecret(uri: string): boolean {
  return splitInlineSecret(uri).secret !== undefined;
}

/** Every SCHEME://USER%SECRET@ in `text` becomes SCHEME://USER%***@. */
export function maskUriSecrets(text: string): string {
  return text.replace(INLINE_ANYWHERE_RE, `$1${MASK}@`);
}

/** Masks URIs and blanks out every occurrence of `secret` (in case a peer's message echoes it). */
export function redact(text: string, secret?: string): string {
  let out = maskUriSecrets(text);
  if (secret !== undefined && secret.length >= REDACT_CHARS_MIN) out = out.split(secret).join(MASK);
  return out;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text; // not percent-encoding after all (libiscsi takes the secret as written)
  }
}
