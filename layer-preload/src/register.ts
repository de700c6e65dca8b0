// Entry for `node --import @detour/layer/register` and `node --require @detour/layer/register`.
import { install } from './install.ts';

install();
