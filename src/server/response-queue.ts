// What a server owes its client, in order: one entry per request message whose reply must be tracked.

/**
 * Entry kinds. Upper case: a forwarded client message whose reply goes to the client.
 * Lower case: something the proxy added or answered itself.
 */
export const enum Pending {
  Parse = 80, // P: ParseComplete forwarded
  Bind = 66, // B: BindComplete forwarded
  Describe = 68, // D: ParameterDescription? then RowDescription | NoData
  Execute = 69, // E: CommandComplete | EmptyQuery | PortalSuspended | copy
  Close = 67, // C: CloseComplete
  Sync = 83, // S: ReadyForQuery
  Query = 81, // Q: everything up to ReadyForQuery (also FunctionCall)
  InjectedParse = 112, // p: ParseComplete swallowed
  InjectedBind = 98, // b: BindComplete swallowed
  InjectedClose = 99, // c: CloseComplete swallowed
  InjectedQuery = 120, // x: every reply up to ReadyForQuery swallowed
  InjectedLsn = 108, // l: swallowed like x; its one value (an LSN) goes to the lessee, its error is ignored
  InjectedXid = 105, // i: swallowed like x; its one value (a transaction id, or NULL) goes to the lessee, an error as null
  InjectedLocks = 106, // j: swallowed like x; its one value (the session's advisory locks as JSON) goes to the lessee
  QueryXid = 119, // w: a client Query with a transaction-id read appended: replies forwarded but for that read's, whose value goes to the lessee at ReadyForQuery
  InjectedXidExec = 121, // y: Execute of the proxy's transaction-id statement: its row's value goes to the lessee, replies swallowed
  FakeParseComplete = 102, // f: proxy answers ParseComplete when this reaches the head
  FakeCloseComplete = 107, // k: proxy answers CloseComplete when this reaches the head
  FakeCommand = 113, // q: proxy answers CommandComplete + ReadyForQuery (intercepted DEALLOCATE)
}

/** A ring of entry kinds with a parallel slot for a name (prepared statement) where one applies. */
export class ResponseQueue {
  private kinds = new Uint8Array(64);
  private names: (string | null)[] = new Array(64).fill(null);
  private head = 0;
  private tail = 0;
  private mask = 63;
  /** Entries ever pushed / shifted: entry number n is the n-th pushed (from 0). */
  pushed = 0;
  shifted = 0;

  get length(): number {
    return (this.tail - this.head) & this.mask;
  }

  get empty(): boolean {
    return this.head === this.tail;
  }

  push(kind: number, name: string | null = null): void {
    if (((this.tail + 1) & this.mask) === this.head) this.grow();
    this.kinds[this.tail] = kind;
    this.names[this.tail] = name;
    this.tail = (this.tail + 1) & this.mask;
    this.pushed++;
  }

  /** Kind at the head, or 0 when empty. */
  peek(): number {
    return this.head === this.tail ? 0 : this.kinds[this.head]!;
  }

  peekName(): string | null {
    return this.names[this.head]!;
  }

  shift(): number {
    const k = this.kinds[this.head]!;
    this.names[this.head] = null;
    this.head = (this.head + 1) & this.mask;
    this.shifted++;
    return k;
  }

  /** Count of entries of one kind still owed (e.g. Syncs and Queries still awaiting ReadyForQuery). */
  count(kind: number): number {
    let n = 0;
    for (let i = this.head; i !== this.tail; i = (i + 1) & this.mask) if (this.kinds[i] === kind) n++;
    return n;
  }

  clear(): void {
    this.names.fill(null);
    this.shifted += this.length;
    this.head = 0;
    this.tail = 0;
  }

  private grow(): void {
    const n = this.mask + 1;
    const kinds = new Uint8Array(n * 2);
    const names: (string | null)[] = new Array(n * 2).fill(null);
    let j = 0;
    for (let i = this.head; i !== this.tail; i = (i + 1) & this.mask, j++) {
      kinds[j] = this.kinds[i]!;
      names[j] = this.names[i]!;
    }
    this.kinds = kinds;
    this.names = names;
    this.head = 0;
    this.tail = j;
    this.mask = n * 2 - 1;
  }
}
