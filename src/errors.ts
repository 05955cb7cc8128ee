/**
 * An error the user can act on: the CLI prints its message (and hint) without a stack trace.
 * Everything else is a bug and is printed with its stack.
 */
export class CairnError extends Error {
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'CairnError';
  }
}
