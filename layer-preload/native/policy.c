/*
 * The egress policy, evaluated with the lists the CLI exports (DETOUR_EGRESS_INCLUDE / _EXCLUDE,
 * DETOUR_CLUSTER_DOMAIN) in the order of router/src/egress/egress-policy.ts: exclude → local,
 * include → remote, loopback → local, an address a remote lookup returned → remote, single-label
 * names and the cluster's suffixes → remote, anything else → local. It only decides what never
 * reaches the proxy; whatever is sent there, the proxy's own policy routes again.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detour.h"

enum entry_kind { ENTRY_ALL, ENTRY_NAME, ENTRY_SUFFIX, ENTRY_BLOCK };

struct entry {
  enum entry_kind kind;
  char *text; /* name, or ".suffix" of a "*.suffix" wildcard */
  detour_addr block;
  int prefix; /* bits of block, over the 128-bit (mapped) form */
};

struct list {
  struct entry *entries;
  size_t count;
};

static struct list include_list, exclude_list;
static char cluster_suffixes[3][300];

/* Addresses remote lookups returned; few, so a growing array scanned under a lock. */
static pthread_mutex_t remote_lock = PTHREAD_MUTEX_INITIALIZER;
static detour_addr *remote_addrs;
static size_t remote_count, remote_capacity;

static void normalize(const char *in, char *out, size_t size) {
  size_t n = strlen(in);
  while (n > 0 && isspace((unsigned char)*in)) in++, n--;
  while (n > 0 && isspace((unsigned char)in[n - 1])) n--;
  if (n >= 2 && in[0] == '[' && in[n - 1] == ']') in++, n -= 2;
  if (n > 1 && in[n - 1] == '.') n--;
  if (n >= size) n = size - 1;
  for (size_t i = 0; i < n; i++) out[i] = (char)tolower((unsigned char)in[i]);
  out[n] = 0;
}

static int parse_addr(const char *text, detour_addr *out) {
  struct in_addr v4;
  if (inet_pton(AF_INET, text, &v4) == 1) {
    memset(out->bytes, 0, 10);
    out->bytes[10] = out->bytes[11] = 0xff;
    memcpy(out->bytes + 12, &v4, 4);
    return 4;
  }
  return inet_pton(AF_INET6, text, out->bytes) == 1 ? 6 : 0;
}

static void add_entry(struct list *list, const char *raw) {
  char entry[300];
  normalize(raw, entry, sizeof entry);
  if (!entry[0]) return;
  struct entry e = {0};
  char *slash = strchr(entry, '/');
  int family;
  if (strcmp(entry, "*") == 0) {
    e.kind = ENTRY_ALL;
  } else if (entry[0] == '*' && entry[1] == '.') {
    e.kind = ENTRY_SUFFIX;
    e.text = strdup(entry + 1);
  } else if (slash) {
    *slash = 0;
    family = parse_addr(entry, &e.block);
    if (!family) return; /* the CLI validated the lists; an entry it accepted always parses */
    e.kind = ENTRY_BLOCK;
    e.prefix = atoi(slash + 1) + (family == 4 ? 96 : 0);
  } else if ((family = parse_addr(entry, &e.block))) {
    e.kind = ENTRY_BLOCK;
    e.prefix = 128;
  } else {
    e.kind = ENTRY_NAME;
    e.text = strdup(entry);
  }
  struct entry *grown = realloc(list->entries, (list->count + 1) * sizeof *grown);
  if (!grown) return;
  list->entries = grown;
  list->entries[list->count++] = e;
}

static void parse_list(struct list *list, const char *value) {
  if (!value) return;
  char *copy = strdup(value), *save = NULL;
  if (!copy) return;
  for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) add_entry(list, item);
  free(copy);
}

void detour_policy_init(const char *include, const char *exclude, const char *cluster_domain) {
  parse_list(&include_list, include);
  parse_list(&exclude_list, exclude);
  char domain[256];
  normalize(cluster_domain && *cluster_domain ? cluster_domain : "cluster.local", domain, sizeof domain);
  snprintf(cluster_suffixes[0], sizeof cluster_suffixes[0], ".svc");
  snprintf(cluster_suffixes[1], sizeof cluster_suffixes[1], ".svc.%s", domain);
  snprintf(cluster_suffixes[2], sizeof cluster_suffixes[2], ".%s", domain);
}

static int ends_with(const char *text, const char *suffix) {
  size_t n = strlen(text), m = strlen(suffix);
  return n >= m && strcmp(text + n - m, suffix) == 0;
}

static int in_block(const detour_addr *addr, const detour_addr *block, int prefix) {
  int whole = prefix / 8, rest = prefix % 8;
  if (memcmp(addr->bytes, block->bytes, (size_t)whole) != 0) return 0;
  if (!rest) return 1;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (addr->bytes[whole] & mask) == (block->bytes[whole] & mask);
}

static int list_matches_name(const struct list *list, const char *name) {
  for (size_t i = 0; i < list->count; i++) {
    const struct entry *e = &list->entries[i];
    if (e->kind == ENTRY_ALL) return 1;
    if (e->kind == ENTRY_NAME && strcmp(e->text, name) == 0) return 1;
    if (e->kind == ENTRY_SUFFIX && ends_with(name, e->text)) return 1;
  }
  return 0;
}

static int list_matches_addr(const struct list *list, const detour_addr *addr) {
  for (size_t i = 0; i < list->count; i++) {
    const struct entry *e = &list->entries[i];
    if (e->kind == ENTRY_ALL) return 1;
    if (e->kind == ENTRY_BLOCK && in_block(addr, &e->block, e->prefix)) return 1;
  }
  return 0;
}

int detour_addr_is_loopback(const detour_addr *addr) {
  static const uint8_t v6_loopback[16] = {[15] = 1};
  static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
  if (memcmp(addr->bytes, v6_loopback, 16) == 0) return 1;
  return memcmp(addr->bytes, mapped, 12) == 0 && addr->bytes[12] == 127;
}

int detour_policy_name_is_remote(const char *raw) {
  char name[300];
  normalize(raw, name, sizeof name);
  detour_addr addr;
  if (parse_addr(name, &addr)) return detour_policy_addr_is_remote(&addr);
  if (list_matches_name(&exclude_list, name)) return 0;
  if (list_matches_name(&include_list, name)) return 1;
  if (strcmp(name, "localhost") == 0 || ends_with(name, ".localhost")) return 0;
  if (!strchr(name, '.')) return name[0] != 0;
  for (int i = 0; i < 3; i++)
    if (ends_with(name, cluster_suffixes[i])) return 1;
  return 0;
}

int detour_policy_addr_is_remote(const detour_addr *addr) {
  if (list_matches_addr(&exclude_list, addr)) return 0;
  if (list_matches_addr(&include_list, addr)) return 1;
  if (detour_addr_is_loopback(addr)) return 0;
  int found = 0;
  pthread_mutex_lock(&remote_lock);
  for (size_t i = 0; i < remote_count && !found; i++) found = memcmp(&remote_addrs[i], addr, 16) == 0;
  pthread_mutex_unlock(&remote_lock);
  return found;
}

void detour_policy_note_remote(const detour_addr *addr) {
  if (detour_addr_is_loopback(addr) || detour_policy_addr_is_remote(addr)) return;
  pthread_mutex_lock(&remote_lock);
  if (remote_count == remote_capacity) {
    size_t capacity = remote_capacity ? remote_capacity * 2 : 16;
    detour_addr *grown = realloc(remote_addrs, capacity * sizeof *grown);
    if (grown) remote_addrs = grown, remote_capacity = capacity;
  }
  if (remote_count < remote_capacity) remote_addrs[remote_count++] = *addr;
  pthread_mutex_unlock(&remote_lock);
}

int detour_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, detour_addr *out, uint16_t *port) {
  if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
    memset(out->bytes, 0, 10);
    out->bytes[10] = out->bytes[11] = 0xff;
    memcpy(out->bytes + 12, &in->sin_addr, 4);
    *port = ntohs(in->sin_port);
    return 1;
  }
  if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    memcpy(out->bytes, &in6->sin6_addr, 16);
    *port = ntohs(in6->sin6_port);
    return 1;
  }
  return 0;
}

void detour_addr_format(const detour_addr *addr, char *out, size_t size) {
  static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
  if (memcmp(addr->bytes, mapped, 12) == 0) inet_ntop(AF_INET, addr->bytes + 12, out, (socklen_t)size);
  else inet_ntop(AF_INET6, addr->bytes, out, (socklen_t)size);
}
