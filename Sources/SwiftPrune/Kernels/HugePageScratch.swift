#if canImport(Glibc)
import Glibc
#endif

/// Large scratch arrays (MiBs, filled once, then read by many products) in
/// 2 MiB-aligned storage advised as transparent huge pages (`MADV_HUGEPAGE`;
/// ignored where THP is off, and this VM's THP mode is `madvise`, so nothing
/// gets huge pages without the hint). A fresh array is otherwise faulted in
/// 4 KiB at a time: the 4–16 MiB arrays of a 2048² rank-256 randomized SVD
/// (packed copies of the matrix, the Krylov basis by rows and by columns,
/// the rows of B, the factors, the small eigenproblem) took ~12 000 faults
/// per call, 6% of its samples (`perf record -e cpu-clock`).
enum HugePageScratch {
    /// The size of a transparent huge page on x86-64.
    static let hugePage = 1 << 21

    /// `count` uninitialized elements of `T`, 2 MiB-aligned when they fill at
    /// least one huge page (whose whole 2 MiB pieces are then advised as huge
    /// pages), else from the ordinary allocator. Free with ``FallibleAllocation/free(_:)``.
    /// - Throws: `.outOfMemory` when the size overflows or the memory is refused.
    static func allocate<T>(_: T.Type, count: Int, _ what: @autoclosure () -> String = "scratch") throws
        -> UnsafeMutablePointer<T> {
        let (bytes, overflow) = max(1, count).multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard count >= 0, !overflow else {
            throw SwiftPruneError(.outOfMemory, "cannot allocate \(count) elements for \(what()): the size overflows")
        }
        let alignment = bytes >= hugePage ? hugePage : max(64, MemoryLayout<T>.alignment)
        let raw = try FallibleAllocation.allocate(bytes: bytes, alignment: alignment, what())
        #if os(Linux) && canImport(Glibc)
        if bytes >= hugePage { _ = madvise(raw, bytes / hugePage * hugePage, MADV_HUGEPAGE) }
        #endif
        return raw.bindMemory(to: T.self, capacity: max(1, count))
    }
}
