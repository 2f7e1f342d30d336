// SPDX-License-Identifier: GPL-2.0
/*
 * The failure bench's floor: programs that do nothing, on the two BTF
 * tracepoints the failure collector always attaches to. What they cost is
 * the kernel's price for running any BPF program there, which no program on
 * those hooks can go below. scripts/bench compiles it with the toolchain's
 * clang (-target bpf) and hands the object to `portbudget-bench failures`.
 */
typedef unsigned long long __u64;
#define SEC(name) __attribute__((section(name), used))

char LICENSE[] SEC("license") = "GPL";

SEC("tp_btf/sock_send_length")
int floor_on_send(__u64 *ctx) { return 0; }

SEC("tp_btf/inet_sock_set_state")
int floor_on_state_change(__u64 *ctx) { return 0; }
