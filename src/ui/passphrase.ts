import {InterruptedError} from '../lib/errors.js'

/**
 * Ask for a private key's passphrase on the terminal (no echo), for `SshPool`'s `askPassphrase`.
 * Written to stderr so `hactl ... > out` still shows the question.
 */
export async function askPassphrase(keyFile: string, attempt: number): Promise<string> {
  const {password} = await import('@inquirer/prompts')
  try {
    return await password(
      {
        message:
          attempt > 1
            ? `Wrong passphrase, try again. Passphrase for ${keyFile}:`
            : `Passphrase for ${keyFile}:`,
      },
      {output: process.stderr},
    )
  } catch (error) {
    // Ctrl-C at the prompt is the operator stopping the run, not a failure to report as a bug.
    if ((error as Error).name === 'ExitPromptError') throw new InterruptedError()
    throw error
  }
}
