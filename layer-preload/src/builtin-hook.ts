import module from 'node:module';

type Patch = (exports: never) => void;
const pending = new Map<string, Patch[]>();
let hooks: { deregister(): void } | undefined;

/**
 * Runs `patch` on a builtin module when the app first asks for it (require or import), instead of
 * loading it at start-up: http2 alone costs tens of milliseconds to load, and most apps never use it.
 * A resolve hook sees every specifier, builtins included; the builtin's exports object is a
 * singleton, so patching it before handing it out is the same as patching it eagerly.
 */
export function whenBuiltinRequested(name: string, patch: Patch): void {
  pending.set(name, [...(pending.get(name) ?? []), patch]);
  hooks ??= module.registerHooks({
    resolve(specifier, context, nextResolve) {
      const patches = pending.get(specifier.startsWith('node:') ? specifier.slice(5) : specifier);
      if (patches) {
        pending.delete(specifier.startsWith('node:') ? specifier.slice(5) : specifier);
        const exports = process.getBuiltinModule(specifier) as never;
        for (const apply of patches) apply(exports);
        if (pending.size === 0) {
          hooks?.deregister();
        }
      }
      return nextResolve(specifier, context);
    },
  });
}
