/** The progress line lives with the tools now (`wirelog logs summary` uses it too). */
export { duration, Progress } from '../src/tools/progress.js'
