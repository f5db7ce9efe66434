import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The number of threads SwiftPrune's kernels may use.
///
/// Defaults to the environment variable `SWIFTPRUNE_NUM_THREADS` when it holds
/// a positive integer, else to the number of online processors.
public enum Threading {
    private static let configured = Atomic<Int>(0)

    /// The processors online on this machine (at least 1), read once: glibc's
    /// `sysconf` opens and reads a file under /sys on every call, and the
    /// default thread count is asked for by every kernel call.
    public static let processorCount: Int = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    static var environmentDefault: Int? {
        guard let raw = getenv("SWIFTPRUNE_NUM_THREADS"),
              let value = Int(String(cString: raw)), value > 0 else { return nil }
        return value
    }

    /// The current thread count (always ≥ 1).
    public static var threadCount: Int {
        let value = configured.load(ordering: .relaxed)
        return value > 0 ? value : (environmentDefault ?? processorCount)
    }

    /// Sets the thread count; `0` restores the default.
    /// - Throws: ``SwiftPruneError`` for a negative count.
    public static func setThreadCount(_ count: Int) throws {
        guard count >= 0 else {
            throw SwiftPruneError.value("number of threads must be >= 0 (0 = default), got \(count)")
        }
        configured.store(count, ordering: .relaxed)
    }

    /// How many workers to use for `work` units when each worker should get at
    /// least `minimumPerWorker` of them: small jobs stay on one thread.
    public static func workerCount(for work: Int, minimumPerWorker: Int) -> Int {
        max(1, min(threadCount, work / max(1, minimumPerWorker)))
    }
}

/// Runs `body(worker)` for `worker` in `0..<workers`, concurrently when
/// `workers > 1`. The call returns when every worker has finished.
///
/// Concurrency is not promised: at most as many threads as processors run the
/// indices, the caller among them, and fewer when the system refuses new
/// threads; `body(worker)` must not wait for another index.
@inlinable
public func parallelFor(workers: Int, _ body: (Int) -> Void) {
    if workers <= 1 {
        body(0)
    } else {
        #if os(Linux)
        WorkerPool.shared.run(workers: workers, body)  // (libdispatch's pool hangs when a thread is refused)
        #else
        DispatchQueue.concurrentPerform(iterations: workers, execute: body)
        #endif
    }
}

/// Runs `body(worker)` for `worker` in `0..<workers` as ``parallelFor(workers:_:)``
/// does, for a body that can fail (a worker cannot throw across Dispatch).
///
/// A worker's error ends that worker only: the others run to their end. After
/// the join, the error of the lowest-numbered failing worker is thrown: by
/// worker order, not by time, so the same input gives the same error however
/// the threads were scheduled. The error is thrown as it was (same type,
/// same message); a `body` that cannot throw makes this call not throw.
func parallelForThrowing<Failure: Error>(
    workers: Int, _ body: (_ worker: Int) throws(Failure) -> Void
) throws(Failure) {
    if workers <= 1 {
        try body(0)
        return
    }
    var failures = [Failure?](repeating: nil, count: workers)
    failures.withUnsafeMutableBufferPointer { failures in
        parallelFor(workers: workers) { worker in
            do throws(Failure) { try body(worker) } catch { failures[worker] = error }
        }
    }
    if let first = failures.lazy.compactMap({ $0 }).first { throw first }
}

/// Runs `body(worker, chunk)` once for every `chunk` in `0..<chunks`, on
/// `workers` workers that take the chunks in turn from a shared counter.
///
/// Why not a fixed share per worker: on a shared machine a worker may start
/// late (woken onto a busy core) or be preempted, and with a fixed share the
/// call waits for all of it; here the others take what it has not started.
/// Which worker runs a chunk varies from call to call: `body` must give the
/// same result whoever runs it (`worker` only picks per-worker scratch).
func parallelForChunks(workers: Int, chunks: Int, _ body: (_ worker: Int, _ chunk: Int) -> Void) {
    let nextChunk = Atomic<Int>(0)
    parallelFor(workers: workers) { worker in
        while true {
            let chunk = nextChunk.wrappingAdd(1, ordering: .relaxed).oldValue
            guard chunk < chunks else { return }
            body(worker, chunk)
        }
    }
}

/// Calls `body(range)` for the consecutive ranges of `0 ..< count`, `chunk`
/// elements each (the last one may be shorter), dealt to `workers` workers by
/// ``parallelForChunks(workers:chunks:_:)``; `chunk` must be at least 1.
func parallelForRanges(_ count: Int, chunk: Int, workers: Int, _ body: (Range<Int>) -> Void) {
    parallelForChunks(workers: workers, chunks: (count + chunk - 1) / chunk) { _, c in
        body(c * chunk ..< Swift.min(count, (c + 1) * chunk))
    }
}

/// Chunks per worker for a kernel whose contiguous work is cut into chunks
/// only to be dealt by ``parallelForChunks(workers:chunks:_:)``: with 8, a worker
/// that starts late or runs on a slower core unbalances the call by at most about
/// an eighth of a share, and each chunk is still a long sequential stream. With
/// one worker such kernels keep their work whole, as before chunks were dealt
/// (nothing to balance; fixed 1 MiB chunks looked slower at one thread in a
/// cross-process A/B, which on this VM was not conclusive either way).
let dealtChunksPerWorker = 8

/// `count` cut into chunks for `workers` workers: `count` itself for one worker,
/// else `count / (dealtChunksPerWorker * workers)` rounded up to a multiple of
/// `multiple`, at least `minimum` (and at least 1).
func dealtChunkSize(_ count: Int, workers: Int, minimum: Int = 1, multiple: Int = 1) -> Int {
    guard workers > 1 else { return Swift.max(1, count) }
    let share = (count + dealtChunksPerWorker * workers - 1) / (dealtChunksPerWorker * workers)
    let rounded = (share + multiple - 1) / multiple * multiple
    return Swift.max(1, minimum, rounded)
}

/// Splits `0..<count` into `parts` near-equal contiguous ranges and returns
/// range `index`.
@inlinable
public func partitionRange(_ count: Int, parts: Int, index: Int) -> Range<Int> {
    let base = count / parts, extra = count % parts
    let start = index * base + min(index, extra)
    return start ..< start + base + (index < extra ? 1 : 0)
}
