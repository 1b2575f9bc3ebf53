/*
 * miwidothttp-listen: makes the master's bound sockets listen, and spreads
 * new connections among the sockets of each SO_REUSEPORT group.
 *
 *   miwidothttp-listen BACKLOG GROUP...
 *
 * Each GROUP is "N" or "N@SIZE:P,Q,..." and takes the next N inherited
 * descriptors, from fd 3 on: one listener's sockets, one per worker slot,
 * in slot order. Every descriptor gets listen(2) (on a socket that listens
 * already that only sets the backlog); one that did not listen joins the
 * group at its end. Then, with "@SIZE:P,Q,...", the group's new
 * connections go to the positions P, Q, ... of the group in turn (round
 * robin), and to no other: SIZE is the group's size in the kernel's order,
 * which the master mirrors (src/master/listen-group.ts); a retired socket
 * still in the group has a position but no descriptor here. The program is
 * an eBPF socket filter attached with SO_ATTACH_REUSEPORT_EBPF, or, where
 * eBPF cannot be loaded (no CAP_BPF, in a container say), a classic one
 * (SO_ATTACH_REUSEPORT_CBPF) that picks among the same positions at random
 * (socket(7)). Without "@", any program is removed (SO_DETACH_REUSEPORT_BPF)
 * and the kernel spreads by a hash of the connection over every socket.
 *
 * (Selecting sockets by slot from a REUSEPORT_SOCKARRAY map would not need
 * positions, but a socket can be in one such map at a time, and the map of
 * the program being replaced still holds it: each change would leave the
 * group unsteered until the old map is freed.)
 *
 * Node cannot do any of this: its listen() also starts accepting, and it
 * has no setsockopt. The master runs this for each change and it exits at
 * once; it never accepts. Exit 0; on failure one line "<fd index> <errno
 * name>" (the index counts from 0 over all descriptors given) and exit 1;
 * 2 for bad usage.
 */
#include <errno.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif
#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif
#ifndef SO_DETACH_REUSEPORT_BPF
#define SO_DETACH_REUSEPORT_BPF 68
#endif

/* More positions than the master can ever have workers (server.workers is at most 256). */
#define MAX_POSITIONS 1024
#define FIRST_FD 3

static int usage(const char *why) {
    fprintf(stderr, "miwidothttp-listen: %s\nusage: miwidothttp-listen BACKLOG N[@SIZE:P,Q,...]...\n", why);
    return 2;
}

static int failed(int index) {
    const char *name = strerrorname_np(errno);
    fprintf(stderr, "%d %s\n", index, name != NULL ? name : "EUNKNOWN");
    return 1;
}

/* A decimal in [min, max], the whole string; -1 otherwise. */
static long number(const char *text, const char **end, long min, long max) {
    char *stop = NULL;
    errno = 0;
    long value = strtol(text, &stop, 10);
    if (errno != 0 || stop == text || value < min || value > max) return -1;
    *end = stop;
    return value;
}

static long bpf(int command, union bpf_attr *attr) {
    return syscall(SYS_bpf, command, attr, sizeof(*attr));
}

#define INSN(code_, dst_, src_, off_, imm_) \
    ((struct bpf_insn){.code = (code_), .dst_reg = (dst_), .src_reg = (src_), .off = (off_), .imm = (imm_)})

static int close_keeping_errno(int fd, int result) {
    int saved = errno;
    close(fd);
    errno = saved;
    return result;
}

/*
 * Round robin: an eBPF socket filter that counts connections in a
 * one-entry array map and answers count % allowed, mapped onto the allowed
 * positions (A += 1 past each position not allowed, in ascending order:
 * 0..allowed-1 onto the allowed ones, one to one). A burst of 50
 * connections lands 25 and 25 on two workers, where the kernel's hash
 * splits it as unevenly as chance has it (30/20 one time in four, 35/15
 * now and then). The count is read and written without a lock: two SYNs on
 * two CPUs at once may get the same number, which costs evenness, never
 * correctness. A position past the group's end makes the kernel hash
 * instead (run_bpf_filter). Returns the program's descriptor (the map lives
 * as long as it does), or -1 with errno set.
 */
static int round_robin(const unsigned char *allowed, long positions, long count) {
    union bpf_attr counter = {.map_type = BPF_MAP_TYPE_ARRAY, .key_size = sizeof(__u32), .value_size = sizeof(__u32), .max_entries = 1};
    int counter_fd = (int)bpf(BPF_MAP_CREATE, &counter);
    if (counter_fd < 0) return -1;
    struct bpf_insn code[24 + 2 * MAX_POSITIONS];
    unsigned length = 0;
    /* r0 = &counter (key 0 on the stack), or 0 */
    code[length++] = INSN(BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, 0, -4, 0);
    code[length++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0);
    code[length++] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -4);
    code[length++] = INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_1, BPF_PSEUDO_MAP_FD, 0, counter_fd);
    code[length++] = INSN(0, 0, 0, 0, 0);
    code[length++] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
    /* No counter (cannot happen with one entry): a position past the group, which the kernel answers by hash. */
    code[length++] = INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_0, 0, 2, 0);
    code[length++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, MAX_POSITIONS);
    code[length++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    /* r1 = counter; counter = r1 + 1; r1 %= count */
    code[length++] = INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_1, BPF_REG_0, 0, 0);
    code[length++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_1, 0, 0);
    code[length++] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, 1);
    code[length++] = INSN(BPF_STX | BPF_MEM | BPF_W, BPF_REG_0, BPF_REG_2, 0, 0);
    code[length++] = INSN(BPF_ALU | BPF_MOD | BPF_K, BPF_REG_1, 0, 0, (int)count);
    for (long p = 0; p < positions; p++) {
        if (allowed[p]) continue;
        code[length++] = INSN(BPF_JMP | BPF_JLT | BPF_K, BPF_REG_1, 0, 1, (int)p);
        code[length++] = INSN(BPF_ALU | BPF_ADD | BPF_K, BPF_REG_1, 0, 0, 1);
    }
    code[length++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_0, BPF_REG_1, 0, 0);
    code[length++] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    union bpf_attr load = {
        .prog_type = BPF_PROG_TYPE_SOCKET_FILTER,
        .insn_cnt = length,
        .insns = (__u64)(unsigned long)code,
        .license = (__u64)(unsigned long)"ISC",
    };
    return close_keeping_errno(counter_fd, (int)bpf(BPF_PROG_LOAD, &load));
}

/* Without eBPF: a classic BPF program, the same mapping from a random number. */
static int random_pick(int fd, const unsigned char *allowed, long positions, long count) {
    struct sock_filter code[4 + 2 * MAX_POSITIONS];
    unsigned short length = 0;
    code[length++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (unsigned)(SKF_AD_OFF + SKF_AD_RANDOM));
    code[length++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, (unsigned)count);
    for (long p = 0; p < positions; p++) {
        if (allowed[p]) continue;
        code[length++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, (unsigned)p, 0, 1);
        code[length++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_ADD | BPF_K, 1);
    }
    code[length++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_A, 0);
    struct sock_fprog program = {.len = length, .filter = code};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof(program));
}

/* Attaches the group's program: round robin, or at random where eBPF cannot be loaded. */
static int steer(int fd, const unsigned char *allowed, long positions) {
    long count = 0;
    for (long p = 0; p < positions; p++) count += allowed[p];
    int program = round_robin(allowed, positions, count);
    if (program >= 0 && close_keeping_errno(program, setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &program, sizeof(program))) == 0)
        return 0;
    return random_pick(fd, allowed, positions, count);
}

int main(int argc, char **argv) {
    if (argc < 3) return usage("no sockets");
    const char *end = NULL;
    long backlog = number(argv[1], &end, 1, 65535);
    if (backlog < 0 || *end != '\0') return usage("BACKLOG must be 1..65535");

    int fd = FIRST_FD;
    for (int group = 2; group < argc; group++) {
        long sockets = number(argv[group], &end, 1, MAX_POSITIONS);
        if (sockets < 0 || (*end != '\0' && *end != '@')) return usage("a group is N or N@SIZE:P,Q,...");
        unsigned char allowed[MAX_POSITIONS] = {0};
        long positions = 0;
        if (*end == '@') {
            positions = number(end + 1, &end, 1, MAX_POSITIONS);
            if (positions < 0 || *end != ':') return usage("a group is N or N@SIZE:P,Q,...");
            do {
                long position = number(end + 1, &end, 0, positions - 1);
                if (position < 0 || (*end != ',' && *end != '\0')) return usage("a position is outside its group");
                allowed[position] = 1;
            } while (*end == ',');
        }
        int first = fd;
        for (long i = 0; i < sockets; i++, fd++)
            if (listen(fd, (int)backlog) != 0) return failed(fd - FIRST_FD);
        if (positions > 0) {
            if (steer(first, allowed, positions) != 0) return failed(first - FIRST_FD);
        } else if (setsockopt(first, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &(int){0}, sizeof(int)) != 0 && errno != ENOENT &&
                   errno != EINVAL) {
            /* ENOENT: no program was attached; EINVAL: not a SO_REUSEPORT socket (one systemd passed).
               The value is ignored, but setsockopt refuses an option shorter than an int. */
            return failed(first - FIRST_FD);
        }
    }
    return 0;
}
