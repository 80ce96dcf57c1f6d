import type { AuditAction } from './audit-entry.js';
import type { AuditQuery, Store } from '../store/store.js';

/** Reading the audit trail. Entries are only ever written by the store, inside the transaction of the change they record. */
export class AuditService {
  constructor(private readonly store: Store) {}

  list(query: AuditQuery) {
    return this.store.listAudit(query);
  }

  count(query: { since: string; actions: readonly AuditAction[] }) {
    return this.store.countAudit(query);
  }
}
