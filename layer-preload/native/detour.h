/*
 * detour's native preload layer: shared declarations of its three parts.
 *   policy.c    the egress policy (same lists and order as router/src/egress/egress-policy.ts)
 *   proxy.c     the SOCKS5 exchanges with the CLI's loopback proxy (FORWARD, RESOLVE_ALL)
 *   interpose.c the libc functions the process calls (connect, getaddrinfo, ...)
 *   dns.c       DNS queries a runtime sends itself over UDP (sendto/recvfrom and friends)
 */
#ifndef DETOUR_H
#define DETOUR_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An address as the policy sees it: IPv4 always as its IPv4-mapped IPv6 form. */
typedef struct {
  uint8_t bytes[16];
} detour_addr;

/* --- policy.c --- */
void detour_policy_init(const char *include, const char *exclude, const char *cluster_domain);
/* 1 when the name should be resolved by the cluster (RESOLVE_ALL), 0 when locally. */
int detour_policy_name_is_remote(const char *name);
/* 1 when a connection to the address goes through the proxy (FORWARD). */
int detour_policy_addr_is_remote(const detour_addr *addr);
/* Addresses a remote lookup returned: later connects to them go remote. */
void detour_policy_note_remote(const detour_addr *addr);
int detour_addr_is_loopback(const detour_addr *addr);
/* sockaddr_in / sockaddr_in6 → detour_addr + port; 0 if not an IP family. */
int detour_addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, detour_addr *out, uint16_t *port);
/* "1.2.3.4" for IPv4-mapped addresses, "fd00::1" otherwise. */
void detour_addr_format(const detour_addr *addr, char *out, size_t size);

/* --- interpose.c --- */
/* libc's own connect, for the proxy's helper connections and the rerouted app sockets. */
extern int (*detour_real_connect)(int, const struct sockaddr *, socklen_t);
void detour_ensure_init(void);
/* 1 when DETOUR_PROXY is set and no Node layer routes this process. */
int detour_active(void);
/* RESOLVE_ALL through the proxy; the addresses found become remote. 0 or the proxy's outcome. */
int detour_resolve_remote(const char *name, int family, detour_addr *out, int max, int *count);
/* The outcome says the cluster has no such name (not a failure of detour). */
int detour_is_not_found(int outcome);

/* --- dns.c --- */
void detour_dns_init(void);
void detour_dns_lock(void);
void detour_dns_unlock(void);

/* --- proxy.c --- */
/* Outcome of an exchange: 0 ok; >0 the SOCKS5 reply code; DETOUR_PROXY_DOWN the proxy is not there. */
#define DETOUR_PROXY_DOWN (-1)
void detour_proxy_init(const char *host_port, int timeout_ms);
/* 1 when addr:port is the proxy itself: an app that speaks to it (HTTP_PROXY) is never forwarded. */
int detour_proxy_is_self(const detour_addr *addr, uint16_t port);
/* FORWARD: the proxy dials addr:port and answers the one-shot loopback port that hands it over. */
int detour_proxy_forward(const detour_addr *addr, uint16_t port, uint16_t *one_shot_port);
/* RESOLVE_ALL: up to max addresses of name (family 0, 4 or 6); *count is how many came. */
int detour_proxy_resolve(const char *name, int family, detour_addr *out, int max, int *count);
/* Says on stderr, naming detour, why a call failed (at most once a second). */
void detour_warn(const char *what, const char *target, int outcome);

#endif
