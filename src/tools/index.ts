/**
 * Subcommands of the `wirelog` command (`wirelog logs …`, `wirelog verify-log …`,
 * `wirelog replay …`). Each lives in its own module, loaded only when its name is the first
 * argument, so the server's start-up pays nothing for them.
 *
 * A tool's `run(argv)` gets the arguments after its name and resolves to the exit code:
 * 0 success, 1 the check failed / runtime failure, 2 bad usage.
 */
export interface Tool {
  /** One line for `wirelog --help`. */
  readonly summary: string
  run(argv: readonly string[]): Promise<number>
}

/** Name → loader. Add a tool here and in `--help`. */
export const TOOLS: Readonly<Record<string, { summary: string; load: () => Promise<Tool> }>> = {
  logs: {
    summary: 'read the activity log: filters, tail --follow, summary of traffic and top talkers',
    load: async () => (await import('./logs.js')).default,
  },
  'verify-log': {
    summary: 'check the hash chain (and seals) of logs written with --log-chain',
    load: async () => (await import('./verify-log.js')).default,
  },
  replay: {
    summary: 'replay a recorded json activity log against a WebSocket server, check its replies',
    load: async () => (await import('./replay.js')).tool,
  },
}

export function isTool(name: string | undefined): name is string {
  return name !== undefined && Object.hasOwn(TOOLS, name)
}
