/*
 * The library's side of detour's proxy protocol (router/src/egress/socks5.ts): one short, blocking
 * SOCKS5 exchange on a fresh loopback connection per FORWARD (0xDE) or RESOLVE_ALL (0xDF). Greeting
 * and request go out in one write; the proxy answers in order. Every wait is bounded by
 * DETOUR_PROXY_TIMEOUT_MS, and a proxy that is not there fails at once (loopback refuses at once).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "detour.h"

enum { SOCKS_VERSION = 5, CMD_FORWARD = 0xde, CMD_RESOLVE_ALL = 0xdf };
enum { ATYP_IPV4 = 1, ATYP_DOMAIN = 3, ATYP_IPV6 = 4 };

static struct sockaddr_storage proxy_addr;
static socklen_t proxy_addr_len;
static char proxy_text[64];
static int proxy_timeout_ms = 30000;
/* Why the last exchange of this thread found the proxy down, for the warning. */
static __thread char down_reason[96];

void detour_proxy_init(const char *host_port, int timeout_ms) {
  snprintf(proxy_text, sizeof proxy_text, "%s", host_port);
  if (timeout_ms > 0) proxy_timeout_ms = timeout_ms;
  char host[64];
  const char *colon = strrchr(host_port, ':');
  if (!colon) return;
  size_t n = (size_t)(colon - host_port);
  if (n >= sizeof host) return;
  memcpy(host, host_port, n);
  host[n] = 0;
  char *bare = host;
  if (bare[0] == '[' && n >= 2) bare[n - 1] = 0, bare++;
  uint16_t port = (uint16_t)atoi(colon + 1);
  struct sockaddr_in *in = (struct sockaddr_in *)&proxy_addr;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&proxy_addr;
  if (inet_pton(AF_INET, bare, &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    proxy_addr_len = sizeof *in;
  } else if (inet_pton(AF_INET6, bare, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    proxy_addr_len = sizeof *in6;
  }
}

int detour_proxy_is_self(const detour_addr *addr, uint16_t port) {
  detour_addr own;
  uint16_t own_port;
  return proxy_addr_len && detour_addr_from_sockaddr((struct sockaddr *)&proxy_addr, proxy_addr_len, &own, &own_port) &&
         own_port == port && memcmp(&own, addr, sizeof own) == 0;
}

static int down(const char *why) {
  snprintf(down_reason, sizeof down_reason, "%s", why);
  return DETOUR_PROXY_DOWN;
}

static int open_control(void) {
  if (!proxy_addr_len) return down("DETOUR_PROXY is not host:port"), -1;
  int fd = socket(proxy_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return down(strerror(errno)), -1;
  struct timeval tv = {.tv_sec = proxy_timeout_ms / 1000, .tv_usec = (proxy_timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc;
  do rc = detour_real_connect(fd, (struct sockaddr *)&proxy_addr, proxy_addr_len);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    down(strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

/* Reads exactly n bytes; 0 on success, -1 (reason recorded) when the proxy closed, failed or timed out. */
static int read_exactly(int fd, uint8_t *buf, size_t n) {
  while (n > 0) {
    ssize_t got = recv(fd, buf, n, 0);
    if (got > 0) {
      buf += got, n -= (size_t)got;
      continue;
    }
    if (got < 0 && errno == EINTR) continue;
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      char why[64];
      snprintf(why, sizeof why, "no answer within %d ms", proxy_timeout_ms);
      return down(why), -1;
    }
    return down(got == 0 ? "it closed the connection" : strerror(errno)), -1;
  }
  return 0;
}

/* ATYP + address + port; 0 on success. */
static int read_address(int fd, detour_addr *addr, uint16_t *port) {
  uint8_t type, raw[18];
  if (read_exactly(fd, &type, 1)) return -1;
  if (type == ATYP_IPV4) {
    if (read_exactly(fd, raw, 6)) return -1;
    memset(addr->bytes, 0, 10);
    addr->bytes[10] = addr->bytes[11] = 0xff;
    memcpy(addr->bytes + 12, raw, 4);
    *port = (uint16_t)(raw[4] << 8 | raw[5]);
  } else if (type == ATYP_IPV6) {
    if (read_exactly(fd, raw, 18)) return -1;
    memcpy(addr->bytes, raw, 16);
    *port = (uint16_t)(raw[16] << 8 | raw[17]);
  } else {
    uint8_t skip[258];
    if (type != ATYP_DOMAIN || read_exactly(fd, skip, 1) || read_exactly(fd, skip + 1, (size_t)skip[0] + 2))
      return down("it answered an unknown address type"), -1;
    memset(addr, 0, sizeof *addr);
    *port = (uint16_t)(skip[skip[0] + 1] << 8 | skip[skip[0] + 2]);
  }
  return 0;
}

/*
 * Sends greeting + request; reads the method answer and the reply head. Returns the control fd with
 * *reply set (0 = succeeded; then BND.ADDR/BND.PORT follow), or -1 with the proxy down.
 */
static int request(uint8_t command, const uint8_t *address, size_t address_len, uint8_t *reply) {
  int fd = open_control();
  if (fd < 0) return -1;
  uint8_t out[6 + 1 + 255 + 2];
  const uint8_t head[6] = {SOCKS_VERSION, 1, 0, SOCKS_VERSION, command, 0};
  memcpy(out, head, 6);
  memcpy(out + 6, address, address_len);
  size_t len = 6 + address_len, sent = 0;
  while (sent < len) {
    ssize_t n = send(fd, out + sent, len - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      down(strerror(errno));
      close(fd);
      return -1;
    }
    sent += (size_t)n;
  }
  uint8_t method[2], answer[3];
  if (read_exactly(fd, method, 2) || read_exactly(fd, answer, 3)) {
    close(fd);
    return -1;
  }
  if (method[1] != 0) {
    down("it refused the SOCKS5 greeting");
    close(fd);
    return -1;
  }
  *reply = answer[1] ? answer[1] : 0;
  return fd;
}

int detour_proxy_forward(const detour_addr *addr, uint16_t port, uint16_t *one_shot_port) {
  static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
  uint8_t encoded[19];
  size_t len;
  if (memcmp(addr->bytes, mapped, 12) == 0) {
    encoded[0] = ATYP_IPV4;
    memcpy(encoded + 1, addr->bytes + 12, 4);
    len = 5;
  } else {
    encoded[0] = ATYP_IPV6;
    memcpy(encoded + 1, addr->bytes, 16);
    len = 17;
  }
  encoded[len++] = (uint8_t)(port >> 8);
  encoded[len++] = (uint8_t)port;
  uint8_t reply;
  int fd = request(CMD_FORWARD, encoded, len, &reply);
  if (fd < 0) return DETOUR_PROXY_DOWN;
  detour_addr bound;
  int outcome = reply;
  if (read_address(fd, &bound, one_shot_port)) outcome = DETOUR_PROXY_DOWN;
  close(fd);
  return outcome;
}

int detour_proxy_resolve(const char *name, int family, detour_addr *out, int max, int *count) {
  size_t n = strlen(name);
  if (n > 255) return 4; /* host unreachable: no cluster name is that long */
  uint8_t encoded[1 + 1 + 255 + 2];
  encoded[0] = ATYP_DOMAIN;
  encoded[1] = (uint8_t)n;
  memcpy(encoded + 2, name, n);
  encoded[2 + n] = 0;
  encoded[3 + n] = (uint8_t)family; /* DST.PORT carries the family hint (0, 4 or 6) */
  uint8_t reply;
  int fd = request(CMD_RESOLVE_ALL, encoded, n + 4, &reply);
  if (fd < 0) return DETOUR_PROXY_DOWN;
  *count = 0;
  int outcome = reply;
  detour_addr first;
  uint16_t total;
  if (read_address(fd, &first, &total)) outcome = DETOUR_PROXY_DOWN;
  else if (reply == 0) {
    if (max > 0) out[(*count)++] = first;
    for (int i = 1; i < total; i++) {
      detour_addr next;
      uint16_t zero;
      if (read_address(fd, &next, &zero)) {
        outcome = DETOUR_PROXY_DOWN;
        break;
      }
      if (*count < max) out[(*count)++] = next;
    }
  }
  close(fd);
  return outcome;
}

void detour_warn(const char *what, const char *target, int outcome) {
  static atomic_long last_warned;
  long now = (long)time(NULL);
  long before = atomic_exchange(&last_warned, now);
  if (before == now) return;
  char line[512];
  int n;
  if (outcome == DETOUR_PROXY_DOWN)
    n = snprintf(line, sizeof line,
                 "detour: %s %s failed: detour's egress proxy at %s is not answering (%s). Start the "
                 "session with `detour up` (or run the program under `detour exec`), or run it without "
                 "detour (unset LD_PRELOAD and DETOUR_PROXY). [DETOUR_PROXY_DOWN]\n",
                 what, target, proxy_text, down_reason);
  else if (outcome == 0xe1)
    n = snprintf(line, sizeof line,
                 "detour: %s %s failed: the tunnel to the cluster is down; check `detour status` and "
                 "the agent's pod. [DETOUR_TUNNEL_DOWN]\n",
                 what, target);
  else if (outcome == 2)
    n = snprintf(line, sizeof line, "detour: %s %s: the egress policy denied it. [DETOUR_EGRESS_DENIED]\n",
                 what, target);
  else
    n = snprintf(line, sizeof line,
                 "detour: %s %s failed: the egress proxy failed the request (SOCKS reply %d); see the "
                 "detour CLI log. [DETOUR_EGRESS_FAILED]\n",
                 what, target, outcome);
  if (n > 0) {
    ssize_t ignored = write(STDERR_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    (void)ignored;
  }
}
