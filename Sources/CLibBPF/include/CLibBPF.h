#ifndef PORTBUDGET_CLIBBPF_H
#define PORTBUDGET_CLIBBPF_H

#include <linux/types.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include "portbudget_failures.h"

/* libbpf prints its warnings and errors to stderr by default; the agent
 * wants one line of its own instead. After this call libbpf's messages are
 * not printed, and the first one is kept. */
void pb_libbpf_capture_logs(void);
/* The first warning/error libbpf logged since the last capture call, or "":
 * libbpf's own words for why a load failed. */
const char *pb_libbpf_first_message(void);

#endif
