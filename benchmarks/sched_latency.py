"""Wake-up latencies of one process's threads from `perf sched record` data.

    perf sched record -o sched.data -- python ... ; perf script -i sched.data \
        -F comm,pid,tid,cpu,time,event,trace > all.txt
    python benchmarks/sched_latency.py all.txt PID

For every sched_waking of a thread of PID: the waker, the time until that
thread is switched in, the CPU it is woken on and the CPU it runs on, and what
that CPU ran before it.
"""
import re
import sys

path, pid = sys.argv[1], sys.argv[2]
ours: set[str] = set()
pending: dict[str, tuple[float, str, str]] = {}
line_re = re.compile(r"^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$")
for line in open(path):
    m = line_re.match(line)
    if not m:
        continue
    comm, tgid, tid, cpu, t, event, trace = m.groups()
    t = float(t)
    if tgid == pid:
        ours.add(tid)
    if event in ("sched:sched_waking", "sched:sched_wakeup_new"):
        target = re.search(r"pid=(\d+)", trace).group(1)
        tcpu = re.search(r"target_cpu=(\d+)", trace).group(1)
        pending[target] = (t, tid, tcpu)
    elif event == "sched:sched_switch":
        nxt = re.search(r"next_pid=(\d+)", trace).group(1)
        prev = re.search(r"prev_comm=(.*?) prev_pid=(\d+)", trace)
        if nxt in pending and (nxt in ours or pending[nxt][1] in ours):
            t0, waker, tcpu = pending.pop(nxt)
            if waker in ours:
                print(f"{t0:.6f} waker {waker} -> {nxt} woken for cpu{tcpu}, runs on cpu{cpu} after "
                      f"{(t - t0) * 1e3:7.3f} ms (cpu{cpu} ran {prev.group(1)})")
