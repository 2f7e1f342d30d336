/*
 * The few kernel types and fields the failure programs read, declared by
 * hand instead of a generated vmlinux.h. preserve_access_index makes every
 * field access a CO-RE relocation: libbpf finds each field by name in the
 * running kernel's BTF at load time, so offsets here need not match any
 * kernel. Only the fields named below are ever read.
 */
#ifndef PORTBUDGET_KERNEL_TYPES_H
#define PORTBUDGET_KERNEL_TYPES_H

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef short __s16;
typedef unsigned int __u32;
typedef int __s32;
typedef unsigned long long __u64;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

/* From the UAPI (stable numbers, so no relocation needed). */
enum { BPF_ANY = 0 };
enum { BPF_F_NO_PREALLOC = 1 };
enum {
    BPF_MAP_TYPE_HASH = 1,
    BPF_MAP_TYPE_ARRAY = 2,
    BPF_MAP_TYPE_HASH_OF_MAPS = 13,
    BPF_MAP_TYPE_RINGBUF = 27,
};
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_UDPLITE 136
#define EAGAIN 11
#define EADDRINUSE 98
#define EADDRNOTAVAIL 99
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct in6_addr {
    union {
        __u8 u6_addr8[16];
    } in6_u;
};

struct ns_common {
    unsigned int inum;
};

struct net {
    struct ns_common ns;
};

typedef struct {
    struct net *net;
} possible_net_t;

struct sock_common {
    __be32 skc_daddr;
    __be32 skc_rcv_saddr;
    __be16 skc_dport;
    __u16 skc_num;
    unsigned short skc_family;
    volatile unsigned char skc_state;
    possible_net_t skc_net;
    struct in6_addr skc_v6_daddr;
};

struct sock {
    struct sock_common __sk_common;
    __u16 sk_type;
    __u16 sk_protocol;
};

struct inet_sock {
    __be16 inet_sport;
};

struct tcp_sock {
    __u32 segs_out;
};

struct socket {
    struct sock *sk;
};

struct inode {
    unsigned short i_mode;
};

struct file {
    struct inode *f_inode;
    void *private_data;
};

struct fdtable {
    unsigned int max_fds;
    struct file **fd;
};

struct files_struct {
    struct fdtable *fdt;
};

struct task_struct {
    struct files_struct *files;
};

#pragma clang attribute pop

/* Syscall tracepoint records (tracefs format files: the common fields,
 * then __syscall_nr, then each argument or the return value as 8 bytes). */
struct syscall_enter_args {
    __u64 common;
    __s64 syscall_nr;
    __u64 args[6];
};

struct syscall_exit_args {
    __u64 common;
    __s64 syscall_nr;
    __s64 ret;
};

/* struct sockaddr_in / sockaddr_in6 prefixes, read from user memory. */
struct sockaddr_prefix {
    __u16 family;
    __be16 port;
    __be32 v4_or_flowinfo;
    __u8 v6[16];
};

#endif
