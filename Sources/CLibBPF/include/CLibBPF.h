#ifndef PORTBUDGET_CLIBBPF_H
#define PORTBUDGET_CLIBBPF_H

#include <linux/types.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include "portbudget_failures.h"

/* libbpf prints its warnings and errors to stderr by default; the agent
 * wants one line of its own instead. After this call libbpf's messages are
 * kept (the last few lines) rather than printed. */
void pb_libbpf_capture_logs(void);
/* The last warning/error libbpf printed since capture began, or "" — the
 * kernel verifier's or loader's own words for why a load failed. */
const char *pb_libbpf_last_message(void);

#endif
