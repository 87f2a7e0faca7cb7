// maskUri: no secret of a URI reaches errors, logs or status, whatever shape the URI has.
import { describe, expect, it } from 'vitest';
import { maskUri } from '../dist/config/uri.js';

describe('maskUri', () => {
  it('masks USER%SECRET@ and USER:SECRET@ of well-formed URIs and leaves the rest', () => {
    expect(maskUri('iscsi://alice%s3cret@127.0.0.1:3260/iqn.x/1')).toBe('iscsi://alice%***@127.0.0.1:3260/iqn.x/1');
    expect(maskUri('nbds://bob:pw@host:10809/disk')).toBe('nbds://bob:***@host:10809/disk');
    expect(maskUri('iscsi:alice%s3cret@host/iqn/1')).toBe('iscsi:alice%***@host/iqn/1');
    expect(maskUri('nbd://127.0.0.1:10809/disk')).toBe('nbd://127.0.0.1:10809/disk');
    expect(maskUri('file:/data/disk0.img')).toBe('file:/data/disk0.img');
  });

  it('masks a secret behind a mangled scheme (taken for a local path) too', () => {
    for (const uri of ['is csi://alice%s3cret@h/iqn/1', ' iscsi://alice:s3cret@h/iqn/1', 'ISCSI ://alice%s3cret@h/x', '/dir/x://u:s3cret@h', 'is csi://alice%se@s3cret@h/x']) {
      const masked = maskUri(uri);
      expect(masked, uri).not.toContain('s3cret');
      expect(masked, uri).toContain('***@');
    }
  });
});
