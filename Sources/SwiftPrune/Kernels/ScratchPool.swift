import Synchronization

/// A small process-wide pool of 64-byte-aligned scratch buffers for the
/// packing buffers of GEMM and the work arrays of QR.
///
/// Kernels called in a loop (power iterations, blocked factorizations)
/// would otherwise map, fault in and zero fresh pages on every call: large
/// allocations bypass the malloc heap. At most `capacity` idle buffers are
/// kept; concurrent callers each get their own buffer.
enum ScratchPool {
    struct Buffer: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        let bytes: Int
    }

    static let capacity = 6
    private static let idle = Mutex<[Buffer]>([])

    /// A buffer of at least `bytes` bytes; return it with ``recycle(_:)``.
    /// - Throws: ``SwiftPruneError`` `.outOfMemory` when no idle buffer is
    ///   large enough and the system refuses a new one.
    static func take(bytes: Int) throws -> Buffer {
        let needed = max(64, bytes)
        let reused: Buffer? = idle.withLock { list in
            guard let index = list.indices.filter({ list[$0].bytes >= needed })
                .min(by: { list[$0].bytes < list[$1].bytes }) else { return nil }
            return list.remove(at: index)
        }
        if let reused { return reused }
        // Buffers of 2 MiB and more (GEMM's packed B shared by its workers) are
        // 2 MiB-aligned and advised as transparent huge pages: a 16 MiB buffer
        // then takes 8 page faults instead of 4096.
        let pointer = UnsafeMutableRawPointer(try HugePageScratch.allocate(
            UInt8.self, count: needed, "scratch (GEMM packing or QR work arrays)"))
        return Buffer(pointer: pointer, bytes: needed)
    }

    /// Gives `buffer` back to the pool (or frees it when the pool is full).
    static func recycle(_ buffer: Buffer) {
        let evicted: Buffer? = idle.withLock { list in
            list.append(buffer)
            guard list.count > capacity,
                  let smallest = list.indices.min(by: { list[$0].bytes < list[$1].bytes }) else { return nil }
            return list.remove(at: smallest)
        }
        FallibleAllocation.free(evicted?.pointer)
    }

    /// Runs `body` with `count` scratch elements of `T` (the QR work arrays,
    /// GEMM's packing buffers).
    /// - Throws: ``SwiftPruneError`` `.outOfMemory` when the memory cannot
    ///   be had (`body` does not run), or what `body` throws.
    @inline(__always)
    static func withFallible<T, R>(_: T.Type, count: Int, _ body: (UnsafeMutablePointer<T>) throws -> R) throws -> R {
        let (bytes, overflow) = max(1, count).multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard !overflow else { throw SwiftPruneError(.outOfMemory, "\(count) scratch elements: the size overflows") }
        let buffer = try take(bytes: bytes)
        defer { recycle(buffer) }
        return try body(buffer.pointer.bindMemory(to: T.self, capacity: max(1, count)))
    }
}
