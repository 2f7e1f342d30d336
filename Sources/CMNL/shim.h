// The C surface portbudget needs from libmnl and the kernel's sock_diag UAPI.
// Swift cannot import function-like macros or variadic helpers, so the few we
// need are wrapped here as static inline functions.
#ifndef PORTBUDGET_CMNL_SHIM_H
#define PORTBUDGET_CMNL_SHIM_H

#include <stdint.h>
#include <stddef.h>
#include <errno.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <libmnl/libmnl.h>

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif

/// Builds one SOCK_DIAG_BY_FAMILY dump request for (family, protocol) into
/// `buf` and returns its length, or 0 when `buf` is too small. `bytecode`
/// (may be NULL) is attached as INET_DIAG_REQ_BYTECODE.
static inline size_t pb_build_inet_diag_dump(void *buf, size_t buflen,
                                             uint8_t family, uint8_t protocol,
                                             uint32_t states, uint32_t seq,
                                             const void *bytecode, uint16_t bytecode_len) {
    size_t need = MNL_ALIGN(sizeof(struct nlmsghdr)) + MNL_ALIGN(sizeof(struct inet_diag_req_v2))
                + (bytecode_len ? MNL_ATTR_HDRLEN + MNL_ALIGN(bytecode_len) : 0);
    if (buflen < need) return 0;
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = seq;
    struct inet_diag_req_v2 *req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
    req->sdiag_family = family;
    req->sdiag_protocol = protocol;
    req->idiag_states = states;
    if (bytecode_len) mnl_attr_put(nlh, INET_DIAG_REQ_BYTECODE, bytecode_len, bytecode);
    return nlh->nlmsg_len;
}

/// Builds one legacy TCPDIAG_GETSOCK dump request (`struct inet_diag_req`).
/// The kernel answers it for IPv4 and IPv6 in one walk of its tables, where
/// SOCK_DIAG_BY_FAMILY takes one request per family. Returns its length, or
/// 0 when `buf` is too small.
static inline size_t pb_build_tcpdiag_dump(void *buf, size_t buflen, uint32_t states, uint32_t seq,
                                           const void *bytecode, uint16_t bytecode_len) {
    size_t need = MNL_ALIGN(sizeof(struct nlmsghdr)) + MNL_ALIGN(sizeof(struct inet_diag_req))
                + (bytecode_len ? MNL_ATTR_HDRLEN + MNL_ALIGN(bytecode_len) : 0);
    if (buflen < need) return 0;
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = TCPDIAG_GETSOCK;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = seq;
    struct inet_diag_req *req = mnl_nlmsg_put_extra_header(nlh, sizeof(*req));
    req->idiag_family = AF_INET;  /* ignored by the dump: every family is walked */
    req->idiag_states = states;
    if (bytecode_len) mnl_attr_put(nlh, INET_DIAG_REQ_BYTECODE, bytecode_len, bytecode);
    return nlh->nlmsg_len;
}

/// Opens and binds a netlink socket of `bus` (NETLINK_SOCK_DIAG,
/// NETLINK_NETFILTER); NULL with errno set on failure.
static inline struct mnl_socket *pb_open_netlink(int bus) {
    struct mnl_socket *nl = mnl_socket_open(bus);
    if (nl == NULL) return NULL;
    if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
        int saved = errno;
        mnl_socket_close(nl);
        errno = saved;
        return NULL;
    }
    return nl;
}

static inline int pb_errno(void) { return errno; }

#endif
