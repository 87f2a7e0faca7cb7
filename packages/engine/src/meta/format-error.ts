// The error of the on-element formats (superblock, bitmap, journal records): a kind callers can
// switch on (a blank or foreign element is not a failure of the same sort as a bad checksum).
export type FormatErrorKind = 'bad-magic' | 'bad-checksum' | 'bad-version' | 'truncated' | 'invalid-field';

export abstract class FormatError extends Error {
  readonly kind: FormatErrorKind;
  protected constructor(name: string, kind: FormatErrorKind, message: string) {
    super(message);
    this.name = name;
    this.kind = kind;
  }
}
