// TEMPORARY (never in the final commit): stands in for StateHeaderReader from branch issue9-jsonscan until it is merged.
import { parseStateHeader, type StateHeader } from './state-file.js';

export class StateHeaderReader {
  private readonly parts: Buffer[] = [];
  push(bytes: Uint8Array): void {
    this.parts.push(Buffer.from(bytes));
  }
  end(): StateHeader {
    return parseStateHeader(Buffer.concat(this.parts));
  }
}
