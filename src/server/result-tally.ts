// What a server connection counts of the reply to the request in flight (rows, command tag, first error), when feature modules listen.

/** What a server tallied for the request in flight; reset at each ReadyForQuery. */
export class ResultTally {
  rows = 0;
  tag = "";
  errorCode = "";
  errorMessage = "";

  reset(): void {
    this.rows = 0;
    this.tag = "";
    this.errorCode = "";
    this.errorMessage = "";
  }
}

