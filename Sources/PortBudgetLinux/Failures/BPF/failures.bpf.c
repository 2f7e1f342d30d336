// SPDX-License-Identifier: GPL-2.0
/*
 * Counts failed ephemeral-port allocations where the kernel makes them, per
 * (network namespace, protocol, call, errno, cgroup), and — while `portbudget
 * trace` listens — hands each one to user space through a ring buffer.
 *
 * Always attached (they fire only where a socket changes state or a send
 * returns, so the rest of the host pays nothing):
 *   tp_btf/inet_sock_set_state  TCP connect() → EADDRNOTAVAIL: SYN_SENT → CLOSE
 *                               with no local port and no segment ever sent:
 *                               inet_hash_connect() found no port. (A refused
 *                               or timed-out connect also ends SYN_SENT →
 *                               CLOSE without a port, since closing releases
 *                               an autobound port first, but its SYN went
 *                               out; a clash on an explicitly bound port
 *                               keeps that port.) listen() autobind →
 *                               EADDRINUSE: LISTEN → CLOSE with no local port
 *                               and no source port ever set (closing a
 *                               listener that had an ephemeral port also
 *                               releases it first, but leaves inet_sport).
 *   tp_btf/sock_send_length     UDP send on an unbound socket → EAGAIN: the
 *                               send's return value with no local port after
 *                               it (a full send buffer leaves a bound socket;
 *                               AF_UNIX and TCP are other families/types).
 *   The first also remembers, by socket cookie, every TCP socket that enters
 *   SYN_SENT already holding a local port: bind() took that port before
 *   connect(), so no other destination may share it (see pb_bound_socket),
 *   in a map per network namespace the agent watches.
 * Opt-in (syscall tracepoints switch every syscall of the host onto the
 * kernel's slower tracing path, so they are loaded only when asked for):
 *   syscalls/sys_{enter,exit}_bind     bind(addr, 0) → EADDRINUSE
 *   syscalls/sys_{enter,exit}_connect  UDP connect() autobind → EAGAIN
 *
 * Labels are ids only; the agent names them.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "portbudget_failures.h"

#define BPF_NOEXIST 1

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, PB_MAX_COUNT_KEYS);
    __type(key, struct pb_count_key);
    __type(value, __u64);
} counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, PB_DROP_SLOTS);
    __type(key, __u32);
    __type(value, __u64);
} drops SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, PB_CONFIG_SLOTS);
    __type(key, __u32);
    __type(value, __u64);
} config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, PB_EVENT_RING_BYTES);
} events SEC(".maps");

/* Network namespace inode → that namespace's map of socket cookie → a
 * socket bound before connect(). The agent creates each inner map (its size
 * is the namespace's allowance) before the namespace's first census, so a
 * census reads its own namespace's entries only, and a full map refuses only
 * its own namespace's sockets: that namespace's refusal counter moves and the
 * agent calls its numbers inferred. The agent deletes the entries of sockets
 * gone from its dumps; none are evicted. */
#define BOUND_SOCKET_MAP                                                      \
    struct {                                                                  \
        __uint(type, BPF_MAP_TYPE_HASH);                                      \
        __uint(map_flags, BPF_F_NO_PREALLOC);                                 \
        __uint(max_entries, PB_BOUND_SOCKETS_TEMPLATE);                       \
        /* Sizes, not types: clang would describe the value's struct          \
         * only by name here, which libbpf cannot size. */                    \
        __uint(key_size, sizeof(__u64));                                      \
        __uint(value_size, sizeof(struct pb_bound_socket));                   \
    }

struct {
    __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
    __uint(max_entries, PB_MAX_WATCHED_NAMESPACES);
    __type(key, __u32);
    __array(values, BOUND_SOCKET_MAP);
} bound_sockets SEC(".maps");

/* A namespace's previous map while the agent moves it to a bigger one: no
 * longer added to, still read and still forgotten from, until it is empty. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
    __uint(max_entries, PB_MAX_WATCHED_NAMESPACES);
    __type(key, __u32);
    __array(values, BOUND_SOCKET_MAP);
} retiring_bound_sockets SEC(".maps");

/* Network namespace inode → sockets its full map refused. The agent adds
 * the key with its map; the programs only add to it. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, PB_MAX_WATCHED_NAMESPACES);
    __type(key, __u32);
    __type(value, __u64);
} bound_refusals SEC(".maps");

/* Thread id → the failure its bind()/connect() would be, decided at entry
 * (the socket and address as they were) and kept only if the exit's errno
 * matches. Used by the opt-in syscall programs alone. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, PB_MAX_PENDING);
    __type(key, __u32);
    __type(value, struct pb_event);
} pending SEC(".maps");

static __always_inline void count_drop(__u32 slot)
{
    __u64 *value = bpf_map_lookup_elem(&drops, &slot);
    if (value)
        __sync_fetch_and_add(value, 1);
}

static __always_inline void record(const struct pb_event *event)
{
    struct pb_count_key key = {
        .cgroup_id = event->cgroup_id,
        .netns_inode = event->netns_inode,
        .error = event->error,
        .protocol = event->protocol,
        .call = event->call,
    };
    __u64 *value = bpf_map_lookup_elem(&counts, &key);
    if (!value) {
        __u64 one = 1;
        if (bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST) == 0)
            goto emit;
        value = bpf_map_lookup_elem(&counts, &key); /* another CPU added it */
        if (!value) {
            count_drop(PB_DROP_COUNT_KEYS);
            goto emit;
        }
    }
    __sync_fetch_and_add(value, 1);
emit:;
    __u32 slot = PB_CONFIG_EMIT_EVENTS;
    __u64 *emit = bpf_map_lookup_elem(&config, &slot);
    if (!emit || !*emit)
        return;
    struct pb_event *out = bpf_ringbuf_reserve(&events, sizeof(*out), 0);
    if (!out) {
        count_drop(PB_DROP_EVENTS);
        return;
    }
    __builtin_memcpy(out, event, sizeof(*out));
    bpf_ringbuf_submit(out, 0);
}

/* The calling thread's half of an event: who, where, when. */
static __always_inline void fill_caller(struct pb_event *event, struct sock *sk, __u8 call, __u16 error)
{
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    event->boot_ns = bpf_ktime_get_boot_ns();
    event->cgroup_id = bpf_get_current_cgroup_id();
    event->netns_inode = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
    event->tgid = pid_tgid >> 32;
    event->tid = (__u32)pid_tgid;
    event->error = error;
    event->protocol = (__u8)BPF_CORE_READ(sk, sk_protocol);
    event->call = call;
    bpf_get_current_comm(event->comm, sizeof(event->comm));
}

static __always_inline bool is_inet(__u16 family)
{
    return family == AF_INET || family == AF_INET6;
}

/* Deletes `cookie` from the namespace's map in `outer`, if it is there. */
#define FORGET_IN(outer, netns, cookie)                                       \
    do {                                                                      \
        void *sockets_ = bpf_map_lookup_elem(&outer, &netns);                 \
        /* A lookup takes no lock; a delete would, on every connect(). */     \
        if (sockets_ && bpf_map_lookup_elem(sockets_, &cookie))               \
            bpf_map_delete_elem(sockets_, &cookie);                           \
    } while (0)

/* connect() began on a socket that already has its port: bind() took it.
 * Without a port, connect() chooses it; the socket may have been remembered
 * before a failed connect() or a disconnect released its bound port.
 * Only namespaces the agent gave a map are watched. */
static __always_inline void remember_bound(struct sock *sk)
{
    if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
        return;
    __u32 netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
    __u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);
    __u64 cookie = bpf_get_socket_cookie(sk);
    if (port == 0) {
        FORGET_IN(bound_sockets, netns, cookie);
        FORGET_IN(retiring_bound_sockets, netns, cookie);
        return;
    }
    void *sockets = bpf_map_lookup_elem(&bound_sockets, &netns);
    if (!sockets)
        return;
    struct pb_bound_socket bound = {
        .boot_ns = bpf_ktime_get_boot_ns(),
        .netns_inode = netns,
        .port = port,
    };
    if (bpf_map_update_elem(sockets, &cookie, &bound, BPF_ANY) != 0) {
        count_drop(PB_DROP_BOUND_SOCKETS);
        __u64 *refused = bpf_map_lookup_elem(&bound_refusals, &netns);
        if (refused)
            __sync_fetch_and_add(refused, 1);
    }
}

SEC("tp_btf/inet_sock_set_state")
int failure_on_state_change(__u64 *ctx)
{
    struct sock *sk = (struct sock *)ctx[0];
    int oldstate = (int)ctx[1];
    int newstate = (int)ctx[2];

    if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
        remember_bound(sk);
        return 0;
    }
    if (newstate != TCP_CLOSE || (oldstate != TCP_SYN_SENT && oldstate != TCP_LISTEN))
        return 0;
    if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP || BPF_CORE_READ(sk, __sk_common.skc_num) != 0)
        return 0;
    if (oldstate == TCP_SYN_SENT && BPF_CORE_READ((struct tcp_sock *)sk, segs_out) != 0)
        return 0;
    if (oldstate == TCP_LISTEN && BPF_CORE_READ((struct inet_sock *)sk, inet_sport) != 0)
        return 0;

    struct pb_event event = {};
    if (oldstate == TCP_LISTEN) {
        fill_caller(&event, sk, PB_CALL_LISTEN, EADDRINUSE);
    } else {
        fill_caller(&event, sk, PB_CALL_CONNECT, EADDRNOTAVAIL);
        __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
        event.family = family;
        event.dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
        if (family == AF_INET) {
            __be32 daddr = BPF_CORE_READ(sk, __sk_common.skc_daddr);
            __builtin_memcpy(event.daddr, &daddr, 4);
        } else {
            BPF_CORE_READ_INTO(&event.daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
        }
    }
    record(&event);
    return 0;
}

SEC("tp_btf/sock_send_length")
int failure_on_send(__u64 *ctx)
{
    struct sock *sk = (struct sock *)ctx[0];
    int ret = (int)ctx[1];

    if (ret != -EAGAIN || !sk)
        return 0;
    if (!is_inet(BPF_CORE_READ(sk, __sk_common.skc_family)) || BPF_CORE_READ(sk, sk_type) != SOCK_DGRAM)
        return 0;
    __u16 protocol = BPF_CORE_READ(sk, sk_protocol);
    if ((protocol != IPPROTO_UDP && protocol != IPPROTO_UDPLITE) || BPF_CORE_READ(sk, __sk_common.skc_num) != 0)
        return 0;

    struct pb_event event = {};
    fill_caller(&event, sk, PB_CALL_SEND, EAGAIN);
    record(&event);
    return 0;
}

/* The socket behind the calling thread's descriptor `fd`, or NULL when it
 * is not a socket. */
static __always_inline struct sock *socket_of_fd(__u64 fd)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
    if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
        return 0;
    struct file **fds = BPF_CORE_READ(fdt, fd);
    struct file *file = 0;
    if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) != 0 || !file)
        return 0;
    if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
        return 0;
    struct socket *socket = BPF_CORE_READ(file, private_data);
    return socket ? BPF_CORE_READ(socket, sk) : 0;
}

static __always_inline void remember(struct pb_event *event)
{
    __u32 tid = event->tid;
    if (bpf_map_update_elem(&pending, &tid, event, BPF_ANY) != 0)
        count_drop(PB_DROP_PENDING);
}

static __always_inline void settle(__s64 ret, __s64 failing)
{
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct pb_event *event = bpf_map_lookup_elem(&pending, &tid);
    if (!event)
        return;
    if (ret == failing)
        record(event);
    bpf_map_delete_elem(&pending, &tid);
}

SEC("tracepoint/syscalls/sys_enter_bind")
int bind_enter(struct syscall_enter_args *ctx)
{
    struct sockaddr_prefix addr = {};
    if (bpf_probe_read_user(&addr, 4, (void *)ctx->args[1]) != 0)
        return 0;
    /* Only a request for any port can fail for want of one. */
    if (!is_inet(addr.family) || addr.port != 0)
        return 0;
    struct sock *sk = socket_of_fd(ctx->args[0]);
    if (!sk || !is_inet(BPF_CORE_READ(sk, __sk_common.skc_family)) || BPF_CORE_READ(sk, __sk_common.skc_num) != 0)
        return 0;
    struct pb_event event = {};
    fill_caller(&event, sk, PB_CALL_BIND, EADDRINUSE);
    remember(&event);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_bind")
int bind_exit(struct syscall_exit_args *ctx)
{
    settle(ctx->ret, -EADDRINUSE);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int connect_enter(struct syscall_enter_args *ctx)
{
    struct sock *sk = socket_of_fd(ctx->args[0]);
    if (!sk || !is_inet(BPF_CORE_READ(sk, __sk_common.skc_family)) || BPF_CORE_READ(sk, sk_type) != SOCK_DGRAM)
        return 0;
    __u16 protocol = BPF_CORE_READ(sk, sk_protocol);
    if ((protocol != IPPROTO_UDP && protocol != IPPROTO_UDPLITE) || BPF_CORE_READ(sk, __sk_common.skc_num) != 0)
        return 0;
    struct sockaddr_prefix addr = {};
    if (bpf_probe_read_user(&addr, sizeof(addr), (void *)ctx->args[1]) != 0) {
        /* A sockaddr_in is shorter than the prefix read above. */
        if (bpf_probe_read_user(&addr, 8, (void *)ctx->args[1]) != 0)
            return 0;
    }
    if (!is_inet(addr.family)) /* AF_UNSPEC disconnects; nothing is allocated */
        return 0;
    struct pb_event event = {};
    fill_caller(&event, sk, PB_CALL_CONNECT, EAGAIN);
    event.family = addr.family;
    event.dport = bpf_ntohs(addr.port);
    if (addr.family == AF_INET)
        __builtin_memcpy(event.daddr, &addr.v4_or_flowinfo, 4);
    else
        __builtin_memcpy(event.daddr, addr.v6, 16);
    remember(&event);
    return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int connect_exit(struct syscall_exit_args *ctx)
{
    settle(ctx->ret, -EAGAIN);
    return 0;
}
