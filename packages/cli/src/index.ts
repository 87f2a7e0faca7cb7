// @onestack/cli as a library: the dispatcher, the API server and client, and the renderers,
// for embedding and tests. The executable is dist/main.js.
export { run } from './cli.js';
export type { CliIo } from './io.js';
export { CliError, formatError, toCliError } from './errors.js';
export { parseCommandArgs, parseHostPort, closest } from './args.js';
export { startApiServer, type ApiServer, type ApiServerOptions } from './api/server.js';
export type { ApiEngine } from './api/engine-port.js';
export { ApiClient } from './api/client.js';
export { renderStatus, renderVolumeList, renderElementList } from './render.js';
export { renderMetrics } from './api/metrics.js';
export { cliVersion } from './version.js';
