import {z} from 'zod'

/** One entry of the audit history (history.ts), as hactl reads it back. */
export const historyEntrySchema = z.object({
  id: z.string().min(1),
  /** ISO time the run started. */
  when: z.string(),
  /** Local user name. */
  who: z.string(),
  /** Local host name. */
  host: z.string(),
  cluster: z.string(),
  /** The command line after the program name: ["node", "drain", "ast3"]. */
  argv: z.array(z.string()),
  /** The plan as printed, one line per step. */
  plan: z.array(z.string()).optional(),
  results: z.array(z.object({node: z.string(), ok: z.boolean(), detail: z.string()})).optional(),
  ok: z.boolean(),
  exitCode: z.number().int(),
  durationMs: z.number().nonnegative(),
})

export type HistoryEntry = z.output<typeof historyEntrySchema>
