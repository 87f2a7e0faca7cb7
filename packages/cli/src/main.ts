#!/usr/bin/env node
// The `onestack` executable. Everything happens in run(); this only wires it to the process.
import { run } from './cli.js';
import { processIo } from './io.js';

const code = await run(process.argv.slice(2), processIo());
process.exitCode = code;
// A lingering keep-alive socket must not hold a finished command open; unref'd, so a process
// that is done anyway exits at once.
setTimeout(() => process.exit(code), 200).unref();
