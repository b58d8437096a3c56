/** The bounded queue of what the application sends while the client is not connected. */

/** What to do when the queue is full: refuse the new message (`reject`), or drop the oldest one (`drop_oldest`). */
export type BufferPolicy = "reject" | "drop_oldest";

export interface PushResult<T> {
  /** Whether the new item was queued. */
  accepted: boolean;
  /** The item dropped to make room (`drop_oldest`), if any. */
  dropped: T | null;
}

export class SendQueue<T> {
  readonly items: T[] = [];

  constructor(
    public max: number,
    public policy: BufferPolicy = "reject",
  ) {
    if (!(max >= 0)) throw new RangeError("asgi_ws: maxBuffered must be >= 0");
    if (policy !== "reject" && policy !== "drop_oldest") throw new RangeError(`asgi_ws: unknown bufferPolicy ${policy}`);
  }

  get length(): number {
    return this.items.length;
  }

  push(item: T): PushResult<T> {
    if (this.items.length < this.max) {
      this.items.push(item);
      return { accepted: true, dropped: null };
    }
    if (this.policy === "drop_oldest" && this.items.length > 0) {
      const dropped = this.items.shift() as T;
      this.items.push(item);
      return { accepted: true, dropped };
    }
    return { accepted: false, dropped: null };
  }

  shift(): T | undefined {
    return this.items.shift();
  }

  /** Empty the queue; returns what it held, oldest first. */
  clear(): T[] {
    return this.items.splice(0);
  }
}
