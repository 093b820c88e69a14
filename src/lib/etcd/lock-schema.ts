import {z} from 'zod'

/** Who holds the cluster lock (lock.ts): the value of the lock key. */
export const lockHolderSchema = z.object({
  user: z.string(),
  host: z.string(),
  /** The command line, e.g. "hactl node drain ast3". */
  command: z.string(),
  pid: z.number().int(),
  /** ISO time. */
  since: z.string(),
})

export type LockHolder = z.output<typeof lockHolderSchema>
