#!/usr/bin/env node
// Entry point for `npx statelock …`: the compiled CLI lives in dist/ (built by `npm ci` through `prepare`).
import '../dist/src/cli/main.js';
