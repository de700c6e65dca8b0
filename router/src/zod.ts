/**
 * zod's functional build (`zod/mini`) with its English messages, which it does not register itself.
 * The agent checks its wire messages and config with it at start: classic zod's method-chaining
 * API cannot be tree-shaken and costs the agent ~11 MiB of resident memory for code alone.
 */
import { en } from 'zod/locales';
import { config } from 'zod/mini';

config(en());

export * from 'zod/mini';
