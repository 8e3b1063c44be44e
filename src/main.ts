// Entry point: tracing first (it must wrap `pg` before anything loads it), then the service.
import { startTelemetry } from './telemetry.js';

const stopTelemetry = await startTelemetry();
const { run } = await import('./app.js');
await run(stopTelemetry);
