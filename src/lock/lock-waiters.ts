/**
 * The server-side wait queue (`LOCK …?wait=60s`): per key, first come first served. A waiter is woken
 * when the lock on its key is released in this process; it then tries to take the lock, and stays at
 * the head of the queue if someone else got there first.
 */
interface Waiter {
  /** Tries to take the lock: true when granted (the waiter is done), false to keep waiting. */
  attempt(): Promise<boolean>;
}

export class LockWaiters {
  private readonly queues = new Map<string, Waiter[]>();
  private readonly waking = new Set<string>();

  count(key: string): number {
    return this.queues.get(key)?.length ?? 0;
  }

  total(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.length;
    return n;
  }

  enqueue(key: string, waiter: Waiter): () => void {
    const queue = this.queues.get(key) ?? [];
    queue.push(waiter);
    this.queues.set(key, queue);
    return () => this.remove(key, waiter);
  }

  /** Called after any release of `key`: grants the lock to the longest waiter that can take it. */
  async wake(key: string): Promise<void> {
    if (this.waking.has(key)) return; // one hand-off at a time per key; it loops until settled
    this.waking.add(key);
    try {
      for (;;) {
        const head = this.queues.get(key)?.[0];
        if (!head) return;
        if (!(await head.attempt())) return; // someone else holds it again: wait for the next release
        this.remove(key, head);
      }
    } finally {
      this.waking.delete(key);
    }
  }

  private remove(key: string, waiter: Waiter): void {
    const queue = this.queues.get(key);
    if (!queue) return;
    const i = queue.indexOf(waiter);
    if (i >= 0) queue.splice(i, 1);
    if (queue.length === 0) this.queues.delete(key);
  }
}
