/*
 * What the failure programs (Sources/PortBudgetLinux/Failures/BPF/failures.bpf.c)
 * share with the agent: map keys, the event record, and every map's bound.
 * The includer defines __u8 … __u64 first (the BPF side by hand, the agent
 * through <linux/types.h>), so this header compiles on both sides unchanged.
 */
#ifndef PORTBUDGET_FAILURES_H
#define PORTBUDGET_FAILURES_H

/* Bounds. A full map drops the new key and counts the drop (pb_drop_*). */
#define PB_MAX_COUNT_KEYS 4096      /* distinct (netns, protocol, call, errno, cgroup) */
#define PB_MAX_PENDING 4096         /* threads inside a watched bind()/connect() at once (opt-in hooks) */
#define PB_EVENT_RING_BYTES (256 * 1024) /* failures waiting for `portbudget trace` */
/* Sockets bound before connect() are remembered in a map per network
 * namespace, which the agent creates (sized by BoundSocketAllowance) and
 * files under the namespace's inode: a census then reads only its own
 * namespace's entries, and a namespace that fills its map refuses only its
 * own sockets. A namespace without a map is not watched. */
#define PB_MAX_WATCHED_NAMESPACES 4096 /* namespaces with a map of their own (and a refusal counter) */
#define PB_BOUND_SOCKETS_TEMPLATE 1024 /* the inner-map template's size; each namespace's map has its own */

/* Which call failed. "send" covers sendto, sendmsg and sendmmsg: the
 * tracepoint that sees the failure fires below all three. */
enum pb_call {
    PB_CALL_CONNECT = 1,
    PB_CALL_BIND = 2,
    PB_CALL_LISTEN = 3,
    PB_CALL_SEND = 4,
};

/* Indexes of the drops array. */
enum pb_drop {
    PB_DROP_COUNT_KEYS = 0,   /* counts map full: a failure went uncounted */
    PB_DROP_EVENTS = 1,       /* event ring full: trace missed a failure */
    PB_DROP_PENDING = 2,      /* pending map full: an opt-in hook could not follow a call */
    PB_DROP_BOUND_SOCKETS = 3, /* a namespace's map full: a socket bound before connect() went unremembered */
    PB_DROP_SLOTS = 4,
};

/* Indexes of the config array (set by the agent after load). */
enum pb_config {
    PB_CONFIG_EMIT_EVENTS = 0, /* nonzero while `portbudget trace` reads the ring */
    PB_CONFIG_SLOTS = 1,
};

struct pb_count_key {
    __u64 cgroup_id;   /* the failing thread's cgroup v2 id */
    __u32 netns_inode; /* the socket's network namespace */
    __u16 error;       /* positive errno */
    __u8 protocol;     /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE */
    __u8 call;         /* enum pb_call */
};

/* A TCP socket that already had its local port when connect() began: bind()
 * took it (bind(addr, 0) included), so the kernel keeps it from connect() to
 * every other destination. SOCK_DIAG cannot tell bind(addr, 0) from a port
 * connect() chose; the socket cookie (which inet_diag reports) ties the two. */
struct pb_bound_socket {
    __u64 boot_ns;     /* when connect() began, bpf_ktime_get_boot_ns() */
    __u32 netns_inode;
    __u16 port;        /* local port, host order */
    __u16 unused;
};

struct pb_event {
    __u64 boot_ns;     /* bpf_ktime_get_boot_ns() */
    __u64 cgroup_id;
    __u32 netns_inode;
    __u32 tgid;        /* as the root pid namespace numbers it */
    __u32 tid;
    __u16 error;
    __u8 protocol;
    __u8 call;
    __u16 family;      /* AF_INET or AF_INET6; 0 when no destination is known */
    __u16 dport;       /* destination port, host order; 0 when not known */
    __u8 daddr[16];    /* IPv4 in the first 4 bytes */
    char comm[16];
};

#endif
