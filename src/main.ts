// Entry point: V8's settings (before anything allocates much), tracing (it must wrap `pg`
// before anything loads it), then the service.
import { setFlagsFromString } from 'node:v8';
import { startTelemetry } from './telemetry.js';
import { serviceV8Flags } from './v8-flags.js';

for (const flag of serviceV8Flags(process.execArgv)) setFlagsFromString(flag);
const stopTelemetry = await startTelemetry();
const { run } = await import('./app.js');
await run(stopTelemetry);
