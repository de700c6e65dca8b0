export { install, type LayerState } from './install.ts';
export { nativeLibraryPath, nativePreloadEnv } from './native-library.ts';
export { nodeOptionsWithLayer, registerPath } from './node-options.ts';
export { DetourProxyDownError } from './proxy-client.ts';
export { proxyVariables } from './proxy-variables.ts';
export { type LayerSettings, layerEnv, readSettings } from './settings.ts';
