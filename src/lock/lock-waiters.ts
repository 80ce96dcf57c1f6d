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
  /** Keys released again while their hand-off was running: it must look once more before it stops. */
  private readonly rewake = new Set<string>();

  count(key: string): number {
    return this.queues.get(key)?.length ?? 0;
  }

  /** A hand-off (or a new waiter's look on joining the line) is deciding an attempt on `key` right now. */
  handingOff(key: string): boolean {
    return this.waking.has(key);
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

  /**
   * Called after any release of `key`: grants the lock to the longest waiter that can take it. One
   * hand-off at a time per key; a release that arrives while one runs is not dropped: the running
   * hand-off tries again. (An attempt and a release can be decided in the same store transaction, the
   * attempt first: it is refused, and the release's wake arrives while the hand-off is still running.)
   */
  async wake(key: string): Promise<void> {
    if (this.waking.has(key)) {
      this.rewake.add(key);
      return;
    }
    this.waking.add(key);
    try {
      for (;;) {
        this.rewake.delete(key);
        const head = this.queues.get(key)?.[0];
        if (!head) return;
        if (await head.attempt()) {
          this.remove(key, head);
          continue;
        }
        // Someone else holds it: wait for the next release — unless one came in meanwhile.
        if (!this.rewake.has(key)) return;
      }
    } finally {
      this.waking.delete(key);
      this.rewake.delete(key);
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
