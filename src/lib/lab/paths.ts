import path from 'node:path'
import {fileURLToPath} from 'node:url'

/** Where every lab keeps its state: /var/lib/hactl-lab/<name>/. */
export const LAB_ROOT = process.env.HACTL_LAB_ROOT ?? '/var/lib/hactl-lab'

/** Mount points the lab had to create on this machine (shared by all labs; the last `lab down` removes them). */
export const PLACEHOLDERS_FILE = path.join(LAB_ROOT, 'placeholders.json')

export function labDir(name: string): string {
  return path.join(LAB_ROOT, name)
}

export function hostDir(name: string, host: string): string {
  return path.join(labDir(name), 'hosts', host)
}

export function statePath(name: string): string {
  return path.join(labDir(name), 'state.json')
}

export function configPath(name: string): string {
  return path.join(labDir(name), 'hactl.yaml')
}

/** The repository's lab/ directory (the scripts that run inside hosts): src/lib/lab and dist/lib/lab are both three levels down. */
export function labScriptsDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'lab')
}
