// The ctnetlink (NFNL_SUBSYS_CTNETLINK) requests portbudget sends through
// libmnl: the conntrack table dump behind the SNAT census, and the table's
// statistics. Only requests are built here; replies are decoded in Swift
// (PortBudgetCore's ConntrackDecoder), so the decoding is testable without a kernel.
#ifndef PORTBUDGET_CMNL_CONNTRACK_H
#define PORTBUDGET_CMNL_CONNTRACK_H

#include <stdint.h>
#include <stddef.h>
#include <errno.h>
#include <netinet/in.h>
#include <linux/netlink.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <libmnl/libmnl.h>

/// Puts a ctnetlink request header for `msg` (an IPCTNL_MSG_CT_* type)
/// with `flags` and the nfgenmsg for `family` (AF_UNSPEC: every family).
static inline struct nlmsghdr *pb_put_ctnetlink_header(void *buf, uint8_t msg, uint16_t flags,
                                                      uint8_t family, uint32_t seq) {
    struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | msg;
    nlh->nlmsg_flags = flags;
    nlh->nlmsg_seq = seq;
    struct nfgenmsg *nfg = mnl_nlmsg_put_extra_header(nlh, sizeof(*nfg));
    nfg->nfgen_family = family;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = 0;
    return nlh;
}

/// Builds an IPCTNL_MSG_CT_GET dump of every family into `buf`; returns
/// its length, or 0 when `buf` is too small. A non-zero `status_mask` asks
/// the kernel to send only entries whose status & mask == status & mask
/// (CTA_STATUS + CTA_STATUS_MASK, in the UAPI of Linux 6.1); kernels that
/// predate it ignore the attributes and send everything, so the caller filters again.
static inline size_t pb_build_ct_dump(void *buf, size_t buflen, uint32_t seq,
                                      uint32_t status, uint32_t status_mask) {
    size_t need = MNL_ALIGN(sizeof(struct nlmsghdr)) + MNL_ALIGN(sizeof(struct nfgenmsg))
                + 2 * (MNL_ATTR_HDRLEN + MNL_ALIGN(sizeof(uint32_t)));
    if (buflen < need) return 0;
    struct nlmsghdr *nlh = pb_put_ctnetlink_header(buf, IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP,
                                                   AF_UNSPEC, seq);
    if (status_mask) {
        mnl_attr_put_u32(nlh, CTA_STATUS, htonl(status));
        mnl_attr_put_u32(nlh, CTA_STATUS_MASK, htonl(status_mask));
    }
    return nlh->nlmsg_len;
}

/// Builds an IPCTNL_MSG_CT_GET_STATS_CPU dump: one message per possible
/// CPU with that CPU's counters (what /proc/net/stat/nf_conntrack shows).
static inline size_t pb_build_ct_stats_cpu_dump(void *buf, size_t buflen, uint32_t seq) {
    if (buflen < MNL_ALIGN(sizeof(struct nlmsghdr)) + MNL_ALIGN(sizeof(struct nfgenmsg))) return 0;
    return pb_put_ctnetlink_header(buf, IPCTNL_MSG_CT_GET_STATS_CPU, NLM_F_REQUEST | NLM_F_DUMP,
                                   AF_UNSPEC, seq)->nlmsg_len;
}

/// Builds an IPCTNL_MSG_CT_GET_STATS request (entries and nf_conntrack_max).
/// NLM_F_ACK makes the kernel close the one-message answer with an ACK,
/// so the reader knows when it is complete.
static inline size_t pb_build_ct_stats(void *buf, size_t buflen, uint32_t seq) {
    if (buflen < MNL_ALIGN(sizeof(struct nlmsghdr)) + MNL_ALIGN(sizeof(struct nfgenmsg))) return 0;
    return pb_put_ctnetlink_header(buf, IPCTNL_MSG_CT_GET_STATS, NLM_F_REQUEST | NLM_F_ACK,
                                   AF_UNSPEC, seq)->nlmsg_len;
}


#endif
