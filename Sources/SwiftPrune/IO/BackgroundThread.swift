#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs `work` on a new thread, or on the calling thread before returning when
/// the system refuses one (`pthread_create` fails: an address-space limit, the
/// per-user process limit, a cgroup's `pids.max`).
///
/// Why not `DispatchQueue.global().async`: libdispatch's Linux thread pool
/// retries a refused `pthread_create` forever on the calling thread, so a save
/// under such a limit hung (see ``WorkerPool``). The save's background jobs
/// (a chunk's direct write, an `fdatasync`) only overlap I/O with the caller's
/// copying; run inline they give the same file, later.
func runInBackground(_ work: @escaping () -> Void) {
    final class Box { let work: () -> Void; init(_ work: @escaping () -> Void) { self.work = work } }
    let box = Unmanaged.passRetained(Box(work))
    #if canImport(Glibc)
    var thread = pthread_t()
    #else
    var thread: pthread_t?
    #endif
    let status = pthread_create(&thread, nil, { argument in
        let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
        box.work()
        return nil
    }, box.toOpaque())
    guard status == 0 else {
        box.takeRetainedValue().work()
        return
    }
    #if canImport(Glibc)
    pthread_detach(thread)
    #else
    if let thread { pthread_detach(thread) }
    #endif
}
