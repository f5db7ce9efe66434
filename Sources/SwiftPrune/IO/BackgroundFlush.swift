import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Overlaps a file's flush to disk with the writing of the rest of it.
///
/// A durable save is write + `fsync`: written one after the other, the disk
/// sits idle while the data are copied into the page cache and the copy
/// waits while the disk writes. After every ``stride`` bytes written, this
/// starts an `fdatasync` on a background thread (one at a time), so most of
/// the data are already on disk when the final `fsync` runs. Durability is
/// unchanged: the final `fsync` still runs, and an error seen by a
/// background flush (which Linux reports only once per open file) is kept
/// and reported by ``finish()``.
final class BackgroundFlush: @unchecked Sendable {
    /// Bytes written between two background flushes.
    static let stride = 32 << 20

    private let group = DispatchGroup()
    private let inFlight = Atomic<Bool>(false)
    private let failure = Atomic<Int32>(0)
    /// Bytes written since the last flush started; callers serialize ``wrote(_:fd:)``.
    private var pending = 0

    /// Records that `bytes` more were written to `fd`, and starts a
    /// background flush when enough are pending and none is running.
    func wrote(_ bytes: Int, fd: Int32) {
        pending += bytes
        guard pending >= Self.stride, !inFlight.exchange(true, ordering: .acquiringAndReleasing) else { return }
        pending = 0
        group.enter()
        runInBackground { [self] in
            if fdatasync(fd) != 0 {
                _ = failure.compareExchange(expected: 0, desired: errno, ordering: .relaxed)
            }
            inFlight.store(false, ordering: .releasing)
            group.leave()
        }
    }

    /// Waits for the flush in flight (call before the final `fsync` and before
    /// closing the file) and returns the `errno` of a failed background flush, or 0.
    func finish() -> Int32 {
        group.wait()
        return failure.load(ordering: .relaxed)
    }
}
