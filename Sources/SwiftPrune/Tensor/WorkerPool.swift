#if os(Linux)
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The threads behind ``parallelFor(workers:_:)`` on Linux: persistent pthreads
/// that take worker indices of posted jobs, while each caller takes indices of
/// its own job too.
///
/// Why not `DispatchQueue.concurrentPerform`: when the system refuses a new
/// thread (`pthread_create` fails with `EAGAIN`: an address-space limit
/// (`RLIMIT_AS`) that leaves no room for a stack, the per-user process limit
/// (`ulimit -u`), a cgroup's `pids.max`), libdispatch's Linux thread pool retries
/// `pthread_create` forever, a second apart, on the calling thread, before the
/// caller runs any of the work: the call hangs (round 11's note; reproduced by
/// `test_thread_refusal.py`). Here a refused thread only means fewer helpers:
/// the caller claims every index no helper has taken, so a call always
/// finishes, with the same result, as each index's work does not depend on
/// which thread runs it (the contract ``parallelFor(workers:_:)`` already had:
/// concurrentPerform ran `workers` indices on at most as many threads as
/// processors, and the caller ran some of them).
///
/// Like concurrentPerform, at most `processorCount - 1` helpers exist, started
/// on first need and kept (idle on a condition variable) for the process's life.
/// Several jobs may be posted at once (calls from several Python threads, a
/// `parallelFor` inside a worker): helpers serve them in the order posted, and
/// since each caller can finish its own job alone, no job waits on another.
/// A forked child has none of the parent's threads: `pthread_atfork` resets
/// the pool there, and the child starts its own helpers.
///
/// Jobs live on their callers' stacks; the pool's state is guarded by `mutex`
/// (a lock per claimed index: `workers` is a handful, the work per index long).
@usableFromInline
final class WorkerPool: @unchecked Sendable {
    @usableFromInline static let shared = WorkerPool()

    /// One `parallelFor` call: indices `0 ..< workers`, claimed in order.
    private struct Job {
        var body: (Int) -> Void
        var workers: Int
        /// The next unclaimed index.
        var next = 0
        /// Helpers running an index of this job.
        var running = 0
        /// The job posted after this one.
        var later: UnsafeMutablePointer<Job>?
    }

    private var mutex = pthread_mutex_t()
    /// Helpers wait here for an unclaimed index.
    private var work = pthread_cond_t()
    /// Callers wait here for their job's helpers to finish.
    private var finished = pthread_cond_t()
    /// At most this many helpers (read once: `sysconf` reads a file).
    private let maxHelpers = Threading.processorCount - 1
    /// Jobs posted so far: a helper that has just finished watches it for a while before it sleeps.
    private let posted = Atomic<Int>(0)
    /// How long a thread polls before it blocks on a condition variable: a caller
    /// waiting for its helpers' last index, a helper after its index, for the
    /// next job. Why: a futex wake-up costs tens of microseconds on this VM (more
    /// when loaded), and the last index of a dealt job usually ends within that;
    /// kernels call `parallelFor` back to back (panel loops). libdispatch, which
    /// ran `parallelFor` before, polls likewise; without polling (and with the
    /// signals sent under the lock) structured_mask 4096x2560 was 3-9% slower at
    /// 2 threads in an in-process A/B against it; 20 µs and 50 µs polls tied on wall.
    private static let pollNanoseconds = 20_000
    // Guarded by `mutex`.
    private var helpers = 0
    private var first: UnsafeMutablePointer<Job>?

    private init() {
        reset()
        pthread_atfork(nil, nil, { WorkerPool.shared.reset() })
    }

    /// A fresh, empty pool (at creation, and in a forked child, where the
    /// parent's helpers do not exist and the mutex may have been held by one).
    private func reset() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&work, nil)
        pthread_cond_init(&finished, nil)
        helpers = 0
        first = nil
    }

    /// Runs `body(worker)` for every `worker` in `0 ..< workers` (at least 2) on
    /// the calling thread and up to `min(workers, processorCount) - 1` helpers;
    /// returns when all have finished.
    @usableFromInline
    func run(workers: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            var job = Job(body: body, workers: workers)
            withUnsafeMutablePointer(to: &job) { job in
                pthread_mutex_lock(&mutex)
                let wanted = Swift.min(workers - 1, maxHelpers)
                startHelpers(wanted)
                post(job)
                posted.add(1, ordering: .releasing)
                job.pointee.next = 1  // (index 0 is the caller's)
                let wake = Swift.min(wanted, helpers)
                pthread_mutex_unlock(&mutex)
                // Signalled after the unlock: a helper woken under the lock would block on it at once (a second wake-up).
                for _ in 0 ..< wake { pthread_cond_signal(&work) }
                body(0)
                pthread_mutex_lock(&mutex)
                while job.pointee.next < workers {
                    let worker = job.pointee.next
                    job.pointee.next += 1
                    pthread_mutex_unlock(&mutex)
                    body(worker)
                    pthread_mutex_lock(&mutex)
                }
                remove(job)
                let deadline = Self.now() &+ Self.pollNanoseconds
                while job.pointee.running > 0 && Self.now() < deadline {
                    pthread_mutex_unlock(&mutex)
                    Self.pause()
                    pthread_mutex_lock(&mutex)
                }
                while job.pointee.running > 0 { pthread_cond_wait(&finished, &mutex) }
                pthread_mutex_unlock(&mutex)
            }
        }
    }

    /// Starts helpers until `count` exist or the system refuses one (caller holds `mutex`).
    private func startHelpers(_ count: Int) {
        while helpers < count {
            var thread = pthread_t()
            let status = pthread_create(&thread, nil, { _ in WorkerPool.shared.serve() }, nil)
            guard status == 0 else { return }  // (EAGAIN: fewer helpers; the callers do the rest)
            pthread_detach(thread)
            helpers += 1
        }
    }

    private func post(_ job: UnsafeMutablePointer<Job>) {
        guard var last = first else { first = job; return }
        while let later = last.pointee.later { last = later }
        last.pointee.later = job
    }

    private func remove(_ job: UnsafeMutablePointer<Job>) {
        if first == job { first = job.pointee.later; return }
        var previous = first
        while let p = previous, p.pointee.later != job { previous = p.pointee.later }
        previous?.pointee.later = job.pointee.later
    }

    /// The first posted job with an unclaimed index (caller holds `mutex`).
    private func claimable() -> UnsafeMutablePointer<Job>? {
        var job = first
        while let j = job, j.pointee.next >= j.pointee.workers { job = j.pointee.later }
        return job
    }

    /// A helper's life: take an unclaimed index of the oldest job that has one, run it, repeat.
    private func serve() -> Never {
        pthread_mutex_lock(&mutex)
        var polled = false
        while true {
            guard let job = claimable() else {
                if polled {
                    pthread_cond_wait(&work, &mutex)
                    polled = false
                } else {  // (just finished an index: watch for the next job a while)
                    let seen = posted.load(ordering: .acquiring)
                    pthread_mutex_unlock(&mutex)
                    let deadline = Self.now() &+ Self.pollNanoseconds
                    while posted.load(ordering: .acquiring) == seen && Self.now() < deadline { Self.pause() }
                    pthread_mutex_lock(&mutex)
                    polled = true
                }
                continue
            }
            polled = false
            let worker = job.pointee.next
            job.pointee.next += 1
            job.pointee.running += 1
            var body = job.pointee.body
            pthread_mutex_unlock(&mutex)
            body(worker)
            // Drop this reference before the job counts as finished: the caller's
            // withoutActuallyEscaping checks that no one holds the closure afterwards.
            body = { _ in }
            pthread_mutex_lock(&mutex)
            job.pointee.running -= 1
            if job.pointee.running == 0 {
                // (after the unlock, as above; the job may be gone then, the condition is the pool's)
                pthread_mutex_unlock(&mutex)
                pthread_cond_broadcast(&finished)
                pthread_mutex_lock(&mutex)
            }
        }
    }

    /// CLOCK_MONOTONIC in nanoseconds (a vDSO call, no system call).
    private static func now() -> Int {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return time.tv_sec &* 1_000_000_000 &+ time.tv_nsec
    }

    /// A short wait between two polls (a few hundred nanoseconds).
    private static func pause() {
        for _ in 0 ..< 64 { _ = WorkerPool.shared.posted.load(ordering: .relaxed) }
    }
}
#endif
