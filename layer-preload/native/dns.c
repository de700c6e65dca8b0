/*
 * DNS queries a runtime sends itself over UDP (Netty's resolver, used by Reactor Netty, Vert.x,
 * Lettuce; c-ares): an A or AAAA query for a name the policy calls remote, sent to port 53 on an
 * unconnected UDP socket, never leaves. The cluster answers it (RESOLVE_ALL) and the library puts a
 * DNS response in the socket's receive queue, sent from a loopback helper socket; the receive
 * functions then report the nameserver the query was sent to as the response's source (resolvers
 * match responses by server address and query id). Every other datagram goes out untouched.
 *
 * Not covered: queries on a connected UDP socket (the kernel accepts datagrams only from the
 * connected peer), DNS over TCP, record types other than A/AAAA (they go to the real nameserver).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "detour.h"

static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static int (*real_sendmmsg)(int, struct mmsghdr *, unsigned int, int);
static ssize_t (*real_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*real_recvmsg)(int, struct msghdr *, int);
static int (*real_recvmmsg)(int, struct mmsghdr *, unsigned int, int, struct timespec *);

void detour_dns_init(void) {
  real_sendto = dlsym(RTLD_NEXT, "sendto");
  real_sendmsg = dlsym(RTLD_NEXT, "sendmsg");
  real_sendmmsg = dlsym(RTLD_NEXT, "sendmmsg");
  real_recvfrom = dlsym(RTLD_NEXT, "recvfrom");
  real_recvmsg = dlsym(RTLD_NEXT, "recvmsg");
  real_recvmmsg = dlsym(RTLD_NEXT, "recvmmsg");
}

enum { TYPE_A = 1, TYPE_AAAA = 28, CLASS_IN = 1, MAX_ANSWERS = 32, PENDING = 64 };

/* Answers in flight: which nameserver the app sent query `id` on `fd` to. */
struct pending {
  int fd;
  uint16_t id;
  socklen_t len;
  struct sockaddr_storage server;
};
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pending pending[PENDING];
static unsigned pending_next;
static atomic_int pending_count;

/* The helper sockets the answers come from (IPv4 on 127.0.0.1, IPv6 on ::1), made on first use. */
static pthread_mutex_t helper_lock = PTHREAD_MUTEX_INITIALIZER;
static int helper_fd[2] = {-1, -1};
static uint16_t helper_port[2];

void detour_dns_lock(void) {
  pthread_mutex_lock(&pending_lock);
  pthread_mutex_lock(&helper_lock);
}

void detour_dns_unlock(void) {
  pthread_mutex_unlock(&helper_lock);
  pthread_mutex_unlock(&pending_lock);
}

/* Parses a standard query with one A/AAAA IN question; returns the question's end offset or 0. */
static size_t parse_query(const uint8_t *msg, size_t len, char *name, size_t name_size, int *qtype) {
  if (len < 12 || (msg[2] & 0xf8) != 0 || msg[4] != 0 || msg[5] != 1 || msg[6] || msg[7]) return 0;
  size_t at = 12, out = 0;
  while (at < len && msg[at]) {
    size_t label = msg[at++];
    if (label > 63 || at + label > len || out + label + 1 >= name_size) return 0;
    if (out) name[out++] = '.';
    memcpy(name + out, msg + at, label);
    out += label, at += label;
  }
  name[out] = 0;
  if (at + 5 > len || out == 0) return 0;
  at++;
  int type = msg[at] << 8 | msg[at + 1], klass = msg[at + 2] << 8 | msg[at + 3];
  if ((type != TYPE_A && type != TYPE_AAAA) || klass != CLASS_IN) return 0;
  *qtype = type;
  return at + 4;
}

static size_t build_answer(const uint8_t *query, size_t question_end, int qtype, const detour_addr *found,
                           int count, int rcode, uint8_t *out, size_t size) {
  size_t rdlength = qtype == TYPE_A ? 4 : 16;
  if (question_end + (size_t)count * (12 + rdlength) > size) count = 0;
  memcpy(out, query, question_end);
  out[2] = (uint8_t)(0x80 | (query[2] & 0x01)); /* QR, opcode 0, RD as asked */
  out[3] = (uint8_t)(0x80 | rcode);             /* RA */
  out[6] = 0, out[8] = out[9] = out[10] = out[11] = 0;
  size_t at = question_end;
  int answers = 0;
  for (int i = 0; i < count; i++) {
    static const uint8_t mapped[12] = {[10] = 0xff, [11] = 0xff};
    int v4 = memcmp(found[i].bytes, mapped, 12) == 0;
    if (v4 != (qtype == TYPE_A)) continue;
    const uint8_t head[12] = {0xc0, 0x0c, 0, (uint8_t)qtype, 0, CLASS_IN, 0, 0, 0, 0, 0, (uint8_t)rdlength};
    memcpy(out + at, head, 12);
    memcpy(out + at + 12, v4 ? found[i].bytes + 12 : found[i].bytes, rdlength);
    at += 12 + rdlength;
    answers++;
  }
  out[7] = (uint8_t)answers;
  return at;
}

static int helper(int v6) {
  pthread_mutex_lock(&helper_lock);
  if (helper_fd[v6] < 0) {
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_storage at = {0};
    socklen_t len;
    if (v6) {
      struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&at;
      in6->sin6_family = AF_INET6;
      in6->sin6_addr = in6addr_loopback;
      len = sizeof *in6;
    } else {
      struct sockaddr_in *in = (struct sockaddr_in *)&at;
      in->sin_family = AF_INET;
      in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof *in;
    }
    if (fd >= 0 && bind(fd, (struct sockaddr *)&at, len) == 0 &&
        getsockname(fd, (struct sockaddr *)&at, &len) == 0) {
      helper_fd[v6] = fd;
      helper_port[v6] = ntohs(v6 ? ((struct sockaddr_in6 *)&at)->sin6_port : ((struct sockaddr_in *)&at)->sin_port);
    } else if (fd >= 0) {
      close(fd);
    }
  }
  int fd = helper_fd[v6];
  pthread_mutex_unlock(&helper_lock);
  return fd;
}

/* Where the app's socket receives: its bound address, or loopback when bound to the wildcard. */
static int reply_target(int fd, struct sockaddr_storage *to, socklen_t *len, int *v6) {
  *len = sizeof *to;
  if (getsockname(fd, (struct sockaddr *)to, len) != 0) return -1;
  if (to->ss_family == AF_INET && ((struct sockaddr_in *)to)->sin_port == 0) {
    struct sockaddr_in any = {.sin_family = AF_INET};
    if (bind(fd, (struct sockaddr *)&any, sizeof any) != 0) return -1;
    return reply_target(fd, to, len, v6);
  }
  if (to->ss_family == AF_INET6 && ((struct sockaddr_in6 *)to)->sin6_port == 0) {
    struct sockaddr_in6 any = {.sin6_family = AF_INET6};
    if (bind(fd, (struct sockaddr *)&any, sizeof any) != 0) return -1;
    return reply_target(fd, to, len, v6);
  }
  if (to->ss_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)to;
    if (in->sin_addr.s_addr == htonl(INADDR_ANY)) in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *v6 = 0;
    return 0;
  }
  if (to->ss_family != AF_INET6) return -1;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)to;
  int v6only = 0;
  socklen_t optlen = sizeof v6only;
  getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &optlen);
  if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr) && !v6only) {
    /* A dual-stack socket: reached from the IPv4 helper as ::ffff:127.0.0.1. */
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = in6->sin6_port};
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    memcpy(to, &in, sizeof in);
    *len = sizeof in;
    *v6 = 0;
    return 0;
  }
  if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) in6->sin6_addr = in6addr_loopback;
  *v6 = 1;
  return 0;
}

static void add_pending(int fd, uint16_t id, const struct sockaddr *server, socklen_t len) {
  pthread_mutex_lock(&pending_lock);
  struct pending *slot = &pending[pending_next++ % PENDING];
  if (!slot->len) atomic_fetch_add(&pending_count, 1);
  slot->fd = fd, slot->id = id, slot->len = len;
  memcpy(&slot->server, server, len);
  pthread_mutex_unlock(&pending_lock);
}

/*
 * Answers the datagram from the cluster when it is a remote A/AAAA query to port 53; returns 1 if
 * it did (the app's send then reports the whole datagram sent), 0 to let it go out.
 */
static int answer_query(int fd, const void *buf, size_t len, const struct sockaddr *to, socklen_t to_len) {
  detour_addr server;
  uint16_t port;
  if (!to || !detour_addr_from_sockaddr(to, to_len, &server, &port) || port != 53 ||
      to_len > sizeof(struct sockaddr_storage))
    return 0;
  char name[256];
  int qtype;
  size_t question_end = parse_query(buf, len, name, sizeof name, &qtype);
  if (!question_end || !detour_policy_name_is_remote(name)) return 0;
  int type;
  socklen_t type_len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) < 0 || type != SOCK_DGRAM) return 0;
  struct sockaddr_storage target;
  socklen_t target_len;
  int v6;
  if (reply_target(fd, &target, &target_len, &v6) != 0) return 0;
  int from = helper(v6);
  if (from < 0) return 0;

  detour_addr found[MAX_ANSWERS];
  int count = 0;
  int outcome = detour_resolve_remote(name, qtype == TYPE_A ? 4 : 6, found, MAX_ANSWERS, &count);
  /* Not found as AAAA: "no such data" (the A query answers); not found as A: no such name. */
  int rcode = outcome == 0 ? 0 : detour_is_not_found(outcome) ? (qtype == TYPE_A ? 3 : 0) : 2;
  uint8_t answer[512 + MAX_ANSWERS * 28];
  size_t answer_len = build_answer(buf, question_end, qtype, found, outcome == 0 ? count : 0, rcode, answer,
                                   sizeof answer);
  const uint8_t *query = buf;
  add_pending(fd, (uint16_t)(query[0] << 8 | query[1]), to, to_len);
  real_sendto(from, answer, answer_len, MSG_NOSIGNAL, (struct sockaddr *)&target, target_len);
  return 1;
}

/* A received datagram from a helper socket: report the nameserver of its query as the source. */
static void restore_source(int fd, const void *buf, ssize_t got, struct sockaddr *from, socklen_t *from_len,
                           socklen_t room) {
  detour_addr source;
  uint16_t port;
  if (got < 2 || !from || !from_len || !atomic_load(&pending_count) ||
      !detour_addr_from_sockaddr(from, *from_len, &source, &port) || !detour_addr_is_loopback(&source))
    return;
  pthread_mutex_lock(&helper_lock);
  int ours = helper_fd[0] >= 0 && port == helper_port[0];
  ours |= helper_fd[1] >= 0 && port == helper_port[1];
  pthread_mutex_unlock(&helper_lock);
  if (!ours) return;
  const uint8_t *msg = buf;
  uint16_t id = (uint16_t)(msg[0] << 8 | msg[1]);
  pthread_mutex_lock(&pending_lock);
  for (int i = 0; i < PENDING; i++) {
    struct pending *slot = &pending[i];
    if (!slot->len || slot->fd != fd || slot->id != id) continue;
    memcpy(from, &slot->server, slot->len < room ? slot->len : room);
    *from_len = slot->len;
    slot->len = 0;
    atomic_fetch_sub(&pending_count, 1);
    break;
  }
  pthread_mutex_unlock(&pending_lock);
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t to_len) {
  detour_ensure_init();
  if (detour_active() && answer_query(fd, buf, len, to, to_len)) return (ssize_t)len;
  return real_sendto(fd, buf, len, flags, to, to_len);
}

/* A one-buffer sendmsg (how resolvers send a query); others go out untouched. */
static int answer_message(int fd, const struct msghdr *msg) {
  return msg->msg_iovlen == 1 && answer_query(fd, msg->msg_iov[0].iov_base, msg->msg_iov[0].iov_len,
                                              msg->msg_name, msg->msg_namelen);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
  detour_ensure_init();
  if (detour_active() && msg && answer_message(fd, msg)) return (ssize_t)msg->msg_iov[0].iov_len;
  return real_sendmsg(fd, msg, flags);
}

int sendmmsg(int fd, struct mmsghdr *vec, unsigned int n, int flags) {
  detour_ensure_init();
  if (!detour_active() || !vec) return real_sendmmsg(fd, vec, n, flags);
  for (unsigned i = 0; i < n; i++) {
    if (answer_message(fd, &vec[i].msg_hdr)) {
      vec[i].msg_len = (unsigned)vec[i].msg_hdr.msg_iov[0].iov_len;
      continue;
    }
    ssize_t sent = real_sendmsg(fd, &vec[i].msg_hdr, flags);
    if (sent < 0) return i > 0 ? (int)i : -1;
    vec[i].msg_len = (unsigned)sent;
  }
  return (int)n;
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *from_len) {
  detour_ensure_init();
  socklen_t room = from_len ? *from_len : 0;
  ssize_t got = real_recvfrom(fd, buf, len, flags, from, from_len);
  if (got > 0 && detour_active()) restore_source(fd, buf, got, from, from_len, room);
  return got;
}

static void restore_message(int fd, struct msghdr *msg, ssize_t got, socklen_t room) {
  if (got > 0 && msg->msg_iovlen >= 1 && msg->msg_iov[0].iov_len >= 2)
    restore_source(fd, msg->msg_iov[0].iov_base, got, msg->msg_name, &msg->msg_namelen, room);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags) {
  detour_ensure_init();
  socklen_t room = msg ? msg->msg_namelen : 0;
  ssize_t got = real_recvmsg(fd, msg, flags);
  if (detour_active() && msg) restore_message(fd, msg, got, room);
  return got;
}

int recvmmsg(int fd, struct mmsghdr *vec, unsigned int n, int flags, struct timespec *timeout) {
  detour_ensure_init();
  socklen_t rooms[64];
  unsigned tracked = n < 64 ? n : 64;
  for (unsigned i = 0; vec && i < tracked; i++) rooms[i] = vec[i].msg_hdr.msg_namelen;
  int got = real_recvmmsg(fd, vec, n, flags, timeout);
  if (detour_active() && vec)
    for (int i = 0; i < got && (unsigned)i < tracked; i++)
      restore_message(fd, &vec[i].msg_hdr, (ssize_t)vec[i].msg_len, rooms[i]);
  return got;
}
