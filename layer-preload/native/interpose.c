/*
 * The libc functions a process reaches the network with, interposed with LD_PRELOAD (Linux) or
 * DYLD_INSERT_LIBRARIES (macOS). Inert unless DETOUR_PROXY is set, and inert in a Node process that
 * loads detour's Node layer (that layer routes its sockets; one connection is never routed twice).
 *
 *   getaddrinfo, gethostbyname(2)(_r)  a name the policy calls remote is resolved by the cluster
 *                                      (RESOLVE_ALL); its addresses become remote addresses
 *   connect, __connect                 a TCP connect to a remote address asks the proxy to FORWARD,
 *                                      then connects the app's own socket to the one-shot loopback
 *                                      port: its options and (non-)blocking mode stay the app's
 *   getpeername                        reports the address the app connected to, not the port
 *
 * Lists from getaddrinfo are allocated in libc's own layout (one block per entry holding the
 * addrinfo and its sockaddr, the canonical name apart), so libc's freeaddrinfo frees them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detour.h"

int (*detour_real_connect)(int, const struct sockaddr *, socklen_t);
static int (*real_getpeername)(int, struct sockaddr *, socklen_t *);
static int (*real_getaddrinfo)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
static int (*real_gethostbyname2_r)(const char *, int, struct hostent *, char *, size_t, struct hostent **,
                                    int *);
static int (*real_gethostbyname_r)(const char *, struct hostent *, char *, size_t, struct hostent **, int *);
static struct hostent *(*real_gethostbyname)(const char *);
static struct hostent *(*real_gethostbyname2)(const char *, int);

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int active;

/* What each rerouted socket really connected to, by fd, for getpeername. */
struct rerouted {
  uint16_t one_shot_port; /* 0: none */
  socklen_t len;
  struct sockaddr_storage original;
};
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rerouted *table;
static size_t table_size;

/* Fork while another thread holds a lock: the child must not inherit it locked. */
static void lock_all(void) {
  pthread_mutex_lock(&table_lock);
  detour_dns_lock();
}
static void unlock_all(void) {
  detour_dns_unlock();
  pthread_mutex_unlock(&table_lock);
}

/*
 * A Node process (the node binary exports N-API) whose NODE_OPTIONS loads detour's Node layer, in
 * either form nodeOptionsWithLayer (layer-preload/src/node-options.ts) recognizes: the layer routes
 * its sockets and carries the routing headers, so this library stays out of the way.
 */
static int node_layer_loaded(void) {
  const char *options = getenv("NODE_OPTIONS");
  return options && (strstr(options, "layer-preload/src/register") || strstr(options, "@detour/layer")) &&
         dlsym(RTLD_DEFAULT, "napi_module_register") != NULL;
}

static void init(void) {
  detour_real_connect = dlsym(RTLD_NEXT, "connect");
  real_getpeername = dlsym(RTLD_NEXT, "getpeername");
  real_getaddrinfo = dlsym(RTLD_NEXT, "getaddrinfo");
  real_gethostbyname2_r = dlsym(RTLD_NEXT, "gethostbyname2_r");
  real_gethostbyname_r = dlsym(RTLD_NEXT, "gethostbyname_r");
  real_gethostbyname = dlsym(RTLD_NEXT, "gethostbyname");
  real_gethostbyname2 = dlsym(RTLD_NEXT, "gethostbyname2");
  detour_dns_init();
  const char *proxy = getenv("DETOUR_PROXY");
  if (!proxy || !*proxy || node_layer_loaded()) return;
  const char *timeout = getenv("DETOUR_PROXY_TIMEOUT_MS");
  detour_proxy_init(proxy, timeout ? atoi(timeout) : 0);
  detour_policy_init(getenv("DETOUR_EGRESS_INCLUDE"), getenv("DETOUR_EGRESS_EXCLUDE"),
                     getenv("DETOUR_CLUSTER_DOMAIN"));
  pthread_atfork(lock_all, unlock_all, unlock_all);
  active = 1;
}

__attribute__((constructor)) static void init_at_load(void) { pthread_once(&once, init); }

void detour_ensure_init(void) { pthread_once(&once, init); }

int detour_active(void) { return active; }

static void remember(int fd, const struct sockaddr *sa, socklen_t len, uint16_t one_shot_port) {
  if (fd < 0 || len > sizeof(struct sockaddr_storage)) return;
  pthread_mutex_lock(&table_lock);
  if ((size_t)fd >= table_size) {
    size_t size = table_size ? table_size : 256;
    while (size <= (size_t)fd) size *= 2;
    struct rerouted *grown = realloc(table, size * sizeof *grown);
    if (grown) {
      memset(grown + table_size, 0, (size - table_size) * sizeof *grown);
      table = grown, table_size = size;
    }
  }
  if ((size_t)fd < table_size) {
    table[fd].one_shot_port = one_shot_port;
    table[fd].len = len;
    memcpy(&table[fd].original, sa, len);
  }
  pthread_mutex_unlock(&table_lock);
}

/* The one-shot port listens on 127.0.0.1; an IPv6 socket reaches it as ::ffff:127.0.0.1. */
static int connect_one_shot(int fd, sa_family_t family, uint16_t one_shot_port) {
  if (family == AF_INET6) {
    struct sockaddr_in6 loop = {.sin6_family = AF_INET6, .sin6_port = htons(one_shot_port)};
    loop.sin6_addr.s6_addr[10] = loop.sin6_addr.s6_addr[11] = 0xff;
    loop.sin6_addr.s6_addr[12] = 127;
    loop.sin6_addr.s6_addr[15] = 1;
    return detour_real_connect(fd, (struct sockaddr *)&loop, sizeof loop);
  }
  struct sockaddr_in loop = {.sin_family = AF_INET, .sin_port = htons(one_shot_port)};
  loop.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return detour_real_connect(fd, (struct sockaddr *)&loop, sizeof loop);
}

/*
 * A second connect() on a socket this library already forwarded to the same destination (Ruby and
 * others call connect again to learn how a non-blocking connect ended): the one-shot port it is
 * connecting or connected to, so that the kernel answers EALREADY/EISCONN as it would have; 0 for
 * a socket that has not started connecting (a reused descriptor number: forward it afresh).
 */
static uint16_t already_forwarded(int fd, const struct sockaddr *sa, socklen_t len) {
  struct tcp_info info;
  socklen_t info_len = sizeof info;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &info_len) != 0 || info.tcpi_state == TCP_CLOSE) return 0;
  uint16_t port = 0;
  pthread_mutex_lock(&table_lock);
  if ((size_t)fd < table_size && table[fd].one_shot_port && table[fd].len == len &&
      memcmp(&table[fd].original, sa, len) == 0)
    port = table[fd].one_shot_port;
  pthread_mutex_unlock(&table_lock);
  return port;
}

/* The errno a connect sees for the proxy's outcome, as without detour for the target's own failures. */
static int connect_errno(int outcome) {
  switch (outcome) {
    case 3: return ENETUNREACH;
    case 4:
    case 0xe4: return EHOSTUNREACH;
    case 5: return ECONNREFUSED;
    case 6: return ETIMEDOUT;
    case 0xe2: return ECONNRESET;
    case 2: return EACCES;
    case 0xe1: return ENETUNREACH;
    default: return ECONNREFUSED;
  }
}

/* Failures of detour itself (not of the target) are said on stderr. */
static int is_detour_failure(int outcome) {
  return outcome == DETOUR_PROXY_DOWN || outcome == 0xe1 || outcome == 1 || outcome == 2 || outcome > 6;
}

int connect(int fd, const struct sockaddr *sa, socklen_t len) {
  detour_ensure_init();
  detour_addr addr;
  uint16_t port;
  if (!active || !sa || !detour_addr_from_sockaddr(sa, len, &addr, &port) ||
      !detour_policy_addr_is_remote(&addr) || detour_proxy_is_self(&addr, port))
    return detour_real_connect(fd, sa, len);
  int type;
  socklen_t type_len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) < 0 || type != SOCK_STREAM)
    return detour_real_connect(fd, sa, len);

  uint16_t one_shot_port = already_forwarded(fd, sa, len);
  if (one_shot_port) return connect_one_shot(fd, sa->sa_family, one_shot_port);
  int saved = errno;
  int outcome = detour_proxy_forward(&addr, port, &one_shot_port);
  if (outcome != 0) {
    if (is_detour_failure(outcome)) {
      char target[INET6_ADDRSTRLEN + 8];
      detour_addr_format(&addr, target, sizeof target);
      snprintf(target + strlen(target), sizeof target - strlen(target), ":%u", port);
      detour_warn("connect to", target, outcome);
    }
    errno = connect_errno(outcome);
    return -1;
  }
  errno = saved;
  remember(fd, sa, len, one_shot_port);
  return connect_one_shot(fd, sa->sa_family, one_shot_port);
}

int __connect(int fd, const struct sockaddr *sa, socklen_t len) __attribute__((alias("connect")));

int getpeername(int fd, struct sockaddr *sa, socklen_t *len) {
  detour_ensure_init();
  socklen_t room = len ? *len : 0;
  int rc = real_getpeername(fd, sa, len);
  detour_addr peer;
  uint16_t port;
  if (rc != 0 || !active || fd < 0 || !detour_addr_from_sockaddr(sa, *len < room ? *len : room, &peer, &port) ||
      !detour_addr_is_loopback(&peer))
    return rc;
  pthread_mutex_lock(&table_lock);
  if ((size_t)fd < table_size && table[fd].one_shot_port == port) {
    memcpy(sa, &table[fd].original, table[fd].len < room ? table[fd].len : room);
    *len = table[fd].len;
  }
  pthread_mutex_unlock(&table_lock);
  return rc;
}

static int is_numeric_host(const char *name) {
  struct in6_addr scratch;
  return inet_pton(AF_INET, name, &scratch) == 1 || inet_pton(AF_INET6, name, &scratch) == 1;
}

/* The cluster's answer for a remote name; 0 with *count addresses, else the proxy's outcome. */
int detour_is_not_found(int outcome) { return outcome == 3 || outcome == 4 || outcome == 0xe4; }

int detour_resolve_remote(const char *name, int family, detour_addr *out, int max, int *count) {
  int outcome = detour_proxy_resolve(name, family, out, max, count);
  if (outcome == 0)
    for (int i = 0; i < *count; i++) detour_policy_note_remote(&out[i]);
  else if (!detour_is_not_found(outcome))
    detour_warn("lookup of", name, outcome);
  return outcome;
}

static int is_mapped_v4(const detour_addr *addr) {
  static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
  return memcmp(addr->bytes, mapped, 12) == 0;
}

static int service_port(const char *service, const struct addrinfo *hints, int *port) {
  *port = 0;
  if (!service || !*service) return 0;
  char *end;
  long value = strtol(service, &end, 10);
  if (*end == 0 && value >= 0 && value <= 65535) {
    *port = (int)value;
    return 0;
  }
  if (hints && (hints->ai_flags & AI_NUMERICSERV)) return EAI_NONAME;
  struct servent entry, *found = NULL;
  char buf[1024];
  const char *protocol = hints && hints->ai_socktype == SOCK_DGRAM ? "udp" : "tcp";
  if (getservbyname_r(service, protocol, &entry, buf, sizeof buf, &found) != 0 || !found) return EAI_SERVICE;
  *port = ntohs((uint16_t)found->s_port);
  return 0;
}

static struct addrinfo *new_entry(const detour_addr *addr, int family, int port, int socktype, int protocol) {
  socklen_t socklen = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  struct addrinfo *ai = calloc(1, sizeof *ai + socklen);
  if (!ai) return NULL;
  ai->ai_family = family;
  ai->ai_socktype = socktype;
  ai->ai_protocol = protocol;
  ai->ai_addrlen = socklen;
  ai->ai_addr = (struct sockaddr *)(ai + 1);
  if (family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)ai->ai_addr;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    memcpy(&in->sin_addr, addr->bytes + 12, 4);
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ai->ai_addr;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    memcpy(&in6->sin6_addr, addr->bytes, 16);
  }
  return ai;
}

enum { MAX_ADDRESSES = 32 };

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res) {
  detour_ensure_init();
  int family = hints ? hints->ai_family : AF_UNSPEC;
  int flags = hints ? hints->ai_flags : 0;
  if (!active || !node || (flags & AI_NUMERICHOST) || is_numeric_host(node) ||
      (family != AF_UNSPEC && family != AF_INET && family != AF_INET6) || !detour_policy_name_is_remote(node))
    return real_getaddrinfo(node, service, hints, res);
  int port, bad_service = service_port(service, hints, &port);
  if (bad_service) return bad_service;

  int mapped = family == AF_INET6 && (flags & AI_V4MAPPED);
  detour_addr found[MAX_ADDRESSES];
  int count = 0;
  int outcome = detour_resolve_remote(node, family == AF_INET ? 4 : family == AF_INET6 && !mapped ? 6 : 0, found,
                               MAX_ADDRESSES, &count);
  if (detour_is_not_found(outcome)) return EAI_NONAME;
  if (outcome != 0) return outcome == DETOUR_PROXY_DOWN || outcome == 0xe1 ? EAI_AGAIN : EAI_FAIL;

  int has_v6 = 0;
  for (int i = 0; i < count; i++) has_v6 |= !is_mapped_v4(&found[i]);
  const int all_types[][2] = {{SOCK_STREAM, IPPROTO_TCP}, {SOCK_DGRAM, IPPROTO_UDP}, {SOCK_RAW, 0}};
  const int one_type[][2] = {{hints ? hints->ai_socktype : 0, hints ? hints->ai_protocol : 0}};
  int types = hints && hints->ai_socktype ? 1 : 3;
  const int(*type_list)[2] = types == 1 ? one_type : all_types;

  struct addrinfo *head = NULL, **tail = &head;
  for (int i = 0; i < count; i++) {
    int v4 = is_mapped_v4(&found[i]), entry_family = v4 ? AF_INET : AF_INET6;
    if (family == AF_INET && !v4) continue;
    if (family == AF_INET6 && v4) {
      if (!mapped || (has_v6 && !(flags & AI_ALL))) continue;
      entry_family = AF_INET6;
    }
    for (int t = 0; t < types; t++) {
      int protocol = type_list[t][1];
      if (!protocol && type_list[t][0] == SOCK_STREAM) protocol = IPPROTO_TCP;
      if (!protocol && type_list[t][0] == SOCK_DGRAM) protocol = IPPROTO_UDP;
      struct addrinfo *ai = new_entry(&found[i], entry_family, port, type_list[t][0], protocol);
      if (!ai) {
        freeaddrinfo(head);
        return EAI_MEMORY;
      }
      *tail = ai, tail = &ai->ai_next;
    }
  }
  if (!head) return EAI_NONAME;
  if (flags & AI_CANONNAME) head->ai_canonname = strdup(node);
  *res = head;
  return 0;
}

/* Fills a hostent for a remote name in buf; the *_r contract (0 + h_errno, or ERANGE). */
static int remote_hostent(const char *name, int family, struct hostent *ret, char *buf, size_t buflen,
                          struct hostent **result, int *h_errnop) {
  *result = NULL;
  detour_addr found[MAX_ADDRESSES];
  int count = 0;
  int outcome = detour_resolve_remote(name, family == AF_INET6 ? 6 : 4, found, MAX_ADDRESSES, &count);
  if (outcome != 0) {
    *h_errnop = outcome == DETOUR_PROXY_DOWN || outcome == 0xe1 ? TRY_AGAIN : HOST_NOT_FOUND;
    return 0;
  }
  size_t length = family == AF_INET6 ? 16 : 4, name_len = strlen(name) + 1;
  size_t pointers = (size_t)(count + 1) * sizeof(char *);
  size_t need = pointers + sizeof(char *) + (size_t)count * length + name_len + sizeof(char *);
  if (buflen < need) {
    *h_errnop = NETDB_INTERNAL;
    return ERANGE;
  }
  /* Pointers first (aligned by the caller's buffer), then the addresses, the alias list, the name. */
  char **list = (char **)(void *)(((uintptr_t)buf + sizeof(char *) - 1) & ~(uintptr_t)(sizeof(char *) - 1));
  char **aliases = list + count + 1;
  char *data = (char *)(aliases + 1);
  int used = 0;
  for (int i = 0; i < count; i++) {
    int v4 = is_mapped_v4(&found[i]);
    if ((family == AF_INET) != v4) continue;
    memcpy(data, family == AF_INET ? found[i].bytes + 12 : found[i].bytes, length);
    list[used++] = data;
    data += length;
  }
  if (!used) {
    *h_errnop = NO_DATA;
    return 0;
  }
  list[used] = NULL;
  aliases[0] = NULL;
  memcpy(data, name, name_len);
  ret->h_name = data;
  ret->h_aliases = aliases;
  ret->h_addrtype = family;
  ret->h_length = (int)length;
  ret->h_addr_list = list;
  *result = ret;
  return 0;
}

static int takes_remote_hostent(const char *name, int family) {
  detour_ensure_init();
  return active && name && (family == AF_INET || family == AF_INET6) && !is_numeric_host(name) &&
         detour_policy_name_is_remote(name);
}

int gethostbyname2_r(const char *name, int family, struct hostent *ret, char *buf, size_t buflen,
                     struct hostent **result, int *h_errnop) {
  if (!takes_remote_hostent(name, family))
    return real_gethostbyname2_r(name, family, ret, buf, buflen, result, h_errnop);
  return remote_hostent(name, family, ret, buf, buflen, result, h_errnop);
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen, struct hostent **result,
                    int *h_errnop) {
  if (!takes_remote_hostent(name, AF_INET))
    return real_gethostbyname_r(name, ret, buf, buflen, result, h_errnop);
  return remote_hostent(name, AF_INET, ret, buf, buflen, result, h_errnop);
}

/* The non-reentrant forms answer from a per-thread buffer (glibc's are per process). */
static struct hostent *static_hostent(const char *name, int family) {
  static __thread struct hostent entry;
  static __thread char buf[2048];
  struct hostent *result;
  int error;
  remote_hostent(name, family, &entry, buf, sizeof buf, &result, &error);
  if (!result) h_errno = error;
  return result;
}

struct hostent *gethostbyname2(const char *name, int family) {
  if (!takes_remote_hostent(name, family)) return real_gethostbyname2(name, family);
  return static_hostent(name, family);
}

struct hostent *gethostbyname(const char *name) {
  if (!takes_remote_hostent(name, AF_INET)) return real_gethostbyname(name);
  return static_hostent(name, AF_INET);
}
