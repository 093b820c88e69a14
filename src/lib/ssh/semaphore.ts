/** A counting semaphore with a FIFO queue: the first caller to wait is the first served. */
export class Semaphore {
  private available: number
  private readonly waiters: Array<() => void> = []

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1)
      throw new RangeError(`semaphore size must be a positive integer, got ${size}`)
    this.available = size
  }

  /** Resolves with a release function, to call exactly once (extra calls are ignored). */
  async acquire(): Promise<() => void> {
    if (this.available > 0) {
      this.available--
    } else {
      await new Promise<void>((resolve) => this.waiters.push(resolve))
    }
    let released = false
    return () => {
      if (released) return
      released = true
      const next = this.waiters.shift()
      // Hand the slot straight to the next waiter so a newcomer cannot overtake it.
      if (next) next()
      else this.available++
    }
  }

  /** Slots in use right now (for tests and debug lines). */
  get inUse(): number {
    return this.size - this.available
  }

  get waiting(): number {
    return this.waiters.length
  }
}
